// The simulated bench world (fixtures/sim_*): scenario parsing and its errors, determinism by
// seed, exact energy against numerical integration, thermal throttling, device clocks, markers in
// the v1 format, fuel-gauge quirks and USB share. Expected values come from the scenario keys.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "meltrig/fixtures/sim_scenario.hpp"
#include "meltrig/fixtures/sim_world.hpp"
#include "meltrig/targets/markers.hpp"
#include "sim_support.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using meltrig::Errc;
using namespace meltrig::fixtures::sim;
using namespace meltrig::test::simw;

// A small phone scenario for clock tests: 50 ppm fast, no tempco, a suspend while idle, a
// realtime step; everything else default.
const char* kClockScenario = R"(
[device]
name = "clk"
supply_v = 4.0
idle_w = 0.5
noise_w = 0.0
[[device.dvfs]]
mhz = 2000
power_w = 4.0
decode_tok_s = 20.0
prefill_tok_s = 100.0
[clocks]
mono_offset_s = 1000.0
boot_minus_mono_s = 5.0
realtime_offset_s = 1700000000.0
drift_ppm = 50.0
jitter_ns = 10000
suspends = [{ at_s = 2.0, duration_s = 3.0 }]
realtime_steps = [{ at_s = 9.0, step_ms = -250.0 }]
[run]
idle_before_s = 8.0
idle_after_s = 2.0
output_tokens = 40
prompt_tokens = 10
)";

}  // namespace

TEST_CASE("sim scenario: every example scenario loads and builds a plausible world") {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(scenario_dir())) {
    if (entry.path().extension() != ".toml") continue;
    ++n;
    CAPTURE(entry.path().string());
    auto s = load_scenario(entry.path());
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
    World w = build(s.value(), s->run.seed);
    CHECK(w.duration_s() > 0.0);
    CHECK(w.truth().energy_j > 0.0);
    // Phases tile [0, T] and their energies add up to the run's.
    const auto& ph = w.truth().phases;
    REQUIRE(!ph.empty());
    CHECK(ph.front().t0_s == 0.0);
    CHECK(ph.back().t1_s == w.duration_s());
    double sum = 0.0;
    for (std::size_t i = 0; i < ph.size(); ++i) {
      if (i > 0) CHECK(ph[i].t0_s == ph[i - 1].t1_s);
      sum += ph[i].energy_j;
    }
    CHECK(sum == doctest::Approx(w.truth().energy_j).epsilon(1e-12));
    REQUIRE(!w.truth().reps.empty());
    for (const RepTruth& r : w.truth().reps) {
      CHECK(r.output_tokens == s->run.output_tokens);
      // Published on-device figures: ~0.17-0.5 J/token on phones, more on a Jetson board.
      CHECK(r.j_per_token > 0.1);
      CHECK(r.j_per_token < 1.0);
    }
  }
  CHECK(n >= 4);

  // The phone scenario: 20-40 s, 4.0-4.2 V, 0.2-0.5 J/token.
  Scenario phone = load("phone_llamacpp.toml");
  World w = build(phone, phone.run.seed);
  CHECK(w.duration_s() > 20.0);
  CHECK(w.duration_s() < 40.0);
  CHECK(w.supply_voltage_v() >= 4.0);
  CHECK(w.supply_voltage_v() <= 4.2);
  CHECK(w.truth().reps[0].j_per_token > 0.2);
  CHECK(w.truth().reps[0].j_per_token < 0.5);
}

TEST_CASE("sim scenario: lower DVFS steps derive tokens/s from the top step") {
  Scenario s = load("phone_llamacpp.toml");
  REQUIRE(s.device.dvfs.size() == 4);
  // decode ~ f^0.7, prefill ~ f^1.0 from 14 and 90 tok/s at 2400 MHz
  CHECK(s.device.dvfs[0].decode_tok_s == doctest::Approx(14.0 * std::pow(1000.0 / 2400.0, 0.7)));
  CHECK(s.device.dvfs[0].prefill_tok_s == doctest::Approx(90.0 * 1000.0 / 2400.0));
  CHECK(s.device.dvfs[3].decode_tok_s == 14.0);
  CHECK(s.name == "phone_llamacpp");
  CHECK(s.clocks.realtime_steps.size() == 1);
}

