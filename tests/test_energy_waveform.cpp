// analysis::integrate_power (window energy by the trapezoid rule with interpolated edges) and the
// fixtures' current waveforms (constant, held steps, interpolated CSV profiles, spec parsing).
// Expected joules and amps are worked out by hand in the comments.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "meltrig/analysis/energy.hpp"
#include "meltrig/fixtures/waveform.hpp"

namespace {

namespace fs = std::filesystem;
using meltrig::Errc;
using meltrig::analysis::integrate_power;
using meltrig::fixtures::Waveform;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> constant_trace(std::size_t n, float w) {
  return std::vector<float>(n, w);
}

// ---------------------------------------------------------------------------------------------
// integrate_power

TEST_CASE("energy: constant power over a window with fractional edges is exact") {
  // 3 W at 1000 Hz for 1 s (1001 samples). [0.1234, 0.5678] s is 0.4444 s -> 1.3332 J.
  auto p = constant_trace(1001, 3.0f);
  auto e = integrate_power(p, 1000.0, 0.1234, 0.5678);
  CHECK(e.joules == doctest::Approx(1.3332).epsilon(1e-12));
  CHECK(e.seconds == doctest::Approx(0.4444).epsilon(1e-12));
  CHECK(e.missing_samples == 0);
  // A window inside a single sample interval: 0.5 ms -> 1.5 mJ.
  auto in = integrate_power(p, 1000.0, 0.1231, 0.1236);
  CHECK(in.joules == doctest::Approx(0.0015).epsilon(1e-9));
  // Edges on sample instants: [0.2, 0.7] -> 1.5 J.
  auto on = integrate_power(p, 1000.0, 0.2, 0.7);
  CHECK(on.joules == doctest::Approx(1.5).epsilon(1e-12));
}

TEST_CASE("energy: a linear ramp integrates exactly, edges included") {
  // p[i] = i W at 1000 Hz, i.e. p(t) = 1000 t. Energy over [t0, t1] = 500 (t1^2 - t0^2).
  std::vector<float> p(1001);
  for (std::size_t i = 0; i < p.size(); ++i)
    p[i] = static_cast<float>(i);
  auto e = integrate_power(p, 1000.0, 0.1234, 0.5678);
  // 500 * (0.32239684 - 0.01522756) = 153.58464
  CHECK(e.joules == doctest::Approx(153.58464).epsilon(1e-10));
  auto whole = integrate_power(p, 1000.0, 0.0, 1.0);
  CHECK(whole.joules == doctest::Approx(500.0).epsilon(1e-12));
  // Falling ramp (p = 1000 - 1000 t) over [0.25, 0.75]: 1000 * 0.5 - 500 * (0.5625 - 0.0625) = 250.
  std::vector<float> q(p.rbegin(), p.rend());
  CHECK(integrate_power(q, 1000.0, 0.25, 0.75).joules == doctest::Approx(250.0).epsilon(1e-12));
}

TEST_CASE("energy: curved traces follow the trapezoid rule with linear edges") {
  // p = i^2 at 1 Hz, i = 0..10, over [0, 10]: sum of (i^2 + (i+1)^2) / 2 = (285 + 385) / 2 = 335
  // (the true integral would be 333.3: the rule is trapezoid, as documented).
  std::vector<float> p(11);
  for (std::size_t i = 0; i < p.size(); ++i)
    p[i] = static_cast<float>(i * i);
  CHECK(integrate_power(p, 1.0, 0.0, 10.0).joules == doctest::Approx(335.0));
  // [0.5, 2]: edge value 0.5 (between 0 and 1); (0.5 + 1) / 2 * 0.5 + (1 + 4) / 2 = 2.875.
  CHECK(integrate_power(p, 1.0, 0.5, 2.0).joules == doctest::Approx(2.875));
  // [2.25, 3.5]: edges 4 + 0.25 * 5 = 5.25 and 9 + 0.5 * 7 = 12.5;
  // (5.25 + 9) / 2 * 0.75 + (9 + 12.5) / 2 * 0.5 = 5.34375 + 5.375 = 10.71875.
  CHECK(integrate_power(p, 1.0, 2.25, 3.5).joules == doctest::Approx(10.71875));
}

TEST_CASE("energy: NaN samples are skipped with the intervals they touch, and counted") {
  // 2 W at 10 Hz over 1 s (11 samples).
  auto p = constant_trace(11, 2.0f);
  p[5] = kNaN;  // t = 0.5: intervals [0.4, 0.5] and [0.5, 0.6] are left out
  auto e = integrate_power(p, 10.0, 0.0, 1.0);
  CHECK(e.joules == doctest::Approx(1.6));
  CHECK(e.missing_samples == 1);
  CHECK(e.seconds == doctest::Approx(1.0));
  // Window around the NaN only: nothing left.
  auto mid = integrate_power(p, 10.0, 0.42, 0.58);
  CHECK(mid.joules == 0.0);
  CHECK(mid.missing_samples == 1);
  // Window clear of it: 0.4 s -> 0.8 J.
  auto clear = integrate_power(p, 10.0, 0.05, 0.45);
  CHECK(clear.joules == doctest::Approx(0.8 - 0.1));  // [0.05, 0.4] full, [0.4, 0.45] touches NaN
  CHECK(clear.missing_samples == 0);
  // The first edge inside an interval ending at the NaN: [0.45, 1.0] keeps [0.6, 1.0] = 0.8 J.
  auto edge = integrate_power(p, 10.0, 0.45, 1.0);
  CHECK(edge.joules == doctest::Approx(0.8));
  CHECK(edge.missing_samples == 1);
  // Two NaNs in a row: [0.4, 0.7] is lost -> 1.4 J.
  p[6] = kNaN;
  auto two = integrate_power(p, 10.0, 0.0, 1.0);
  CHECK(two.joules == doctest::Approx(1.4));
  CHECK(two.missing_samples == 2);
}

TEST_CASE("energy: the window is clamped to the data, empty or invalid windows give zero") {
  auto p = constant_trace(11, 2.0f);  // 10 Hz, t = 0 .. 1 s
  auto all = integrate_power(p, 10.0, -5.0, 50.0);
  CHECK(all.seconds == doctest::Approx(1.0));
  CHECK(all.joules == doctest::Approx(2.0));
  auto tail = integrate_power(p, 10.0, 0.5, 7.0);
  CHECK(tail.seconds == doctest::Approx(0.5));
  CHECK(tail.joules == doctest::Approx(1.0));
  auto head = integrate_power(p, 10.0, -1.0, 0.25);
  CHECK(head.seconds == doctest::Approx(0.25));
  CHECK(head.joules == doctest::Approx(0.5));
  auto beyond = integrate_power(p, 10.0, 2.0, 3.0);
  CHECK(beyond.seconds == 0.0);
  CHECK(beyond.joules == 0.0);
  CHECK(integrate_power(p, 10.0, 0.6, 0.4).joules == 0.0);
  CHECK(integrate_power(p, 10.0, 0.5, 0.5).joules == 0.0);
  CHECK(integrate_power(p, 0.0, 0.0, 1.0).joules == 0.0);
  CHECK(integrate_power(p, -10.0, 0.0, 1.0).joules == 0.0);
  auto one = constant_trace(1, 2.0f);
  CHECK(integrate_power(one, 10.0, 0.0, 1.0).joules == 0.0);
  CHECK(integrate_power(std::span<const float>(), 10.0, 0.0, 1.0).joules == 0.0);
}

// ---------------------------------------------------------------------------------------------
// Waveform

/// A fresh directory, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("meltrig_waveform_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  fs::path write(const std::string& name, const std::string& text) const {
    fs::path f = path / name;
    std::ofstream(f, std::ios::binary) << text;
    return f;
  }
};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST_CASE("waveform: constant is the same at every time") {
  Waveform w = Waveform::constant(0.25);
  for (double t : {-10.0, 0.0, 0.001, 1.0, 3600.0})
    CHECK(w.at(t) == 0.25);
  CHECK(w.noise_amps == 0.0);
}

