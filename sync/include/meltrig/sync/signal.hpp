// Signal tools for finding device activity in a power trace: FFT cross-correlation (Eigen's FFT),
// sub-sample edge location under a first-order rail, the rail's time constant estimated from the
// edges themselves, and a tracker that predicts where the next event lands while evidence builds.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "meltrig/sync/evidence.hpp"

namespace meltrig::sync {

/// c[k] = sum_j x[k + j] t[j] for k in [0, x.size() - t.size()] (empty if t is longer), by FFT.
std::vector<double> cross_correlate(std::span<const double> x, std::span<const double> t);

/// A request to locate one step in a trace. Positions are fractional sample positions in the
/// trace's span; the edge is searched within [pos - halfwidth, pos + halfwidth], the levels are
/// the medians of `pre_len` samples before and `post_len` samples after that window.
struct EdgeRequest {
  double pos = 0.0;
  double halfwidth = 3.0;
  bool rising = true;
  double pre_len = 20.0;
  double post_len = 20.0;
  double min_step = 0.0;  ///< |post - pre| must exceed this (trace units)
};

/// A located step: `pos` is where it happened (fractional sample position), `sigma` its one-sigma
/// uncertainty in samples. `first_z` is the normalised value of the first sample after the step
/// (what the rail's time constant is estimated from).
struct EdgeFix {
  bool ok = false;
  double pos = 0.0;
  double sigma = 0.5;
  double first_z = 1.0;
  double step = 0.0;
  std::int64_t first_sample = 0;  ///< index of the first sample after the step
  double noise_z = 0.0;           ///< noise s.d. over the step height
  double second_z = 1.0;          ///< normalised value of the sample after first_sample
};

/// Finds the step (the sample where the normalised trace crosses 0.5 nearest `pos`, then back to
/// the first sample above the noise) without a rail model: pos and sigma assume nothing about
/// the rail yet (see apply_rail).
EdgeFix find_edge(const Trace& tr, const EdgeRequest& req);

/// Re-measures a located step's levels next to it, so that level changes further away (a
/// governor's frequency stairs, unrelated bursts) do not enter its normalisation: the old level
/// is the median of the `len` samples before its first sample, the new one the median of `len`
/// samples starting `settle` samples after it (past the rail's response). Recomputes step,
/// noise, first_z and second_z; leaves pos and sigma for apply_rail. Clears ok when the window
/// leaves the trace or the step vanishes.
void relevel_edge(const Trace& tr, EdgeFix& e, int settle, int len = 5);

/// Places the step inside its sample interval under a first-order rail with time constant
/// `tau_samples`: the first sample after a step at distance x reads 1 - exp(-x / tau). A sample
/// that reads fully settled leaves the step anywhere in the remaining interval (its middle is
/// taken, with a uniform sigma). With tau = 0 every step lands mid-interval.
void apply_rail(EdgeFix& e, double tau_samples);

/// The rail time constant (in samples) that explains the first-sample values of many steps whose
/// positions are spread uniformly over the sample interval. 0 when they read settled. `se` gets
/// its standard error (from the spread of the first-sample values).
double estimate_tau(std::span<const EdgeFix> edges, double* se = nullptr);

/// The rail time constant (in samples) from the first two samples after each step: under a
/// first-order response their distances from the new level, u1 = 1 - first_z and u2 = 1 -
/// second_z, keep the ratio exp(-1 / tau) whatever the step's phase. Fitted jointly over the
/// steps as u2 = c + s u1 (the intercept absorbs a common level error) with Huber weights and
/// rejection beyond 5 robust sigmas (a burst next to one step). Returns -1 when the ratio is not
/// measurable (fewer than 8 usable steps, or s within 4 standard errors of 0: the rail settles
/// within a sample, use estimate_tau); `se` gets the standard error.
double estimate_tau_pairs(std::span<const EdgeFix> edges, double* se = nullptr);

/// Re-levels every step (relevel_edge) and estimates the rail's time constant from the steps
/// marked in `for_tau` (estimate_tau_pairs, or estimate_tau where the ratio is not measurable),
/// twice: first settling 3 samples after each step, then 7 time constants of the first
/// estimate. Steps whose levels vanish are left with ok = false. Returns tau in samples; `se`
/// gets its standard error.
double rail_from_edges(const Trace& tr, std::vector<EdgeFix>& fixes,
                       const std::vector<bool>& for_tau, double* se = nullptr);

/// How far an error of the rail's time constant moves the mean edge: the mean over the edges of
/// d(position)/d(tau) = -ln(1 - first_z) for the edges placed by the rail model (0 for the others).
double tau_sensitivity(std::span<const EdgeFix> edges, double tau_samples);

/// Predicts the monitor time of a device time from the anchors found so far (device times on a
/// clock without suspends, such as boottime), with an uncertainty that grows with the distance
/// to the nearest anchor.
class Tracker {
 public:
  struct Anchor {
    std::int64_t device_ns;
    std::int64_t monitor_ns;
  };
  /// `base_ns`: uncertainty at an anchor; `ppm_one`/`ppm_many`: growth per ns of distance with
  /// one anchor / with two or more (the rate then comes from the anchors).
  /// `min_baseline_ns`: the rate comes only from a neighbour at least this far from the nearest
  /// anchor (anchors close together with errors of their own would tilt it); without one, as with
  /// one anchor.
  explicit Tracker(std::int64_t base_ns = 20'000'000, double ppm_one = 300.0,
                   double ppm_many = 60.0, std::int64_t min_baseline_ns = 0)
      : base_(base_ns), ppm_one_(ppm_one), ppm_many_(ppm_many), min_baseline_(min_baseline_ns) {}
  void add(std::int64_t device_ns, std::int64_t monitor_ns);
  bool empty() const { return anchors_.empty(); }
  /// Predicted monitor ns and half-width of the window it lies in.
  std::pair<std::int64_t, std::int64_t> predict(std::int64_t device_ns) const;
  const std::vector<Anchor>& anchors() const { return anchors_; }

 private:
  std::vector<Anchor> anchors_;  ///< sorted by device time
  std::int64_t base_;
  double ppm_one_, ppm_many_;
  std::int64_t min_baseline_;
};

/// A busy interval of the device's predicted activity, on the clock the envelope is built on.
struct BusySpan {
  std::int64_t from_ns = 0;
  std::int64_t to_ns = 0;
  bool pulse_chip = false;
};

/// Coarse alignment: cross-correlates the activity (busy = 1) in [from_ns, to_ns) of device time,
/// binned at bin_ns, with the binned trace over the monitor window [lo_ns, hi_ns]. Returns the
/// monitor ns of device time from_ns at the correlation peak, or nullopt when the window or the
/// activity holds nothing to correlate. `score` gets the Pearson correlation at the peak.
std::optional<std::int64_t> coarse_align(const Trace& tr, std::span<const BusySpan> busy,
                                         std::int64_t from_ns, std::int64_t to_ns,
                                         std::int64_t bin_ns, std::int64_t lo_ns,
                                         std::int64_t hi_ns, double* score = nullptr);

}  // namespace meltrig::sync
