// The analysis against the simulated bench's truth: per-token and per-phase energy on every
// shipped scenario, with the world's bench physics (rail low-pass, governor ramps, wake latency,
// background bursts) and a realistic clock-map error from the harness. The truth (the supply-side
// energy the monitor delivers, per token and phase) is read only here, by the
// assertions; the analysis sees samples, mapped events and telemetry.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "analysis_sim_harness.hpp"
#include "meltrig/analysis/analysis.hpp"
#include "meltrig/analysis/run.hpp"
#include "meltrig/analysis/stats.hpp"
#include "meltrig/fixtures/sim_scenario.hpp"
#include "meltrig/fixtures/sim_world.hpp"

namespace {

namespace fs = std::filesystem;
namespace an = meltrig::analysis;
using namespace meltrig::fixtures::sim;
using meltrig::test::BenchFlaws;
using meltrig::test::capture_world;
using meltrig::test::SimCapture;

World world_of(const std::string& file) {
  auto s = load_scenario(fs::path(MELTRIG_SOURCE_DIR) / "examples" / "scenarios" / file);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  auto w = World::build(*s, s->run.seed);
  REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
  return std::move(w).value();
}

an::Analysis analyze_all(const SimCapture& c, double supply_v) {
  an::AnalysisInputs in;
  in.samples = an::series_from_span(c.power_w, c.rate_hz);
  in.events = c.events;
  in.telemetry = c.telemetry;
  in.usb = c.usb;
  an::AnalysisConfig cfg;
  cfg.software.supply_v = supply_v;  // the monitor's voltage channel on a real bench
  auto a = an::analyze(in, cfg);
  REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.error().describe()));
  return std::move(a).value();
}

an::RunAnalysis analyze(const SimCapture& c, const an::RunConfig& cfg = {}) {
  auto r = an::analyze_run(an::series_from_span(c.power_w, c.rate_hz), c.events, cfg);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  return std::move(r).value();
}

// Relative per-token energy errors against the energy the monitor delivers over the token
// ([t0_intended_s, t1_s]: from the previous marker to its own).
std::vector<double> token_errors(const World& w, const an::RunResult& r) {
  const auto& truth = w.truth().tokens;
  REQUIRE(truth.size() == r.tokens.size());
  std::vector<double> err;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const TokenTruth& t = truth[i];
    double e = t.supply_energy_j;
    err.push_back(std::abs(r.tokens[i].stats.energy_j - e) / e);
  }
  return err;
}

struct Figures {
  double median = 0, p99 = 0, max = 0;
  std::size_t n = 0, refined = 0;
};

Figures figures(const std::vector<double>& err, const an::RunResult& r) {
  Figures f;
  f.n = err.size();
  f.median = an::median_of(err);
  f.p99 = an::quantile_of(err, 0.99);
  f.max = *std::max_element(err.begin(), err.end());
  for (const auto& t : r.tokens)
    f.refined += t.refined ? 1 : 0;
  return f;
}

void print(const char* what, const Figures& f) {
  std::printf("%-40s tokens %5zu refined %5zu  median %.4f%%  p99 %.4f%%  max %.4f%%\n", what, f.n,
              f.refined, 100 * f.median, 100 * f.p99, 100 * f.max);
}

// Phase energies (load, prefill, decode) against the supply-side truth, relative.
double worst_phase_error(const World& w, const an::RunResult& r) {
  double worst = 0.0;
  for (const PhaseTruth& p : w.truth().phases) {
    const char* name = p.phase == Phase::load      ? "load"
                       : p.phase == Phase::prefill ? "prefill"
                       : p.phase == Phase::decode  ? "decode"
                                                   : nullptr;
    if (name == nullptr || p.t1_s <= p.t0_s) continue;
    const an::PhaseResult* est = r.reps.at(static_cast<std::size_t>(p.rep)).phase(name);
    REQUIRE(est != nullptr);
    double e = p.supply_energy_j;
    double err = std::abs(est->stats.energy_j - e) / e;
    if (err > 0.002)
      std::printf("  phase %s rep %d: %.4f J vs truth %.4f J over %.4f s (est %.4f s)\n", name,
                  p.rep, est->stats.energy_j, e, p.t1_s - p.t0_s, est->duration_s());
    worst = std::max(worst, err);
  }
  return worst;
}

