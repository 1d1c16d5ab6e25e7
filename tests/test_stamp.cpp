// meltrig_stamp and its host half: runner summaries (llama.cpp old and current, MLC) from the
// transcripts in fixtures/data/runner_output, the count check and even split, replays of those
// transcripts through the real tool on a pseudo terminal, runners that crash, print nothing or
// flood, signal forwarding, and the toy runner's streaming mode (stamp error figures, recorded,
// not asserted).
#include <doctest/doctest.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "meltrig/targets/adb_target.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/targets/melt_import.hpp"
#include "meltrig/targets/shell_quote.hpp"
#include "meltrig/targets/stamp.hpp"
#include "test_support.hpp"

using namespace meltrig;
using namespace meltrig::targets;
using meltrig::test::Process;
using meltrig::test::read_file;
using meltrig::test::TempDir;

namespace {

const char* stamp_tool() {
  return MELTRIG_STAMP_PATH;
}

std::string fixture(const std::string& name) {
  return std::string(MELTRIG_SOURCE_DIR) + "/fixtures/data/runner_output/" + name;
}

std::vector<const MarkerEvent*> of_kind(const MarkerLog& log, MarkerKind k) {
  std::vector<const MarkerEvent*> out;
  for (const auto& e : log.events)
    if (e.kind == k) out.push_back(&e);
  return out;
}

std::string header(const MarkerLog& log, const std::string& key) {
  for (const auto& [k, v] : log.header)
    if (k == key) return v;
  return "<absent>";
}

/// Parses a marker file that must be complete: header, run.start, run.end, a final clock triple,
/// no malformed or cut lines.
MarkerLog complete_log(const std::filesystem::path& path) {
  auto log = read_marker_file(path);
  REQUIRE_MESSAGE(log.ok(), (log.ok() ? "" : log.error().describe()));
  CHECK(log->issues.empty());
  CHECK_FALSE(log->incomplete_tail);
  CHECK(of_kind(*log, MarkerKind::run_start).size() == 1);
  REQUIRE(of_kind(*log, MarkerKind::run_end).size() == 1);
  CHECK(log->clocks.size() >= 2);
  const std::string text = read_file(path);
  const auto last = text.rfind('\n', text.size() - 2);
  CHECK(text.substr(last + 1).find(" clock boot=") != std::string::npos);  // triple closes it
  return std::move(log).value();
}

const MarkerEvent& run_end(const MarkerLog& log) {
  return *of_kind(log, MarkerKind::run_end).front();
}

std::string extra(const MarkerEvent& e, std::string_view key) {
  auto v = e.extra_value(key);
  return v ? std::string(*v) : std::string("<absent>");
}

/// A device-side replay of a transcript: stderr head, each stdout write of the runner (one
/// printf each, a short pause between them), stderr tail. sh is only the test's runner here.
std::vector<std::string> replay_argv(const std::string& name) {
  std::string script = "cat " + sh_quote(fixture(name + ".stderr_head.txt")) + " >&2";
  const std::string writes = read_file(fixture(name + ".stdout_writes.txt"));
  std::size_t pos = 0;
  while (pos < writes.size()) {
    std::size_t nl = writes.find('\n', pos);
    auto piece = decode_value(std::string_view(writes).substr(pos, nl - pos));
    REQUIRE(piece.ok());
    script += "; printf %s " + sh_quote(*piece) + "; sleep 0.005";
    pos = nl + 1;
  }
  script += "; cat " + sh_quote(fixture(name + ".stderr_tail.txt")) + " >&2";
  return {"/bin/sh", "-c", script};
}

MarkerEvent token_at(std::int64_t t, std::int64_t index, std::int64_t bytes, bool blank = false) {
  MarkerEvent e;
  e.t_ns = t;
  e.kind = MarkerKind::token;
  e.index = index;
  e.extra.emplace_back("bytes", std::to_string(bytes));
  if (blank) e.extra.emplace_back("blank", "1");
  return e;
}

RunnerSummary summary_of(std::int64_t prompt, std::int64_t output) {
  RunnerSummary s;
  s.format = "llama_perf";
  s.prompt_tokens = prompt;
  s.output_tokens = output;
  return s;
}

}  // namespace

