// Thermal behaviour of a run: throttling onset (the first of: a cooling device above state 0, the
// frequency cap below the maximum, tokens per second a set percentage below the cold median) and
// tokens/s and J/token against temperature and time.
#pragma once

#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "meltrig/analysis/inputs.hpp"
#include "meltrig/analysis/run.hpp"

namespace meltrig::analysis {

struct ThermalConfig {
  std::string temperature = "thermal/soc";  ///< series plotted against
  std::string cap = "thermal/cap";          ///< allowed frequency, MHz
  std::string cooling = "cooling";          ///< series whose name contains this: cooling states
  double max_freq_mhz = std::numeric_limits<double>::quiet_NaN();  ///< NaN: the cap's maximum
  double tok_s_drop_pct = 10.0;     ///< tokens/s this far below the cold median is throttling
  std::size_t rolling_tokens = 16;  ///< tokens/s taken as a rolling median over this many tokens
  std::size_t cold_tokens = 64;     ///< the first this many tokens of the run give the cold median
  double bin_s = 10.0;              ///< bins of the time series
};

struct ThermalPoint {
  double t_s = 0.0;  ///< token end (or bin centre), monitor seconds
  double temp_c = std::numeric_limits<double>::quiet_NaN();
  double tok_s = 0.0;
  double j_per_token = 0.0;
  double j_per_token_net = 0.0;
  int repetition = 0;
};

struct ThermalResult {
  std::optional<double> onset_s;
  std::string trigger;  ///< "cooling_state", "frequency_cap", "tokens_per_s" or empty
  std::optional<double> cooling_onset_s, cap_onset_s, tok_s_onset_s;
  double cold_median_tok_s = std::numeric_limits<double>::quiet_NaN();
  std::vector<ThermalPoint> tokens;  ///< one per token
  std::vector<ThermalPoint> bins;    ///< means per bin_s of time
};

ThermalResult analyze_thermal(const RunResult& run, std::span<const TimedSeries> telemetry,
                              const ThermalConfig& cfg = {});

}  // namespace meltrig::analysis
