// RunRecord: see run_record.hpp for the layout and the caller's contract.
#include "meltrig/dataset/run_record.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "meltrig/dataset/h5_file.hpp"

namespace meltrig::dataset {

namespace {

using targets::ClockTriple;
using targets::MarkerEvent;
using targets::MarkerIssue;
using targets::MarkerKind;
using targets::MarkerLog;

constexpr std::string_view kMarkersGroup = "markers";
constexpr std::uint64_t kTableChunkRows = 4096;
constexpr std::uint64_t kSeriesChunkRows = 65536;

// One events row in memory; strings point into the MarkerLog (or, when read, into HDF5's
// allocations, reclaimed after copying).
struct EventRow {
  std::int64_t t_ns;
  const char* kind;
  std::int64_t index;
  std::uint64_t code;
  std::uint32_t bits;
  std::int64_t chip_ns;
  double value;
  const char* label;
  const char* text;
  std::uint64_t line;
};

struct TelemetryRow {
  std::int64_t t_ns;
  double value;
};

Error invalid(std::string message) {
  return Error{Errc::invalid_argument, std::move(message)};
}

Result<h5::Datatype> vlen_utf8() {
  h5::Datatype type{H5Tcopy(H5T_C_S1)};
  if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 ||
      H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0) {
    return Error{Errc::file_error, "cannot make an HDF5 string type: " + h5::innermost_error()};
  }
  return type;
}

// A compound type from (name, offset, member type) triples.
Result<h5::Datatype> compound(
    std::size_t size, std::initializer_list<std::tuple<const char*, std::size_t, hid_t>> m) {
  h5::Datatype type{H5Tcreate(H5T_COMPOUND, size)};
  if (!type.valid()) {
    return Error{Errc::file_error, "cannot make an HDF5 compound type: " + h5::innermost_error()};
  }
  for (const auto& [name, offset, member] : m) {
    if (H5Tinsert(type.get(), name, offset, member) < 0) {
      return Error{Errc::file_error, std::string("cannot make an HDF5 compound member ") + name +
                                         ": " + h5::innermost_error()};
    }
  }
  return type;
}

// Events: the file type is packed little-endian (strings take the size HDF5 gives a
// variable-length string), the memory type follows EventRow.
Result<h5::Datatype> event_type(hid_t str, bool file) {
  if (!file) {
    return compound(sizeof(EventRow), {{"t_ns", offsetof(EventRow, t_ns), H5T_NATIVE_INT64},
                                       {"kind", offsetof(EventRow, kind), str},
                                       {"index", offsetof(EventRow, index), H5T_NATIVE_INT64},
                                       {"code", offsetof(EventRow, code), H5T_NATIVE_UINT64},
                                       {"bits", offsetof(EventRow, bits), H5T_NATIVE_UINT32},
                                       {"chip_ns", offsetof(EventRow, chip_ns), H5T_NATIVE_INT64},
                                       {"value", offsetof(EventRow, value), H5T_NATIVE_DOUBLE},
                                       {"label", offsetof(EventRow, label), str},
                                       {"text", offsetof(EventRow, text), str},
                                       {"line", offsetof(EventRow, line), H5T_NATIVE_UINT64}});
  }
  const std::size_t s = H5Tget_size(str);
  std::size_t at = 0;
  auto next = [&](std::size_t size) { return std::exchange(at, at + size); };
  const std::size_t t_ns = next(8), kind = next(s), index = next(8), code = next(8), bits = next(4),
                    chip = next(8), value = next(8), label = next(s), text = next(s),
                    line = next(8);
  return compound(at, {{"t_ns", t_ns, H5T_STD_I64LE},
                       {"kind", kind, str},
                       {"index", index, H5T_STD_I64LE},
                       {"code", code, H5T_STD_U64LE},
                       {"bits", bits, H5T_STD_U32LE},
                       {"chip_ns", chip, H5T_STD_I64LE},
                       {"value", value, H5T_IEEE_F64LE},
                       {"label", label, str},
                       {"text", text, str},
                       {"line", line, H5T_STD_U64LE}});
}

Result<h5::Datatype> clock_type(bool file) {
  if (!file) {
    return compound(sizeof(ClockTriple),
                    {{"mono_ns", offsetof(ClockTriple, mono_ns), H5T_NATIVE_INT64},
                     {"boot_ns", offsetof(ClockTriple, boot_ns), H5T_NATIVE_INT64},
                     {"real_ns", offsetof(ClockTriple, real_ns), H5T_NATIVE_INT64},
                     {"line", offsetof(ClockTriple, line), H5T_NATIVE_UINT64}});
  }
  return compound(32, {{"mono_ns", 0, H5T_STD_I64LE},
                       {"boot_ns", 8, H5T_STD_I64LE},
                       {"real_ns", 16, H5T_STD_I64LE},
                       {"line", 24, H5T_STD_U64LE}});
}

Result<h5::Datatype> telemetry_type(bool file) {
  if (!file) {
    return compound(sizeof(TelemetryRow),
                    {{"t_ns", offsetof(TelemetryRow, t_ns), H5T_NATIVE_INT64},
                     {"value", offsetof(TelemetryRow, value), H5T_NATIVE_DOUBLE}});
  }
  return compound(16, {{"t_ns", 0, H5T_STD_I64LE}, {"value", 8, H5T_IEEE_F64LE}});
}

// HDF5 link names may hold anything but '/'; "." and ".." are refused to keep paths plain.
bool valid_link_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

// "/a/b/c" or "a/b/c" -> {"a", "b", "c"}; nullopt if a part is not a valid link name.
std::optional<std::vector<std::string>> split_path(std::string_view path) {
  if (path.starts_with('/')) path.remove_prefix(1);
  std::vector<std::string> parts;
  while (true) {
    const std::size_t slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    if (!valid_link_name(part)) return std::nullopt;
    parts.emplace_back(part);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

bool has_nul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

Result<bool> link_exists(hid_t loc, const std::string& name) {
  const htri_t e = H5Lexists(loc, name.c_str(), H5P_DEFAULT);
  if (e < 0) return h5::h5_error(loc, "cannot look up", name);
  return e > 0;
}

Result<h5::Group> open_group(hid_t loc, const std::string& name) {
  h5::Group g{H5Gopen2(loc, name.c_str(), H5P_DEFAULT)};
  if (!g.valid()) return h5::h5_error(loc, "cannot open group", name);
  return g;
}

Result<h5::Group> open_or_create_group(hid_t loc, const std::string& name) {
  auto exists = link_exists(loc, name);
  if (!exists) return exists.error();
  if (*exists) return open_group(loc, name);
  return h5::create_group(loc, name);
}

// Opens or creates every group of `parts` below `loc` (all of them, or all but the last).
Result<h5::Group> walk_groups(hid_t loc, std::span<const std::string> parts) {
  h5::Group current{H5Gopen2(loc, "/", H5P_DEFAULT)};
  if (!current.valid()) return h5::h5_error(loc, "cannot open group", "/");
  for (const auto& part : parts) {
    auto next = open_or_create_group(current.get(), part);
    if (!next) return next.error();
    current = std::move(*next);
  }
  return current;
}

Result<h5::Dataset> create_table(hid_t loc, const std::string& name, hid_t file_type,
                                 hid_t mem_type, std::uint64_t rows, const void* data,
                                 std::uint64_t chunk_rows, h5::Filter filter) {
  h5::ExtendibleSpec spec{.file_type = file_type,
                          .chunk_rows = std::clamp<std::uint64_t>(rows, 1, chunk_rows),
                          .filter = filter,
                          .deflate_level = 1,
                          .shuffle = filter != h5::Filter::none};
  auto dset = h5::create_extendible_1d(loc, name, spec);
  if (!dset) return dset.error();
  if (auto r = h5::append_rows(dset->get(), mem_type, 0, rows, data); !r) return r.error();
  return dset;
}

Result<void> write_attributes(hid_t obj, const std::vector<Attribute>& attrs) {
  for (const auto& a : attrs) {
    if (const auto* s = std::get_if<std::string>(&a.value); s != nullptr && has_nul(*s)) {
      return invalid(h5::object_path(obj, "") + ": attribute '" + a.name +
                     "' holds a NUL byte, which HDF5 strings cannot store");
    }
    if (a.name.empty() || has_nul(a.name)) {
      return invalid(h5::object_path(obj, "") + ": an attribute name is empty or holds a NUL");
    }
    const htri_t e = H5Aexists(obj, a.name.c_str());
    if (e < 0) return h5::h5_error(obj, "cannot look up attribute " + a.name + " on", "");
    if (e > 0) {
      return invalid(h5::object_path(obj, "") + ": attribute '" + a.name + "' exists already");
    }
    if (auto r = h5::write_attribute(obj, a.name, a.value); !r) return r;
  }
  return {};
}

// ---- reading ----

Result<std::string> read_string_attribute(hid_t obj, const char* name) {
  h5::Attribute attr{H5Aopen(obj, name, H5P_DEFAULT)};
  if (!attr.valid())
    return h5::h5_error(obj, std::string("cannot open attribute ") + name + " of", "");
  auto type = vlen_utf8();
  if (!type) return type.error();
  char* ptr = nullptr;
  if (H5Aread(attr.get(), type->get(), &ptr) < 0) {
    return h5::h5_error(obj, std::string("cannot read attribute ") + name + " of", "");
  }
  std::string out = ptr != nullptr ? ptr : "";
  H5free_memory(ptr);
  return out;
}

Result<std::vector<std::string>> read_string_array_attribute(hid_t obj, const char* name) {
  h5::Attribute attr{H5Aopen(obj, name, H5P_DEFAULT)};
  if (!attr.valid())
    return h5::h5_error(obj, std::string("cannot open attribute ") + name + " of", "");
  h5::Dataspace space{H5Aget_space(attr.get())};
  const hssize_t n = space.valid() ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (n < 0) return h5::h5_error(obj, std::string("cannot size attribute ") + name + " of", "");
  auto type = vlen_utf8();
  if (!type) return type.error();
  std::vector<char*> ptrs(static_cast<std::size_t>(n), nullptr);
  std::vector<std::string> out;
  if (n == 0) return out;
  if (H5Aread(attr.get(), type->get(), ptrs.data()) < 0) {
    return h5::h5_error(obj, std::string("cannot read attribute ") + name + " of", "");
  }
  for (char* p : ptrs) {
    out.emplace_back(p != nullptr ? p : "");
    H5free_memory(p);
  }
  return out;
}

Result<std::int64_t> read_int64_attribute(hid_t obj, const char* name) {
  h5::Attribute attr{H5Aopen(obj, name, H5P_DEFAULT)};
  if (!attr.valid())
    return h5::h5_error(obj, std::string("cannot open attribute ") + name + " of", "");
  std::int64_t v = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0) {
    return h5::h5_error(obj, std::string("cannot read attribute ") + name + " of", "");
  }
  return v;
}

Result<std::uint64_t> dataset_rows(hid_t dset) {
  h5::Dataspace space{H5Dget_space(dset)};
  const hssize_t n = space.valid() ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (n < 0) return h5::h5_error(dset, "cannot size", "");
  return static_cast<std::uint64_t>(n);
}

// Reads a whole 1-D dataset as `mem_type` rows (vlen members must be reclaimed by the caller).
template <typename Row>
Result<std::vector<Row>> read_table(hid_t loc, const char* name, hid_t mem_type) {
  h5::Dataset dset{H5Dopen2(loc, name, H5P_DEFAULT)};
  if (!dset.valid()) return h5::h5_error(loc, "cannot open dataset", name);
  auto n = dataset_rows(dset.get());
  if (!n) return n.error();
  std::vector<Row> rows(*n);
  if (*n > 0 && H5Dread(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()) < 0) {
    return h5::h5_error(loc, "cannot read dataset", name);
  }
  return rows;
}

Result<h5::File> open_read(const std::filesystem::path& path) {
  h5::silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error{Errc::not_found, path.string() + ": no such file"};
  }
  h5::File file{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  if (!file.valid()) return h5::h5_error(path.string(), "cannot open HDF5 file", "");
  return file;
}

std::optional<MarkerKind> kind_from(std::string_view name) {
  for (int k = 0; k <= static_cast<int>(MarkerKind::user); ++k) {
    const auto kind = static_cast<MarkerKind>(k);
    if (targets::kind_name(kind) == name) return kind;
  }
  return std::nullopt;
}

// "file:line: message" -> MarkerIssue; the first ":<digits>: " splits it.
MarkerIssue issue_from(const std::string& s) {
  for (std::size_t i = s.find(':'); i != std::string::npos; i = s.find(':', i + 1)) {
    std::size_t j = i + 1;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9')
      ++j;
    if (j > i + 1 && s.compare(j, 2, ": ") == 0) {
      return {s.substr(0, i), std::stoull(s.substr(i + 1, j - i - 1)), s.substr(j + 2)};
    }
  }
  return {"", 0, s};
}

}  // namespace

// ---- RunRecord ----

struct RunRecord::Impl {
  std::string path_text;
  h5::File file;

