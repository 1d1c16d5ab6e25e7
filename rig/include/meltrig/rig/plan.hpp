// A sweep plan: the rig (monitors, relays and the device each channel powers, switchable USB hubs
// and the port each device hangs on), the devices, the workloads, repetitions and their order,
// cool-down, baseline windows, the USB-cut protocol, the sync method and the output directory.
// Read from TOML (docs/plan.md) and validated as a whole before anything is switched: every error
// names the plan file, the line and the key ("plan.toml:12: devices.phone_a.relay: ...").
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::rig {

/// A relay board or a switchable USB hub and the device each channel (port) serves.
struct PlanSwitch {
  std::string name;                     ///< the table's name under rig.relays / rig.hubs
  std::string spec;                     ///< driver spec; PORT "emulated" on a simulated bench
  std::map<std::string, int> channels;  ///< device -> channel (relay) or port (hub)
  std::map<std::string, std::uint32_t> lines;  ///< device -> line of its entry
  std::vector<int> safe_on;                    ///< channels on in the safe state (relays)
  std::uint32_t line = 0;
};

struct PlanMonitor {
  std::string name;
  std::string spec;
  std::uint32_t line = 0;
};

/// One device under test.
struct PlanDevice {
  std::string name;
  std::string target;              ///< "sim", or a target spec (local, ssh:..., adb...)
  std::filesystem::path scenario;  ///< simulated devices: the scenario TOML (resolved path)
  std::uint32_t scenario_line = 0;
  std::string monitor;  ///< name of a rig.monitors entry
  double supply_v = 4.0;
  std::string temperature_series = "thermal/soc";  ///< telemetry series the cool-down reads
  std::string relay;                               ///< the relay routing power to it (empty: none)
  int relay_channel = 0;
  std::string hub;  ///< the hub its USB hangs on (empty: none)
  int hub_port = 0;
  std::uint32_t line = 0;
};

/// What runs on the device.
struct PlanWorkload {
  std::string name;
  std::string model;
  /// The runner's argv; "{model}", "{prompt}" and "{markers}" are substituted per run.
  std::vector<std::string> argv;
  std::vector<std::string> prompts;  ///< the prompt set; run r uses prompts[r % size]
  std::string markers = "/data/local/tmp/meltrig.markers";  ///< marker file on the device
  double timeout_s = 600.0;
  double idle_before_s = 2.0, idle_after_s = 2.0;  ///< capture around the runner (real devices)
  // A simulated device's model of the workload (the scenario's [run] with these replaced).
  int sim_prompt_tokens = 64;
  int sim_output_tokens = 128;
  double sim_throughput_scale = 1.0;  ///< scales every DVFS step's tokens/s
  double sim_power_scale = 1.0;       ///< scales every DVFS step's power
  std::uint32_t line = 0;
};

enum class CooldownMode { none, time, temperature };

struct PlanCooldown {
  CooldownMode mode = CooldownMode::none;
  double time_s = 0.0;       ///< mode time: wait this long (device time on a simulated bench)
  double to_c = 0.0;         ///< mode temperature: until the device reads at most this
  double timeout_s = 600.0;  ///< mode temperature: give up waiting (the run goes ahead, noted)
  double poll_s = 5.0;       ///< mode temperature: read the temperature this often
};

struct PlanBaseline {
  double window_s = 4.0;  ///< idle window on each side of a repetition (analysis)
  double guard_s = 0.5;   ///< kept clear of the run
};

struct PlanUsbCut {
  bool enabled = false;   ///< cut the device's hub port while measuring, restore it after
  double settle_s = 0.5;  ///< wait after switching the port before the capture
  /// Capture seconds at which the port is switched during the capture, alternately restored and
  /// cut again (sync evidence: each switch is a relay edge, docs/sync.md). Ascending; needs
  /// enabled.
  std::vector<double> toggles_s;
};

enum class RunOrder { interleaved, blocked };

struct Plan {
  std::string source;  ///< the file as named in messages
  std::string digest;  ///< FNV-1a 64 of the plan text, 16 hex digits
  std::string name;
  std::filesystem::path output;  ///< output directory (relative: to the working directory)
  std::uint64_t seed = 1;
  int repetitions = 1;
  RunOrder order = RunOrder::interleaved;
  bool shuffle = false;
  std::string sync_method = "provisional";
  double sim_speed = 10.0;  ///< simulated bench: virtual clock speed
  std::vector<PlanMonitor> monitors;
  std::vector<PlanSwitch> relays;
  std::vector<PlanSwitch> hubs;
  std::vector<PlanDevice> devices;  ///< in file order
  std::vector<PlanWorkload> workloads;
  PlanCooldown cooldown;
  PlanBaseline baseline;
  PlanUsbCut usb_cut;

  /// True when every device is simulated (a plan is all simulated or all real).
  bool simulated() const;
  const PlanDevice* device(std::string_view name) const;
  const PlanWorkload* workload(std::string_view name) const;
  const PlanMonitor* monitor(std::string_view name) const;
  const PlanSwitch* relay(std::string_view name) const;
  const PlanSwitch* hub(std::string_view name) const;
};

/// Parses and validates a plan. `source` names it in messages; relative paths (scenario,
/// output) are resolved against `base_dir`. parse_error "SOURCE:LINE: KEY: problem" for the
/// first problem found: syntax, an unknown key, a wrong type, a value out of range, a device or
/// monitor name that is not defined, a channel or port given to two devices.
Result<Plan> parse_plan(std::string_view text, const std::string& source,
                        const std::filesystem::path& base_dir);
/// Reads and parses a plan file (not_found / io_error naming the path).
Result<Plan> load_plan(const std::filesystem::path& path);

}  // namespace meltrig::rig
