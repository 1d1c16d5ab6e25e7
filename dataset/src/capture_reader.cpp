// CaptureReader: see capture_reader.hpp; the file layout is in capture_writer.hpp.
#include "meltrig/dataset/capture_reader.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "meltrig/dataset/h5_file.hpp"

namespace meltrig::dataset {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kFormat = "meltrig-capture";
constexpr std::string_view kStateGroup = "capture_state";
// Root groups that are never the monitor (later issues add /markers and /sync).
constexpr std::array<std::string_view, 3> kNotMonitor = {kStateGroup, "markers", "sync"};
constexpr std::array<std::string_view, 5> kNotChannel = {"gaps", "calibration", "counters",
                                                         "status_at_start", "summary"};
// 2^level samples per entry must fit a uint64 index.
constexpr int kMaxSummaryLevel = 62;

Error not_found(const std::string& file, const std::string& object, std::string_view what) {
  return Error{Errc::not_found, file + ": " + object + ": " + std::string(what)};
}

Error bad_file(const std::string& file, const std::string& object, std::string_view what) {
  return Error{Errc::file_error, file + ": " + object + ": " + std::string(what)};
}

std::string range_text(std::uint64_t first, std::uint64_t n) {
  return "[" + std::to_string(first) + ", " + std::to_string(first + n) + ")";
}

std::string format_double(double v) {
  std::array<char, 64> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::string(buf.data(), r.ptr);
}

// Whether the HDF5 signature is at offset 0, 512, 1024, ... (where HDF5 may put the superblock).
// nullopt when the file cannot be read at all (then HDF5's own message says why).
std::optional<bool> has_hdf5_signature(const fs::path& path) {
  static constexpr std::array<char, 8> kSignature = {'\211', 'H',  'D',    'F',
                                                     '\r',   '\n', '\032', '\n'};
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return std::nullopt;
  for (std::uintmax_t offset = 0; offset + kSignature.size() <= size;
       offset = offset == 0 ? 512 : offset * 2) {
    std::array<char, 8> head{};
    in.seekg(static_cast<std::streamoff>(offset));
    if (!in.read(head.data(), head.size())) return false;
    if (head == kSignature) return true;
  }
  return false;
}

// Whether every component of the absolute `path` exists as a link (H5Lexists needs the parents).
bool link_exists(hid_t file, std::string_view path) {
  std::size_t pos = 1;
  while (pos <= path.size()) {
    const std::size_t next = std::min(path.find('/', pos), path.size());
    if (H5Lexists(file, std::string(path.substr(0, next)).c_str(), H5P_DEFAULT) <= 0) return false;
    pos = next + 1;
  }
  return true;
}

// The HDF5 identifier type of the object at `path` (H5I_GROUP, H5I_DATASET), or H5I_BADID.
H5I_type_t object_type(hid_t file, const std::string& path) {
  if (!link_exists(file, path)) return H5I_BADID;
  const hid_t obj = H5Oopen(file, path.c_str(), H5P_DEFAULT);
  if (obj < 0) return H5I_BADID;
  const H5I_type_t type = H5Iget_type(obj);
  H5Oclose(obj);
  return type;
}

Result<h5::Dataset> open_dataset(hid_t file, const std::string& file_name,
                                 const std::string& path) {
  const H5I_type_t type = object_type(file, path);
  if (type == H5I_BADID) return not_found(file_name, path, "no such dataset");
  if (type != H5I_DATASET) return bad_file(file_name, path, "is not a dataset");
  h5::Dataset d{H5Dopen2(file, path.c_str(), H5P_DEFAULT)};
  if (!d.valid()) return h5::h5_error(file_name, "cannot open dataset", path);
  return d;
}

// Rank and size of a dataset's dataspace (scalar: rank 0, 1 element).
struct Shape {
  int rank = 0;
  std::uint64_t rows = 0;  ///< first dimension (1 for scalars)
};

Result<Shape> dataset_shape(hid_t dset, const std::string& file_name, const std::string& path) {
  h5::Dataspace space{H5Dget_space(dset)};
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || rank > 1) {
    if (rank > 1) return bad_file(file_name, path, "is not 1-D or scalar");
    return h5::h5_error(file_name, "cannot get the size of", path);
  }
  if (rank == 0) return Shape{0, 1};
  hsize_t dims = 0;
  H5Sget_simple_extent_dims(space.get(), &dims, nullptr);
  return Shape{1, dims};
}