  Result<void> usable() const {
    if (!file.valid()) return invalid(path_text + ": extras file already closed");
    return {};
  }
};

RunRecord::RunRecord(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RunRecord::RunRecord(RunRecord&&) noexcept = default;
RunRecord& RunRecord::operator=(RunRecord&&) noexcept = default;
RunRecord::~RunRecord() = default;

Result<RunRecord> RunRecord::open(const std::filesystem::path& path) {
  h5::silence_errors();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error{Errc::not_found, path.string() + ": no such file"};
  }
  auto impl = std::make_unique<Impl>();
  impl->path_text = path.string();
  impl->file = h5::File{H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)};
  if (!impl->file.valid()) {
    return h5::h5_error(impl->path_text,
                        "cannot open for adding extras (a capture must have finished; after a "
                        "crash run `h5clear -s` first)",
                        "");
  }
  return RunRecord(std::move(impl));
}

Result<void> RunRecord::write_markers(std::string_view name, const MarkerLog& log) {
  assert(impl_);
  if (auto r = impl_->usable(); !r) return r;
  const hid_t file = impl_->file.get();
  const std::string where = impl_->path_text + ": /markers/" + std::string(name);
  if (!valid_link_name(name) || has_nul(name)) {
    return invalid(impl_->path_text + ": marker group name '" + std::string(name) +
                   "' is empty, has '/' or is '.'/'..'");
  }
  // Strings HDF5 cannot store end the write before anything is created.
  auto check = [&](std::string_view s, std::string_view what, std::uint64_t line) -> Result<void> {
    if (!has_nul(s)) return {};
    return invalid(where + ": " + log.source + ":" + std::to_string(line) + ": " +
                   std::string(what) + " holds a NUL byte, which HDF5 strings cannot store");
  };
  for (const auto& e : log.events) {
    if (auto r = check(e.label, "label", e.line); !r) return r;
    if (auto r = check(e.text, "text", e.line); !r) return r;
  }
  for (const auto& [k, v] : log.header) {
    if (auto r = check(k, "header key", 1); !r) return r;
    if (auto r = check(v, "header value", 1); !r) return r;
  }
  std::vector<std::string> issues;
  for (const auto& i : log.issues) {
    issues.push_back(i.describe());
    if (auto r = check(issues.back(), "issue", i.line); !r) return r;
  }
  if (auto r = check(log.source, "source", 0); !r) return r;
  if (auto r = check(log.clock, "clock", 0); !r) return r;

  auto markers = walk_groups(file, std::array{std::string(kMarkersGroup)});
  if (!markers) return markers.error();
  const std::string group_name(name);
  auto exists = link_exists(markers->get(), group_name);
  if (!exists) return exists.error();
  if (*exists) return invalid(where + " exists already");
  auto group = h5::create_group(markers->get(), group_name);
  if (!group) return group.error();
  const hid_t g = group->get();

  auto str = vlen_utf8();
  if (!str) return str.error();
  auto file_type = event_type(str->get(), true);
  if (!file_type) return file_type.error();
  auto mem_type = event_type(str->get(), false);
  if (!mem_type) return mem_type.error();
  std::vector<EventRow> rows;
  rows.reserve(log.events.size());
  // kind_name returns views of static strings, but not NUL-terminated ones by contract: copy.
  std::vector<std::string> kinds;
  kinds.reserve(log.events.size());
  for (const auto& e : log.events)
    kinds.emplace_back(targets::kind_name(e.kind));
  for (std::size_t i = 0; i < log.events.size(); ++i) {
    const MarkerEvent& e = log.events[i];
    rows.push_back({e.t_ns, kinds[i].c_str(), e.index, e.code, e.bits, e.chip_ns, e.value,
                    e.label.c_str(), e.text.c_str(), e.line});
  }
  if (auto d = create_table(g, "events", file_type->get(), mem_type->get(), rows.size(),
                            rows.data(), kTableChunkRows, h5::Filter::none);
      !d) {
    return d.error();
  }
  auto clock_file = clock_type(true);
  if (!clock_file) return clock_file.error();
  auto clock_mem = clock_type(false);
  if (!clock_mem) return clock_mem.error();
  if (auto d = create_table(g, "clocks", clock_file->get(), clock_mem->get(), log.clocks.size(),
                            log.clocks.data(), kTableChunkRows, h5::Filter::none);
      !d) {
    return d.error();
  }

  std::vector<std::string> keys;
  std::vector<std::string> values;
  for (const auto& [k, v] : log.header) {
    keys.push_back(k);
    values.push_back(v);
  }
  std::vector<std::string> kind_names;
  for (int k = 0; k <= static_cast<int>(MarkerKind::user); ++k)
    kind_names.emplace_back(targets::kind_name(static_cast<MarkerKind>(k)));
  if (auto r = h5::write_attribute(g, "clock", log.clock); !r) return r;
  if (auto r = h5::write_attribute(g, "source", log.source); !r) return r;
  if (auto r = h5::write_string_array_attribute(g, "header_keys", keys); !r) return r;
  if (auto r = h5::write_string_array_attribute(g, "header_values", values); !r) return r;
  if (auto r = h5::write_attribute(g, "issue_count", static_cast<std::int64_t>(issues.size()));
      !r) {
    return r;
  }
  if (auto r = h5::write_string_array_attribute(g, "issues", issues); !r) return r;
  if (auto r = h5::write_attribute(g, "incomplete_tail", std::int64_t{log.incomplete_tail ? 1 : 0});
      !r) {
    return r;
  }
  return h5::write_string_array_attribute(g, "kind_names", kind_names);
}

