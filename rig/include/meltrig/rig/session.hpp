// rig::Session: one measured run, the sequence `meltrig run` and `meltrig sim` share (and a sweep
// repeats): prepare the device under test and copy files to it, route the relay to it, open the
// monitor, take clock probes, capture on a thread of its own while the telemetry is sampled and
// the runner runs, take probes again, end the capture, restore the relay, pull the runner's
// marker file, and store markers, telemetry, probes and the runner's exit in the capture file
// (/markers/runner, /target, the telemetry group; docs/dataset.md). USB power switches planned for
// the capture are made while it runs and stored with the device's log of them (/relay/edges). The
// monitor is required; the relay route and the target (with its runner) are optional.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "meltrig/dataset/run_record.hpp"
#include "meltrig/dataset/target_record.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/target.hpp"

namespace meltrig::rig {

/// The runner on the target and how the capture relates to it.
struct RunnerPlan {
  std::vector<std::string> argv;  ///< empty: no runner (probes and telemetry only)
  std::string markers;            ///< its marker file on the device; empty: none to pull
  /// true: launched just before the capture starts and the capture runs for its duration (the
  /// simulated bench, whose runner's clock starts with the capture). false: launched after
  /// `idle_before_s` of capture, and the capture ends `idle_after_s` after the runner does.
  bool launch_with_capture = false;
  double idle_before_s = 0.0, idle_after_s = 0.0;
  double timeout_s = 0.0;  ///< runner deadline, s (0 = none); then it is terminated
  /// How long to wait for the runner to exit once it is done or the capture ended (real time).
  std::chrono::milliseconds exit_grace{30000};
};

/// A switch of the device's USB power during the capture.
struct UsbSwitch {
  double at_s = 0.0;  ///< capture-clock seconds after the capture started
  bool on = false;    ///< USB power restored (true) or cut (false)
};

/// A relay or hub switch the session made while the monitor captured: a row of /relay/edges
/// (docs/dataset.md), evidence for the clock sync (docs/sync.md).
struct SwitchEdge {
  std::int64_t host_command_ns = 0;  ///< capture clock, read right before the command is sent
  std::int64_t host_ack_ns = 0;      ///< capture clock, read right after the switch acknowledged
  bool rising = false;               ///< the monitor's current steps up (USB power cut)
  /// The device's own log of the change, device monotonic ns; INT64_MIN: not logged / not found.
  std::int64_t device_log_ns = std::numeric_limits<std::int64_t>::min();
  /// The change happened within [device_log_ns - this, device_log_ns] (0 when not logged).
  std::int64_t device_log_resolution_ns = 0;
};

/// Pairs each edge with the device's log of its change: the first unused event of the same
/// direction inside the device-time window the clock probes predict (the probe nearest the
/// command with the lowest round trip first, the others when it predicts nothing; +-rtt, 100 ppm
/// of drift from the probe, 10 ms, and the event's own window). Edges left unpaired keep
/// INT64_MIN and get a line in `notes`.
void pair_device_log(std::vector<SwitchEdge>& edges, const std::vector<targets::UsbPowerEvent>& log,
                     const std::vector<targets::ClockProbe>& probes,
                     std::vector<std::string>& notes);

/// Writes `edges` as /relay/edges of `file` (replacing one there; docs/dataset.md).
Result<void> write_relay_edges(const std::filesystem::path& file,
                               const std::vector<SwitchEdge>& edges);

/// Everything a session does, in the order it does it.
struct SessionOptions {
  /// The capture: output file, duration (0 with a runner: until the runner is done), monitor
  /// settings, clock, progress callback, root attributes. `interrupt` ends everything early.
  CaptureOptions capture;
  std::string relay;  ///< relay spec routing the monitor to the device; empty: none
  int route = 0;      ///< the channel to route to
  std::vector<int> safe_on;
  targets::Target* target = nullptr;  ///< the device under test; null: a plain capture
  std::vector<std::pair<std::string, std::string>> pushes;  ///< LOCAL -> REMOTE before the run
  RunnerPlan runner;
  int probes_per_burst = 8;  ///< clock probes before and after the capture
  std::chrono::milliseconds telemetry_period{1000};
  std::string probe_clock;  ///< the host clock of the probes (attribute /target probe_clock)
  /// Extra attributes of /target, asked for when it is written (after the run).
  std::function<std::vector<dataset::Attribute>()> target_attributes;
  std::string telemetry_group = "telemetry";  ///< where the sampled telemetry goes
  /// Where the pulled marker file is kept; empty: next to the output, removed once stored.
  std::filesystem::path markers_copy;
  /// Called right before the capture starts (e.g. to set the simulated world's epoch).
  std::function<void()> before_capture;
  /// Called once the capture has ended and its probes are taken, before the relay is restored and
  /// the markers are pulled (e.g. to give USB power back to a device so its files can be read).
  std::function<void()> after_capture;
  /// Called with the number of token markers seen so far while the runner runs (a live line).
  std::function<void(std::uint64_t)> on_tokens;
  /// Called once the target is prepared and the pushes are done: may rewrite the runner's argv
  /// (e.g. wrap it in meltrig_stamp installed on the device). An error stops the session before
  /// anything is recorded (SessionStep::runner).
  std::function<Result<std::vector<std::string>>(targets::Target&, const std::vector<std::string>&)>
      wrap_runner;
  /// Called with the pulled markers and the runner's console output (stdout + stderr) before the
  /// markers are stored as /markers/runner: may write groups of its own into the file and replace
  /// the log that is stored (e.g. a stamped run's checked markers).
  std::function<Result<void>(dataset::RunRecord&, targets::MarkerLog&, const std::string&)>
      before_store_markers;
  /// USB power switches made while the monitor captures, in order, through `set_usb` (the
  /// device's hub port; required when this is not empty). Each one made is recorded with the
  /// device's log of it (Target::usb_power_log, read after the run) and stored as /relay/edges.
  std::vector<UsbSwitch> usb_switches;
  std::function<Result<void>(bool on)> set_usb;
};

/// What went wrong before anything was recorded, by step (for messages naming the input).
enum class SessionStep { target, push, runner, relay, monitor, output };

struct SessionError {
  SessionStep step;
  Error error;
  std::string subject;  ///< the target, push, relay spec or monitor that failed
};

/// What a session did. The capture file exists whenever `capture` is set.
struct SessionResult {
  Result<CaptureSummary> capture = Error{Errc::cancelled, "capture did not run"};
  dataset::TargetRecord record;  ///< what was recorded about the target (if there is one)
  std::optional<targets::MarkerLog> markers;
  std::optional<Error> marker_error;    ///< pulling or parsing the marker file failed
  std::string run_error;                ///< the runner failed, timed out or exited non-zero
  std::string runner_output;            ///< the runner's stdout followed by its stderr
  std::optional<Error> relay_error;     ///< the relay did not take its safe state back
  std::string relay_safe_state;         ///< the safe state restored, e.g. "all off"
  std::optional<Error> store_error;     ///< writing markers/telemetry/target/edges failed
  std::vector<SwitchEdge> edges;        ///< switches made while capturing (/relay/edges)
  std::vector<std::string> edge_notes;  ///< switches not made, or not found in the device's log
  std::uint64_t token_markers() const;
};

/// One session. run() may be called again (a sweep): each call is a complete run into
/// options().capture.output, which must not exist yet.
class Session {
 public:
  explicit Session(SessionOptions options) : opt_(std::move(options)) {}

  /// Runs the session on `monitor` (not yet opened; opened and closed here). `interrupt` (Ctrl-C)
  /// ends the capture as interrupted and terminates the runner; what was recorded is stored. A
  /// SessionError only when nothing was recorded: the target, a push, the relay or the monitor
  /// failed first.
  std::variant<SessionResult, SessionError> run(Monitor& monitor, std::stop_token interrupt);

  const SessionOptions& options() const { return opt_; }

 private:
  SessionOptions opt_;
};

/// Takes `n` clock probes back to back; successes are appended to rec.probes, failures counted.
void take_probes(targets::Target& target, int n, dataset::TargetRecord& rec);

}  // namespace meltrig::rig