// Reads strings (fixed or variable length) through `read(mem_type, buffer)`; `n` elements.
template <typename ReadFn>
Result<std::vector<std::string>> read_strings(hid_t file_type, std::size_t n, ReadFn read) {
  std::vector<std::string> out;
  out.reserve(n);
  if (n == 0) return out;
  if (H5Tis_variable_str(file_type) > 0) {
    h5::Datatype mem{H5Tcopy(H5T_C_S1)};
    if (!mem.valid() || H5Tset_size(mem.get(), H5T_VARIABLE) < 0 ||
        H5Tset_cset(mem.get(), H5Tget_cset(file_type)) < 0) {
      return Error{Errc::file_error, "cannot make an HDF5 string type: " + h5::innermost_error()};
    }
    std::vector<char*> ptrs(n, nullptr);
    if (!read(mem.get(), ptrs.data())) return Error{Errc::file_error, h5::innermost_error()};
    for (char* p : ptrs) {
      out.emplace_back(p != nullptr ? p : "");
      H5free_memory(p);
    }
    return out;
  }
  const std::size_t size = H5Tget_size(file_type);
  h5::Datatype mem{H5Tcopy(file_type)};
  if (size == 0 || !mem.valid()) {
    return Error{Errc::file_error, "cannot copy an HDF5 string type: " + h5::innermost_error()};
  }
  std::string buf(size * n, '\0');
  if (!read(mem.get(), buf.data())) return Error{Errc::file_error, h5::innermost_error()};
  const bool space_padded = H5Tget_strpad(file_type) == H5T_STR_SPACEPAD;
  for (std::size_t i = 0; i < n; ++i) {
    std::string s = buf.substr(i * size, size);
    s.resize(std::min(s.size(), s.find('\0')));
    if (space_padded) s.resize(s.find_last_not_of(' ') + 1);
    out.push_back(std::move(s));
  }
  return out;
}

// Reads every element of attribute `name` on `obj` as T (numbers; HDF5 converts) or as strings.
template <typename T>
Result<std::vector<T>> read_attribute_array(hid_t obj, const std::string& name,
                                            const std::string& file_name,
                                            const std::string& object) {
  const std::string where = object + " attribute " + name;
  if (H5Aexists(obj, name.c_str()) <= 0) return not_found(file_name, where, "does not exist");
  h5::Attribute attr{H5Aopen(obj, name.c_str(), H5P_DEFAULT)};
  h5::Datatype type{attr.valid() ? H5Aget_type(attr.get()) : H5I_INVALID_HID};
  h5::Dataspace space{attr.valid() ? H5Aget_space(attr.get()) : H5I_INVALID_HID};
  if (!type.valid() || !space.valid()) return h5::h5_error(file_name, "cannot open", where);
  const hssize_t points = H5Sget_simple_extent_npoints(space.get());
  if (points < 0) return h5::h5_error(file_name, "cannot get the size of", where);
  const auto n = static_cast<std::size_t>(points);
  const H5T_class_t cls = H5Tget_class(type.get());
  if constexpr (std::is_same_v<T, std::string>) {
    if (cls != H5T_STRING) return bad_file(file_name, where, "is not a string");
    auto strings = read_strings(
        type.get(), n, [&](hid_t mem, void* buf) { return H5Aread(attr.get(), mem, buf) >= 0; });
    if (!strings) return bad_file(file_name, where, "cannot be read: " + strings.error().message);
    return strings;
  } else {
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) return bad_file(file_name, where, "is not numeric");
    std::vector<T> values(n);
    if (n > 0 && H5Aread(attr.get(), h5::native_type<T>(), values.data()) < 0) {
      return h5::h5_error(file_name, "cannot read", where);
    }
    return values;
  }
}

template <typename T>
std::string join_values(const std::vector<T>& values) {
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) s += ", ";
    if constexpr (std::is_same_v<T, std::string>) {
      s += values[i];
    } else if constexpr (std::is_same_v<T, double>) {
      s += format_double(values[i]);
    } else {
      s += std::to_string(values[i]);
    }
  }
  return s + "]";
}

// One attribute as an AttributeValue: scalars keep their kind, arrays and other types become text.
Result<AttributeValue> read_attribute_value(hid_t obj, const std::string& name,
                                            const std::string& file_name,
                                            const std::string& object) {
  h5::Attribute attr{H5Aopen(obj, name.c_str(), H5P_DEFAULT)};
  h5::Datatype type{attr.valid() ? H5Aget_type(attr.get()) : H5I_INVALID_HID};
  h5::Dataspace space{attr.valid() ? H5Aget_space(attr.get()) : H5I_INVALID_HID};
  if (!type.valid() || !space.valid()) {
    return h5::h5_error(file_name, "cannot open", object + " attribute " + name);
  }
  const bool scalar = H5Sget_simple_extent_type(space.get()) == H5S_SCALAR;
  switch (H5Tget_class(type.get())) {
    case H5T_STRING: {
      auto v = read_attribute_array<std::string>(obj, name, file_name, object);
      if (!v) return v.error();
      if (scalar && v->size() == 1) return AttributeValue{std::move(v->front())};
      return AttributeValue{join_values(*v)};
    }
    case H5T_INTEGER: {
      auto v = read_attribute_array<std::int64_t>(obj, name, file_name, object);
      if (!v) return v.error();
      if (scalar && v->size() == 1) return AttributeValue{v->front()};
      return AttributeValue{join_values(*v)};
    }
    case H5T_FLOAT: {
      auto v = read_attribute_array<double>(obj, name, file_name, object);
      if (!v) return v.error();
      if (scalar && v->size() == 1) return AttributeValue{v->front()};
      return AttributeValue{join_values(*v)};
    }
    default:
      return AttributeValue{std::string("(HDF5 type not shown)")};
  }
}

herr_t collect_name(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

Result<std::vector<Attribute>> read_all_attributes(hid_t obj, const std::string& file_name,
                                                   const std::string& object) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &names) < 0) {
    return h5::h5_error(file_name, "cannot list the attributes of", object);
  }
  std::vector<Attribute> attrs;
  attrs.reserve(names.size());
  for (auto& name : names) {
    auto value = read_attribute_value(obj, name, file_name, object);
    if (!value) return value.error();
    attrs.push_back(Attribute{std::move(name), std::move(*value)});
  }
  return attrs;
}

