// analyze_run: lays out every boundary and window of the run, integrates them in one pass over
// the samples, refines token boundaries and assembles the results (run.hpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "meltrig/analysis/run.hpp"
#include "meltrig/analysis/stats.hpp"

namespace meltrig::analysis {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr const char* kPhaseNames[] = {"load",        "prefill",    "decode",
                                       "idle_before", "idle_after", "cooldown"};
constexpr std::size_t kPhases = 6;

// Where one repetition's boundaries (probes) and windows sit in the flat lists.
struct RepLayout {
  std::size_t probe0 = 0;   // load.start, load.end, prefill.start, prefill.end, tokens...
  std::size_t window0 = 0;  // 6 phase windows, then one per token
  std::size_t before0 = 0, before_n = 0, after0 = 0, after_n = 0;  // baseline blocks
};

struct Layout {
  std::vector<Event> probes;
  std::vector<Window> windows;
  std::vector<RepLayout> reps;
  std::size_t extra0 = 0;
};

void add_blocks(Layout& l, const Window& w, double block_s, std::size_t& first, std::size_t& n) {
  first = l.windows.size();
  auto count = static_cast<std::size_t>(std::floor((w.t1_s - w.t0_s) / block_s + 1e-9));
  for (std::size_t k = 0; k < count; ++k) {
    double a = w.t0_s + static_cast<double>(k) * block_s;
    l.windows.push_back({a, a + block_s});
  }
  n = count;
}

Layout lay_out(const std::vector<RepPlan>& plans, const RunConfig& cfg,
               std::span<const Window> extra) {
  Layout l;
  for (const RepPlan& p : plans) {
    RepLayout r;
    r.probe0 = l.probes.size();
    Event none{p.prefill_start.t_s, 0.0, EventKind::load_start, -1};
    l.probes.push_back(p.has_load ? p.load_start : none);
    l.probes.push_back(p.has_load ? p.load_end : none);
    l.probes.push_back(p.prefill_start);
    l.probes.push_back(p.prefill_end);
    l.probes.insert(l.probes.end(), p.tokens.begin(), p.tokens.end());
    r.window0 = l.windows.size();
    l.windows.push_back({l.probes[r.probe0].t_s, l.probes[r.probe0 + 1].t_s});
    l.windows.push_back({p.prefill_start.t_s, p.prefill_end.t_s});
    l.windows.push_back({p.prefill_end.t_s, p.tokens.back().t_s});
    l.windows.push_back(p.before);
    l.windows.push_back(p.after);
    l.windows.push_back(p.cooldown);
    double prev = p.prefill_end.t_s;
    for (const Event& e : p.tokens) {
      l.windows.push_back({prev, e.t_s});
      prev = e.t_s;
    }
    const BaselineConfig& b = cfg.baseline;
    if (b.side != BaselineSide::after) add_blocks(l, p.before, b.block_s, r.before0, r.before_n);
    if (b.side != BaselineSide::before) add_blocks(l, p.after, b.block_s, r.after0, r.after_n);
    l.reps.push_back(r);
  }
  l.extra0 = l.windows.size();
  l.windows.insert(l.windows.end(), extra.begin(), extra.end());
  return l;
}

// Means of the gap-free blocks [first, first + n).
std::vector<double> block_means(const WindowIntegrator& wi, std::size_t first, std::size_t n) {
  std::vector<double> out;
  for (std::size_t k = first; k < first + n; ++k) {
    const WindowStats& s = wi.window(k);
    if (!s.touches_gap()) out.push_back(s.mean_w());
  }
  return out;
}

Baseline baseline_of(const WindowIntegrator& wi, const RepLayout& r) {
  Baseline b;
  auto before = block_means(wi, r.before0, r.before_n);
  auto after = block_means(wi, r.after0, r.after_n);
  b.before_w = median_of(before);
  b.after_w = median_of(after);
  std::vector<double> all = before;
  all.insert(all.end(), after.begin(), after.end());
  b.blocks = all.size();
  b.w = median_of(all);
  b.sd_w = sd_of(all);
  return b;
}

struct Boundaries {
  std::vector<double> t;
  std::vector<char> refined;
};

Boundaries refine_all(const WindowIntegrator& wi, const Layout& l, const RunConfig& cfg) {
  Boundaries b;
  b.t.resize(l.probes.size());
  b.refined.assign(l.probes.size(), 0);
  for (std::size_t i = 0; i < l.probes.size(); ++i) {
    const Event& e = l.probes[i];
    b.t[i] = e.t_s;
    if (!cfg.refine || e.uncertainty_s <= 0.0) continue;
    double u = std::min(e.uncertainty_s, cfg.max_uncertainty_s);
    Refinement r = refine_boundary(wi.snippet(i), wi.rate_hz(), e.t_s, u, cfg.refinement);
    b.t[i] = r.t_s;
    b.refined[i] = r.refined ? 1 : 0;
  }
  return b;
}

// Stats between boundaries a and b (refined times), with the peak of the marker window w.
WindowStats span_stats(const WindowIntegrator& wi, const Boundaries& bd, std::size_t a,
                       std::size_t b, std::size_t w) {
  CumState sa = state_at(wi.snippet(a), wi.rate_hz(), bd.t[a]);
  CumState sb = state_at(wi.snippet(b), wi.rate_hz(), bd.t[b]);
  WindowStats s = between(sa, sb, bd.t[b] - bd.t[a]);
  s.peak_w = wi.window(w).peak_w;
  return s;
}

PhaseResult phase_from(const char* name, double t0, double t1, const WindowStats& s,
                       double baseline_w) {
  PhaseResult p;
  p.name = name;
  p.present = t1 >= t0 && (t1 > t0 || std::string_view(name) != "cooldown");
  p.start_s = t0;
  p.end_s = t1;
  p.stats = s;
  p.net_energy_j = s.energy_j - baseline_w * s.covered_s;
  return p;
}

void fill_phases(RepResult& rr, const WindowIntegrator& wi, const Layout& l, const RepLayout& r,
                 const Boundaries& bd, const RepPlan& p) {
  const std::size_t q = r.probe0, last = q + 3 + p.tokens.size();
  const std::size_t pairs[3][2] = {{q, q + 1}, {q + 2, q + 3}, {q + 3, last}};
  for (std::size_t k = 0; k < kPhases; ++k) {
    const std::size_t w = r.window0 + k;
    WindowStats s = k < 3 ? span_stats(wi, bd, pairs[k][0], pairs[k][1], w) : wi.window(w);
    double t0 = k < 3 ? bd.t[pairs[k][0]] : l.windows[w].t0_s;
    double t1 = k < 3 ? bd.t[pairs[k][1]] : l.windows[w].t1_s;
    rr.phases.push_back(phase_from(kPhaseNames[k], t0, t1, s, rr.baseline.w));
  }
  rr.phases[0].present = p.has_load;
  rr.phases[1].tokens = p.prefill_end.index >= 0 ? p.prefill_end.index : p.prefill_start.index;
  rr.phases[2].tokens = static_cast<std::int64_t>(p.tokens.size());
}

void fill_tokens(RunResult& out, RepResult& rr, const WindowIntegrator& wi, const RepLayout& r,
                 const Boundaries& bd, const RepPlan& p) {
  const std::size_t q = r.probe0 + 3;  // prefill.end, then the tokens
  for (std::size_t i = 0; i < p.tokens.size(); ++i) {
    TokenResult t;
    t.repetition = rr.index;
    t.index = p.tokens[i].index;
    t.start_s = bd.t[q + i];
    t.end_s = bd.t[q + i + 1];
    t.marker_end_s = p.tokens[i].t_s;
    t.stats = span_stats(wi, bd, q + i, q + i + 1, r.window0 + kPhases + i);
    t.net_energy_j = t.stats.energy_j - rr.baseline.w * t.stats.covered_s;
    t.refined = bd.refined[q + i + 1] != 0;
    rr.refined_boundaries += t.refined ? 1 : 0;
    out.tokens.push_back(t);
  }
  rr.token_boundaries = p.tokens.size();
}

void fill_rates(RepResult& rr, const RepPlan& p) {
  const PhaseResult& pf = rr.phases[1];
  const PhaseResult& dc = rr.phases[2];
  rr.prompt_tokens = pf.tokens;
  rr.output_tokens = dc.tokens;
  const auto n = static_cast<double>(dc.tokens);
  rr.ttft_s = p.tokens.front().t_s - p.prefill_start.t_s;
  rr.prefill_tok_s = pf.duration_s() > 0 ? static_cast<double>(pf.tokens) / pf.duration_s() : kNaN;
  rr.decode_tok_s = dc.duration_s() > 0 ? n / dc.duration_s() : kNaN;
  rr.j_per_token = dc.stats.energy_j / n;
  rr.j_per_token_net = dc.net_energy_j / n;
  rr.melt_j_per_token = (pf.stats.energy_j + dc.stats.energy_j) / n;
}

}  // namespace