Result<void> RunRecord::write_telemetry(const targets::Telemetry& telemetry,
                                        std::string_view group) {
  assert(impl_);
  if (auto r = impl_->usable(); !r) return r;
  const hid_t file = impl_->file.get();
  if (auto g = split_path(group); !g || g->size() != 1 || has_nul(group))
    return invalid(impl_->path_text + ": telemetry group '" + std::string(group) +
                   "' is not one link name");
  auto file_type = telemetry_type(true);
  if (!file_type) return file_type.error();
  auto mem_type = telemetry_type(false);
  if (!mem_type) return mem_type.error();
  // Check every series before writing any, so a bad one leaves the file unchanged.
  std::vector<std::vector<std::string>> paths;
  for (const auto& s : telemetry.series) {
    auto parts = split_path(s.name);
    if (!parts || has_nul(s.name)) {
      return invalid(impl_->path_text + ": telemetry series name '" + s.name +
                     "' has an empty part, '.' or '..'");
    }
    if (s.t_ns.size() != s.value.size()) {
      return invalid(impl_->path_text + ": telemetry series '" + s.name + "' has " +
                     std::to_string(s.t_ns.size()) + " times and " +
                     std::to_string(s.value.size()) + " values");
    }
    if (has_nul(s.unit) || has_nul(s.clock) || has_nul(s.description)) {
      return invalid(impl_->path_text + ": telemetry series '" + s.name +
                     "': unit, clock or description holds a NUL byte");
    }
    parts->insert(parts->begin(), std::string(group));
    paths.push_back(std::move(*parts));
  }
  for (std::size_t i = 0; i < telemetry.series.size(); ++i) {
    const auto& s = telemetry.series[i];
    const auto& parts = paths[i];
    auto parent = walk_groups(file, std::span(parts).first(parts.size() - 1));
    if (!parent) return parent.error();
    auto exists = link_exists(parent->get(), parts.back());
    if (!exists) return exists.error();
    if (*exists) {
      return invalid(impl_->path_text + ": /" + std::string(group) + "/" + s.name +
                     " exists already");
    }
    std::vector<TelemetryRow> rows(s.t_ns.size());
    for (std::size_t j = 0; j < rows.size(); ++j)
      rows[j] = {s.t_ns[j], s.value[j]};
    auto dset = create_table(parent->get(), parts.back(), file_type->get(), mem_type->get(),
                             rows.size(), rows.data(), kTableChunkRows, h5::Filter::deflate);
    if (!dset) return dset.error();
    if (auto r = h5::write_attribute(dset->get(), "unit", s.unit); !r) return r;
    if (auto r = h5::write_attribute(dset->get(), "clock", s.clock); !r) return r;
    if (auto r = h5::write_attribute(dset->get(), "description", s.description); !r) return r;
  }
  return {};
}

