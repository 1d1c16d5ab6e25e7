// Clock sync building blocks on synthetic evidence whose truth is set here: the Huber fit with
// outliers and late points, piecewise maps with a rate change and a suspend, clock relations from
// triples, probe bursts, edge location under a rail, the activity the markers imply, relay edges.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "meltrig/sync/sync.hpp"

namespace {

using namespace meltrig::sync;

/// Points of target = 3e9 + 1.00005 x device (50 ppm), with Gaussian noise.
std::vector<SyncPoint> line_points(std::size_t n, double sd_ns, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, sd_ns);
  std::vector<SyncPoint> pts;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t d = 1'000'000'000'000 + static_cast<std::int64_t>(i) * 1'000'000'000;
    const double t = 3e9 + 1.00005 * static_cast<double>(d - 1'000'000'000'000);
    pts.push_back({d, std::llround(t + g(rng)), static_cast<std::int64_t>(sd_ns),
                   EvidenceKind::pulse_edge, false, static_cast<std::uint32_t>(i)});
  }
  return pts;
}

double truth_at(std::int64_t d) {
  return 3e9 + 1.00005 * static_cast<double>(d - 1'000'000'000'000);
}

}  // namespace

TEST_CASE("sync: Huber fit recovers offset and rate through 10% gross outliers and flags them") {
  auto pts = line_points(200, 20'000, 1);
  for (std::size_t i = 0; i < pts.size(); i += 10)
    pts[i].target_ns += 5'000'000;  // a wrong pulse match, 5 ms off
  auto f = robust_line_fit(pts);
  REQUIRE(f.has_value());
  CHECK(std::abs(f->rate - 1.00005) < 1e-7);
  CHECK(std::abs(f->eval(pts[100].device_ns) - truth_at(pts[100].device_ns)) < 10'000.0);
  CHECK(f->outliers == 20);
  for (std::size_t i = 0; i < pts.size(); i += 10)
    CHECK(f->outlier[i]);
  // the plain average of the residuals would be 500 us off; the robust one stays near the noise
  CHECK(f->residual_rms_ns < 40'000.0);
}

TEST_CASE("sync: late-biased points get their own offset, the line follows the on-time ones") {
  auto pts = line_points(400, 5'000, 2);
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> lat(std::log(20'000.0), 0.8);
  for (std::size_t i = 1; i < pts.size(); i += 2) {
    pts[i].late_biased = true;
    pts[i].target_ns += std::llround(lat(rng));
  }
  auto f = robust_line_fit(pts);
  REQUIRE(f.has_value());
  CHECK(std::abs(f->eval(pts[200].device_ns) - truth_at(pts[200].device_ns)) < 2'000.0);
  CHECK(f->latency_ns > 15'000.0);
  CHECK(f->latency_ns < 35'000.0);
}

TEST_CASE("sync: piecewise map splits at a rate change and breaks at a suspend") {
  std::vector<SyncPoint> pts;
  const std::int64_t d0 = 500'000'000'000;
  for (std::uint32_t i = 0; i < 400; ++i) {
    const std::int64_t d = d0 + static_cast<std::int64_t>(i) * 500'000'000;  // 200 s
    // rate error 0 then 40 ppm from 100 s on; a suspend between 150 and 151 s of device time
    // (monotonic stands still while the monitor runs on 4 s)
    double t = static_cast<double>(d - d0);
    if (d - d0 > 100'000'000'000) t += 40e-6 * static_cast<double>(d - d0 - 100'000'000'000);
    if (d - d0 >= 151'000'000'000) t += 4e9;
    if (d - d0 > 150'000'000'000 && d - d0 < 151'000'000'000) continue;
    pts.push_back({d, std::llround(t), 1'000, EvidenceKind::pulse_edge, false, i / 4});
  }
  const std::vector<ClockBreak> br{{d0 + 150'000'000'000, d0 + 151'000'000'000, "suspend"}};
  auto m = fit_piecewise(pts, DeviceClock::monotonic, TargetClock::monitor, br);
  REQUIRE(m.has_value());
  REQUIRE(m->segments.size() >= 3);
  bool suspend_seen = false;
  for (const MapSegment& s : m->segments)
    suspend_seen = suspend_seen || s.break_before == "suspend";
  CHECK(suspend_seen);
  CHECK_FALSE(m->map(d0 + 150'500'000'000).has_value());  // inside the suspend: not mapped
  // a kink is no line: within a few s of it the error is tens of us (a split keeps 4 sources, 8 s
  // of these points, a side), elsewhere a few us; the bound covers both
  for (const SyncPoint& p : pts) {
    auto r = m->map(p.device_ns);
    REQUIRE(r.has_value());
    const bool near_kink = std::abs(p.device_ns - d0 - 100'000'000'000) < 8'000'000'000;
    CHECK(std::abs(r->target_ns - p.target_ns) < (near_kink ? 60'000 : 5'000));
    CHECK(std::abs(r->target_ns - p.target_ns) <= r->bound_ns);
  }
}

TEST_CASE("sync: too little evidence is an error naming the clock and the target") {
  std::vector<SyncPoint> two{{1, 1, 1, EvidenceKind::probe, false, 0},
                             {2, 2, 1, EvidenceKind::probe, false, 1}};
  auto m = fit_piecewise(two, DeviceClock::boottime, TargetClock::host_steady, {});
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().message.find("boottime") != std::string::npos);
  CHECK(m.error().message.find("host_steady") != std::string::npos);
}

TEST_CASE("sync: clock relations find a suspend and a realtime step and convert around them") {
  std::vector<Triple> t;
  std::int64_t mono = 1'000'000'000'000, boot = mono + 50'000'000'000,
               real = 1'800'000'000'000'000'000;
  for (int k = 0; k < 10; ++k) {
    if (k == 4) boot += 7'000'000'000, real += 7'000'000'000;  // 7 s suspend
    if (k == 7) real -= 15'000'000;                            // wall clock set back 15 ms
    t.push_back({mono, boot, real});
    mono += 1'000'000'000, boot += 1'000'000'000, real += 1'000'000'000;
  }
  ClockRelations rel(t);
  auto br = rel.mono_breaks(true, true);
  REQUIRE(br.size() == 2);
  CHECK(br[0].why == "suspend");
  CHECK(br[0].from_ns == t[3].mono_ns);
  CHECK(br[1].why == "realtime step");
  CHECK(rel.convert(t[1].mono_ns + 5, DeviceClock::boottime) == t[1].boot_ns + 5);
  CHECK(rel.convert(t[5].mono_ns + 5, DeviceClock::boottime) == t[5].boot_ns + 5);
  CHECK_FALSE(rel.convert(t[3].mono_ns + 5, DeviceClock::boottime).has_value());
  CHECK(rel.convert(t[8].mono_ns, DeviceClock::realtime) == t[8].real_ns);
  CHECK_FALSE(rel.convert(t[6].mono_ns + 5, DeviceClock::realtime).has_value());
  CHECK(rel.convert(t[6].mono_ns + 5, DeviceClock::boottime) == t[6].boot_ns + 5);
}

TEST_CASE("sync: probe bursts keep the lowest RTT and the true offset lies within +-RTT/2") {
  std::vector<Probe> probes;
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<std::int64_t> lat(200'000, 3'000'000);
  const std::int64_t dev_minus_host = 123'456'789'012;
  for (int b = 0; b < 5; ++b)
    for (int i = 0; i < 8; ++i) {
      const std::int64_t t0 = 10'000'000'000LL * b + 20'000'000LL * i, up = lat(rng),
                         down = lat(rng);
      probes.push_back({t0, t0 + up + dev_minus_host, t0 + up + down});
    }
  auto pts = probe_points(probes);
  REQUIRE(pts.size() == 5);
  for (const SyncPoint& p : pts) {
    const std::int64_t host_true = p.device_ns - dev_minus_host;
    const double half_rtt = std::sqrt(3.0) * static_cast<double>(p.sigma_ns);
    CHECK(std::abs(static_cast<double>(p.target_ns - host_true)) <= half_rtt + 1.0);
  }
}

TEST_CASE("sync: an edge behind a 50 us rail is placed to a few us, tau comes from the edges") {
  // 200 steps at 5 kHz, each at a random phase, through a first-order rail, point-sampled
  const double period = 200e-6, tau = 50e-6;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> phase(0.0, 1.0);
  std::normal_distribution<double> noise(0.0, 0.002);
  std::vector<EdgeFix> fixes;
  std::vector<double> truth;
  std::vector<float> s;
  for (int k = 0; k < 200; ++k) {
    const double edge = 100.0 + phase(rng);  // in samples, within a 200-sample block
    for (int i = 0; i < 200; ++i) {
      const double x = (i - edge) * period;
      const bool rising = k % 2 == 0;
      const double v = x <= 0.0 ? 0.0 : 1.0 - std::exp(-x / tau);
      s.push_back(static_cast<float>((rising ? v : 1.0 - v) + noise(rng)));
    }
    truth.push_back(200.0 * k + edge);
  }
  Trace tr{std::span<const float>(s), 5000.0, 0};
  for (int k = 0; k < 200; ++k)
    fixes.push_back(find_edge(tr, {200.0 * k + 100.0, 3.0, k % 2 == 0, 40.0, 40.0, 0.3}));
  for (const EdgeFix& f : fixes)
    REQUIRE(f.ok);
  const double est = estimate_tau(fixes) * period;
  CHECK(est > 40e-6);
  CHECK(est < 60e-6);
  std::vector<double> err;
  for (int k = 0; k < 200; ++k) {
    apply_rail(fixes[static_cast<std::size_t>(k)], est / period);
    err.push_back(
        std::abs(fixes[static_cast<std::size_t>(k)].pos - truth[static_cast<std::size_t>(k)]) *
        period);
  }
  std::sort(err.begin(), err.end());
  // tau from 200 edges is known to ~5 us, which moves an edge by up to ~2x that
  CHECK(err[err.size() / 2] < 15e-6);
  CHECK(err[err.size() * 95 / 100] < 40e-6);
}

TEST_CASE("sync: markers imply busy spans: load through the last token, and busy chips") {
  std::vector<Mark> m{{0, MarkKind::run_start},     {100, MarkKind::sync_start, 0b1011, 4, 10},
                      {150, MarkKind::sync_end},    {200, MarkKind::load_start},
                      {300, MarkKind::load_end},    {301, MarkKind::prefill_start},
                      {400, MarkKind::prefill_end}, {450, MarkKind::token},
                      {500, MarkKind::token},       {600, MarkKind::run_end}};
  auto b = busy_spans(m);
  REQUIRE(b.size() == 4);
  CHECK(b[0].from_ns == 100);
  CHECK(b[0].pulse_chip);
  CHECK(b[1].from_ns == 120);
  CHECK(b[2].to_ns == 140);
  CHECK(b[3].from_ns == 200);
  CHECK(b[3].to_ns == 500);
  CHECK_FALSE(b[3].pulse_chip);
}

TEST_CASE("sync: a relay edge the device logged ties its clock to the step the monitor saw") {
  std::vector<float> s(50'000, 0.1f);
  const double step_at = 20'000.4;  // samples, at 5 kHz: 4.00008 s
  for (std::size_t i = 0; i < s.size(); ++i)
    if (static_cast<double>(i) > step_at) s[i] = 0.9f;
  Trace tr{std::span<const float>(s), 5000.0, 0};
  const std::int64_t host0 = 9'000'000'000;
  // the host commanded it 30 ms before; the device logged it at 77 s on its clock
  std::vector<RelayEdge> e{{host0 + 4'000'000'000 - 30'000'000, 0, true, 77'000'000'000, 1'000}};
  std::vector<std::string> notes;
  auto pts = relay_points(tr, e, HostMonitorLink{host0, 1'000'000}, notes);
  REQUIRE(pts.size() == 1);
  CHECK(notes.empty());
  CHECK(pts[0].device_ns == 77'000'000'000 - 500);  // the middle of the device's window
  CHECK(std::abs(pts[0].target_ns - std::llround(step_at * 200'000.0)) <= 200'000);
  CHECK(pts[0].kind == EvidenceKind::relay_edge);
}
