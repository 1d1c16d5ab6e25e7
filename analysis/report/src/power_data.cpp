// Power levels for plotting: summaries of the power channel, or of current and voltage combined.
#include "meltrig/report/power_data.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace meltrig::report {

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The stored entries of a level, then computed ones for the tail the file has not summarised.
Result<std::vector<dataset::SummaryStats>> channel_entries(const dataset::CaptureReader& r,
                                                           const std::string& ch, int level,
                                                           std::uint64_t first,
                                                           std::uint64_t count) {
  std::vector<dataset::SummaryStats> out(count);
  std::uint64_t stored = 0;
  if (r.has_summaries()) {
    auto e = r.summary_entries(ch, level);
    if (e) stored = *e;
  }
  const std::uint64_t from_file = first < stored ? std::min(stored - first, count) : 0;
  if (from_file > 0) {
    if (auto res = r.read_summary(ch, level, first, std::span(out.data(), from_file)); !res) {
      return res.error();
    }
  }
  const std::uint64_t per = std::uint64_t{1} << level, n = r.samples_written();
  for (std::uint64_t k = from_file; k < count; ++k) {
    const std::uint64_t start = (first + k) * per;
    auto s = r.summarize(ch, start, std::min(start + per, n) - start);
    if (!s) return s.error();
    out[k] = *s;
  }
  return out;
}

Result<PowerEntries> raw_power(const dataset::CaptureReader& r, std::uint64_t first,
                               std::uint64_t count) {
  PowerEntries p;
  p.mean.resize(count);
  if (r.find_channel("power") != nullptr) {
    if (auto res = r.read("power", first, std::span(p.mean)); !res) return res.error();
    return p;
  }
  std::vector<float> v(count);
  if (auto res = r.read("current", first, std::span(p.mean)); !res) return res.error();
  if (auto res = r.read("voltage", first, std::span(v)); !res) return res.error();
  for (std::size_t i = 0; i < count; ++i)
    p.mean[i] *= v[i];
  return p;
}

}  // namespace

Result<PowerEntries> read_power(const dataset::CaptureReader& r, int level, std::uint64_t first,
                                std::uint64_t count) {
  if (level == 0) return raw_power(r, first, count);
  PowerEntries p;
  if (r.find_channel("power") != nullptr) {
    auto e = channel_entries(r, "power", level, first, count);
    if (!e) return e.error();
    for (const dataset::SummaryStats& s : *e) {
      p.mean.push_back(s.valid > 0 ? s.mean : kNaN);
      p.min.push_back(s.valid > 0 ? s.min : kNaN);
      p.max.push_back(s.valid > 0 ? s.max : kNaN);
    }
    return p;
  }
  auto i = channel_entries(r, "current", level, first, count);
  if (!i) return i.error();
  auto v = channel_entries(r, "voltage", level, first, count);
  if (!v) return v.error();
  for (std::size_t k = 0; k < count; ++k) {
    const dataset::SummaryStats &a = (*i)[k], &b = (*v)[k];
    if (a.valid == 0 || b.valid == 0) {
      p.mean.push_back(kNaN);
      p.min.push_back(kNaN);
      p.max.push_back(kNaN);
      continue;
    }
    const std::array<float, 4> c{a.min * b.min, a.min * b.max, a.max * b.min, a.max * b.max};
    p.mean.push_back(a.mean * b.mean);
    p.min.push_back(*std::min_element(c.begin(), c.end()));
    p.max.push_back(*std::max_element(c.begin(), c.end()));
  }
  return p;
}

Result<std::vector<float>> read_channel_means(const dataset::CaptureReader& r,
                                              const std::string& channel, int level,
                                              std::uint64_t first, std::uint64_t count) {
  std::vector<float> out(count);
  if (level == 0) {
    if (auto res = r.read(channel, first, std::span(out)); !res) return res.error();
    return out;
  }
  auto e = channel_entries(r, channel, level, first, count);
  if (!e) return e.error();
  for (std::size_t k = 0; k < count; ++k)
    out[k] = (*e)[k].valid > 0 ? (*e)[k].mean : kNaN;
  return out;
}

std::vector<int> plot_levels(const dataset::CaptureReader& r) {
  std::vector<int> levels{0};
  const std::vector<int> stored = r.has_summaries() ? r.summary_levels() : std::vector<int>{};
  for (int l : stored.empty() ? std::vector<int>{8, 12, 16, 20, 24} : stored)
    levels.push_back(l);
  return levels;
}

int finest_level_within(const dataset::CaptureReader& r, std::uint64_t max_entries) {
  const auto levels = plot_levels(r);
  for (int l : levels) {
    const std::uint64_t per = std::uint64_t{1} << l;
    if ((r.samples_written() + per - 1) / per <= max_entries) return l;
  }
  return levels.back();
}

