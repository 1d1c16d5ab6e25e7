// The simulated bench's physics (issue 18): the rail's first-order response, the governor's
// frequency ramps, wake latency of every scheduled start, background bursts, and the supply
// against the device energy. Expected values come from the scenario keys; figures recovered from
// the world's outputs are printed for the closing note.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "meltrig/fixtures/sim_scenario.hpp"
#include "meltrig/fixtures/sim_world.hpp"
#include "meltrig/fw/lvpm_protocol.hpp"
#include "meltrig/targets/markers.hpp"
#include "sim_support.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using namespace meltrig::fixtures::sim;
using namespace meltrig::test::simw;
using meltrig::targets::MarkerKind;

/// A quiet phone (no noise) with four DVFS steps; `physics` goes into [device].
std::string quiet(const std::string& physics) {
  return R"(
[device]
name = "phys"
supply_v = 4.0
idle_w = 0.5
noise_w = 0.0
)" + physics +
         R"(
[[device.dvfs]]
mhz = 1000
power_w = 1.5
[[device.dvfs]]
mhz = 1500
power_w = 2.5
[[device.dvfs]]
mhz = 2000
power_w = 3.5
[[device.dvfs]]
mhz = 2400
power_w = 4.5
decode_tok_s = 14.0
prefill_tok_s = 90.0
[run]
idle_before_s = 1.0
idle_after_s = 1.0
prompt_tokens = 16
output_tokens = 40
)";
}

const char* kIdeal =
    "rail_tau_us = 0\ngovernor_ramp_ms = 0\ngovernor_step_ms = 0\nwake_latency_us_median = 0\n"
    "wake_latency_us_p99 = 0\nbackground_bursts_per_s = 0\n";

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double x = q * static_cast<double>(v.size() - 1);
  auto k = static_cast<std::size_t>(x);
  if (k + 1 >= v.size()) return v.back();
  return v[k] + (x - static_cast<double>(k)) * (v[k + 1] - v[k]);
}

const SyncEdgeTruth& edge(const World& w, int rep, Phase ph, int chip) {
  for (const SyncEdgeTruth& e : w.truth().sync_edges)
    if (e.rep == rep && e.phase == ph && e.chip == chip) return e;
  FAIL("no sync edge at chip " << chip);
  return w.truth().sync_edges.front();
}

}  // namespace

TEST_CASE("sim physics: a scenario that omits the keys gets the realistic defaults") {
  Scenario s = parse_ok(quiet(""));
  CHECK(s.device.rail_tau_us == 50.0);
  CHECK(s.device.governor_ramp_ms == 10.0);
  CHECK(s.device.governor_step_ms == 4.0);
  CHECK(s.device.wake_latency_us_median == 20.0);
  CHECK(s.device.wake_latency_us_p99 == 150.0);
  CHECK(s.device.background_bursts_per_s == 2.0);
  CHECK(s.device.background_burst_w == 0.8);
  CHECK(s.device.background_burst_ms == 5.0);
  // Every shipped scenario runs on the defaults.
  for (const auto& entry : fs::directory_iterator(scenario_dir())) {
    if (entry.path().extension() != ".toml") continue;
    CAPTURE(entry.path().string());
    auto f = load_scenario(entry.path());
    REQUIRE(f.ok());
    CHECK(f->device.rail_tau_us == 50.0);
    CHECK(f->device.wake_latency_us_median == 20.0);
    CHECK(f->device.background_bursts_per_s == 2.0);
  }
  auto bad =
      parse_scenario(quiet("wake_latency_us_median = 50\nwake_latency_us_p99 = 40\n"), "lat.toml");
  REQUIRE(!bad.ok());
  CHECK(bad.error().message.find("device.wake_latency_us_p99") != std::string::npos);
  auto neg = parse_scenario(quiet("rail_tau_us = -1\n"), "tau.toml");
  REQUIRE(!neg.ok());
  CHECK(neg.error().message.find("device.rail_tau_us") != std::string::npos);
}

