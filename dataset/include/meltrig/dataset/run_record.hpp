// RunRecord: the groups added to a capture file AFTER the capture finished: runner markers,
// device telemetry, small attribute groups (e.g. the simulated bench's /truth) and float64 series
// (e.g. MELT's host arrival times). A capture is written in SWMR mode, which forbids new objects
// while it runs, so these are added by reopening the closed file read-write (H5Fopen), writing, and
// closing. A capture still being written, or left open by a crash, cannot be opened this way
// (file_error naming the file; `h5clear -s FILE` clears a crashed writer's mark).
// Within one process HDF5 shares an already open file instead of refusing it, so finish() the
// CaptureWriter before opening its file here.
//
// clang-format off
// Layout (Markdown for docs/dataset.md):
// | Path | Kind | Type | Content |
// |---|---|---|---|
// | `/markers/<name>/` | group + attrs | | one marker source. Attrs: `clock` (str: clock of every `t_ns`, e.g. "monotonic", "realtime"), `source` (str: file it came from), `header_keys`, `header_values` (str[n]: the source's header key=value pairs, in order), `issue_count` (int64), `issues` (str[issue_count]: "file:line: message" per malformed line skipped), `incomplete_tail` (int64: 1 if the source's last line was cut short and dropped), `kind_names` (str[]: every kind name) |
// | `/markers/<name>/events` | dataset, 1-D | compound {`t_ns` i64, `kind` str, `index` i64, `code` u64, `bits` u32, `chip_ns` i64, `value` f64, `label` str, `text` str, `line` u64} (str = variable-length UTF-8) | one row per event in the source's order (importers: time order). `kind` is the event name ("run.start", "load.start", "prefill.start", "token", "sync.start", "user", ...); `index` = token index or prompt token count, else -1; `code`/`bits`/`chip_ns` for sync events; `value` NaN unless a user event gave one; `label` = run id / status / model / user event name; `line` = 1-based line in the source (0 if none) |
// | `/markers/<name>/clocks` | dataset, 1-D | compound {`mono_ns` i64, `boot_ns` i64, `real_ns` i64, `line` u64} | clock triples read on the device at one instant |
// | `/telemetry/<name>` | dataset, 1-D | compound {`t_ns` i64, `value` f64} | one series; a name with '/' makes nested groups (`/telemetry/thermal/soc`). Attrs `unit`, `clock`, `description` (str) |
// | `/<group>` (e.g. `/truth`) | group + attrs | | write_attribute_group: scalar str / float64 / int64 attributes |
// | `/<path>` (e.g. `/monsoon_host_time/t_rel_s`) | dataset, 1-D | float64 | write_series: chunked, shuffle+deflate-1; given attrs |
// clang-format on
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/dataset/dataset_types.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/targets/clock_probe.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/telemetry.hpp"

namespace meltrig::dataset {

/// A finished HDF5 file reopened read-write to add extras; closes on destruction. Not thread-safe.
/// Every error is file_error (HDF5) or invalid_argument (a bad name, a NUL byte in a string) and
/// names the file and the object.
class RunRecord {
 public:
  /// Opens an existing file read-write. not_found if it does not exist; file_error if HDF5
  /// refuses (not HDF5, still open for writing, read-only).
  static Result<RunRecord> open(const std::filesystem::path& path);

  RunRecord(RunRecord&&) noexcept;
  RunRecord& operator=(RunRecord&&) noexcept;
  ~RunRecord();

  /// Writes /markers/<name>/ (see the layout above). `name` is one HDF5 link name (no '/').
  /// invalid_argument if the group exists already or a string holds a NUL byte (HDF5 strings
  /// cannot), naming the source line.
  Result<void> write_markers(std::string_view name, const targets::MarkerLog& log);

  /// Writes every series as /<group>/<series name> (default /telemetry). invalid_argument if a
  /// series exists already, has a bad name (empty part, "." or ".."), or t_ns and value differ in
  /// length.
  Result<void> write_telemetry(const targets::Telemetry& telemetry,
                               std::string_view group = "telemetry");

  /// Creates the group `group_path` (intermediate groups too, e.g. "/truth" or "/sim/truth") if
  /// absent and writes `attrs` on it as scalar attributes (invalid_argument if one exists).
  Result<void> write_attribute_group(std::string_view group_path,
                                     const std::vector<Attribute>& attrs);

  /// Writes a new 1-D float64 dataset at `dataset_path` (intermediate groups created) with
  /// scalar attributes `attrs`; chunked, shuffle+deflate-1.
  Result<void> write_series(std::string_view dataset_path, std::span<const double> values,
                            const std::vector<Attribute>& attrs);

  /// As write_series, for int64 values (nanosecond timestamps, which float64 cannot hold exactly).
  Result<void> write_series_i64(std::string_view dataset_path, std::span<const std::int64_t> values,
                                const std::vector<Attribute>& attrs);

  /// Writes clock probes as five int64 series under `group_path` (one row per probe):
  /// host_t0_ns, device_mono_ns, device_boot_ns, device_real_ns, host_t3_ns, unit "ns";
  /// `host_clock` names the host clock of t0/t3 in their descriptions.
  Result<void> write_clock_probes(std::string_view group_path,
                                  std::span<const targets::ClockProbe> probes,
                                  std::string_view host_clock);

  /// Closes the file, reporting HDF5's final write error if any. Further calls fail.
  Result<void> close();

 private:
  Result<void> write_column(std::string_view dataset_path, std::int64_t file_type,
                            std::int64_t mem_type, std::size_t rows, const void* data,
                            const std::vector<Attribute>& attrs);
  struct Impl;
  explicit RunRecord(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// One-call forms: open `path`, write, close.
Result<void> write_markers(const std::filesystem::path& path, std::string_view name,
                           const targets::MarkerLog& log);
Result<void> write_telemetry(const std::filesystem::path& path,
                             const targets::Telemetry& telemetry);
Result<void> write_attribute_group(const std::filesystem::path& path, std::string_view group_path,
                                   const std::vector<Attribute>& attrs);
Result<void> write_series(const std::filesystem::path& path, std::string_view dataset_path,
                          std::span<const double> values, const std::vector<Attribute>& attrs);

/// Reads /markers/<name>/ back into a MarkerLog (issues are rebuilt from their "file:line:
/// message" strings). not_found if the file or group is missing.
Result<targets::MarkerLog> read_markers(const std::filesystem::path& path, std::string_view name);
/// The names under /markers (empty if there is none), sorted.
Result<std::vector<std::string>> list_markers(const std::filesystem::path& path);
/// Reads every dataset under /telemetry back (series in name order, nested names joined by '/').
Result<targets::Telemetry> read_telemetry(const std::filesystem::path& path);

}  // namespace meltrig::dataset
