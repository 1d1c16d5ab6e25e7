// meltrig run: capture a monitor while a runner runs on a target, then add the runner's markers,
// the device telemetry and the clock probes to the capture file (docs/targets.md, "meltrig run").
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli_common.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/routed_relay.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/stamp.hpp"
#include "meltrig/targets/target_spec.hpp"
#include "target_record.hpp"

namespace meltrig::cli {
namespace {

namespace mt = meltrig::targets;
using std::chrono::milliseconds;

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
  std::vector<std::string> runner;  ///< argv after `--`
};

/// Sleeps `s` seconds in short steps; false if Ctrl-C came.
bool idle(double s) {
  auto until = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(s));
  while (std::chrono::steady_clock::now() < until) {
    if (g_interrupted.load()) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return !g_interrupted.load();
}

bool is_token_line(const std::string& line) {
  auto sp = line.find(' ');
  return sp != std::string::npos && line.compare(sp + 1, 6, "token ") == 0;
}

int run(const RunArgs& a) {
  if (a.runner.empty()) return usage("no runner: give its argv after `--`");
  if (a.markers.empty()) return usage("--markers REMOTE_PATH is required");
  if (a.probes < 1) return usage("--probes " + std::to_string(a.probes) + ": at least 1");
  if (a.telemetry_ms < 1) return usage("--telemetry-ms " + std::to_string(a.telemetry_ms));
  if (a.idle_before < 0 || a.idle_after < 0 || a.timeout < 0)
    return usage("--idle-before, --idle-after and --timeout must be >= 0");
  std::vector<std::pair<std::string, std::string>> pushes;
  for (const auto& p : a.push) {
    auto colon = p.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == p.size())
      return usage("--push " + p + ": expected LOCAL:REMOTE");
    pushes.emplace_back(p.substr(0, colon), p.substr(colon + 1));
  }
  auto spec = rig::DeviceSpec::parse(a.monitor);
  if (!spec) return usage("--monitor: " + spec.error().message);
  auto target_r = mt::make_target(a.target);
  if (!target_r) return usage("--target: " + target_r.error().message);
  mt::Target& target = **target_r;
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  auto monitor = rig::make_monitor(*spec);
  if (!monitor) return usage("--monitor: " + monitor.error().message);
  if (!a.relay.empty() && a.route <= 0) return usage("--relay needs --route CHANNEL");

  // The target first: nothing is switched or recorded for a device that does not answer.
  if (auto r = target.prepare(); !r)
    return fail("--target " + a.target + ": " + r.error().describe());
  struct Teardown {
    mt::Target& t;
    ~Teardown() { (void)t.teardown(); }
  } teardown{target};
  for (const auto& [local, remote] : pushes) {
    if (auto r = target.push(local, remote); !r)
      return fail("--push " + local + ":" + remote + ": " + r.error().describe());
  }

  std::vector<std::string> runner_argv = a.runner;
  if (a.stamp) {
    auto s = mt::prepare_stamp(target, a.stamp_tool, a.markers, a.stamp_prompt_file);
    if (!s) return fail("--stamp: " + s.error().describe());
    s->realtime = a.stamp_realtime;
    runner_argv = mt::stamped_argv(*s, a.runner);
  }

  std::unique_ptr<rig::RoutedRelay> routed;
  if (int rc = route_relay(a.relay, a.route, a.safe_on, routed); rc != kOk) return rc;
  auto info = (*monitor)->open();
  if (!info) {
    restore_relay(routed, a.relay);
    return fail("--monitor " + a.monitor + ": " + info.error().describe());
  }

  TargetRecord rec;
  rec.describe = target.describe();
  rec.argv = runner_argv;
  rec.probe_clock =
      "host: CLOCK_MONOTONIC (steady) ns, same clock as the root attribute "
      "host_steady_clock_start_ns";
  take_probes(target, a.probes, rec);

  // The capture runs on its own thread until `finish` (complete), or Ctrl-C, which the watcher
  // forwards to `stop` (interrupted).
  std::atomic<bool> stop{false};
  std::atomic<bool> finish{false};
  rig::CaptureOptions opt;
  opt.output = a.output;
  opt.duration_s = 0;
  opt.monitor.output_voltage_v = a.voltage;
  opt.interrupt = &stop;
  opt.finish = &finish;
  opt.root_attributes = invocation_attributes();
  opt.root_attributes.push_back({"target", target.name()});
  if (!a.relay.empty()) {
    opt.root_attributes.push_back({"relay", a.relay});
    opt.root_attributes.push_back({"relay_route_channel", static_cast<std::int64_t>(a.route)});
  }
  std::optional<Result<rig::CaptureSummary>> summary;
  std::thread capture([&] { summary.emplace(rig::run_capture(**monitor, *info, opt)); });
  std::jthread watcher([&](std::stop_token st) {
    while (!st.stop_requested()) {
      if (g_interrupted.load()) stop.store(true);
      std::this_thread::sleep_for(milliseconds(20));
    }
  });

