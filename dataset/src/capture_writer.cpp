// CaptureWriter: see capture_writer.hpp for the file layout and the caller's contract.
#include "meltrig/dataset/capture_writer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <system_error>
#include <utility>

#include "meltrig/dataset/h5_file.hpp"

namespace meltrig::dataset {

namespace {

constexpr std::string_view kFormat = "meltrig-capture";
constexpr std::int64_t kFormatVersion = 1;
constexpr std::string_view kTimeBase = "t = sample_index / sample_rate_hz";
constexpr std::string_view kStateGroup = "capture_state";
constexpr std::size_t kEndReasonBytes = 256;
// Gap and calibration rows are rare: buffer up to one table chunk, and always write at flush().
constexpr std::uint64_t kTableChunkRows = 1024;
// Keeps one channel's chunk well under HDF5's 4 GiB chunk limit and its buffer modest.
constexpr std::uint64_t kMaxChunkSamples = std::uint64_t{1} << 24;
constexpr std::array<std::string_view, 5> kReservedInMonitor = {"gaps", "calibration", "counters",
                                                                "status_at_start", "summary"};
constexpr std::uint8_t kMaxGapKind = kGapKindCount - 1;
constexpr std::string_view kLz4Package = "hdf5-filter-plugin";

// Summary levels: log2 of samples per entry, finest first. Part of the file format (the `levels`
// attribute, which readers are told is exactly this): change it only with a format version bump.
constexpr std::array<std::int64_t, 5> kSummaryLevels = {8, 12, 16, 20, 24};
constexpr std::size_t kLevelCount = kSummaryLevels.size();
constexpr std::uint64_t kFinestSamples = std::uint64_t{1} << kSummaryLevels[0];
// Each level combines this many entries of the one below, so every level is computed from the
// level below it in memory and no sample is ever read back.
constexpr std::uint64_t kFanIn = 16;
constexpr bool summary_levels_chain() {
  for (std::size_t i = 1; i < kLevelCount; ++i) {
    if ((std::uint64_t{1} << (kSummaryLevels[i] - kSummaryLevels[i - 1])) != kFanIn) return false;
  }
  return true;
}
static_assert(summary_levels_chain());
// The coarsest entry must fit `valid` (u32).
static_assert(kSummaryLevels[kLevelCount - 1] < 32);
constexpr std::string_view kSummaryFields = "mean,min,max,valid";
// 16 KiB per chunk: a level-8 chunk covers 262144 samples (a quarter second at 1 Msps), so the
// partial chunk rewritten at each flush stays small, and a plot reads a few chunks per level.
constexpr std::uint64_t kSummaryChunkRows = 1024;

std::shared_ptr<spdlog::logger> logger() {
  static const std::shared_ptr<spdlog::logger> log = [] {
    if (auto existing = spdlog::get("rig.capture_writer")) return existing;
    return spdlog::default_logger()->clone("rig.capture_writer");
  }();
  return log;
}

Error invalid(std::string message) {
  return Error{Errc::invalid_argument, "capture layout: " + std::move(message)};
}

// HDF5 link names may hold anything but '/', and "." means the group itself.
bool valid_name(std::string_view name) {
  return !name.empty() && name != "." && name.find('/') == std::string_view::npos;
}

Result<void> check_attributes(std::string_view where, const std::vector<Attribute>& attrs,
                              std::set<std::string> taken) {
  for (const auto& a : attrs) {
    if (a.name.empty()) return invalid(std::string(where) + ": an attribute has an empty name");
    if (!taken.insert(a.name).second) {
      return invalid(std::string(where) + ": attribute '" + a.name +
                     "' is given twice or is reserved");
    }
  }
  return {};
}

Result<void> check_layout(const CaptureLayout& layout) {
  if (!valid_name(layout.monitor) || layout.monitor == kStateGroup) {
    return invalid("monitor group name '" + layout.monitor + "' is empty, has '/' or is reserved");
  }
  if (!(std::isfinite(layout.sample_rate_hz) && layout.sample_rate_hz > 0.0)) {
    return invalid("sample_rate_hz must be finite and > 0, got " +
                   std::to_string(layout.sample_rate_hz));
  }
  if (layout.channels.empty()) return invalid("channels: at least one channel is required");
  std::set<std::string> names(kReservedInMonitor.begin(), kReservedInMonitor.end());
  for (std::size_t i = 0; i < layout.channels.size(); ++i) {
    const auto& ch = layout.channels[i];
    if (!valid_name(ch.name) || !names.insert(ch.name).second) {
      return invalid("channel " + std::to_string(i) + " name '" + ch.name +
                     "' is empty, has '/', is reserved or is given twice");
    }
    if (ch.type != SampleType::f32 && ch.type != SampleType::u8) {
      return invalid("channel '" + ch.name + "' has an unknown sample type");
    }
  }
  if (layout.chunk_samples == 0 || layout.chunk_samples > kMaxChunkSamples) {
    return invalid("chunk_samples must be in 1.." + std::to_string(kMaxChunkSamples) + ", got " +
                   std::to_string(layout.chunk_samples));
  }
  switch (layout.compression.method) {
    case Compression::Method::none:
    case Compression::Method::lz4:
      break;
    case Compression::Method::deflate:
      if (layout.compression.level < 1 || layout.compression.level > 9) {
        return invalid("compression: deflate level must be 1..9 (or Compression::none()), got " +
                       std::to_string(layout.compression.level));
      }
      break;
    default:
      return invalid("compression: unknown method " +
                     std::to_string(static_cast<unsigned>(layout.compression.method)));
  }
  std::set<std::string> counters;
  for (const auto& c : layout.counter_names) {
    if (c.empty() || !counters.insert(c).second) {
      return invalid("counter name '" + c + "' is empty or given twice");
    }
  }
  if (auto r =
          check_attributes("root_attributes", layout.root_attributes, {"format", "format_version"});
      !r) {
    return r;
  }
  if (auto r = check_attributes("monitor_attributes", layout.monitor_attributes,
                                {"sample_rate_hz", "time_base", "compression"});
      !r) {
    return r;
  }
  return check_attributes("status_at_start", layout.status_at_start, {});
}

Result<void> write_attributes(hid_t obj, const std::vector<Attribute>& attrs) {
  for (const auto& a : attrs) {
    if (auto r = h5::write_attribute(obj, a.name, a.value); !r) return r;
  }
  return {};
}

// Compound types: the file types are packed little-endian, the memory types follow the structs.
Result<h5::Datatype> make_compound(
    std::size_t size, std::initializer_list<std::tuple<const char*, std::size_t, hid_t>> members) {
  h5::Datatype type{H5Tcreate(H5T_COMPOUND, size)};
  if (!type.valid()) {
    return Error{Errc::file_error, "cannot make an HDF5 compound type: " + h5::innermost_error()};
  }
  for (const auto& [name, offset, member] : members) {
    if (H5Tinsert(type.get(), name, offset, member) < 0) {
      return Error{Errc::file_error, std::string("cannot make an HDF5 compound type member ") +
                                         name + ": " + h5::innermost_error()};
    }
  }
  return type;
}

Result<h5::Datatype> gap_file_type() {
  return make_compound(
      17,
      {{"first_index", 0, H5T_STD_U64LE}, {"count", 8, H5T_STD_U64LE}, {"kind", 16, H5T_STD_U8LE}});
}

Result<h5::Datatype> gap_mem_type() {
  return make_compound(sizeof(Gap), {{"first_index", offsetof(Gap, first_index), H5T_NATIVE_UINT64},
                                     {"count", offsetof(Gap, count), H5T_NATIVE_UINT64},
                                     {"kind", offsetof(Gap, kind), H5T_NATIVE_UINT8}});
}

Result<h5::Datatype> calibration_file_type() {
  return make_compound(40, {{"sample_index", 0, H5T_STD_U64LE},
                            {"fine_zero", 8, H5T_IEEE_F64LE},
                            {"fine_ref", 16, H5T_IEEE_F64LE},
                            {"coarse_zero", 24, H5T_IEEE_F64LE},
                            {"coarse_ref", 32, H5T_IEEE_F64LE}});
}

Result<h5::Datatype> calibration_mem_type() {
  return make_compound(sizeof(CalibrationRow),
                       {{"sample_index", offsetof(CalibrationRow, sample_index), H5T_NATIVE_UINT64},
                        {"fine_zero", offsetof(CalibrationRow, fine_zero), H5T_NATIVE_DOUBLE},
                        {"fine_ref", offsetof(CalibrationRow, fine_ref), H5T_NATIVE_DOUBLE},
                        {"coarse_zero", offsetof(CalibrationRow, coarse_zero), H5T_NATIVE_DOUBLE},
                        {"coarse_ref", offsetof(CalibrationRow, coarse_ref), H5T_NATIVE_DOUBLE}});
}

// At most kEndReasonBytes bytes, never splitting a UTF-8 sequence.
std::string truncate_utf8(std::string_view text, std::size_t max_bytes) {
  std::size_t n = std::min(text.size(), max_bytes);
  if (n < text.size()) {
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0U) == 0x80U)
      --n;
  }
  std::string out(max_bytes, '\0');
  std::memcpy(out.data(), text.data(), n);
  return out;
}

