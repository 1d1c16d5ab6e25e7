// CaptureWriter and the HDF5 helpers: every test reads the file back (C API and h5py) and checks
// exact sample values, NaN fills, gap/calibration rows, counters, attributes and capture state.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/h5_file.hpp"

namespace {

namespace fs = std::filesystem;
namespace h5 = meltrig::dataset::h5;
using meltrig::Errc;
using meltrig::dataset::CalibrationRow;
using meltrig::dataset::CaptureLayout;
using meltrig::dataset::CaptureState;
using meltrig::dataset::CaptureWriter;
using meltrig::dataset::ChannelData;
using meltrig::dataset::Compression;
using meltrig::dataset::Gap;
using meltrig::dataset::GapKind;
using meltrig::dataset::SampleBlock;
using meltrig::dataset::SampleType;

const char* const kPython = "/usr/bin/python3";

/// A fresh directory, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("meltrig_capture_writer_" + std::to_string(::getpid()) +
                                        "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// Known truth for sample i.
float current_at(std::uint64_t i) {
  return static_cast<float>(i) * 0.5f;
}
float voltage_at(std::uint64_t i) {
  return static_cast<float>(i % 4096) / 8.0f;
}
std::uint8_t flags_at(std::uint64_t i) {
  return static_cast<std::uint8_t>(i % 251);
}

const std::vector<std::string> kCounterNames = {
    "missing_samples",       "duplicate_samples", "discarded_bytes",   "checksum_errors",
    "ring_overflow_samples", "sequence_gaps",     "inferred_wrap_gaps"};

CaptureLayout test_layout(std::uint64_t chunk) {
  CaptureLayout layout;
  layout.root_attributes = {
      {"meltrig_version", std::string("0.1.0")},
      {"host_wall_clock_start_utc", std::string("2024-05-01T12:00:00.123456789Z")},
      {"host_wall_clock_start_unix_ns", std::int64_t{1714564800123456789}},
      {"host_steady_clock_start_ns", std::int64_t{987654321012}},
  };
  layout.monitor = "monitor";
  layout.monitor_attributes = {
      {"driver", std::string("lvpm")},
      {"port", std::string("/dev/ttyACM0")},
      {"serial_number", std::int64_t{12345}},
      {"firmware_version", std::string("31")},
      {"hardware_revision", std::int64_t{13}},
      {"nominal_rate_hz", 5000.0},
      {"output_voltage_v", 4.2},
  };
  layout.status_at_start = {
      {"voltage_adc", std::int64_t{-17}},
      {"temperature_c", 31.5},
      {"mode", std::string("Ünïcode ok")},
  };
  layout.sample_rate_hz = 5000.0;
  layout.channels = {
      {"current", "A", SampleType::f32, "main channel current"},
      {"voltage", "V", SampleType::f32, "main channel voltage"},
      {"flags", "", SampleType::u8, "marker bits"},
  };
  layout.chunk_samples = chunk;
  layout.compression = Compression::deflate(4);
  layout.counter_names = kCounterNames;
  return layout;
}

/// The error code of a failed call, or nullopt if it succeeded.
std::optional<Errc> errc_of(const meltrig::Result<void>& r) {
  if (r.ok()) return std::nullopt;
  return r.error().code;
}

/// Appends samples [first, first + n) of the known truth as one block.
meltrig::Result<void> append_truth(CaptureWriter& w, std::uint64_t first, std::size_t n) {
  static thread_local std::vector<float> cur, volt;
  static thread_local std::vector<std::uint8_t> flags;
  cur.resize(n);
  volt.resize(n);
  flags.resize(n);
  for (std::size_t k = 0; k < n; ++k) {
    cur[k] = current_at(first + k);
    volt[k] = voltage_at(first + k);
    flags[k] = flags_at(first + k);
  }
  const std::array<ChannelData, 3> channels{std::span<const float>(cur),
                                            std::span<const float>(volt),
                                            std::span<const std::uint8_t>(flags)};
  return w.append(SampleBlock{channels});
}

/// Appends truth samples from w.samples_written() in blocks of `block` until `end`.
bool append_truth_blocks(CaptureWriter& w, std::uint64_t end, std::size_t block) {
  while (w.samples_written() < end) {
    const auto n =
        static_cast<std::size_t>(std::min<std::uint64_t>(block, end - w.samples_written()));
    if (!append_truth(w, w.samples_written(), n)) return false;
  }
  return true;
}

// ---- C API readers (independent of the writer's code paths) ----

h5::File open_read(const fs::path& p, bool swmr = false) {
  h5::silence_errors();
  return h5::File{
      H5Fopen(p.c_str(), H5F_ACC_RDONLY | (swmr ? H5F_ACC_SWMR_READ : 0u), H5P_DEFAULT)};
}

template <typename T>
std::vector<T> read_1d(hid_t file, const char* name, bool refresh = false) {
  h5::Dataset d{H5Dopen2(file, name, H5P_DEFAULT)};
  REQUIRE_MESSAGE(d.valid(), name);
  if (refresh) REQUIRE(H5Drefresh(d.get()) >= 0);
  h5::Dataspace s{H5Dget_space(d.get())};
  hsize_t n = 0;
  REQUIRE(H5Sget_simple_extent_ndims(s.get()) == 1);
  H5Sget_simple_extent_dims(s.get(), &n, nullptr);
  std::vector<T> v(n);
  if (n > 0) {
    const bool read_ok =
        H5Dread(d.get(), h5::native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0;
    REQUIRE_MESSAGE(read_ok, name << ": " << h5::innermost_error());
  }
  return v;
}

template <typename T>
T read_scalar(hid_t file, const char* name, bool refresh = false) {
  h5::Dataset d{H5Dopen2(file, name, H5P_DEFAULT)};
  REQUIRE_MESSAGE(d.valid(), name);
  if (refresh) REQUIRE(H5Drefresh(d.get()) >= 0);
  T value{};
  REQUIRE(H5Dread(d.get(), h5::native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) >= 0);
  return value;
}

std::string read_end_reason(hid_t file) {
  h5::Dataset d{H5Dopen2(file, "/capture_state/end_reason", H5P_DEFAULT)};
  REQUIRE(d.valid());
  h5::Datatype t{H5Dget_type(d.get())};
  REQUIRE(H5Tget_class(t.get()) == H5T_STRING);
  REQUIRE(H5Tget_size(t.get()) == 256);
  REQUIRE(H5Tis_variable_str(t.get()) == 0);
  std::string buf(256, '\0');
  REQUIRE(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) >= 0);
  return buf.substr(0, buf.find('\0'));
}

std::string read_string_attr(hid_t file, const char* obj, const char* name) {
  h5::Attribute a{H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT)};
  REQUIRE_MESSAGE(a.valid(), obj << " @" << name);
  h5::Datatype t{H5Tcopy(H5T_C_S1)};
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  char* ptr = nullptr;
  REQUIRE(H5Aread(a.get(), t.get(), &ptr) >= 0);
  std::string s = ptr != nullptr ? ptr : "";
  H5free_memory(ptr);
  return s;
}

template <typename T>
T read_num_attr(hid_t file, const char* obj, const char* name) {
  h5::Attribute a{H5Aopen_by_name(file, obj, name, H5P_DEFAULT, H5P_DEFAULT)};
  REQUIRE_MESSAGE(a.valid(), obj << " @" << name);
  T value{};
  REQUIRE(H5Aread(a.get(), h5::native_type<T>(), &value) >= 0);
  return value;
}

