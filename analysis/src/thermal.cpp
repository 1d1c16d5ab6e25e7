// Thermal analysis: see thermal.hpp.
#include "meltrig/analysis/thermal.hpp"

#include <algorithm>
#include <cmath>

#include "meltrig/analysis/stats.hpp"

namespace meltrig::analysis {

namespace {

const TimedSeries* find_series(std::span<const TimedSeries> tel, const std::string& name) {
  for (const TimedSeries& s : tel)
    if (s.name == name) return &s;
  return nullptr;
}

std::optional<double> first_where(const TimedSeries& s, auto pred) {
  for (std::size_t i = 0; i < s.t_s.size(); ++i)
    if (pred(s.value[i])) return s.t_s[i];
  return std::nullopt;
}

std::optional<double> cap_onset(std::span<const TimedSeries> tel, const ThermalConfig& cfg) {
  const TimedSeries* cap = find_series(tel, cfg.cap);
  if (cap == nullptr || cap->value.empty()) return std::nullopt;
  double top = cfg.max_freq_mhz;
  if (std::isnan(top)) top = *std::max_element(cap->value.begin(), cap->value.end());
  return first_where(*cap, [top](double v) { return v < top; });
}

std::optional<double> cooling_onset(std::span<const TimedSeries> tel, const ThermalConfig& cfg) {
  std::optional<double> best;
  for (const TimedSeries& s : tel) {
    if (cfg.cooling.empty() || s.name.find(cfg.cooling) == std::string::npos) continue;
    auto t = first_where(s, [](double v) { return v > 0.0; });
    if (t && (!best || *t < *best)) best = t;
  }
  return best;
}

// Rolling median of tokens/s within each repetition; the first window below the threshold.
std::optional<double> rate_onset(const std::vector<ThermalPoint>& pts, const ThermalConfig& cfg,
                                 double cold) {
  const double limit = cold * (1.0 - cfg.tok_s_drop_pct / 100.0);
  const std::size_t n = std::max<std::size_t>(cfg.rolling_tokens, 1);
  std::vector<double> win;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (i > 0 && pts[i].repetition != pts[i - 1].repetition) win.clear();
    win.push_back(pts[i].tok_s);
    if (win.size() > n) win.erase(win.begin());
    if (win.size() == n && median_of(win) < limit) return pts[i].t_s;
  }
  return std::nullopt;
}

std::vector<ThermalPoint> bin_points(const std::vector<ThermalPoint>& pts, double bin_s) {
  std::vector<ThermalPoint> out;
  std::size_t i = 0;
  while (i < pts.size()) {
    const double b0 = std::floor(pts[i].t_s / bin_s) * bin_s;
    ThermalPoint acc{b0 + 0.5 * bin_s, 0.0, 0.0, 0.0, 0.0, pts[i].repetition};
    std::size_t n = 0;
    double dur = 0.0;
    for (; i < pts.size() && pts[i].t_s < b0 + bin_s; ++i, ++n) {
      acc.temp_c += pts[i].temp_c;
      dur += 1.0 / pts[i].tok_s;
      acc.j_per_token += pts[i].j_per_token;
      acc.j_per_token_net += pts[i].j_per_token_net;
    }
    const auto k = static_cast<double>(n);
    acc.temp_c /= k;
    acc.tok_s = k / dur;
    acc.j_per_token /= k;
    acc.j_per_token_net /= k;
    out.push_back(acc);
  }
  return out;
}

}  // namespace

ThermalResult analyze_thermal(const RunResult& run, std::span<const TimedSeries> tel,
                              const ThermalConfig& cfg) {
  ThermalResult out;
  const TimedSeries* temp = find_series(tel, cfg.temperature);
  for (const TokenResult& t : run.tokens) {
    const double d = t.end_s - t.start_s;
    if (!(d > 0.0)) continue;
    ThermalPoint p;
    p.t_s = t.end_s;
    p.temp_c = temp != nullptr ? value_at(*temp, t.end_s) : p.temp_c;
    p.tok_s = 1.0 / d;
    p.j_per_token = t.stats.energy_j;
    p.j_per_token_net = t.net_energy_j;
    p.repetition = t.repetition;
    out.tokens.push_back(p);
  }
  std::vector<double> cold;
  for (std::size_t i = 0; i < out.tokens.size() && i < cfg.cold_tokens; ++i)
    cold.push_back(out.tokens[i].tok_s);
  out.cold_median_tok_s = median_of(cold);
  out.cooling_onset_s = cooling_onset(tel, cfg);
  out.cap_onset_s = cap_onset(tel, cfg);
  out.tok_s_onset_s = rate_onset(out.tokens, cfg, out.cold_median_tok_s);
  const std::pair<const char*, std::optional<double>> triggers[] = {
      {"cooling_state", out.cooling_onset_s},
      {"frequency_cap", out.cap_onset_s},
      {"tokens_per_s", out.tok_s_onset_s}};
  for (const auto& [name, t] : triggers) {
    if (t && (!out.onset_s || *t < *out.onset_s)) {
      out.onset_s = t;
      out.trigger = name;
    }
  }
  if (cfg.bin_s > 0) out.bins = bin_points(out.tokens, cfg.bin_s);
  return out;
}

}  // namespace meltrig::analysis
