// Input helpers: see inputs.hpp.
#include "meltrig/analysis/inputs.hpp"

#include <algorithm>
#include <cmath>

namespace meltrig::analysis {

SampleSeries series_from_span(std::span<const float> p, double rate_hz, std::size_t chunk,
                              std::uint64_t first_index) {
  SampleSeries s;
  s.rate_hz = rate_hz;
  chunk = std::max<std::size_t>(chunk, 1);
  s.for_each_chunk = [p, chunk, first_index](const ChunkSink& sink) -> Result<void> {
    for (std::size_t i = 0; i < p.size(); i += chunk) {
      auto part = p.subspan(i, std::min(chunk, p.size() - i));
      auto r = sink(first_index + i, part);
      if (!r) return r;
    }
    return {};
  };
  return s;
}

double value_at(const TimedSeries& s, double t) {
  if (s.t_s.empty()) return std::numeric_limits<double>::quiet_NaN();
  auto it = std::upper_bound(s.t_s.begin(), s.t_s.end(), t);
  if (it == s.t_s.begin()) return s.value.front();
  if (it == s.t_s.end()) return s.value.back();
  auto k = static_cast<std::size_t>(it - s.t_s.begin());
  double t0 = s.t_s[k - 1], t1 = s.t_s[k];
  double f = t1 > t0 ? (t - t0) / (t1 - t0) : 0.0;
  return s.value[k - 1] + f * (s.value[k] - s.value[k - 1]);
}

}  // namespace meltrig::analysis
