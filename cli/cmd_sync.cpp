// meltrig sync FILE [--json] [--force]: maps every device clock of a capture onto the monitor's
// sample clock from the evidence the file holds (sync library, docs/sync.md) and stores the maps,
// the evidence and the fit diagnostics as /sync (docs/dataset.md). A file that already has /sync
// is left as it is unless --force. A file without usable evidence is left untouched (exit 1).
#include <cstdio>
#include <memory>
#include <string>

#include "cli_common.hpp"
#include "meltrig/sync/file_sync.hpp"

namespace meltrig::cli {
namespace {

int run(const std::string& file, bool json, bool force) {
  std::optional<sync::FileSync> s;
  if (!force) {
    auto stored = sync::read_stored(file);
    if (!stored) return fail(stored.error().describe());
    s = std::move(*stored);
  }
  const bool fresh = !s;
  if (fresh) {
    auto computed = sync::sync_file(file);
    if (!computed) return fail(computed.error().describe());
    s = std::move(*computed);
    if (auto w = sync::store(file, *s); !w) return fail(w.error().describe());
  }
  if (json) {
    std::printf("%s\n", s->to_json().dump().c_str());
  } else {
    std::printf("%s: %s /sync\n%s", file.c_str(), fresh ? "stored" : "already has",
                s->summary().c_str());
  }
  return kOk;
}

}  // namespace

void add_sync(CLI::App& app, Commands& cmds) {
  auto file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto force = std::make_shared<bool>(false);
  auto* s = app.add_subcommand("sync", "map the device clocks onto the monitor's; store /sync");
  s->add_option("file", *file, "capture file (HDF5)")->required();
  s->add_flag("--json", *json, "print the sync object as JSON");
  s->add_flag("--force", *force, "recompute and replace an existing /sync");
  cmds.push_back({s, [file, json, force] { return run(*file, *json, *force); }});
}

}  // namespace meltrig::cli