TEST_CASE("stamp: llama.cpp transcripts in both formats and MLC's stats parse to their figures") {
  std::vector<MarkerIssue> issues;
  SUBCASE("llama_print_timings (the releases MELT used)") {
    auto s =
        find_runner_summary(read_file(fixture("llama_print_timings.console.txt")), "old", issues);
    REQUIRE(s);
    CHECK(s->format == "llama_print_timings");
    CHECK(s->prompt_tokens == 5);
    CHECK(s->output_tokens == 16);  // sample runs
    CHECK(s->prompt_ms == doctest::Approx(233.12));
    CHECK(s->decode_ms == doctest::Approx(1003.50));
  }
  SUBCASE("llama_perf_* (current releases): sampler line first, one block") {
    const std::string text = read_file(fixture("llama_perf.console.txt"));
    auto log = melt::parse_llama_timings(text, "new");
    CHECK(log.issues.empty());
    REQUIRE(log.blocks.size() == 1);
    const auto& b = log.blocks.front();
    CHECK(b.format == "llama_perf");
    CHECK(b.sample_runs == 24);
    CHECK(b.sample_ms == doctest::Approx(4.12));
    CHECK(b.load_ms == doctest::Approx(734.56));
    CHECK(b.prompt_tokens == 7);
    CHECK(b.eval_runs == 23);
    CHECK(b.total_tokens == 30);
    CHECK(b.graphs_reused == 22);
    auto s = find_runner_summary(text, "new", issues);
    REQUIRE(s);
    CHECK(s->output_tokens == 24);
    CHECK(s->decode_tok_s == doctest::Approx(23.0 / 1.3802));
    // Two runs in one log are two blocks.
    CHECK(melt::parse_llama_timings(text + text, "twice").blocks.size() == 2);
  }
  SUBCASE("MLC verbose stats; the rates line alone has no counts") {
    auto s = find_runner_summary(read_file(fixture("mlc.console.txt")), "mlc", issues);
    REQUIRE(s);
    CHECK(s->format == "mlc_rates");  // the last block in that log
    auto all = parse_mlc_stats(read_file(fixture("mlc.console.txt")), "mlc", issues);
    REQUIRE(all.size() == 2);
    CHECK(all[0].format == "mlc_verbose");
    CHECK(all[0].prompt_tokens == 23);
    CHECK(all[0].output_tokens == 8);  // 7 decode steps + the token the prefill sampled
    CHECK(all[0].prompt_ms == doctest::Approx(417.0));
    CHECK(all[0].decode_tok_s == doctest::Approx(21.0));
    CHECK(all[1].prefill_tok_s == doctest::Approx(55.2));
    CHECK(all[1].output_tokens == -1);
  }
  CHECK(issues.empty());
  SUBCASE("malformed summary lines are issues with their line, never a crash") {
    std::vector<MarkerIssue> bad;
    auto s = find_runner_summary(
        "llama_perf_context_print:        eval time =  x ms / 3 runs\n"
        "throughput: 1 tok/s\n"
        "----------- prefill -----------\ntotal tokens: 2.5 tok\n",
        "bad.log", bad);
    REQUIRE(bad.size() == 2);
    CHECK(bad[0].line == 1);
    CHECK(bad[1].line == 4);
    REQUIRE(s);  // the MLC block exists, without a token count
    CHECK(s->prompt_tokens == -1);
  }
}