// A pending-rows table (gaps, calibration): rows wait in a preallocated vector until flush().
template <typename Row>
struct Table {
  h5::Dataset dset;
  h5::Datatype mem_type;
  std::vector<Row> pending;
  std::uint64_t rows_on_disk = 0;
};

/// One sample channel: its dataset and a one-chunk buffer of its element type.
struct Channel {
  std::string name;
  SampleType type;
  h5::Dataset dset;
  std::vector<float> f32;
  std::vector<std::uint8_t> u8;
};

// ---- Summaries ----

/// One summary entry as stored (/<monitor>/summary/<channel>/<k>).
struct SummaryRow {
  float mean;
  float min;
  float max;
  std::uint32_t valid;
};

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
// An entry with no valid sample; also the datasets' fill value, so entries of a long gap that
// fill whole chunks are never stored, like the samples they describe.
constexpr SummaryRow kEmptyRow{kNaN, kNaN, kNaN, 0};

Result<h5::Datatype> summary_file_type() {
  return make_compound(16, {{"mean", 0, H5T_IEEE_F32LE},
                            {"min", 4, H5T_IEEE_F32LE},
                            {"max", 8, H5T_IEEE_F32LE},
                            {"valid", 12, H5T_STD_U32LE}});
}

Result<h5::Datatype> summary_mem_type() {
  return make_compound(sizeof(SummaryRow),
                       {{"mean", offsetof(SummaryRow, mean), H5T_NATIVE_FLOAT},
                        {"min", offsetof(SummaryRow, min), H5T_NATIVE_FLOAT},
                        {"max", offsetof(SummaryRow, max), H5T_NATIVE_FLOAT},
                        {"valid", offsetof(SummaryRow, valid), H5T_NATIVE_UINT32}});
}

