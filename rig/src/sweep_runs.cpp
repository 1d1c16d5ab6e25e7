// The runs of a sweep and their order, shards, per-run metrics and the summary table
// (sweep.hpp). The analysis library is called here and only here.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "meltrig/analysis/analysis.hpp"
#include "meltrig/analysis/capture_inputs.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/rig/sweep.hpp"

namespace meltrig::rig {
namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename T>
void shuffle(std::vector<T>& v, std::uint64_t& state) {
  for (std::size_t i = v.size(); i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(splitmix64(state) % i);
    std::swap(v[i - 1], v[j]);
  }
}

std::uint64_t run_seed(std::uint64_t seed, const std::string& id) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : id) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return splitmix64(h) & 0x7fffffffffffffffULL;
}

struct Config {
  const PlanDevice* device;
  const PlanWorkload* workload;
};

}  // namespace

Result<Shard> Shard::parse(std::string_view text) {
  Shard s;
  const auto slash = text.find('/');
  auto bad = [&] {
    return Error{Errc::invalid_argument,
                 "--shard " + std::string(text) + ": expected I/N with 1 <= I <= N"};
  };
  if (slash == std::string_view::npos) return bad();
  try {
    std::size_t used = 0;
    s.index = std::stoi(std::string(text.substr(0, slash)), &used);
    if (used != slash) return bad();
    const std::string n(text.substr(slash + 1));
    s.count = std::stoi(n, &used);
    if (used != n.size()) return bad();
  } catch (...) {
    return bad();
  }
  if (s.count < 1 || s.index < 1 || s.index > s.count) return bad();
  return s;
}

std::vector<SweepRun> expand_runs(const Plan& plan, std::uint64_t seed, const Shard& shard) {
  std::vector<Config> configs;
  for (const PlanDevice& d : plan.devices)
    for (const PlanWorkload& w : plan.workloads)
      configs.push_back({&d, &w});
  std::uint64_t state = seed;
  std::vector<std::pair<Config, int>> order;
  if (plan.order == RunOrder::interleaved) {
    for (int r = 0; r < plan.repetitions; ++r) {
      std::vector<Config> c = configs;
      if (plan.shuffle) shuffle(c, state);
      for (const Config& x : c)
        order.emplace_back(x, r);
    }
  } else {
    std::vector<Config> c = configs;
    if (plan.shuffle) shuffle(c, state);
    for (const Config& x : c)
      for (int r = 0; r < plan.repetitions; ++r)
        order.emplace_back(x, r);
  }
  std::vector<SweepRun> runs;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const auto& [c, rep] = order[i];
    const auto dev_index = static_cast<int>(c.device - plan.devices.data());
    if (dev_index % shard.count != shard.index - 1) continue;
    SweepRun r;
    r.order = i;
    r.device = c.device->name;
    r.workload = c.workload->name;
    r.model = c.workload->model;
    r.repetition = rep;
    r.id = r.device + "." + r.workload + ".r" + std::to_string(rep);
    r.seed = run_seed(seed, r.id);
    runs.push_back(std::move(r));
  }
  return runs;
}

std::filesystem::path shard_directory(const std::filesystem::path& output, const Shard& shard) {
  if (shard.whole()) return output;
  return output / ("shard-" + std::to_string(shard.index) + "-of-" + std::to_string(shard.count));
}

RunMetrics analyse_run(const std::filesystem::path& file, const Plan& plan) {
  RunMetrics m;
  m.sync_method = "provisional-identity";
  // Until the sync library's file-level sync lands on main, the provisional identity map (the
  // device time of the runner's first clock triple is monitor second 0: right on the simulated
  // bench, not a sync) with a 1 ms bound, as `meltrig analyze` does.
  constexpr double kProvisionalBound = 1e-3;
  m.sync_bound_s = kProvisionalBound;
  const double nan = std::nan("");
  m.tok_s = m.j_per_token = m.j_per_token_net = m.baseline_w = nan;
  auto log = analysis::read_runner_markers(file);
  if (!log) return m.error = log.error().describe(), m;
  auto map = analysis::provisional_identity_map(*log, kProvisionalBound);
  auto in = analysis::inputs_from_capture(file, map);
  if (!in) return m.error = in.error().describe(), m;
  analysis::AnalysisConfig cfg;
  cfg.run.baseline.window_s = plan.baseline.window_s;
  cfg.run.baseline.guard_s = plan.baseline.guard_s;
  auto a = analysis::analyze(*in, cfg);
  if (!a) return m.error = a.error().describe(), m;
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

std::string summary_table(const std::vector<JournalEntry>& entries) {
  std::map<std::pair<std::string, std::string>, std::vector<const RunMetrics*>> groups;
  for (const JournalEntry& e : entries)
    if (e.state == RunState::complete && e.metrics.error.empty())
      groups[{e.run.device, e.run.workload}].push_back(&e.metrics);
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-12s %-12s %4s  %-24s %-24s %-20s\n", "device", "workload",
                "runs", "J/token (95% CI)", "net J/token (95% CI)", "tokens/s (95% CI)");
  out += line;
  for (const auto& [key, ms] : groups) {
    auto col = [&](double RunMetrics::*f) {
      std::vector<double> v;
      for (const RunMetrics* m : ms)
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
                  key.second.c_str(), ms.size(), col(&RunMetrics::j_per_token).c_str(),
                  col(&RunMetrics::j_per_token_net).c_str(), col(&RunMetrics::tok_s).c_str());
    out += line;
  }
  return out;
}

}  // namespace meltrig::rig
