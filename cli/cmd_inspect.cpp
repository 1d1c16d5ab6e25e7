// meltrig inspect: what a capture file holds, for a person deciding whether to trust it (state,
// losses, gaps) and how to read it (channels, rate, summary levels). Reads only metadata and the
// gap table (in blocks), so it is instant on any file size and safe on a live capture.
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/dataset/capture_reader.hpp"

namespace meltrig::cli {
namespace {

constexpr std::size_t kGapRowsShown = 5;
constexpr std::uint64_t kGapBlock = 4096;

// Shortest text that reads back exactly, never in exponent form ("1000000", not "1e+06").
std::string shortest(double v) {
  std::array<char, 512> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v, std::chars_format::fixed);
  return std::string(buf.data(), r.ptr);
}

std::string attribute_or(const std::vector<dataset::Attribute>& attrs, std::string_view name,
                         const char* fallback) {
  const dataset::AttributeValue* v = dataset::find_attribute(attrs, name);
  return v != nullptr ? dataset::format_attribute_value(*v) : fallback;
}

// "0.0248 s", or "3725.5 s (1 h 2 min 5.5 s)" when minutes help.
std::string duration_text(double s) {
  std::string text = shortest(s) + " s";
  if (s >= 60.0) {
    const auto whole = static_cast<std::uint64_t>(s);
    const double frac = s - static_cast<double>(whole);
    const std::uint64_t h = whole / 3600, m = whole / 60 % 60;
    text += " (";
    if (h > 0) text += std::to_string(h) + " h ";
    text += std::to_string(m) + " min " + shortest(static_cast<double>(whole % 60) + frac) + " s)";
  }
  return text;
}

// Per-level entry size: "256 samples (51.2 ms)". per * 1000 is exact, so one rounding.
std::string entry_span_text(int level, double rate) {
  const std::uint64_t per = std::uint64_t{1} << level;
  const double ms = static_cast<double>(per) * 1000.0 / rate;
  const std::string span = ms < 1000.0 ? shortest(ms) + " ms" : shortest(ms / 1000.0) + " s";
  return std::to_string(per) + " samples (" + span + ")";
}

void print_counters(const dataset::CaptureReader& r) {
  std::size_t nonzero = 0;
  std::size_t width = 0;
  for (const auto& c : r.counters()) {
    nonzero += c.value != 0 ? 1 : 0;
    width = std::max(width, c.name.size());
  }
  if (nonzero == 0) {
    std::printf("loss counters:   none (%zu counters, all zero)\n", r.counters().size());
    return;
  }
  // Non-zero counters are marked "!" (and bold on a terminal): they are why a file is suspect.
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::printf("loss counters:   %zu of %zu non-zero\n", nonzero, r.counters().size());
  for (const auto& c : r.counters()) {
    const bool hot = c.value != 0;
    std::printf("  %s%s %-*s %llu%s\n", hot && tty ? "\033[1m" : "", hot ? "!" : " ",
                static_cast<int>(width), c.name.c_str(), static_cast<unsigned long long>(c.value),
                hot && tty ? "\033[0m" : "");
  }
}

// What the gap table says, gathered in blocks of rows (bounded memory for any table size).
struct GapStats {
  std::uint64_t rows = 0;
  std::array<std::uint64_t, 256> events{};   // rows per kind
  std::array<std::uint64_t, 256> samples{};  // samples per kind
  std::uint64_t missing = 0;                 // samples covered by kinds that cover rows
  std::vector<dataset::Gap> first_rows;
};

Result<GapStats> gap_stats(const dataset::CaptureReader& r) {
  GapStats st;
  st.rows = r.gap_count();
  std::vector<dataset::Gap> block(static_cast<std::size_t>(std::min(st.rows, kGapBlock)));
  for (std::uint64_t at = 0; at < st.rows;) {
    const auto n = static_cast<std::size_t>(std::min(st.rows - at, kGapBlock));
    if (auto res = r.read_gaps(at, std::span(block.data(), n)); !res) return res.error();
    for (std::size_t i = 0; i < n; ++i) {
      const auto kind = static_cast<std::uint8_t>(block[i].kind);
      ++st.events[kind];
      st.samples[kind] += block[i].count;
      if (block[i].kind != dataset::GapKind::duplicate_dropped) st.missing += block[i].count;
      if (st.first_rows.size() < kGapRowsShown) st.first_rows.push_back(block[i]);
    }
    at += n;
  }
  return st;
}

std::string kind_name(std::uint8_t kind) {
  return kind < dataset::kGapKindCount ? std::string(dataset::kGapKindNames[kind])
                                       : "kind " + std::to_string(kind);
}

void print_gaps(const GapStats& st, double rate) {
  if (st.rows == 0) {
    std::printf("gaps:            none\n");
    return;
  }
  std::printf("gaps:            %llu row(s)\n", static_cast<unsigned long long>(st.rows));
  for (std::size_t k = 0; k < st.events.size(); ++k) {
    if (st.events[k] == 0) continue;
    const bool covers_rows =
        static_cast<dataset::GapKind>(k) != dataset::GapKind::duplicate_dropped;
    std::printf("  %-18s %llu row(s), %llu sample(s) %s\n",
                kind_name(static_cast<std::uint8_t>(k)).c_str(),
                static_cast<unsigned long long>(st.events[k]),
                static_cast<unsigned long long>(st.samples[k]),
                covers_rows ? "missing" : "dropped (no rows)");
  }
  std::printf("  first %zu row(s): first_index count kind, t = first_index / rate\n",
              st.first_rows.size());
  for (const auto& g : st.first_rows) {
    std::printf("    %llu %llu %s, t = %s s\n", static_cast<unsigned long long>(g.first_index),
                static_cast<unsigned long long>(g.count),
                kind_name(static_cast<std::uint8_t>(g.kind)).c_str(),
                shortest(static_cast<double>(g.first_index) / rate).c_str());
  }
}

int print_summaries(const dataset::CaptureReader& r) {
  if (!r.has_summaries()) {
    std::printf("summaries:       none (file written without them): export reads raw samples\n");
    return kOk;
  }
  std::vector<const dataset::ChannelSpec*> floats;
  for (const auto& c : r.channels()) {
    if (c.type == dataset::SampleType::f32) floats.push_back(&c);
  }
  std::printf("summaries:       %zu level(s), entries of {mean, min, max, valid}\n",
              r.summary_levels().size());
  for (const int level : r.summary_levels()) {
    std::string counts;
    std::uint64_t first_count = 0;
    bool same = true;
    for (std::size_t i = 0; i < floats.size(); ++i) {
      auto n = r.summary_entries(floats[i]->name, level);
      const std::string text = n ? std::to_string(*n) : "absent";
      if (i == 0 && n) first_count = *n;
      same = same && n && *n == first_count;
      counts += (i > 0 ? ", " : "") + floats[i]->name + " " + text;
    }
    if (same && !floats.empty()) counts = std::to_string(first_count) + " per channel";
    std::printf("  level %d: %s per entry; entries: %s\n", level,
                entry_span_text(level, r.sample_rate_hz()).c_str(), counts.c_str());
  }
  return kOk;
}

int run(const std::string& path) {
  auto opened = dataset::CaptureReader::open(path);
  if (!opened) return fail(opened.error().describe());
  const dataset::CaptureReader& r = *opened;
  const auto& root = r.root_attributes();
  const auto& mon = r.monitor_attributes();

  std::printf("file:            %s%s\n", path.c_str(),
              r.swmr() ? "" : " (not SWMR: a static file)");
  std::printf("format:          meltrig-capture, format_version %lld\n",
              static_cast<long long>(r.format_version()));
  std::printf("meltrig version: %s\n", attribute_or(root, "meltrig_version", "unknown").c_str());
  std::printf("host start:      %s (UTC, host wall clock)\n",
              attribute_or(root, "host_wall_clock_start_utc", "unknown").c_str());
  std::string state = dataset::capture_state_name(r.state());
  if (r.state() == dataset::CaptureState::running) {
    state += " (still being written, or the writer stopped without finishing)";
  }
  std::printf("state:           %s\n", state.c_str());
  std::printf("end reason:      %s\n", r.end_reason().empty() ? "-" : r.end_reason().c_str());
  std::printf("monitor:         /%s\n", r.monitor().c_str());
  std::printf("  driver:        %s\n", attribute_or(mon, "driver", "-").c_str());
  std::printf("  port:          %s\n", attribute_or(mon, "port", "-").c_str());
  std::printf("  serial number: %s\n", attribute_or(mon, "serial_number", "-").c_str());
  std::printf("  firmware:      %s\n", attribute_or(mon, "firmware_version", "-").c_str());
  if (const auto* c = dataset::find_attribute(mon, "compression")) {
    std::printf("  compression:   %s\n", dataset::format_attribute_value(*c).c_str());
  }
  auto gaps = gap_stats(r);
  if (!gaps) return fail(gaps.error().describe());
  const std::uint64_t n = r.samples_written();
  std::printf("sample rate:     %s Hz\n", shortest(r.sample_rate_hz()).c_str());
  std::printf("samples:         %llu = %s (%llu in gaps)\n", static_cast<unsigned long long>(n),
              duration_text(static_cast<double>(n) / r.sample_rate_hz()).c_str(),
              static_cast<unsigned long long>(gaps->missing));
  std::printf("channels:        %zu\n", r.channels().size());
  for (const auto& c : r.channels()) {
    std::printf("  %-12s %-4s %-8s %s\n", c.name.c_str(), c.unit.empty() ? "-" : c.unit.c_str(),
                c.type == dataset::SampleType::f32 ? "float32" : "uint8", c.description.c_str());
  }
  print_counters(r);
  print_gaps(*gaps, r.sample_rate_hz());
  std::printf("calibration:     %llu row(s)\n",
              static_cast<unsigned long long>(r.calibration_count()));
  std::printf("markers:         %s\n", r.has_markers()
                                           ? "present (/markers: not read by this meltrig version)"
                                           : "none recorded");
  std::printf("clock sync:      %s\n",
              r.has_sync() ? "present (/sync: not read by this meltrig version)"
                           : "none: time base is sample_index / rate on the monitor clock");
  return print_summaries(r);
}

}  // namespace

void add_inspect(CLI::App& app, Commands& cmds) {
  auto file = std::make_shared<std::string>();
  auto* s = app.add_subcommand("inspect", "show what a capture file holds (works on live files)");
  s->add_option("file", *file, "capture file (HDF5)")->required();
  cmds.push_back({s, [file] { return run(*file); }});
}

}  // namespace meltrig::cli
