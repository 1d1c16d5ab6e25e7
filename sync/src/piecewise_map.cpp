// Robust line fits and piecewise maps (see piecewise_map.hpp).
#include "meltrig/sync/piecewise_map.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>

namespace meltrig::sync {

std::string_view clock_name(DeviceClock c) {
  switch (c) {
    case DeviceClock::monotonic:
      return "monotonic";
    case DeviceClock::boottime:
      return "boottime";
    case DeviceClock::realtime:
      return "realtime";
  }
  return "?";
}

std::string_view target_name(TargetClock c) {
  return c == TargetClock::monitor ? "monitor" : "host_steady";
}

std::string_view evidence_name(EvidenceKind k) {
  switch (k) {
    case EvidenceKind::pulse_edge:
      return "pulse";
    case EvidenceKind::logic_edge:
      return "logic";
    case EvidenceKind::relay_edge:
      return "relay";
    case EvidenceKind::probe:
      return "probe";
    case EvidenceKind::workload_edge:
      return "workload";
  }
  return "?";
}

std::int64_t Trace::ns_of(double pos) const {
  return std::llround((static_cast<double>(first_index) + pos) * period_ns());
}

double Trace::pos_of(std::int64_t monitor_ns) const {
  return static_cast<double>(monitor_ns) / period_ns() - static_cast<double>(first_index);
}

namespace {

double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

/// The design of one IRLS pass: columns 1, x (scaled), late flag.
struct Design {
  Eigen::MatrixXd X;
  Eigen::VectorXd y;
  Eigen::VectorXd sigma;
  double xscale = 1.0;
  bool late = false;
};

Design make_design(std::span<const SyncPoint> pts, std::int64_t ref_d, std::int64_t ref_t) {
  Design d;
  const auto n = static_cast<Eigen::Index>(pts.size());
  bool any_late = false, any_on_time = false;
  double xmax = 1.0;
  for (const SyncPoint& p : pts) {
    (p.late_biased ? any_late : any_on_time) = true;
    xmax = std::max(xmax, std::abs(static_cast<double>(p.device_ns - ref_d)));
  }
  d.late = any_late && any_on_time;
  d.xscale = xmax;
  d.X.resize(n, d.late ? 3 : 2);
  d.y.resize(n);
  d.sigma.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    const SyncPoint& p = pts[static_cast<std::size_t>(i)];
    const std::int64_t x = p.device_ns - ref_d;
    d.X(i, 0) = 1.0;
    d.X(i, 1) = static_cast<double>(x) / d.xscale;
    if (d.late) d.X(i, 2) = p.late_biased ? 1.0 : 0.0;
    // the fit follows target - device, so the rate-1 part never costs precision
    d.y(i) = static_cast<double>((p.target_ns - ref_t) - x);
    d.sigma(i) = static_cast<double>(std::max<std::int64_t>(1, p.sigma_ns));
  }
  return d;
}

/// Cluster-robust covariance B (sum_g s_g s_g') B, s_g the weighted score of group g; empty when
/// there are fewer than four groups.
Eigen::MatrixXd cluster_sandwich(const Design& d, const Eigen::VectorXd& w,
                                 const Eigen::VectorXd& beta, const Eigen::MatrixXd& bread,
                                 std::span<const SyncPoint> pts) {
  const Eigen::Index p = d.X.cols();
  const Eigen::VectorXd r = d.y - d.X * beta;
  std::map<std::uint32_t, Eigen::VectorXd> score;
  for (Eigen::Index i = 0; i < d.X.rows(); ++i) {
    auto [it, fresh] =
        score.try_emplace(pts[static_cast<std::size_t>(i)].source, Eigen::VectorXd::Zero(p));
    it->second += d.X.row(i).transpose() * (w(i) * r(i));
  }
  const auto g = static_cast<double>(score.size());
  if (score.size() < 4) return {};
  Eigen::MatrixXd meat = Eigen::MatrixXd::Zero(p, p);
  for (auto& [src, s] : score)
    meat += s * s.transpose();
  return bread * meat * bread * (g / (g - 1.0));
}

/// The state of an IRLS fit: Huber weights h, the robust scale per point, the weights
/// w = h / (sigma scale)^2, the solution.
struct Irls {
  Eigen::VectorXd h, gs, w, beta, u;
  Eigen::MatrixXd normal;
};

/// One robust scale (MAD x 1.4826 of the normalised residuals) from the on-time points when
/// there are any: late points scatter with their latency, and are judged against the on-time
/// scale (the earliest of them stay inliers, as the edges a latency never delayed much).
void group_scales(const Design& d, Irls& s) {
  std::vector<double> a;
  for (Eigen::Index i = 0; i < d.X.rows(); ++i)
    if (!(d.late && d.X(i, 2) > 0.0)) a.push_back(std::abs(s.u(i)));
  s.gs.setConstant(std::max(1.4826 * median_of(a), 1e-3));
}

Irls run_irls(const Design& d, const FitOptions& opt) {
  const Eigen::Index n = d.X.rows(), p = d.X.cols();
  Irls s{Eigen::VectorXd::Ones(n), Eigen::VectorXd::Ones(n), {}, Eigen::VectorXd::Zero(p), {}, {}};
  for (int it = 0; it < opt.iterations; ++it) {
    s.w = s.h.array() / (d.sigma.array() * s.gs.array()).square();
    s.normal = d.X.transpose() * s.w.asDiagonal() * d.X;
    s.beta = s.normal.ldlt().solve(d.X.transpose() * (s.w.asDiagonal() * d.y));
    s.u = (d.y - d.X * s.beta).array() / d.sigma.array();
    group_scales(d, s);
    for (Eigen::Index i = 0; i < n; ++i) {
      const double a = std::abs(s.u(i)) / s.gs(i);
      s.h(i) = a > opt.reject_sigmas ? 0.0 : (a <= opt.huber_k ? 1.0 : opt.huber_k / a);
    }
  }
  s.w = s.h.array() / (d.sigma.array() * s.gs.array()).square();
  s.normal = d.X.transpose() * s.w.asDiagonal() * d.X;
  return s;
}

}  // namespace

