// Telemetry read on a device under test during a run (temperatures, CPU/GPU frequencies, software
// power estimates), each series stamped on a device clock, ready to be stored beside the capture.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace meltrig::targets {

/// One named quantity sampled over time, e.g. name "thermal/soc" unit "degC", or
/// "power/fuel_gauge_current" unit "A". Times are on `clock` ("monotonic", "boottime" or
/// "realtime" of the device; "host_steady" when the host stamped them).
struct TelemetrySeries {
  std::string name;
  std::string unit;
  std::string clock = "monotonic";
  std::string description;
  std::vector<std::int64_t> t_ns;
  std::vector<double> value;
};

/// All series of one run, in the order first seen.
struct Telemetry {
  std::vector<TelemetrySeries> series;

  /// The series called `name`, created (with `unit` and `clock`) if absent.
  TelemetrySeries& get(std::string_view name, std::string_view unit,
                       std::string_view clock = "monotonic");
  /// Appends one reading to the series `name` (created if absent).
  void add(std::string_view name, std::string_view unit, std::int64_t t_ns, double value,
           std::string_view clock = "monotonic");
  /// The series called `name`, or nullptr.
  const TelemetrySeries* find(std::string_view name) const;
};

}  // namespace meltrig::targets