TEST_CASE("stamp: the count check agrees, drops the closing newline, splits evenly, flags") {
  MarkerLog log;
  log.source = "s.markers";
  MarkerEvent pe;
  pe.t_ns = 1000;
  pe.kind = MarkerKind::prefill_end;
  pe.index = 0;
  pe.extra.emplace_back("tokens_known", "0");
  log.events.push_back(pe);
  log.events.push_back(token_at(1000, 0, 4));
  log.events.push_back(token_at(2000, 1, 12));  // three tokens in one chunk
  log.events.push_back(token_at(2600, 2, 4));
  log.events.push_back(token_at(2700, 3, 1, true));  // the runner's closing "\n"

  SUBCASE("match after the trailing blank chunk is dropped (kept as a user event)") {
    log.events.erase(log.events.begin() + 2);
    auto c = check_stamped(log, summary_of(6, 2));
    CHECK(c.verdict == StampVerdict::match);
    CHECK(c.trailing_blank == 1);
    CHECK(of_kind(c.log, MarkerKind::token).size() == 2);
    CHECK(of_kind(c.log, MarkerKind::user).front()->label == "stamp.trailing_output");
    CHECK(of_kind(c.log, MarkerKind::prefill_end).front()->index == 6);  // from the summary
    CHECK(header(c.log, "stamp.verdict") == "match");
    CHECK(c.log.issues.empty());
  }
  SUBCASE("fewer chunks than tokens: the chunk with most bytes per token is split, evenly") {
    auto c = check_stamped(log, summary_of(6, 6));
    CHECK(c.verdict == StampVerdict::split);
    auto toks = of_kind(c.log, MarkerKind::token);
    REQUIRE(toks.size() == 6);
    CHECK(toks[0]->t_ns == 1000);
    CHECK(toks[0]->label.empty());
    // Chunk 2 (12 bytes) took the two extra tokens: 3 tokens over (1000, 2000].
    CHECK(toks[1]->t_ns == 1333);
    CHECK(toks[2]->t_ns == 1666);
    CHECK(toks[3]->t_ns == 2000);
    for (int i = 1; i <= 3; ++i)
      CHECK(toks[static_cast<std::size_t>(i)]->label == "split:3");
    CHECK(toks[4]->t_ns == 2600);
    CHECK(toks[5]->t_ns == 2700);  // too few chunks: the blank one is a token here
    for (std::size_t i = 0; i < toks.size(); ++i)
      CHECK(toks[i]->index == static_cast<std::int64_t>(i));
    REQUIRE(c.log.issues.size() == 1);
    CHECK(c.log.issues[0].message.find("split evenly") != std::string::npos);
  }
  SUBCASE("one chunk fewer: the last token ended generation unprinted") {
    auto c = check_stamped(log, summary_of(6, 4));
    CHECK(c.verdict == StampVerdict::end_of_generation);
    CHECK(of_kind(c.log, MarkerKind::token).size() == 3);
  }
  SUBCASE("more chunks than tokens: reported, left as stamped") {
    auto c = check_stamped(log, summary_of(6, 1));
    CHECK(c.verdict == StampVerdict::excess);
    CHECK(c.trailing_blank == 1);
    CHECK(of_kind(c.log, MarkerKind::token).size() == 3);
    CHECK(c.log.issues.size() == 1);
  }
  SUBCASE("no summary: counted, nothing changed") {
    auto c = check_stamped(log, std::nullopt);
    CHECK(c.verdict == StampVerdict::no_summary);
    CHECK(c.chunks == 4);
    CHECK(of_kind(c.log, MarkerKind::token).size() == 4);
  }
}

TEST_CASE("stamp: token keys beyond v1 survive parse and format") {
  auto log =
      parse_markers("meltrig-markers 1 clock=monotonic\n5 token index=0 bytes=5 blank=1\n", "x");
  REQUIRE(log.ok());
  REQUIRE(log->events.size() == 1);
  CHECK(extra(log->events[0], "bytes") == "5");
  CHECK(extra(log->events[0], "blank") == "1");
  CHECK(MarkerFormatter::event(log->events[0]) == "5 token index=0 bytes=5 blank=1\n");
}

