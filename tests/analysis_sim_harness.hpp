// Test harness for the analysis: turns a simulated world into what the analysis takes (monitor
// samples, events and telemetry on the monitor's time base), with the imperfections of a real
// bench laid on top: a clock map with an offset and drift error, a rail low-pass, wake latency
// between a token's power edge and its marker, background bursts. The truth for comparisons is
// computed here and handed only to the test's assertions, never to the estimates.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "meltrig/analysis/adapter.hpp"
#include "meltrig/analysis/energy.hpp"
#include "meltrig/analysis/inputs.hpp"
#include "meltrig/fixtures/sim_world.hpp"

namespace meltrig::test {

struct BenchFlaws {
  double sync_offset_s = 20e-6;  ///< clock map error: offset ...
  double sync_drift_ppm = 0.2;   ///< ... plus a rate error
  double sync_bound_s = 50e-6;   ///< what the map claims (added to 3 x marker jitter)
  double extra_marker_sd_s = 0;  ///< independent extra marker error (tests of refinement)
  double rail_tau_s = 0.0;       ///< first-order supply low-pass (0: ideal)
  double wake_median_s = 0.0;    ///< marker later than the power edge: log-normal latency
  double wake_p99_s = 0.0;
  double bursts_per_s = 0.0;  ///< Poisson background bursts, added to the device power
  double burst_w = 0.8;
  double burst_s = 5e-3;
  double rate_hz = 0.0;  ///< 0: the scenario's monitor rate
  std::uint64_t seed = 7;
};

struct SimCapture {
  double rate_hz = 0.0;
  double ppm = 0.0;
  std::vector<float> power_w;
  std::vector<analysis::Event> events;
  std::vector<analysis::TimedSeries> telemetry;
  std::vector<analysis::Window> usb;              ///< monitor s, where USB feeds the device
  std::vector<std::pair<double, double>> bursts;  ///< true s (start, end)
  double burst_w = 0.0;
  double to_monitor(double t_true) const { return t_true * (1.0 + ppm * 1e-6); }
  /// Burst energy inside [t0, t1] of true time (part of the device's real consumption).
  double burst_energy(double t0, double t1) const {
    double e = 0.0;
    for (auto [a, b] : bursts)
      e += burst_w * std::max(0.0, std::min(b, t1) - std::max(a, t0));
    return e;
  }
};

inline std::vector<std::pair<double, double>> make_bursts(double duration, const BenchFlaws& f,
                                                          std::mt19937_64& rng) {
  std::vector<std::pair<double, double>> out;
  if (f.bursts_per_s <= 0.0) return out;
  std::exponential_distribution<double> gap(f.bursts_per_s);
  // Bursts never overlap (a Poisson process of burst starts after each burst's end).
  for (double t = gap(rng); t < duration; t += f.burst_s + gap(rng))
    out.emplace_back(t, t + f.burst_s);
  return out;
}

inline void sample_power(const fixtures::sim::World& w, SimCapture& c, const BenchFlaws& f,
                         std::mt19937_64& rng) {
  const double v = w.supply_voltage_v();
  const double adc = w.scenario().monitor.adc_noise_a;
  std::normal_distribution<double> noise(0.0, 1.0);
  const auto n = static_cast<std::size_t>(w.duration_s() * c.rate_hz * (1.0 + c.ppm * 1e-6));
  c.power_w.resize(n);
  std::size_t b = 0;
  auto device = [&](double t) {
    while (b < c.bursts.size() && c.bursts[b].second < t)
      ++b;
    double extra = (b < c.bursts.size() && c.bursts[b].first <= t) ? f.burst_w : 0.0;
    return w.supply_current_a(t) * v + extra * (1.0 - w.usb_share(t));
  };
  const double dt_sample = 1.0 / (c.rate_hz * (1.0 + c.ppm * 1e-6));
  const int sub = f.rail_tau_s > 0.0 ? 20 : 1;
  const double h = dt_sample / sub, k = f.rail_tau_s > 0 ? 1.0 - std::exp(-h / f.rail_tau_s) : 1;
  double y = device(0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) * dt_sample;
    if (sub == 1) {
      y = device(t);
    } else {
      for (int s = sub - 1; s >= 0; --s)
        y += (device(t - s * h) - y) * k;
    }
    c.power_w[i] = static_cast<float>(y + adc * v * noise(rng));
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
                                          3.0 * (jitter + f.extra_marker_sd_s) + f.wake_p99_s);
  REQUIRE_MESSAGE(ev.ok(), (ev.ok() ? "" : ev.error().describe()));
  if (f.wake_median_s > 0 && f.wake_p99_s > f.wake_median_s) {  // markers late after edges
    std::normal_distribution<double> gauss(0.0, 1.0);
    const double sigma = std::log(f.wake_p99_s / f.wake_median_s) / 2.326;
    for (analysis::Event& e : *ev)
      if (e.kind == analysis::EventKind::token)
        e.t_s += f.wake_median_s * std::exp(sigma * gauss(rng));
  }
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
  c.burst_w = f.burst_w;
  std::mt19937_64 rng(f.seed);
  c.bursts = make_bursts(w.duration_s(), f, rng);
  sample_power(w, c, f, rng);
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
