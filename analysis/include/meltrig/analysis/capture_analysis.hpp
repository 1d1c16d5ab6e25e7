// One capture file analysed the way `meltrig analyze` does it, for every command that shows the
// figures (analyze, report, export --perfetto): one function, so they all show the same numbers.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "meltrig/analysis/analysis.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/sync/file_sync.hpp"

namespace meltrig::analysis {

/// A capture's analysis with the inputs it was computed from (on the monitor's time base).
struct CaptureAnalysis {
  std::vector<Event> events;
  std::vector<TimedSeries> telemetry;
  Analysis analysis;
  sync::FileSync map;         ///< the clock map the markers and telemetry went through
  bool map_computed = false;  ///< the file had no /sync: the map was computed now
  /// What `meltrig analyze --json` prints for the file: to_json(analysis) plus "file" (the path
  /// as given) and "sync" (the map, issue #12's object).
  nlohmann::json json;
};

struct CaptureAnalysisOptions {
  /// Write /sync (when computed now) and /analysis into the file, only after the analysis has
  /// succeeded (`meltrig analyze`); false: read only (report, export).
  bool store = false;
};

/// Reads and analyses `path`: the clock map is the file's /sync group, or computed from the
/// file's evidence (sync::sync_file) when it has none. Current-valued software estimates are
/// converted to watts with the monitor's `output_voltage_v`. Errors name the file; on any error
/// nothing is written.
Result<CaptureAnalysis> analyze_capture(const std::filesystem::path& path,
                                        const CaptureAnalysisOptions& options = {});

}  // namespace meltrig::analysis
