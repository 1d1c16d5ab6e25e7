// CaptureWriter: streams one monitor's samples, gaps, calibration and loss counters into an HDF5
// file that stays readable while it grows (SWMR) and after a crash, up to the last flush().
//
// clang-format off
// File layout (format "meltrig-capture", format_version 1). Markdown for docs/dataset.md:
//
// ## Layout
// | Path | Kind | Type | Content |
// |---|---|---|---|
// | `/` | attrs | | `format` = "meltrig-capture" (str), `format_version` = 1 (int64), then the layout's root attributes (e.g. `meltrig_version`, `host_wall_clock_start_utc`, `host_wall_clock_start_unix_ns`, `host_steady_clock_start_ns`) |
// | `/<monitor>/` | group + attrs | | `sample_rate_hz` (float64), `time_base` = "t = sample_index / sample_rate_hz" (str), `compression` (str, see below), then the layout's monitor attributes (driver, port, serial_number, ...) |
// | `/<monitor>/<channel>` | dataset, 1-D, unlimited | float32 or uint8 (little-endian) | row i = sample index i. Attrs `unit`, `description` (str). Chunked (`chunk_samples`), compressed as `compression` says. Missing samples read as NaN (float32) or 0 (uint8), which is also the dataset fill value |
// | `/<monitor>/gaps` | dataset, 1-D, unlimited | compound {`first_index` u64, `count` u64, `kind` u8} | one row per loss event, in the order recorded. Attr `kind_names` (str[6]) = missing, missing_wrapped, duplicate_dropped, ring_overflow, resync, uncalibrated. Kinds 0, 1, 3, 4, 5 cover `count` rows of the channels (filled with NaN/0); kind 2 (duplicates dropped) covers no rows: `first_index` is where they would have gone |
// | `/<monitor>/calibration` | dataset, 1-D, unlimited | compound {`sample_index` u64, `fine_zero` f64, `fine_ref` f64, `coarse_zero` f64, `coarse_ref` f64} | raw ADC counts the driver used from `sample_index` on |
// | `/<monitor>/counters` | dataset, 1-D, fixed | uint64[n] | loss counters, overwritten in place at every flush; attr `names` (str[n]) names entry i |
// | `/<monitor>/status_at_start` | group + attrs | | the device status at start (str / float64 / int64 attributes) |
// | `/<monitor>/summary` | group + attrs | | `levels` (int64[5]) = [8, 12, 16, 20, 24], log2 of samples per entry; `fields` = "mean,min,max,valid" (str). Present unless the layout turned summaries off (and in files written before summaries existed) |
// | `/<monitor>/summary/<channel>/<k>` | dataset, 1-D, unlimited | compound {`mean` f32, `min` f32, `max` f32, `valid` u32} (16 bytes, little-endian) | one group per float32 channel, one dataset per level k, named by the decimal k (e.g. `summary/current/12`). Entry j covers sample indices [j*2^k, (j+1)*2^k). `valid` counts the non-NaN samples; `mean`, `min`, `max` are over those, NaN when `valid` == 0 (also the fill value: {NaN, NaN, NaN, 0}). Entry j of level k+4 combines entries 16j .. 16j+15 of level k. Chunked (1024 entries), compressed as `compression` says. uint8 channels have no summaries |
// | `/capture_state/state` | dataset, scalar | int8 | 0 running, 1 complete, 2 failed, 3 interrupted |
// | `/capture_state/end_reason` | dataset, scalar | fixed string, 256 bytes, UTF-8, NUL-padded | why the capture ended ("" while running; truncated at a UTF-8 boundary) |
// | `/capture_state/samples_written` | dataset, scalar | uint64 | samples stored in every channel as of the last flush |
//
// `compression` is one of "none", "shuffle+deflate-<level>" (gzip level 1..9) or "shuffle+lz4"
// (HDF5 filter 32004, a plugin: Debian package hdf5-filter-plugin, which HDF5 and h5py load from
// /usr/lib/x86_64-linux-gnu/hdf5/serial/plugins or HDF5_PLUGIN_PATH). It applies to every chunked
// dataset in the monitor group: channels, gaps, calibration and summaries.
//
// Reading rules:
// - All objects and attributes exist from the moment the file is created; afterwards only dataset
//   sizes and contents change. The file is written in SWMR mode (libver bounds latest/latest):
//   readers may open it while it is written (h5py: `h5py.File(p, "r", swmr=True)`, then
//   `dset.refresh()` before each read).
// - While a capture runs, a channel may already be longer than `/capture_state/samples_written`;
//   rows past that count may still read as fill values. Trust `samples_written`.
// - `state` == 0 in a closed file means the capture did not end cleanly (crash, kill, or the writer
//   was destroyed without finish()); everything up to `samples_written` is valid.
// - Summaries: with n = `samples_written`, entries j < floor(n / 2^k) of level k are final (they
//   are flushed before the count that vouches for them). If `state` != 0 and the dataset holds
//   ceil(n / 2^k) entries, the last one is the final partial entry, covering [j*2^k, n), written by
//   finish() so that the summaries cover every sample (after a write error finish() may not have
//   managed it; such an entry may then also describe samples past n). While running and after a
//   crash a dataset may hold a few entries past floor(n / 2^k): ignore them.
// - To plot [a, b), take the finest level k with at most a few thousand entries in range, read
//   its entries floor(a/2^k) .. ceil(b/2^k)-1 that exist by the rule above, and the raw rows past
//   the last of them (fewer than 2^k, at the live end): a bounded read whatever the length.
// - After a crash (no clean close) HDF5 refuses a plain open ("file is already open for write (may
//   use <h5clear file> ...)"): open with SWMR read (h5py `swmr=True`), or run `h5clear -s <file>`
//   once, after which any reader opens it.
// - After a write error (disk full, ...) the file holds everything up to `samples_written`; if a
//   plain open is refused, open it with SWMR read as after a crash. A file deleted while written
//   cannot be kept: the writer notices at the next flush() and stops with an error.
// - Strings in attributes are variable-length UTF-8 (h5py gives `str`); `end_reason` is fixed
//   length (h5py gives `bytes`; strip trailing NULs and decode as UTF-8).
// clang-format on
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "meltrig/dataset/dataset_types.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::dataset {

