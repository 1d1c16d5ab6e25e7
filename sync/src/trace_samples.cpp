// TraceSamples: a trace's samples in memory, or paged from a SampleSource (evidence.hpp).
#include <algorithm>
#include <cmath>
#include <limits>

#include "meltrig/sync/evidence.hpp"

namespace meltrig::sync {

/// The pages held, least recently entered evicted first. `hot` is the page the previous access
/// used: estimators read neighbouring samples, so most accesses stay inline (evidence.hpp).
struct TraceSamples::Cache {
  struct Page {
    std::uint64_t number = 0;
    std::uint64_t used = 0;
    std::vector<float> samples;
  };
  std::shared_ptr<SampleSource> source;
  std::size_t max_pages = 1;
  std::vector<Page> pages;
  std::size_t last = 0;
  std::uint64_t tick = 0;
  std::size_t peak = 0;
  bool failed = false;
  Hot hot;  ///< pages[last], for the inline fast path

  const Page& load(std::uint64_t number) {
    std::size_t slot = pages.size();
    if (pages.size() >= max_pages) {
      slot = static_cast<std::size_t>(
          std::min_element(pages.begin(), pages.end(),
                           [](const Page& a, const Page& b) { return a.used < b.used; }) -
          pages.begin());
    } else {
      pages.emplace_back();
      peak = std::max(peak, pages.size());
    }
    Page& p = pages[slot];
    const std::uint64_t first = number << kPageBits;
    const std::uint64_t n =
        std::min<std::uint64_t>(std::uint64_t{1} << kPageBits, source->size() - first);
    p.number = number;
    p.samples.resize(static_cast<std::size_t>(n));
    if (!source->load(first, std::span<float>(p.samples))) {
      failed = true;
      std::fill(p.samples.begin(), p.samples.end(), std::numeric_limits<float>::quiet_NaN());
    }
    last = slot;
    return p;
  }

  float at(std::size_t i) {
    const std::uint64_t number = static_cast<std::uint64_t>(i) >> kPageBits;
    if (last >= pages.size() || pages[last].number != number) {
      auto it = std::find_if(pages.begin(), pages.end(),
                             [&](const Page& p) { return p.number == number; });
      if (it != pages.end())
        last = static_cast<std::size_t>(it - pages.begin());
      else
        load(number);
    }
    // recency counts from the moves between pages (accesses within the hot page skip this)
    Page& p = pages[last];
    p.used = ++tick;
    hot = {p.samples.data(), static_cast<std::size_t>(p.number << kPageBits), p.samples.size()};
    return p.samples[i & ((std::size_t{1} << kPageBits) - 1)];
  }
};

TraceSamples::TraceSamples(std::shared_ptr<SampleSource> source, std::size_t max_pages)
    : n_(static_cast<std::size_t>(source->size())), cache_(std::make_shared<Cache>()) {
  cache_->source = std::move(source);
  cache_->max_pages = std::max<std::size_t>(1, max_pages);
  hot_ = &cache_->hot;
}

float TraceSamples::paged(std::size_t i) const {
  return cache_->at(i);
}

bool TraceSamples::failed() const {
  return cache_ != nullptr && cache_->failed;
}

std::size_t TraceSamples::peak_pages() const {
  return cache_ != nullptr ? cache_->peak : 0;
}

}  // namespace meltrig::sync