TEST_CASE("stamp: replayed llama.cpp and MLC transcripts under meltrig_stamp") {
  TempDir dir;
  struct Case {
    std::string name;
    StampVerdict verdict;
    std::int64_t tokens;
  };
  for (const Case& k : {Case{"llama_print_timings", StampVerdict::match, 16},
                        Case{"llama_perf", StampVerdict::match, 24},
                        Case{"mlc_verbose", StampVerdict::end_of_generation, 7}}) {
    CAPTURE(k.name);
    const std::string base = k.name == "mlc_verbose" ? "mlc" : k.name;
    const auto markers = dir / (base + ".markers");
    std::vector<std::string> argv = {
        stamp_tool(), "--markers", markers.string(), "--prompt-file", fixture(base + ".prompt.txt"),
        "--"};
    for (const auto& a : replay_argv(base))
      argv.push_back(a);
    Process p(argv, dir.path(), base);
    REQUIRE(p.wait() == 0);
    // Passed through unchanged: stdout byte for byte, stderr with the summary.
    std::string expected_out;
    const std::string writes = read_file(fixture(base + ".stdout_writes.txt"));
    for (std::size_t pos = 0; pos < writes.size();) {
      std::size_t nl = writes.find('\n', pos);
      expected_out += *decode_value(std::string_view(writes).substr(pos, nl - pos));
      pos = nl + 1;
    }
    CHECK(p.out() == expected_out);
    MarkerLog log = complete_log(markers);
    CHECK(run_end(log).label == "ok");
    CHECK(extra(run_end(log), "exit") == "0");
    CHECK(header(log, "prompt") == "file");
    std::vector<MarkerIssue> issues;
    auto summary = find_runner_summary(p.err(), base + ".err", issues);
    REQUIRE(summary);
    if (base == "mlc") summary = parse_mlc_stats(p.err(), "mlc", issues).front();
    auto c = check_stamped(log, summary);
    MESSAGE(k.name << ": " << c.message);
    // On a loaded machine two writes can arrive in one read: then the check splits them, or,
    // one chunk short, takes it for an unprinted end-of-generation token (docs/stamp.md).
    CHECK((c.verdict == k.verdict || c.verdict == StampVerdict::split ||
           c.verdict == StampVerdict::end_of_generation));
    const auto n = static_cast<std::int64_t>(of_kind(c.log, MarkerKind::token).size());
    if (c.verdict == k.verdict) CHECK(n == k.tokens);
    if (c.verdict == StampVerdict::split) CHECK(n == summary->output_tokens);
    if (c.verdict == StampVerdict::end_of_generation) CHECK(n == summary->output_tokens - 1);
    auto pe = of_kind(c.log, MarkerKind::prefill_end);
    REQUIRE(pe.size() == 1);
    CHECK(pe[0]->index == summary->prompt_tokens);
    CHECK(pe[0]->t_ns == of_kind(c.log, MarkerKind::token).front()->t_ns);
  }
}

TEST_CASE("stamp: runners that crash, print nothing, flood, or cannot start end with a status") {
  TempDir dir;
  const auto markers = dir / "m.markers";
  auto stamp = [&](std::vector<std::string> child, const std::string& tag) {
    std::vector<std::string> argv = {stamp_tool(), "--markers", markers.string(), "--"};
    argv.insert(argv.end(), child.begin(), child.end());
    return std::make_unique<Process>(argv, dir.path(), tag);
  };
  SUBCASE("crash: SIGSEGV after two chunks") {
    auto p =
        stamp({"/bin/sh", "-c", "printf 'a b'; sleep 0.05; printf ' c'; kill -SEGV $$"}, "crash");
    CHECK(p->wait() == 128 + SIGSEGV);
    MarkerLog log = complete_log(markers);
    CHECK(run_end(log).label == "error");
    CHECK(extra(run_end(log), "signal") == std::to_string(SIGSEGV));
    CHECK(of_kind(log, MarkerKind::token).size() >= 1);
    CHECK(p->out() == "a b c");
    CHECK(p->err().find("signal 11") != std::string::npos);
  }
  SUBCASE("prints nothing and fails") {
    auto p = stamp({"/bin/false"}, "silent");
    CHECK(p->wait() == 1);
    MarkerLog log = complete_log(markers);
    CHECK(run_end(log).label == "error");
    CHECK(extra(run_end(log), "exit") == "1");
    CHECK(of_kind(log, MarkerKind::token).empty());
    CHECK(of_kind(log, MarkerKind::prefill_end).empty());
    CHECK(check_stamped(log, summary_of(3, 8)).verdict == StampVerdict::no_tokens);
  }
  SUBCASE("floods 4 MB without a newline") {
    const std::int64_t n = 4'000'000;
    auto p =
        stamp({"/bin/sh", "-c", "yes x | tr -d '\\n' | head -c " + std::to_string(n)}, "flood");
    CHECK(p->wait() == 0);
    MarkerLog log = complete_log(markers);
    CHECK(run_end(log).label == "ok");
    std::int64_t bytes = 0;
    for (const auto* t : of_kind(log, MarkerKind::token))
      bytes += std::stoll(extra(*t, "bytes"));
    CHECK(bytes == n);
    CHECK(p->out().size() == static_cast<std::size_t>(n));
    MESSAGE("flood: " << of_kind(log, MarkerKind::token).size() << " chunks for " << n << " bytes");
  }
  SUBCASE("--realtime raises the stamper alone: the program runs at normal priority") {
    std::vector<std::string> argv = {stamp_tool(), "--markers", markers.string(),
                                     "--realtime", "--",        "/usr/bin/chrt",
                                     "-p",         "0"};
    Process p(argv, dir.path(), "rt");
    CHECK(p.wait() == 0);
    MarkerLog log = complete_log(markers);
    const std::string rt = header(log, "realtime");
    CHECK((rt == "yes" || rt == "no-permission"));
    CHECK(p.out().find("SCHED_OTHER") != std::string::npos);  // reset on fork
    MESSAGE("--realtime here: " << rt);
  }
  SUBCASE("a program that does not exist") {
    auto p = stamp({"/nonexistent/runner"}, "missing");
    CHECK(p->wait() == 127);
    MarkerLog log = complete_log(markers);
    CHECK(run_end(log).label == "error");
    CHECK(extra(run_end(log), "exit") == "127");
    CHECK(of_kind(log, MarkerKind::user).front()->label == "stamp.exec_failed");
  }
  SUBCASE("usage errors exit 2 and write no file") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"--markers", markers.string()},
             {"--markers", markers.string(), "--"},
             {"--", "true"},
             {"--markers", markers.string(), "--bogus", "1", "--", "true"},
             {"--markers", markers.string(), "--prompt-file", (dir / "none").string(), "--",
              "true"}}) {
      std::vector<std::string> argv = {stamp_tool()};
      argv.insert(argv.end(), args.begin(), args.end());
      Process p(argv, dir.path(), "usage");
      CHECK(p.wait() == 2);
      CHECK(p.err().find("usage:") != std::string::npos);
      CHECK_FALSE(std::filesystem::exists(markers));
    }
  }
}

