// meltrig analyze FILE... [--json]: energy per token and per phase, baselines, repetition
// statistics, thermal onset and software estimates of each capture (meltrig_analysis,
// analyze_capture: the time map is PROVISIONAL until the sync library lands). Reads only.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/analysis/capture_analysis.hpp"

namespace meltrig::cli {
namespace {

void print_table(const std::string& path, const analysis::Analysis& a) {
  std::printf("%s: %zu repetitions, %zu tokens, baseline %.4f W (provisional time map)\n",
              path.c_str(), a.run.reps.size(), a.run.tokens.size(), a.run.baseline_w);
  std::printf("  rep  prefill J  decode J  tok/s    J/token  net J/tok  MELT J/tok  refined\n");
  for (const analysis::RepResult& r : a.run.reps) {
    std::printf("  %3d  %9.4f  %8.4f  %6.2f  %8.5f  %9.5f  %10.5f  %zu/%zu\n", r.index,
                r.phases[1].stats.energy_j, r.phases[2].stats.energy_j, r.decode_tok_s,
                r.j_per_token, r.j_per_token_net, r.melt_j_per_token, r.refined_boundaries,
                r.token_boundaries);
  }
  if (a.thermal.onset_s) {
    std::printf("  throttling from %.2f s (%s)\n", *a.thermal.onset_s, a.thermal.trigger.c_str());
  }
  for (const analysis::SoftwareResult& s : a.software) {
    std::printf("  %s: bias %.2f%%, MAPE %.2f%%, r %.4f over %zu readings%s%s\n", s.series.c_str(),
                s.readings.bias_pct, s.readings.mape_pct, s.readings.r, s.readings.n,
                s.note.empty() ? "" : "; ", s.note.c_str());
  }
  for (const std::string& w : a.run.warnings)
    std::printf("  warning: %s\n", w.c_str());
}

int run(const std::vector<std::string>& files, bool json) {
  int rc = kOk;
  for (const std::string& f : files) {
    auto a = analysis::analyze_capture(f);
    if (!a) {
      std::fprintf(stderr, "meltrig analyze: %s\n", a.error().describe().c_str());
      rc = 1;
      continue;
    }
    if (json) {
      std::printf("%s\n", a->json.dump().c_str());
    } else {
      print_table(f, a->analysis);
    }
  }
  return rc;
}

}  // namespace

void add_analyze(CLI::App& app, Commands& cmds) {
  auto files = std::make_shared<std::vector<std::string>>();
  auto json = std::make_shared<bool>(false);
  auto* s = app.add_subcommand("analyze", "energy per token and phase of captures (read-only)");
  s->add_option("files", *files, "capture files (HDF5)")->required();
  s->add_flag("--json", *json, "one JSON object per file and line");
  cmds.push_back({s, [files, json] { return run(*files, *json); }});
}

}  // namespace meltrig::cli
