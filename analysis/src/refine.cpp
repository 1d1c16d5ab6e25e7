// Token boundary refinement: see refine.hpp.
#include "meltrig/analysis/refine.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace meltrig::analysis {

namespace {

double median_of(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  double m = *mid;
  if (v.size() % 2 == 0) m = 0.5 * (m + *std::max_element(v.begin(), mid));
  return m;
}

// Valid samples with times in [a, b].
std::vector<double> samples_in(const Snippet& s, double rate, double a, double b) {
  std::vector<double> out;
  for (std::size_t j = 0; j < s.power_w.size(); ++j) {
    double t = static_cast<double>(s.first_index + j) / rate;
    if (t >= a && t <= b && !std::isnan(s.power_w[j])) out.push_back(s.power_w[j]);
  }
  return out;
}

}  // namespace

Refinement refine_boundary(const Snippet& snip, double rate, double t, double u,
                           const RefineConfig& cfg) {
  Refinement r{t, false, 0.0, 0.0};
  const double settle = 3.0 * cfg.rail_tau_max_s;
  const double flank = std::max(cfg.flank_s, 4.0 / rate);
  auto left = samples_in(snip, rate, t - u - settle - flank, t - u - settle);
  auto right = samples_in(snip, rate, t + u + settle, t + u + settle + flank);
  if (left.size() < 3 || right.size() < 3) return r;
  const double lo = median_of(left), hi = median_of(right);
  std::vector<double> dev;
  for (double v : left)
    dev.push_back(std::abs(v - lo));
  for (double v : right)
    dev.push_back(std::abs(v - hi));
  const double scale = std::max(std::abs(lo), std::abs(hi));
  r.noise_w = std::max(1.4826 * median_of(dev), 1e-6 * (1.0 + scale));
  r.step_w = hi - lo;
  if (std::abs(r.step_w) < cfg.min_snr * r.noise_w) return r;
  if (std::abs(r.step_w) < cfg.min_relative_step * scale) return r;
  // Crossings of the midpoint inside the search range, in the step's direction.
  const double mid = 0.5 * (lo + hi), sign = r.step_w > 0 ? 1.0 : -1.0;
  const double a = t - u - settle, b = t + u + settle;
  int crossings = 0;
  double band_lo = 0.0, band_hi = 0.0;
  for (std::size_t j = 0; j + 1 < snip.power_w.size(); ++j) {
    double tj = static_cast<double>(snip.first_index + j) / rate, tk = tj + 1.0 / rate;
    if (tk < a || tj > b) continue;
    double vj = snip.power_w[j], vk = snip.power_w[j + 1];
    if (std::isnan(vj) || std::isnan(vk)) return r;  // a gap at the boundary: trust nothing
    if (sign * (vj - mid) < 0.0 && sign * (vk - mid) >= 0.0) {
      ++crossings;
      band_lo = tj - cfg.rail_tau_max_s * std::log(2.0);
      band_hi = tk;
    }
  }
  if (crossings != 1) return r;
  band_lo = std::max(band_lo, t - u);
  band_hi = std::min(band_hi, t + u);
  if (band_lo > band_hi) return r;  // the step is not where the marker can be
  r.t_s = std::clamp(t, band_lo, band_hi);
  r.refined = true;
  return r;
}

}  // namespace meltrig::analysis
