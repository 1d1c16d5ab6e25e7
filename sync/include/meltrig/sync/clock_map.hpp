// Clock maps: a sample index mapped to time on another clock. A sample's index never changes
// once assigned; its time is this separate, replaceable map (Joulescope's {offset_time,
// offset_counter, counter_rate}).
#pragma once

#include <cstdint>

namespace meltrig::sync {

/// t(i) = offset_s + (i - offset_index) / rate_hz. The identity time base of a capture is
/// {0, 0, nominal_rate}.
struct LinearClockMap {
  double offset_s = 0.0;
  double offset_index = 0.0;
  double rate_hz = 1.0;

  double time_of(double index) const { return offset_s + (index - offset_index) / rate_hz; }
  double index_of(double t_s) const { return offset_index + (t_s - offset_s) * rate_hz; }
};

}  // namespace meltrig::sync
