// Thin RAII and error plumbing over the HDF5 C API, used by the capture writer.
// Every HDF5 failure becomes Error{Errc::file_error, "<file>: <what> <object>: <innermost HDF5
// message>"}, an OS failure shown as "No space left on device (errno 28; HDF5: file write
// failed)"; HDF5's own printing to stderr is switched off per thread (the library is built
// thread-safe, so the setting is per thread).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "meltrig/dataset/dataset_types.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::dataset::h5 {

/// Owns one HDF5 identifier and releases it with Close; move-only.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      close();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { close(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

  /// Closes now; returns HDF5's status (negative on failure, e.g. the final write of a file).
  herr_t close() {
    herr_t status = 0;
    if (valid()) status = Close(id_);
    id_ = H5I_INVALID_HID;
    return status;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Dataspace = Handle<H5Sclose>;
using Datatype = Handle<H5Tclose>;
using Plist = Handle<H5Pclose>;
using Attribute = Handle<H5Aclose>;

/// Switches off HDF5's automatic error printing for the calling thread. Cheap after the first call.
void silence_errors();

/// The description of the innermost (first detected) error on this thread's HDF5 error stack, or
/// "" when the stack is empty. Call it before any other HDF5 call: every API call clears the stack.
std::string innermost_error();

/// The innermost HDF5 message made readable: when it carries an OS error ("..., errno = 28, error
/// message = '...'"), "No space left on device (errno 28; HDF5: file write failed)", dropping the
/// time, buffer address and sizes HDF5 adds; otherwise the message as it is.
std::string readable_error(std::string_view hdf5_message);

/// file_error "<file>: <what> <object>: <readable innermost HDF5 message>". Reads the error stack
/// first.
Error h5_error(std::string_view file, std::string_view what, std::string_view object);

/// As above, naming the file and the object `name` below `loc` from HDF5 itself ("" names loc).
Error h5_error(hid_t loc, std::string_view what, std::string_view name);

/// The HDF5 path of `name` below `loc` (e.g. "/monitor/current"), for messages.
std::string object_path(hid_t loc, std::string_view name);

/// The native (in-memory) HDF5 type of T; predefined, never closed.
template <typename T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, float>) {
    return H5T_NATIVE_FLOAT;
  } else if constexpr (std::is_same_v<T, double>) {
    return H5T_NATIVE_DOUBLE;
  } else if constexpr (std::is_same_v<T, std::uint8_t>) {
    return H5T_NATIVE_UINT8;
  } else if constexpr (std::is_same_v<T, std::int8_t>) {
    return H5T_NATIVE_INT8;
  } else if constexpr (std::is_same_v<T, std::uint64_t>) {
    return H5T_NATIVE_UINT64;
  } else {
    static_assert(std::is_same_v<T, std::int64_t>, "native_type: add this type");
    return H5T_NATIVE_INT64;
  }
}

/// Creates a new file (fails if it exists) with libver bounds latest/latest, as SWMR requires.
Result<File> create_file(const std::filesystem::path& path);

/// Creates a group `name` below `loc`.
Result<Group> create_group(hid_t loc, const std::string& name);

/// One attribute value: a UTF-8 string (stored variable-length), a double or an int64.
using AttributeValue = dataset::AttributeValue;

/// Writes a scalar attribute on object `obj`.
Result<void> write_attribute(hid_t obj, const std::string& name, const AttributeValue& value);

/// Writes a 1-D attribute of variable-length UTF-8 strings on object `obj`.
Result<void> write_string_array_attribute(hid_t obj, const std::string& name,
                                          std::span<const std::string> values);

/// Writes a 1-D int64 attribute on object `obj`.
Result<void> write_int64_array_attribute(hid_t obj, const std::string& name,
                                         std::span<const std::int64_t> values);

/// The variable-length UTF-8 string type (attributes and string datasets).
Result<Datatype> vlen_string_type();

/// A fixed-length UTF-8 string type of `size` bytes, NUL-padded.
Result<Datatype> fixed_string_type(std::size_t size);

/// The registered id of the HDF5 LZ4 filter (a plugin: Debian package hdf5-filter-plugin).
inline constexpr H5Z_filter_t kLz4FilterId = 32004;

/// Compression filter of a chunked dataset.
enum class Filter : std::uint8_t { none, deflate, lz4 };

/// How to create an extendible 1-D dataset.
struct ExtendibleSpec {
  hid_t file_type;                   ///< element type on disk (e.g. H5T_IEEE_F32LE or a compound)
  std::uint64_t chunk_rows;          ///< rows per chunk (> 0)
  Filter filter = Filter::none;      ///< compression of every chunk
  unsigned deflate_level = 1;        ///< Filter::deflate only: 1..9
  bool shuffle = false;              ///< byte shuffle before the filter (ignored without one)
  hid_t fill_mem_type = -1;          ///< with fill_value: the fill's in-memory type
  const void* fill_value = nullptr;  ///< value read back for rows never written (default 0)
};

/// Checks that HDF5 can encode with filter `id` (loading its plugin if needed). file_error
/// "<file>: HDF5 compression filter <name> (id <id>) is not available ...: install the Debian
/// package <package>" naming the plugin directories HDF5 searched; a filter that is missing must
/// stop the capture, never fall back to writing uncompressed.
Result<void> require_filter(std::string_view file, H5Z_filter_t id, std::string_view name,
                            std::string_view package);

/// Creates an empty chunked 1-D dataset with unlimited maximum size.
Result<Dataset> create_extendible_1d(hid_t loc, const std::string& name,
                                     const ExtendibleSpec& spec);

/// Creates a fixed-size contiguous dataset with early allocation (`rows` < 0: scalar), so later
/// in-place writes never allocate file space (required once SWMR writing has started).
Result<Dataset> create_fixed(hid_t loc, const std::string& name, hid_t file_type,
                             std::int64_t rows = -1);

/// Sets the extent of a 1-D dataset.
Result<void> set_extent_1d(hid_t dset, std::uint64_t rows);

/// Writes rows [first_row, first_row + n_rows) of a 1-D dataset from `data` (mem_type elements).
/// The rows must lie within the current extent.
Result<void> write_rows(hid_t dset, hid_t mem_type, std::uint64_t first_row, std::uint64_t n_rows,
                        const void* data);

/// Typed write_rows.
template <typename T>
Result<void> write_rows(hid_t dset, std::uint64_t first_row, std::span<const T> rows) {
  return write_rows(dset, native_type<T>(), first_row, rows.size(), rows.data());
}

/// Extends a 1-D dataset holding `current_rows` by `n_rows` and writes them.
Result<void> append_rows(hid_t dset, hid_t mem_type, std::uint64_t current_rows,
                         std::uint64_t n_rows, const void* data);

/// Overwrites the whole of a fixed dataset in place.
Result<void> overwrite(hid_t dset, hid_t mem_type, const void* data);

/// H5Dflush: pushes the dataset's buffered raw data and metadata to the file.
Result<void> flush(hid_t dset);

/// Whether the open file `file` (sec2 driver) has lost its last directory entry, i.e. someone
/// deleted it while it is written: writing goes on into an inode that vanishes at close.
/// file_error naming `path` if the descriptor cannot be examined.
Result<bool> file_unlinked(hid_t file, std::string_view path);

}  // namespace meltrig::dataset::h5