Result<std::vector<std::string>> list_links(hid_t group, const std::string& file_name,
                                            const std::string& object) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link, &names) < 0) {
    return h5::h5_error(file_name, "cannot list the members of", object);
  }
  return names;
}

template <typename T>
Result<T> read_scalar(hid_t dset, const std::string& file_name, const std::string& path) {
  T value{};
  if (H5Dread(dset, h5::native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0) {
    return h5::h5_error(file_name, "cannot read", path);
  }
  return value;
}

// Reads rows [first, first + n) of a 1-D dataset into `out` (mem_type elements).
Result<void> read_rows(hid_t dset, hid_t mem_type, std::uint64_t first, std::uint64_t n, void* out,
                       const std::string& file_name, const std::string& path) {
  if (n == 0) return {};
  const std::array<hsize_t, 1> start{first};
  const std::array<hsize_t, 1> count{n};
  h5::Dataspace file_space{H5Dget_space(dset)};
  h5::Dataspace mem_space{H5Screate_simple(1, count.data(), nullptr)};
  if (!file_space.valid() || !mem_space.valid() ||
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
                          nullptr) < 0 ||
      H5Dread(dset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
    return h5::h5_error(file_name, "cannot read rows " + range_text(first, n) + " of", path);
  }
  return {};
}

Result<h5::Datatype> gap_mem_type() {
  h5::Datatype t{H5Tcreate(H5T_COMPOUND, sizeof(Gap))};
  if (!t.valid() ||
      H5Tinsert(t.get(), "first_index", offsetof(Gap, first_index), H5T_NATIVE_UINT64) < 0 ||
      H5Tinsert(t.get(), "count", offsetof(Gap, count), H5T_NATIVE_UINT64) < 0 ||
      H5Tinsert(t.get(), "kind", offsetof(Gap, kind), H5T_NATIVE_UINT8) < 0) {
    return Error{Errc::file_error, "cannot make the gap row type: " + h5::innermost_error()};
  }
  return t;
}

Result<h5::Datatype> calibration_mem_type() {
  h5::Datatype t{H5Tcreate(H5T_COMPOUND, sizeof(CalibrationRow))};
  if (!t.valid() ||
      H5Tinsert(t.get(), "sample_index", offsetof(CalibrationRow, sample_index),
                H5T_NATIVE_UINT64) < 0 ||
      H5Tinsert(t.get(), "fine_zero", offsetof(CalibrationRow, fine_zero), H5T_NATIVE_DOUBLE) < 0 ||
      H5Tinsert(t.get(), "fine_ref", offsetof(CalibrationRow, fine_ref), H5T_NATIVE_DOUBLE) < 0 ||
      H5Tinsert(t.get(), "coarse_zero", offsetof(CalibrationRow, coarse_zero), H5T_NATIVE_DOUBLE) <
          0 ||
      H5Tinsert(t.get(), "coarse_ref", offsetof(CalibrationRow, coarse_ref), H5T_NATIVE_DOUBLE) <
          0) {
    return Error{Errc::file_error,
                 "cannot make the calibration row type: " + h5::innermost_error()};
  }
  return t;
}

Result<h5::Datatype> summary_mem_type() {
  h5::Datatype t{H5Tcreate(H5T_COMPOUND, sizeof(SummaryStats))};
  if (!t.valid() ||
      H5Tinsert(t.get(), "mean", offsetof(SummaryStats, mean), H5T_NATIVE_FLOAT) < 0 ||
      H5Tinsert(t.get(), "min", offsetof(SummaryStats, min), H5T_NATIVE_FLOAT) < 0 ||
      H5Tinsert(t.get(), "max", offsetof(SummaryStats, max), H5T_NATIVE_FLOAT) < 0 ||
      H5Tinsert(t.get(), "valid", offsetof(SummaryStats, valid), H5T_NATIVE_UINT32) < 0) {
    return Error{Errc::file_error, "cannot make the summary entry type: " + h5::innermost_error()};
  }
  return t;
}

// Whether a dataset's compound type has every member of `names` (HDF5 converts by member name,
// and fails on a member the file lacks).
bool has_members(hid_t dset, std::initializer_list<const char*> names) {
  h5::Datatype t{H5Dget_type(dset)};
  if (!t.valid() || H5Tget_class(t.get()) != H5T_COMPOUND) return false;
  return std::all_of(names.begin(), names.end(),
                     [&](const char* n) { return H5Tget_member_index(t.get(), n) >= 0; });
}

std::optional<SampleType> channel_type(hid_t dset) {
  h5::Datatype t{H5Dget_type(dset)};
  if (!t.valid()) return std::nullopt;
  const H5T_class_t cls = H5Tget_class(t.get());
  const std::size_t size = H5Tget_size(t.get());
  if (cls == H5T_FLOAT && size == 4) return SampleType::f32;
  if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(t.get()) == H5T_SGN_NONE) {
    return SampleType::u8;
  }
  return std::nullopt;
}

std::string string_or_empty(const std::vector<Attribute>& attrs, std::string_view name) {
  const AttributeValue* v = find_attribute(attrs, name);
  if (v == nullptr) return "";
  return format_attribute_value(*v);
}

}  // namespace

