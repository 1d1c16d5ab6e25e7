// Validation of software power estimates (fuel-gauge current, INA3221 rails, any power-like
// telemetry) against the monitor: each reading compared with the monitor's mean power over the
// interval the reading averages, then the error against window length. Readings whose window
// overlaps a USB-powered interval are reported apart (the gauge then sees charge current).
#pragma once

#include <limits>
#include <span>
#include <string>
#include <vector>

#include "meltrig/analysis/energy.hpp"
#include "meltrig/analysis/inputs.hpp"

namespace meltrig::analysis {

struct SoftwareConfig {
  /// Converts current series (A, mA, uA) to power; NaN: current series are skipped with a note.
  double supply_v = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> window_lengths_s = {0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 60};
  std::string prefix = "power/";  ///< series whose name starts with this are power-like
};

/// Agreement of estimate with reference over paired values.
struct ErrorStats {
  std::size_t n = 0;
  double mean_reference_w = std::numeric_limits<double>::quiet_NaN();
  double bias_pct = std::numeric_limits<double>::quiet_NaN();  ///< 100 mean(e - r) / mean(r)
  double mape_pct = std::numeric_limits<double>::quiet_NaN();  ///< 100 mean(|e - r| / |r|)
  double rmse_w = std::numeric_limits<double>::quiet_NaN();
  double r = std::numeric_limits<double>::quiet_NaN();  ///< Pearson correlation
  /// Bland-Altman limits of agreement of the relative difference, mean +- 1.96 s.d., percent.
  double loa_low_pct = std::numeric_limits<double>::quiet_NaN();
  double loa_high_pct = std::numeric_limits<double>::quiet_NaN();
};
ErrorStats error_stats(std::span<const double> estimate, std::span<const double> reference);

struct LengthError {
  double window_s = 0.0;
  ErrorStats stats;
};

/// One reading beside the monitor's mean power over the interval it averages (the points of a
/// Bland-Altman plot).
struct ReadingPair {
  double t_s = 0.0;  ///< end of the reading's interval, monitor seconds
  double estimate_w = 0.0;
  double reference_w = 0.0;
  bool usb = false;  ///< the interval overlaps USB power
};

struct SoftwareResult {
  std::string series;
  std::string unit;
  double to_watts = 1.0;  ///< factor applied to the values (sign included)
  ErrorStats readings;    ///< each reading against its own window, USB-free
  ErrorStats usb;         ///< readings whose window overlaps USB power
  std::vector<LengthError> by_length;
  std::size_t skipped = 0;  ///< readings whose window touches a gap or leaves the trace
  std::string note;
  std::vector<ReadingPair> pairs;  ///< every reading used (USB-fed ones flagged), in time order
};

/// The windows a validation needs integrated (pass them to analyze_run as `extra`), and what to
/// do with their figures afterwards.
class SoftwarePlan {
 public:
  SoftwarePlan(std::span<const TimedSeries> telemetry, std::span<const Window> usb,
               const SoftwareConfig& cfg);
  const std::vector<Window>& windows() const { return windows_; }
  /// `stats[i]` are the figures of windows()[i].
  std::vector<SoftwareResult> finish(std::span<const WindowStats> stats) const;

 private:
  struct Tile {
    std::size_t window = 0;
    double estimate_w = 0.0;
  };
  struct Reading {
    std::size_t window = 0;
    double estimate_w = 0.0;
    bool usb = false;
  };
  struct Plan {
    SoftwareResult head;
    std::vector<Reading> readings;
    std::vector<std::vector<Tile>> tiles;  ///< per window length
  };
  void plan_series(const TimedSeries& s, double to_w, std::span<const Window> usb);
  std::vector<Window> windows_;
  std::vector<Plan> plans_;
  SoftwareConfig cfg_;
};

/// Watts per unit of a series ("W", "mW", "uW"; currents times supply_v), NaN when unknown.
double watts_per_unit(const std::string& unit, double supply_v);

}  // namespace meltrig::analysis
