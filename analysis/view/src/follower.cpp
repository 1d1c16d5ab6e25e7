// CaptureFollower: see follower.hpp.
#include "meltrig/view/follower.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>

#include "meltrig/dataset/run_record.hpp"
#include "meltrig/targets/markers.hpp"

namespace meltrig::view {
namespace fs = std::filesystem;
using dataset::CaptureReader;
using dataset::SummaryStats;
using nlohmann::json;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Combines statistics over disjoint sample sets (mean weighted by valid counts).
SummaryStats combine(const SummaryStats& a, const SummaryStats& b) {
  if (a.valid == 0) return b;
  if (b.valid == 0) return a;
  const double n = static_cast<double>(a.valid) + b.valid;
  return {.mean = static_cast<float>(
              (static_cast<double>(a.mean) * a.valid + static_cast<double>(b.mean) * b.valid) / n),
          .min = std::min(a.min, b.min),
          .max = std::max(a.max, b.max),
          .valid = a.valid + b.valid};
}

PlotBucket merge(const PlotBucket& a, const PlotBucket& b) {
  const auto s = combine({a.mean, a.min, a.max, a.valid}, {b.mean, b.min, b.max, b.valid});
  return {s.mean, s.min, s.max, s.valid};
}

// A float as the double of its shortest decimal form, so JSON carries "0.3", not
// "0.30000001192092896".
json short_num(float v) {
  std::array<char, 32> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::strtod(std::string(buf.data(), r.ptr).c_str(), nullptr);
}

int log2_of(std::uint64_t power_of_two) {
  return std::countr_zero(power_of_two);
}

// Statistics of `channel` over [first, first + count): from the coarsest stored summary level
// that fits a whole aligned bucket, else from the samples.
Result<SummaryStats> channel_stats(const CaptureReader& r, const std::string& channel,
                                   std::uint64_t first, std::uint64_t count, std::uint64_t bucket) {
  if (count == bucket && r.has_summaries()) {
    int level = -1;
    for (const int k : r.summary_levels())
      if (k <= log2_of(bucket)) level = k;
    const auto stored = level >= 0 ? r.summary_entries(channel, level) : Result<std::uint64_t>{0};
    const std::uint64_t e0 = level >= 0 ? first >> level : 0, entries = count >> std::max(level, 0);
    if (level >= 0 && stored && e0 + entries <= *stored) {
      std::vector<SummaryStats> es(static_cast<std::size_t>(entries));
      if (auto rd = r.read_summary(channel, level, e0, es); !rd) return rd.error();
      SummaryStats s{.mean = kNaN, .min = kNaN, .max = kNaN, .valid = 0};
      for (const auto& e : es)
        s = combine(s, e);
      return s;
    }
  }
  return r.summarize(channel, first, count);
}

std::optional<fs::file_time_type> mtime_of(const fs::path& p) {
  std::error_code ec;
  const auto t = fs::last_write_time(p, ec);
  if (ec) return std::nullopt;
  return t;
}

}  // namespace

struct CaptureFollower::Impl {
  fs::path file;
  FollowerOptions opt;
  std::optional<CaptureReader> reader;  // released while the file's markers are read
  // What is plotted: `a` alone (a power channel or any float channel), or a x b (current x
  // voltage).
  std::string series = "power", unit = "W", a, b;
  double rate = 0.0;
  std::uint64_t n = 0;
  dataset::CaptureState state = dataset::CaptureState::running;
  std::string end_reason;
  std::vector<dataset::StoredCounter> counters;
  // The overview.
  std::uint64_t bucket = 1;
  std::vector<PlotBucket> buckets;
  std::size_t complete = 0;  // buckets whose samples were all written when they were computed
  std::size_t changed_from = 0;
  // The gap table, read incrementally.
  std::uint64_t gap_rows = 0, missing = 0;
  std::array<std::uint64_t, dataset::kGapKindCount + 1> gap_samples{};  // last: unknown kinds
  // Tokens.
  std::optional<fs::path> marker_file;
  std::string marker_source, marker_note;
  std::optional<fs::file_time_type> marker_mtime;
  std::uint64_t tokens = 0;
  std::deque<TokenMark> latest;
  std::string last_event;

