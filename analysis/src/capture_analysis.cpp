// analyze_capture: the file's inputs through the (provisional) clock map, the analysis, its JSON.
#include "meltrig/analysis/capture_analysis.hpp"

#include "meltrig/analysis/capture_inputs.hpp"

namespace meltrig::analysis {

namespace {

constexpr double kProvisionalBound = 1e-3;

nlohmann::json sync_json() {
  return {{"method", "provisional-identity"},
          {"note", "device time of the first clock triple = monitor second 0; not a sync"},
          {"bound_s", kProvisionalBound}};
}

}  // namespace

Result<CaptureAnalysis> analyze_capture(const std::filesystem::path& path) {
  auto log = read_runner_markers(path);
  if (!log) return log.error();
  auto map = provisional_identity_map(*log, kProvisionalBound);
  auto in = inputs_from_capture(path, map);
  if (!in) return in.error();
  auto a = analyze(*in);
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
