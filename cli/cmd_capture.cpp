// meltrig capture: one monitor into one HDF5 file.
#include <unistd.h>

#include <filesystem>

#include "cli_common.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/routed_relay.hpp"

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
  std::string compression = "auto";
  std::string relay;         ///< relay spec routing the monitor to the device, if any
  int route = 0;             ///< the channel to route to
  std::vector<int> safe_on;  ///< channels on in the relay's safe state
};

int run(const CaptureArgs& a) {
  auto spec = rig::DeviceSpec::parse(a.monitor);
  if (!spec) return usage("--monitor: " + spec.error().message);
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  auto monitor = rig::make_monitor(*spec);
  if (!monitor) return usage("--monitor: " + monitor.error().message);
  if (!a.relay.empty() && a.route <= 0) return usage("--relay needs --route CHANNEL");
  // Route the monitor's output to the device first (MELT's bench: all off, then one on). The
  // safe state comes back when `routed` goes: normal end, error return, SIGINT or SIGTERM.
  std::unique_ptr<rig::RoutedRelay> routed;
  if (int rc = route_relay(a.relay, a.route, a.safe_on, routed); rc != kOk) return rc;
  auto info = (*monitor)->open();
  if (!info) {
    restore_relay(routed, a.relay);
    return fail(info.error().describe());
  }

  rig::CaptureOptions opt;
  opt.output = a.output;
  opt.duration_s = a.duration;
  opt.monitor.output_voltage_v = a.voltage;
  if (a.current_limit > 0) opt.monitor.current_limit_a = a.current_limit;
  opt.monitor.usb_passthrough = a.usb == "on"     ? rig::MonitorConfig::UsbPassthrough::on
                                : a.usb == "auto" ? rig::MonitorConfig::UsbPassthrough::automatic
                                                  : rig::MonitorConfig::UsbPassthrough::off;
  if (a.compression == "none") {
    opt.compression = dataset::Compression::none();
  } else if (a.compression == "lz4") {
    opt.compression = dataset::Compression::lz4();
  } else if (a.compression.rfind("deflate:", 0) == 0) {
    int level = std::atoi(a.compression.c_str() + 8);
    if (level < 1 || level > 9) return usage("--compression " + a.compression + ": level 1..9");
    opt.compression = dataset::Compression::deflate(static_cast<unsigned>(level));
  } else if (a.compression != "auto") {
    return usage("--compression " + a.compression + ": expected auto, none, deflate:1..9, lz4");
  }
  opt.interrupt = &g_interrupted;
  opt.on_progress = status_line(a.quiet);
  opt.root_attributes = invocation_attributes();
  if (routed) {
    opt.root_attributes.push_back({"relay", a.relay});
    opt.root_attributes.push_back({"relay_route_channel", static_cast<std::int64_t>(a.route)});
  }
  auto s = rig::run_capture(**monitor, *info, opt);
  (*monitor)->close();
  if (!a.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
  int relay_rc = restore_relay(routed, a.relay);
  if (!s) return fail(s.error().describe());
  print_summary(*s);
  if (s->failure) {
    return fail(s->failure->describe() + " (samples up to the failure are in " + a.output + ")");
  }
  return relay_rc;
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
  cap->add_option("--compression", a->compression,
                  "auto (deflate:1 below 1 Msps, lz4 from 1 Msps), none, deflate:1..9 or lz4")
      ->capture_default_str();
  cap->add_option("--relay", a->relay,
                  "relay routing the monitor to the device, e.g. lcus:/dev/ttyUSB0:channels=4");
  cap->add_option("--route", a->route, "relay channel to route to while capturing");
  cap->add_option("--safe-on", a->safe_on, "relay channels on in the safe state (default none)")
      ->delimiter(',');
  cmds.push_back({cap, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
