// analysis: the streaming window integrator (exact energies of analytic traces, any chunking,
// gaps counted and never read as zero, windows outside the trace), snippets, and boundary
// refinement on synthetic steps with a rail low-pass, noise and bursts.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "meltrig/analysis/energy.hpp"
#include "meltrig/analysis/inputs.hpp"
#include "meltrig/analysis/refine.hpp"

namespace {

namespace an = meltrig::analysis;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// p(t) = 2 + 3 t sampled at `rate` for n samples; exact integral 2 (b - a) + 1.5 (b^2 - a^2).
std::vector<float> ramp(std::size_t n, double rate) {
  std::vector<float> p(n);
  for (std::size_t i = 0; i < n; ++i)
    p[i] = static_cast<float>(2.0 + 3.0 * static_cast<double>(i) / rate);
  return p;
}
double ramp_energy(double a, double b) {
  return 2 * (b - a) + 1.5 * (b * b - a * a);
}

an::WindowIntegrator run(const std::vector<float>& p, double rate, std::vector<an::Window> w,
                         std::size_t chunk, std::vector<double> probes = {}, double r = 0.0) {
  an::WindowIntegrator wi(rate, std::move(w), std::move(probes), r);
  for (std::size_t i = 0; i < p.size(); i += chunk) {
    auto part = std::span<const float>(p).subspan(i, std::min(chunk, p.size() - i));
    REQUIRE(wi.add(i, part).ok());
  }
  wi.finish();
  return wi;
}

}  // namespace

TEST_CASE("analysis energy: overlapping windows on a ramp are exact for every chunk size") {
  const double rate = 1000.0;
  auto p = ramp(2001, rate);  // 0 .. 2 s
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<an::Window> w = {{0.1234, 0.5678}, {0.0, 2.0},       {0.5, 0.5004},
                               {1.9, 1.2},       {0.3333, 1.7777}, {nan, 1.0}};
  for (std::size_t chunk : {1UL, 7UL, 1000UL, 5000UL}) {
    CAPTURE(chunk);
    auto wi = run(p, rate, w, chunk);
    CHECK(wi.window(0).energy_j == doctest::Approx(ramp_energy(0.1234, 0.5678)).epsilon(1e-6));
    CHECK(wi.window(1).energy_j == doctest::Approx(ramp_energy(0.0, 2.0)).epsilon(1e-6));
    CHECK(wi.window(2).energy_j == doctest::Approx(ramp_energy(0.5, 0.5004)).epsilon(1e-6));
    CHECK(wi.window(3).duration_s == 0.0);  // reversed window: empty, not negative
    CHECK(wi.window(4).energy_j == doctest::Approx(ramp_energy(0.3333, 1.7777)).epsilon(1e-6));
    CHECK(wi.window(4).peak_w == doctest::Approx(2 + 3 * 1.7777).epsilon(1e-6));
    REQUIRE(wi.window_count() == 6);
    CHECK(wi.window(5).energy_j == 0.0);  // a NaN edge: an empty window, never a crash
    CHECK(wi.window(5).covered_s == 0.0);
    CHECK_FALSE(wi.window(0).touches_gap());
  }
}

TEST_CASE("analysis energy: a gap is counted, skipped and flagged, never read as zero") {
  const double rate = 100.0;
  std::vector<float> p(201, 5.0f);  // 5 W for 2 s
  p[100] = kNaN;                    // intervals (0.99, 1.00) and (1.00, 1.01) are unknown
  auto wi = run(p, rate, {{0.5, 1.5}, {0.0, 0.9}, {1.2, 2.5}}, 64);
  const an::WindowStats& s = wi.window(0);
  CHECK(s.missing_samples == 1);
  CHECK(s.touches_gap());
  CHECK(s.covered_s == doctest::Approx(0.98));
  CHECK(s.energy_j == doctest::Approx(5.0 * 0.98));
  CHECK(s.mean_w() == doctest::Approx(5.0));  // the mean is over what was seen
  CHECK_FALSE(wi.window(1).touches_gap());
  // A window past the end of the trace: the part after the last sample is a gap.
  CHECK(wi.window(2).touches_gap());
  CHECK(wi.window(2).covered_s == doctest::Approx(0.8));
  CHECK(wi.window(2).energy_j == doctest::Approx(4.0));
}

TEST_CASE("analysis energy: absent samples between chunks are a gap, going back is refused") {
  const double rate = 10.0;
  std::vector<float> a(11, 2.0f), b(10, 2.0f);
  an::WindowIntegrator wi(rate, {{0.0, 3.0}});
  REQUIRE(wi.add(0, a).ok());   // samples 0..10
  REQUIRE(wi.add(20, b).ok());  // 11..19 absent
  auto back = wi.add(25, a);
  REQUIRE_FALSE(back.ok());
  CHECK(back.error().message.find("sample 25") != std::string::npos);
  wi.finish();
  const an::WindowStats& s = wi.window(0);
  CHECK(s.missing_samples == 9);
  CHECK(s.covered_s == doctest::Approx(1.0 + 0.9));
  CHECK(s.energy_j == doctest::Approx(2.0 * 1.9));
}