  std::string run_error;      // what went wrong on the target side (the dataset is kept)
  std::string runner_output;  // stdout + stderr, for the summary a stamped runner prints
  bool go = idle(a.idle_before);
  mt::TelemetrySampler sampler(target, milliseconds(a.telemetry_ms));
  sampler.start();
  if (go) {
    auto h = target.launch(runner_argv);
    if (!h) {
      run_error = "runner " + a.runner.front() + ": " + h.error().describe();
    } else {
      mt::MarkerTail tail(target, a.markers);
      const bool live = !a.quiet && ::isatty(STDERR_FILENO);
      std::uint64_t streamed_tokens = 0;  // for the live line; the file's markers are the record
      auto deadline = std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                          std::chrono::duration<double>(a.timeout));
      for (;;) {
        if (auto lines = tail.poll(); lines) {
          for (const auto& l : *lines)
            if (is_token_line(l)) ++streamed_tokens;
          if (live)
            std::fprintf(stderr, "\rrunner: %llu tokens",
                         static_cast<unsigned long long>(streamed_tokens));
        }
        if (!(*h)->running()) break;
        if (g_interrupted.load()) {
          rec.interrupted = true;
          break;
        }
        if (a.timeout > 0 && std::chrono::steady_clock::now() >= deadline) {
          rec.timed_out = true;
          break;
        }
        std::this_thread::sleep_for(milliseconds(50));
      }
      if (live) std::fprintf(stderr, "\n");
      Result<mt::RunOutput> out =
          (rec.timed_out || rec.interrupted) ? (*h)->terminate() : (*h)->wait(milliseconds(30000));
      if (!out) {
        run_error = "runner " + a.runner.front() + ": " + out.error().describe();
      } else {
        rec.exit_code = out->exit_code;
        runner_output = out->out + out->err;
        if (rec.timed_out) {
          run_error = "runner " + a.runner.front() + ": timed out after " +
                      std::to_string(a.timeout) + " s and was terminated";
        } else if (!rec.interrupted && out->exit_code != 0) {
          run_error =
              "runner " + a.runner.front() + " exited with code " + std::to_string(out->exit_code);
          if (!out->err.empty()) run_error += "; its stderr: " + out->err;
        }
      }
    }
    idle(a.idle_after);
  }
  rec.telemetry = sampler.stop();
  rec.telemetry_samples = sampler.samples();
  rec.telemetry_errors = sampler.errors();
  take_probes(target, a.probes, rec);
  finish.store(true);
  capture.join();
  watcher.request_stop();
  (*monitor)->close();
  int relay_rc = restore_relay(routed, a.relay);

  if (!summary || !*summary) {
    return fail(summary ? summary->error().describe() : std::string("capture did not run"));
  }
  const rig::CaptureSummary& s = summary->value();
  print_summary(s);
  int rc = relay_rc;
  if (s.failure) {
    rc = fail(s.failure->describe() + " (samples up to the failure are in " + a.output + ")");
  }

  // Extras: pull and parse the markers, then write everything into the closed capture.
  std::optional<mt::MarkerLog> log;
  std::string marker_error;
  {
    auto local = std::filesystem::path(a.output).string() + ".markers.tmp";
    auto pulled = target.pull(a.markers, local);
    if (!pulled) {
      marker_error = "--markers " + a.markers + ": " + pulled.error().describe();
    } else {
      auto parsed = mt::read_marker_file(local);
      if (!parsed) {
        marker_error = "--markers " + a.markers + ": " + parsed.error().describe();
      } else {
        parsed->source = a.markers;
        log = std::move(*parsed);
      }
    }
    std::error_code ec;
    std::filesystem::remove(local, ec);
  }
  auto file = dataset::RunRecord::open(a.output);
  if (!file) return fail(file.error().describe());
  if (auto w = write_target(*file, rec, "telemetry"); !w) return fail(w.error().describe());
  if (log && a.stamp) {  // the checked markers as "runner", the stamps as they were beside them
    auto checked = mt::check_stamped_output(*log, runner_output);
    std::fprintf(stderr, "stamp: %s\n", checked.message.c_str());
    if (auto w = file->write_markers("runner_stamped", *log); !w) return fail(w.error().describe());
    log = std::move(checked.log);
  }
  if (log) {
    if (auto w = file->write_markers("runner", *log); !w) return fail(w.error().describe());
  }
  if (auto w = file->close(); !w) return fail(w.error().describe());

  std::size_t tokens = 0;
  if (log) {
    for (const auto& e : log->events)
      if (e.kind == mt::MarkerKind::token) ++tokens;
  }
  std::fprintf(stderr,
               "target %s: exit code %d%s, %zu token markers, %zu clock probes, %llu telemetry "
               "passes\n",
               target.name().c_str(), rec.exit_code, rec.timed_out ? " (timed out)" : "", tokens,
               rec.probes.size(), static_cast<unsigned long long>(rec.telemetry_samples));
  if (rec.probes.empty() && rec.last_probe_error) {
    std::fprintf(stderr, "meltrig: warning: no clock probe succeeded: %s\n",
                 rec.last_probe_error->describe().c_str());
  }
  if (!marker_error.empty()) {
    rc = fail(marker_error + " (the capture, telemetry and /target are kept in " + a.output + ")");
  }
  if (!run_error.empty()) {
    rc = fail(run_error + " (recorded in " + a.output + " /target; dataset kept)");
  }
  return rc;
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
  cmd->add_option("runner", a->runner, "the runner's argv, after `--`");
  cmds.push_back({cmd, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
