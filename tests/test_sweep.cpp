// Sweep plans, the journal and catalog, and `meltrig sweep` end to end on the simulated bench:
// bad plans are rejected with the key and line before any instrument sees a byte; a sweep
// interrupted (SIGINT, SIGKILL) at random points and resumed lists the same runs as an
// uninterrupted one, each complete exactly once, with the same metrics within the run-to-run
// spread; shard catalogs merge into the single-host catalog.
#include <doctest/doctest.h>
#include <signal.h>

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "meltrig/fixtures/lvpm_emulator.hpp"
#include "meltrig/fixtures/relay_emulators.hpp"
#include "meltrig/rig/journal.hpp"
#include "meltrig/rig/plan.hpp"
#include "meltrig/rig/sweep.hpp"
#include "test_support.hpp"

namespace {

using namespace meltrig;
using test::TempDir;

/// A small valid plan; `{monitor}`, `{relay}`, `{hub}` and `{target}` are replaced.
std::string base_plan(const std::string& scenario_dir) {
  return R"([sweep]
name = "tiny"
seed = 5
repetitions = 2
order = "interleaved"
shuffle = true
sim_speed = 10.0

[rig.monitors.lvpm]
spec = "{monitor}"

[rig.relays.power]
spec = "{relay}"
routes = { phone_a = 1, phone_b = 2 }

[rig.hubs.usb]
spec = "{hub}"
ports = { phone_a = 1, phone_b = 2 }

[devices.phone_a]
target = "{target}"
scenario = ")" +
         scenario_dir + R"(/sweep_phone_a.toml"
supply_v = 4.1

[devices.phone_b]
target = "{target}"
scenario = ")" +
         scenario_dir + R"(/sweep_phone_b.toml"
supply_v = 4.0

[workloads.small]
model = "tiny-model"
argv = ["true"]
sim = { prompt_tokens = 16, output_tokens = 16 }

[baseline]
window_s = 1.5
guard_s = 0.3

[usb_cut]
enabled = true
settle_s = 0.2
)";
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

std::string sim_plan() {
  std::string p = base_plan(std::string(MELTRIG_SOURCE_DIR) + "/examples/scenarios");
  p = replace_all(p, "{monitor}", "lvpm:emulated");
  p = replace_all(p, "{relay}", "lcus:emulated:channels=4");
  p = replace_all(p, "{hub}", "lcus:emulated:channels=4");
  return replace_all(p, "{target}", "sim");
}

/// The 1-based line of the first occurrence of `text` in `s`.
int line_of(const std::string& s, const std::string& text) {
  const auto at = s.find(text);
  REQUIRE(at != std::string::npos);
  return 1 + static_cast<int>(std::count(s.begin(), s.begin() + static_cast<long>(at), '\n'));
}

struct BadPlan {
  std::string what;
  std::string text;
  std::string expect;  ///< "plan.toml:LINE: KEY"
};

/// The four kinds of mistake of the issue, each with the key and line it must be named by.
std::vector<BadPlan> bad_plans(const std::string& good) {
  std::vector<BadPlan> v;
  {
    std::string t = replace_all(good, "repetitions = 2", "repetitons = 2");
    v.push_back({"typo in a key", t,
                 "plan.toml:" + std::to_string(line_of(t, "repetitons")) +
                     ": sweep.repetitons: unknown key"});
  }
  {
    std::string t = replace_all(good, "supply_v = 4.0", "supply_v = \"4.0\"");
    v.push_back({"wrong type", t,
                 "plan.toml:" + std::to_string(line_of(t, "supply_v = \"4.0\"")) +
                     ": devices.phone_b.supply_v: expected a number"});
  }
  {
    std::string t = replace_all(good, "ports = { phone_a = 1, phone_b = 2 }",
                                "ports = { phone_a = 1, phone_c = 2 }");
    v.push_back({"unknown device", t,
                 "plan.toml:" + std::to_string(line_of(t, "phone_c")) +
                     ": rig.hubs.usb.ports.phone_c: unknown device"});
  }
  {
    std::string t = replace_all(good, "routes = { phone_a = 1, phone_b = 2 }",
                                "routes = { phone_a = 1, phone_b = 1 }");
    v.push_back({"channel routed twice", t,
                 "plan.toml:" + std::to_string(line_of(t, "phone_b = 1")) +
                     ": rig.relays.power.routes.phone_b: channel 1 is already routed to phone_a"});
  }
  return v;
}

}  // namespace