  Result<void> choose_series();
  Result<PlotBucket> bucket_at(std::size_t j) const;
  Result<bool> update_buckets();
  Result<bool> update_gaps();
  bool take_state();
  void use_markers(const targets::MarkerLog& log, std::string source);
  bool poll_marker_file();
  bool poll_stored_markers();
  json points(std::size_t first) const;
  json status() const;
};

Result<void> CaptureFollower::Impl::choose_series() {
  const auto f32 = [&](std::string_view name) {
    const auto* c = reader->find_channel(name);
    return c != nullptr && c->type == dataset::SampleType::f32;
  };
  if (f32("power")) {
    a = "power";
  } else if (f32("current") && f32("voltage")) {
    a = "current", b = "voltage";
  } else {
    for (const auto& c : reader->channels()) {
      if (c.type == dataset::SampleType::f32) {
        a = series = c.name, unit = c.unit;
        break;
      }
    }
    if (a.empty()) {
      return Error{Errc::invalid_argument, file.string() + ": no float32 channel to plot"};
    }
  }
  return {};
}

Result<PlotBucket> CaptureFollower::Impl::bucket_at(std::size_t j) const {
  const std::uint64_t first = j * bucket, count = std::min(bucket, n - first);
  auto sa = channel_stats(*reader, a, first, count, bucket);
  if (!sa) return sa.error();
  if (b.empty()) return PlotBucket{sa->mean, sa->min, sa->max, sa->valid};
  auto sb = channel_stats(*reader, b, first, count, bucket);
  if (!sb) return sb.error();
  // Power of the bucket: mean current x mean voltage; the band: the current's extremes at that
  // voltage (exact for a regulated supply voltage; see docs/view.md).
  const float lo = sa->min * sb->mean, hi = sa->max * sb->mean;
  return PlotBucket{sa->mean * sb->mean, std::min(lo, hi), std::max(lo, hi),
                    std::min(sa->valid, sb->valid)};
}

Result<bool> CaptureFollower::Impl::update_buckets() {
  const std::uint64_t now = reader->samples_written();
  if (now == n && !buckets.empty()) return false;
  n = now;
  while (n > bucket * opt.max_points) {  // grow the bucket size: merge pairs, never re-read
    std::vector<PlotBucket> merged((buckets.size() + 1) / 2);
    for (std::size_t i = 0; i < buckets.size(); ++i)
      merged[i / 2] = i % 2 == 0 ? buckets[i] : merge(merged[i / 2], buckets[i]);
    buckets = std::move(merged);
    complete /= 2;
    bucket *= 2;
    changed_from = 0;
  }
  const auto total = static_cast<std::size_t>((n + bucket - 1) / bucket);
  buckets.resize(total);
  for (std::size_t j = complete; j < total; ++j) {
    auto pb = bucket_at(j);
    if (!pb) return pb.error();
    buckets[j] = *pb;
  }
  changed_from = std::min(changed_from, complete);
  complete = static_cast<std::size_t>(n / bucket);
  return true;
}

Result<bool> CaptureFollower::Impl::update_gaps() {
  constexpr std::uint64_t kBlock = 4096;
  const std::uint64_t rows = reader->gap_count();
  if (rows <= gap_rows) return false;
  std::vector<dataset::Gap> buf;
  while (gap_rows < rows) {
    buf.resize(static_cast<std::size_t>(std::min(kBlock, rows - gap_rows)));
    if (auto rd = reader->read_gaps(gap_rows, buf); !rd) return rd.error();
    for (const auto& g : buf) {
      const auto kind =
          std::min<std::size_t>(static_cast<std::size_t>(g.kind), dataset::kGapKindCount);
      gap_samples[kind] += g.count;
      if (g.kind != dataset::GapKind::duplicate_dropped) missing += g.count;
    }
    gap_rows += buf.size();
  }
  return true;
}

