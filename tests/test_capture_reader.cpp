// CaptureReader, `meltrig inspect` and `meltrig export`: capture files made with CaptureWriter from
// known data (NaN gaps, gap and calibration rows, counters), summary fixtures written with h5py to
// the documented layout, then every value read back and every output line compared with the truth.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/dataset/capture_writer.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using meltrig::Errc;
using meltrig::Result;
using meltrig::dataset::AttributeValue;
using meltrig::dataset::CalibrationRow;
using meltrig::dataset::CaptureLayout;
using meltrig::dataset::CaptureReader;
using meltrig::dataset::CaptureState;
using meltrig::dataset::CaptureWriter;
using meltrig::dataset::ChannelData;
using meltrig::dataset::Gap;
using meltrig::dataset::GapKind;
using meltrig::dataset::SampleBlock;
using meltrig::dataset::SampleType;
using meltrig::dataset::SummaryStats;
using meltrig::test::Process;
using meltrig::test::TempDir;

constexpr double kRate = 5000.0;
constexpr std::uint64_t kSamples = 1000;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- The known truth of the "gappy" capture ----
// Samples 0..999 at 5 kHz; gaps (NaN / 0) at 100..119 (missing), 300..306 (ring_overflow) and
// 640..642 (resync); 4 duplicates dropped at 300 (no rows); sample 500 of `current` is a NaN the
// device itself sent (in no gap row).

bool in_gap(std::uint64_t i) {
  return (i >= 100 && i < 120) || (i >= 300 && i < 307) || (i >= 640 && i < 643);
}
float current_sent(std::uint64_t i) {
  return i == 500 ? kNaN : 0.25f + static_cast<float>(i % 1000) * 0.001f;
}
float voltage_sent(std::uint64_t i) {
  return 4.0f + static_cast<float>(i % 7) * 0.125f;
}
std::uint8_t flags_sent(std::uint64_t i) {
  return static_cast<std::uint8_t>(i % 251);
}
float current_at(std::uint64_t i) {
  return in_gap(i) ? kNaN : current_sent(i);
}
float voltage_at(std::uint64_t i) {
  return in_gap(i) ? kNaN : voltage_sent(i);
}
std::uint8_t flags_at(std::uint64_t i) {
  return in_gap(i) ? 0 : flags_sent(i);
}

const std::vector<Gap> kGaps = {{100, 20, GapKind::missing},
                                {300, 4, GapKind::duplicate_dropped},
                                {300, 7, GapKind::ring_overflow},
                                {640, 3, GapKind::resync}};
const std::vector<CalibrationRow> kCalibration = {{0, 1.5, 2.5, 3.5, 4.5},
                                                  {400, -1.25, 1e6, 0.0, 7.0}};
const std::vector<std::string> kCounterNames = {"missing_samples", "duplicate_samples",
                                                "discarded_bytes", "checksum_errors"};
const std::vector<std::uint64_t> kCounterValues = {30, 4, 0, 0};

CaptureLayout test_layout() {
  CaptureLayout layout;
  layout.root_attributes = {
      {"meltrig_version", std::string("0.1.0")},
      {"host_wall_clock_start_utc", std::string("2024-05-01T12:00:00.123456789Z")},
      {"host_wall_clock_start_unix_ns", std::int64_t{1714564800123456789}},
  };
  layout.monitor_attributes = {
      {"driver", std::string("lvpm")},
      {"port", std::string("/dev/ttyACM0")},
      {"serial_number", std::int64_t{12345}},
      {"firmware_version", std::string("31")},
      {"output_voltage_v", 4.2},
  };
  layout.status_at_start = {{"temperature_c", 31.5}, {"mode", std::string("Ünïcode ok")}};
  layout.sample_rate_hz = kRate;
  layout.channels = {
      {"current", "A", SampleType::f32, "main channel current"},
      {"voltage", "V", SampleType::f32, "main channel voltage"},
      {"flags", "", SampleType::u8, "marker bits"},
  };
  layout.chunk_samples = 64;
  layout.counter_names = kCounterNames;
  return layout;
}

Result<void> append_sent(CaptureWriter& w, std::uint64_t first, std::uint64_t end) {
  std::vector<float> cur, volt;
  std::vector<std::uint8_t> flags;
  for (std::uint64_t i = first; i < end; ++i) {
    cur.push_back(current_sent(i));
    volt.push_back(voltage_sent(i));
    flags.push_back(flags_sent(i));
  }
  const std::array<ChannelData, 3> channels{std::span<const float>(cur),
                                            std::span<const float>(volt),
                                            std::span<const std::uint8_t>(flags)};
  return w.append(SampleBlock{channels});
}

std::string describe(const Result<void>& r) {
  return r ? "" : r.error().describe();
}

// Writes the gappy capture; `finish` false leaves it "running" (writer destroyed unfinished).
void write_gappy(const fs::path& file, bool finish = true) {
  auto w = CaptureWriter::create(file, test_layout());
  REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
  REQUIRE(append_sent(*w, 0, 100).ok());
  REQUIRE(w->append_missing(20, GapKind::missing).ok());
  REQUIRE(append_sent(*w, 120, 300).ok());
  REQUIRE(w->add_gap(kGaps[1]).ok());
  REQUIRE(w->append_missing(7, GapKind::ring_overflow).ok());
  REQUIRE(append_sent(*w, 307, 640).ok());
  REQUIRE(w->append_missing(3, GapKind::resync).ok());
  REQUIRE(append_sent(*w, 643, kSamples).ok());
  for (const auto& c : kCalibration)
    REQUIRE(w->add_calibration(c).ok());
  REQUIRE(w->set_counters(kCounterValues).ok());
  REQUIRE(w->flush().ok());
  if (finish) REQUIRE(w->finish(CaptureState::complete, "done").ok());
}