/// How every chunked dataset of a capture is compressed (recorded as the monitor group's
/// `compression` attribute). Deflate and LZ4 run after a byte shuffle, which groups the float
/// bytes of equal weight (sign and exponent bytes of a noisy signal hardly change) and roughly
/// doubles what either achieves on float32 samples.
struct Compression {
  /// Stored only as text in the file (see name()); the numbering is not part of the format.
  enum class Method : std::uint8_t { none, deflate, lz4 };
  Method method = Method::deflate;
  unsigned level = 1;  ///< deflate only: 1 (fastest) .. 9 (smallest); ignored otherwise

  static constexpr Compression none() { return {Method::none, 0}; }
  static constexpr Compression deflate(unsigned level) { return {Method::deflate, level}; }
  /// HDF5 filter 32004; needs the HDF5 LZ4 plugin (Debian: hdf5-filter-plugin) to write and read.
  static constexpr Compression lz4() { return {Method::lz4, 0}; }
  /// The attribute text: "none", "shuffle+deflate-<level>" or "shuffle+lz4".
  std::string name() const;
};

/// Everything fixed when the file is created (SWMR forbids adding objects or attributes later).
struct CaptureLayout {
  std::vector<Attribute> root_attributes;     ///< e.g. meltrig_version, host clocks at start
  std::string monitor = "monitor";            ///< group name for the monitor
  std::vector<Attribute> monitor_attributes;  ///< driver, port, serial_number, ...
  std::vector<Attribute> status_at_start;     ///< device status, as attributes of status_at_start
  double sample_rate_hz = 0.0;                ///< nominal rate; t = sample_index / sample_rate_hz
  std::vector<ChannelSpec> channels;          ///< at least one
  std::uint64_t chunk_samples = 16384;        ///< HDF5 chunk and write size, in samples
  Compression compression;                    ///< default: shuffle + deflate level 1
  bool summaries = true;                      ///< write /<monitor>/summary (off: benchmarks only)
  std::vector<std::string> counter_names;     ///< e.g. missing_samples, duplicate_samples, ...
};

/// One row of /<monitor>/gaps.
struct Gap {
  std::uint64_t first_index = 0;
  std::uint64_t count = 0;
  GapKind kind = GapKind::missing;
};

