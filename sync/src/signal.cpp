// FFT cross-correlation, edge location and the rail model (see signal.hpp).
#include "meltrig/sync/signal.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <numeric>
#include <unsupported/Eigen/FFT>

namespace meltrig::sync {

std::vector<double> cross_correlate(std::span<const double> x, std::span<const double> t) {
  if (t.empty() || t.size() > x.size()) return {};
  std::size_t n = 1;
  while (n < x.size() + t.size())
    n <<= 1;
  std::vector<double> xa(n, 0.0), ta(n, 0.0);
  std::copy(x.begin(), x.end(), xa.begin());
  // correlation = convolution with the reversed template
  for (std::size_t j = 0; j < t.size(); ++j)
    ta[j] = t[t.size() - 1 - j];
  Eigen::FFT<double> fft;
  std::vector<std::complex<double>> fx, ft;
  fft.fwd(fx, xa);
  fft.fwd(ft, ta);
  for (std::size_t i = 0; i < fx.size(); ++i)
    fx[i] *= ft[i];
  std::vector<double> conv;
  fft.inv(conv, fx);
  std::vector<double> out(x.size() - t.size() + 1);
  for (std::size_t k = 0; k < out.size(); ++k)
    out[k] = conv[k + t.size() - 1];
  return out;
}

namespace {

double median_window(const Trace& tr, std::int64_t a, std::int64_t b) {
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  a = std::clamp<std::int64_t>(a, 0, n);
  b = std::clamp<std::int64_t>(b, 0, n);
  std::vector<double> v;
  for (std::int64_t i = a; i < b; ++i) {
    const float s = tr.samples[static_cast<std::size_t>(i)];
    if (!std::isnan(s)) v.push_back(s);
  }
  if (v.size() < 3) return std::nan("");
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

/// Robust s.d. of a window: 1.4826 x MAD.
double mad_window(const Trace& tr, std::int64_t a, std::int64_t b, double med) {
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  std::vector<double> v;
  for (std::int64_t i = std::max<std::int64_t>(a, 0); i < std::min(b, n); ++i) {
    const float s = tr.samples[static_cast<std::size_t>(i)];
    if (!std::isnan(s)) v.push_back(std::abs(s - med));
  }
  if (v.empty()) return 0.0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return 1.4826 * *mid;
}

}  // namespace

EdgeFix find_edge(const Trace& tr, const EdgeRequest& req) {
  EdgeFix e;
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  const auto lo = static_cast<std::int64_t>(std::floor(req.pos - req.halfwidth));
  const auto hi = static_cast<std::int64_t>(std::ceil(req.pos + req.halfwidth));
  const auto pre = static_cast<std::int64_t>(std::ceil(req.pre_len));
  const auto post = static_cast<std::int64_t>(std::ceil(req.post_len));
  if (lo - pre < 0 || hi + post >= n || lo < 1) return e;
  const double a = median_window(tr, lo - pre, lo), b = median_window(tr, hi + 1, hi + 1 + post);
  if (std::isnan(a) || std::isnan(b)) return e;
  e.step = b - a;
  if ((req.rising ? e.step : -e.step) <= req.min_step || e.step == 0.0) return e;
  const double noise =
      std::max(mad_window(tr, lo - pre, lo, a), mad_window(tr, hi + 1, hi + 1 + post, b));
  e.noise_z = noise / std::abs(e.step);
  auto z = [&](std::int64_t i) {
    const float s = tr.samples[static_cast<std::size_t>(i)];
    return std::isnan(s) ? std::nan("") : (s - a) / e.step;
  };
  // the 0.5 crossing nearest the prediction
  std::int64_t best = -1;
  for (std::int64_t i = lo; i <= hi; ++i) {
    if (!(z(i - 1) < 0.5 && z(i) >= 0.5)) continue;
    if (best < 0 ||
        std::abs(static_cast<double>(i) - req.pos) < std::abs(static_cast<double>(best) - req.pos))
      best = i;
  }
  if (best < 0) return e;
  // back to the first sample that left the old level
  const double eps = std::max(0.1, 3.0 * e.noise_z);
  std::int64_t j = best;
  while (j - 1 > lo - pre && z(j - 1) > eps)
    --j;
  e.first_sample = j;
  e.first_z = std::min(1.0, z(j));
  e.ok = true;
  apply_rail(e, 0.0);
  return e;
}

void relevel_edge(const Trace& tr, EdgeFix& e, int settle, int len) {
  if (!e.ok) return;
  const std::int64_t j = e.first_sample;
  const double a = median_window(tr, j - len, j);
  const double b = median_window(tr, j + settle, j + settle + len);
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  if (std::isnan(a) || std::isnan(b) || j + 1 >= n || (b - a) * e.step <= 0.0 ||
      std::abs(b - a) < 0.3 * std::abs(e.step)) {
    e.ok = false;
    return;
  }
  e.step = b - a;
  e.noise_z =
      std::max(mad_window(tr, j - len, j, a), mad_window(tr, j + settle, j + settle + len, b)) /
      std::abs(e.step);
  const float s1 = tr.samples[static_cast<std::size_t>(j)];
  const float s2 = tr.samples[static_cast<std::size_t>(j + 1)];
  e.first_z = std::isnan(s1) ? 1.0 : (s1 - a) / e.step;
  e.second_z = std::isnan(s2) ? 1.0 : (s2 - a) / e.step;
}

void apply_rail(EdgeFix& e, double tau) {
  if (!e.ok) return;
  const double sat = 1.0 - std::max(0.03, 3.0 * e.noise_z);
  double x = 0.5, sigma = 1.0 / std::sqrt(12.0);
  if (tau > 0.0 && e.first_z < sat) {
    // the first sample that left the old level may be the second after the step (tau > T)
    x = std::min(2.0, -tau * std::log(1.0 - std::max(0.0, e.first_z)));
    sigma = std::max(0.02, tau * std::max(e.noise_z, 0.005) / (1.0 - e.first_z));
  } else if (tau > 0.0) {
    const double x_lo = std::min(1.0, -tau * std::log(1.0 - sat));
    x = 0.5 * (x_lo + 1.0);
    sigma = std::max(0.02, (1.0 - x_lo) / std::sqrt(12.0));
  }
  e.pos = static_cast<double>(e.first_sample) - x;
  e.sigma = sigma;
}

double estimate_tau(std::span<const EdgeFix> edges, double* se) {
  // The first sample above eps sits x in [x_eps, x_eps + 1) after a uniformly placed step, so
  // mean(1 - z) = tau (1 - eps) (1 - exp(-1 / tau)); solved for tau by bisection.
  double sum = 0.0, sum2 = 0.0;
  std::size_t n = 0;
  for (const EdgeFix& e : edges) {
    if (!e.ok) continue;
    const double v = 1.0 - std::clamp(e.first_z, 0.0, 1.0);
    sum += v, sum2 += v * v;
    ++n;
  }
  if (se != nullptr) *se = 0.0;
  if (n < 8) return 0.0;
  const double nd = static_cast<double>(n), m = sum / nd, eps = 0.1;
  auto f = [&](double tau) { return tau * (1.0 - eps) * (1.0 - std::exp(-1.0 / tau)); };
  if (m <= f(1e-3)) return 0.0;
  double lo = 1e-3, hi = 20.0;
  if (m >= f(hi)) return hi;
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    (f(mid) < m ? lo : hi) = mid;
  }
  const double tau = 0.5 * (lo + hi);
  if (se != nullptr) {
    const double sd = std::sqrt(std::max(0.0, sum2 / nd - m * m));
    const double slope = (f(tau * 1.01) - f(tau * 0.99)) / (0.02 * tau);
    *se = slope > 0.0 ? sd / std::sqrt(nd) / slope : tau;
  }
  return tau;
}

double estimate_tau_pairs(std::span<const EdgeFix> edges, double* se) {
  struct Obs {
    double u1, u2, sigma;
  };
  std::vector<Obs> obs;
  for (const EdgeFix& e : edges)
    if (e.ok && e.first_z < 0.95 && std::isfinite(e.second_z))
      obs.push_back({1.0 - e.first_z, 1.0 - e.second_z, std::max(e.noise_z, 0.002)});
  if (se != nullptr) *se = 0.0;
  if (obs.size() < 8) return -1.0;
  // Huber IRLS of u2 = c + s u1, residuals normalised by each step's noise
  std::vector<double> h(obs.size(), 1.0), t(obs.size());
  double c = 0.0, slope = 0.0, var_s = 0.0;
  for (int it = 0; it < 20; ++it) {
    double sw = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0;
    for (std::size_t i = 0; i < obs.size(); ++i) {
      const double w = h[i] / (obs[i].sigma * obs[i].sigma);
      sw += w, sx += w * obs[i].u1, sy += w * obs[i].u2;
      sxx += w * obs[i].u1 * obs[i].u1, sxy += w * obs[i].u1 * obs[i].u2;
    }
    const double det = sw * sxx - sx * sx;
    if (sw <= 0.0 || det <= 0.0) return -1.0;
    slope = (sw * sxy - sx * sy) / det;
    c = (sy - slope * sx) / sw;
    for (std::size_t i = 0; i < obs.size(); ++i)
      t[i] = (obs[i].u2 - c - slope * obs[i].u1) / obs[i].sigma;
    std::vector<double> a(t.size());
    for (std::size_t i = 0; i < t.size(); ++i)
      a[i] = std::abs(t[i]);
    auto mid = a.begin() + static_cast<std::ptrdiff_t>(a.size() / 2);
    std::nth_element(a.begin(), mid, a.end());
    const double scale = std::max(1e-9, 1.4826 * *mid);
    for (std::size_t i = 0; i < t.size(); ++i) {
      const double r = std::abs(t[i]) / scale;
      h[i] = r > 5.0 ? 0.0 : (r > 1.345 ? 1.345 / r : 1.0);
    }
    var_s = scale * scale * sw / det;
  }
  const double sd = std::sqrt(var_s);
  if (!(slope > 4.0 * sd) || slope >= 1.0) return -1.0;
  const double ln = std::log(slope);
  if (se != nullptr) *se = sd / (slope * ln * ln);
  return -1.0 / ln;
}

double rail_from_edges(const Trace& tr, std::vector<EdgeFix>& fixes,
                       const std::vector<bool>& for_tau, double* se) {
  const std::vector<EdgeFix> raw = fixes;
  double tau = 0.0, tau_se = 0.0;
  int settle = 3;
  for (int pass = 0; pass < 2; ++pass) {
    fixes = raw;
    std::vector<EdgeFix> used;
    for (std::size_t i = 0; i < fixes.size(); ++i) {
      relevel_edge(tr, fixes[i], settle);
      if (for_tau[i] && fixes[i].ok) used.push_back(fixes[i]);
    }
    tau = estimate_tau_pairs(used, &tau_se);
    if (tau < 0.0) tau = estimate_tau(used, &tau_se);
    settle = std::max(3, static_cast<int>(std::ceil(7.0 * tau)) + 1);
  }
  if (se != nullptr) *se = tau_se;
  return tau;
}

double tau_sensitivity(std::span<const EdgeFix> edges, double tau) {
  double sum = 0.0;
  std::size_t n = 0;
  for (const EdgeFix& e : edges) {
    if (!e.ok) continue;
    const double sat = 1.0 - std::max(0.03, 3.0 * e.noise_z);
    if (tau > 0.0 && e.first_z < sat) sum += -std::log(1.0 - std::max(0.0, e.first_z));
    ++n;
  }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

void Tracker::add(std::int64_t device_ns, std::int64_t monitor_ns) {
  auto it = std::lower_bound(anchors_.begin(), anchors_.end(), device_ns,
                             [](const Anchor& a, std::int64_t d) { return a.device_ns < d; });
  anchors_.insert(it, Anchor{device_ns, monitor_ns});
}

std::pair<std::int64_t, std::int64_t> Tracker::predict(std::int64_t d) const {
  if (anchors_.empty()) return {0, std::numeric_limits<std::int64_t>::max() / 4};
  auto it = std::lower_bound(anchors_.begin(), anchors_.end(), d,
                             [](const Anchor& a, std::int64_t x) { return a.device_ns < x; });
  // the nearest anchor, and its neighbour on the far side for the rate
  std::size_t k = static_cast<std::size_t>(it - anchors_.begin());
  if (k == anchors_.size() || (k > 0 && d - anchors_[k - 1].device_ns < anchors_[k].device_ns - d))
    k = k == 0 ? 0 : k - 1;
  const Anchor& a = anchors_[k];
  double rate = 1.0;
  double ppm = ppm_one_;
  if (anchors_.size() >= 2) {
    std::size_t kb = k == 0 ? 1 : (k + 1 < anchors_.size() && d > a.device_ns ? k + 1 : k - 1);
    // walk outwards (towards the side already chosen) until the baseline is long enough
    const bool up = kb > k;
    while (std::abs(anchors_[kb].device_ns - a.device_ns) < min_baseline_ &&
           (up ? kb + 1 < anchors_.size() : kb > 0))
      kb = up ? kb + 1 : kb - 1;
    const Anchor& b = anchors_[kb];
    if (b.device_ns != a.device_ns && std::abs(b.device_ns - a.device_ns) >= min_baseline_) {
      rate = static_cast<double>(b.monitor_ns - a.monitor_ns) /
             static_cast<double>(b.device_ns - a.device_ns);
      ppm = ppm_many_;
    }
  }
  const double dist = static_cast<double>(d - a.device_ns);
  const std::int64_t m = a.monitor_ns + std::llround(rate * dist);
  return {m, base_ + std::llround(std::abs(dist) * ppm * 1e-6)};
}

namespace {

/// Trace bins of bin_ns over [lo_ns, hi_ns): mean of the valid samples (NaN bins: the mean).
std::vector<double> bin_trace(const Trace& tr, std::int64_t lo_ns, std::int64_t hi_ns,
                              std::int64_t bin_ns) {
  const auto nb = static_cast<std::size_t>((hi_ns - lo_ns) / bin_ns);
  std::vector<double> sum(nb, 0.0), cnt(nb, 0.0);
  const double p = tr.period_ns();
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  const auto i0 = std::max<std::int64_t>(0, static_cast<std::int64_t>(tr.pos_of(lo_ns)));
  const auto i1 = std::min<std::int64_t>(n, static_cast<std::int64_t>(tr.pos_of(hi_ns)) + 1);
  for (std::int64_t i = i0; i < i1; ++i) {
    const float s = tr.samples[static_cast<std::size_t>(i)];
    const double t = (static_cast<double>(tr.first_index + i)) * p;
    const auto k = static_cast<std::int64_t>(
        std::floor((t - static_cast<double>(lo_ns)) / static_cast<double>(bin_ns)));
    if (std::isnan(s) || k < 0 || k >= static_cast<std::int64_t>(nb)) continue;
    sum[static_cast<std::size_t>(k)] += s;
    cnt[static_cast<std::size_t>(k)] += 1.0;
  }
  double tot = 0.0, tc = 0.0;
  for (std::size_t k = 0; k < nb; ++k) {
    tot += sum[k];
    tc += cnt[k];
  }
  const double mean = tc > 0.0 ? tot / tc : 0.0;
  for (std::size_t k = 0; k < nb; ++k)
    sum[k] = cnt[k] > 0.0 ? sum[k] / cnt[k] - mean : 0.0;
  return sum;
}

std::vector<double> bin_busy(std::span<const BusySpan> busy, std::int64_t from, std::int64_t to,
                             std::int64_t bin) {
  const auto nb = static_cast<std::size_t>((to - from) / bin);
  std::vector<double> e(nb, 0.0);
  for (const BusySpan& s : busy) {
    std::int64_t a = std::max(s.from_ns, from), b = std::min(s.to_ns, to);
    while (a < b) {
      const auto k = static_cast<std::size_t>((a - from) / bin);
      if (k >= nb) break;
      const std::int64_t end = std::min(b, from + static_cast<std::int64_t>(k + 1) * bin);
      e[k] += static_cast<double>(end - a) / static_cast<double>(bin);
      a = end;
    }
  }
  const double mean =
      nb > 0 ? std::accumulate(e.begin(), e.end(), 0.0) / static_cast<double>(nb) : 0.0;
  for (double& v : e)
    v -= mean;
  return e;
}

}  // namespace

std::optional<std::int64_t> coarse_align(const Trace& tr, std::span<const BusySpan> busy,
                                         std::int64_t from_ns, std::int64_t to_ns,
                                         std::int64_t bin_ns, std::int64_t lo_ns,
                                         std::int64_t hi_ns, double* score) {
  const std::vector<double> env = bin_busy(busy, from_ns, to_ns, bin_ns);
  double env_ss = 0.0;
  for (double v : env)
    env_ss += v * v;
  if (env.size() < 4 || env_ss <= 0.0) return std::nullopt;
  const std::vector<double> x = bin_trace(tr, lo_ns, hi_ns + (to_ns - from_ns), bin_ns);
  const std::vector<double> c = cross_correlate(x, env);
  if (c.empty()) return std::nullopt;
  const auto best = static_cast<std::size_t>(std::max_element(c.begin(), c.end()) - c.begin());
  double x_ss = 0.0;
  for (std::size_t j = 0; j < env.size(); ++j)
    x_ss += x[best + j] * x[best + j];
  if (score != nullptr) *score = x_ss > 0.0 ? c[best] / std::sqrt(x_ss * env_ss) : 0.0;
  if (c[best] <= 0.0) return std::nullopt;
  // parabolic interpolation of the peak
  double frac = 0.0;
  if (best > 0 && best + 1 < c.size()) {
    const double den = c[best - 1] - 2.0 * c[best] + c[best + 1];
    if (den < 0.0) frac = 0.5 * (c[best - 1] - c[best + 1]) / den;
  }
  return lo_ns + std::llround((static_cast<double>(best) + frac) * static_cast<double>(bin_ns));
}

}  // namespace meltrig::sync
