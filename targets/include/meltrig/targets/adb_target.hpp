// AdbTarget: an Android device driven through the `adb` binary (`-s SERIAL`). `adb shell` joins
// its arguments with spaces and runs them in the device's sh, so device argv are sh_join()ed as
// for ssh (the same RemoteShellTarget code). Files move with `adb push` / `adb pull` (no shell).
// Battery telemetry comes from power_supply sysfs (current_now, voltage_now) through the probe,
// and from `dumpsys battery`. Tests drive it with fixtures/adb_standin/fake_adb.py, which replays
// hand-written transcripts in the shape of real adb output (docs/targets.md).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "meltrig/targets/remote_shell_target.hpp"

namespace meltrig::targets {

/// Settings of an AdbTarget.
struct AdbConfig {
  /// The adb program and any global options before `-s` (e.g. {"adb", "-H", "host"}), or a
  /// stand-in such as {"python3", "fake_adb.py", "--transcript", ...}.
  std::vector<std::string> adb = {"adb"};
  std::string serial;  ///< -s SERIAL; empty: adb's single attached device
  std::string work_dir = "/data/local/tmp/meltrig";
  /// Host copy of meltrig_probe built for the device (NDK); prepare() pushes it to
  /// work_dir/meltrig_probe. Empty: set remote.probe_path to a probe already on the device.
  std::filesystem::path local_probe;
  RemoteSettings remote;
};

/// What `dumpsys battery` reports (absent fields: nullopt).
struct DumpsysBattery {
  std::optional<bool> ac_powered, usb_powered, wireless_powered;
  std::optional<int> status;        ///< BatteryManager.BATTERY_STATUS_*: 2 charging, 3 discharging
  std::optional<int> level;         ///< percent (of scale)
  std::optional<double> voltage_v;  ///< "voltage: 4123" is mV
  std::optional<double> temperature_c;    ///< "temperature: 312" is tenths of degC
  std::optional<double> current_now_raw;  ///< "current now:" where the vendor prints it (raw)
  std::string technology;
};

/// Parses `dumpsys battery` output ("Current Battery Service state:" then "  key: value" lines).
/// parse_error naming `source` when the header is missing.
Result<DumpsysBattery> parse_dumpsys_battery(std::string_view text, std::string_view source);

/// How late Android's healthd logs a USB power change (the uevent reaches it and it logs): the
/// window stated for each event read from the kernel log. An assumed allowance, not a measurement.
inline constexpr std::int64_t kHealthdLogWindowNs = 100'000'000;

/// USB power changes in `adb logcat -b kernel -v monotonic` output: healthd's battery lines
/// ("SECONDS.MILLIS ... healthd: battery l=.. ... chg=u"), where `chg=` lists the chargers
/// present (u: USB). An event for each line whose USB state differs from the line before (the
/// first line sets the state). Lines that are not healthd's are skipped.
std::vector<UsbPowerEvent> parse_healthd_usb_log(std::string_view text);

class AdbTarget final : public RemoteShellTarget {
 public:
  explicit AdbTarget(AdbConfig config);

  std::string name() const override;
  std::string describe() const override;
  /// `get-state` must say "device"; creates work_dir and pushes the probe.
  Result<void> prepare() override;
  Result<void> push(const std::filesystem::path& local, const std::string& remote) override;
  Result<void> pull(const std::string& remote, const std::filesystem::path& local) override;
  Result<void> teardown() override {
    stop_probe_session();
    return {};
  }

  /// `adb logcat -d -s TAG`: the buffered log lines of one tag (threadtime format), then returns.
  Result<std::string> logcat(const std::string& tag);
  /// `dumpsys battery`, parsed.
  Result<DumpsysBattery> dumpsys_battery();
  /// `adb logcat -d -b kernel -v monotonic`, parsed by parse_healthd_usb_log.
  Result<std::vector<UsbPowerEvent>> usb_power_log() override;

 protected:
  std::vector<std::string> transport_argv(const std::string& command_line) const override;

 private:
  std::vector<std::string> adb_argv(std::initializer_list<std::string> rest) const;
  AdbConfig cfg_;
};

}  // namespace meltrig::targets