struct GapRow {
  std::uint64_t first_index;
  std::uint64_t count;
  std::uint8_t kind;
};

std::vector<GapRow> read_gaps(hid_t file) {
  h5::Datatype t{H5Tcreate(H5T_COMPOUND, sizeof(GapRow))};
  H5Tinsert(t.get(), "first_index", offsetof(GapRow, first_index), H5T_NATIVE_UINT64);
  H5Tinsert(t.get(), "count", offsetof(GapRow, count), H5T_NATIVE_UINT64);
  H5Tinsert(t.get(), "kind", offsetof(GapRow, kind), H5T_NATIVE_UINT8);
  h5::Dataset d{H5Dopen2(file, "/monitor/gaps", H5P_DEFAULT)};
  REQUIRE(d.valid());
  h5::Dataspace s{H5Dget_space(d.get())};
  hsize_t n = 0;
  H5Sget_simple_extent_dims(s.get(), &n, nullptr);
  std::vector<GapRow> rows(n);
  if (n > 0) REQUIRE(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()) >= 0);
  return rows;
}

struct CalRow {
  std::uint64_t sample_index;
  double v[4];
};

std::vector<CalRow> read_calibration(hid_t file) {
  h5::Datatype t{H5Tcreate(H5T_COMPOUND, sizeof(CalRow))};
  H5Tinsert(t.get(), "sample_index", offsetof(CalRow, sample_index), H5T_NATIVE_UINT64);
  H5Tinsert(t.get(), "fine_zero", offsetof(CalRow, v), H5T_NATIVE_DOUBLE);
  H5Tinsert(t.get(), "fine_ref", offsetof(CalRow, v) + 8, H5T_NATIVE_DOUBLE);
  H5Tinsert(t.get(), "coarse_zero", offsetof(CalRow, v) + 16, H5T_NATIVE_DOUBLE);
  H5Tinsert(t.get(), "coarse_ref", offsetof(CalRow, v) + 24, H5T_NATIVE_DOUBLE);
  h5::Dataset d{H5Dopen2(file, "/monitor/calibration", H5P_DEFAULT)};
  REQUIRE(d.valid());
  h5::Dataspace s{H5Dget_space(d.get())};
  hsize_t n = 0;
  H5Sget_simple_extent_dims(s.get(), &n, nullptr);
  std::vector<CalRow> rows(n);
  if (n > 0) REQUIRE(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()) >= 0);
  return rows;
}

/// Checks rows [0, n) of the three channels against the truth; returns the number of mismatches.
std::size_t count_truth_mismatches(hid_t file, std::uint64_t n, bool refresh = false) {
  const auto cur = read_1d<float>(file, "/monitor/current", refresh);
  const auto volt = read_1d<float>(file, "/monitor/voltage", refresh);
  const auto flags = read_1d<std::uint8_t>(file, "/monitor/flags", refresh);
  if (cur.size() < n || volt.size() < n || flags.size() < n) return n;
  std::size_t bad = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (cur[i] != current_at(i) || volt[i] != voltage_at(i) || flags[i] != flags_at(i)) ++bad;
  }
  return bad;
}

/// Runs a Python script with the system h5py; returns its exit status, output in `log`.
int run_python(const fs::path& dir, const std::string& script, const std::string& args,
               std::string& log) {
  static std::atomic<int> counter{0};
  const fs::path py = dir / ("check_" + std::to_string(counter++) + ".py");
  const fs::path out = dir / "python.log";
  std::ofstream(py) << script;
  std::string cmd(kPython);  // appended, not chained: GCC 12 -O2 misreads `string&& + ...` bounds
  cmd.append(" -E -s '").append(py.string()).append("' ").append(args);
  cmd.append(" > '").append(out.string()).append("' 2>&1");
  const int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  log = ss.str();
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

#define CHECK_PYTHON(dir, script, args)                              \
  do {                                                               \
    std::string py_log_;                                             \
    const int py_rc_ = run_python((dir), (script), (args), py_log_); \
    INFO("python output:\n" << py_log_);                             \
    CHECK(py_rc_ == 0);                                              \
  } while (false)

// Shared Python prelude: the same truth as current_at/voltage_at/flags_at.
const std::string kPyPrelude = R"PY(
import sys, math
import numpy as np
import h5py

def truth(n):
    i = np.arange(n, dtype=np.uint64)
    cur = i.astype(np.float32) * np.float32(0.5)
    volt = (i % 4096).astype(np.float32) / np.float32(8.0)
    flags = (i % 251).astype(np.uint8)
    return cur, volt, flags
)PY";

}  // namespace

TEST_CASE("CaptureWriter: many small blocks round-trip exactly (C API and h5py)") {
  TempDir dir;
  const fs::path file = dir.path / "capture.h5";
  constexpr std::uint64_t kTotal = 10007;  // not a multiple of the chunk or of the block
  {
    auto w = CaptureWriter::create(file, test_layout(1000));
    REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
    CHECK(w->path() == file);
    // Flushes at odd points leave partial chunks on disk that later appends must complete.
    for (std::uint64_t stop : {1234u, 1240u, 5000u, 9999u, 10007u}) {
      REQUIRE(append_truth_blocks(*w, stop, 31));
      CHECK(w->samples_written() == stop);
      REQUIRE(w->flush().ok());
    }
    REQUIRE(w->flush().ok());  // a flush with nothing new is harmless
    const std::array<std::uint64_t, 7> counters{0, 1, 2, 3, 4, 5, 6};
    REQUIRE(w->set_counters(counters).ok());
    auto r = w->finish(CaptureState::complete, "stopped by user");
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().describe()));
  }

  h5::File f = open_read(file);
  REQUIRE(f.valid());
  CHECK(count_truth_mismatches(f.get(), kTotal) == 0);
  CHECK(read_1d<float>(f.get(), "/monitor/current").size() == kTotal);
  CHECK(read_1d<std::uint8_t>(f.get(), "/monitor/flags").size() == kTotal);
  CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == kTotal);
  CHECK(read_scalar<std::int8_t>(f.get(), "/capture_state/state") == 1);
  CHECK(read_end_reason(f.get()) == "stopped by user");
  CHECK(read_1d<std::uint64_t>(f.get(), "/monitor/counters") ==
        std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6});
  CHECK(read_gaps(f.get()).empty());
  CHECK(read_calibration(f.get()).empty());

  // Storage: chunked by chunk_samples, shuffle then deflate 4, unlimited.
  h5::Dataset d{H5Dopen2(f.get(), "/monitor/current", H5P_DEFAULT)};
  h5::Plist dcpl{H5Dget_create_plist(d.get())};
  hsize_t chunk = 0;
  CHECK(H5Pget_chunk(dcpl.get(), 1, &chunk) == 1);
  CHECK(chunk == 1000);
  REQUIRE(H5Pget_nfilters(dcpl.get()) == 2);
  unsigned flags = 0;
  std::size_t nelmts = 0;
  unsigned level = 0;
  CHECK(H5Pget_filter2(dcpl.get(), 0, &flags, &nelmts, nullptr, 0, nullptr, nullptr) ==
        H5Z_FILTER_SHUFFLE);
  nelmts = 1;
  CHECK(H5Pget_filter2(dcpl.get(), 1, &flags, &nelmts, &level, 0, nullptr, nullptr) ==
        H5Z_FILTER_DEFLATE);
  CHECK(level == 4);
  f.close();

  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
