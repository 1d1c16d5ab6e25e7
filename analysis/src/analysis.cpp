// The whole analysis of one capture: see analysis.hpp.
#include "meltrig/analysis/analysis.hpp"

#include <algorithm>
#include <cmath>

namespace meltrig::analysis {

namespace {

// name, accessor of one repetition's metric
using Metric = double (*)(const RepResult&);
const std::pair<const char*, Metric> kMetrics[] = {
    {"decode_tok_s", [](const RepResult& r) { return r.decode_tok_s; }},
    {"prefill_tok_s", [](const RepResult& r) { return r.prefill_tok_s; }},
    {"ttft_s", [](const RepResult& r) { return r.ttft_s; }},
    {"j_per_token", [](const RepResult& r) { return r.j_per_token; }},
    {"j_per_token_net", [](const RepResult& r) { return r.j_per_token_net; }},
    {"melt_j_per_token", [](const RepResult& r) { return r.melt_j_per_token; }},
    {"decode_energy_j", [](const RepResult& r) { return r.phases[2].stats.energy_j; }},
    {"prefill_energy_j", [](const RepResult& r) { return r.phases[1].stats.energy_j; }},
    {"baseline_w", [](const RepResult& r) { return r.baseline.w; }},
};

std::vector<double> values_of(std::span<const RunResult> runs, Metric m,
                              const std::vector<int>* only = nullptr) {
  std::vector<double> v;
  for (const RunResult& run : runs) {
    for (const RepResult& r : run.reps) {
      if (only && std::find(only->begin(), only->end(), r.index) == only->end()) continue;
      double x = m(r);
      if (std::isfinite(x)) v.push_back(x);
    }
  }
  return v;
}

}  // namespace

std::vector<MetricSummary> summarize_repetitions(std::span<const RunResult> runs,
                                                 const SummaryConfig& cfg) {
  std::vector<MetricSummary> out;
  for (const auto& [name, m] : kMetrics)
    out.push_back({name, summarize(values_of(runs, m), cfg)});
  return out;
}

ColdHeated compare_cold_heated(const RunResult& run, std::span<const TimedSeries> telemetry,
                               const std::string& temperature_series, double margin_c) {
  ColdHeated c;
  const TimedSeries* temp = nullptr;
  for (const TimedSeries& s : telemetry)
    if (s.name == temperature_series && !s.t_s.empty()) temp = &s;
  std::vector<double> start;
  for (const RepResult& r : run.reps)
    start.push_back(temp ? value_at(*temp, r.start_s) : 0.0);
  const double coolest = start.empty() ? 0.0 : *std::min_element(start.begin(), start.end());
  for (std::size_t i = 0; i < run.reps.size(); ++i) {
    bool cold = temp ? start[i] <= coolest + margin_c : i == 0;
    (cold ? c.cold : c.heated).push_back(run.reps[i].index);
  }
  std::span<const RunResult> one(&run, 1);
  for (const auto& [name, m] : kMetrics) {
    Difference d = welch_difference(values_of(one, m, &c.cold), values_of(one, m, &c.heated));
    std::string_view n = name;
    if (n == "decode_tok_s") c.decode_tok_s = d;
    if (n == "j_per_token") c.j_per_token = d;
    if (n == "j_per_token_net") c.j_per_token_net = d;
  }
  return c;
}

Result<Analysis> analyze(const AnalysisInputs& in, const AnalysisConfig& cfg) {
  SoftwarePlan sw(in.telemetry, in.usb, cfg.software);
  auto ra = analyze_run(in.samples, in.events, cfg.run, sw.windows());
  if (!ra) return ra.error();
  Analysis a;
  a.run = std::move(ra->run);
  a.software = sw.finish(ra->extra_stats);
  a.thermal = analyze_thermal(a.run, in.telemetry, cfg.thermal);
  a.repetition_stats = summarize_repetitions(std::span<const RunResult>(&a.run, 1), cfg.summary);
  a.cold_vs_heated =
      compare_cold_heated(a.run, in.telemetry, cfg.thermal.temperature, cfg.cold_margin_c);
  return a;
}

}  // namespace meltrig::analysis
