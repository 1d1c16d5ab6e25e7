// Evidence sources besides pulses: workload matching, probes, logic inputs, relay edges.
#include <algorithm>
#include <cmath>

#include "meltrig/sync/sync.hpp"

namespace meltrig::sync {

std::vector<BusySpan> busy_spans(std::span<const Mark> marks) {
  std::vector<Mark> m(marks.begin(), marks.end());
  std::stable_sort(m.begin(), m.end(),
                   [](const Mark& a, const Mark& b) { return a.t_ns < b.t_ns; });
  std::vector<BusySpan> out;
  bool open = false, tokens = false;
  std::int64_t from = 0, last = 0;
  auto close = [&] {
    if (open && last > from) out.push_back({from, last, false});
    open = tokens = false;
  };
  for (const Mark& e : m) {
    switch (e.kind) {
      case MarkKind::load_start:
      case MarkKind::prefill_start:
        if (open && tokens) close();  // a new run's prompt after the last one's tokens
        if (!open) open = true, from = e.t_ns;
        last = e.t_ns;
        break;
      case MarkKind::load_end:
      case MarkKind::prefill_end:
      case MarkKind::token:
        if (open) last = e.t_ns, tokens = tokens || e.kind == MarkKind::token;
        break;
      case MarkKind::sync_start:
        close();
        for (std::uint32_t k = 0; k < e.bits && e.bits <= 64; ++k)
          if (((e.code >> (e.bits - 1U - k)) & 1U) != 0)
            out.push_back({e.t_ns + static_cast<std::int64_t>(k) * e.chip_ns,
                           e.t_ns + static_cast<std::int64_t>(k + 1) * e.chip_ns, true});
        break;
      case MarkKind::run_start:
      case MarkKind::run_end:
      case MarkKind::sync_end:
        close();
        break;
    }
  }
  close();
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.from_ns < b.from_ns; });
  return out;
}

namespace {

/// Transitions of the activity worth locating: busy spans (not chips) merged across gaps shorter
/// than min_gap, each edge with the idle time around it.
struct ActivityEdge {
  std::int64_t device_ns;
  bool rising;
  std::int64_t quiet_before, quiet_after;  ///< time at the old level before, new level after
};

std::vector<ActivityEdge> activity_edges(std::span<const BusySpan> busy, std::int64_t min_gap) {
  std::vector<BusySpan> merged;
  for (const BusySpan& s : busy) {
    if (s.pulse_chip) continue;
    if (!merged.empty() && s.from_ns - merged.back().to_ns < min_gap)
      merged.back().to_ns = std::max(merged.back().to_ns, s.to_ns);
    else
      merged.push_back(s);
  }
  std::vector<ActivityEdge> out;
  const std::int64_t far = 1'000'000'000;
  for (std::size_t i = 0; i < merged.size(); ++i) {
    const std::int64_t idle_before = i == 0 ? far : merged[i].from_ns - merged[i - 1].to_ns;
    const std::int64_t idle_after =
        i + 1 == merged.size() ? far : merged[i + 1].from_ns - merged[i].to_ns;
    const std::int64_t len = merged[i].to_ns - merged[i].from_ns;
    out.push_back({merged[i].from_ns, true, idle_before, len});
    out.push_back({merged[i].to_ns, false, len, idle_after});
  }
  // chips next to an edge leave less quiet time: clip by the nearest chip
  for (const BusySpan& s : busy) {
    if (!s.pulse_chip) continue;
    for (ActivityEdge& e : out) {
      if (s.to_ns <= e.device_ns) e.quiet_before = std::min(e.quiet_before, e.device_ns - s.to_ns);
      if (s.from_ns >= e.device_ns)
        e.quiet_after = std::min(e.quiet_after, s.from_ns - e.device_ns);
    }
  }
  return out;
}

void align_blocks(const Trace& tr, std::span<const BusySpan> cont_busy, Tracker& tracker,
                  WorkloadReport& rep, std::int64_t block_ns) {
  if (cont_busy.empty()) return;
  const std::int64_t first = cont_busy.front().from_ns - 1'000'000'000;
  std::int64_t last = first;
  for (const BusySpan& s : cont_busy)
    last = std::max(last, s.to_ns);
  const std::int64_t bin = 5'000'000;
  const std::int64_t trace_lo = tr.ns_of(0.0);
  const std::int64_t trace_hi = tr.ns_of(static_cast<double>(tr.samples.size()));
  for (std::int64_t b = first; b < last; b += block_ns) {
    ++rep.blocks;
    auto [pred, half] = tracker.predict(b);
    // the first block is searched over the whole trace (it may start before the monitor did)
    const std::int64_t lo = tracker.empty() ? trace_lo - block_ns / 2 : pred - half;
    const std::int64_t hi = tracker.empty() ? trace_hi : std::min(trace_hi, pred + half);
    if (hi <= lo) continue;
    double score = 0.0;
    auto at = coarse_align(tr, cont_busy, b, b + block_ns, bin, lo, hi, &score);
    if (!at || score < 0.3) continue;
    ++rep.blocks_aligned;
    tracker.add(b, *at);
  }
}

}  // namespace