path, n = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r") as f:
    m = f["monitor"]
    cur, volt, flags = truth(n)
    assert m["current"].shape == (n,) and m["current"].dtype == np.float32, m["current"]
    assert m["flags"].dtype == np.uint8
    assert np.array_equal(m["current"][:], cur)
    assert np.array_equal(m["voltage"][:], volt)
    assert np.array_equal(m["flags"][:], flags)
    assert m["current"].chunks == (1000,) and m["current"].maxshape == (None,)
    assert m["current"].compression == "gzip" and m["current"].compression_opts == 4
    assert m["current"].shuffle
    assert math.isnan(m["current"].fillvalue) and m["flags"].fillvalue == 0
    assert f["capture_state/state"][()] == 1
    assert f["capture_state/samples_written"][()] == n
    assert f["capture_state/end_reason"][()].rstrip(b"\0").decode() == "stopped by user"
    assert list(m["counters"][:]) == [0, 1, 2, 3, 4, 5, 6]
    assert m["gaps"].shape == (0,) and m["calibration"].shape == (0,)
print("ok")
)PY",
               "'" + file.string() + "' " + std::to_string(kTotal));
}

TEST_CASE("CaptureWriter: attributes and layout as documented") {
  TempDir dir;
  const fs::path file = dir.path / "attrs.h5";
  {
    auto w = CaptureWriter::create(file, test_layout(64));
    REQUIRE(w.ok());
    REQUIRE(w->finish(CaptureState::interrupted, "SIGINT").ok());
  }
  h5::File f = open_read(file);
  REQUIRE(f.valid());
  CHECK(read_string_attr(f.get(), "/", "format") == "meltrig-capture");
  CHECK(read_num_attr<std::int64_t>(f.get(), "/", "format_version") == 1);
  CHECK(read_string_attr(f.get(), "/", "host_wall_clock_start_utc") ==
        "2024-05-01T12:00:00.123456789Z");
  CHECK(read_num_attr<std::int64_t>(f.get(), "/", "host_wall_clock_start_unix_ns") ==
        1714564800123456789);
  CHECK(read_num_attr<double>(f.get(), "/monitor", "sample_rate_hz") == 5000.0);
  CHECK(read_string_attr(f.get(), "/monitor", "time_base") == "t = sample_index / sample_rate_hz");
  CHECK(read_string_attr(f.get(), "/monitor", "port") == "/dev/ttyACM0");
  CHECK(read_num_attr<double>(f.get(), "/monitor", "output_voltage_v") == 4.2);
  CHECK(read_string_attr(f.get(), "/monitor/current", "unit") == "A");
  CHECK(read_string_attr(f.get(), "/monitor/flags", "description") == "marker bits");
  CHECK(read_string_attr(f.get(), "/monitor/status_at_start", "mode") == "Ünïcode ok");
  CHECK(read_num_attr<std::int64_t>(f.get(), "/monitor/status_at_start", "voltage_adc") == -17);
  CHECK(read_scalar<std::int8_t>(f.get(), "/capture_state/state") == 3);
  CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == 0);
  f.close();

  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
with h5py.File(sys.argv[1], "r") as f:
    a = dict(f.attrs)
    assert a["format"] == "meltrig-capture" and isinstance(a["format"], str)
    assert a["format_version"] == 1 and a["format_version"].dtype == np.int64
    assert a["meltrig_version"] == "0.1.0"
    assert a["host_wall_clock_start_utc"] == "2024-05-01T12:00:00.123456789Z"
    assert a["host_wall_clock_start_unix_ns"] == 1714564800123456789
    assert a["host_steady_clock_start_ns"] == 987654321012
    assert sorted(f.keys()) == ["capture_state", "monitor"], list(f.keys())
    m = f["monitor"]
    assert sorted(m.keys()) == sorted(["current", "voltage", "flags", "gaps", "calibration",
                                       "counters", "status_at_start", "summary"]), list(m.keys())
    assert m.attrs["compression"] == "shuffle+deflate-4"
    assert sorted(m["summary"].keys()) == ["current", "voltage"]
    for ch in ["current", "voltage"]:
        assert sorted(m["summary"][ch].keys(), key=int) == ["8", "12", "16", "20", "24"]
        assert all(m["summary"][ch][k].shape == (0,) for k in m["summary"][ch])
    assert m.attrs["sample_rate_hz"] == 5000.0 and m.attrs["sample_rate_hz"].dtype == np.float64
    assert m.attrs["time_base"] == "t = sample_index / sample_rate_hz"
    assert m.attrs["driver"] == "lvpm" and m.attrs["serial_number"] == 12345
    assert m.attrs["firmware_version"] == "31" and m.attrs["hardware_revision"] == 13
    assert m.attrs["nominal_rate_hz"] == 5000.0 and m.attrs["output_voltage_v"] == 4.2
    for name, unit, desc in [("current", "A", "main channel current"),
                             ("voltage", "V", "main channel voltage"), ("flags", "", "marker bits")]:
        assert m[name].attrs["unit"] == unit and m[name].attrs["description"] == desc
        assert m[name].shape == (0,)
    s = m["status_at_start"].attrs
    assert s["voltage_adc"] == -17 and s["temperature_c"] == 31.5 and s["mode"] == "Ünïcode ok"
    g = m["gaps"]
    assert g.dtype.names == ("first_index", "count", "kind"), g.dtype
    assert g.dtype["first_index"] == np.uint64 and g.dtype["kind"] == np.uint8
    assert list(g.attrs["kind_names"]) == ["missing", "missing_wrapped", "duplicate_dropped",
                                           "ring_overflow", "resync", "uncalibrated", "inferred"]
    c = m["calibration"]
    assert c.dtype.names == ("sample_index", "fine_zero", "fine_ref", "coarse_zero", "coarse_ref")
    assert c.dtype["fine_ref"] == np.float64
    assert list(m["counters"].attrs["names"]) == ["missing_samples", "duplicate_samples",
        "discarded_bytes", "checksum_errors", "ring_overflow_samples", "sequence_gaps",
        "inferred_wrap_gaps"]
    assert list(m["counters"][:]) == [0] * 7 and m["counters"].dtype == np.uint64
    st = f["capture_state"]
    assert st["state"].shape == () and st["state"].dtype == np.int8 and st["state"][()] == 3
    assert st["end_reason"].dtype == np.dtype("S256")
    assert st["end_reason"][()].rstrip(b"\0") == b"SIGINT"
    assert st["samples_written"][()] == 0 and st["samples_written"].dtype == np.uint64
print("ok")
)PY",
               "'" + file.string() + "'");
}

