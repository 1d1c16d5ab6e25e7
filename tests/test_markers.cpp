// Marker format v1: percent-encoding, formatter -> parser round trips, malformed input, the C99
// SDK (compiled into this C++ binary and, as strict C99, into the toy runner), and the toy runner
// itself: complete runs, signals, and SIGKILL mid-run.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <string>
#include <vector>

#include "meltrig/targets/markers.hpp"
#include "meltrig_sdk/meltrig_markers.h"
#include "test_support.hpp"

using namespace meltrig;
using namespace meltrig::targets;
using meltrig::test::Process;
using meltrig::test::TempDir;

namespace {

const char* toy_runner() {
  return MELTRIG_TOY_RUNNER_PATH;
}

/// Strings that break naive formats: separators, escapes, control bytes, UTF-8, shell syntax.
const std::vector<std::string> kHostile = {
    "plain",           "with space",
    "key=value",       "100%",
    "%41 is not A",    "line1\nline2\r\n",
    "tab\there",       "\xC3\xA9t\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80",
    "$(touch /tmp/x)", "`rm -rf /`; echo '\"quoted\"' | cat > /dev/null",
    "#not a comment",  std::string("nul\0byte", 8),
    "\x7F\x01\x1F",    "",
};

std::vector<MarkerKind> kinds_of(const MarkerLog& log) {
  std::vector<MarkerKind> k;
  for (const auto& e : log.events)
    k.push_back(e.kind);
  return k;
}

std::string describe_issues(const MarkerLog& log) {
  std::string s;
  for (const auto& i : log.issues)
    s += i.describe() + "\n";
  return s;
}

/// Parses `text` named "t.markers", which must succeed.
MarkerLog parse_ok(const std::string& text) {
  auto r = parse_markers(text, "t.markers");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  return std::move(r).value();
}

const std::string kHeader = "meltrig-markers 1 clock=monotonic\n";

}  // namespace