// The clock-map error a good sync leaves (the bench physics is the world's own).
BenchFlaws flawed() {
  return BenchFlaws{};
}

// The goals: per-token error median <= 0.5%, p99 <= 2%; phases within 0.2%.
Figures check_goals(const char* label, const World& w, const an::RunResult& r) {
  Figures f = figures(token_errors(w, r), r);
  print(label, f);
  CHECK(f.median <= 0.005);
  CHECK(f.p99 <= 0.02);
  double ph = worst_phase_error(w, r);
  std::printf("  worst phase error %.4f%%\n", 100 * ph);
  CHECK(ph <= 0.002);
  return f;
}

}  // namespace

TEST_CASE("analysis sim: phone per-token and phase energy within the goals with bench physics") {
  World w = world_of("phone_llamacpp.toml");
  SimCapture c = capture_world(w, flawed());
  auto a = analyze(c);
  Figures f = check_goals("phone_llamacpp (bench physics)", w, a.run);
  an::RunConfig off;
  off.refine = false;
  auto raw = analyze(c, off);
  Figures fr = figures(token_errors(w, raw.run), raw.run);
  print("phone_llamacpp (bench physics), not refined", fr);
  // On a good map refinement gains nothing and costs a little: the step it finds is the next
  // token's compute start, one wake latency after the marker. The cost stays far inside the goals.
  CHECK(f.median <= fr.median + 0.0002);
  CHECK(f.p99 <= fr.p99 + 0.0005);
}

TEST_CASE(
    "analysis sim: Jetson, three repetitions with cool-downs, statistics and cold vs heated") {
  World w = world_of("jetson_orin.toml");
  SimCapture c = capture_world(w, flawed());
  an::Analysis a = analyze_all(c, w.supply_voltage_v());
  check_goals("jetson_orin (bench physics)", w, a.run);
  REQUIRE(a.run.reps.size() == 3);
  // Per repetition: decode tokens/s and J/token against the truth's own figures.
  for (std::size_t r = 0; r < 3; ++r) {
    const RepTruth& t = w.truth().reps[r];
    const an::RepResult& e = a.run.reps[r];
    CHECK(e.decode_tok_s == doctest::Approx(t.decode_tok_s).epsilon(0.002));
    CHECK(e.j_per_token == doctest::Approx(t.j_per_token + 0.0).epsilon(0.01));
    CHECK(e.melt_j_per_token == doctest::Approx(t.prompt_window_j_per_token).epsilon(0.01));
    CHECK(e.baseline.w == doctest::Approx(w.scenario().device.idle_w).epsilon(0.02));
    CHECK(e.j_per_token_net == doctest::Approx(t.j_per_token_net).epsilon(0.02));
  }
  const an::MetricSummary& tok = a.repetition_stats[0];
  CHECK(tok.name == "decode_tok_s");
  CHECK(tok.summary.n == 3);
  CHECK(tok.summary.t_low <= tok.summary.mean);
  CHECK(tok.summary.t_high >= tok.summary.mean);
  CHECK(a.cold_vs_heated.cold.size() + a.cold_vs_heated.heated.size() == 3);
  // Rails against the monitor: each sees a share of (device - carrier offset), so below it.
  std::size_t rails = 0;
  for (const an::SoftwareResult& s : a.software) {
    if (!s.series.starts_with("power/rail/")) continue;
    ++rails;
    CHECK(s.readings.n > 100);
    CHECK(s.readings.bias_pct < 0.0);
  }
  CHECK(rails == 3);
}

