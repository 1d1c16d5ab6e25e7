// Dataset extras (markers, telemetry, attribute groups, series added to a finished capture) and
// `meltrig import melt` end to end, read back in C++ and with h5py.
#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using meltrig::Errc;
using meltrig::dataset::CaptureLayout;
using meltrig::dataset::CaptureState;
using meltrig::dataset::CaptureWriter;
using meltrig::dataset::ChannelData;
using meltrig::dataset::RunRecord;
using meltrig::dataset::SampleType;
using meltrig::targets::ClockTriple;
using meltrig::targets::MarkerEvent;
using meltrig::targets::MarkerKind;
using meltrig::targets::MarkerLog;
using meltrig::targets::Telemetry;
using meltrig::test::Process;
using meltrig::test::TempDir;

CaptureLayout small_layout() {
  CaptureLayout layout;
  layout.sample_rate_hz = 1000.0;
  layout.channels = {{"current", "A", SampleType::f32, "test current"}};
  return layout;
}

// A finished capture of 100 samples, optionally left open (the writer returned).
fs::path finished_capture(const TempDir& dir, const std::string& name = "cap.h5") {
  const fs::path p = dir / name;
  auto w = CaptureWriter::create(p, small_layout());
  REQUIRE(w.ok());
  std::vector<float> x(100, 0.5f);
  const std::array<ChannelData, 1> ch{std::span<const float>(x)};
  REQUIRE(w->append({ch}).ok());
  REQUIRE(w->finish(CaptureState::complete, "test").ok());
  return p;
}

MarkerEvent event(MarkerKind k, std::int64_t t, std::string label = "", std::string text = "") {
  MarkerEvent e;
  e.kind = k;
  e.t_ns = t;
  e.label = std::move(label);
  e.text = std::move(text);
  return e;
}

MarkerLog hostile_log() {
  MarkerLog log;
  log.source = "runs/phone 2/markers \"v1\".txt";
  log.clock = "monotonic";
  log.header = {{"model", "llama-2 7B q4_0 \xF0\x9F\xA6\x99"},
                {"key with spaces=and%equals", "line\nbreak\ttab"},
                {"model", "given twice, kept twice"},
                {"", ""}};
  log.events.push_back(event(MarkerKind::run_start, 10, "run,1;\"quoted\"'single'"));
  log.events.push_back(event(MarkerKind::load_start, 20, "/models/m\xC3\xA9t\xC3\xA9o.gguf"));
  log.events.push_back(event(MarkerKind::load_end, 30));
  MarkerEvent pre = event(MarkerKind::prefill_start, 40);
  pre.index = 23;
  log.events.push_back(pre);
  MarkerEvent tok = event(MarkerKind::token, 50);
  tok.index = 0;
  tok.line = 7;
  log.events.push_back(tok);
  MarkerEvent sync = event(MarkerKind::sync_start, -60);
  sync.code = 0xFEDCBA9876543210ULL;
  sync.bits = 63;
  sync.chip_ns = -5;
  log.events.push_back(sync);
  MarkerEvent u = event(MarkerKind::user, std::numeric_limits<std::int64_t>::max(),
                        "%41 not decoded = stays", std::string(70000, 'x') + "\r\n\x01\x7F");
  u.value = -1.5e300;
  log.events.push_back(u);
  log.events.push_back(event(MarkerKind::user, 70, "", "invalid utf-8 \xFF\xFE kept as bytes"));
  log.events.push_back(event(MarkerKind::run_end, 80, "interrupted"));
  log.clocks = {{1, 2, 3, 4}, {std::numeric_limits<std::int64_t>::min(), 0, -1, 99}};
  log.issues = {{"a:b.txt", 12, "bad: thing: here"}, {"f", 0, "whole-file issue"}};
  log.incomplete_tail = true;
  return log;
}

