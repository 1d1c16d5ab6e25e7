// meltrig analyze FILE... [--json] [--truth]: energy per token and per phase, baselines,
// repetition statistics, thermal onset and software estimates of each capture (meltrig_analysis),
// on the clock map of /sync (sync library; computed first when the file has none). A file that
// is analysed gets /sync (if it had none) and /analysis; a file that cannot be is left untouched.
// /truth is never read by the estimates; --truth prints a comparison with it apart.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/analysis/capture_inputs.hpp"
#include "meltrig/analysis/store.hpp"
#include "meltrig/analysis/truth_compare.hpp"
#include "meltrig/sync/file_sync.hpp"

namespace meltrig::cli {
namespace {

void print_table(const std::string& path, const analysis::Analysis& a, const sync::FileSync& s) {
  std::printf("%s: %zu repetitions, %zu tokens, baseline %.4f W\n", path.c_str(), a.run.reps.size(),
              a.run.tokens.size(), a.run.baseline_w);
  const nlohmann::json sj = s.to_json();
  std::printf("  sync: %s, drift %+.3f ppm, residual %.1f us, bound %.1f us\n", s.method.c_str(),
              sj["drift_ppm"].get<double>(), sj["residual_rms_s"].get<double>() * 1e6,
              sj["bound_s"].get<double>() * 1e6);
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
  for (const analysis::SoftwareResult& sw : a.software) {
    std::printf("  %s: bias %.2f%%, MAPE %.2f%%, r %.4f over %zu readings%s%s\n", sw.series.c_str(),
                sw.readings.bias_pct, sw.readings.mape_pct, sw.readings.r, sw.readings.n,
                sw.note.empty() ? "" : "; ", sw.note.c_str());
  }
}

/// The stored map, or one computed now (stored only once the analysis succeeded).
Result<std::pair<sync::FileSync, bool>> map_of(const std::string& path) {
  auto stored = sync::read_stored(path);
  if (!stored) return stored.error();
  if (*stored) return std::pair{std::move(**stored), false};
  auto computed = sync::sync_file(path);
  if (!computed) return computed.error();
  return std::pair{std::move(*computed), true};
}

/// The analysis through `map`; the capture is read and closed again.
Result<analysis::Analysis> analyze_with(const std::string& path, const sync::FileSync& map) {
  auto in = analysis::inputs_from_capture(
      path, [&map](std::string_view clock, std::int64_t ns) -> std::optional<analysis::MappedTime> {
        auto m = map.monitor_seconds(clock, ns);
        if (!m) return std::nullopt;
        return analysis::MappedTime{m->first, m->second};
      });
  if (!in) return in.error();
  auto a = analysis::analyze(*in);
  if (!a) return make_error(a.error().code, path + ": " + a.error().message);
  return a;
}

int analyze_one(const std::string& path, bool json, bool truth) {
  auto s = map_of(path);
  if (!s) return fail(s.error().describe());
  const sync::FileSync& map = s->first;
  auto a = analyze_with(path, map);  // the file is closed again before anything is stored
  if (!a) return fail(a.error().describe());
  nlohmann::json j = analysis::to_json(*a);
  j["file"] = path;
  j["sync"] = map.to_json();
  if (s->second)
    if (auto w = sync::store(path, map); !w) return fail(w.error().describe());
  if (auto w = analysis::store(path, *a, j); !w) return fail(w.error().describe());
  for (const std::string& w : a->run.warnings)
    std::fprintf(stderr, "meltrig analyze: %s: warning: %s\n", path.c_str(), w.c_str());
  if (json)
    std::printf("%s\n", j.dump().c_str());
  else
    print_table(path, *a, map);
  if (truth) std::fputs(analysis::compare_with_truth(path, *a).c_str(), stdout);
  return kOk;
}

int run(const std::vector<std::string>& files, bool json, bool truth) {
  int rc = kOk;
  for (const std::string& f : files)
    if (analyze_one(f, json, truth) != kOk) rc = kFailure;
  return rc;
}

}  // namespace

void add_analyze(CLI::App& app, Commands& cmds) {
  auto files = std::make_shared<std::vector<std::string>>();
  auto json = std::make_shared<bool>(false);
  auto truth = std::make_shared<bool>(false);
  auto* s =
      app.add_subcommand("analyze", "energy per token and phase of captures; stores /analysis");
  s->add_option("files", *files, "capture files (HDF5)")->required();
  s->add_flag("--json", *json, "one JSON object per file and line");
  s->add_flag("--truth", *truth, "afterwards, compare with the file's /truth (simulated bench)");
  cmds.push_back({s, [files, json, truth] { return run(*files, *json, *truth); }});
}

}  // namespace meltrig::cli
