// LocalTarget: the device under test is this machine. Programs run as child processes (argv
// only), files are copied, telemetry is read from a sysfs root that tests point at a fake tree.
#pragma once

#include <filesystem>
#include <mutex>

#include "meltrig/targets/sysfs_telemetry.hpp"
#include "meltrig/targets/target.hpp"

namespace meltrig::targets {

/// Settings of a LocalTarget.
struct LocalConfig {
  /// Working directory: relative device paths resolve here and programs start here (empty: the
  /// process's current directory). prepare() creates it.
  std::filesystem::path root;
  /// Where thermal_zone*, cpufreq, devfreq, power_supply and hwmon files are read.
  std::filesystem::path sysfs_root = "/sys";
  /// meltrig_probe for probe_clock(); empty: the clocks are read in-process (no spawn).
  std::filesystem::path probe_path;
  CurrentUnit battery_current_unit = CurrentUnit::automatic;
  /// Deadline for probe and file calls.
  milliseconds call_timeout{10000};
};

class LocalTarget final : public Target {
 public:
  explicit LocalTarget(LocalConfig config);

  std::string name() const override { return "local"; }
  std::string describe() const override;
  Result<void> prepare() override;
  Result<void> push(const std::filesystem::path& local, const std::string& remote) override;
  Result<void> pull(const std::string& remote, const std::filesystem::path& local) override;
  Result<RunOutput> run(const std::vector<std::string>& argv, milliseconds timeout) override;
  Result<std::unique_ptr<RunHandle>> launch(const std::vector<std::string>& argv,
                                            const std::vector<std::string>& env = {}) override;
  Result<std::string> read_file(const std::string& remote, std::uint64_t offset = 0) override;
  Result<TelemetrySnapshot> read_telemetry() override;
  Result<ClockProbe> probe_clock() override;
  Result<void> teardown() override { return {}; }

  /// `remote` as a host path: absolute as given, relative under root.
  std::filesystem::path resolve(const std::string& remote) const;

 private:
  LocalConfig cfg_;
  std::mutex unit_mu_;
  CurrentUnitState current_unit_;
};

/// A RunHandle over a local Subprocess (also used by the remote targets for the local client).
class LocalRunHandle final : public RunHandle {
 public:
  explicit LocalRunHandle(std::unique_ptr<Subprocess> p) : p_(std::move(p)) {}
  ~LocalRunHandle() override;
  Result<RunOutput> wait(milliseconds timeout) override;
  Result<RunOutput> terminate(milliseconds grace = milliseconds(2000)) override;
  bool running() override { return p_->running(); }

 private:
  std::unique_ptr<Subprocess> p_;
};

}  // namespace meltrig::targets
