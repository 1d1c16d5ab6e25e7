// analysis: the parts on synthetic inputs whose answers are known by construction: software
// estimates with a set bias, window and lag (and USB windows apart), the thermal onset triggers
// in their order, and statistics pooled across files.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "meltrig/analysis/adapter.hpp"
#include "meltrig/analysis/analysis.hpp"
#include "meltrig/targets/melt_import.hpp"

namespace {

namespace an = meltrig::analysis;

// Power alternating 2 W / 4 W every 1 s at 1 kHz for 60 s.
std::vector<float> square_trace() {
  std::vector<float> p(60001);
  for (std::size_t i = 0; i < p.size(); ++i)
    p[i] = (i / 1000) % 2 == 0 ? 2.0f : 4.0f;
  return p;
}

}  // namespace

TEST_CASE("analysis parts: a current series with a 5% bias, window and lag, USB apart") {
  auto p = square_trace();
  // A gauge reading every 0.5 s in mA at 4 V, negative on discharge: the monitor's mean over
  // [t - 0.3 - 0.7, t - 0.3] (integrate_power, tested on its own) times 1.05.
  an::TimedSeries g{"power/fuel_gauge_current", "mA", {}, {}, 0.7, 0.3};
  for (double t = 2.0; t <= 59.0; t += 0.5) {
    g.t_s.push_back(t);
    double mean_w = an::integrate_power(p, 1000.0, t - 1.0, t - 0.3).joules / 0.7;
    g.value.push_back(-1.05 * mean_w / 4.0 * 1000.0);
  }
  std::vector<an::TimedSeries> tel = {g, {"thermal/soc", "degC", {0, 60}, {30, 40}}};
  std::vector<an::Window> usb = {{40.0, 45.0}};
  an::SoftwareConfig cfg;
  cfg.supply_v = 4.0;
  an::SoftwarePlan plan(tel, usb, cfg);
  an::WindowIntegrator wi(1000.0, plan.windows());
  REQUIRE(wi.add(0, p).ok());
  wi.finish();
  std::vector<an::WindowStats> stats;
  for (std::size_t i = 0; i < wi.window_count(); ++i)
    stats.push_back(wi.window(i));
  auto res = plan.finish(stats);
  REQUIRE(res.size() == 1);  // the temperature is not a power series
  const an::SoftwareResult& r = res[0];
  CHECK(r.to_watts == doctest::Approx(-4e-3));
  CHECK(r.readings.bias_pct == doctest::Approx(5.0).epsilon(1e-4));
  CHECK(r.readings.mape_pct == doctest::Approx(5.0).epsilon(1e-4));
  CHECK(r.readings.loa_low_pct == doctest::Approx(5.0).epsilon(1e-3));
  CHECK(r.readings.loa_high_pct == doctest::Approx(5.0).epsilon(1e-3));
  CHECK(r.readings.r == doctest::Approx(1.0).epsilon(1e-9));
  // Readings whose window [t - 1, t - 0.3] meets [40, 45]: t in (40.3, 46], 11 of them.
  CHECK(r.usb.n == 11);
  CHECK(r.readings.n + r.usb.n == g.t_s.size());
  REQUIRE(r.by_length.size() == 9);
  CHECK(r.by_length.back().stats.n == 0);  // no 60 s tile fits in 57 s of readings
  CHECK(r.by_length[5].stats.n > 0);       // 5 s tiles do
}

TEST_CASE("analysis parts: currents without a voltage are listed with a note, not guessed") {
  an::TimedSeries g{"power/fuel_gauge_current", "uA", {1, 2, 3}, {1, 2, 3}};
  an::SoftwarePlan plan(std::vector<an::TimedSeries>{g}, {}, {});
  auto res = plan.finish({});
  REQUIRE(res.size() == 1);
  CHECK(res[0].note.find("supply_v") != std::string::npos);
  CHECK(res[0].readings.n == 0);
}

