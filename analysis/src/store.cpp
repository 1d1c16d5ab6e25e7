// The /analysis group: see store.hpp.
#include "meltrig/analysis/store.hpp"

#include <string>
#include <vector>

namespace meltrig::analysis {

namespace {

using dataset::Column;
using dataset::GroupData;
using I64 = std::vector<std::int64_t>;
using F64 = std::vector<double>;
using Str = std::vector<std::string>;

GroupData token_table(const RunResult& run) {
  I64 rep, index, refined, missing;
  F64 start, end, marker_end, energy, net, mean, peak;
  for (const TokenResult& t : run.tokens) {
    rep.push_back(t.repetition);
    index.push_back(t.index);
    start.push_back(t.start_s);
    end.push_back(t.end_s);
    marker_end.push_back(t.marker_end_s);
    energy.push_back(t.stats.energy_j);
    net.push_back(t.net_energy_j);
    mean.push_back(t.stats.mean_w());
    peak.push_back(t.stats.peak_w);
    missing.push_back(static_cast<std::int64_t>(t.stats.missing_samples));
    refined.push_back(t.refined ? 1 : 0);
  }
  return {"tokens",
          {},
          {{"repetition", rep, ""},
           {"index", index, ""},
           {"start_s", start, "s"},
           {"end_s", end, "s"},
           {"marker_end_s", marker_end, "s"},
           {"energy_j", energy, "J"},
           {"net_energy_j", net, "J"},
           {"mean_w", mean, "W"},
           {"peak_w", peak, "W"},
           {"missing_samples", missing, ""},
           {"refined", refined, ""}},
          {}};
}

GroupData phase_table(const RunResult& run) {
  I64 rep, tokens, missing;
  Str name;
  F64 start, end, energy, net, mean, peak, gap;
  for (const RepResult& r : run.reps)
    for (const PhaseResult& p : r.phases) {
      if (!p.present) continue;
      rep.push_back(r.index);
      name.push_back(p.name);
      start.push_back(p.start_s);
      end.push_back(p.end_s);
      tokens.push_back(p.tokens);
      energy.push_back(p.stats.energy_j);
      net.push_back(p.net_energy_j);
      mean.push_back(p.stats.mean_w());
      peak.push_back(p.stats.peak_w);
      gap.push_back(p.stats.gap_s());
      missing.push_back(static_cast<std::int64_t>(p.stats.missing_samples));
    }
  return {"phases",
          {},
          {{"repetition", rep, ""},
           {"phase", name, ""},
           {"start_s", start, "s"},
           {"end_s", end, "s"},
           {"tokens", tokens, ""},
           {"energy_j", energy, "J"},
           {"net_energy_j", net, "J"},
           {"mean_w", mean, "W"},
           {"peak_w", peak, "W"},
           {"gap_s", gap, "s"},
           {"missing_samples", missing, ""}},
          {}};
}

GroupData repetition_table(const RunResult& run) {
  I64 index, prompt, output, refined, boundaries;
  F64 start, end, base, base_sd, ttft, pre, dec, jpt, jpt_net, melt;
  for (const RepResult& r : run.reps) {
    index.push_back(r.index);
    start.push_back(r.start_s);
    end.push_back(r.end_s);
    base.push_back(r.baseline.w);
    base_sd.push_back(r.baseline.sd_w);
    prompt.push_back(r.prompt_tokens);
    output.push_back(r.output_tokens);
    ttft.push_back(r.ttft_s);
    pre.push_back(r.prefill_tok_s);
    dec.push_back(r.decode_tok_s);
    jpt.push_back(r.j_per_token);
    jpt_net.push_back(r.j_per_token_net);
    melt.push_back(r.melt_j_per_token);
    refined.push_back(static_cast<std::int64_t>(r.refined_boundaries));
    boundaries.push_back(static_cast<std::int64_t>(r.token_boundaries));
  }
  return {"repetitions",
          {},
          {{"index", index, ""},
           {"start_s", start, "s"},
           {"end_s", end, "s"},
           {"baseline_w", base, "W"},
           {"baseline_sd_w", base_sd, "W"},
           {"prompt_tokens", prompt, ""},
           {"output_tokens", output, ""},
           {"ttft_s", ttft, "s"},
           {"prefill_tok_s", pre, "1/s"},
           {"decode_tok_s", dec, "1/s"},
           {"j_per_token", jpt, "J"},
           {"j_per_token_net", jpt_net, "J"},
           {"melt_j_per_token", melt, "J"},
           {"refined_boundaries", refined, ""},
           {"token_boundaries", boundaries, ""}},
          {}};
}

GroupData software_table(const std::vector<SoftwareResult>& sw) {
  Str series, unit, note;
  I64 n, skipped, usb_n;
  F64 bias, mape, rmse, r, lo, hi, ref;
  for (const SoftwareResult& s : sw) {
    series.push_back(s.series);
    unit.push_back(s.unit);
    note.push_back(s.note);
    n.push_back(static_cast<std::int64_t>(s.readings.n));
    skipped.push_back(static_cast<std::int64_t>(s.skipped));
    usb_n.push_back(static_cast<std::int64_t>(s.usb.n));
    bias.push_back(s.readings.bias_pct);
    mape.push_back(s.readings.mape_pct);
    rmse.push_back(s.readings.rmse_w);
    r.push_back(s.readings.r);
    lo.push_back(s.readings.loa_low_pct);
    hi.push_back(s.readings.loa_high_pct);
    ref.push_back(s.readings.mean_reference_w);
  }
  return {"software_power",
          {},
          {{"series", series, ""},
           {"unit", unit, ""},
           {"windows", n, ""},
           {"bias_pct", bias, "%"},
           {"mape_pct", mape, "%"},
           {"rmse_w", rmse, "W"},
           {"r", r, ""},
           {"loa_low_pct", lo, "%"},
           {"loa_high_pct", hi, "%"},
           {"mean_reference_w", ref, "W"},
           {"skipped", skipped, ""},
           {"usb_windows", usb_n, ""},
           {"note", note, ""}},
          {}};
}

GroupData thermal_group(const ThermalResult& th) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  F64 t, temp, tok_s, jpt, jpt_net;
  for (const ThermalPoint& p : th.bins) {
    t.push_back(p.t_s);
    temp.push_back(p.temp_c);
    tok_s.push_back(p.tok_s);
    jpt.push_back(p.j_per_token);
    jpt_net.push_back(p.j_per_token_net);
  }
  return {"thermal",
          {{"throttle_onset_s", th.onset_s.value_or(nan)},
           {"trigger", th.trigger},
           {"cold_median_tok_s", th.cold_median_tok_s}},
          {{"t_s", t, "s"},
           {"temp_c", temp, "degC"},
           {"tok_s", tok_s, "1/s"},
           {"j_per_token", jpt, "J"},
           {"j_per_token_net", jpt_net, "J"}},
          {}};
}

}  // namespace

dataset::GroupData analysis_group(const Analysis& a, const nlohmann::json& result_json) {
  const RunResult& run = a.run;
  GroupData g{"analysis",
              {{"version", kAnalysisGroupVersion},
               {"baseline_w", run.baseline_w},
               {"baseline_sd_w", run.baseline_sd_w},
               {"rate_hz", run.rate_hz},
               {"samples", static_cast<std::int64_t>(run.samples)},
               {"time_base", std::string("monitor seconds: sample index / nominal rate")},
               {"json", result_json.dump()}},
              {{"warnings", Str(run.warnings.begin(), run.warnings.end()), ""}},
              {}};
  g.groups = {token_table(run), phase_table(run), repetition_table(run), software_table(a.software),
              thermal_group(a.thermal)};
  return g;
}

Result<void> store(const std::filesystem::path& path, const Analysis& a,
                   const nlohmann::json& result_json) {
  return dataset::replace_group(path, analysis_group(a, result_json));
}

}  // namespace meltrig::analysis
