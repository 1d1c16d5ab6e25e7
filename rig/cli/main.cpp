// The meltrig command line. Exceptions and error values become messages and exit codes here,
// and only here: 0 success (also a capture stopped by Ctrl-C, whose file is complete),
// 1 a device, I/O or file failure, 2 a usage error.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "meltrig/fixtures/lvpm_emulator.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/lvpm_monitor.hpp"

namespace {

using namespace meltrig;

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) {
  g_interrupted.store(true);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

int fail(const std::string& what) {
  std::fprintf(stderr, "meltrig: error: %s\n", what.c_str());
  return 1;
}

struct MonitorSpec {
  std::string driver, port;
};
Result<MonitorSpec> parse_monitor_spec(const std::string& s) {
  auto colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
    return make_error(Errc::invalid_argument,
                      "--monitor \"" + s + "\": expected DRIVER:PORT, e.g. lvpm:/dev/ttyACM0");
  }
  MonitorSpec m{s.substr(0, colon), s.substr(colon + 1)};
  if (m.driver != "lvpm") {
    return make_error(Errc::invalid_argument,
                      "--monitor \"" + s + "\": unknown driver \"" + m.driver + "\" (known: lvpm)");
  }
  return m;
}

void print_summary(const rig::CaptureSummary& s) {
  const char* state = s.state == rig::CaptureState::complete      ? "complete"
                      : s.state == rig::CaptureState::interrupted ? "interrupted"
                      : s.state == rig::CaptureState::failed      ? "FAILED"
                                                                  : "running";
  double secs = s.sample_rate_hz > 0 ? static_cast<double>(s.samples) / s.sample_rate_hz : 0;
  std::printf("capture %s: %s\n", state, s.output.c_str());
  if (!s.end_reason.empty()) std::printf("  ended:          %s\n", s.end_reason.c_str());
  std::printf("  samples:        %llu (%llu valid) = %.3f s at %.0f Hz\n",
              static_cast<unsigned long long>(s.samples),
              static_cast<unsigned long long>(s.valid_samples), secs, s.sample_rate_hz);
  std::printf("  mean current:   %.6f A\n", s.mean_current_a);
  std::printf("  mean voltage:   %.6f V\n", s.mean_voltage_v);
  std::printf("  mean power:     %.6f W\n", s.mean_power_w);
  std::printf("  energy:         %.6f J\n", s.energy_j);
  std::printf("  losses:        ");
  bool any = false;
  for (const auto& c : s.counters) {
    if (c.value) {
      std::printf(" %s=%llu", c.name, static_cast<unsigned long long>(c.value));
      any = true;
    }
  }
  std::printf("%s\n", any ? "" : " none");
}

std::function<void(const rig::CaptureProgress&)> status_line(bool quiet) {
  if (quiet) return {};
  bool tty = ::isatty(STDERR_FILENO);
  auto last_line = std::make_shared<double>(-10.0);
  return [tty, last_line](const rig::CaptureProgress& p) {
    if (!tty && p.elapsed_s - *last_line < 2.0) return;  // a line every 2 s into logs
    *last_line = p.elapsed_s;
    std::fprintf(stderr, "%s%7.1f s  %10llu samples  %8.0f Sa/s  %8.4f W  lost %llu%s",
                 tty ? "\r" : "", p.elapsed_s, static_cast<unsigned long long>(p.samples),
                 p.rate_hz, p.mean_power_w, static_cast<unsigned long long>(p.lost_samples),
                 tty ? "   " : "\n");
    std::fflush(stderr);
  };
}

struct CaptureArgs {
  std::string monitor;
  std::string output = "capture.h5";
  double voltage = 4.0;
  double duration = 10.0;
  double current_limit = 0.0;
  std::string usb = "off";
  bool quiet = false;
};

