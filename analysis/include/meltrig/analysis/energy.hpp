// Energy over a time window of a uniformly sampled power trace.
#pragma once

#include <cstdint>
#include <span>

namespace meltrig::analysis {

/// Result of integrating power over a window.
struct WindowEnergy {
  double joules = 0.0;
  double seconds = 0.0;               ///< window length
  std::uint64_t missing_samples = 0;  ///< NaN samples inside the window (skipped, not zeroed)
};

/// Integrates power (W) sampled at `rate_hz`, sample i at t = i / rate, over [t0, t1] seconds by
/// the trapezoid rule, interpolating linearly at both window edges (which matters far more than
/// the integration rule at kHz rates). Intervals touching a NaN sample are left out and counted.
WindowEnergy integrate_power(std::span<const float> power_w, double rate_hz, double t0_s,
                             double t1_s);

}  // namespace meltrig::analysis