TEST_CASE("sim scenario: malformed TOML names the file and line") {
  auto r = parse_scenario("[device]\nname = \"x\"\nsupply_v = = 4\n", "bad.toml");
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::parse_error);
  CHECK(r.error().message.rfind("bad.toml:3:", 0) == 0);

  meltrig::test::TempDir dir;
  fs::path p = dir / "broken.toml";
  { std::ofstream(p) << "[run]\nseed = 1\n\n[device\n"; }
  auto f = load_scenario(p);
  REQUIRE(!f.ok());
  CHECK(f.error().message.find(p.string() + ":4:") != std::string::npos);

  auto missing = load_scenario(dir / "nope.toml");
  REQUIRE(!missing.ok());
  CHECK(missing.error().code == Errc::not_found);
}

TEST_CASE("sim scenario: unknown keys, wrong types and bad values are errors naming key and line") {
  std::string good = text_of("phone_llamacpp.toml");
  auto unknown =
      parse_scenario(replace_once(good, "idle_w = 0.6", "idle_w = 0.6\nidel_w = 0.5"), "p.toml");
  REQUIRE(!unknown.ok());
  CHECK(unknown.error().message.find("device.idel_w: unknown key") != std::string::npos);
  // idle_w is on line 9 of the file; the typo follows it
  CHECK(unknown.error().message.find("p.toml:10:") == 0);

  auto unknown_section = parse_scenario(good + "\n[power]\nx = 1\n", "p.toml");
  REQUIRE(!unknown_section.ok());
  CHECK(unknown_section.error().message.find("power: unknown key") != std::string::npos);

  auto nested =
      parse_scenario(replace_once(good, "mhz = 1000\n", "mhz = 1000\nvolts = 0.8\n"), "p.toml");
  REQUIRE(!nested.ok());
  CHECK(nested.error().message.find("device.dvfs[0].volts: unknown key") != std::string::npos);

  auto type = parse_scenario(replace_once(good, "supply_v = 4.1", "supply_v = \"4.1\""), "p.toml");
  REQUIRE(!type.ok());
  CHECK(type.error().message.find("p.toml:8: device.supply_v: expected a number") == 0);

  auto range =
      parse_scenario(replace_once(good, "output_tokens = 160", "output_tokens = 0"), "p.toml");
  REQUIRE(!range.ok());
  CHECK(range.error().message.find("run.output_tokens") != std::string::npos);
  CHECK(range.error().message.find("out of range") != std::string::npos);

  auto unit = parse_scenario(
      "[device]\n[[device.dvfs]]\nmhz = 1\npower_w = 1\ndecode_tok_s = 1\nprefill_tok_s = 1\n"
      "[software_power.fuel_gauge]\nunit = \"nA\"\n",
      "u.toml");
  REQUIRE(!unit.ok());
  CHECK(unit.error().message.find("u.toml:8: software_power.fuel_gauge.unit") == 0);

  auto order = parse_scenario(replace_once(good, "mhz = 1500", "mhz = 900"), "p.toml");
  REQUIRE(!order.ok());
  CHECK(order.error().message.find("ascending") != std::string::npos);

  auto no_dvfs = parse_scenario("[device]\nname = \"x\"\n", "n.toml");
  REQUIRE(!no_dvfs.ok());
  CHECK(no_dvfs.error().message.find("device.dvfs") != std::string::npos);
}

TEST_CASE("sim world: the same seed gives byte-identical truth and markers, another seed differs") {
  Scenario s = load("phone_llamacpp.toml");
  World a = build(s, 42);
  World b = build(s, 42);
  CHECK(a.truth_json() == b.truth_json());
  CHECK(a.marker_file_text() == b.marker_file_text());
  CHECK(a.power_w(12.3456) == b.power_w(12.3456));

  World c = build(s, 43);
  CHECK(c.truth_json() != a.truth_json());
  CHECK(c.marker_file_text() != a.marker_file_text());
  CHECK(c.power_w(12.3456) != a.power_w(12.3456));

  // Same structure: the same keys at the top level and in the clock section, same token count.
  auto ja = nlohmann::json::parse(a.truth_json());
  auto jc = nlohmann::json::parse(c.truth_json());
  std::vector<std::string> ka, kc;
  for (auto it = ja.begin(); it != ja.end(); ++it)
    ka.push_back(it.key());
  for (auto it = jc.begin(); it != jc.end(); ++it)
    kc.push_back(it.key());
  CHECK(ka == kc);
  CHECK(ja["tokens"]["t0_s"].size() == jc["tokens"]["t0_s"].size());
  CHECK(ja["tokens"]["t0_s"].size() == static_cast<std::size_t>(s.run.output_tokens));
  CHECK(ja["seed"] == 42);
  CHECK(ja["scenario"]["digest"] == jc["scenario"]["digest"]);
  CHECK(ja["energy_j"].get<double>() == doctest::Approx(a.truth().energy_j).epsilon(1e-15));
}

