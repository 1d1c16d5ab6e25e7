// HDF5 RAII helpers: see h5_file.hpp.
#include "meltrig/dataset/h5_file.hpp"

#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>
#include <type_traits>
#include <vector>

namespace meltrig::dataset::h5 {

namespace {

herr_t take_innermost(unsigned n, const H5E_error2_t* err, void* client) {
  // Walked upward, entry 0 is where the failure was first detected (e.g. "errno = 28, ...").
  if (n == 0 && err->desc != nullptr) *static_cast<std::string*>(client) = err->desc;
  return 0;
}

std::string range_text(std::uint64_t first, std::uint64_t n) {
  return "rows [" + std::to_string(first) + ", " + std::to_string(first + n) + ") of";
}

// Creates a scalar or 1-D attribute and writes `data` (nullptr: nothing to write, an empty array).
Result<void> create_and_write_attribute(hid_t obj, const std::string& name, hid_t file_type,
                                        hid_t mem_type, hid_t space, const void* data) {
  Attribute attr{H5Acreate2(obj, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT)};
  if (!attr.valid()) return h5_error(obj, "cannot create attribute " + name + " on", "");
  if (data != nullptr && H5Awrite(attr.get(), mem_type, data) < 0) {
    return h5_error(obj, "cannot write attribute " + name + " on", "");
  }
  if (attr.close() < 0) return h5_error(obj, "cannot close attribute " + name + " on", "");
  return {};
}

}  // namespace

Result<Datatype> vlen_string_type() {
  Datatype type{H5Tcopy(H5T_C_S1)};
  if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 ||
      H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0) {
    return Error{Errc::file_error, "cannot make an HDF5 string type: " + innermost_error()};
  }
  return type;
}

void silence_errors() {
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

std::string innermost_error() {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &message);
  return message;
}

std::string readable_error(std::string_view hdf5_message) {
  // HDF5 reports OS failures as "<what>: <details>, errno = N, error message = '<strerror>', ...";
  // the details (time, buffer address, sizes) only bury the cause.
  constexpr std::string_view kErrno = "errno = ";
  const std::size_t at = hdf5_message.find(kErrno);
  if (at == std::string_view::npos) return std::string(hdf5_message);
  int code = 0;
  const char* first = hdf5_message.data() + at + kErrno.size();
  const char* last = hdf5_message.data() + hdf5_message.size();
  if (std::from_chars(first, last, code).ec != std::errc{}) return std::string(hdf5_message);
  std::string cause = std::generic_category().message(code);
  constexpr std::string_view kText = "error message = '";
  if (const std::size_t t = hdf5_message.find(kText, at); t != std::string_view::npos) {
    const std::size_t begin = t + kText.size();
    if (const std::size_t end = hdf5_message.find('\'', begin); end != std::string_view::npos) {
      cause = std::string(hdf5_message.substr(begin, end - begin));
    }
  }
  const std::string_view what = hdf5_message.substr(0, hdf5_message.find_first_of(":,"));
  return cause + " (errno " + std::to_string(code) + "; HDF5: " + std::string(what) + ")";
}

Error h5_error(std::string_view file, std::string_view what, std::string_view object) {
  const std::string detail = readable_error(innermost_error());
  std::string message{file};
  message += ": ";
  message += what;
  if (!object.empty()) {
    message += ' ';
    message += object;
  }
  if (!detail.empty()) {
    message += ": ";
    message += detail;
  }
  return Error{Errc::file_error, std::move(message)};
}

std::string object_path(hid_t loc, std::string_view name) {
  std::string base = "?";
  const ssize_t len = H5Iget_name(loc, nullptr, 0);
  if (len > 0) {
    base.assign(static_cast<std::size_t>(len) + 1, '\0');
    H5Iget_name(loc, base.data(), base.size());
    base.resize(static_cast<std::size_t>(len));
  }
  if (name.empty()) return base;
  if (base.empty() || base.back() != '/') base += '/';
  base += name;
  return base;
}

Error h5_error(hid_t loc, std::string_view what, std::string_view name) {
  // The error stack must be read before any other HDF5 call clears it.
  const std::string detail = readable_error(innermost_error());
  std::string file = "?";
  const ssize_t len = H5Fget_name(loc, nullptr, 0);
  if (len > 0) {
    file.assign(static_cast<std::size_t>(len) + 1, '\0');
    H5Fget_name(loc, file.data(), file.size());
    file.resize(static_cast<std::size_t>(len));
  }
  std::string message = file + ": " + std::string(what) + ' ' + object_path(loc, name);
  if (!detail.empty()) message += ": " + detail;
  return Error{Errc::file_error, std::move(message)};
}

