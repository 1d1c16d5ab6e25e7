// The simulated bench end to end through the CLI (`meltrig sim`): emulated LVPM and LCUS relay on
// ptys, the simulated runner's marker file, capture through libserialport, then markers,
// telemetry and ground truth in the dataset. Judged against the same world built in-process.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "meltrig/fixtures/sim_world.hpp"
#include "meltrig/fw/lvpm_protocol.hpp"
#include "test_support.hpp"

using namespace meltrig;
using meltrig::test::Process;
using meltrig::test::TempDir;

namespace {

const std::filesystem::path kPhone =
    std::filesystem::path(MELTRIG_SOURCE_DIR) / "examples/scenarios/phone_llamacpp.toml";

/// The phone scenario with the monitor's ADC noise off (quantisation is then the only error the
/// monitor adds) and a known crystal error.
std::string quiet_phone(double crystal_ppm) {
  std::string text = test::read_file(kPhone);
  text =
      std::regex_replace(text, std::regex(R"(adc_noise_a\s*=\s*[-0-9.eE+]+)"), "adc_noise_a = 0.0");
  text = std::regex_replace(text, std::regex(R"(crystal_ppm\s*=\s*[-0-9.eE+]+)"),
                            "crystal_ppm = " + std::to_string(crystal_ppm));
  return text;
}

/// Runs `meltrig sim` and returns its exit code (output in *out).
int run_sim(const TempDir& dir, const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {test::cli(), "sim"};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir.path(), "sim");
  int rc = p.wait(std::chrono::seconds(300));
  *out = p.out() + p.err();
  return rc;
}

/// "key value" lines printed by a check script, as numbers or strings.
std::map<std::string, std::string> read_pairs(const std::string& text) {
  std::map<std::string, std::string> m;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto sp = line.find(' ');
    if (sp != std::string::npos) m[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return m;
}

const char* kReadBack = R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    m = f["monitor"]
    n = int(f["capture_state/samples_written"][()])
    i = m["current"][:n].astype(np.float64)
    v = m["voltage"][:n].astype(np.float64)
    tr = f["truth"].attrs
    print("samples", n)
    print("nan", int(np.isnan(i).sum()))
    print("sum_iv", repr(float(np.sum(i * v))))
    print("max_i", repr(float(np.max(i))))
    print("max_v", repr(float(np.max(v))))
    print("actual_rate", repr(float(tr["monitor_actual_rate_hz"])))
    print("captured_true_s", repr(float(tr["captured_true_s"])))
    print("captured_supply_energy_j", repr(float(tr["captured_supply_energy_j"])))
    print("seed", int(tr["seed"]))
    ev = f["markers/runner/events"][:]
    kinds = [k.decode() if isinstance(k, bytes) else k for k in ev["kind"]]
    print("marker_tokens", kinds.count("token"))
    print("marker_issues", int(f["markers/runner"].attrs["issue_count"]))
    print("truth_tokens", len(f["truth/tokens/energy_j"]))
    print("telemetry_soc", len(f["telemetry/thermal/soc"]))
    # What the sampler read through the Target interface: the layout of /telemetry, each value
    # the world's latest sample at or before its device-monotonic stamp.
    full, got = f["telemetry/thermal/soc"][:], f["telemetry_sampled/thermal/soc"][:]
    k = np.searchsorted(full["t_ns"], got["t_ns"], side="right") - 1
    print("sampled_soc", len(got))
    print("sampled_match", int(bool(np.all(k >= 0)) and bool(np.all(full["value"][k] == got["value"]))))
    c = f["telemetry_sampled/thermal/soc"].attrs["clock"]
    print("sampled_clock", c if isinstance(c, str) else c.decode())
    print("probes", len(f["target/probes/device_mono_ns"]), int(f["target"].attrs["probe_count"]))
    s = tr["truth_json"]
    open(sys.argv[2], "w").write(s if isinstance(s, str) else s.decode())
)PY";

}  // namespace

