// Markers from unmodified runners (docs/stamp.md): the host half of meltrig_stamp. The device
// tool (tools/meltrig_stamp.c) stamps each chunk a runner prints; this reads the runners' own
// end-of-run summaries (llama.cpp's two formats, MLC's stats), checks the stamped token count
// against them, splits chunks that held several tokens (flagged), measures stamp error against a
// runner that records its true emission times, and wraps a runner's argv for a target.
//
// ## MLC's statistics (its chat CLI's `/stats`, and `/stats verbose` style blocks)
//   prefill: 55.2 tok/s, decode: 21.0 tok/s                       (rates only: no counts)
//   ----------- prefill -----------
//   throughput: 55.2 tok/s
//   total tokens: 23 tok
//   total time: 0.417 s
//   ------------ decode ------------
//   throughput: 21.0 tok/s
//   total tokens: 63 tok
//   total time: 3.000 s
// MLC samples the first output token at the end of the prefill and counts one decode token per
// later step, so the output tokens are decode total tokens + 1. Its counters add up over a
// conversation (since the last reset); the last block of a log is the one used.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/melt_import.hpp"
#include "meltrig/targets/target.hpp"

namespace meltrig::targets {

/// A runner's own account of one run, from its end-of-run summary. Absent: NaN / -1.
struct RunnerSummary {
  std::string format;  ///< "llama_print_timings", "llama_perf", "mlc_verbose" or "mlc_rates"
  std::int64_t prompt_tokens = -1;
  /// Output tokens the runner produced (llama.cpp: sampled runs, else eval runs + 1; MLC: decode
  /// tokens + 1). An end-of-generation token is counted here but never printed.
  std::int64_t output_tokens = -1;
  double prompt_ms = melt::LlamaTimings::kNone;  ///< prompt evaluation (prefill) time
  double decode_ms = melt::LlamaTimings::kNone;  ///< generation (eval / decode) time
  double prefill_tok_s = melt::LlamaTimings::kNone;
  double decode_tok_s = melt::LlamaTimings::kNone;
  std::uint64_t line = 0;  ///< first line of the block in the log
};

/// Every MLC stats block of a console log (either form); malformed figures become issues.
std::vector<RunnerSummary> parse_mlc_stats(std::string_view text, std::string_view name,
                                           std::vector<MarkerIssue>& issues);

/// The last end-of-run summary in a runner's console output (llama.cpp old or current format,
/// or MLC's), or nullopt if it holds none. Malformed summary lines are listed in `issues`.
std::optional<RunnerSummary> find_runner_summary(std::string_view text, std::string_view name,
                                                 std::vector<MarkerIssue>& issues);

/// How the stamped chunks compare with the runner's count.
enum class StampVerdict {
  match,              ///< one chunk per output token
  end_of_generation,  ///< one fewer chunk: the runner's last token ended generation (unprinted)
  split,              ///< fewer chunks than tokens: some chunks held several; split evenly
  excess,             ///< more chunks than tokens (output other than tokens): left as stamped
  no_summary,         ///< nothing to check against
  no_tokens,          ///< the runner printed nothing after its prompt
};
std::string_view verdict_name(StampVerdict v);

/// The checked result of a stamped run.
struct StampCheck {
  StampVerdict verdict = StampVerdict::no_summary;
  std::optional<RunnerSummary> summary;
  std::int64_t chunks = 0;          ///< token events in the stamped file
  std::int64_t trailing_blank = 0;  ///< whitespace-only chunks after the last token, dropped
  std::int64_t expected = -1;       ///< output tokens expected as chunks (summary), -1 unknown
  std::string message;              ///< one line for the user
  /// The stamped log with: trailing blank chunks dropped when the summary says they are not
  /// tokens, chunks split into evenly spaced tokens (label "split:K", K tokens in the chunk),
  /// prefill.end given the summary's prompt token count, the summary in the header
  /// (`summary.*`, `stamp.*`) and the verdict in issues when it is not a match.
  MarkerLog log;
};

/// Checks a stamped marker log against the runner's summary (nullopt: only counted).
StampCheck check_stamped(const MarkerLog& stamped, const std::optional<RunnerSummary>& summary);

/// Stamp minus true emission time, per true token, for a runner that marks its own tokens with
/// `bytes=` at the moment it writes them (the toy runner's --stream mode). Tokens are matched by
/// byte position: a true token's stamp is that of the chunk holding its last byte.
struct StampErrors {
  std::int64_t true_tokens = 0;
  std::int64_t found = 0;               ///< true tokens whose last byte is in a stamped chunk
  std::int64_t chunks = 0;              ///< stamped token chunks
  std::int64_t coalesced = 0;           ///< true tokens that shared a chunk with the next one
  std::vector<std::int64_t> errors_ns;  ///< per found token, in token order
  /// The q-quantile (0..1) of errors_ns (nearest rank); 0 when empty.
  std::int64_t quantile(double q) const;
};
StampErrors stamp_errors(const MarkerLog& stamped, const MarkerLog& truth);

/// One measurement of the stamping error: the toy runner in --stream mode (`runner`) under
/// meltrig_stamp (`stamp_tool`), both marker files in `dir`, `tokens` tokens.
struct StampBenchOptions {
  std::filesystem::path stamp_tool;
  std::filesystem::path runner;
  std::filesystem::path dir;
  int tokens = 300;
  bool realtime = false;  ///< meltrig_stamp --realtime
  bool pipe = false;      ///< meltrig_stamp --pipe
};
/// Runs it and matches the stamps with the runner's own emission times (stamp_errors). An Error
/// if either program fails or a marker file does not parse.
Result<StampErrors> measure_stamp_errors(const StampBenchOptions& options);

/// Options of a stamped run on a target.
struct StampRun {
  std::string device_tool;  ///< meltrig_stamp on the device ("meltrig_stamp": found in PATH)
  std::string markers;      ///< marker file on the device
  std::string prompt_file;  ///< device path for --prompt-file ("" : from the runner's -p)
  bool realtime = false;    ///< --realtime: the stamper runs SCHED_FIFO (needs the privilege)
  bool pipe = false;  ///< --pipe: the runner's stdout is a pipe (runners that flush per token)
};

/// The device argv: `TOOL --markers M [--prompt-file F] [--realtime] [--pipe] -- RUNNER...`.
std::vector<std::string> stamped_argv(const StampRun& run, const std::vector<std::string>& runner);

/// Makes a target ready for a stamped run: with a host build `local_tool`, installs it beside the
/// marker file (its directory + "/meltrig_stamp") and returns that path as the tool; without
/// one, the device's PATH must have `meltrig_stamp`.
Result<StampRun> prepare_stamp(Target& target, const std::filesystem::path& local_tool,
                               const std::string& markers, const std::string& prompt_file);

/// find_runner_summary() over the runner's console output (stdout and stderr as it printed them;
/// its summary lines' problems go to the log's issues), then check_stamped().
StampCheck check_stamped_output(const MarkerLog& stamped, std::string_view runner_output);

/// Installs a host build of meltrig_stamp on the target at `device_path`: pushed to a temporary
/// name, chmod 755, renamed over the old one (a running copy cannot be overwritten in place).
Result<void> install_stamp(Target& target, const std::filesystem::path& local,
                           const std::string& device_path);

}  // namespace meltrig::targets
