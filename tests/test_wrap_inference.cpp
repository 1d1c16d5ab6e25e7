// WrapInference: the shared elapsed-time inference of whole-wrap losses (LVPM, HVPM, PPK2). A
// synthetic device at 5000 Hz sends a 10-sample chunk every 2 ms (one wrap = 160 samples, as an
// LVPM's 16 packets); chunk k truly ends at sample 10 * (k + 1). Arrival times are injected, so
// every scenario is exact and the truth is known: a stall delays data, a loss removes it.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "meltrig/fw/wrap_inference.hpp"

namespace {

namespace fw = meltrig::fw;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kPeriodNs = 2 * kMs;
constexpr double kWrap = 160.0;

fw::WrapConfig config() {
  fw::WrapConfig c;
  c.rate_hz = 5000.0;
  c.wrap_samples = kWrap;
  return c;
}

/// Pushes chunks and keeps every placement. A lost chunk never arrives: the caller's index (what
/// the counter saw) then runs `lost` samples behind the truth.
struct Feed {
  fw::WrapInference w;
  std::mt19937_64 rng{7};
  std::vector<fw::WrapPlacement> placed;
  std::uint64_t lost = 0;  ///< samples lost so far (the truth)
  std::int64_t last = 0;

  explicit Feed(fw::WrapConfig c = config()) : w(c) {}
  /// Chunk k (true end 10 (k + 1)) arrives `late_ns` after it was complete, plus 0..2 ms jitter.
  void chunk(std::uint32_t k, std::int64_t late_ns = 0, fw::WrapEvidence ev = {}) {
    const std::int64_t done = 1'000 * kMs + static_cast<std::int64_t>(k + 1) * kPeriodNs;
    last = std::max(last, done + late_ns + static_cast<std::int64_t>(rng() % (2 * kMs)));
    w.push(10ull * (k + 1) - lost, last, k, ev);
    drain();
  }
  /// Chunks [k, k + n) vanish; returns the next chunk that arrives.
  std::uint32_t lose(std::uint32_t k, std::uint32_t n) {
    lost += 10ull * n;
    return k + n;
  }
  void drain() {
    w.drain([&](const fw::WrapPlacement& p) { placed.push_back(p); });
  }
  void finish() {
    w.finish();
    drain();
  }
  /// The index shift the inference gave chunk k's samples (after its loss point).
  std::uint64_t shift(std::uint32_t k) const { return placed[k].offset + placed[k].wrap_lost; }
};

}  // namespace

TEST_CASE("wrap inference: a device stall whose catch-up takes 8 s is never taken for a loss") {
  // The device (an emulator on a starved host) falls 1 s behind and then catches up slowly over
  // 8 s; every read waits for its data, so the late data looks like a device that is behind.
  Feed f;
  const std::uint32_t n = 12'000;  // 24 s
  for (std::uint32_t k = 0; k < n; ++k) {
    std::int64_t late = 0;
    const std::int64_t t = static_cast<std::int64_t>(k) * kPeriodNs;
    if (t >= 4'000 * kMs && t < 5'000 * kMs) late = t - 4'000 * kMs;  // falls behind
    if (t >= 5'000 * kMs && t < 13'000 * kMs) late = 1'000 * kMs - (t - 5'000 * kMs) / 8;
    f.chunk(k, late);
  }
  f.finish();
  REQUIRE(f.placed.size() == n);
  for (std::uint32_t k = 0; k < n; ++k)
    REQUIRE(f.shift(k) == 0);
  const auto& c = f.w.counters();
  CHECK(c.wrap_gaps == 0);
  CHECK(c.inferred_gaps == 0);
  CHECK(c.stalls_absorbed >= 1);
  CHECK(c.longest_hold_ns >= 8'000 * kMs);
}