TEST_CASE(
    "sim bench: the monitor's energy equals the world's true energy within the ADC's "
    "quantisation") {
  TempDir dir;
  const double ppm = 25.0;
  const auto scn_path = dir / "phone_quiet.toml";
  std::ofstream(scn_path) << quiet_phone(ppm);
  std::string out;
  const auto h5 = dir / "run.h5";
  REQUIRE_MESSAGE(
      run_sim(dir, {scn_path.string(), "-o", h5.string(), "--speed", "20", "-q"}, &out) == 0, out);
  std::string py;
  REQUIRE_MESSAGE(test::run_python(kReadBack, {h5.string(), (dir / "truth.json").string()},
                                   dir.path(), &py) == 0,
                  py);
  auto r = read_pairs(py);
  const auto n = std::stoull(r["samples"]);
  const double rate = std::stod(r["actual_rate"]);
  CHECK(rate == doctest::Approx(5000.0 * (1 + ppm * 1e-6)).epsilon(1e-12));
  CHECK(r["nan"] == "0");

  // The same world in-process: what an ideal monitor (no quantisation) sampling the true supply
  // current at the emulated crystal's instants would report, and the exact integral.
  auto scn = fixtures::sim::load_scenario(scn_path);
  REQUIRE(scn.ok());
  auto world = fixtures::sim::World::build(*scn, scn->run.seed);
  REQUIRE(world.ok());
  const double volts = world->supply_voltage_v();
  double ideal = 0;
  for (std::uint64_t k = 0; k < n; ++k)
    ideal += world->supply_current_a(static_cast<double>(k) / rate);
  ideal *= volts / rate;
  const double exact = volts * world->charge_c(0.0, static_cast<double>(n) / rate);
  CHECK(std::stod(r["captured_supply_energy_j"]) == doctest::Approx(exact).epsilon(1e-12));
  const double measured = std::stod(r["sum_iv"]) / rate;  // on the monitor's true clock

  // Bound per sample: half a current step (2 counts of the range in use; the coarse one is the
  // larger), one count of zero-calibration noise, the reference's one count of gain noise at the
  // largest current, and half a voltage step (revision 3: 4 x 125 uV) at the largest current.
  namespace lv = fw::lvpm;
  const lv::CalibrationValues cal{100, 3100, 100, 6100};  // the emulator's defaults
  const double coarse_count = lv::kCoarseRefAmps / (cal.coarse_ref - cal.coarse_zero);
  const double max_i = std::stod(r["max_i"]), max_v = std::stod(r["max_v"]);
  const double per_sample_a =
      coarse_count + coarse_count + max_i / (cal.coarse_ref - cal.coarse_zero);
  const double q_v = 4 * 125e-6;
  const double bound = static_cast<double>(n) / rate * (max_v * per_sample_a + max_i * q_v / 2);
  INFO("measured " << measured << " J, ideal " << ideal << " J, exact " << exact << " J, bound "
                   << bound << " J");
  CHECK(std::abs(measured - ideal) <= bound);
  // The ideal sampler is itself within the discretisation of steps at 5 kHz of the integral.
  CHECK(std::abs(ideal - exact) <= 1e-4 * exact);
  // And what the file says on its nominal time base is off by the crystal error on top.
  const double nominal = std::stod(r["sum_iv"]) / 5000.0;
  CHECK(std::abs(nominal - exact) <= bound + 1.1 * ppm * 1e-6 * exact);
  // The rail only delays the device's energy: the monitor's figure is the device's within the
  // same bound (the rail's 50 us hold the difference, a few tens of uJ).
  const double device = world->energy_j(0.0, static_cast<double>(n) / rate);
  CHECK(std::abs(measured - device) <= bound);
  // Measured figure, for the closing note.
  MESSAGE("sim energy: measured " << measured << " J vs true " << exact << " J ("
                                  << 100.0 * (measured - exact) / exact << " %), device " << device
                                  << " J (" << 100.0 * (measured - device) / device << " %), bound "
                                  << 100.0 * bound / exact << " %");
}