TEST_CASE("sim physics: a step of device power reaches the monitor with the rail's time constant") {
  for (double tau_us : {50.0, 200.0}) {
    CAPTURE(tau_us);
    // Governor and wake latency at their defaults: the first busy chip is a step from idle to the
    // lowest DVFS step, clean for 10 ms (the governor's ramp).
    Scenario s = parse_ok(
        quiet("rail_tau_us = " + std::to_string(tau_us) + "\nbackground_bursts_per_s = 0\n"));
    World w = build(s, 3);
    const SyncEdgeTruth& e = edge(w, 0, Phase::sync_start, 0);
    REQUIRE(e.rising);
    CHECK(e.actual_s > e.intended_s);  // the runner woke late
    const double te = e.actual_s;
    const double p0 = s.device.idle_w, p1 = s.device.dvfs[0].power_w;
    // The device steps at once; the monitor (the current it samples) follows exponentially.
    CHECK(w.power_w(te - 1e-9) == doctest::Approx(p0).epsilon(1e-12));
    CHECK(w.power_w(te + 1e-9) == doctest::Approx(p1).epsilon(1e-12));
    const double v = s.device.supply_v;
    std::vector<double> x, y;
    for (int k = 1; k <= 40; ++k) {
      double u = k * 0.1 * tau_us * 1e-6;  // up to 4 tau
      double ps = w.supply_current_a(te + u) * v;
      x.push_back(u);
      y.push_back(std::log((p1 - ps) / (p1 - p0)));
    }
    const double tau_hat = -1.0 / slope(x, y);
    CHECK(tau_hat * 1e6 == doctest::Approx(tau_us).epsilon(1e-3));
    // 63 % of the step after one time constant, and fully settled before the governor steps.
    CHECK(w.supply_power_w(te + tau_us * 1e-6) ==
          doctest::Approx(p0 + (p1 - p0) * (1 - std::exp(-1.0))).epsilon(1e-6));
    CHECK(w.supply_power_w(te + 0.009) == doctest::Approx(p1).epsilon(1e-9));
    char fig[120];
    std::snprintf(fig, sizeof fig, "rail: configured tau %.1f us, recovered %.4f us", tau_us,
                  tau_hat * 1e6);
    MESSAGE(fig);
  }
  // The ideal world: the monitor sees the step at once.
  World ideal = build(parse_ok(quiet(kIdeal)), 3);
  const SyncEdgeTruth& e = edge(ideal, 0, Phase::sync_start, 0);
  CHECK(e.actual_s == e.intended_s);
  CHECK(ideal.supply_power_w(e.actual_s + 1e-9) == ideal.power_w(e.actual_s + 1e-9));
  CHECK(ideal.power_w(e.actual_s + 1e-9) == 4.5);
}