std::vector<EntrySpan> plan_windows(std::uint64_t total, std::span<const std::uint64_t> focus,
                                    std::uint64_t budget) {
  if (total <= budget) return {{0, total}};
  if (focus.empty() || budget == 0) return {};
  const std::uint64_t width = std::max<std::uint64_t>(1, budget / focus.size());
  std::vector<EntrySpan> w;
  for (std::uint64_t f : focus) {
    const std::uint64_t a = std::min(f, total) > width / 2 ? std::min(f, total) - width / 2 : 0;
    const std::uint64_t b = std::min(total, a + width);
    w.push_back({a, b - a});
  }
  std::sort(w.begin(), w.end(),
            [](const EntrySpan& x, const EntrySpan& y) { return x.first < y.first; });
  std::vector<EntrySpan> merged;
  for (const EntrySpan& s : w) {
    if (!merged.empty() && s.first <= merged.back().first + merged.back().count) {
      EntrySpan& m = merged.back();
      m.count = std::max(m.first + m.count, s.first + s.count) - m.first;
    } else if (s.count > 0) {
      merged.push_back(s);
    }
  }
  return merged;
}

std::string base64(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    if (n > 1) v |= std::uint32_t{bytes[i + 1]} << 8;
    if (n > 2) v |= bytes[i + 2];
    for (std::size_t k = 0; k < 4; ++k)
      out += k <= n ? kDigits[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

namespace {

std::string floats_b64(const std::vector<float>& v) {
  static_assert(std::endian::native == std::endian::little, "float32 arrays are little-endian");
  std::vector<std::uint8_t> bytes(v.size() * sizeof(float));
  std::memcpy(bytes.data(), v.data(), bytes.size());
  return base64(bytes);
}

// Focus times as entries of a level, thinned evenly to at most `max` (order kept).
std::vector<std::uint64_t> focus_entries(std::span<const double> focus_s, double rate,
                                         std::uint64_t per, std::size_t max) {
  std::vector<std::uint64_t> f;
  const std::size_t step = focus_s.size() > max ? (focus_s.size() + max - 1) / max : 1;
  for (std::size_t k = 0; k < focus_s.size(); k += step) {
    if (std::isfinite(focus_s[k]) && focus_s[k] >= 0) {
      f.push_back(static_cast<std::uint64_t>(focus_s[k] * rate) / per);
    }
  }
  return f;
}

Result<nlohmann::json> level_json(const dataset::CaptureReader& r, int level,
                                  std::span<const double> focus_s, std::uint64_t budget,
                                  std::size_t max_focus) {
  const std::uint64_t per = std::uint64_t{1} << level, n = r.samples_written();
  const std::uint64_t total = (n + per - 1) / per;
  const auto focus = focus_entries(focus_s, r.sample_rate_hz(), per, max_focus);
  nlohmann::json windows = nlohmann::json::array();
  for (const EntrySpan& s : plan_windows(total, focus, budget)) {
    auto p = read_power(r, level, s.first, s.count);
    if (!p) return p.error();
    nlohmann::json w = {{"first", s.first}, {"n", s.count}, {"mean", floats_b64(p->mean)}};
    if (level > 0) {
      w["min"] = floats_b64(p->min);
      w["max"] = floats_b64(p->max);
    }
    windows.push_back(std::move(w));
  }
  return nlohmann::json{
      {"level", level}, {"per", per}, {"whole", total <= budget}, {"windows", windows}};
}

}  // namespace

Result<nlohmann::json> power_plot_data(const dataset::CaptureReader& r,
                                       std::span<const double> focus_s,
                                       const PowerPlotOptions& opt) {
  const bool product = r.find_channel("power") == nullptr;
  if (product && (r.find_channel("current") == nullptr || r.find_channel("voltage") == nullptr)) {
    return make_error(Errc::invalid_argument,
                      r.path().string() + ": no power channel and no current and voltage");
  }
  const std::vector<int> levels = plot_levels(r);
  nlohmann::json out_levels = nlohmann::json::array();
  for (int l : levels) {
    auto j = level_json(r, l, focus_s, l == 0 ? opt.max_raw_samples : opt.max_entries_per_level,
                        opt.max_focus);
    if (!j) return j.error();
    out_levels.push_back(std::move(*j));
  }
  const std::string note =
      product ? "Power = current x voltage: raw samples exact; at summary levels the line is "
                "mean(I) x mean(V) and the band spans the extreme corner products (a bound on "
                "every sample's power)."
              : "Power channel: raw samples and its own summaries (mean line, min-max band).";
  return nlohmann::json{{"rate_hz", r.sample_rate_hz()},
                        {"samples", r.samples_written()},
                        {"source", product ? "current x voltage" : "power"},
                        {"note", note + " Fine levels are embedded only around phase boundaries "
                                        "when the capture is long."},
                        {"levels", out_levels}};
}

}  // namespace meltrig::report