/// Statistics of the valid samples under one entry. The sum stays double through every level so
/// that combining 16 entries loses nothing a float32 mean could show.
struct Stats {
  double sum = 0.0;
  std::uint64_t valid = 0;
  float min = kInf;  // +inf/-inf while empty: neutral for min/max and never NaN
  float max = -kInf;

  void add(const Stats& other) {
    sum += other.sum;
    valid += other.valid;
    min = std::min(min, other.min);
    max = std::max(max, other.max);
  }
  SummaryRow row() const {
    if (valid == 0) return kEmptyRow;
    return {static_cast<float>(sum / static_cast<double>(valid)), min, max,
            static_cast<std::uint32_t>(valid)};
  }
};

/// The finest level's accumulator. kWidth independent lanes so that the per-sample loop carries no
/// dependency through a single variable: with the NaN test done on the bits (no branch, no
/// floating-point compare that -ftrapping-math would keep in order) GCC and Clang turn it into
/// SIMD code at -O2 (about 2 G samples/s on one x86-64 core, SSE2 only).
struct Lanes {
  static constexpr std::size_t kWidth = 8;
  std::array<double, kWidth> sum;
  std::array<float, kWidth> min;
  std::array<float, kWidth> max;
  std::array<std::uint32_t, kWidth> valid;

  Lanes() { reset(); }
  void reset() {
    sum.fill(0.0);
    min.fill(kInf);
    max.fill(-kInf);
    valid.fill(0);
  }

  // One sample into lane l of the given accumulators (locals, so the compiler can see that the
  // samples never alias them).
  static void one(float v, std::size_t l, std::array<double, kWidth>& s,
                  std::array<float, kWidth>& lo, std::array<float, kWidth>& hi,
                  std::array<std::uint32_t, kWidth>& c) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    // All ones unless v is NaN (a missing sample); infinities count as valid, as in NumPy.
    const std::uint32_t keep = 0U - static_cast<std::uint32_t>((bits & 0x7FFFFFFFU) <= 0x7F800000U);
    const std::uint32_t kept = bits & keep;
    float zeroed = 0.0f;
    std::memcpy(&zeroed, &kept, sizeof zeroed);
    s[l] += static_cast<double>(zeroed);
    c[l] += keep & 1U;
    // Comparisons with NaN are false, so a NaN never replaces the running min or max.
    lo[l] = v < lo[l] ? v : lo[l];
    hi[l] = v > hi[l] ? v : hi[l];
  }

  void add(const float* x, std::size_t n) {
    std::array<double, kWidth> s = sum;
    std::array<float, kWidth> lo = min;
    std::array<float, kWidth> hi = max;
    std::array<std::uint32_t, kWidth> c = valid;
    std::size_t i = 0;
    for (; i + kWidth <= n; i += kWidth) {
      // Unrolling the lane loop first would leave only the (failing) straight-line vectoriser.
#pragma GCC unroll 1
      for (std::size_t l = 0; l < kWidth; ++l)
        one(x[i + l], l, s, lo, hi, c);
    }
    for (std::size_t l = 0; l < n - i; ++l)
      one(x[i + l], l, s, lo, hi, c);
    sum = s;
    min = lo;
    max = hi;
    valid = c;
  }

  Stats total() const {
    Stats t;
    for (std::size_t l = 0; l < kWidth; ++l) {
      t.sum += sum[l];
      t.valid += valid[l];
      t.min = std::min(t.min, min[l]);
      t.max = std::max(t.max, max[l]);
    }
    return t;
  }
};

/// One summary dataset (one channel at one level) with a one-chunk buffer, written like the
/// sample channels: whole chunks from their start, plus the partial chunk again at each flush.
struct SummarySeries {
  h5::Dataset dset;
  std::vector<SummaryRow> rows;   // entries [chunk_start, chunk_start + fill)
  std::uint64_t chunk_start = 0;  // a multiple of kSummaryChunkRows
  std::uint64_t fill = 0;
  std::uint64_t fill_on_disk = 0;
  std::uint64_t extent = 0;
  Stats acc;                   // above the finest level: the entry being combined from below
  std::uint64_t children = 0;  // entries of the level below in `acc` (including empty ones)
};

/// The summaries of one float32 channel.
struct ChannelSummary {
  std::size_t channel = 0;         // index in Impl::channels
  Lanes lanes;                     // the finest entry being built
  std::uint64_t lane_samples = 0;  // samples (valid or not) in it
  std::array<SummarySeries, kLevelCount> levels;
};

}  // namespace

std::string Compression::name() const {
  switch (method) {
    case Method::none:
      return "none";
    case Method::deflate:
      return "shuffle+deflate-" + std::to_string(level);
    case Method::lz4:
      return "shuffle+lz4";
  }
  return "unknown";
}

struct CaptureWriter::Impl {
  std::filesystem::path path;
  std::string path_text;
  h5::File file;
  std::vector<Channel> channels;
  std::vector<ChannelSummary> summaries;  // one per float32 channel; empty when turned off
  h5::Datatype summary_mem;
  Table<Gap> gaps;
  Table<CalibrationRow> calibration;
  h5::Dataset counters;
  h5::Dataset state;
  h5::Dataset end_reason;
  h5::Dataset samples_written_ds;
  h5::Datatype end_reason_type;
  std::vector<std::uint64_t> counter_values;
  bool counters_dirty = false;