namespace {

// n tokens from 10.05 s at `rate` tokens/s, at half that rate from token `slow_from` on.
an::RunResult tokens_at(double rate, std::size_t n, std::size_t slow_from, int rep = 0) {
  an::RunResult run;
  double t = 10.05;
  for (std::size_t i = 0; i < n; ++i) {
    an::TokenResult tok;
    tok.repetition = rep;
    tok.index = static_cast<std::int64_t>(i);
    double d = 1.0 / (i >= slow_from ? 0.5 * rate : rate);
    tok.start_s = t;
    tok.end_s = t + d;
    tok.stats.energy_j = 0.3;
    t += d;
    run.tokens.push_back(tok);
  }
  return run;
}

}  // namespace

TEST_CASE("analysis parts: throttling onset is the first of its three triggers") {
  an::RunResult run = tokens_at(10.0, 600, 300);  // 10 tok/s, then 5 tok/s from 40.05 s
  an::TimedSeries cap{"thermal/cap", "MHz", {0, 20, 30, 50}, {2400, 2400, 2400, 2000}};
  an::TimedSeries cool{"thermal/cooling_device0", "", {0, 45}, {0, 1}};
  std::vector<an::TimedSeries> tel = {cap, cool};
  an::ThermalResult t = an::analyze_thermal(run, tel);
  REQUIRE(t.onset_s.has_value());
  CHECK(t.cold_median_tok_s == doctest::Approx(10.0));
  // The rolling median of 16 tokens is (5 + 10) / 2 < 9 once 8 slow tokens are in: 40.05 + 1.6 s.
  CHECK(t.tok_s_onset_s.value() == doctest::Approx(41.65).epsilon(1e-9));
  CHECK(t.onset_s.value() == doctest::Approx(*t.tok_s_onset_s));
  CHECK(t.trigger == "tokens_per_s");
  CHECK(t.cooling_onset_s.value() == 45.0);
  CHECK(t.cap_onset_s.value() == 50.0);
  cool.t_s = {0, 30};
  tel = {cap, cool};
  t = an::analyze_thermal(run, tel);
  CHECK(t.trigger == "cooling_state");
  CHECK(t.onset_s.value() == 30.0);
  // Without any trigger: no onset, said as null in the JSON.
  an::ThermalResult none = an::analyze_thermal(tokens_at(10.0, 300, 1000), {});
  CHECK_FALSE(none.onset_s.has_value());
  CHECK(none.trigger.empty());
  REQUIRE(none.bins.size() == 4);  // token ends 10.15 .. 40.05 s in 10 s bins
  CHECK(none.bins[0].tok_s == doctest::Approx(10.0));
}

TEST_CASE("analysis parts: statistics across files pool the repetitions of every file") {
  auto run_with = [](std::vector<double> tok_s) {
    an::RunResult r;
    for (double x : tok_s) {
      an::RepResult rep;
      rep.index = static_cast<int>(r.reps.size());
      rep.decode_tok_s = x;
      rep.phases.resize(6);
      r.reps.push_back(rep);
    }
    return r;
  };
  std::vector<an::RunResult> files = {run_with({10, 12}), run_with({11, 13, 14})};
  auto s = an::summarize_repetitions(files);
  REQUIRE(s[0].name == "decode_tok_s");
  CHECK(s[0].summary.n == 5);
  CHECK(s[0].summary.mean == doctest::Approx(12.0));
  auto one = an::summarize_repetitions(std::span<const an::RunResult>(files.data(), 1));
  CHECK(one[0].summary.n == 2);
  CHECK(one[0].summary.mean == doctest::Approx(11.0));
}

