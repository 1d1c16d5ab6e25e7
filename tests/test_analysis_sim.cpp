// The analysis against the simulated bench's truth: per-token and per-phase energy on every
// shipped scenario, with a realistic clock-map error and the bench's flaws (rail low-pass, wake
// latency, background bursts) laid on top by the harness. The truth is read only here, by the
// assertions; the analysis sees samples, mapped events and telemetry.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "analysis_sim_harness.hpp"
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

an::RunAnalysis analyze(const SimCapture& c, const an::RunConfig& cfg = {}) {
  auto r = an::analyze_run(an::series_from_span(c.power_w, c.rate_hz), c.events, cfg);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  return std::move(r).value();
}

bool in_usb(const World& w, double t0, double t1) {
  return w.usb_share(t0) > 0 || w.usb_share(t1) > 0 || w.usb_share(0.5 * (t0 + t1)) > 0;
}

// Relative per-token energy errors (tokens fed by USB left out: the monitor cannot see them).
std::vector<double> token_errors(const World& w, const SimCapture& c, const an::RunResult& r) {
  const auto& truth = w.truth().tokens;
  REQUIRE(truth.size() == r.tokens.size());
  std::vector<double> err;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    const TokenTruth& t = truth[i];
    if (in_usb(w, t.t0_s, t.t1_s)) continue;
    double e = t.energy_j + c.burst_energy(t.t0_s, t.t1_s);
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

// Phase energies (load, prefill, decode) against the truth, relative; USB-fed phases left out.
double worst_phase_error(const World& w, const SimCapture& c, const an::RunResult& r) {
  double worst = 0.0;
  for (const PhaseTruth& p : w.truth().phases) {
    const char* name = p.phase == Phase::load      ? "load"
                       : p.phase == Phase::prefill ? "prefill"
                       : p.phase == Phase::decode  ? "decode"
                                                   : nullptr;
    if (name == nullptr || p.t1_s <= p.t0_s || in_usb(w, p.t0_s, p.t1_s)) continue;
    const an::PhaseResult* est = r.reps.at(static_cast<std::size_t>(p.rep)).phase(name);
    REQUIRE(est != nullptr);
    double e = p.energy_j + c.burst_energy(p.t0_s, p.t1_s);
    worst = std::max(worst, std::abs(est->stats.energy_j - e) / e);
  }
  return worst;
}

BenchFlaws flawed() {
  BenchFlaws f;
  f.rail_tau_s = 50e-6;
  f.wake_median_s = 20e-6;
  f.wake_p99_s = 150e-6;
  f.bursts_per_s = 2.0;
  return f;
}

}  // namespace

TEST_CASE("analysis sim: phone per-token and phase energy within the goals on a flawed bench") {
  World w = world_of("phone_llamacpp.toml");
  SimCapture c = capture_world(w, flawed());
  auto a = analyze(c);
  Figures f = figures(token_errors(w, c, a.run), a.run);
  print("phone_llamacpp (flawed bench)", f);
  CHECK(f.median <= 0.005);
  CHECK(f.p99 <= 0.02);
  double ph = worst_phase_error(w, c, a.run);
  std::printf("  worst phase error %.4f%%\n", 100 * ph);
  CHECK(ph <= 0.002);
}
