// meltrig sim: the whole bench on one machine. A simulated device (fixtures/sim_world) runs an LLM
// scenario; an emulated Monsoon LVPM samples its supply current through its own crystal on a pty;
// an emulated LCUS relay board on another pty routes the monitor to the device; the simulated
// runner writes its marker file as (virtual) time passes. meltrig captures through the real serial
// path, then stores the markers, the device's telemetry and the world's ground truth beside the
// samples.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "cli_common.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/fixtures/lvpm_emulator.hpp"
#include "meltrig/fixtures/relay_emulators.hpp"
#include "meltrig/fixtures/sim_target.hpp"
#include "meltrig/fixtures/sim_world.hpp"
#include "meltrig/rig/lvpm_monitor.hpp"
#include "meltrig/rig/routed_relay.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/target.hpp"
#include "target_record.hpp"

namespace meltrig::cli {
namespace {

namespace sim = fixtures::sim;
using std::chrono::milliseconds;

struct SimArgs {
  std::string scenario;
  std::string output = "sim.h5";
  std::optional<std::uint64_t> seed;
  double speed = 10.0;
  bool quiet = false;
};

/// Where the simulated runner writes its markers on the device (under the target's scratch dir).
constexpr const char* kRemoteMarkers = "run.markers";
/// Clock probes taken before and after the run, each kept (as `meltrig run` does).
constexpr int kProbesPerBurst = 8;

std::size_t count_lines(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return static_cast<std::size_t>(
      std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n'));
}

/// The ground truth as attributes of /truth plus per-token and per-phase series.
Result<void> write_truth(const std::filesystem::path& file, const sim::World& w,
                         const fixtures::LvpmEmulatorConfig& mon, double captured_s) {
  const auto& t = w.truth();
  const double actual_rate = 1000.0 * mon.sample_rate_khz * (1.0 + mon.clock_ppm * 1e-6);
  std::vector<dataset::Attribute> attrs = {
      {"scenario", w.scenario().name},
      {"scenario_digest", sim::scenario_digest(w.scenario())},
      {"scenario_toml", w.scenario().source_text},
      {"seed", static_cast<std::int64_t>(w.seed())},
      {"truth_json", w.truth_json()},
      {"duration_s", w.duration_s()},
      {"captured_true_s", captured_s},
      {"captured_supply_energy_j", w.supply_voltage_v() * w.charge_c(0.0, captured_s)},
      {"captured_energy_j", w.energy_j(0.0, captured_s)},
      {"supply_voltage_v", w.supply_voltage_v()},
      {"energy_j", t.energy_j},
      {"supply_charge_c", t.charge_c},
      {"supply_energy_j", t.charge_c * w.supply_voltage_v()},
      {"usb_energy_j", t.usb_energy_j},
      {"rail_stored_j", t.rail_stored_j},
      {"background_energy_j", t.background_energy_j},
      {"throttle_onset_s", t.throttle_onset_s},
      {"monitor_crystal_ppm", mon.clock_ppm},
      {"monitor_nominal_rate_hz", 1000.0 * mon.sample_rate_khz},
      {"monitor_actual_rate_hz", actual_rate},
      {"monitor_time_base",
       std::string("true time of sample i = i / monitor_actual_rate_hz (s since the world's t=0)")},
      {"relay_channel", static_cast<std::int64_t>(w.scenario().relay.channel)},
  };
  auto f = dataset::RunRecord::open(file);
  if (!f) return f.error();
  if (auto r = f->write_attribute_group("/truth", attrs); !r) return r.error();
  auto series = [&](const std::string& path, auto&& get, const auto& rows, const char* unit,
                    const char* what) -> Result<void> {
    std::vector<double> v;
    v.reserve(rows.size());
    for (const auto& row : rows)
      v.push_back(static_cast<double>(get(row)));
    return f->write_series(path, v,
                           {{"unit", std::string(unit)}, {"description", std::string(what)}});
  };
  using Tok = sim::TokenTruth;
  using Ph = sim::PhaseTruth;
  const std::pair<std::string, Result<void>> writes[] = {
      {"tokens", series(
                     "/truth/tokens/rep", [](const Tok& k) { return k.rep; }, t.tokens, "",
                     "repetition of each decoded token")},
      {"tokens", series(
                     "/truth/tokens/index", [](const Tok& k) { return k.index; }, t.tokens, "",
                     "token index within its repetition")},
      {"tokens", series(
                     "/truth/tokens/t0_intended_s", [](const Tok& k) { return k.t0_intended_s; },
                     t.tokens, "s", "the runner asks for the token (previous token's end)")},
      {"tokens", series(
                     "/truth/tokens/t0_s", [](const Tok& k) { return k.t0_s; }, t.tokens, "s",
                     "true start of the token's compute (a wake latency after t0_intended_s)")},
      {"tokens", series(
                     "/truth/tokens/t1_s", [](const Tok& k) { return k.t1_s; }, t.tokens, "s",
                     "true end (the token is available)")},
      {"tokens", series(
                     "/truth/tokens/energy_j", [](const Tok& k) { return k.energy_j; }, t.tokens,
                     "J", "true device energy over [t0_intended, t1]")},
      {"tokens",
       series(
           "/truth/tokens/compute_energy_j", [](const Tok& k) { return k.compute_energy_j; },
           t.tokens, "J", "true device energy over [t0, t1]")},
      {"tokens",
       series(
           "/truth/tokens/supply_energy_j", [](const Tok& k) { return k.supply_energy_j; },
           t.tokens, "J", "energy the monitor delivers over [t0_intended, t1]")},
      {"tokens", series(
                     "/truth/tokens/freq_mhz", [](const Tok& k) { return k.freq_mhz; }, t.tokens,
                     "MHz", "time-weighted mean frequency over the token")},
      {"phases",
       series(
           "/truth/phases/rep", [](const Ph& p) { return p.rep; }, t.phases, "", "repetition")},
      {"phases", series(
                     "/truth/phases/phase", [](const Ph& p) { return static_cast<int>(p.phase); },
                     t.phases, "", "phase code; names in attribute phase_names of /truth")},
      {"phases",
       series(
           "/truth/phases/t0_s", [](const Ph& p) { return p.t0_s; }, t.phases, "s", "true start")},
      {"phases",
       series(
           "/truth/phases/t1_s", [](const Ph& p) { return p.t1_s; }, t.phases, "s", "true end")},
      {"phases", series(
                     "/truth/phases/t0_actual_s", [](const Ph& p) { return p.t0_actual_s; },
                     t.phases, "s", "the phase's activity draws power from here")},
      {"phases", series(
                     "/truth/phases/supply_energy_j", [](const Ph& p) { return p.supply_energy_j; },
                     t.phases, "J", "energy the monitor delivers over [t0, t1]")},
      {"phases", series(
                     "/truth/phases/energy_j", [](const Ph& p) { return p.energy_j; }, t.phases,
                     "J", "true gross device energy")},
      {"phases",
       series(
           "/truth/phases/idle_subtracted_j", [](const Ph& p) { return p.idle_subtracted_j; },
           t.phases, "J", "true energy minus idle power x duration")},
      {"sync_edges",
       series(
           "/truth/sync_edges/intended_s", [](const sim::SyncEdgeTruth& e) { return e.intended_s; },
           t.sync_edges, "s", "where the runner scheduled the edge (true time)")},
      {"sync_edges",
       series(
           "/truth/sync_edges/actual_s", [](const sim::SyncEdgeTruth& e) { return e.actual_s; },
           t.sync_edges, "s", "where the device power changes (true time)")},
      {"sync_edges",
       series(
           "/truth/sync_edges/rising", [](const sim::SyncEdgeTruth& e) { return e.rising ? 1 : 0; },
           t.sync_edges, "", "1: idle to busy, 0: busy to idle")},
      {"thermal", series(
                      "/truth/thermal/soc_c", [](double x) { return x; }, t.soc_c, "degC",
                      "true SoC temperature at t = 0, 1, 2, ... s")},
      {"thermal", series(
                      "/truth/thermal/skin_c", [](double x) { return x; }, t.skin_c, "degC",
                      "true skin temperature at t = 0, 1, 2, ... s")},
  };
  for (const auto& item : writes)
    if (!item.second) return item.second.error();
  std::string names;
  for (int p = 0; p <= static_cast<int>(sim::Phase::cooldown); ++p)
    names += (p ? "," : "") + std::string(sim::phase_name(static_cast<sim::Phase>(p)));
  if (auto r = f->write_attribute_group("/truth/phases", {{"phase_names", names}}); !r)
    return r.error();
  return f->close();
}

int run(const SimArgs& a) {
  auto scn = sim::load_scenario(a.scenario);
  if (!scn) return fail(scn.error().describe());
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  if (!(a.speed > 0)) return usage("--speed must be > 0");
  const std::uint64_t seed = a.seed.value_or(scn->run.seed);
  auto built = sim::World::build(*scn, seed);
  if (!built) return fail(a.scenario + ": " + built.error().describe());
  const auto world = std::make_shared<const sim::World>(std::move(built.value()));
  const double volts = world->supply_voltage_v();
  if (volts < 2.01 || volts > 4.55) {
    return fail(a.scenario + ": device.supply_v = " + std::to_string(volts) +
                " V is outside the emulated LVPM's 2.01..4.55 V");
  }
  const double rate = scn->monitor.sample_rate_hz;
  if (rate != 5000.0) {
    return fail(a.scenario + ": monitor.sample_rate_hz: the emulated LVPM samples at 5000 Hz");
  }
  const int channel = scn->relay.channel;
  if (channel < 1 || channel > 4) {
    return fail(a.scenario + ": relay.channel must be 1..4 (the emulated LCUS-4)");
  }

  VirtualClock vclock(a.speed);
  const auto stem =
      std::filesystem::temp_directory_path() / ("meltrig-sim-" + std::to_string(::getpid()));
  fixtures::RelayEmulatorConfig rc;
  rc.channels = 4;
  rc.clock = &vclock;
  auto relay_emu = fixtures::LcusEmulator::start(rc, stem.string() + "-relay");
  if (!relay_emu) return fail(relay_emu.error().describe());
  const fixtures::RelayEmulator* board = relay_emu->get();

  fixtures::LvpmEmulatorConfig mc;
  mc.clock = &vclock;
  mc.clock_ppm = scn->monitor.crystal_ppm;
  mc.seed = seed;
  // A revision-1 LVPM reads voltage in 62.5 uV steps, full scale 4.096 V: above that it would
  // clip, so higher supplies get a later revision (125 uV steps).
  mc.hardware_revision = volts < 4.09 ? 1 : 3;
  // Power reaches the device only through its relay channel.
  mc.waveform = fixtures::Waveform::function([world, board, channel](double t) {
    if (!((board->on_mask() >> (channel - 1)) & 1u)) return 0.0;
    return world->supply_current_a(t);
  });
  mc.waveform.noise_amps = scn->monitor.adc_noise_a;
  auto mon_emu = fixtures::LvpmEmulator::start(mc, stem.string() + "-lvpm");
  if (!mon_emu) return fail(mon_emu.error().describe());

  const std::string relay_spec = "lcus:" + stem.string() + "-relay:channels=4";
  auto routed = rig::RoutedRelay::open(relay_spec, channel, {});
  if (!routed) return fail("relay " + relay_spec + ": " + routed.error().describe());

  rig::LvpmMonitor::Options mo;
  mo.port = (*mon_emu)->port_path();
  mo.clock = &vclock;
  // Elapsed-time wrap inference needs host timing finer than a wrap (32 ms of samples); on an
  // accelerated clock host jitter is multiplied by the speed.
  mo.sequencer.infer_wraps = a.speed <= 2.0;
  rig::LvpmMonitor monitor(mo);
  auto info = monitor.open();
  if (!info) return fail(info.error().describe());

  const std::filesystem::path markers_path = a.output + ".markers";
  std::error_code ec;
  std::filesystem::remove(markers_path, ec);
  // The device under test: the world behind the Target interface, its files in a scratch
  // directory (removed at exit); the runner's marker file is pulled next to the output.
  fixtures::SimTargetConfig tc;
  tc.root = stem.string() + "-device";
  tc.seed = seed;
  fixtures::SimTarget target(world, vclock, tc);
  struct RemoveScratch {
    std::filesystem::path dir;
    ~RemoveScratch() {
      std::error_code e;
      std::filesystem::remove_all(dir, e);
    }
  } scratch{tc.root};
  if (auto r = target.prepare(); !r) return fail(r.error().describe());
  const std::vector<std::string> runner_argv = {"sim-runner", "--markers", kRemoteMarkers};

  if (!a.quiet) {
    std::printf(
        "simulated bench: %s (seed %" PRIu64
        "), %.1f s of device time at %.0fx\n"
        "  device %s at %.2f V on relay channel %d; monitor: emulated LVPM on %s (crystal %+.1f "
        "ppm)\n",
        scn->name.c_str(), seed, world->duration_s(), a.speed, scn->device.name.c_str(), volts,
        channel, mo.port.c_str(), mc.clock_ppm);
    std::fflush(stdout);
  }

  rig::CaptureOptions opt;
  opt.output = a.output;
  opt.duration_s = world->duration_s();
  opt.clock = &vclock;
  opt.monitor.output_voltage_v = volts;
  opt.interrupt = &g_interrupted;
  opt.on_progress = status_line(a.quiet);
  opt.root_attributes = invocation_attributes();
  opt.root_attributes.push_back({"bench", std::string("simulated")});
  opt.root_attributes.push_back({"relay", relay_spec});
  opt.root_attributes.push_back({"relay_route_channel", static_cast<std::int64_t>(channel)});
  opt.root_attributes.push_back({"virtual_clock_speed", a.speed});
  // True time 0 is the capture's start, as the monitor's first sample is.
  target.set_epoch(vclock.now_ns());
  auto runner = target.launch(runner_argv);
  if (!runner) return fail(runner.error().describe());
  TargetRecord rec;
  take_probes(target, kProbesPerBurst, rec);
  // One reading per second of device time; the sampler's period is real time.
  targets::TelemetrySampler sampler(
      target, milliseconds(std::max<std::int64_t>(1, std::llround(1000.0 / a.speed))));
  sampler.start();
  auto s = rig::run_capture(monitor, *info, opt);
  monitor.close();
  rec.telemetry = sampler.stop();
  rec.telemetry_samples = sampler.samples();
  rec.telemetry_errors = sampler.errors();
  take_probes(target, kProbesPerBurst, rec);
  // The runner's last line is due by the end of the run: give it up to 2 s of device time.
  auto ended =
      (*runner)->wait(milliseconds(std::max<std::int64_t>(50, std::llround(2000.0 / a.speed))));
  auto how = ended ? ended : (*runner)->terminate(milliseconds(0));
  rec.exit_code = how ? how->exit_code : -1;
  auto pulled = target.pull(kRemoteMarkers, markers_path);
  if (!a.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
  auto restored = (*routed)->restore();
  (*mon_emu)->stop();
  const auto truth = (*mon_emu)->truth();
  (*relay_emu)->stop();
  if (!restored) return fail("relay: SAFE STATE NOT RESTORED: " + restored.error().describe());
  if (!s) return fail(s.error().describe());
  print_summary(*s);
  if (s->failure) {
    return fail(s->failure->describe() + " (samples up to the failure are in " + a.output + ")");
  }
  if (!pulled) return fail(pulled.error().describe());

  // Markers as the runner left them, the device's telemetry, and the truth.
  auto log = targets::read_marker_file(markers_path);
  if (!log) return fail(log.error().describe());
  for (const auto& i : log->issues)
    std::fprintf(stderr, "%s\n", i.describe().c_str());
  const double actual_rate = 1000.0 * mc.sample_rate_khz * (1.0 + mc.clock_ppm * 1e-6);
  const double captured_s = static_cast<double>(s->samples) / actual_rate;
  {
    auto f = dataset::RunRecord::open(a.output);
    if (!f) return fail(f.error().describe());
    if (auto r = f->write_markers("runner", *log); !r) return fail(r.error().describe());
    if (auto r = f->write_telemetry(world->telemetry()); !r) return fail(r.error().describe());
    rec.describe = target.describe();
    rec.argv = runner_argv;
    rec.probe_clock =
        "host: the bench's virtual clock, ns (virtual_clock_speed x real time); true time t = "
        "(host ns - epoch_ns) / 1e9";
    rec.extra_attributes = {{"epoch_ns", target.epoch_ns()}, {"virtual_clock_speed", a.speed}};
    // /telemetry holds the world's complete reported series; what the sampler read goes beside.
    if (auto r = write_target(*f, rec, "telemetry_sampled"); !r) return fail(r.error().describe());
    if (auto r = f->close(); !r) return fail(r.error().describe());
  }
  if (auto r = write_truth(a.output, *world, mc, captured_s); !r) return fail(r.error().describe());

  // What was captured against what happened.
  const double true_supply_j = volts * world->charge_c(0.0, captured_s);
  const double measured_true_time_j = s->energy_j * rate / actual_rate;
  std::size_t tokens = 0;
  for (const auto& e : log->events)
    tokens += e.kind == targets::MarkerKind::token;
  const auto& t = world->truth();
  std::printf("simulated bench: %zu marker lines, %zu tokens; telemetry: %zu series\n",
              count_lines(markers_path), tokens, world->telemetry().series.size());
  std::printf(
      "  energy from the supply: measured %.4f J, true %.4f J (%+.4f%%; on the monitor's true "
      "clock %+.4f%%)\n",
      s->energy_j, true_supply_j, 100.0 * (s->energy_j - true_supply_j) / true_supply_j,
      100.0 * (measured_true_time_j - true_supply_j) / true_supply_j);
  if (!t.reps.empty()) {
    const auto& r0 = t.reps.front();
    std::printf("  true decode: %.2f tokens/s, %.4f J/token (%.4f J/token above idle)",
                r0.decode_tok_s, r0.j_per_token, r0.j_per_token_net);
    if (t.reps.size() > 1) {
      const auto& rn = t.reps.back();
      std::printf("; repetition %d of %zu: %.2f tokens/s, %.4f J/token", rn.index + 1,
                  t.reps.size(), rn.decode_tok_s, rn.j_per_token);
    }
    std::printf("\n");
    if (t.throttle_onset_s >= 0)
      std::printf("  throttling from %.1f s (true time)\n", t.throttle_onset_s);
  }
  std::printf("  emulator: %" PRIu64 " samples sent, %" PRIu64
              " dropped; ground truth in /truth, "
              "markers in /markers/runner and %s\n",
              truth.samples_sent, truth.samples_dropped, markers_path.c_str());
  return kOk;
}

}  // namespace

void add_sim(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<SimArgs>();
  auto* s = app.add_subcommand(
      "sim", "run a whole simulated bench (device, runner, emulated monitor and relay) end to end");
  s->add_option("scenario", a->scenario,
                "scenario TOML, e.g. examples/scenarios/phone_llamacpp.toml")
      ->required();
  s->add_option("-o,--output", a->output, "HDF5 file to create")->capture_default_str();
  s->add_option("--seed", a->seed, "world seed (default: the scenario's run.seed)");
  s->add_option("--speed", a->speed, "virtual clock speed, x real time")->capture_default_str();
  s->add_flag("-q,--quiet", a->quiet, "no live status line and no banner");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
