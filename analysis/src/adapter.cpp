// Marker and telemetry adapter: see adapter.hpp.
#include "meltrig/analysis/adapter.hpp"

#include <string>

namespace meltrig::analysis {

namespace {

std::optional<EventKind> kind_of(targets::MarkerKind k) {
  using M = targets::MarkerKind;
  switch (k) {
    case M::run_start:
      return EventKind::run_start;
    case M::run_end:
      return EventKind::run_end;
    case M::load_start:
      return EventKind::load_start;
    case M::load_end:
      return EventKind::load_end;
    case M::prefill_start:
      return EventKind::prefill_start;
    case M::prefill_end:
      return EventKind::prefill_end;
    case M::token:
      return EventKind::token;
    case M::sync_start:
      return EventKind::sync_start;
    case M::sync_end:
      return EventKind::sync_end;
    case M::user:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

Result<std::vector<Event>> events_from_markers(const targets::MarkerLog& log, const ClockMap& map,
                                               double jitter_s) {
  std::vector<Event> out;
  for (const targets::MarkerEvent& e : log.events) {
    auto kind = kind_of(e.kind);
    if (!kind) continue;
    auto m = map(log.clock, e.t_ns);
    if (!m) {
      return make_error(Errc::invalid_argument, log.source + ":" + std::to_string(e.line) + ": " +
                                                    std::string(targets::kind_name(e.kind)) +
                                                    " at " + std::to_string(e.t_ns) +
                                                    " ns on clock '" + log.clock +
                                                    "' is not covered by the clock map");
    }
    out.push_back({m->t_s, m->bound_s + jitter_s, *kind, e.index});
  }
  return out;
}

std::vector<TimedSeries> series_from_telemetry(const targets::Telemetry& tel, const ClockMap& map) {
  std::vector<TimedSeries> out;
  for (const targets::TelemetrySeries& s : tel.series) {
    TimedSeries t;
    t.name = s.name;
    t.unit = s.unit;
    for (std::size_t i = 0; i < s.t_ns.size() && i < s.value.size(); ++i) {
      auto m = map(s.clock, s.t_ns[i]);
      if (!m) continue;
      t.t_s.push_back(m->t_s);
      t.value.push_back(s.value[i]);
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace meltrig::analysis
