// analyze_capture: the file's clock map (stored or computed), its inputs through it, the
// analysis, its JSON, and (on request) the /sync and /analysis groups.
#include "meltrig/analysis/capture_analysis.hpp"

#include <limits>
#include <utility>
#include <variant>

#include "meltrig/analysis/capture_inputs.hpp"
#include "meltrig/analysis/store.hpp"
#include "meltrig/dataset/capture_reader.hpp"

namespace meltrig::analysis {

namespace {

// The supply voltage a current-valued software estimate is converted with: the monitor's output
// voltage (what the device's battery terminals saw), NaN when the file does not say.
double supply_voltage(const std::filesystem::path& path) {
  auto r = dataset::CaptureReader::open(path);
  if (!r) return std::numeric_limits<double>::quiet_NaN();
  const auto* v = dataset::find_attribute(r->monitor_attributes(), "output_voltage_v");
  const double* d = v != nullptr ? std::get_if<double>(v) : nullptr;
  return d != nullptr && *d > 0 ? *d : std::numeric_limits<double>::quiet_NaN();
}

/// The stored map, or one computed now (then `computed` is set).
Result<sync::FileSync> map_of(const std::filesystem::path& path, bool& computed) {
  auto stored = sync::read_stored(path);
  if (!stored) return stored.error();
  computed = !stored->has_value();
  if (!computed) return std::move(**stored);
  return sync::sync_file(path);
}

ClockMap clock_map(const sync::FileSync& map) {
  return [&map](std::string_view clock, std::int64_t ns) -> std::optional<MappedTime> {
    auto m = map.monitor_seconds(clock, ns);
    if (!m) return std::nullopt;
    return MappedTime{m->first, m->second};
  };
}

}  // namespace

Result<CaptureAnalysis> analyze_capture(const std::filesystem::path& path,
                                        const CaptureAnalysisOptions& options) {
  CaptureAnalysis out;
  auto map = map_of(path, out.map_computed);
  if (!map) return map.error();
  out.map = std::move(*map);
  {
    // The inputs hold the open capture (the samples stream through analyze()): closed at the end
    // of this scope, before anything is stored into the file.
    auto in = inputs_from_capture(path, clock_map(out.map));
    if (!in) return in.error();
    AnalysisConfig cfg;
    cfg.software.supply_v = supply_voltage(path);
    auto a = analyze(*in, cfg);
    if (!a) return make_error(a.error().code, path.string() + ": " + a.error().message);
    out.events = std::move(in->events);
    out.telemetry = std::move(in->telemetry);
    out.analysis = std::move(*a);
  }
  out.json = to_json(out.analysis);
  out.json["file"] = path.string();
  out.json["sync"] = out.map.to_json();
  if (options.store) {
    if (out.map_computed)
      if (auto w = sync::store(path, out.map); !w) return w.error();
    if (auto w = store(path, out.analysis, out.json); !w) return w.error();
  }
  return out;
}

}  // namespace meltrig::analysis