double LineFit::eval(std::int64_t device_ns) const {
  const double x = static_cast<double>(device_ns - ref_device_ns);
  return offset_ns + x + (rate - 1.0) * x;
}

double LineFit::se_at(std::int64_t device_ns, bool robust) const {
  const double x = static_cast<double>(device_ns - ref_device_ns);
  const auto& c = robust ? cov_robust : cov;
  const double v = c[0][0] + 2.0 * x * c[0][1] + x * x * c[1][1];
  return std::sqrt(std::max(0.0, v));
}

SyncResult<LineFit> robust_line_fit(std::span<const SyncPoint> pts, const FitOptions& opt) {
  if (pts.size() < 2) return std::unexpected(SyncError{"fewer than two sync points"});
  auto [mn, mx] = std::minmax_element(pts.begin(), pts.end(),
                                      [](auto& a, auto& b) { return a.device_ns < b.device_ns; });
  if (mn->device_ns == mx->device_ns)
    return std::unexpected(SyncError{"all sync points share one device time"});
  const std::int64_t ref_d = pts.front().device_ns, ref_t = pts.front().target_ns;
  Design d = make_design(pts, ref_d, ref_t);
  const Eigen::Index n = d.X.rows(), p = d.X.cols();
  const Irls s = run_irls(d, opt);
  const Eigen::VectorXd& h = s.h;
  const Eigen::VectorXd& u = s.u;
  const Eigen::VectorXd& beta = s.beta;
  const double scale = s.gs.minCoeff();
  LineFit f;
  f.ref_device_ns = ref_d;
  f.offset_ns = static_cast<double>(ref_t) + beta(0);
  f.rate = 1.0 + beta(1) / d.xscale;
  f.latency_ns = d.late ? beta(2) : 0.0;
  f.scale = scale;
  // covariance of (offset, rate): (X' W X)^-1 with the scales in W, or where larger the
  // cluster-robust sandwich over the points' sources (edges of one pulse share its errors),
  // rescaled from the design's units
  const Eigen::MatrixXd bread = s.normal.ldlt().solve(Eigen::MatrixXd::Identity(p, p));
  const Eigen::MatrixXd model = bread;
  Eigen::MatrixXd robust = cluster_sandwich(d, s.w, beta, bread, pts);
  if (robust.rows() != p || robust(0, 0) < model(0, 0)) robust = model;
  auto store = [&](const Eigen::MatrixXd& m, std::array<std::array<double, 2>, 2>& c) {
    c[0][0] = m(0, 0);
    c[0][1] = c[1][0] = m(0, 1) / d.xscale;
    c[1][1] = m(1, 1) / (d.xscale * d.xscale);
  };
  store(model, f.cov);
  store(robust, f.cov_robust);
  f.outlier.assign(static_cast<std::size_t>(n), false);
  double ss = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (h(i) == 0.0) {
      f.outlier[k] = true;
      ++f.outliers;
      continue;
    }
    const double r = u(i) * d.sigma(i);
    ss += r * r;
    f.residual_max_ns = std::max(f.residual_max_ns, std::abs(r));
    ++f.inliers;
  }
  f.residual_rms_ns = f.inliers > 0 ? std::sqrt(ss / static_cast<double>(f.inliers)) : 0.0;
  return f;
}