void check_same(const MarkerLog& a, const MarkerLog& b) {
  CHECK(a.source == b.source);
  CHECK(a.clock == b.clock);
  CHECK(a.header == b.header);
  CHECK(a.incomplete_tail == b.incomplete_tail);
  REQUIRE(a.events.size() == b.events.size());
  for (std::size_t i = 0; i < a.events.size(); ++i) {
    const auto& x = a.events[i];
    const auto& y = b.events[i];
    CAPTURE(i);
    CHECK(x.t_ns == y.t_ns);
    CHECK(x.kind == y.kind);
    CHECK(x.index == y.index);
    CHECK(x.code == y.code);
    CHECK(x.bits == y.bits);
    CHECK(x.chip_ns == y.chip_ns);
    CHECK((x.value == y.value || (std::isnan(x.value) && std::isnan(y.value))));
    CHECK(x.label == y.label);
    CHECK(x.text == y.text);
    CHECK(x.line == y.line);
  }
  REQUIRE(a.clocks.size() == b.clocks.size());
  for (std::size_t i = 0; i < a.clocks.size(); ++i) {
    CHECK(a.clocks[i].mono_ns == b.clocks[i].mono_ns);
    CHECK(a.clocks[i].boot_ns == b.clocks[i].boot_ns);
    CHECK(a.clocks[i].real_ns == b.clocks[i].real_ns);
    CHECK(a.clocks[i].line == b.clocks[i].line);
  }
  REQUIRE(a.issues.size() == b.issues.size());
  for (std::size_t i = 0; i < a.issues.size(); ++i) {
    CHECK(a.issues[i].file == b.issues[i].file);
    CHECK(a.issues[i].line == b.issues[i].line);
    CHECK(a.issues[i].message == b.issues[i].message);
  }
}

fs::path fixture() {
  return fs::path(MELTRIG_SOURCE_DIR) / "fixtures" / "data" / "melt_run";
}

}  // namespace

TEST_CASE("extras: markers round-trip with hostile strings, in C++ and h5py") {
  TempDir dir;
  const fs::path cap = finished_capture(dir);
  const MarkerLog log = hostile_log();
  REQUIRE(meltrig::dataset::write_markers(cap, "runner", log).ok());
  MarkerLog empty;
  empty.source = "empty.txt";
  REQUIRE(meltrig::dataset::write_markers(cap, "empty", empty).ok());

  auto back = meltrig::dataset::read_markers(cap, "runner");
  REQUIRE(back.ok());
  check_same(log, *back);
  auto back_empty = meltrig::dataset::read_markers(cap, "empty");
  REQUIRE(back_empty.ok());
  check_same(empty, *back_empty);
  auto names = meltrig::dataset::list_markers(cap);
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{"empty", "runner"});

  std::string out;
  const int rc = meltrig::test::run_python(R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    g = f["markers/runner"]
    ev = g["events"][:]
    assert [k.decode() for k in ev["kind"]] == ["run.start", "load.start", "load.end",
        "prefill.start", "token", "sync.start", "user", "user", "run.end"], ev["kind"]
    assert ev["label"][0].decode() == "run,1;\"quoted\"'single'"
    assert ev["label"][1].decode("utf-8") == "/models/m\u00e9t\u00e9o.gguf"
    assert ev["index"][3] == 23 and ev["index"][0] == -1
    assert ev["code"][5] == 0xFEDCBA9876543210 and ev["bits"][5] == 63 and ev["chip_ns"][5] == -5
    assert ev["t_ns"][6] == 2**63 - 1 and ev["value"][6] == -1.5e300
    assert len(ev["text"][6]) == 70004 and ev["text"][6].endswith(b"\r\n\x01\x7f")
    assert ev["text"][7] == b"invalid utf-8 \xff\xfe kept as bytes"
    assert np.isnan(ev["value"][0]) and ev["line"][4] == 7
    c = g["clocks"][:]
    assert list(c["mono_ns"]) == [1, -2**63] and list(c["line"]) == [4, 99]
    a = g.attrs
    assert a["clock"] == "monotonic" and a["source"] == "runs/phone 2/markers \"v1\".txt"
    assert list(a["header_keys"]) == ["model", "key with spaces=and%equals", "model", ""]
    assert a["header_values"][1] == "line\nbreak\ttab"
    assert a["issue_count"] == 2 and list(a["issues"]) == ["a:b.txt:12: bad: thing: here",
                                                          "f:0: whole-file issue"]
    assert a["incomplete_tail"] == 1
    assert "token" in list(a["kind_names"])
    assert len(f["markers/empty/events"]) == 0 and f["markers/empty"].attrs["issue_count"] == 0
    assert f["capture_state/samples_written"][()] == 100
print("ok")
)PY",
                                           {cap.string()}, dir.path(), &out);
  INFO(out);
  CHECK(rc == 0);
}

