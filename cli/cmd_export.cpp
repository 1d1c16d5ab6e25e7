// meltrig export: a capture's samples (or one summary level) as CSV, read and written in blocks so
// memory stays constant for any file size; or, with --perfetto, a Chrome JSON trace of the capture
// and its analysis (meltrig_report, perfetto.hpp).
//
// Raw rows:     t_s,<channel>,...            one row per sample index i, t_s = i / sample_rate_hz
// Summary rows: t_start_s,t_end_s,<C>_mean,<C>_min,<C>_max,<C>_valid,...   (float32 channels)
//
// Numbers are printed in the shortest form that reads back to the same value: t_s parses to
// exactly the double i / rate (so --from with a printed t_s selects that row), float32 samples
// parse to the same float. A missing sample (NaN) is an empty field, as are mean/min/max of a
// summary entry with valid == 0. uint8 channels print as integers.
//
// --from A --to B selects rows with A <= t_s < B (clamped to the data); in summary mode, every
// entry holding at least one selected sample, uncut. Entries a live or crashed capture has not
// stored yet (the tail after the last complete entry) are computed from the samples.
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/report/perfetto.hpp"

namespace meltrig::cli {
namespace {

constexpr std::size_t kRawBlock = 65536;     // samples per read, per channel
constexpr std::size_t kSummaryBlock = 4096;  // summary entries per read, per channel

struct ExportArgs {
  std::string file;
  bool csv = false;
  bool perfetto = false;
  std::string output;  // "" = stdout
  double from = 0.0;
  double to = 0.0;
  int level = -1;
  std::vector<std::string> channels;
  // Which options were given (CLI11 2.1 has no std::optional options).
  CLI::Option* from_opt = nullptr;
  CLI::Option* to_opt = nullptr;
  CLI::Option* level_opt = nullptr;
};

void append_double(std::string& out, double v) {
  std::array<char, 512> buf{};  // any double in fixed notation fits
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v, std::chars_format::fixed);
  out.append(buf.data(), r.ptr);
}

void append_float(std::string& out, float v) {
  if (std::isnan(v)) return;  // missing: empty field
  std::array<char, 32> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

void append_uint(std::string& out, std::uint64_t v) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

double time_of(std::uint64_t index, double rate) {
  return static_cast<double>(index) / rate;
}

// The first sample index i in [0, n] with i / rate >= t, using the same division as the printed
// t_s column, so a printed time given back as --from or --to selects exactly that row.
std::uint64_t index_at_or_after(double t, double rate, std::uint64_t n) {
  if (!(t > 0.0)) return 0;
  const double guess = std::ceil(t * rate);
  std::uint64_t i = guess >= static_cast<double>(n) ? n : static_cast<std::uint64_t>(guess);
  while (i > 0 && time_of(i - 1, rate) >= t)
    --i;
  while (i < n && time_of(i, rate) < t)
    ++i;
  return i;
}

// Buffered CSV output to stdout or a file; a failed write is reported once, at the end.
class Output {
 public:
  Output() = default;
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;
  ~Output() {
    if (file_ != nullptr && file_ != stdout) std::fclose(file_);
  }

  int open(const std::string& path) {
    name_ = path.empty() ? "stdout" : path;
    file_ = path.empty() ? stdout : std::fopen(path.c_str(), "w");
    if (file_ == nullptr) return fail(path + ": cannot create: " + std::strerror(errno));
    return kOk;
  }
  bool write(const std::string& text) {
    if (std::fwrite(text.data(), 1, text.size(), file_) == text.size()) return true;
    errno_ = errno;
    return false;
  }
  // Flushes and closes; the exit code for what happened to the output.
  int finish() {
    bool ok = errno_ == 0 && std::fflush(file_) == 0;
    if (!ok && errno_ == 0) errno_ = errno;
    if (file_ != stdout) {
      ok = std::fclose(file_) == 0 && ok;
      if (!ok && errno_ == 0) errno_ = errno;
    }
    file_ = nullptr;
    if (ok) return kOk;
    // A reader that stopped reading (`| head`) is not an error: it has what it wanted.
    if (errno_ == EPIPE) return kOk;
    return fail(name_ + ": cannot write: " + std::strerror(errno_));
  }

 private:
  std::FILE* file_ = nullptr;
  std::string name_;
  int errno_ = 0;
};

int interrupted(Output& out, const std::string& what) {
  (void)out.finish();
  return fail("interrupted: " + what + " is incomplete");
}

int export_raw(const dataset::CaptureReader& r,
               const std::vector<const dataset::ChannelSpec*>& channels, std::uint64_t first,
               std::uint64_t end, Output& out, const std::string& out_name) {
  std::string text = "t_s";
  for (const auto* c : channels)
    text += "," + c->name;
  text += "\n";
  if (!out.write(text)) return out.finish();

  const double rate = r.sample_rate_hz();
  std::vector<std::vector<float>> f32(channels.size());
  std::vector<std::vector<std::uint8_t>> u8(channels.size());
  for (std::size_t c = 0; c < channels.size(); ++c) {
    if (channels[c]->type == dataset::SampleType::f32) {
      f32[c].resize(kRawBlock);
    } else {
      u8[c].resize(kRawBlock);
    }
  }
  for (std::uint64_t at = first; at < end;) {
    if (g_interrupted.load()) return interrupted(out, out_name);
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(end - at, kRawBlock));
    for (std::size_t c = 0; c < channels.size(); ++c) {
      const auto res = channels[c]->type == dataset::SampleType::f32
                           ? r.read(channels[c]->name, at, std::span(f32[c].data(), n))
                           : r.read(channels[c]->name, at, std::span(u8[c].data(), n));
      if (!res) return fail(res.error().describe());
    }
    text.clear();
    for (std::size_t i = 0; i < n; ++i) {
      append_double(text, time_of(at + i, rate));
      for (std::size_t c = 0; c < channels.size(); ++c) {
        text += ',';
        if (channels[c]->type == dataset::SampleType::f32) {
          append_float(text, f32[c][i]);
        } else {
          append_uint(text, u8[c][i]);
        }
      }
      text += '\n';
    }
    if (!out.write(text)) return out.finish();
    at += n;
  }
  return out.finish();
}

int export_summary(const dataset::CaptureReader& r,
                   const std::vector<const dataset::ChannelSpec*>& channels, int level,
                   std::uint64_t first, std::uint64_t end, Output& out,
                   const std::string& out_name) {
  const std::uint64_t per = std::uint64_t{1} << level;
  const std::uint64_t n = r.samples_written();
  // Stored entries usable per channel; entries past them are computed from the samples.
  std::vector<std::uint64_t> stored(channels.size());
  for (std::size_t c = 0; c < channels.size(); ++c) {
    auto e = r.summary_entries(channels[c]->name, level);
    if (!e) return fail(e.error().describe());
    stored[c] = *e;
  }
  std::string text = "t_start_s,t_end_s";
  for (const auto* c : channels) {
    for (const char* field : {"_mean", "_min", "_max", "_valid"})
      text += "," + c->name + field;
  }
  text += "\n";
  if (!out.write(text)) return out.finish();
  if (first >= end) return out.finish();

  const double rate = r.sample_rate_hz();
  const std::uint64_t j_first = first / per;
  const std::uint64_t j_end = end / per + (end % per != 0 ? 1 : 0);
  std::vector<std::vector<dataset::SummaryStats>> entries(
      channels.size(), std::vector<dataset::SummaryStats>(kSummaryBlock));
  for (std::uint64_t j = j_first; j < j_end;) {
    if (g_interrupted.load()) return interrupted(out, out_name);
    const auto count = static_cast<std::size_t>(std::min<std::uint64_t>(j_end - j, kSummaryBlock));
    for (std::size_t c = 0; c < channels.size(); ++c) {
      const std::uint64_t from_file =
          j < stored[c] ? std::min<std::uint64_t>(stored[c] - j, count) : 0;
      if (auto res =
              r.read_summary(channels[c]->name, level, j, std::span(entries[c].data(), from_file));
          !res) {
        return fail(res.error().describe());
      }
      for (std::size_t k = from_file; k < count; ++k) {
        const std::uint64_t start = (j + k) * per;
        auto s = r.summarize(channels[c]->name, start, std::min(start + per, n) - start);
        if (!s) return fail(s.error().describe());
        entries[c][k] = *s;
      }
    }
    text.clear();
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint64_t start = (j + k) * per;
      append_double(text, time_of(start, rate));
      text += ',';
      append_double(text, time_of(std::min(start + per, n), rate));
      for (std::size_t c = 0; c < channels.size(); ++c) {
        const dataset::SummaryStats& e = entries[c][k];
        for (const float v : {e.mean, e.min, e.max}) {
          text += ',';
          if (e.valid > 0) append_float(text, v);
        }
        text += ',';
        append_uint(text, e.valid);
      }
      text += '\n';
    }
    if (!out.write(text)) return out.finish();
    j += count;
  }
  return out.finish();
}

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items)
    s += (s.empty() ? "" : ", ") + i;
  return s;
}