  // The buffers hold samples [chunk_start, chunk_start + fill); chunk_start is a multiple of chunk
  // so every write covers one chunk from its start (HDF5 then never re-reads a compressed chunk,
  // except the one partial chunk rewritten at each flush). The first `fill_on_disk` buffered
  // samples are already in the file; `extent` is the datasets' current length.
  std::uint64_t chunk = 0;
  std::uint64_t chunk_start = 0;
  std::uint64_t fill = 0;
  std::uint64_t fill_on_disk = 0;
  std::uint64_t extent = 0;
  std::uint64_t flushed_samples = 0;

  std::optional<Error> failure;  // the first HDF5 failure; the writer stops after it
  bool closed = false;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  ~Impl() {
    if (closed) return;
    if (!failure) {
      if (auto r = flush(); !r) {
        logger()->warn("closing unfinished capture {}: {}", path_text, r.error().describe());
      }
    }
    if (auto r = close_all(); !r) {
      logger()->warn("closing unfinished capture {}: {}", path_text, r.error().describe());
    }
  }

  std::uint64_t next_index() const { return chunk_start + fill; }

  Result<void> usable() const {
    if (closed) {
      return Error{Errc::invalid_argument, path_text + ": capture writer already finished"};
    }
    if (failure) {
      return Error{failure->code, "writer stopped after an earlier error: " + failure->message};
    }
    return {};
  }

  // Records the first HDF5 failure and passes it on.
  Result<void> fail(Result<void> r) {
    if (!r && !failure) failure = r.error();
    return r;
  }

  // Writes buffered samples not yet in the file, growing the datasets first.
  Result<void> write_buffer() {
    const std::uint64_t target = next_index();
    if (target > extent) {
      for (auto& ch : channels) {
        if (auto r = h5::set_extent_1d(ch.dset.get(), target); !r) return fail(r);
      }
      extent = target;
    }
    if (fill > fill_on_disk) {
      for (auto& ch : channels) {
        auto r =
            ch.type == SampleType::f32
                ? h5::write_rows<float>(ch.dset.get(), chunk_start, {ch.f32.data(), fill})
                : h5::write_rows<std::uint8_t>(ch.dset.get(), chunk_start, {ch.u8.data(), fill});
        if (!r) return fail(r);
      }
      fill_on_disk = fill;
    }
    return {};
  }

  // Called when the buffers hold a whole chunk: writes it and starts the next one.
  Result<void> complete_chunk() {
    if (auto r = write_buffer(); !r) return r;
    chunk_start += chunk;
    fill = 0;
    fill_on_disk = 0;
    return {};
  }

  // ---- Summaries. Every HDF5 failure goes through fail(): the writer stops. ----

  // Writes the buffered entries not yet in the file, growing the dataset first.
  Result<void> write_series(SummarySeries& s) {
    const std::uint64_t target = s.chunk_start + s.fill;
    if (target > s.extent) {
      if (auto r = h5::set_extent_1d(s.dset.get(), target); !r) return fail(r);
      s.extent = target;
    }
    if (s.fill > s.fill_on_disk) {
      if (auto r =
              h5::write_rows(s.dset.get(), summary_mem.get(), s.chunk_start, s.fill, s.rows.data());
          !r) {
        return fail(r);
      }
      s.fill_on_disk = s.fill;
    }
    return {};
  }

  Result<void> push_row(SummarySeries& s, const SummaryRow& row) {
    s.rows[s.fill++] = row;
    if (s.fill < kSummaryChunkRows) return {};
    if (auto r = write_series(s); !r) return r;
    s.chunk_start += kSummaryChunkRows;
    s.fill = 0;
    s.fill_on_disk = 0;
    return {};
  }

  // `count` entries without a valid sample. Whole chunks of them are never stored: they read back
  // as the fill value, which is the empty entry.
  Result<void> push_empty_rows(SummarySeries& s, std::uint64_t count) {
    while (count > 0) {
      if (s.fill == 0 && count >= kSummaryChunkRows) {
        s.chunk_start += kSummaryChunkRows;
        count -= kSummaryChunkRows;
        continue;
      }
      const std::uint64_t take = std::min(count, kSummaryChunkRows - s.fill - 1);
      std::fill_n(s.rows.begin() + static_cast<std::ptrdiff_t>(s.fill), take, kEmptyRow);
      s.fill += take;
      count -= take;
      if (count > 0) {
        // The chunk's last entry goes through push_row, which writes the full chunk.
        if (auto r = push_row(s, kEmptyRow); !r) return r;
        --count;
      }
    }
    return {};
  }

  // A finished entry of `level`: stored, and passed on to the level above.
  Result<void> emit(ChannelSummary& cs, std::size_t level, const Stats& stats) {
    if (auto r = push_row(cs.levels[level], stats.row()); !r) return r;
    if (level + 1 == kLevelCount) return {};
    SummarySeries& up = cs.levels[level + 1];
    up.acc.add(stats);
    if (++up.children < kFanIn) return {};
    const Stats done = std::exchange(up.acc, Stats{});
    up.children = 0;
    return emit(cs, level + 1, done);
  }

  // The sample path: one vectorised pass per finest entry, no HDF5 call until a chunk of entries
  // is full (every 262144 samples).
  Result<void> summarise(ChannelSummary& cs, std::span<const float> x) {
    std::size_t done = 0;
    while (done < x.size()) {
      const auto take = static_cast<std::size_t>(
          std::min<std::uint64_t>(x.size() - done, kFinestSamples - cs.lane_samples));
      cs.lanes.add(x.data() + done, take);
      cs.lane_samples += take;
      done += take;
      if (cs.lane_samples == kFinestSamples) {
        const Stats stats = cs.lanes.total();
        cs.lanes.reset();
        cs.lane_samples = 0;
        if (auto r = emit(cs, 0, stats); !r) return r;
      }
    }
    return {};
  }

