// The sweep journal: the state of every run of a sweep, rewritten atomically (temporary file,
// fsync, rename, fsync of the directory) after every change, so a sweep killed at any instant
// (Ctrl-C, SIGKILL, the host losing power) finds on restart either the state before the change
// or the state after it. The catalog (catalog.hpp) is derived from it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::rig {

/// One run of a sweep: a configuration and a repetition.
struct SweepRun {
  std::size_t order = 0;  ///< position in the whole sweep's order (0-based; shards keep it)
  std::string id;         ///< "<device>.<workload>.r<rep>", stable across orders and shards
  std::string device, workload, model;
  int repetition = 0;
  std::uint64_t seed = 0;  ///< derived from the sweep seed and the id
};

/// What the analysis found in one run (NaN where it could not say).
struct RunMetrics {
  double duration_s = 0, energy_j = 0, mean_power_w = 0;
  std::uint64_t samples = 0, lost_samples = 0;
  std::uint64_t tokens = 0;
  double tok_s = 0, j_per_token = 0, j_per_token_net = 0, baseline_w = 0;
  std::string sync_method;
  double sync_bound_s = 0;
  double start_temp_c = 0;  ///< the device's temperature when the capture began (NaN: unknown)
  bool usb_cut = false;
  std::string error;  ///< the analysis failed (the run stays complete: its data are kept)
};

enum class RunState { pending, running, complete, failed };
std::string_view state_name(RunState s);

struct JournalEntry {
  SweepRun run;
  RunState state = RunState::pending;
  std::string file;  ///< dataset, relative to the output directory
  int attempts = 0;
  std::vector<std::string> partials;  ///< half-done attempts kept apart (relative paths)
  std::string note;                   ///< the last failure or interruption
  std::string finished_utc;
  RunMetrics metrics;
};

/// The journal of one sweep output directory.
struct Journal {
  std::string plan_digest;
  std::uint64_t seed = 0;
  std::string shard;  ///< "I/N"
  std::vector<JournalEntry> entries;

  JournalEntry* find(std::string_view id);
  /// Reads `path`; parse_error naming it if it is not a journal.
  static Result<Journal> load(const std::filesystem::path& path);
  /// Writes `path` atomically.
  Result<void> save(const std::filesystem::path& path) const;
};

/// Writes `text` to `path` atomically: `path.tmp` written and fsynced, renamed over `path`, the
/// directory fsynced. io_error naming the file.
Result<void> write_atomically(const std::filesystem::path& path, std::string_view text);

/// The catalog: one CSV row per run (docs/plan.md lists the columns), as pandas.read_csv reads it.
std::string catalog_csv(const std::vector<JournalEntry>& entries);

/// A CSV table: its header and rows of cells.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};
/// Parses CSV (RFC 4180 quoting); parse_error naming `source` and the line.
Result<CsvTable> parse_csv(std::string_view text, const std::string& source);
std::string to_csv(const CsvTable& t);

/// Merges shard catalogs into one: same header, rows by run order. A run in two files is an
/// error naming both, unless only one of them is complete (that one is kept). With `output` (the
/// merged catalog's path), the `file` and `partials` paths, relative to each shard's directory,
/// are rewritten relative to the merged catalog's directory, so they still name the datasets.
Result<CsvTable> merge_catalogs(const std::vector<std::filesystem::path>& files,
                                const std::filesystem::path& output = {});

}  // namespace meltrig::rig
