// analysis: a synthetic run whose energies are worked out from the samples by the trapezoid
// rule (per token, per phase, baseline, gross and net, MELT's formula), the events the analysis
// refuses with a message naming them, the statistics (Student t against tabulated values, the
// seeded bootstrap, Welch) and the JSON result's shape.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "meltrig/analysis/analysis.hpp"

namespace {

namespace an = meltrig::analysis;
using K = an::EventKind;

constexpr double kRate = 1000.0;

// Power by time: idle 0.5 W; load [5.2, 6.2) 2 W; prefill [6.2, 6.7) 4 W; token i in
// [6.7 + 0.1 i, 6.8 + 0.1 i) at 3 + 0.1 i W (10 tokens); idle again from 7.7 s; 13 s long.
double power_at(double t) {
  if (t >= 5.2 && t < 6.2) return 2.0;
  if (t >= 6.2 && t < 6.7) return 4.0;
  if (t >= 6.7 && t < 7.7) return 3.0 + 0.1 * std::floor((t - 6.7) * 10.0 + 1e-9);
  return 0.5;
}

std::vector<float> trace() {
  std::vector<float> p(13001);
  for (std::size_t i = 0; i < p.size(); ++i)
    p[i] = static_cast<float>(power_at(static_cast<double>(i) / kRate));
  return p;
}

// Trapezoid sum over samples a..b (sample indices), the rule's own definition.
double trapezoid(const std::vector<float>& p, std::size_t a, std::size_t b) {
  double e = 0.0;
  for (std::size_t i = a; i < b; ++i)
    e += 0.5 * (p[i] + p[i + 1]) / kRate;
  return e;
}

std::vector<an::Event> events() {
  std::vector<an::Event> ev = {{5.0, 0, K::run_start, -1},
                               {5.2, 0, K::load_start, -1},
                               {6.2, 0, K::load_end, -1},
                               {6.2, 0, K::prefill_start, 32},
                               {6.7, 0, K::prefill_end, 32}};
  for (int i = 0; i < 10; ++i)
    ev.push_back({6.8 + 0.1 * static_cast<double>(i), 0, K::token, i});
  ev.push_back({8.0, 0, K::run_end, -1});
  return ev;
}

an::Analysis analyze(const std::vector<float>& p, std::vector<an::Event> ev) {
  an::AnalysisInputs in;
  in.samples = an::series_from_span(p, kRate, 777);
  in.events = std::move(ev);
  auto a = an::analyze(in);
  REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.error().describe()));
  return std::move(a).value();
}

std::size_t idx(double t) {
  return static_cast<std::size_t>(std::llround(t * kRate));
}

}  // namespace

TEST_CASE("analysis run: tokens, phases, baseline and MELT's formula on a synthetic run") {
  auto p = trace();
  an::Analysis a = analyze(p, events());
  REQUIRE(a.run.reps.size() == 1);
  const an::RepResult& r = a.run.reps[0];
  CHECK(r.baseline.w == doctest::Approx(0.5));
  CHECK(r.baseline.blocks == 80);  // 4 s before and after in 0.1 s blocks
  REQUIRE(a.run.tokens.size() == 10);
  for (std::size_t i = 0; i < 10; ++i) {
    const an::TokenResult& t = a.run.tokens[i];
    double e = trapezoid(p, idx(6.7 + 0.1 * static_cast<double>(i)),
                         idx(6.8 + 0.1 * static_cast<double>(i)));
    CHECK(t.stats.energy_j == doctest::Approx(e).epsilon(1e-9));
    CHECK(t.net_energy_j == doctest::Approx(e - 0.05).epsilon(1e-9));
    // The end sample belongs to the next token (or the idle after the last one).
    double peak = i < 9 ? 3.1 + 0.1 * static_cast<double>(i) : 3.9;
    CHECK(t.stats.peak_w == doctest::Approx(peak).epsilon(1e-6));
    CHECK_FALSE(t.refined);  // uncertainty 0: the marker stands
  }
  const an::PhaseResult* load = r.phase("load");
  const an::PhaseResult* prefill = r.phase("prefill");
  const an::PhaseResult* decode = r.phase("decode");
  REQUIRE((load && prefill && decode));
  CHECK(load->stats.energy_j == doctest::Approx(trapezoid(p, 5200, 6200)).epsilon(1e-9));
  CHECK(prefill->stats.energy_j == doctest::Approx(trapezoid(p, 6200, 6700)).epsilon(1e-9));
  CHECK(decode->stats.energy_j == doctest::Approx(trapezoid(p, 6700, 7700)).epsilon(1e-9));
  CHECK(decode->net_energy_j == doctest::Approx(trapezoid(p, 6700, 7700) - 0.5).epsilon(1e-9));
  CHECK(r.decode_tok_s == doctest::Approx(10.0));
  CHECK(r.prefill_tok_s == doctest::Approx(64.0));
  CHECK(r.ttft_s == doctest::Approx(0.6));
  CHECK(r.j_per_token == doctest::Approx(trapezoid(p, 6700, 7700) / 10).epsilon(1e-9));
  CHECK(r.melt_j_per_token == doctest::Approx(trapezoid(p, 6200, 7700) / 10).epsilon(1e-9));
  CHECK(r.j_per_token_net == doctest::Approx((trapezoid(p, 6700, 7700) - 0.5) / 10).epsilon(1e-9));
}