/// One row of /<monitor>/calibration: raw ADC counts in use from sample_index on.
struct CalibrationRow {
  std::uint64_t sample_index = 0;
  double fine_zero = 0.0;
  double fine_ref = 0.0;
  double coarse_zero = 0.0;
  double coarse_ref = 0.0;
};

/// Value of /capture_state/state. Stored in the file; never renumber.
enum class CaptureState : std::int8_t { running = 0, complete = 1, failed = 2, interrupted = 3 };

/// Samples for every channel, in layout order, all spans of equal length. Views only: the caller
/// keeps the storage (e.g. a std::array<ChannelData, N> reused for every block).
struct SampleBlock {
  std::span<const ChannelData> channels;
};

/// Writes one capture file. Not thread-safe: use it from one thread (moving it between threads is
/// fine). Appends are buffered up to one chunk per channel and written as whole chunks, so small
/// blocks cost a memcpy plus the summary arithmetic (a vectorised pass per float channel; one
/// row per 256 samples); flush() makes everything appended so far durable and visible to readers.
///
/// After a write failure (disk full, I/O error, the file deleted) the writer stops: that call and
/// every later one return file_error "<file>: <what> <object>: <cause>" (e.g. "No space left on
/// device (errno 28; ...)"); finish() still tries to record the state, closes the file and returns
/// the failure again. The file keeps everything up to the last successful flush(). A deleted file
/// is noticed at the next flush(): writing on into an inode that vanishes at close would lose the
/// whole capture silently.
class CaptureWriter {
 public:
  /// Creates `path` (which must not exist), lays out every object and attribute, and starts SWMR
  /// writing. Errors: invalid_argument for a bad layout (message names the key), file_error when
  /// HDF5 fails (message names the file, the object and HDF5's innermost reason) or when the LZ4
  /// filter is asked for but its plugin is missing (message names the package to install). On
  /// failure no file is left behind.
  static Result<CaptureWriter> create(const std::filesystem::path& path,
                                      const CaptureLayout& layout);

  CaptureWriter(CaptureWriter&&) noexcept;
  CaptureWriter& operator=(CaptureWriter&&) noexcept;
  /// If finish() was not called: flushes what it can and closes; state stays "running".
  ~CaptureWriter();

  /// Appends the next samples (sample indices samples_written() ...). invalid_argument if the
  /// block does not have one span of the right type per channel, all of equal length.
  Result<void> append(const SampleBlock& block);

  /// Appends `count` missing samples (NaN / 0 in every channel) and records a gap row of `kind`
  /// starting at samples_written(). Whole missing chunks are never stored: they read back as the
  /// fill value. invalid_argument for kind duplicate_dropped (it covers no rows) or count 0.
  Result<void> append_missing(std::uint64_t count, GapKind kind);

  /// Records a gap row as given (no sample rows are added). invalid_argument for an unknown kind
  /// or count 0. Written to the file at the next flush().
  Result<void> add_gap(const Gap& gap);

  /// Records a calibration row. Written to the file at the next flush().
  Result<void> add_calibration(const CalibrationRow& row);

  /// Sets all loss counters, in layout counter_names order (invalid_argument on a size mismatch).
  /// Written to the file at the next flush().
  Result<void> set_counters(std::span<const std::uint64_t> values);

  /// Writes buffered samples, complete summary entries, gaps, calibration rows and counters,
  /// flushes every dataset, then updates /capture_state/samples_written and flushes the file (so
  /// the superblock's end of file covers the data after a crash). Call at least once a second.
  /// Fails (and stops the writer) if the file has been deleted meanwhile.
  Result<void> flush();

  /// Appends the final partial summary entry of every level, flushes, records `state` (not
  /// running) and `reason`, and closes the file. Further calls return invalid_argument.
  Result<void> finish(CaptureState state, std::string_view reason);

  /// Samples appended so far (including missing ones), i.e. the next sample index. Samples still
  /// buffered count; /capture_state/samples_written catches up at the next flush().
  std::uint64_t samples_written() const;

  /// The file being written.
  const std::filesystem::path& path() const;

 private:
  struct Impl;
  explicit CaptureWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meltrig::dataset
