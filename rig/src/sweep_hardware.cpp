// The bench of a sweep on real instruments: see sweep_hardware.hpp.
#include "meltrig/rig/sweep_hardware.hpp"

#include "meltrig/rig/registry.hpp"
#include "meltrig/targets/target_spec.hpp"

namespace meltrig::rig {
namespace {

/// "{model}", "{prompt}" and "{markers}" replaced in one argument.
std::string substitute(std::string arg,
                       const std::vector<std::pair<std::string, std::string>>& vars) {
  for (const auto& [k, v] : vars) {
    for (std::size_t at = arg.find(k); at != std::string::npos; at = arg.find(k, at + v.size()))
      arg.replace(at, k.size(), v);
  }
  return arg;
}

}  // namespace

Result<std::unique_ptr<Monitor>> HardwareBench::monitor(const PlanDevice& device) {
  auto spec = DeviceSpec::parse(plan_.monitor(device.monitor)->spec);
  if (!spec) return spec.error();
  return make_monitor(*spec);
}

Result<targets::Target*> HardwareBench::target(const PlanDevice& device) {
  auto it = targets_.find(device.name);
  if (it != targets_.end()) return it->second.get();
  auto t = targets::make_target(device.target);
  if (!t) return t.error();
  return (targets_[device.name] = std::move(*t)).get();
}

Result<void> HardwareBench::prepare(const SweepRun& run, const PlanDevice& device,
                                    const PlanWorkload& w, SessionOptions& so) {
  auto t = target(device);
  if (!t) return t.error();
  const std::string prompt =
      w.prompts.empty() ? ""
                        : w.prompts[static_cast<std::size_t>(run.repetition) % w.prompts.size()];
  const std::vector<std::pair<std::string, std::string>> vars{
      {"{model}", w.model}, {"{prompt}", prompt}, {"{markers}", w.markers}};
  so.target = *t;
  for (const std::string& a : w.argv)
    so.runner.argv.push_back(substitute(a, vars));
  so.runner.markers = w.markers;
  so.runner.idle_before_s = w.idle_before_s;
  so.runner.idle_after_s = w.idle_after_s;
  so.runner.timeout_s = w.timeout_s;
  so.capture.duration_s = 0;  // until the runner and the idle tail are done
  so.probe_clock =
      "host: CLOCK_MONOTONIC (steady) ns, same clock as the root attribute "
      "host_steady_clock_start_ns";
  return {};
}

Result<double> HardwareBench::temperature_c(const PlanDevice& device) {
  auto t = target(device);
  if (!t) return t.error();
  auto snap = (*t)->read_telemetry();
  if (!snap) return snap.error();
  const targets::TelemetryReading* r = snap->find(device.temperature_series);
  if (!r)
    return Error{Errc::not_found,
                 device.name + ": no telemetry series " + device.temperature_series};
  return r->value;
}

}  // namespace meltrig::rig
