// CaptureWriter summaries (/<monitor>/summary/<channel>/<k>) and compression choices: summaries
// are checked against NumPy over the raw rows (read back with h5py) and against an independent
// scalar computation in C++; LZ4 files are read back by h5py; a missing LZ4 plugin is tried in a
// fresh process whose HDF5 plugin path is an empty directory.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/h5_file.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
namespace h5 = meltrig::dataset::h5;
using meltrig::Errc;
using meltrig::dataset::CaptureLayout;
using meltrig::dataset::CaptureState;
using meltrig::dataset::CaptureWriter;
using meltrig::dataset::ChannelData;
using meltrig::dataset::Compression;
using meltrig::dataset::GapKind;
using meltrig::dataset::SampleBlock;
using meltrig::dataset::SampleType;
using meltrig::test::TempDir;

constexpr std::array<int, 5> kLevels = {8, 12, 16, 20, 24};
const float kNaN = std::numeric_limits<float>::quiet_NaN();

/// A noisy, quantised current waveform: bursts over a sleep floor, 1 uA steps, NaN where the
/// source says a sample could not be converted. Deterministic in i.
float current_at(std::uint64_t i) {
  std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ULL;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 32;
  const double noise = static_cast<double>(h % 2001) - 1000.0;  // +-1 mA in 1 uA steps
  const double level = (i / 5000) % 7 == 3 ? 0.180 : 0.012;     // bursts of 5000 samples
  if (h % 9973 == 0) return kNaN;                               // a rare lone missing sample
  return static_cast<float>(std::round((level + noise * 1e-6) * 1e6) * 1e-6);
}
float voltage_at(std::uint64_t i) {
  return 4.2f - 0.001f * static_cast<float>(i % 17);
}

CaptureLayout layout_with(Compression compression, std::uint64_t chunk) {
  CaptureLayout layout;
  layout.monitor = "monitor";
  layout.sample_rate_hz = 5000.0;
  layout.channels = {
      {"current", "A", SampleType::f32, "main channel current"},
      {"voltage", "V", SampleType::f32, "main channel voltage"},
      {"flags", "", SampleType::u8, "marker bits"},
  };
  layout.chunk_samples = chunk;
  layout.compression = compression;
  return layout;
}

/// Appends [first, first + n) of the truth as one block of the three channels.
meltrig::Result<void> append_truth(CaptureWriter& w, std::uint64_t first, std::size_t n) {
  static thread_local std::vector<float> cur, volt;
  static thread_local std::vector<std::uint8_t> flags;
  cur.resize(n);
  volt.resize(n);
  flags.resize(n);
  for (std::size_t k = 0; k < n; ++k) {
    cur[k] = current_at(first + k);
    volt[k] = voltage_at(first + k);
    flags[k] = static_cast<std::uint8_t>((first + k) % 3);
  }
  const std::array<ChannelData, 3> ch{std::span<const float>(cur), std::span<const float>(volt),
                                      std::span<const std::uint8_t>(flags)};
  return w.append(SampleBlock{ch});
}

std::string describe(const meltrig::Result<void>& r) {
  return r.ok() ? std::string("ok") : r.error().describe();
}

/// Runs a Python script with Debian's h5py; fails the test with its output unless it exits 0.
void check_python(const fs::path& dir, const std::string& script,
                  const std::vector<std::string>& args) {
  std::string output;
  // The child process would write out whatever this one still has buffered.
  std::fflush(nullptr);
  const int rc = meltrig::test::run_python(script, args, dir, &output);
  INFO("python output:\n" << output);
  CHECK(rc == 0);
}

// NumPy's view of every summary level, from the raw rows. `complete_only`: a file closed without
// finish() holds only the complete entries.
const std::string kPySummaries = R"PY(
import sys
import numpy as np
import h5py