Result<void> RunRecord::write_attribute_group(std::string_view group_path,
                                              const std::vector<Attribute>& attrs) {
  assert(impl_);
  if (auto r = impl_->usable(); !r) return r;
  auto parts = split_path(group_path);
  if (!parts || has_nul(group_path)) {
    return invalid(impl_->path_text + ": group path '" + std::string(group_path) +
                   "' has an empty part, '.' or '..'");
  }
  auto group = walk_groups(impl_->file.get(), *parts);
  if (!group) return group.error();
  return write_attributes(group->get(), attrs);
}

// The header keeps HDF5 out: hid_t is int64_t.
static_assert(std::is_same_v<hid_t, std::int64_t>);

Result<void> RunRecord::write_column(std::string_view dataset_path, std::int64_t file_type,
                                     std::int64_t mem_type, std::size_t rows, const void* data,
                                     const std::vector<Attribute>& attrs) {
  assert(impl_);
  if (auto r = impl_->usable(); !r) return r;
  auto parts = split_path(dataset_path);
  if (!parts || has_nul(dataset_path)) {
    return invalid(impl_->path_text + ": dataset path '" + std::string(dataset_path) +
                   "' has an empty part, '.' or '..'");
  }
  auto parent = walk_groups(impl_->file.get(), std::span(*parts).first(parts->size() - 1));
  if (!parent) return parent.error();
  auto exists = link_exists(parent->get(), parts->back());
  if (!exists) return exists.error();
  if (*exists)
    return invalid(impl_->path_text + ": " + std::string(dataset_path) + " exists already");
  auto dset = create_table(parent->get(), parts->back(), file_type, mem_type, rows, data,
                           kSeriesChunkRows, h5::Filter::deflate);
  if (!dset) return dset.error();
  return write_attributes(dset->get(), attrs);
}

