// The /sync group (file_sync.hpp): writer, reader, the JSON `sync` object and a summary.
#include <cmath>
#include <cstdio>

#include "meltrig/sync/file_sync.hpp"

namespace meltrig::sync {

namespace {

using dataset::Column;
using dataset::GroupData;
using I64 = std::vector<std::int64_t>;
using F64 = std::vector<double>;
using Str = std::vector<std::string>;

template <typename E>
std::optional<E> parse_name(std::string_view s, std::string_view (*name)(E), int count) {
  for (int k = 0; k < count; ++k)
    if (name(static_cast<E>(k)) == s) return static_cast<E>(k);
  return std::nullopt;
}

GroupData segment_table(const std::vector<ClockMap>& maps) {
  Str clock, target, evidence, why;
  I64 start, end, offset, rms, rmax, bound, latency, points, outliers;
  F64 rate;
  std::array<I64, 5> per_kind;
  for (const ClockMap& m : maps)
    for (const MapSegment& s : m.segments) {
      clock.emplace_back(clock_name(m.clock));
      target.emplace_back(target_name(m.target));
      start.push_back(s.device_start_ns);
      end.push_back(s.device_end_ns);
      offset.push_back(s.offset_ns);
      rate.push_back(s.rate);
      rms.push_back(s.residual_rms_ns);
      rmax.push_back(s.residual_max_ns);
      bound.push_back(s.bound_ns);
      latency.push_back(s.latency_ns);
      points.push_back(static_cast<std::int64_t>(s.points));
      outliers.push_back(static_cast<std::int64_t>(s.outliers));
      for (std::size_t k = 0; k < per_kind.size(); ++k)
        per_kind[k].push_back(static_cast<std::int64_t>(s.evidence[k]));
      evidence.push_back(s.evidence_names());
      why.push_back(s.break_before);
    }
  GroupData g{"segments",
              {},
              {{"device_clock", clock, ""},
               {"target", target, ""},
               {"device_start_ns", start, "ns"},
               {"device_end_ns", end, "ns"},
               {"offset_ns", offset, "ns"},
               {"rate", rate, "ns/ns"},
               {"residual_rms_ns", rms, "ns"},
               {"residual_max_ns", rmax, "ns"},
               {"bound_ns", bound, "ns"},
               {"latency_ns", latency, "ns"},
               {"points", points, ""},
               {"outliers", outliers, ""},
               {"evidence", evidence, ""},
               {"break_before", why, ""}},
              {}};
  for (std::size_t k = 0; k < per_kind.size(); ++k)
    g.columns.push_back(
        {"points_" + std::string(evidence_name(static_cast<EvidenceKind>(k))), per_kind[k], ""});
  return g;
}

GroupData point_table(const std::string& name, const std::vector<SyncPoint>& pts) {
  I64 dev, tgt, sigma, late, source;
  Str kind;
  for (const SyncPoint& p : pts) {
    dev.push_back(p.device_ns);
    tgt.push_back(p.target_ns);
    sigma.push_back(p.sigma_ns);
    kind.emplace_back(evidence_name(p.kind));
    late.push_back(p.late_biased ? 1 : 0);
    source.push_back(p.source);
  }
  return {name,
          {},
          {{"device_ns", dev, "ns"},
           {"target_ns", tgt, "ns"},
           {"sigma_ns", sigma, "ns"},
           {"kind", kind, ""},
           {"late_biased", late, ""},
           {"source", source, ""}},
          {}};
}

std::vector<dataset::Attribute> diag_attrs(const SyncDiagnostics& d) {
  auto i = [](auto v) { return static_cast<std::int64_t>(v); };
  return {{"pulses_expected", i(d.pulses.expected)},
          {"pulses_found", i(d.pulses.found)},
          {"pulses_min_psr", d.pulses.min_psr},
          {"pulses_tau_ns", d.pulses.tau_ns},
          {"pulses_tau_se_ns", d.pulses.tau_se_ns},
          {"pulses_systematic_ns", d.pulses.systematic_ns},
          {"workload_blocks", i(d.workload.blocks)},
          {"workload_blocks_aligned", i(d.workload.blocks_aligned)},
          {"workload_edges_expected", i(d.workload.edges_expected)},
          {"workload_edges_found", i(d.workload.edges_found)},
          {"workload_tau_ns", d.workload.tau_ns},
          {"workload_systematic_ns", d.workload.systematic_ns},
          {"logic_points", i(d.logic_points)},
          {"relay_points", i(d.relay_points)},
          {"probe_bursts", i(d.probe_bursts)},
          {"latency_p50_ns", d.latency_p50_ns},
          {"latency_p99_ns", d.latency_p99_ns}};
}

GroupData diagnostics_group(const FileSync& s) {
  I64 from, to;
  Str why;
  for (const ClockBreak& b : s.diag.breaks) {
    from.push_back(b.from_ns);
    to.push_back(b.to_ns);
    why.push_back(b.why);
  }
  return {"diagnostics",
          diag_attrs(s.diag),
          {{"notes", s.diag.notes, ""},
           {"pulse_misses", s.diag.pulses.misses, ""},
           {"found", s.found, ""},
           {"break_from_mono_ns", from, "ns"},
           {"break_to_mono_ns", to, "ns"},
           {"break_why", why, ""}},
          {}};
}

const ClockMap* primary(const FileSync& s) {
  for (const ClockMap& m : s.maps)
    if (m.clock == s.marks_clock && m.target == TargetClock::monitor) return &m;
  return nullptr;
}

}  // namespace

std::optional<std::pair<double, double>> FileSync::monitor_seconds(std::string_view clock,
                                                                   std::int64_t device_ns) const {
  for (const ClockMap& m : maps) {
    if (m.target != TargetClock::monitor || clock_name(m.clock) != clock) continue;
    auto r = m.map(device_ns);
    if (!r) return std::nullopt;
    return std::pair{static_cast<double>(r->target_ns) * 1e-9,
                     static_cast<double>(r->bound_ns) * 1e-9};
  }
  return std::nullopt;
}

nlohmann::json FileSync::to_json() const {
  nlohmann::json segs = nlohmann::json::array();
  for (const ClockMap& m : maps) {
    if (m.target != TargetClock::monitor) continue;
    for (const MapSegment& s : m.segments)
      segs.push_back({{"device_clock", clock_name(m.clock)},
                      {"device_start_ns", s.device_start_ns},
                      {"device_end_ns", s.device_end_ns},
                      {"offset_s", static_cast<double>(s.offset_ns) * 1e-9},
                      {"rate", s.rate},
                      {"residual_rms_s", static_cast<double>(s.residual_rms_ns) * 1e-9},
                      {"bound_s", static_cast<double>(s.bound_ns) * 1e-9},
                      {"evidence", s.evidence_names()}});
  }
  // The headline figures: the map of the markers' clock (first segment's offset, the
  // points-weighted rate and residual, the worst bound).
  double offset_s = 0, wrate = 0, wrms = 0, bound_s = 0, n = 0;
  if (const ClockMap* m = primary(*this); m != nullptr && !m->segments.empty()) {
    offset_s = static_cast<double>(m->segments.front().offset_ns) * 1e-9;
    for (const MapSegment& s : m->segments) {
      const double w = static_cast<double>(std::max<std::size_t>(1, s.points));
      n += w;
      wrate += w * s.rate;
      wrms += w * std::pow(static_cast<double>(s.residual_rms_ns) * 1e-9, 2);
      bound_s = std::max(bound_s, static_cast<double>(s.bound_ns) * 1e-9);
    }
  }
  return {{"method", method},
          {"offset_s", offset_s},
          {"drift_ppm", n > 0 ? (wrate / n - 1.0) * 1e6 : 0.0},
          {"residual_rms_s", n > 0 ? std::sqrt(wrms / n) : 0.0},
          {"bound_s", bound_s},
          {"segments", segs}};
}

std::string FileSync::summary() const {
  std::string out = "sync: " + method + " (markers/" + markers_group + " on " +
                    std::string(clock_name(marks_clock)) + ")\n";
  char buf[320];
  for (const ClockMap& m : maps)
    for (const MapSegment& s : m.segments) {
      std::snprintf(
          buf, sizeof buf,
          "  %-9s -> %-11s [%lld, %lld] ns: offset %.9f s, drift %+.3f ppm, rms %.1f us, "
          "bound %.1f us, %zu points (%s)%s%s\n",
          std::string(clock_name(m.clock)).c_str(), std::string(target_name(m.target)).c_str(),
          static_cast<long long>(s.device_start_ns), static_cast<long long>(s.device_end_ns),
          static_cast<double>(s.offset_ns) * 1e-9, (s.rate - 1.0) * 1e6,
          static_cast<double>(s.residual_rms_ns) * 1e-3, static_cast<double>(s.bound_ns) * 1e-3,
          s.points, s.evidence_names().c_str(), s.break_before == "start" ? "" : ", after a ",
          s.break_before == "start" ? "" : s.break_before.c_str());
      out += buf;
    }
  for (const std::string& f : found)
    out += "  found: " + f + "\n";
  for (const std::string& n : diag.notes)
    out += "  note: " + n + "\n";
  return out;
}

dataset::GroupData sync_group(const FileSync& s) {
  GroupData g{"sync",
              {{"version", kSyncGroupVersion},
               {"method", s.method},
               {"markers_clock", std::string(clock_name(s.marks_clock))},
               {"markers", "/markers/" + s.markers_group},
               {"time_base", std::string("monitor ns: sample index x 1e9 / nominal rate")},
               {"json", s.to_json().dump()}},
              {},
              {}};
  g.groups = {segment_table(s.maps), point_table("evidence_monitor", s.monitor_evidence),
              point_table("evidence_host_steady", s.host_evidence), diagnostics_group(s)};
  return g;
}

Result<void> store(const std::filesystem::path& path, const FileSync& s) {
  return dataset::replace_group(path, sync_group(s));
}

namespace {

template <typename T>
const std::vector<T>& col(const GroupData* g, const char* name) {
  static const std::vector<T> empty;
  const Column* c = g != nullptr ? g->column(name) : nullptr;
  const auto* v = c != nullptr ? std::get_if<std::vector<T>>(&c->values) : nullptr;
  return v != nullptr ? *v : empty;
}

std::vector<ClockMap> maps_from(const GroupData* t) {
  std::vector<ClockMap> maps;
  const Str& clock = col<std::string>(t, "device_clock");
  const Str& target = col<std::string>(t, "target");
  const I64 &start = col<std::int64_t>(t, "device_start_ns"),
            &end = col<std::int64_t>(t, "device_end_ns"), &off = col<std::int64_t>(t, "offset_ns"),
            &bound = col<std::int64_t>(t, "bound_ns"),
            &rms = col<std::int64_t>(t, "residual_rms_ns"), &pts = col<std::int64_t>(t, "points");
  const F64& rate = col<double>(t, "rate");
  const Str& why = col<std::string>(t, "break_before");
  const std::size_t n = std::min({clock.size(), target.size(), start.size(), end.size(), off.size(),
                                  bound.size(), rate.size()});
  for (std::size_t i = 0; i < n; ++i) {
    auto c = parse_name<DeviceClock>(clock[i], clock_name, 3);
    auto g = parse_name<TargetClock>(target[i], target_name, 2);
    if (!c || !g) continue;
    if (maps.empty() || maps.back().clock != *c || maps.back().target != *g)
      maps.push_back({*c, *g, {}});
    MapSegment s;
    s.clock = *c;
    s.device_start_ns = start[i], s.device_end_ns = end[i], s.offset_ns = off[i];
    s.rate = rate[i], s.bound_ns = bound[i];
    s.residual_rms_ns = i < rms.size() ? rms[i] : 0;
    s.points = i < pts.size() ? static_cast<std::size_t>(pts[i]) : 0;
    s.break_before = i < why.size() ? why[i] : "";
    for (std::size_t k = 0; k < s.evidence.size(); ++k) {
      const std::string name = "points_" + std::string(evidence_name(static_cast<EvidenceKind>(k)));
      const I64& per = col<std::int64_t>(t, name.c_str());
      s.evidence[k] = i < per.size() ? static_cast<std::size_t>(per[i]) : 0;
    }
    maps.back().segments.push_back(std::move(s));
  }
  return maps;
}

std::vector<SyncPoint> points_from(const GroupData* t) {
  std::vector<SyncPoint> out;
  const I64 &dev = col<std::int64_t>(t, "device_ns"), &tgt = col<std::int64_t>(t, "target_ns"),
            &sigma = col<std::int64_t>(t, "sigma_ns"), &late = col<std::int64_t>(t, "late_biased"),
            &source = col<std::int64_t>(t, "source");
  const Str& kind = col<std::string>(t, "kind");
  const std::size_t n =
      std::min({dev.size(), tgt.size(), sigma.size(), late.size(), source.size(), kind.size()});
  for (std::size_t i = 0; i < n; ++i) {
    auto k = parse_name<EvidenceKind>(kind[i], evidence_name, 5);
    out.push_back({dev[i], tgt[i], sigma[i], k.value_or(EvidenceKind::pulse_edge), late[i] != 0,
                   static_cast<std::uint32_t>(source[i])});
  }
  return out;
}

}  // namespace

Result<std::optional<FileSync>> read_stored(const std::filesystem::path& path) {
  auto g = dataset::read_group(path, "sync");
  if (!g) return g.error();
  if (!*g) return std::optional<FileSync>{};
  const GroupData& s = **g;
  if (s.i64("version") != kSyncGroupVersion)
    return make_error(Errc::invalid_argument,
                      path.string() + ": /sync has format version " +
                          std::to_string(s.i64("version").value_or(-1)) + ", this meltrig reads " +
                          std::to_string(kSyncGroupVersion) + " (run `meltrig sync --force`)");
  FileSync f;
  f.method = s.str("method").value_or("");
  f.marks_clock = parse_name<DeviceClock>(s.str("markers_clock").value_or(""), clock_name, 3)
                      .value_or(DeviceClock::monotonic);
  const std::string markers = s.str("markers").value_or("");
  f.markers_group = markers.starts_with("/markers/") ? markers.substr(9) : markers;
  f.maps = maps_from(s.group("segments"));
  f.monitor_evidence = points_from(s.group("evidence_monitor"));
  f.host_evidence = points_from(s.group("evidence_host_steady"));
  if (const GroupData* d = s.group("diagnostics")) {
    f.diag.notes = col<std::string>(d, "notes");
    f.found = col<std::string>(d, "found");
  }
  if (primary(f) == nullptr)
    return make_error(Errc::invalid_argument,
                      path.string() + ": /sync holds no map of the markers' clock to the monitor");
  return std::optional<FileSync>(std::move(f));
}

}  // namespace meltrig::sync