TEST_CASE("CaptureWriter: missing samples are NaN/0 and listed, calibration and counters kept") {
  TempDir dir;
  const fs::path file = dir.path / "gaps.h5";
  {
    auto w = CaptureWriter::create(file, test_layout(16));
    REQUIRE(w.ok());
    REQUIRE(append_truth(*w, 0, 10).ok());                             // 0..9
    REQUIRE(w->append_missing(5, GapKind::missing).ok());              // 10..14
    REQUIRE(append_truth(*w, 15, 10).ok());                            // 15..24
    REQUIRE(w->add_gap(Gap{25, 3, GapKind::duplicate_dropped}).ok());  // no rows
    REQUIRE(
        w->append_missing(3 * 16 + 7, GapKind::missing_wrapped).ok());  // 25..79, 3 whole chunks
    REQUIRE(w->flush().ok());
    REQUIRE(append_truth(*w, 80, 20).ok());                       // 80..99
    REQUIRE(w->append_missing(17, GapKind::ring_overflow).ok());  // 100..116
    REQUIRE(w->append_missing(1, GapKind::resync).ok());          // 117
    REQUIRE(append_truth(*w, 118, 2).ok());                       // 118..119
    REQUIRE(w->append_missing(2, GapKind::uncalibrated).ok());    // 120..121
    REQUIRE(append_truth(*w, 122, 2).ok());                       // 122..123
    REQUIRE(w->add_calibration(CalibrationRow{0, 1.5, 2.5, 3.5, 4.5}).ok());
    REQUIRE(w->add_calibration(CalibrationRow{50, -1.25, 1e6, 0.0, 7.0}).ok());
    const std::array<std::uint64_t, 7> counters{78, 3, 1000, 2, 17, 2, 1};
    REQUIRE(w->set_counters(counters).ok());
    CHECK(w->samples_written() == 124);
    REQUIRE(w->finish(CaptureState::complete, "done").ok());
  }
  auto is_missing = [](std::uint64_t i) {
    return (i >= 10 && i < 15) || (i >= 25 && i < 80) || (i >= 100 && i < 118) ||
           (i >= 120 && i < 122);
  };
  h5::File f = open_read(file);
  REQUIRE(f.valid());
  const auto cur = read_1d<float>(f.get(), "/monitor/current");
  const auto volt = read_1d<float>(f.get(), "/monitor/voltage");
  const auto flags = read_1d<std::uint8_t>(f.get(), "/monitor/flags");
  REQUIRE(cur.size() == 124);
  REQUIRE(volt.size() == 124);
  REQUIRE(flags.size() == 124);
  std::size_t bad = 0;
  for (std::uint64_t i = 0; i < 124; ++i) {
    if (is_missing(i)) {
      if (!std::isnan(cur[i]) || !std::isnan(volt[i]) || flags[i] != 0) ++bad;
    } else if (cur[i] != current_at(i) || volt[i] != voltage_at(i) || flags[i] != flags_at(i)) {
      ++bad;
    }
  }
  CHECK(bad == 0);
  const auto gaps = read_gaps(f.get());
  REQUIRE(gaps.size() == 6);
  const std::array<GapRow, 6> want{
      {{10, 5, 0}, {25, 3, 2}, {25, 55, 1}, {100, 17, 3}, {117, 1, 4}, {120, 2, 5}}};
  for (std::size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(gaps[i].first_index == want[i].first_index);
    CHECK(gaps[i].count == want[i].count);
    CHECK(gaps[i].kind == want[i].kind);
  }
  const auto cal = read_calibration(f.get());
  REQUIRE(cal.size() == 2);
  CHECK(cal[0].sample_index == 0);
  CHECK(cal[0].v[0] == 1.5);
  CHECK(cal[0].v[3] == 4.5);
  CHECK(cal[1].sample_index == 50);
  CHECK(cal[1].v[0] == -1.25);
  CHECK(cal[1].v[1] == 1e6);
  CHECK(read_1d<std::uint64_t>(f.get(), "/monitor/counters") ==
        std::vector<std::uint64_t>{78, 3, 1000, 2, 17, 2, 1});
  CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == 124);
  f.close();

  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
with h5py.File(sys.argv[1], "r") as f:
    m = f["monitor"]
    n = 124
    cur, volt, flags = truth(n)
    missing = np.zeros(n, dtype=bool)
    for a, b in [(10, 15), (25, 80), (100, 118), (120, 122)]:
        missing[a:b] = True
    c, v, fl = m["current"][:], m["voltage"][:], m["flags"][:]
    assert np.isnan(c).sum() == missing.sum() == 80
    assert np.all(np.isnan(c[missing])) and np.all(np.isnan(v[missing])) and np.all(fl[missing] == 0)
    assert np.array_equal(c[~missing], cur[~missing]) and np.array_equal(v[~missing], volt[~missing])
    assert np.array_equal(fl[~missing], flags[~missing])
    g = m["gaps"][:]
    assert [tuple(int(x) for x in r) for r in g] == [(10, 5, 0), (25, 3, 2), (25, 55, 1),
                                                     (100, 17, 3), (117, 1, 4), (120, 2, 5)], g
    names = list(m["gaps"].attrs["kind_names"])
    assert names == ["missing", "missing_wrapped", "duplicate_dropped", "ring_overflow", "resync",
                     "uncalibrated", "inferred"], names
    assert [names[k] for k in g["kind"]] == ["missing", "duplicate_dropped", "missing_wrapped",
                                              "ring_overflow", "resync", "uncalibrated"]
    cal = m["calibration"][:]
    assert list(cal["sample_index"]) == [0, 50]
    assert list(cal["fine_zero"]) == [1.5, -1.25] and list(cal["fine_ref"]) == [2.5, 1e6]
    assert list(cal["coarse_zero"]) == [3.5, 0.0] and list(cal["coarse_ref"]) == [4.5, 7.0]
    counters = dict(zip(m["counters"].attrs["names"], m["counters"][:]))
    assert counters == {"missing_samples": 78, "duplicate_samples": 3, "discarded_bytes": 1000,
        "checksum_errors": 2, "ring_overflow_samples": 17, "sequence_gaps": 2,
        "inferred_wrap_gaps": 1}, counters
    assert f["capture_state/state"][()] == 1 and f["capture_state/samples_written"][()] == n
print("ok")
)PY",
               "'" + file.string() + "'");
}

TEST_CASE("CaptureWriter: a gap of whole chunks at the end still sets the length") {
  TempDir dir;
  const fs::path file = dir.path / "tail_gap.h5";
  {
    auto w = CaptureWriter::create(file, test_layout(8));
    REQUIRE(w.ok());
    REQUIRE(append_truth(*w, 0, 8).ok());
    REQUIRE(w->append_missing(40, GapKind::missing).ok());  // five whole chunks, never stored
    REQUIRE(w->finish(CaptureState::failed, "device unplugged").ok());
  }
  h5::File f = open_read(file);
  REQUIRE(f.valid());
  const auto cur = read_1d<float>(f.get(), "/monitor/current");
  const auto flags = read_1d<std::uint8_t>(f.get(), "/monitor/flags");
  REQUIRE(cur.size() == 48);
  REQUIRE(flags.size() == 48);
  CHECK(count_truth_mismatches(f.get(), 8) == 0);
  std::size_t nan = 0;
  for (std::size_t i = 8; i < 48; ++i)
    nan += std::isnan(cur[i]) && flags[i] == 0 ? 1 : 0;
  CHECK(nan == 40);
  CHECK(read_scalar<std::int8_t>(f.get(), "/capture_state/state") == 2);
  CHECK(read_end_reason(f.get()) == "device unplugged");
  CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == 48);
}