Result<void> RunRecord::write_series(std::string_view dataset_path, std::span<const double> values,
                                     const std::vector<Attribute>& attrs) {
  return write_column(dataset_path, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, values.size(), values.data(),
                      attrs);
}

Result<void> RunRecord::write_series_i64(std::string_view dataset_path,
                                         std::span<const std::int64_t> values,
                                         const std::vector<Attribute>& attrs) {
  return write_column(dataset_path, H5T_STD_I64LE, H5T_NATIVE_INT64, values.size(), values.data(),
                      attrs);
}

Result<void> RunRecord::write_clock_probes(std::string_view group_path,
                                           std::span<const targets::ClockProbe> probes,
                                           std::string_view host_clock) {
  using P = targets::ClockProbe;
  struct Column {
    const char* name;
    std::int64_t P::*field;
    std::string what;
  };
  const Column cols[] = {
      {"host_t0_ns", &P::host_t0_ns, std::string(host_clock) + " before the probe"},
      {"device_mono_ns", &P::device_mono_ns, "device CLOCK_MONOTONIC"},
      {"device_boot_ns", &P::device_boot_ns, "device CLOCK_BOOTTIME"},
      {"device_real_ns", &P::device_real_ns, "device CLOCK_REALTIME"},
      {"host_t3_ns", &P::host_t3_ns, std::string(host_clock) + " after the answer"},
  };
  std::vector<std::int64_t> col(probes.size());
  for (const Column& c : cols) {
    for (std::size_t i = 0; i < probes.size(); ++i)
      col[i] = probes[i].*c.field;
    auto w = write_series_i64(std::string(group_path) + "/" + c.name, col,
                              {{"unit", std::string("ns")}, {"description", c.what}});
    if (!w) return w;
  }
  return {};
}