bool CaptureFollower::Impl::take_state() {
  bool changed = reader->state() != state || reader->end_reason() != end_reason;
  state = reader->state();
  end_reason = reader->end_reason();
  const auto& now = reader->counters();
  changed = changed || now.size() != counters.size() ||
            !std::equal(now.begin(), now.end(), counters.begin(), [](const auto& x, const auto& y) {
              return x.name == y.name && x.value == y.value;
            });
  counters = now;
  return changed;
}

void CaptureFollower::Impl::use_markers(const targets::MarkerLog& log, std::string source) {
  marker_source = std::move(source);
  marker_note.clear();
  tokens = 0;
  latest.clear();
  last_event.clear();
  const std::int64_t t0 = log.events.empty() ? 0 : log.events.front().t_ns;
  for (const auto& e : log.events) {
    last_event = std::string(targets::kind_name(e.kind));
    if (e.kind != targets::MarkerKind::token) continue;
    ++tokens;
    latest.push_back({e.index, static_cast<double>(e.t_ns - t0) * 1e-9});
    if (latest.size() > opt.latest_tokens) latest.pop_front();
  }
}

// The marker file written beside a running capture: re-read whenever it changed (bounded size).
bool CaptureFollower::Impl::poll_marker_file() {
  const auto t = mtime_of(*marker_file);
  if (!t || t == marker_mtime) return false;
  marker_mtime = t;
  std::error_code ec;
  const auto size = fs::file_size(*marker_file, ec);
  if (ec || size > opt.max_marker_bytes) {
    marker_note = marker_file->string() + (ec ? ": cannot read" : ": too large to follow");
    return true;
  }
  auto log = targets::read_marker_file(*marker_file);
  if (!log) {
    marker_note = log.error().message;  // e.g. the header is not written yet
    return true;
  }
  use_markers(*log, marker_file->string());
  return true;
}

// Markers stored in a finished capture (added after the writer closed it): read once the file
// has not changed for a second, with the SWMR reader released (HDF5 refuses a second, plain open
// of a file this process holds in SWMR mode).
bool CaptureFollower::Impl::poll_stored_markers() {
  using namespace std::chrono_literals;
  if (!reader) {  // a reopen that failed (e.g. a writer held the file): try again
    if (auto r = CaptureReader::open(file)) reader = std::move(*r);
  }
  const auto t = mtime_of(file);
  if (!t || t == marker_mtime || fs::file_time_type::clock::now() - *t < 1s) return false;
  marker_mtime = t;
  reader.reset();
  auto names = dataset::list_markers(file);
  if (names && !names->empty()) {
    const bool runner = std::ranges::find(*names, "runner") != names->end();
    const std::string name = runner ? "runner" : names->front();
    if (auto log = dataset::read_markers(file, name)) use_markers(*log, "/markers/" + name);
  }
  if (auto r = CaptureReader::open(file)) reader = std::move(*r);
  return true;
}

json CaptureFollower::Impl::points(std::size_t first) const {
  json t = json::array(), mean = json::array(), lo = json::array(), hi = json::array();
  for (std::size_t j = first; j < buckets.size(); ++j) {
    const auto& pb = buckets[j];
    t.push_back(static_cast<double>(j * bucket) / rate);
    const bool any = pb.valid > 0;
    mean.push_back(any ? short_num(pb.mean) : json(nullptr));
    lo.push_back(any ? short_num(pb.min) : json(nullptr));
    hi.push_back(any ? short_num(pb.max) : json(nullptr));
  }
  return {{"bucket", bucket}, {"first", first}, {"t", t}, {"mean", mean}, {"min", lo}, {"max", hi}};
}

