// MELT importers against fixtures/data/melt_run (written by scripts/make_melt_fixture.py, whose
// docstring states the truth checked here) and against planted errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "meltrig/targets/melt_import.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
namespace melt = meltrig::targets::melt;
using meltrig::Errc;
using meltrig::targets::MarkerEvent;
using meltrig::targets::MarkerKind;
using meltrig::targets::MarkerLog;
using meltrig::test::TempDir;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kB0 = 1700000000'200'000'000;
constexpr std::int64_t kB1 = 1700000001'000'000'000;

fs::path fixture() {
  return fs::path(MELTRIG_SOURCE_DIR) / "fixtures" / "data" / "melt_run";
}
fs::path measurements(const std::string& file) {
  return fixture() / "melt_measurements" / file;
}

std::vector<MarkerEvent> of_kind(const MarkerLog& log, MarkerKind k) {
  std::vector<MarkerEvent> out;
  for (const auto& e : log.events)
    if (e.kind == k) out.push_back(e);
  return out;
}

const MarkerEvent* user(const MarkerLog& log, const std::string& label) {
  for (const auto& e : log.events)
    if (e.kind == MarkerKind::user && e.label == label) return &e;
  return nullptr;
}

std::string header(const MarkerLog& log, const std::string& key) {
  for (const auto& [k, v] : log.header)
    if (k == key) return v;
  return "<absent>";
}

bool sorted_by_time(const MarkerLog& log) {
  return std::is_sorted(log.events.begin(), log.events.end(),
                        [](const MarkerEvent& a, const MarkerEvent& b) { return a.t_ns < b.t_ns; });
}