TEST_CASE("CaptureWriter: end_reason is truncated to 256 bytes at a UTF-8 boundary") {
  TempDir dir;
  const fs::path file = dir.path / "reason.h5";
  // 255 ASCII bytes then "é" (2 bytes): cutting at 256 would split it, so it is dropped.
  std::string reason(255, 'x');
  reason.append("\xC3\xA9").append("tail");
  {
    auto w = CaptureWriter::create(file, test_layout(16));
    REQUIRE(w.ok());
    REQUIRE(w->finish(CaptureState::failed, reason).ok());
  }
  h5::File f = open_read(file);
  REQUIRE(f.valid());
  CHECK(read_end_reason(f.get()) == std::string(255, 'x'));
  f.close();
  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
with h5py.File(sys.argv[1], "r") as f:
    r = f["capture_state/end_reason"][()].rstrip(b"\0").decode("utf-8")
    assert r == "x" * 255, r
print("ok")
)PY",
               "'" + file.string() + "'");
}

namespace {

// Writer side of the SWMR tests, run in a child process; signals the parent through pipes.
// Returns the child's exit code (0 = every step succeeded).
int swmr_child(const fs::path& file, int to_parent, int from_parent, bool crash) {
  auto w = CaptureWriter::create(file, test_layout(64));
  if (!w) return 10;
  char go = 0;
  if (!append_truth_blocks(*w, 100, 31) || !w->flush()) return 11;
  if (::write(to_parent, "1", 1) != 1 || ::read(from_parent, &go, 1) != 1) return 12;
  if (!append_truth_blocks(*w, 1100, 31) || !w->flush()) return 13;
  const std::array<std::uint64_t, 7> counters{1, 2, 3, 4, 5, 6, 7};
  if (!w->set_counters(counters) || !w->add_gap(Gap{7, 1, GapKind::duplicate_dropped})) return 14;
  if (!w->flush()) return 15;
  if (::write(to_parent, "2", 1) != 1 || ::read(from_parent, &go, 1) != 1) return 16;
  if (!append_truth_blocks(*w, 1107, 31)) return 17;  // buffered, never flushed explicitly
  if (crash) ::raise(SIGKILL);
  return 0;  // the writer's destructor closes without finish()
}

struct ChildWriter {
  pid_t pid = -1;
  int from_child = -1;
  int to_child = -1;

  ChildWriter(const fs::path& file, bool crash) {
    int up[2], down[2];
    REQUIRE(::pipe(up) == 0);
    REQUIRE(::pipe(down) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(up[0]);
      ::close(down[1]);
      int rc = 0;
      { rc = swmr_child(file, up[1], down[0], crash); }
      ::_exit(rc);  // no atexit handlers, no doctest report from the child
    }
    ::close(up[1]);
    ::close(down[0]);
    from_child = up[0];
    to_child = down[1];
  }
  char wait_step() {
    char c = 0;
    return ::read(from_child, &c, 1) == 1 ? c : '\0';
  }
  void go() { REQUIRE(::write(to_child, "g", 1) == 1); }
  int wait_exit() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
  ~ChildWriter() {
    ::close(from_child);
    ::close(to_child);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

const std::string kPyLive = kPyPrelude + R"PY(
path, n = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r", swmr=True) as f:
    for d in ["monitor/current", "monitor/voltage", "monitor/flags", "capture_state/samples_written",
              "capture_state/state"]:
        f[d].refresh()
    assert f["capture_state/samples_written"][()] == n, f["capture_state/samples_written"][()]
    assert f["capture_state/state"][()] == 0
    cur, volt, flags = truth(n)
    m = f["monitor"]
    assert m["current"].shape[0] >= n
    assert np.array_equal(m["current"][:n], cur) and np.array_equal(m["voltage"][:n], volt)
    assert np.array_equal(m["flags"][:n], flags)
print("ok")
)PY";

}  // namespace

TEST_CASE("CaptureWriter: SWMR readers see flushed rows while writing, destructor keeps state") {
  TempDir dir;
  const fs::path file = dir.path / "live.h5";
  ChildWriter child(file, /*crash=*/false);

  REQUIRE(child.wait_step() == '1');
  // C API reader in SWMR mode, kept open across the writer's later flushes.
  h5::File reader = open_read(file, /*swmr=*/true);
  REQUIRE(reader.valid());
  CHECK(read_scalar<std::uint64_t>(reader.get(), "/capture_state/samples_written") == 100);
  CHECK(read_scalar<std::int8_t>(reader.get(), "/capture_state/state") == 0);
  CHECK(count_truth_mismatches(reader.get(), 100) == 0);
  CHECK_PYTHON(dir.path, kPyLive, "'" + file.string() + "' 100");
  child.go();

  REQUIRE(child.wait_step() == '2');
  CHECK(read_scalar<std::uint64_t>(reader.get(), "/capture_state/samples_written", true) == 1100);
  CHECK(count_truth_mismatches(reader.get(), 1100, /*refresh=*/true) == 0);
  CHECK(read_1d<std::uint64_t>(reader.get(), "/monitor/counters", true) ==
        std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7});
  CHECK_PYTHON(dir.path, kPyLive, "'" + file.string() + "' 1100");
  reader.close();
  child.go();

  const int status = child.wait_exit();
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  // Destroyed without finish(): closed cleanly, everything written, state still "running".
  h5::File f = open_read(file);
  REQUIRE(f.valid());
  CHECK(read_scalar<std::int8_t>(f.get(), "/capture_state/state") == 0);
  CHECK(read_end_reason(f.get()).empty());
  CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == 1107);
  CHECK(read_1d<float>(f.get(), "/monitor/current").size() == 1107);
  CHECK(count_truth_mismatches(f.get(), 1107) == 0);
  const auto gaps = read_gaps(f.get());
  REQUIRE(gaps.size() == 1);
  CHECK(gaps[0].first_index == 7);
  CHECK(gaps[0].kind == 2);
  f.close();
  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
with h5py.File(sys.argv[1], "r") as f:
    assert f["capture_state/state"][()] == 0 and f["capture_state/samples_written"][()] == 1107
    cur, volt, flags = truth(1107)
    assert np.array_equal(f["monitor/current"][:], cur)
    assert np.array_equal(f["monitor/flags"][:], flags)
print("ok")
)PY",
               "'" + file.string() + "'");
}

TEST_CASE("CaptureWriter: after a crash (SIGKILL) the file holds everything flushed") {
  TempDir dir;
  const fs::path file = dir.path / "crash.h5";
  ChildWriter child(file, /*crash=*/true);
  REQUIRE(child.wait_step() == '1');
  child.go();
  REQUIRE(child.wait_step() == '2');
  child.go();
  const int status = child.wait_exit();
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);

  auto check_contents = [](hid_t f) {
    CHECK(read_scalar<std::int8_t>(f, "/capture_state/state") == 0);
    CHECK(read_scalar<std::uint64_t>(f, "/capture_state/samples_written") == 1100);
    CHECK(count_truth_mismatches(f, 1100) == 0);
    CHECK(read_1d<std::uint64_t>(f, "/monitor/counters") ==
          std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7});
    CHECK(read_gaps(f).size() == 1);
  };
  {
    // A SWMR reader opens the crashed file as it is.
    h5::File f = open_read(file, /*swmr=*/true);
    REQUIRE_MESSAGE(f.valid(), h5::innermost_error());
    check_contents(f.get());
  }
  {
    // A plain open is refused: the superblock still says "open for SWMR writing".
    h5::File f = open_read(file);
    CHECK_FALSE(f.valid());
    CHECK(h5::innermost_error().find("h5clear") != std::string::npos);
  }
  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
