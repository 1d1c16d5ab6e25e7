// Software power estimates against the monitor: see software.hpp.
#include "meltrig/analysis/software.hpp"

#include <algorithm>
#include <cmath>

#include "meltrig/analysis/stats.hpp"

namespace meltrig::analysis {

namespace {

bool overlaps(std::span<const Window> ws, double a, double b) {
  return std::any_of(ws.begin(), ws.end(),
                     [&](const Window& w) { return w.t0_s < b && a < w.t1_s; });
}

// Integral over [x_0, x] of the step function v_k on (x_{k-1}, x_k].
double held_integral(const std::vector<double>& x, const std::vector<double>& v,
                     const std::vector<double>& cum, double t) {
  if (t <= x.front()) return 0.0;
  if (t >= x.back()) return cum.back();
  auto k = static_cast<std::size_t>(std::upper_bound(x.begin(), x.end(), t) - x.begin());
  return cum[k - 1] + v[k] * (t - x[k - 1]);
}

}  // namespace

double watts_per_unit(const std::string& unit, double supply_v) {
  if (unit == "W") return 1.0;
  if (unit == "mW") return 1e-3;
  if (unit == "uW") return 1e-6;
  if (unit == "A") return supply_v;
  if (unit == "mA") return 1e-3 * supply_v;
  if (unit == "uA") return 1e-6 * supply_v;
  return std::numeric_limits<double>::quiet_NaN();
}

ErrorStats error_stats(std::span<const double> e, std::span<const double> r) {
  ErrorStats s;
  s.n = std::min(e.size(), r.size());
  if (s.n == 0) return s;
  std::vector<double> rel, abs_rel;
  double se = 0.0, sr = 0.0, see = 0.0, srr = 0.0, ser = 0.0, sq = 0.0;
  for (std::size_t i = 0; i < s.n; ++i) {
    se += e[i];
    sr += r[i];
    sq += (e[i] - r[i]) * (e[i] - r[i]);
    rel.push_back(100.0 * (e[i] - r[i]) / r[i]);
    abs_rel.push_back(std::abs(rel.back()));
  }
  const auto n = static_cast<double>(s.n);
  const double me = se / n, mr = sr / n;
  for (std::size_t i = 0; i < s.n; ++i) {
    see += (e[i] - me) * (e[i] - me);
    srr += (r[i] - mr) * (r[i] - mr);
    ser += (e[i] - me) * (r[i] - mr);
  }
  s.mean_reference_w = mr;
  s.bias_pct = 100.0 * (me - mr) / mr;
  s.mape_pct = mean_of(abs_rel);
  s.rmse_w = std::sqrt(sq / n);
  if (see > 0 && srr > 0) s.r = ser / std::sqrt(see * srr);
  const double m = mean_of(rel), sd = s.n > 1 ? sd_of(rel) : 0.0;
  s.loa_low_pct = m - 1.96 * sd;
  s.loa_high_pct = m + 1.96 * sd;
  return s;
}

SoftwarePlan::SoftwarePlan(std::span<const TimedSeries> telemetry, std::span<const Window> usb,
                           const SoftwareConfig& cfg)
    : cfg_(cfg) {
  for (const TimedSeries& s : telemetry) {
    if (!s.name.starts_with(cfg.prefix) || s.t_s.size() < 2) continue;
    double to_w = watts_per_unit(s.unit, cfg.supply_v);
    if (std::isnan(to_w)) {
      Plan p;
      p.head.series = s.name;
      p.head.unit = s.unit;
      p.head.note = "unit '" + s.unit + "' not convertible to watts (a current needs supply_v)";
      plans_.push_back(std::move(p));
      continue;
    }
    if (median_of(s.value) < 0.0) to_w = -to_w;  // discharge reported negative
    plan_series(s, to_w, usb);
  }
}

void SoftwarePlan::plan_series(const TimedSeries& s, double to_w, std::span<const Window> usb) {
  Plan p;
  p.head.series = s.name;
  p.head.unit = s.unit;
  p.head.to_watts = to_w;
  const bool own_window = !std::isnan(s.window_s);
  std::vector<double> x{s.t_s[0] - s.lag_s}, v{0.0}, cum{0.0};
  for (std::size_t k = 0; k < s.t_s.size(); ++k) {
    const double b = s.t_s[k] - s.lag_s;
    if (k > 0) {
      x.push_back(b);
      v.push_back(s.value[k] * to_w);
      cum.push_back(cum.back() + v.back() * (b - x[x.size() - 2]));
    }
    if (!own_window && k == 0) continue;
    const double a = own_window ? b - s.window_s : s.t_s[k - 1] - s.lag_s;
    p.readings.push_back({windows_.size(), s.value[k] * to_w, overlaps(usb, a, b)});
    windows_.push_back({a, b});
  }
  for (double len : cfg_.window_lengths_s) {
    std::vector<Tile> tiles;
    for (double a = x.front(); a + len <= x.back(); a += len) {
      if (overlaps(usb, a, a + len)) continue;
      double mean = (held_integral(x, v, cum, a + len) - held_integral(x, v, cum, a)) / len;
      tiles.push_back({windows_.size(), mean});
      windows_.push_back({a, a + len});
    }
    p.tiles.push_back(std::move(tiles));
  }
  plans_.push_back(std::move(p));
}

std::vector<SoftwareResult> SoftwarePlan::finish(std::span<const WindowStats> stats) const {
  std::vector<SoftwareResult> out;
  for (const Plan& p : plans_) {
    SoftwareResult r = p.head;
    std::vector<double> e, ref, ue, uref;
    for (const Reading& rd : p.readings) {
      const WindowStats& w = stats[rd.window];
      if (w.touches_gap()) {
        ++r.skipped;
        continue;
      }
      (rd.usb ? ue : e).push_back(rd.estimate_w);
      (rd.usb ? uref : ref).push_back(w.mean_w());
      r.pairs.push_back({windows_[rd.window].t1_s, rd.estimate_w, w.mean_w(), rd.usb});
    }
    r.readings = error_stats(e, ref);
    r.usb = error_stats(ue, uref);
    for (std::size_t li = 0; li < p.tiles.size(); ++li) {
      std::vector<double> te, tr;
      for (const Tile& t : p.tiles[li]) {
        if (stats[t.window].touches_gap()) continue;
        te.push_back(t.estimate_w);
        tr.push_back(stats[t.window].mean_w());
      }
      r.by_length.push_back({cfg_.window_lengths_s[li], error_stats(te, tr)});
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace meltrig::analysis
