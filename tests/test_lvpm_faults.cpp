// Fault injection on the LVPM path: for each fault the dataset must record the exact number of
// lost or duplicated samples, and every sample after the fault must sit at its true index.
#include <doctest/doctest.h>

#include <fstream>

#include "meltrig/fixtures/lvpm_emulator.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/lvpm_monitor.hpp"
#include "test_support.hpp"

using namespace meltrig;
using meltrig::test::TempDir;

namespace {

// A triangle between 0.1 A and 3.9 A, period 0.4 s (19 A/s): one packet (10 samples) out of
// place reads about 38 mA from its truth, far above the 1 mA coarse quantisation.
fixtures::Waveform triangle(const TempDir& dir) {
  auto p = dir / "triangle.csv";
  std::ofstream f(p);
  for (int k = 0; k <= 150; ++k)
    f << k * 0.2 << "," << (k % 2 ? 3.9 : 0.1) << "\n";
  f.close();
  auto w = fixtures::Waveform::from_csv(p);
  REQUIRE(w.ok());
  return *w;
}

struct Run {
  rig::CaptureSummary summary;
  fixtures::LvpmTruth truth;
};

Run run(const TempDir& dir, fixtures::LvpmFaults faults, double seconds) {
  fixtures::LvpmEmulatorConfig cfg;
  cfg.waveform = triangle(dir);
  cfg.faults = std::move(faults);
  auto emu = fixtures::LvpmEmulator::start(cfg);
  REQUIRE(emu.ok());
  rig::LvpmMonitor::Options mo;
  mo.port = (*emu)->port_path();
  rig::LvpmMonitor monitor(mo);
  auto info = monitor.open();
  REQUIRE(info.ok());
  rig::CaptureOptions opt;
  opt.output = dir / "fault.h5";
  opt.duration_s = seconds;
  auto s = rig::run_capture(monitor, *info, opt);
  REQUIRE(s.ok());
  monitor.close();
  (*emu)->stop();
  return {*s, (*emu)->truth()};
}

// Checks the file: NaN rows exactly at `nan_ranges`, gap rows exactly `gaps`, the named counters,
// and every valid sample within 5 mA of the triangle's value at its index.
int check_file(const TempDir& dir, const std::string& nan_ranges, const std::string& gaps,
               const std::string& counters, std::string* out) {
  const char* script = R"PY(
import sys, json, h5py, numpy as np
path, nan_ranges, gaps_want, counters_want = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
with h5py.File(path, "r", swmr=True) as f:
    m = f["monitor"]
    n = int(f["capture_state/samples_written"][()])
    cur = m["current"][:n]
    want = [i for a, b in nan_ranges for i in range(a, b)]
    got = list(np.flatnonzero(np.isnan(cur)))
    assert got == want, ("nan rows", got[:10], len(got), len(want))
    rows = sorted([int(g["first_index"]), int(g["count"]), int(g["kind"])] for g in m["gaps"][:])
    assert rows == sorted(gaps_want), ("gap rows", rows, gaps_want)
    names = [x.decode() if isinstance(x, bytes) else x for x in m["counters"].attrs["names"]]
    k = dict(zip(names, (int(v) for v in m["counters"][:])))
    for name, v in counters_want.items():
        assert k[name] == v, ("counter", name, k[name], v, k)
    t = np.arange(n) / m.attrs["sample_rate_hz"]
    ph = np.mod(t, 0.4) / 0.4
    truth = np.where(ph < 0.5, 0.1 + 7.6 * ph, 3.9 - 7.6 * (ph - 0.5))
    ok = ~np.isnan(cur)
    err = float(np.abs(cur[ok] - truth[ok]).max())
    assert err < 5e-3, ("misplaced samples", err)  # one packet off reads ~38 mA off
    print("ok", n, err)
)PY";
  return meltrig::test::run_python(
      script, {(dir / "fault.h5").string(), nan_ranges, gaps, counters}, dir.path(), out);
}

}  // namespace

TEST_CASE("lvpm faults: exactly 16 lost packets (invisible to the sequence counter) are found") {
  TempDir dir;
  fixtures::LvpmFaults f;
  f.drop_data_packets = {{400, 16}};
  auto r = run(dir, f, 4.0);
  CHECK(r.truth.samples_dropped == 160);
  CHECK(r.summary.samples == r.truth.samples_generated);
  std::string py;
  int rc = check_file(dir, "[[4000,4160]]", "[[4000,160,1]]",
                      R"({"missing_samples":160,"wrap_gaps":1,"sequence_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("lvpm faults: duplicated packets are dropped and counted, indices unchanged") {
  TempDir dir;
  fixtures::LvpmFaults f;
  f.duplicate_data_packets = {{100, 1}, {500, 2}};
  auto r = run(dir, f, 3.0);
  CHECK(r.truth.samples_duplicated == 30);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, "[]", "[[1010,10,2],[5010,10,2],[5020,10,2]]",
                      R"({"duplicate_samples":30,"missing_samples":0,"sequence_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("lvpm faults: corrupted packets are lost exactly and the decoder resyncs") {
  TempDir dir;
  fixtures::LvpmFaults f;
  f.corrupt_data_packets = {200, 201, 650};
  auto r = run(dir, f, 3.0);
  CHECK(r.truth.samples_corrupted == 30);
  std::string py;
  int rc = check_file(dir, "[[2000,2020],[6500,6510]]", "[[2000,20,0],[6500,10,0]]",
                      R"({"missing_samples":30,"sequence_gaps":2})", &py);
  INFO(py);
  CHECK(rc == 0);
  auto discarded =
      std::find_if(r.summary.counters.begin(), r.summary.counters.end(),
                   [](const rig::Counter& c) { return c.name == std::string("discarded_bytes"); });
  REQUIRE(discarded != r.summary.counters.end());
  CHECK(discarded->value > 0);
}

TEST_CASE("lvpm faults: packets split into 1-3 byte writes lose nothing") {
  TempDir dir;
  fixtures::LvpmFaults f;
  f.split_writes = true;
  auto r = run(dir, f, 2.0);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, "[]", "[]", R"({"missing_samples":0,"discarded_bytes":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("lvpm faults: a 600 ms device stall is a late burst, not a loss") {
  TempDir dir;
  fixtures::LvpmFaults f;
  f.stall_at_s = 1.0;
  f.stall_s = 0.6;
  auto r = run(dir, f, 4.0);
  CHECK(r.truth.samples_dropped == 0);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, "[]", "[]", R"({"missing_samples":0,"wrap_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
  auto stalls =
      std::find_if(r.summary.counters.begin(), r.summary.counters.end(),
                   [](const rig::Counter& c) { return c.name == std::string("stalls_absorbed"); });
  REQUIRE(stalls != r.summary.counters.end());
  CHECK(stalls->value >= 1);
}

TEST_CASE("lvpm faults: a disconnect ends the capture as failed with every sample kept") {
  TempDir dir;
  fixtures::LvpmFaults f;
  f.disconnect_at_s = 1.5;
  auto r = run(dir, f, 10.0);
  CHECK(r.truth.disconnected);
  CHECK(r.summary.state == dataset::CaptureState::failed);
  REQUIRE(r.summary.failure.has_value());
  CHECK(r.summary.failure->code == Errc::port_gone);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, "[]", "[]", R"({"missing_samples":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}