TEST_CASE(
    "sim bench: markers, telemetry and the truth land in the dataset, the seed decides the "
    "truth") {
  TempDir dir;
  std::string out, py;
  const auto a = dir / "a.h5", b = dir / "b.h5", c = dir / "c.h5";
  REQUIRE_MESSAGE(
      run_sim(dir, {kPhone.string(), "-o", a.string(), "--speed", "25", "-q"}, &out) == 0, out);
  CHECK(out.find("simulated bench:") != std::string::npos);
  REQUIRE(test::run_python(kReadBack, {a.string(), (dir / "a.json").string()}, dir.path(), &py) ==
          0);
  auto ra = read_pairs(py);

  auto scn = fixtures::sim::load_scenario(kPhone);
  REQUIRE(scn.ok());
  auto world = fixtures::sim::World::build(*scn, scn->run.seed);
  REQUIRE(world.ok());
  // The truth in the file is the in-process world's, byte for byte.
  CHECK(test::read_file(dir / "a.json") == world->truth_json());
  // Every token the runner wrote arrived as a marker, and the truth has the same tokens.
  const auto want_tokens = world->truth().tokens.size();
  CHECK(want_tokens > 0);
  CHECK(std::stoull(ra["marker_tokens"]) == want_tokens);
  CHECK(std::stoull(ra["truth_tokens"]) == want_tokens);
  CHECK(ra["marker_issues"] == "0");
  CHECK(std::stoull(ra["telemetry_soc"]) > 5);
  CHECK(std::stoull(ra["sampled_soc"]) > 5);
  CHECK(ra["sampled_match"] == "1");
  CHECK(ra["sampled_clock"] == "monotonic");
  CHECK(ra["probes"] == "16 16");  // 8 before and 8 after the capture
  // The marker file beside the dataset is the world's marker text.
  CHECK(test::read_file(a.string() + ".markers") == world->marker_file_text());

  // Same seed: the same truth. Another seed: another truth.
  REQUIRE_MESSAGE(
      run_sim(dir, {kPhone.string(), "-o", b.string(), "--speed", "25", "-q"}, &out) == 0, out);
  REQUIRE(test::run_python(kReadBack, {b.string(), (dir / "b.json").string()}, dir.path(), &py) ==
          0);
  CHECK(test::read_file(dir / "b.json") == test::read_file(dir / "a.json"));
  REQUIRE_MESSAGE(
      run_sim(dir, {kPhone.string(), "-o", c.string(), "--speed", "25", "-q", "--seed", "77"},
              &out) == 0,
      out);
  REQUIRE(test::run_python(kReadBack, {c.string(), (dir / "c.json").string()}, dir.path(), &py) ==
          0);
  CHECK(read_pairs(py)["seed"] == "77");
  CHECK(test::read_file(dir / "c.json") != test::read_file(dir / "a.json"));
}

TEST_CASE("sim bench: a malformed scenario fails naming the file and line, and creates nothing") {
  TempDir dir;
  const auto bad = dir / "bad.toml";
  std::string text = test::read_file(kPhone);
  text += "\n[run\nseed = 3\n";  // an unterminated table header
  std::ofstream(bad) << text;
  std::string out;
  const auto h5 = dir / "never.h5";
  CHECK(run_sim(dir, {bad.string(), "-o", h5.string(), "-q"}, &out) == 1);
  CHECK(out.find("bad.toml:") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(h5));

  // An existing output is refused, and left alone.
  std::ofstream(h5) << "keep";
  CHECK(run_sim(dir, {kPhone.string(), "-o", h5.string(), "-q"}, &out) == 1);
  CHECK(out.find("already exists") != std::string::npos);
  CHECK(test::read_file(h5) == "keep");
}