TEST_CASE("extras: refusals name the file, the object and the source line") {
  TempDir dir;
  const fs::path cap = finished_capture(dir);
  MarkerLog log;
  log.source = "m.txt";
  log.events.push_back(event(MarkerKind::user, 1, "fine"));
  MarkerEvent nul = event(MarkerKind::user, 2, std::string("a\0b", 3));
  nul.line = 42;
  log.events.push_back(nul);
  auto r = meltrig::dataset::write_markers(cap, "runner", log);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  CHECK(r.error().message.find(cap.string() + ": /markers/runner: m.txt:42: label holds a NUL") !=
        std::string::npos);
  CHECK(meltrig::dataset::list_markers(cap)->empty());  // nothing was created

  log.events.pop_back();
  REQUIRE(meltrig::dataset::write_markers(cap, "runner", log).ok());
  auto again = meltrig::dataset::write_markers(cap, "runner", log);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message.find("/markers/runner exists already") != std::string::npos);
  for (const char* bad : {"", "a/b", ".", ".."}) {
    auto b = meltrig::dataset::write_markers(cap, bad, log);
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().code == Errc::invalid_argument);
  }

  auto missing = RunRecord::open(dir / "nope.h5");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  std::ofstream(dir / "not.h5") << "not hdf5";
  auto not_h5 = RunRecord::open(dir / "not.h5");
  REQUIRE_FALSE(not_h5.ok());
  CHECK(not_h5.error().code == Errc::file_error);
  CHECK(not_h5.error().message.starts_with((dir / "not.h5").string() + ": cannot open"));
  auto no_group = meltrig::dataset::read_markers(cap, "other");
  REQUIRE_FALSE(no_group.ok());
  CHECK(no_group.error().code == Errc::not_found);
}

TEST_CASE("extras: a capture still being written by another process cannot be reopened") {
  TempDir dir;
  const fs::path live = dir / "live.h5";
  Process cap({meltrig::test::cli(), "capture", "--monitor", "synthetic:1000:paced=1", "--duration",
               "60", "-q", "-o", live.string()},
              dir.path(), "capture");
  REQUIRE(meltrig::test::wait_for_path(live));
  // Wait until the writer has laid the file out (SWMR started), then try to add to it.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto f = RunRecord::open(live);
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().code == Errc::file_error);
  CHECK(f.error().message.starts_with(live.string() + ": cannot open for adding extras"));
  cap.signal(SIGINT);
  CHECK(cap.wait() == 0);
  auto after = RunRecord::open(live);  // finished: now it can
  REQUIRE(after.ok());
  REQUIRE(after->write_attribute_group("/truth", {{"ok", std::int64_t{1}}}).ok());
  CHECK(after->close().ok());
}

