// The meltrig command line. Exceptions and error values become messages and exit codes here,
// and only here: 0 success (also a capture stopped by Ctrl-C, whose file is complete),
// 1 a device, I/O or file failure, 2 a usage error. Each command lives in its own cmd_*.cpp.
#include <hdf5.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>

#include "cli_common.hpp"
#include "meltrig/fixtures/emulated_hvpm.hpp"
#include "meltrig/fixtures/hub_emulators.hpp"
#include "meltrig/rig/hvpm_monitor.hpp"
#include "meltrig/rig/usb_hubs.hpp"

int main(int argc, char** argv) {
  using namespace meltrig::cli;
  // Every capture closes its file itself. A file whose writes failed (disk full) cannot be closed
  // cleanly, and HDF5's exit-time cleanup would crash re-closing it after we already reported
  // the error and restored the relays: skip that cleanup.
  H5dont_atexit();
  auto logger = spdlog::stderr_color_mt("meltrig");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);
  spdlog::set_pattern("meltrig: %l: [%n] %v");
  // SIGINT/SIGTERM end long commands cleanly (relays restored, files closed); nothing runs in a
  // signal handler. Before any thread starts, so that every thread inherits the mask.
  std::signal(SIGPIPE, SIG_IGN);
  InterruptWatcher interrupts;
  set_invocation(argc, argv);
  // "hvpm:emulated[:key=value,...]": the real HVPM driver over the in-process emulator.
  meltrig::rig::HvpmMonitor::set_emulator_factory(&meltrig::fixtures::make_emulated_hvpm);
  // "ykush:emulated[:...]", "uhub:emulated[:...]": the real hub drivers over in-process emulators.
  meltrig::rig::YkushHub::set_emulator_factory(&meltrig::fixtures::make_emulated_ykush);
  meltrig::rig::UsbHub::set_emulator_factory(&meltrig::fixtures::make_emulated_uhub);

  CLI::App app{"meltrig: hardware-in-the-loop energy measurement of on-device LLMs"};
  app.set_version_flag("--version", std::string(MELTRIG_VERSION));
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "log driver details");

  Commands cmds;
  add_capture(app, cmds);
  add_run(app, cmds);
  add_demo(app, cmds);
  add_sim(app, cmds);
  add_bench(app, cmds);
  add_devices(app, cmds);
  add_inspect(app, cmds);
  add_analyze(app, cmds);
  add_sync(app, cmds);
  add_export(app, cmds);
  add_report(app, cmds);
  add_import(app, cmds);
  add_relay(app, cmds);
  add_view(app, cmds);
  add_sweep(app, cmds);
  add_catalog(app, cmds);
  auto* emulate = app.add_subcommand("emulate", "run a wire-level instrument emulator on a pty");
  emulate->require_subcommand(1);
  add_emulate_lvpm(*emulate, cmds);
  add_emulate_ppk2(*emulate, cmds);
  add_emulate_relays(*emulate, cmds);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kOk : kUsage;
  }
  if (verbose) spdlog::set_level(spdlog::level::info);
  try {
    for (const auto& c : cmds) {
      if (c.app->parsed()) return c.run();
    }
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return kUsage;
}