// Statistics of samples [first, end) of a truth function, the way the spec defines them.
template <typename F>
SummaryStats expected_stats(F at, std::uint64_t first, std::uint64_t end) {
  SummaryStats s{kNaN, kNaN, kNaN, 0};
  double sum = 0.0;
  for (std::uint64_t i = first; i < end; ++i) {
    const float v = at(i);
    if (std::isnan(v)) continue;
    if (s.valid == 0 || v < s.min) s.min = v;
    if (s.valid == 0 || v > s.max) s.max = v;
    sum += v;
    ++s.valid;
  }
  if (s.valid > 0) s.mean = static_cast<float>(sum / s.valid);
  return s;
}

bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

// Writes the spec's summary group with h5py (levels given; entries computed from the stored
// samples in float64, cast to float32), replacing any the writer made. "none" deletes the group
// (a file from before summaries); "running" also marks the capture as not finished.
const std::string kPySummaries = R"PY(
import sys
import numpy as np
import h5py
path, levels = sys.argv[1], sys.argv[2]
dt = np.dtype([("mean", "<f4"), ("min", "<f4"), ("max", "<f4"), ("valid", "<u4")])
with h5py.File(path, "r+") as f:
    m = f["monitor"]
    if "summary" in m:
        del m["summary"]
    if len(sys.argv) > 3 and sys.argv[3] == "running":
        f["capture_state/state"][()] = 0
    if levels != "none":
        levels = [int(k) for k in levels.split(",")]
        n = int(f["capture_state/samples_written"][()])
        g = m.create_group("summary")
        g.attrs["levels"] = np.array(levels, dtype=np.int64)
        g.attrs["fields"] = "mean,min,max,valid"
        for name in ("current", "voltage"):
            x = m[name][:n].astype(np.float64)
            cg = g.create_group(name)
            for k in levels:
                per = 1 << k
                count = -(-n // per)
                e = np.zeros(count, dtype=dt)
                for j in range(count):
                    s = x[j * per:(j + 1) * per]
                    ok = s[~np.isnan(s)]
                    e["valid"][j] = len(ok)
                    if len(ok):
                        e["mean"][j] = np.float32(ok.sum() / len(ok))
                        e["min"][j] = np.float32(ok.min())
                        e["max"][j] = np.float32(ok.max())
                    else:
                        e["mean"][j] = e["min"][j] = e["max"][j] = np.nan
                cg.create_dataset(str(k), data=e, maxshape=(None,), chunks=(64,))
print("ok")
)PY";

void set_summaries(const TempDir& dir, const fs::path& file, const std::string& levels,
                   const std::string& mode = "") {
  std::string log;
  std::vector<std::string> args = {file.string(), levels};
  if (!mode.empty()) args.push_back(mode);
  const int rc = meltrig::test::run_python(kPySummaries, args, dir.path(), &log);
  INFO(log);
  REQUIRE(rc == 0);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

std::vector<std::string> split(const std::string& line, char sep = ',') {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t pos = line.find(sep, start);
    out.push_back(line.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) return out;
    start = pos + 1;
  }
}

// A CSV field parsed back: empty = NaN (the documented missing value).
float parse_float(const std::string& s) {
  if (s.empty()) return kNaN;
  float v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  REQUIRE_MESSAGE(r.ec == std::errc(), s);
  REQUIRE(r.ptr == s.data() + s.size());
  return v;
}

double parse_double(const std::string& s) {
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  REQUIRE_MESSAGE(r.ec == std::errc(), s);
  REQUIRE(r.ptr == s.data() + s.size());
  return v;
}

struct Run {
  int rc;
  std::string out, err;
};

Run run_cli(const TempDir& dir, const std::vector<std::string>& args) {
  static std::atomic<int> counter{0};
  std::vector<std::string> argv = {meltrig::test::cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, dir.path(), "cli" + std::to_string(counter++));
  const int rc = p.wait();
  return {rc, p.out(), p.err()};
}

// Checks raw export rows against the truth: rows [first, end) of `channels` (names), exactly.
void check_raw_csv(const std::string& csv, const std::vector<std::string>& channels,
                   std::uint64_t first, std::uint64_t end) {
  const auto lines = lines_of(csv);
  REQUIRE(!lines.empty());
  std::string header = "t_s";
  for (const auto& c : channels)
    header += "," + c;
  CHECK(lines[0] == header);
  REQUIRE(lines.size() == 1 + (end - first));
  std::size_t bad = 0;
  for (std::uint64_t i = first; i < end; ++i) {
    const auto fields = split(lines[1 + i - first]);
    REQUIRE(fields.size() == 1 + channels.size());
    // The time column reads back as exactly index / rate.
    if (parse_double(fields[0]) != static_cast<double>(i) / kRate) ++bad;
    for (std::size_t c = 0; c < channels.size(); ++c) {
      const std::string& f = fields[1 + c];
      if (channels[c] == "flags") {
        if (f != std::to_string(flags_at(i))) ++bad;
      } else {
        const float want = channels[c] == "current" ? current_at(i) : voltage_at(i);
        // NaN is an empty field; anything else reads back as the same float.
        if (std::isnan(want) ? !f.empty() : parse_float(f) != want) ++bad;
      }
    }
    if (bad > 0) {
      INFO("first bad row " << i << ": " << lines[1 + i - first]);
      REQUIRE(bad == 0);
    }
  }
}

