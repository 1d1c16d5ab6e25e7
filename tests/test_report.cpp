// meltrig report and export --perfetto: the page assembly and its bounds, the Perfetto trace of the
// phone scenario against the file, and the report of simulated runs rendered by headless Chromium
// (every plot drew, the page's own zoom controls change the plotted range down to raw samples,
// nothing leaves the file).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "meltrig/analysis/capture_inputs.hpp"
#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/report/assets.hpp"
#include "meltrig/report/page.hpp"
#include "meltrig/report/power_data.hpp"
#include "sim_support.hpp"
#include "test_support.hpp"

using meltrig::test::Process;
using meltrig::test::TempDir;
namespace rep = meltrig::report;

namespace {

struct Run {
  int rc = -1;
  std::string out, err;
};

Run run_cmd(const TempDir& dir, std::vector<std::string> argv, const std::string& tag) {
  Process p(argv, dir.path(), tag);
  Run r;
  r.rc = p.wait(std::chrono::seconds(300));
  r.out = p.out();
  r.err = p.err();
  return r;
}

Run meltrig_cli(const TempDir& dir, std::vector<std::string> args, const std::string& tag) {
  args.insert(args.begin(), meltrig::test::cli());
  return run_cmd(dir, args, tag);
}

// A simulated run of `scenario_text` (a scenario file's text) into dir/name.h5, started now;
// wait() on the result.
std::unique_ptr<Process> start_sim(const TempDir& dir, const std::string& name,
                                   const std::string& scenario_text) {
  const auto toml = dir / (name + ".toml");
  std::ofstream(toml) << scenario_text;
  return std::make_unique<Process>(
      std::vector<std::string>{meltrig::test::cli(), "sim", toml.string(), "-o",
                               (dir / (name + ".h5")).string(), "--speed", "10", "-q"},
      dir.path(), "sim-" + name);
}

std::size_t token_markers(const std::filesystem::path& h5, const std::string& kind) {
  auto log = meltrig::analysis::read_runner_markers(h5);
  REQUIRE_MESSAGE(log.ok(), (log.ok() ? "" : log.error().describe()));
  std::size_t n = 0;
  for (const auto& e : log->events)
    if (meltrig::targets::kind_name(e.kind) == kind) ++n;
  return n;
}

}  // namespace