melt::LlamaTimings fixture_timings() {
  auto t = melt::read_llama_timings(measurements("measurements_iter0_conv0.log"));
  REQUIRE(t.ok());
  REQUIRE(t->blocks.size() == 1);
  return t->blocks[0];
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("melt: llama_print_timings summary parses to exact figures") {
  const melt::LlamaTimings t = fixture_timings();
  CHECK(t.load_ms == 100.0);
  CHECK(t.sample_ms == 4.25);
  CHECK(t.sample_runs == 17);
  CHECK(t.prompt_eval_ms == 200.0);
  CHECK(t.prompt_tokens == 23);
  CHECK(t.eval_ms == 320.0);
  CHECK(t.eval_runs == 16);
  CHECK(t.total_ms == 620.0);
  CHECK(t.total_tokens == -1);
  CHECK(t.line == 6);

  // Two runs in one log, a newer total line with a token count, and a broken figure.
  const std::string log =
      "llama_print_timings:        load time =  1.5 ms\n"
      "llama_print_timings:        eval time =  9.0 ms /     3 runs   (  3.00 ms per token)\n"
      "llama_print_timings:        load time =  2.5 ms\n"
      "llama_print_timings:        eval time =  x ms /     3 runs\n"
      "llama_print_timings:       total time = 12.0 ms /     7 tokens";
  const auto two = melt::parse_llama_timings(log, "run.log");
  REQUIRE(two.blocks.size() == 2);
  CHECK(two.blocks[0].load_ms == 1.5);
  CHECK(two.blocks[0].eval_runs == 3);
  CHECK(two.blocks[1].load_ms == 2.5);
  CHECK(two.blocks[1].eval_runs == -1);
  CHECK(two.blocks[1].total_ms == 12.0);
  CHECK(two.blocks[1].total_tokens == 7);
  REQUIRE(two.issues.size() == 1);
  CHECK(two.issues[0].describe().starts_with("run.log:4: 'eval time': bad ms value"));
}

TEST_CASE("melt: llama.cpp events with the console summary give exact prefill and tokens") {
  const melt::LlamaTimings t = fixture_timings();
  auto r = melt::read_llamacpp_events(measurements("measurements_iter0_conv0.tsv"), &t);
  REQUIRE(r.ok());
  const MarkerLog& log = *r;
  CHECK(log.clock == "realtime");
  CHECK(log.issues.empty());
  CHECK_FALSE(log.incomplete_tail);
  CHECK(log.events.size() == 53);  // one event per line: nothing dropped
  CHECK(sorted_by_time(log));
  CHECK(header(log, "format") == "melt-llamacpp-events");
  CHECK(header(log, "llama_print_timings.prompt_tokens") == "23");
  CHECK(header(log, "llama_print_timings.eval_runs") == "16");

  const auto load_start = of_kind(log, MarkerKind::load_start);
  const auto load_end = of_kind(log, MarkerKind::load_end);
  REQUIRE(load_start.size() == 1);
  REQUIRE(load_end.size() == 1);
  CHECK(load_start[0].t_ns == kB0);
  CHECK(load_end[0].t_ns == kB0 + 100 * kMs);

  const auto pre_start = of_kind(log, MarkerKind::prefill_start);
  const auto pre_end = of_kind(log, MarkerKind::prefill_end);
  REQUIRE(pre_start.size() == 1);
  REQUIRE(pre_end.size() == 1);
  CHECK(pre_start[0].t_ns == kB0 + 116 * kMs);
  CHECK(pre_end[0].t_ns == kB0 + 316 * kMs);
  CHECK(pre_start[0].index == 23);
  CHECK(pre_end[0].index == 23);

  const auto tokens = of_kind(log, MarkerKind::token);
  REQUIRE(tokens.size() == 16);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    CHECK(tokens[i].index == static_cast<std::int64_t>(i));
    CHECK(tokens[i].t_ns == kB0 + 340 * kMs + 25 * kMs * static_cast<std::int64_t>(i));
  }
  // Kept as user events under their original keys.
  const MarkerEvent* lone_end = user(log, "generate.0.decode.end");
  REQUIRE(lone_end != nullptr);
  CHECK(lone_end->t_ns == kB0 + 115 * kMs + 500'000);
  REQUIRE(user(log, "load_model.tensors.end") != nullptr);
  CHECK(user(log, "load_model.tensors.end")->t_ns == kB0 + 90 * kMs);
  REQUIRE(user(log, "generate.2.decode.start") != nullptr);
  CHECK(user(log, "generate.2.decode.start")->t_ns == kB0 + 320 * kMs);
  CHECK(user(log, "generate.10.kv_cache.start") != nullptr);
  CHECK(user(log, "model_free.end") != nullptr);
  CHECK(user(log, "prompt.0.tokenize.start") != nullptr);
  CHECK(user(log, "generate.1.decode.start") == nullptr);  // became prefill.start
}

TEST_CASE("melt: without a summary the prefill is found from the data") {
  SUBCASE("one prompt batch") {
    auto r = melt::read_llamacpp_events(measurements("measurements_iter0_conv0.tsv"));
    REQUIRE(r.ok());
    const auto pre = of_kind(*r, MarkerKind::prefill_start);
    REQUIRE(pre.size() == 1);
    CHECK(pre[0].index == -1);  // no token count without the summary
    CHECK(of_kind(*r, MarkerKind::prefill_end)[0].t_ns == kB0 + 316 * kMs);
    CHECK(of_kind(*r, MarkerKind::token).size() == 16);
    CHECK(r->issues.empty());
  }
  SUBCASE("two prompt batches") {
    auto r = melt::read_llamacpp_events(measurements("measurements_iter1_conv0.tsv"));
    REQUIRE(r.ok());
    CHECK(r->issues.empty());
    CHECK(r->events.size() == 25);
    const auto pre_start = of_kind(*r, MarkerKind::prefill_start);
    const auto pre_end = of_kind(*r, MarkerKind::prefill_end);
    REQUIRE(pre_start.size() == 1);
    REQUIRE(pre_end.size() == 1);
    CHECK(pre_start[0].t_ns == kB1 + 10 * kMs);
    CHECK(pre_end[0].t_ns == kB1 + 462 * kMs);
    const auto tokens = of_kind(*r, MarkerKind::token);
    REQUIRE(tokens.size() == 8);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      CHECK(tokens[i].index == static_cast<std::int64_t>(i));
      CHECK(tokens[i].t_ns == kB1 + 492 * kMs + 30 * kMs * static_cast<std::int64_t>(i));
    }
    // The inner boundary between the two batches is kept.
    REQUIRE(user(*r, "generate.1.decode.end") != nullptr);
    REQUIRE(user(*r, "generate.2.decode.start") != nullptr);
    CHECK(user(*r, "generate.2.decode.start")->t_ns == kB1 + 312 * kMs);
  }
  SUBCASE("a summary that cannot fit is reported and the data decides") {
    melt::LlamaTimings t;
    t.eval_runs = 20;
    t.prompt_tokens = 700;
    auto r = melt::read_llamacpp_events(measurements("measurements_iter1_conv0.tsv"), &t);
    REQUIRE(r.ok());
    CHECK(of_kind(*r, MarkerKind::token).size() == 8);
    CHECK(of_kind(*r, MarkerKind::prefill_start)[0].index == 700);
    REQUIRE(r->issues.size() == 2);
    CHECK(r->issues[0].message.find("20 eval runs but there are only 10 complete") !=
          std::string::npos);
    CHECK(r->issues[1].message.find("20 eval runs, the events file has 8 token") !=
          std::string::npos);
  }
}

