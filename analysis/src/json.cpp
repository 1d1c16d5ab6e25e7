// The analysis result as JSON: see analysis.hpp and docs/analysis.md.
#include <algorithm>
#include <cmath>

#include "meltrig/analysis/analysis.hpp"

namespace meltrig::analysis {

namespace {

using nlohmann::json;

json num(double x) {
  return std::isfinite(x) ? json(x) : json(nullptr);
}
json opt(const std::optional<double>& x) {
  return x ? num(*x) : json(nullptr);
}

json window_fields(double t0, double t1, std::int64_t tokens, const WindowStats& s, double net) {
  return {{"start_s", num(t0)},          {"end_s", num(t1)},
          {"duration_s", num(t1 - t0)},  {"tokens", tokens},
          {"energy_j", num(s.energy_j)}, {"net_energy_j", num(net)},
          {"mean_w", num(s.mean_w())},   {"peak_w", num(s.peak_w)},
          {"gap_s", num(s.gap_s())},     {"touches_gap", s.touches_gap()}};
}

json phase_json(const PhaseResult& p) {
  return window_fields(p.start_s, p.end_s, p.tokens, p.stats, p.net_energy_j);
}

// Each phase summed over the repetitions where it is present.
json phases_summed(const RunResult& run) {
  json out = json::object();
  if (run.reps.empty()) return out;
  for (std::size_t k = 0; k < run.reps.front().phases.size(); ++k) {
    PhaseResult sum;
    bool any = false;
    double dur = 0.0;
    for (const RepResult& r : run.reps) {
      const PhaseResult& p = r.phases[k];
      if (!p.present) continue;
      if (!any) sum = p;
      if (any) {
        sum.end_s = p.end_s;
        sum.tokens += p.tokens;
        sum.stats.energy_j += p.stats.energy_j;
        sum.stats.covered_s += p.stats.covered_s;
        sum.stats.duration_s += p.stats.duration_s;
        sum.stats.missing_samples += p.stats.missing_samples;
        sum.stats.peak_w = std::fmax(sum.stats.peak_w, p.stats.peak_w);
        sum.net_energy_j += p.net_energy_j;
      }
      dur += p.duration_s();
      any = true;
    }
    if (!any) continue;
    json j = phase_json(sum);
    j["duration_s"] = num(dur);
    out[run.reps.front().phases[k].name] = j;
  }
  return out;
}

json repetition_json(const RepResult& r) {
  json phases = json::object();
  for (const PhaseResult& p : r.phases)
    if (p.present) phases[p.name] = phase_json(p);
  return {{"index", r.index},
          {"start_s", num(r.start_s)},
          {"end_s", num(r.end_s)},
          {"baseline_w", num(r.baseline.w)},
          {"baseline_sd_w", num(r.baseline.sd_w)},
          {"baseline_before_w", num(r.baseline.before_w)},
          {"baseline_after_w", num(r.baseline.after_w)},
          {"phases", phases},
          {"prompt_tokens", r.prompt_tokens},
          {"output_tokens", r.output_tokens},
          {"ttft_s", num(r.ttft_s)},
          {"prefill_tok_s", num(r.prefill_tok_s)},
          {"decode_tok_s", num(r.decode_tok_s)},
          {"j_per_token", num(r.j_per_token)},
          {"j_per_token_net", num(r.j_per_token_net)},
          {"melt_j_per_token", num(r.melt_j_per_token)},
          {"refined_boundaries", r.refined_boundaries},
          {"token_boundaries", r.token_boundaries}};
}

json token_json(const TokenResult& t) {
  // One per token (72,000 in an hour): filled in place, no initializer-list copies.
  json j = json::object();
  auto& o = j.get_ref<json::object_t&>();
  o.emplace("repetition", t.repetition);
  o.emplace("index", t.index);
  o.emplace("phase", "decode");
  o.emplace("start_s", num(t.start_s));
  o.emplace("end_s", num(t.end_s));
  o.emplace("marker_end_s", num(t.marker_end_s));
  o.emplace("energy_j", num(t.stats.energy_j));
  o.emplace("net_energy_j", num(t.net_energy_j));
  o.emplace("mean_w", num(t.stats.mean_w()));
  o.emplace("peak_w", num(t.stats.peak_w));
  o.emplace("touches_gap", t.stats.touches_gap());
  o.emplace("refined", t.refined);
  return j;
}

json errors_json(const ErrorStats& e) {
  return {{"windows", e.n},
          {"bias_pct", num(e.bias_pct)},
          {"mape_pct", num(e.mape_pct)},
          {"rmse_w", num(e.rmse_w)},
          {"r", num(e.r)},
          {"loa_low_pct", num(e.loa_low_pct)},
          {"loa_high_pct", num(e.loa_high_pct)},
          {"mean_reference_w", num(e.mean_reference_w)}};
}

json software_json(const SoftwareResult& s) {
  json j = errors_json(s.readings);
  j["series"] = s.series;
  j["unit"] = s.unit;
  j["to_watts"] = num(s.to_watts);
  j["skipped"] = s.skipped;
  j["usb"] = errors_json(s.usb);
  json by = json::array();
  for (const LengthError& l : s.by_length) {
    json e = errors_json(l.stats);
    e["window_s"] = l.window_s;
    by.push_back(e);
  }
  j["by_window_length"] = by;
  json pairs = json::array();
  for (const ReadingPair& q : s.pairs)
    pairs.push_back({num(q.t_s), num(q.estimate_w), num(q.reference_w), q.usb});
  j["pairs"] = pairs;
  if (!s.note.empty()) j["note"] = s.note;
  return j;
}

json thermal_json(const ThermalResult& t) {
  json series = json::array();
  for (const ThermalPoint& p : t.bins) {
    series.push_back({{"t_s", num(p.t_s)},
                      {"temp_c", num(p.temp_c)},
                      {"tok_s", num(p.tok_s)},
                      {"j_per_token", num(p.j_per_token)},
                      {"j_per_token_net", num(p.j_per_token_net)}});
  }
  return {{"throttle_onset_s", opt(t.onset_s)},
          {"trigger", t.trigger.empty() ? json(nullptr) : json(t.trigger)},
          {"cooling_onset_s", opt(t.cooling_onset_s)},
          {"cap_onset_s", opt(t.cap_onset_s)},
          {"tokens_per_s_onset_s", opt(t.tok_s_onset_s)},
          {"cold_median_tok_s", num(t.cold_median_tok_s)},
          {"series", series}};
}

json summary_json(const Summary& s) {
  return {{"n", s.n},
          {"mean", num(s.mean)},
          {"sd", num(s.sd)},
          {"t_ci95", {num(s.t_low), num(s.t_high)}},
          {"bootstrap_ci95", {num(s.boot_low), num(s.boot_high)}}};
}

json difference_json(const Difference& d) {
  return {
      {"heated_minus_cold", num(d.diff)}, {"ci95", {num(d.low), num(d.high)}}, {"df", num(d.df)}};
}

json statistics_json(const Analysis& a) {
  json reps = json::object();
  for (const MetricSummary& m : a.repetition_stats)
    reps[m.name] = summary_json(m.summary);
  const ColdHeated& c = a.cold_vs_heated;
  return {{"repetitions", reps},
          {"cold_vs_heated",
           {{"cold", c.cold},
            {"heated", c.heated},
            {"decode_tok_s", difference_json(c.decode_tok_s)},
            {"j_per_token", difference_json(c.j_per_token)},
            {"j_per_token_net", difference_json(c.j_per_token_net)}}}};
}

// MELT's formula beside the corrected figures, over all repetitions.
json melt_json(const RunResult& run) {
  double prompt_window = 0.0, decode = 0.0, decode_net = 0.0;
  std::int64_t n = 0;
  for (const RepResult& r : run.reps) {
    prompt_window += r.phases[1].stats.energy_j + r.phases[2].stats.energy_j;
    decode += r.phases[2].stats.energy_j;
    decode_net += r.phases[2].net_energy_j;
    n += r.output_tokens;
  }
  const auto k = static_cast<double>(n);
  return {{"melt_j_per_token", num(prompt_window / k)},
          {"formula", "prompt-window (prefill + decode) energy / output tokens, gross"},
          {"decode_j_per_token", num(decode / k)},
          {"decode_j_per_token_net", num(decode_net / k)}};
}

}  // namespace

nlohmann::json to_json(const Analysis& a) {
  // Built by moving the large arrays in: an initializer list would copy every token object.
  json tokens = json::array();
  tokens.get_ref<json::array_t&>().reserve(a.run.tokens.size());
  for (const TokenResult& t : a.run.tokens)
    tokens.push_back(token_json(t));
  json reps = json::array();
  for (const RepResult& r : a.run.reps)
    reps.push_back(repetition_json(r));
  json sw = json::array();
  for (const SoftwareResult& s : a.software)
    sw.push_back(software_json(s));
  json out = json::object();
  out["baseline_w"] = num(a.run.baseline_w);
  out["baseline_sd_w"] = num(a.run.baseline_sd_w);
  out["phases"] = phases_summed(a.run);
  out["repetitions"] = std::move(reps);
  out["tokens"] = std::move(tokens);
  out["software_power"] = std::move(sw);
  out["thermal"] = thermal_json(a.thermal);
  out["statistics"] = statistics_json(a);
  out["melt"] = melt_json(a.run);
  out["samples"] = a.run.samples;
  out["rate_hz"] = num(a.run.rate_hz);
  out["warnings"] = a.run.warnings;
  return out;
}

}  // namespace meltrig::analysis
