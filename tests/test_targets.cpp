// Targets: sh quoting, child processes, LocalTarget, telemetry from a fake sysfs tree, and
// AdbTarget against the recorded-transcript stand-in (fixtures/adb_standin/fake_adb.py).
// The ssh target runs against a real sshd in test_ssh_target.cpp.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "meltrig/targets/adb_target.hpp"
#include "meltrig/targets/local_target.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/process.hpp"
#include "meltrig/targets/shell_quote.hpp"
#include "meltrig/targets/sysfs_telemetry.hpp"
#include "test_support.hpp"

namespace mt = meltrig::targets;
using meltrig::Errc;
using meltrig::test::TempDir;
using std::chrono::milliseconds;

namespace meltrig::test_targets {

/// Plan values that must reach the runner as one literal argument each.
std::vector<std::string> hostile_args() {
  return {"model; rm -rf ~",
          "$(touch /tmp/x)",
          "`touch /tmp/x`",
          "it's \"quoted\"",
          "line1\nline2",
          "*",
          "",
          "  two  spaces  ",
          "back\\slash",
          "~",
          "$HOME",
          "-e",
          "%s%n",
          "#not a comment",
          "a'b'c"};
}

/// What `meltrig_toy_runner --print-args ARGS` prints: each element on its own line.
std::string printed(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args)
    s += a + "\n";
  return s;
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

/// A fake sysfs tree with known values: a phone-like thermal/cpufreq/battery part (battery current
/// in uA, as Linux documents) and a Jetson-like part (GPU devfreq, INA3221 hwmon and iio rails).
void make_fake_sysfs(const std::filesystem::path& root) {
  write_text(root / "class/thermal/thermal_zone0/type", "cpu-thermal\n");
  write_text(root / "class/thermal/thermal_zone0/temp", "45500\n");
  write_text(root / "class/thermal/thermal_zone1/type", "GPU therm\n");
  write_text(root / "class/thermal/thermal_zone1/temp", "-1250\n");
  write_text(root / "class/thermal/thermal_zone7/temp", "38000\n");  // no type file
  write_text(root / "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1800000\n");
  write_text(root / "devices/system/cpu/cpu3/cpufreq/scaling_cur_freq", "729600\n");
  write_text(root / "devices/system/cpu/cpufreq/policy0/scaling_cur_freq", "999\n");  // not a cpu
  write_text(root / "class/devfreq/17000000.gv11b/cur_freq", "1300500000\n");
  write_text(root / "class/devfreq/soc:bus/cur_freq", "200000000\n");
  write_text(root / "class/power_supply/battery/current_now", "-523000\n");
  write_text(root / "class/power_supply/battery/voltage_now", "3950000\n");
  write_text(root / "class/hwmon/hwmon1/name", "ina3221\n");
  write_text(root / "class/hwmon/hwmon1/in1_label", "VDD_IN\n");
  write_text(root / "class/hwmon/hwmon1/in1_input", "5080\n");
  write_text(root / "class/hwmon/hwmon1/curr1_input", "1210\n");
  write_text(root / "class/hwmon/hwmon1/in2_label", "VDD_CPU_GPU_CV\n");
  write_text(root / "class/hwmon/hwmon1/in2_input", "5072\n");
  write_text(root / "class/hwmon/hwmon1/curr2_input", "406\n");
  write_text(root / "class/hwmon/hwmon0/name", "coretemp\n");  // not an INA3221: ignored
  write_text(root / "class/hwmon/hwmon0/in0_input", "999\n");
  write_text(root / "bus/i2c/drivers/ina3221x/1-0040/iio:device0/rail_name_0", "VDD_SYS_GPU\n");
  write_text(root / "bus/i2c/drivers/ina3221x/1-0040/iio:device0/in_power0_input", "1532\n");
  write_text(root / "bus/i2c/drivers/ina3221x/1-0040/iio:device0/in_current0_input", "301\n");
  write_text(root / "bus/i2c/drivers/ina3221x/1-0040/iio:device0/in_voltage0_input", "5088\n");
}

double value_of(const mt::TelemetrySnapshot& s, const std::string& name) {
  const auto* r = s.find(name);
  if (!r) {
    std::string names;
    for (const auto& x : s.readings)
      names += x.name + " ";
    FAIL_CHECK("no reading " << name << " among: " << names);
    return std::nan("");
  }
  return r->value;
}

/// Checks a snapshot of make_fake_sysfs() against the values written there.
void check_fake_sysfs_snapshot(const mt::TelemetrySnapshot& s) {
  CHECK(value_of(s, "thermal/zone0/cpu-thermal") == doctest::Approx(45.5));
  CHECK(s.find("thermal/zone0/cpu-thermal")->unit == "degC");
  CHECK(value_of(s, "thermal/zone1/GPU_therm") == doctest::Approx(-1.25));
  CHECK(value_of(s, "thermal/zone7") == doctest::Approx(38.0));
  CHECK(value_of(s, "cpu/cpu0/freq") == doctest::Approx(1.8e9));
  CHECK(value_of(s, "cpu/cpu3/freq") == doctest::Approx(729.6e6));
  CHECK(s.find("cpu/cpufreq/freq") == nullptr);
  CHECK(value_of(s, "gpu/17000000.gv11b/freq") == doctest::Approx(1300.5e6));
  CHECK(value_of(s, "devfreq/soc:bus/freq") == doctest::Approx(200e6));
  CHECK(value_of(s, "power/battery/current") == doctest::Approx(-0.523));
  CHECK(s.find("power/battery/current")->unit == "A");
  CHECK(s.find("power/battery/current")->description.find("uA") != std::string::npos);
  CHECK(value_of(s, "power/battery/voltage") == doctest::Approx(3.95));
  CHECK(value_of(s, "power/battery/power") == doctest::Approx(-0.523 * 3.95));
  CHECK(value_of(s, "power/VDD_IN/voltage") == doctest::Approx(5.080));
  CHECK(value_of(s, "power/VDD_IN/current") == doctest::Approx(1.210));
  CHECK(value_of(s, "power/VDD_IN/power") == doctest::Approx(5.080 * 1.210));
  CHECK(value_of(s, "power/VDD_CPU_GPU_CV/power") == doctest::Approx(5.072 * 0.406));
  CHECK(value_of(s, "power/VDD_SYS_GPU/power") == doctest::Approx(1.532));  // in_power, not V x I
  CHECK(value_of(s, "power/VDD_SYS_GPU/current") == doctest::Approx(0.301));
  for (const auto& r : s.readings)
    CHECK(r.name.find("hwmon0") == std::string::npos);
  CHECK(s.readings.size() == 19);
}

mt::LocalConfig local_config(const std::filesystem::path& root,
                             const std::filesystem::path& sysfs = "/sys",
                             const std::filesystem::path& probe = {}) {
  mt::LocalConfig c;
  c.root = root;
  c.sysfs_root = sysfs;
  c.probe_path = probe;
  return c;
}

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// True when some process's command line is exactly `argv` (NUL-separated in /proc).
bool process_exists(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv)
    want += a + '\0';
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str() == want) return true;
  }
  return false;
}

