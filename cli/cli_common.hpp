// Shared pieces of the meltrig command line: the interrupt flag, error reporting, the command
// table, and the capture summary and live status line.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <functional>
#include <optional>
#include <ostream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "meltrig/rig/capture.hpp"

namespace meltrig::cli {

/// Set by SIGINT/SIGTERM; long-running commands poll it and return normally, so destructors
/// (relay safe states, file closes) run on every exit path.
extern std::atomic<bool> g_interrupted;

/// Requested on SIGINT/SIGTERM (with g_interrupted), for the libraries that wait on a stop_token.
std::stop_token interrupt_token();

/// Waits until Ctrl-C (interrupt_token()), `seconds` have passed (> 0), or `running` (if given)
/// turns false; the interrupt wakes it at once. For commands that serve until stopped (emulate).
void serve_until_stopped(double seconds, const std::function<bool()>& running = {});

/// Turns SIGINT and SIGTERM into g_interrupted and interrupt_token(): blocks both in every thread
/// (construct it before any thread starts) and waits for them on a thread of its own, so nothing
/// runs in a signal handler. Child processes get the default mask back (targets/process.cpp).
class InterruptWatcher {
 public:
  InterruptWatcher();
  ~InterruptWatcher();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

 private:
  std::jthread thread_;
};

/// Exit codes.
inline constexpr int kOk = 0, kFailure = 1, kUsage = 2;

/// Prints "meltrig: error: WHAT" to stderr; returns kFailure.
int fail(const std::string& what);
/// Prints a usage error; returns kUsage.
int usage(const std::string& what);

/// Writes `path` whole or not at all: `write` fills a temporary file beside it, which replaces
/// `path` only when `write` and the close succeed (else it is removed). kFailure naming the file
/// or the error otherwise.
int write_file_whole(const std::string& path,
                     const std::function<Result<void>(std::ostream&)>& write);

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

/// Reports a session's relay restore on stderr ("relay SPEC: safe state restored (STATE)");
/// kFailure, with "SAFE STATE NOT RESTORED" naming `spec`, if it failed. kOk without a relay.
int relay_report(const std::optional<Error>& error, const std::string& safe_state,
                 const std::string& spec);

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
void add_sync(CLI::App& app, Commands& cmds);
void add_export(CLI::App& app, Commands& cmds);
void add_report(CLI::App& app, Commands& cmds);
void add_import(CLI::App& app, Commands& cmds);
void add_relay(CLI::App& app, Commands& cmds);
void add_emulate_relays(CLI::App& emulate, Commands& cmds);
void add_view(CLI::App& app, Commands& cmds);
void add_sweep(CLI::App& app, Commands& cmds);
void add_catalog(CLI::App& app, Commands& cmds);

}  // namespace meltrig::cli