// Checks summary export rows against stats computed here from the truth.
void check_summary_csv(const std::string& csv, int level, std::uint64_t first_entry,
                       std::uint64_t end_entry) {
  const auto lines = lines_of(csv);
  REQUIRE(!lines.empty());
  CHECK(lines[0] ==
        "t_start_s,t_end_s,current_mean,current_min,current_max,current_valid,voltage_mean,"
        "voltage_min,voltage_max,voltage_valid");
  REQUIRE(lines.size() == 1 + (end_entry - first_entry));
  const std::uint64_t per = std::uint64_t{1} << level;
  for (std::uint64_t j = first_entry; j < end_entry; ++j) {
    CAPTURE(j);
    const auto f = split(lines[1 + j - first_entry]);
    REQUIRE(f.size() == 10);
    const std::uint64_t start = j * per, end = std::min(start + per, kSamples);
    CHECK(parse_double(f[0]) == static_cast<double>(start) / kRate);
    CHECK(parse_double(f[1]) == static_cast<double>(end) / kRate);
    const std::array<SummaryStats, 2> want = {expected_stats(current_at, start, end),
                                              expected_stats(voltage_at, start, end)};
    for (std::size_t c = 0; c < 2; ++c) {
      const SummaryStats& w = want[c];
      CHECK(f[4 * c + 5] == std::to_string(w.valid));
      if (w.valid == 0) {
        CHECK(f[4 * c + 2].empty());
        CHECK(f[4 * c + 3].empty());
        CHECK(f[4 * c + 4].empty());
      } else {
        CHECK(parse_float(f[4 * c + 2]) == w.mean);
        CHECK(parse_float(f[4 * c + 3]) == w.min);
        CHECK(parse_float(f[4 * c + 4]) == w.max);
      }
    }
  }
}

}  // namespace

TEST_CASE("capture reader: metadata, tables and samples of a finished capture read back exactly") {
  TempDir dir;
  const fs::path file = dir / "gappy.h5";
  write_gappy(file);
  auto r = CaptureReader::open(file);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));

  CHECK(r->swmr());
  CHECK(r->format_version() == 1);
  CHECK(r->monitor() == "monitor");
  CHECK(r->sample_rate_hz() == kRate);
  const auto* version = meltrig::dataset::find_attribute(r->root_attributes(), "meltrig_version");
  REQUIRE(version != nullptr);
  CHECK(std::get<std::string>(*version) == "0.1.0");
  const auto* unix_ns =
      meltrig::dataset::find_attribute(r->root_attributes(), "host_wall_clock_start_unix_ns");
  REQUIRE(unix_ns != nullptr);
  CHECK(std::get<std::int64_t>(*unix_ns) == 1714564800123456789);
  const auto& mon = r->monitor_attributes();
  CHECK(std::get<std::string>(*meltrig::dataset::find_attribute(mon, "driver")) == "lvpm");
  CHECK(std::get<std::int64_t>(*meltrig::dataset::find_attribute(mon, "serial_number")) == 12345);
  CHECK(std::get<double>(*meltrig::dataset::find_attribute(mon, "output_voltage_v")) == 4.2);
  CHECK(std::get<std::string>(*meltrig::dataset::find_attribute(mon, "time_base")) ==
        "t = sample_index / sample_rate_hz");
  CHECK(std::get<std::string>(*meltrig::dataset::find_attribute(r->status_at_start(), "mode")) ==
        "Ünïcode ok");
  CHECK(std::get<double>(
            *meltrig::dataset::find_attribute(r->status_at_start(), "temperature_c")) == 31.5);

  // Channels come in name order.
  REQUIRE(r->channels().size() == 3);
  CHECK(r->channels()[0].name == "current");
  CHECK(r->channels()[0].unit == "A");
  CHECK(r->channels()[0].type == SampleType::f32);
  CHECK(r->channels()[0].description == "main channel current");
  CHECK(r->channels()[1].name == "flags");
  CHECK(r->channels()[1].type == SampleType::u8);
  CHECK(r->channels()[1].unit.empty());
  CHECK(r->channels()[2].name == "voltage");
  CHECK(r->find_channel("voltage") == &r->channels()[2]);
  CHECK(r->find_channel("gaps") == nullptr);

  CHECK(r->samples_written() == kSamples);
  CHECK(r->state() == CaptureState::complete);
  CHECK(r->end_reason() == "done");
  REQUIRE(r->counters().size() == kCounterNames.size());
  for (std::size_t i = 0; i < kCounterNames.size(); ++i) {
    CHECK(r->counters()[i].name == kCounterNames[i]);
    CHECK(r->counters()[i].value == kCounterValues[i]);
  }

  auto gaps = r->gaps();
  REQUIRE(gaps.ok());
  REQUIRE(gaps->size() == kGaps.size());
  for (std::size_t i = 0; i < kGaps.size(); ++i) {
    CAPTURE(i);
    CHECK((*gaps)[i].first_index == kGaps[i].first_index);
    CHECK((*gaps)[i].count == kGaps[i].count);
    CHECK((*gaps)[i].kind == kGaps[i].kind);
  }
  std::array<Gap, 2> two_gaps{};
  REQUIRE(r->read_gaps(2, two_gaps).ok());
  CHECK(two_gaps[0].kind == GapKind::ring_overflow);
  CHECK(two_gaps[1].first_index == 640);
  auto cal = r->calibration();
  REQUIRE(cal.ok());
  REQUIRE(cal->size() == 2);
  CHECK((*cal)[0].sample_index == 0);
  CHECK((*cal)[0].fine_zero == 1.5);
  CHECK((*cal)[0].coarse_ref == 4.5);
  CHECK((*cal)[1].sample_index == 400);
  CHECK((*cal)[1].fine_zero == -1.25);
  CHECK((*cal)[1].fine_ref == 1e6);
  CHECK((*cal)[1].coarse_ref == 7.0);

  std::vector<float> cur(kSamples), volt(kSamples);
  std::vector<std::uint8_t> flags(kSamples);
  REQUIRE(r->read("current", 0, cur).ok());
  REQUIRE(r->read("voltage", 0, volt).ok());
  REQUIRE(r->read("flags", 0, flags).ok());
  std::size_t bad = 0;
  for (std::uint64_t i = 0; i < kSamples; ++i) {
    if (!same_float(cur[i], current_at(i)) || !same_float(volt[i], voltage_at(i)) ||
        flags[i] != flags_at(i)) {
      ++bad;
    }
  }
  CHECK(bad == 0);
  // A bounded read in the middle, across a gap and a chunk boundary.
  std::array<float, 30> part{};
  REQUIRE(r->read("current", 95, part).ok());
  for (std::size_t k = 0; k < part.size(); ++k)
    CHECK(same_float(part[k], current_at(95 + k)));
  REQUIRE(r->read("current", kSamples, std::span<float>()).ok());  // empty read at the end

  CHECK_FALSE(r->has_markers());
  CHECK_FALSE(r->has_sync());
}