/// Waits (up to 10 s) for no process to have `argv`; true when it is gone.
bool process_gone(const std::vector<std::string>& argv) {
  for (int i = 0; i < 1000; ++i) {
    if (!process_exists(argv)) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return false;
}

}  // namespace meltrig::test_targets

using namespace meltrig::test_targets;

namespace {

/// Runs `printf '%s\0' QUOTED...` in `shell` and splits the output on NUL.
std::vector<std::string> through_shell(const std::string& shell,
                                       const std::vector<std::string>& args) {
  std::string line = "exec /usr/bin/printf '%s\\0' " + mt::sh_join(args);
  auto r = mt::run_process({shell, "-c", line}, milliseconds(10000));
  REQUIRE(r.ok());
  REQUIRE(r.value().exit_code == 0);
  std::vector<std::string> got;
  std::string cur;
  for (char c : r.value().out) {
    if (c == '\0') {
      got.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  CHECK(cur.empty());
  return got;
}

}  // namespace

TEST_CASE("targets: sh_quote wraps in single quotes and escapes ' as '\\''") {
  CHECK(mt::sh_quote("") == "''");
  CHECK(mt::sh_quote("abc") == "'abc'");
  CHECK(mt::sh_quote("it's") == "'it'\\''s'");
  CHECK(mt::sh_quote("''") == "''\\'''\\'''");
  CHECK(mt::sh_quote("$(x) `y` \\ \n") == "'$(x) `y` \\ \n'");
  CHECK(mt::sh_join({"a b", "", "c"}) == "'a b' '' 'c'");
  CHECK(mt::sh_join({}).empty());
}

TEST_CASE("targets: sh_join round-trips hostile and random arguments through dash and bash") {
  std::filesystem::remove("/tmp/x");
  std::vector<std::vector<std::string>> cases = {hostile_args(), {""}, {"'"}, {"\\'"}};
  std::mt19937 rng(1234);
  for (int i = 0; i < 200; ++i) {
    std::vector<std::string> args;
    int n = static_cast<int>(rng() % 4) + 1;
    for (int k = 0; k < n; ++k) {
      std::string s;
      int len = static_cast<int>(rng() % 12);
      for (int j = 0; j < len; ++j) {
        // Bytes 1..255, biased towards the characters shells treat specially.
        static const std::string special = "'\"\\$`!*?[]{}()<>|&;~# \t\n%-=";
        s.push_back(rng() % 2 ? special[rng() % special.size()]
                              : static_cast<char>(rng() % 255 + 1));
      }
      args.push_back(s);
    }
    cases.push_back(args);
  }
  for (const std::string shell : {"/bin/sh", "/bin/bash"}) {
    if (!std::filesystem::exists(shell)) continue;
    CAPTURE(shell);
    for (const auto& args : cases)
      CHECK(through_shell(shell, args) == args);
  }
  CHECK_FALSE(std::filesystem::exists("/tmp/x"));
}

TEST_CASE("targets: run_process captures output and exit codes, and kills on timeout") {
  auto r =
      mt::run_process({"/bin/sh", "-c", "printf out; printf err >&2; exit 3"}, milliseconds(10000));
  REQUIRE(r.ok());
  CHECK(r.value().out == "out");
  CHECK(r.value().err == "err");
  CHECK(r.value().exit_code == 3);
  CHECK_FALSE(r.value().timed_out);

  // More than a pipe buffer on both streams at once: the reader thread must drain both.
  auto big =
      mt::run_process({"/bin/sh", "-c", "head -c 1000000 /dev/zero; head -c 300000 /dev/zero >&2"},
                      milliseconds(20000));
  REQUIRE(big.ok());
  CHECK(big.value().out.size() == 1000000);
  CHECK(big.value().err.size() == 300000);

  auto missing = mt::run_process({"/nonexistent/meltrig-no-such-program"}, milliseconds(1000));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  CHECK(missing.error().message.find("/nonexistent/meltrig-no-such-program") != std::string::npos);

  auto empty = mt::run_process({}, milliseconds(1000));
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().code == Errc::invalid_argument);

  // The child and its own child (same process group) both die on timeout.
  const std::vector<std::string> grandchild = {"sleep", "30.7171"};
  auto t = mt::run_process({"/bin/sh", "-c", "sleep 30.7171 & wait"}, milliseconds(1000));
  REQUIRE(t.ok());
  CHECK(t.value().timed_out);
  CHECK(t.value().exit_code == -1);
  CHECK(process_gone(grandchild));
}

TEST_CASE("targets: Subprocess terminate sends SIGTERM, then SIGKILL after the grace period") {
  auto p =
      mt::Subprocess::spawn({"/bin/sh", "-c", "trap '' TERM; echo ready; sleep 30.8181 & wait"});
  REQUIRE(p.ok());
  for (int i = 0; i < 1000 && p.value()->stdout_text() != "ready\n"; ++i)
    std::this_thread::sleep_for(milliseconds(5));
  REQUIRE(p.value()->stdout_text() == "ready\n");
  auto st = p.value()->terminate(milliseconds(300));
  CHECK(st.signal == SIGKILL);  // the shell ignored SIGTERM
  CHECK_FALSE(p.value()->running());
  CHECK(process_gone({"sleep", "30.8181"}));
}

TEST_CASE("targets: local target passes hostile plan values to the runner as literal arguments") {
  std::filesystem::remove("/tmp/x");
  TempDir dir;
  mt::LocalTarget t(local_config(dir.path() / "work"));
  REQUIRE(t.prepare().ok());
  std::vector<std::string> argv = {MELTRIG_TOY_RUNNER_PATH, "--print-args"};
  auto args = hostile_args();
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = t.run(argv, milliseconds(20000));
  REQUIRE(r.ok());
  CHECK(r.value().exit_code == 0);
  CHECK(r.value().out == printed({argv.begin() + 1, argv.end()}));  // it echoes --print-args too
  CHECK_FALSE(std::filesystem::exists("/tmp/x"));
  CHECK(t.name() == "local");
}

TEST_CASE("targets: local run times out, launch passes env, terminate stops the runner") {
  TempDir dir;
  mt::LocalTarget t(local_config(dir.path()));
  REQUIRE(t.prepare().ok());
  auto r = t.run({"sleep", "30.6161"}, milliseconds(1000));
  REQUIRE(r.ok());
  CHECK(r.value().timed_out);
  CHECK(process_gone({"sleep", "30.6161"}));

  auto env =
      t.launch({"/bin/sh", "-c", "printf '%s|%s' \"$MELTRIG_A\" \"$PWD\""}, {"MELTRIG_A=a b;$(c)"});
  REQUIRE(env.ok());
  auto out = env.value()->wait(milliseconds(10000));
  REQUIRE(out.ok());
  CHECK(out.value().out == "a b;$(c)|" + dir.path().string());

  auto h = t.launch({"sleep", "30.6262"});
  REQUIRE(h.ok());
  CHECK(h.value()->running());
  auto w = h.value()->wait(milliseconds(50));
  CHECK_FALSE(w.ok());
  CHECK(w.error().code == Errc::timeout);
  auto term = h.value()->terminate(milliseconds(2000));
  REQUIRE(term.ok());
  CHECK(term.value().exit_code == 128 + SIGTERM);
  CHECK_FALSE(h.value()->running());
  CHECK(process_gone({"sleep", "30.6262"}));
}

TEST_CASE("targets: local push/pull/read_file, and MarkerTail returns complete lines only") {
  TempDir dir;
  mt::LocalTarget t(local_config(dir.path() / "dev"));
  REQUIRE(t.prepare().ok());
  write_text(dir / "src.bin", std::string("a\0b\nc", 5));
  REQUIRE(t.push(dir / "src.bin", "copy.bin").ok());
  CHECK(meltrig::test::read_file(dir.path() / "dev/copy.bin") == std::string("a\0b\nc", 5));
  REQUIRE(t.pull("copy.bin", dir / "back.bin").ok());
  CHECK(meltrig::test::read_file(dir / "back.bin") == std::string("a\0b\nc", 5));
  auto missing = t.pull("nope", dir / "x");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);

