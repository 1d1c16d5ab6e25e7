// MELT importers: see melt_import.hpp for the formats and the mapping rules.
#include "meltrig/targets/melt_import.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <system_error>
#include <utility>

namespace meltrig::targets::melt {

namespace {

// ---- small text helpers ----

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

bool blank(std::string_view s) {
  return trim(s).empty();
}

template <typename T>
std::optional<T> parse_int(std::string_view s) {
  T v{};
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view s) {
  double v = 0.0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// Milliseconds since the epoch ("1700000000123" or "1700000000123.456") as exact ns: the integer
// part and up to six fraction digits are read separately, so no double rounding creeps in.
std::optional<std::int64_t> parse_ms_as_ns(std::string_view s) {
  const std::size_t dot = s.find('.');
  const std::string_view whole = s.substr(0, dot);
  auto ms = parse_int<std::int64_t>(whole);
  if (!ms || *ms < 0) return std::nullopt;
  std::int64_t frac_ns = 0;
  if (dot != std::string_view::npos) {
    const std::string_view frac = s.substr(dot + 1);
    if (frac.empty() || frac.size() > 6) return std::nullopt;
    for (char c : frac)
      if (c < '0' || c > '9') return std::nullopt;
    auto digits = parse_int<std::int64_t>(frac);
    if (!digits) return std::nullopt;
    frac_ns = *digits;
    for (std::size_t i = frac.size(); i < 6; ++i)
      frac_ns *= 10;
  }
  constexpr std::int64_t kNsPerMs = 1'000'000;
  if (*ms > (std::numeric_limits<std::int64_t>::max() - frac_ns) / kNsPerMs) return std::nullopt;
  return *ms * kNsPerMs + frac_ns;
}

// Whole-file read for the small text formats.
Result<std::string> read_text(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error{Errc::not_found, path.string() + ": no such file"};
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error{Errc::io_error, path.string() + ": cannot open: " + std::strerror(errno)};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error{Errc::io_error, path.string() + ": read failed"};
  return ss.str();
}

/// Issues of one file, at most kMaxIssuesPerFile listed.
class IssueList {
 public:
  IssueList(std::vector<MarkerIssue>& out, std::string_view file) : out_(out), file_(file) {}
  IssueList(const IssueList&) = delete;
  IssueList& operator=(const IssueList&) = delete;
  ~IssueList() {
    if (unlisted_ > 0) {
      out_.push_back({file_, 0,
                      std::to_string(unlisted_) +
                          " more malformed lines not listed (only the first " +
                          std::to_string(kMaxIssuesPerFile) + " are)"});
    }
  }
  void add(std::uint64_t line, std::string message) {
    if (listed_ < kMaxIssuesPerFile) {
      out_.push_back({file_, line, std::move(message)});
      ++listed_;
    } else {
      ++unlisted_;
    }
  }

 private:
  std::vector<MarkerIssue>& out_;
  std::string file_;
  std::size_t listed_ = 0;
  std::uint64_t unlisted_ = 0;
};

/// Calls fn(line_text, line_number) for every '\n'-terminated line (without '\n'); returns the
/// unterminated tail ("" if the text ends with '\n') and its line number.
template <typename Fn>
std::pair<std::string_view, std::uint64_t> for_each_line(std::string_view text, Fn&& fn) {
  std::uint64_t line = 0;
  while (true) {
    const std::size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;
    ++line;
    fn(text.substr(0, nl), line);
    text.remove_prefix(nl + 1);
  }
  return {text, line + 1};
}

std::string quoted(std::string_view s) {
  constexpr std::size_t kMax = 60;
  std::string out = "'";
  out += s.substr(0, kMax);
  if (s.size() > kMax) out += "...";
  out += "'";
  return out;
}

MarkerEvent user_event(std::string_view key, std::int64_t t_ns, std::uint64_t line) {
  MarkerEvent e;
  e.t_ns = t_ns;
  e.kind = MarkerKind::user;
  e.label = std::string(key);
  e.line = line;
  return e;
}

MarkerEvent phase_event(MarkerKind kind, std::int64_t t_ns, std::uint64_t line,
                        std::int64_t index = -1) {
  MarkerEvent e;
  e.t_ns = t_ns;
  e.kind = kind;
  e.index = index;
  e.line = line;
  return e;
}

void sort_events(MarkerLog& log) {
  std::stable_sort(log.events.begin(), log.events.end(),
                   [](const MarkerEvent& a, const MarkerEvent& b) {
                     return a.t_ns != b.t_ns ? a.t_ns < b.t_ns : a.line < b.line;
                   });
}

std::string format_double(double v) {
  std::array<char, 64> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::string(buf.data(), r.ptr);
}

void add_timings_header(MarkerLog& log, const LlamaTimings& t) {
  auto put_ms = [&](const char* key, double v) {
    if (!std::isnan(v))
      log.header.emplace_back(std::string("llama_print_timings.") + key, format_double(v));
  };
  auto put_n = [&](const char* key, std::int64_t v) {
    if (v >= 0)
      log.header.emplace_back(std::string("llama_print_timings.") + key, std::to_string(v));
  };
  put_ms("load_ms", t.load_ms);
  put_ms("sample_ms", t.sample_ms);
  put_n("sample_runs", t.sample_runs);
  put_ms("prompt_eval_ms", t.prompt_eval_ms);
  put_n("prompt_tokens", t.prompt_tokens);
  put_ms("eval_ms", t.eval_ms);
  put_n("eval_runs", t.eval_runs);
  put_ms("total_ms", t.total_ms);
  put_n("total_tokens", t.total_tokens);
}

// `generate.<N>.decode.start|end` -> (N, is_start).
std::optional<std::pair<std::int64_t, bool>> decode_key(std::string_view key) {
  constexpr std::string_view kPrefix = "generate.";
  if (!key.starts_with(kPrefix)) return std::nullopt;
  key.remove_prefix(kPrefix.size());
  bool is_start = false;
  if (key.ends_with(".decode.start")) {
    is_start = true;
    key.remove_suffix(std::string_view(".decode.start").size());
  } else if (key.ends_with(".decode.end")) {
    key.remove_suffix(std::string_view(".decode.end").size());
  } else {
    return std::nullopt;
  }
  for (char c : key)
    if (c < '0' || c > '9') return std::nullopt;
  auto n = parse_int<std::int64_t>(key);
  if (!n) return std::nullopt;
  return std::pair{*n, is_start};
}

struct KeyedValue {
  std::string key;
  std::int64_t t_ns = 0;
  std::uint64_t line = 0;
};

}  // namespace

// ---- llama_print_timings / llama_perf_*_print ----

namespace {

/// The tags of llama.cpp's summary lines, old and current, and the format each names.
struct TimingsTag {
  std::string_view tag;
  std::string_view format;
};
constexpr std::array<TimingsTag, 3> kTimingsTags = {{
    {"llama_print_timings:", "llama_print_timings"},
    {"llama_perf_context_print:", "llama_perf"},
    {"llama_perf_sampler_print:", "llama_perf"},
}};

/// One figure of a summary line: `<label> = <ms> ms [/ <count> <unit>] [(...)]`, or
/// `<label> = <count>` for the counters of the current format (`graphs reused`).
struct TimingsFigure {
  std::string label;
  double ms = LlamaTimings::kNone;
  std::int64_t count = -1;
};

std::optional<TimingsFigure> parse_timings_figure(std::string_view rest, IssueList& issues,
                                                  std::uint64_t line, std::string_view tag) {
  const std::size_t eq = rest.find('=');
  if (eq == std::string_view::npos) {
    issues.add(line, std::string(tag) + " line without '='");
    return std::nullopt;
  }
  TimingsFigure f;
  f.label = std::string(trim(rest.substr(0, eq)));
  std::string_view value = trim(rest.substr(eq + 1));
  if (f.label == "graphs reused") {
    auto n = parse_int<std::int64_t>(value);
    if (!n || *n < 0) {
      issues.add(line, "'graphs reused': bad count " + quoted(value));
      return std::nullopt;
    }
    f.count = *n;
    return f;
  }
  const std::size_t ms_at = value.find(" ms");
  if (ms_at == std::string_view::npos) {
    issues.add(line, "'" + f.label + "': no 'ms' value");
    return std::nullopt;
  }
  const auto ms = parse_double(trim(value.substr(0, ms_at)));
  if (!ms) {
    issues.add(line, "'" + f.label + "': bad ms value " + quoted(trim(value.substr(0, ms_at))));
    return std::nullopt;
  }
  f.ms = *ms;
  std::string_view after = trim(value.substr(ms_at + 3));
  if (after.starts_with('/')) {
    after = trim(after.substr(1));
    const std::size_t sp = after.find_first_of(" \t");
    auto n = parse_int<std::int64_t>(after.substr(0, sp));
    if (!n || *n < 0) {
      issues.add(line, "'" + f.label + "': bad count " + quoted(after.substr(0, sp)));
      return std::nullopt;
    }
    f.count = *n;
  }
  if (f.label == "sampling time") f.label = "sample time";  // the current format's name
  return f;
}

bool known_timings_label(const std::string& l) {
  return l == "load time" || l == "sample time" || l == "prompt eval time" || l == "eval time" ||
         l == "total time" || l == "graphs reused";
}

void store_figure(LlamaTimings& b, const TimingsFigure& f) {
  if (f.label == "load time") {
    b.load_ms = f.ms;
  } else if (f.label == "sample time") {
    b.sample_ms = f.ms;
    b.sample_runs = f.count;
  } else if (f.label == "prompt eval time") {
    b.prompt_eval_ms = f.ms;
    b.prompt_tokens = f.count;
  } else if (f.label == "eval time") {
    b.eval_ms = f.ms;
    b.eval_runs = f.count;
  } else if (f.label == "graphs reused") {
    b.graphs_reused = f.count;
  } else {
    b.total_ms = f.ms;
    b.total_tokens = f.count;
  }
}

}  // namespace

LlamaTimingsLog parse_llama_timings(std::string_view text, std::string_view name) {
  LlamaTimingsLog out;
  IssueList issues(out.issues, name);
  std::vector<std::string> seen;  // labels of the current block
  auto handle = [&](std::string_view line_text, std::uint64_t line) {
    const TimingsTag* tag = nullptr;
    std::size_t at = std::string_view::npos;
    for (const auto& t : kTimingsTags)
      if ((at = line_text.find(t.tag)) != std::string_view::npos) {
        tag = &t;
        break;
      }
    if (tag == nullptr) return;
    auto f =
        parse_timings_figure(line_text.substr(at + tag->tag.size()), issues, line, tag->format);
    if (!f) return;
    if (!known_timings_label(f->label)) {
      issues.add(line, "unknown " + std::string(tag->format) + " figure '" + f->label + "'");
      return;
    }
    // A block ends when a figure repeats, the format changes, or `load time` follows figures
    // other than the sampler's (the current format prints the sampler line first).
    const bool only_sampler = seen.size() == 1 && seen.front() == "sample time";
    if (out.blocks.empty() || out.blocks.back().format != tag->format ||
        std::find(seen.begin(), seen.end(), f->label) != seen.end() ||
        (f->label == "load time" && !seen.empty() && !only_sampler)) {
      out.blocks.emplace_back();
      out.blocks.back().line = line;
      out.blocks.back().format = std::string(tag->format);
      seen.clear();
    }
    seen.push_back(f->label);
    store_figure(out.blocks.back(), *f);
  };
  auto [tail, tail_line] = for_each_line(text, handle);
  if (!tail.empty()) handle(tail, tail_line);  // console logs often lack the final '\n'
  return out;
}

Result<LlamaTimingsLog> read_llama_timings(const std::filesystem::path& path) {
  auto text = read_text(path);
  if (!text) return text.error();
  return parse_llama_timings(*text, path.string());
}

// ---- llama.cpp events ----

namespace {

/// One `name value` line of an events file, checked; the issue if it is bad.
std::string check_event_line(std::string_view s, std::string_view& key, std::int64_t& t) {
  const std::size_t sp = s.find_first_of(" \t");
  if (sp == std::string_view::npos) return "expected 'name value', got " + quoted(s);
  key = s.substr(0, sp);
  const std::string_view value = trim(s.substr(sp));
  if (value.find_first_of(" \t") != std::string_view::npos)
    return "expected 'name value', got more fields: " + quoted(s);
  const auto v = parse_int<std::int64_t>(value);
  if (!v) {
    return "value of '" + std::string(key) + "' is not an integer ns timestamp: " + quoted(value);
  }
  if (*v <= 0) {
    return "value of '" + std::string(key) + "' is not a positive ns timestamp: " + quoted(value);
  }
  t = *v;
  return {};
}

/// The well-formed lines of an events file (first of each key), in file order; the rest are
/// issues of `log`.
std::vector<KeyedValue> read_event_lines(std::string_view text, std::string_view name,
                                         MarkerLog& log) {
  std::vector<KeyedValue> entries;
  IssueList issues(log.issues, name);
  std::map<std::string, std::uint64_t, std::less<>> first_line;
  auto handle = [&](std::string_view line_text, std::uint64_t line) {
    if (blank(line_text)) return;
    std::string_view key;
    std::int64_t t = 0;
    if (auto m = check_event_line(trim(line_text), key, t); !m.empty()) {
      issues.add(line, std::move(m));
      return;
    }
    if (auto [it, inserted] = first_line.emplace(std::string(key), line); !inserted) {
      issues.add(line, "'" + std::string(key) + "' given again (first at line " +
                           std::to_string(it->second) + "); kept the first");
      return;
    }
    entries.push_back({std::string(key), t, line});
  };
  auto [tail, tail_line] = for_each_line(text, handle);
  if (!tail.empty()) {
    log.incomplete_tail = true;
    issues.add(tail_line, "last line has no '\\n' (cut short?): dropped " + quoted(tail));
  }
  return entries;
}

/// A decode iteration `generate.N.decode.start/end`.
struct Iteration {
  const KeyedValue* start = nullptr;
  const KeyedValue* end = nullptr;
};

/// Load events and user events go to `log`; returns the complete decode iterations in N order
/// (an incomplete one becomes a user event).
std::vector<Iteration> sort_entries(const std::vector<KeyedValue>& entries, MarkerLog& log) {
  std::map<std::int64_t, Iteration> iterations;
  for (const auto& e : entries) {
    if (e.key == "load_model.start") {
      log.events.push_back(phase_event(MarkerKind::load_start, e.t_ns, e.line));
    } else if (e.key == "load_model.end") {
      log.events.push_back(phase_event(MarkerKind::load_end, e.t_ns, e.line));
    } else if (auto d = decode_key(e.key)) {
      (d->second ? iterations[d->first].start : iterations[d->first].end) = &e;
    } else {
      log.events.push_back(user_event(e.key, e.t_ns, e.line));
    }
  }
  std::vector<Iteration> complete;
  for (const auto& [n, it] : iterations) {
    if (it.start != nullptr && it.end != nullptr) {
      complete.push_back(it);
    } else {
      const KeyedValue* only = it.start != nullptr ? it.start : it.end;
      log.events.push_back(user_event(only->key, only->t_ns, only->line));
    }
  }
  return complete;
}

/// Without a usable summary: the first iteration, plus each directly following one that lasts at
/// least kPrefillDurationFactor times the median of those after the first.
std::size_t prefill_from_durations(const std::vector<Iteration>& complete) {
  std::size_t prefill = 1;
  std::vector<std::int64_t> d;
  for (std::size_t i = 1; i < complete.size(); ++i)
    d.push_back(complete[i].end->t_ns - complete[i].start->t_ns);
  if (d.empty()) return prefill;
  std::vector<std::int64_t> sorted = d;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2),
                   sorted.end());
  const double median = static_cast<double>(sorted[sorted.size() / 2]);
  while (prefill < complete.size() &&
         static_cast<double>(d[prefill - 1]) >= kPrefillDurationFactor * median && median > 0.0) {
    ++prefill;
  }
  return prefill;
}

/// How many leading complete iterations are prefill (complete must not be empty).
std::size_t count_prefill(const std::vector<Iteration>& complete, const LlamaTimings* timings,
                          std::string_view name, MarkerLog& log) {
  if (timings != nullptr && timings->eval_runs >= 0) {
    const auto runs = static_cast<std::size_t>(timings->eval_runs);
    if (runs < complete.size()) return complete.size() - runs;
    log.issues.push_back({std::string(name), 0,
                          "llama_print_timings counts " + std::to_string(runs) +
                              " eval runs but there are only " + std::to_string(complete.size()) +
                              " complete decode iterations; prefill found from durations"});
  }
  return prefill_from_durations(complete);
}

/// The prefill pair, inner prefill boundaries as user events, and one token per later iteration.
void emit_iterations(const std::vector<Iteration>& complete, std::size_t prefill,
                     std::int64_t prompt_tokens, std::string_view name, MarkerLog& log) {
  log.events.push_back(phase_event(MarkerKind::prefill_start, complete[0].start->t_ns,
                                   complete[0].start->line, prompt_tokens));
  const KeyedValue* last_end = complete[prefill - 1].end;
  log.events.push_back(
      phase_event(MarkerKind::prefill_end, last_end->t_ns, last_end->line, prompt_tokens));
  for (std::size_t i = 0; i < prefill; ++i) {
    if (i > 0) {
      log.events.push_back(
          user_event(complete[i].start->key, complete[i].start->t_ns, complete[i].start->line));
    }
    if (i + 1 < prefill) {
      log.events.push_back(
          user_event(complete[i].end->key, complete[i].end->t_ns, complete[i].end->line));
    }
  }
  for (std::size_t i = prefill; i < complete.size(); ++i) {
    const auto& it = complete[i];
    log.events.push_back(user_event(it.start->key, it.start->t_ns, it.start->line));
    log.events.push_back(phase_event(MarkerKind::token, it.end->t_ns, it.end->line,
                                     static_cast<std::int64_t>(i - prefill)));
  }
  for (const auto& it : complete) {
    if (it.end->t_ns < it.start->t_ns) {
      log.issues.push_back({std::string(name), it.end->line,
                            "'" + it.end->key + "' is earlier than its .start (line " +
                                std::to_string(it.start->line) + ")"});
    }
  }
}

/// The summary's disagreements with the events file.
void cross_check_timings(const LlamaTimings& timings, std::size_t tokens, std::string_view name,
                         MarkerLog& log) {
  if (timings.eval_runs >= 0 && static_cast<std::size_t>(timings.eval_runs) != tokens) {
    log.issues.push_back({std::string(name), 0,
                          "llama_print_timings counts " + std::to_string(timings.eval_runs) +
                              " eval runs, the events file has " + std::to_string(tokens) +
                              " token decodes"});
  }
  if (timings.prompt_tokens < 0) {
    log.issues.push_back({std::string(name), 0, "llama_print_timings gives no prompt token count"});
  }
}

}  // namespace