std::int64_t MapSegment::map(std::int64_t device_ns) const {
  const std::int64_t x = device_ns - device_start_ns;
  return offset_ns + x + std::llround((rate - 1.0) * static_cast<double>(x));
}

std::string MapSegment::evidence_names() const {
  std::string out;
  for (std::size_t k = 0; k < evidence.size(); ++k) {
    if (evidence[k] == 0) continue;
    if (!out.empty()) out += '+';
    out += evidence_name(static_cast<EvidenceKind>(k));
  }
  return out;
}

const MapSegment* ClockMap::find(std::int64_t device_ns) const {
  auto it =
      std::upper_bound(segments.begin(), segments.end(), device_ns,
                       [](std::int64_t d, const MapSegment& s) { return d < s.device_start_ns; });
  if (it == segments.begin()) return nullptr;
  --it;
  return device_ns <= it->device_end_ns ? &*it : nullptr;
}

SyncResult<Mapped> ClockMap::map(std::int64_t device_ns) const {
  const MapSegment* s = find(device_ns);
  if (s == nullptr) {
    return std::unexpected(SyncError{
        "device " + std::string(clock_name(clock)) + " time " + std::to_string(device_ns) +
        " ns is outside every segment of the map to " + std::string(target_name(target))});
  }
  return Mapped{s->map(device_ns), s->bound_ns};
}

namespace {

/// A run of points with no break or gap inside, and why it starts.
struct Stretch {
  std::size_t first = 0, last = 0;  ///< [first, last) in the sorted points
  std::string why;
  std::int64_t extend_from = 0, extend_to = 0;  ///< device range the stretch may cover
};

std::size_t count_sources(std::span<const SyncPoint> pts) {
  std::set<std::uint32_t> s;
  for (const SyncPoint& p : pts)
    s.insert(p.source);
  return s.size();
}

class Fitter {
 public:
  Fitter(std::vector<SyncPoint>& pts, DeviceClock clock, const PiecewiseOptions& opt)
      : pts_(pts), clock_(clock), opt_(opt) {}

  /// Fits [first, last) as one or more segments, appended to out.
  void fit(std::size_t first, std::size_t last, std::vector<MapSegment>& out,
           std::vector<std::pair<std::size_t, std::size_t>>& ranges) {
    std::span<const SyncPoint> all(pts_.data() + first, last - first);
    auto whole = robust_line_fit(all, opt_.fit);
    if (!whole) return;
    const std::size_t mid = split_index(first, last);
    if (mid != 0) {
      std::span<const SyncPoint> a(pts_.data() + first, mid - first),
          b(pts_.data() + mid, last - mid);
      auto fa = robust_line_fit(a, opt_.fit), fb = robust_line_fit(b, opt_.fit);
      if (fa && fb && (disagree(*whole, *fa, a) || disagree(*whole, *fb, b))) {
        fit(first, mid, out, ranges);
        fit(mid, last, out, ranges);
        return;
      }
    }
    out.push_back(segment(*whole, all));
    ranges.emplace_back(first, last);
  }

 private:
  /// A split point at a source boundary near the middle, or 0 when halves would be too small.
  std::size_t split_index(std::size_t first, std::size_t last) const {
    const std::size_t n = last - first;
    if (n < 2 * opt_.min_points) return 0;
    std::size_t mid = first + n / 2;
    while (mid < last && mid > first && pts_[mid].source == pts_[mid - 1].source)
      ++mid;
    if (mid - first < opt_.min_points || last - mid < opt_.min_points) return 0;
    std::span<const SyncPoint> a(pts_.data() + first, mid - first),
        b(pts_.data() + mid, last - mid);
    if (count_sources(a) < opt_.min_sources || count_sources(b) < opt_.min_sources) return 0;
    return mid;
  }

  bool disagree(const LineFit& whole, const LineFit& half, std::span<const SyncPoint> pts) const {
    for (std::int64_t d : {pts.front().device_ns, pts.back().device_ns}) {
      const double diff = std::abs(whole.eval(d) - half.eval(d));
      const double se = std::hypot(whole.se_at(d), half.se_at(d));
      if (diff > opt_.split_sigmas * se + static_cast<double>(opt_.split_floor_ns)) return true;
    }
    return false;
  }

