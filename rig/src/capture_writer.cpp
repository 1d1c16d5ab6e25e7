// CaptureWriter: see capture_writer.hpp for the file layout and the caller's contract.
#include "meltrig/rig/capture_writer.hpp"

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
#include <system_error>

#include "meltrig/rig/h5_file.hpp"

namespace meltrig::rig {

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
constexpr std::array<std::string_view, 4> kReservedInMonitor = {"gaps", "calibration", "counters",
                                                                "status_at_start"};
constexpr std::uint8_t kMaxGapKind = kGapKindCount - 1;

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
  if (layout.deflate_level > 9) {
    return invalid("deflate_level must be 0..9, got " + std::to_string(layout.deflate_level));
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
                                {"sample_rate_hz", "time_base"});
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

}  // namespace

struct CaptureWriter::Impl {
  std::filesystem::path path;
  std::string path_text;
  h5::File file;
  std::vector<Channel> channels;
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
    if (auto r = write_buffer(); !r) return r;
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
};

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
  if (auto r = write_attributes(mon, layout.monitor_attributes); !r) return r;

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::uint8_t zero = 0;
  for (const auto& spec : layout.channels) {
    const bool is_f32 = spec.type == SampleType::f32;
    h5::ExtendibleSpec ds{
        .file_type = is_f32 ? H5T_IEEE_F32LE : H5T_STD_U8LE,
        .chunk_rows = chunk,
        .deflate_level = layout.deflate_level,
        .shuffle = true,
        .fill_mem_type = is_f32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8,
        .fill_value = is_f32 ? static_cast<const void*>(&nan) : static_cast<const void*>(&zero),
    };
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
    h5::ExtendibleSpec ds{.file_type = file_type->get(),
                          .chunk_rows = kTableChunkRows,
                          .deflate_level = layout.deflate_level};
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
  auto file = h5::create_file(path);
  if (!file) return file.error();

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->path_text = path.string();
  impl->file = std::move(*file);
  impl->chunk = layout.chunk_samples;
  impl->channels.reserve(layout.channels.size());
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
  if (!w.failure) result = w.flush();
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

}  // namespace meltrig::rig