TEST_CASE("analysis run: markers a token boundary the trace shows are refined toward the edge") {
  auto p = trace();
  auto ev = events();
  for (an::Event& e : ev) {
    if (e.kind != K::token || e.index == 9) continue;
    e.t_s += 0.0033;  // 3.3 ms late, and said to be within +-4 ms
    e.uncertainty_s = 0.004;
  }
  an::Analysis a = analyze(p, ev);
  for (std::size_t i = 0; i < 9; ++i) {
    const an::TokenResult& t = a.run.tokens[i];
    CHECK(t.refined);
    CHECK(t.end_s == doctest::Approx(6.8 + 0.1 * static_cast<double>(i)).epsilon(1.2e-3 / 6.8));
    CHECK(t.marker_end_s ==
          doctest::Approx(6.8 + 0.1 * static_cast<double>(i) + 0.0033));  // kept as it was
  }
}

TEST_CASE("analysis run: a gap inside a token is reported on that token only") {
  auto p = trace();
  p[idx(7.25)] = std::numeric_limits<float>::quiet_NaN();  // inside token 5 [7.2, 7.3)
  an::Analysis a = analyze(p, events());
  for (const an::TokenResult& t : a.run.tokens)
    CHECK(t.stats.touches_gap() == (t.index == 5));
  CHECK(a.run.tokens[5].stats.missing_samples == 1);
  CHECK(a.run.tokens[5].stats.covered_s == doctest::Approx(0.098));
  CHECK(a.run.reps[0].phase("decode")->stats.touches_gap());
}

TEST_CASE("analysis run: unusable events are refused, naming what is wrong") {
  auto p = trace();
  auto fails = [&](std::vector<an::Event> ev, const std::string& needle) {
    an::AnalysisInputs in;
    in.samples = an::series_from_span(p, kRate);
    in.events = std::move(ev);
    auto a = an::analyze(in);
    REQUIRE_FALSE(a.ok());
    CHECK_MESSAGE(a.error().message.find(needle) != std::string::npos, a.error().message);
  };
  fails({}, "no markers");
  auto ev = events();
  ev.erase(ev.begin() + 4);  // prefill.end
  fails(ev, "repetition 0: no prefill.end");
  ev = events();
  ev[8].index = 7;  // token 3 claims to be 7
  fails(ev, "token index 7 where 3 was expected");
  ev = events();
  ev.erase(ev.begin() + 5, ev.begin() + 15);
  fails(ev, "no token markers");
  an::AnalysisInputs in;
  in.samples = an::series_from_span({}, kRate);
  in.events = events();
  auto empty = an::analyze(in);
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message == "no power samples");
}

TEST_CASE("analysis run: the JSON result has the documented shape") {
  auto p = trace();
  an::Analysis a = analyze(p, events());
  auto j = an::to_json(a);
  for (const char* k : {"baseline_w", "phases", "repetitions", "tokens", "software_power",
                        "thermal", "statistics", "melt"})
    CHECK_MESSAGE(j.contains(k), k);
  for (const char* ph : {"load", "prefill", "decode"}) {
    REQUIRE(j["phases"].contains(ph));
    for (const char* k : {"start_s", "end_s", "duration_s", "tokens", "energy_j", "net_energy_j"})
      CHECK_MESSAGE(j["phases"][ph].contains(k), ph << "." << k);
  }
  CHECK(j["phases"]["decode"]["tokens"] == 10);
  CHECK(j["phases"]["prefill"]["tokens"] == 32);
  REQUIRE(j["tokens"].size() == 10);
  for (const char* k :
       {"repetition", "index", "phase", "start_s", "end_s", "energy_j", "net_energy_j", "refined"})
    CHECK_MESSAGE(j["tokens"][0].contains(k), k);
  CHECK(j["tokens"][3]["refined"].is_boolean());
  CHECK(j["thermal"]["throttle_onset_s"].is_null());
  CHECK(j["repetitions"][0]["phases"]["decode"]["energy_j"].get<double>() ==
        doctest::Approx(trapezoid(p, 6700, 7700)));
  CHECK(j["melt"]["melt_j_per_token"].get<double>() ==
        doctest::Approx(trapezoid(p, 6200, 7700) / 10));
}

