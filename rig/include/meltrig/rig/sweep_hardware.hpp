// The bench of a sweep on real instruments and devices: monitors and relays from their specs
// (registry), each device a target from its spec (local, ssh, adb), kept for the whole sweep.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "meltrig/rig/sweep.hpp"
#include "meltrig/targets/target.hpp"

namespace meltrig::rig {

class HardwareBench final : public SweepBench {
 public:
  explicit HardwareBench(const Plan& plan) : plan_(plan) {}
  const Clock& clock() const override { return SteadyClock::instance(); }
  Result<std::unique_ptr<Monitor>> monitor(const PlanDevice& device) override;
  Result<void> prepare(const SweepRun& run, const PlanDevice& device, const PlanWorkload& workload,
                       SessionOptions& so) override;
  /// The device's `temperature_series` telemetry reading.
  Result<double> temperature_c(const PlanDevice& device) override;

 private:
  Result<targets::Target*> target(const PlanDevice& device);
  const Plan& plan_;
  std::map<std::string, std::unique_ptr<targets::Target>> targets_;
};

}  // namespace meltrig::rig