struct CaptureReader::Impl {
  // A sample channel and its open dataset.
  struct Channel {
    ChannelSpec spec;
    std::string object;  // "/monitor/current", for messages
    h5::Dataset dset;
  };
  // One summary dataset, keyed by (channel, level) in `summaries`.
  struct Summary {
    std::string object;
    h5::Dataset dset;
    std::uint64_t rows = 0;  // dataset extent as of the last refresh
  };
  // A 1-D table and its row count as of the last refresh.
  struct Table {
    std::string object;
    h5::Dataset dset;
    std::uint64_t rows = 0;
  };

  fs::path path;
  std::string file_name;
  h5::File file;
  bool swmr = false;

  std::int64_t format_version = 0;
  std::vector<Attribute> root_attributes;
  std::string monitor;
  std::string monitor_path;  // "/monitor"
  std::vector<Attribute> monitor_attributes;
  std::vector<Attribute> status_at_start;
  double sample_rate_hz = 0.0;
  std::vector<Channel> channels;
  std::vector<ChannelSpec> channel_specs;

  h5::Dataset samples_written_ds, state_ds, end_reason_ds, counters_ds;
  Table gaps, calibration;
  std::uint64_t samples_written = 0;
  CaptureState state = CaptureState::running;
  std::string end_reason;
  std::vector<StoredCounter> counters;

  bool has_summaries = false;
  std::vector<int> summary_levels;
  std::map<std::pair<std::string, int>, Summary> summaries;

  bool has_markers = false;
  bool has_sync = false;

  h5::Datatype gap_type, calibration_type, summary_type;

  Result<void> load();
  Result<void> find_monitor();
  Result<void> load_channels();
  Result<void> load_summaries();
  Result<void> read_samples_written();
  Result<void> read_state();
  Result<void> refresh();

  const Channel* channel(std::string_view name) const {
    for (const auto& c : channels) {
      if (c.spec.name == name) return &c;
    }
    return nullptr;
  }

  Result<const Channel*> channel_of_type(std::string_view name, SampleType type) const {
    const Channel* c = channel(name);
    if (c == nullptr)
      return not_found(file_name, monitor_path + "/" + std::string(name), "no such channel");
    if (c->spec.type != type) {
      return Error{Errc::invalid_argument,
                   file_name + ": " + c->object + ": channel is " +
                       (c->spec.type == SampleType::f32 ? "float32" : "uint8") + ", read as " +
                       (type == SampleType::f32 ? "float32" : "uint8")};
    }
    return c;
  }

  Result<const Summary*> summary(std::string_view channel_name, int level) const {
    const std::string object =
        monitor_path + "/summary/" + std::string(channel_name) + "/" + std::to_string(level);
    if (!has_summaries) {
      return not_found(file_name, monitor_path + "/summary",
                       "no such group (the file has no summaries)");
    }
    const Channel* c = channel(channel_name);
    if (c == nullptr) {
      return not_found(file_name, monitor_path + "/" + std::string(channel_name),
                       "no such channel");
    }
    if (c->spec.type != SampleType::f32) {
      return not_found(file_name, object, "no such dataset (only float32 channels have summaries)");
    }
    const auto it = summaries.find(std::pair{std::string(channel_name), level});
    if (it == summaries.end()) return not_found(file_name, object, "no such dataset");
    return &it->second;
  }

  // Entries of `level` that describe samples_written, given `rows` stored. Complete entries
  // (floor(n / 2^k)) are final once flushed; a finished writer adds the last partial one, so the
  // dataset then holds exactly ceil(n / 2^k). Anything else past floor describes samples past n
  // (live capture, crash, or a finish() that failed).
  std::uint64_t visible_entries(int level, std::uint64_t rows) const {
    const std::uint64_t per = std::uint64_t{1} << level;
    const std::uint64_t complete = samples_written / per;
    const std::uint64_t covering = complete + (samples_written % per != 0 ? 1 : 0);
    if (state != CaptureState::running && rows == covering) return covering;
    return std::min(rows, complete);
  }

  template <typename T>
  Result<void> read_channel(std::string_view name, std::uint64_t first, std::span<T> out) const {
    h5::silence_errors();
    constexpr SampleType type = std::is_same_v<T, float> ? SampleType::f32 : SampleType::u8;
    auto ch = channel_of_type(name, type);
    if (!ch) return ch.error();
    const Channel& c = **ch;
    if (auto r = check_rows(c.object, first, out.size(), samples_written, "samples written"); !r) {
      return r;
    }
    return read_rows(c.dset.get(), h5::native_type<T>(), first, out.size(), out.data(), file_name,
                     c.object);
  }

  Result<void> check_rows(const std::string& object, std::uint64_t first, std::uint64_t n,
                          std::uint64_t limit, std::string_view limit_name) const {
    if (first > limit || n > limit - first) {
      return Error{Errc::invalid_argument,
                   file_name + ": " + object + ": rows " + range_text(first, n) + " are past the " +
                       std::to_string(limit) + " " + std::string(limit_name)};
    }
    return {};
  }
};