TEST_CASE("sim physics: a busy chip starts at a low frequency step and climbs, idle falls back") {
  Scenario s = parse_ok(quiet("background_bursts_per_s = 0\n"));
  World w = build(s, 5);
  const auto& dv = s.device.dvfs;
  // 0xB5 = 1 0 1 1 0 1 0 1: chip 2 rises after idle chip 1; chips 2 and 3 are one 100 ms load.
  const SyncEdgeTruth& up = edge(w, 0, Phase::sync_start, 2);
  REQUIRE(up.rising);
  const double t = up.actual_s;
  const double ms = 1e-3;
  CHECK(w.freq_mhz(t + 1 * ms) == dv[0].mhz);
  CHECK(w.power_w(t + 1 * ms) == doctest::Approx(dv[0].power_w));
  CHECK(w.freq_mhz(t + 9.9 * ms) == dv[0].mhz);
  CHECK(w.freq_mhz(t + 10.1 * ms) == dv[1].mhz);  // ramp 10 ms
  CHECK(w.power_w(t + 10.1 * ms) == doctest::Approx(dv[1].power_w));
  CHECK(w.freq_mhz(t + 14.1 * ms) == dv[2].mhz);  // then one step per 4 ms
  CHECK(w.freq_mhz(t + 18.1 * ms) == dv[3].mhz);
  CHECK(w.power_w(t + 40 * ms) == doctest::Approx(dv[3].power_w));
  // Chip 4 is idle: the load stops on time (the runner spins), the frequency holds for the ramp
  // and then falls one step per 4 ms.
  const SyncEdgeTruth& down = edge(w, 0, Phase::sync_start, 4);
  REQUIRE(!down.rising);
  CHECK(down.actual_s == down.intended_s);
  const double d = down.actual_s;
  CHECK(w.power_w(d + 1 * ms) == doctest::Approx(s.device.idle_w));
  CHECK(w.freq_mhz(d + 9.9 * ms) == dv[3].mhz);
  CHECK(w.freq_mhz(d + 10.1 * ms) == dv[2].mhz);
  CHECK(w.freq_mhz(d + 14.1 * ms) == dv[1].mhz);
  CHECK(w.freq_mhz(d + 18.1 * ms) == dv[0].mhz);
  // So chip 5 starts low again; decode, after the climb during prefill, runs at the top step
  // (a wake gap between tokens is far shorter than the ramp and does not disturb it).
  CHECK(w.freq_mhz(edge(w, 0, Phase::sync_start, 5).actual_s + 1 * ms) == dv[0].mhz);
  for (const TokenTruth& tk : w.truth().tokens)
    CHECK(tk.freq_mhz == dv[3].mhz);
  // The ideal world runs a busy chip at the top step from its first instant.
  World ideal = build(parse_ok(quiet(kIdeal)), 5);
  const SyncEdgeTruth& iu = edge(ideal, 0, Phase::sync_start, 2);
  CHECK(ideal.freq_mhz(iu.actual_s + 1e-6) == dv[3].mhz);
  CHECK(ideal.freq_mhz(edge(ideal, 0, Phase::sync_start, 4).actual_s + 1e-6) == dv[0].mhz);
}

TEST_CASE("sim physics: wake latencies follow the configured log-normal median and p99") {
  struct Case {
    const char* keys;
    double median_us, p99_us;
  };
  for (const Case& c :
       {Case{"", 20.0, 150.0},
        Case{"wake_latency_us_median = 60\nwake_latency_us_p99 = 900\n", 60.0, 900.0}}) {
    CAPTURE(c.median_us);
    std::string text = replace_once(quiet(c.keys), "output_tokens = 40", "output_tokens = 20000");
    Scenario s = parse_ok(text);
    World w = build(s, 11);
    std::vector<double> lat;
    for (const WakeTruth& k : w.truth().wakes)
      lat.push_back((k.actual_s - k.intended_s) * 1e6);
    REQUIRE(lat.size() > 20000);
    const double med = quantile(lat, 0.5), p99 = quantile(lat, 0.99);
    CHECK(med == doctest::Approx(c.median_us).epsilon(0.03));
    CHECK(p99 == doctest::Approx(c.p99_us).epsilon(0.08));
    CHECK(*std::min_element(lat.begin(), lat.end()) > 0.0);
    MESSAGE("wake latency: configured median " << c.median_us << " us, p99 " << c.p99_us
                                               << " us; recovered " << med << " us, " << p99
                                               << " us over " << lat.size() << " wakes");
    // Every token starts one wake after it was asked for, and the truth keeps both times.
    const auto& tk = w.truth().tokens;
    for (std::size_t i = 1; i < tk.size(); ++i) {
      if (tk[i].rep != tk[i - 1].rep) continue;
      CHECK(tk[i].t0_intended_s == tk[i - 1].t1_s);
    }
    CHECK(tk[5].t0_s - tk[5].t0_intended_s > 0.0);
  }
}