TEST_CASE("sim world: energy over the run equals the phase sum and a fine numerical integral") {
  Scenario s = load("phone_llamacpp.toml");
  World w = build(s, 5);
  const double T = w.duration_s();
  const Truth& tr = w.truth();

  double sum_phases = 0.0;
  for (const PhaseTruth& p : tr.phases)
    sum_phases += p.energy_j;
  CHECK(sum_phases == doctest::Approx(tr.energy_j).epsilon(1e-12));
  CHECK(w.energy_j(0.0, T) == doctest::Approx(tr.energy_j).epsilon(1e-12));
  // Phases tile [0, T].
  CHECK(tr.phases.front().t0_s == 0.0);
  CHECK(tr.phases.back().t1_s == T);
  for (std::size_t i = 1; i < tr.phases.size(); ++i)
    CHECK(tr.phases[i].t0_s == tr.phases[i - 1].t1_s);

  // Midpoint rule at 10 us: each power step costs at most |dP| x 5 us, a few mJ in total here.
  const double h = 1e-5;
  double numeric = 0.0;
  auto n = static_cast<std::size_t>(T / h);
  for (std::size_t i = 0; i < n; ++i)
    numeric += w.power_w((static_cast<double>(i) + 0.5) * h) * h;
  numeric += w.power_w(0.5 * (static_cast<double>(n) * h + T)) * (T - static_cast<double>(n) * h);
  CHECK(numeric == doctest::Approx(tr.energy_j).epsilon(2e-5));

  // An arbitrary window across phase edges, and the token sum against the decode phase.
  double t0 = 6.1234, t1 = 17.891;
  double win = 0.0;
  for (double t = t0 + h / 2; t < t1; t += h)
    win += w.power_w(t) * h;
  CHECK(win == doctest::Approx(w.energy_j(t0, t1)).epsilon(5e-5));
  double tokens = 0.0;
  for (const TokenTruth& t : tr.tokens)
    tokens += t.energy_j;
  CHECK(tokens == doctest::Approx(tr.reps[0].decode_j).epsilon(1e-12));
  // No USB: charge is the supply-side energy / voltage, which is the device energy less what the
  // rail (50 us) still holds at the end; outside the run nothing flows.
  CHECK(w.charge_c(0.0, T) * s.device.supply_v ==
        doctest::Approx(tr.energy_j - tr.rail_stored_j).epsilon(1e-12));
  CHECK(tr.rail_stored_j > 0.0);
  CHECK(tr.rail_stored_j < 1e-6 * tr.energy_j);
  CHECK(w.power_w(-1.0) == 0.0);
  CHECK(w.power_w(T + 1.0) == 0.0);
  CHECK(w.energy_j(T, T + 10.0) == 0.0);
  // Background noise is on: power varies while idle.
  CHECK(w.power_w(1.0) != w.power_w(1.3));
  CHECK(w.power_w(1.0) == doctest::Approx(s.device.idle_w).epsilon(0.1));
}