TEST_CASE("capture reader: bad reads name the file and object and change nothing") {
  TempDir dir;
  const fs::path file = dir / "gappy.h5";
  write_gappy(file);
  auto r = CaptureReader::open(file);
  REQUIRE(r.ok());
  std::array<float, 10> f{};
  std::array<std::uint8_t, 10> u{};

  auto past = r->read("current", kSamples - 5, f);
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().code == Errc::invalid_argument);
  CHECK(past.error().message ==
        file.string() + ": /monitor/current: rows [995, 1005) are past the 1000 samples written");
  auto unknown = r->read("nope", 0, f);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == Errc::not_found);
  CHECK(unknown.error().message == file.string() + ": /monitor/nope: no such channel");
  auto wrong_type = r->read("flags", 0, f);
  REQUIRE_FALSE(wrong_type.ok());
  CHECK(wrong_type.error().code == Errc::invalid_argument);
  CHECK(wrong_type.error().message.find("/monitor/flags: channel is uint8") != std::string::npos);
  CHECK_FALSE(r->read("current", 0, u).ok());
  std::array<Gap, 2> g{};
  auto gaps_past = r->read_gaps(3, g);
  REQUIRE_FALSE(gaps_past.ok());
  CHECK(gaps_past.error().message.find("/monitor/gaps: rows [3, 5) are past the 4 gap rows") !=
        std::string::npos);
  std::array<CalibrationRow, 1> c{};
  CHECK_FALSE(r->read_calibration(2, c).ok());
  auto no_level = r->summary_entries("current", 3);
  REQUIRE_FALSE(no_level.ok());
  CHECK(no_level.error().code == Errc::not_found);
  auto u8_summary = r->summary_entries("flags", 8);
  CHECK_FALSE(u8_summary.ok());
  // Still fine afterwards.
  REQUIRE(r->read("current", 990, f).ok());
  CHECK(f[9] == current_at(999));
}

TEST_CASE("capture reader: summaries written to the spec are read entry by entry") {
  TempDir dir;
  const fs::path file = dir / "summaries.h5";
  write_gappy(file);
  set_summaries(dir, file, "2,4");
  auto r = CaptureReader::open(file);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  REQUIRE(r->has_summaries());
  CHECK(r->summary_levels() == std::vector<int>{2, 4});
  // 1000 samples: 250 entries of 4; 62 complete entries of 16 plus the final partial one.
  CHECK(*r->summary_entries("current", 2) == 250);
  CHECK(*r->summary_entries("voltage", 4) == 63);
  for (const int level : {2, 4}) {
    const std::uint64_t per = std::uint64_t{1} << level;
    const std::uint64_t entries = *r->summary_entries("current", level);
    std::vector<SummaryStats> cur(entries), volt(entries);
    REQUIRE(r->read_summary("current", level, 0, cur).ok());
    REQUIRE(r->read_summary("voltage", level, 0, volt).ok());
    std::size_t bad = 0;
    std::size_t empty = 0;
    for (std::uint64_t j = 0; j < entries; ++j) {
      const std::uint64_t end = std::min((j + 1) * per, kSamples);
      for (const auto& [got, want] :
           {std::pair{cur[j], expected_stats(current_at, j * per, end)},
            std::pair{volt[j], expected_stats(voltage_at, j * per, end)}}) {
        if (got.valid != want.valid || !same_float(got.mean, want.mean) ||
            !same_float(got.min, want.min) || !same_float(got.max, want.max)) {
          ++bad;
        }
        empty += got.valid == 0 ? 1 : 0;
      }
    }
    CAPTURE(level);
    CHECK(bad == 0);
    // Level 2: entries 25..29 (samples 100..119) and 75 (300..303) lie inside gaps, in both
    // channels; no entry of 16 samples does.
    CHECK(empty == (level == 2 ? 12u : 0u));
  }
  // The last, partial entry: samples 992..999.
  std::array<SummaryStats, 1> last{};
  REQUIRE(r->read_summary("current", 4, 62, last).ok());
  CHECK(last[0].valid == 8);
  CHECK(last[0].max == current_at(999));
  std::array<SummaryStats, 2> two{};
  auto past = r->read_summary("current", 4, 62, two);
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().message.find("/monitor/summary/current/4: rows [62, 64) are past the 63 "
                                  "summary entries") != std::string::npos);
  auto u8 = r->summary_entries("flags", 2);
  REQUIRE_FALSE(u8.ok());
  CHECK(u8.error().message.find("/monitor/summary/flags/2: no such dataset") != std::string::npos);
  // summarize() agrees with the stored entries.
  auto s = r->summarize("current", 992, 8);
  REQUIRE(s.ok());
  CHECK(s->valid == last[0].valid);
  CHECK(s->mean == last[0].mean);
  CHECK(s->min == last[0].min);
}

TEST_CASE("capture reader: the summaries CaptureWriter itself stores agree with the truth") {
  TempDir dir;
  const fs::path file = dir / "writer_summaries.h5";
  write_gappy(file);
  auto r = CaptureReader::open(file);
  REQUIRE(r.ok());
  if (!r->has_summaries()) {
    MESSAGE("this CaptureWriter writes no summaries: nothing to cross-check");
    return;
  }
  for (const int level : r->summary_levels()) {
    CAPTURE(level);
    const std::uint64_t per = std::uint64_t{1} << level;
    auto entries = r->summary_entries("current", level);
    REQUIRE(entries.ok());
    // Finished: the entries cover every sample, the last one partial.
    REQUIRE(*entries == (kSamples + per - 1) / per);
    std::vector<SummaryStats> got(*entries);
    REQUIRE(r->read_summary("current", level, 0, got).ok());
    for (std::uint64_t j = 0; j < *entries; ++j) {
      const SummaryStats want =
          expected_stats(current_at, j * per, std::min((j + 1) * per, kSamples));
      CHECK(got[j].valid == want.valid);
      CHECK(got[j].min == want.min);
      CHECK(got[j].max == want.max);
      // The writer may sum in another order: the mean agrees to float rounding.
      CHECK(got[j].mean == doctest::Approx(want.mean).epsilon(1e-6));
    }
  }
}