namespace {

double median_of(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

/// Trace values at positions [a, b) (NaNs and positions outside the trace skipped).
std::vector<double> values(const Trace& tr, std::int64_t a, std::int64_t b) {
  std::vector<double> v;
  const auto n = static_cast<std::int64_t>(tr.samples.size());
  for (std::int64_t i = std::max<std::int64_t>(0, a); i < std::min(b, n); ++i)
    if (!std::isnan(tr.samples[static_cast<std::size_t>(i)]))
      v.push_back(tr.samples[static_cast<std::size_t>(i)]);
  return v;
}

/// The dip a token boundary leaves in the decode level (compute stops at the token's marker and
/// resumes one wake-up later) within [lo, hi]: the first sample of the deepest dip below both
/// its neighbours' levels by 6 noise s.d. (from successive differences), or -1.
std::int64_t find_dip(const Trace& tr, std::int64_t lo, std::int64_t hi) {
  const std::vector<double> w = values(tr, lo - 12, hi + 12);
  if (w.size() < 8) return -1;
  std::vector<double> d;
  for (std::size_t i = 1; i < w.size(); ++i)
    d.push_back(std::abs(w[i] - w[i - 1]));
  const double noise = std::max(1e-12, 1.4826 * median_of(d) / std::sqrt(2.0));
  auto depth = [&](std::int64_t j) {
    const double pre = median_of(values(tr, j - 6, j - 1));
    const double post = median_of(values(tr, j + 4, j + 9));
    const float y = tr.samples[static_cast<std::size_t>(j)];
    return std::isnan(pre) || std::isnan(post) || std::isnan(y) ? 0.0 : std::min(pre, post) - y;
  };
  std::int64_t best = -1;
  double best_d = 6.0 * noise;
  for (std::int64_t j = std::max<std::int64_t>(lo, 6);
       j <= std::min<std::int64_t>(hi, static_cast<std::int64_t>(tr.samples.size()) - 9); ++j)
    if (const double dj = depth(j); dj > best_d) best = j, best_d = dj;
  while (best > lo && depth(best - 1) > 3.0 * noise)
    --best;
  return best;
}

}  // namespace

std::vector<SyncPoint> token_points(const Trace& tr, std::span<const Mark> marks,
                                    const std::function<std::int64_t(std::int64_t)>& to_cont,
                                    const ClockMap& prelim, std::uint32_t source0) {
  std::vector<std::int64_t> tokens;
  for (const Mark& m : marks)
    if (m.kind == MarkKind::token) tokens.push_back(m.t_ns);
  std::sort(tokens.begin(), tokens.end());
  const double period = tr.period_ns();
  std::vector<SyncPoint> out;
  for (std::size_t k = 0; k + 1 < tokens.size(); ++k) {
    const std::int64_t gap = tokens[k + 1] - tokens[k];
    if (gap > 2'000'000'000) continue;  // the last token of a run: decode ends there
    const MapSegment* seg = prelim.find(to_cont(tokens[k]));
    if (seg == nullptr) continue;
    const double pos = tr.pos_of(seg->map(to_cont(tokens[k])));
    const double hw =
        std::min(0.3 * static_cast<double>(gap) / period,
                 4.0 + static_cast<double>(4 * seg->residual_rms_ns + seg->bound_ns) / period);
    const std::int64_t j = find_dip(tr, static_cast<std::int64_t>(std::floor(pos - hw)),
                                    static_cast<std::int64_t>(std::ceil(pos + hw)));
    if (j < 0) continue;
    // compute stopped somewhere in (j - 1, j]: the middle, uniform
    out.push_back({tokens[k], tr.ns_of(static_cast<double>(j) - 0.5),
                   std::max<std::int64_t>(1, std::llround(period / std::sqrt(12.0))),
                   EvidenceKind::workload_edge, false, source0 + static_cast<std::uint32_t>(k)});
  }
  return out;
}

std::vector<SyncPoint> workload_points(const Trace& tr, std::span<const Mark> marks,
                                       const std::function<std::int64_t(std::int64_t)>& to_cont,
                                       Tracker& tracker, WorkloadReport& rep,
                                       std::int64_t block_ns) {
  const std::vector<BusySpan> busy = busy_spans(marks);
  std::vector<BusySpan> cont = busy;
  for (BusySpan& s : cont)
    s.from_ns = to_cont(s.from_ns), s.to_ns = to_cont(s.to_ns);
  align_blocks(tr, cont, tracker, rep, block_ns);
  if (tracker.anchors().size() < 1) return {};
  // the block anchors (a few ms) place the first edge, the edges found the next ones, the rate
  // only over 20 s or more (a block anchor a few ms off, or a block past the trace's end, would
  // tilt it; edges with marker jitter close together too)
  Tracker fine(3'000'000, 300.0, 100.0, 20'000'000'000);
  const double period = tr.period_ns();
  std::vector<EdgeFix> fixes;
  std::vector<const ActivityEdge*> owners;
  const std::vector<ActivityEdge> edges = activity_edges(busy, 20'000'000);
  rep.edges_expected = edges.size();
  for (const ActivityEdge& e : edges) {
    auto [pred, half] = (fine.empty() ? tracker : fine).predict(to_cont(e.device_ns));
    const double quiet = static_cast<double>(std::min(e.quiet_before, e.quiet_after)) / period;
    const double hw = std::min(static_cast<double>(half) / period, 0.45 * quiet);
    const double len = std::min(0.4 * quiet, 200.0e6 / period);
    if (hw < 2.0 || len < 3.0) continue;
    EdgeFix f = find_edge(tr, {tr.pos_of(pred), hw, e.rising, len, len, 0.0});
    if (!f.ok) continue;
    fine.add(to_cont(e.device_ns), tr.ns_of(f.pos));
    fixes.push_back(f);
    owners.push_back(&e);
  }
  // re-levelled next to each edge; tau from the falls (a rise also carries the governor's ramp)
  std::vector<bool> for_tau;
  for (const ActivityEdge* o : owners)
    for_tau.push_back(!o->rising);
  double tau_se = 0.0;
  const double tau = rail_from_edges(tr, fixes, for_tau, &tau_se);
  std::vector<EdgeFix> falling;
  for (std::size_t i = 0; i < fixes.size(); ++i)
    if (for_tau[i] && fixes[i].ok) falling.push_back(fixes[i]);
  rep.tau_ns = tau * period;
  rep.tau_se_ns = tau_se * period;
  rep.systematic_ns = std::llround(3.0 * rep.tau_se_ns * tau_sensitivity(falling, tau));
  rep.edges_found = static_cast<std::size_t>(
      std::count_if(fixes.begin(), fixes.end(), [](const EdgeFix& f) { return f.ok; }));
  // a rise is late-biased: the load ramps up behind the governor
  std::vector<SyncPoint> pts;
  for (std::size_t i = 0; i < fixes.size(); ++i) {
    if (!fixes[i].ok) continue;
    apply_rail(fixes[i], tau);
    pts.push_back({owners[i]->device_ns, tr.ns_of(fixes[i].pos),
                   std::max<std::int64_t>(1, std::llround(fixes[i].sigma * period)),
                   EvidenceKind::workload_edge, owners[i]->rising, static_cast<std::uint32_t>(i)});
  }
  return pts;
}

std::vector<SyncPoint> probe_points(std::span<const Probe> probes, std::int64_t burst_gap_ns) {
  std::vector<Probe> p(probes.begin(), probes.end());
  std::erase_if(p, [](const Probe& x) { return x.host_t3_ns < x.host_t0_ns; });
  std::sort(p.begin(), p.end(), [](auto& a, auto& b) { return a.host_t0_ns < b.host_t0_ns; });
  std::vector<SyncPoint> out;
  std::uint32_t burst = 0;
  for (std::size_t i = 0; i < p.size();) {
    std::size_t j = i, best = i;
    while (j < p.size() && (j == i || p[j].host_t0_ns - p[j - 1].host_t0_ns <= burst_gap_ns)) {
      if (p[j].host_t3_ns - p[j].host_t0_ns < p[best].host_t3_ns - p[best].host_t0_ns) best = j;
      ++j;
    }
    const std::int64_t rtt = p[best].host_t3_ns - p[best].host_t0_ns;
    out.push_back(
        {p[best].device_mono_ns, p[best].host_t0_ns + rtt / 2,
         std::max<std::int64_t>(1, std::llround(static_cast<double>(rtt) / (2.0 * std::sqrt(3.0)))),
         EvidenceKind::probe, false, burst++});
    i = j;
  }
  return out;
}

std::vector<SyncPoint> host_to_monitor(std::span<const SyncPoint> host_pts,
                                       const HostMonitorLink& link) {
  std::vector<SyncPoint> out(host_pts.begin(), host_pts.end());
  for (SyncPoint& p : out) {
    p.target_ns -= link.host_steady_at_index0_ns;
    p.sigma_ns = std::llround(
        std::hypot(static_cast<double>(p.sigma_ns), static_cast<double>(link.uncertainty_ns)));
  }
  return out;
}

std::vector<LogicEdge> logic_edges(std::span<const std::uint8_t> samples, int bit,
                                   std::int64_t first_index) {
  std::vector<LogicEdge> out;
  const auto mask = static_cast<std::uint8_t>(1U << (bit & 7));
  for (std::size_t j = 1; j < samples.size(); ++j)
    if (((samples[j] ^ samples[j - 1]) & mask) != 0)
      out.push_back({first_index + static_cast<std::int64_t>(j), (samples[j] & mask) != 0});
  return out;
}

std::vector<SyncPoint> logic_points(const LogicInput& in, std::vector<std::string>& notes) {
  std::vector<std::int64_t> at;
  for (const LogicEdge& e : in.edges ? *in.edges : logic_edges(in.samples, in.bit, 0))
    at.push_back(e.index - (in.edges ? in.first_index : 0));
  if (at.size() != in.device_toggle_ns.size())
    notes.push_back("logic input D" + std::to_string(in.bit) + ": " + std::to_string(at.size()) +
                    " edges for " + std::to_string(in.device_toggle_ns.size()) +
                    " toggles; matched in order up to the shorter");
  const double period = 1e9 / in.nominal_rate_hz;
  std::vector<SyncPoint> out;
  for (std::size_t k = 0; k < std::min(at.size(), in.device_toggle_ns.size()); ++k) {
    // the line changed in (j - 1, j]: the middle of that sample interval
    const double pos = static_cast<double>(in.first_index + at[k]) - 0.5;
    out.push_back({in.device_toggle_ns[k], std::llround(pos * period),
                   std::max<std::int64_t>(1, std::llround(period / std::sqrt(12.0))),
                   EvidenceKind::logic_edge, false, static_cast<std::uint32_t>(k)});
  }
  return out;
}

std::vector<SyncPoint> relay_points(const Trace& tr, std::span<const RelayEdge> edges,
                                    const HostMonitorLink& link, std::vector<std::string>& notes) {
  std::vector<SyncPoint> out;
  const double period = tr.period_ns();
  std::size_t unlogged = 0, missed = 0;
  for (std::uint32_t k = 0; k < edges.size(); ++k) {
    const RelayEdge& e = edges[k];
    if (e.device_log_ns == std::numeric_limits<std::int64_t>::min()) {
      ++unlogged;
      continue;
    }
    // a relay acts between its command and its acknowledgement, within tens of ms: search that
    // span +-100 ms, levels over 50 ms
    const std::int64_t ack = std::max(e.host_ack_ns, e.host_command_ns);
    const double pos = tr.pos_of(e.host_command_ns + (ack - e.host_command_ns) / 2 -
                                 link.host_steady_at_index0_ns);
    const double half = (100e6 + static_cast<double>(ack - e.host_command_ns) / 2) / period;
    EdgeFix f = find_edge(tr, {pos, half, e.rising, 50e6 / period, 50e6 / period, 0.0});
    if (!f.ok) {
      ++missed;
      notes.push_back("relay edge " + std::to_string(k) + " (" + (e.rising ? "rising" : "falling") +
                      ", host " + std::to_string(e.host_command_ns) +
                      " ns): no step in the trace within 100 ms of the command; left out");
      continue;
    }
    // the change happened within [log - resolution, log]: its middle, uniform
    const auto res = std::max<std::int64_t>(0, e.device_log_resolution_ns);
    const double sig = std::hypot(f.sigma * period, static_cast<double>(res) / std::sqrt(12.0));
    out.push_back({e.device_log_ns - res / 2, tr.ns_of(f.pos),
                   std::max<std::int64_t>(1, std::llround(sig)), EvidenceKind::relay_edge, false,
                   k});
  }
  if (unlogged > 0)
    notes.push_back("relay edges: " + std::to_string(unlogged) + " of " +
                    std::to_string(edges.size()) + " not logged by the device");
  if (missed > 0)
    notes.push_back("relay edges: " + std::to_string(missed) + " of " +
                    std::to_string(edges.size()) + " not found in the trace");
  return out;
}

}  // namespace meltrig::sync
