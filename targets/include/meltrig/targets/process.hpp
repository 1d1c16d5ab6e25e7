// Child processes started from argv vectors only (posix_spawnp, never a shell), with stdout and
// stderr captured through pipes by a reader thread, a deadline on every wait, and kill on
// timeout. Every target (local, ssh, adb) launches its programs through this file.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::targets {

/// How a child is started. Defaults: stdin from /dev/null, stdout and stderr captured.
struct SpawnOptions {
  /// stdin comes from this file instead of /dev/null (push over ssh: `cat > FILE` on the far side).
  std::optional<std::filesystem::path> stdin_file;
  /// stdin is a socket the parent writes with write_stdin() (a persistent probe session).
  /// Overrides stdin_file.
  bool stdin_pipe = false;
  /// stdout goes to this file (created or truncated) instead of being captured (pull over ssh).
  std::optional<std::filesystem::path> stdout_file;
  /// stdout and stderr go to this file instead of being captured (a daemonising child such as an
  /// ssh ControlMaster keeps its descriptors open forever; a pipe would never see EOF).
  std::optional<std::filesystem::path> all_output_file;
  /// Extra environment entries "NAME=value" added to (or replacing in) the parent's environment.
  std::vector<std::string> env;
  /// Working directory of the child (empty: the parent's).
  std::filesystem::path cwd;
  /// Captured output beyond this many bytes per stream is dropped and counted.
  std::size_t max_capture_bytes = 64u << 20;
};

/// How a child ended.
struct ExitStatus {
  int exit_code = -1;  ///< exit status, or 128 + signal number when killed by a signal
  int signal = 0;      ///< the signal that ended it, 0 if it exited
};

/// One child process in its own process group (so a timeout kills its children too). The
/// destructor kills the group with SIGKILL if the child is still running and reaps it.
class Subprocess {
 public:
  /// Starts argv[0] (searched in PATH when it has no '/') with argv. not_found if it cannot be
  /// executed, invalid_argument for an empty argv, io_error for pipe/spawn failures.
  static Result<std::unique_ptr<Subprocess>> spawn(const std::vector<std::string>& argv,
                                                   const SpawnOptions& options = {});
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  /// Reaps without blocking; true while the child has not exited.
  bool running();
  /// Waits up to `timeout` for the child to exit (then up to `linger` for its pipes to close).
  /// timeout error if it is still running; it is left running.
  Result<ExitStatus> wait(std::chrono::milliseconds timeout,
                          std::chrono::milliseconds linger = std::chrono::milliseconds(200));
  /// Sends `sig` to the child's process group (and the child itself).
  void signal_group(int sig);
  /// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL; returns how it ended.
  ExitStatus terminate(std::chrono::milliseconds grace);

  /// Writes to the child's stdin (SpawnOptions::stdin_pipe): io_error if it is closed or was not
  /// requested. Never raises SIGPIPE.
  Result<void> write_stdin(std::string_view data);

  /// Captured output so far (complete once wait() has returned an ExitStatus).
  std::string stdout_text() const;
  /// Captured stdout from byte `pos` on, and its total size so far (cheap to poll).
  std::string stdout_from(std::size_t pos) const;
  std::size_t stdout_size() const;
  std::string stderr_text() const;
  /// Bytes dropped beyond max_capture_bytes (stdout + stderr).
  std::size_t dropped_bytes() const;

 private:
  Subprocess() = default;
  void reader_loop();
  void stop_reader(std::chrono::milliseconds linger);

  pid_t pid_ = -1;
  int in_fd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::size_t max_capture_ = 0;
  std::optional<ExitStatus> status_;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reader_done_{false};
  mutable std::mutex mu_;
  std::string out_;
  std::string err_;
  std::size_t dropped_ = 0;
};

/// What a finished (or timed-out) command produced.
struct RunOutput {
  int exit_code = -1;  ///< exit status, 128 + signal when killed; -1 when timed out
  std::string out;
  std::string err;
  bool timed_out = false;
};

/// Runs argv to completion with a deadline. On timeout the process group is killed (SIGKILL),
/// reaped, and the output so far is returned with timed_out = true (not an error). Errors only
/// when the program cannot be started.
Result<RunOutput> run_process(const std::vector<std::string>& argv,
                              std::chrono::milliseconds timeout, const SpawnOptions& options = {});

}  // namespace meltrig::targets