Result<void> CaptureReader::Impl::load() {
  const hid_t root = file.get();
  auto attrs = read_all_attributes(root, file_name, "/");
  if (!attrs) return attrs.error();
  root_attributes = std::move(*attrs);

  const AttributeValue* format = find_attribute(root_attributes, "format");
  if (format == nullptr) {
    return Error{Errc::file_error,
                 file_name + ": not a meltrig capture (no format attribute on /)"};
  }
  const auto* format_text = std::get_if<std::string>(format);
  if (format_text == nullptr || *format_text != kFormat) {
    return Error{Errc::file_error, file_name + ": not a meltrig capture (format attribute is \"" +
                                       format_attribute_value(*format) + "\", expected \"" +
                                       std::string(kFormat) + "\")"};
  }
  const AttributeValue* version = find_attribute(root_attributes, "format_version");
  const auto* version_number = version != nullptr ? std::get_if<std::int64_t>(version) : nullptr;
  if (version_number == nullptr || *version_number < 1) {
    return bad_file(file_name, "/ attribute format_version",
                    version == nullptr
                        ? "does not exist"
                        : "is " + format_attribute_value(*version) + ", expected an integer >= 1");
  }
  format_version = *version_number;

  if (auto r = find_monitor(); !r) return r;
  if (auto r = load_channels(); !r) return r;

  auto open_table = [&](Table& t, const char* name) -> Result<void> {
    t.object = monitor_path + "/" + name;
    auto d = open_dataset(root, file_name, t.object);
    if (!d) return d.error();
    t.dset = std::move(*d);
    return {};
  };
  if (auto r = open_table(gaps, "gaps"); !r) return r;
  if (!has_members(gaps.dset.get(), {"first_index", "count", "kind"})) {
    return bad_file(file_name, gaps.object, "is not a table of {first_index, count, kind}");
  }
  if (auto r = open_table(calibration, "calibration"); !r) return r;
  if (!has_members(calibration.dset.get(),
                   {"sample_index", "fine_zero", "fine_ref", "coarse_zero", "coarse_ref"})) {
    return bad_file(file_name, calibration.object,
                    "is not a table of {sample_index, fine_zero, fine_ref, coarse_zero, "
                    "coarse_ref}");
  }
  auto counters_d = open_dataset(root, file_name, monitor_path + "/counters");
  if (!counters_d) return counters_d.error();
  counters_ds = std::move(*counters_d);
  auto names = read_attribute_array<std::string>(counters_ds.get(), "names", file_name,
                                                 monitor_path + "/counters");
  if (!names) return names.error();
  counters.clear();
  for (auto& n : *names)
    counters.push_back(StoredCounter{std::move(n), 0});

  const std::string state_path = "/" + std::string(kStateGroup);
  for (auto [dset, name] :
       {std::pair{&samples_written_ds, "samples_written"}, std::pair{&state_ds, "state"},
        std::pair{&end_reason_ds, "end_reason"}}) {
    auto d = open_dataset(root, file_name, state_path + "/" + name);
    if (!d) return d.error();
    *dset = std::move(*d);
  }

  if (auto r = load_summaries(); !r) return r;
  has_markers = link_exists(root, "/markers");
  has_sync = link_exists(root, "/sync");

  auto g = gap_mem_type();
  if (!g) return g.error();
  gap_type = std::move(*g);
  auto c = calibration_mem_type();
  if (!c) return c.error();
  calibration_type = std::move(*c);
  auto s = summary_mem_type();
  if (!s) return s.error();
  summary_type = std::move(*s);
  if (auto r = read_samples_written(); !r) return r;
  return read_state();
}

Result<void> CaptureReader::Impl::find_monitor() {
  auto links = list_links(file.get(), file_name, "/");
  if (!links) return links.error();
  for (const auto& name : *links) {
    if (std::find(kNotMonitor.begin(), kNotMonitor.end(), name) != kNotMonitor.end()) continue;
    if (object_type(file.get(), "/" + name) != H5I_GROUP) continue;
    if (H5Aexists_by_name(file.get(), name.c_str(), "sample_rate_hz", H5P_DEFAULT) > 0) {
      monitor = name;
      break;
    }
  }
  if (monitor.empty()) {
    return bad_file(file_name, "/", "no monitor group (a group with a sample_rate_hz attribute)");
  }
  monitor_path = "/" + monitor;
  h5::Group group{H5Gopen2(file.get(), monitor_path.c_str(), H5P_DEFAULT)};
  if (!group.valid()) return h5::h5_error(file_name, "cannot open group", monitor_path);
  auto attrs = read_all_attributes(group.get(), file_name, monitor_path);
  if (!attrs) return attrs.error();
  monitor_attributes = std::move(*attrs);
  const AttributeValue* rate = find_attribute(monitor_attributes, "sample_rate_hz");
  const auto* rate_value = rate != nullptr ? std::get_if<double>(rate) : nullptr;
  if (rate_value == nullptr || !std::isfinite(*rate_value) || *rate_value <= 0.0) {
    return bad_file(file_name, monitor_path + " attribute sample_rate_hz",
                    "is " + (rate != nullptr ? format_attribute_value(*rate) : "") +
                        ", expected a positive float64");
  }
  sample_rate_hz = *rate_value;

  const std::string status_path = monitor_path + "/status_at_start";
  if (object_type(file.get(), status_path) == H5I_GROUP) {
    h5::Group status{H5Gopen2(file.get(), status_path.c_str(), H5P_DEFAULT)};
    if (!status.valid()) return h5::h5_error(file_name, "cannot open group", status_path);
    auto s = read_all_attributes(status.get(), file_name, status_path);
    if (!s) return s.error();
    status_at_start = std::move(*s);
  }
  return {};
}

