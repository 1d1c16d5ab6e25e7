// Clock sync of a capture file: every piece of evidence the file holds gathered into SyncInputs
// (the power trace paged in as the estimators read it, the runner's markers and clock triples,
// logic-input edges, clock probes, relay edges), the maps fitted by synchronise(), and the /sync
// group that stores them (docs/dataset.md, docs/sync.md "From a file").
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/dataset/group_store.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/sync/sync.hpp"

namespace meltrig::sync {

/// Format version of the /sync group (attribute `version`).
inline constexpr std::int64_t kSyncGroupVersion = 1;
/// The name a marker `user` event carries when the runner toggled a logic line (its `value` is
/// the line, 0-7 for PPK2 D0-D7; absent = 0) right after reading its clock.
inline constexpr std::string_view kLogicToggleEvent = "gpio";

/// The evidence of one capture file, ready for synchronise(). The trace reads its samples from
/// the file a page at a time (TraceSamples over `trace_source`); the logic input holds only the
/// edges, scanned from the logic channel in blocks. Memory is bounded whatever the file's length
/// (docs/sync.md, "From a file").
struct FileEvidence {
  std::filesystem::path file;
  SyncInputs inputs;
  std::shared_ptr<SampleSource> trace_source;        ///< the file's trace channel
  std::shared_ptr<std::vector<float>> trace_memory;  ///< trace_in_memory: the whole channel
  std::string markers_group;                         ///< "runner", or the first set under /markers
  std::string trace_channel;                         ///< "current" or "power"
  /// One line per source: what the file held ("markers/runner: 2 sync pulses, 160 tokens", ...).
  std::vector<std::string> found;
};

/// Reads every evidence source of `path` (docs/sync.md "From a file"). The trace stays in the
/// file (paged in as the estimators read it: at most 16 MiB of samples held). Fails
/// (invalid_argument, or the reader's error) naming the file: not a capture, a capture still
/// running or left by a crash, no current or power channel, no markers, markers on a clock that is
/// not monotonic, boottime or realtime. Reads only.
/// How the trace of a file is read for its sync.
struct FileSyncOptions {
  /// Pages of 65,536 samples held at once (TraceSamples): 64 = 16 MiB whatever the file's length.
  std::size_t trace_pages = 64;
  /// Read the whole trace into memory first (4 bytes a sample), as before paging: for
  /// comparisons (`meltrig bench sync --file F --in-memory`); the maps are the same.
  bool trace_in_memory = false;
};
Result<FileEvidence> gather_evidence(const std::filesystem::path& path,
                                     const FileSyncOptions& opt = {});

/// The maps of one file and what they were made from, as computed or as read back from /sync.
struct FileSync {
  std::string method;
  DeviceClock marks_clock = DeviceClock::monotonic;
  std::vector<ClockMap> maps;
  std::vector<SyncPoint> monitor_evidence;
  std::vector<SyncPoint> host_evidence;
  SyncDiagnostics diag;
  std::string markers_group;
  std::vector<std::string> found;  ///< FileEvidence::found

  /// Monitor seconds (sample index / nominal rate) and the map's bound there, in seconds, of a
  /// device time on the clock named `clock`; nullopt outside the map or on another clock.
  std::optional<std::pair<double, double>> monitor_seconds(std::string_view clock,
                                                           std::int64_t device_ns) const;
  /// The JSON `sync` object of issue #12 (docs/sync.md): method, offset_s, drift_ppm,
  /// residual_rms_s, bound_s, segments [{device_clock, device_start_ns, device_end_ns, offset_s,
  /// rate, residual_rms_s, bound_s, evidence}] (the maps to the monitor).
  nlohmann::json to_json() const;
  /// A few readable lines (method, each segment, diagnostics).
  std::string summary() const;
};

/// gather_evidence + synchronise. A file whose evidence supports no map fails naming the file
/// and each missing source. Reads only.
Result<FileSync> sync_file(const std::filesystem::path& path, const FileSyncOptions& opt = {});

/// The /sync group as plain values (layout in docs/dataset.md).
dataset::GroupData sync_group(const FileSync& s);
/// Writes /sync into `path`, replacing an older one (temporary group, then rename).
Result<void> store(const std::filesystem::path& path, const FileSync& s);
/// Reads /sync back (maps, evidence, diagnostics); nullopt when the file has none. A /sync of
/// another format version is refused naming the file.
Result<std::optional<FileSync>> read_stored(const std::filesystem::path& path);

}  // namespace meltrig::sync
