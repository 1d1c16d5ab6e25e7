// analyze_capture: the file's inputs through the (provisional) clock map, the analysis, its JSON.
#include "meltrig/analysis/capture_analysis.hpp"

#include <limits>
#include <variant>

#include "meltrig/analysis/capture_inputs.hpp"
#include "meltrig/dataset/capture_reader.hpp"

namespace meltrig::analysis {

namespace {

constexpr double kProvisionalBound = 1e-3;

nlohmann::json sync_json() {
  return {{"method", "provisional-identity"},
          {"note", "device time of the first clock triple = monitor second 0; not a sync"},
          {"bound_s", kProvisionalBound}};
}

// The supply voltage a current-valued software estimate is converted with: the monitor's output
// voltage (what the device's battery terminals saw), NaN when the file does not say.
double supply_voltage(const std::filesystem::path& path) {
  auto r = dataset::CaptureReader::open(path);
  if (!r) return std::numeric_limits<double>::quiet_NaN();
  const auto* v = dataset::find_attribute(r->monitor_attributes(), "output_voltage_v");
  const double* d = v != nullptr ? std::get_if<double>(v) : nullptr;
  return d != nullptr && *d > 0 ? *d : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

Result<CaptureAnalysis> analyze_capture(const std::filesystem::path& path) {
  auto log = read_runner_markers(path);
  if (!log) return log.error();
  auto map = provisional_identity_map(*log, kProvisionalBound);
  auto in = inputs_from_capture(path, map);
  if (!in) return in.error();
  AnalysisConfig cfg;
  cfg.software.supply_v = supply_voltage(path);
  auto a = analyze(*in, cfg);
  if (!a) return make_error(a.error().code, path.string() + ": " + a.error().message);
  CaptureAnalysis out;
  out.events = std::move(in->events);
  out.telemetry = std::move(in->telemetry);
  out.analysis = std::move(*a);
  out.json = to_json(out.analysis);
  out.json["file"] = path.string();
  out.json["sync"] = sync_json();
  return out;
}

}  // namespace meltrig::analysis
