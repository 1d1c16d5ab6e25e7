// From the rig's marker and telemetry types to the analysis inputs, through any device-clock to
// monitor-seconds map (the sync library's clock map; an identity-like map for tests). The map
// returns the monitor time and its error bound, or nothing when the clock or time is not covered.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "meltrig/analysis/inputs.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/telemetry.hpp"

namespace meltrig::analysis {

struct MappedTime {
  double t_s = 0.0;      ///< monitor seconds
  double bound_s = 0.0;  ///< the map's error bound at that time
};

/// Device clock name ("monotonic", "boottime", "realtime") and time -> monitor seconds.
using ClockMap =
    std::function<std::optional<MappedTime>(std::string_view clock, std::int64_t device_ns)>;

/// The log's events the analysis uses, mapped; uncertainty = the map's bound + `jitter_s` (the
/// runner's stamping jitter). Fails (invalid_argument "<file>:<line>: ...") on an event the map
/// does not cover, e.g. markers on a clock the map knows nothing about.
Result<std::vector<Event>> events_from_markers(const targets::MarkerLog& log, const ClockMap& map,
                                               double jitter_s = 0.0);

/// Telemetry series mapped to monitor seconds; readings the map does not cover are dropped.
std::vector<TimedSeries> series_from_telemetry(const targets::Telemetry& tel, const ClockMap& map);

}  // namespace meltrig::analysis
