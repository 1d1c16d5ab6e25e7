// meltrig import melt DIR -o run.h5 [--iteration I] [--conversation C] [--all]
//
// Turns a MELT run directory into one meltrig capture: targets::melt::read_run reads it
// (targets/melt_import.hpp), rig::store_melt_import writes it (rig/melt_capture.hpp: the
// "monsoon" monitor group, /monsoon_host_time, one /markers group per events file).
// What was imported and every issue (file:line) go to stderr. Exit 0 if anything was imported,
// 1 if nothing could be (no output file is left then), 2 on usage errors.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/rig/melt_capture.hpp"
#include "meltrig/targets/melt_import.hpp"

namespace meltrig::cli {
namespace {

namespace melt = targets::melt;

struct ImportArgs {
  std::string dir;
  std::string output;
  std::int64_t iteration = -1;
  std::int64_t conversation = -1;
  bool all = false;
  CLI::Option* iteration_opt = nullptr;
  CLI::Option* conversation_opt = nullptr;
};

void print_issues(const std::vector<targets::MarkerIssue>& issues) {
  for (const auto& i : issues)
    std::fprintf(stderr, "  issue: %s\n", i.describe().c_str());
}

void print_imported(const ImportArgs& a, const melt::MeltImport& m) {
  std::fprintf(stderr, "melt import: %s -> %s\n", a.dir.c_str(), a.output.c_str());
  std::fprintf(stderr, "  monsoon: %zu samples (%llu malformed rows skipped), start %s\n",
               m.trace.size(), static_cast<unsigned long long>(m.trace.malformed_rows),
               std::isnan(m.trace.start_unix_s)
                   ? "unknown"
                   : rig::iso8601_utc_us(m.trace.start_unix_s).c_str());
  print_issues(m.trace.issues);
  for (const auto& l : m.logs) {
    std::size_t tokens = 0;
    std::int64_t prompt = -1;
    for (const auto& e : l.log.events) {
      if (e.kind == targets::MarkerKind::token) ++tokens;
      if (e.kind == targets::MarkerKind::prefill_start) prompt = e.index;
    }
    std::fprintf(stderr,
                 "  /markers/%s: %zu events, %zu tokens, prompt tokens %s, %zu issues (%s)\n",
                 l.group.c_str(), l.log.events.size(), tokens,
                 prompt >= 0 ? std::to_string(prompt).c_str() : "unknown", l.log.issues.size(),
                 l.log.source.c_str());
    print_issues(l.log.issues);
  }
  print_issues(m.other_issues);
}

int run(const ImportArgs& a) {
  melt::MeltFilter filter;
  if (a.iteration_opt->count() > 0) filter.iteration = a.iteration;
  if (a.conversation_opt->count() > 0) filter.conversation = a.conversation;
  if (a.all && filter.active())
    return usage("--all cannot be combined with --iteration/--conversation");
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  auto m = melt::read_run(a.dir, filter, [](const std::string& note) {
    std::fprintf(stderr, "melt import: %s\n", note.c_str());
  });
  if (!m) return fail(m.error().describe());
  if (m->empty()) {
    print_issues(m->trace.issues);
    print_issues(m->other_issues);
    return fail(a.dir + ": nothing could be imported");
  }
  if (auto r = rig::store_melt_import(a.output, *m, invocation_attributes()); !r)
    return fail(r.error().describe());
  print_imported(a, *m);
  return kOk;
}

}  // namespace

void add_import(CLI::App& app, Commands& cmds) {
  auto* import = app.add_subcommand("import", "convert recordings of other rigs into captures");
  import->require_subcommand(1);
  auto a = std::make_shared<ImportArgs>();
  auto* s = import->add_subcommand("melt", "a MELT run directory (Monsoon CSV + runner events)");
  s->add_option("dir", a->dir, "run directory holding measurements_monsoon.csv")->required();
  s->add_option("-o,--output", a->output, "capture file to create (HDF5)")->required();
  a->iteration_opt = s->add_option("--iteration", a->iteration, "only this iteration I");
  a->conversation_opt =
      s->add_option("--conversation", a->conversation, "only this conversation C");
  s->add_flag("--all", a->all, "every iteration and conversation (the default)");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