path, complete_only = sys.argv[1], sys.argv[2] == "1"
with h5py.File(path, "r", swmr=True) as f:
    m = f["monitor"]
    n = int(f["capture_state/samples_written"][()])
    s = m["summary"]
    assert list(s.attrs["levels"]) == [8, 12, 16, 20, 24], s.attrs["levels"]
    assert s.attrs["levels"].dtype == np.int64
    assert s.attrs["fields"] == "mean,min,max,valid"
    assert sorted(s.keys()) == ["current", "voltage"], list(s.keys())  # no uint8 summaries
    for name in ["current", "voltage"]:
        raw = m[name][:n].astype(np.float64)
        assert sorted(s[name].keys(), key=int) == ["8", "12", "16", "20", "24"], list(s[name].keys())
        for k in [8, 12, 16, 20, 24]:
            d = s[name][str(k)]
            assert d.dtype.names == ("mean", "min", "max", "valid"), d.dtype
            assert [d.dtype[f] for f in d.dtype.names] == [np.float32] * 3 + [np.uint32]
            assert d.dtype.itemsize == 16 and d.maxshape == (None,) and d.chunks == (1024,)
            assert d.compression == m[name].compression and d.shuffle == m[name].shuffle
            fv = d.fillvalue
            assert np.isnan(fv["mean"]) and np.isnan(fv["max"]) and fv["valid"] == 0, fv
            e = d[:]
            step = 1 << k
            want_len = n // step if complete_only else -(-n // step)
            assert len(e) == want_len, (name, k, len(e), want_len, n)
            pad = np.full(len(e) * step, np.nan)
            pad[:min(n, len(pad))] = raw[:len(pad)]
            blocks = pad.reshape(len(e), step)
            ok = ~np.isnan(blocks)
            valid = ok.sum(axis=1)
            assert np.array_equal(e["valid"], valid), (name, k, e["valid"], valid)
            empty = valid == 0
            for field in ["mean", "min", "max"]:
                assert np.all(np.isnan(e[field][empty])), (name, k, field)
            with np.errstate(all="ignore"):
                lo = np.where(ok, blocks, np.inf).min(axis=1)
                hi = np.where(ok, blocks, -np.inf).max(axis=1)
                mean = np.where(ok, blocks, 0.0).sum(axis=1) / valid
            full = ~empty
            assert np.array_equal(e["min"][full], lo[full].astype(np.float32)), (name, k)
            assert np.array_equal(e["max"][full], hi[full].astype(np.float32)), (name, k)
            want = mean[full].astype(np.float32)
            got = e["mean"][full]
            # The writer sums in double: only the final rounding to float32 may differ.
            ulp = np.spacing(np.abs(want))
            assert np.all(np.abs(got - want) <= ulp), (name, k, np.max(np.abs(got - want) / ulp))
        print(name, "levels ok:", [len(s[name][str(k)]) for k in [8, 12, 16, 20, 24]], "n =", n)
print("ok")
)PY";

}  // namespace