int run_perfetto(const ExportArgs& a) {
  if (a.from_opt->count() > 0 || a.to_opt->count() > 0 || a.level_opt->count() > 0 ||
      !a.channels.empty()) {
    return usage(
        "--perfetto writes the whole capture: --from, --to, --level and --channels "
        "are for --csv");
  }
  if (a.output.empty()) return usage("--perfetto needs -o TRACE.json");
  return write_file_whole(
      a.output, [&](std::ostream& out) { return report::write_perfetto_trace(a.file, out); });
}

int run(const ExportArgs& a) {
  if (a.csv == a.perfetto) return usage("give exactly one of --csv and --perfetto");
  if (a.perfetto) return run_perfetto(a);
  const bool summary = a.level_opt->count() > 0;
  const bool has_from = a.from_opt->count() > 0;
  const bool has_to = a.to_opt->count() > 0;
  if ((has_from && !std::isfinite(a.from)) || (has_to && !std::isfinite(a.to))) {
    return usage("--from and --to must be finite numbers of seconds");
  }
  // Without --from the range starts at 0 s.
  if (has_to && !(a.to > (has_from ? a.from : 0.0))) {
    return usage("--to (" + std::to_string(a.to) + " s) must be greater than --from (" +
                 std::to_string(has_from ? a.from : 0.0) + " s): the range is empty");
  }

  auto opened = dataset::CaptureReader::open(a.file);
  if (!opened) return fail(opened.error().describe());
  const dataset::CaptureReader& r = *opened;

  std::vector<const dataset::ChannelSpec*> channels;
  if (a.channels.empty()) {
    for (const auto& c : r.channels()) {
      if (!summary || c.type == dataset::SampleType::f32) channels.push_back(&c);
    }
    if (channels.empty()) return usage(a.file + ": no float32 channels, so no summaries");
  } else {
    std::vector<std::string> names;
    for (const auto& c : r.channels())
      names.push_back(c.name);
    std::set<std::string> seen;
    for (const auto& name : a.channels) {
      const dataset::ChannelSpec* c = r.find_channel(name);
      if (c == nullptr) {
        return usage("--channels: " + a.file + " has no channel '" + name +
                     "' (channels: " + join(names) + ")");
      }
      if (!seen.insert(name).second) return usage("--channels: '" + name + "' is given twice");
      if (summary && c->type != dataset::SampleType::f32) {
        return usage("--channels: '" + name + "' is uint8; summaries cover float32 channels only");
      }
      channels.push_back(c);
    }
  }

  if (summary) {
    if (!r.has_summaries()) {
      return usage("--level: " + a.file +
                   " has no summaries (written before they existed); export raw samples instead");
    }
    const auto& levels = r.summary_levels();
    if (std::find(levels.begin(), levels.end(), a.level) == levels.end()) {
      std::vector<std::string> present;
      for (const int l : levels)
        present.push_back(std::to_string(l));
      return usage("--level " + std::to_string(a.level) + ": not in " + a.file +
                   " (levels present: " + join(present) + ")");
    }
  }

  const std::uint64_t n = r.samples_written();
  const double rate = r.sample_rate_hz();
  const std::uint64_t first = has_from ? index_at_or_after(a.from, rate, n) : 0;
  const std::uint64_t end = std::max(first, has_to ? index_at_or_after(a.to, rate, n) : n);

  Output out;
  if (int rc = out.open(a.output); rc != kOk) return rc;
  const std::string out_name = a.output.empty() ? "the output" : a.output;
  if (summary) return export_summary(r, channels, a.level, first, end, out, out_name);
  return export_raw(r, channels, first, end, out, out_name);
}

}  // namespace

void add_export(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<ExportArgs>();
  auto* s =
      app.add_subcommand("export", "write a capture's samples or summaries as CSV, or a trace");
  s->add_option("file", a->file, "capture file (HDF5)")->required();
  s->add_flag("--csv", a->csv, "CSV output");
  s->add_flag(
      "--perfetto", a->perfetto,
      "Chrome JSON trace (ui.perfetto.dev, chrome://tracing) of the capture and its analysis");
  s->add_option("-o,--output", a->output, "file to write (CSV default: stdout)");
  a->from_opt = s->add_option("--from", a->from, "first time, s (inclusive: t_s >= FROM)");
  a->to_opt = s->add_option("--to", a->to, "end time, s (exclusive: t_s < TO)");
  a->level_opt = s->add_option("--level", a->level,
                               "summary rows of level K (2^K samples per row) instead of samples");
  s->add_option("--channels", a->channels,
                "channels to export, e.g. current,voltage (default: all)")
      ->delimiter(',');
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