TEST_CASE("analysis parts: markers on a clock the map does not cover are refused, named") {
  auto log = meltrig::targets::parse_markers(
      "meltrig-markers 1 clock=realtime\n"
      "1000 run.start id=x\n"
      "2000 prefill.start tokens=4\n",
      "run.markers");
  REQUIRE(log.ok());
  an::ClockMap mono_only = [](std::string_view clock,
                              std::int64_t ns) -> std::optional<an::MappedTime> {
    if (clock != "monotonic") return std::nullopt;
    return an::MappedTime{static_cast<double>(ns) * 1e-9, 1e-4};
  };
  auto ev = an::events_from_markers(*log, mono_only);
  REQUIRE_FALSE(ev.ok());
  CHECK(ev.error().message ==
        "run.markers:2: run.start at 1000 ns on clock 'realtime' is not covered by the clock map");
  log->clock = "monotonic";
  auto ok = an::events_from_markers(*log, mono_only, 2e-5);
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 2);
  CHECK((*ok)[1].kind == an::EventKind::prefill_start);
  CHECK((*ok)[1].index == 4);
  CHECK((*ok)[1].t_s == doctest::Approx(2e-6));
  CHECK((*ok)[1].uncertainty_s == doctest::Approx(1.2e-4));
}

TEST_CASE("analysis parts: an imported MELT run re-analysed, MELT's formula beside the corrected") {
  namespace melt = meltrig::targets::melt;
  const std::filesystem::path dir =
      std::filesystem::path(MELTRIG_SOURCE_DIR) / "fixtures" / "data" / "melt_run";
  auto run = melt::scan_run_dir(dir);
  REQUIRE(run.ok());
  REQUIRE(run->monsoon_csv.has_value());
  auto trace = melt::read_monsoon_csv(*run->monsoon_csv);
  REQUIRE(trace.ok());
  auto t0 = melt::read_t_monsoon(dir / ".t_monsoon");
  REQUIRE(t0.ok());
  const auto& conv = run->conversations.front();
  REQUIRE(conv.llamacpp_events.has_value());
  auto log = melt::read_llamacpp_events(*conv.llamacpp_events);
  REQUIRE(log.ok());
  // MELT's own alignment: wall clock minus the host's start time, at the nominal 5 kHz.
  std::vector<float> power;
  for (std::size_t i = 0; i < trace->size(); ++i)
    power.push_back(trace->current_a[i] * trace->voltage_v[i]);
  an::ClockMap wall = [&](std::string_view clock,
                          std::int64_t ns) -> std::optional<an::MappedTime> {
    if (clock != "realtime") return std::nullopt;
    return an::MappedTime{static_cast<double>(ns) * 1e-9 - *t0, 0.0};
  };
  auto ev = an::events_from_markers(*log, wall);
  REQUIRE_MESSAGE(ev.ok(), (ev.ok() ? "" : ev.error().describe()));
  an::AnalysisInputs in;
  in.samples = an::series_from_span(power, 5000.0);
  in.events = *ev;
  auto a = an::analyze(in);
  REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.error().describe()));
  const an::RepResult& r = a->run.reps.at(0);
  const an::PhaseResult* pf = r.phase("prefill");
  const an::PhaseResult* dc = r.phase("decode");
  REQUIRE((pf && dc));
  // MELT's figure is the whole prompt window over the output tokens.
  auto window = an::integrate_power(power, 5000.0, pf->start_s, dc->end_s);
  CHECK(r.melt_j_per_token ==
        doctest::Approx(window.joules / static_cast<double>(r.output_tokens)).epsilon(1e-9));
  CHECK(r.j_per_token < r.melt_j_per_token);
  auto j = an::to_json(*a);
  CHECK(j["melt"]["melt_j_per_token"].get<double>() == doctest::Approx(r.melt_j_per_token));
  std::printf("MELT fixture: %lld tokens, MELT's J/token %.4f, decode gross %.4f, net %s\n",
              static_cast<long long>(r.output_tokens), r.melt_j_per_token, r.j_per_token,
              std::isnan(r.j_per_token_net) ? "n/a (no idle window in the file)"
                                            : std::to_string(r.j_per_token_net).c_str());
}