Result<void> CaptureReader::Impl::load_channels() {
  h5::Group group{H5Gopen2(file.get(), monitor_path.c_str(), H5P_DEFAULT)};
  if (!group.valid()) return h5::h5_error(file_name, "cannot open group", monitor_path);
  auto links = list_links(group.get(), file_name, monitor_path);
  if (!links) return links.error();
  for (const auto& name : *links) {
    if (std::find(kNotChannel.begin(), kNotChannel.end(), name) != kNotChannel.end()) continue;
    const std::string object = monitor_path + "/" + name;
    if (object_type(file.get(), object) != H5I_DATASET) continue;
    auto d = open_dataset(file.get(), file_name, object);
    if (!d) return d.error();
    const auto type = channel_type(d->get());
    auto shape = dataset_shape(d->get(), file_name, object);
    if (!shape) return shape.error();
    if (!type || shape->rank != 1 || H5Aexists(d->get(), "unit") <= 0) continue;
    ChannelSpec spec{.name = name, .unit = "", .type = *type, .description = ""};
    auto attrs = read_all_attributes(d->get(), file_name, object);
    if (!attrs) return attrs.error();
    spec.unit = string_or_empty(*attrs, "unit");
    spec.description = string_or_empty(*attrs, "description");
    channel_specs.push_back(spec);
    channels.push_back(Channel{std::move(spec), object, std::move(*d)});
  }
  if (channels.empty()) {
    return bad_file(file_name, monitor_path,
                    "no sample channels (1-D float32 or uint8 datasets with a unit attribute)");
  }
  return {};
}

Result<void> CaptureReader::Impl::load_summaries() {
  const std::string group_path = monitor_path + "/summary";
  const H5I_type_t type = object_type(file.get(), group_path);
  if (type == H5I_BADID) return {};  // written before summaries existed
  if (type != H5I_GROUP) return bad_file(file_name, group_path, "is not a group");
  h5::Group group{H5Gopen2(file.get(), group_path.c_str(), H5P_DEFAULT)};
  if (!group.valid()) return h5::h5_error(file_name, "cannot open group", group_path);
  auto levels = read_attribute_array<std::int64_t>(group.get(), "levels", file_name, group_path);
  if (!levels) return levels.error();
  for (const std::int64_t level : *levels) {
    if (level < 0 || level > kMaxSummaryLevel) {
      return bad_file(
          file_name, group_path + " attribute levels",
          "holds " + std::to_string(level) + ", expected 0.." + std::to_string(kMaxSummaryLevel));
    }
    summary_levels.push_back(static_cast<int>(level));
  }
  std::sort(summary_levels.begin(), summary_levels.end());
  summary_levels.erase(std::unique(summary_levels.begin(), summary_levels.end()),
                       summary_levels.end());
  for (const auto& ch : channels) {
    if (ch.spec.type != SampleType::f32) continue;
    for (const int level : summary_levels) {
      const std::string object = group_path + "/" + ch.spec.name + "/" + std::to_string(level);
      // A level missing for one channel is reported when that channel is asked for.
      if (object_type(file.get(), object) != H5I_DATASET) continue;
      auto d = open_dataset(file.get(), file_name, object);
      if (!d) return d.error();
      if (!has_members(d->get(), {"mean", "min", "max", "valid"})) {
        return bad_file(file_name, object, "is not a table of {mean, min, max, valid}");
      }
      summaries.emplace(std::pair{ch.spec.name, level}, Summary{object, std::move(*d), 0});
    }
  }
  has_summaries = true;
  return {};
}

// The writer flushes samples, tables and summaries before the count that vouches for them, so
// every size read after samples_written covers at least samples_written rows: read it first.
Result<void> CaptureReader::Impl::read_samples_written() {
  auto n = read_scalar<std::uint64_t>(samples_written_ds.get(), file_name,
                                      "/" + std::string(kStateGroup) + "/samples_written");
  if (!n) return n.error();
  samples_written = *n;
  return {};
}

