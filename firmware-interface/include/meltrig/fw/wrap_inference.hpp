// Elapsed-time inference of losses that wrap a device's packet or sample counter: one
// implementation for the LVPM and HVPM (4-bit packet counter) and the PPK2 (6-bit sample
// counter). Pure and deterministic: the caller passes arrival times (host steady clock, ns).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace meltrig::fw {

/// A read that took at least this long waited for its data (nothing was queued when it started):
/// its arrival time measures the device, not a host backlog. Drivers use it to set `caught_up`.
inline constexpr std::int64_t kCaughtUpWaitNs = 50'000;

/// Tuning of the inference. The defaults suit a real device on a busy host.
struct WrapConfig {
  double rate_hz = 5000.0;    ///< nominal sample rate
  double wrap_samples = 0.0;  ///< samples per counter wrap when push() is not told (0: per push)
  /// A raised residual the counter explains (it saw a loss nearby) is decided after this long.
  std::int64_t settle_ns = 1'000'000'000;
  /// A raised residual the counter does not explain is never taken for a loss before this long:
  /// a host or device stall whose catch-up completes within it is always absorbed.
  std::int64_t horizon_ns = 10'000'000'000;
  std::int64_t floor_window_ns = 3'000'000'000;  ///< sliding window of the latency floor
  double wrap_threshold = 0.75;                  ///< excess (in wraps) that counts as one loss
  /// A level more than this (or half a wrap, if larger) below what it was earlier in the last
  /// `horizon_ns` is a backlog still being worked off, not a loss: a device (or an emulator on a
  /// starved host) that catches up in steps, with pauses between them.
  double catchup_tolerance_s = 0.005;
  std::int64_t gap_search_ns = 200'000'000;  ///< how far to look for the counter's gap
  std::size_t min_evidence = 10;  ///< caught-up chunks needed in the last half of settle_ns
  /// Memory bound: a hold of more than this many seconds of samples is decided with what is
  /// known (an `inferred` loss where that is not enough).
  double max_held_s = 60.0;
  /// Off: no inference (runs on an accelerated virtual clock, where host jitter times the
  /// speed-up exceeds a wrap's duration). Chunks then pass straight through.
  bool infer_wraps = true;
};

/// Where a chunk ends up once the inference has seen it.
struct WrapPlacement {
  std::uint32_t tag = 0;     ///< the caller's handle for the chunk
  std::uint64_t offset = 0;  ///< add to the caller's indices of samples before the loss point
  /// Samples (whole wraps) placed as missing at this chunk's loss point (its start, or its
  /// first counter gap); samples from there on get offset + wrap_lost.
  std::uint64_t wrap_lost = 0;
  /// True when the loss could not be decided (end of stream, memory bound, or no read that
  /// waited for its data): `wrap_lost` is then the best estimate and the true number of missing
  /// samples lies in [wrap_lost - uncertainty, wrap_lost + uncertainty].
  bool inferred = false;
  std::uint64_t uncertainty = 0;
};

/// Counters of the inference.
struct WrapCounters {
  std::uint64_t chunks = 0;
  std::uint64_t wrap_gaps = 0;             ///< losses of whole wraps decided
  std::uint64_t wrap_lost = 0;             ///< samples lost in them
  std::uint64_t inferred_gaps = 0;         ///< undecided losses placed at their best estimate
  std::uint64_t inferred_lost = 0;         ///< samples placed as missing in those
  std::uint64_t inferred_uncertainty = 0;  ///< sum of their uncertainties, samples
  std::uint64_t stalls_absorbed = 0;       ///< late bursts that turned out to be stalls
  std::int64_t longest_hold_ns = 0;        ///< longest time a chunk waited for a decision
  std::uint64_t most_held = 0;             ///< most chunks held at once
};

/// Per chunk: what the counter saw and how the read went.
struct WrapEvidence {
  bool loss_seen = false;     ///< the counter (or a device drop count) showed a loss here
  bool caught_up = true;      ///< the read waited for its data (see kCaughtUpWaitNs)
  double wrap_samples = 0.0;  ///< samples per counter wrap for this chunk (0: the config's)
};