TEST_CASE("capture reader: while running, only complete summary entries are trusted") {
  TempDir dir;
  const fs::path file = dir / "running.h5";
  write_gappy(file);
  set_summaries(dir, file, "2,4", "running");
  auto r = CaptureReader::open(file);
  REQUIRE(r.ok());
  CHECK(r->state() == CaptureState::running);
  // The stored partial entry 62 describes samples a live writer may still add to: not counted.
  CHECK(*r->summary_entries("current", 4) == 62);
  CHECK(*r->summary_entries("current", 2) == 250);
}

TEST_CASE("capture reader: files without summaries, markers or sync report them absent") {
  TempDir dir;
  const fs::path file = dir / "old.h5";
  write_gappy(file);
  set_summaries(dir, file, "none");
  auto r = CaptureReader::open(file);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  CHECK_FALSE(r->has_summaries());
  CHECK(r->summary_levels().empty());
  auto e = r->summary_entries("current", 8);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code == Errc::not_found);
  CHECK(e.error().message ==
        file.string() + ": /monitor/summary: no such group (the file has no summaries)");
  CHECK_FALSE(r->has_markers());
  CHECK_FALSE(r->has_sync());
  std::vector<float> cur(kSamples);
  REQUIRE(r->read("current", 0, cur).ok());
  CHECK(same_float(cur[500], kNaN));
  CHECK(cur[999] == current_at(999));
}

TEST_CASE("capture reader: a copy with h5py's default libver (superblock 0) reads the same") {
  TempDir dir;
  const fs::path src = dir / "gappy.h5";
  const fs::path copy = dir / "copy.h5";
  write_gappy(src);
  std::string log;
  const int rc = meltrig::test::run_python(R"PY(
import sys, h5py
with h5py.File(sys.argv[1], "r") as s, h5py.File(sys.argv[2], "w", libver="earliest") as d:
    for k, v in s.attrs.items():
        d.attrs[k] = v
    for k in s:
        s.copy(s[k], d, name=k)
print("ok")
)PY",
                                           {src.string(), copy.string()}, dir.path(), &log);
  INFO(log);
  REQUIRE(rc == 0);
  auto r = CaptureReader::open(copy);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  CHECK(r->samples_written() == kSamples);
  CHECK(r->state() == CaptureState::complete);
  CHECK(r->refresh().ok());
  std::vector<std::uint8_t> flags(kSamples);
  REQUIRE(r->read("flags", 0, flags).ok());
  for (std::uint64_t i = 0; i < kSamples; i += 97)
    CHECK(flags[i] == flags_at(i));
  CHECK(r->gap_count() == kGaps.size());
}

