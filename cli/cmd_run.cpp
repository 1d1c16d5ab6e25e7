// meltrig run: capture a monitor while a runner runs on a target, then add the runner's markers,
// the device telemetry and the clock probes to the capture file (docs/targets.md, "meltrig run").
// The sequence is rig::Session's; this file parses the options and reports.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli_common.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/session.hpp"
#include "meltrig/targets/stamp.hpp"
#include "meltrig/targets/target_spec.hpp"

namespace meltrig::cli {
namespace {

namespace mt = meltrig::targets;

struct RunArgs {
  std::string monitor;
  std::string target;
  std::string markers;            ///< marker file path on the device
  std::vector<std::string> push;  ///< LOCAL:REMOTE
  int telemetry_ms = 1000;
  int probes = 8;
  double idle_before = 1.0, idle_after = 1.0;
  double timeout = 600.0;  ///< runner deadline, s; 0 = none
  double voltage = 4.0;
  std::string output = "run.h5";
  bool quiet = false;
  std::string relay;
  int route = 0;
  std::vector<int> safe_on;
  bool stamp = false;               ///< unmodified runner: meltrig_stamp writes --markers
  std::string stamp_tool;           ///< host build of meltrig_stamp to install, or "" (device PATH)
  std::string stamp_prompt_file;    ///< device path, for meltrig_stamp --prompt-file
  bool stamp_realtime = false;      ///< meltrig_stamp --realtime
  bool stamp_pipe = false;          ///< meltrig_stamp --pipe
  std::vector<std::string> runner;  ///< argv after `--`
};

/// An unmodified runner under meltrig_stamp: installed on the device once the target is prepared;
/// its stamps are stored as /markers/runner_stamped and the checked markers as /markers/runner.
void add_stamp(const RunArgs& a, rig::SessionOptions& so) {
  so.wrap_runner = [&a](mt::Target& t,
                        const std::vector<std::string>& argv) -> Result<std::vector<std::string>> {
    auto s = mt::prepare_stamp(t, a.stamp_tool, a.markers, a.stamp_prompt_file);
    if (!s) return s.error();
    s->realtime = a.stamp_realtime;
    s->pipe = a.stamp_pipe;
    return mt::stamped_argv(*s, argv);
  };
  so.before_store_markers = [](dataset::RunRecord& file, mt::MarkerLog& log,
                               const std::string& runner_output) -> Result<void> {
    auto checked = mt::check_stamped_output(log, runner_output);
    std::fprintf(stderr, "stamp: %s\n", checked.message.c_str());
    if (auto w = file.write_markers("runner_stamped", log); !w) return w;
    log = std::move(checked.log);
    return {};
  };
}

/// The options a.* describe, or a usage error (kUsage printed).
std::optional<rig::SessionOptions> session_options(const RunArgs& a, mt::Target& target) {
  rig::SessionOptions so;
  for (const auto& p : a.push) {
    auto colon = p.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == p.size()) {
      usage("--push " + p + ": expected LOCAL:REMOTE");
      return std::nullopt;
    }
    so.pushes.emplace_back(p.substr(0, colon), p.substr(colon + 1));
  }
  so.capture.output = a.output;
  so.capture.duration_s = 0;  // until the runner and the idle tail are done
  so.capture.monitor.output_voltage_v = a.voltage;
  so.capture.root_attributes = invocation_attributes();
  so.capture.root_attributes.push_back({"target", target.name()});
  if (!a.relay.empty()) {
    so.capture.root_attributes.push_back({"relay", a.relay});
    so.capture.root_attributes.push_back(
        {"relay_route_channel", static_cast<std::int64_t>(a.route)});
  }
  so.relay = a.relay;
  so.route = a.route;
  so.safe_on = a.safe_on;
  so.target = &target;
  so.runner.argv = a.runner;
  so.runner.markers = a.markers;
  so.runner.idle_before_s = a.idle_before;
  so.runner.idle_after_s = a.idle_after;
  so.runner.timeout_s = a.timeout;
  so.probes_per_burst = a.probes;
  so.telemetry_period = std::chrono::milliseconds(a.telemetry_ms);
  so.probe_clock =
      "host: CLOCK_MONOTONIC (steady) ns, same clock as the root attribute "
      "host_steady_clock_start_ns";
  if (a.stamp) add_stamp(a, so);
  if (!a.quiet && ::isatty(STDERR_FILENO)) {
    so.on_tokens = [](std::uint64_t n) {
      std::fprintf(stderr, "\rrunner: %llu tokens", static_cast<unsigned long long>(n));
    };
  }
  return so;
}

/// A failure before anything was recorded, named by the option that gave the input.
int setup_failure(const rig::SessionError& e, const RunArgs& a) {
  switch (e.step) {
    case rig::SessionStep::target:
      return fail("--target " + a.target + ": " + e.error.describe());
    case rig::SessionStep::push:
      return fail("--push " + e.subject + ": " + e.error.describe());
    case rig::SessionStep::runner:
      return fail("--stamp: " + e.error.describe());
    case rig::SessionStep::relay:
      return fail("--relay " + a.relay + ": " + e.error.describe());
    case rig::SessionStep::monitor:
      return fail("--monitor " + a.monitor + ": " + e.error.describe());
    case rig::SessionStep::output:
      return fail(e.error.message);
  }
  return kFailure;
}

/// Reports what the session did; the exit code (the last failure wins, as each is printed).
int report(const rig::SessionResult& r, const RunArgs& a, const std::string& target_name) {
  int rc = relay_report(r.relay_error, r.relay_safe_state, a.relay);
  if (!r.capture) return fail(r.capture.error().describe());
  print_summary(*r.capture);
  if (r.capture->failure) {
    rc = fail(r.capture->failure->describe() + " (samples up to the failure are in " + a.output +
              ")");
  }
  if (r.store_error) return fail(r.store_error->describe());
  const dataset::TargetRecord& rec = r.record;
  std::fprintf(stderr,
               "target %s: exit code %d%s, %llu token markers, %zu clock probes, %llu telemetry "
               "passes\n",
               target_name.c_str(), rec.exit_code, rec.timed_out ? " (timed out)" : "",
               static_cast<unsigned long long>(r.token_markers()), rec.probes.size(),
               static_cast<unsigned long long>(rec.telemetry_samples));
  if (rec.probes.empty() && rec.last_probe_error) {
    std::fprintf(stderr, "meltrig: warning: no clock probe succeeded: %s\n",
                 rec.last_probe_error->describe().c_str());
  }
  if (r.marker_error) {
    rc = fail("--markers " + a.markers + ": " + r.marker_error->describe() +
              " (the capture, telemetry and /target are kept in " + a.output + ")");
  }
  if (!r.run_error.empty()) {
    rc = fail(r.run_error + " (recorded in " + a.output + " /target; dataset kept)");
  }
  return rc;
}

int run(const RunArgs& a) {
  if (a.runner.empty()) return usage("no runner: give its argv after `--`");
  if (a.markers.empty()) return usage("--markers REMOTE_PATH is required");
  if (a.probes < 1) return usage("--probes " + std::to_string(a.probes) + ": at least 1");
  if (a.telemetry_ms < 1) return usage("--telemetry-ms " + std::to_string(a.telemetry_ms));
  if (a.idle_before < 0 || a.idle_after < 0 || a.timeout < 0)
    return usage("--idle-before, --idle-after and --timeout must be >= 0");
  auto spec = rig::DeviceSpec::parse(a.monitor);
  if (!spec) return usage("--monitor: " + spec.error().message);
  auto target = mt::make_target(a.target);
  if (!target) return usage("--target: " + target.error().message);
  auto so = session_options(a, **target);
  if (!so) return kUsage;
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  auto monitor = rig::make_monitor(*spec);
  if (!monitor) return usage("--monitor: " + monitor.error().message);
  if (!a.relay.empty() && a.route <= 0) return usage("--relay needs --route CHANNEL");

  const bool live = static_cast<bool>(so->on_tokens);
  auto outcome = rig::Session(std::move(*so)).run(**monitor, interrupt_token());
  if (live) std::fprintf(stderr, "\n");
  if (auto* e = std::get_if<rig::SessionError>(&outcome)) return setup_failure(*e, a);
  return report(std::get<rig::SessionResult>(outcome), a, (*target)->name());
}

}  // namespace