TEST_CASE("waveform: steps hold their value, with the first before and the last after") {
  auto r = Waveform::steps({{1.0, 0.2}, {2.0, 1.0}, {4.5, 0.05}});
  REQUIRE(r.ok());
  const Waveform& w = *r;
  CHECK(w.at(-1.0) == 0.2);
  CHECK(w.at(0.0) == 0.2);
  CHECK(w.at(1.0) == 0.2);
  CHECK(w.at(1.999) == 0.2);
  CHECK(w.at(2.0) == 1.0);  // a step takes effect at its own time
  CHECK(w.at(3.0) == 1.0);
  CHECK(w.at(4.4999) == 1.0);
  CHECK(w.at(4.5) == 0.05);
  CHECK(w.at(100.0) == 0.05);

  auto single = Waveform::steps({{3.0, 0.7}});
  REQUIRE(single.ok());
  CHECK(single->at(0.0) == 0.7);
  CHECK(single->at(9.0) == 0.7);

  auto empty = Waveform::steps({});
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().code == Errc::invalid_argument);
  auto flat = Waveform::steps({{0.0, 1.0}, {1.0, 2.0}, {1.0, 3.0}});
  REQUIRE_FALSE(flat.ok());
  CHECK(flat.error().code == Errc::invalid_argument);
  CHECK(contains(flat.error().message, "point 3"));
  auto back = Waveform::steps({{2.0, 1.0}, {1.0, 2.0}});
  REQUIRE_FALSE(back.ok());
  auto nan_t = Waveform::steps({{0.0, 1.0}, {std::nan(""), 2.0}});
  CHECK_FALSE(nan_t.ok());
}

