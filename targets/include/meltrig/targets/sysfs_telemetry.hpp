// Telemetry from Linux sysfs files, shared by every target: LocalTarget reads the files itself,
// SshTarget and AdbTarget get them from `meltrig_probe --telemetry ROOT` on the device. Both end in
// the same list of (path relative to the sysfs root, first line) and the same conversion, so a
// fake sysfs tree in a test checks all of them. Names and units: docs/targets.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/targets/target.hpp"

namespace meltrig::targets {

/// (path relative to the sysfs root, first line of the file without '\n').
using SysfsEntries = std::vector<std::pair<std::string, std::string>>;

/// Glob patterns (relative to the sysfs root) of every file read; meltrig_probe.c holds a copy.
const std::vector<std::string>& sysfs_telemetry_patterns();

/// Reads every file matching the patterns under `root` (unreadable ones are left out).
SysfsEntries collect_sysfs(const std::filesystem::path& root);

/// Parses meltrig_probe --telemetry output: the clock line, then "PATH\tVALUE" lines.
/// parse_error "<source>:<line>: ..." on a malformed line.
Result<std::pair<ClockProbe, SysfsEntries>> parse_telemetry_dump(std::string_view text,
                                                                 std::string_view source);

/// The unit of power_supply current_now. Linux documents uA; some vendor drivers report mA.
enum class CurrentUnit { automatic, microamp, milliamp };

/// The battery current unit decision, kept across snapshots so a target's readings stay
/// consistent. Rule for `automatic`: the first non-zero current_now decides; |raw| < 20000 means
/// mA (20000 uA = 20 mA is less than any running phone draws, 20000 mA = 20 A is more than any
/// phone battery gives), otherwise uA. The decision is then fixed (an idle phone reporting uA may
/// later fall below 20000) and written into every reading's description.
struct CurrentUnitState {
  CurrentUnit setting = CurrentUnit::automatic;
  std::optional<CurrentUnit> chosen;  ///< microamp or milliamp once decided
  std::string reason;  ///< e.g. "auto: first non-zero current_now 1234 < 20000 -> mA"
};

/// Converts the files into readings (see docs/targets.md for names and units).
std::vector<TelemetryReading> readings_from_sysfs(const SysfsEntries& entries,
                                                  CurrentUnitState& current_unit);

}  // namespace meltrig::targets
