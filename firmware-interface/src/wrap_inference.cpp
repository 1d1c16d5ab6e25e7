// Elapsed-time wrap inference: see wrap_inference.hpp.
#include "meltrig/fw/wrap_inference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace meltrig::fw {

double WrapInference::residual(std::uint64_t end_index, std::int64_t arrival_ns) const {
  return static_cast<double>(arrival_ns - t0_) * 1e-9 * cfg_.rate_hz -
         static_cast<double>(end_index + offset_);
}

void WrapInference::floor_push(std::int64_t t, double r) {
  while (floor_q_.size() > floor_head_ && floor_q_.back().second >= r)
    floor_q_.pop_back();
  floor_q_.emplace_back(t, r);
  while (floor_q_.size() - floor_head_ > 1 &&
         floor_q_[floor_head_].first < t - cfg_.floor_window_ns)
    ++floor_head_;
  if (floor_head_ > 1024 && floor_head_ * 2 > floor_q_.size()) {
    floor_q_.erase(floor_q_.begin(), floor_q_.begin() + static_cast<std::ptrdiff_t>(floor_head_));
    floor_head_ = 0;
  }
}

double WrapInference::floor() const {
  if (floor_q_.size() == floor_head_) return std::numeric_limits<double>::infinity();
  return floor_q_[floor_head_].second;
}

void WrapInference::push(std::uint64_t end_index, std::int64_t arrival_ns, std::uint32_t tag,
                         WrapEvidence ev) {
  ++counters_.chunks;
  if (!have_t0_) {
    // The first chunk's samples were taken before it arrived: its residual is the zero point.
    have_t0_ = true;
    t0_ =
        arrival_ns - static_cast<std::int64_t>(static_cast<double>(end_index) / cfg_.rate_hz * 1e9);
  }
  const double wrap = ev.wrap_samples > 0 ? ev.wrap_samples : cfg_.wrap_samples;
  const WrapPlacement p{tag, offset_, 0, false, 0};
  const double r = residual(end_index, arrival_ns);
  if (!cfg_.infer_wraps || !(wrap > 0) || (held_.empty() && !(r - floor() > 0.5 * wrap))) {
    ready_.push_back(p);
    if (cfg_.infer_wraps) floor_push(arrival_ns, r);
    committed_end_ = end_index;
    return;
  }
  held_.push_back(Held{p, end_index, arrival_ns, r, wrap, ev.loss_seen, ev.caught_up});
  held_loss_seen_ = held_loss_seen_ || ev.loss_seen;
  counters_.most_held = std::max<std::uint64_t>(counters_.most_held, held_.size());
  decide(false);
}

void WrapInference::commit_front(std::size_t count, std::uint64_t shift) {
  for (std::size_t k = 0; k < count; ++k) {
    Held& h = held_[k];
    if (k > 0) h.p.offset += shift;  // the first chunk's samples before its loss point stay
    ready_.push_back(h.p);
    floor_push(h.arrival_ns, h.residual - static_cast<double>(shift));
    committed_end_ = h.end_index;
  }
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(count));
  if (held_.empty()) held_loss_seen_ = false;
}

void WrapInference::absorb() {
  ++counters_.stalls_absorbed;
  commit_front(held_.size(), 0);
}

WrapInference::Level WrapInference::recent_level(bool caught_up_only, int half) const {
  // Half 0: the last settle_ns / 2 of the hold; half 1: the settle_ns / 2 before it.
  const std::int64_t end = held_.back().arrival_ns - half * (cfg_.settle_ns / 2);
  const std::int64_t begin = end - cfg_.settle_ns / 2;
  Level l{std::numeric_limits<double>::infinity(), 0};
  for (auto it = held_.rbegin(); it != held_.rend() && it->arrival_ns >= begin; ++it) {
    if ((caught_up_only && !it->caught_up) || it->arrival_ns > end) continue;
    l.value = std::min(l.value, it->residual);
    ++l.evidence;
  }
  return l;
}

bool WrapInference::coming_down(double level, double wrap) const {
  // Each settle_ns / 2 window of the last horizon_ns (before the current one, whose level is
  // `level`) has the minimum residual of its reads that waited; one well above `level` means the
  // backlog was larger then, so it is still being worked off.
  const double tol = std::max(0.5 * wrap, cfg_.catchup_tolerance_s * cfg_.rate_hz);
  const std::int64_t half = cfg_.settle_ns / 2;
  const std::int64_t newest = held_.back().arrival_ns;
  std::int64_t window_begin = newest - 2 * half;
  double window_min = std::numeric_limits<double>::infinity();
  for (auto it = held_.rbegin(); it != held_.rend(); ++it) {
    if (it->arrival_ns < newest - cfg_.horizon_ns) break;
    if (it->arrival_ns > newest - half || !it->caught_up) continue;
    for (; it->arrival_ns < window_begin; window_begin -= half) {
      if (window_min > level + tol && std::isfinite(window_min)) return true;
      window_min = std::numeric_limits<double>::infinity();
    }
    window_min = std::min(window_min, it->residual);
  }
  return std::isfinite(window_min) && window_min > level + tol;
}

