// Coded power-signature pulses: FFT cross-correlation against the code near the predicted place,
// then each chip edge located on its own (see sync.hpp, docs/sync.md).
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "meltrig/sync/sync.hpp"

namespace meltrig::sync {
namespace {

struct PulseSpec {
  std::int64_t t0_ns;
  std::uint64_t code;
  std::uint32_t bits;
  std::int64_t chip_ns;
  bool bit(std::uint32_t k) const { return ((code >> (bits - 1U - k)) & 1U) != 0; }
};

/// The +-1 chip template at the trace's rate.
std::vector<double> chip_template(const PulseSpec& p, double chip_samples) {
  const auto m = static_cast<std::size_t>(std::ceil(chip_samples * p.bits));
  std::vector<double> t(m);
  for (std::size_t j = 0; j < m; ++j) {
    auto k = static_cast<std::uint32_t>((static_cast<double>(j) + 0.5) / chip_samples);
    t[j] = p.bit(std::min(k, p.bits - 1U)) ? 1.0 : -1.0;
  }
  return t;
}

/// A correlation peak: start position in the trace, peak-to-sidelobe ratio, Pearson score.
struct Peak {
  double pos = 0.0;
  double psr = 0.0;
  double pearson = 0.0;
};

std::optional<Peak> correlate_pulse(const Trace& tr, const PulseSpec& p, double pred_pos,
                                    double half) {
  const double chip = static_cast<double>(p.chip_ns) / tr.period_ns();
  const std::vector<double> tmpl = chip_template(p, chip);
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  const auto a = std::max<std::int64_t>(0, static_cast<std::int64_t>(pred_pos - half));
  const auto b = std::min<std::int64_t>(
      n, static_cast<std::int64_t>(pred_pos + half) + static_cast<std::int64_t>(tmpl.size()) + 1);
  if (b - a < static_cast<std::int64_t>(tmpl.size()) + 2) return std::nullopt;
  std::vector<double> x(static_cast<std::size_t>(b - a));
  for (std::int64_t i = a; i < b; ++i)
    x[static_cast<std::size_t>(i - a)] = tr.samples[static_cast<std::size_t>(i)];
  double mean = 0.0, cnt = 0.0;
  for (double v : x)
    if (!std::isnan(v)) mean += v, cnt += 1.0;
  mean = cnt > 0.0 ? mean / cnt : 0.0;
  for (double& v : x)
    v = std::isnan(v) ? 0.0 : v - mean;
  const std::vector<double> c = cross_correlate(x, tmpl);
  if (c.empty()) return std::nullopt;
  const auto best = static_cast<std::size_t>(std::max_element(c.begin(), c.end()) - c.begin());
  double side = 0.0;
  for (std::size_t k = 0; k < c.size(); ++k)
    if (std::abs(static_cast<double>(k) - static_cast<double>(best)) > chip)
      side = std::max(side, std::abs(c[k]));
  // Pearson correlation of the window at the peak with the template
  double sx = 0.0, sxx = 0.0, sxt = 0.0, st = 0.0, stt = 0.0;
  for (std::size_t j = 0; j < tmpl.size(); ++j) {
    const double v = x[best + j];
    sx += v, sxx += v * v, sxt += v * tmpl[j], st += tmpl[j], stt += tmpl[j] * tmpl[j];
  }
  const double m = static_cast<double>(tmpl.size());
  const double cov = sxt - sx * st / m;
  const double den = std::sqrt(std::max(0.0, sxx - sx * sx / m) * std::max(0.0, stt - st * st / m));
  Peak pk;
  pk.pos = static_cast<double>(a) + static_cast<double>(best);
  pk.psr = side > 0.0 ? c[best] / side : 1e9;
  pk.pearson = den > 0.0 ? cov / den : 0.0;
  return pk;
}

double median_range(const Trace& tr, double from, double to) {
  std::vector<double> v;
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  for (auto i = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::ceil(from)));
       i < std::min<std::int64_t>(n, static_cast<std::int64_t>(to)); ++i)
    if (!std::isnan(tr.samples[static_cast<std::size_t>(i)]))
      v.push_back(tr.samples[static_cast<std::size_t>(i)]);
  if (v.empty()) return std::nan("");
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

/// An edge of a found pulse, before the rail model places it.
struct PendingEdge {
  EdgeFix fix;
  std::int64_t device_ns;
  bool rising;
  std::uint32_t source;
};

/// Busy and idle levels from the chip interiors; the edges at every level change, including the
/// pulse's first and last edge when the level outside is the other one.
void pulse_edges(const Trace& tr, const PulseSpec& p, double start, std::uint32_t source,
                 std::vector<PendingEdge>& out) {
  const double chip = static_cast<double>(p.chip_ns) / tr.period_ns();
  std::vector<double> busy, idle;
  for (std::uint32_t k = 0; k < p.bits; ++k) {
    const double lv = median_range(tr, start + (k + 0.25) * chip, start + (k + 0.75) * chip);
    if (!std::isnan(lv)) (p.bit(k) ? busy : idle).push_back(lv);
  }
  if (busy.empty() || idle.empty()) return;
  std::sort(busy.begin(), busy.end());
  std::sort(idle.begin(), idle.end());
  const double hi = busy[busy.size() / 2], lo = idle[idle.size() / 2], step = hi - lo;
  if (step <= 0.0) return;
  auto level_is = [&](double v, bool high) { return std::abs(v - (high ? hi : lo)) < 0.3 * step; };
  const double len = std::max(2.0, 0.4 * chip), margin = 3.0 + 0.02 * chip;
  for (std::uint32_t k = 0; k <= p.bits; ++k) {
    bool before, after = k < p.bits && p.bit(k);
    if (k == 0 || k == p.bits) {
      const double edge = start + k * chip;
      const double o = k == 0 ? median_range(tr, edge - margin - len, edge - margin)
                              : median_range(tr, edge + margin, edge + margin + len);
      const bool inside = p.bit(k == 0 ? 0 : p.bits - 1);
      if (std::isnan(o) || !level_is(o, !inside)) continue;
      before = k == 0 ? !inside : inside;
      after = k == 0 ? inside : !inside;
    } else {
      before = p.bit(k - 1);
    }
    if (before == after) continue;
    // a busy chip may start at a governor's low step: a rise needs less of the full step
    EdgeRequest rq{start + k * chip, margin, after, len, len, (after ? 0.1 : 0.3) * step};
    EdgeFix f = find_edge(tr, rq);
    if (f.ok) out.push_back({f, p.t0_ns + static_cast<std::int64_t>(k) * p.chip_ns, after, source});
  }
}

std::vector<SyncPoint> place(const Trace& tr, std::vector<PendingEdge>& pending, double tau) {
  std::vector<SyncPoint> pts;
  for (PendingEdge& e : pending) {
    apply_rail(e.fix, tau);
    SyncPoint sp;
    sp.device_ns = e.device_ns;
    sp.target_ns = tr.ns_of(e.fix.pos);
    sp.sigma_ns = std::max<std::int64_t>(1, std::llround(e.fix.sigma * tr.period_ns()));
    sp.kind = EvidenceKind::pulse_edge;
    sp.late_biased = e.rising;
    sp.source = e.source;
    pts.push_back(sp);
  }
  return pts;
}

std::vector<PulseSpec> pulses_in(std::span<const Mark> marks) {
  std::vector<PulseSpec> out;
  for (const Mark& m : marks)
    if (m.kind == MarkKind::sync_start && m.bits > 0 && m.bits <= 64 && m.chip_ns > 0)
      out.push_back({m.t_ns, m.code, m.bits, m.chip_ns});
  return out;
}

}  // namespace

