// meltrig analyze end to end: a simulated capture (meltrig sim) analysed from the file with the
// file's own clock map (meltrig sync, run by analyze), its JSON against the world's truth, and
// files it must refuse with a message and exit 1 (no markers), leaving them unchanged.
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "meltrig/fixtures/sim_world.hpp"
#include "test_support.hpp"

using meltrig::test::Process;
using meltrig::test::TempDir;

namespace {

const std::filesystem::path kPhone =
    std::filesystem::path(MELTRIG_SOURCE_DIR) / "examples/scenarios/phone_llamacpp.toml";

int run_cli(const TempDir& dir, const std::vector<std::string>& args, std::string* out,
            std::string* err) {
  std::vector<std::string> argv = {meltrig::test::cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir.path(), "cli");
  int rc = p.wait(std::chrono::seconds(300));
  *out = p.out();
  *err = p.err();
  return rc;
}

}  // namespace

TEST_CASE("analysis cli: meltrig analyze --json on a simulated capture, and a file it refuses") {
  TempDir dir;
  std::string out, err;
  const auto h5 = dir / "phone.h5";
  const int sim_rc =
      run_cli(dir, {"sim", kPhone.string(), "-o", h5.string(), "--speed", "10", "-q"}, &out, &err);
  REQUIRE_MESSAGE(sim_rc == 0, (out + err));
  REQUIRE_MESSAGE(run_cli(dir, {"analyze", h5.string(), "--json"}, &out, &err) == 0, err);
  auto j = nlohmann::json::parse(out);
  auto scn = meltrig::fixtures::sim::load_scenario(kPhone);
  REQUIRE(scn.ok());
  auto world = meltrig::fixtures::sim::World::build(*scn, scn->run.seed);
  REQUIRE(world.ok());
  const auto& truth = world->truth();
  CHECK(j["tokens"].size() == truth.tokens.size());
  CHECK(j["sync"]["method"].get<std::string>().find("pulse") != std::string::npos);
  double decode_truth = 0.0;
  for (const auto& p : truth.phases)
    if (p.phase == meltrig::fixtures::sim::Phase::decode) decode_truth += p.supply_energy_j;
  const double decode = j["phases"]["decode"]["energy_j"].get<double>();
  CHECK(decode == doctest::Approx(decode_truth).epsilon(0.02));
  CHECK(j["baseline_w"].get<double>() == doctest::Approx(scn->device.idle_w).epsilon(0.05));
  CHECK(j["melt"]["melt_j_per_token"].get<double>() >
        j["melt"]["decode_j_per_token"].get<double>());
  // The readable table names the file and the repetition.
  REQUIRE(run_cli(dir, {"analyze", h5.string()}, &out, &err) == 0);
  CHECK(out.find("phone.h5: 1 repetitions") != std::string::npos);

  // A capture without markers (meltrig demo): a clear message, exit 1, the file unchanged.
  const auto demo = dir / "demo.h5";
  REQUIRE(run_cli(dir, {"demo", "--duration", "1", "-o", demo.string()}, &out, &err) == 0);
  const auto before = meltrig::test::read_file(demo);
  CHECK(run_cli(dir, {"analyze", demo.string()}, &out, &err) == 1);
  CHECK_MESSAGE(err.find("demo.h5: no markers") != std::string::npos, err);
  CHECK(meltrig::test::read_file(demo) == before);
}