TEST_CASE("sim world: a 30-minute soak throttles, tokens/s falls and the SoC plateaus") {
  Scenario s = load("thermal_soak_30min.toml");
  World w = build(s, s.run.seed);
  const Truth& tr = w.truth();
  const double T = w.duration_s();
  CHECK(T >= 1800.0);
  CHECK(T < 1900.0);
  REQUIRE(tr.throttle_onset_s > 0.0);
  CHECK(tr.throttle_onset_s < 300.0);

  auto tok_s = [&](double from, double to) {
    double n = 0, dt = 0;
    for (const TokenTruth& t : tr.tokens) {
      if (t.t0_s >= from && t.t1_s <= to) {
        n += 1;
        dt += t.t1_s - t.t0_s;
      }
    }
    return n / dt;
  };
  double first = tok_s(0.0, 60.0);
  double last = tok_s(T - 300.0, T);
  CHECK(first == doctest::Approx(14.0).epsilon(0.05));
  CHECK(last < 0.85 * first);

  std::vector<double> x1, y1, x2, y2;
  for (std::size_t k = 0; k < tr.soc_c.size(); ++k) {
    double t = static_cast<double>(k);
    if (t <= 60.0) {
      x1.push_back(t);
      y1.push_back(tr.soc_c[k]);
    }
    if (t >= T - 300.0) {
      x2.push_back(t);
      y2.push_back(tr.soc_c[k]);
    }
  }
  double s_first = slope(x1, y1);
  double s_last = slope(x2, y2);
  CHECK(s_first > 0.1);  // K/s while heating
  CHECK(std::abs(s_last) < 0.05 * s_first);
  // Capped: the late tokens ran below the top frequency.
  CHECK(tr.tokens.back().freq_mhz < s.device.dvfs.back().mhz);
}

TEST_CASE("sim world: device clocks drift, monotonic stops in suspend, boottime runs on") {
  Scenario s = parse_ok(kClockScenario);
  World w = build(s, 1);
  const double ppm = 50.0;
  // Drift outside the suspend: 1 s of true time is 1 s + 50 us of device time.
  CHECK(w.mono_ns(1.5) - w.mono_ns(0.5) == 1'000'050'000);
  CHECK(w.mono_ns(0.0) == 1'000'000'000'000);
  CHECK(w.boot_ns(0.0) == 1'005'000'000'000);
  // Suspended 2..5 s: monotonic frozen, boottime advances by the suspend (at the device rate).
  CHECK(w.mono_ns(2.2) == w.mono_ns(4.8));
  CHECK(w.mono_ns(5.0) - w.mono_ns(2.0) == 0);
  CHECK(w.boot_ns(5.0) - w.boot_ns(2.0) == std::llround(3.0e9 * (1 + ppm * 1e-6)));
  std::int64_t gap_before = w.boot_ns(1.0) - w.mono_ns(1.0);
  std::int64_t gap_after = w.boot_ns(6.0) - w.mono_ns(6.0);
  CHECK(gap_after - gap_before == std::llround(3.0e9 * (1 + ppm * 1e-6)));
  // Inverse: back to true time outside the suspend; inside, the suspend's start.
  for (double t : {0.25, 1.75, 5.5, 7.0, 10.0}) {
    CHECK(w.true_time_of_mono(w.mono_ns(t)) == doctest::Approx(t).epsilon(1e-9));
  }
  CHECK(w.true_time_of_mono(w.mono_ns(3.0)) == doctest::Approx(2.0).epsilon(1e-12));
  // Realtime: follows boottime, steps by -250 ms at 9 s.
  std::int64_t r0 = w.real_ns(8.999) - w.boot_ns(8.999);
  std::int64_t r1 = w.real_ns(9.001) - w.boot_ns(9.001);
  CHECK(r1 - r0 == -250'000'000);
  // Jittered stamps: repeatable per index, spread by about jitter_ns.
  CHECK(w.stamp_mono_ns(1.0, 7) == w.stamp_mono_ns(1.0, 7));
  double sum = 0, sum2 = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    double d =
        static_cast<double>(w.stamp_mono_ns(1.0, static_cast<std::uint64_t>(i)) - w.mono_ns(1.0));
    sum += d;
    sum2 += d * d;
  }
  double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  CHECK(sd == doctest::Approx(10000.0).epsilon(0.08));
  CHECK(std::abs(mean) < 1000.0);
  // Truth records the suspend and the mean drift.
  auto j = nlohmann::json::parse(w.truth_json());
  CHECK(j["clocks"]["suspends"][0]["duration_s"] == 3.0);
  CHECK(j["clocks"]["mean_boot_ppm"].get<double>() == doctest::Approx(ppm).epsilon(1e-6));
  // Suspended: the device drew suspend_w (the default 0.1 W) with no noise configured.
  CHECK(w.power_w(3.0) == doctest::Approx(0.1));
}

