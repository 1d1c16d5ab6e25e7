// A comparison of an analysis with the simulated bench's /truth group of the same file, printed
// apart from the estimates (which never read /truth).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "meltrig/analysis/analysis.hpp"

namespace meltrig::analysis {

/// Per-token relative energy errors (percent, |estimate - truth| / truth) against
/// /truth/tokens/supply_energy_j, matched by (repetition, index); empty when the file has no such
/// truth.
std::vector<double> token_errors_pct(const std::filesystem::path& path, const Analysis& a);

/// Readable lines: token error median / p99 / max and the phases against /truth/phases, or a
/// line saying the file has no truth.
std::string compare_with_truth(const std::filesystem::path& path, const Analysis& a);

}  // namespace meltrig::analysis
