// Stores a MELT run (targets::melt::read_run) as one meltrig capture:
// - the Monsoon trace -> a capture with monitor group "monsoon", channels current (A) and
//   voltage (V) float32 at a nominal 5000 Hz (the Monsoon HVPM's rate under PyMonsoon; MELT
//   recorded no rate), counter `malformed_rows`. MELT stamped samples with host arrival time per
//   USB packet, so the original stamps are kept row for row in /monsoon_host_time/t_rel_s
//   (float64, s), with `.t_monsoon` as the group's start_unix_s attribute;
// - each named marker log -> /markers/<group>.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "meltrig/dataset/dataset_types.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/targets/melt_import.hpp"

namespace meltrig::rig {

/// MELT's Monsoon HVPM under PyMonsoon samples at a nominal 5 kHz; MELT recorded no rate.
inline constexpr double kMeltMonsoonRateHz = 5000.0;

/// Writes `output` (which must not exist) from `imported`; `invocation` is appended to the root
/// attributes (e.g. the command line). On failure the partial file is removed.
Result<void> store_melt_import(const std::filesystem::path& output,
                               const targets::melt::MeltImport& imported,
                               const std::vector<dataset::Attribute>& invocation);

/// "2024-01-02T03:04:05.678901Z" (UTC, microseconds) from seconds since the epoch.
std::string iso8601_utc_us(double unix_s);

}  // namespace meltrig::rig
