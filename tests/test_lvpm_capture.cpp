// End-to-end LVPM captures: emulator on a real pty -> libserialport -> codec -> driver -> ring ->
// HDF5, read back with the C++ side's truth and with Debian's h5py.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "meltrig/fixtures/lvpm_emulator.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/lvpm_monitor.hpp"
#include "test_support.hpp"

using namespace meltrig;
using meltrig::test::TempDir;

namespace {

struct Captured {
  rig::CaptureSummary summary;
  fixtures::LvpmTruth truth;
};

Captured capture_from_emulator(fixtures::LvpmEmulatorConfig cfg, const std::filesystem::path& out,
                               double seconds, double volts = 4.0) {
  auto emu = fixtures::LvpmEmulator::start(std::move(cfg));
  REQUIRE(emu.ok());
  rig::LvpmMonitor::Options mo;
  mo.port = (*emu)->port_path();
  rig::LvpmMonitor monitor(mo);
  auto info = monitor.open();
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.error().describe()));
  rig::CaptureOptions opt;
  opt.output = out;
  opt.duration_s = seconds;
  opt.monitor.output_voltage_v = volts;
  auto s = rig::run_capture(monitor, *info, opt);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  monitor.close();
  (*emu)->stop();
  return {*s, (*emu)->truth()};
}

// A triangle wave between 0.1 A and 3.9 A with a 0.4 s period: a sample placed at the wrong
// index by even one packet reads milliamps away from its truth.
std::filesystem::path triangle_csv(const TempDir& dir) {
  auto p = dir / "triangle.csv";
  std::ofstream f(p);
  f << "t_s,current_a\n";
  for (int k = 0; k <= 100; ++k)
    f << k * 0.2 << "," << (k % 2 ? 3.9 : 0.1) << "\n";
  return p;
}

const char* kH5Check = R"PY(
import sys, h5py, numpy as np
path, expect_n, expect_mean = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with h5py.File(path, "r") as f:
    assert f.attrs["format"] == "meltrig-capture", f.attrs["format"]
    m = f["monitor"]
    rate = m.attrs["sample_rate_hz"]
    assert rate == 5000.0, rate
    assert m.attrs["driver"] == "lvpm"
    cur, volt = m["current"][:], m["voltage"][:]
    assert m["current"].attrs["unit"] == "A" and m["voltage"].attrs["unit"] == "V"
    assert len(cur) == expect_n == len(volt), (len(cur), expect_n)
    assert f["capture_state/state"][()] == 1
    assert f["capture_state/samples_written"][()] == expect_n
    assert not np.isnan(cur).any()
    t = np.arange(len(cur)) / rate          # the time base: index / rate
    mean = float(np.mean(cur))
    rel = abs(mean - expect_mean) / expect_mean
    assert rel < 1e-3, (mean, expect_mean, rel)
    assert abs(float(np.mean(volt)) - 4.0) < 1e-3
    names = [n.decode() if isinstance(n, bytes) else n for n in m["counters"].attrs["names"]]
    counters = dict(zip(names, m["counters"][:]))
    assert counters["missing_samples"] == 0, counters
    assert len(m["calibration"]) >= 1
    print("ok", len(cur), mean, rel, t[-1])
)PY";

}  // namespace