Result<void> RunRecord::close() {
  assert(impl_);
  if (auto r = impl_->usable(); !r) return r;
  if (impl_->file.close() < 0) return h5::h5_error(impl_->path_text, "cannot close", "");
  return {};
}

// ---- one-call forms ----

namespace {
template <typename Fn>
Result<void> with_file(const std::filesystem::path& path, Fn&& fn) {
  auto f = RunRecord::open(path);
  if (!f) return f.error();
  if (auto r = fn(*f); !r) return r;
  return f->close();
}
}  // namespace

Result<void> write_markers(const std::filesystem::path& path, std::string_view name,
                           const MarkerLog& log) {
  return with_file(path, [&](RunRecord& f) { return f.write_markers(name, log); });
}

Result<void> write_telemetry(const std::filesystem::path& path,
                             const targets::Telemetry& telemetry) {
  return with_file(path, [&](RunRecord& f) { return f.write_telemetry(telemetry); });
}

Result<void> write_attribute_group(const std::filesystem::path& path, std::string_view group_path,
                                   const std::vector<Attribute>& attrs) {
  return with_file(path, [&](RunRecord& f) { return f.write_attribute_group(group_path, attrs); });
}

Result<void> write_series(const std::filesystem::path& path, std::string_view dataset_path,
                          std::span<const double> values, const std::vector<Attribute>& attrs) {
  return with_file(path, [&](RunRecord& f) { return f.write_series(dataset_path, values, attrs); });
}