TEST_CASE("sweep plan: a valid plan parses, routes and orders its runs") {
  auto plan = rig::parse_plan(sim_plan(), "plan.toml", ".");
  REQUIRE_MESSAGE(plan.ok(), (plan.ok() ? "" : plan.error().describe()));
  CHECK(plan->simulated());
  REQUIRE(plan->devices.size() == 2);
  CHECK(plan->devices[0].relay == "power");
  CHECK(plan->devices[1].relay_channel == 2);
  CHECK(plan->devices[1].hub_port == 2);
  CHECK(plan->usb_cut.enabled);
  CHECK(plan->baseline.window_s == 1.5);
  const auto runs = rig::expand_runs(*plan, 5, {});
  REQUIRE(runs.size() == 4);
  // Interleaved: repetition 0 of every configuration before any repetition 1.
  CHECK(runs[0].repetition == 0);
  CHECK(runs[1].repetition == 0);
  CHECK(runs[2].repetition == 1);
  std::set<std::string> ids;
  for (const auto& r : runs)
    ids.insert(r.id);
  CHECK(ids.size() == 4);
  // Shards split by device and keep the whole sweep's order numbers; together they are the whole.
  const auto s1 = rig::expand_runs(*plan, 5, {1, 2});
  const auto s2 = rig::expand_runs(*plan, 5, {2, 2});
  CHECK(s1.size() == 2);
  CHECK(s2.size() == 2);
  for (const auto& r : s1)
    CHECK(r.device == "phone_a");
  CHECK(rig::expand_runs(*plan, 5, {}).front().seed == runs.front().seed);
  CHECK(rig::expand_runs(*plan, 6, {}).front().seed != runs.front().seed);
}

TEST_CASE("sweep plan: each mistake is named by its key and line") {
  for (const BadPlan& b : bad_plans(sim_plan())) {
    CAPTURE(b.what);
    auto plan = rig::parse_plan(b.text, "plan.toml", ".");
    REQUIRE_FALSE(plan.ok());
    CHECK(plan.error().message.find(b.expect) == 0);
    CAPTURE(plan.error().message);
  }
  // A syntax error carries the line too.
  auto bad = rig::parse_plan("[sweep]\nseed = = 3\n", "plan.toml", ".");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.rfind("plan.toml:2:", 0) == 0);
}

TEST_CASE("sweep: a bad plan is rejected before any relay or monitor sees a byte") {
  TempDir dir;
  // Real-bench specs pointing at emulators on ptys: a sweep that went ahead would talk to them.
  fixtures::RelayEmulatorConfig rc;
  auto relay = fixtures::LcusEmulator::start(rc, dir / "relay");
  auto hub = fixtures::LcusEmulator::start(rc, dir / "hub");
  auto lvpm = fixtures::LvpmEmulator::start({}, dir / "lvpm");
  REQUIRE(relay.ok());
  REQUIRE(hub.ok());
  REQUIRE(lvpm.ok());
  std::string good = base_plan(std::string(MELTRIG_SOURCE_DIR) + "/examples/scenarios");
  good = replace_all(good, "{monitor}", "lvpm:" + (dir / "lvpm").string());
  good = replace_all(good, "{relay}", "lcus:" + (dir / "relay").string() + ":channels=4");
  good = replace_all(good, "{hub}", "lcus:" + (dir / "hub").string() + ":channels=4");
  good = replace_all(good, "{target}", "local");
  // A real device has no scenario.
  std::string text;
  {
    std::istringstream in(good);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("scenario", 0) != 0) text += line + "\n";
  }
  REQUIRE(rig::parse_plan(text, "plan.toml", ".").ok());
  for (const BadPlan& b : bad_plans(text)) {
    CAPTURE(b.what);
    const auto file = dir / "plan.toml";
    std::ofstream(file) << b.text;
    test::Process p({test::cli(), "sweep", file.string(), "-o", (dir / "out").string()}, dir.path(),
                    "sweep");
    CHECK(p.wait() == 2);
    const std::string err = p.err();
    CAPTURE(err);
    CHECK(err.find(dir.path().string() + "/" + b.expect) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir / "out"));
  }
  CHECK((*relay)->counters().bytes_received == 0);
  CHECK((*hub)->counters().bytes_received == 0);
  CHECK((*lvpm)->truth().commands == 0);
  CHECK((*relay)->log().size() == 1);  // the power-on state only
}