Result<File> create_file(const std::filesystem::path& path) {
  silence_errors();
  Plist fapl{H5Pcreate(H5P_FILE_ACCESS)};
  if (!fapl.valid() || H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) < 0) {
    return h5_error(path.string(), "cannot set up file access for", "");
  }
  File file{H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get())};
  if (!file.valid()) return h5_error(path.string(), "cannot create HDF5 file", "");
  return file;
}

Result<Group> create_group(hid_t loc, const std::string& name) {
  silence_errors();
  Group group{H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)};
  if (!group.valid()) return h5_error(loc, "cannot create group", name);
  return group;
}

Result<void> write_attribute(hid_t obj, const std::string& name, const AttributeValue& value) {
  silence_errors();
  Dataspace space{H5Screate(H5S_SCALAR)};
  if (!space.valid()) return h5_error(obj, "cannot make a dataspace for attribute " + name, "");
  return std::visit(
      [&](const auto& v) -> Result<void> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          auto type = vlen_string_type();
          if (!type) return type.error();
          const char* ptr = v.c_str();
          return create_and_write_attribute(obj, name, type->get(), type->get(), space.get(), &ptr);
        } else if constexpr (std::is_same_v<T, double>) {
          return create_and_write_attribute(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                            space.get(), &v);
        } else {
          static_assert(std::is_same_v<T, std::int64_t>, "new AttributeValue type: store it here");
          return create_and_write_attribute(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space.get(),
                                            &v);
        }
      },
      value);
}

Result<void> write_string_array_attribute(hid_t obj, const std::string& name,
                                          std::span<const std::string> values) {
  silence_errors();
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& v : values)
    ptrs.push_back(v.c_str());
  const std::array<hsize_t, 1> dims{values.size()};
  Dataspace space{H5Screate_simple(1, dims.data(), nullptr)};
  if (!space.valid()) return h5_error(obj, "cannot make a dataspace for attribute " + name, "");
  auto type = vlen_string_type();
  if (!type) return type.error();
  return create_and_write_attribute(obj, name, type->get(), type->get(), space.get(),
                                    ptrs.empty() ? nullptr : ptrs.data());
}

Result<void> write_int64_array_attribute(hid_t obj, const std::string& name,
                                         std::span<const std::int64_t> values) {
  silence_errors();
  const std::array<hsize_t, 1> dims{values.size()};
  Dataspace space{H5Screate_simple(1, dims.data(), nullptr)};
  if (!space.valid()) return h5_error(obj, "cannot make a dataspace for attribute " + name, "");
  return create_and_write_attribute(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space.get(),
                                    values.empty() ? nullptr : values.data());
}

Result<Datatype> fixed_string_type(std::size_t size) {
  silence_errors();
  Datatype type{H5Tcopy(H5T_C_S1)};
  if (!type.valid() || H5Tset_size(type.get(), size) < 0 ||
      H5Tset_strpad(type.get(), H5T_STR_NULLPAD) < 0 ||
      H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0) {
    return Error{Errc::file_error, "cannot make an HDF5 string type: " + innermost_error()};
  }
  return type;
}

Result<Dataset> create_extendible_1d(hid_t loc, const std::string& name,
                                     const ExtendibleSpec& spec) {
  silence_errors();
  const std::array<hsize_t, 1> dims{0};
  const std::array<hsize_t, 1> max_dims{H5S_UNLIMITED};
  const std::array<hsize_t, 1> chunk{spec.chunk_rows};
  Dataspace space{H5Screate_simple(1, dims.data(), max_dims.data())};
  Plist dcpl{H5Pcreate(H5P_DATASET_CREATE)};
  if (!space.valid() || !dcpl.valid() || H5Pset_chunk(dcpl.get(), 1, chunk.data()) < 0) {
    return h5_error(loc, "cannot set up chunking for", name);
  }
  if (spec.filter != Filter::none) {
    if (spec.shuffle && H5Pset_shuffle(dcpl.get()) < 0) {
      return h5_error(loc, "cannot set up shuffle for", name);
    }
    // Mandatory: a chunk the filter cannot compress fails the write instead of going to disk raw.
    const herr_t set =
        spec.filter == Filter::deflate
            ? H5Pset_deflate(dcpl.get(), spec.deflate_level)
            : H5Pset_filter(dcpl.get(), kLz4FilterId, H5Z_FLAG_MANDATORY, 0, nullptr);
    if (set < 0) return h5_error(loc, "cannot set up compression for", name);
  }
  if (spec.fill_value != nullptr &&
      H5Pset_fill_value(dcpl.get(), spec.fill_mem_type, spec.fill_value) < 0) {
    return h5_error(loc, "cannot set the fill value of", name);
  }
  Dataset dset{H5Dcreate2(loc, name.c_str(), spec.file_type, space.get(), H5P_DEFAULT, dcpl.get(),
                          H5P_DEFAULT)};
  if (!dset.valid()) return h5_error(loc, "cannot create dataset", name);
  return dset;
}