path = sys.argv[1]
try:
    h5py.File(path, "r")
    raise SystemExit("plain open of a crashed SWMR file unexpectedly worked")
except OSError as e:
    assert "h5clear" in str(e), e
with h5py.File(path, "r", swmr=True) as f:
    n = int(f["capture_state/samples_written"][()])
    assert n == 1100, n
    assert f["capture_state/state"][()] == 0
    cur, volt, flags = truth(n)
    assert np.array_equal(f["monitor/current"][:n], cur)
    assert np.array_equal(f["monitor/voltage"][:n], volt)
    assert np.array_equal(f["monitor/flags"][:n], flags)
print("ok")
)PY",
               "'" + file.string() + "'");
  // `h5clear -s` clears the flags; then any reader opens it.
  const std::string clear = "/usr/bin/h5clear -s '" + file.string() + "' > /dev/null 2>&1";
  REQUIRE(std::system(clear.c_str()) == 0);
  h5::File f = open_read(file);
  REQUIRE_MESSAGE(f.valid(), h5::innermost_error());
  check_contents(f.get());
}

namespace {

/// A small tmpfs mounted on `dir` for the life of the object (root only).
struct SmallTmpfs {
  fs::path dir;
  int error = 0;  // errno of a failed mount
  SmallTmpfs(fs::path where, const char* size) : dir(std::move(where)) {
    fs::create_directories(dir);
    const std::string options = std::string("size=") + size;
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) error = errno;
  }
  bool mounted() const { return error == 0; }
  ~SmallTmpfs() {
    if (mounted()) ::umount2(dir.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
};

}  // namespace

TEST_CASE("CaptureWriter: disk full ends with a clear error, every flushed sample stays readable") {
  TempDir dir;
  SmallTmpfs disk(dir.path / "small", "2M");
  if (!disk.mounted()) {
    MESSAGE("skipped: cannot mount a 2 MiB tmpfs (" << std::strerror(disk.error)
                                                    << "); this test needs root");
    return;
  }
  const fs::path file = disk.dir / "full.h5";
  std::uint64_t flushed = 0;  // samples_written() at the last successful flush
  std::optional<meltrig::Error> failure;
  {
    auto w = CaptureWriter::create(file, test_layout(4096));
    REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
    // Far more than 2 MiB holds: the disk must fill long before the end.
    for (std::uint64_t block = 0; block < 20'000 && !failure; ++block) {
      if (auto r = append_truth(*w, w->samples_written(), 4096); !r) {
        failure = r.error();
      } else if (block % 8 == 7) {
        if (auto f = w->flush(); !f) {
          failure = f.error();
        } else {
          flushed = w->samples_written();
        }
      }
    }
    REQUIRE(failure.has_value());
    INFO(failure->describe());
    CHECK(failure->code == Errc::file_error);
    CHECK(failure->message.rfind(file.string() + ": ", 0) == 0);
    CHECK(failure->message.find("No space left on device (errno 28") != std::string::npos);
    CHECK(flushed > 0);
    // Stopped: every later call says why, and finish() records what it can and says so again.
    auto again = w->flush();
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().message.find("No space left on device") != std::string::npos);
    CHECK(errc_of(append_truth(*w, w->samples_written(), 1)) == Errc::file_error);
    auto fin = w->finish(CaptureState::failed, failure->describe());
    REQUIRE_FALSE(fin.ok());
    CHECK(fin.error().message.find("No space left on device") != std::string::npos);
    CHECK(errc_of(w->finish(CaptureState::failed, "")) == Errc::invalid_argument);
  }
  MESSAGE("disk full after " << flushed << " flushed samples: " << failure->message);

  // The C API in SWMR-read mode, as after a crash.
  {
    h5::File f = open_read(file, /*swmr=*/true);
    REQUIRE_MESSAGE(f.valid(), h5::innermost_error());
    CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == flushed);
    CHECK(read_scalar<std::int8_t>(f.get(), "/capture_state/state") == 2);
    CHECK(read_end_reason(f.get()).find("No space left on device") != std::string::npos);
    CHECK(count_truth_mismatches(f.get(), flushed) == 0);
  }
  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
path, flushed = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "r", swmr=True) as f:
    n = int(f["capture_state/samples_written"][()])
    assert n == flushed, (n, flushed)
    assert f["capture_state/state"][()] == 2
    assert "No space left on device" in f["capture_state/end_reason"][()].rstrip(b"\0").decode()
    m = f["monitor"]
    cur, volt, flags = truth(n)
    assert np.array_equal(m["current"][:n], cur) and np.array_equal(m["voltage"][:n], volt)
    assert np.array_equal(m["flags"][:n], flags)
    # Summary entries complete by the last flush are there and right.
    for k in [8, 12, 16]:
        j = n >> k
        e = m["summary/current/" + str(k)][:j]
        assert len(e) == j, (k, len(e), j)
        blocks = cur[: j << k].reshape(j, 1 << k).astype(np.float64)
        assert np.array_equal(e["valid"], np.full(j, 1 << k))
        assert np.array_equal(e["min"], blocks.min(axis=1).astype(np.float32))
        assert np.array_equal(e["max"], blocks.max(axis=1).astype(np.float32))
print("ok")
)PY",
               "'" + file.string() + "' " + std::to_string(flushed));
}

TEST_CASE("CaptureWriter: a file deleted while written stops the writer at the next flush") {
  // Writes to a deleted file go on into its inode, which vanishes at close: the writer checks
  // at every flush and stops rather than capture for hours into nothing.
  TempDir dir;
  const fs::path file = dir.path / "deleted.h5";
  auto w = CaptureWriter::create(file, test_layout(64));
  REQUIRE(w.ok());
  REQUIRE(append_truth_blocks(*w, 1000, 100));
  REQUIRE(w->flush().ok());
  REQUIRE(fs::remove(file));
  CHECK(append_truth_blocks(*w, 1100, 100));  // buffered: nothing tells yet
  auto r = w->flush();
  REQUIRE_FALSE(r.ok());
  INFO(r.error().describe());
  CHECK(r.error().code == Errc::file_error);
  CHECK(r.error().message.rfind(file.string() + ": the file was deleted while being written", 0) ==
        0);
  CHECK(errc_of(append_truth(*w, w->samples_written(), 1)) == Errc::file_error);
  auto fin = w->finish(CaptureState::failed, r.error().describe());
  REQUIRE_FALSE(fin.ok());
  CHECK(fin.error().message.find("deleted") != std::string::npos);
  CHECK_FALSE(fs::exists(file));  // never recreated under the old name
}

TEST_CASE("CaptureWriter: a file renamed while written is still written (rename keeps the inode)") {
  TempDir dir;
  const fs::path file = dir.path / "before.h5";
  const fs::path moved = dir.path / "after.h5";
  {
    auto w = CaptureWriter::create(file, test_layout(64));
    REQUIRE(w.ok());
    REQUIRE(append_truth_blocks(*w, 500, 100));
    REQUIRE(w->flush().ok());
    fs::rename(file, moved);
    REQUIRE(append_truth_blocks(*w, 1000, 100));
    REQUIRE(w->finish(CaptureState::complete, "").ok());
  }
  h5::File f = open_read(moved);
  REQUIRE(f.valid());
  CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == 1000);
  CHECK(count_truth_mismatches(f.get(), 1000) == 0);
}

