// meltrig sweep PLAN [--shard I/N] [--seed S] [-o DIR] [--check]: every run of a plan, resumable
// (rig::run_sweep; docs/plan.md). A simulated plan runs on the simulated bench
// (fixtures::sim::SweepRig), a real one on its instruments (rig::HardwareBench). This file parses
// the options, shows progress and prints the summary.
#include <unistd.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli_common.hpp"
#include "meltrig/fixtures/sim_sweep.hpp"
#include "meltrig/report/report.hpp"
#include "meltrig/rig/sweep.hpp"
#include "meltrig/rig/sweep_hardware.hpp"
#include "meltrig/sweep/metrics.hpp"

namespace meltrig::cli {
namespace {

struct SweepArgs {
  std::string plan;
  std::string shard = "1/1";
  std::optional<std::uint64_t> seed;
  std::string output;
  bool check = false;
  bool quiet = false;
};

std::string clock_text(double s) {
  if (s < 0) return "--:--";
  char b[32];
  const auto t = static_cast<long long>(std::llround(s));
  std::snprintf(b, sizeof b, "%lld:%02lld", t / 60, t % 60);
  return b;
}

/// The live line on a terminal (stdout); nothing when stdout is not one (the log lines say it).
std::function<void(const rig::SweepProgress&)> live_line(bool quiet) {
  if (quiet || !::isatty(STDOUT_FILENO)) return {};
  return [](const rig::SweepProgress& p) {
    std::printf("\r\033[Krun %zu/%zu %s  %s  ETA %s  %.3f W  %.1f tok/s  lost %" PRIu64, p.run,
                p.runs, p.id.c_str(), p.step.c_str(), clock_text(p.eta_s).c_str(), p.power_w,
                p.tok_s, p.lost);
    std::fflush(stdout);
  };
}

/// The combined report of the sweep. HOOK: `meltrig report FILE...` (the report branch) is not
/// on main yet; until it is, the report is the summary table written beside the catalog. Call
/// the report library here, with every complete run's file, once it lands.
/// summary.txt (the table) and report.html (meltrig report over every complete run's dataset,
/// comparing the configurations); the report's path, or the summary's when no run is complete.
Result<std::filesystem::path> combined_report(const std::filesystem::path& dir,
                                              const std::vector<rig::JournalEntry>& entries) {
  const auto summary = dir / "summary.txt";
  if (auto w = rig::write_atomically(summary, sweep::summary_table(entries)); !w) return w.error();
  std::vector<std::filesystem::path> files;
  for (const rig::JournalEntry& e : entries)
    if (e.state == rig::RunState::complete && !e.file.empty()) files.push_back(dir / e.file);
  if (files.empty()) return summary;
  report::ReportOptions ro;
  ro.title = "meltrig sweep " + dir.filename().string();
  auto html = report::build_report(files, ro);
  if (!html) return html.error();
  const auto path = dir / "report.html";
  if (auto w = rig::write_atomically(path, *html); !w) return w.error();
  return path;
}

Result<std::unique_ptr<rig::SweepBench>> make_bench(const rig::Plan& plan) {
  if (!plan.simulated())
    return std::unique_ptr<rig::SweepBench>(std::make_unique<rig::HardwareBench>(plan));
  const auto stem =
      std::filesystem::temp_directory_path() / ("meltrig-sweep-" + std::to_string(::getpid()));
  auto rig = fixtures::sim::SweepRig::start(plan, stem.string());
  if (!rig) return rig.error();
  return std::unique_ptr<rig::SweepBench>(std::move(*rig));
}

int finish(const rig::SweepOutcome& o, const std::filesystem::path& dir, bool tty) {
  if (tty) std::printf("\n");
  std::printf("%s", sweep::summary_table(o.entries).c_str());
  std::printf("runs: %zu complete of %zu (%zu now, %zu failed now, %zu half-done kept apart)\n",
              o.complete, o.runs, o.done_now, o.failed, o.resumed_partial);
  std::printf("catalog: %s\n", o.catalog.c_str());
  auto report = combined_report(dir, o.entries);
  if (!report) return fail(report.error().describe());
  std::printf("report: %s\n", report->c_str());
  if (o.interrupted) return fail("interrupted; run the same command again to resume");
  if (o.complete < o.runs)
    return fail(std::to_string(o.runs - o.complete) +
                " runs are not complete (see the catalog's note column); run the same command "
                "again to redo them");
  return kOk;
}

int run(const SweepArgs& a) {
  auto plan = rig::load_plan(a.plan);
  if (!plan) return usage(plan.error().describe());
  if (plan->simulated()) {
    if (auto c = fixtures::sim::SweepRig::check(*plan); !c) return usage(c.error().describe());
  }
  auto shard = rig::Shard::parse(a.shard);
  if (!shard) return usage(shard.error().message);
  if (a.check) {
    std::printf("%s: valid, %zu runs\n", a.plan.c_str(),
                rig::expand_runs(*plan, a.seed.value_or(plan->seed), *shard).size());
    return kOk;
  }
  rig::SweepOptions so;
  so.plan = *plan;
  so.shard = *shard;
  so.seed = a.seed.value_or(plan->seed);
  so.output = a.output.empty() ? plan->output : std::filesystem::path(a.output);
  so.interrupt = interrupt_token();
  so.root_attributes = invocation_attributes();
  so.analyse = [&plan = so.plan](const std::filesystem::path& f) {
    return sweep::analyse_run(f, plan);
  };
  const bool tty = !a.quiet && ::isatty(STDOUT_FILENO);
  so.log = [tty](const std::string& line) {
    std::printf("%s%s\n", tty ? "\r\033[K" : "", line.c_str());
    std::fflush(stdout);
  };
  so.progress = live_line(a.quiet);
  auto bench = make_bench(so.plan);
  if (!bench) return fail(bench.error().describe());
  auto out = rig::run_sweep(so, **bench);
  if (!out) return fail(out.error().describe());
  return finish(*out, rig::shard_directory(so.output, so.shard), tty);
}

}  // namespace

void add_sweep(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<SweepArgs>();
  auto* s = app.add_subcommand("sweep", "run (or resume) every run of a sweep plan (docs/plan.md)");
  s->add_option("plan", a->plan, "plan TOML, e.g. examples/sim-bench.toml")->required();
  s->add_option("--shard", a->shard, "this host's part I/N (devices I, I+N, ...)")
      ->capture_default_str();
  s->add_option("--seed", a->seed, "sweep seed (default: the plan's sweep.seed)");
  s->add_option("-o,--output", a->output, "output directory (default: the plan's sweep.output)");
  s->add_flag("--check", a->check, "validate the plan and count its runs; touch nothing");
  s->add_flag("-q,--quiet", a->quiet, "no live line");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