TEST_CASE("lvpm capture: 10 s of a known waveform over a pty reads back exactly through h5py") {
  TempDir dir;
  fixtures::LvpmEmulatorConfig cfg;
  auto w = fixtures::Waveform::steps({{0, 0.3}, {2.5, 1.1}, {5, 0.05}, {7.5, 2.2}});
  REQUIRE(w.ok());
  cfg.waveform = *w;
  cfg.waveform.noise_amps = 0.02;
  cfg.seed = 7;
  auto out = dir / "ten.h5";
  auto c = capture_from_emulator(cfg, out, 10.0);

  CHECK(c.summary.state == dataset::CaptureState::complete);
  CHECK(c.truth.samples_dropped == 0);
  CHECK(c.truth.samples_sent >= 49'000);
  // Every sample the emulator emitted is in the file, no more, no less.
  CHECK(c.summary.samples == c.truth.samples_sent);
  CHECK(c.summary.valid_samples == c.truth.samples_sent);
  double true_mean = c.truth.sum_true_amps / static_cast<double>(c.truth.samples_sent);
  CHECK(std::abs(c.summary.mean_current_a - true_mean) / true_mean < 1e-3);

  std::string py;
  int rc = meltrig::test::run_python(
      kH5Check, {out.string(), std::to_string(c.truth.samples_sent), std::to_string(true_mean)},
      dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

std::uint64_t counter(const rig::CaptureSummary& s, const std::string& name) {
  for (const auto& c : s.counters)
    if (c.name == name) return c.value;
  FAIL("no counter " << name);
  return 0;
}

TEST_CASE(
    "lvpm capture: a voltage above a revision-1 unit's 4.096 V full scale is counted clipped") {
  TempDir dir;
  for (std::uint8_t rev : {std::uint8_t{1}, std::uint8_t{3}}) {
    CAPTURE(int(rev));
    fixtures::LvpmEmulatorConfig cfg;
    cfg.hardware_revision = rev;
    cfg.waveform = fixtures::Waveform::constant(0.5);
    auto c = capture_from_emulator(cfg, dir / ("rev" + std::to_string(rev) + ".h5"), 1.5, 4.2);
    REQUIRE(c.summary.state == dataset::CaptureState::complete);
    REQUIRE(c.summary.samples > 5000);
    if (rev == 1) {
      // Every sample reads the full scale, 65532 x 62.5 uV, and every one is counted.
      CHECK(counter(c.summary, "voltage_clipped_samples") == c.summary.valid_samples);
      CHECK(c.summary.mean_voltage_v == doctest::Approx(65532 * 62.5e-6).epsilon(1e-6));
    } else {
      CHECK(counter(c.summary, "voltage_clipped_samples") == 0);
      CHECK(c.summary.mean_voltage_v == doctest::Approx(4.2).epsilon(1e-4));
    }
  }
}

TEST_CASE("lvpm capture: a 20-packet gap is counted exactly and later samples keep their index") {
  TempDir dir;
  fixtures::LvpmEmulatorConfig cfg;
  auto w = fixtures::Waveform::from_csv(triangle_csv(dir));
  REQUIRE(w.ok());
  cfg.waveform = *w;
  cfg.faults.drop_data_packets = {{300, 20}, {700, 3}};  // 20 wraps the 4-bit counter; 3 does not
  auto out = dir / "gap.h5";
  auto c = capture_from_emulator(cfg, out, 4.0);
  CHECK(c.summary.state == dataset::CaptureState::complete);
  CHECK(c.truth.samples_dropped == 230);
  CHECK(c.summary.samples == c.truth.samples_generated);
  CHECK(c.summary.valid_samples == c.truth.samples_sent);

  const char* check = R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    m = f["monitor"]
    cur = m["current"][:]
    nan = np.flatnonzero(np.isnan(cur))
    assert list(nan) == list(range(3000, 3200)) + list(range(7000, 7030)), (nan[:5], len(nan))
    gaps = sorted((int(g["first_index"]), int(g["count"]), int(g["kind"])) for g in m["gaps"][:])
    # 4 packets seen by the sequence counter, 16 more inferred from elapsed time; then 3 by sequence.
    assert gaps == [(3000, 40, 0), (3040, 160, 1), (7000, 30, 0)], gaps
    names = [n.decode() if isinstance(n, bytes) else n for n in m["counters"].attrs["names"]]
    k = dict(zip(names, m["counters"][:]))
    assert k["missing_samples"] == 230 and k["wrap_lost_samples"] == 160 and k["sequence_gaps"] == 2, k
    # Every valid sample sits at its true index: compare with the triangle wave's truth.
    rate = m.attrs["sample_rate_hz"]
    t = np.arange(len(cur)) / rate
    period, lo, hi = 0.4, 0.1, 3.9
    ph = np.mod(t, period) / period
    truth = np.where(ph < 0.5, lo + (hi - lo) * 2 * ph, hi - (hi - lo) * 2 * (ph - 0.5))
    ok = ~np.isnan(cur)
    err = np.abs(cur[ok] - truth[ok])
    assert err.max() < 5e-3, err.max()  # one packet off reads ~38 mA off
    print("ok", len(cur), err.max())
)PY";
  std::string py;
  int rc = meltrig::test::run_python(check, {out.string()}, dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("lvpm capture: the CLI reports a port that does not exist and exits non-zero") {
  TempDir dir;
  meltrig::test::Process p({meltrig::test::cli(), "capture", "--monitor", "lvpm:/dev/ttyNOPE0",
                            "--duration", "1", "-o", (dir / "x.h5").string()},
                           dir.path(), "cli");
  CHECK(p.wait() == 1);
  CHECK(p.err().find("/dev/ttyNOPE0") != std::string::npos);
  CHECK(p.err().find("no such serial port") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "x.h5"));
}

TEST_CASE("lvpm capture: a pty that answers garbage is rejected with a clear message") {
  TempDir dir;
  fixtures::LvpmEmulatorConfig cfg;
  cfg.faults.answer_garbage = true;
  auto emu = fixtures::LvpmEmulator::start(cfg, dir / "garbage");
  REQUIRE(emu.ok());
  meltrig::test::Process p(
      {meltrig::test::cli(), "capture", "--monitor", "lvpm:" + (dir / "garbage").string(),
       "--duration", "1", "-o", (dir / "x.h5").string()},
      dir.path(), "cli");
  CHECK(p.wait() == 1);
  INFO(p.err());
  CHECK(p.err().find("no status packet") != std::string::npos);
  CHECK(p.err().find((dir / "garbage").string()) != std::string::npos);
}

TEST_CASE(
    "lvpm capture: an emulator killed mid-capture ends it with an error and a readable file") {
  TempDir dir;
  auto link = dir / "lvpm";
  meltrig::test::Process emu({meltrig::test::cli(), "emulate", "lvpm", "--link", link.string()},
                             dir.path(), "emu");
  REQUIRE(meltrig::test::wait_for_path(link));
  auto out = dir / "killed.h5";
  meltrig::test::Process cap({meltrig::test::cli(), "capture", "--monitor", "lvpm:" + link.string(),
                              "--duration", "30", "-q", "-o", out.string()},
                             dir.path(), "cap");
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  emu.signal(SIGKILL);
  int rc = cap.wait(std::chrono::seconds(30));
  INFO(cap.err());
  CHECK(rc == 1);
  CHECK(cap.err().find("disconnected") != std::string::npos);
  const char* check = R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    state = int(f["capture_state/state"][()])
    reason = f["capture_state/end_reason"][()].rstrip(b"\0").decode()
    n = len(f["monitor/current"])
    assert state == 2, state
    assert "disconnected" in reason, reason
    assert n >= 5000 and n == f["capture_state/samples_written"][()], n
    assert not np.isnan(f["monitor/current"][:]).any()
    print("ok", n, reason)
)PY";
  std::string py;
  int prc = meltrig::test::run_python(check, {out.string()}, dir.path(), &py);
  INFO(py);
  CHECK(prc == 0);
}

TEST_CASE("lvpm capture: SIGINT stops a capture cleanly and leaves a complete file") {
  TempDir dir;
  auto link = dir / "lvpm";
  meltrig::test::Process emu({meltrig::test::cli(), "emulate", "lvpm", "--link", link.string()},
                             dir.path(), "emu");
  REQUIRE(meltrig::test::wait_for_path(link));
  auto out = dir / "int.h5";
  meltrig::test::Process cap({meltrig::test::cli(), "capture", "--monitor", "lvpm:" + link.string(),
                              "--duration", "0", "-q", "-o", out.string()},
                             dir.path(), "cap");
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  cap.signal(SIGINT);
  int rc = cap.wait(std::chrono::seconds(30));
  INFO(cap.err());
  CHECK(rc == 0);
  CHECK(cap.out().find("capture interrupted") != std::string::npos);
  const char* check = R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    assert int(f["capture_state/state"][()]) == 3
    n = len(f["monitor/current"])
    assert n >= 5000 and n == f["capture_state/samples_written"][()], n
    assert not np.isnan(f["monitor/current"][:]).any()
    print("ok", n)
)PY";
  std::string py;
  CHECK(meltrig::test::run_python(check, {out.string()}, dir.path(), &py) == 0);
  INFO(py);
  emu.signal(SIGTERM);
  CHECK(emu.wait() == 0);
}

TEST_CASE("lvpm capture: the documented h5py example reads a fresh capture") {
  TempDir dir;
  auto out = dir / "doc.h5";
  meltrig::test::Process demo({meltrig::test::cli(), "demo", "--duration", "2", "-o", out.string()},
                              dir.path(), "demo");
  REQUIRE(demo.wait() == 0);
  meltrig::test::Process py(
      {"/usr/bin/python3", std::string(MELTRIG_SOURCE_DIR) + "/docs/examples/read_capture.py",
       out.string()},
      dir.path(), "py");
  CHECK(py.wait() == 0);
  INFO(py.out(), py.err());
  CHECK(py.out().find("state: complete") != std::string::npos);
  CHECK(py.out().find("losses: none") != std::string::npos);
  CHECK(py.out().find("driver") == std::string::npos);  // prints values, not key names
  CHECK(py.out().find("lvpm on ") != std::string::npos);
}