  MapSegment segment(const LineFit& f, std::span<const SyncPoint> pts) const {
    MapSegment s;
    s.clock = clock_;
    s.device_start_ns = pts.front().device_ns;
    s.device_end_ns = pts.back().device_ns;
    s.offset_ns = std::llround(f.eval(s.device_start_ns));
    s.rate = f.rate;
    s.residual_rms_ns = std::llround(f.residual_rms_ns);
    s.residual_max_ns = std::llround(f.residual_max_ns);
    s.latency_ns = std::llround(f.latency_ns);
    s.points = f.inliers;
    s.outliers = f.outliers;
    for (std::size_t i = 0; i < pts.size(); ++i)
      if (!f.outlier[i]) ++s.evidence[static_cast<std::size_t>(pts[i].kind)];
    return s;
  }

  std::vector<SyncPoint>& pts_;
  DeviceClock clock_;
  const PiecewiseOptions& opt_;
};

std::vector<Stretch> stretches(std::vector<SyncPoint>& pts, std::span<const ClockBreak> breaks,
                               std::int64_t max_gap, std::int64_t end_margin) {
  std::vector<Stretch> out;
  if (pts.empty()) return out;
  auto break_between = [&](std::int64_t a, std::int64_t b) -> const ClockBreak* {
    for (const ClockBreak& br : breaks)
      if (br.from_ns >= a && br.to_ns <= b) return &br;
    return nullptr;
  };
  // the ends reach a break before the first point or after the last one, else end_margin
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  std::int64_t first_from = kMin, last_to = kMax;
  for (const ClockBreak& br : breaks) {
    if (br.to_ns <= pts.front().device_ns && br.to_ns > kMin)
      first_from = std::max(first_from, br.to_ns);
    if (br.from_ns >= pts.back().device_ns && br.from_ns < kMax)
      last_to = std::min(last_to, br.from_ns);
  }
  if (first_from == kMin) first_from = pts.front().device_ns - end_margin;
  if (last_to == kMax) last_to = pts.back().device_ns + end_margin;
  Stretch cur{0, 0, "start", pts.front().device_ns, 0};
  for (std::size_t i = 1; i <= pts.size(); ++i) {
    if (i < pts.size()) {
      const std::int64_t a = pts[i - 1].device_ns, b = pts[i].device_ns;
      const ClockBreak* br = break_between(a, b);
      if (br == nullptr && b - a <= max_gap) continue;
      cur.last = i;
      cur.extend_to = br != nullptr ? br->from_ns : a;
      out.push_back(cur);
      cur =
          Stretch{i, 0, br != nullptr ? br->why : "evidence gap", br != nullptr ? br->to_ns : b, 0};
      continue;
    }
    cur.last = i;
    cur.extend_to = last_to;
    out.push_back(cur);
  }
  if (!out.empty()) out.front().extend_from = first_from;
  return out;
}

/// What averaging does not remove from the evidence's scatter around the line: the points (in
/// device order) grouped by source (a pulse's edges), single-point sources in runs of 16
/// neighbours; per group its mean residual squared less what its own noise explains (var / n),
/// averaged over the groups. The root of that estimates how far the clock strays from the line
/// between the evidence (a rate that changes inside the segment, a bias one pulse shares), which
/// the line's standard error does not see.
double misfit_ns(const LineFit& f, std::span<const SyncPoint> pts) {
  std::vector<double> r;
  std::vector<std::uint32_t> src;
  std::vector<bool> single;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (f.outlier[i]) continue;
    r.push_back(static_cast<double>(pts[i].target_ns) - f.eval(pts[i].device_ns) -
                (pts[i].late_biased ? f.latency_ns : 0.0));
    src.push_back(pts[i].source);
  }
  for (std::size_t i = 0; i < r.size(); ++i)
    single.push_back((i == 0 || src[i - 1] != src[i]) &&
                     (i + 1 == r.size() || src[i + 1] != src[i]));
  double sum = 0.0;
  std::size_t groups = 0;
  for (std::size_t i = 0; i < r.size();) {
    std::size_t j = i + 1;
    while (j < r.size() && (single[i] ? single[j] && j - i < 16 : src[j] == src[i]))
      ++j;
    const double n = static_cast<double>(j - i);
    const double m =
        std::accumulate(r.begin() + static_cast<long>(i), r.begin() + static_cast<long>(j), 0.0) /
        n;
    double v = 0.0;
    for (std::size_t k = i; k < j; ++k)
      v += (r[k] - m) * (r[k] - m);
    sum += m * m - (j - i > 1 ? v / (n - 1.0) / n : 0.0);
    ++groups;
    i = j;
  }
  return groups > 0 ? std::sqrt(std::max(0.0, sum / static_cast<double>(groups))) : 0.0;
}

