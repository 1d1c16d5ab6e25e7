// A device under test behind one interface: prepare it, move files, run and launch the LLM
// runner, follow its marker file, read telemetry, probe its clocks, tear down. Implementations:
// LocalTarget (this machine), SshTarget (OpenSSH client), AdbTarget (the adb binary). Every call
// returns a Result and every call that reaches the device has a deadline. Commands are argv
// vectors end to end; values are never spliced into shell strings (docs/targets.md).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/targets/clock_probe.hpp"
#include "meltrig/targets/process.hpp"
#include "meltrig/targets/telemetry.hpp"

namespace meltrig::targets {

using std::chrono::milliseconds;

/// A launched program on the device. Destroying a handle of a running program terminates it.
/// A handle must not outlive the Target that launched it (remote handles use it to kill).
class RunHandle {
 public:
  virtual ~RunHandle() = default;
  /// Waits up to `timeout` for the program to end; timeout error if it is still running (it keeps
  /// running). Once it has ended, returns its exit code and output (repeatable).
  virtual Result<RunOutput> wait(milliseconds timeout) = 0;
  /// SIGTERM (the whole process group on the device), then SIGKILL after `grace`; returns what it
  /// printed and how it ended.
  virtual Result<RunOutput> terminate(milliseconds grace = milliseconds(2000)) = 0;
  /// True while the program runs (does not block).
  virtual bool running() = 0;
};

/// One telemetry reading: a named quantity in SI-ish units (docs/targets.md lists the names).
struct TelemetryReading {
  std::string name;  ///< e.g. "thermal/zone0/cpu-thermal", "cpu/cpu3/freq", "power/VDD_IN/power"
  std::string unit;  ///< "degC", "Hz", "A", "V", "W"
  double value = 0;
  std::string description;  ///< where it came from and any unit decision taken
};

/// Everything read_telemetry() saw in one pass, stamped on the device's monotonic clock.
struct TelemetrySnapshot {
  std::int64_t device_mono_ns = 0;
  std::vector<TelemetryReading> readings;

  /// The reading called `name`, or nullptr.
  const TelemetryReading* find(std::string_view name) const;
  /// Appends every reading to `t` at device_mono_ns (clock "monotonic").
  void append_to(Telemetry& t) const;
};

/// A change of USB power the device logged itself (its charger / power-supply driver): the
/// session pairs it with the hub switch that caused it (sync evidence, docs/sync.md).
struct UsbPowerEvent {
  std::int64_t device_mono_ns = 0;  ///< the log's stamp, device monotonic ns
  bool usb_powered = false;         ///< USB power present after the change
  /// The change happened within [device_mono_ns - window_ns, device_mono_ns] (the device's
  /// detection latency and its log's resolution, as the target knows them).
  std::int64_t window_ns = 0;
};

/// A device under test. Not thread-safe except where noted: one controlling thread, plus
/// TelemetrySampler (read_telemetry and probe_clock may be called from another thread).
class Target {
 public:
  virtual ~Target() = default;

  /// Short identifier ("local", "ssh:root@127.0.0.1:2222", "adb:SERIAL").
  virtual std::string name() const = 0;
  /// A line for logs and capture metadata.
  virtual std::string describe() const = 0;

  /// Checks the device answers and creates its working directory.
  virtual Result<void> prepare() = 0;
  /// Copies a host file to the device / a device file to the host.
  virtual Result<void> push(const std::filesystem::path& local, const std::string& remote) = 0;
  virtual Result<void> pull(const std::string& remote, const std::filesystem::path& local) = 0;
  /// Runs argv on the device to completion. A timeout kills the program on the device and is
  /// reported in RunOutput::timed_out (not an error); errors mean it could not be started.
  virtual Result<RunOutput> run(const std::vector<std::string>& argv, milliseconds timeout) = 0;
  /// Starts argv on the device with extra environment entries ("NAME=value").
  virtual Result<std::unique_ptr<RunHandle>> launch(const std::vector<std::string>& argv,
                                                    const std::vector<std::string>& env = {}) = 0;
  /// The bytes of a device file from byte `offset` to its current end.
  virtual Result<std::string> read_file(const std::string& remote, std::uint64_t offset = 0) = 0;
  /// One pass over thermal zones, CPU/GPU frequencies and software power counters.
  virtual Result<TelemetrySnapshot> read_telemetry() = 0;
  /// One clock probe (see ClockProbe).
  virtual Result<ClockProbe> probe_clock() = 0;
  /// Stops what prepare() started (connections), removes nothing the caller pulled.
  virtual Result<void> teardown() = 0;
  /// The USB power changes the device has logged (as far back as its log reaches), in order.
  /// unsupported (the default) for a device that does not log them.
  virtual Result<std::vector<UsbPowerEvent>> usb_power_log() {
    return Error{Errc::unsupported, name() + ": does not log USB power changes"};
  }

  /// `n` probes back to back; the one with the lowest rtt (the tightest bound). Fails only when
  /// every probe failed (with the last error).
  Result<ClockProbe> probe_clock_burst(int n);
};

/// Follows a marker file on a target while the runner writes it: each poll() reads what was
/// appended since the last one and returns the complete new lines ('\n' stripped). A partial last
/// line stays pending until its '\n' arrives (the SDK writes whole lines, so a partial line means
/// a write in flight, or a crash: pending() shows it).
class MarkerTail {
 public:
  MarkerTail(Target& target, std::string remote_path);
  /// New complete lines; not_found while the file does not exist yet.
  Result<std::vector<std::string>> poll();
  std::uint64_t bytes_read() const { return offset_; }
  const std::string& pending() const { return partial_; }

 private:
  Target& target_;
  std::string path_;
  std::uint64_t offset_ = 0;
  std::string partial_;
};

/// Polls read_telemetry() on its own thread every `period` into a Telemetry. Failed reads are
/// counted (errors()) and the last error kept; sampling goes on.
class TelemetrySampler {
 public:
  TelemetrySampler(Target& target, milliseconds period);
  ~TelemetrySampler();
  TelemetrySampler(const TelemetrySampler&) = delete;
  TelemetrySampler& operator=(const TelemetrySampler&) = delete;

  void start();
  /// Stops the thread and returns everything sampled.
  Telemetry stop();
  std::uint64_t samples() const { return samples_.load(); }
  std::uint64_t errors() const { return errors_.load(); }
  std::optional<Error> last_error() const;

 private:
  void loop(std::stop_token st);

  Target& target_;
  milliseconds period_;
  std::jthread thread_;
  mutable std::mutex mu_;
  Telemetry telemetry_;
  std::optional<Error> last_error_;
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace meltrig::targets