TEST_CASE(
    "wrap inference: a catch-up in steps with 1 s pauses over 12 s is never taken for a loss") {
  // An emulator and a capture that starve each other: the device falls 3 s behind, then works
  // the backlog off in six steps of 0.5 s, each followed by a 1 s pause in which every read waits
  // for its data at a flat, raised level. The hold lasts 15 s, longer than the horizon.
  Feed f;
  const std::uint32_t n = 12'500;  // 25 s
  for (std::uint32_t k = 0; k < n; ++k) {
    const std::int64_t t = static_cast<std::int64_t>(k) * kPeriodNs;
    std::int64_t late = 0;
    if (t >= 4'000 * kMs && t < 7'000 * kMs) late = t - 4'000 * kMs;
    if (t >= 7'000 * kMs && t < 19'000 * kMs) {
      const std::int64_t step = (t - 7'000 * kMs) / (2'000 * kMs),
                         in = (t - 7'000 * kMs) % (2'000 * kMs);
      late = 3'000 * kMs - step * 500 * kMs - std::min(in, 1'000 * kMs) / 2;
    }
    f.chunk(k, late);
  }
  f.finish();
  REQUIRE(f.placed.size() == n);
  for (std::uint32_t k = 0; k < n; ++k)
    REQUIRE(f.shift(k) == 0);
  CHECK(f.w.counters().wrap_gaps == 0);
  CHECK(f.w.counters().inferred_gaps == 0);
  CHECK(f.w.counters().longest_hold_ns >= 13'000 * kMs);
}