TEST_CASE("capture reader: follows a live capture while another thread appends and flushes") {
  TempDir dir;
  const fs::path file = dir / "live.h5";
  auto created = CaptureWriter::create(file, test_layout());
  REQUIRE(created.ok());
  CaptureWriter writer = std::move(*created);
  REQUIRE(append_sent(writer, 0, 100).ok());
  REQUIRE(writer.flush().ok());

  auto r = CaptureReader::open(file);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  CHECK(r->swmr());
  CHECK(r->samples_written() == 100);
  CHECK(r->state() == CaptureState::running);
  CHECK(r->end_reason().empty());

  // The writer thread appends 100 samples and flushes, 40 times, then adds a gap and finishes.
  constexpr std::uint64_t kLiveEnd = 4100;
  std::atomic<bool> done{false};
  std::string writer_error;
  std::thread t([&] {
    for (std::uint64_t at = 100; at < kLiveEnd && writer_error.empty(); at += 100) {
      if (auto res = append_sent(writer, at, at + 100); !res) writer_error = describe(res);
      if (auto res = writer.flush(); !res) writer_error = describe(res);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const std::array<std::uint64_t, 4> counters{1, 2, 3, 4};
    if (auto res = writer.append_missing(5, GapKind::missing); !res) writer_error = describe(res);
    if (auto res = writer.set_counters(counters); !res) writer_error = describe(res);
    if (auto res = writer.finish(CaptureState::interrupted, "SIGINT"); !res) {
      writer_error = describe(res);
    }
    done = true;
  });

  // Meanwhile: refresh and read everything written so far, again and again.
  std::uint64_t last = 100;
  int refreshes = 0, growth = 0;
  std::size_t bad = 0;
  std::vector<float> cur;
  std::vector<std::uint8_t> flags;
  for (bool finished = false; !finished;) {
    finished = done.load();  // one more pass after the writer is done
    const auto res = r->refresh();
    REQUIRE_MESSAGE(res.ok(), describe(res));
    ++refreshes;
    const std::uint64_t n = r->samples_written();
    CHECK(n >= last);
    growth += n > last ? 1 : 0;
    last = n;
    const std::uint64_t valid_end = std::min(n, kLiveEnd);
    cur.resize(valid_end);
    flags.resize(valid_end);
    REQUIRE(r->read("current", 0, cur).ok());
    REQUIRE(r->read("flags", 0, flags).ok());
    for (std::uint64_t i = 0; i < valid_end; ++i) {
      if (!same_float(cur[i], current_sent(i)) || flags[i] != flags_sent(i)) ++bad;
    }
  }
  t.join();
  REQUIRE(writer_error.empty());
  CHECK(bad == 0);
  CHECK(growth >= 2);  // saw the file grow between refreshes, not only at the end
  INFO("refreshes: " << refreshes << ", growth seen: " << growth);
  CHECK(r->samples_written() == kLiveEnd + 5);
  CHECK(r->state() == CaptureState::interrupted);
  CHECK(r->end_reason() == "SIGINT");
  CHECK(r->counters()[3].value == 4);
  REQUIRE(r->gap_count() == 1);
  CHECK((*r->gaps())[0].first_index == kLiveEnd);
  std::array<float, 5> tail{};
  REQUIRE(r->read("voltage", kLiveEnd, tail).ok());
  for (const float v : tail)
    CHECK(std::isnan(v));
}

TEST_CASE("meltrig inspect and export: read a capture another process is still writing") {
  TempDir dir;
  const fs::path file = dir / "open.h5";
  auto w = CaptureWriter::create(file, test_layout());
  REQUIRE(w.ok());
  REQUIRE(append_sent(*w, 0, 100).ok());
  REQUIRE(w->append_missing(20, GapKind::missing).ok());
  REQUIRE(append_sent(*w, 120, 300).ok());
  REQUIRE(w->flush().ok());
  REQUIRE(append_sent(*w, 300, 310).ok());  // buffered, not flushed: not visible yet

  const Run inspect = run_cli(dir, {"inspect", file.string()});
  INFO(inspect.out << inspect.err);
  REQUIRE(inspect.rc == 0);
  const auto lines = lines_of(inspect.out);
  CHECK(std::find(lines.begin(), lines.end(),
                  "state:           running (still being written, or the writer stopped without "
                  "finishing)") != lines.end());
  CHECK(std::find(lines.begin(), lines.end(), "samples:         300 = 0.06 s (20 in gaps)") !=
        lines.end());
  const Run csv = run_cli(dir, {"export", file.string(), "--csv", "--from", "0.01"});
  INFO(csv.err);
  REQUIRE(csv.rc == 0);
  check_raw_csv(csv.out, {"current", "flags", "voltage"}, 50, 300);
  REQUIRE(w->finish(CaptureState::complete, "").ok());
}

TEST_CASE("capture reader: a file left by a killed writer opens as it is") {
  TempDir dir;
  const fs::path file = dir / "crashed.h5";
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto w = CaptureWriter::create(file, test_layout());
    if (!w || !append_sent(*w, 0, 100) || !w->append_missing(20, GapKind::missing) ||
        !append_sent(*w, 120, 250) || !w->flush() || !append_sent(*w, 250, 260)) {
      ::_exit(1);
    }
    ::raise(SIGKILL);  // no close: the superblock still says "open for SWMR writing"
    ::_exit(2);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  auto r = CaptureReader::open(file);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  CHECK(r->state() == CaptureState::running);
  CHECK(r->samples_written() == 250);
  CHECK(r->gap_count() == 1);
  std::vector<float> cur(250);
  REQUIRE(r->read("current", 0, cur).ok());
  std::size_t bad = 0;
  for (std::uint64_t i = 0; i < 250; ++i)
    bad += same_float(cur[i], current_at(i)) ? 0 : 1;
  CHECK(bad == 0);
  const Run csv = run_cli(dir, {"export", file.string(), "--csv"});
  INFO(csv.err);
  CHECK(csv.rc == 0);
  check_raw_csv(csv.out, {"current", "flags", "voltage"}, 0, 250);
}

TEST_CASE("capture reader: missing, non-HDF5 and non-capture files are refused by name") {
  TempDir dir;
  auto missing = CaptureReader::open(dir / "none.h5");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  CHECK(missing.error().message == (dir / "none.h5").string() + ": no such file");

  std::ofstream(dir / "text.h5") << "t_s,current\n0,1\n";
  auto text = CaptureReader::open(dir / "text.h5");
  REQUIRE_FALSE(text.ok());
  CHECK(text.error().code == Errc::file_error);
  CHECK(text.error().message == (dir / "text.h5").string() + ": not an HDF5 file");

  auto directory = CaptureReader::open(dir.path());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().message.find("is a directory") != std::string::npos);

  std::string log;
  const int rc = meltrig::test::run_python(
      R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["format"] = "something-else"
with h5py.File(sys.argv[2], "w") as f:
    f["data"] = np.arange(4)
with h5py.File(sys.argv[3], "w") as f:
    f.attrs["format"] = "meltrig-capture"
    f.attrs["format_version"] = np.int64(1)
    f.create_group("capture_state")
print("ok")
)PY",
      {(dir / "other.h5").string(), (dir / "plain.h5").string(), (dir / "empty.h5").string()},
      dir.path(), &log);
  INFO(log);
  REQUIRE(rc == 0);
  auto other = CaptureReader::open(dir / "other.h5");
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().message ==
        (dir / "other.h5").string() +
            ": not a meltrig capture (format attribute is \"something-else\", expected "
            "\"meltrig-capture\")");
  auto plain = CaptureReader::open(dir / "plain.h5");
  REQUIRE_FALSE(plain.ok());
  CHECK(plain.error().message ==
        (dir / "plain.h5").string() + ": not a meltrig capture (no format attribute on /)");
  auto empty = CaptureReader::open(dir / "empty.h5");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message.find("no monitor group") != std::string::npos);
}

