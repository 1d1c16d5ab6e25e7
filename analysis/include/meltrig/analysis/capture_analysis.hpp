// One capture file analysed the way `meltrig analyze` does it, for every command that shows the
// figures (analyze, report, export --perfetto): one function, so they all show the same numbers.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "meltrig/analysis/analysis.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::analysis {

/// A capture's analysis with the inputs it was computed from (on the monitor's time base).
struct CaptureAnalysis {
  std::vector<Event> events;
  std::vector<TimedSeries> telemetry;
  Analysis analysis;
  /// What `meltrig analyze --json` prints for the file: to_json(analysis) plus "file" (the path
  /// as given) and "sync" (how device times were mapped to monitor time).
  nlohmann::json json;
};

/// Reads and analyses `path` (read-only). The time map is PROVISIONAL until the sync library is
/// wired: the device time of the runner's first clock triple is taken as monitor second 0 (right
/// for the simulated bench, not a sync; "sync" in the JSON says so). Current-valued software
/// estimates are converted to watts with the monitor's `output_voltage_v`. Errors name the file.
Result<CaptureAnalysis> analyze_capture(const std::filesystem::path& path);

}  // namespace meltrig::analysis