TEST_CASE("extras: telemetry, attribute groups and series") {
  TempDir dir;
  const fs::path cap = finished_capture(dir);
  Telemetry tel;
  tel.add("thermal/soc", "degC", 1000, 41.5);
  tel.add("thermal/soc", "degC", 2000, 42.25);
  tel.add("power/fuel_gauge_current", "A", 1500, -0.75, "boottime");
  tel.get("thermal/soc", "degC").description = "SoC zone, thermal_zone3";
  tel.get("empty", "W");
  {
    auto f = RunRecord::open(cap);
    REQUIRE(f.ok());
    REQUIRE(f->write_telemetry(tel).ok());
    REQUIRE(f->write_attribute_group("/truth", {{"tokens", std::int64_t{16}},
                                                {"energy_j", 1.25},
                                                {"scenario", std::string("steady")}})
                .ok());
    REQUIRE(f->write_attribute_group("/truth/phases", {{"n", std::int64_t{3}}}).ok());
    const std::vector<double> series = {0.0, 0.0, 0.0006, 1e300};
    REQUIRE(f->write_series("/host/t_rel_s", series, {{"unit", std::string("s")}}).ok());
    auto dup = f->write_attribute_group("/truth", {{"tokens", std::int64_t{1}}});
    REQUIRE_FALSE(dup.ok());
    CHECK(dup.error().message.find("attribute 'tokens' exists already") != std::string::npos);
    Telemetry bad;
    bad.get("a//b", "x");
    CHECK(f->write_telemetry(bad).error().code == Errc::invalid_argument);
    Telemetry again;
    again.add("thermal/soc", "degC", 1, 1.0);
    CHECK(f->write_telemetry(again).error().message.find("/telemetry/thermal/soc exists") !=
          std::string::npos);
    // Another group, same layout; a group that is not one link name is refused by name.
    REQUIRE(f->write_telemetry(again, "telemetry_sampled").ok());
    auto nested = f->write_telemetry(again, "a/b");
    REQUIRE_FALSE(nested.ok());
    CHECK(nested.error().code == Errc::invalid_argument);
    CHECK(nested.error().message.find("telemetry group 'a/b'") != std::string::npos);
    REQUIRE(f->close().ok());
    CHECK_FALSE(f->close().ok());
  }
  auto back = meltrig::dataset::read_telemetry(cap);
  REQUIRE(back.ok());
  REQUIRE(back->series.size() == 3);  // name order: empty, power/..., thermal/soc
  CHECK(back->series[0].name == "empty");
  CHECK(back->series[0].t_ns.empty());
  const auto* soc = back->find("thermal/soc");
  REQUIRE(soc != nullptr);
  CHECK(soc->unit == "degC");
  CHECK(soc->clock == "monotonic");
  CHECK(soc->description == "SoC zone, thermal_zone3");
  CHECK(soc->t_ns == std::vector<std::int64_t>{1000, 2000});
  CHECK(soc->value == std::vector<double>{41.5, 42.25});
  const auto* fg = back->find("power/fuel_gauge_current");
  REQUIRE(fg != nullptr);
  CHECK(fg->clock == "boottime");
  CHECK(fg->value == std::vector<double>{-0.75});

  std::string out;
  const int rc = meltrig::test::run_python(R"PY(
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    s = f["telemetry/thermal/soc"]
    assert list(s["t_ns"]) == [1000, 2000] and list(s["value"]) == [41.5, 42.25]
    assert s.attrs["unit"] == "degC" and s.attrs["clock"] == "monotonic"
    g = f["telemetry_sampled/thermal/soc"]
    assert list(g["t_ns"]) == [1] and list(g["value"]) == [1.0] and g.attrs["unit"] == "degC"
    t = f["truth"].attrs
    assert t["tokens"] == 16 and t["energy_j"] == 1.25 and t["scenario"] == "steady"
    assert f["truth/phases"].attrs["n"] == 3
    assert list(f["host/t_rel_s"][:]) == [0.0, 0.0, 0.0006, 1e300]
    assert f["host/t_rel_s"].attrs["unit"] == "s"
print("ok")
)PY",
                                           {cap.string()}, dir.path(), &out);
  INFO(out);
  CHECK(rc == 0);
}

TEST_CASE("import melt: the CLI turns the fixture run into a capture h5py reads") {
  TempDir dir;
  const fs::path out = dir / "run.h5";
  Process p({meltrig::test::cli(), "import", "melt", fixture().string(), "-o", out.string()},
            dir.path(), "import");
  const int rc = p.wait();
  const std::string err = p.err();
  INFO(err);
  REQUIRE(rc == 0);
  CHECK(err.find("monsoon: 8000 samples (0 malformed rows skipped)") != std::string::npos);
  CHECK(err.find("/markers/iter0_conv0: 53 events, 16 tokens, prompt tokens 23, 0 issues") !=
        std::string::npos);
  CHECK(err.find("/markers/iter1_conv0: 25 events, 8 tokens") != std::string::npos);
  CHECK(err.find("/markers/iter0_conv1: 22 events, 10 tokens") != std::string::npos);
  CHECK(err.find("notes.txt") != std::string::npos);

  auto markers = meltrig::dataset::read_markers(out, "iter0_conv0");
  REQUIRE(markers.ok());
  CHECK(markers->clock == "realtime");

  std::string py;
  const int prc = meltrig::test::run_python(R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["format"] == "meltrig-capture"
    assert f.attrs["host_wall_clock_start_unix_ns"] == 1700000000125000000
    assert f["capture_state/samples_written"][()] == 8000
    assert f["capture_state/state"][()] == 1
    m = f["monsoon"]
    assert m.attrs["sample_rate_hz"] == 5000.0 and m.attrs["driver"] == "melt-import"
    assert m["current"].attrs["unit"] == "A" and m["voltage"].attrs["unit"] == "V"
    i = m["current"][:]
    assert len(i) == 8000 and i.dtype == np.float32
    assert i[0] == np.float32(1.0) and i[25] == np.float32(0.800500)
    assert m["voltage"][1] == np.float32(4.0005)
    t = f["monsoon_host_time/t_rel_s"][:]
    assert len(t) == 8000 and t[0] == t[2] == 0.0 and t[3] == 0.00062
    assert f["monsoon_host_time"].attrs["start_unix_s"] == 1700000000.125
    assert sorted(f["markers"]) == ["iter0_conv0", "iter0_conv1", "iter1_conv0"]
    g = f["markers/iter0_conv0"]
    ev = g["events"][:]
    tok = ev[ev["kind"] == b"token"]
    assert len(tok) == 16 and list(tok["index"]) == list(range(16))
    assert tok["t_ns"][0] == 1700000000200000000 + 340000000
    pre = ev[ev["kind"] == b"prefill.start"]
    assert len(pre) == 1 and pre["index"][0] == 23
    assert g.attrs["clock"] == "realtime" and g.attrs["issue_count"] == 0
    keys = list(g.attrs["header_keys"])
    assert "llama_print_timings.eval_runs" in keys
    assert len(f["markers/iter0_conv1/events"]) == 22
print("ok")
)PY",
                                            {out.string()}, dir.path(), &py);
  INFO(py);
  CHECK(prc == 0);
}

