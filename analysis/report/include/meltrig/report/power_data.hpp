// A capture's power for plotting, bounded for any length: a level-of-detail pyramid read from the
// dataset's summaries (entries of 2^k samples: mean, min, max) plus raw samples, each level
// embedded whole when it is small and otherwise only in windows around focus times (phase
// boundaries, the middle of each decode, the throttling onset).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::report {

struct PowerPlotOptions {
  std::size_t max_entries_per_level = 16384;  ///< summary entries embedded per level
  std::size_t max_raw_samples = 131072;       ///< raw samples embedded in all
  std::size_t max_focus = 256;                ///< focus times used (evenly thinned beyond)
};

/// Power entries [first, first + mean.size()) of one level (per = samples per entry; 1 = raw).
struct PowerEntries {
  std::vector<float> mean, min, max;  ///< NaN where no sample is valid
};

/// Power = the `power` channel, else current x voltage. For a product, a summary entry's mean is
/// mean(I) x mean(V) (equal to mean(I x V) up to their covariance over the entry) and min/max are
/// the extremes of the four corner products: a bound holding every sample's power. Raw entries
/// (per = 1) are exact. Entries the file has not stored yet are computed from the samples.
Result<PowerEntries> read_power(const dataset::CaptureReader& r, int level, std::uint64_t first,
                                std::uint64_t count);

/// Means of entries [first, first + count) of one float32 channel at `level` (0 = its samples):
/// stored summaries where the file has them, else computed from the samples.
Result<std::vector<float>> read_channel_means(const dataset::CaptureReader& r,
                                              const std::string& channel, int level,
                                              std::uint64_t first, std::uint64_t count);

/// The levels of plot data: 0 (raw) and the file's summary levels (8, 12, 16, 20, 24 computed
/// from the samples for a file written before summaries existed).
std::vector<int> plot_levels(const dataset::CaptureReader& r);

/// The finest level (0 = raw, else one of the file's summary levels) with at most `max_entries`
/// entries over the whole capture (the coarsest level if none has so few).
int finest_level_within(const dataset::CaptureReader& r, std::uint64_t max_entries);

/// A half-open range of entries.
struct EntrySpan {
  std::uint64_t first = 0, count = 0;
};

/// The entries of a level to embed: all `total` when they fit in `budget`, else windows of
/// budget / focus-count entries centred on each focus entry, clipped and merged (never more than
/// `budget` in all).
std::vector<EntrySpan> plan_windows(std::uint64_t total, std::span<const std::uint64_t> focus,
                                    std::uint64_t budget);

/// The plot data of a capture: {rate_hz, samples, source, note, levels: [{level, per, whole,
/// windows: [{first, n, mean, min, max}]}]} with base64 little-endian float32 arrays (raw levels
/// carry mean only). `focus_s`: monitor seconds to keep fine detail around.
Result<nlohmann::json> power_plot_data(const dataset::CaptureReader& r,
                                       std::span<const double> focus_s,
                                       const PowerPlotOptions& opt = {});

/// Bytes as base64 (RFC 4648, padded).
std::string base64(std::span<const std::uint8_t> bytes);

}  // namespace meltrig::report