/// How far the clock may bend away from segment k's line inside it: the rate changed by |rate_k
/// - rate_j| from a neighbour j of the same stretch, and a rate that changes steadily by dr over
/// a segment of length L strays dr L / 8 from its chord; twice that, for the larger neighbour
/// difference. 0 for a segment alone in its stretch.
double bend_ns(const std::vector<MapSegment>& segs, std::size_t k, std::size_t from) {
  double dr = 0.0;
  if (k > from) dr = std::abs(segs[k].rate - segs[k - 1].rate);
  if (k + 1 < segs.size()) dr = std::max(dr, std::abs(segs[k].rate - segs[k + 1].rate));
  return dr * static_cast<double>(segs[k].device_end_ns - segs[k].device_start_ns) / 4.0;
}

/// Segment ranges tile the stretch: neighbours meet half-way between their evidence, and the
/// first and last reach the stretch's edges (a break's edge). The bound is taken over the range.
void finish_stretch(std::vector<MapSegment>& segs, std::size_t from, const Stretch& st,
                    const std::vector<std::pair<std::size_t, std::size_t>>& ranges,
                    std::vector<SyncPoint>& pts, const PiecewiseOptions& opt) {
  for (std::size_t k = from; k < segs.size(); ++k) {
    MapSegment& s = segs[k];
    s.break_before = k == from ? st.why : "rate change";
    if (k == from) s.device_start_ns = std::min(s.device_start_ns, st.extend_from);
    if (k + 1 < segs.size()) {
      const std::int64_t mid =
          s.device_end_ns + (segs[k + 1].device_start_ns - s.device_end_ns) / 2;
      s.device_end_ns = mid;
      segs[k + 1].device_start_ns = mid + 1;
    } else {
      s.device_end_ns = std::max(s.device_end_ns, st.extend_to);
    }
  }
  for (std::size_t k = from; k < segs.size(); ++k) {
    MapSegment& s = segs[k];
    auto [first, last] = ranges[k - from];
    auto f = robust_line_fit(std::span<const SyncPoint>(pts.data() + first, last - first), opt.fit);
    const double se = std::max(f->se_at(s.device_start_ns, true), f->se_at(s.device_end_ns, true));
    s.offset_ns = std::llround(f->eval(s.device_start_ns));
    // 4 se (inflated for few points) + 3 x the misfit the se does not see + the systematic term
    const double small = 1.0 + 4.0 / static_cast<double>(std::max<std::size_t>(1, f->inliers));
    const double misfit =
        misfit_ns(*f, std::span<const SyncPoint>(pts.data() + first, last - first));
    s.bound_ns = std::max<std::int64_t>(
                     1, std::llround(opt.bound_sigmas * se * small + opt.misfit_sigmas * misfit +
                                     bend_ns(segs, k, from))) +
                 opt.systematic_ns;
  }
}

}  // namespace

SyncResult<ClockMap> fit_piecewise(std::vector<SyncPoint> pts, DeviceClock clock,
                                   TargetClock target, std::span<const ClockBreak> breaks,
                                   const PiecewiseOptions& opt) {
  std::stable_sort(pts.begin(), pts.end(), [](const SyncPoint& a, const SyncPoint& b) {
    return a.device_ns < b.device_ns;
  });
  std::erase_if(pts, [&](const SyncPoint& p) {
    return std::any_of(breaks.begin(), breaks.end(), [&](const ClockBreak& b) {
      return p.device_ns > b.from_ns && p.device_ns < b.to_ns;
    });
  });
  ClockMap map;
  map.clock = clock;
  map.target = target;
  Fitter fitter(pts, clock, opt);
  for (const Stretch& st : stretches(pts, breaks, opt.max_gap_ns, opt.end_margin_ns)) {
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    const std::size_t from = map.segments.size();
    if (st.last - st.first < 3) continue;
    fitter.fit(st.first, st.last, map.segments, ranges);
    finish_stretch(map.segments, from, st, ranges, pts, opt);
  }
  if (map.segments.empty()) {
    return std::unexpected(SyncError{"no stretch of " + std::to_string(pts.size()) +
                                     " sync points on " + std::string(clock_name(clock)) +
                                     " holds three points at two device times, so no line " +
                                     "can be fitted to " + std::string(target_name(target))});
  }
  return map;
}

}  // namespace meltrig::sync