  // `count` children of `level` that hold no valid sample (samples for the finest level, entries
  // of the level below otherwise): a gap costs O(entries it spans / chunk), not O(samples).
  Result<void> skip(ChannelSummary& cs, std::size_t level, std::uint64_t count) {
    const std::uint64_t per = level == 0 ? kFinestSamples : kFanIn;
    std::uint64_t& filled = level == 0 ? cs.lane_samples : cs.levels[level].children;
    if (filled > 0) {
      const std::uint64_t take = std::min(count, per - filled);
      filled += take;
      count -= take;
      if (filled < per) return {};
      filled = 0;
      Stats stats;
      if (level == 0) {
        stats = cs.lanes.total();
        cs.lanes.reset();
      } else {
        stats = std::exchange(cs.levels[level].acc, Stats{});
      }
      if (auto r = emit(cs, level, stats); !r) return r;
    }
    const std::uint64_t whole = count / per;
    if (whole > 0) {
      if (auto r = push_empty_rows(cs.levels[level], whole); !r) return r;
      if (level + 1 < kLevelCount) {
        if (auto r = skip(cs, level + 1, whole); !r) return r;
      }
    }
    filled = count % per;
    return {};
  }

  // At finish(): the last, partial entry of every level, so that the summaries cover every
  // sample. Going up, each partial entry also joins the level above's.
  Result<void> finish_summaries() {
    for (ChannelSummary& cs : summaries) {
      if (cs.lane_samples > 0) {
        const Stats stats = cs.lanes.total();
        cs.lanes.reset();
        cs.lane_samples = 0;
        if (auto r = emit(cs, 0, stats); !r) return r;
      }
      for (std::size_t level = 1; level < kLevelCount; ++level) {
        SummarySeries& s = cs.levels[level];
        if (s.children == 0) continue;
        s.children = 0;
        if (auto r = emit(cs, level, std::exchange(s.acc, Stats{})); !r) return r;
      }
    }
    return {};
  }

  template <typename Row>
  Result<void> write_table(Table<Row>& table) {
    const auto n = static_cast<std::uint64_t>(table.pending.size());
    if (n == 0) return {};
    if (auto r = fail(h5::append_rows(table.dset.get(), table.mem_type.get(), table.rows_on_disk, n,
                                      table.pending.data()));
        !r) {
      return r;
    }
    table.rows_on_disk += n;
    table.pending.clear();  // keeps the capacity: no allocation on the next rows
    return {};
  }

  template <typename Row>
  Result<void> add_row(Table<Row>& table, const Row& row) {
    if (auto r = usable(); !r) return r;
    table.pending.push_back(row);
    if (table.pending.size() >= kTableChunkRows) return write_table(table);
    return {};
  }

  Result<void> flush() {
    if (auto r = usable(); !r) return r;
    // Deleting the file does not stop writes to its inode; without this check a capture could run
    // for hours into a file that vanishes when it is closed.
    auto unlinked = h5::file_unlinked(file.get(), path_text);
    if (!unlinked) return fail(unlinked.error());
    if (unlinked.value()) {
      return fail(Error{Errc::file_error,
                        path_text +
                            ": the file was deleted while being written; stopping the capture "
                            "(what it held is lost with it)"});
    }
    if (auto r = write_buffer(); !r) return r;
    for (ChannelSummary& cs : summaries) {
      for (SummarySeries& s : cs.levels) {
        if (auto r = write_series(s); !r) return r;
      }
    }
    if (auto r = write_table(gaps); !r) return r;
    if (auto r = write_table(calibration); !r) return r;
    if (counters_dirty && !counter_values.empty()) {
      if (auto r = fail(h5::overwrite(counters.get(), H5T_NATIVE_UINT64, counter_values.data()));
          !r) {
        return r;
      }
    }
    counters_dirty = false;
    // Sample data reaches the file before the count that vouches for it.
    for (auto& ch : channels) {
      if (auto r = fail(h5::flush(ch.dset.get())); !r) return r;
    }
    for (ChannelSummary& cs : summaries) {
      for (SummarySeries& s : cs.levels) {
        if (auto r = fail(h5::flush(s.dset.get())); !r) return r;
      }
    }
    for (hid_t d : {gaps.dset.get(), calibration.dset.get(), counters.get()}) {
      if (auto r = fail(h5::flush(d)); !r) return r;
    }
    const std::uint64_t count = next_index();
    if (auto r = fail(h5::overwrite(samples_written_ds.get(), H5T_NATIVE_UINT64, &count)); !r) {
      return r;
    }
    if (auto r = fail(h5::flush(samples_written_ds.get())); !r) return r;
    if (H5Fflush(file.get(), H5F_SCOPE_LOCAL) < 0) {
      return fail(h5::h5_error(path_text, "cannot flush HDF5 file", ""));
    }
    flushed_samples = count;
    return {};
  }

  // Closes every dataset, then the file (whose close writes the remaining metadata).
  Result<void> close_all() {
    h5::silence_errors();  // the last owner may be a thread that never touched HDF5
    closed = true;
    for (auto& ch : channels)
      ch.dset.close();
    for (ChannelSummary& cs : summaries) {
      for (SummarySeries& s : cs.levels)
        s.dset.close();
    }
    gaps.dset.close();
    calibration.dset.close();
    counters.close();
    state.close();
    end_reason.close();
    samples_written_ds.close();
    if (file.close() < 0) return h5::h5_error(path_text, "cannot close HDF5 file", "");
    return {};
  }

