// Clock relations from triples, and synchronise(): every source, every map (see sync.hpp).
#include "meltrig/sync/sync.hpp"

#include <algorithm>
#include <cmath>

namespace meltrig::sync {

ClockRelations::ClockRelations(std::vector<Triple> triples, std::int64_t threshold_ns)
    : t_(std::move(triples)), threshold_(threshold_ns) {
  std::stable_sort(t_.begin(), t_.end(), [](auto& a, auto& b) { return a.mono_ns < b.mono_ns; });
}

namespace {
std::int64_t boot_off(const Triple& t) {
  return t.boot_ns - t.mono_ns;
}
std::int64_t real_off(const Triple& t) {
  return t.real_ns - t.mono_ns;
}
std::int64_t real_minus_boot(const Triple& t) {
  return t.real_ns - t.boot_ns;
}
}  // namespace

std::optional<std::int64_t> ClockRelations::convert(std::int64_t mono, DeviceClock clock) const {
  if (clock == DeviceClock::monotonic) return mono;
  if (t_.empty()) return std::nullopt;
  auto off = clock == DeviceClock::boottime ? boot_off : real_off;
  auto it = std::upper_bound(t_.begin(), t_.end(), mono,
                             [](std::int64_t d, const Triple& t) { return d < t.mono_ns; });
  if (it == t_.begin()) return mono + off(t_.front());
  if (it == t_.end()) return mono + off(t_.back());
  const Triple& a = *(it - 1);
  const Triple& b = *it;
  if (std::abs(boot_off(b) - boot_off(a)) > threshold_) return std::nullopt;
  if (clock == DeviceClock::realtime &&
      std::abs(real_minus_boot(b) - real_minus_boot(a)) > threshold_)
    return std::nullopt;
  // slewing (a few hundred ppm at most) is followed linearly between the triples
  const double f = b.mono_ns == a.mono_ns ? 0.0
                                          : static_cast<double>(mono - a.mono_ns) /
                                                static_cast<double>(b.mono_ns - a.mono_ns);
  return mono + off(a) + std::llround(f * static_cast<double>(off(b) - off(a)));
}

std::int64_t ClockRelations::continuous(std::int64_t mono) const {
  if (auto b = convert(mono, DeviceClock::boottime)) return *b;
  auto it = std::upper_bound(t_.begin(), t_.end(), mono,
                             [](std::int64_t d, const Triple& t) { return d < t.mono_ns; });
  const Triple& a = *(it - 1);  // convert() failed, so both neighbours exist
  return mono + boot_off(mono - a.mono_ns < it->mono_ns - mono ? a : *it);
}

std::vector<ClockBreak> ClockRelations::mono_breaks(bool suspends, bool realtime_steps) const {
  std::vector<ClockBreak> out;
  for (std::size_t i = 1; i < t_.size(); ++i) {
    const Triple &a = t_[i - 1], &b = t_[i];
    if (suspends && std::abs(boot_off(b) - boot_off(a)) > threshold_)
      out.push_back({a.mono_ns, b.mono_ns, "suspend"});
    else if (realtime_steps && std::abs(real_minus_boot(b) - real_minus_boot(a)) > threshold_)
      out.push_back({a.mono_ns, b.mono_ns, "realtime step"});
  }
  return out;
}

const ClockMap* SyncOutput::find(DeviceClock c, TargetClock t) const {
  for (const ClockMap& m : maps)
    if (m.clock == c && m.target == t) return &m;
  return nullptr;
}

namespace {

/// Fits the map for `clock` from points on the monotonic clock: split at that clock's breaks,
/// each piece converted and fitted on its own.
SyncResult<ClockMap> fit_clock(const std::vector<SyncPoint>& pts, const ClockRelations& rel,
                               DeviceClock clock, TargetClock target, const PiecewiseOptions& opt) {
  if (rel.empty()) return fit_piecewise(pts, clock, target, {}, opt);  // points on `clock` already
  if (clock == DeviceClock::monotonic) {
    const std::vector<ClockBreak> br = rel.mono_breaks(true, false);
    return fit_piecewise(pts, clock, target, br, opt);
  }
  // boottime runs through suspends; realtime also through them, but breaks at its steps
  std::vector<ClockBreak> br;
  if (clock == DeviceClock::realtime) br = rel.mono_breaks(false, true);
  ClockMap out{clock, target, {}};
  std::string why = "start";
  std::optional<SyncError> err;
  for (std::size_t part = 0; part <= br.size(); ++part) {
    const std::int64_t lo =
        part == 0 ? std::numeric_limits<std::int64_t>::min() : br[part - 1].to_ns;
    const std::int64_t hi =
        part == br.size() ? std::numeric_limits<std::int64_t>::max() : br[part].from_ns;
    std::vector<SyncPoint> conv;
    for (const SyncPoint& p : pts) {
      if (p.device_ns < lo || p.device_ns > hi) continue;
      if (auto d = rel.convert(p.device_ns, clock)) conv.push_back(p), conv.back().device_ns = *d;
    }
    // the part reaches the triples around its steps, as the monotonic map reaches its suspends
    std::vector<ClockBreak> edges;
    if (part > 0)
      if (auto e = rel.convert(lo, clock))
        edges.push_back({std::numeric_limits<std::int64_t>::min(), *e, why});
    if (part < br.size())
      if (auto e = rel.convert(hi - 1, clock))
        edges.push_back({*e + 1, std::numeric_limits<std::int64_t>::max(), "end"});
    auto m = fit_piecewise(std::move(conv), clock, target, edges, opt);
    if (!m) {
      err = m.error();
      continue;
    }
    if (!m->segments.empty() && part > 0) m->segments.front().break_before = why;
    out.segments.insert(out.segments.end(), m->segments.begin(), m->segments.end());
    why = "realtime step";
  }
  if (out.segments.empty()) return std::unexpected(err.value_or(SyncError{"no points"}));
  return out;
}

std::string method_of(const std::vector<SyncPoint>& pts) {
  std::array<bool, 5> seen{};
  for (const SyncPoint& p : pts)
    seen[static_cast<std::size_t>(p.kind)] = true;
  std::string m;
  for (std::size_t k = 0; k < seen.size(); ++k)
    if (seen[k])
      m += (m.empty() ? "" : "+") + std::string(evidence_name(static_cast<EvidenceKind>(k)));
  return m;
}

std::string missing_message(const SyncInputs& in, const SyncDiagnostics& d) {
  std::size_t pulses = 0, activity = 0;
  for (const Mark& m : in.marks) {
    if (m.kind == MarkKind::sync_start) ++pulses;
    if (m.kind == MarkKind::load_start || m.kind == MarkKind::prefill_start ||
        m.kind == MarkKind::token)
      ++activity;
  }
  std::string s = "no usable evidence ties the device clock to the monitor:";
  if (in.trace.empty()) s += " no power trace;";
  s += !in.use.pulses ? " sync pulses: not used;"
       : pulses == 0  ? " sync pulses: no sync.start markers;"
                      : " sync pulses: " + std::to_string(pulses) +
                           " in the markers, none found in the power trace;";
  s += !in.logic ? " logic inputs: not recorded;" : " logic inputs: no edges matched;";
  s += in.relay_edges.empty() ? " relay edges: none logged by the device;"
                              : " relay edges: not located (no host link or no step);";
  s += !in.use.workload ? " workload: not used;"
       : activity == 0  ? " workload: no load/prefill/token markers;"
                        : " workload: activity not matched in the power trace (" +
                             std::to_string(d.workload.blocks_aligned) + " of " +
                             std::to_string(d.workload.blocks) + " blocks aligned);";
  s += in.probes.empty() ? " clock probes: none"
       : !in.host_link   ? " clock probes: no host link to the monitor"
                         : " clock probes: not used for the monitor";
  return s;
}

/// Gathers points on the markers' clock tying it to the monitor.
std::vector<SyncPoint> monitor_points(const SyncInputs& in, const ClockRelations& rel,
                                      const std::vector<SyncPoint>& host_pts, SyncDiagnostics& d) {
  const bool mono = in.marks_clock == DeviceClock::monotonic && !rel.empty();
  auto to_cont = [&](std::int64_t x) { return mono ? rel.continuous(x) : x; };
  // the rate over 20 s or more: a coarse anchor a few ms off must not tilt it towards a pulse
  Tracker tracker(20'000'000, 300.0, 60.0, 20'000'000'000);
  std::vector<SyncPoint> pts;
  if (in.use.logic && in.logic) {
    for (const SyncPoint& p : logic_points(*in.logic, d.notes)) {
      pts.push_back(p);
      tracker.add(to_cont(p.device_ns), p.target_ns);
    }
    d.logic_points = pts.size();
  }
  if (in.host_link && tracker.empty())
    for (const SyncPoint& p : host_to_monitor(host_pts, *in.host_link))
      tracker.add(to_cont(p.device_ns), p.target_ns);
  if (in.trace.empty()) return pts;
  if (in.use.pulses) {
    Tracker pulse_tracker = tracker;
    if (pulse_tracker.empty()) {
      WorkloadReport coarse;
      (void)workload_points(in.trace, in.marks, to_cont, pulse_tracker, coarse);
    }
    auto pp = pulse_points(in.trace, in.marks, to_cont, pulse_tracker, d.pulses);
    pts.insert(pts.end(), pp.begin(), pp.end());
  }
  if (in.use.relay && in.host_link) {
    auto rp = relay_points(in.trace, in.relay_edges, *in.host_link, d.notes);
    d.relay_points = rp.size();
    pts.insert(pts.end(), rp.begin(), rp.end());
  }
  if (pts.empty() && in.use.workload) {
    pts = workload_points(in.trace, in.marks, to_cont, tracker, d.workload);
    if (in.use.workload_tokens && !pts.empty()) {
      std::vector<SyncPoint> cont = pts;
      for (SyncPoint& p : cont)
        p.device_ns = to_cont(p.device_ns);
      if (auto prelim = fit_piecewise(cont, DeviceClock::boottime, TargetClock::monitor, {})) {
        auto tp = token_points(in.trace, in.marks, to_cont, *prelim,
                               static_cast<std::uint32_t>(pts.size()));
        d.workload.tokens_found = tp.size();
        pts.insert(pts.end(), tp.begin(), tp.end());
      }
    }
  }
  return pts;
}

void latency_stats(const ClockMap& m, const std::vector<SyncPoint>& pts, SyncDiagnostics& d) {
  std::vector<std::int64_t> lat;
  for (const SyncPoint& p : pts) {
    if (!p.late_biased) continue;
    const MapSegment* s = m.find(p.device_ns);
    if (s != nullptr) lat.push_back(p.target_ns - s->map(p.device_ns));
  }
  if (lat.empty()) return;
  std::sort(lat.begin(), lat.end());
  d.latency_p50_ns = lat[lat.size() / 2];
  d.latency_p99_ns = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
}

}  // namespace

SyncResult<SyncOutput> synchronise(const SyncInputs& in) {
  SyncOutput out;
  const ClockRelations rel(in.marks_clock == DeviceClock::monotonic ? in.triples
                                                                    : std::vector<Triple>{});
  out.diag.breaks = rel.mono_breaks(true, true);
  if (in.use.probes) out.host_evidence = probe_points(in.probes);
  out.diag.probe_bursts = out.host_evidence.size();
  out.monitor_evidence = monitor_points(in, rel, out.host_evidence, out.diag);
  if (out.monitor_evidence.empty() && in.use.probes_to_monitor && in.host_link &&
      out.host_evidence.size() >= 2)
    out.monitor_evidence = host_to_monitor(out.host_evidence, *in.host_link);
  if (out.monitor_evidence.empty())
    return std::unexpected(SyncError{missing_message(in, out.diag)});
  out.method = method_of(out.monitor_evidence);
  if (out.method == "probe") out.method = "probes+host link";
  std::vector<DeviceClock> clocks{in.marks_clock};
  if (!rel.empty()) clocks = {DeviceClock::monotonic, DeviceClock::boottime, DeviceClock::realtime};
  for (TargetClock target : {TargetClock::monitor, TargetClock::host_steady}) {
    const auto& pts = target == TargetClock::monitor ? out.monitor_evidence : out.host_evidence;
    if (pts.empty()) continue;
    PiecewiseOptions opt = in.fit;
    if (target == TargetClock::monitor)
      opt.systematic_ns += std::max(out.diag.pulses.systematic_ns, out.diag.workload.systematic_ns);
    for (DeviceClock c : clocks) {
      auto m = fit_clock(pts, rel, c, target, opt);
      if (m) {
        out.maps.push_back(std::move(*m));
        continue;
      }
      if (target == TargetClock::monitor && c == clocks.front())
        return std::unexpected(SyncError{out.method + " evidence (" + std::to_string(pts.size()) +
                                         " points) supports no map: " + m.error().message});
      out.diag.notes.push_back(std::string(clock_name(c)) + " -> " +
                               std::string(target_name(target)) + ": " + m.error().message);
    }
  }
  latency_stats(out.maps.front(), out.monitor_evidence, out.diag);
  return out;
}

}  // namespace meltrig::sync