TEST_CASE("sweep journal: written atomically and read back, catalog CSV round trip and merge") {
  TempDir dir;
  rig::Journal j{"abc", 7, "1/1", {}};
  for (int i = 0; i < 3; ++i) {
    rig::JournalEntry e;
    e.run.order = static_cast<std::size_t>(2 - i);
    e.run.id = "d.w.r" + std::to_string(i);
    e.run.device = "d";
    e.run.workload = "w";
    e.run.model = "m, \"quoted\"";
    e.run.repetition = i;
    e.state = i == 1 ? rig::RunState::pending : rig::RunState::complete;
    e.metrics.j_per_token = 0.25 + i;
    e.metrics.tok_s = std::nan("");
    e.file = "runs/" + e.run.id + ".h5";
    j.entries.push_back(e);
  }
  REQUIRE(j.save(dir / "journal.json").ok());
  CHECK_FALSE(std::filesystem::exists(dir / "journal.json.tmp"));
  auto back = rig::Journal::load(dir / "journal.json");
  REQUIRE(back.ok());
  REQUIRE(back->entries.size() == 3);
  CHECK(back->entries[2].metrics.j_per_token == 2.25);
  CHECK(std::isnan(back->entries[0].metrics.tok_s));
  CHECK(back->entries[1].state == rig::RunState::pending);
  auto t = rig::parse_csv(rig::catalog_csv(j.entries), "c.csv");
  REQUIRE(t.ok());
  REQUIRE(t->rows.size() == 3);
  CHECK(t->rows[0][1] == "d.w.r2");  // by order
  CHECK(t->rows[0][4] == "m, \"quoted\"");
  // Two shards: the pending run of one is complete in the other.
  std::vector<rig::JournalEntry> a = j.entries, b = j.entries;
  b[1].state = rig::RunState::complete;
  b.erase(b.begin());
  a.erase(a.begin() + 2);
  REQUIRE(rig::write_atomically(dir / "a.csv", rig::catalog_csv(a)).ok());
  REQUIRE(rig::write_atomically(dir / "b.csv", rig::catalog_csv(b)).ok());
  auto m = rig::merge_catalogs({dir / "a.csv", dir / "b.csv"});
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : m.error().describe()));
  CHECK(m.value().rows.size() == 3);
  for (const auto& row : m.value().rows)
    CHECK(row[7] == "complete");
  // The same complete run in both: an error naming both files.
  auto twice = rig::merge_catalogs({dir / "a.csv", dir / "a.csv"});
  REQUIRE_FALSE(twice.ok());
  CHECK(twice.error().message.find("a.csv and") != std::string::npos);
}

namespace {

/// The complete runs of a catalog: run id -> row (column name -> cell).
using Row = std::map<std::string, std::string>;
std::map<std::string, Row> catalog_rows(const std::filesystem::path& file) {
  auto t = rig::parse_csv(test::read_file(file), file.string());
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().describe()));
  std::map<std::string, Row> out;
  for (const auto& cells : t->rows) {
    Row r;
    for (std::size_t i = 0; i < cells.size(); ++i)
      r[t->header[i]] = cells[i];
    CHECK_MESSAGE(!out.contains(r["run_id"]), "run listed twice: " << r["run_id"]);
    out[r["run_id"]] = r;
  }
  return out;
}

double num(const Row& r, const char* col) {
  return std::stod(r.at(col));
}

