// Energy over time windows of a uniformly sampled power trace: one window over a span in memory,
// or many windows over a stream of chunks (files larger than memory), on the monitor's own time
// base: sample i is at t = i / nominal rate, in seconds.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::analysis {

/// Result of integrating power over a window.
struct WindowEnergy {
  double joules = 0.0;
  double seconds = 0.0;               ///< window length
  std::uint64_t missing_samples = 0;  ///< NaN samples inside the window (skipped, not zeroed)
};

/// Integrates power (W) sampled at `rate_hz`, sample i at t = i / rate, over [t0, t1] seconds by
/// the trapezoid rule, interpolating linearly at both window edges (which matters far more than
/// the integration rule at kHz rates). Intervals touching a NaN sample are left out and counted.
WindowEnergy integrate_power(std::span<const float> power_w, double rate_hz, double t0_s,
                             double t1_s);

/// A time window [t0_s, t1_s] in monitor seconds.
struct Window {
  double t0_s = 0.0;
  double t1_s = 0.0;
};

/// Running integrals from the start of the trace up to an instant. Differences of two states give
/// a window's figures.
struct CumState {
  double energy_j = 0.0;      ///< trapezoids over intervals with both ends valid
  double covered_s = 0.0;     ///< time inside such intervals
  std::uint64_t missing = 0;  ///< NaN or absent samples before the instant
};

/// What one window holds. Energy counts only intervals whose two samples are valid: a gap is
/// never read as zero power; `gap_s()` says how much of the window it took.
struct WindowStats {
  double energy_j = 0.0;
  double duration_s = 0.0;
  double covered_s = 0.0;
  std::uint64_t missing_samples = 0;
  double peak_w = std::numeric_limits<double>::quiet_NaN();

  double gap_s() const { return duration_s > covered_s ? duration_s - covered_s : 0.0; }
  /// True when any part of the window had no valid samples (a gap, or outside the trace).
  bool touches_gap() const { return missing_samples > 0 || gap_s() > 1e-9 * (1.0 + duration_s); }
  /// Mean power over the covered time (NaN when nothing is covered).
  double mean_w() const {
    return covered_s > 0.0 ? energy_j / covered_s : std::numeric_limits<double>::quiet_NaN();
  }
};

/// The samples around an instant, kept while streaming so a boundary can be moved afterwards
/// (token boundary refinement) and a window re-integrated without a second pass.
struct Snippet {
  double t0_s = 0.0;              ///< start of the requested range
  double t1_s = 0.0;              ///< end of the requested range
  std::uint64_t first_index = 0;  ///< index of the first kept sample (the one before t0_s)
  std::vector<float> power_w;     ///< samples from just before t0_s to just after t1_s
  CumState first_state;           ///< running integrals at the first kept sample
  /// (j, n): kept sample j stands for n absent samples (a jump in the stream); others count 1.
  std::vector<std::pair<std::size_t, std::uint64_t>> weights;
};

/// Many windows over one pass of a sample stream. Memory: O(windows + probe snippets), never the
/// trace. Chunks must come in index order; a jump in start index is a gap (counted as missing).
class WindowIntegrator {
 public:
  /// `probes` are instants around which `probe_radius_s` of samples are kept (Snippet).
  WindowIntegrator(double rate_hz, std::vector<Window> windows, std::vector<double> probes = {},
                   double probe_radius_s = 0.0);

  /// Feeds samples start_index, start_index + 1, ...; invalid_argument if it goes backwards.
  Result<void> add(std::uint64_t start_index, std::span<const float> power_w);
  /// Ends the stream: windows reaching past the last sample count the rest as gap.
  void finish();

  double rate_hz() const { return rate_; }
  const WindowStats& window(std::size_t i) const { return stats_[i]; }
  std::size_t window_count() const { return stats_.size(); }
  const Snippet& snippet(std::size_t probe) const { return snippets_[probe]; }
  std::uint64_t samples_seen() const { return next_index_; }

 private:
  struct Edge {
    double t = 0.0;
    std::uint32_t id = 0;
    std::uint8_t kind = 0;  // 0 window start, 1 window end, 2 probe start, 3 probe end
  };
  void step(std::uint64_t index, float v, std::uint64_t weight);
  /// Feeds the leading samples of `p` (from index `first`) that lie before the next edge while
  /// no snippet is open, in a tight loop; returns how many it took.
  std::size_t run_between_edges(std::uint64_t first, std::span<const float> p);
  void pass_edges(double t_limit, bool inclusive, double t, double v, bool valid);
  void on_edge(const Edge& e, const CumState& s, double v_at);

  double rate_;
  std::vector<Window> windows_;
  std::vector<WindowStats> stats_;
  std::vector<CumState> start_state_;
  std::vector<Edge> edges_;
  std::size_t next_edge_ = 0;
  std::vector<std::uint32_t> active_;          // windows open for peak tracking
  std::vector<std::uint32_t> active_probes_;   // snippets being filled
  std::vector<std::uint32_t> closing_probes_;  // take one more sample, then stop
  std::vector<Snippet> snippets_;
  CumState cum_;
  bool have_prev_ = false;
  double prev_t_ = 0.0;
  double prev_v_ = 0.0;
  std::uint64_t next_index_ = 0;
  bool finished_ = false;
};

/// State after kept sample j of a snippet (the running integrals re-accumulated from the first
/// kept sample: a snippet holds its samples only, 4 bytes each).
CumState state_after(const Snippet& s, double rate_hz, std::size_t j);
/// State at time t inside a snippet (clamped to its range): the state at the last kept sample at
/// or before t plus the trapezoid to t, interpolated linearly.
CumState state_at(const Snippet& s, double rate_hz, double t);
/// Figures of the window between two states (peak left NaN).
WindowStats between(const CumState& a, const CumState& b, double duration_s);

}  // namespace meltrig::analysis
