// Host half of meltrig_stamp: runner summaries, the count check and split, stamp error figures,
// the wrapped argv. See stamp.hpp and docs/stamp.md.
#include "meltrig/targets/stamp.hpp"

#include "meltrig/targets/process.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <queue>
#include <utility>

namespace meltrig::targets {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::optional<double> to_double(std::string_view s) {
  double v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size() || v < 0)
    return std::nullopt;
  return v;
}

/// "<number> <unit>" -> number, if the unit matches.
std::optional<double> value_with_unit(std::string_view s, std::string_view unit) {
  s = trim(s);
  if (s.size() <= unit.size() + 1 || !s.ends_with(unit)) return std::nullopt;
  s.remove_suffix(unit.size());
  return to_double(trim(s));
}

std::string fmt(double v) {
  std::array<char, 64> buf{};
  auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  return std::string(buf.data(), r.ptr);
}

/// One line of MLC output, applied to the current block.
class MlcReader {
 public:
  MlcReader(std::string_view name, std::vector<MarkerIssue>& issues)
      : name_(name), issues_(issues) {}

  void line(std::string_view text, std::uint64_t n) {
    text = trim(text);
    if (text.starts_with("prefill:") && text.find(", decode:") != std::string_view::npos) {
      rates(text, n);
    } else if (text.starts_with("---") && text.find(" prefill ") != std::string_view::npos &&
               text.find("decode") == std::string_view::npos) {
      start_block(n);
      section_ = 'p';
    } else if (text.starts_with("---") && text.find(" decode") != std::string_view::npos) {
      if (out.empty() || out.back().format != "mlc_verbose" || section_ == 'd') start_block(n);
      section_ = 'd';
    } else if (section_ != 0) {
      figure(text, n);
    }
  }

  std::vector<RunnerSummary> out;

 private:
  void start_block(std::uint64_t n) {
    out.emplace_back();
    out.back().format = "mlc_verbose";
    out.back().line = n;
  }
  void issue(std::uint64_t n, std::string m) { issues_.push_back({name_, n, std::move(m)}); }
  void rates(std::string_view text, std::uint64_t n) {
    const std::size_t comma = text.find(", decode:");
    auto p = value_with_unit(text.substr(8, comma - 8), "tok/s");
    auto d = value_with_unit(text.substr(comma + 9), "tok/s");
    if (!p || !d) return issue(n, "MLC stats: expected 'prefill: X tok/s, decode: Y tok/s'");
    RunnerSummary s;
    s.format = "mlc_rates";
    s.prefill_tok_s = *p;
    s.decode_tok_s = *d;
    s.line = n;
    out.push_back(s);
    section_ = 0;
  }
  void figure(std::string_view text, std::uint64_t n) {
    RunnerSummary& b = out.back();
    const bool pre = section_ == 'p';
    if (text.starts_with("throughput:")) {
      auto v = value_with_unit(text.substr(11), "tok/s");
      if (!v) return issue(n, "MLC stats: bad throughput");
      (pre ? b.prefill_tok_s : b.decode_tok_s) = *v;
    } else if (text.starts_with("total tokens:")) {
      auto v = value_with_unit(text.substr(13), "tok");
      if (!v || *v < 0 || *v != std::floor(*v) || *v > 1e15)
        return issue(n, "MLC stats: bad total tokens");
      const auto i = static_cast<std::int64_t>(*v);
      if (pre)
        b.prompt_tokens = i;
      else
        b.output_tokens = i + 1;  // the first token is sampled by the prefill
    } else if (text.starts_with("total time:")) {
      auto v = value_with_unit(text.substr(11), "s");
      if (!v) return issue(n, "MLC stats: bad total time");
      (pre ? b.prompt_ms : b.decode_ms) = *v * 1000.0;
    } else {
      section_ = 0;  // the block is over
    }
  }

  std::string name_;
  std::vector<MarkerIssue>& issues_;
  char section_ = 0;  // 'p' prefill, 'd' decode, 0 outside a block
};

RunnerSummary from_llama(const melt::LlamaTimings& t) {
  RunnerSummary s;
  s.format = t.format;
  s.prompt_tokens = t.prompt_tokens;
  s.output_tokens = t.sample_runs >= 0 ? t.sample_runs : (t.eval_runs >= 0 ? t.eval_runs + 1 : -1);
  s.prompt_ms = t.prompt_eval_ms;
  s.decode_ms = t.eval_ms;
  if (t.prompt_tokens > 0 && t.prompt_eval_ms > 0)
    s.prefill_tok_s = static_cast<double>(t.prompt_tokens) / t.prompt_eval_ms * 1000.0;
  if (t.eval_runs > 0 && t.eval_ms > 0)
    s.decode_tok_s = static_cast<double>(t.eval_runs) / t.eval_ms * 1000.0;
  s.line = t.line;
  return s;
}