TEST_CASE("markers: percent-encoding is exact and decodes back") {
  CHECK(encode_value("a b=%c") == "a%20b%3D%25c");
  CHECK(encode_value("x\n\x7F\xC3\xA9") == "x%0A%7F%C3%A9");
  CHECK(encode_value("safe-chars_./:~!#") == "safe-chars_./:~!#");
  CHECK(encode_value(std::string("\0", 1)) == "%00");
  for (const auto& s : kHostile) {
    std::string enc = encode_value(s);
    for (char c : enc) {
      auto u = static_cast<unsigned char>(c);
      CHECK((u > 0x20 && u < 0x7F && u != '='));
    }
    auto dec = decode_value(enc);
    REQUIRE(dec.ok());
    CHECK(*dec == s);
  }
  CHECK(decode_value("%41%62").value() == "Ab");
  CHECK(decode_value("%c3%a9").value() == "\xC3\xA9");  // lower-case hex is read too
  for (std::string bad : {"%G1", "%4", "%", "a b", "a=b", "\xC3\xA9", "x\x01"}) {
    auto r = decode_value(bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(r.error().code == Errc::parse_error);
  }
}

TEST_CASE("markers: kind names map both ways") {
  for (auto k :
       {MarkerKind::run_start, MarkerKind::run_end, MarkerKind::load_start, MarkerKind::load_end,
        MarkerKind::prefill_start, MarkerKind::prefill_end, MarkerKind::token,
        MarkerKind::sync_start, MarkerKind::sync_end, MarkerKind::user}) {
    auto back = kind_from_name(kind_name(k));
    REQUIRE(back.has_value());
    CHECK(*back == k);
  }
  CHECK(kind_name(MarkerKind::prefill_start) == "prefill.start");
  CHECK(!kind_from_name("clock").has_value());
  CHECK(!kind_from_name("decode").has_value());
}

TEST_CASE("markers: formatter -> parser round trip for every event kind") {
  std::vector<MarkerEvent> in;
  std::int64_t t = 1'000'000'000;
  auto add = [&](MarkerKind k) -> MarkerEvent& {
    MarkerEvent e;
    e.kind = k;
    e.t_ns = t;
    t += 1'234'567;
    in.push_back(e);
    return in.back();
  };
  for (const auto& s : kHostile)
    add(MarkerKind::run_start).label = s;
  add(MarkerKind::load_start).label = "llama 3.2 1B=q4_0 100%";
  add(MarkerKind::load_end);
  add(MarkerKind::prefill_start).index = 37;
  add(MarkerKind::prefill_end).index = 37;
  for (int i = 0; i < 3; ++i)
    add(MarkerKind::token).index = i;
  auto& s1 = add(MarkerKind::sync_start);
  s1.code = 0x1F35;
  s1.bits = 13;
  s1.chip_ns = 20'000'000;
  add(MarkerKind::sync_end).code = 0x1F35;
  auto& s2 = add(MarkerKind::sync_start);
  s2.code = 0xFFFFFFFFFFFFFFFFull;
  s2.bits = 64;
  s2.chip_ns = 1;
  add(MarkerKind::sync_end).code = 0xFFFFFFFFFFFFFFFFull;
  for (const auto& s : kHostile) {
    auto& u = add(MarkerKind::user);
    u.label = s;
    u.text = s;
    u.value = -0.1;
  }
  auto& u1 = add(MarkerKind::user);
  u1.label = "no value, no text";
  auto& u2 = add(MarkerKind::user);
  u2.label = "big";
  u2.value = 6.02214076e23;
  for (const auto& st : {"ok", "error", "interrupted"})
    add(MarkerKind::run_end).label = st;

  ClockTriple c1{999'000'000, 1'999'000'000, 1'700'000'000'000'000'000, 0};
  ClockTriple c2{t, t + 1'000'000'000, 1'700'000'000'000'000'000 + t, 0};
  std::string text = MarkerFormatter::header({{"device", "pixel 8"}, {"clock", "ignored"}});
  text += MarkerFormatter::clock(c1);
  for (const auto& e : in)
    text += MarkerFormatter::event(e);
  text += MarkerFormatter::clock(c2);

  auto log = parse_ok(text);
  INFO(describe_issues(log));
  CHECK(log.issues.empty());
  CHECK(!log.incomplete_tail);
  CHECK(log.clock == "monotonic");
  REQUIRE(log.header.size() == 2);
  CHECK(log.header[0] == std::pair<std::string, std::string>{"clock", "monotonic"});
  CHECK(log.header[1] == std::pair<std::string, std::string>{"device", "pixel 8"});
  REQUIRE(log.clocks.size() == 2);
  CHECK(log.clocks[0].mono_ns == c1.mono_ns);
  CHECK(log.clocks[0].boot_ns == c1.boot_ns);
  CHECK(log.clocks[0].real_ns == c1.real_ns);
  CHECK(log.clocks[0].line == 2);
  CHECK(log.clocks[1].real_ns == c2.real_ns);
  REQUIRE(log.events.size() == in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto& a = in[i];
    const auto& b = log.events[i];
    INFO("event " << i << " " << kind_name(a.kind));
    CHECK(b.kind == a.kind);
    CHECK(b.t_ns == a.t_ns);
    CHECK(b.index == a.index);
    CHECK(b.code == a.code);
    CHECK(b.bits == a.bits);
    CHECK(b.chip_ns == a.chip_ns);
    CHECK(b.label == a.label);
    CHECK(b.text == a.text);
    CHECK(std::isnan(b.value) == std::isnan(a.value));
    if (!std::isnan(a.value)) CHECK(b.value == a.value);
    CHECK(b.line == i + 3);  // header, clock, then events
    CHECK(MarkerFormatter::event(b) == MarkerFormatter::event(a));
  }
}

TEST_CASE("markers: malformed lines are reported with their line and skipped") {
  std::string text = kHeader +                                      // 1
                     "100 run.start id=r1\n"                        // 2 ok
                     "1x0 token index=0\n"                          // 3 bad time
                     "110 token index=zero\n"                       // 4 bad number
                     "120 decode.step n=1\n"                        // 5 unknown event
                     "130 token index=0\n"                          // 6 ok
                     "140 load.start\n"                             // 7 missing key
                     "150 user name=bad%G1\n"                       // 8 bad %XX
                     "# a comment: skipped, no issue\n"             // 9
                     "90 token index=1\n"                           // 10 non-monotonic: issue, kept
                     "160 user name=\xC3\xA9\x01 text=x\n"          // 11 garbage bytes
                     "\n"                                           // 12 empty
                     "170 token index=2 future=key\n"               // 13 ok, unknown key ignored
                     "180  token index=3\n"                         // 14 double space
                     "190 token index=3 index=4\n"                  // 15 duplicate key
                     "200 run.end status=maybe\n"                   // 16 bad status
                     "210 sync.start code=0x10 bits=4 chip_ns=5\n"  // 17 code wider than bits
                     "220 sync.start code=35 bits=6 chip_ns=5\n"    // 18 code not hex
                     "230 clock boot=230\n"                         // 19 clock without real=
                     "240 clock boot=240 real=1000\n"               // 20 ok
                     "250 user name=u value=nan\n"                  // 21 value not finite
                     "-5 token index=3\n"                           // 22 negative time
                     "260 run.end status=ok\n";                     // 23 ok
  auto log = parse_ok(text);
  INFO(describe_issues(log));

  std::vector<std::uint64_t> issue_lines;
  for (const auto& i : log.issues) {
    issue_lines.push_back(i.line);
    CHECK(i.file == "t.markers");
    CHECK(i.describe().starts_with("t.markers:" + std::to_string(i.line) + ": "));
  }
  CHECK(issue_lines ==
        std::vector<std::uint64_t>{3, 4, 5, 7, 8, 10, 11, 12, 14, 15, 16, 17, 18, 19, 21, 22});
  auto message = [&](std::uint64_t line) {
    for (const auto& i : log.issues)
      if (i.line == line) return i.message;
    return std::string();
  };
  CHECK(message(4).find("index=") != std::string::npos);
  CHECK(message(5).find("unknown event 'decode.step'") != std::string::npos);
  CHECK(message(7).find("missing key 'model'") != std::string::npos);
  CHECK(message(8).find("percent") != std::string::npos);
  CHECK(message(10).find("earlier") != std::string::npos);
  CHECK(message(11).find("0xC3") != std::string::npos);
  CHECK(message(12) == "empty line");
  CHECK(message(15).find("duplicate key 'index'") != std::string::npos);

  std::vector<std::uint64_t> event_lines;
  for (const auto& e : log.events)
    event_lines.push_back(e.line);
  CHECK(event_lines == std::vector<std::uint64_t>{2, 6, 10, 13, 23});
  REQUIRE(log.events.size() == 5);
  CHECK(log.events[0].label == "r1");
  CHECK(log.events[1].index == 0);
  CHECK(log.events[2].index == 1);  // kept despite going back in time
  CHECK(log.events[2].t_ns == 90);
  CHECK(log.events[3].index == 2);
  CHECK(log.events[4].label == "ok");
  REQUIRE(log.clocks.size() == 1);
  CHECK(log.clocks[0].line == 20);
  CHECK(!log.incomplete_tail);
}

TEST_CASE("markers: a missing, malformed or other-version header fails at line 1") {
  struct Case {
    std::string text;
    std::string needle;
  };
  std::vector<Case> cases = {
      {"", "empty"},
      {"100 run.start id=x\n", "not a meltrig marker file"},
      {"meltrig-markers\n", "version"},
      {"meltrig-markers 2 clock=monotonic\n100 token index=0\n", "version '2'"},
      {"meltrig-markers 1.0 clock=monotonic\n", "version '1.0'"},
      {"meltrig-markers 1\n", "no clock="},
      {"meltrig-markers 1 clock=sundial\n", "sundial"},
      {"meltrig-markers 1 clock=monotonic device\n", "key=value"},
      {"meltrig-markers 1 clock=monotonic a=1 a=2\n", "duplicate"},
      {"meltrig-markers 1 clock=monotonic", "incomplete header"},
      {"\xEF\xBB\xBFmeltrig-markers 1 clock=monotonic\n", "not a meltrig marker file"},
  };
  for (const auto& c : cases) {
    auto r = parse_markers(c.text, "run7.markers");
    INFO(c.text);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::parse_error);
    CHECK(r.error().message.starts_with("run7.markers:1: "));
    CHECK(r.error().message.find(c.needle) != std::string::npos);
  }
  auto ok = parse_ok("meltrig-markers 1 clock=boottime device=a%20b future=1\n");
  CHECK(ok.clock == "boottime");
  CHECK(ok.header.size() == 3);
  CHECK(ok.header[1].second == "a b");
  CHECK(ok.events.empty());
}

TEST_CASE("markers: an incomplete last line is flagged and dropped") {
  auto log = parse_ok(kHeader + "100 token index=0\n200 token index=1\n300 tok");
  CHECK(log.incomplete_tail);
  REQUIRE(log.issues.size() == 1);
  CHECK(log.issues[0].line == 4);
  CHECK(log.issues[0].message.find("incomplete last line") != std::string::npos);
  REQUIRE(log.events.size() == 2);
  CHECK(log.events[1].index == 1);

  // A complete last line that merely looks short is not incomplete.
  auto full = parse_ok(kHeader + "100 token index=0\n");
  CHECK(!full.incomplete_tail);
  CHECK(full.issues.empty());
  CHECK(full.events.size() == 1);
}

TEST_CASE("markers: clock steps reveal suspends and wall-clock jumps") {
  const std::int64_t s = 1'000'000'000;
  const std::int64_t epoch = 1'700'000'000 * s;
  std::vector<ClockTriple> c = {
      {10 * s, 10 * s + 5, epoch + 10 * s, 2},
      {11 * s, 11 * s + 5, epoch + 11 * s + 200'000, 3},   // NTP slew below threshold
      {12 * s, 42 * s + 5, epoch + 42 * s, 4},             // suspended 30 s
      {13 * s, 43 * s + 5, epoch + 43 * s - 3600 * s, 5},  // wall clock set back one hour
      {14 * s, 44 * s + 5, epoch + 44 * s - 3600 * s, 6},
  };
  auto steps = clock_steps(c);
  REQUIRE(steps.size() == 2);
  CHECK(steps[0].line == 4);
  CHECK(steps[0].mono_ns == 12 * s);
  CHECK(steps[0].suspend_ns == 30 * s);
  CHECK(steps[0].realtime_step_ns == -200'000);  // the earlier slew, not a jump
  CHECK(steps[1].line == 5);
  CHECK(steps[1].suspend_ns == 0);
  CHECK(steps[1].realtime_step_ns == -3600 * s);
  CHECK(clock_steps(c, 100'000).size() == 3);  // a finer threshold sees the slew
}

TEST_CASE("markers: the example file in docs/markers.md parses cleanly") {
  std::string doc = meltrig::test::read_file(std::string(MELTRIG_SOURCE_DIR) + "/docs/markers.md");
  auto at = doc.find("## A complete example");
  REQUIRE(at != std::string::npos);
  auto open = doc.find("```\n", at);
  REQUIRE(open != std::string::npos);
  auto close = doc.find("```", open + 4);
  REQUIRE(close != std::string::npos);
  auto log = parse_ok(doc.substr(open + 4, close - open - 4));
  INFO(describe_issues(log));
  CHECK(log.issues.empty());
  CHECK(log.events.size() == 15);
  CHECK(log.clocks.size() == 2);
  CHECK(log.events[3].label == "llama 3.2 1B q4_0");
  CHECK(log.events[10].value == 0.25);
  CHECK(log.events[10].text == "fill ratio");
  CHECK(log.clocks[0].boot_ns - log.clocks[0].mono_ns == 80);  // the figures the text quotes
  CHECK(log.clocks[1].boot_ns - log.clocks[1].mono_ns == 20);
  CHECK(log.clocks[1].real_ns - log.clocks[1].boot_ns ==
        log.clocks[0].real_ns - log.clocks[0].boot_ns);
  CHECK(clock_steps(log.clocks).empty());
}

TEST_CASE("markers: read_marker_file names a missing path") {
  TempDir dir;
  auto r = read_marker_file(dir / "nope.markers");
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::not_found);
  CHECK(r.error().message.find("nope.markers") != std::string::npos);
}

TEST_CASE("markers: the C SDK writes lines the parser reads back exactly") {
  TempDir dir;
  auto path = (dir / "sdk.markers").string();
  mm_writer w;
  REQUIRE(mm_open(&w, path.c_str(), "device=test-rig note=a%20b") == 0);
  REQUIRE(mm_set_clock_period_ns(&w, 0) == 0);
  CHECK(mm_run_start(&w, "$(touch /tmp/x) \"id\"") == 0);
  CHECK(mm_load_start(&w, "model = 100% \xE2\x9C\x93\n") == 0);
  CHECK(mm_load_end(&w) == 0);
  CHECK(mm_prefill_start(&w, 12) == 0);
  CHECK(mm_prefill_end(&w, 12) == 0);
  for (int i = 0; i < 3; ++i)
    CHECK(mm_token(&w, i) == 0);
  std::size_t hostile_users = 0;
  for (const auto& s : kHostile) {
    if (s.find('\0') != std::string::npos) continue;  // not expressible as a C string
    CHECK(mm_user(&w, s.c_str(), 0.1, s.c_str()) == 0);
    ++hostile_users;
  }
  CHECK(mm_user(&w, "nan-and-null", std::nan(""), nullptr) == 0);
  CHECK(mm_user(&w, "big", -6.02214076e23, "") == 0);
  CHECK(mm_sync_pulse(&w, 0x5, 3, 1'000'000) == 0);  // 1 0 1, 1 ms chips
  CHECK(mm_clock(&w) == 0);
  CHECK(mm_run_end(&w, "interrupted") == 0);

  // Refused arguments write nothing.
  CHECK(mm_run_end(&w, "fine") == -EINVAL);
  CHECK(mm_token(&w, -1) == -EINVAL);
  CHECK(mm_user(&w, "x", INFINITY, nullptr) == -EINVAL);
  CHECK(mm_sync_pulse(&w, 0x10, 4, 1000) == -EINVAL);
  CHECK(mm_sync_pulse(&w, 0x1, 0, 1000) == -EINVAL);
  CHECK(mm_sync_pulse(&w, 0x1, 1, 0) == -EINVAL);
  CHECK(mm_set_busy_threads(&w, 1) == -ENOTSUP);  // compiled without MELTRIG_SDK_PTHREADS
  std::string too_long(MM_MAX_LINE, 'a');
  CHECK(mm_user(&w, too_long.c_str(), std::nan(""), nullptr) == -E2BIG);
  CHECK(mm_close(&w) == 0);
  CHECK(mm_close(&w) == -EBADF);
  CHECK(mm_token(&w, 0) == -EBADF);

  mm_writer bad;
  CHECK(mm_open(&bad, (dir / "no-such-dir" / "x").c_str(), nullptr) == -ENOENT);
  CHECK(mm_open(&bad, path.c_str(), "clock=boottime") == -EINVAL);
  CHECK(mm_open(&bad, path.c_str(), "a=1  b=2") == -EINVAL);
  CHECK(mm_open(&bad, path.c_str(), "a=x y") == -EINVAL);
  CHECK(mm_open(&bad, path.c_str(), "Caps=1") == -EINVAL);
  char enc[64];
  CHECK(mm_encode("a b=%", enc, sizeof enc) == 11);
  CHECK(std::string(enc) == encode_value("a b=%"));
  CHECK(mm_encode("abc", enc, 3) == -E2BIG);

  std::string text = meltrig::test::read_file(path);
  auto log = parse_ok(text);
  INFO(describe_issues(log));
  CHECK(log.issues.empty());
  CHECK(!log.incomplete_tail);
  REQUIRE(log.header.size() == 4);
  CHECK(log.header[1].first == "writer");
  CHECK(log.header[3].second == "a b");
  REQUIRE(log.clocks.size() == 3);  // open, mm_clock, close
  for (const auto& c : log.clocks) {
    CHECK(c.boot_ns >= c.mono_ns);
    CHECK(c.real_ns > 1'500'000'000LL * 1'000'000'000LL);
  }

  const auto& ev = log.events;
  REQUIRE(ev.size() == 8 + hostile_users + 2 + 2 + 1);
  CHECK(ev[0].label == "$(touch /tmp/x) \"id\"");
  CHECK(ev[1].label == "model = 100% \xE2\x9C\x93\n");
  CHECK(ev[3].index == 12);
  CHECK(ev[5].index == 0);
  CHECK(ev[7].index == 2);
  std::size_t u = 8;
  for (const auto& s : kHostile) {
    if (s.find('\0') != std::string::npos) continue;
    CHECK(ev[u].kind == MarkerKind::user);
    CHECK(ev[u].label == s);
    CHECK(ev[u].text == s);
    CHECK(ev[u].value == 0.1);
    ++u;
  }
  CHECK(std::isnan(ev[u].value));
  CHECK(ev[u].text.empty());
  CHECK(ev[u + 1].value == -6.02214076e23);
  const auto& ss = ev[u + 2];
  const auto& se = ev[u + 3];
  CHECK(ss.kind == MarkerKind::sync_start);
  CHECK(ss.code == 0x5);
  CHECK(ss.bits == 3);
  CHECK(ss.chip_ns == 1'000'000);
  CHECK(se.kind == MarkerKind::sync_end);
  CHECK(se.code == 0x5);
  CHECK(se.t_ns - ss.t_ns >= 3 * 1'000'000);
  CHECK(ev.back().label == "interrupted");

  // Byte for byte, each SDK event line is what the C++ formatter writes for the parsed event
  // (user values excepted: both write a round-tripping decimal, not always the same digits).
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    lines.push_back(text.substr(start, nl + 1 - start));
  for (const auto& e : ev) {
    if (e.kind == MarkerKind::user && !std::isnan(e.value)) continue;
    CHECK(lines.at(e.line - 1) == MarkerFormatter::event(e));
  }
  for (const auto& c : log.clocks)
    CHECK(lines.at(c.line - 1) == MarkerFormatter::clock(c));
}

namespace {

/// Lines of `text` holding "<space><event><space>"; cheap progress probe on a growing file.
std::size_t count_event(const std::string& text, const std::string& event) {
  std::size_t n = 0;
  std::string needle = " " + event + " ";
  for (std::size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1))
    ++n;
  return n;
}

/// Waits until the file at `path` holds at least `n` token lines (false after 30 s).
bool wait_for_tokens(const std::filesystem::path& path, std::size_t n) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    if (count_event(meltrig::test::read_file(path), "token") >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("markers: the toy runner writes a complete, consistent marker file") {
  TempDir dir;
  auto path = dir / "run.markers";
  auto pwned = dir / "pwned";
  const std::string model = "toy $(touch " + pwned.string() + ") a=b 100% \xC3\xA9\nnext";
  const std::string prompt = "  The quick\tbrown\nfox   jumps ";  // 5 words
  const std::int64_t tokens = 12, chip_ms = 3, period_ms = 20;
  Process p({toy_runner(),
             "--markers",
             path.string(),
             "--prompt",
             prompt,
             "--tokens",
             std::to_string(tokens),
             "--model",
             model,
             "--seed",
             "7",
             "--sync-code",
             "0x1F35",
             "--sync-bits",
             "13",
             "--sync-chip-ms",
             std::to_string(chip_ms),
             "--sync-threads",
             "1",
             "--clock-period-ms",
             std::to_string(period_ms),
             "--run-id",
             "run 1"},
            dir.path(), "toy");
  REQUIRE_MESSAGE(p.wait() == 0, p.err());
  CHECK(p.out().find("prompt_tokens=5 tokens=12") != std::string::npos);
  CHECK(!std::filesystem::exists(pwned));

  auto r = read_marker_file(path);
  REQUIRE(r.ok());
  const auto& log = r.value();
  INFO(describe_issues(log));
  CHECK(log.issues.empty());
  CHECK(!log.incomplete_tail);
  CHECK(log.clock == "monotonic");

  using K = MarkerKind;
  std::vector<K> expected = {K::run_start, K::sync_start,    K::sync_end,   K::load_start,
                             K::load_end,  K::prefill_start, K::prefill_end};
  for (std::int64_t i = 0; i < tokens; ++i)
    expected.push_back(K::token);
  for (auto k : {K::sync_start, K::sync_end, K::run_end})
    expected.push_back(k);
  REQUIRE(kinds_of(log) == expected);

  const auto& ev = log.events;
  CHECK(ev[0].label == "run 1");
  CHECK(ev[3].label == model);
  CHECK(ev[5].index == 5);
  CHECK(ev[6].index == 5);
  for (std::int64_t i = 0; i < tokens; ++i)
    CHECK(ev[7 + static_cast<std::size_t>(i)].index == i);
  CHECK(ev.back().label == "ok");
  for (std::size_t s : {std::size_t{1}, ev.size() - 3}) {
    CHECK(ev[s].code == 0x1F35);
    CHECK(ev[s].bits == 13);
    CHECK(ev[s].chip_ns == chip_ms * 1'000'000);
    CHECK(ev[s + 1].code == 0x1F35);
    CHECK(ev[s + 1].t_ns - ev[s].t_ns >= 13 * chip_ms * 1'000'000);
  }

  // Times never decrease over the whole file (events and clock triples in line order).
  std::vector<std::pair<std::uint64_t, std::int64_t>> stamps;
  for (const auto& e : ev)
    stamps.emplace_back(e.line, e.t_ns);
  for (const auto& c : log.clocks)
    stamps.emplace_back(c.line, c.mono_ns);
  std::sort(stamps.begin(), stamps.end());
  for (std::size_t i = 1; i < stamps.size(); ++i)
    CHECK(stamps[i].second >= stamps[i - 1].second);

  // Clock triples: first after the header, last line of the file, consistent, and the writer's
  // rule held: after any event (other than the future-stamped sync.start) a period or more after
  // the previous triple, the very next line is a triple.
  REQUIRE(log.clocks.size() >= 2);
  CHECK(log.clocks.front().line == 2);
  CHECK(log.clocks.back().line == stamps.back().first);
  for (const auto& c : log.clocks) {
    CHECK(c.boot_ns >= c.mono_ns);
    CHECK(c.real_ns > c.boot_ns);
  }
  for (const auto& e : ev) {
    if (e.kind == K::sync_start) continue;
    const ClockTriple* before = nullptr;
    bool next_is_clock = false;
    for (const auto& c : log.clocks) {
      if (c.line < e.line) before = &c;
      if (c.line == e.line + 1) next_is_clock = true;
    }
    REQUIRE(before != nullptr);
    if (e.t_ns - before->mono_ns >= period_ms * 1'000'000) CHECK(next_is_clock);
  }
  CHECK(clock_steps(log.clocks, 50'000'000).empty());  // no suspend or wall-clock step
}

TEST_CASE("markers: SIGTERM and SIGINT end the toy run with run.end status=interrupted") {
  for (auto [sig, code] : {std::pair{SIGTERM, 143}, std::pair{SIGINT, 130}}) {
    TempDir dir;
    auto path = dir / "run.markers";
    Process p({toy_runner(), "--markers", path.string(), "--prompt", "one two three", "--tokens",
               "5000", "--no-sync", "--token-delay-ms", "5"},
              dir.path(), "toy");
    REQUIRE(wait_for_tokens(path, 3));
    p.signal(sig);
    CHECK(p.wait() == code);
    auto r = read_marker_file(path);
    REQUIRE(r.ok());
    INFO(describe_issues(r.value()));
    CHECK(r->issues.empty());
    REQUIRE(!r->events.empty());
    CHECK(r->events.back().kind == MarkerKind::run_end);
    CHECK(r->events.back().label == "interrupted");
    CHECK(r->clocks.back().line > r->events.back().line);  // the closing triple
  }
}

TEST_CASE("markers: a toy runner killed with SIGKILL leaves a file that parses to its last line") {
  TempDir dir;
  auto path = dir / "run.markers";
  Process p({toy_runner(), "--markers", path.string(), "--prompt", "a b c d", "--tokens", "5000",
             "--no-sync", "--token-delay-ms", "2"},
            dir.path(), "toy");
  REQUIRE(wait_for_tokens(path, 5));
  p.signal(SIGKILL);
  CHECK(p.wait() == 128 + SIGKILL);

  auto r = read_marker_file(path);
  REQUIRE(r.ok());
  const auto& log = r.value();
  for (const auto& i : log.issues)  // at most the line being written when the process died
    CHECK_MESSAGE(i.message.find("incomplete last line") != std::string::npos, i.describe());
  CHECK(log.issues.size() <= 1);
  std::vector<std::int64_t> tokens;
  for (const auto& e : log.events) {
    CHECK(e.kind != MarkerKind::run_end);
    if (e.kind == MarkerKind::token) tokens.push_back(e.index);
  }
  REQUIRE(tokens.size() >= 5);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    CHECK(tokens[i] == static_cast<std::int64_t>(i));
  CHECK(log.events[0].kind == MarkerKind::run_start);
}

TEST_CASE("markers: toy runner arguments") {
  TempDir dir;
  SUBCASE("--print-args echoes every argument on its own line, nothing run") {
    Process p({toy_runner(), "--prompt", "$(touch /tmp/x); `id` 'q' \"d\"", "--print-args", "a b"},
              dir.path(), "args");
    CHECK(p.wait() == 0);
    CHECK(p.out() == "--prompt\n$(touch /tmp/x); `id` 'q' \"d\"\n--print-args\na b\n");
  }
  SUBCASE("usage errors exit 2 and write no file") {
    auto path = (dir / "x.markers").string();
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"--markers", path, "--prompt", "a"},
             {"--markers", path, "--prompt", " \t ", "--tokens", "3"},
             {"--markers", path, "--prompt", "a", "--tokens", "3x"},
             {"--markers", path, "--prompt", "a", "--tokens", "3", "--sync-code", "0x3FFF"},
             {"--markers", path, "--prompt", "a", "--tokens", "3", "--bogus", "1"},
             {"--markers", path, "--prompt", "a", "--tokens"}}) {
      std::vector<std::string> argv = {toy_runner()};
      argv.insert(argv.end(), args.begin(), args.end());
      Process p(argv, dir.path(), "usage");
      CHECK(p.wait() == 2);
      CHECK(p.err().find("usage:") != std::string::npos);
      CHECK(!std::filesystem::exists(path));
    }
  }
}

TEST_CASE(
    "markers: the SDK, the toy runner, the device probe and the stamper compile as C99 for "
    "aarch64 Linux") {
  // A Jetson (and a phone's kernel) is aarch64: cross-compile with clang against Debian's
  // aarch64 glibc headers (libc6-dev-arm64-cross), with the strict flags of the native build,
  // and check the object really is AArch64 ELF (e_machine 183).
  TempDir dir;
  const std::string src = MELTRIG_SOURCE_DIR;
  struct Unit {
    std::string file;
    std::vector<std::string> extra;
  };
  for (const Unit& u :
       {Unit{src + "/examples/runner/toy_runner.c", {"-I" + src + "/targets/include"}},
        Unit{src + "/targets/tools/meltrig_probe.c", {"-I" + src + "/targets/include"}},
        Unit{src + "/targets/tools/meltrig_stamp.c", {"-I" + src + "/targets/include"}}}) {
    CAPTURE(u.file);
    const auto obj = dir / "unit.o";
    std::vector<std::string> argv = {"/usr/bin/clang", "--target=aarch64-linux-gnu",
                                     "-isystem",       "/usr/aarch64-linux-gnu/include",
                                     "-std=c99",       "-Wall",
                                     "-Wextra",        "-Wpedantic",
                                     "-Wshadow",       "-Wconversion",
                                     "-Werror",        "-O2"};
    argv.insert(argv.end(), u.extra.begin(), u.extra.end());
    argv.insert(argv.end(), {"-c", u.file, "-o", obj.string()});
    Process p(argv, dir.path(), "clang");
    REQUIRE_MESSAGE(p.wait() == 0, p.err());
    std::string elf = meltrig::test::read_file(obj);
    REQUIRE(elf.size() > 20);
    CHECK(elf.compare(0, 4,
                      "\x7f"
                      "ELF") == 0);
    CHECK(static_cast<unsigned char>(elf[4]) == 2);  // ELFCLASS64
    const unsigned machine =
        static_cast<unsigned char>(elf[18]) | (static_cast<unsigned char>(elf[19]) << 8);
    CHECK(machine == 183);  // EM_AARCH64
  }
}
