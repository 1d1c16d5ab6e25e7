// write_perfetto_trace: counters from summaries, slices and instants from the analysis.
#include "meltrig/report/perfetto.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "meltrig/analysis/capture_analysis.hpp"
#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/report/power_data.hpp"

namespace meltrig::report {

namespace {

using nlohmann::json;

constexpr int kMonitor = 1, kDevice = 2;
// Threads of the device process, one per kind of slice (slices on one thread must nest).
enum Thread : int {
  kPhases = 1,
  kTokens = 2,
  kBaseline = 3,
  kIdleAfter = 4,
  kCooldown = 5,
  kSync = 6
};

double us(double s) {
  return s * 1e6;
}

json num(double x) {
  return std::isfinite(x) ? json(x) : json(nullptr);
}

// The trace events are written one per line so that a long trace streams out.
class Events {
 public:
  explicit Events(std::ostream& out) : out_(out) {
    out_ << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  }
  void add(const json& e) {
    out_ << (first_ ? "" : ",\n") << e.dump();
    first_ = false;
  }
  void finish(const json& other) { out_ << "\n],\"otherData\":" << other.dump() << "}\n"; }

 private:
  std::ostream& out_;
  bool first_ = true;
};

void names(Events& ev, const std::string& monitor) {
  ev.add({{"ph", "M"},
          {"pid", kMonitor},
          {"name", "process_name"},
          {"args", {{"name", "monitor (" + monitor + ")"}}}});
  ev.add({{"ph", "M"}, {"pid", kDevice}, {"name", "process_name"}, {"args", {{"name", "device"}}}});
  const std::pair<int, const char*> threads[] = {
      {kPhases, "phases"},        {kTokens, "tokens"},     {kBaseline, "idle_before"},
      {kIdleAfter, "idle_after"}, {kCooldown, "cooldown"}, {kSync, "sync"}};
  for (const auto& [tid, name] : threads) {
    ev.add({{"ph", "M"},
            {"pid", kDevice},
            {"tid", tid},
            {"name", "thread_name"},
            {"args", {{"name", name}}}});
  }
}

// One counter track per float32 channel plus power (when computed from current x voltage).
Result<void> monitor_counters(Events& ev, const dataset::CaptureReader& r, std::uint64_t max) {
  const int level = finest_level_within(r, max);
  const std::uint64_t per = std::uint64_t{1} << level;
  const std::uint64_t count = (r.samples_written() + per - 1) / per;
  const double rate = r.sample_rate_hz();
  auto track = [&](const std::string& name, const std::string& unit, const std::vector<float>& v) {
    for (std::uint64_t k = 0; k < v.size(); ++k) {
      if (std::isnan(v[k])) continue;
      ev.add({{"ph", "C"},
              {"pid", kMonitor},
              {"name", name + " (" + unit + ")"},
              {"ts", us(static_cast<double>(k * per) / rate)},
              {"args", {{unit, v[k]}}}});
    }
  };
  if (r.find_channel("power") == nullptr && r.find_channel("current") != nullptr &&
      r.find_channel("voltage") != nullptr) {
    auto p = read_power(r, level, 0, count);
    if (!p) return p.error();
    track("power", "W", p->mean);
  }
  for (const dataset::ChannelSpec& c : r.channels()) {
    if (c.type != dataset::SampleType::f32) continue;
    auto v = read_channel_means(r, c.name, level, 0, count);
    if (!v) return v.error();
    track(c.name, c.unit, *v);
  }
  return {};
}

Result<void> gap_events(Events& ev, const dataset::CaptureReader& r) {
  auto gaps = r.gaps();
  if (!gaps) return gaps.error();
  for (const dataset::Gap& g : *gaps) {
    const auto kind = static_cast<std::size_t>(g.kind);
    ev.add(
        {{"ph", "i"},
         {"s", "p"},
         {"pid", kMonitor},
         {"tid", 0},
         {"name", std::string("gap: ") +
                      (kind < dataset::kGapKindCount ? dataset::kGapKindNames[kind] : "unknown")},
         {"ts", us(static_cast<double>(g.first_index) / r.sample_rate_hz())},
         {"args", {{"samples", g.count}, {"first_index", g.first_index}}}});
  }
  return {};
}

int phase_thread(const std::string& name) {
  if (name == "idle_before") return kBaseline;
  if (name == "idle_after") return kIdleAfter;
  if (name == "cooldown") return kCooldown;
  return kPhases;
}

void device_slices(Events& ev, const analysis::Analysis& a) {
  for (const analysis::RepResult& r : a.run.reps) {
    for (const analysis::PhaseResult& p : r.phases) {
      if (!p.present) continue;
      ev.add({{"ph", "X"},
              {"pid", kDevice},
              {"tid", phase_thread(p.name)},
              {"name", p.name},
              {"ts", us(p.start_s)},
              {"dur", us(p.duration_s())},
              {"args",
               {{"repetition", r.index},
                {"tokens", p.tokens},
                {"energy_j", num(p.stats.energy_j)},
                {"net_energy_j", num(p.net_energy_j)},
                {"mean_w", num(p.stats.mean_w())}}}});
    }
  }
  for (const analysis::TokenResult& t : a.run.tokens) {
    ev.add({{"ph", "X"},
            {"pid", kDevice},
            {"tid", kTokens},
            {"name", "token " + std::to_string(t.index)},
            {"ts", us(t.start_s)},
            {"dur", us(t.end_s - t.start_s)},
            {"args",
             {{"repetition", t.repetition},
              {"index", t.index},
              {"energy_j", num(t.stats.energy_j)},
              {"net_energy_j", num(t.net_energy_j)},
              {"refined", t.refined}}}});
  }
}

void device_instants(Events& ev, const analysis::CaptureAnalysis& ca) {
  for (const analysis::Event& e : ca.events) {
    if (e.kind != analysis::EventKind::sync_start && e.kind != analysis::EventKind::sync_end)
      continue;
    ev.add({{"ph", "i"},
            {"s", "t"},
            {"pid", kDevice},
            {"tid", kSync},
            {"name", e.kind == analysis::EventKind::sync_start ? "sync.start" : "sync.end"},
            {"ts", us(e.t_s)},
            {"args", {{"uncertainty_s", e.uncertainty_s}}}});
  }
  for (const analysis::TimedSeries& s : ca.telemetry) {
    for (std::size_t k = 0; k < s.t_s.size(); ++k) {
      if (!std::isfinite(s.value[k]) || s.t_s[k] < 0) continue;
      ev.add({{"ph", "C"},
              {"pid", kDevice},
              {"name", s.name + " (" + s.unit + ")"},
              {"ts", us(s.t_s[k])},
              {"args", {{s.unit.empty() ? "value" : s.unit, s.value[k]}}}});
    }
  }
}

}  // namespace

Result<void> write_perfetto_trace(const std::filesystem::path& capture, std::ostream& out,
                                  const TraceOptions& opt) {
  auto ca = analysis::analyze_capture(capture);
  if (!ca) return ca.error();
  auto r = dataset::CaptureReader::open(capture);
  if (!r) return r.error();
  const auto* driver = dataset::find_attribute(r->monitor_attributes(), "driver");
  Events ev(out);
  names(ev, driver != nullptr ? dataset::format_attribute_value(*driver) : r->monitor());
  if (auto res = monitor_counters(ev, *r, opt.max_counter_points); !res) return res.error();
  if (auto res = gap_events(ev, *r); !res) return res.error();
  device_slices(ev, ca->analysis);
  device_instants(ev, *ca);
  ev.finish({{"file", capture.string()},
             {"time_base", "monitor: sample index / nominal rate"},
             {"sample_rate_hz", r->sample_rate_hz()},
             {"counter_level", finest_level_within(*r, opt.max_counter_points)},
             {"sync", ca->json["sync"]}});
  return {};
}

}  // namespace meltrig::report