bool is_blank_chunk(const MarkerEvent& e) {
  auto b = e.extra_value("blank");
  return b && *b == "1";
}

std::int64_t chunk_bytes(const MarkerEvent& e) {
  auto b = e.extra_value("bytes");
  auto n = b ? to_int(*b) : std::nullopt;
  return n ? *n : -1;
}

/// Tokens per chunk: at least one each, `total` in all, the rest given one at a time to the chunk
/// with the most bytes per token so far (equal weights without bytes=).
std::vector<std::int64_t> allocate(const std::vector<const MarkerEvent*>& chunks,
                                   std::int64_t total) {
  std::vector<std::int64_t> k(chunks.size(), 1);
  using Item = std::pair<double, std::size_t>;
  std::priority_queue<Item> q;
  auto weight = [&](std::size_t i) {
    const double b = static_cast<double>(std::max<std::int64_t>(chunk_bytes(*chunks[i]), 1));
    return b / static_cast<double>(k[i]);
  };
  for (std::size_t i = 0; i < chunks.size(); ++i)
    q.push({weight(i), chunks.size() - i});  // ties: the earlier chunk first
  for (std::int64_t extra = total - static_cast<std::int64_t>(chunks.size()); extra > 0; --extra) {
    auto [w, rev] = q.top();
    q.pop();
    const std::size_t i = chunks.size() - rev;
    ++k[i];
    q.push({weight(i), rev});
  }
  return k;
}

/// Rebuilds the events with chunk i split into k[i] tokens spaced evenly over the interval since
/// the previous chunk (the first chunk's tokens all keep its stamp), every token re-indexed.
std::vector<MarkerEvent> split_tokens(const std::vector<MarkerEvent>& events,
                                      const std::vector<std::int64_t>& k) {
  std::vector<MarkerEvent> out;
  std::size_t chunk = 0;
  std::int64_t index = 0, prev_t = -1;
  for (const auto& e : events) {
    if (e.kind != MarkerKind::token) {
      out.push_back(e);
      continue;
    }
    const std::int64_t n = k[chunk++];
    for (std::int64_t j = 0; j < n; ++j) {
      MarkerEvent t = e;
      t.index = index++;
      if (n > 1) {
        t.label = "split:" + std::to_string(n);
        if (prev_t >= 0) t.t_ns = prev_t + (e.t_ns - prev_t) * (j + 1) / n;
      }
      out.push_back(std::move(t));
    }
    prev_t = e.t_ns;
  }
  return out;
}

void put_summary_header(MarkerLog& log, const StampCheck& c) {
  auto& h = log.header;
  h.emplace_back("stamp.verdict", std::string(verdict_name(c.verdict)));
  h.emplace_back("stamp.chunks", std::to_string(c.chunks));
  h.emplace_back("stamp.trailing_blank_chunks", std::to_string(c.trailing_blank));
  h.emplace_back("stamp.expected_tokens", std::to_string(c.expected));
  if (!c.summary) return;
  const RunnerSummary& s = *c.summary;
  h.emplace_back("summary.format", s.format);
  h.emplace_back("summary.prompt_tokens", std::to_string(s.prompt_tokens));
  h.emplace_back("summary.output_tokens", std::to_string(s.output_tokens));
  if (!std::isnan(s.prompt_ms)) h.emplace_back("summary.prompt_ms", fmt(s.prompt_ms));
  if (!std::isnan(s.decode_ms)) h.emplace_back("summary.decode_ms", fmt(s.decode_ms));
  if (!std::isnan(s.prefill_tok_s)) h.emplace_back("summary.prefill_tok_s", fmt(s.prefill_tok_s));
  if (!std::isnan(s.decode_tok_s)) h.emplace_back("summary.decode_tok_s", fmt(s.decode_tok_s));
}

/// Turns whitespace-only chunks after the last real one into user events while there are more
/// chunks than `expected` - 1 (the runner's closing newline is output, not a token; the last
/// counted token may be an unprinted end-of-generation token).
std::int64_t drop_trailing_blank(MarkerLog& log, std::int64_t chunks, std::int64_t expected) {
  std::int64_t dropped = 0;
  for (auto it = log.events.rbegin(); it != log.events.rend() && chunks - dropped > expected - 1;
       ++it) {
    if (it->kind != MarkerKind::token) continue;
    if (!is_blank_chunk(*it)) break;
    it->kind = MarkerKind::user;
    it->label = "stamp.trailing_output";
    it->index = -1;
    ++dropped;
  }
  return dropped;
}

