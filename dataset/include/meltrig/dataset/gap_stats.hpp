// What a capture's gap table says, read in blocks of rows (bounded memory for any table size):
// rows and samples per gap kind, samples missing, and the first few rows. For `meltrig inspect`
// and any other reader deciding whether to trust a file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/fw/result.hpp"

namespace meltrig::dataset {

struct GapStats {
  std::uint64_t rows = 0;
  std::array<std::uint64_t, 256> events{};   ///< rows per kind (index = GapKind value)
  std::array<std::uint64_t, 256> samples{};  ///< samples per kind
  std::uint64_t missing = 0;                 ///< samples covered by kinds that cover rows
  std::vector<Gap> first_rows;               ///< the first rows, in table order
};

/// Reads the whole gap table of `r`, `block_rows` rows at a time, keeping the first
/// `first_rows_kept` rows.
Result<GapStats> gap_stats(const CaptureReader& r, std::size_t first_rows_kept,
                           std::uint64_t block_rows = 4096);

}  // namespace meltrig::dataset