TEST_CASE("wrap inference: a PPK2-sized wrap lost under 3 ms of latency jitter is still found") {
  // 100 kHz, a 64-sample wrap (6-bit counter), a 500-sample read every 5 ms arriving 0..3 ms late:
  // ten wraps vanish unseen. The catch-up tolerance (5 ms) is far above the spread of the
  // windowed minimum latency, so the flat raised level is decided at the horizon, in place.
  fw::WrapConfig c;
  c.rate_hz = 100'000.0;
  c.wrap_samples = 64.0;
  fw::WrapInference w(c);
  std::mt19937_64 rng{11};
  std::vector<fw::WrapPlacement> placed;
  std::uint64_t lost = 0;
  for (std::uint32_t k = 0; k < 4'000; ++k) {  // 20 s
    if (k == 1'000) lost = 640;
    const std::int64_t done = 1'000 * kMs + static_cast<std::int64_t>(k + 1) * 5 * kMs;
    w.push(500ull * (k + 1) - lost, done + static_cast<std::int64_t>(rng() % (3 * kMs)), k);
    w.drain([&](const fw::WrapPlacement& p) { placed.push_back(p); });
  }
  w.finish();
  w.drain([&](const fw::WrapPlacement& p) { placed.push_back(p); });
  REQUIRE(placed.size() == 4'000);
  CHECK(placed[1'000].wrap_lost == 640);
  CHECK_FALSE(placed[1'000].inferred);
  for (std::uint32_t k = 0; k < 4'000; ++k)
    REQUIRE(placed[k].offset + placed[k].wrap_lost == (k >= 1'000 ? 640u : 0u));
  CHECK(w.counters().wrap_gaps == 1);
  CHECK(w.counters().inferred_gaps == 0);
}

TEST_CASE("wrap inference: a loss the counter cannot see is decided only after the horizon") {
  Feed f;
  for (std::uint32_t k = 0; k < 1000; ++k)
    f.chunk(k);
  // Exactly one wrap (16 chunks, 160 samples) vanishes: the counter sees nothing.
  std::uint32_t k = f.lose(1000, 16);
  // 9.9 s later it is still held: a stall of that length would still be possible.
  for (; k < 1016 + 4950; ++k)
    f.chunk(k);
  CHECK(f.placed.size() == 1000);
  CHECK(f.w.held() == 4950);
  for (; k < 8000; ++k)
    f.chunk(k);
  CHECK(f.w.held() == 0);
  f.finish();
  REQUIRE(f.placed.size() == 8000 - 16);
  CHECK(f.placed[1000].tag == 1016);
  CHECK(f.placed[1000].wrap_lost == 160);
  CHECK_FALSE(f.placed[1000].inferred);
  for (std::uint32_t j = 0; j < f.placed.size(); ++j)
    REQUIRE(f.shift(j) == (j >= 1000 ? 160u : 0u));
  CHECK(f.w.counters().wrap_gaps == 1);
  CHECK(f.w.counters().wrap_lost == 160);
}

TEST_CASE("wrap inference: with the counter's evidence a loss is decided after the settle time") {
  Feed f;
  for (std::uint32_t k = 0; k < 1000; ++k)
    f.chunk(k);
  // 20 chunks vanish; the counter sees 4 of them (already in its indices): 16 remain to find.
  std::uint32_t k = f.lose(1000, 20);
  f.lost -= 40;
  f.chunk(k++, 0, fw::WrapEvidence{true});
  for (; k < 1620; ++k)  // 1.2 s
    f.chunk(k);
  CHECK(f.w.held() == 0);
  f.finish();
  CHECK(f.placed[1000].wrap_lost == 160);
  CHECK(f.w.counters().wrap_gaps == 1);
}

TEST_CASE("wrap inference: undecided at the end of the stream, the estimate is marked inferred") {
  // A loss the counter saw, 100 ms before the end: too short to settle.
  Feed f;
  for (std::uint32_t k = 0; k < 1000; ++k)
    f.chunk(k);
  const std::uint32_t first = f.lose(1000, 16);
  f.chunk(first, 0, fw::WrapEvidence{true});
  for (std::uint32_t k = first + 1; k < first + 50; ++k)
    f.chunk(k);
  CHECK(f.w.held() == 50);
  f.finish();
  REQUIRE(f.placed.size() == 1050);
  CHECK(f.placed[1000].wrap_lost == 160);
  CHECK(f.placed[1000].inferred);
  CHECK(f.placed[1000].uncertainty == 160);
  CHECK(f.shift(1049) == 160);
  const auto& c = f.w.counters();
  CHECK(c.wrap_gaps == 0);
  CHECK(c.inferred_gaps == 1);
  CHECK(c.inferred_lost == 160);
  CHECK(c.inferred_uncertainty == 160);

  // Nothing the counter saw and never persistent: a stall by the horizon rule (no gap at all).
  Feed g;
  for (std::uint32_t k = 0; k < 1000; ++k)
    g.chunk(k);
  for (std::uint32_t k = 1000; k < 1050; ++k)
    g.chunk(k, 100 * kMs);
  g.finish();
  REQUIRE(g.placed.size() == 1050);
  CHECK(g.shift(1049) == 0);
  CHECK(g.w.counters().inferred_gaps == 0);
  CHECK(g.w.counters().stalls_absorbed == 1);
}

TEST_CASE("wrap inference: a host far behind keeps the hold growing until the memory bound") {
  // A loss the counter saw, then the host never waits for data again (a backlog): no read
  // measures the device, so the loss cannot be decided; at the bound it is placed as inferred.
  auto cfg = config();
  cfg.max_held_s = 4.0;
  Feed f(cfg);
  for (std::uint32_t k = 0; k < 1000; ++k)
    f.chunk(k);
  const std::uint32_t first = f.lose(1000, 32);
  f.chunk(first, 0, fw::WrapEvidence{true, false});
  std::uint32_t k = first + 1;
  for (; k < first + 1900; ++k)  // 3.8 s of samples: under the bound
    f.chunk(k, 0, fw::WrapEvidence{false, false});
  CHECK(f.w.held() == 1900);
  for (; k < first + 2100; ++k)
    f.chunk(k, 0, fw::WrapEvidence{false, false});
  CHECK(f.w.held() < 100);
  CHECK(f.placed[1000].inferred);
  CHECK(f.placed[1000].wrap_lost == 320);
  CHECK(f.w.counters().inferred_gaps == 1);
  CHECK(f.w.counters().most_held >= 2000);
}

TEST_CASE("wrap inference: off, chunks pass straight through with no offset") {
  auto cfg = config();
  cfg.infer_wraps = false;
  Feed f(cfg);
  for (std::uint32_t k = 0; k < 100; ++k)
    f.chunk(k, k == 50 ? 500 * kMs : 0);
  CHECK(f.placed.size() == 100);
  CHECK(f.w.held() == 0);
  CHECK(f.w.counters().stalls_absorbed == 0);
}