namespace {

/// Tokens whose window touches a gap are analysed and flagged (touches_gap); one warning names
/// how many and the first one's position.
void gap_warning(RunResult& run) {
  std::size_t n = 0;
  const TokenResult* first = nullptr;
  for (const TokenResult& t : run.tokens) {
    if (!t.stats.touches_gap()) continue;
    ++n;
    if (first == nullptr) first = &t;
  }
  if (first == nullptr) return;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%zu token(s) touch a gap in the power trace (first: repetition %d token %lld, "
                "%.6f-%.6f s, %llu missing samples); their energy covers the valid samples only",
                n, first->repetition, static_cast<long long>(first->index), first->start_s,
                first->end_s, static_cast<unsigned long long>(first->stats.missing_samples));
  run.warnings.push_back(buf);
}

}  // namespace

Result<RunAnalysis> analyze_run(const SampleSeries& samples, std::span<const Event> events,
                                const RunConfig& cfg, std::span<const Window> extra) {
  if (!(samples.rate_hz > 0.0)) return make_error(Errc::invalid_argument, "sample rate not > 0");
  auto plans = plan_repetitions(events, cfg.baseline);
  if (!plans) return plans.error();
  const Layout l = lay_out(*plans, cfg, extra);
  std::vector<double> probe_t;
  double u_max = 0.0;
  for (const Event& e : l.probes) {
    probe_t.push_back(e.t_s);
    u_max = std::max(u_max, std::min(e.uncertainty_s, cfg.max_uncertainty_s));
  }
  const RefineConfig& rc = cfg.refinement;
  double radius = u_max + 3.0 * rc.rail_tau_max_s + std::max(rc.flank_s, 4.0 / samples.rate_hz) +
                  2.0 / samples.rate_hz;
  WindowIntegrator wi(samples.rate_hz, l.windows, probe_t, radius);
  auto fed = samples.for_each_chunk(
      [&wi](std::uint64_t first, std::span<const float> p) { return wi.add(first, p); });
  if (!fed) return fed.error();
  wi.finish();
  if (wi.samples_seen() == 0) return make_error(Errc::invalid_argument, "no power samples");
  const Boundaries bd = refine_all(wi, l, cfg);
  RunAnalysis out;
  out.run.rate_hz = samples.rate_hz;
  out.run.samples = wi.samples_seen();
  std::vector<double> bases;
  for (std::size_t r = 0; r < plans->size(); ++r) {
    RepResult rr;
    rr.index = static_cast<int>(r);
    rr.start_s = (*plans)[r].start_s;
    rr.end_s = (*plans)[r].end_s;
    rr.baseline = baseline_of(wi, l.reps[r]);
    if (std::isnan(rr.baseline.w))
      out.run.warnings.push_back(std::string("repetition ") + std::to_string(r) +
                                 ": no gap-free idle window for the baseline; net figures are NaN");
    fill_phases(rr, wi, l, l.reps[r], bd, (*plans)[r]);
    fill_tokens(out.run, rr, wi, l.reps[r], bd, (*plans)[r]);
    fill_rates(rr, (*plans)[r]);
    if (!std::isnan(rr.baseline.w)) bases.push_back(rr.baseline.w);
    out.run.reps.push_back(std::move(rr));
  }
  out.run.baseline_w = mean_of(bases);
  out.run.baseline_sd_w = sd_of(bases);
  gap_warning(out.run);
  for (std::size_t k = l.extra0; k < l.windows.size(); ++k)
    out.extra_stats.push_back(wi.window(k));
  return out;
}

}  // namespace meltrig::analysis