TEST_CASE("report: embedded assets, page assembly and the size bound of the plot data") {
  for (const char* name : {"page.html", "plots.js", "report.js", "uPlot.iife.min.js", "LICENSE"})
    CHECK_MESSAGE(!rep::asset(name).empty(), name);
  CHECK_THROWS_AS(rep::asset("nope.js"), std::out_of_range);
  CHECK(rep::script_safe_json(R"({"a":"</script><!--"})") == R"({"a":"\u003c/script>\u003c!--"})");
  rep::Page p;
  p.title = "a <b> & \"c\"";
  p.body = "<div id=\"x\">{{title}}</div>";  // inserted text is not searched for slots again
  p.data = {{"d", R"({"s":"</script>"})"}};
  p.scripts = {"plots.js"};
  const std::string html = rep::html_page(p);
  CHECK(html.find("<title>a &lt;b&gt; &amp; &quot;c&quot;</title>") != std::string::npos);
  CHECK(html.find("<div id=\"x\">{{title}}</div>") != std::string::npos);
  CHECK(html.find(R"({"s":"\u003c/script>"})") != std::string::npos);
  CHECK(html.find("content=\"default-src &#39;none&#39;;") != std::string::npos);
  CHECK(html.find("MeltrigPlots") != std::string::npos);

  // Windows: all entries when they fit, else at most the budget, around each focus entry.
  const std::vector<std::uint64_t> focus{10, 500'000, 500'010, 17'999'990};
  CHECK(rep::plan_windows(100, focus, 1000).size() == 1);
  const auto w = rep::plan_windows(18'000'000, focus, 131072);
  std::uint64_t sum = 0;
  for (const auto& s : w) {
    sum += s.count;
    CHECK(s.first + s.count <= 18'000'000);
  }
  CHECK(sum <= 131072);
  CHECK(w.size() == 3);  // the two focus entries 10 apart share one window
  CHECK(w.front().first == 0);
  CHECK(w.back().first + w.back().count == 18'000'000);
  // An hour at 5 kHz with a focus per 10 s: raw 131072 samples, levels 8 and 12 at most 16384
  // entries each, 16 to 24 whole: the plot data stays near 1 MB of base64, whatever the length.
  std::vector<std::uint64_t> f;
  for (std::uint64_t s = 0; s < 18'000'000; s += 50'000)
    f.push_back(s);
  std::uint64_t bytes = 0;
  for (int level : {0, 8, 12, 16, 20, 24}) {
    const std::uint64_t per = std::uint64_t{1} << level, total = (18'000'000 + per - 1) / per;
    std::vector<std::uint64_t> fl;
    for (auto x : f)
      fl.push_back(x / per);
    std::uint64_t n = 0;
    for (const auto& s : rep::plan_windows(total, fl, level == 0 ? 131072 : 16384))
      n += s.count;
    bytes += n * (level == 0 ? 4 : 12) * 4 / 3;
  }
  MESSAGE("plot data of a 1-hour 5 kHz capture: " << bytes << " bytes of base64");
  CHECK(bytes < 1'200'000);
}

TEST_CASE("report: export --perfetto of the phone scenario, counts checked against the file") {
  TempDir dir;
  auto sim = start_sim(dir, "phone", meltrig::test::simw::text_of("phone_llamacpp.toml"));
  REQUIRE_MESSAGE(sim->wait(std::chrono::seconds(300)) == 0, sim->err());
  const auto h5 = dir / "phone.h5";
  const auto trace = dir / "trace.json";
  Run r = meltrig_cli(dir, {"export", h5.string(), "--perfetto", "-o", trace.string()}, "export");
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const auto j = nlohmann::json::parse(meltrig::test::read_file(trace));
  Run an = meltrig_cli(dir, {"analyze", h5.string(), "--json"}, "analyze");
  REQUIRE(an.rc == 0);
  const auto a = nlohmann::json::parse(an.out);

  std::map<std::string, std::size_t> counters;
  std::map<std::string, double> last_ts;  // per track: timestamps never go back
  std::size_t tokens = 0, phases = 0, sync = 0, gaps = 0;
  std::map<std::string, std::string> thread_names;
  for (const auto& e : j["traceEvents"]) {
    const std::string ph = e["ph"];
    if (ph == "M") continue;
    const double ts = e["ts"];
    const std::string track = ph == "C" ? "C:" + e["name"].get<std::string>()
                                        : ph + ":" + std::to_string(e.value("tid", 0));
    CHECK_MESSAGE(ts >= last_ts[track], track);
    last_ts[track] = ts;
    if (ph == "C") ++counters[e["name"]];
    if (ph == "X" && e["tid"] == 2) ++tokens;
    if (ph == "X" && e["tid"] != 2) ++phases;
    if (ph == "i" && e["tid"] == 6) ++sync;
    if (ph == "i" && e["pid"] == 1) ++gaps;
    if (ph == "X") CHECK(e["dur"].get<double>() >= 0);
  }
  for (const char* c :
       {"power (W)", "current (A)", "voltage (V)", "thermal/soc (degC)", "cpu/freq (MHz)"})
    CHECK_MESSAGE(counters[c] > 0, c);
  CHECK(tokens == token_markers(h5, "token"));
  CHECK(tokens == a["tokens"].size());
  std::size_t expected_phases = 0;
  for (const auto& rr : a["repetitions"])
    expected_phases += rr["phases"].size();
  CHECK(phases == expected_phases);
  CHECK(sync == token_markers(h5, "sync.start") + token_markers(h5, "sync.end"));
  auto reader = meltrig::dataset::CaptureReader::open(h5);
  REQUIRE(reader.ok());
  CHECK(gaps == reader->gap_count());
  CHECK(j["otherData"]["time_base"] == "monitor: sample index / nominal rate");
  // The first token slice is where the analysis puts it (one source of truth).
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] == "X" && e["tid"] == 2) {
      CHECK(e["ts"].get<double>() ==
            doctest::Approx(a["tokens"][0]["start_s"].get<double>() * 1e6));
      break;
    }
  }
  // Usage errors: --perfetto with CSV options, or both formats.
  CHECK(meltrig_cli(dir, {"export", h5.string(), "--perfetto", "--csv", "-o", "x"}, "e2").rc == 2);
  CHECK(
      meltrig_cli(dir, {"export", h5.string(), "--perfetto", "--level", "8", "-o", "x"}, "e3").rc ==
      2);
}

