// Energy over a window: see energy.hpp.
#include "meltrig/analysis/energy.hpp"

#include <algorithm>
#include <cmath>

#include "meltrig/dataset/trapezoid.hpp"

namespace meltrig::analysis {

WindowEnergy integrate_power(std::span<const float> p, double rate_hz, double t0, double t1) {
  WindowEnergy out;
  if (p.size() < 2 || !(t1 > t0) || rate_hz <= 0) return out;
  const double last_t = static_cast<double>(p.size() - 1) / rate_hz;
  t0 = std::clamp(t0, 0.0, last_t);
  t1 = std::clamp(t1, 0.0, last_t);
  out.seconds = t1 - t0;
  if (!(t1 > t0)) return out;
  auto value_at = [&](double t) {  // linear interpolation between neighbouring samples
    double x = t * rate_hz;
    auto i = static_cast<std::size_t>(std::floor(x));
    if (i + 1 >= p.size()) return static_cast<double>(p.back());
    double f = x - static_cast<double>(i);
    return p[i] * (1.0 - f) + p[i + 1] * f;
  };
  const auto first = static_cast<std::size_t>(std::ceil(t0 * rate_hz));
  const auto last = static_cast<std::size_t>(std::floor(t1 * rate_hz));
  double prev_t = t0, prev_v = value_at(t0);
  for (std::size_t i = first; i <= last && i < p.size(); ++i) {
    double t = static_cast<double>(i) / rate_hz;
    double v = p[i];
    if (std::isnan(v)) ++out.missing_samples;
    if (t > prev_t) out.joules += dataset::trapezoid_area(prev_v, v, t - prev_t);
    prev_t = t;
    prev_v = v;
  }
  double v1 = value_at(t1);
  if (t1 > prev_t) out.joules += dataset::trapezoid_area(prev_v, v1, t1 - prev_t);
  return out;
}

}  // namespace meltrig::analysis