TEST_CASE("sim world: temperature-dependent drift follows the SoC") {
  std::string text = replace_once(kClockScenario, "drift_ppm = 50.0",
                                  "drift_ppm = 0.0\ndrift_tempco_ppm_per_k = 2.0");
  text = replace_once(text, "suspends = [{ at_s = 2.0, duration_s = 3.0 }]\n", "");
  World w = build(parse_ok(text), 1);
  // During decode the SoC is hotter than 25 degC, so the device clock runs fast by 2 ppm/K.
  const TokenTruth& tk = w.truth().tokens.back();
  double t = tk.t1_s;
  double dt = 0.2;
  double rate = static_cast<double>(w.mono_ns(t) - w.mono_ns(t - dt)) / (dt * 1e9);
  double expect_ppm = 2.0 * (w.soc_temp_c(t - dt / 2) - 25.0);
  CHECK(expect_ppm > 1.0);
  CHECK((rate - 1.0) * 1e6 == doctest::Approx(expect_ppm).epsilon(0.02));
}

TEST_CASE("sim world: a suspend that falls while the model runs is rejected") {
  std::string text =
      replace_once(kClockScenario, "at_s = 2.0, duration_s = 3.0", "at_s = 9.0, duration_s = 1.0");
  auto w = World::build(parse_ok(text), 1);
  REQUIRE(!w.ok());
  CHECK(w.error().code == Errc::invalid_argument);
  CHECK(w.error().message.find("clocks.suspends[0]") != std::string::npos);
}

TEST_CASE("sim world: markers are v1 text that parses, with one token line per output token") {
  Scenario s = load("jetson_orin.toml");
  World w = build(s, 9);
  std::string text = w.marker_file_text();
  auto parsed = meltrig::targets::parse_markers(text, "sim.markers");
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? "" : parsed.error().describe()));
  const auto& log = parsed.value();
  CHECK(log.issues.empty());
  CHECK(!log.incomplete_tail);
  CHECK(log.clock == "monotonic");
  using meltrig::targets::MarkerKind;
  auto count = [&](MarkerKind k) {
    return std::count_if(log.events.begin(), log.events.end(),
                         [&](const auto& e) { return e.kind == k; });
  };
  const auto reps = static_cast<long>(s.run.repetitions);
  CHECK(count(MarkerKind::token) == reps * s.run.output_tokens);
  CHECK(count(MarkerKind::run_start) == reps);
  CHECK(count(MarkerKind::run_end) == reps);
  CHECK(count(MarkerKind::sync_start) == 2 * reps);
  CHECK(count(MarkerKind::load_start) == 1);  // the model stays loaded between repetitions
  CHECK(count(MarkerKind::prefill_end) == reps);
  for (const auto& e : log.events) {
    if (e.kind == MarkerKind::prefill_start) CHECK(e.index == s.run.prompt_tokens);
    if (e.kind == MarkerKind::sync_start) {
      CHECK(e.bits == 8);
      CHECK(e.chip_ns == 40'000'000);
      CHECK((e.code == 0xB5 || e.code == 0x4B));
    }
  }
  // The parsed log equals the world's own log, event for event.
  REQUIRE(log.events.size() == w.markers().events.size());
  for (std::size_t i = 0; i < log.events.size(); ++i) {
    CHECK(log.events[i].t_ns == w.markers().events[i].t_ns);
    CHECK(log.events[i].kind == w.markers().events[i].kind);
  }
  // Clock triples once per second of device time, jitter-free.
  REQUIRE(log.clocks.size() >= 2);
  CHECK(log.clocks[1].mono_ns - log.clocks[0].mono_ns == 1'000'000'000);
  CHECK(std::abs(static_cast<double>(log.clocks.size()) - w.duration_s()) <= 1.5);
  // Token stamps sit within a few jitter s.d. of the device clock at the token's true end.
  std::size_t ti = 0;
  for (const auto& e : log.events) {
    if (e.kind != MarkerKind::token) continue;
    const TokenTruth& tk = w.truth().tokens[ti++];
    CHECK(e.index == tk.index);
    CHECK(std::abs(static_cast<double>(e.t_ns - w.mono_ns(tk.t1_s))) < 6.0 * s.clocks.jitter_ns);
  }
  // Progressive lines: in true-time order, concatenating to the file.
  const auto& lines = w.marker_lines_by_true_time();
  std::string joined;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    joined += lines[i].second;
    if (i > 0) CHECK(lines[i].first >= lines[i - 1].first);
  }
  CHECK(joined == text);
  CHECK(lines.front().second.rfind("meltrig-markers 1 clock=monotonic", 0) == 0);
}