TEST_CASE("CaptureWriter: create fails with file_error naming the path") {
  TempDir dir;
  SUBCASE("nonexistent directory") {
    const fs::path file = dir.path / "no_such_dir" / "c.h5";
    auto w = CaptureWriter::create(file, test_layout(16));
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == Errc::file_error);
    CHECK(w.error().message.find(file.string()) != std::string::npos);
    CHECK(w.error().message.find("No such file or directory") != std::string::npos);
    CHECK_FALSE(fs::exists(file));
  }
  SUBCASE("parent is a regular file") {
    std::ofstream(dir.path / "plain") << "not a directory";
    const fs::path file = dir.path / "plain" / "c.h5";
    auto w = CaptureWriter::create(file, test_layout(16));
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == Errc::file_error);
    CHECK(w.error().message.find(file.string()) != std::string::npos);
    CHECK(w.error().message.find("Not a directory") != std::string::npos);
  }
  SUBCASE("directory without write permission") {
    const fs::path locked = dir.path / "locked";
    fs::create_directory(locked);
    fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                fs::perms::group_exec | fs::perms::others_read |
                                fs::perms::others_exec);
    const fs::path file = locked / "c.h5";
    // Root ignores permissions: then try as "nobody" in a child process.
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(pipe_fds[0]);
      if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(2);
      auto w = CaptureWriter::create(file, test_layout(16));
      const std::string msg = w.ok() ? "created" : w.error().describe();
      (void)!::write(pipe_fds[1], msg.data(), msg.size());
      ::_exit(0);
    }
    ::close(pipe_fds[1]);
    std::string msg;
    std::array<char, 512> buf{};
    for (ssize_t n; (n = ::read(pipe_fds[0], buf.data(), buf.size())) > 0;) {
      msg.append(buf.data(), static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    INFO(msg);
    CHECK(msg.rfind("file error: " + file.string(), 0) == 0);
    CHECK(msg.find("Permission denied") != std::string::npos);
    CHECK_FALSE(fs::exists(file));
  }
  SUBCASE("existing file is never overwritten") {
    const fs::path file = dir.path / "exists.h5";
    std::ofstream(file) << "precious";
    auto w = CaptureWriter::create(file, test_layout(16));
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == Errc::file_error);
    CHECK(w.error().message.find("File exists") != std::string::npos);
    std::ifstream in(file);
    std::string content;
    in >> content;
    CHECK(content == "precious");
  }
}

TEST_CASE("CaptureWriter: bad layouts are invalid_argument and create no file") {
  TempDir dir;
  const fs::path file = dir.path / "bad.h5";
  auto expect_invalid = [&](const CaptureLayout& layout, std::string_view key) {
    auto w = CaptureWriter::create(file, layout);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == Errc::invalid_argument);
    INFO(w.error().message);
    CHECK(w.error().message.find(key) != std::string::npos);
    CHECK_FALSE(fs::exists(file));
  };
  CaptureLayout l = test_layout(16);
  l.channels.clear();
  expect_invalid(l, "channels");
  l = test_layout(16);
  l.sample_rate_hz = 0.0;
  expect_invalid(l, "sample_rate_hz");
  l.sample_rate_hz = std::nan("");
  expect_invalid(l, "sample_rate_hz");
  l = test_layout(16);
  l.channels[1].name = "gaps";
  expect_invalid(l, "gaps");
  l.channels[1].name = "current";
  expect_invalid(l, "current");
  l.channels[1].name = "a/b";
  expect_invalid(l, "a/b");
  l = test_layout(0);
  expect_invalid(l, "chunk_samples");
  l = test_layout(16);
  l.compression = Compression::deflate(10);
  expect_invalid(l, "compression");
  l.compression = Compression::deflate(0);
  expect_invalid(l, "compression");
  l.compression.method = static_cast<Compression::Method>(7);
  expect_invalid(l, "compression");
  l = test_layout(16);
  l.monitor = "capture_state";
  expect_invalid(l, "monitor");
  l = test_layout(16);
  l.root_attributes.push_back({"format", std::string("mine")});
  expect_invalid(l, "format");
  l = test_layout(16);
  l.monitor_attributes.push_back({"driver", std::string("again")});
  expect_invalid(l, "driver");
  l = test_layout(16);
  l.monitor_attributes.push_back({"compression", std::string("mine")});
  expect_invalid(l, "compression");
  l = test_layout(16);
  l.channels[1].name = "summary";
  expect_invalid(l, "summary");
  l = test_layout(16);
  l.counter_names.push_back("missing_samples");
  expect_invalid(l, "missing_samples");
}

TEST_CASE("CaptureWriter: bad calls are invalid_argument and change nothing") {
  TempDir dir;
  const fs::path file = dir.path / "calls.h5";
  auto w = CaptureWriter::create(file, test_layout(16));
  REQUIRE(w.ok());
  REQUIRE(append_truth(*w, 0, 5).ok());

  const std::vector<float> four(4, 1.0f), five(5, 1.0f);
  const std::vector<std::uint8_t> five_u8(5, 1);
  SUBCASE("mismatched channel lengths") {
    const std::array<ChannelData, 3> ch{std::span<const float>(five), std::span<const float>(four),
                                        std::span<const std::uint8_t>(five_u8)};
    auto r = w->append(SampleBlock{ch});
    REQUIRE_FALSE(r.ok());
    CHECK(errc_of(r) == Errc::invalid_argument);
    CHECK(r.error().message.find("voltage") != std::string::npos);
  }
  SUBCASE("wrong element type") {
    const std::array<ChannelData, 3> ch{std::span<const float>(five), std::span<const float>(five),
                                        std::span<const float>(five)};
    auto r = w->append(SampleBlock{ch});
    REQUIRE_FALSE(r.ok());
    CHECK(errc_of(r) == Errc::invalid_argument);
    CHECK(r.error().message.find("flags") != std::string::npos);
  }
  SUBCASE("wrong channel count") {
    const std::array<ChannelData, 2> ch{std::span<const float>(five), std::span<const float>(five)};
    auto r = w->append(SampleBlock{ch});
    REQUIRE_FALSE(r.ok());
    CHECK(errc_of(r) == Errc::invalid_argument);
  }
  SUBCASE("counter count") {
    const std::array<std::uint64_t, 3> three{1, 2, 3};
    auto r = w->set_counters(three);
    REQUIRE_FALSE(r.ok());
    CHECK(errc_of(r) == Errc::invalid_argument);
  }
  SUBCASE("gap arguments") {
    CHECK(errc_of(w->add_gap(Gap{1, 0, GapKind::missing})) == Errc::invalid_argument);
    CHECK(errc_of(w->add_gap(Gap{1, 1, static_cast<GapKind>(9)})) == Errc::invalid_argument);
    CHECK(errc_of(w->append_missing(0, GapKind::missing)) == Errc::invalid_argument);
    CHECK(errc_of(w->append_missing(3, GapKind::duplicate_dropped)) == Errc::invalid_argument);
  }
  SUBCASE("finish(running)") {
    CHECK(errc_of(w->finish(CaptureState::running, "")) == Errc::invalid_argument);
  }
  CHECK(w->samples_written() == 5);
  REQUIRE(w->finish(CaptureState::complete, "ok").ok());
  // Finished: every further call is refused.
  CHECK(errc_of(w->finish(CaptureState::complete, "again")) == Errc::invalid_argument);
  CHECK(errc_of(append_truth(*w, 5, 1)) == Errc::invalid_argument);
  CHECK(errc_of(w->flush()) == Errc::invalid_argument);
  CHECK(errc_of(w->add_calibration(CalibrationRow{})) == Errc::invalid_argument);

  h5::File f = open_read(file);
  REQUIRE(f.valid());
  CHECK(read_scalar<std::uint64_t>(f.get(), "/capture_state/samples_written") == 5);
  CHECK(count_truth_mismatches(f.get(), 5) == 0);
  CHECK(read_gaps(f.get()).empty());
  CHECK(read_1d<std::uint64_t>(f.get(), "/monitor/counters") == std::vector<std::uint64_t>(7, 0));
}