TEST_CASE("analysis sim: the fuel gauge's bias is recovered, USB-fed windows reported apart") {
  World w = world_of("fuel_gauge_validation.toml");
  SimCapture c = capture_world(w, flawed());
  an::Analysis a = analyze_all(c, w.supply_voltage_v());
  check_goals("fuel_gauge_validation (bench physics)", w, a.run);
  const an::SoftwareResult* g = nullptr;
  for (const an::SoftwareResult& s : a.software)
    if (s.series == "power/fuel_gauge_current") g = &s;
  REQUIRE(g != nullptr);
  const double truth_bias = w.scenario().fuel_gauge.bias_pct;
  std::printf(
      "  fuel gauge: bias %.3f%% (scenario %.1f%%), MAPE %.3f%%, r %.4f, LoA [%.2f, %.2f]%%, "
      "%zu readings, %zu USB-fed (bias %.2f%%)\n",
      g->readings.bias_pct, truth_bias, g->readings.mape_pct, g->readings.r,
      g->readings.loa_low_pct, g->readings.loa_high_pct, g->readings.n, g->usb.n, g->usb.bias_pct);
  CHECK(std::abs(g->readings.bias_pct - truth_bias) <= 1.0);
  CHECK(g->usb.n > 0);
  CHECK(g->readings.n > 20);
  CHECK(g->readings.r > 0.9);
  CHECK(g->to_watts < 0.0);  // discharge reads negative: the sign was found
  REQUIRE(g->by_length.size() == 9);
  for (const an::LengthError& l : g->by_length)
    std::printf("    window %5.1f s: %4zu windows, MAPE %.3f%%, bias %.3f%%\n", l.window_s,
                l.stats.n, l.stats.mape_pct, l.stats.bias_pct);
  // Longer windows average the per-reading gain noise out: the 10 s error is below the 0.1 s one.
  CHECK(g->by_length[6].stats.mape_pct < g->by_length[0].stats.mape_pct);
}

TEST_CASE("analysis sim: the thermal soak's throttling onset and tokens/s against temperature") {
  World w = world_of("thermal_soak_30min.toml");
  BenchFlaws fl = flawed();
  SimCapture c = capture_world(w, fl);
  an::Analysis a = analyze_all(c, w.supply_voltage_v());
  check_goals("thermal_soak_30min (bench physics)", w, a.run);
  REQUIRE(w.truth().throttle_onset_s > 0);
  REQUIRE(a.thermal.onset_s.has_value());
  const double truth = c.to_monitor(w.truth().throttle_onset_s);
  std::printf("  throttle onset %.2f s (%s), truth %.2f s; cap %.2f, tok/s %s\n",
              *a.thermal.onset_s, a.thermal.trigger.c_str(), truth,
              a.thermal.cap_onset_s.value_or(-1),
              a.thermal.tok_s_onset_s ? std::to_string(*a.thermal.tok_s_onset_s).c_str() : "none");
  CHECK(std::abs(*a.thermal.onset_s - truth) <= 5.0);
  // Tokens/s falls as the SoC heats: the last bins are slower and hotter than the first.
  REQUIRE(a.thermal.bins.size() > 100);
  CHECK(a.thermal.bins.back().tok_s < 0.85 * a.thermal.bins.front().tok_s);
  CHECK(a.thermal.bins.back().temp_c > a.thermal.bins.front().temp_c + 10.0);
  CHECK(a.cold_vs_heated.heated.size() > 0);
  CHECK(a.cold_vs_heated.decode_tok_s.diff < 0.0);
}

TEST_CASE("analysis sim: refinement pulls badly placed markers back toward the power edges") {
  World w = world_of("phone_llamacpp.toml");
  BenchFlaws fl = flawed();
  fl.extra_marker_sd_s = 300e-6;  // a poor clock map: each marker off by 0.3 ms s.d.
  SimCapture c = capture_world(w, fl);
  an::RunConfig off;
  off.refine = false;
  auto raw = analyze(c, off);
  auto ref = analyze(c);
  Figures fr = figures(token_errors(w, raw.run), raw.run);
  Figures ff = figures(token_errors(w, ref.run), ref.run);
  print("phone, markers +-0.3 ms, not refined", fr);
  print("phone, markers +-0.3 ms, refined", ff);
  CHECK(ff.median < 0.7 * fr.median);
  CHECK(ff.refined > fr.n / 2);
}

TEST_CASE("analysis sim: chunk size does not change a single figure") {
  World w = world_of("phone_llamacpp.toml");
  SimCapture c = capture_world(w);
  an::RunConfig cfg;
  auto big = an::analyze_run(an::series_from_span(c.power_w, c.rate_hz, 1 << 20), c.events, cfg);
  auto small = an::analyze_run(an::series_from_span(c.power_w, c.rate_hz, 997), c.events, cfg);
  REQUIRE((big.ok() && small.ok()));
  REQUIRE(big->run.tokens.size() == small->run.tokens.size());
  for (std::size_t i = 0; i < big->run.tokens.size(); ++i) {
    CHECK(big->run.tokens[i].stats.energy_j == small->run.tokens[i].stats.energy_j);
    CHECK(big->run.tokens[i].end_s == small->run.tokens[i].end_s);
  }
}
