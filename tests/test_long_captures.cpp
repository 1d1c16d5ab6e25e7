// Long and fast captures: the synthetic source, finite sources, and emulators on an accelerated
// virtual clock.
#include <doctest/doctest.h>

#include "meltrig/fixtures/lvpm_emulator.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/lvpm_monitor.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/synthetic_monitor.hpp"
#include "test_support.hpp"

using namespace meltrig;
using meltrig::test::TempDir;

TEST_CASE("long captures: a virtual clock runs `speed` times faster than its base") {
  struct Manual final : Clock {
    std::int64_t t = 1000;
    std::int64_t now_ns() const override { return t; }
  } base;
  VirtualClock v(50.0, base);
  CHECK(v.now_ns() == 1000);
  base.t += 2'000'000;  // 2 ms of base time
  CHECK(v.now_ns() == 1000 + 100'000'000);
}

TEST_CASE(
    "long captures: an unpaced synthetic source ends the capture normally with every sample") {
  TempDir dir;
  auto m = rig::make_monitor(
      rig::DeviceSpec::parse("synthetic:1000000:paced=0,samples=3000000").value());
  REQUIRE(m.ok());
  auto info = (*m)->open();
  REQUIRE(info.ok());
  rig::CaptureOptions opt;
  opt.output = dir / "syn.h5";
  opt.duration_s = 0;
  opt.wait_when_full = true;
  opt.ring_blocks = 8;  // a small ring: the writer must keep up through back-pressure, not drops
  auto s = rig::run_capture(**m, *info, opt);
  REQUIRE(s.ok());
  CHECK(s->state == dataset::CaptureState::complete);
  CHECK(s->end_reason.find("delivered") != std::string::npos);
  // Whole packets of 31 samples: the largest multiple of 31 not above 3,000,000.
  CHECK(s->samples == 3'000'000 / 31 * 31);
  CHECK(s->valid_samples == s->samples);
  CHECK(s->mean_current_a == doctest::Approx(1.0).epsilon(0.01));  // the sine averages to 1 A
}

