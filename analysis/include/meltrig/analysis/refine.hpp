// Token boundary refinement: where the power trace shows a boundary as a step, narrow the
// boundary's time to the sample interval where the trace crosses the step's midpoint, but never
// outside the marker's own uncertainty interval.
#pragma once

#include "meltrig/analysis/energy.hpp"

namespace meltrig::analysis {

struct RefineConfig {
  double flank_s = 1e-3;            ///< samples each side of the uncertainty interval giving levels
  double min_snr = 8.0;             ///< step / robust noise s.d. needed to use the trace
  double min_relative_step = 0.01;  ///< step / level needed (tiny steps are left alone)
  /// Largest first-order rail time constant assumed: the trace's midpoint crossing lags the edge
  /// by up to tau x ln 2, so the edge may lie that much before the crossing interval.
  double rail_tau_max_s = 100e-6;
};

struct Refinement {
  double t_s = 0.0;      ///< the boundary used (the marker time when not refined)
  bool refined = false;  ///< the trace gave a step consistent with the marker's interval
  double step_w = 0.0;   ///< level after minus level before (0 when no step was measured)
  double noise_w = 0.0;  ///< robust noise s.d. of the flanks
};

/// Refines marker time `t_s` (uncertainty +-`uncertainty_s`) against the samples of `snip`.
/// Robust to a rail low-pass, bursts in the flanks (medians) and noise: with no significant step,
/// several competing crossings or a crossing outside the interval, the marker time stands.
Refinement refine_boundary(const Snippet& snip, double rate_hz, double t_s, double uncertainty_s,
                           const RefineConfig& cfg);

}  // namespace meltrig::analysis