// Re-reads everything else that changes while a capture is written.
Result<void> CaptureReader::Impl::read_state() {
  const std::string state_path = "/" + std::string(kStateGroup);
  auto s = read_scalar<std::int8_t>(state_ds.get(), file_name, state_path + "/state");
  if (!s) return s.error();
  state = static_cast<CaptureState>(*s);

  h5::Datatype reason_type{H5Dget_type(end_reason_ds.get())};
  if (!reason_type.valid() || H5Tget_class(reason_type.get()) != H5T_STRING) {
    return bad_file(file_name, state_path + "/end_reason", "is not a string");
  }
  auto reason = read_strings(reason_type.get(), 1, [&](hid_t mem, void* buf) {
    return H5Dread(end_reason_ds.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
  });
  if (!reason) {
    return bad_file(file_name, state_path + "/end_reason",
                    "cannot be read: " + reason.error().message);
  }
  end_reason = std::move(reason->front());

  const std::string counters_path = monitor_path + "/counters";
  auto counter_shape = dataset_shape(counters_ds.get(), file_name, counters_path);
  if (!counter_shape) return counter_shape.error();
  if (counter_shape->rank != 1 || counter_shape->rows != counters.size()) {
    return bad_file(file_name, counters_path,
                    "holds " + std::to_string(counter_shape->rows) + " values for " +
                        std::to_string(counters.size()) + " names");
  }
  std::vector<std::uint64_t> values(counters.size());
  if (!values.empty() && H5Dread(counters_ds.get(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL,
                                 H5P_DEFAULT, values.data()) < 0) {
    return h5::h5_error(file_name, "cannot read", counters_path);
  }
  for (std::size_t i = 0; i < values.size(); ++i)
    counters[i].value = values[i];

  for (Table* t : {&gaps, &calibration}) {
    auto shape = dataset_shape(t->dset.get(), file_name, t->object);
    if (!shape) return shape.error();
    if (shape->rank != 1) return bad_file(file_name, t->object, "is not 1-D");
    t->rows = shape->rows;
  }
  for (auto& [key, summary] : summaries) {
    auto shape = dataset_shape(summary.dset.get(), file_name, summary.object);
    if (!shape) return shape.error();
    if (shape->rank != 1) return bad_file(file_name, summary.object, "is not 1-D");
    summary.rows = shape->rows;
  }
  return {};
}

CaptureReader::CaptureReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CaptureReader::CaptureReader(CaptureReader&&) noexcept = default;
CaptureReader& CaptureReader::operator=(CaptureReader&&) noexcept = default;
CaptureReader::~CaptureReader() {
  if (impl_) h5::silence_errors();  // the last owner may be a thread that never touched HDF5
}

Result<CaptureReader> CaptureReader::open(const fs::path& path) {
  h5::silence_errors();
  const std::string name = path.string();
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Error{Errc::file_error, name + ": " + ec.message()};
  }
  if (!fs::exists(status)) return Error{Errc::not_found, name + ": no such file"};
  if (fs::is_directory(status)) {
    return Error{Errc::file_error, name + ": is a directory, not a capture file"};
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->file_name = name;
  impl->swmr = true;
  impl->file = h5::File{H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT)};
  if (!impl->file.valid()) {
    // SWMR read needs the superblock version that libver "latest" writes; other HDF5 files (e.g.
    // h5py's defaults) open only without it.
    const std::string swmr_error = h5::innermost_error();
    impl->swmr = false;
    impl->file = h5::File{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
    if (!impl->file.valid()) {
      if (has_hdf5_signature(path) == false) {
        return Error{Errc::file_error, name + ": not an HDF5 file"};
      }
      return Error{Errc::file_error, name + ": cannot open HDF5 file: " + swmr_error};
    }
  }
  if (auto r = impl->load(); !r) return r.error();
  return CaptureReader(std::move(impl));
}

const fs::path& CaptureReader::path() const {
  return impl_->path;
}
bool CaptureReader::swmr() const {
  return impl_->swmr;
}
std::int64_t CaptureReader::format_version() const {
  return impl_->format_version;
}
const std::vector<Attribute>& CaptureReader::root_attributes() const {
  return impl_->root_attributes;
}
const std::string& CaptureReader::monitor() const {
  return impl_->monitor;
}
const std::vector<Attribute>& CaptureReader::monitor_attributes() const {
  return impl_->monitor_attributes;
}
const std::vector<Attribute>& CaptureReader::status_at_start() const {
  return impl_->status_at_start;
}
double CaptureReader::sample_rate_hz() const {
  return impl_->sample_rate_hz;
}
const std::vector<ChannelSpec>& CaptureReader::channels() const {
  return impl_->channel_specs;
}
const ChannelSpec* CaptureReader::find_channel(std::string_view name) const {
  for (const auto& spec : impl_->channel_specs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}
std::uint64_t CaptureReader::samples_written() const {
  return impl_->samples_written;
}
CaptureState CaptureReader::state() const {
  return impl_->state;
}
const std::string& CaptureReader::end_reason() const {
  return impl_->end_reason;
}
const std::vector<StoredCounter>& CaptureReader::counters() const {
  return impl_->counters;
}
std::uint64_t CaptureReader::gap_count() const {
  return impl_->gaps.rows;
}
std::uint64_t CaptureReader::calibration_count() const {
  return impl_->calibration.rows;
}
bool CaptureReader::has_summaries() const {
  return impl_->has_summaries;
}
const std::vector<int>& CaptureReader::summary_levels() const {
  return impl_->summary_levels;
}
bool CaptureReader::has_markers() const {
  return impl_->has_markers;
}
bool CaptureReader::has_sync() const {
  return impl_->has_sync;
}

Result<void> CaptureReader::read_gaps(std::uint64_t first, std::span<Gap> out) const {
  const Impl& r = *impl_;
  h5::silence_errors();
  if (auto c = r.check_rows(r.gaps.object, first, out.size(), r.gaps.rows, "gap rows"); !c) {
    return c;
  }
  return read_rows(r.gaps.dset.get(), r.gap_type.get(), first, out.size(), out.data(), r.file_name,
                   r.gaps.object);
}

Result<std::vector<Gap>> CaptureReader::gaps() const {
  std::vector<Gap> rows(impl_->gaps.rows);
  if (auto r = read_gaps(0, rows); !r) return r.error();
  return rows;
}

Result<void> CaptureReader::read_calibration(std::uint64_t first,
                                             std::span<CalibrationRow> out) const {
  const Impl& r = *impl_;
  h5::silence_errors();
  if (auto c = r.check_rows(r.calibration.object, first, out.size(), r.calibration.rows,
                            "calibration rows");
      !c) {
    return c;
  }
  return read_rows(r.calibration.dset.get(), r.calibration_type.get(), first, out.size(),
                   out.data(), r.file_name, r.calibration.object);
}

Result<std::vector<CalibrationRow>> CaptureReader::calibration() const {
  std::vector<CalibrationRow> rows(impl_->calibration.rows);
  if (auto r = read_calibration(0, rows); !r) return r.error();
  return rows;
}

Result<void> CaptureReader::read(std::string_view channel, std::uint64_t first,
                                 std::span<float> out) const {
  return impl_->read_channel(channel, first, out);
}

Result<void> CaptureReader::read(std::string_view channel, std::uint64_t first,
                                 std::span<std::uint8_t> out) const {
  return impl_->read_channel(channel, first, out);
}

Result<std::uint64_t> CaptureReader::summary_entries(std::string_view channel, int level) const {
  auto s = impl_->summary(channel, level);
  if (!s) return s.error();
  return impl_->visible_entries(level, (*s)->rows);
}

Result<void> CaptureReader::read_summary(std::string_view channel, int level,
                                         std::uint64_t first_entry,
                                         std::span<SummaryStats> out) const {
  const Impl& r = *impl_;
  h5::silence_errors();
  auto s = r.summary(channel, level);
  if (!s) return s.error();
  const Impl::Summary& summary = **s;
  if (auto c = r.check_rows(summary.object, first_entry, out.size(),
                            r.visible_entries(level, summary.rows), "summary entries");
      !c) {
    return c;
  }
  return read_rows(summary.dset.get(), r.summary_type.get(), first_entry, out.size(), out.data(),
                   r.file_name, summary.object);
}

Result<SummaryStats> CaptureReader::summarize(std::string_view channel, std::uint64_t first,
                                              std::uint64_t count) const {
  constexpr std::uint64_t kBlock = 65536;
  if (count > std::numeric_limits<std::uint32_t>::max()) {
    return Error{Errc::invalid_argument, impl_->file_name +
                                             ": summarize: " + std::to_string(count) +
                                             " samples do not fit a uint32 valid count"};
  }
  std::vector<float> buf(static_cast<std::size_t>(std::min(count, kBlock)));
  double sum = 0.0;
  SummaryStats stats{.mean = std::numeric_limits<float>::quiet_NaN(),
                     .min = std::numeric_limits<float>::quiet_NaN(),
                     .max = std::numeric_limits<float>::quiet_NaN(),
                     .valid = 0};
  for (std::uint64_t done = 0; done < count;) {
    const std::uint64_t n = std::min(count - done, kBlock);
    const std::span<float> block(buf.data(), static_cast<std::size_t>(n));
    if (auto r = read(channel, first + done, block); !r) return r.error();
    for (const float v : block) {
      if (std::isnan(v)) continue;
      if (stats.valid == 0 || v < stats.min) stats.min = v;
      if (stats.valid == 0 || v > stats.max) stats.max = v;
      sum += v;
      ++stats.valid;
    }
    done += n;
  }
  if (stats.valid > 0) stats.mean = static_cast<float>(sum / stats.valid);
  return stats;
}

Result<void> CaptureReader::Impl::refresh() {
  if (!swmr) return {};
  const std::string state_path = "/" + std::string(kStateGroup);
  if (H5Drefresh(samples_written_ds.get()) < 0) {
    return h5::h5_error(file_name, "cannot refresh", state_path + "/samples_written");
  }
  if (auto r = read_samples_written(); !r) return r;
  std::vector<std::pair<hid_t, std::string>> dsets = {
      {state_ds.get(), state_path + "/state"},
      {end_reason_ds.get(), state_path + "/end_reason"},
      {counters_ds.get(), monitor_path + "/counters"},
      {gaps.dset.get(), gaps.object},
      {calibration.dset.get(), calibration.object},
  };
  for (const auto& c : channels)
    dsets.emplace_back(c.dset.get(), c.object);
  for (const auto& [key, s] : summaries)
    dsets.emplace_back(s.dset.get(), s.object);
  for (const auto& [dset, object] : dsets) {
    if (H5Drefresh(dset) < 0) return h5::h5_error(file_name, "cannot refresh", object);
  }
  return read_state();
}

Result<void> CaptureReader::refresh() {
  h5::silence_errors();
  return impl_->refresh();
}

std::string capture_state_name(CaptureState state) {
  switch (state) {
    case CaptureState::running:
      return "running";
    case CaptureState::complete:
      return "complete";
    case CaptureState::failed:
      return "failed";
    case CaptureState::interrupted:
      return "interrupted";
  }
  return "unknown (" + std::to_string(static_cast<int>(state)) + ")";
}

std::string format_attribute_value(const AttributeValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<T, double>) {
          return format_double(v);
        } else {
          return std::to_string(v);
        }
      },
      value);
}

const AttributeValue* find_attribute(const std::vector<Attribute>& attrs, std::string_view name) {
  for (const auto& a : attrs) {
    if (a.name == name) return &a.value;
  }
  return nullptr;
}

}  // namespace meltrig::dataset
