// Several rig hosts through Slurm (docs/lab.md): a one-node cluster on this machine (munged,
// slurmctld, slurmd from scripts/slurm-local.sh, two "meltrig_dev" resources), the demo plan
// submitted as a job array of two shards (scripts/slurm-sweep.sh: sbatch --wait, then
// `meltrig catalog merge`), checked against a single-host run of the same plan and seed.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

using meltrig::test::Process;
using meltrig::test::read_file;
using meltrig::test::TempDir;

namespace {

const std::string kSource = MELTRIG_SOURCE_DIR;

struct Row {
  std::string run_id, device, workload, state, file;
  int tokens = 0;
  double j_per_token = 0.0;
};

/// The catalog's rows in order (plain CSV: the columns before `note` hold no commas).
std::vector<Row> read_catalog(const std::filesystem::path& path) {
  std::istringstream in(read_file(path));
  std::string line;
  std::getline(in, line);
  std::map<std::string, std::size_t> col;
  {
    std::istringstream h(line);
    std::string name;
    for (std::size_t i = 0; std::getline(h, name, ','); ++i)
      col[name] = i;
  }
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::istringstream l(line);
    std::string cell;
    while (std::getline(l, cell, ','))
      f.push_back(cell);
    if (f.size() <= col["j_per_token"]) continue;
    Row r;
    r.run_id = f[col["run_id"]];
    r.device = f[col["device"]];
    r.workload = f[col["workload"]];
    r.state = f[col["state"]];
    r.file = f[col["file"]];
    r.tokens = std::stoi(f[col["tokens"]]);
    r.j_per_token = std::stod(f[col["j_per_token"]]);
    rows.push_back(r);
  }
  return rows;
}

/// Per configuration (device, workload): the range of J/token over its repetitions.
std::map<std::string, double> spread(const std::vector<Row>& rows) {
  std::map<std::string, std::pair<double, double>> mm;
  for (const Row& r : rows) {
    auto [it, fresh] = mm.try_emplace(r.device + "/" + r.workload, r.j_per_token, r.j_per_token);
    it->second.first = std::min(it->second.first, r.j_per_token);
    it->second.second = std::max(it->second.second, r.j_per_token);
  }
  std::map<std::string, double> out;
  for (const auto& [k, v] : mm)
    out[k] = v.second - v.first;
  return out;
}

int run_script(const TempDir& dir, const std::vector<std::string>& argv, const std::string& tag,
               std::string* err, int minutes = 6) {
  Process p(argv, dir.path(), tag);
  const int rc = p.wait(std::chrono::seconds(60 * minutes));
  *err = p.out() + p.err();
  return rc;
}

}  // namespace

TEST_CASE("slurm: the demo plan as two shards through sbatch equals a single-host run" *
          doctest::test_suite("slow")) {
  TempDir dir;
  const std::string plan = kSource + "/examples/sim-bench.toml";
  std::string log;

  // The single-host run.
  REQUIRE_MESSAGE(run_script(dir, {MELTRIG_CLI_PATH, "sweep", plan, "-o", (dir / "one").string()},
                             "one", &log) == 0,
                  log);
  const auto one = read_catalog(dir / "one" / "catalog.csv");
  REQUIRE(one.size() == 12);

  // The cluster: private key, socket and ports (a port per test process, so runs do not collide).
  const std::string cluster = (dir / "cluster").string();
  const std::string port = std::to_string(20000 + 2 * (::getpid() % 5000));
  REQUIRE_MESSAGE(
      run_script(dir,
                 {"/bin/bash", kSource + "/scripts/slurm-local.sh", "start", cluster, "2", port},
                 "start", &log, 1) == 0,
      log);
  ::setenv("SLURM_CONF", (dir / "cluster" / "slurm.conf").c_str(), 1);
  ::setenv("MELTRIG", MELTRIG_CLI_PATH, 1);
  const int rc = run_script(
      dir,
      {"/bin/bash", kSource + "/scripts/slurm-sweep.sh", plan, (dir / "sharded").string(), "2"},
      "sharded", &log);
  std::string stop_log;
  run_script(dir, {"/bin/bash", kSource + "/scripts/slurm-local.sh", "stop", cluster}, "stop",
             &stop_log, 1);
  ::unsetenv("SLURM_CONF");
  REQUIRE_MESSAGE(rc == 0, log);

  // Both shards ran as array tasks, each with its own journal and catalog.
  CHECK(std::filesystem::exists(dir / "sharded" / "shard-1-of-2" / "catalog.csv"));
  CHECK(std::filesystem::exists(dir / "sharded" / "shard-2-of-2" / "catalog.csv"));
  const auto merged = read_catalog(dir / "sharded" / "catalog.csv");
  REQUIRE(merged.size() == one.size());
  const auto tol = spread(one);
  for (std::size_t i = 0; i < one.size(); ++i) {
    CAPTURE(one[i].run_id);
    CHECK(merged[i].run_id == one[i].run_id);  // the same runs in the same order
    CHECK(merged[i].state == "complete");
    CHECK(one[i].state == "complete");
    CHECK(merged[i].tokens == one[i].tokens);
    CHECK(std::filesystem::exists(dir / "sharded" / merged[i].file));  // paths rebased
    // Within the run-to-run spread of the single-host run's repetitions (or 2%).
    const double allowed =
        std::max(tol.at(one[i].device + "/" + one[i].workload), 0.02 * one[i].j_per_token);
    CHECK(std::abs(merged[i].j_per_token - one[i].j_per_token) <= allowed);
  }
  MESSAGE("single-host and sharded catalogs: " << one.size() << " runs each");
}