  Result<void> record_end(CaptureState end_state, std::string_view reason) {
    const auto code = static_cast<std::int8_t>(end_state);
    const std::string text = truncate_utf8(reason, kEndReasonBytes);
    if (auto r = h5::overwrite(state.get(), H5T_NATIVE_INT8, &code); !r) return r;
    if (auto r = h5::overwrite(end_reason.get(), end_reason_type.get(), text.data()); !r) return r;
    if (auto r = h5::overwrite(samples_written_ds.get(), H5T_NATIVE_UINT64, &flushed_samples); !r) {
      return r;
    }
    for (hid_t d : {state.get(), end_reason.get(), samples_written_ds.get()}) {
      if (auto r = h5::flush(d); !r) return r;
    }
    return {};
  }

  Result<void> lay_out(const CaptureLayout& layout);
  Result<void> lay_out_summaries(hid_t monitor, const CaptureLayout& layout);
};

namespace {

// The dataset creation settings every chunked dataset of the capture shares.
h5::ExtendibleSpec compressed(const Compression& c, hid_t file_type, std::uint64_t chunk_rows) {
  h5::ExtendibleSpec spec{.file_type = file_type, .chunk_rows = chunk_rows};
  switch (c.method) {
    case Compression::Method::none:
      break;
    case Compression::Method::deflate:
      spec.filter = h5::Filter::deflate;
      spec.deflate_level = c.level;
      spec.shuffle = true;
      break;
    case Compression::Method::lz4:
      spec.filter = h5::Filter::lz4;
      spec.shuffle = true;
      break;
  }
  return spec;
}

}  // namespace

Result<void> CaptureWriter::Impl::lay_out_summaries(hid_t monitor, const CaptureLayout& layout) {
  auto group = h5::create_group(monitor, "summary");
  if (!group) return group.error();
  if (auto r = h5::write_int64_array_attribute(group->get(), "levels", kSummaryLevels); !r) {
    return r;
  }
  if (auto r = h5::write_attribute(group->get(), "fields", std::string(kSummaryFields)); !r) {
    return r;
  }
  auto file_type = summary_file_type();
  if (!file_type) return file_type.error();
  auto mem_type = summary_mem_type();
  if (!mem_type) return mem_type.error();
  summary_mem = std::move(*mem_type);
  h5::ExtendibleSpec spec = compressed(layout.compression, file_type->get(), kSummaryChunkRows);
  spec.fill_mem_type = summary_mem.get();
  spec.fill_value = &kEmptyRow;
  for (std::size_t i = 0; i < channels.size(); ++i) {
    if (channels[i].type != SampleType::f32) continue;
    auto channel_group = h5::create_group(group->get(), channels[i].name);
    if (!channel_group) return channel_group.error();
    ChannelSummary& cs = summaries.emplace_back();
    cs.channel = i;
    for (std::size_t level = 0; level < kLevelCount; ++level) {
      auto dset = h5::create_extendible_1d(channel_group->get(),
                                           std::to_string(kSummaryLevels[level]), spec);
      if (!dset) return dset.error();
      cs.levels[level].dset = std::move(*dset);
      cs.levels[level].rows.resize(kSummaryChunkRows);
    }
  }
  return {};
}