TEST_CASE("CaptureWriter: moves keep writing to the same file, move-assign closes the old one") {
  TempDir dir;
  const fs::path a = dir.path / "a.h5";
  const fs::path b = dir.path / "b.h5";
  auto wa = CaptureWriter::create(a, test_layout(16));
  auto wb = CaptureWriter::create(b, test_layout(16));
  REQUIRE(wa.ok());
  REQUIRE(wb.ok());
  REQUIRE(append_truth(*wa, 0, 20).ok());
  REQUIRE(append_truth(*wb, 0, 30).ok());
  CaptureWriter moved = std::move(*wa);
  REQUIRE(append_truth(moved, 20, 13).ok());
  moved = std::move(*wb);  // a.h5 is closed unfinished, with all 33 samples
  CHECK(moved.path() == b);
  REQUIRE(append_truth(moved, 30, 3).ok());
  REQUIRE(moved.finish(CaptureState::complete, "").ok());

  h5::File fa = open_read(a);
  REQUIRE(fa.valid());
  CHECK(read_scalar<std::int8_t>(fa.get(), "/capture_state/state") == 0);
  CHECK(read_scalar<std::uint64_t>(fa.get(), "/capture_state/samples_written") == 33);
  CHECK(count_truth_mismatches(fa.get(), 33) == 0);
  h5::File fb = open_read(b);
  REQUIRE(fb.valid());
  CHECK(read_scalar<std::int8_t>(fb.get(), "/capture_state/state") == 1);
  CHECK(read_scalar<std::uint64_t>(fb.get(), "/capture_state/samples_written") == 33);
  CHECK(count_truth_mismatches(fb.get(), 33) == 0);
}

TEST_CASE("CaptureWriter: uncompressed, u8-only, no counters, default chunk") {
  TempDir dir;
  const fs::path file = dir.path / "minimal.h5";
  CaptureLayout layout;
  layout.monitor = "relay";
  layout.sample_rate_hz = 1.0e6;
  layout.channels = {{"bits", "", SampleType::u8, "relay states"}};
  layout.compression = Compression::none();
  constexpr std::size_t kN = 40000;  // two full default chunks and a partial one
  std::vector<std::uint8_t> bits(kN);
  for (std::size_t i = 0; i < kN; ++i)
    bits[i] = static_cast<std::uint8_t>(i * 7);
  {
    auto w = CaptureWriter::create(file, layout);
    REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
    const std::array<ChannelData, 1> ch{std::span<const std::uint8_t>(bits)};
    REQUIRE(w->append(SampleBlock{ch}).ok());
    REQUIRE(w->set_counters({}).ok());
    REQUIRE(w->finish(CaptureState::complete, "").ok());
  }
  h5::File f = open_read(file);
  REQUIRE(f.valid());
  CHECK(read_1d<std::uint8_t>(f.get(), "/relay/bits") == bits);
  CHECK(read_1d<std::uint64_t>(f.get(), "/relay/counters").empty());
  f.close();
  CHECK_PYTHON(dir.path, kPyPrelude + R"PY(
with h5py.File(sys.argv[1], "r") as f:
    d = f["relay/bits"]
    assert d.chunks == (16384,) and d.compression is None
    assert np.array_equal(d[:], (np.arange(40000) * 7).astype(np.uint8))
    assert f["relay/counters"].shape == (0,) and len(f["relay/counters"].attrs["names"]) == 0
    assert f["capture_state/samples_written"][()] == 40000
print("ok")
)PY",
               "'" + file.string() + "'");
}

TEST_CASE("h5 helpers: errors name file and object and carry HDF5's innermost reason") {
  TempDir dir;
  const fs::path path = dir.path / "helpers.h5";
  auto file = h5::create_file(path);
  REQUIRE(file.ok());
  auto group = h5::create_group(file->get(), "g");
  REQUIRE(group.ok());
  REQUIRE(h5::write_attribute(group->get(), "x", std::int64_t{1}).ok());
  auto again = h5::write_attribute(group->get(), "x", std::int64_t{2});
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == Errc::file_error);
  INFO(again.error().message);
  CHECK(again.error().message.find(path.string() + ": cannot create attribute x on /g") == 0);
  CHECK(again.error().message.find("already exists") != std::string::npos);

  auto dup = h5::create_group(file->get(), "g");
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().message.find(path.string() + ": cannot create group /g") == 0);

  auto dset = h5::create_extendible_1d(
      group->get(), "d", h5::ExtendibleSpec{.file_type = H5T_IEEE_F64LE, .chunk_rows = 4});
  REQUIRE(dset.ok());
  const std::array<double, 3> rows{1.0, 2.0, 3.0};
  // Writing past the extent fails and names the rows and the dataset.
  auto past = h5::write_rows<double>(dset->get(), 0, rows);
  REQUIRE_FALSE(past.ok());
  CHECK(past.error().message.find("rows [0, 3) of /g/d") != std::string::npos);
  REQUIRE(h5::append_rows(dset->get(), H5T_NATIVE_DOUBLE, 0, 3, rows.data()).ok());
  REQUIRE(h5::append_rows(dset->get(), H5T_NATIVE_DOUBLE, 3, 3, rows.data()).ok());
  CHECK(read_1d<double>(file->get(), "/g/d") == std::vector<double>{1, 2, 3, 1, 2, 3});
}

TEST_CASE("h5 helpers (writer errors): OS errors in HDF5 messages read as the OS words them") {
  // As HDF5 1.10's sec2 driver words a failed write.
  CHECK(h5::readable_error(
            "file write failed: time = Mon Jan  1 00:00:00 2024\n, filename = '/d/f.h5', file "
            "descriptor = 3, errno = 28, error message = 'No space left on device', buf = "
            "0x55d0, total write size = 65536, bytes this sub-write = 65536, bytes actually "
            "written = 18446744073709551615, offset = 2093056") ==
        "No space left on device (errno 28; HDF5: file write failed)");
  CHECK(h5::readable_error("unable to open file: name = '/x/c.h5', errno = 2, error message = 'No "
                           "such file or directory', flags = 15, o_flags = c2") ==
        "No such file or directory (errno 2; HDF5: unable to open file)");
  // Without the OS text, the errno's own.
  CHECK(h5::readable_error("write failed, errno = 5") ==
        "Input/output error (errno 5; HDF5: write failed)");
  CHECK(h5::readable_error("attribute already exists") == "attribute already exists");
  CHECK(h5::readable_error("") == "");
}
