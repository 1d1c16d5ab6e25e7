// Descriptive statistics and confidence intervals across repetitions and files.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace meltrig::analysis {

double mean_of(std::span<const double> v);
/// Sample standard deviation (n - 1); NaN below two values.
double sd_of(std::span<const double> v);
double median_of(std::span<const double> v);
/// Linear-interpolated quantile, q in [0, 1].
double quantile_of(std::span<const double> v, double q);

/// Mean, s.d. and two confidence intervals of the mean: Student t (Boost.Math) and a percentile
/// bootstrap with a seeded generator (the same seed gives the same interval).
struct Summary {
  std::size_t n = 0;
  double mean = std::numeric_limits<double>::quiet_NaN();
  double sd = std::numeric_limits<double>::quiet_NaN();
  double t_low = std::numeric_limits<double>::quiet_NaN();
  double t_high = std::numeric_limits<double>::quiet_NaN();
  double boot_low = std::numeric_limits<double>::quiet_NaN();
  double boot_high = std::numeric_limits<double>::quiet_NaN();
};

struct SummaryConfig {
  double level = 0.95;
  std::size_t resamples = 2000;
  std::uint64_t seed = 1;
};

Summary summarize(std::span<const double> values, const SummaryConfig& cfg = {});

/// Difference of two groups' means (b - a) with a Welch t interval.
struct Difference {
  double diff = std::numeric_limits<double>::quiet_NaN();
  double low = std::numeric_limits<double>::quiet_NaN();
  double high = std::numeric_limits<double>::quiet_NaN();
  double df = std::numeric_limits<double>::quiet_NaN();
};
Difference welch_difference(std::span<const double> a, std::span<const double> b,
                            double level = 0.95);

}  // namespace meltrig::analysis
