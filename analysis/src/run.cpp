// Per-repetition, per-phase and per-token energy: see run.hpp.
#include "meltrig/analysis/run.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "meltrig/analysis/stats.hpp"

namespace meltrig::analysis {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Error bad(const std::string& what) {
  return make_error(Errc::invalid_argument, what);
}

std::string rep_name(std::size_t r) {
  return "repetition " + std::to_string(r);
}

// Checks one repetition's events and fills its baseline-independent fields.
Result<void> check_rep(const RepPlan& p, std::size_t r) {
  if (p.prefill_end.kind != EventKind::prefill_end)
    return bad(rep_name(r) + ": no prefill.end marker");
  if (p.prefill_start.kind != EventKind::prefill_start)
    return bad(rep_name(r) + ": no prefill.start marker");
  if (p.prefill_end.t_s < p.prefill_start.t_s)
    return bad(rep_name(r) + ": prefill.end before prefill.start");
  if (p.has_load && p.load_end.kind != EventKind::load_end)
    return bad(rep_name(r) + ": load.start without load.end");
  if (p.has_load && p.load_end.t_s < p.load_start.t_s)
    return bad(rep_name(r) + ": load.end before load.start");
  if (p.tokens.empty()) return bad(rep_name(r) + ": no token markers");
  double prev = p.prefill_end.t_s;
  for (std::size_t i = 0; i < p.tokens.size(); ++i) {
    const Event& e = p.tokens[i];
    if (e.index != static_cast<std::int64_t>(i)) {
      return bad(rep_name(r) + ": token index " + std::to_string(e.index) + " where " +
                 std::to_string(i) + " was expected");
    }
    if (e.t_s < prev) {
      return bad(rep_name(r) + ": token " + std::to_string(i) + " at " + std::to_string(e.t_s) +
                 " s ends before its start");
    }
    prev = e.t_s;
  }
  return {};
}

void add_event(RepPlan& p, const Event& e) {
  switch (e.kind) {
    case EventKind::load_start:
      p.load_start = e;
      p.has_load = true;
      break;
    case EventKind::load_end:
      p.load_end = e;
      break;
    case EventKind::prefill_start:
      p.prefill_start = e;
      break;
    case EventKind::prefill_end:
      p.prefill_end = e;
      break;
    case EventKind::token:
      p.tokens.push_back(e);
      break;
    default:
      break;
  }
}

void place_baselines(std::vector<RepPlan>& reps, const BaselineConfig& cfg) {
  for (std::size_t r = 0; r < reps.size(); ++r) {
    RepPlan& p = reps[r];
    double floor = r > 0 ? reps[r - 1].end_s + cfg.guard_s : -1e300;
    double ceil = r + 1 < reps.size() ? reps[r + 1].start_s - cfg.guard_s : 1e300;
    double b1 = p.start_s - cfg.guard_s;
    p.before = {std::max(floor, b1 - cfg.window_s), b1};
    double a0 = p.end_s + cfg.guard_s;
    p.after = {a0, std::min(ceil, a0 + cfg.window_s)};
    if (p.before.t1_s < p.before.t0_s) p.before = {b1, b1};
    if (p.after.t1_s < p.after.t0_s) p.after = {a0, a0};
    p.cooldown = r + 1 < reps.size() ? Window{p.end_s, reps[r + 1].start_s} : Window{};
  }
}

}  // namespace

const PhaseResult* RepResult::phase(std::string_view name) const {
  for (const PhaseResult& p : phases)
    if (p.name == name) return &p;
  return nullptr;
}

Result<std::vector<RepPlan>> plan_repetitions(std::span<const Event> events,
                                              const BaselineConfig& cfg) {
  std::vector<Event> ev(events.begin(), events.end());
  std::stable_sort(ev.begin(), ev.end(),
                   [](const Event& a, const Event& b) { return a.t_s < b.t_s; });
  if (ev.empty()) return bad("no markers");
  const bool delimited = std::any_of(ev.begin(), ev.end(),
                                     [](const Event& e) { return e.kind == EventKind::run_start; });
  std::vector<RepPlan> reps;
  bool open = false;
  for (const Event& e : ev) {
    if (!std::isfinite(e.t_s)) return bad("an event with a non-finite time");
    if (e.kind == EventKind::run_start || (!delimited && !open)) {
      reps.emplace_back();
      reps.back().start_s = e.t_s;
      reps.back().end_s = e.t_s;
      open = true;
    }
    if (!open) continue;
    RepPlan& p = reps.back();
    p.end_s = e.t_s;
    add_event(p, e);
    if (e.kind == EventKind::run_end) open = false;
  }
  if (reps.empty()) return bad("no run.start marker before the run's events");
  for (std::size_t r = 0; r < reps.size(); ++r) {
    auto ok = check_rep(reps[r], r);
    if (!ok) return ok.error();
  }
  place_baselines(reps, cfg);
  return reps;
}

}  // namespace meltrig::analysis