namespace {

std::string chromium_path() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin";
  for (std::size_t at = 0; at <= dirs.size();) {
    const auto end = std::min(dirs.find(':', at), dirs.size());
    const auto p = std::filesystem::path(dirs.substr(at, end - at)) / "chromium";
    if (std::filesystem::exists(p)) return p.string();
    at = end + 1;
  }
  return "";
}

// Headless Chromium on the file with every request sent to a proxy that refuses (port 9).
Run chromium(const TempDir& dir, const std::filesystem::path& html, const std::string& hash,
             const std::string& what, const std::string& tag) {
  const std::string exe = chromium_path();
  REQUIRE_MESSAGE(!exe.empty(), "chromium is not installed: scripts/setup.sh installs it");
  return run_cmd(
      dir,
      {exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
       "--disable-dev-shm-usage", "--hide-scrollbars",
       "--user-data-dir=" + (dir / ("chrome-" + tag)).string(), "--proxy-server=127.0.0.1:9",
       "--proxy-bypass-list=<-loopback>", "--virtual-time-budget=15000", "--window-size=1200,900",
       what, "file://" + html.string() + hash},
      tag);
}

// The attributes of every element of the dumped DOM whose class list holds `cls`.
std::vector<std::map<std::string, std::string>> elements_with_class(const std::string& dom,
                                                                    const std::string& cls) {
  std::vector<std::map<std::string, std::string>> out;
  static const std::regex tag(R"(<[a-z]+(\s[^>]*)>)"), attr(R"re(([\w-]+)="([^"]*)")re");
  for (auto t = std::sregex_iterator(dom.begin(), dom.end(), tag); t != std::sregex_iterator();
       ++t) {
    std::map<std::string, std::string> a;
    const std::string s = (*t)[1];
    for (auto m = std::sregex_iterator(s.begin(), s.end(), attr); m != std::sregex_iterator(); ++m)
      a[(*m)[1]] = (*m)[2];
    if ((" " + a["class"] + " ").find(" " + cls + " ") != std::string::npos) out.push_back(a);
  }
  return out;
}

std::string scenario(const std::string& seed, const std::string& top_w) {
  using meltrig::test::simw::replace_once;
  std::string s = meltrig::test::simw::text_of("phone_llamacpp.toml");
  s = replace_once(s, "repetitions = 1", "repetitions = 3");
  s = replace_once(s, "output_tokens = 160", "output_tokens = 60");
  s = replace_once(s, "seed = 1", "seed = " + seed);
  s = replace_once(s, "power_w = 4.8", "power_w = " + top_w);
  s = replace_once(s,
                   "trips = [{ temp_c = 70.0, cap_mhz = 2000 }, { temp_c = 80.0, cap_mhz = 1500 }]",
                   "trips = [{ temp_c = 27.0, cap_mhz = 1500 }]");
  return replace_once(s, "[usb]", R"([software_power.fuel_gauge]
rate_hz = 2.0
window_s = 1.0
lag_s = 0.3
bias_pct = 3.0
gain_error_sd = 0.02
unit = "mA"
sign = -1

[usb])");
}

}  // namespace

TEST_CASE("report: headless Chromium draws every plot, zooms to raw samples, loads nothing" *
          doctest::test_suite("slow")) {
  TempDir dir;
  auto a = start_sim(dir, "fast", scenario("1", "4.8"));
  auto b = start_sim(dir, "eco", scenario("2", "4.2"));
  REQUIRE_MESSAGE(a->wait(std::chrono::seconds(300)) == 0, a->err());
  REQUIRE_MESSAGE(b->wait(std::chrono::seconds(300)) == 0, b->err());
  const auto html = dir / "report.html";
  Run r = meltrig_cli(
      dir, {"report", (dir / "fast.h5").string(), (dir / "eco.h5").string(), "-o", html.string()},
      "report");
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const std::string page = meltrig::test::read_file(html);
  MESSAGE("report of two 3-repetition runs: " << page.size() << " bytes");
  // Self-contained: nothing to fetch, and a policy that forbids fetching.
  CHECK(page.find("content=\"default-src &#39;none&#39;;") != std::string::npos);
  std::string markup;  // the page without the contents of its script and style elements
  for (std::size_t at = 0; at < page.size();) {
    const auto open = std::min(page.find("<script", at), page.find("<style", at));
    markup += page.substr(at, open - at);
    if (open == std::string::npos) break;
    const bool script = page.compare(open, 7, "<script") == 0;
    const auto close = page.find(script ? "</script>" : "</style>", open);
    REQUIRE(close != std::string::npos);
    at = close + (script ? 9 : 8);
  }
  CHECK(markup.size() < 4000);  // the template and body, without scripts, styles and data
  CHECK_FALSE(std::regex_search(markup, std::regex(R"((src|href|action)\s*=)")));
  // The embedded analysis is exactly what `meltrig analyze --json` prints.
  Run an = meltrig_cli(dir, {"analyze", (dir / "fast.h5").string(), "--json"}, "analyze");
  REQUIRE(an.rc == 0);
  const std::string open = R"(<script type="application/json" id="meltrig-analysis-0">)";
  const auto at = page.find(open) + open.size();
  CHECK(nlohmann::json::parse(page.substr(at, page.find("</script>", at) - at)) ==
        nlohmann::json::parse(an.out));

  // Decode of repetition 0, then zoom in twice (x16) with the page's own buttons.
  Run dom =
      chromium(dir, html, "#click=p0-phase-decode,p0-zoom-in,p0-zoom-in", "--dump-dom", "dom");
  REQUIRE_MESSAGE(dom.rc == 0, dom.err);
  // The page's own elements come before its data and scripts (whose text may look like tags).
  const auto b0 = dom.out.find("<body");
  REQUIRE(b0 != std::string::npos);
  const std::string shown = dom.out.substr(b0, dom.out.find("<script", b0) - b0);
  const std::string body = shown.substr(0, shown.find('>'));
  auto plots = elements_with_class(shown, "plot");
  REQUIRE_MESSAGE(body.find("data-ready=\"1\"") != std::string::npos, body);
  CHECK(body.find("data-actions-done=\"1\"") != std::string::npos);
  CHECK(body.find("data-error") == std::string::npos);
  CHECK(body.find("data-action-error") == std::string::npos);
  CHECK(body.find("data-csp-violations") == std::string::npos);
  CHECK(body.find("data-resources=\"0\"") != std::string::npos);
  // 2 files x (power, tokens, phases, thermal, estimate scatter, Bland-Altman) + 2 comparisons.
  CHECK(plots.size() == 14);
  for (auto p : plots) {
    CAPTURE(p["id"]);
    CHECK(p["data-drawn"] == "1");
    CHECK(std::stol(p["data-ink"].empty() ? "0" : p["data-ink"]) > 40);
  }
  auto p0 = std::find_if(plots.begin(), plots.end(), [](auto& p) { return p["id"] == "p0"; });
  REQUIRE(p0 != plots.end());
  const double x0 = std::stod((*p0)["data-x-min"]), x1 = std::stod((*p0)["data-x-max"]);
  const std::string initial = (*p0)["data-initial"];
  const double i0 = std::stod(initial), i1 = std::stod(initial.substr(initial.find(',') + 1));
  CHECK(i0 == 0.0);
  CHECK(x0 > i0);
  CHECK(x1 < i1);
  CHECK((x1 - x0) < (i1 - i0) / 50);
  CHECK((*p0)["data-per"] == "1");  // raw samples
  CHECK((*p0)["data-initial-per"] != "1");
  CHECK(std::stol((*p0)["data-points"]) > 100);

  // Screenshots (kept in the test's working directory for docs/report.md).
  for (const auto& [name, hash] : std::vector<std::pair<std::string, std::string>>{
           {"report_overview.png", ""},
           {"report_zoomed.png", "#click=p0-phase-decode,p0-zoom-in,p0-zoom-in&scroll=p0"},
           {"report_comparison.png", "#scroll=cmp-jpt"}}) {
    const auto png = std::filesystem::current_path() / name;
    std::filesystem::remove(png);
    Run shot = chromium(dir, html, hash, "--screenshot=" + png.string(), "shot");
    CHECK_MESSAGE(shot.rc == 0, shot.err);
    CHECK(std::filesystem::exists(png));
    CHECK(meltrig::test::read_file(png).substr(1, 3) == "PNG");
  }
}