/// `meltrig sweep` on `plan` into `out`; returns its exit code.
int sweep(const std::filesystem::path& plan, const std::filesystem::path& out, const TempDir& dir,
          const std::string& tag, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{test::cli(), "sweep", plan.string(), "-o", out.string(), "-q"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  test::Process p(argv, dir.path(), tag);
  const int rc = p.wait(std::chrono::seconds(300));
  INFO(tag << " stdout: " << p.out() << " stderr: " << p.err());
  return rc;
}

/// Completed runs in a journal file (0 while it does not exist).
std::size_t complete_in_journal(const std::filesystem::path& journal) {
  auto j = rig::Journal::load(journal);
  if (!j) return 0;
  return static_cast<std::size_t>(std::count_if(j->entries.begin(), j->entries.end(), [](auto& e) {
    return e.state == rig::RunState::complete;
  }));
}

/// Starts a sweep, signals it at a point drawn from `seed` (after k of its runs are complete,
/// then a random delay), then resumes it until it completes; returns how many interruptions hit.
int interrupt_and_resume(const std::filesystem::path& plan, const std::filesystem::path& out,
                         const TempDir& dir, std::uint64_t seed, int sig, int times) {
  std::mt19937_64 rng(seed);
  int hits = 0;
  for (int attempt = 0; attempt < times; ++attempt) {
    const std::size_t after = rng() % 3;  // runs complete before the signal: 0..2 of 4
    const auto delay = std::chrono::milliseconds(rng() % 800);
    test::Process p({test::cli(), "sweep", plan.string(), "-o", out.string(), "-q"}, dir.path(),
                    "interrupted");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (complete_in_journal(out / "journal.json") < after &&
           std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(delay);
    p.signal(sig);
    const int rc = p.wait(std::chrono::seconds(120));
    if (rc != 0) ++hits;
    INFO("interrupted sweep: " << p.out() << p.err());
    CHECK(rc != -1);
  }
  CHECK(sweep(plan, out, dir, "resume") == 0);
  return hits;
}

/// Each complete exactly once, the same runs as `ref`, metrics within `tolerance` x the spread.
void check_same_runs(const std::map<std::string, Row>& ref, const std::map<std::string, Row>& got,
                     double tolerance_j) {
  REQUIRE(got.size() == ref.size());
  for (const auto& [id, r] : ref) {
    CAPTURE(id);
    REQUIRE(got.contains(id));
    const Row& g = got.at(id);
    CHECK(g.at("state") == "complete");
    CHECK(g.at("seed") == r.at("seed"));
    CHECK(g.at("order") == r.at("order"));
    CHECK(g.at("tokens") == r.at("tokens"));
    CHECK(std::abs(num(g, "j_per_token") - num(r, "j_per_token")) <= tolerance_j);
  }
}

/// The run-to-run spread of J/token: the largest range over repetitions of one configuration.
double spread(const std::map<std::string, Row>& runs) {
  std::map<std::string, std::vector<double>> by_config;
  for (const auto& [id, r] : runs)
    by_config[r.at("device") + "/" + r.at("workload")].push_back(num(r, "j_per_token"));
  double s = 0;
  for (const auto& [c, v] : by_config)
    s = std::max(s, *std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end()));
  return s;
}

void interrupted_sweeps(const std::vector<std::uint64_t>& seeds, const std::vector<int>& signals,
                        int times) {
  TempDir dir;
  const auto plan = dir / "plan.toml";
  std::ofstream(plan) << sim_plan();
  REQUIRE(sweep(plan, dir / "ref", dir, "ref") == 0);
  const auto ref = catalog_rows(dir / "ref" / "catalog.csv");
  REQUIRE(ref.size() == 4);
  const double s = spread(ref);
  MESSAGE("run-to-run spread of J/token (range over repetitions): " << s);
  int hits = 0;
  for (std::uint64_t seed : seeds) {
    for (int sig : signals) {
      CAPTURE(seed);
      CAPTURE(sig);
      const auto out = dir / ("out-" + std::to_string(seed) + "-" + std::to_string(sig));
      hits += interrupt_and_resume(plan, out, dir, seed, sig, times);
      check_same_runs(ref, catalog_rows(out / "catalog.csv"), s);
      // Every complete run's dataset is where the catalog says; partial data only in partial/.
      for (const auto& [id, r] : catalog_rows(out / "catalog.csv"))
        CHECK(std::filesystem::exists(out / r.at("file")));
      std::size_t datasets = 0;
      for (const auto& e : std::filesystem::directory_iterator(out / "runs"))
        datasets += e.path().extension() == ".h5" ? 1 : 0;
      CHECK(datasets == ref.size());
    }
  }
  CHECK(hits > 0);  // at least some signals landed while the sweep ran
}

}  // namespace

TEST_CASE("sweep: interrupted by Ctrl-C, resumed, the same runs complete once") {
  interrupted_sweeps({11}, {SIGINT}, 1);
}

TEST_CASE("sweep: killed (SIGKILL), resumed, the same runs complete once") {
  interrupted_sweeps({12}, {SIGKILL}, 1);
}

TEST_CASE("sweep: interrupted twice at random points, several seeds" *
          doctest::test_suite("slow")) {
  interrupted_sweeps({21, 22, 23}, {SIGINT, SIGKILL}, 2);
}

TEST_CASE("sweep: two shards merged equal the single-host catalog") {
  TempDir dir;
  const auto plan = dir / "plan.toml";
  std::ofstream(plan) << sim_plan();
  REQUIRE(sweep(plan, dir / "one", dir, "one") == 0);
  REQUIRE(sweep(plan, dir / "two", dir, "s1", {"--shard", "1/2"}) == 0);
  REQUIRE(sweep(plan, dir / "two", dir, "s2", {"--shard", "2/2"}) == 0);
  test::Process m(
      {test::cli(), "catalog", "merge", (dir / "two/shard-1-of-2/catalog.csv").string(),
       (dir / "two/shard-2-of-2/catalog.csv").string(), "-o", (dir / "all.csv").string()},
      dir.path(), "merge");
  REQUIRE(m.wait() == 0);
  const auto one = catalog_rows(dir / "one" / "catalog.csv");
  check_same_runs(one, catalog_rows(dir / "all.csv"), spread(one));
}