  mt::MarkerTail tail(t, "m.txt");
  auto none = tail.poll();
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::not_found);
  auto path = dir.path() / "dev/m.txt";
  std::ofstream f(path, std::ios::binary);
  f << "meltrig-markers 1 clock=monotonic\n100 tok" << std::flush;
  auto a = tail.poll();
  REQUIRE(a.ok());
  CHECK(a.value() == std::vector<std::string>{"meltrig-markers 1 clock=monotonic"});
  CHECK(tail.pending() == "100 tok");
  f << "en index=0\n200 token index=1\n" << std::flush;
  auto b = tail.poll();
  REQUIRE(b.ok());
  CHECK(b.value() == std::vector<std::string>{"100 token index=0", "200 token index=1"});
  CHECK(tail.pending().empty());
  auto c = tail.poll();
  REQUIRE(c.ok());
  CHECK(c.value().empty());
  CHECK(tail.bytes_read() == std::filesystem::file_size(path));
}

TEST_CASE("targets: telemetry from a fake sysfs tree has the known values, names and units") {
  TempDir dir;
  make_fake_sysfs(dir / "sys");
  mt::LocalTarget t(local_config({}, dir / "sys"));
  const auto before = steady_ns();
  auto s = t.read_telemetry();
  const auto after = steady_ns();
  REQUIRE(s.ok());
  check_fake_sysfs_snapshot(s.value());
  CHECK(s.value().device_mono_ns >= before);
  CHECK(s.value().device_mono_ns <= after);

  meltrig::targets::Telemetry tel;
  s.value().append_to(tel);
  s.value().append_to(tel);
  const auto* series = tel.find("thermal/zone0/cpu-thermal");
  REQUIRE(series);
  CHECK(series->unit == "degC");
  CHECK(series->clock == "monotonic");
  CHECK(series->value == std::vector<double>{45.5, 45.5});
}