TEST_CASE("sim world: jittered stamps never run backwards across clock triples") {
  // A large jitter (20 ms; tokens ~70 ms apart, triples 1 s apart) makes stamps straddle the
  // triples unless they are kept in order: every file line's time must be non-decreasing.
  for (const char* file : {"phone_llamacpp.toml", "thermal_soak_30min.toml"}) {
    CAPTURE(file);
    std::string text = text_of(file);
    Scenario s = parse_ok(replace_once(text, "jitter_ns = 20000", "jitter_ns = 20000000"));
    World w = build(s, 4);
    auto parsed = meltrig::targets::parse_markers(w.marker_file_text(), "sim.markers");
    REQUIRE(parsed.ok());
    const auto& log = parsed.value();
    CHECK(log.issues.empty());
    // Merge events and triples back into file order by line number and check the times.
    std::vector<std::pair<std::uint64_t, std::int64_t>> by_line;
    for (const auto& e : log.events)
      by_line.emplace_back(e.line, e.t_ns);
    for (const auto& c : log.clocks)
      by_line.emplace_back(c.line, c.mono_ns);
    std::sort(by_line.begin(), by_line.end());
    std::size_t backwards = 0;
    for (std::size_t i = 1; i < by_line.size(); ++i)
      if (by_line[i].second < by_line[i - 1].second) ++backwards;
    CHECK(backwards == 0);
    CHECK(log.clocks.size() > 20);
  }
}

TEST_CASE("sim world: the fuel gauge in its mA quirk reports values 1000x smaller") {
  std::string text = text_of("fuel_gauge_validation.toml");
  Scenario ma = parse_ok(text);
  Scenario ua = parse_ok(replace_once(text, "unit = \"mA\"", "unit = \"uA\""));
  World wm = build(ma, 3);
  World wu = build(ua, 3);
  const auto* sm = wm.telemetry().find("power/fuel_gauge_current");
  const auto* su = wu.telemetry().find("power/fuel_gauge_current");
  REQUIRE(sm != nullptr);
  REQUIRE(su != nullptr);
  CHECK(sm->unit == "mA");
  CHECK(su->unit == "uA");
  REQUIRE(sm->value.size() == su->value.size());
  REQUIRE(sm->value.size() > 30);
  for (std::size_t i = 0; i < sm->value.size(); ++i) {
    CHECK(sm->t_ns[i] == su->t_ns[i]);
    CHECK(sm->value[i] < 0.0);  // discharging reads negative (sign = -1)
    CHECK(std::abs(su->value[i] / 1000.0 - sm->value[i]) <= 0.5 + 1e-9);
  }
  // Readings skip the 3..7 s suspend. Over the run the true error is the configured +3 % bias
  // (window and lag move charge between readings but keep the sum); per reading, the 2.5 s
  // window and 0.5 s lag smear every load step, so the absolute error is far larger.
  CHECK(sm->value.size() == static_cast<std::size_t>(std::floor(wm.duration_s())) - 4);
  const auto& errs = wm.truth().fuel_gauge_errors;
  REQUIRE(errs.size() == 2);
  CHECK(errs[0].name == "fuel_gauge");
  CHECK(errs[1].name == "fuel_gauge/10s");
  CHECK(errs[0].readings == sm->value.size());
  CHECK(errs[0].bias_pct == doctest::Approx(3.0).epsilon(0.25));
  CHECK(errs[0].mape_pct > 10.0);
  // The same gauge without its errors and lag: within the rounding of 1 mA readings.
  std::string exact = replace_once(text, "bias_pct = 3.0", "bias_pct = 0.0");
  exact = replace_once(exact, "gain_error_sd = 0.02", "gain_error_sd = 0.0");
  exact = replace_once(exact, "lag_s = 0.5", "lag_s = 0.0");
  exact = replace_once(exact, "window_s = 2.5", "window_s = 1.0");
  exact = replace_once(exact, "unit = \"mA\"", "unit = \"uA\"");
  World we = build(parse_ok(exact), 3);
  CHECK(std::abs(we.truth().fuel_gauge_errors[0].bias_pct) < 1e-3);
  CHECK(we.truth().fuel_gauge_errors[0].mape_pct < 1e-3);
}