TEST_CASE("stamp: SIGTERM is forwarded to the runner, whose end is recorded as interrupted") {
  TempDir dir;
  const auto markers = dir / "s.markers";
  const auto truth = dir / "t.markers";
  Process p({stamp_tool(), "--markers", markers.string(), "--", MELTRIG_TOY_RUNNER_PATH,
             "--markers", truth.string(), "--prompt", "a b c", "--tokens", "1000", "--no-sync",
             "--stream", "--token-delay-ms", "20"},
            dir.path(), "term");
  // Bounded wait for the first stamped token, then stop it.
  bool started = false;
  for (int i = 0; i < 3000 && !started; ++i) {
    started = read_file(markers).find(" token ") != std::string::npos;
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(started);
  p.signal(SIGTERM);
  CHECK(p.wait() == 143);  // the toy runner catches SIGTERM and exits 128 + 15
  MarkerLog log = complete_log(markers);
  CHECK(run_end(log).label == "interrupted");
  auto t = read_marker_file(truth);
  REQUIRE(t.ok());
  REQUIRE(!of_kind(*t, MarkerKind::run_end).empty());
  CHECK(of_kind(*t, MarkerKind::run_end).front()->label == "interrupted");
}

TEST_CASE("stamp: the toy runner streaming one token per write: every token found, errors") {
  // Figures are recorded (MESSAGE), never asserted: docs/stamp.md has the measured distribution
  // and `meltrig bench stamp` measures it on any machine.
  std::string mode;
  SUBCASE("stdout on a pseudo terminal (the default)") {
    mode = "pty";
  }
  SUBCASE("stdout on a pipe (--pipe)") {
    mode = "pipe";
  }
  TempDir dir;
  const auto markers = dir / "s.markers";
  const auto truth = dir / "t.markers";
  const int n = 300;
  std::vector<std::string> argv = {stamp_tool(), "--markers", markers.string()};
  if (mode == "pipe") argv.push_back("--pipe");
  for (const char* a : {"--", MELTRIG_TOY_RUNNER_PATH, "--markers"})
    argv.emplace_back(a);
  for (const std::string& a :
       {truth.string(), std::string("--prompt"), std::string("Why is the sky blue"),
        std::string("--tokens"), std::to_string(n), std::string("--no-sync"),
        std::string("--stream")})
    argv.push_back(a);
  Process p(argv, dir.path(), "toy");
  REQUIRE(p.wait() == 0);
  MarkerLog log = complete_log(markers);
  CHECK(header(log, "stdout") == mode);
  auto t = read_marker_file(truth);
  REQUIRE(t.ok());
  StampErrors e = stamp_errors(log, *t);
  CHECK(e.true_tokens == n);
  CHECK(e.found == n);  // every token's bytes arrived in a stamped chunk
  for (auto err : e.errors_ns)
    CHECK(err >= 0);  // a stamp is never before the write it stamps
  auto us = [&](double q) { return static_cast<double>(e.quantile(q)) / 1000.0; };
  MESSAGE("toy --stream under meltrig_stamp ("
          << mode << "): " << e.found << "/" << e.true_tokens << " tokens found, " << e.chunks
          << " chunks, " << e.coalesced << " coalesced; stamp error us p50 " << us(0.5) << " p90 "
          << us(0.9) << " p99 " << us(0.99) << " max " << us(1.0));
  std::vector<MarkerIssue> issues;
  auto summary = find_runner_summary(p.err(), "toy.err", issues);
  REQUIRE(summary);
  CHECK(summary->output_tokens == n);
  auto c = check_stamped(log, summary);
  CHECK((c.verdict == StampVerdict::match || c.verdict == StampVerdict::split ||
         c.verdict == StampVerdict::end_of_generation));
  const std::size_t expected_tokens =
      static_cast<std::size_t>(c.verdict == StampVerdict::end_of_generation ? n - 1 : n);
  CHECK(of_kind(c.log, MarkerKind::token).size() == expected_tokens);
}

TEST_CASE("stamp: adb target installs meltrig_stamp and runs llama-cli under it (stand-in)") {
  // fixtures/adb_standin/transcript_stamp.json: hand-written adb answers for a stamped llama-cli
  // run (no phone here): the device argv must match it word for word.
  TempDir dir;
  const std::string work = "/data/local/tmp/meltrig";
  const std::string src = MELTRIG_SOURCE_DIR;
  meltrig::targets::AdbConfig cfg;
  cfg.adb = {"/usr/bin/python3",
             src + "/fixtures/adb_standin/fake_adb.py",
             "--transcript",
             src + "/fixtures/adb_standin/transcript_stamp.json",
             "--log",
             (dir / "adb.jsonl").string(),
             "--state",
             (dir / "state").string()};
  cfg.serial = "R5CT1234ABC";
  cfg.work_dir = work;
  AdbTarget t(cfg);
  auto run = prepare_stamp(t, stamp_tool(), work + "/m.txt", "");
  REQUIRE_MESSAGE(run.ok(), (run.ok() ? "" : run.error().describe()));
  CHECK(run->device_tool == work + "/meltrig_stamp");
  CHECK(read_file(dir / "state/device/data/local/tmp/meltrig/meltrig_stamp") ==
        read_file(stamp_tool()));
  const std::vector<std::string> runner = {"/data/local/tmp/llama-cli",
                                           "-m",
                                           "/data/local/tmp/Llama-3.2-1B-Instruct-Q4_0.gguf",
                                           "-p",
                                           "Why is the sky blue?",
                                           "-n",
                                           "24",
                                           "-no-cnv"};
  auto out = t.run(stamped_argv(*run, runner), std::chrono::milliseconds(20000));
  REQUIRE(out.ok());
  REQUIRE_MESSAGE(out->exit_code == 0, out->err);
  REQUIRE(t.pull(work + "/m.txt", dir / "m.txt").ok());
  MarkerLog log = complete_log(dir / "m.txt");
  auto c = check_stamped_output(log, out->out + out->err);
  CHECK(c.verdict == StampVerdict::match);
  CHECK(c.trailing_blank == 1);
  CHECK(of_kind(c.log, MarkerKind::token).size() == 24);
  CHECK(of_kind(c.log, MarkerKind::prefill_end).front()->index == 7);
  CHECK(header(c.log, "summary.format") == "llama_perf");
}
