// Shared pieces of the meltrig command line: the interrupt flag, error reporting, the command
// table, and the capture summary and live status line.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/routed_relay.hpp"

namespace meltrig::cli {

/// Set by SIGINT/SIGTERM; long-running commands poll it and return normally, so destructors
/// (relay safe states, file closes) run on every exit path.
extern std::atomic<bool> g_interrupted;

/// Exit codes.
inline constexpr int kOk = 0, kFailure = 1, kUsage = 2;

/// Prints "meltrig: error: WHAT" to stderr; returns kFailure.
int fail(const std::string& what);
/// Prints a usage error; returns kUsage.
int usage(const std::string& what);

/// A subcommand and what to run when it was given.
struct Command {
  CLI::App* app;
  std::function<int()> run;
};
using Commands = std::vector<Command>;

/// Attributes every capture records about how it was started (the command line).
const std::vector<dataset::Attribute>& invocation_attributes();
void set_invocation(int argc, char** argv);

void print_summary(const rig::CaptureSummary& s);

/// Opens relay `spec` and routes `channel` to the device (all off, then it on; `safe_on` is the
/// safe state). An empty spec opens nothing. kOk, or kFailure naming --relay SPEC.
int route_relay(const std::string& spec, int channel, const std::vector<int>& safe_on,
                std::unique_ptr<rig::RoutedRelay>& routed);

/// Restores `routed`'s safe state now (if there is one) and reports it on stderr; kFailure,
/// with "SAFE STATE NOT RESTORED" naming `spec`, if the relay did not take it. Resets `routed`.
int restore_relay(std::unique_ptr<rig::RoutedRelay>& routed, const std::string& spec);
std::function<void(const rig::CaptureProgress&)> status_line(bool quiet);

// Command registration, one function per command file.
void add_capture(CLI::App& app, Commands& cmds);
void add_run(CLI::App& app, Commands& cmds);
void add_demo(CLI::App& app, Commands& cmds);
void add_sim(CLI::App& app, Commands& cmds);
void add_emulate_lvpm(CLI::App& emulate, Commands& cmds);
void add_emulate_ppk2(CLI::App& emulate, Commands& cmds);
void add_bench(CLI::App& app, Commands& cmds);
void add_devices(CLI::App& app, Commands& cmds);
void add_inspect(CLI::App& app, Commands& cmds);
void add_analyze(CLI::App& app, Commands& cmds);
void add_export(CLI::App& app, Commands& cmds);
void add_import(CLI::App& app, Commands& cmds);
void add_relay(CLI::App& app, Commands& cmds);
void add_emulate_relays(CLI::App& emulate, Commands& cmds);

}  // namespace meltrig::cli
