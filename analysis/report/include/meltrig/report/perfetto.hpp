// `meltrig export --perfetto`: a capture as a Chrome JSON trace (the "JSON trace event format"
// that ui.perfetto.dev and chrome://tracing open), all on the monitor's time base (sample index /
// nominal rate; ts in microseconds):
//   process "monitor": counter tracks "power (W)", "current (A)", "voltage (V)" (every channel
//     the file has) and an instant event per gap row;
//   process "device": slices "phases" (load, prefill, decode of each repetition), "tokens" (one
//     per output token), "baseline" windows (idle_before, idle_after), "cooldown"; instant events
//     on "sync" (sync.start, sync.end); one counter track per telemetry series, "NAME (UNIT)".
// Phases, tokens and telemetry come from analysis::analyze_capture, so the trace shows the same
// boundaries and energies as `meltrig analyze` and `meltrig report`. Counters are read from the
// summaries at the finest level with at most `max_counter_points` entries: bounded for any length.
#pragma once

#include <filesystem>
#include <ostream>

#include "meltrig/fw/result.hpp"

namespace meltrig::report {

struct TraceOptions {
  std::uint64_t max_counter_points = 20000;  ///< per monitor counter track
};

/// Writes the trace of `capture` to `out`. Fails naming the file (not a capture, no markers, a
/// failed analysis); nothing is written then.
Result<void> write_perfetto_trace(const std::filesystem::path& capture, std::ostream& out,
                                  const TraceOptions& opt = {});

}  // namespace meltrig::report