/// Compares each chunk's arrival time with its end index at the nominal rate:
/// residual = elapsed x rate - end_index. Latency only delays arrival, so the sliding minimum of
/// the residual over `floor_window_ns` is the latency floor. A loss the counter missed raises
/// every later residual by the lost samples, for good; a stall (host or device) raises them only
/// until the late data has arrived, because a device samples on its own clock and sends all of it.
///
/// A chunk more than half a wrap above the floor is held, and so is everything after it (the
/// hold grows as needed, bounded by `max_held_s` of samples). The hold ends:
/// - as a stall (no loss) as soon as a chunk comes back within half a wrap of the floor;
/// - as a loss once the residual has stayed up for `settle_ns` if the counter saw a loss in the
///   hold, else only after `horizon_ns`, and only with `min_evidence` reads that waited for their
///   data in the last settle_ns / 2 and a level no longer coming down (not more than half a wrap
///   below the settle_ns / 2 before, nor more than `catchup_tolerance_s` below any settle_ns / 2
///   window of such reads in the last horizon_ns: a catch-up, however slow or stepwise, keeps the
///   hold growing until its level has been flat for the horizon). The level is the
///   minimum of those reads' residuals; `wrap_threshold` of a wrap above
///   the floor counts as one wrap, more is rounded to the nearest wrap. The loss goes in the
///   first held chunk from which on every residual stays within half a wrap of the level, or in
///   a chunk up to `gap_search_ns` later whose counter saw a loss (where a loss of 16k + g
///   packets, or 64k + g samples, really was). Without such reads the hold keeps growing.
/// - undecided, at the end of the stream or at the memory bound: if the counter saw a loss, or
///   the residual had stayed up for the horizon, the estimate is placed as an `inferred` loss
///   with its uncertainty; otherwise (never persistent, nothing seen by the counter) it is a
///   stall.
/// Limits: the latency floor (and the device clock against the host's) must be steady to well
/// under half a wrap over the horizon; a whole-wrap loss the counter does not see, in the last
/// `horizon_ns` of a stream, is not found.
class WrapInference {
 public:
  explicit WrapInference(WrapConfig cfg) : cfg_(cfg) {}

  /// A chunk whose last sample has caller index `end_index - 1` (indices without the wraps found
  /// so far) arrived at `arrival_ns`. Chunks must come in order.
  void push(std::uint64_t end_index, std::int64_t arrival_ns, std::uint32_t tag,
            WrapEvidence ev = {});
  /// Releases chunks whose placement is final, in order.
  template <typename OnPlaced>
  void drain(OnPlaced&& on_placed) {
    for (const auto& p : ready_)
      on_placed(p);
    ready_.clear();
  }
  /// At the end: decides held chunks with what is known; drain() then releases everything.
  void finish() { decide(true); }

  const WrapCounters& counters() const { return counters_; }
  /// Samples added so far (the offset of the next chunk).
  std::uint64_t offset() const { return offset_; }
  /// Chunks held back, waiting for a decision.
  std::size_t held() const { return held_.size(); }
  /// True once the first chunk has set the time origin.
  bool has_origin() const { return have_t0_; }
  /// The residual a chunk ending at caller index `end_index` would have at `arrival_ns`.
  double residual(std::uint64_t end_index, std::int64_t arrival_ns) const;
  /// The latency floor (+infinity before the first placed chunk).
  double floor() const;

 private:
  struct Held {
    WrapPlacement p;
    std::uint64_t end_index;
    std::int64_t arrival_ns;
    double residual;
    double wrap;
    bool loss_seen;
    bool caught_up;
  };
  struct Level {
    double value;
    std::size_t evidence;
  };
  void decide(bool at_end);
  Level recent_level(bool caught_up_only, int half) const;
  bool coming_down(double level, double wrap) const;
  void absorb();
  void place_loss(double level, std::uint64_t shift, bool inferred, std::uint64_t uncertainty);
  void commit_front(std::size_t count, std::uint64_t shift);
  void floor_push(std::int64_t t, double r);

  WrapConfig cfg_;
  bool have_t0_ = false;
  std::int64_t t0_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t committed_end_ = 0;  ///< end index of the last committed chunk
  bool held_loss_seen_ = false;      ///< some held chunk's counter saw a loss
  std::vector<Held> held_;
  std::vector<WrapPlacement> ready_;
  std::vector<std::pair<std::int64_t, double>> floor_q_;  ///< monotone deque for sliding min
  std::size_t floor_head_ = 0;
  WrapCounters counters_;
};

/// The inference for a codec that places whole packets (LVPM, HVPM): keeps each pushed packet
/// until the inference releases it, then moves it to where the inference put it (a packet's loss
/// point is its start). `Placed` has first_index, lost_before, wrap_lost, wrap_inferred,
/// wrap_uncertainty.
template <typename Placed>
class PacketWrapInference {
 public:
  explicit PacketWrapInference(WrapConfig cfg) : wrap_(cfg) {}
  /// `p` ends at caller index `end_index` (indices without the wraps found so far).
  void push(const Placed& p, std::uint64_t end_index, std::int64_t arrival_ns, WrapEvidence ev) {
    pending_.push_back(p);
    wrap_.push(end_index, arrival_ns, p.tag, ev);
  }
  template <typename OnPlaced>
  void drain(OnPlaced&& on_placed) {
    wrap_.drain([&](const WrapPlacement& w) {
      Placed p = pending_.front();
      pending_.pop_front();
      p.first_index += w.offset + w.wrap_lost;
      p.lost_before += w.wrap_lost;
      p.wrap_lost = w.wrap_lost;
      p.wrap_inferred = w.inferred;
      p.wrap_uncertainty = w.uncertainty;
      on_placed(p);
    });
  }
  void finish() { wrap_.finish(); }
  const WrapInference& inference() const { return wrap_; }

 private:
  WrapInference wrap_;
  std::deque<Placed> pending_;  ///< pushed, not yet released, in order
};

}  // namespace meltrig::fw