std::vector<SyncPoint> pulse_points(const Trace& tr, std::span<const Mark> marks,
                                    const std::function<std::int64_t(std::int64_t)>& to_cont,
                                    Tracker& tracker, PulseReport& report) {
  const std::vector<PulseSpec> pulses = pulses_in(marks);
  report.expected = pulses.size();
  std::vector<PendingEdge> pending;
  report.min_psr = 0.0;
  for (std::size_t i = 0; i < pulses.size(); ++i) {
    const PulseSpec& p = pulses[i];
    const std::int64_t cont = to_cont(p.t0_ns);
    auto [pred, half] = tracker.predict(cont);
    const double n = static_cast<double>(tr.samples.size());
    const double pos = tr.pos_of(pred);
    const double hw = std::min(static_cast<double>(half) / tr.period_ns(), 2.0 * n);
    auto pk = correlate_pulse(tr, p, pos, hw);
    if (!pk || pk->pearson < 0.5 || pk->psr < 1.5 || std::abs(pk->pos - pos) > hw) {
      report.misses.push_back(
          "pulse " + std::to_string(i) + " at device " + std::to_string(p.t0_ns) + " ns: " +
          (pk ? "correlation " + std::to_string(pk->pearson) + ", PSR " + std::to_string(pk->psr)
              : std::string("outside the trace")));
      continue;
    }
    ++report.found;
    report.min_psr = report.found == 1 ? pk->psr : std::min(report.min_psr, pk->psr);
    tracker.add(cont, tr.ns_of(pk->pos));
    pulse_edges(tr, p, pk->pos, static_cast<std::uint32_t>(i), pending);
  }
  // every edge re-levelled next to itself; tau from the falling edges (a rise comes late and
  // may start at a governor's low step)
  std::vector<EdgeFix> all;
  std::vector<bool> falling;
  for (const PendingEdge& e : pending)
    all.push_back(e.fix), falling.push_back(!e.rising);
  double tau_se = 0.0;
  double tau = rail_from_edges(tr, all, falling, &tau_se);
  std::vector<EdgeFix> fixes;
  for (std::size_t i = 0; i < pending.size(); ++i) {
    pending[i].fix = all[i];
    if (falling[i] && all[i].ok) fixes.push_back(all[i]);
  }
  std::erase_if(pending, [](const PendingEdge& e) { return !e.fix.ok; });
  std::vector<SyncPoint> pts = place(tr, pending, tau);
  report.tau_ns = tau * tr.period_ns();
  report.tau_se_ns = tau_se * tr.period_ns();
  report.systematic_ns = std::llround(3.0 * report.tau_se_ns * tau_sensitivity(fixes, tau));
  return pts;
}

}  // namespace meltrig::sync