TEST_CASE("analysis stats: Student t and bootstrap intervals, Welch difference") {
  std::vector<double> v = {1, 2, 3, 4, 5};
  an::Summary s = an::summarize(v);
  CHECK(s.mean == doctest::Approx(3.0));
  CHECK(s.sd == doctest::Approx(std::sqrt(2.5)));
  // t(0.975, 4) = 2.776445: half-width 2.776445 * 1.581139 / sqrt(5) = 1.963243
  CHECK(s.t_low == doctest::Approx(3.0 - 1.963243).epsilon(1e-6));
  CHECK(s.t_high == doctest::Approx(3.0 + 1.963243).epsilon(1e-6));
  CHECK(s.boot_low < 3.0);
  CHECK(s.boot_high > 3.0);
  CHECK(s.boot_low >= 1.0);
  std::vector<double> w = {1.31, 2.72, 3.13, 4.94, 5.25, 6.86, 2.27, 3.38, 4.41, 0.97};
  an::Summary b1 = an::summarize(w), again = an::summarize(w);
  CHECK(again.boot_low == b1.boot_low);  // seeded: reproducible
  CHECK(again.boot_high == b1.boot_high);
  an::Summary other = an::summarize(w, {0.95, 2000, 99});
  CHECK(other.boot_low != b1.boot_low);
  CHECK(other.boot_low == doctest::Approx(b1.boot_low).epsilon(0.1));
  // Welch: groups {1,2,3} and {4,6,8}: diff 4, va = 1/3, vb = 4/3, se = 1.290994, df = 2.941176.
  std::vector<double> a = {1, 2, 3}, b = {4, 6, 8};
  an::Difference d = an::welch_difference(a, b);
  CHECK(d.diff == doctest::Approx(4.0));
  CHECK(d.df == doctest::Approx(2.941176).epsilon(1e-5));
  CHECK(d.low < 4.0);
  CHECK(d.high > 4.0);
  CHECK(an::summarize(std::vector<double>{7.0}).n == 1);
  CHECK(std::isnan(an::summarize(std::vector<double>{7.0}).t_low));
}

TEST_CASE("analysis run: an hour at 5 kHz with 72,000 tokens, streamed, never held in memory") {
  // Generated chunk by chunk: token i holds 2 + (i % 7) * 0.25 W for 250 samples (50 ms) from
  // 1.0 s; idle 0.5 W elsewhere. No vector of samples exists: the series is a generator.
  constexpr double rate = 5000.0;
  constexpr std::uint64_t first_tok = 5000, per = 250, tokens = 72000;
  constexpr std::uint64_t total = first_tok + per * tokens + 5 * 5000;
  auto level = [&](std::uint64_t i) {
    if (i < first_tok || i >= first_tok + per * tokens) return 0.5;
    return 2.0 + static_cast<double>((i - first_tok) / per % 7) * 0.25;
  };
  an::SampleSeries s;
  s.rate_hz = rate;
  s.for_each_chunk = [&](const an::ChunkSink& sink) -> meltrig::Result<void> {
    std::vector<float> buf(65536);
    for (std::uint64_t i = 0; i < total; i += buf.size()) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), total - i));
      for (std::size_t k = 0; k < n; ++k)
        buf[k] = static_cast<float>(level(i + k));
      auto r = sink(i, std::span<const float>(buf.data(), n));
      if (!r) return r;
    }
    return {};
  };
  std::vector<an::Event> ev = {
      {0.5, 0, K::run_start, -1}, {0.6, 0, K::prefill_start, 8}, {1.0, 0, K::prefill_end, 8}};
  for (std::uint64_t i = 0; i < tokens; ++i)
    ev.push_back({static_cast<double>(first_tok + per * (i + 1)) / rate, 0, K::token,
                  static_cast<std::int64_t>(i)});
  ev.push_back({ev.back().t_s + 0.1, 0, K::run_end, -1});
  auto a = an::analyze_run(s, ev, {});
  REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.error().describe()));
  REQUIRE(a->run.tokens.size() == tokens);
  CHECK(a->run.samples == total);
  std::size_t wrong = 0;
  for (std::uint64_t i = 0; i < tokens; ++i) {
    // Trapezoid over samples a..a+250: 249 intervals at P_i, the last one half P_i, half P_i+1.
    const double p = level(first_tok + per * i), q = level(first_tok + per * (i + 1));
    const double e = (249.0 * p + 0.5 * (p + q)) / rate;
    if (std::abs(a->run.tokens[i].stats.energy_j - e) > 1e-9) ++wrong;
  }
  CHECK(wrong == 0);
  CHECK(a->run.reps[0].decode_tok_s == doctest::Approx(20.0));
}
