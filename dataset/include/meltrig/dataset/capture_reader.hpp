// CaptureReader: reads a meltrig capture file (see docs/dataset.md) whether it is finished, still
// being written (SWMR: call refresh() to follow the writer), or was left by a crashed writer.
//
// Everything small (attributes, channel list, capture state, counters, table sizes, summary levels)
// is read once by open() and again by refresh(); samples, gap and calibration rows and summary
// entries are read on request into caller buffers, so memory stays bounded for any file size.
//
// Optional parts are reported as absent, never as errors: /<monitor>/summary (files written before
// summaries existed), /markers and /sync (not written by this version).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/dataset_types.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::dataset {

/// One loss counter as stored in /<monitor>/counters (name from its `names` attribute).
struct StoredCounter {
  std::string name;
  std::uint64_t value = 0;
};

/// One entry of /<monitor>/summary/<channel>/<level>: statistics over 2^level samples.
struct SummaryStats {
  float mean = 0.0f;        ///< NaN when valid == 0
  float min = 0.0f;         ///< NaN when valid == 0
  float max = 0.0f;         ///< NaN when valid == 0
  std::uint32_t valid = 0;  ///< non-NaN samples in the entry
};

/// Reads one capture file. Not thread-safe: use it from one thread at a time. Errors name the file
/// and the HDF5 object: file_error for HDF5 failures and files that are not captures, not_found
/// for a missing file, channel or summary level, invalid_argument for reads out of range.
class CaptureReader {
 public:
  /// Opens `path` read-only in SWMR mode (works on live captures and on files left by a crashed
  /// writer, which a plain open refuses); falls back to a plain read-only open for files SWMR
  /// cannot read (e.g. written without libver "latest"). Checks the format attribute and reads
  /// the metadata.
  static Result<CaptureReader> open(const std::filesystem::path& path);

  CaptureReader(CaptureReader&&) noexcept;
  CaptureReader& operator=(CaptureReader&&) noexcept;
  ~CaptureReader();

  const std::filesystem::path& path() const;
  /// True when opened in SWMR mode: refresh() then sees what a writer flushes later.
  bool swmr() const;

  std::int64_t format_version() const;
  /// Every attribute of `/` (format, format_version included), in name order. Non-scalar
  /// attributes are given as text, e.g. "[8, 12, 16]".
  const std::vector<Attribute>& root_attributes() const;
  /// The monitor group's name (e.g. "monitor"): the root group holding `sample_rate_hz`.
  const std::string& monitor() const;
  /// Every attribute of `/<monitor>` (sample_rate_hz and time_base included), in name order.
  const std::vector<Attribute>& monitor_attributes() const;
  /// The attributes of `/<monitor>/status_at_start`, in name order (empty if the group is absent).
  const std::vector<Attribute>& status_at_start() const;
  double sample_rate_hz() const;

  /// The sample channels (1-D float32/uint8 datasets with a `unit` attribute), in name order.
  const std::vector<ChannelSpec>& channels() const;
  /// The channel called `name`, or nullptr.
  const ChannelSpec* find_channel(std::string_view name) const;

  /// /capture_state/samples_written as of open() or the last refresh(): rows valid in every
  /// channel. Reads beyond it are refused.
  std::uint64_t samples_written() const;
  /// /capture_state/state (a value outside the enum is kept as stored).
  CaptureState state() const;
  /// /capture_state/end_reason without its NUL padding ("" while running).
  const std::string& end_reason() const;
  /// The loss counters in stored order.
  const std::vector<StoredCounter>& counters() const;

  /// Rows in /<monitor>/gaps.
  std::uint64_t gap_count() const;
  /// Reads gap rows [first, first + out.size()).
  Result<void> read_gaps(std::uint64_t first, std::span<Gap> out) const;
  /// Every gap row (one allocation of gap_count() rows).
  Result<std::vector<Gap>> gaps() const;
  /// Rows in /<monitor>/calibration.
  std::uint64_t calibration_count() const;
  /// Reads calibration rows [first, first + out.size()).
  Result<void> read_calibration(std::uint64_t first, std::span<CalibrationRow> out) const;
  /// Every calibration row.
  Result<std::vector<CalibrationRow>> calibration() const;

  /// Reads samples [first, first + out.size()) of a float32 channel (NaN = missing sample).
  Result<void> read(std::string_view channel, std::uint64_t first, std::span<float> out) const;
  /// Reads samples [first, first + out.size()) of a uint8 channel (0 = missing sample, or 0).
  Result<void> read(std::string_view channel, std::uint64_t first,
                    std::span<std::uint8_t> out) const;

  /// True when the file has /<monitor>/summary (files written before summaries did not).
  bool has_summaries() const;
  /// The summary levels listed by the group's `levels` attribute (log2 samples per entry),
  /// ascending; empty without summaries.
  const std::vector<int>& summary_levels() const;
  /// Entries of `channel` at `level` that can be trusted: the complete ones below
  /// samples_written(), plus the final partial one once the writer finished (then the entries
  /// cover every sample). Samples past them are read from the channel (see summarize()).
  /// not_found for an absent summary group, channel or level.
  Result<std::uint64_t> summary_entries(std::string_view channel, int level) const;
  /// Reads entries [first_entry, first_entry + out.size()); entry j covers samples
  /// [j * 2^level, min((j + 1) * 2^level, samples_written())).
  Result<void> read_summary(std::string_view channel, int level, std::uint64_t first_entry,
                            std::span<SummaryStats> out) const;
  /// The statistics of samples [first, first + count) of a float32 channel, computed from the
  /// samples (in blocks: bounded memory; the mean is summed in double). For the samples the
  /// stored entries do not cover yet.
  Result<SummaryStats> summarize(std::string_view channel, std::uint64_t first,
                                 std::uint64_t count) const;

  /// True when /markers exists (not written by this version; its layout is not read yet).
  bool has_markers() const;
  /// True when /sync exists (not written by this version; its layout is not read yet).
  bool has_sync() const;

  /// Re-reads the capture state, counters and every table and channel size, so rows a SWMR
  /// writer flushed since open() become readable. Without SWMR the file cannot change: no-op.
  Result<void> refresh();

 private:
  struct Impl;
  explicit CaptureReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// "running", "complete", "failed", "interrupted", or "unknown (N)".
std::string capture_state_name(CaptureState state);

/// The value as text: strings as they are, numbers in the shortest form that reads back exactly.
std::string format_attribute_value(const AttributeValue& value);

/// The value of attribute `name` in `attrs`, or nullptr.
const AttributeValue* find_attribute(const std::vector<Attribute>& attrs, std::string_view name);

}  // namespace meltrig::dataset