TEST_CASE("meltrig inspect: prints every part of a capture, line by line") {
  TempDir dir;
  const fs::path file = dir / "gappy.h5";
  write_gappy(file);
  set_summaries(dir, file, "2,4");
  const Run run = run_cli(dir, {"inspect", file.string()});
  INFO(run.out << run.err);
  REQUIRE(run.rc == 0);
  std::vector<std::string> got;
  for (const auto& line : lines_of(run.out)) {
    // The compression line belongs to the writer's settings, not to what this test wrote.
    if (line.rfind("  compression:", 0) != 0) got.push_back(line);
  }
  const std::vector<std::string> want = {
      "file:            " + file.string(),
      "format:          meltrig-capture, format_version 1",
      "meltrig version: 0.1.0",
      "host start:      2024-05-01T12:00:00.123456789Z (UTC, host wall clock)",
      "state:           complete",
      "end reason:      done",
      "monitor:         /monitor",
      "  driver:        lvpm",
      "  port:          /dev/ttyACM0",
      "  serial number: 12345",
      "  firmware:      31",
      "sample rate:     5000 Hz",
      "samples:         1000 = 0.2 s (30 in gaps)",
      "channels:        3",
      "  current      A    float32  main channel current",
      "  flags        -    uint8    marker bits",
      "  voltage      V    float32  main channel voltage",
      "loss counters:   2 of 4 non-zero",
      "  ! missing_samples   30",
      "  ! duplicate_samples 4",
      "    discarded_bytes   0",
      "    checksum_errors   0",
      "gaps:            4 row(s)",
      "  missing            1 row(s), 20 sample(s) missing",
      "  duplicate_dropped  1 row(s), 4 sample(s) dropped (no rows)",
      "  ring_overflow      1 row(s), 7 sample(s) missing",
      "  resync             1 row(s), 3 sample(s) missing",
      "  first 4 row(s): first_index count kind, t = first_index / rate",
      "    100 20 missing, t = 0.02 s",
      "    300 4 duplicate_dropped, t = 0.06 s",
      "    300 7 ring_overflow, t = 0.06 s",
      "    640 3 resync, t = 0.128 s",
      "calibration:     2 row(s)",
      "markers:         none recorded",
      "clock sync:      none: time base is sample_index / rate on the monitor clock",
      "summaries:       2 level(s), entries of {mean, min, max, valid}",
      "  level 2: 4 samples (0.8 ms) per entry; entries: 250 per channel",
      "  level 4: 16 samples (3.2 ms) per entry; entries: 63 per channel",
  };
  for (std::size_t i = 0; i < std::max(got.size(), want.size()); ++i) {
    CAPTURE(i);
    CHECK((i < got.size() ? got[i] : "<missing>") == (i < want.size() ? want[i] : "<extra>"));
  }
  CHECK(run.err.empty());
}

TEST_CASE("meltrig inspect: no losses, no gaps, no summaries, still running") {
  TempDir dir;
  const fs::path file = dir / "clean.h5";
  {
    auto w = CaptureWriter::create(file, test_layout());
    REQUIRE(w.ok());
    REQUIRE(append_sent(*w, 0, 50).ok());
    REQUIRE(w->flush().ok());
    // Destroyed unfinished: the state stays "running", as after a crash.
  }
  set_summaries(dir, file, "none");
  const Run run = run_cli(dir, {"inspect", file.string()});
  INFO(run.out << run.err);
  REQUIRE(run.rc == 0);
  const auto lines = lines_of(run.out);
  auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  CHECK(
      has("state:           running (still being written, or the writer stopped without "
          "finishing)"));
  CHECK(has("end reason:      -"));
  CHECK(has("samples:         50 = 0.01 s (0 in gaps)"));
  CHECK(has("loss counters:   none (4 counters, all zero)"));
  CHECK(has("gaps:            none"));
  CHECK(has("calibration:     0 row(s)"));
  CHECK(has("summaries:       none (file written without them): export reads raw samples"));
}

TEST_CASE("meltrig inspect and export: bad files exit 1 with a message naming the file") {
  TempDir dir;
  std::ofstream(dir / "text.h5") << "hello";
  for (const std::string cmd : {"inspect", "export"}) {
    CAPTURE(cmd);
    std::vector<std::string> extra =
        cmd == "export" ? std::vector<std::string>{"--csv"} : std::vector<std::string>{};
    auto args = std::vector<std::string>{cmd, (dir / "none.h5").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    Run missing = run_cli(dir, args);
    CHECK(missing.rc == 1);
    CHECK(missing.err ==
          "meltrig: error: not found: " + (dir / "none.h5").string() + ": no such file\n");
    CHECK(missing.out.empty());
    args[1] = (dir / "text.h5").string();
    Run text = run_cli(dir, args);
    CHECK(text.rc == 1);
    CHECK(text.err ==
          "meltrig: error: file error: " + (dir / "text.h5").string() + ": not an HDF5 file\n");
  }
  std::string log;
  REQUIRE(meltrig::test::run_python(R"PY(
import sys, h5py
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["format"] = "other-format"
)PY",
                                    {(dir / "other.h5").string()}, dir.path(), &log) == 0);
  Run other = run_cli(dir, {"inspect", (dir / "other.h5").string()});
  CHECK(other.rc == 1);
  CHECK(other.err.find("not a meltrig capture (format attribute is \"other-format\"") !=
        std::string::npos);
  Run no_file = run_cli(dir, {"inspect"});
  CHECK(no_file.rc == 2);
}

TEST_CASE("meltrig export: raw CSV of every sample, exact times and values, NaN as empty") {
  TempDir dir;
  const fs::path file = dir / "gappy.h5";
  write_gappy(file);
  const Run run = run_cli(dir, {"export", file.string(), "--csv"});
  INFO(run.err);
  REQUIRE(run.rc == 0);
  check_raw_csv(run.out, {"current", "flags", "voltage"}, 0, kSamples);
  const auto lines = lines_of(run.out);
  // Spot checks of the exact text.
  CHECK(lines[1] == "0,0.25,0,4");
  CHECK(lines[2] == "0.0002,0.251,1,4.125");
  CHECK(lines[101] == "0.02,,0,");        // sample 100: in the gap
  CHECK(lines[501] == "0.1,,249,4.375");  // sample 500: a NaN the device sent
  CHECK(lines[1000] == "0.1998,1.2490001,246,4.625");

  // -o writes the same bytes to a file.
  const fs::path out = dir / "all.csv";
  const Run to_file = run_cli(dir, {"export", file.string(), "--csv", "-o", out.string()});
  CHECK(to_file.rc == 0);
  CHECK(to_file.out.empty());
  CHECK(meltrig::test::read_file(out) == run.out);
}

