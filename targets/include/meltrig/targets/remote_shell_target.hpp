// The part SshTarget and AdbTarget share: both hand one command line to a POSIX sh on the device
// (ssh and adb shell join their arguments with spaces), so every device argv is sh_join()ed, and
// programs run under a fixed wrapper that reports their pid so a timeout can kill them on the
// device, not only the local client. The wrapper and kill scripts are constants: values reach
// them only as positional parameters ("$@", "$1"), never inside the script text.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "meltrig/targets/sysfs_telemetry.hpp"
#include "meltrig/targets/target.hpp"

namespace meltrig::targets {

/// Run wrapper: `sh -c kRunWrapperScript meltrig ARGV...` prints "meltrig-pid PID" on stderr and
/// execs ARGV, so PID is the program's own pid (and its process group under sshd and adbd, which
/// start each session with setsid()).
inline constexpr const char* kRunWrapperScript = "echo \"meltrig-pid $$\" >&2; exec \"$@\"";
/// Kill script: `sh -c kKillScript meltrig SIGNAL PID`: signals the group, or the pid alone.
inline constexpr const char* kKillScript =
    "kill -s \"$1\" -- \"-$2\" 2>/dev/null || kill -s \"$1\" \"$2\"";
/// $0 of both scripts.
inline constexpr const char* kScriptName = "meltrig";

/// Device argv that runs `argv` (with extra "NAME=value" environment via env(1)) under the wrapper.
std::vector<std::string> wrapped_argv(const std::vector<std::string>& argv,
                                      const std::vector<std::string>& env = {});
/// The pid from a "meltrig-pid PID" line in `err`, or -1; strip_pid_line removes that line.
long long find_remote_pid(const std::string& err);
std::string strip_pid_line(const std::string& err);

/// Settings shared by the remote targets.
struct RemoteSettings {
  std::string work_dir;    ///< device directory prepare() creates
  std::string probe_path;  ///< device path of meltrig_probe (empty: probe/telemetry unsupported)
  std::string sysfs_root = "/sys";
  milliseconds call_timeout{15000};  ///< deadline of every housekeeping call
  CurrentUnit battery_current_unit = CurrentUnit::automatic;
  /// probe_clock() keeps `meltrig_probe --serve` running in one session and asks it for each
  /// probe over stdin, so the rtt holds no ssh/adb session setup or process start. Falls back to
  /// one `meltrig_probe` call per probe for good if the session does not answer.
  bool persistent_probe = true;
};

class RemoteShellTarget : public Target {
 public:
  explicit RemoteShellTarget(RemoteSettings s);

  Result<RunOutput> run(const std::vector<std::string>& argv, milliseconds timeout) override;
  Result<std::unique_ptr<RunHandle>> launch(const std::vector<std::string>& argv,
                                            const std::vector<std::string>& env = {}) override;
  Result<std::string> read_file(const std::string& remote, std::uint64_t offset = 0) override;
  Result<TelemetrySnapshot> read_telemetry() override;
  Result<ClockProbe> probe_clock() override;

  /// Runs `argv` on the device without the wrapper (short housekeeping: mkdir, cat, the probe).
  /// A timeout kills only the local client.
  Result<RunOutput> shell(const std::vector<std::string>& argv, milliseconds timeout,
                          const SpawnOptions& options = {});
  /// Sends `signal` ("TERM", "KILL") to the device process group `pid`.
  Result<void> kill_remote(long long pid, const std::string& signal);
  /// Pushes a host build of meltrig_probe to settings().probe_path: to a temporary name, chmod
  /// 755, then renamed over the old one (a probe that is running, e.g. another target's
  /// session, cannot be overwritten in place: ETXTBSY).
  Result<void> install_probe(const std::filesystem::path& local);
  /// Stops the persistent probe session (teardown() of the subclasses calls it).
  void stop_probe_session();
  /// True while probes go through the persistent session (false after a fallback).
  bool probe_session_active() const;
  /// The battery current unit decision so far (see CurrentUnitState).
  CurrentUnitState current_unit() const;
  const RemoteSettings& settings() const { return rs_; }

 protected:
  /// Host argv that hands `command_line` (already quoted) to the device's shell.
  virtual std::vector<std::string> transport_argv(const std::string& command_line) const = 0;
  /// Checks a housekeeping result: io_error naming `what` with stderr on a non-zero exit.
  Result<RunOutput> checked(Result<RunOutput> r, const std::string& what) const;
  /// The device-side part of prepare(): `mkdir -p work_dir`, then install_probe(local_probe)
  /// unless it is empty.
  Result<void> prepare_device(const std::string& work_dir,
                              const std::filesystem::path& local_probe);

  RemoteSettings rs_;

 private:
  Result<ClockProbe> probe_once();
  Result<ClockProbe> probe_via_session();

  mutable std::mutex unit_mu_;
  CurrentUnitState current_unit_;
  mutable std::mutex probe_mu_;
  std::unique_ptr<Subprocess> probe_session_;
  std::size_t probe_consumed_ = 0;
  bool probe_session_failed_ = false;
};

}  // namespace meltrig::targets
