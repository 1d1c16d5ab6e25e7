// The whole analysis of one capture (run, repetition statistics, thermal, software estimates)
// from inputs on the monitor's time base, and its JSON result object.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "meltrig/analysis/inputs.hpp"
#include "meltrig/analysis/run.hpp"
#include "meltrig/analysis/software.hpp"
#include "meltrig/analysis/stats.hpp"
#include "meltrig/analysis/thermal.hpp"

namespace meltrig::analysis {

struct AnalysisInputs {
  SampleSeries samples;
  std::vector<Event> events;
  std::vector<TimedSeries> telemetry;
  std::vector<Window> usb;  ///< intervals where USB feeds the device (hub on), monitor seconds
};

struct AnalysisConfig {
  RunConfig run;
  SoftwareConfig software;
  ThermalConfig thermal;
  SummaryConfig summary;
  /// A repetition is cold when it starts within this many K of the coolest start (by the
  /// thermal config's temperature series); without temperatures, repetition 0 is the cold one.
  double cold_margin_c = 2.0;
};

/// One metric's statistics across repetitions (or across files).
struct MetricSummary {
  std::string name;  ///< "decode_tok_s", "j_per_token", ...
  Summary summary;
};

/// Cold-start against heated repetitions: heated mean - cold mean, Welch interval.
struct ColdHeated {
  std::vector<int> cold, heated;  ///< repetition indices
  Difference decode_tok_s;
  Difference j_per_token;
  Difference j_per_token_net;
};

struct Analysis {
  RunResult run;
  std::vector<MetricSummary> repetition_stats;
  ColdHeated cold_vs_heated;
  ThermalResult thermal;
  std::vector<SoftwareResult> software;
};

Result<Analysis> analyze(const AnalysisInputs& in, const AnalysisConfig& cfg = {});

/// Statistics of the per-repetition metrics over all repetitions of `runs` (one run: across
/// repetitions; several files of one configuration: across files, repetitions pooled).
std::vector<MetricSummary> summarize_repetitions(std::span<const RunResult> runs,
                                                 const SummaryConfig& cfg = {});

ColdHeated compare_cold_heated(const RunResult& run, std::span<const TimedSeries> telemetry,
                               const std::string& temperature_series, double margin_c);

/// The result object (docs/analysis.md): baseline_w, phases, repetitions, tokens,
/// software_power, thermal, statistics, melt. `sync` is added by the caller that owns the map.
nlohmann::json to_json(const Analysis& a);

}  // namespace meltrig::analysis