TEST_CASE("meltrig export: --from inclusive, --to exclusive, clamped, --channels in given order") {
  TempDir dir;
  const fs::path file = dir / "gappy.h5";
  write_gappy(file);
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> channels;
    std::uint64_t first, end;
  };
  const std::vector<Case> cases = {
      // 0.0102 s * 5000 Hz = 51 (not exact in binary): still row 51.
      {{"--from", "0.0102", "--to", "0.02"}, {"current", "flags", "voltage"}, 51, 100},
      // A printed t_s given back selects exactly that row.
      {{"--from", "0.0674", "--to", "0.0676"}, {"current", "flags", "voltage"}, 337, 338},
      // Between samples: the next sample on.
      {{"--from", "0.00001", "--to", "0.00041"}, {"current", "flags", "voltage"}, 1, 3},
      {{"--channels", "voltage,current", "--from", "0.19"}, {"voltage", "current"}, 950, 1000},
      {{"--channels", "flags", "--to", "0.001"}, {"flags"}, 0, 5},
      // Clamped to the data.
      {{"--from", "-3", "--to", "99"}, {"current", "flags", "voltage"}, 0, 1000},
      {{"--from", "0.2"}, {"current", "flags", "voltage"}, 1000, 1000},
      {{"--from", "7", "--to", "8"}, {"current", "flags", "voltage"}, 1000, 1000},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"export", file.string(), "--csv"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const Run run = run_cli(dir, args);
    CAPTURE(c.first);
    INFO(run.err);
    REQUIRE(run.rc == 0);
    check_raw_csv(run.out, c.channels, c.first, c.end);
  }
}

TEST_CASE("meltrig export: --level rows match summaries computed from the truth") {
  TempDir dir;
  const fs::path file = dir / "summaries.h5";
  write_gappy(file);
  set_summaries(dir, file, "2,4");
  {
    const Run run = run_cli(dir, {"export", file.string(), "--csv", "--level", "4"});
    INFO(run.err);
    REQUIRE(run.rc == 0);
    check_summary_csv(run.out, 4, 0, 63);
    const auto lines = lines_of(run.out);
    CHECK(lines[63] == "0.1984,0.2,1.2455001,1.2420001,1.2490001,8,4.40625,4,4.75,8");
  }
  {
    // Entry 25 (samples 100..103) is all gap: empty statistics, valid 0.
    const Run run = run_cli(dir, {"export", file.string(), "--csv", "--level", "2"});
    REQUIRE(run.rc == 0);
    check_summary_csv(run.out, 2, 0, 250);
    CHECK(lines_of(run.out)[26] == "0.02,0.0208,,,,0,,,,0");
  }
  {
    // Samples [50, 100) touch entries 3..6 of 16 samples: whole entries, not cut.
    const Run run = run_cli(
        dir, {"export", file.string(), "--csv", "--level", "4", "--from", "0.01", "--to", "0.02"});
    REQUIRE(run.rc == 0);
    check_summary_csv(run.out, 4, 3, 7);
  }
  {
    const Run run = run_cli(dir, {"export", file.string(), "--csv", "--level", "4", "--channels",
                                  "voltage", "--from", "0.19"});
    REQUIRE(run.rc == 0);
    const auto lines = lines_of(run.out);
    REQUIRE(lines.size() == 1 + 4);  // samples 950..999: entries 59..62
    CHECK(lines[0] == "t_start_s,t_end_s,voltage_mean,voltage_min,voltage_max,voltage_valid");
    CHECK(lines[4] == "0.1984,0.2,4.40625,4,4.75,8");
  }
}

TEST_CASE("meltrig export: the tail a live capture has not summarised is computed from samples") {
  TempDir dir;
  const fs::path file = dir / "running.h5";
  write_gappy(file);
  // State "running": the stored partial entry 62 is not trusted; export computes it instead.
  set_summaries(dir, file, "4", "running");
  const Run run = run_cli(dir, {"export", file.string(), "--csv", "--level", "4"});
  INFO(run.err);
  REQUIRE(run.rc == 0);
  check_summary_csv(run.out, 4, 0, 63);
}

TEST_CASE("meltrig export: usage errors exit 2 and name what is wrong") {
  TempDir dir;
  const fs::path file = dir / "gappy.h5";
  write_gappy(file);
  const fs::path old = dir / "old.h5";
  write_gappy(old);
  set_summaries(dir, file, "2,4");
  set_summaries(dir, old, "none");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::string f = file.string();
  const std::vector<Case> cases = {
      {{"export", f, "--csv", "--channels", "current,power"},
       "--channels: " + f + " has no channel 'power' (channels: current, flags, voltage)"},
      {{"export", f, "--csv", "--channels", "current,current"},
       "--channels: 'current' is given twice"},
      {{"export", f, "--csv", "--level", "3"},
       "--level 3: not in " + f + " (levels present: 2, 4)"},
      {{"export", f, "--csv", "--level", "2", "--channels", "flags"},
       "--channels: 'flags' is uint8; summaries cover float32 channels only"},
      {{"export", old.string(), "--csv", "--level", "8"},
       "--level: " + old.string() +
           " has no summaries (written before they existed); export raw samples instead"},
      {{"export", f, "--csv", "--from", "0.1", "--to", "0.05"},
       "--to (0.050000 s) must be greater than --from (0.100000 s): the range is empty"},
      {{"export", f, "--csv", "--to", "0"},
       "--to (0.000000 s) must be greater than --from (0.000000 s): the range is empty"},
      {{"export", f, "--csv", "--from", "nan"},
       "--from and --to must be finite numbers of seconds"},
      {{"export", f}, ""},  // --csv is required
      {{"export", f, "--csv", "--level", "x"}, ""},
  };
  for (const auto& c : cases) {
    const Run run = run_cli(dir, c.args);
    CAPTURE(c.message);
    INFO(run.err);
    CHECK(run.rc == 2);
    CHECK(run.out.empty());
    if (!c.message.empty()) CHECK(run.err == "meltrig: usage error: " + c.message + "\n");
  }
}