void add_run(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand(
      "run",
      "capture a monitor while a runner runs on a target; markers, telemetry and clock "
      "probes go into the capture file");
  cmd->add_option("--monitor", a->monitor, "DRIVER:PORT[:key=value,...], e.g. lvpm:/dev/ttyACM0")
      ->required();
  cmd->add_option("--target", a->target,
                  "local[:...], ssh:[USER@]HOST[:port=N,key=PATH,...] or adb[:serial=S,...]")
      ->required();
  cmd->add_option("--markers", a->markers, "the runner's marker file, a path on the target")
      ->required();
  cmd->add_option("--push", a->push, "LOCAL:REMOTE file copied to the target before the run");
  cmd->add_option("--telemetry-ms", a->telemetry_ms, "telemetry period, ms")->capture_default_str();
  cmd->add_option("--probes", a->probes, "clock probes before and after the run")
      ->capture_default_str();
  cmd->add_option("--idle-before", a->idle_before, "idle capture before the runner starts, s")
      ->capture_default_str();
  cmd->add_option("--idle-after", a->idle_after, "idle capture after the runner ends, s")
      ->capture_default_str();
  cmd->add_option("--timeout", a->timeout, "runner deadline, s (0 = none)")->capture_default_str();
  cmd->add_option("--voltage", a->voltage, "output voltage, V")->capture_default_str();
  cmd->add_option("-o,--output", a->output, "HDF5 file to create")->capture_default_str();
  cmd->add_flag("-q,--quiet", a->quiet, "no live token count");
  cmd->add_option("--relay", a->relay, "relay routing the monitor to the device");
  cmd->add_option("--route", a->route, "relay channel to route to while capturing");
  cmd->add_option("--safe-on", a->safe_on, "relay channels on in the safe state")->delimiter(',');
  cmd->add_flag("--stamp", a->stamp,
                "unmodified runner: run it under meltrig_stamp, which writes --markers");
  cmd->add_option("--stamp-tool", a->stamp_tool,
                  "host build of meltrig_stamp for the device, installed beside --markers");
  cmd->add_option("--stamp-prompt-file", a->stamp_prompt_file,
                  "device file holding the prompt (else the runner's -p/--prompt)");
  cmd->add_flag("--stamp-realtime", a->stamp_realtime,
                "meltrig_stamp --realtime: the stamper at SCHED_FIFO (needs the privilege)");
  cmd->add_flag(
      "--stamp-pipe", a->stamp_pipe,
      "meltrig_stamp --pipe: the runner's stdout on a pipe (runners that flush per token)");
  cmd->add_option("runner", a->runner, "the runner's argv, after `--`");
  cmds.push_back({cmd, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