TEST_CASE("melt: malformed events lines are reported with file and line, the rest imports") {
  const std::string text =
      "load_model.start 1000\n"            // 1
      "garbage\n"                          // 2: one field
      "generate.1.decode.start 2000\n"     // 3
      "generate.1.decode.end 3000x\n"      // 4: not an integer
      "\n"                                 // 5: blank, skipped silently
      "generate.1.decode.end 4000\n"       // 6
      "a 1 2\n"                            // 7: three fields
      "load_model.start 1500\n"            // 8: duplicate
      "generate.2.decode.start 5000\n"     // 9
      "generate.2.decode.end 6000\n"       // 10
      "prompt.start -5\n"                  // 11: not positive
      "generate.3.decode.start 99999999";  // 12: no '\n'
  const MarkerLog log = melt::parse_llamacpp_events(text, "ev.tsv");
  REQUIRE(log.issues.size() == 6);
  const std::vector<std::uint64_t> lines = {2, 4, 7, 8, 11, 12};
  for (std::size_t i = 0; i < lines.size(); ++i) {
    CHECK(log.issues[i].file == "ev.tsv");
    CHECK(log.issues[i].line == lines[i]);
  }
  CHECK(log.issues[3].message.find("first at line 1") != std::string::npos);
  CHECK(log.incomplete_tail);
  REQUIRE(log.events.size() == 5);
  CHECK(log.events[0].kind == MarkerKind::load_start);
  CHECK(log.events[0].t_ns == 1000);
  CHECK(log.events[1].kind == MarkerKind::prefill_start);
  CHECK(log.events[1].t_ns == 2000);
  CHECK(log.events[2].kind == MarkerKind::prefill_end);
  CHECK(log.events[2].t_ns == 4000);
  CHECK(log.events[2].line == 6);
  CHECK(log.events[3].kind == MarkerKind::user);  // the token's decode.start
  CHECK(log.events[4].kind == MarkerKind::token);
  CHECK(log.events[4].t_ns == 6000);
  CHECK(log.events[4].index == 0);
}