TEST_CASE("analysis energy: snippets re-integrate between any two instants exactly") {
  const double rate = 1000.0;
  auto p = ramp(2001, rate);
  auto wi = run(p, rate, {}, 333, {0.5, 1.5}, 0.01);
  for (double a : {0.4925, 0.5, 0.50555}) {
    for (double b : {1.4931, 1.5, 1.5099}) {
      auto s = an::between(an::state_at(wi.snippet(0), rate, a),
                           an::state_at(wi.snippet(1), rate, b), b - a);
      CHECK(s.energy_j == doctest::Approx(ramp_energy(a, b)).epsilon(1e-9));
      CHECK(s.covered_s == doctest::Approx(b - a).epsilon(1e-9));
    }
  }
}

TEST_CASE("analysis energy: integrate_power over one span still matches the trapezoid rule") {
  auto p = ramp(1001, 1000.0);
  auto e = an::integrate_power(p, 1000.0, 0.25, 0.75);
  CHECK(e.joules == doctest::Approx(ramp_energy(0.25, 0.75)).epsilon(1e-9));
  CHECK(e.seconds == doctest::Approx(0.5));
}

namespace {

// A step from 3 W to 3.3 W at `edge` seen through a first-order rail (tau), sampled at 5 kHz
// with Gaussian noise, optionally with a 0.8 W burst.
std::vector<float> step_trace(double edge, double tau, double noise, double burst_at,
                              std::uint64_t seed) {
  const double rate = 5000.0;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, noise);
  std::vector<float> p(200);
  for (std::size_t i = 0; i < p.size(); ++i) {
    double t = static_cast<double>(i) / rate, v = 3.0;
    if (t >= edge) v = 3.3 - 0.3 * (tau > 0 ? std::exp(-(t - edge) / tau) : 0.0);
    if (t >= burst_at && t < burst_at + 0.005) v += 0.8;
    p[i] = static_cast<float>(v + g(rng));
  }
  return p;
}

}  // namespace

TEST_CASE("analysis refine: a visible step narrows the boundary inside the marker's interval") {
  const double rate = 5000.0;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> U(0.0181, 0.0219);
  int refined = 0, closer = 0, trials = 200;
  for (int k = 0; k < trials; ++k) {
    const double edge = U(rng), marker = edge + 300e-6 * (k % 2 ? 1 : -1), u = 500e-6;
    auto p = step_trace(edge, 50e-6, 0.005, 1.0, 100 + k);
    auto wi = run(p, rate, {}, 50, {marker}, 0.004);
    an::Refinement r = an::refine_boundary(wi.snippet(0), rate, marker, u, {});
    CHECK(std::abs(r.t_s - marker) <= u + 1e-12);  // never outside the marker's interval
    refined += r.refined ? 1 : 0;
    closer += std::abs(r.t_s - edge) < std::abs(marker - edge) ? 1 : 0;
    CHECK(std::abs(r.t_s - edge) <= 300e-6);  // within a sample interval plus the rail lag
  }
  CHECK(refined == trials);
  CHECK(closer >= trials * 9 / 10);
}

TEST_CASE("analysis refine: no step, tiny steps and bursts in the flank leave the marker alone") {
  const double rate = 5000.0;
  an::RefineConfig cfg;
  // A flat trace: nothing to refine against.
  std::vector<float> flat(200, 3.0f);
  auto w0 = run(flat, rate, {}, 64, {0.02}, 0.004);
  auto r0 = an::refine_boundary(w0.snippet(0), rate, 0.02, 5e-4, cfg);
  CHECK_FALSE(r0.refined);
  CHECK(r0.t_s == 0.02);
  // A step hidden in noise (0.3 W step, 0.2 W noise).
  auto noisy = step_trace(0.02, 50e-6, 0.2, 1.0, 5);
  auto w1 = run(noisy, rate, {}, 64, {0.0201}, 0.004);
  auto r1 = an::refine_boundary(w1.snippet(0), rate, 0.0201, 5e-4, cfg);
  CHECK_FALSE(r1.refined);
  CHECK(r1.t_s == 0.0201);
  // A burst spanning the marker and both flanks (no token edge): no step between the levels.
  auto burst = step_trace(1.0, 0.0, 0.002, 0.0175, 6);
  auto w2 = run(burst, rate, {}, 64, {0.0201}, 0.004);
  auto r2 = an::refine_boundary(w2.snippet(0), rate, 0.0201, 5e-4, cfg);
  CHECK_FALSE(r2.refined);
}
