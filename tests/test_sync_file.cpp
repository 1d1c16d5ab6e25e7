// meltrig sync and meltrig analyze on capture files: the map computed from what a simulated
// phone capture holds (meltrig sim) against the world's true clock map (read from /truth by this
// test only), the /sync and /analysis groups, per-token energy through the real map, and bad
// input (truncated, crashed, gap inside a token, markers on an unknown clock, no markers, no
// usable evidence): a message naming the file, exit 1 and the file byte for byte unchanged.
#include <doctest/doctest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "meltrig/analysis/store.hpp"
#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/group_store.hpp"
#include "meltrig/dataset/h5_file.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/fixtures/sync_sim.hpp"
#include "meltrig/sync/file_sync.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using meltrig::test::Process;
using meltrig::test::TempDir;
namespace ds = meltrig::dataset;

namespace {

struct Cli {
  int rc = -1;
  std::string out, err;
};

Cli cli(const fs::path& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {meltrig::test::cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir, "cli");
  Cli c;
  c.rc = p.wait(std::chrono::seconds(300));
  c.out = p.out();
  c.err = p.err();
  return c;
}

/// One simulated phone capture (examples/scenarios/phone_llamacpp.toml) shared by the tests;
/// each test works on its own copy.
const fs::path& phone_capture() {
  static TempDir dir;
  static const fs::path file = [] {
    const fs::path f = dir / "phone.h5";
    const auto scn = fs::path(MELTRIG_SOURCE_DIR) / "examples/scenarios/phone_llamacpp.toml";
    Cli c = cli(dir.path(), {"sim", scn.string(), "-o", f.string(), "--speed", "10", "-q"});
    REQUIRE_MESSAGE(c.rc == 0, (c.out + c.err));
    return f;
  }();
  return file;
}

fs::path copy_of(const TempDir& dir, const std::string& name) {
  const fs::path f = dir / name;
  fs::copy_file(phone_capture(), f);
  return f;
}

/// Opens `f` read-write with the HDF5 C API (the file edits that make bad input).
struct RawFile {
  hid_t id;
  explicit RawFile(const fs::path& f) : id(H5Fopen(f.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) {
    REQUIRE(id >= 0);
  }
  ~RawFile() { H5Fclose(id); }
};

void set_state_running(const fs::path& f) {
  RawFile raw(f);
  hid_t d = H5Dopen2(raw.id, "/capture_state/state", H5P_DEFAULT);
  const std::int8_t running = 0;
  REQUIRE(H5Dwrite(d, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, &running) >= 0);
  H5Dclose(d);
}

void set_marker_clock(const fs::path& f, const std::string& clock) {
  RawFile raw(f);
  hid_t g = H5Gopen2(raw.id, "/markers/runner", H5P_DEFAULT);
  REQUIRE(H5Adelete(g, "clock") >= 0);
  auto w = ds::h5::write_attribute(g, "clock", clock);
  REQUIRE(w.ok());
  H5Gclose(g);
}

/// Writes NaN into samples [first, first + n) of /monitor/current (a gap).
void punch_gap(const fs::path& f, std::uint64_t first, std::uint64_t n) {
  RawFile raw(f);
  hid_t d = H5Dopen2(raw.id, "/monitor/current", H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  const hsize_t start[1] = {first}, count[1] = {n};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  hid_t mem = H5Screate_simple(1, count, nullptr);
  std::vector<float> nan(n, std::nanf(""));
  REQUIRE(H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, nan.data()) >= 0);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(d);
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

/// |mapped - true| monitor ns at the true end of every token (truth read by the test only).
std::vector<double> map_errors_ns(const fs::path& f, const meltrig::sync::FileSync& s) {
  auto err = meltrig::fixtures::sim::file_token_errors_ns(f, s);
  REQUIRE_MESSAGE(err.ok(), (err.ok() ? "" : err.error().describe()));
  for (double e : *err)
    REQUIRE(!std::isnan(e));  // every token mapped
  return *err;
}

}  // namespace

TEST_CASE("sync file: meltrig sync on a simulated phone capture matches the world's true map") {
  TempDir dir;
  const fs::path f = copy_of(dir, "phone.h5");
  Cli c = cli(dir.path(), {"sync", f.string(), "--json"});
  REQUIRE_MESSAGE(c.rc == 0, c.err);
  const auto j = nlohmann::json::parse(c.out);
  for (const char* k : {"method", "offset_s", "drift_ppm", "residual_rms_s", "bound_s", "segments"})
    CHECK(j.contains(k));
  REQUIRE(!j["segments"].empty());
  for (const char* k : {"device_clock", "device_start_ns", "device_end_ns", "offset_s", "rate",
                        "residual_rms_s", "bound_s", "evidence"})
    CHECK(j["segments"][0].contains(k));
  auto stored = meltrig::sync::read_stored(f);
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  CHECK((*stored)->to_json() == j);
  const std::vector<double> err = map_errors_ns(f, **stored);
  const double p99 = quantile(err, 0.99);
  MESSAGE("map error at the tokens: p50 ", quantile(err, 0.5) * 1e-3, " us, p99 ", p99 * 1e-3,
          " us, max ", quantile(err, 1.0) * 1e-3, " us; bound ", j["bound_s"].get<double>() * 1e6,
          " us; method ", j["method"].get<std::string>());
  // the in-memory sync bench reaches 12-60 us p99 with hour-long pulse trains. The bound is not
  // asserted: with two pulses it is too tight (docs/sync.md, known limits).
  CHECK(p99 <= 60e3);

  // A second run leaves the stored map; --force recomputes and replaces it.
  const std::string before = meltrig::test::read_file(f);
  c = cli(dir.path(), {"sync", f.string()});
  CHECK(c.rc == 0);
  CHECK(c.out.find("already has /sync") != std::string::npos);
  CHECK(meltrig::test::read_file(f) == before);
  c = cli(dir.path(), {"sync", f.string(), "--force"});
  CHECK_MESSAGE(c.rc == 0, c.err);
  CHECK(c.out.find("stored /sync") != std::string::npos);
}

TEST_CASE("sync file: the trace paged from the file gives the maps of the trace held whole") {
  // the phone capture (125,000 samples: two pages) synchronised three ways: the whole trace in
  // memory (as before paging), paged with the default cache, and with a one-page cache (every
  // look at the other page evicts): the same evidence and maps, bit for bit
  namespace ms = meltrig::sync;
  ms::FileSyncOptions whole;
  whole.trace_in_memory = true;
  ms::FileSyncOptions one_page;
  one_page.trace_pages = 1;
  auto a = ms::sync_file(phone_capture(), whole);
  auto b = ms::sync_file(phone_capture());
  auto c = ms::sync_file(phone_capture(), one_page);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(c.ok());
  CHECK(a->to_json() == b->to_json());
  CHECK(a->to_json() == c->to_json());
  auto same = [](const ms::FileSync& x, const ms::FileSync& y) {
    REQUIRE(x.monitor_evidence.size() == y.monitor_evidence.size());
    for (std::size_t i = 0; i < x.monitor_evidence.size(); ++i) {
      CHECK(x.monitor_evidence[i].device_ns == y.monitor_evidence[i].device_ns);
      CHECK(x.monitor_evidence[i].target_ns == y.monitor_evidence[i].target_ns);
      CHECK(x.monitor_evidence[i].sigma_ns == y.monitor_evidence[i].sigma_ns);
    }
    CHECK(x.diag.pulses.tau_ns == y.diag.pulses.tau_ns);
    CHECK(x.diag.notes == y.diag.notes);
  };
  CHECK(!a->monitor_evidence.empty());
  same(*a, *b);
  same(*a, *c);
  auto ev = ms::gather_evidence(phone_capture(), one_page);
  REQUIRE(ev.ok());
  CHECK(ev->inputs.trace.samples.size() > (std::size_t{1} << ms::TraceSamples::kPageBits));
  CHECK(ev->trace_memory == nullptr);  // nothing read whole
}

TEST_CASE(
    "sync file: meltrig sim runs the PPK2 logic scenario, meltrig sync maps it from logic "
    "edges within a sample at every token") {
  // examples/scenarios/ppk2_logic_sync.toml: an emulated PPK2 at 100 kS/s whose logic input D0
  // follows the runner's GPIO line (about 6 s, run at its default real-time speed)
  TempDir dir;
  const fs::path f = dir / "ppk2.h5";
  const auto scn = fs::path(MELTRIG_SOURCE_DIR) / "examples/scenarios/ppk2_logic_sync.toml";
  Cli c = cli(dir.path(), {"sim", scn.string(), "-o", f.string(), "-q"});
  REQUIRE_MESSAGE(c.rc == 0, (c.out + c.err));
  CHECK(c.out.find("emulated PPK2") == std::string::npos);  // -q: no banner
  // a host too busy to keep up loses samples: the logic channel is used up to the first gap
  // (docs/sync.md), so the one-sample goal is checked on the tokens before it
  std::uint64_t usable = 0, rows = 0;
  {
    auto rd = ds::CaptureReader::open(f);
    REQUIRE(rd.ok());
    CHECK(rd->sample_rate_hz() == 100'000.0);
    REQUIRE(rd->find_channel("logic") != nullptr);
    auto gaps = rd->gaps();
    REQUIRE(gaps.ok());
    usable = rows = rd->samples_written();
    for (const ds::Gap& g : *gaps)
      usable = std::min(usable, g.first_index);
    MESSAGE("PPK2 capture: " << rd->samples_written() << " rows, " << gaps->size()
                             << " gaps, usable " << usable);
  }
  c = cli(dir.path(), {"sync", f.string(), "--json"});
  REQUIRE_MESSAGE(c.rc == 0, c.err);
  const auto j = nlohmann::json::parse(c.out);
  CHECK(j["method"].get<std::string>().find("logic") != std::string::npos);
  auto stored = meltrig::sync::read_stored(f);
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  const std::vector<double> err = map_errors_ns(f, **stored);
  MESSAGE("PPK2 logic map error at the tokens: p50 ", quantile(err, 0.5), " ns, max ",
          quantile(err, 1.0), " ns over ", err.size(), " tokens; method ",
          j["method"].get<std::string>());
  REQUIRE(err.size() == 60);
  auto truth = ds::read_group(f, "truth");
  REQUIRE(truth.ok());
  REQUIRE(truth->has_value());
  const double rate = (*truth)->num("monitor_actual_rate_hz").value();
  const auto& t1 = std::get<std::vector<double>>((*truth)->group("tokens")->column("t1_s")->values);
  std::vector<double> before_gap;
  for (std::size_t i = 0; i < t1.size(); ++i)
    if (t1[i] * rate < static_cast<double>(usable)) before_gap.push_back(err[i]);
  if (usable == rows) CHECK(before_gap.size() == 60);  // no loss: every token
  if (before_gap.size() < 6) {
    MESSAGE("only " << before_gap.size() << " tokens before the first loss: map not checked");
    return;
  }
  CHECK(quantile(before_gap, 1.0) <= 10'000.0);  // one sample at 100 kS/s
}

TEST_CASE(
    "sync file: meltrig analyze runs the sync, stores /sync and /analysis, energy per "
    "token against the truth") {
  TempDir dir;
  const fs::path f = copy_of(dir, "phone.h5");
  Cli c = cli(dir.path(), {"analyze", f.string(), "--json"});
  REQUIRE_MESSAGE(c.rc == 0, c.err);
  const auto j = nlohmann::json::parse(c.out);
  CHECK(j["sync"]["method"] != "provisional-identity");
  auto stored = meltrig::sync::read_stored(f);
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  CHECK((*stored)->to_json() == j["sync"]);
  auto an = ds::read_group(f, "analysis");
  REQUIRE(an.ok());
  REQUIRE(an->has_value());
  CHECK(nlohmann::json::parse((*an)->str("json").value()) == j);
  const auto* energy = (*an)->group("tokens")->column("energy_j");
  REQUIRE(energy != nullptr);
  CHECK(std::get<std::vector<double>>(energy->values).size() == j["tokens"].size());
  // per-token energy against /truth (read here, never by the estimates)
  auto truth = ds::read_group(f, "truth");
  REQUIRE(truth.ok());
  const auto& te =
      std::get<std::vector<double>>((*truth)->group("tokens")->column("supply_energy_j")->values);
  REQUIRE(te.size() == j["tokens"].size());
  std::vector<double> err;
  for (std::size_t i = 0; i < te.size(); ++i)
    err.push_back(100.0 * std::abs(j["tokens"][i]["energy_j"].get<double>() - te[i]) / te[i]);
  MESSAGE("per-token energy error through the file's map: median ", quantile(err, 0.5), "%, p99 ",
          quantile(err, 0.99), "%, max ", quantile(err, 1.0), "%");
  CHECK(quantile(err, 0.5) <= 0.5);
  CHECK(quantile(err, 0.99) <= 2.0);
  // analysing again uses the stored map and replaces /analysis
  c = cli(dir.path(), {"analyze", f.string(), "--truth"});
  CHECK_MESSAGE(c.rc == 0, c.err);
  CHECK(c.out.find("against /truth: 160 tokens matched") != std::string::npos);
}

TEST_CASE("sync file: bad input gets a message naming the file, exit 1, the file unchanged") {
  TempDir dir;
  auto refused = [&](const fs::path& f, const std::vector<std::string>& cmd,
                     const std::string& message) {
    const std::string before = meltrig::test::read_file(f);
    std::vector<std::string> args = cmd;
    args.push_back(f.string());
    Cli c = cli(dir.path(), args);
    CHECK(c.rc == 1);
    CHECK_MESSAGE(c.err.find(f.string()) != std::string::npos, c.err);
    CHECK_MESSAGE(c.err.find(message) != std::string::npos, c.err);
    CHECK(meltrig::test::read_file(f) == before);
  };
  SUBCASE("truncated") {
    const fs::path f = copy_of(dir, "truncated.h5");
    fs::resize_file(f, fs::file_size(f) / 2);
    refused(f, {"analyze"}, "cannot open");
    refused(f, {"sync"}, "cannot open");
  }
  SUBCASE("crashed capture (state running)") {
    const fs::path f = copy_of(dir, "crashed.h5");
    set_state_running(f);
    refused(f, {"analyze"}, "capture state 'running'");
    refused(f, {"sync"}, "capture state 'running'");
  }
  SUBCASE("markers on an unknown clock") {
    const fs::path f = copy_of(dir, "tai.h5");
    set_marker_clock(f, "tai");
    refused(f, {"analyze"}, "/markers/runner: markers on an unknown clock 'tai'");
    refused(f, {"sync", "--json"}, "unknown clock 'tai'");
  }
  SUBCASE("no markers") {
    const fs::path f = dir / "demo.h5";
    REQUIRE(cli(dir.path(), {"demo", "--duration", "1", "-o", f.string()}).rc == 0);
    refused(f, {"analyze"}, "no markers");
    refused(f, {"sync"}, "no markers");
  }
  SUBCASE("no usable evidence: each missing source named") {
    // A flat trace (nothing for pulses or the workload to match), markers with no sync pulses,
    // no clock triples, no probes.
    const fs::path f = dir / "flat.h5";
    ds::CaptureLayout layout;
    layout.sample_rate_hz = 1000;
    layout.channels = {{"current", "A", ds::SampleType::f32, ""},
                       {"voltage", "V", ds::SampleType::f32, ""}};
    auto w = ds::CaptureWriter::create(f, layout);
    REQUIRE(w.ok());
    const std::vector<float> cur(20000, 0.5f), volt(20000, 4.0f);
    const std::array<ds::ChannelData, 2> ch{std::span<const float>(cur),
                                            std::span<const float>(volt)};
    REQUIRE(w->append(ds::SampleBlock{ch}).ok());
    REQUIRE(w->finish(ds::CaptureState::complete, "done").ok());
    meltrig::targets::MarkerLog log;
    log.source = "flat.markers";
    using K = meltrig::targets::MarkerKind;
    auto event = [](std::int64_t t, K k, std::int64_t index) {
      meltrig::targets::MarkerEvent e;
      e.t_ns = t;
      e.kind = k;
      e.index = index;
      return e;
    };
    log.events = {event(1'000'000'000, K::prefill_start, 8),
                  event(2'000'000'000, K::prefill_end, 8)};
    for (int i = 0; i < 10; ++i)
      log.events.push_back(event(2'100'000'000 + 100'000'000LL * i, K::token, i));
    REQUIRE(ds::write_markers(f, "runner", log).ok());
    refused(f, {"sync"}, "no usable evidence ties the device clock to the monitor");
    refused(f, {"analyze"},
            "sync pulses: no sync.start markers; logic inputs: not recorded; relay "
            "edges: none logged by the device; workload: activity not matched");
  }
}

TEST_CASE("sync file: a gap inside a token is analysed and flagged, not fatal") {
  TempDir dir;
  const fs::path f = copy_of(dir, "gap.h5");
  // the stored analysis of the intact copy tells where token 80 is
  Cli c = cli(dir.path(), {"analyze", f.string(), "--json"});
  REQUIRE_MESSAGE(c.rc == 0, c.err);
  const auto intact = nlohmann::json::parse(c.out);
  const auto& tok = intact["tokens"][80];
  const double mid = 0.5 * (tok["start_s"].get<double>() + tok["end_s"].get<double>());
  punch_gap(f, static_cast<std::uint64_t>(mid * 5000.0) - 5, 10);
  c = cli(dir.path(), {"analyze", f.string(), "--json"});
  REQUIRE_MESSAGE(c.rc == 0, c.err);
  CHECK_MESSAGE(c.err.find(f.string() + ": warning: 1 token(s) touch a gap") != std::string::npos,
                c.err);
  CHECK(c.err.find("token 80") != std::string::npos);
  const auto j = nlohmann::json::parse(c.out);
  CHECK(j["tokens"][80]["touches_gap"] == true);
  CHECK(j["tokens"][79]["touches_gap"] == false);
  auto an = ds::read_group(f, "analysis");
  REQUIRE(an.ok());
  const auto& miss = std::get<std::vector<std::int64_t>>(
      (*an)->group("tokens")->column("missing_samples")->values);
  CHECK(miss[80] == 10);
}

TEST_CASE("sync file: replace_group swaps a whole group and reads it back") {
  TempDir dir;
  const fs::path f = dir / "g.h5";
  ds::CaptureLayout layout;
  layout.sample_rate_hz = 100;
  layout.channels = {{"current", "A", ds::SampleType::f32, ""}};
  auto w = ds::CaptureWriter::create(f, layout);
  REQUIRE(w.ok());
  REQUIRE(w->finish(ds::CaptureState::complete, "done").ok());
  ds::GroupData g{"derived",
                  {{"version", std::int64_t{1}}, {"method", std::string("pulse")}, {"x", 0.5}},
                  {{"a", std::vector<std::int64_t>{1, 2, 3}, "ns"},
                   {"b", std::vector<double>{0.25}, ""},
                   {"c", std::vector<std::string>{"p", "q"}, ""}},
                  {{"sub", {}, {{"e", std::vector<std::int64_t>{}, ""}}, {}}}};
  REQUIRE(ds::replace_group(f, g).ok());
  g.attrs[1].value = std::string("logic");
  REQUIRE(ds::replace_group(f, g).ok());
  auto r = ds::read_group(f, "derived");
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  CHECK((*r)->str("method") == "logic");
  CHECK((*r)->i64("version") == 1);
  CHECK((*r)->num("x") == 0.5);
  CHECK(std::get<std::vector<std::int64_t>>((*r)->column("a")->values) ==
        std::vector<std::int64_t>{1, 2, 3});
  CHECK((*r)->column("a")->unit == "ns");
  CHECK(std::get<std::vector<std::string>>((*r)->column("c")->values) ==
        std::vector<std::string>{"p", "q"});
  REQUIRE((*r)->group("sub") != nullptr);
  CHECK(std::get<std::vector<std::int64_t>>((*r)->group("sub")->column("e")->values).empty());
  auto none = ds::read_group(f, ".derived.tmp");
  REQUIRE(none.ok());
  CHECK(!none->has_value());
}

TEST_CASE("sync file: logic edges are scanned up to the capture's first gap and paired exactly") {
  // 20 s at 1 kHz: logic D0 toggles every 500 samples, the runner logs each toggle (device
  // monotonic = 7 s + 1 ms per sample); 300 rows are lost at sample 10,000 (they read 0). A
  // toggle lost inside a gap would shift the in-order pairing of every later edge, so only the
  // 19 edges before the gap are used, and they map the device clock exactly.
  TempDir dir;
  const fs::path f = dir / "logic.h5";
  ds::CaptureLayout layout;
  layout.sample_rate_hz = 1000;
  layout.channels = {{"current", "A", ds::SampleType::f32, ""},
                     {"logic", "", ds::SampleType::u8, ""}};
  auto w = ds::CaptureWriter::create(f, layout);
  REQUIRE(w.ok());
  auto append = [&](std::uint64_t from, std::uint64_t to) {
    std::vector<float> cur(to - from, 0.5f);
    std::vector<std::uint8_t> logic(to - from);
    for (std::uint64_t i = from; i < to; ++i)
      logic[i - from] = static_cast<std::uint8_t>((i / 500) % 2);
    const std::array<ds::ChannelData, 2> ch{std::span<const float>(cur),
                                            std::span<const std::uint8_t>(logic)};
    REQUIRE(w->append(ds::SampleBlock{ch}).ok());
  };
  append(0, 10'000);
  REQUIRE(w->append_missing(300, ds::GapKind::missing).ok());
  append(10'300, 20'000);
  REQUIRE(w->finish(ds::CaptureState::complete, "done").ok());
  meltrig::targets::MarkerLog log;
  log.source = "logic.markers";
  for (std::int64_t k = 1; k < 40; ++k) {
    meltrig::targets::MarkerEvent e;
    e.t_ns = 7'000'000'000 + k * 500'000'000;
    e.kind = meltrig::targets::MarkerKind::user;
    e.label = "gpio";
    e.value = 0;
    log.events.push_back(e);
  }
  REQUIRE(ds::write_markers(f, "runner", log).ok());

  auto ev = meltrig::sync::gather_evidence(f);
  REQUIRE(ev.ok());
  REQUIRE(ev->inputs.logic.has_value());
  REQUIRE(ev->inputs.logic->edges.has_value());
  const auto& edges = *ev->inputs.logic->edges;
  REQUIRE(edges.size() == 19);
  for (std::size_t k = 0; k < edges.size(); ++k) {
    CHECK(edges[k].index == static_cast<std::int64_t>(500 * (k + 1)));
    CHECK(edges[k].level == (k % 2 == 0));
  }
  bool noted = false;
  for (const std::string& x : ev->found)
    noted = noted || x.find("first gap (sample 10000)") != std::string::npos;
  CHECK(noted);
  auto s = meltrig::sync::sync_file(f);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  CHECK(s->method == "logic");
  // toggle k (device 7 s + k 0.5 s) is the edge at sample 500 k: monitor 0.5 k s, less half a
  // sample (the change happened within the sample interval before the edge)
  for (std::int64_t k = 1; k < 20; ++k) {
    auto m = s->monitor_seconds("monotonic", 7'000'000'000 + k * 500'000'000);
    REQUIRE(m.has_value());
    CHECK(m->first == doctest::Approx(0.5 * static_cast<double>(k) - 0.0005).epsilon(1e-9));
  }
}