TEST_CASE("targets: meltrig_probe --telemetry dumps the same files the local reader sees") {
  TempDir dir;
  make_fake_sysfs(dir / "sys");
  auto r = mt::run_process({MELTRIG_PROBE_PATH, "--telemetry", (dir / "sys").string()},
                           milliseconds(10000));
  REQUIRE(r.ok());
  REQUIRE(r.value().exit_code == 0);
  auto dump = mt::parse_telemetry_dump(r.value().out, "probe");
  REQUIRE(dump.ok());
  auto local = mt::collect_sysfs(dir / "sys");
  auto sorted = [](mt::SysfsEntries e) {
    std::sort(e.begin(), e.end());
    return e;
  };
  CHECK(sorted(dump.value().second) == sorted(local));
  mt::CurrentUnitState unit;
  mt::TelemetrySnapshot snap;
  snap.readings = mt::readings_from_sysfs(dump.value().second, unit);
  check_fake_sysfs_snapshot(snap);

  auto usage = mt::run_process({MELTRIG_PROBE_PATH, "--bogus"}, milliseconds(10000));
  REQUIRE(usage.ok());
  CHECK(usage.value().exit_code == 2);
}

TEST_CASE("targets: battery current unit rule (|raw| < 20000 -> mA), sticky once decided") {
  auto snap = [](mt::CurrentUnitState& st, const std::string& raw) {
    return mt::readings_from_sysfs({{"class/power_supply/battery/current_now", raw}}, st);
  };
  mt::CurrentUnitState ua;
  CHECK(snap(ua, "-412000")[0].value == doctest::Approx(-0.412));
  CHECK(ua.chosen == mt::CurrentUnit::microamp);
  CHECK(snap(ua, "15000")[0].value == doctest::Approx(0.015));  // idle later: still uA

  mt::CurrentUnitState ma;
  CHECK(snap(ma, "0")[0].value == 0.0);  // zero decides nothing
  CHECK_FALSE(ma.chosen.has_value());
  auto r = snap(ma, "-412");
  CHECK(r[0].value == doctest::Approx(-0.412));
  CHECK(ma.chosen == mt::CurrentUnit::milliamp);
  CHECK(ma.reason.find("-412") != std::string::npos);
  CHECK(r[0].description.find("mA") != std::string::npos);
  CHECK(snap(ma, "25000")[0].value == doctest::Approx(25.0));  // fixed as mA

  mt::CurrentUnitState forced;
  forced.setting = mt::CurrentUnit::microamp;
  CHECK(snap(forced, "-412")[0].value == doctest::Approx(-412e-6));
  CHECK(forced.reason == "configured: uA");
}