// ---- reading ----

Result<MarkerLog> read_markers(const std::filesystem::path& path, std::string_view name) {
  auto file = open_read(path);
  if (!file) return file.error();
  const std::string group_path = "/markers/" + std::string(name);
  if (!valid_link_name(name)) return invalid(path.string() + ": bad marker group name");
  for (const std::string& p : {std::string("/markers"), group_path}) {
    auto e = link_exists(file->get(), p);
    if (!e) return e.error();
    if (!*e) return Error{Errc::not_found, path.string() + ": no " + group_path};
  }
  auto group = open_group(file->get(), group_path);
  if (!group) return group.error();
  const hid_t g = group->get();
  MarkerLog log;
  auto clock = read_string_attribute(g, "clock");
  if (!clock) return clock.error();
  log.clock = *clock;
  auto source = read_string_attribute(g, "source");
  if (!source) return source.error();
  log.source = *source;
  auto keys = read_string_array_attribute(g, "header_keys");
  if (!keys) return keys.error();
  auto values = read_string_array_attribute(g, "header_values");
  if (!values) return values.error();
  if (keys->size() != values->size()) {
    return Error{Errc::file_error, path.string() + ": " + group_path +
                                       ": header_keys and header_values differ in length"};
  }
  for (std::size_t i = 0; i < keys->size(); ++i)
    log.header.emplace_back((*keys)[i], (*values)[i]);
  auto issues = read_string_array_attribute(g, "issues");
  if (!issues) return issues.error();
  for (const auto& s : *issues)
    log.issues.push_back(issue_from(s));
  auto tail = read_int64_attribute(g, "incomplete_tail");
  if (!tail) return tail.error();
  log.incomplete_tail = *tail != 0;

  auto str = vlen_utf8();
  if (!str) return str.error();
  auto mem_type = event_type(str->get(), false);
  if (!mem_type) return mem_type.error();
  auto rows = read_table<EventRow>(g, "events", mem_type->get());
  if (!rows) return rows.error();
  std::optional<Error> bad;
  for (const EventRow& r : *rows) {
    MarkerEvent e;
    e.t_ns = r.t_ns;
    const auto kind = kind_from(r.kind != nullptr ? r.kind : "");
    if (!kind && !bad) {
      bad = Error{Errc::file_error, path.string() + ": " + group_path + "/events: unknown kind '" +
                                        std::string(r.kind != nullptr ? r.kind : "") + "'"};
    }
    e.kind = kind.value_or(MarkerKind::user);
    e.index = r.index;
    e.code = r.code;
    e.bits = r.bits;
    e.chip_ns = r.chip_ns;
    e.value = r.value;
    e.label = r.label != nullptr ? r.label : "";
    e.text = r.text != nullptr ? r.text : "";
    e.line = r.line;
    log.events.push_back(std::move(e));
  }
  if (!rows->empty()) {
    h5::Dataspace space{H5Screate_simple(1, std::array<hsize_t, 1>{rows->size()}.data(), nullptr)};
    H5Dvlen_reclaim(mem_type->get(), space.get(), H5P_DEFAULT, rows->data());
  }
  if (bad) return *bad;
  auto clock_mem = clock_type(false);
  if (!clock_mem) return clock_mem.error();
  auto clocks = read_table<ClockTriple>(g, "clocks", clock_mem->get());
  if (!clocks) return clocks.error();
  log.clocks = std::move(*clocks);
  return log;
}

