// Derived groups added to a finished capture (/sync, /analysis): a tree of plain values (scalar
// attributes, 1-D columns of int64, float64 or UTF-8 strings, subgroups) written in one piece and
// read back whole. Writing is crash-safe for readers: the tree goes into a temporary group
// (`/.<name>.tmp`) which replaces `/<name>` by a rename only once complete, so a reader sees the
// old group or the new one, never half of one. The file must be closed by every writer (a capture
// still running, or left open by a crash, is refused naming the file). The library knows nothing of
// what the groups mean; sync/ and analysis/ fill them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "meltrig/dataset/dataset_types.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::dataset {

/// One 1-D dataset of a stored group: int64, float64 or variable-length UTF-8 strings.
struct Column {
  std::string name;
  std::variant<std::vector<std::int64_t>, std::vector<double>, std::vector<std::string>> values;
  std::string unit;  ///< stored as the attribute `unit` when not empty
};

/// A group: scalar attributes, columns and subgroups (names are single HDF5 link names).
struct GroupData {
  std::string name;
  std::vector<Attribute> attrs;
  std::vector<Column> columns;
  std::vector<GroupData> groups;

  const AttributeValue* attr(std::string_view n) const;
  const Column* column(std::string_view n) const;
  const GroupData* group(std::string_view n) const;
  /// The attribute as a string / double / int64, or nullopt when absent or of another type.
  std::optional<std::string> str(std::string_view n) const;
  std::optional<double> num(std::string_view n) const;
  std::optional<std::int64_t> i64(std::string_view n) const;
};

/// Writes `g` as `/<g.name>` of `path`, replacing an older group of that name (see above).
/// file_error naming the file and object on any HDF5 failure; the old group is then left as it
/// was and the temporary one removed.
Result<void> replace_group(const std::filesystem::path& path, const GroupData& g);

/// Reads `/<name>` of `path` back whole; nullopt when the file has no such group. Opens the file
/// read-only (SWMR when a writer left it open). Attributes that are not scalar strings, float64
/// or int64, and datasets of other types, are skipped.
Result<std::optional<GroupData>> read_group(const std::filesystem::path& path,
                                            std::string_view name);

}  // namespace meltrig::dataset