TEST_CASE("targets: probe and dump parsers name the source and line of a bad input") {
  auto ok = mt::parse_probe_line("1 2 3\n", "p");
  REQUIRE(ok.ok());
  CHECK(ok.value().device_mono_ns == 1);
  CHECK(ok.value().device_boot_ns == 2);
  CHECK(ok.value().device_real_ns == 3);
  auto bad = mt::parse_probe_line("1 2\n", "dev:probe");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::parse_error);
  CHECK(bad.error().message.find("dev:probe:1:") == 0);
  CHECK_FALSE(mt::parse_probe_line("1 x 3\n", "p").ok());
  auto dump = mt::parse_telemetry_dump("1 2 3\na\tb\nno tab here\n", "dump");
  REQUIRE_FALSE(dump.ok());
  CHECK(dump.error().message.find("dump:3:") == 0);
}

TEST_CASE("targets: local clock probe through meltrig_probe lands between t0 and t3") {
  mt::LocalTarget t(local_config({}, "/sys", MELTRIG_PROBE_PATH));
  auto p = t.probe_clock_burst(5);
  REQUIRE(p.ok());
  CHECK(p.value().rtt_ns() > 0);
  CHECK(p.value().device_mono_ns >= p.value().host_t0_ns);
  CHECK(p.value().device_mono_ns <= p.value().host_t3_ns);
  CHECK(p.value().device_boot_ns >= p.value().device_mono_ns);
  MESSAGE("local meltrig_probe best rtt of 5: " << p.value().rtt_ns() / 1000 << " us");

  mt::LocalTarget inproc({});
  auto q = inproc.probe_clock();
  REQUIRE(q.ok());
  CHECK(q.value().device_mono_ns >= q.value().host_t0_ns);
  CHECK(q.value().device_mono_ns <= q.value().host_t3_ns);
  CHECK_FALSE(inproc.probe_clock_burst(0).ok());
}

