// meltrig bench analyze's library (fixtures/analysis_bench): the synthetic capture file, its
// end-to-end analysis (file -> markers through a piecewise clock map -> streaming integration)
// against the generator's truth, the numpy peer over the same windows, and the streaming claim:
// a file larger than the address space left to a process is analysed under that limit.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>

#include "meltrig/fixtures/analysis_bench.hpp"
#include "test_support.hpp"

namespace ab = meltrig::fixtures::abench;
using meltrig::test::TempDir;

namespace {

/// Two minutes at 5 kHz, two repetitions of 500 tokens of 40 ms, a 1000-sample gap in the first
/// cool-down, a 20 ppm device clock.
ab::SyntheticRun small_run() {
  ab::SyntheticRun r;
  r.seconds = 120.0;
  r.tokens = 1000;
  r.repetitions = 2;
  return r;
}

std::vector<double> energies(const meltrig::analysis::Analysis& a) {
  std::vector<double> e;
  for (const auto& t : a.run.tokens)
    e.push_back(t.stats.energy_j);
  return e;
}

/// Virtual memory of this process now (VmSize), bytes.
std::uint64_t vm_size_bytes() {
  std::ifstream in("/proc/self/status");
  std::string key;
  std::uint64_t kb = 0;
  while (in >> key)
    if (key == "VmSize:") in >> kb;
  return kb * 1024;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

}  // namespace

TEST_CASE(
    "analysis bench: a synthetic capture analysed end to end from the file equals its truth") {
  TempDir dir;
  const auto file = dir / "synthetic.h5";
  const ab::SyntheticRun run = small_run();
  auto truth = ab::write_synthetic_capture(file, run);
  REQUIRE_MESSAGE(truth.ok(), (truth.ok() ? "" : truth.error().describe()));
  REQUIRE(truth->token_energy_j.size() == 1000);
  // The truth is not flat: five burst levels and the tail make tokens differ.
  const auto [lo, hi] =
      std::minmax_element(truth->token_energy_j.begin(), truth->token_energy_j.end());
  CHECK(*hi - *lo > 0.01);
  auto stored = ab::read_truth_token_energies(file);
  REQUIRE(stored.ok());
  CHECK(*stored == truth->token_energy_j);

  auto a = ab::analyze_file_timed(file, ab::analysis_map(ab::synthetic_clock_map(run)));
  REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.error().describe()));
  const auto& r = a->result.run;
  CHECK(r.samples == run.total_samples());
  REQUIRE(r.reps.size() == 2);
  REQUIRE(r.tokens.size() == 1000);
  CHECK(ab::max_relative_difference(energies(a->result), truth->token_energy_j) < 1e-9);
  for (std::size_t i = 0; i < r.tokens.size(); i += 97) {  // windows mapped back from 20 ppm
    CHECK(r.tokens[i].start_s == doctest::Approx(truth->token_t0_s[i]).epsilon(1e-9));
    CHECK(r.tokens[i].end_s == doctest::Approx(truth->token_t1_s[i]).epsilon(1e-9));
  }
  // The gap in the first cool-down is counted, never read as zero, and touches no token.
  const auto* cool = r.reps[0].phase("cooldown");
  REQUIRE(cool != nullptr);
  CHECK(cool->stats.missing_samples == run.gap_samples);
  CHECK(cool->stats.touches_gap());
  for (const auto& t : r.tokens)
    CHECK_FALSE(t.stats.touches_gap());
  CHECK(r.reps[0].decode_tok_s == doctest::Approx(25.0).epsilon(1e-6));

  SUBCASE("markers outside the clock map are refused, naming the marker") {
    ab::SyntheticRun shifted = run;
    shifted.device_zero_ns += 10'000'000'000'000;  // the map's segments are elsewhere
    auto b = ab::analyze_file_timed(file, ab::analysis_map(ab::synthetic_clock_map(shifted)));
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().message.find("not covered by the clock map") != std::string::npos);
  }
}

TEST_CASE("analysis bench: the numpy peer integrates the same windows to the same energies") {
  if (!std::filesystem::exists("/usr/bin/python3")) {
    MESSAGE("no /usr/bin/python3: scripts/setup.sh installs python3-numpy and python3-h5py");
    return;
  }
  TempDir dir;
  const auto file = dir / "synthetic.h5";
  const ab::SyntheticRun run = small_run();
  auto truth = ab::write_synthetic_capture(file, run);
  REQUIRE(truth.ok());
  auto a = ab::analyze_file_timed(file, ab::analysis_map(ab::synthetic_clock_map(run)));
  REQUIRE(a.ok());
  ab::PeerOptions po;
  po.script = std::filesystem::path(MELTRIG_SOURCE_DIR) / "scripts/analysis_numpy_peer.py";
  po.work_dir = dir.path();
  auto p = ab::run_numpy_peer(file, a->result.run.tokens, po);
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().describe()));
  REQUIRE(p->energy_j.size() == 1000);
  CHECK(ab::max_relative_difference(p->energy_j, truth->token_energy_j) < 1e-9);
}

TEST_CASE("analysis bench: a capture larger than the address space left is analysed by streaming") {
  // 100 s at 125 kHz uncompressed: 12.5 M samples x 8 bytes = 100 MB of samples on disk. The
  // child process may grow by 48 MiB only (RLIMIT_AS = its size + 48 MiB): it shows that reading
  // the file whole fails there, then analyses it and checks every token against the truth.
  TempDir dir;
  const auto file = dir / "large.h5";
  ab::SyntheticRun run;
  run.rate_hz = 125'000.0;
  run.seconds = 100.0;
  run.repetitions = 2;
  run.tokens = 2000;
  run.token_samples = 2500;  // 20 ms
  run.idle_s = 6.0;
  run.load_s = 2.0;
  run.prefill_s = 1.0;
  run.gap_samples = 20'000;
  run.compression = meltrig::dataset::Compression::none();
  auto truth = ab::write_synthetic_capture(file, run);
  REQUIRE_MESSAGE(truth.ok(), (truth.ok() ? "" : truth.error().describe()));
  const auto file_bytes = std::filesystem::file_size(file);
  REQUIRE(file_bytes > 100'000'000);
  if (kAsan) {
    MESSAGE("AddressSanitizer reserves terabytes of address space: no RLIMIT_AS here");
  }
  const std::uint64_t headroom = 48ull << 20;
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (!kAsan) {
      rlimit lim{vm_size_bytes() + headroom, vm_size_bytes() + headroom};
      if (::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(10);
      // The limit bites: the file does not fit.
      char* whole = new (std::nothrow) char[file_bytes];
      if (whole != nullptr) ::_exit(11);
    }
    auto a = ab::analyze_file_timed(file, ab::analysis_map(ab::synthetic_clock_map(run)));
    if (!a) ::_exit(12);
    if (a->result.run.tokens.size() != 2000) ::_exit(13);
    if (!(ab::max_relative_difference(energies(a->result), truth->token_energy_j) < 1e-9))
      ::_exit(14);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  // 10: setrlimit failed, 11: the limit did not bite, 12: analysis failed, 13/14: wrong result.
  CHECK(WEXITSTATUS(status) == 0);
}
