// CaptureFollower: the state `meltrig view` shows, kept up to date from a capture file that may
// still be written (SWMR). No networking here: the server polls it on a timer and sends the JSON
// it builds.
//
// The plot is an overview of at most `max_points` buckets of 2^m samples each (m grows as the
// capture grows; buckets are then merged pairwise in memory, never re-read). A bucket's power is
// read from the file's summaries (the coarsest stored level that fits the bucket) or, for the
// samples the summaries do not cover yet (the live end, buckets under 256 samples, files without
// summaries), computed from the samples. Each poll reads only what is new: memory and work per
// poll stay bounded whatever the capture length.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::view {

/// One plotted bucket: power statistics over its samples (NaN when no sample is valid).
struct PlotBucket {
  float mean = 0.0f;  ///< W (or the plotted channel's unit)
  float min = 0.0f;
  float max = 0.0f;
  std::uint32_t valid = 0;  ///< samples with a value (not missing)
};

/// One token event of the runner's markers, for the "latest tokens" list.
struct TokenMark {
  std::int64_t index = -1;  ///< token index (0-based)
  double t_s = 0.0;         ///< device time since the log's first event, s (device clock)
};

struct FollowerOptions {
  std::size_t max_points = 2000;  ///< buckets in the overview (the bucket size doubles beyond)
  /// A v1 marker file written beside the capture while it runs (e.g. `meltrig sim`'s
  /// FILE.markers): followed for the latest tokens. nullopt: FILE.markers if it exists.
  std::optional<std::filesystem::path> markers;
  std::size_t latest_tokens = 20;                     ///< tokens listed in the JSON
  std::uint64_t max_marker_bytes = 16 * 1024 * 1024;  ///< a larger marker file is not read
};

/// Not thread-safe: the server uses it from one strand.
class CaptureFollower {
 public:
  /// Opens `file` read-only (CaptureReader: SWMR, works on live and crashed captures) and reads
  /// everything already there. Errors name the file.
  static Result<CaptureFollower> open(const std::filesystem::path& file, FollowerOptions options);

  CaptureFollower(CaptureFollower&&) noexcept;
  CaptureFollower& operator=(CaptureFollower&&) noexcept;
  ~CaptureFollower();

  /// Re-reads what the writer flushed since the last poll (refresh, new buckets, gap rows,
  /// counters, marker lines). True when anything shown changed.
  Result<bool> poll();

  std::uint64_t samples_written() const;
  dataset::CaptureState state() const;
  std::uint64_t bucket_samples() const;  ///< samples per bucket (a power of two)
  const std::vector<PlotBucket>& buckets() const;
  /// The first bucket that changed since the last call of take_changed_from() (0 after the
  /// bucket size changed); buckets().size() when none did.
  std::size_t take_changed_from();
  std::uint64_t token_count() const;
  /// What is plotted: "power" (current x voltage, or a power channel) or a channel's name.
  const std::string& series() const;

  /// The JSON update message: {"type":"update", counters, state, tokens, and "points" for
  /// buckets [first_bucket, end)} (see docs/view.md for every field).
  std::string update_json(std::size_t first_bucket) const;
  /// The same message with the buckets from the one holding `sample_index` (a client's "since").
  std::string update_since_json(std::uint64_t sample_index) const;
  /// The update without points (for GET /api/status).
  std::string status_json() const;

 private:
  struct Impl;
  explicit CaptureFollower(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meltrig::view