TEST_CASE("targets: TelemetrySampler polls a target into a Telemetry") {
  TempDir dir;
  make_fake_sysfs(dir / "sys");
  mt::LocalTarget t(local_config({}, dir / "sys"));
  mt::TelemetrySampler sampler(t, milliseconds(10));
  sampler.start();
  for (int i = 0; i < 2000 && sampler.samples() < 3; ++i)
    std::this_thread::sleep_for(milliseconds(5));
  auto tel = sampler.stop();
  CHECK(sampler.errors() == 0);
  const auto* s = tel.find("power/VDD_IN/power");
  REQUIRE(s);
  REQUIRE(s->value.size() >= 3);
  CHECK(s->value.size() == sampler.samples());
  CHECK(s->unit == "W");
  for (double v : s->value)
    CHECK(v == doctest::Approx(5.080 * 1.210));
  for (std::size_t i = 1; i < s->t_ns.size(); ++i)
    CHECK(s->t_ns[i] > s->t_ns[i - 1]);

  // A target whose reads fail (no device probe): errors are counted and kept, sampling goes on.
  mt::AdbTarget no_probe(mt::AdbConfig{});
  mt::TelemetrySampler failing(no_probe, milliseconds(10));
  failing.start();
  for (int i = 0; i < 2000 && failing.errors() < 2; ++i)
    std::this_thread::sleep_for(milliseconds(5));
  auto empty = failing.stop();
  CHECK(failing.errors() >= 2);
  CHECK(failing.samples() == 0);
  CHECK(empty.series.empty());
  REQUIRE(failing.last_error().has_value());
  CHECK(failing.last_error()->code == Errc::unsupported);
}

TEST_CASE("targets: dumpsys battery parser") {
  auto b = mt::parse_dumpsys_battery(
      "Current Battery Service state:\n  AC powered: false\n  USB powered: true\n  status: 3\n"
      "  level: 78\n  voltage: 4123\n  temperature: 312\n  technology: Li-ion\n",
      "dumpsys");
  REQUIRE(b.ok());
  CHECK(b.value().usb_powered == true);
  CHECK(b.value().ac_powered == false);
  CHECK(b.value().status == 3);
  CHECK(b.value().level == 78);
  CHECK(*b.value().voltage_v == doctest::Approx(4.123));
  CHECK(*b.value().temperature_c == doctest::Approx(31.2));
  CHECK(b.value().technology == "Li-ion");
  CHECK_FALSE(b.value().current_now_raw.has_value());
  auto bad = mt::parse_dumpsys_battery("Can't find service: battery\n", "dumpsys");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("dumpsys:1:") == 0);
}

// ---- AdbTarget against the transcript stand-in --------------------------------------------

namespace {

const std::string kSerial = "R5CT1234ABC";
const std::string kWork = "/data/local/tmp/meltrig";

struct AdbStandIn {
  TempDir dir;
  std::filesystem::path transcript =
      std::filesystem::path(MELTRIG_SOURCE_DIR) / "fixtures/adb_standin/transcript_phone.json";
  std::filesystem::path log = dir / "adb_argv.jsonl";