json CaptureFollower::Impl::status() const {
  json c = json::object();
  for (const auto& sc : counters)
    c[sc.name] = sc.value;
  json kinds = json::object();
  for (std::size_t k = 0; k < gap_samples.size(); ++k) {
    if (gap_samples[k] == 0) continue;
    kinds[k < dataset::kGapKindCount ? dataset::kGapKindNames[k] : "unknown"] = gap_samples[k];
  }
  json tl = json::array();
  for (const auto& tm : latest)
    tl.push_back({{"index", tm.index}, {"t_s", tm.t_s}});
  return {{"type", "update"},
          {"file", file.filename().string()},
          {"series", series},
          {"unit", unit},
          {"sample_rate_hz", rate},
          {"samples_written", n},
          {"duration_s", rate > 0 ? static_cast<double>(n) / rate : 0.0},
          {"state", dataset::capture_state_name(state)},
          {"end_reason", end_reason},
          {"counters", c},
          {"gaps", {{"rows", gap_rows}, {"missing_samples", missing}, {"samples_by_kind", kinds}}},
          {"tokens",
           {{"source", marker_source},
            {"note", marker_note},
            {"count", tokens},
            {"last_event", last_event},
            {"latest", tl}}}};
}

Result<CaptureFollower> CaptureFollower::open(const fs::path& file, FollowerOptions options) {
  auto reader = CaptureReader::open(file);
  if (!reader) return reader.error();
  auto impl = std::make_unique<Impl>();
  impl->file = file;
  impl->opt = std::move(options);
  impl->opt.max_points = std::max<std::size_t>(impl->opt.max_points, 2);
  impl->rate = reader->sample_rate_hz();
  impl->reader = std::move(*reader);
  if (auto s = impl->choose_series(); !s) return s.error();
  if (impl->opt.markers) {
    impl->marker_file = impl->opt.markers;
  } else if (fs::path side = fs::path(file) += ".markers"; fs::exists(side)) {
    impl->marker_file = side;
  }
  CaptureFollower f(std::move(impl));
  if (auto p = f.poll(); !p) return p.error();
  return f;
}

Result<bool> CaptureFollower::poll() {
  Impl& m = *impl_;
  bool changed = false;
  if (m.reader) {
    if (auto r = m.reader->refresh(); !r) return r.error();
    changed = m.take_state();
    auto b = m.update_buckets();
    if (!b) return b.error();
    auto g = m.update_gaps();
    if (!g) return g.error();
    changed = changed || *b || *g;
  }
  if (m.marker_file) {
    changed = m.poll_marker_file() || changed;
  } else if (m.state != dataset::CaptureState::running) {
    changed = m.poll_stored_markers() || changed;
  }
  return changed;
}

CaptureFollower::CaptureFollower(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CaptureFollower::CaptureFollower(CaptureFollower&&) noexcept = default;
CaptureFollower& CaptureFollower::operator=(CaptureFollower&&) noexcept = default;
CaptureFollower::~CaptureFollower() = default;

std::uint64_t CaptureFollower::samples_written() const {
  return impl_->n;
}
dataset::CaptureState CaptureFollower::state() const {
  return impl_->state;
}
std::uint64_t CaptureFollower::bucket_samples() const {
  return impl_->bucket;
}
const std::vector<PlotBucket>& CaptureFollower::buckets() const {
  return impl_->buckets;
}
std::uint64_t CaptureFollower::token_count() const {
  return impl_->tokens;
}
const std::string& CaptureFollower::series() const {
  return impl_->series;
}

std::size_t CaptureFollower::take_changed_from() {
  const std::size_t from = impl_->changed_from;
  impl_->changed_from = impl_->buckets.size();
  return std::min(from, impl_->buckets.size());
}

std::string CaptureFollower::update_json(std::size_t first_bucket) const {
  json j = impl_->status();
  j["points"] = impl_->points(std::min(first_bucket, impl_->buckets.size()));
  return j.dump();
}

std::string CaptureFollower::update_since_json(std::uint64_t sample_index) const {
  return update_json(static_cast<std::size_t>(
      std::min<std::uint64_t>(sample_index / impl_->bucket, impl_->buckets.size())));
}

std::string CaptureFollower::status_json() const {
  json j = impl_->status();
  j["type"] = "status";
  return j.dump();
}

}  // namespace meltrig::view