Result<void> CaptureWriter::Impl::lay_out(const CaptureLayout& layout) {
  const hid_t root = file.get();
  if (auto r = h5::write_attribute(root, "format", std::string(kFormat)); !r) return r;
  if (auto r = h5::write_attribute(root, "format_version", kFormatVersion); !r) return r;
  if (auto r = write_attributes(root, layout.root_attributes); !r) return r;

  auto monitor = h5::create_group(root, layout.monitor);
  if (!monitor) return monitor.error();
  const hid_t mon = monitor->get();
  if (auto r = h5::write_attribute(mon, "sample_rate_hz", layout.sample_rate_hz); !r) return r;
  if (auto r = h5::write_attribute(mon, "time_base", std::string(kTimeBase)); !r) return r;
  if (auto r = h5::write_attribute(mon, "compression", layout.compression.name()); !r) return r;
  if (auto r = write_attributes(mon, layout.monitor_attributes); !r) return r;

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::uint8_t zero = 0;
  for (const auto& spec : layout.channels) {
    const bool is_f32 = spec.type == SampleType::f32;
    h5::ExtendibleSpec ds =
        compressed(layout.compression, is_f32 ? H5T_IEEE_F32LE : H5T_STD_U8LE, chunk);
    ds.fill_mem_type = is_f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    ds.fill_value = is_f32 ? static_cast<const void*>(&nan) : static_cast<const void*>(&zero);
    auto dset = h5::create_extendible_1d(mon, spec.name, ds);
    if (!dset) return dset.error();
    if (auto r = h5::write_attribute(dset->get(), "unit", spec.unit); !r) return r;
    if (auto r = h5::write_attribute(dset->get(), "description", spec.description); !r) return r;
    Channel ch{.name = spec.name, .type = spec.type, .dset = std::move(*dset), .f32 = {}, .u8 = {}};
    if (is_f32) {
      ch.f32.resize(chunk);
    } else {
      ch.u8.resize(chunk);
    }
    channels.push_back(std::move(ch));
  }

  auto make_table = [&](auto& table, const char* name, Result<h5::Datatype> file_type,
                        Result<h5::Datatype> mem_type) -> Result<void> {
    if (!file_type) return file_type.error();
    if (!mem_type) return mem_type.error();
    const h5::ExtendibleSpec ds = compressed(layout.compression, file_type->get(), kTableChunkRows);
    auto dset = h5::create_extendible_1d(mon, name, ds);
    if (!dset) return dset.error();
    table.dset = std::move(*dset);
    table.mem_type = std::move(*mem_type);
    table.pending.reserve(kTableChunkRows);
    return {};
  };
  if (auto r = make_table(gaps, "gaps", gap_file_type(), gap_mem_type()); !r) return r;
  const std::vector<std::string> kind_names(std::begin(kGapKindNames), std::end(kGapKindNames));
  if (auto r = h5::write_string_array_attribute(gaps.dset.get(), "kind_names", kind_names); !r) {
    return r;
  }
  if (auto r =
          make_table(calibration, "calibration", calibration_file_type(), calibration_mem_type());
      !r) {
    return r;
  }

  const auto n_counters = static_cast<std::int64_t>(layout.counter_names.size());
  auto counters_ds = h5::create_fixed(mon, "counters", H5T_STD_U64LE, n_counters);
  if (!counters_ds) return counters_ds.error();
  counters = std::move(*counters_ds);
  counter_values.assign(layout.counter_names.size(), 0);
  if (auto r = h5::write_string_array_attribute(counters.get(), "names", layout.counter_names);
      !r) {
    return r;
  }
  if (!counter_values.empty()) {
    if (auto r = h5::overwrite(counters.get(), H5T_NATIVE_UINT64, counter_values.data()); !r) {
      return r;
    }
  }

  if (layout.summaries) {
    if (auto r = lay_out_summaries(mon, layout); !r) return r;
  }

  auto status = h5::create_group(mon, "status_at_start");
  if (!status) return status.error();
  if (auto r = write_attributes(status->get(), layout.status_at_start); !r) return r;

  auto state_group = h5::create_group(root, std::string(kStateGroup));
  if (!state_group) return state_group.error();
  const hid_t sg = state_group->get();
  auto reason_type = h5::fixed_string_type(kEndReasonBytes);
  if (!reason_type) return reason_type.error();
  end_reason_type = std::move(*reason_type);
  auto state_ds = h5::create_fixed(sg, "state", H5T_STD_I8LE);
  if (!state_ds) return state_ds.error();
  state = std::move(*state_ds);
  auto reason_ds = h5::create_fixed(sg, "end_reason", end_reason_type.get());
  if (!reason_ds) return reason_ds.error();
  end_reason = std::move(*reason_ds);
  auto count_ds = h5::create_fixed(sg, "samples_written", H5T_STD_U64LE);
  if (!count_ds) return count_ds.error();
  samples_written_ds = std::move(*count_ds);
  const auto running = static_cast<std::int8_t>(CaptureState::running);
  if (auto r = h5::overwrite(state.get(), H5T_NATIVE_INT8, &running); !r) return r;
  const std::string empty(kEndReasonBytes, '\0');
  if (auto r = h5::overwrite(end_reason.get(), end_reason_type.get(), empty.data()); !r) return r;
  const std::uint64_t none = 0;
  if (auto r = h5::overwrite(samples_written_ds.get(), H5T_NATIVE_UINT64, &none); !r) return r;

  // SWMR writing needs attributes and committed types closed; groups are not needed any more.
  monitor->close();
  status->close();
  state_group->close();
  if (H5Fstart_swmr_write(root) < 0) {
    return h5::h5_error(path_text, "cannot start SWMR writing of", "");
  }
  return {};
}

CaptureWriter::CaptureWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CaptureWriter::CaptureWriter(CaptureWriter&&) noexcept = default;
CaptureWriter& CaptureWriter::operator=(CaptureWriter&&) noexcept = default;
CaptureWriter::~CaptureWriter() = default;

Result<CaptureWriter> CaptureWriter::create(const std::filesystem::path& path,
                                            const CaptureLayout& layout) {
  if (auto r = check_layout(layout); !r) return r.error();
  if (layout.compression.method == Compression::Method::lz4) {
    // Before creating anything: never start a capture that cannot be compressed as asked.
    if (auto r = h5::require_filter(path.string(), h5::kLz4FilterId, "lz4", kLz4Package); !r) {
      return r.error();
    }
  }
  auto file = h5::create_file(path);
  if (!file) return file.error();

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->path_text = path.string();
  impl->file = std::move(*file);
  impl->chunk = layout.chunk_samples;
  impl->channels.reserve(layout.channels.size());
  impl->summaries.reserve(layout.channels.size());
  if (auto r = impl->lay_out(layout); !r) {
    // A half-built file is of no use to anyone: remove it.
    impl->failure = r.error();
    (void)impl->close_all();
    impl.reset();
    std::error_code ec;
    std::filesystem::remove(path, ec);
    return r.error();
  }
  return CaptureWriter(std::move(impl));
}