Result<std::vector<std::string>> list_markers(const std::filesystem::path& path) {
  auto file = open_read(path);
  if (!file) return file.error();
  std::vector<std::string> names;
  auto e = link_exists(file->get(), "/markers");
  if (!e) return e.error();
  if (!*e) return names;
  auto group = open_group(file->get(), "/markers");
  if (!group) return group.error();
  auto add = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  if (H5Literate(group->get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, add, &names) < 0) {
    return h5::h5_error(group->get(), "cannot list", "");
  }
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

struct CollectState {
  std::string prefix;
  targets::Telemetry* out;
  std::optional<Error>* failure;
};

void collect_telemetry(hid_t group, const std::string& prefix, targets::Telemetry& out,
                       std::optional<Error>& failure) {
  CollectState state{prefix, &out, &failure};
  auto visit = [](hid_t loc, const char* name, const H5L_info_t*, void* data) -> herr_t {
    auto& st = *static_cast<CollectState*>(data);
    const hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
    if (obj < 0) {
      *st.failure = h5::h5_error(loc, "cannot examine", name);
      return -1;
    }
    const H5I_type_t type = H5Iget_type(obj);
    H5Oclose(obj);
    const std::string full = st.prefix.empty() ? name : st.prefix + "/" + name;
    if (type == H5I_GROUP) {
      auto sub = open_group(loc, name);
      if (!sub) {
        *st.failure = sub.error();
        return -1;
      }
      collect_telemetry(sub->get(), full, *st.out, *st.failure);
      return *st.failure ? -1 : 0;
    }
    h5::Dataset dset{H5Dopen2(loc, name, H5P_DEFAULT)};
    if (!dset.valid()) {
      *st.failure = h5::h5_error(loc, "cannot open dataset", name);
      return -1;
    }
    targets::TelemetrySeries s;
    s.name = full;
    for (auto [attr, field] : {std::pair{"unit", &s.unit}, std::pair{"clock", &s.clock},
                               std::pair{"description", &s.description}}) {
      auto v = read_string_attribute(dset.get(), attr);
      if (!v) {
        *st.failure = v.error();
        return -1;
      }
      *field = *v;
    }
    auto mem = telemetry_type(false);
    if (!mem) {
      *st.failure = mem.error();
      return -1;
    }
    auto rows = read_table<TelemetryRow>(loc, name, mem->get());
    if (!rows) {
      *st.failure = rows.error();
      return -1;
    }
    for (const auto& r : *rows) {
      s.t_ns.push_back(r.t_ns);
      s.value.push_back(r.value);
    }
    st.out->series.push_back(std::move(s));
    return 0;
  };
  H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, nullptr, visit, &state);
}

}  // namespace

Result<targets::Telemetry> read_telemetry(const std::filesystem::path& path) {
  auto file = open_read(path);
  if (!file) return file.error();
  targets::Telemetry out;
  auto e = link_exists(file->get(), "/telemetry");
  if (!e) return e.error();
  if (!*e) return out;
  auto group = open_group(file->get(), "/telemetry");
  if (!group) return group.error();
  std::optional<Error> failure;
  collect_telemetry(group->get(), "", out, failure);
  if (failure) return *failure;
  return out;
}

}  // namespace meltrig::dataset
