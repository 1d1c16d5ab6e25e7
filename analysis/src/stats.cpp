// Descriptive statistics and confidence intervals: see stats.hpp.
#include "meltrig/analysis/stats.hpp"

#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <numeric>
#include <random>

namespace meltrig::analysis {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double t_quantile(double level, double df) {
  boost::math::students_t dist(df);
  return boost::math::quantile(dist, 0.5 + 0.5 * level);
}
}  // namespace

double mean_of(std::span<const double> v) {
  if (v.empty()) return kNaN;
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double sd_of(std::span<const double> v) {
  if (v.size() < 2) return kNaN;
  double m = mean_of(v), ss = 0.0;
  for (double x : v)
    ss += (x - m) * (x - m);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

double quantile_of(std::span<const double> v, double q) {
  if (v.empty()) return kNaN;
  std::vector<double> s(v.begin(), v.end());
  std::sort(s.begin(), s.end());
  double x = std::clamp(q, 0.0, 1.0) * static_cast<double>(s.size() - 1);
  auto i = static_cast<std::size_t>(std::floor(x));
  if (i + 1 >= s.size()) return s.back();
  double f = x - static_cast<double>(i);
  return s[i] + f * (s[i + 1] - s[i]);
}

double median_of(std::span<const double> v) {
  return quantile_of(v, 0.5);
}

Summary summarize(std::span<const double> v, const SummaryConfig& cfg) {
  Summary s;
  s.n = v.size();
  if (v.empty()) return s;
  s.mean = mean_of(v);
  if (v.size() < 2) return s;
  s.sd = sd_of(v);
  const double n = static_cast<double>(v.size());
  const double half = t_quantile(cfg.level, n - 1.0) * s.sd / std::sqrt(n);
  s.t_low = s.mean - half;
  s.t_high = s.mean + half;
  std::mt19937_64 rng(cfg.seed);
  std::uniform_int_distribution<std::size_t> pick(0, v.size() - 1);
  std::vector<double> means(cfg.resamples);
  for (double& m : means) {
    double acc = 0.0;
    for (std::size_t i = 0; i < v.size(); ++i)
      acc += v[pick(rng)];
    m = acc / n;
  }
  s.boot_low = quantile_of(means, 0.5 - 0.5 * cfg.level);
  s.boot_high = quantile_of(means, 0.5 + 0.5 * cfg.level);
  return s;
}

Difference welch_difference(std::span<const double> a, std::span<const double> b, double level) {
  Difference d;
  if (a.empty() || b.empty()) return d;
  d.diff = mean_of(b) - mean_of(a);
  if (a.size() < 2 || b.size() < 2) return d;
  double va = std::pow(sd_of(a), 2) / static_cast<double>(a.size());
  double vb = std::pow(sd_of(b), 2) / static_cast<double>(b.size());
  double se = std::sqrt(va + vb);
  if (!(se > 0.0)) {
    d.low = d.high = d.diff;
    return d;
  }
  d.df =
      (va + vb) * (va + vb) /
      (va * va / static_cast<double>(a.size() - 1) + vb * vb / static_cast<double>(b.size() - 1));
  double half = t_quantile(level, d.df) * se;
  d.low = d.diff - half;
  d.high = d.diff + half;
  return d;
}

}  // namespace meltrig::analysis