Result<Dataset> create_fixed(hid_t loc, const std::string& name, hid_t file_type,
                             std::int64_t rows) {
  silence_errors();
  const std::array<hsize_t, 1> dims{static_cast<hsize_t>(rows < 0 ? 0 : rows)};
  Dataspace space{rows < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims.data(), nullptr)};
  Plist dcpl{H5Pcreate(H5P_DATASET_CREATE)};
  if (!space.valid() || !dcpl.valid() || H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS) < 0 ||
      H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY) < 0 ||
      H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_ALLOC) < 0) {
    return h5_error(loc, "cannot set up layout for", name);
  }
  Dataset dset{
      H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)};
  if (!dset.valid()) return h5_error(loc, "cannot create dataset", name);
  return dset;
}

Result<void> set_extent_1d(hid_t dset, std::uint64_t rows) {
  silence_errors();
  const std::array<hsize_t, 1> dims{rows};
  if (H5Dset_extent(dset, dims.data()) < 0) {
    return h5_error(dset, "cannot extend to " + std::to_string(rows) + " rows the dataset", "");
  }
  return {};
}

Result<void> write_rows(hid_t dset, hid_t mem_type, std::uint64_t first_row, std::uint64_t n_rows,
                        const void* data) {
  silence_errors();
  if (n_rows == 0) return {};
  const std::array<hsize_t, 1> start{first_row};
  const std::array<hsize_t, 1> count{n_rows};
  Dataspace file_space{H5Dget_space(dset)};
  if (!file_space.valid() || H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(),
                                                 nullptr, count.data(), nullptr) < 0) {
    return h5_error(dset, "cannot select " + range_text(first_row, n_rows), "");
  }
  Dataspace mem_space{H5Screate_simple(1, count.data(), nullptr)};
  if (!mem_space.valid() ||
      H5Dwrite(dset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0) {
    return h5_error(dset, "cannot write " + range_text(first_row, n_rows), "");
  }
  return {};
}

Result<void> append_rows(hid_t dset, hid_t mem_type, std::uint64_t current_rows,
                         std::uint64_t n_rows, const void* data) {
  if (n_rows == 0) return {};
  if (auto r = set_extent_1d(dset, current_rows + n_rows); !r) return r;
  return write_rows(dset, mem_type, current_rows, n_rows, data);
}

Result<void> overwrite(hid_t dset, hid_t mem_type, const void* data) {
  silence_errors();
  if (H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    return h5_error(dset, "cannot write", "");
  }
  return {};
}

Result<void> flush(hid_t dset) {
  silence_errors();
  if (H5Dflush(dset) < 0) return h5_error(dset, "cannot flush", "");
  return {};
}

Result<void> require_filter(std::string_view file, H5Z_filter_t id, std::string_view name,
                            std::string_view package) {
  silence_errors();
  // H5Zfilter_avail loads the plugin from HDF5's plugin path if it is not registered yet.
  unsigned config = 0;
  if (H5Zfilter_avail(id) > 0 && H5Zget_filter_info(id, &config) >= 0 &&
      (config & H5Z_FILTER_CONFIG_ENCODE_ENABLED) != 0) {
    return {};
  }
  std::string searched;
  unsigned n_paths = 0;
  if (H5PLsize(&n_paths) >= 0) {
    for (unsigned i = 0; i < n_paths; ++i) {
      std::array<char, 4096> dir{};
      if (H5PLget(i, dir.data(), dir.size()) <= 0) continue;
      searched += searched.empty() ? "" : ":";
      searched += dir.data();
    }
  }
  return Error{Errc::file_error, std::string(file) + ": HDF5 compression filter " +
                                     std::string(name) + " (id " + std::to_string(id) +
                                     ") is not available: install the Debian package " +
                                     std::string(package) + " (HDF5 looked for plugins in " +
                                     (searched.empty() ? std::string("no directory") : searched) +
                                     "; HDF5_PLUGIN_PATH overrides that)"};
}

Result<bool> file_unlinked(hid_t file, std::string_view path) {
  silence_errors();
  void* handle = nullptr;
  if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || handle == nullptr) {
    return h5_error(path, "cannot get the file descriptor of", "");
  }
  struct stat st {};
  if (::fstat(*static_cast<const int*>(handle), &st) != 0) {
    const int code = errno;
    return Error{Errc::file_error, std::string(path) + ": cannot examine the open file: " +
                                       std::generic_category().message(code)};
  }
  return st.st_nlink == 0;
}

}  // namespace meltrig::dataset::h5
