// The /analysis group of a capture (docs/dataset.md): per-token, per-phase and per-repetition
// tables, the baseline, software-power and thermal figures, and the complete result object as
// JSON text for reports. Written whole into a temporary group and renamed (dataset's
// replace_group): a reader sees the old group or the new one; rewriting replaces it.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "meltrig/analysis/analysis.hpp"
#include "meltrig/dataset/group_store.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::analysis {

/// Format version of the /analysis group (attribute `version`).
inline constexpr std::int64_t kAnalysisGroupVersion = 1;

/// The /analysis group as plain values: `result_json` is the complete result object as
/// `meltrig analyze --json` prints it (to_json(a) plus the caller's `sync`), stored as the
/// attribute `json`.
dataset::GroupData analysis_group(const Analysis& a, const nlohmann::json& result_json);

/// Writes /analysis into `path`, replacing an older one. file_error naming the file on failure
/// (a capture still running or left open by a crash is refused); the file is then unchanged.
Result<void> store(const std::filesystem::path& path, const Analysis& a,
                   const nlohmann::json& result_json);

}  // namespace meltrig::analysis
