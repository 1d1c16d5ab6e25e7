// Importers for the files of a MELT run (MobiCom'24 "MELTing point"), so that its recordings can be
// re-analysed here: llama.cpp's timings/events file, MLC's CSV, llama.cpp's printed
// `llama_print_timings:` summary, PyMonsoon's power CSV with `.t_monsoon`, and the run directory
// that holds them. Pure parsing: no HDF5 (dataset/run_record.hpp stores the results).
//
// Every parser skips a malformed line, lists it as a MarkerIssue (file, 1-based line, message) and
// imports the rest. Only an unreadable file is an Error.
//
// ## llama.cpp events file (`measurements_iter{I}_conv{C}.tsv`)
// One `name value` pair per line, separated by spaces or tabs; value = the phone's system_clock
// (CLOCK_REALTIME) in ns since the epoch; lines in no particular order (the runner kept an
// unordered map). Blank lines are skipped. A last line without '\n' is dropped, listed as an issue
// and flagged (MarkerLog::incomplete_tail), as for v1 marker files: it may have been cut
// mid-number. A key given twice keeps its first line (the later one is an issue). The result is a
// MarkerLog with clock "realtime", events sorted by time (ties: by line), built by this rule:
// - `load_model.start` / `load_model.end` -> load.start / load.end.
// - Decode iterations: `generate.N.decode.start/end` of one N form iteration N. An iteration with
//   both is "complete"; one with only an `.end` (nothing was evaluated) or only a `.start` is kept
//   as user events and never counted.
// - Prefill = the leading complete iterations that evaluate the prompt batch(es); every later
//   complete iteration decodes one sampled token. How many lead (P):
//   * with a llama_print_timings summary (`eval time ... / R runs`): P = complete - R, because
//     llama.cpp counts one eval run per single-token llama_decode; if that is < 1 it is an issue
//     and the rule below is used instead;
//   * without one: the first complete iteration (the prompt must be evaluated before any token
//     can be sampled), plus each directly following complete iteration whose decode lasts at least
//     kPrefillDurationFactor times the median of the complete iterations after the first (a further
//     prompt batch of n_batch tokens, not a single token). Limit: the short last batch of a prompt
//     longer than n_batch is then taken for a token; give the summary to be exact.
//   One prefill.start (first prefill iteration's decode.start) and one prefill.end (last one's
//   decode.end) are emitted, index = prompt tokens when the summary gives them (`prompt eval time
//   ... / T tokens`), else -1. Token iterations become `token` events index 0, 1, ... in N order,
//   stamped at their decode.end.
// - Every other line (nested `load_model.*`, `prompt.*`, `generate.start/end`, `kv_cache`,
//   `model_free`, the decode.start of token iterations, inner prefill boundaries, anything unknown)
//   becomes a `user` event whose label is the original key, so nothing is lost.
// The summary's figures go into the header (`llama_print_timings.*`), and disagreements (eval runs
// vs token events, prompt tokens missing) are listed as issues.
//
// ## MLC CSV (`measurements_iter{I}_conv{C}.csv`)
// Exactly three comma-separated columns per line: `event,start_ms,end_ms`. `event` is
// `prefill.N` or `generate.decode.N` (anything else is kept as a pair of user events named
// `<event>.start` / `<event>.end`); start and end are ms since the epoch on the phone's wall clock,
// integer or decimal (stored as ns, rounded). Spaces around fields and a '\r' are ignored. A first
// line whose second field is not a number is a header and is skipped. The MarkerLog (clock
// "realtime") holds one prefill.start/end pair spanning every `prefill.N` row (index -1: MLC
// records no token count; inner boundaries stay as user events), and one `token` event per
// `generate.decode.N` row, index 0, 1, ... in start-time order, stamped at its end (its start is
// kept as user event `generate.decode.N.start`).
//
// ## llama.cpp's end-of-run summary (console output), both formats
// Lines containing `llama_print_timings:` (the releases MELT used), or `llama_perf_sampler_print:`
// / `llama_perf_context_print:` (current releases); everything else in the log is ignored:
//   llama_print_timings:        load time =   812.35 ms
//   llama_print_timings:      sample time =    10.42 ms /    64 runs   ( ... )
//   llama_print_timings: prompt eval time =   933.12 ms /    23 tokens ( ... )
//   llama_print_timings:        eval time =  4188.90 ms /    63 runs   ( ... )
//   llama_print_timings:       total time =  6045.77 ms [/ N tokens]
// and
//   llama_perf_sampler_print:    sampling time =  10.42 ms /    64 runs   ( ... )
//   llama_perf_context_print:        load time = 812.35 ms
//   llama_perf_context_print: prompt eval time = 933.12 ms /    23 tokens ( ... )
//   llama_perf_context_print:        eval time = 4188.90 ms /   63 runs   ( ... )
//   llama_perf_context_print:       total time = 6045.77 ms /    86 tokens
//   llama_perf_context_print:    graphs reused =         62            (recent releases)
// One block per run of the program: a block ends when a figure repeats, the format changes, or
// `load time` follows figures other than the sampler's.
//
// ## Monsoon power CSV (`measurements_monsoon.csv`) and `.t_monsoon`
// PyMonsoon's CSV output: no header, each row `t_rel_s,mA,V,` with a trailing comma (tolerated
// without it), t = host time.time() minus the library's start time, stamped per USB packet so
// consecutive rows may share one t. Read in blocks with std::from_chars (an hour at 5 kHz is 18 M
// rows). A last row without '\n' is kept when it is complete (trailing comma present). `.t_monsoon`
// holds one float: host time.time() right after sampling started.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/targets/markers.hpp"

