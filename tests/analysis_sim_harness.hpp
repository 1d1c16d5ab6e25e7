// Test harness for the analysis: turns a simulated world into what the analysis takes (monitor
// samples, events and telemetry on the monitor's time base). The world brings the bench's physics
// (rail low-pass, governor ramps, wake latency, background bursts: docs/simulated-bench.md); the
// harness adds a clock map with an offset and drift error, as a sync library would hand it over.
// The truth is read only by the tests' assertions, never by the estimates.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/analysis/adapter.hpp"
#include "meltrig/analysis/energy.hpp"
#include "meltrig/analysis/inputs.hpp"
#include "meltrig/fixtures/sim_world.hpp"

namespace meltrig::test {

struct BenchFlaws {
  double sync_offset_s = 20e-6;  ///< clock map error: offset ...
  double sync_drift_ppm = 0.2;   ///< ... plus a rate error
  double sync_bound_s = 50e-6;   ///< what the map claims (events add 3 x marker jitter)
  double extra_marker_sd_s = 0;  ///< independent extra marker error (tests of refinement)
  double rate_hz = 0.0;          ///< 0: the scenario's monitor rate
  std::uint64_t seed = 7;
};

struct SimCapture {
  double rate_hz = 0.0;
  double ppm = 0.0;
  std::vector<float> power_w;
  std::vector<analysis::Event> events;
  std::vector<analysis::TimedSeries> telemetry;
  std::vector<analysis::Window> usb;  ///< monitor s, where USB feeds the device
  double to_monitor(double t_true) const { return t_true * (1.0 + ppm * 1e-6); }
};

// What the monitor samples: supply current (after the rail, less any USB share) x voltage at the
// monitor's crystal-shifted sample instants, plus ADC noise.
inline void sample_power(const fixtures::sim::World& w, SimCapture& c, std::mt19937_64& rng) {
  const double v = w.supply_voltage_v();
  const double adc = w.scenario().monitor.adc_noise_a;
  std::normal_distribution<double> noise(0.0, 1.0);
  const double dt = 1.0 / (c.rate_hz * (1.0 + c.ppm * 1e-6));
  const auto n = static_cast<std::size_t>(w.duration_s() / dt);
  c.power_w.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) * dt;
    c.power_w[i] = static_cast<float>(w.supply_current_a(t) * v + adc * v * noise(rng));
  }
}

// The world's own clock as the clock map, with an offset and drift error: what a sync library
// with that error would hand over. Only the monotonic clock is covered.
inline analysis::ClockMap world_map(const fixtures::sim::World& w, const SimCapture& c,
                                    const BenchFlaws& f, std::mt19937_64& rng) {
  return [&w, &c, &f, &rng](std::string_view clock,
                            std::int64_t ns) -> std::optional<analysis::MappedTime> {
    if (clock != "monotonic") return std::nullopt;
    std::normal_distribution<double> gauss(0.0, 1.0);
    double m = c.to_monitor(w.true_time_of_mono(ns));
    m += f.sync_offset_s + f.sync_drift_ppm * 1e-6 * m + f.extra_marker_sd_s * gauss(rng);
    return analysis::MappedTime{m, f.sync_bound_s};
  };
}

inline std::vector<analysis::Event> map_events(const fixtures::sim::World& w, const SimCapture& c,
                                               const BenchFlaws& f, std::mt19937_64& rng) {
  const double jitter = w.scenario().clocks.jitter_ns * 1e-9;
  auto ev = analysis::events_from_markers(w.markers(), world_map(w, c, f, rng),
                                          3.0 * (jitter + f.extra_marker_sd_s));
  REQUIRE_MESSAGE(ev.ok(), (ev.ok() ? "" : ev.error().describe()));
  return std::move(ev).value();
}

inline void map_telemetry(const fixtures::sim::World& w, SimCapture& c) {
  const auto& scn = w.scenario();
  BenchFlaws exact;
  exact.sync_offset_s = 0.0;
  exact.sync_drift_ppm = 0.0;
  std::mt19937_64 unused(0);
  c.telemetry = analysis::series_from_telemetry(w.telemetry(), world_map(w, c, exact, unused));
  for (analysis::TimedSeries& t : c.telemetry) {
    if (t.name == "power/fuel_gauge_current") {  // the gauge's documented window and lag
      t.window_s = scn.fuel_gauge.window_s;
      t.lag_s = scn.fuel_gauge.lag_s;
    } else if (t.name.starts_with("power/rail/")) {
      t.window_s = scn.rails.averaging_samples * scn.rails.conversion_ms * 1e-3;
    }
  }
}

inline SimCapture capture_world(const fixtures::sim::World& w, const BenchFlaws& f = {}) {
  SimCapture c;
  const auto& scn = w.scenario();
  c.rate_hz = f.rate_hz > 0 ? f.rate_hz : scn.monitor.sample_rate_hz;
  c.ppm = scn.monitor.crystal_ppm;
  std::mt19937_64 rng(f.seed);
  sample_power(w, c, rng);
  c.events = map_events(w, c, f, rng);
  map_telemetry(w, c);
  const double cut = scn.usb.hub_cut_s;
  if (scn.usb.supply_fraction > 0) {
    for (const auto& u : scn.usb.connected) {
      double to = cut >= 0 ? std::min(u.to_s, cut) : u.to_s;
      if (to > u.from_s) c.usb.push_back({c.to_monitor(u.from_s), c.to_monitor(to)});
    }
  }
  return c;
}

}  // namespace meltrig::test