TEST_CASE("melt: MLC CSV with a header and unordered rows") {
  auto r = melt::read_mlc_csv(measurements("measurements_iter0_conv1.csv"));
  REQUIRE(r.ok());
  const MarkerLog& log = *r;
  CHECK(log.issues.empty());
  CHECK(log.clock == "realtime");
  CHECK(sorted_by_time(log));
  const auto pre_start = of_kind(log, MarkerKind::prefill_start);
  const auto pre_end = of_kind(log, MarkerKind::prefill_end);
  REQUIRE(pre_start.size() == 1);
  REQUIRE(pre_end.size() == 1);
  CHECK(pre_start[0].t_ns == 1700000000900'500'000);
  CHECK(pre_end[0].t_ns == 1700000001000'250'000);
  CHECK(pre_start[0].index == -1);
  const auto tokens = of_kind(log, MarkerKind::token);
  REQUIRE(tokens.size() == 10);
  for (std::int64_t n = 0; n < 10; ++n) {
    CHECK(tokens[static_cast<std::size_t>(n)].index == n);
    CHECK(tokens[static_cast<std::size_t>(n)].t_ns == (1700000001010 + 15 * n) * kMs + 125'000);
  }
  REQUIRE(user(log, "generate.decode.3.start") != nullptr);
  CHECK(user(log, "generate.decode.3.start")->t_ns == (1700000001010 + 45) * kMs);
  CHECK(log.events.size() == 22);

  const std::string bad =
      "event,start_ms,end_ms\n"        // 1 header
      "prefill.0,100,200\n"            // 2
      "prefill.1,300\n"                // 3: two fields
      "generate.decode.0,250,240\n"    // 4: ends before it starts
      "generate.decode.1,x,400\n"      // 5: not a number
      "generate.decode.2,410,420.5\n"  // 6
      "warmup,1,2\n"                   // 7: kept as user pair
      "generate.decode.2,430,440\n";   // 8: duplicate
  const MarkerLog b = melt::parse_mlc_csv(bad, "mlc.csv");
  REQUIRE(b.issues.size() == 4);
  CHECK(b.issues[0].line == 3);
  CHECK(b.issues[1].line == 4);
  CHECK(b.issues[2].line == 5);
  CHECK(b.issues[3].line == 8);
  REQUIRE(of_kind(b, MarkerKind::token).size() == 1);
  CHECK(of_kind(b, MarkerKind::token)[0].t_ns == 420'500'000);
  CHECK(user(b, "warmup.start") != nullptr);
  CHECK(user(b, "warmup.end")->t_ns == 2 * kMs);
}

TEST_CASE("melt: Monsoon CSV and .t_monsoon from the fixture") {
  auto r = melt::read_monsoon_csv(fixture() / "measurements_monsoon.csv");
  REQUIRE(r.ok());
  const melt::PowerTrace& t = *r;
  CHECK(t.issues.empty());
  CHECK(t.malformed_rows == 0);
  REQUIRE(t.size() == 8000);
  REQUIRE(t.current_a.size() == 8000);
  REQUIRE(t.voltage_v.size() == 8000);
  for (std::size_t k = 0; k < t.size(); ++k) {
    const std::size_t packet = k / 3;
    const double want_t = std::round((0.0006 * static_cast<double>(packet) +
                                      0.00002 * static_cast<double>(packet % 7)) *
                                     1e6) /
                          1e6;
    const double ma = 800.0 + (k % 50 < 25 ? 200.0 : 0.0) + static_cast<double>(k % 7) * 0.125;
    const double v = 4.0 + static_cast<double>(k % 5) * 0.0005;
    if (std::abs(t.host_t_rel_s[k] - want_t) > 1e-12 ||
        t.current_a[k] != static_cast<float>(ma * 1e-3) ||
        std::abs(t.voltage_v[k] - static_cast<float>(v)) > 1e-6f) {
      FAIL("row " << k << ": " << t.host_t_rel_s[k] << "," << t.current_a[k] << ","
                  << t.voltage_v[k]);
    }
  }
  // Samples of one USB packet share a stamp.
  CHECK(t.host_t_rel_s[0] == t.host_t_rel_s[2]);
  CHECK(t.host_t_rel_s[3] == 0.00062);
  auto start = melt::read_t_monsoon(fixture() / ".t_monsoon");
  REQUIRE(start.ok());
  CHECK(*start == 1700000000.125);
  CHECK(melt::parse_t_monsoon("abc\n", ".t_monsoon").error().message.starts_with(".t_monsoon:1:"));
}

TEST_CASE("melt: Monsoon CSV malformed rows, cut tail, and block boundaries") {
  TempDir dir;
  // Rows long enough to cross the reader's 4 MiB blocks several times, with bad rows planted.
  std::string text;
  std::vector<std::uint64_t> bad_lines;
  const std::size_t rows = 300'000;
  for (std::size_t i = 0; i < rows; ++i) {
    const std::uint64_t line = i + 1;
    if (i % 50'000 == 7) {
      text += "0.5,12.0\n";  // two fields
      bad_lines.push_back(line);
    } else if (i % 50'000 == 9) {
      text += "0.5,abc,4.0,\n";
      bad_lines.push_back(line);
    } else {
      text += std::to_string(static_cast<double>(i / 3) * 0.0006) + "," +
              std::to_string(100.0 + static_cast<double>(i % 1000)) + ",4.125,\n";
    }
  }
  text += "1.0,2.0,3.0";  // cut short: no trailing comma, no '\n'
  bad_lines.push_back(rows + 1);
  write(dir / "m.csv", text);
  auto r = melt::read_monsoon_csv(dir / "m.csv");
  REQUIRE(r.ok());
  CHECK(r->size() == rows - 12);
  CHECK(r->malformed_rows == 13);
  REQUIRE(r->issues.size() == bad_lines.size());
  for (std::size_t i = 0; i < bad_lines.size(); ++i) {
    CHECK(r->issues[i].line == bad_lines[i]);
    CHECK(r->issues[i].file == (dir / "m.csv").string());
  }
  // The block reader agrees with the in-memory parser row for row.
  melt::PowerTrace whole;
  melt::parse_monsoon_csv(text, "m.csv", whole);
  CHECK(whole.host_t_rel_s == r->host_t_rel_s);
  CHECK(whole.current_a == r->current_a);
  CHECK(whole.voltage_v == r->voltage_v);
  CHECK(r->current_a[0] == 0.1f);
  CHECK(r->voltage_v.back() == 4.125f);

  // A complete last row without '\n' is kept; no trailing comma is tolerated mid-file.
  melt::PowerTrace small;
  melt::parse_monsoon_csv("0.0,1.0,4.0\n0.1,2.0,4.0,", "s.csv", small);
  CHECK(small.size() == 2);
  CHECK(small.issues.empty());

  // At most kMaxIssuesPerFile issues are listed, then one line counts the rest.
  std::string junk;
  for (int i = 0; i < 1500; ++i)
    junk += "x\n";
  melt::PowerTrace many;
  melt::parse_monsoon_csv(junk, "j.csv", many);
  CHECK(many.malformed_rows == 1500);
  REQUIRE(many.issues.size() == melt::kMaxIssuesPerFile + 1);
  CHECK(many.issues.back().message.starts_with("500 more malformed lines"));
}

TEST_CASE("melt: run directory scanner") {
  auto r = melt::scan_run_dir(fixture());
  REQUIRE(r.ok());
  CHECK(r->monsoon_csv == fixture() / "measurements_monsoon.csv");
  CHECK(r->t_monsoon == fixture() / ".t_monsoon");
  REQUIRE(r->conversations.size() == 3);
  const auto& c0 = r->conversations[0];
  CHECK(c0.iteration == 0);
  CHECK(c0.conversation == 0);
  CHECK(c0.llamacpp_events == measurements("measurements_iter0_conv0.tsv"));
  CHECK(c0.timings_log == measurements("measurements_iter0_conv0.log"));
  CHECK_FALSE(c0.mlc_csv.has_value());
  CHECK(r->conversations[1].iteration == 0);
  CHECK(r->conversations[1].conversation == 1);
  CHECK(r->conversations[1].mlc_csv == measurements("measurements_iter0_conv1.csv"));
  CHECK_FALSE(r->conversations[1].llamacpp_events.has_value());
  CHECK(r->conversations[2].iteration == 1);
  CHECK(r->conversations[2].conversation == 0);
  REQUIRE(r->unrecognised.size() == 1);
  CHECK(r->unrecognised[0].filename() == "notes.txt");

  auto missing = melt::scan_run_dir(fixture() / "nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  CHECK(missing.error().message.find("nope") != std::string::npos);
  auto no_file = melt::read_llamacpp_events(fixture() / "nope.tsv");
  REQUIRE_FALSE(no_file.ok());
  CHECK(no_file.error().code == Errc::not_found);
}

TEST_CASE("melt: read_run reads the conversations the filter selects and notes what it skips") {
  std::vector<std::string> notes;
  auto note = [&](const std::string& n) { notes.push_back(n); };
  auto all = melt::read_run(fixture(), {}, note);
  REQUIRE(all.ok());
  CHECK(all->trace.size() > 0);
  CHECK_FALSE(std::isnan(all->trace.start_unix_s));  // from .t_monsoon
  REQUIRE(all->logs.size() >= 2);
  CHECK(all->logs[0].group == "iter0_conv0");  // the .tsv, cross-checked by its .log
  CHECK(all->logs[1].group == "iter0_conv1");  // an MLC CSV alone keeps the plain name
  CHECK(all->logs[0].log.header.size() > 1);   // the timings summary's figures
  REQUIRE_FALSE(notes.empty());
  CHECK(notes[0] == "ignored " + (fixture() / "melt_measurements" / "notes.txt").string() +
                        " (not a MELT measurements file)");

  notes.clear();
  melt::MeltFilter one;
  one.iteration = 0;
  one.conversation = 1;
  auto sel = melt::read_run(fixture(), one, note);
  REQUIRE(sel.ok());
  REQUIRE(sel->logs.size() == 1);
  CHECK(sel->logs[0].group == "iter0_conv1");
  CHECK(sel->trace.size() == all->trace.size());  // the trace does not depend on the filter

  notes.clear();
  melt::MeltFilter none;
  none.iteration = 7;
  auto empty = melt::read_run(fixture(), none, note);
  REQUIRE(empty.ok());
  CHECK(empty->logs.empty());
  REQUIRE_FALSE(notes.empty());
  CHECK(notes.back() == "no events file matches the --iteration/--conversation given");

  auto missing = melt::read_run(fixture() / "nope", {}, note);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
}
