// Reading a whole MELT run directory: see melt_import.hpp (read_run).
#include <string>
#include <utility>

#include "meltrig/targets/melt_import.hpp"

namespace meltrig::targets::melt {
namespace {

using Note = std::function<void(const std::string&)>;

/// The Monsoon CSV and its start time; what is missing or unreadable is noted.
PowerTrace read_trace(const MeltRun& run, const std::filesystem::path& dir, const Note& note) {
  PowerTrace trace;
  if (run.monsoon_csv) {
    auto t = read_monsoon_csv(*run.monsoon_csv);
    if (t)
      trace = std::move(*t);
    else
      note(t.error().describe());
  } else {
    note(dir.string() + ": no measurements_monsoon.csv");
  }
  if (run.t_monsoon) {
    auto start = read_t_monsoon(*run.t_monsoon);
    if (start)
      trace.start_unix_s = *start;
    else
      note(start.error().describe());
  } else {
    note(dir.string() + ": no .t_monsoon: the trace's start time is unknown");
  }
  return trace;
}

/// The last llama_print_timings block of a conversation's `.log`, if any; its issues go to
/// `issues`.
std::optional<LlamaTimings> read_timings(const MeltConversation& c,
                                         std::vector<MarkerIssue>& issues, const Note& note) {
  if (!c.timings_log) return std::nullopt;
  auto t = read_llama_timings(*c.timings_log);
  if (!t) {
    note(t.error().describe());
    return std::nullopt;
  }
  issues.insert(issues.end(), t->issues.begin(), t->issues.end());
  std::optional<LlamaTimings> last;
  if (!t->blocks.empty()) last = t->blocks.back();
  if (t->blocks.size() > 1) {
    note(c.timings_log->string() + ": " + std::to_string(t->blocks.size()) +
         " llama_print_timings blocks, using the last");
  }
  if (!c.llamacpp_events)
    note(c.timings_log->string() + ": no llama.cpp events file to cross-check");
  return last;
}

/// A conversation's events file and MLC CSV, as named marker logs.
void read_conversation(const MeltConversation& c, MeltImport& out, const Note& note) {
  const std::string base =
      "iter" + std::to_string(c.iteration) + "_conv" + std::to_string(c.conversation);
  const auto timings = read_timings(c, out.other_issues, note);
  if (c.llamacpp_events) {
    auto log = read_llamacpp_events(*c.llamacpp_events, timings ? &*timings : nullptr);
    if (log)
      out.logs.push_back({base, std::move(*log)});
    else
      note(log.error().describe());
  }
  if (c.mlc_csv) {
    auto log = read_mlc_csv(*c.mlc_csv);
    if (log)
      out.logs.push_back({c.llamacpp_events ? base + "_mlc" : base, std::move(*log)});
    else
      note(log.error().describe());
  }
}

}  // namespace

Result<MeltImport> read_run(const std::filesystem::path& dir, const MeltFilter& filter,
                            const Note& note) {
  auto scanned = scan_run_dir(dir);
  if (!scanned) return scanned.error();
  MeltImport out;
  out.run = std::move(*scanned);
  for (const auto& p : out.run.unrecognised)
    note("ignored " + p.string() + " (not a MELT measurements file)");
  out.trace = read_trace(out.run, dir, note);
  for (const auto& c : out.run.conversations) {
    if (filter.iteration && c.iteration != *filter.iteration) continue;
    if (filter.conversation && c.conversation != *filter.conversation) continue;
    read_conversation(c, out, note);
  }
  if (filter.active() && out.logs.empty())
    note("no events file matches the --iteration/--conversation given");
  return out;
}

}  // namespace meltrig::targets::melt
