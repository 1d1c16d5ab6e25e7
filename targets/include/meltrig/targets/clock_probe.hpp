// The clock-probe value type: one host/device clock reading, as taken by Target::probe_clock()
// and stored by the dataset library. Plain values and one parser; no process or transport code.
#pragma once

#include <cstdint>
#include <string_view>

#include "meltrig/fw/result.hpp"

namespace meltrig::targets {

/// One NTP-style clock probe. The host reads its steady clock (CLOCK_MONOTONIC, ns) before the
/// request (t0) and after the answer (t3); the device reads its three clocks in one shot between
/// them. The device's processing time is not measured separately, so rtt = t3 - t0 bounds it.
struct ClockProbe {
  std::int64_t host_t0_ns = 0;
  std::int64_t device_mono_ns = 0;
  std::int64_t device_boot_ns = 0;
  std::int64_t device_real_ns = 0;
  std::int64_t host_t3_ns = 0;

  std::int64_t rtt_ns() const { return host_t3_ns - host_t0_ns; }
  /// Host time the device most likely read its clocks at: the midpoint of [t0, t3].
  std::int64_t host_mid_ns() const { return host_t0_ns + rtt_ns() / 2; }
  /// device monotonic - host steady at the midpoint; the true offset is within +- rtt/2.
  std::int64_t offset_ns() const { return device_mono_ns - host_mid_ns(); }
};

/// Parses the probe's output "MONO BOOT REAL\n" (decimal ns) into the device fields of a probe.
/// parse_error naming `source` on anything else.
Result<ClockProbe> parse_probe_line(std::string_view text, std::string_view source);

}  // namespace meltrig::targets