void WrapInference::decide(bool at_end) {
  if (held_.empty()) return;
  const Held& last = held_.back();
  const double fl = floor();
  const double wrap = last.wrap;
  const std::int64_t span = last.arrival_ns - held_.front().arrival_ns;
  counters_.longest_hold_ns = std::max(counters_.longest_hold_ns, span);
  if (last.residual - fl <= 0.5 * wrap) {
    // Back down to the latency floor: the raised chunks were a late burst, not a loss.
    absorb();
    return;
  }
  const bool persisted = span >= (held_loss_seen_ ? cfg_.settle_ns : cfg_.horizon_ns);
  const std::uint64_t held_samples =
      last.end_index > committed_end_ ? last.end_index - committed_end_ : 0;
  const bool forced = static_cast<double>(held_samples) > cfg_.max_held_s * cfg_.rate_hz;
  if (!persisted && !at_end && !forced) return;

  // One wrap needs `wrap_threshold` of a wrap (a guard against reading latency as loss); beyond
  // that the count is rounded, since the floor and the level each carry a few samples of error.
  auto shift_of = [&](double level) -> std::uint64_t {
    const double excess = level - fl;
    if (!(excess >= cfg_.wrap_threshold * wrap)) return 0;
    return static_cast<std::uint64_t>(std::max(1.0, std::round(excess / wrap)) * wrap);
  };
  // Only reads that waited for their data measure the device: a read that found data queued
  // measures the host's backlog, and a host that falls behind must not look like lost samples.
  const Level waited = recent_level(true, 0);
  // Still coming down (a slow catch-up): not a loss yet, whatever its level.
  const Level before = recent_level(true, 1);
  const bool steady = before.evidence == 0 || waited.value >= before.value - 0.5 * wrap;
  if (persisted && steady && waited.evidence >= cfg_.min_evidence &&
      !coming_down(waited.value, wrap)) {
    const std::uint64_t shift = shift_of(waited.value);
    if (shift == 0)
      absorb();
    else
      place_loss(waited.value, shift, false, 0);
    return;
  }
  if (!at_end && !forced) return;  // the hold grows until reads wait for their data again
  if (!held_loss_seen_ && !persisted) {
    // Never persistent and nothing the counter saw: a stall, by the horizon rule.
    absorb();
    return;
  }
  // Undecided: place the best estimate, marked as such.
  const Level est = waited.evidence > 0 ? waited : recent_level(false, 0);
  const std::uint64_t shift = shift_of(est.value);
  if (shift == 0)
    absorb();
  else
    place_loss(est.value, shift, true, shift);
}

void WrapInference::place_loss(double level, std::uint64_t shift, bool inferred,
                               std::uint64_t uncertainty) {
  // A loss raises every later residual to the level; a late read raises only its own. So the
  // loss is in the first chunk from which on every residual stays within half a wrap of the
  // level (a suffix minimum). If a chunk nearby saw a counter gap, that is where the loss was.
  const double wrap = held_.back().wrap;
  std::size_t split = held_.size() - 1;
  while (split > 0 && held_[split - 1].residual >= level - 0.5 * wrap)
    --split;
  for (std::size_t i = split; i < held_.size(); ++i) {
    if (held_[i].arrival_ns > held_[split].arrival_ns + cfg_.gap_search_ns) break;
    if (held_[i].loss_seen) {
      split = i;
      break;
    }
  }
  if (split > 0) {
    ++counters_.stalls_absorbed;
    commit_front(split, 0);
  }
  if (inferred) {
    ++counters_.inferred_gaps;
    counters_.inferred_lost += shift;
    counters_.inferred_uncertainty += uncertainty;
  } else {
    ++counters_.wrap_gaps;
    counters_.wrap_lost += shift;
  }
  WrapPlacement& p = held_.front().p;
  p.wrap_lost = shift;
  p.inferred = inferred;
  p.uncertainty = uncertainty;
  offset_ += shift;
  commit_front(held_.size(), shift);
}

}  // namespace meltrig::fw
