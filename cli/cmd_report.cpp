// meltrig report FILE... -o report.html: one self-contained HTML page (meltrig_report) showing the
// analysis of every file, with the power plot, tokens, phases, thermal and software-estimate
// figures, and for several files a comparison. Reads only; the page is written whole or not at all.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/report/report.hpp"

namespace meltrig::cli {
namespace {

struct ReportArgs {
  std::vector<std::string> files;
  std::string output;
  std::string title = "meltrig report";
  std::size_t max_raw = 131072;
  std::size_t max_entries = 16384;
};

int run(const ReportArgs& a) {
  report::ReportOptions opt;
  opt.title = a.title;
  opt.power.max_raw_samples = a.max_raw;
  opt.power.max_entries_per_level = a.max_entries;
  const std::vector<std::filesystem::path> files(a.files.begin(), a.files.end());
  auto page = report::build_report(files, opt);
  if (!page) return fail(page.error().describe());
  return write_file_whole(a.output, [&](std::ostream& out) -> Result<void> {
    out << *page;
    return {};
  });
}

}  // namespace

void add_report(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<ReportArgs>();
  auto* s = app.add_subcommand("report", "write a self-contained HTML report of captures");
  s->add_option("files", a->files, "capture files (HDF5); one configuration each")->required();
  s->add_option("-o,--output", a->output, "HTML file to write")->required();
  s->add_option("--title", a->title, "page title");
  s->add_option("--max-raw-samples", a->max_raw, "raw samples embedded per file (default 131072)");
  s->add_option("--max-entries", a->max_entries,
                "summary entries embedded per level and file (default 16384)");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