Result<void> CaptureWriter::append(const SampleBlock& block) {
  assert(impl_);
  Impl& w = *impl_;
  if (auto r = w.usable(); !r) return r;
  if (block.channels.size() != w.channels.size()) {
    return Error{Errc::invalid_argument,
                 w.path_text + ": block has " + std::to_string(block.channels.size()) +
                     " channels, layout has " + std::to_string(w.channels.size())};
  }
  std::size_t n = 0;
  for (std::size_t i = 0; i < w.channels.size(); ++i) {
    const ChannelData& data = block.channels[i];
    const bool want_f32 = w.channels[i].type == SampleType::f32;
    if (want_f32 != std::holds_alternative<std::span<const float>>(data)) {
      return Error{Errc::invalid_argument, w.path_text + ": channel '" + w.channels[i].name +
                                               "' is given the wrong sample type"};
    }
    const std::size_t len = std::visit([](auto s) { return s.size(); }, data);
    if (i == 0) n = len;
    if (len != n) {
      return Error{Errc::invalid_argument, w.path_text + ": channel '" + w.channels[i].name +
                                               "' has " + std::to_string(len) +
                                               " samples, channel '" + w.channels[0].name +
                                               "' has " + std::to_string(n)};
    }
  }
  for (ChannelSummary& cs : w.summaries) {
    if (auto r = w.summarise(cs, std::get<std::span<const float>>(block.channels[cs.channel]));
        !r) {
      return r;
    }
  }
  std::size_t offset = 0;
  while (offset < n) {
    const std::size_t take = std::min<std::size_t>(n - offset, w.chunk - w.fill);
    for (std::size_t i = 0; i < w.channels.size(); ++i) {
      Channel& ch = w.channels[i];
      if (const auto* f = std::get_if<std::span<const float>>(&block.channels[i])) {
        std::memcpy(ch.f32.data() + w.fill, f->data() + offset, take * sizeof(float));
      } else {
        const auto& u = std::get<std::span<const std::uint8_t>>(block.channels[i]);
        std::memcpy(ch.u8.data() + w.fill, u.data() + offset, take);
      }
    }
    w.fill += take;
    offset += take;
    if (w.fill == w.chunk) {
      if (auto r = w.complete_chunk(); !r) return r;
    }
  }
  return {};
}

Result<void> CaptureWriter::append_missing(std::uint64_t count, GapKind kind) {
  assert(impl_);
  Impl& w = *impl_;
  if (auto r = w.usable(); !r) return r;
  if (count == 0 || kind == GapKind::duplicate_dropped ||
      static_cast<std::uint8_t>(kind) > kMaxGapKind) {
    return Error{Errc::invalid_argument,
                 w.path_text + ": append_missing needs count > 0 and a kind that covers rows"};
  }
  if (auto r = w.add_row(w.gaps, Gap{w.next_index(), count, kind}); !r) return r;
  for (ChannelSummary& cs : w.summaries) {
    if (auto r = w.skip(cs, 0, count); !r) return r;
  }
  std::uint64_t remaining = count;
  while (remaining > 0) {
    if (w.fill == 0 && remaining >= w.chunk) {
      // Never written: the chunk stays unallocated and reads back as the fill value.
      w.chunk_start += w.chunk;
      remaining -= w.chunk;
      continue;
    }
    const std::uint64_t take = std::min(remaining, w.chunk - w.fill);
    for (Channel& ch : w.channels) {
      if (ch.type == SampleType::f32) {
        std::fill_n(ch.f32.begin() + static_cast<std::ptrdiff_t>(w.fill), take,
                    std::numeric_limits<float>::quiet_NaN());
      } else {
        std::fill_n(ch.u8.begin() + static_cast<std::ptrdiff_t>(w.fill), take, std::uint8_t{0});
      }
    }
    w.fill += take;
    remaining -= take;
    if (w.fill == w.chunk) {
      if (auto r = w.complete_chunk(); !r) return r;
    }
  }
  return {};
}

Result<void> CaptureWriter::add_gap(const Gap& gap) {
  assert(impl_);
  if (gap.count == 0 || static_cast<std::uint8_t>(gap.kind) > kMaxGapKind) {
    return Error{
        Errc::invalid_argument,
        impl_->path_text + ": gap needs count > 0 and a kind in 0.." + std::to_string(kMaxGapKind)};
  }
  return impl_->add_row(impl_->gaps, gap);
}

Result<void> CaptureWriter::add_calibration(const CalibrationRow& row) {
  assert(impl_);
  return impl_->add_row(impl_->calibration, row);
}

Result<void> CaptureWriter::set_counters(std::span<const std::uint64_t> values) {
  assert(impl_);
  Impl& w = *impl_;
  if (auto r = w.usable(); !r) return r;
  if (values.size() != w.counter_values.size()) {
    return Error{Errc::invalid_argument, w.path_text + ": got " + std::to_string(values.size()) +
                                             " counters, layout names " +
                                             std::to_string(w.counter_values.size())};
  }
  std::copy(values.begin(), values.end(), w.counter_values.begin());
  w.counters_dirty = true;
  return {};
}

Result<void> CaptureWriter::flush() {
  assert(impl_);
  return impl_->flush();
}

Result<void> CaptureWriter::finish(CaptureState state, std::string_view reason) {
  assert(impl_);
  Impl& w = *impl_;
  if (w.closed) {
    return Error{Errc::invalid_argument, w.path_text + ": capture writer already finished"};
  }
  if (state == CaptureState::running) {
    return Error{Errc::invalid_argument, w.path_text + ": finish() needs an end state"};
  }
  Result<void> result;
  if (!w.failure) {
    result = w.finish_summaries();
    if (result) result = w.flush();
  } else {
    result = w.usable();  // the failure that stopped the writer, again
  }
  // Even after a failure, try to leave the file saying how the capture ended.
  if (auto r = w.record_end(state, reason); !r && result) result = r;
  if (auto r = w.close_all(); !r && result) result = r;
  return result;
}

std::uint64_t CaptureWriter::samples_written() const {
  assert(impl_);
  return impl_->next_index();
}

const std::filesystem::path& CaptureWriter::path() const {
  assert(impl_);
  return impl_->path;
}

}  // namespace meltrig::dataset