std::string verdict_message(const StampCheck& c, std::int64_t n) {
  const std::string counts = std::to_string(n) + " token chunks, the runner (" +
                             (c.summary ? c.summary->format : std::string("?")) + ") counts " +
                             std::to_string(c.expected) + " output tokens";
  switch (c.verdict) {
    case StampVerdict::match:
      return counts + ": they agree";
    case StampVerdict::end_of_generation:
      return counts + ": they agree (its last token ended generation and was not printed)";
    case StampVerdict::split:
      return counts +
             ": chunks held several tokens; split evenly over their intervals (label "
             "split:K)";
    case StampVerdict::excess:
      return counts + ": more chunks than tokens (other output on stdout?); left as stamped";
    case StampVerdict::no_tokens:
      return "the runner printed nothing after its prompt: no token chunks";
    case StampVerdict::no_summary:
      break;
  }
  return std::to_string(n) + " token chunks; no runner summary to check them against";
}

}  // namespace

std::vector<RunnerSummary> parse_mlc_stats(std::string_view text, std::string_view name,
                                           std::vector<MarkerIssue>& issues) {
  MlcReader r(name, issues);
  std::uint64_t n = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    r.line(text.substr(0, nl), ++n);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return std::move(r.out);
}

std::optional<RunnerSummary> find_runner_summary(std::string_view text, std::string_view name,
                                                 std::vector<MarkerIssue>& issues) {
  std::optional<RunnerSummary> best;
  auto llama = melt::parse_llama_timings(text, name);
  issues.insert(issues.end(), llama.issues.begin(), llama.issues.end());
  if (!llama.blocks.empty()) best = from_llama(llama.blocks.back());
  auto mlc = parse_mlc_stats(text, name, issues);
  if (!mlc.empty() && (!best || mlc.back().line > best->line)) best = mlc.back();
  return best;
}

std::string_view verdict_name(StampVerdict v) {
  switch (v) {
    case StampVerdict::match:
      return "match";
    case StampVerdict::end_of_generation:
      return "end_of_generation";
    case StampVerdict::split:
      return "split";
    case StampVerdict::excess:
      return "excess";
    case StampVerdict::no_summary:
      return "no_summary";
    case StampVerdict::no_tokens:
      return "no_tokens";
  }
  return "unknown";
}

StampCheck check_stamped(const MarkerLog& stamped, const std::optional<RunnerSummary>& summary) {
  StampCheck c;
  c.summary = summary;
  c.log = stamped;
  for (const auto& e : stamped.events)
    if (e.kind == MarkerKind::token) ++c.chunks;
  c.expected = summary ? summary->output_tokens : -1;
  std::int64_t n = c.chunks;
  if (c.expected >= 0) {
    c.trailing_blank = drop_trailing_blank(c.log, c.chunks, c.expected);
    n -= c.trailing_blank;
  }
  if (n == 0)
    c.verdict = StampVerdict::no_tokens;
  else if (c.expected < 0)
    c.verdict = StampVerdict::no_summary;
  else if (n == c.expected)
    c.verdict = StampVerdict::match;
  else if (n == c.expected - 1)
    c.verdict = StampVerdict::end_of_generation;
  else if (n < c.expected)
    c.verdict = StampVerdict::split;
  else
    c.verdict = StampVerdict::excess;
  if (c.verdict == StampVerdict::split) {
    std::vector<const MarkerEvent*> chunks;
    for (const auto& e : c.log.events)
      if (e.kind == MarkerKind::token) chunks.push_back(&e);
    c.log.events = split_tokens(c.log.events, allocate(chunks, c.expected));
  }
  for (auto& e : c.log.events)
    if (e.kind == MarkerKind::prefill_end && e.extra_value("tokens_known") && summary &&
        summary->prompt_tokens >= 0)
      e.index = summary->prompt_tokens;
  c.message = verdict_message(c, n);
  if (c.verdict != StampVerdict::match && c.verdict != StampVerdict::end_of_generation)
    c.log.issues.push_back({stamped.source, 0, "stamp check: " + c.message});
  put_summary_header(c.log, c);
  return c;
}

std::int64_t StampErrors::quantile(double q) const {
  if (errors_ns.empty()) return 0;
  std::vector<std::int64_t> v = errors_ns;
  std::sort(v.begin(), v.end());
  const double rank = std::ceil(q * static_cast<double>(v.size()));
  const auto i = static_cast<std::size_t>(std::clamp(rank, 1.0, static_cast<double>(v.size())));
  return v[i - 1];
}

