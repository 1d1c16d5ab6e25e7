// Piecewise-linear clock maps from a device clock to the monitor's sample clock (or the host's
// steady clock), fitted robustly (Huber IRLS) to sync points, with per-segment diagnostics and an
// error bound. Segments break at suspends and clock steps (given as break intervals) and at gaps in
// the evidence, and split where one line cannot follow the clock (temperature-driven rate changes).
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "meltrig/sync/evidence.hpp"

namespace meltrig::sync {

/// Why a map could not be made: a message naming what is missing.
struct SyncError {
  std::string message;
};

template <typename T>
using SyncResult = std::expected<T, SyncError>;

/// Result of a robust line fit target = offset + rate x (device - ref) [+ latency if late].
struct LineFit {
  std::int64_t ref_device_ns = 0;
  double offset_ns = 0.0;   ///< target at ref_device_ns
  double rate = 1.0;        ///< d target / d device
  double latency_ns = 0.0;  ///< extra delay of late-biased points (0 when none or all are)
  double scale = 1.0;       ///< robust scale of the normalised residuals (MAD x 1.4826)
  double residual_rms_ns = 0.0;
  double residual_max_ns = 0.0;  ///< worst |residual| of the inliers
  std::size_t inliers = 0;
  std::size_t outliers = 0;
  std::array<std::array<double, 2>, 2> cov{};  ///< covariance of (offset_ns, rate) in ns, ns/ns
  /// The cluster-robust covariance over the points' sources where it is larger (points of one
  /// pulse share its errors), else cov.
  std::array<std::array<double, 2>, 2> cov_robust{};
  std::vector<bool> outlier;  ///< per input point
  /// One-sigma error of the fitted line at device time d (from cov, or cov_robust).
  double se_at(std::int64_t device_ns, bool robust = false) const;
  double eval(std::int64_t device_ns) const;
};

struct FitOptions {
  double huber_k = 1.345;
  double reject_sigmas = 5.0;  ///< points beyond this many robust sigmas get weight 0
  int iterations = 30;
};

/// Huber IRLS line fit (Eigen). Needs two distinct device times; the late column is used only
/// when both late-biased and unbiased points are present.
SyncResult<LineFit> robust_line_fit(std::span<const SyncPoint> pts, const FitOptions& opt = {});

/// One linear piece of a map.
struct MapSegment {
  DeviceClock clock = DeviceClock::monotonic;
  std::int64_t device_start_ns = 0;  ///< covered range [start, end]
  std::int64_t device_end_ns = 0;
  std::int64_t offset_ns = 0;  ///< target time at device_start_ns
  double rate = 1.0;           ///< target ns per device ns
  std::int64_t residual_rms_ns = 0;
  std::int64_t residual_max_ns = 0;
  std::int64_t bound_ns = 0;  ///< bound on |map error| anywhere in the segment
  std::int64_t latency_ns = 0;
  std::size_t points = 0;
  std::size_t outliers = 0;
  std::array<std::size_t, 5> evidence{};  ///< inlier points per EvidenceKind
  std::string break_before;               ///< why this segment starts: "start", "suspend", ...

  std::int64_t map(std::int64_t device_ns) const;
  /// The names of the evidence kinds with points, joined by '+'.
  std::string evidence_names() const;
};

/// A mapped time and its bound.
struct Mapped {
  std::int64_t target_ns = 0;
  std::int64_t bound_ns = 0;
};

/// A piecewise-linear map from one device clock to one target clock.
struct ClockMap {
  DeviceClock clock = DeviceClock::monotonic;
  TargetClock target = TargetClock::monitor;
  std::vector<MapSegment> segments;  ///< ascending, not overlapping

  /// The segment holding device_ns, or nullptr (outside every segment: not mapped).
  const MapSegment* find(std::int64_t device_ns) const;
  SyncResult<Mapped> map(std::int64_t device_ns) const;
};

/// A device-clock interval in which the clock jumped (suspend, step): evidence inside it is
/// dropped, the map breaks, and no segment covers it.
struct ClockBreak {
  std::int64_t from_ns = 0;
  std::int64_t to_ns = 0;
  std::string why;  ///< "suspend", "realtime step"
};

struct PiecewiseOptions {
  FitOptions fit;
  std::int64_t max_gap_ns = 120'000'000'000;  ///< evidence gap that breaks a map (not covered)
  /// A map reaches this far past its first and last evidence (or to a break, if nearer).
  std::int64_t end_margin_ns = 1'000'000'000;
  std::size_t min_points = 6;  ///< per segment
  /// distinct SyncPoint::source per segment a split leaves: a line through two pulses cannot show
  /// how far the clock bends between them (misfit_ns needs more groups than the line has
  /// parameters)
  std::size_t min_sources = 4;
  double split_sigmas = 3.0;  ///< halves disagreeing by more than this (x combined se) split
  std::int64_t split_floor_ns = 2'000;
  double bound_sigmas = 4.0;   ///< bound = this x worst se of the line + ...
  double misfit_sigmas = 3.0;  ///< ... this x the misfit the se does not see + systematic
  std::int64_t systematic_ns = 0;
};

/// Fits the map from points on `clock`. Fails naming the problem when no stretch has enough
/// evidence for a line.
SyncResult<ClockMap> fit_piecewise(std::vector<SyncPoint> pts, DeviceClock clock,
                                   TargetClock target, std::span<const ClockBreak> breaks,
                                   const PiecewiseOptions& opt = {});

}  // namespace meltrig::sync
