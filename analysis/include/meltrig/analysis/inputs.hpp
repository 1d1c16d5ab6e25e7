// What the analysis takes in, already on the monitor's own time base (sample index / nominal
// rate, in seconds): the power samples, the runner's events and the device's telemetry, each
// event time mapped through the clock map with its uncertainty (sync bound + marker jitter).
// A thin adapter from the dataset and the sync library's map fills these.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::analysis {

/// Runner events the analysis understands (a subset of the marker format's kinds).
enum class EventKind : std::uint8_t {
  run_start,
  run_end,
  load_start,
  load_end,
  prefill_start,
  prefill_end,
  token,
  sync_start,
  sync_end,
};

/// One event on the monitor's time base.
struct Event {
  double t_s = 0.0;            ///< monitor seconds
  double uncertainty_s = 0.0;  ///< half-width of the interval the true instant lies in
  EventKind kind = EventKind::token;
  std::int64_t index = -1;  ///< token index; prompt tokens for prefill events; else -1
};

/// Receives one chunk of consecutive samples: sample start_index + i has power power_w[i] (W,
/// NaN where missing). A jump in start_index between chunks is a gap.
using ChunkSink = std::function<Result<void>(std::uint64_t start_index, std::span<const float>)>;

/// A power trace that can be read once from start to end in chunks (a file larger than memory,
/// or a vector). `for_each_chunk` calls the sink for every chunk in order and stops at the first
/// error.
struct SampleSeries {
  double rate_hz = 0.0;  ///< nominal sample rate: sample i is at i / rate_hz seconds
  std::function<Result<void>(const ChunkSink&)> for_each_chunk;
};

/// A series held in memory, served in chunks of `chunk` samples (the span must outlive it).
SampleSeries series_from_span(std::span<const float> power_w, double rate_hz,
                              std::size_t chunk = 65536, std::uint64_t first_index = 0);

/// A telemetry series on the monitor's time base (e.g. "thermal/soc" degC,
/// "power/fuel_gauge_current" mA). `window_s` and `lag_s`, where known, say what interval each
/// reading averages: [t - lag_s - window_s, t - lag_s].
struct TimedSeries {
  std::string name;
  std::string unit;
  std::vector<double> t_s;
  std::vector<double> value;
  double window_s = std::numeric_limits<double>::quiet_NaN();
  double lag_s = 0.0;
};

/// The value of a series at t: linear between readings, held outside (NaN if empty).
double value_at(const TimedSeries& s, double t);

}  // namespace meltrig::analysis
