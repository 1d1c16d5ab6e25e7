// Gap-table statistics: see gap_stats.hpp.
#include "meltrig/dataset/gap_stats.hpp"

#include <algorithm>
#include <span>

namespace meltrig::dataset {

Result<GapStats> gap_stats(const CaptureReader& r, std::size_t first_rows_kept,
                           std::uint64_t block_rows) {
  GapStats st;
  st.rows = r.gap_count();
  block_rows = std::max<std::uint64_t>(block_rows, 1);
  std::vector<Gap> block(static_cast<std::size_t>(std::min(st.rows, block_rows)));
  for (std::uint64_t at = 0; at < st.rows;) {
    const auto n = static_cast<std::size_t>(std::min(st.rows - at, block_rows));
    if (auto res = r.read_gaps(at, std::span(block.data(), n)); !res) return res.error();
    for (std::size_t i = 0; i < n; ++i) {
      const auto kind = static_cast<std::uint8_t>(block[i].kind);
      ++st.events[kind];
      st.samples[kind] += block[i].count;
      if (block[i].kind != GapKind::duplicate_dropped) st.missing += block[i].count;
      if (st.first_rows.size() < first_rows_kept) st.first_rows.push_back(block[i]);
    }
    at += n;
  }
  return st;
}

}  // namespace meltrig::dataset