namespace meltrig::targets::melt {

/// A later complete decode iteration is another prompt batch when it lasts at least this many
/// times the median of the complete iterations after the first (used without a timings summary).
inline constexpr double kPrefillDurationFactor = 4.0;

/// At most this many issues are listed per file; the rest are counted in one closing issue.
inline constexpr std::size_t kMaxIssuesPerFile = 1000;

/// One `llama_print_timings:` block. Absent figures: NaN (ms) or -1 (counts).
struct LlamaTimings {
  static constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
  double load_ms = kNone;
  double sample_ms = kNone;
  std::int64_t sample_runs = -1;
  double prompt_eval_ms = kNone;
  std::int64_t prompt_tokens = -1;  ///< `prompt eval time = ... / T tokens`
  double eval_ms = kNone;
  std::int64_t eval_runs = -1;  ///< `eval time = ... / R runs`: single-token decodes
  double total_ms = kNone;
  std::int64_t total_tokens = -1;   ///< newer llama.cpp prints `total time = ... / N tokens`
  std::int64_t graphs_reused = -1;  ///< `graphs reused = N` (current format, recent releases)
  std::uint64_t line = 0;           ///< line of the block's first line
  /// "llama_print_timings" (the releases MELT used) or "llama_perf" (llama_perf_context_print /
  /// llama_perf_sampler_print, current releases).
  std::string format = "llama_print_timings";
};

/// Every block of a console log, in order, plus the lines that said llama_print_timings but did
/// not parse.
struct LlamaTimingsLog {
  std::vector<LlamaTimings> blocks;
  std::vector<MarkerIssue> issues;
};

/// Parses llama.cpp console output (any text; only `llama_print_timings:` lines are read).
LlamaTimingsLog parse_llama_timings(std::string_view text, std::string_view name);
Result<LlamaTimingsLog> read_llama_timings(const std::filesystem::path& path);

/// Parses a llama.cpp events file into a MarkerLog (see the rule above). `timings`, when given,
/// fixes the number of prefill iterations and the prompt token count and is cross-checked.
MarkerLog parse_llamacpp_events(std::string_view text, std::string_view name,
                                const LlamaTimings* timings = nullptr);
Result<MarkerLog> read_llamacpp_events(const std::filesystem::path& path,
                                       const LlamaTimings* timings = nullptr);

/// Parses an MLC CSV into a MarkerLog (see above).
MarkerLog parse_mlc_csv(std::string_view text, std::string_view name);
Result<MarkerLog> read_mlc_csv(const std::filesystem::path& path);

/// A Monsoon trace as MELT recorded it. Row i of each vector is CSV data row i (malformed rows
/// are skipped, so rows after one shift up).
struct PowerTrace {
  std::vector<double> host_t_rel_s;  ///< host arrival time of the row's USB packet, s since start
  std::vector<float> current_a;      ///< main channel current, A (the CSV holds mA)
  std::vector<float> voltage_v;      ///< main channel voltage, V
  double start_unix_s = std::numeric_limits<double>::quiet_NaN();  ///< `.t_monsoon`; NaN if unknown
  std::uint64_t malformed_rows = 0;                                ///< rows skipped
  std::vector<MarkerIssue> issues;  ///< at most kMaxIssuesPerFile + 1 per file
  std::size_t size() const { return host_t_rel_s.size(); }
};

/// Parses PyMonsoon CSV text (for tests and small inputs); appends to `trace`.
void parse_monsoon_csv(std::string_view text, std::string_view name, PowerTrace& trace);
/// Reads a PyMonsoon CSV file in blocks (constant extra memory beyond the trace itself).
Result<PowerTrace> read_monsoon_csv(const std::filesystem::path& path);
/// Parses `.t_monsoon` (one float, surrounding whitespace allowed): parse_error "<name>:1: ...".
Result<double> parse_t_monsoon(std::string_view text, std::string_view name);
Result<double> read_t_monsoon(const std::filesystem::path& path);

/// The files of one iteration and conversation in `melt_measurements/`.
struct MeltConversation {
  std::int64_t iteration = 0;
  std::int64_t conversation = 0;
  std::optional<std::filesystem::path> llamacpp_events;  ///< `.tsv`
  std::optional<std::filesystem::path> mlc_csv;          ///< `.csv`
  /// `.log`: llama.cpp console output holding llama_print_timings. Not part of MELT's own layout:
  /// this project's convention for where to put the scraped console log.
  std::optional<std::filesystem::path> timings_log;
};

/// What a MELT run directory holds.
struct MeltRun {
  std::filesystem::path dir;
  std::optional<std::filesystem::path> monsoon_csv;  ///< DIR/measurements_monsoon.csv
  std::optional<std::filesystem::path> t_monsoon;    ///< DIR/.t_monsoon
  std::vector<MeltConversation> conversations;       ///< sorted by (iteration, conversation)
  std::vector<std::filesystem::path> unrecognised;   ///< other files in melt_measurements/
};

/// Lists a run directory. not_found if `dir` is not a directory; io_error if it cannot be listed.
/// A missing melt_measurements/ or Monsoon CSV is not an error (the fields stay empty).
Result<MeltRun> scan_run_dir(const std::filesystem::path& dir);

/// Which conversations to import (unset: all).
struct MeltFilter {
  std::optional<std::int64_t> iteration;
  std::optional<std::int64_t> conversation;
  bool active() const { return iteration || conversation; }
};

/// One runner log and the marker group it goes to (`iter{I}_conv{C}`, an MLC CSV beside a
/// llama.cpp events file of the same iteration and conversation: `iter{I}_conv{C}_mlc`).
struct NamedMarkerLog {
  std::string group;
  MarkerLog log;
};

/// Everything read from a MELT run directory, ready to store.
struct MeltImport {
  MeltRun run;
  PowerTrace trace;  ///< empty when the CSV is missing or unreadable
  std::vector<NamedMarkerLog> logs;
  std::vector<MarkerIssue> other_issues;  ///< from the `.log` timings files
  bool empty() const { return trace.size() == 0 && logs.empty(); }
};

/// Reads a whole run directory: the Monsoon CSV and `.t_monsoon`, and for every conversation the
/// filter selects, its timings log (the last block cross-checks its llama.cpp events file), its
/// events file and its MLC CSV. A file that cannot be read, or is missing, is skipped and told to
/// `note` (one line each, e.g. "DIR: no measurements_monsoon.csv"), in reading order. An Error
/// only when the directory cannot be listed (scan_run_dir).
Result<MeltImport> read_run(const std::filesystem::path& dir, const MeltFilter& filter,
                            const std::function<void(const std::string&)>& note);

}  // namespace meltrig::targets::melt