TEST_CASE("import melt: planted errors are listed by file:line and the rest imports") {
  TempDir dir;
  const fs::path run = dir / "run";
  fs::copy(fixture(), run, fs::copy_options::recursive);
  const fs::path tsv = run / "melt_measurements" / "measurements_iter0_conv0.tsv";
  std::ofstream(tsv, std::ios::app) << "generate.99.decode.start notanumber\n";
  std::ofstream(run / "measurements_monsoon.csv", std::ios::app) << "0.1,oops,4.0,\n1.0,2.0";
  const fs::path out = dir / "run.h5";
  Process p({meltrig::test::cli(), "import", "melt", run.string(), "-o", out.string(),
             "--iteration", "0", "--conversation", "0"},
            dir.path(), "import");
  const int rc = p.wait();
  const std::string err = p.err();
  INFO(err);
  REQUIRE(rc == 0);
  CHECK(err.find(tsv.string() + ":54: value of 'generate.99.decode.start'") != std::string::npos);
  CHECK(err.find((run / "measurements_monsoon.csv").string() + ":8001: mA is not a number") !=
        std::string::npos);
  CHECK(err.find((run / "measurements_monsoon.csv").string() + ":8002: last row") !=
        std::string::npos);
  CHECK(err.find("monsoon: 8000 samples (2 malformed rows skipped)") != std::string::npos);
  auto names = meltrig::dataset::list_markers(out);
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{"iter0_conv0"});
  auto log = meltrig::dataset::read_markers(out, "iter0_conv0");
  REQUIRE(log.ok());
  REQUIRE(log->issues.size() == 1);
  CHECK(log->issues[0].line == 54);
  CHECK(log->issues[0].file == tsv.string());
  CHECK(log->events.size() == 53);
}

TEST_CASE("import melt: exit codes for nothing to import and usage errors") {
  TempDir dir;
  fs::create_directories(dir / "empty");
  {
    Process p({meltrig::test::cli(), "import", "melt", (dir / "empty").string(), "-o",
               (dir / "a.h5").string()},
              dir.path(), "empty");
    CHECK(p.wait() == 1);
    CHECK(p.err().find("nothing could be imported") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "a.h5"));
  }
  {
    Process p({meltrig::test::cli(), "import", "melt", (dir / "missing").string(), "-o",
               (dir / "b.h5").string()},
              dir.path(), "missing");
    CHECK(p.wait() == 1);
    CHECK(p.err().find((dir / "missing").string()) != std::string::npos);
  }
  {
    Process p({meltrig::test::cli(), "import", "melt", fixture().string(), "-o",
               (dir / "c.h5").string(), "--all", "--iteration", "1"},
              dir.path(), "usage");
    CHECK(p.wait() == 2);
    CHECK_FALSE(fs::exists(dir / "c.h5"));
  }
  {
    Process p({meltrig::test::cli(), "import", "melt", fixture().string()}, dir.path(), "noout");
    CHECK(p.wait() == 2);
  }
}
