// The one integration rule for stored samples: the trapezoid rule on the dataset's time base
// (sample i at t = i / rate), where an interval touching a missing (NaN) sample is left out, never
// read as zero. Used by the capture's live energy (rig/) and by window energy (analysis/).
#pragma once

#include <cmath>
#include <cstdint>

namespace meltrig::dataset {

/// Area of one interval of length `dt` between values `a` and `b`; 0 if either is NaN.
inline double trapezoid_area(double a, double b, double dt) {
  if (std::isnan(a) || std::isnan(b)) return 0.0;
  return 0.5 * (a + b) * dt;
}

/// The trapezoid rule over a uniformly sampled series fed one sample at a time (in index order;
/// a missing sample is fed as NaN or announced with skip()).
class TrapezoidSum {
 public:
  explicit TrapezoidSum(double rate_hz) : dt_(1.0 / rate_hz) {}

  void add(double v) {
    if (!std::isnan(v) && !std::isnan(prev_)) {
      area_ += trapezoid_area(prev_, v, dt_);
      ++intervals_;
    }
    prev_ = v;
  }
  /// Missing samples: the interval into the next sample is left out.
  void skip() { prev_ = std::nan(""); }

  /// The integral so far (value unit x s), over `intervals()` whole sample intervals.
  double integral() const { return area_; }
  std::uint64_t intervals() const { return intervals_; }

 private:
  double dt_;
  double prev_ = std::nan("");
  double area_ = 0.0;
  std::uint64_t intervals_ = 0;
};

}  // namespace meltrig::dataset