StampErrors stamp_errors(const MarkerLog& stamped, const MarkerLog& truth) {
  StampErrors r;
  std::vector<std::pair<std::int64_t, std::int64_t>> chunk_end;  // (cumulative bytes, t_ns)
  std::int64_t cum = 0;
  for (const auto& e : stamped.events) {
    if (e.kind != MarkerKind::token) continue;
    cum += std::max<std::int64_t>(chunk_bytes(e), 0);
    chunk_end.emplace_back(cum, e.t_ns);
  }
  r.chunks = static_cast<std::int64_t>(chunk_end.size());
  cum = 0;
  std::size_t prev_chunk = chunk_end.size();
  for (const auto& e : truth.events) {
    if (e.kind != MarkerKind::token) continue;
    ++r.true_tokens;
    cum += std::max<std::int64_t>(chunk_bytes(e), 0);
    auto it = std::lower_bound(chunk_end.begin(), chunk_end.end(), std::pair{cum, INT64_MIN});
    if (it == chunk_end.end()) continue;
    const auto chunk = static_cast<std::size_t>(it - chunk_end.begin());
    if (chunk == prev_chunk) ++r.coalesced;
    prev_chunk = chunk;
    ++r.found;
    r.errors_ns.push_back(it->second - e.t_ns);
  }
  return r;
}

Result<StampErrors> measure_stamp_errors(const StampBenchOptions& o) {
  const auto stamped = o.dir / "stamp_bench.stamped.markers";
  const auto truth = o.dir / "stamp_bench.truth.markers";
  StampRun run;
  run.device_tool = o.stamp_tool.string();
  run.markers = stamped.string();
  run.realtime = o.realtime;
  run.pipe = o.pipe;
  auto r = run_process(stamped_argv(run, {o.runner.string(), "--markers", truth.string(),
                                          "--prompt", "Why is the sky blue", "--tokens",
                                          std::to_string(o.tokens), "--no-sync", "--stream"}),
                       milliseconds(600000));
  if (!r) return r.error();
  if (r->timed_out || r->exit_code != 0)
    return Error{Errc::io_error, o.stamp_tool.string() + " " + o.runner.string() + ": exit " +
                                     std::to_string(r->exit_code) + ": " + r->err};
  auto s = read_marker_file(stamped);
  if (!s) return s.error();
  auto t = read_marker_file(truth);
  if (!t) return t.error();
  return stamp_errors(*s, *t);
}

std::vector<std::string> stamped_argv(const StampRun& run, const std::vector<std::string>& runner) {
  std::vector<std::string> argv = {run.device_tool.empty() ? "meltrig_stamp" : run.device_tool,
                                   "--markers", run.markers};
  if (!run.prompt_file.empty()) {
    argv.push_back("--prompt-file");
    argv.push_back(run.prompt_file);
  }
  if (run.realtime) argv.push_back("--realtime");
  if (run.pipe) argv.push_back("--pipe");
  argv.push_back("--");
  argv.insert(argv.end(), runner.begin(), runner.end());
  return argv;
}

Result<StampRun> prepare_stamp(Target& target, const std::filesystem::path& local_tool,
                               const std::string& markers, const std::string& prompt_file) {
  StampRun run;
  run.markers = markers;
  run.prompt_file = prompt_file;
  run.device_tool = "meltrig_stamp";
  if (local_tool.empty()) return run;
  const std::size_t slash = markers.rfind('/');
  run.device_tool = (slash == std::string::npos ? std::string(".")
                     : slash == 0               ? std::string()
                                                : markers.substr(0, slash)) +
                    "/meltrig_stamp";
  if (auto r = install_stamp(target, local_tool, run.device_tool); !r) return r.error();
  return run;
}

StampCheck check_stamped_output(const MarkerLog& stamped, std::string_view runner_output) {
  std::vector<MarkerIssue> issues;
  auto summary = find_runner_summary(runner_output, "runner output", issues);
  StampCheck c = check_stamped(stamped, summary);
  c.log.issues.insert(c.log.issues.end(), issues.begin(), issues.end());
  return c;
}

Result<void> install_stamp(Target& target, const std::filesystem::path& local,
                           const std::string& device_path) {
  const std::string tmp = device_path + ".new";
  if (auto p = target.push(local, tmp); !p) return p.error();
  for (const auto& argv : {std::vector<std::string>{"chmod", "755", tmp},
                           std::vector<std::string>{"mv", "-f", tmp, device_path}}) {
    auto r = target.run(argv, milliseconds(15000));
    if (!r) return r.error();
    if (r->exit_code != 0)
      return Error{Errc::io_error, target.name() + ": " + argv[0] + " " + tmp + " failed (exit " +
                                       std::to_string(r->exit_code) + "): " + r->err};
  }
  return {};
}

}  // namespace meltrig::targets