TEST_CASE("waveform: a CSV profile with header and comments interpolates linearly") {
  TempDir dir;
  auto f = dir.write("profile.csv",
                     "t_s,current_a\n"
                     "# idle first\n"
                     "0,0.1\n"
                     "\n"
                     "1,0.3\n"
                     "# ramp up\n"
                     "3, 0.7\n");
  auto r = Waveform::from_csv(f);
  REQUIRE(r.ok());
  const Waveform& w = *r;
  CHECK(w.at(-1.0) == doctest::Approx(0.1));
  CHECK(w.at(0.0) == doctest::Approx(0.1));
  CHECK(w.at(0.5) == doctest::Approx(0.2));
  CHECK(w.at(0.25) == doctest::Approx(0.15));
  CHECK(w.at(1.0) == doctest::Approx(0.3));
  CHECK(w.at(2.0) == doctest::Approx(0.5));
  CHECK(w.at(2.5) == doctest::Approx(0.6));
  CHECK(w.at(3.0) == doctest::Approx(0.7));
  CHECK(w.at(10.0) == doctest::Approx(0.7));

  // No header, CRLF line ends.
  auto g = dir.write("plain.csv", "0,1\r\n2,3\r\n");
  auto rg = Waveform::from_csv(g);
  REQUIRE(rg.ok());
  CHECK(rg->at(1.0) == doctest::Approx(2.0));
  CHECK(rg->at(0.5) == doctest::Approx(1.5));

  // Through parse().
  auto rp = Waveform::parse("csv:" + f.string());
  REQUIRE(rp.ok());
  CHECK(rp->at(2.0) == doctest::Approx(0.5));
}

TEST_CASE("waveform: CSV errors name the file and line") {
  TempDir dir;
  struct Case {
    const char* name;
    const char* text;
    const char* where;  // ":line:" expected in the message
    const char* what;
  };
  for (const auto& c : {
           Case{"badline.csv", "t_s,current_a\n0,0.1\n1,0.2\nnot a number,3\n", ":4:", "expected"},
           Case{"nocomma.csv", "0,0.1\n0.5 0.2\n", ":2:", "expected"},
           Case{"threecol.csv", "t,a\n0,1,2\n", ":2:", "expected"},
           Case{"equal.csv", "t,a\n0,1\n1,2\n1,3\n", ":4:", "does not increase"},
           Case{"backwards.csv", "0,1\n# c\n-1,2\n", ":3:", "does not increase"},
           Case{"late_header.csv", "0,1\nt_s,current_a\n", ":2:", "expected"},
       }) {
    CAPTURE(c.name);
    auto f = dir.write(c.name, c.text);
    auto r = Waveform::from_csv(f);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::parse_error);
    CHECK(contains(r.error().message, f.string() + c.where));
    CHECK(contains(r.error().message, c.what));
  }
  for (const char* text : {"", "t_s,current_a\n", "# only a comment\n"}) {
    CAPTURE(text);
    auto f = dir.write("empty.csv", text);
    auto r = Waveform::from_csv(f);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::parse_error);
    CHECK(contains(r.error().message, f.string()));
  }
  auto missing = Waveform::from_csv(dir.path / "nope.csv");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  CHECK(contains(missing.error().message, (dir.path / "nope.csv").string()));
}