TEST_CASE("long captures: a live source never waits: a full ring drops and counts exactly") {
  TempDir dir;
  // A paced source is live: it cannot wait. At 1000x, 1 MHz asks for a billion samples a second.
  VirtualClock vclock(1000.0);
  rig::SyntheticMonitor::Options so;
  so.rate_hz = 1e6;
  so.max_samples = 2'000'000;
  so.clock = &vclock;
  rig::SyntheticMonitor m(so);
  auto info = m.open();
  REQUIRE(info.ok());
  CHECK_FALSE(info->can_wait);
  rig::CaptureOptions opt;
  opt.output = dir / "drop.h5";
  opt.duration_s = 0;
  opt.clock = &vclock;
  opt.ring_blocks = 2;  // tiny, and no back-pressure: some blocks must be dropped
  auto s = rig::run_capture(m, *info, opt);
  REQUIRE(s.ok());
  auto it = std::find_if(s->counters.begin(), s->counters.end(), [](const rig::Counter& c) {
    return std::string(c.name) == "ring_overflow_samples";
  });
  REQUIRE(it != s->counters.end());
  // Every sample index is either stored or counted as dropped: nothing vanishes silently.
  CHECK(s->samples == 2'000'000 / 31 * 31);
  CHECK(it->value > 0);
  CHECK(s->valid_samples + it->value == s->samples);
  const char* check = R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    m = f["monitor"]
    cur = m["current"][:]
    nan = int(np.isnan(cur).sum())
    ov = sum(int(g["count"]) for g in m["gaps"][:] if int(g["kind"]) == 3)
    names = [x.decode() if isinstance(x, bytes) else x for x in m["counters"].attrs["names"]]
    k = dict(zip(names, (int(v) for v in m["counters"][:])))
    assert nan == ov == k["ring_overflow_samples"], (nan, ov, k)
    print("ok", nan)
)PY";
  std::string py;
  int rc = meltrig::test::run_python(check, {(dir / "drop.h5").string()}, dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("long captures: the LVPM pty emulator on a 20x virtual clock delivers 60 s exactly") {
  TempDir dir;
  VirtualClock vclock(20.0);
  fixtures::LvpmEmulatorConfig cfg;
  cfg.clock = &vclock;
  cfg.waveform = fixtures::Waveform::constant(0.75);
  cfg.waveform.noise_amps = 0.01;
  auto emu = fixtures::LvpmEmulator::start(cfg);
  REQUIRE(emu.ok());
  rig::LvpmMonitor::Options mo;
  mo.port = (*emu)->port_path();
  mo.clock = &vclock;
  mo.sequencer.infer_wraps = false;  // host jitter x 20 exceeds a wrap's 32 ms
  rig::LvpmMonitor monitor(mo);
  auto info = monitor.open();
  REQUIRE(info.ok());
  rig::CaptureOptions opt;
  opt.output = dir / "fast.h5";
  opt.duration_s = 60.0;  // of virtual time: about 3 s of wall time
  opt.clock = &vclock;
  auto t0 = std::chrono::steady_clock::now();
  auto s = rig::run_capture(monitor, *info, opt);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(s.ok());
  monitor.close();
  (*emu)->stop();
  auto t = (*emu)->truth();
  CHECK(s->state == dataset::CaptureState::complete);
  CHECK(t.samples_dropped == 0);
  CHECK(s->samples == t.samples_sent);
  CHECK(s->samples >= 300'000);  // 60 s at 5 kHz
  CHECK(wall < 30.0);            // it did not run in real time
  CHECK(s->mean_current_a ==
        doctest::Approx(t.sum_true_amps / static_cast<double>(t.samples_sent)).epsilon(1e-3));
}

TEST_CASE("long captures: SIGKILL mid-capture leaves every sample up to 1 s before the kill") {
  TempDir dir;
  fixtures::LvpmEmulatorConfig cfg;
  cfg.waveform = fixtures::Waveform::constant(0.4);
  auto emu = fixtures::LvpmEmulator::start(cfg, dir / "lvpm");
  REQUIRE(emu.ok());
  auto out = dir / "killed.h5";
  meltrig::test::Process cap(
      {meltrig::test::cli(), "capture", "--monitor", "lvpm:" + (dir / "lvpm").string(),
       "--duration", "60", "-q", "-o", out.string()},
      dir.path(), "cap");
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  cap.signal(SIGKILL);
  // What the monitor had sent when the capture died: the file must hold all but the last second.
  const std::uint64_t sent_at_kill = (*emu)->truth().samples_sent;
  CHECK(cap.wait() == 128 + SIGKILL);
  (*emu)->stop();
  const char* check = R"PY(
import sys, h5py, numpy as np
path, sent = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r", swmr=True) as f:
    n = int(f["capture_state/samples_written"][()])
    assert int(f["capture_state/state"][()]) == 0  # never finished
    cur = f["monitor/current"][:n]
    assert sent - 5000 <= n <= sent, (n, sent)      # at most 1 s (5000 samples) behind
    assert not np.isnan(cur).any()
    assert abs(float(cur.mean()) - 0.4) < 5e-3  # coarse range: ~1 mA steps
    names = [x.decode() if isinstance(x, bytes) else x for x in f["monitor/counters"].attrs["names"]]
    k = dict(zip(names, (int(v) for v in f["monitor/counters"][:])))
    gaps = sum(int(g["count"]) for g in f["monitor/gaps"][:])
    assert k["missing_samples"] == 0 and gaps == 0, (k, gaps)
    print("ok", n, sent)
)PY";
  std::string py;
  int rc = meltrig::test::run_python(check, {out.string(), std::to_string(sent_at_kill)},
                                     dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("long captures: a second reader follows a live capture while it is written") {
  TempDir dir;
  fixtures::LvpmEmulatorConfig cfg;
  cfg.waveform = fixtures::Waveform::constant(0.9);
  auto emu = fixtures::LvpmEmulator::start(cfg, dir / "lvpm");
  REQUIRE(emu.ok());
  auto out = dir / "live.h5";
  meltrig::test::Process cap(
      {meltrig::test::cli(), "capture", "--monitor", "lvpm:" + (dir / "lvpm").string(),
       "--duration", "5", "-q", "-o", out.string()},
      dir.path(), "cap");
  // The follower polls with SWMR and refresh() until the capture says it is complete.
  const char* follow = R"PY(
import sys, time, h5py, numpy as np
path = sys.argv[1]
t_end = time.time() + 30
f = None
while f is None and time.time() < t_end:
    try:
        f = h5py.File(path, "r", swmr=True)
    except OSError:
        time.sleep(0.05)
assert f is not None, "the capture file never appeared"
seen, state = [], 0
cur, n_ds = f["monitor/current"], f["capture_state/samples_written"]
st = f["capture_state/state"]
while time.time() < t_end:
    for d in (cur, n_ds, st):
        d.refresh()
    n, state = int(n_ds[()]), int(st[()])
    if not seen or n != seen[-1]:
        seen.append(n)
        if n:
            assert not np.isnan(cur[:n]).any()
            assert abs(float(cur[max(0, n - 1000):n].mean()) - 0.9) < 2e-3
    if state != 0:
        break
    time.sleep(0.2)
assert state == 1, state
growing = [b > a for a, b in zip(seen, seen[1:])]
assert len(seen) >= 5 and all(growing), seen
print("ok", seen)
)PY";
  std::string py;
  int rc = meltrig::test::run_python(follow, {out.string()}, dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
  CHECK(cap.wait() == 0);
  (*emu)->stop();
}