  mt::AdbConfig config(const std::string& serial = kSerial) const {
    mt::AdbConfig c;
    c.adb = {
        "/usr/bin/python3",
        (std::filesystem::path(MELTRIG_SOURCE_DIR) / "fixtures/adb_standin/fake_adb.py").string(),
        "--transcript",
        transcript.string(),
        "--log",
        log.string(),
        "--state",
        (dir / "state").string()};
    c.serial = serial;
    c.work_dir = kWork;
    c.local_probe = MELTRIG_PROBE_PATH;
    return c;
  }

  /// The device argv of every logged `shell` call, parsed back with python's json.
  std::vector<std::vector<std::string>> device_argvs() const {
    std::string out;
    int rc = meltrig::test::run_python(
        "import json,sys\n"
        "for l in open(sys.argv[1]):\n"
        "  r=json.loads(l)\n"
        "  if r['device_argv'] is not None:\n"
        "    sys.stdout.write('\\x1e'.join(r['device_argv'])+'\\x1d')\n",
        {log.string()}, dir.path(), &out);
    REQUIRE(rc == 0);
    std::vector<std::vector<std::string>> all;
    std::vector<std::string> cur;
    std::string word;
    for (char c : out) {
      if (c == '\x1e') {
        cur.push_back(word);
        word.clear();
      } else if (c == '\x1d') {
        cur.push_back(word);
        word.clear();
        all.push_back(cur);
        cur.clear();
      } else {
        word.push_back(c);
      }
    }
    return all;
  }
};

}  // namespace

TEST_CASE("targets: adb target prepares the phone and pushes the probe (stand-in)") {
  AdbStandIn a;
  mt::AdbTarget t(a.config());
  CHECK(t.name() == "adb:" + kSerial);
  REQUIRE_MESSAGE(t.prepare().ok(), meltrig::test::read_file(a.log));
  CHECK(meltrig::test::read_file(a.dir / "state/device/data/local/tmp/meltrig/meltrig_probe") ==
        meltrig::test::read_file(MELTRIG_PROBE_PATH));
  auto argvs = a.device_argvs();
  REQUIRE(argvs.size() == 3);
  CHECK(argvs[0] == std::vector<std::string>{"mkdir", "-p", kWork});
  CHECK(argvs[1] == std::vector<std::string>{"chmod", "755", kWork + "/meltrig_probe.new"});
  CHECK(argvs[2] == std::vector<std::string>{"mv", "-f", kWork + "/meltrig_probe.new",
                                             kWork + "/meltrig_probe"});

  AdbStandIn other;
  mt::AdbTarget wrong(other.config("SOMEOTHER"));
  auto r = wrong.prepare();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("SOMEOTHER") != std::string::npos);

  AdbStandIn locked;
  locked.transcript = locked.transcript.parent_path() / "transcript_unauthorized.json";
  mt::AdbTarget unauthorized(locked.config());
  auto u = unauthorized.prepare();
  REQUIRE_FALSE(u.ok());
  CHECK(u.error().code == Errc::io_error);
  CHECK(u.error().message.find("device unauthorized") != std::string::npos);
}

TEST_CASE("targets: adb shell delivers hostile plan values as one literal argument each") {
  std::filesystem::remove("/tmp/x");
  AdbStandIn a;
  mt::AdbTarget t(a.config());
  const std::string runner = kWork + "/meltrig_toy_runner";
  std::vector<std::string> argv = {runner, "--print-args"};
  auto args = hostile_args();
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = t.run(argv, milliseconds(20000));
  REQUIRE(r.ok());
  CHECK_MESSAGE(r.value().exit_code == 0, r.value().err);
  CHECK(r.value().out == printed({argv.begin() + 1, argv.end()}));  // it echoes --print-args too
  CHECK(r.value().err.empty());  // the wrapper's pid line is stripped
  auto argvs = a.device_argvs();
  REQUIRE(argvs.size() == 1);
  auto expected = mt::wrapped_argv(argv);
  CHECK(argvs[0] == expected);
  CHECK(std::vector<std::string>(argvs[0].begin() + 4, argvs[0].end()) == argv);
  CHECK_FALSE(std::filesystem::exists("/tmp/x"));

  // The transcript's wrapper is the library's: they cannot drift apart.
  CHECK(meltrig::test::read_file(a.transcript)
            .find("\"run_wrapper\": \"echo \\\"meltrig-pid $$\\\" >&2; exec \\\"$@\\\"\"") !=
        std::string::npos);
}

