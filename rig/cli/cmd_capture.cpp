// meltrig capture: one monitor into one HDF5 file.
#include <unistd.h>

#include <filesystem>

#include "cli_common.hpp"
#include "meltrig/rig/registry.hpp"

namespace meltrig::cli {
namespace {

struct CaptureArgs {
  std::string monitor;
  std::string output = "capture.h5";
  double voltage = 4.0;
  double duration = 10.0;
  double current_limit = 0.0;
  std::string usb = "off";
  bool quiet = false;
};

int run(const CaptureArgs& a) {
  auto spec = rig::DeviceSpec::parse(a.monitor);
  if (!spec) return usage("--monitor: " + spec.error().message);
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  auto monitor = rig::make_monitor(*spec);
  if (!monitor) return usage("--monitor: " + monitor.error().message);
  auto info = (*monitor)->open();
  if (!info) return fail(info.error().describe());

  rig::CaptureOptions opt;
  opt.output = a.output;
  opt.duration_s = a.duration;
  opt.monitor.output_voltage_v = a.voltage;
  if (a.current_limit > 0) opt.monitor.current_limit_a = a.current_limit;
  opt.monitor.usb_passthrough = a.usb == "on"     ? rig::MonitorConfig::UsbPassthrough::on
                                : a.usb == "auto" ? rig::MonitorConfig::UsbPassthrough::automatic
                                                  : rig::MonitorConfig::UsbPassthrough::off;
  opt.interrupt = &g_interrupted;
  opt.on_progress = status_line(a.quiet);
  opt.root_attributes = invocation_attributes();
  auto s = rig::run_capture(**monitor, *info, opt);
  (*monitor)->close();
  if (!a.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
  if (!s) return fail(s.error().describe());
  print_summary(*s);
  if (s->failure) {
    return fail(s->failure->describe() + " (samples up to the failure are in " + a.output + ")");
  }
  return kOk;
}

}  // namespace

/// Runs a capture with the given monitor spec and output; used by `demo` too.
int run_capture_command(const std::string& monitor, const std::string& output, double duration,
                        double voltage, bool quiet) {
  CaptureArgs a;
  a.monitor = monitor;
  a.output = output;
  a.duration = duration;
  a.voltage = voltage;
  a.quiet = quiet;
  return run(a);
}

void add_capture(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<CaptureArgs>();
  auto* cap = app.add_subcommand("capture", "capture a monitor's samples into an HDF5 file");
  cap->add_option("--monitor", a->monitor, "DRIVER:PORT[:key=value,...], e.g. lvpm:/dev/ttyACM0")
      ->required();
  cap->add_option("--voltage", a->voltage, "output voltage, V (2.01..4.55)")->capture_default_str();
  cap->add_option("--duration", a->duration, "seconds; 0 = until Ctrl-C")->capture_default_str();
  cap->add_option("--current-limit", a->current_limit, "runtime and power-up current limit, A");
  cap->add_option("--usb", a->usb, "USB passthrough")
      ->check(CLI::IsMember({"off", "on", "auto"}))
      ->capture_default_str();
  cap->add_option("-o,--output", a->output, "HDF5 file to create")->capture_default_str();
  cap->add_flag("-q,--quiet", a->quiet, "no live status line");
  cmds.push_back({cap, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
