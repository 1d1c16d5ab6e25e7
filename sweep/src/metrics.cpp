// Per-run metrics and the summary table of a sweep: see metrics.hpp. The analysis library is
// called here and only here.
#include "meltrig/sweep/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "meltrig/analysis/analysis.hpp"
#include "meltrig/analysis/capture_inputs.hpp"
#include "meltrig/analysis/store.hpp"
#include "meltrig/sync/file_sync.hpp"

namespace meltrig::sweep {

rig::RunMetrics analyse_run(const std::filesystem::path& file, const rig::Plan& plan) {
  rig::RunMetrics m;
  const double nan = std::nan("");
  m.tok_s = m.j_per_token = m.j_per_token_net = m.baseline_w = m.sync_bound_s = nan;
  // The sync library's map from the file (as `meltrig analyze` does): stored in /sync, and the
  // result in /analysis, once the analysis succeeded.
  auto s = sync::sync_file(file);
  if (!s) return m.error = s.error().describe(), m;
  m.sync_method = s->method;
  double bound = 0;
  auto in = analysis::inputs_from_capture(
      file, [&](std::string_view clock, std::int64_t ns) -> std::optional<analysis::MappedTime> {
        auto t = s->monitor_seconds(clock, ns);
        if (!t) return std::nullopt;
        bound = std::max(bound, t->second);
        return analysis::MappedTime{t->first, t->second};
      });
  if (!in) return m.error = in.error().describe(), m;
  m.sync_bound_s = bound;
  analysis::AnalysisConfig cfg;
  cfg.run.baseline.window_s = plan.baseline.window_s;
  cfg.run.baseline.guard_s = plan.baseline.guard_s;
  auto a = analysis::analyze(*in, cfg);
  in = Error{Errc::cancelled, ""};  // the capture is closed before anything is stored
  if (!a) return m.error = a.error().describe(), m;
  nlohmann::json j = analysis::to_json(*a);
  j["sync"] = s->to_json();
  if (auto w = sync::store(file, *s); !w) return m.error = w.error().describe(), m;
  if (auto w = analysis::store(file, *a, j); !w) return m.error = w.error().describe(), m;
  double tokens = 0, decode_s = 0, gross = 0, net = 0;
  for (const analysis::RepResult& r : a->run.reps) {
    tokens += static_cast<double>(r.output_tokens);
    if (r.decode_tok_s > 0) decode_s += static_cast<double>(r.output_tokens) / r.decode_tok_s;
    gross += r.j_per_token * static_cast<double>(r.output_tokens);
    net += r.j_per_token_net * static_cast<double>(r.output_tokens);
  }
  m.tokens = static_cast<std::uint64_t>(tokens);
  if (tokens > 0) {
    m.tok_s = decode_s > 0 ? tokens / decode_s : nan;
    m.j_per_token = gross / tokens;
    m.j_per_token_net = net / tokens;
  }
  m.baseline_w = a->run.baseline_w;
  return m;
}

std::string summary_table(const std::vector<rig::JournalEntry>& entries) {
  std::map<std::pair<std::string, std::string>, std::vector<const rig::RunMetrics*>> groups;
  for (const rig::JournalEntry& e : entries)
    if (e.state == rig::RunState::complete && e.metrics.error.empty())
      groups[{e.run.device, e.run.workload}].push_back(&e.metrics);
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-12s %-12s %4s  %-24s %-24s %-20s\n", "device", "workload",
                "runs", "J/token (95% CI)", "net J/token (95% CI)", "tokens/s (95% CI)");
  out += line;
  for (const auto& [key, ms] : groups) {
    auto col = [&](double rig::RunMetrics::*f) {
      std::vector<double> v;
      for (const rig::RunMetrics* m : ms)
        if (std::isfinite(m->*f)) v.push_back(m->*f);
      const analysis::Summary s = analysis::summarize(v);
      char b[64];
      if (s.n > 1)
        std::snprintf(b, sizeof b, "%.4f [%.4f, %.4f]", s.mean, s.t_low, s.t_high);
      else
        std::snprintf(b, sizeof b, "%.4f", s.mean);
      return std::string(b);
    };
    std::snprintf(line, sizeof line, "%-12s %-12s %4zu  %-24s %-24s %-20s\n", key.first.c_str(),
                  key.second.c_str(), ms.size(), col(&rig::RunMetrics::j_per_token).c_str(),
                  col(&rig::RunMetrics::j_per_token_net).c_str(),
                  col(&rig::RunMetrics::tok_s).c_str());
    out += line;
  }
  return out;
}

}  // namespace meltrig::sweep