TEST_CASE("targets: adb telemetry, clock probe, logcat, dumpsys, pull and tail (stand-in)") {
  AdbStandIn a;
  mt::AdbTarget t(a.config());
  auto s = t.read_telemetry();
  REQUIRE_MESSAGE(s.ok(), s.error().describe());
  CHECK(s.value().device_mono_ns == 123456789012345);
  CHECK(value_of(s.value(), "thermal/zone2/cpu-1-0-usr") == doctest::Approx(52.3));
  CHECK(value_of(s.value(), "cpu/cpu7/freq") == doctest::Approx(2.8416e9));
  CHECK(value_of(s.value(), "gpu/3d00000.qcom,kgsl-3d0/freq") == doctest::Approx(585e6));
  // This phone reports current_now in mA (-412): the rule picks mA and says so.
  CHECK(value_of(s.value(), "power/battery/current") == doctest::Approx(-0.412));
  CHECK(value_of(s.value(), "power/battery/voltage") == doctest::Approx(3.987));
  CHECK(t.current_unit().chosen == mt::CurrentUnit::milliamp);
  CHECK(s.value().find("power/battery/current")->description.find("< 20000 -> mA") !=
        std::string::npos);

  auto p = t.probe_clock();
  REQUIRE(p.ok());
  CHECK(p.value().device_mono_ns == 123456789999999);
  CHECK(p.value().device_boot_ns == 123999888777999);
  CHECK(p.value().device_real_ns == 1795330000123999999);
  CHECK(p.value().rtt_ns() > 0);
  CHECK_FALSE(t.probe_session_active());  // the transcript has no --serve: one call per probe

  auto log = t.logcat("meltrig");
  REQUIRE(log.ok());
  CHECK(log.value().find("I meltrig : run.start id=r1") != std::string::npos);
  CHECK_FALSE(t.logcat("bad tag").ok());
  CHECK_FALSE(t.logcat("*:V").ok());

  auto b = t.dumpsys_battery();
  REQUIRE(b.ok());
  CHECK(b.value().level == 78);
  CHECK(*b.value().voltage_v == doctest::Approx(4.123));

  REQUIRE(t.pull(kWork + "/markers.txt", a.dir / "markers.txt").ok());
  auto m = mt::read_marker_file(a.dir / "markers.txt");
  REQUIRE(m.ok());
  CHECK(m.value().issues.empty());
  int tokens = 0;
  for (const auto& e : m.value().events)
    tokens += e.kind == mt::MarkerKind::token;
  CHECK(tokens == 3);

  mt::MarkerTail tail(t, kWork + "/markers.txt");
  auto lines = tail.poll();
  REQUIRE(lines.ok());
  CHECK(lines.value().size() == 10);
  auto again = tail.poll();  // tail -c +<size+1>: nothing new
  REQUIRE(again.ok());
  CHECK(again.value().empty());
  auto missing = t.read_file(kWork + "/missing.txt");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);

  // Anything the transcript does not hold is an error, not a silent empty answer.
  auto unexpected = t.read_file(kWork + "/other.txt");
  REQUIRE_FALSE(unexpected.ok());
  CHECK(unexpected.error().message.find("fake_adb: unexpected") != std::string::npos);
}

TEST_CASE("targets: adb run timeout kills the program on the device through its pid") {
  AdbStandIn a;
  mt::AdbTarget t(a.config());
  auto r = t.run({"sleep", "30"}, milliseconds(1000));
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r.value().timed_out);
  auto argvs = a.device_argvs();
  REQUIRE(argvs.size() == 2);
  CHECK(argvs[1] ==
        std::vector<std::string>{"sh", "-c", mt::kKillScript, "meltrig", "TERM", "4243"});
  // The stand-in's session (the "device program") was ended by that kill.
  auto pid_text = meltrig::test::read_file(a.dir / "state/sessions/4243");
  REQUIRE_FALSE(pid_text.empty());
  CHECK(::kill(std::stoi(pid_text), 0) != 0);
}