TEST_CASE("sim physics: marker stamps are taken where the runner is, not at the power edges") {
  std::string text = quiet("background_bursts_per_s = 0\n") + "[clocks]\njitter_ns = 0\n";
  text = replace_once(text, "[clocks]", "[clocks]\ndrift_ppm = 100.0");
  Scenario s = parse_ok(text);
  World w = build(s, 2);
  const auto& ev = w.markers().events;
  const Truth& tr = w.truth();
  auto find = [&](MarkerKind k) {
    auto it = std::find_if(ev.begin(), ev.end(), [&](const auto& e) { return e.kind == k; });
    REQUIRE(it != ev.end());
    return *it;
  };
  // prefill.start is written when the runner starts the prefill; its power rises a wake later.
  const PhaseTruth* pre = nullptr;
  for (const PhaseTruth& p : tr.phases)
    if (p.phase == Phase::prefill) pre = &p;
  REQUIRE(pre != nullptr);
  CHECK(find(MarkerKind::prefill_start).t_ns == w.mono_ns(pre->t0_s));
  CHECK(pre->t0_actual_s > pre->t0_s);
  CHECK(w.power_w(0.5 * (pre->t0_s + pre->t0_actual_s)) == doctest::Approx(s.device.idle_w));
  // Token markers at the end of each token's compute (where the runner is when it has one).
  std::size_t i = 0;
  for (const auto& e : ev) {
    if (e.kind != MarkerKind::token) continue;
    CHECK(e.t_ns == w.mono_ns(tr.tokens[i++].t1_s));
  }
  // The SDK stamps sync.start with its first chip's deadline and schedules chip k at
  // + k x chip_ns on the device clock (100 ppm fast here): the truth's intended edges are those
  // device times, the actual rising edges come later.
  const auto ss = find(MarkerKind::sync_start);
  for (const SyncEdgeTruth& e : tr.sync_edges) {
    if (e.rep != 0 || e.phase != Phase::sync_start) continue;
    CAPTURE(e.chip);
    CHECK(std::abs(static_cast<double>(e.intended_mono_ns - ss.t_ns - e.chip * ss.chip_ns)) <
          100.0);
    if (e.rising) CHECK(e.actual_s > e.intended_s);
    if (!e.rising) CHECK(e.actual_s == e.intended_s);
  }
}

TEST_CASE("sim physics: background bursts arrive as a Poisson process at the configured rate") {
  std::string text = replace_once(
      quiet("background_bursts_per_s = 5\nbackground_burst_w = 1.0\nbackground_burst_ms = 3\n"),
      "idle_after_s = 1.0", "idle_after_s = 600.0");
  Scenario s = parse_ok(text);
  World w = build(s, 8);
  const auto& b = w.truth().bursts;
  const double T = w.duration_s();
  const double rate = static_cast<double>(b.size()) / T;
  // ~3000 arrivals: the count's s.d. is 1.8 %.
  CHECK(rate == doctest::Approx(5.0).epsilon(0.06));
  std::size_t long_gaps = 0;
  for (std::size_t i = 1; i < b.size(); ++i)
    long_gaps += b[i].t0_s - b[i - 1].t0_s > 1.0 / 5.0;
  // Exponential gaps: P(gap > mean) = 1/e.
  CHECK(static_cast<double>(long_gaps) / static_cast<double>(b.size() - 1) ==
        doctest::Approx(std::exp(-1.0)).epsilon(0.06));
  // Each burst is in the device power, on top of whatever runs.
  std::size_t checked = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double mid = 0.5 * (b[i].t0_s + b[i].t1_s);
    bool alone =
        (i == 0 || b[i - 1].t1_s < b[i].t0_s) && (i + 1 == b.size() || b[i + 1].t0_s > b[i].t1_s);
    if (!alone || mid < w.truth().phases.back().t0_s) continue;  // only in the long idle_after
    CHECK(b[i].t1_s - b[i].t0_s == doctest::Approx(0.003));
    CHECK(w.power_w(mid) == doctest::Approx(s.device.idle_w + 1.0));
    ++checked;
  }
  CHECK(checked > 1000);
  double energy = 0.0;
  for (const BurstTruth& x : b)
    energy += x.power_w * (x.t1_s - x.t0_s);
  CHECK(w.truth().background_energy_j == doctest::Approx(energy).epsilon(1e-12));
  MESSAGE("bursts: configured 5 /s, " << b.size() << " in " << T << " s = " << rate << " /s");
  // Off: no bursts.
  World none = build(parse_ok(quiet(kIdeal)), 8);
  CHECK(none.truth().bursts.empty());
}

