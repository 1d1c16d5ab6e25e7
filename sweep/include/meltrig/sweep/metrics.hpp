// What a sweep asks of the analysis: the metrics of one finished run, and the summary table over
// the runs of a sweep. Kept out of rig/ (which never depends on the analysis); the sweep engine
// gets analyse_run as rig::SweepOptions::analyse.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "meltrig/rig/journal.hpp"
#include "meltrig/rig/plan.hpp"

namespace meltrig::sweep {

/// Metrics of one finished run from its dataset: energy per token gross and net of the
/// baseline (the plan's baseline windows), decode tokens/s, the baseline, the sync method and
/// bound used. A failure is in RunMetrics::error (the other fields NaN).
rig::RunMetrics analyse_run(const std::filesystem::path& file, const rig::Plan& plan);

/// Per configuration (device x workload): mean and 95 % Student t interval of J/token (gross and
/// net) and tokens/s over complete runs, as a text table.
std::string summary_table(const std::vector<rig::JournalEntry>& entries);

}  // namespace meltrig::sweep
