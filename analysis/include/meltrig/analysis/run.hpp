// Per-repetition, per-phase and per-token energy of a run, with idle baselines and refined token
// boundaries, from one streaming pass over the power samples.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "meltrig/analysis/energy.hpp"
#include "meltrig/analysis/inputs.hpp"
#include "meltrig/analysis/refine.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::analysis {

enum class BaselineSide : std::uint8_t { before, after, both };

struct BaselineConfig {
  BaselineSide side = BaselineSide::both;
  double window_s = 4.0;  ///< idle window length on each side of a repetition
  double guard_s = 0.5;   ///< kept clear of the run (wake-up, frequency ramps after a marker)
  double block_s = 0.1;   ///< the window is cut into blocks; their means give median and spread
};

struct RunConfig {
  BaselineConfig baseline;
  bool refine = true;
  RefineConfig refinement;
  double max_uncertainty_s = 5e-3;  ///< larger event uncertainties are searched only this far
};

/// An idle baseline: the median of block means (robust to a suspend or a burst in the window).
struct Baseline {
  double w = std::numeric_limits<double>::quiet_NaN();
  double sd_w = std::numeric_limits<double>::quiet_NaN();  ///< s.d. of the block means
  double before_w = std::numeric_limits<double>::quiet_NaN();
  double after_w = std::numeric_limits<double>::quiet_NaN();
  std::size_t blocks = 0;
};

/// One phase of one repetition ("load", "prefill", "decode", "idle_before", "idle_after",
/// "cooldown"). Absent phases (no load markers in a later repetition) have present = false.
struct PhaseResult {
  std::string name;
  bool present = false;
  double start_s = 0.0;
  double end_s = 0.0;
  std::int64_t tokens = 0;  ///< prompt tokens for prefill, output tokens for decode
  WindowStats stats;        ///< energy, covered time, gap, peak
  double net_energy_j = 0.0;
  double duration_s() const { return end_s - start_s; }
};

/// One output token: from the previous token's boundary (or prefill end) to its own.
struct TokenResult {
  int repetition = 0;
  std::int64_t index = 0;
  double start_s = 0.0;  ///< boundaries used (refined where the trace allowed)
  double end_s = 0.0;
  double marker_end_s = 0.0;  ///< the mapped marker time, kept as it was
  WindowStats stats;
  double net_energy_j = 0.0;
  bool refined = false;  ///< the end boundary was refined from the trace
};

struct RepResult {
  int index = 0;
  double start_s = 0.0;  ///< run.start
  double end_s = 0.0;    ///< run.end
  Baseline baseline;
  std::vector<PhaseResult> phases;  ///< load, prefill, decode, idle_before, idle_after, cooldown
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;
  double ttft_s = 0.0;  ///< first token marker - prefill start
  double prefill_tok_s = 0.0;
  double decode_tok_s = 0.0;
  double j_per_token = 0.0;       ///< decode energy / output tokens, gross
  double j_per_token_net = 0.0;   ///< net of the baseline
  double melt_j_per_token = 0.0;  ///< MELT's: (prefill + decode) energy / output tokens, gross
  std::size_t refined_boundaries = 0;
  std::size_t token_boundaries = 0;
  const PhaseResult* phase(std::string_view name) const;
};

struct RunResult {
  double rate_hz = 0.0;
  std::uint64_t samples = 0;
  std::vector<RepResult> reps;
  std::vector<TokenResult> tokens;
  double baseline_w = std::numeric_limits<double>::quiet_NaN();  ///< mean over repetitions
  double baseline_sd_w = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::string> warnings;
};

/// The run's structure read from events alone (no samples): repetitions, phase and token
/// boundaries with their uncertainties. Fails (invalid_argument, naming the event) on events the
/// analysis cannot use: no tokens, a token out of order, a phase end before its start.
struct RepPlan {
  double start_s = 0.0, end_s = 0.0;
  bool has_load = false;
  Event load_start, load_end, prefill_start, prefill_end;
  std::vector<Event> tokens;
  Window before, after, cooldown;  ///< baseline windows (empty when none fits); cooldown to next
};
Result<std::vector<RepPlan>> plan_repetitions(std::span<const Event> events,
                                              const BaselineConfig& cfg);

/// Everything analysed in one pass: the run, plus `extra` windows (their stats come back in
/// `extra_stats`, same order).
struct RunAnalysis {
  RunResult run;
  std::vector<WindowStats> extra_stats;
};
Result<RunAnalysis> analyze_run(const SampleSeries& samples, std::span<const Event> events,
                                const RunConfig& cfg, std::span<const Window> extra = {});

}  // namespace meltrig::analysis
