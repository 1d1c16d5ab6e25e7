// The analysis inputs of a capture file (dataset library): power samples read in blocks (never
// the whole trace), the runner's markers and the telemetry mapped through a clock map.
#pragma once

#include <filesystem>

#include "meltrig/analysis/adapter.hpp"
#include "meltrig/analysis/analysis.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::analysis {

/// Reads `path`: power = the `power` channel, else `current` x `voltage`; markers from
/// `/markers/runner` (else the first marker set); `/telemetry`. Fails naming the file: not a
/// capture, a capture still running (or crashed while running), no current or voltage channel,
/// no markers, a marker the map does not cover. Reads only; nothing in the file changes.
Result<AnalysisInputs> inputs_from_capture(const std::filesystem::path& path, const ClockMap& map,
                                           double jitter_s = 0.0);

/// The runner's markers of a capture: `/markers/runner`, else the first set under /markers
/// (invalid_argument naming the file when there is none).
Result<targets::MarkerLog> read_runner_markers(const std::filesystem::path& path);

}  // namespace meltrig::analysis