MarkerLog parse_llamacpp_events(std::string_view text, std::string_view name,
                                const LlamaTimings* timings) {
  MarkerLog log;
  log.source = std::string(name);
  log.clock = "realtime";
  log.header.emplace_back("format", "melt-llamacpp-events");
  const std::vector<KeyedValue> entries = read_event_lines(text, name, log);
  const std::vector<Iteration> complete = sort_entries(entries, log);
  if (timings != nullptr) add_timings_header(log, *timings);
  std::size_t prefill = 0;
  if (!complete.empty()) {
    prefill = count_prefill(complete, timings, name, log);
    const std::int64_t prompt_tokens = timings != nullptr ? timings->prompt_tokens : -1;
    emit_iterations(complete, prefill, prompt_tokens, name, log);
  }
  if (timings != nullptr) cross_check_timings(*timings, complete.size() - prefill, name, log);
  sort_events(log);
  return log;
}

Result<MarkerLog> read_llamacpp_events(const std::filesystem::path& path,
                                       const LlamaTimings* timings) {
  auto text = read_text(path);
  if (!text) return text.error();
  return parse_llamacpp_events(*text, path.string(), timings);
}

// ---- MLC CSV ----

namespace {

/// One MLC row.
struct MlcRow {
  std::string event;
  std::int64_t n = -1;  // N of prefill.N / generate.decode.N
  std::int64_t start = 0;
  std::int64_t end = 0;
  std::uint64_t line = 0;
};

/// The comma-separated fields of a line, trimmed (the first three kept); how many there are.
std::size_t split_fields(std::string_view line_text, std::array<std::string_view, 3>& f) {
  std::size_t n_fields = 0;
  std::string_view rest = line_text;
  while (true) {
    const std::size_t comma = rest.find(',');
    if (n_fields < f.size()) f[n_fields] = trim(rest.substr(0, comma));
    ++n_fields;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return n_fields;
}

/// N of `<prefix>N` (digits only), if `event` is one.
std::optional<std::int64_t> numbered(std::string_view event, std::string_view prefix) {
  if (!event.starts_with(prefix)) return std::nullopt;
  event.remove_prefix(prefix.size());
  for (char c : event)
    if (c < '0' || c > '9') return std::nullopt;
  return parse_int<std::int64_t>(event);
}

/// Reads MLC rows into prefill and decode rows; other events go to `log` as user event pairs.
class MlcReader {
 public:
  MlcReader(std::string_view name, MarkerLog& log) : log_(log), issues_(log.issues, name) {}

  void line(std::string_view line_text, std::uint64_t line) {
    if (blank(line_text)) return;
    const bool is_first = std::exchange(first_, false);
    std::array<std::string_view, 3> f{};
    const std::size_t n_fields = split_fields(line_text, f);
    if (n_fields != 3) {
      issues_.add(line, "expected 3 fields 'event,start_ms,end_ms', got " +
                            std::to_string(n_fields) + ": " + quoted(trim(line_text)));
      return;
    }
    const auto start = parse_ms_as_ns(f[1]);
    if (is_first && !parse_double(f[1])) return;  // a header line
    const auto end = parse_ms_as_ns(f[2]);
    if (auto m = check_row(f, start, end, line); !m.empty()) {
      issues_.add(line, std::move(m));
      return;
    }
    MlcRow row{std::string(f[0]), -1, *start, *end, line};
    if (auto n = numbered(f[0], "prefill.")) {
      row.n = *n;
      prefill.push_back(std::move(row));
    } else if (auto m = numbered(f[0], "generate.decode.")) {
      row.n = *m;
      decode.push_back(std::move(row));
    } else {
      log_.events.push_back(user_event(row.event + ".start", row.start, line));
      log_.events.push_back(user_event(row.event + ".end", row.end, line));
    }
  }

  void tail(std::string_view text, std::uint64_t line) {
    log_.incomplete_tail = true;
    issues_.add(line, "last line has no '\\n' (cut short?): dropped " + quoted(text));
  }

  std::vector<MlcRow> prefill, decode;

 private:
  std::string check_row(const std::array<std::string_view, 3>& f,
                        const std::optional<std::int64_t>& start,
                        const std::optional<std::int64_t>& end, std::uint64_t line) {
    if (!start || !end) {
      return "start_ms/end_ms must be non-negative ms (up to 6 decimals), got " + quoted(f[1]) +
             ", " + quoted(f[2]);
    }
    if (f[0].empty()) return "empty event name";
    if (*end < *start) return "'" + std::string(f[0]) + "' ends before it starts";
    if (auto [it, inserted] = first_line_.emplace(std::string(f[0]), line); !inserted) {
      return "'" + std::string(f[0]) + "' given again (first at line " +
             std::to_string(it->second) + "); kept the first";
    }
    return {};
  }

  MarkerLog& log_;
  IssueList issues_;
  std::map<std::string, std::uint64_t, std::less<>> first_line_;
  bool first_ = true;
};

/// One prefill pair spanning the prefill rows (inner boundaries as user events) and one token
/// per decode row, both in start order.
void emit_mlc_rows(std::vector<MlcRow> prefill, std::vector<MlcRow> decode, MarkerLog& log) {
  auto by_start = [](const MlcRow& a, const MlcRow& b) {
    return a.start != b.start ? a.start < b.start : a.line < b.line;
  };
  std::sort(prefill.begin(), prefill.end(), by_start);
  std::sort(decode.begin(), decode.end(), by_start);
  if (!prefill.empty()) {
    log.events.push_back(
        phase_event(MarkerKind::prefill_start, prefill.front().start, prefill.front().line));
    log.events.push_back(
        phase_event(MarkerKind::prefill_end, prefill.back().end, prefill.back().line));
    for (std::size_t i = 0; i < prefill.size(); ++i) {
      if (i > 0) {
        log.events.push_back(
            user_event(prefill[i].event + ".start", prefill[i].start, prefill[i].line));
      }
      if (i + 1 < prefill.size()) {
        log.events.push_back(
            user_event(prefill[i].event + ".end", prefill[i].end, prefill[i].line));
      }
    }
  }
  for (std::size_t i = 0; i < decode.size(); ++i) {
    log.events.push_back(user_event(decode[i].event + ".start", decode[i].start, decode[i].line));
    log.events.push_back(phase_event(MarkerKind::token, decode[i].end, decode[i].line,
                                     static_cast<std::int64_t>(i)));
  }
}

}  // namespace

MarkerLog parse_mlc_csv(std::string_view text, std::string_view name) {
  MarkerLog log;
  log.source = std::string(name);
  log.clock = "realtime";
  log.header.emplace_back("format", "melt-mlc-csv");
  std::vector<MlcRow> prefill, decode;
  {
    MlcReader reader(name, log);
    auto [tail, tail_line] = for_each_line(
        text,
        [&](std::string_view line_text, std::uint64_t line) { reader.line(line_text, line); });
    if (!tail.empty()) reader.tail(tail, tail_line);
    prefill = std::move(reader.prefill);
    decode = std::move(reader.decode);
  }  // the reader's issue list closes here (its "N more" issue, if any, comes first)
  emit_mlc_rows(std::move(prefill), std::move(decode), log);
  sort_events(log);
  return log;
}

Result<MarkerLog> read_mlc_csv(const std::filesystem::path& path) {
  auto text = read_text(path);
  if (!text) return text.error();
  return parse_mlc_csv(*text, path.string());
}

// ---- Monsoon CSV ----

namespace {

/// Parses one Monsoon row; false if malformed (`why` says how).
bool parse_monsoon_row(std::string_view row, double& t, double& ma, double& v, const char*& why) {
  const char* p = row.data();
  const char* e = row.data() + row.size();
  while (e > p && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
    --e;
  auto number = [&](double& out, const char* what) {
    const auto r = std::from_chars(p, e, out);
    if (r.ec != std::errc{}) {
      why = what;
      return false;
    }
    p = r.ptr;
    return true;
  };
  auto comma = [&]() {
    if (p == e || *p != ',') {
      why = "expected ',' between fields";
      return false;
    }
    ++p;
    return true;
  };
  if (!number(t, "t_rel_s is not a number") || !comma() || !number(ma, "mA is not a number") ||
      !comma() || !number(v, "V is not a number")) {
    return false;
  }
  if (p != e && *p == ',') ++p;  // PyMonsoon's trailing comma
  if (p != e) {
    why = "unexpected text after the third field";
    return false;
  }
  return true;
}

class MonsoonParser {
 public:
  MonsoonParser(std::string_view name, PowerTrace& trace)
      : trace_(trace), issues_(trace.issues, name) {}

  void line(std::string_view row) {
    ++line_;
    if (blank(row)) return;
    double t = 0.0;
    double ma = 0.0;
    double v = 0.0;
    const char* why = "";
    if (!parse_monsoon_row(row, t, ma, v, why)) {
      ++trace_.malformed_rows;
      issues_.add(line_, std::string(why) + ": " + quoted(trim(row)));
      return;
    }
    trace_.host_t_rel_s.push_back(t);
    trace_.current_a.push_back(static_cast<float>(ma * 1e-3));
    trace_.voltage_v.push_back(static_cast<float>(v));
  }

  // A row without '\n' at the end of the file: complete only if its trailing comma made it.
  void tail(std::string_view row) {
    std::string_view s = trim(row);
    if (s.empty()) return;
    if (s.back() != ',') {
      ++line_;
      ++trace_.malformed_rows;
      issues_.add(line_,
                  "last row has no trailing ',' and no '\\n' (cut short?): dropped " + quoted(s));
      return;
    }
    line(row);
  }

 private:
  PowerTrace& trace_;
  IssueList issues_;
  std::uint64_t line_ = 0;
};

}  // namespace

void parse_monsoon_csv(std::string_view text, std::string_view name, PowerTrace& trace) {
  MonsoonParser parser(name, trace);
  auto [tail, tail_line] =
      for_each_line(text, [&](std::string_view row, std::uint64_t) { parser.line(row); });
  (void)tail_line;
  parser.tail(tail);
}

Result<PowerTrace> read_monsoon_csv(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Error{Errc::not_found, name + ": no such file"};
  const auto size = std::filesystem::file_size(path, ec);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Error{Errc::io_error, name + ": cannot open: " + std::strerror(errno)};
  PowerTrace trace;
  if (!ec) {
    // A PyMonsoon row is 30-45 bytes; reserving avoids most of the regrowth copies.
    const std::size_t rows = static_cast<std::size_t>(size / 32);
    trace.host_t_rel_s.reserve(rows);
    trace.current_a.reserve(rows);
    trace.voltage_v.reserve(rows);
  }
  {
    MonsoonParser parser(name, trace);
    constexpr std::size_t kBlock = std::size_t{1} << 22;
    std::vector<char> buf(kBlock);
    std::size_t have = 0;  // bytes carried over from the previous block (a partial line)
    while (true) {
      if (have == buf.size()) buf.resize(buf.size() * 2);  // a line longer than the buffer
      const std::size_t got = std::fread(buf.data() + have, 1, buf.size() - have, f.get());
      if (got == 0) {
        if (std::ferror(f.get())) return Error{Errc::io_error, name + ": read failed"};
        parser.tail(std::string_view(buf.data(), have));
        break;
      }
      const std::string_view chunk(buf.data(), have + got);
      const std::size_t last_nl = chunk.rfind('\n');
      if (last_nl == std::string_view::npos) {
        have += got;
        continue;
      }
      std::string_view lines = chunk.substr(0, last_nl + 1);
      while (!lines.empty()) {
        const std::size_t nl = lines.find('\n');
        parser.line(lines.substr(0, nl));
        lines.remove_prefix(nl + 1);
      }
      have = chunk.size() - (last_nl + 1);
      std::memmove(buf.data(), buf.data() + last_nl + 1, have);
    }
  }
  return trace;
}

Result<double> parse_t_monsoon(std::string_view text, std::string_view name) {
  const std::string_view s = trim(text.substr(0, text.find_last_not_of("\n") + 1));
  const auto v = parse_double(trim(s));
  if (!v || !std::isfinite(*v) || *v <= 0.0) {
    return Error{Errc::parse_error, std::string(name) +
                                        ":1: expected one positive number (host time.time() at "
                                        "sampling start), got " +
                                        quoted(s)};
  }
  return *v;
}

Result<double> read_t_monsoon(const std::filesystem::path& path) {
  auto text = read_text(path);
  if (!text) return text.error();
  return parse_t_monsoon(*text, path.string());
}

// ---- run directory ----

Result<MeltRun> scan_run_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Error{Errc::not_found, dir.string() + ": not a directory"};
  }
  MeltRun run;
  run.dir = dir;
  if (std::filesystem::is_regular_file(dir / "measurements_monsoon.csv", ec)) {
    run.monsoon_csv = dir / "measurements_monsoon.csv";
  }
  if (std::filesystem::is_regular_file(dir / ".t_monsoon", ec)) run.t_monsoon = dir / ".t_monsoon";
  const auto sub = dir / "melt_measurements";
  if (!std::filesystem::is_directory(sub, ec)) return run;
  std::map<std::pair<std::int64_t, std::int64_t>, MeltConversation> found;
  std::filesystem::directory_iterator it(sub, ec);
  if (ec) return Error{Errc::io_error, sub.string() + ": cannot list: " + ec.message()};
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) return Error{Errc::io_error, sub.string() + ": cannot list: " + ec.message()};
    const auto& p = it->path();
    const std::string file = p.filename().string();
    // measurements_iter{I}_conv{C}.{tsv,csv,log}
    std::string_view s = file;
    auto take_number = [&](std::string_view prefix) -> std::optional<std::int64_t> {
      if (!s.starts_with(prefix)) return std::nullopt;
      s.remove_prefix(prefix.size());
      std::size_t n = 0;
      while (n < s.size() && s[n] >= '0' && s[n] <= '9')
        ++n;
      auto v = parse_int<std::int64_t>(s.substr(0, n));
      s.remove_prefix(n);
      return v;
    };
    const auto iter = take_number("measurements_iter");
    const auto conv = iter ? take_number("_conv") : std::nullopt;
    if (!iter || !conv || !it->is_regular_file(ec) || (s != ".tsv" && s != ".csv" && s != ".log")) {
      run.unrecognised.push_back(p);
      continue;
    }
    auto& c = found[{*iter, *conv}];
    c.iteration = *iter;
    c.conversation = *conv;
    (s == ".tsv" ? c.llamacpp_events : s == ".csv" ? c.mlc_csv : c.timings_log) = p;
  }
  for (auto& [key, c] : found)
    run.conversations.push_back(std::move(c));
  std::sort(run.unrecognised.begin(), run.unrecognised.end());
  return run;
}

}  // namespace meltrig::targets::melt
