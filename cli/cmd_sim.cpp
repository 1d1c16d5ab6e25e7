// meltrig sim: the whole bench on one machine. A simulated device (fixtures/sim_world) runs an LLM
// scenario; the scenario's emulated monitor (a Monsoon LVPM, or a Nordic PPK2 whose logic input
// follows the runner's GPIO line) samples its supply current through its own crystal on a pty;
// an emulated LCUS relay board on another pty routes the monitor to the device; the simulated
// runner writes its marker file as (virtual) time passes. One rig::Session captures through the
// real serial path and stores the markers and the sampled telemetry; the bench then adds the
// world's telemetry and ground truth (fixtures::sim::Bench).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli_common.hpp"
#include "meltrig/fixtures/sim_bench.hpp"
#include "meltrig/fixtures/sim_sweep.hpp"
#include "meltrig/rig/session.hpp"

namespace meltrig::cli {
namespace {

namespace sim = fixtures::sim;

struct SimArgs {
  std::string scenario;
  std::string output = "sim.h5";
  std::optional<std::uint64_t> seed;
  std::optional<double> speed;  ///< default: fixtures::sim::default_speed of the scenario
  bool quiet = false;
};

/// The session of the simulated bench (fixtures::sim::fill_sim_session), routed by its relay.
rig::SessionOptions session_options(const SimArgs& a, sim::Bench& b) {
  rig::SessionOptions so;
  so.capture.output = a.output;
  so.capture.on_progress = status_line(a.quiet);
  so.capture.root_attributes = invocation_attributes();
  so.capture.root_attributes.push_back({"relay", b.relay_spec()});
  so.capture.root_attributes.push_back(
      {"relay_route_channel", static_cast<std::int64_t>(b.relay_channel())});
  so.relay = b.relay_spec();
  so.route = b.relay_channel();
  sim::fill_sim_session(so, b.world(), b.target(), b.clock(), b.speed());
  return so;
}

int run(const SimArgs& a) {
  auto scn = sim::load_scenario(a.scenario);
  if (!scn) return fail(scn.error().describe());
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  const double speed = a.speed.value_or(sim::default_speed(*scn));
  if (!(speed > 0)) return usage("--speed must be > 0");
  const std::uint64_t seed = a.seed.value_or(scn->run.seed);
  const auto stem =
      std::filesystem::temp_directory_path() / ("meltrig-sim-" + std::to_string(::getpid()));
  auto bench = sim::Bench::start(*scn, seed, speed, stem.string(), a.scenario);
  if (!bench) return fail(bench.error().describe());
  sim::Bench& b = **bench;
  if (!a.quiet) {
    std::fputs(b.banner().c_str(), stdout);
    std::fflush(stdout);
  }
  const std::unique_ptr<rig::Monitor> monitor = b.make_monitor();
  const rig::SessionOptions so = session_options(a, b);
  std::error_code ec;
  std::filesystem::remove(so.markers_copy, ec);

  auto outcome = rig::Session(so).run(*monitor, interrupt_token());
  if (!a.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
  b.stop();
  if (auto* e = std::get_if<rig::SessionError>(&outcome)) return fail(e->error.describe());
  auto& r = std::get<rig::SessionResult>(outcome);
  if (r.relay_error) return fail("relay: SAFE STATE NOT RESTORED: " + r.relay_error->describe());
  if (!r.capture) return fail(r.capture.error().describe());
  print_summary(*r.capture);
  if (r.capture->failure) {
    return fail(r.capture->failure->describe() + " (samples up to the failure are in " + a.output +
                ")");
  }
  if (r.marker_error) return fail(r.marker_error->describe());
  for (const auto& i : r.markers->issues)
    std::fprintf(stderr, "%s\n", i.describe().c_str());
  if (r.store_error) return fail(r.store_error->describe());
  if (auto w = b.record(a.output, r.capture->samples); !w) return fail(w.error().describe());
  const std::string report =
      b.report({r.capture->samples, r.capture->energy_j, r.token_markers(), so.markers_copy});
  std::fputs(report.c_str(), stdout);
  return kOk;
}

}  // namespace

void add_sim(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<SimArgs>();
  auto* s = app.add_subcommand(
      "sim",
      "run a whole simulated bench (device, runner, emulated LVPM or PPK2 and relay) end to end");
  s->add_option("scenario", a->scenario,
                "scenario TOML, e.g. examples/scenarios/phone_llamacpp.toml")
      ->required();
  s->add_option("-o,--output", a->output, "HDF5 file to create")->capture_default_str();
  s->add_option("--seed", a->seed, "world seed (default: the scenario's run.seed)");
  s->add_option("--speed", a->speed,
                "virtual clock speed, x real time (default: 10 with an LVPM, 1 with a PPK2)");
  s->add_flag("-q,--quiet", a->quiet, "no live status line and no banner");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