int do_capture(const CaptureArgs& a, const std::vector<rig::Attribute>& extra_attrs) {
  auto spec = parse_monitor_spec(a.monitor);
  if (!spec) return fail(spec.error().message);
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  rig::LvpmMonitor::Options mo;
  mo.port = spec->port;
  rig::LvpmMonitor monitor(mo);
  auto info = monitor.open();
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
  opt.root_attributes = extra_attrs;
  auto s = rig::run_capture(monitor, *info, opt);
  monitor.close();
  if (!a.quiet && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
  if (!s) return fail(s.error().describe());
  print_summary(*s);
  if (s->failure) {
    return fail(s->failure->describe() + " (samples up to the failure are in " + a.output + ")");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("meltrig");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);
  spdlog::set_pattern("meltrig: %l: [%n] %v");
  install_signal_handlers();

  CLI::App app{"meltrig: hardware-in-the-loop energy measurement of on-device LLMs"};
  app.set_version_flag("--version", std::string(MELTRIG_VERSION));
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "log driver details");

  std::string cmdline;
  for (int i = 0; i < argc; ++i)
    cmdline += (i ? " " : "") + std::string(argv[i]);
  std::vector<rig::Attribute> cmd_attr = {{"command_line", cmdline}};

  // capture
  CaptureArgs ca;
  auto* cap = app.add_subcommand("capture", "capture a monitor's samples into an HDF5 file");
  cap->add_option("--monitor", ca.monitor, "DRIVER:PORT, e.g. lvpm:/dev/ttyACM0")->required();
  cap->add_option("--voltage", ca.voltage, "output voltage, V (2.01..4.55)")->capture_default_str();
  cap->add_option("--duration", ca.duration, "seconds; 0 = until Ctrl-C")->capture_default_str();
  cap->add_option("--current-limit", ca.current_limit, "runtime and power-up current limit, A");
  cap->add_option("--usb", ca.usb, "USB passthrough")
      ->check(CLI::IsMember({"off", "on", "auto"}))
      ->capture_default_str();
  cap->add_option("-o,--output", ca.output, "HDF5 file to create")->capture_default_str();
  cap->add_flag("-q,--quiet", ca.quiet, "no live status line");

  // emulate lvpm
  auto* emu = app.add_subcommand("emulate", "run a wire-level instrument emulator on a pty");
  emu->require_subcommand(1);
  auto* emu_lvpm = emu->add_subcommand("lvpm", "emulate a Monsoon LVPM until stopped");
  std::string link, waveform = "constant:0.5";
  double noise = 0.0, emu_seconds = 0.0;
  std::uint64_t seed = 1;
  std::vector<std::string> drops;
  bool garbage = false;
  emu_lvpm->add_option("--link", link, "create a symlink to the pty here")->required();
  emu_lvpm->add_option("--waveform", waveform, "constant:A | steps:T:A,T:A,... | csv:FILE")
      ->capture_default_str();
  emu_lvpm->add_option("--noise", noise, "Gaussian current noise, A (standard deviation)");
  emu_lvpm->add_option("--seed", seed, "noise seed")->capture_default_str();
  emu_lvpm->add_option("--drop", drops, "drop data packets FIRST:COUNT (repeatable)");
  emu_lvpm->add_flag("--garbage", garbage, "answer every command with random bytes");
  emu_lvpm->add_option("--seconds", emu_seconds, "exit after this long (default: until signal)");

  // demo
  auto* demo = app.add_subcommand(
      "demo", "emulate an LVPM on a pty and capture from it through the real serial path");
  std::string demo_out = "demo.h5", demo_wave = "steps:0:0.25,2:1.2,4:0.6,7:1.5,9:0.3";
  double demo_seconds = 10.0;
  demo->add_option("-o,--output", demo_out, "HDF5 file to create")->capture_default_str();
  demo->add_option("--duration", demo_seconds, "seconds")->capture_default_str();
  demo->add_option("--waveform", demo_wave, "the emulated device's current")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (verbose) spdlog::set_level(spdlog::level::info);

  try {
    if (*cap) return do_capture(ca, cmd_attr);

    if (*emu_lvpm) {
      fixtures::LvpmEmulatorConfig cfg;
      auto w = fixtures::Waveform::parse(waveform);
      if (!w) return fail(w.error().message);
      cfg.waveform = *w;
      cfg.waveform.noise_amps = noise;
      cfg.seed = seed;
      cfg.faults.answer_garbage = garbage;
      for (const auto& d : drops) {
        auto c = d.find(':');
        try {
          if (c == std::string::npos) throw std::invalid_argument(d);
          cfg.faults.drop_data_packets.emplace_back(std::stoull(d.substr(0, c)),
                                                    std::stoull(d.substr(c + 1)));
        } catch (const std::exception&) {
          std::fprintf(stderr, "meltrig: error: --drop \"%s\": expected FIRST:COUNT\n", d.c_str());
          return 2;
        }
      }
      auto e = fixtures::LvpmEmulator::start(cfg, std::filesystem::path(link));
      if (!e) return fail(e.error().describe());
      std::printf("emulating LVPM on %s (pty %s); Ctrl-C to stop\n", link.c_str(),
                  (*e)->port_path().c_str());
      std::fflush(stdout);
      auto t0 = std::chrono::steady_clock::now();
      while (!g_interrupted.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (emu_seconds > 0 &&
            std::chrono::steady_clock::now() - t0 > std::chrono::duration<double>(emu_seconds))
          break;
      }
      (*e)->stop();
      auto t = (*e)->truth();
      std::printf("emulator stopped: %llu samples sent, %llu dropped\n",
                  static_cast<unsigned long long>(t.samples_sent),
                  static_cast<unsigned long long>(t.samples_dropped));
      return 0;
    }

    if (*demo) {
      auto w = fixtures::Waveform::parse(demo_wave);
      if (!w) return fail(w.error().message);
      fixtures::LvpmEmulatorConfig cfg;
      cfg.waveform = *w;
      cfg.waveform.noise_amps = 0.01;
      auto link_path = std::filesystem::temp_directory_path() /
                       ("meltrig-demo-lvpm-" + std::to_string(::getpid()));
      auto e = fixtures::LvpmEmulator::start(cfg, link_path);
      if (!e) return fail(e.error().describe());
      std::printf("emulated Monsoon LVPM on %s; capturing %.0f s through libserialport\n",
                  link_path.c_str(), demo_seconds);
      std::fflush(stdout);
      CaptureArgs a;
      a.monitor = "lvpm:" + link_path.string();
      a.output = demo_out;
      a.duration = demo_seconds;
      a.voltage = 4.0;
      int rc = do_capture(a, cmd_attr);
      (*e)->stop();
      auto t = (*e)->truth();
      if (t.samples_sent) {
        std::printf("emulator truth: %llu samples sent, mean current %.6f A (quantised %.6f A)\n",
                    static_cast<unsigned long long>(t.samples_sent),
                    t.sum_true_amps / static_cast<double>(t.samples_sent),
                    t.sum_quantized_amps / static_cast<double>(t.samples_sent));
      }
      return rc;
    }
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 2;
}