TEST_CASE("sim world: a USB connection lowers the supply current by the configured share") {
  Scenario s = load("fuel_gauge_validation.toml");
  World w = build(s, 4);
  const double v = s.device.supply_v;
  const double f = s.usb.supply_fraction;
  // Connected 0..10 s and 25..60 s, cut by the hub at 35 s.
  // USB takes its share of the rail-filtered supply power.
  for (double t : {1.0, 9.0, 30.0}) {
    CHECK(w.usb_share(t) == f);
    CHECK(w.supply_current_a(t) ==
          doctest::Approx(w.supply_power_w(t) * (1.0 - f) / v).epsilon(1e-12));
    CHECK(w.supply_current_a(t, false) == doctest::Approx(w.supply_power_w(t) / v).epsilon(1e-12));
  }
  for (double t : {20.0, 36.0}) {
    CHECK(w.usb_share(t) == 0.0);
    CHECK(w.supply_current_a(t) == doctest::Approx(w.supply_power_w(t) / v).epsilon(1e-12));
    CHECK(w.supply_current_a(t, true) ==
          doctest::Approx(w.supply_power_w(t) * (1.0 - f) / v).epsilon(1e-12));
  }
  // 30 s is mid-decode: the monitor sees 40 % of a multi-watt load.
  CHECK(w.power_w(30.0) > 3.0);
  CHECK(w.charge_c(25.0, 35.0) ==
        doctest::Approx(w.supply_side_energy_j(25.0, 35.0) * (1.0 - f) / v).epsilon(1e-12));
  CHECK(w.charge_c(11.0, 24.0) ==
        doctest::Approx(w.supply_side_energy_j(11.0, 24.0) / v).epsilon(1e-12));
  double usb = f * (w.supply_side_energy_j(0.0, 10.0) + w.supply_side_energy_j(25.0, 35.0));
  CHECK(w.truth().usb_energy_j == doctest::Approx(usb).epsilon(1e-12));
  CHECK(w.truth().charge_c ==
        doctest::Approx((w.truth().energy_j - w.truth().rail_stored_j - usb) / v).epsilon(1e-12));
}

TEST_CASE(
    "sim world: telemetry is stamped on monotonic, quantised, and Jetson rails see the offset") {
  Scenario s = load("jetson_orin.toml");
  World w = build(s, 2);
  const auto* soc = w.telemetry().find("thermal/soc");
  REQUIRE(soc != nullptr);
  CHECK(soc->unit == "degC");
  CHECK(soc->clock == "monotonic");
  REQUIRE(soc->value.size() == w.markers().clocks.size());
  for (std::size_t i = 0; i < soc->value.size(); ++i) {
    double q = soc->value[i] / s.thermal.sensor_resolution_c;
    CHECK(q == doctest::Approx(std::round(q)).epsilon(1e-9));
    double t = w.true_time_of_mono(soc->t_ns[i]);
    CHECK(std::abs(soc->value[i] - w.soc_temp_c(t)) <= s.thermal.sensor_resolution_c / 2 + 1e-9);
  }
  CHECK(w.telemetry().find("gpu/freq") != nullptr);
  CHECK(w.telemetry().find("power/fuel_gauge_current") == nullptr);
  const auto* vin = w.telemetry().find("power/rail/VDD_IN");
  REQUIRE(vin != nullptr);
  CHECK(vin->unit == "mW");
  // VDD_IN sees everything but the 1.2 W carrier board: during idle, ~(4.0 - 1.2) W.
  CHECK(vin->value[5] == doctest::Approx(2800.0).epsilon(0.05));
  // Against the device, the rail reads low by about offset / mean power.
  const auto& errs = w.truth().rail_errors;
  REQUIRE(errs.size() == 6);
  CHECK(errs[1].name == "VDD_IN/vs_device");
  double mean_p = w.truth().energy_j / w.duration_s();
  CHECK(errs[1].bias_pct == doctest::Approx(-100.0 * 1.2 / mean_p).epsilon(0.1));
  CHECK(std::abs(errs[0].bias_pct) < 1.0);  // against its own model share: only averaging
}