TEST_CASE(
    "writer summaries: every level equals NumPy over the raw rows, gaps and partial entries") {
  TempDir dir;
  const fs::path file = dir / "summaries.h5";
  std::uint64_t n = 0;
  {
    auto w = CaptureWriter::create(file, layout_with(Compression::deflate(1), 1000));
    REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
    auto append_to = [&](std::uint64_t end, std::size_t block) {
      while (w->samples_written() < end) {
        const auto take =
            static_cast<std::size_t>(std::min<std::uint64_t>(block, end - w->samples_written()));
        REQUIRE(append_truth(*w, w->samples_written(), take).ok());
      }
    };
    append_to(100, 7);                                       // inside the first entry
    REQUIRE(w->append_missing(3, GapKind::missing).ok());    // a gap inside an entry
    append_to(1000, 31);                                     // ends mid-entry
    REQUIRE(w->append_missing(700, GapKind::missing).ok());  // crosses entries, whole ones empty
    append_to(70'000, 4093);                                 // odd blocks, many entries
    REQUIRE(w->flush().ok());                                // a flush mid-entry changes nothing
    append_to(70'001, 1);
    REQUIRE(w->append_missing(5000, GapKind::ring_overflow).ok());
    // Longer than a chunk of finest entries (1024 * 256 samples): those chunks are never stored.
    REQUIRE(w->append_missing(600'000, GapKind::missing_wrapped).ok());
    append_to(900'000, 4096);
    REQUIRE(w->flush().ok());
    append_to(1'234'567, 1 << 16);  // not a multiple of any level: a partial last entry each
    n = w->samples_written();
    const auto r = w->finish(CaptureState::complete, "done");
    REQUIRE_MESSAGE(r.ok(), describe(r));
  }
  CHECK(n == 1'234'567);
  check_python(dir.path(), kPySummaries, {file.string(), "0"});
}

TEST_CASE("writer summaries: closed without finish() the file holds the complete entries only") {
  TempDir dir;
  const fs::path file = dir / "unfinished.h5";
  {
    auto w = CaptureWriter::create(file, layout_with(Compression::deflate(1), 4096));
    REQUIRE(w.ok());
    while (w->samples_written() < 300'000) {
      REQUIRE(append_truth(*w, w->samples_written(), 4096).ok());
    }
    REQUIRE(w->append_missing(77, GapKind::missing).ok());
    REQUIRE(append_truth(*w, w->samples_written(), 1000).ok());
    // Destroyed here: flushed, state stays "running", no partial entries.
  }
  check_python(dir.path(), kPySummaries, {file.string(), "1"});
}

TEST_CASE("writer summaries: a capture shorter than one entry, and one with no float channel") {
  TempDir dir;
  SUBCASE("shorter than the finest entry: one partial entry per level") {
    const fs::path file = dir / "short.h5";
    {
      auto w = CaptureWriter::create(file, layout_with(Compression::none(), 64));
      REQUIRE(w.ok());
      REQUIRE(append_truth(*w, 0, 100).ok());
      REQUIRE(w->finish(CaptureState::complete, "").ok());
    }
    check_python(dir.path(), kPySummaries, {file.string(), "0"});
  }
  SUBCASE("empty capture: no entries at all") {
    const fs::path file = dir / "empty.h5";
    {
      auto w = CaptureWriter::create(file, layout_with(Compression::none(), 64));
      REQUIRE(w.ok());
      REQUIRE(w->finish(CaptureState::complete, "").ok());
    }
    check_python(dir.path(), kPySummaries, {file.string(), "0"});
  }
  SUBCASE("uint8 only: the group and its attributes, no channel groups") {
    const fs::path file = dir / "bits.h5";
    CaptureLayout layout;
    layout.sample_rate_hz = 1000.0;
    layout.channels = {{"bits", "", SampleType::u8, "relay states"}};
    {
      auto w = CaptureWriter::create(file, layout);
      REQUIRE(w.ok());
      const std::vector<std::uint8_t> bits(5000, 1);
      const std::array<ChannelData, 1> ch{std::span<const std::uint8_t>(bits)};
      REQUIRE(w->append(SampleBlock{ch}).ok());
      REQUIRE(w->finish(CaptureState::complete, "").ok());
    }
    check_python(dir.path(), R"PY(
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    s = f["monitor/summary"]
    assert list(s.attrs["levels"]) == [8, 12, 16, 20, 24] and len(s.keys()) == 0, list(s.keys())
print("ok")
)PY",
                 {file.string()});
  }
  SUBCASE("summaries turned off: no summary group") {
    const fs::path file = dir / "off.h5";
    CaptureLayout layout = layout_with(Compression::none(), 64);
    layout.summaries = false;
    {
      auto w = CaptureWriter::create(file, layout);
      REQUIRE(w.ok());
      REQUIRE(append_truth(*w, 0, 1000).ok());
      REQUIRE(w->finish(CaptureState::complete, "").ok());
    }
    h5::File f{H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
    REQUIRE(f.valid());
    CHECK(H5Lexists(f.get(), "/monitor/summary", H5P_DEFAULT) == 0);
    CHECK(H5Lexists(f.get(), "/monitor/current", H5P_DEFAULT) > 0);
  }
}

namespace {

/// Summary statistics computed the plain way (scalar loops, double), for comparison.
struct RefEntry {
  double sum = 0.0;
  std::uint64_t valid = 0;
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  void add(float v) {
    if (std::isnan(v)) return;
    sum += v;
    ++valid;
    min = std::min(min, v);
    max = std::max(max, v);
  }
  void add(const RefEntry& e) {
    sum += e.sum;
    valid += e.valid;
    min = std::min(min, e.min);
    max = std::max(max, e.max);
  }
};

struct StoredEntry {
  float mean;
  float min;
  float max;
  std::uint32_t valid;
};

/// Reads entries [first, first + count) of a summary dataset with one hyperslab read.
std::vector<StoredEntry> read_entries(hid_t file, const std::string& name, std::uint64_t first,
                                      std::uint64_t count, std::uint64_t* length = nullptr) {
  h5::Datatype t{H5Tcreate(H5T_COMPOUND, sizeof(StoredEntry))};
  H5Tinsert(t.get(), "mean", offsetof(StoredEntry, mean), H5T_NATIVE_FLOAT);
  H5Tinsert(t.get(), "min", offsetof(StoredEntry, min), H5T_NATIVE_FLOAT);
  H5Tinsert(t.get(), "max", offsetof(StoredEntry, max), H5T_NATIVE_FLOAT);
  H5Tinsert(t.get(), "valid", offsetof(StoredEntry, valid), H5T_NATIVE_UINT32);
  h5::Dataset d{H5Dopen2(file, name.c_str(), H5P_DEFAULT)};
  REQUIRE_MESSAGE(d.valid(), name);
  h5::Dataspace space{H5Dget_space(d.get())};
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  if (length != nullptr) *length = n;
  std::vector<StoredEntry> rows(count);
  if (count == 0) return rows;
  REQUIRE(first + count <= n);
  const hsize_t start = first;
  const hsize_t cnt = count;
  REQUIRE(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, &start, nullptr, &cnt, nullptr) >= 0);
  h5::Dataspace mem{H5Screate_simple(1, &cnt, nullptr)};
  REQUIRE(H5Dread(d.get(), t.get(), mem.get(), space.get(), H5P_DEFAULT, rows.data()) >= 0);
  return rows;
}

void check_entry(const StoredEntry& got, const RefEntry& want) {
  CHECK(got.valid == want.valid);
  if (want.valid == 0) {
    CHECK(std::isnan(got.mean));
    CHECK(std::isnan(got.min));
    CHECK(std::isnan(got.max));
    return;
  }
  CHECK(got.min == want.min);
  CHECK(got.max == want.max);
  const auto mean = static_cast<float>(want.sum / static_cast<double>(want.valid));
  CHECK(std::abs(got.mean - mean) <= std::abs(mean) * 2e-7f);
}

}  // namespace

TEST_CASE("writer summaries: 20 million samples, levels 20 and 24 match, bounded reads cover all") {
  TempDir dir;
  const fs::path file = dir / "long.h5";
  constexpr std::uint64_t kN = 20'000'000;
  constexpr std::uint64_t kGapFirst = 9'000'000, kGapCount = 2'500'000;  // spans whole entries
  constexpr std::size_t kBlock = std::size_t{1} << 20;
  // The reference at the finest level (78125 entries), from the samples one by one; coarser
  // references are sums of it.
  std::vector<RefEntry> ref8((kN + 255) / 256);
  {
    CaptureLayout layout;
    layout.sample_rate_hz = 2e6;
    layout.channels = {{"current", "A", SampleType::f32, "synthetic"}};
    layout.chunk_samples = std::uint64_t{1} << 20;
    layout.compression = Compression::none();  // this test is about the summary arithmetic
    auto w = CaptureWriter::create(file, layout);
    REQUIRE(w.ok());
    std::vector<float> block(kBlock);
    while (w->samples_written() < kN) {
      const std::uint64_t at = w->samples_written();
      if (at == kGapFirst) {
        REQUIRE(w->append_missing(kGapCount, GapKind::missing).ok());
        continue;
      }
      const std::uint64_t end = std::min({at + kBlock, kN, at < kGapFirst ? kGapFirst : kN});
      const auto n = static_cast<std::size_t>(end - at);
      for (std::size_t k = 0; k < n; ++k) {
        const std::uint64_t i = at + k;
        // A sawtooth with a slow drift, and a NaN every 1000003 samples.
        const float v = i % 1'000'003 == 5 ? kNaN
                                           : static_cast<float>(i % 4099) * 0.25f -
                                                 static_cast<float>(i >> 20) * 3.0f;
        block[k] = v;
        ref8[i >> 8].add(v);
      }
      const std::array<ChannelData, 1> ch{std::span<const float>(block.data(), n)};
      REQUIRE(w->append(SampleBlock{ch}).ok());
      if ((end >> 22) != (at >> 22)) REQUIRE(w->flush().ok());
    }
    const auto r = w->finish(CaptureState::complete, "");
    REQUIRE_MESSAGE(r.ok(), describe(r));
  }
  h5::silence_errors();
  h5::File f{H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  REQUIRE(f.valid());
  auto combine = [&](int k) {
    std::vector<RefEntry> out(((kN - 1) >> k) + 1);
    for (std::size_t j = 0; j < ref8.size(); ++j)
      out[j >> (k - 8)].add(ref8[j]);
    return out;
  };

  {  // levels 20 and 24 equal the samples they cover
    const auto ref20 = combine(20);
    const auto ref24 = combine(24);
    std::uint64_t len20 = 0, len24 = 0;
    const auto e20 = read_entries(f.get(), "/monitor/summary/current/20", 0, 20, &len20);
    const auto e24 = read_entries(f.get(), "/monitor/summary/current/24", 0, 2, &len24);
    CHECK(len20 == 20);  // 19 complete entries and the partial one
    CHECK(len24 == 2);
    for (std::size_t j = 0; j < e20.size(); ++j) {
      CAPTURE(j);
      check_entry(e20[j], ref20[j]);
    }
    for (std::size_t j = 0; j < e24.size(); ++j) {
      CAPTURE(j);
      check_entry(e24[j], ref24[j]);
    }
    CHECK(e20[9].valid == 0);  // [9437184, 10485760) lies inside the gap
    CHECK(e24[1].valid == ref24[1].valid);
  }

  {  // any range needs a bounded number of entries, which cover it exactly
    constexpr std::uint64_t kMaxEntries = 1000;
    struct Range {
      std::uint64_t a, b;
    };
    for (const Range range : {Range{0, kN}, Range{5'000'000, 5'300'000}, Range{123, 4567},
                              Range{8'999'000, 11'600'000}, Range{19'999'990, kN}}) {
      CAPTURE(range.a);
      CAPTURE(range.b);
      // The finest level whose entries over [a, b) fit the bound.
      int k = kLevels.back();
      for (const int level : kLevels) {
        if (((range.b + (1ULL << level) - 1) >> level) - (range.a >> level) <= kMaxEntries) {
          k = level;
          break;
        }
      }
      const std::uint64_t first = range.a >> k;
      const std::uint64_t last = (range.b + (1ULL << k) - 1) >> k;  // exclusive
      CHECK(last - first <= kMaxEntries);
      const auto rows = read_entries(f.get(), "/monitor/summary/current/" + std::to_string(k),
                                     first, last - first);
      RefEntry got, want;
      std::uint64_t got_valid = 0;
      for (const auto& e : rows) {
        got_valid += e.valid;
        if (e.valid == 0) continue;
        got.add(RefEntry{static_cast<double>(e.mean) * e.valid, e.valid, e.min, e.max});
      }
      // What those entries cover: [first * 2^k, min(last * 2^k, n)), from the finest reference.
      const std::uint64_t end = std::min(last << k, kN);
      for (std::uint64_t j = (first << k) >> 8; j < (end + 255) >> 8; ++j)
        want.add(ref8[j]);
      CHECK(got_valid == want.valid);
      CHECK(got.min == want.min);
      CHECK(got.max == want.max);
      if (want.valid > 0) {
        const double mean = want.sum / static_cast<double>(want.valid);
        CHECK(std::abs(got.sum / static_cast<double>(got.valid) - mean) <=
              1e-6 * std::max(std::abs(mean), 1.0));
      }
    }
  }
}

TEST_CASE("writer compression: lz4 files read back by h5py equal the data") {
  TempDir dir;
  const fs::path file = dir / "lz4.h5";
  constexpr std::uint64_t kN = 100'003;
  {
    auto w = CaptureWriter::create(file, layout_with(Compression::lz4(), 4096));
    REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
    auto append_to = [&](std::uint64_t end) {
      while (w->samples_written() < end) {
        const auto take =
            static_cast<std::size_t>(std::min<std::uint64_t>(4096, end - w->samples_written()));
        REQUIRE(append_truth(*w, w->samples_written(), take).ok());
      }
    };
    append_to(50'000);
    REQUIRE(w->append_missing(10'000, GapKind::missing).ok());
    append_to(kN);
    REQUIRE(w->finish(CaptureState::complete, "").ok());
  }
  // The truth, for Python to compare with.
  std::vector<float> cur(kN), volt(kN);
  for (std::uint64_t i = 0; i < kN; ++i) {
    const bool gap = i >= 50'000 && i < 60'000;
    cur[i] = gap ? kNaN : current_at(i);
    volt[i] = gap ? kNaN : voltage_at(i);
  }
  std::ofstream(dir / "cur.f32", std::ios::binary)
      .write(reinterpret_cast<const char*>(cur.data()),
             static_cast<std::streamsize>(cur.size() * sizeof(float)));
  std::ofstream(dir / "volt.f32", std::ios::binary)
      .write(reinterpret_cast<const char*>(volt.data()),
             static_cast<std::streamsize>(volt.size() * sizeof(float)));

  // The C API sees shuffle then filter 32004 on channels, tables and summaries alike.
  h5::File f{H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  REQUIRE(f.valid());
  for (const char* name :
       {"/monitor/current", "/monitor/flags", "/monitor/gaps", "/monitor/summary/voltage/16"}) {
    CAPTURE(name);
    h5::Dataset d{H5Dopen2(f.get(), name, H5P_DEFAULT)};
    REQUIRE(d.valid());
    h5::Plist dcpl{H5Dget_create_plist(d.get())};
    REQUIRE(H5Pget_nfilters(dcpl.get()) == 2);
    unsigned flags = 0;
    std::size_t nelmts = 0;
    CHECK(H5Pget_filter2(dcpl.get(), 0, &flags, &nelmts, nullptr, 0, nullptr, nullptr) ==
          H5Z_FILTER_SHUFFLE);
    nelmts = 0;
    CHECK(H5Pget_filter2(dcpl.get(), 1, &flags, &nelmts, nullptr, 0, nullptr, nullptr) ==
          h5::kLz4FilterId);
  }
  f.close();
  check_python(dir.path(), R"PY(
import sys
import numpy as np
import h5py
path, d = sys.argv[1], sys.argv[2]
with h5py.File(path, "r") as f:
    m = f["monitor"]
    assert m.attrs["compression"] == "shuffle+lz4", m.attrs["compression"]
    plist = m["current"].id.get_create_plist()
    assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [2, 32004]
    cur = np.fromfile(d + "/cur.f32", dtype=np.float32)
    volt = np.fromfile(d + "/volt.f32", dtype=np.float32)
    assert m["current"].shape == cur.shape
    assert np.array_equal(m["current"][:], cur, equal_nan=True)
    assert np.array_equal(m["voltage"][:], volt, equal_nan=True)
    assert np.array_equal(m["flags"][:50000], (np.arange(50000) % 3).astype(np.uint8))
    e = m["summary/current/8"][:]
    assert len(e) == -(-len(cur) // 256)
    assert np.array_equal(e["valid"][:195], (~np.isnan(cur[:195 * 256])).reshape(195, 256).sum(axis=1))
    assert f["capture_state/samples_written"][()] == len(cur)
print("ok")
)PY",
               {file.string(), dir.path().string()});
}

// The child half of the next test: does nothing unless spawned by it, in a fresh process whose
// HDF5 has never seen the LZ4 plugin (a forked child would inherit the parent's loaded plugin).
TEST_CASE("writer_lz4_missing_plugin_child") {
  const char* report = std::getenv("MELTRIG_TEST_LZ4_CHILD_REPORT");
  if (report == nullptr) return;
  const fs::path file = fs::path(report).parent_path() / "lz4.h5";
  auto w = CaptureWriter::create(file, layout_with(Compression::lz4(), 1024));
  std::ofstream out(report);
  if (w.ok()) {
    out << "created";
  } else {
    out << (w.error().code == Errc::file_error ? "file_error|" : "other|") << w.error().message;
  }
  out << (fs::exists(file) ? "|file left behind" : "|no file");
}

TEST_CASE("writer compression: lz4 without its plugin fails create with a clear file_error") {
  TempDir dir;
  const fs::path empty = dir / "no-plugins";
  fs::create_directory(empty);
  const fs::path report = dir / "report.txt";
  std::fflush(nullptr);  // or the child's freopen would write out this process's buffered output
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // HDF5 reads HDF5_PLUGIN_PATH once, when it starts: only a fresh process sees the change.
    ::setenv("HDF5_PLUGIN_PATH", empty.c_str(), 1);
    ::setenv("MELTRIG_TEST_LZ4_CHILD_REPORT", report.c_str(), 1);
    FILE* o = std::freopen((dir / "child.log").c_str(), "w", stdout);
    (void)o;
    ::execl("/proc/self/exe", "meltrig_tests", "-tc=writer_lz4_missing_plugin_child", nullptr);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  INFO("child log:\n" << meltrig::test::read_file(dir / "child.log"));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const std::string msg = meltrig::test::read_file(report);
  INFO(msg);
  CHECK(msg.rfind("file_error|" + (dir / "lz4.h5").string() + ": ", 0) == 0);
  CHECK(msg.find("lz4 (id 32004) is not available") != std::string::npos);
  CHECK(msg.find("install the Debian package hdf5-filter-plugin") != std::string::npos);
  CHECK(msg.find(empty.string()) != std::string::npos);  // where HDF5 looked
  CHECK(msg.find("|no file") != std::string::npos);      // never an uncompressed file instead

  // In this process the plugin is found (it is installed).
  auto w = CaptureWriter::create(dir / "here.h5", layout_with(Compression::lz4(), 1024));
  REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
  CHECK(w->finish(CaptureState::complete, "").ok());
}