// BUG (fixtures/src/waveform.cpp:62): a header is accepted only on physical line 1, so the common
// layout "comment lines, then the header" fails with "file:2: expected ...", although the header
// documents "a header line and # comments allowed".
TEST_CASE("waveform: a CSV header after leading comment lines is accepted") {
  TempDir dir;
  auto f = dir.write("commented.csv", "# recorded on bench 3\nt_s,current_a\n0,0.1\n1,0.3\n");
  auto r = Waveform::from_csv(f);
  REQUIRE(r.ok());
  CHECK(r->at(0.5) == doctest::Approx(0.2));
}

// BUG (fixtures/src/waveform.cpp:57): only an empty std::string counts as a blank line, so a blank
// line in a CRLF file ("\r") or a whitespace-only line is a parse error, although CRLF data lines
// are accepted (parse_double strips the '\r').
TEST_CASE("waveform: blank lines in a CRLF CSV are skipped") {
  TempDir dir;
  auto f = dir.write("crlf.csv", "t_s,current_a\r\n0,1\r\n\r\n2,3\r\n\r\n");
  auto r = Waveform::from_csv(f);
  REQUIRE(r.ok());
  CHECK(r->at(1.0) == doctest::Approx(2.0));
}

TEST_CASE("waveform: parse() specs and their errors") {
  auto c = Waveform::parse("constant:0.5");
  REQUIRE(c.ok());
  CHECK(c->at(0.0) == 0.5);
  CHECK(c->at(99.0) == 0.5);
  auto cn = Waveform::parse("constant:-0.125");
  REQUIRE(cn.ok());
  CHECK(cn->at(1.0) == -0.125);

  auto s = Waveform::parse("steps:0:0.2,5:1.0");
  REQUIRE(s.ok());
  CHECK(s->at(-1.0) == 0.2);
  CHECK(s->at(0.0) == 0.2);
  CHECK(s->at(4.99) == 0.2);  // held, not interpolated (0.2 + 0.8 * 4.99 / 5 would be 0.998)
  CHECK(s->at(5.0) == 1.0);
  CHECK(s->at(60.0) == 1.0);
  auto s3 = Waveform::parse("steps:0:0.1, 1.5:0.4 ,3:0");
  REQUIRE(s3.ok());
  CHECK(s3->at(2.0) == 0.4);
  CHECK(s3->at(3.0) == 0.0);

  struct Bad {
    const char* spec;
    const char* mentions;
  };
  for (const auto& b :
       {Bad{"constant:", "constant:"}, Bad{"constant", "constant"},
        Bad{"constant:abc", "constant:abc"}, Bad{"constant:0.5A", "0.5A"}, Bad{"steps:", "steps"},
        Bad{"steps:0:1,x", "\"x\""}, Bad{"steps:0:1,,2:3", "steps:0:1,,2:3"},
        Bad{"steps:0-1", "0-1"}, Bad{"steps:1:0.1,0:0.2", "steps"}, Bad{"sine:1", "sine:1"},
        Bad{"", "waveform"}}) {
    CAPTURE(b.spec);
    auto r = Waveform::parse(b.spec);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(contains(r.error().message, b.mentions));
  }
  auto nf = Waveform::parse("csv:/nonexistent/meltrig/none.csv");
  REQUIRE_FALSE(nf.ok());
  CHECK(nf.error().code == Errc::not_found);
  CHECK(contains(nf.error().message, "/nonexistent/meltrig/none.csv"));
}

}  // namespace