TEST_CASE("sim physics: supply and device energy over a whole run agree within the ADC's bound") {
  // One coarse LVPM count (the emulator's default calibration) for every sample of the run: the
  // smallest error a 5 kHz capture of the supply can claim.
  namespace lv = meltrig::fw::lvpm;
  const double count_a = lv::kCoarseRefAmps / (3100 - 100);
  for (const auto& entry : fs::directory_iterator(scenario_dir())) {
    if (entry.path().extension() != ".toml") continue;
    CAPTURE(entry.path().string());
    auto s = load_scenario(entry.path());
    REQUIRE(s.ok());
    World w = build(*s, s->run.seed);
    const Truth& tr = w.truth();
    const double T = w.duration_s();
    const double supply = w.supply_side_energy_j(0.0, T);
    const double bound = T * s->device.supply_v * count_a;
    CHECK(std::abs(supply - tr.energy_j) <= bound);
    // Exactly: the difference is the charge the rail holds at the end.
    CHECK(
        tr.rail_stored_j ==
        doctest::Approx(s->device.rail_tau_us * 1e-6 * w.supply_power_w(T - 1e-12)).epsilon(1e-6));
    CHECK(tr.rail_stored_j > 0.0);
    // Per window too: supply - device = -tau x (change of supply power).
    const double a = 0.3 * T, b = 0.7 * T;
    CHECK(
        w.supply_side_energy_j(a, b) - w.energy_j(a, b) ==
        doctest::Approx(-s->device.rail_tau_us * 1e-6 * (w.supply_power_w(b) - w.supply_power_w(a)))
            .epsilon(1e-6)
            .scale(1e-9));
    // The monitor's energy (USB share removed) is the truth's.
    CHECK(s->device.supply_v * tr.charge_c + tr.usb_energy_j ==
          doctest::Approx(supply).epsilon(1e-12));
    // Tokens tile the decode phase; each token's supply energy sums to the phase's.
    double tok = 0.0, tok_supply = 0.0, dec = 0.0, dec_supply = 0.0;
    for (const TokenTruth& t : tr.tokens) {
      tok += t.energy_j;
      tok_supply += t.supply_energy_j;
      CHECK(t.compute_energy_j <= t.energy_j);
    }
    for (const PhaseTruth& p : tr.phases) {
      if (p.phase != Phase::decode) continue;
      dec += p.energy_j;
      dec_supply += p.supply_energy_j;
    }
    CHECK(tok == doctest::Approx(dec).epsilon(1e-9));
    CHECK(tok_supply == doctest::Approx(dec_supply).epsilon(1e-9));
    MESSAGE(entry.path().filename().string()
            << ": device " << tr.energy_j << " J, supply " << supply << " J, difference "
            << (supply - tr.energy_j) * 1e6 << " uJ (rail), ADC bound " << bound * 1e3 << " mJ");
  }
}

TEST_CASE("sim physics: the world is deterministic per seed with every effect on") {
  auto s = load_scenario(scenario_dir() / "phone_llamacpp.toml");
  REQUIRE(s.ok());
  World a = build(*s, 21), b = build(*s, 21), c = build(*s, 22);
  CHECK(a.truth_json() == b.truth_json());
  CHECK(a.marker_file_text() == b.marker_file_text());
  CHECK(a.supply_current_a(13.37) == b.supply_current_a(13.37));
  CHECK(a.truth().bursts.size() == b.truth().bursts.size());
  CHECK(a.truth_json() != c.truth_json());
  REQUIRE(!a.truth().bursts.empty());
  REQUIRE(!c.truth().bursts.empty());
  CHECK(a.truth().bursts.front().t0_s != c.truth().bursts.front().t0_s);
}
