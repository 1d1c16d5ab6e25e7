// The one trapezoid rule (dataset/trapezoid.hpp) that the capture's live energy and analysis's
// window energy share: exact on piecewise-linear series, missing samples left out, never zeroed.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "meltrig/analysis/energy.hpp"
#include "meltrig/dataset/trapezoid.hpp"

using meltrig::dataset::trapezoid_area;
using meltrig::dataset::TrapezoidSum;

TEST_CASE("trapezoid: a ramp sampled at 4 Hz integrates exactly, NaN intervals are left out") {
  // p(t) = t W on [0, 2] s at 4 Hz: 9 samples, integral 2 J exactly (the rule is exact on lines).
  TrapezoidSum sum(4.0);
  for (int i = 0; i <= 8; ++i)
    sum.add(i / 4.0);
  CHECK(sum.integral() == doctest::Approx(2.0).epsilon(1e-15));
  CHECK(sum.intervals() == 8);

  // Sample 4 (t = 1 s) missing: the two intervals touching it, [0.75, 1] and [1, 1.25], go.
  TrapezoidSum gap(4.0);
  for (int i = 0; i <= 8; ++i)
    gap.add(i == 4 ? std::numeric_limits<double>::quiet_NaN() : i / 4.0);
  const double lost = 0.5 * (0.75 + 1.0) * 0.25 + 0.5 * (1.0 + 1.25) * 0.25;
  CHECK(gap.integral() == doctest::Approx(2.0 - lost).epsilon(1e-15));
  CHECK(gap.intervals() == 6);

  // skip() is the same as feeding NaN.
  TrapezoidSum skipped(4.0);
  for (int i = 0; i <= 8; ++i) {
    if (i == 4)
      skipped.skip();
    else
      skipped.add(i / 4.0);
  }
  CHECK(skipped.integral() == doctest::Approx(gap.integral()).epsilon(1e-15));
  CHECK(trapezoid_area(1.0, std::nan(""), 1.0) == 0.0);
}

TEST_CASE("trapezoid: analysis's window energy over the whole series equals the streaming sum") {
  std::vector<float> p;
  TrapezoidSum sum(1000.0);
  for (int i = 0; i < 5000; ++i) {
    const float v = (i / 250) % 2 ? 3.0f : 1.0f;  // a 2 Hz square wave between 1 and 3 W
    p.push_back(i == 1234 ? std::numeric_limits<float>::quiet_NaN() : v);
    sum.add(p.back());
  }
  const double last_t = 4999.0 / 1000.0;
  auto w = meltrig::analysis::integrate_power(p, 1000.0, 0.0, last_t);
  CHECK(w.missing_samples == 1);
  CHECK(w.joules == doctest::Approx(sum.integral()).epsilon(1e-12));
}
