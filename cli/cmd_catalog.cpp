// meltrig catalog merge A.csv B.csv... -o ALL.csv: the catalogs of a sweep's shards as one
// (rig::merge_catalogs; docs/plan.md).
#include <cstdio>

#include "cli_common.hpp"
#include "meltrig/rig/journal.hpp"

namespace meltrig::cli {
namespace {

int merge(const std::vector<std::string>& files, const std::string& output) {
  std::vector<std::filesystem::path> paths(files.begin(), files.end());
  auto t = rig::merge_catalogs(paths, output);
  if (!t) return fail(t.error().describe());
  if (auto w = rig::write_atomically(output, rig::to_csv(*t)); !w)
    return fail(w.error().describe());
  std::printf("%s: %zu runs from %zu catalogs\n", output.c_str(), t->rows.size(), files.size());
  return kOk;
}

}  // namespace

void add_catalog(CLI::App& app, Commands& cmds) {
  auto* c = app.add_subcommand("catalog", "sweep catalogs");
  c->require_subcommand(1);
  auto files = std::make_shared<std::vector<std::string>>();
  auto output = std::make_shared<std::string>();
  auto* m = c->add_subcommand("merge", "merge shard catalogs into one CSV");
  m->add_option("files", *files, "catalog CSV files")->required();
  m->add_option("-o,--output", *output, "merged catalog to write")->required();
  cmds.push_back({m, [files, output] { return merge(*files, *output); }});
}

}  // namespace meltrig::cli
