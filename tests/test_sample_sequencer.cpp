// SampleSequencer: sample indices for LVPM data packets from the 4-bit sequence counter plus the
// elapsed-time cross-check. Every scenario is a synthetic device at 5000 Hz sending 10 samples per
// packet (one packet every 2 ms); packet k truly starts at sample 10 * k, and its tag is k, so each
// placement is checked against that truth. Arrival times are injected (ns).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "meltrig/fw/lvpm_protocol.hpp"

namespace {

namespace lv = meltrig::fw::lvpm;

constexpr std::uint8_t kN = 10;
constexpr double kPeriodNs = 2'000'000.0;  // 10 samples at 5000 Hz

/// The device side: packet k's samples are complete at t_start + (k + 1) * period; the host sees
/// it after a random latency of 0..max_jitter, never before an earlier packet (a serial stream is
/// in order).
struct Device {
  std::mt19937_64 rng{42};
  std::int64_t max_jitter_ns = 3'000'000;
  double period_ns = kPeriodNs;
  std::int64_t t_start = 7'000'000'000;
  std::int64_t last = 0;

  std::int64_t nominal(std::uint64_t k) const {
    return t_start + static_cast<std::int64_t>(static_cast<double>(k + 1) * period_ns);
  }
  std::int64_t arrival(std::uint64_t k) {
    std::int64_t j =
        max_jitter_ns > 0
            ? static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(max_jitter_ns + 1))
            : 0;
    last = std::max(last, nominal(k) + j);
    return last;
  }
};

/// The host side: pushes, drains after every push, keeps everything placed.
struct Host {
  lv::SampleSequencer seq{lv::SampleSequencer::Config{}};
  std::vector<lv::PlacedPacket> placed;
  std::uint64_t data_pushed = 0;

  void data(std::uint64_t k, std::int64_t t) {
    seq.push(static_cast<std::uint8_t>(k & 0x0F), true, kN, t, static_cast<std::uint32_t>(k));
    ++data_pushed;
    drain();
  }
  void cal(std::uint8_t s, std::int64_t t) {
    seq.push(static_cast<std::uint8_t>(s & 0x0F), false, kN, t, 0xFFFFFFFF);
    drain();
  }
  void drain() {
    seq.drain([&](const lv::PlacedPacket& p) { placed.push_back(p); });
  }
  void finish() {
    seq.finish();
    drain();
  }
  /// Number of placed packets whose first index is not 10 * (true packet number); also checks
  /// release order and the sample count.
  int misplaced() const {
    int bad = 0;
    for (std::size_t i = 0; i < placed.size(); ++i) {
      const auto& p = placed[i];
      bool ok = p.first_index == std::uint64_t{kN} * p.tag && p.n == kN &&
                (i == 0 || placed[i - 1].tag < p.tag);
      if (!ok && bad++ < 3)
        MESSAGE("packet " << p.tag << " placed at " << p.first_index << ", truth " << kN * p.tag);
    }
    return bad;
  }
  const lv::PlacedPacket* find(std::uint32_t tag) const {
    for (const auto& p : placed)
      if (p.tag == tag) return &p;
    return nullptr;
  }
};

/// Sends packets 0..total-1 except [gap_at, gap_at + gap).
void run_with_gap(Host& h, Device& d, std::uint64_t total, std::uint64_t gap_at,
                  std::uint64_t gap) {
  for (std::uint64_t k = 0; k < total; ++k) {
    if (k >= gap_at && k < gap_at + gap) continue;
    h.data(k, d.arrival(k));
  }
}

TEST_CASE("sequencer: without loss the indices are contiguous and nothing is counted") {
  Device d;
  Host h;
  run_with_gap(h, d, 2000, 0, 0);
  // Nothing is held back: every packet is out before finish().
  CHECK(h.seq.held() == 0);
  REQUIRE(h.placed.size() == 2000);
  CHECK(h.misplaced() == 0);
  for (const auto& p : h.placed) {
    CHECK(p.lost_before == 0);
    CHECK_FALSE(p.lost_by_sequence);
    CHECK(p.wrap_lost == 0);
  }
  const auto& c = h.seq.counters();
  CHECK(c.packets == 2000);
  CHECK(c.sequence_gaps == 0);
  CHECK(c.sequence_lost == 0);
  CHECK(c.wrap_gaps == 0);
  CHECK(c.wrap_lost == 0);
  CHECK(h.seq.next_index() == 20000);
}

TEST_CASE("sequencer: a 3-packet gap is seen by the sequence counter: 30 samples lost") {
  Device d;
  Host h;
  run_with_gap(h, d, 600, 100, 3);
  CHECK(h.seq.held() == 0);
  REQUIRE(h.placed.size() == 597);
  CHECK(h.misplaced() == 0);
  const auto* p = h.find(103);
  REQUIRE(p != nullptr);
  CHECK(p->first_index == 1030);
  CHECK(p->lost_before == 30);
  CHECK(p->lost_by_sequence);
  CHECK(p->wrap_lost == 0);
  for (const auto& q : h.placed)
    if (q.tag != 103) CHECK(q.lost_before == 0);
  const auto& c = h.seq.counters();
  CHECK(c.packets == 597);
  CHECK(c.sequence_gaps == 1);
  CHECK(c.sequence_lost == 30);
  CHECK(c.wrap_gaps == 0);
  CHECK(c.wrap_lost == 0);
}

TEST_CASE(
    "sequencer: a 20-packet gap is placed from elapsed time once the settle time has passed") {
  // Seq jumps from 999 & 15 = 7 to 1020 & 15 = 12: the counter sees 4 missing packets (20 mod 16)
  // = 40 samples; the other 16 packets (160 samples) only show as a lasting residual of 160 samples
  // over the latency floor. Packets keep coming for ~2 s after the gap with 0-3 ms jitter.
  Device d;
  Host h;
  run_with_gap(h, d, 1000, 0, 0);
  REQUIRE(h.placed.size() == 1000);
  h.data(1020, d.arrival(1020));
  // The first packet after the gap sits 160 samples above the floor: held, not yet placed.
  CHECK(h.seq.held() == 1);
  CHECK(h.placed.size() == 1000);
  for (std::uint64_t k = 1021; k < 3000; ++k)
    h.data(k, d.arrival(k));
  // Decided without finish(): nothing is held and everything is out.
  CHECK(h.seq.held() == 0);
  REQUIRE(h.placed.size() == 2980);
  CHECK(h.misplaced() == 0);
  const auto* p = h.find(1020);
  REQUIRE(p != nullptr);
  CHECK(p->first_index == 10200);
  CHECK(p->lost_before == 200);
  CHECK(p->wrap_lost == 160);
  CHECK(p->lost_by_sequence);
  const auto& c = h.seq.counters();
  CHECK(c.sequence_gaps == 1);
  CHECK(c.sequence_lost == 40);
  CHECK(c.wrap_gaps == 1);
  CHECK(c.wrap_lost == 160);
  CHECK(h.seq.next_index() == 30000);
  for (const auto& q : h.placed)
    if (q.tag != 1020) CHECK(q.lost_before == 0);
}

TEST_CASE("sequencer: a 16-packet gap is invisible to the counter and found after the horizon") {
  Device d;
  Host h;
  run_with_gap(h, d, 6400, 700, 16);  // 11.4 s after the gap: past the 10 s horizon
  CHECK(h.seq.held() == 0);
  REQUIRE(h.placed.size() == 6384);
  CHECK(h.misplaced() == 0);
  const auto* p = h.find(716);
  REQUIRE(p != nullptr);
  CHECK(p->first_index == 7160);
  CHECK(p->lost_before == 160);
  CHECK(p->wrap_lost == 160);
  CHECK_FALSE(p->lost_by_sequence);
  const auto& c = h.seq.counters();
  CHECK(c.sequence_gaps == 0);
  CHECK(c.sequence_lost == 0);
  CHECK(c.wrap_gaps == 1);
  CHECK(c.wrap_lost == 160);
}

TEST_CASE("sequencer: gaps of 1 to 50 packets all land every later packet on its true index") {
  for (std::uint64_t gap : {1u, 3u, 15u, 16u, 17u, 20u, 31u, 32u, 33u, 35u, 47u, 48u, 50u}) {
    CAPTURE(gap);
    Device d;
    d.rng.seed(gap);
    Host h;
    // Gaps of whole wraps (16, 32, 48) are only decided after the 10 s horizon.
    run_with_gap(h, d, 6000 + gap, 400, gap);
    CHECK(h.seq.held() == 0);
    REQUIRE(h.placed.size() == 6000);
    CHECK(h.misplaced() == 0);
    const auto* p = h.find(static_cast<std::uint32_t>(400 + gap));
    REQUIRE(p != nullptr);
    CHECK(p->lost_before == kN * gap);
    CHECK(p->wrap_lost == kN * 16 * (gap / 16));
    CHECK(p->lost_by_sequence == (gap % 16 != 0));
    const auto& c = h.seq.counters();
    CHECK(c.sequence_lost + c.wrap_lost == kN * gap);
    CHECK(c.wrap_gaps == (gap >= 16 ? 1u : 0u));
  }
}

/// Packets whose normal arrival falls in [stall_at, stall_at + stall) arrive at the end of the
/// stall, spread over `drain_ns`.
void run_with_stall(Host& h, Device& d, std::uint64_t total, std::uint64_t stall_at_k,
                    std::int64_t stall_ns, std::int64_t drain_ns) {
  const std::int64_t s0 = d.nominal(stall_at_k);
  const std::int64_t s1 = s0 + stall_ns;
  for (std::uint64_t k = 0; k < total; ++k) {
    std::int64_t t = d.arrival(k);
    if (d.nominal(k) >= s0 && d.nominal(k) < s1) {
      t = s1 + drain_ns * static_cast<std::int64_t>(d.nominal(k) - s0) / stall_ns;
      d.last = std::max(d.last, t);
      t = d.last;
    }
    h.data(k, t);
  }
}

TEST_CASE("sequencer: a host stall followed by a burst is absorbed without inventing loss") {
  struct Case {
    std::int64_t stall_ns, drain_ns;
  };
  for (const auto& cs : {Case{300'000'000, 0}, Case{300'000'000, 10'000'000},
                         Case{1'500'000'000, 0}, Case{2'500'000'000, 20'000'000}}) {
    CAPTURE(cs.stall_ns);
    CAPTURE(cs.drain_ns);
    Device d;
    Host h;
    run_with_stall(h, d, 3000, 1000, cs.stall_ns, cs.drain_ns);
    CHECK(h.seq.held() == 0);
    REQUIRE(h.placed.size() == 3000);
    CHECK(h.misplaced() == 0);
    for (const auto& p : h.placed)
      CHECK(p.lost_before == 0);
    const auto& c = h.seq.counters();
    CHECK(c.stalls_absorbed >= 1);
    CHECK(c.wrap_gaps == 0);
    CHECK(c.wrap_lost == 0);
    CHECK(c.sequence_gaps == 0);
    CHECK(h.seq.next_index() == 30000);
  }
}

TEST_CASE("sequencer: calibration packets take sequence numbers but no sample indices") {
  // After every 25th data packet the device sends a zero- and a reference-calibration packet; the
  // sequence counter runs over all three kinds.
  Device d;
  Host h;
  std::uint8_t s = 0;
  auto next_seq = [&] { return static_cast<std::uint8_t>(s++ & 0x0F); };
  std::uint64_t pushes = 0;
  for (std::uint64_t k = 0; k < 1000; ++k) {
    std::int64_t t = d.arrival(k);
    h.seq.push(next_seq(), true, kN, t, static_cast<std::uint32_t>(k));
    ++pushes;
    if (k % 25 == 24) {
      h.seq.push(next_seq(), false, kN, t, 0xFFFFFFFF);
      h.seq.push(next_seq(), false, kN, t, 0xFFFFFFFF);
      pushes += 2;
    }
    h.drain();
  }
  REQUIRE(h.placed.size() == 1000);
  CHECK(h.misplaced() == 0);
  const auto& c = h.seq.counters();
  CHECK(c.packets == pushes);
  CHECK(c.sequence_gaps == 0);
  CHECK(c.wrap_gaps == 0);
  CHECK(h.seq.next_index() == 10000);

  // As documented, a lost calibration packet cannot be told from a lost data packet: the counter
  // gap is charged as N samples before the next data packet.
  Host h2;
  h2.seq.push(0, true, kN, 1'000'000'000, 0);
  h2.seq.push(2, true, kN, 1'002'000'000, 1);  // seq 1 (a calibration packet) never came
  h2.drain();
  REQUIRE(h2.placed.size() == 2);
  CHECK(h2.placed[1].first_index == 20);
  CHECK(h2.placed[1].lost_before == 10);
  CHECK(h2.placed[1].lost_by_sequence);
}

TEST_CASE("sequencer: finish() decides and releases packets still held at the end") {
  // 20 lost: the counter sees 4 (40 samples); 16 more show in elapsed time, but only 20 packets
  // (40 ms) follow, less than the settle time: at the end the estimate is placed as inferred.
  Device d;
  Host h;
  run_with_gap(h, d, 540, 500, 20);
  CHECK(h.seq.held() == 20);
  CHECK(h.placed.size() == 500);
  h.finish();
  CHECK(h.seq.held() == 0);
  REQUIRE(h.placed.size() == 520);
  CHECK(h.misplaced() == 0);
  const auto* p = h.find(520);
  REQUIRE(p != nullptr);
  CHECK(p->lost_before == 200);
  CHECK(p->wrap_lost == 160);
  CHECK(p->wrap_inferred);
  CHECK(p->wrap_uncertainty == 160);
  CHECK(h.seq.counters().inferred_lost == 160);
  CHECK(h.seq.counters().wrap_lost == 0);

  // finish() on a sequencer with nothing held changes nothing.
  Device d2;
  Host h2;
  run_with_gap(h2, d2, 100, 0, 0);
  h2.finish();
  h2.finish();
  CHECK(h2.placed.size() == 100);
  CHECK(h2.misplaced() == 0);
  CHECK(h2.seq.counters().stalls_absorbed == 0);
}

TEST_CASE("sequencer: 50 ppm clock drift over 60 s of packets creates no false loss") {
  for (double ppm : {50.0, -50.0}) {
    CAPTURE(ppm);
    Device d;
    d.period_ns = kPeriodNs * (1.0 + ppm * 1e-6);
    Host h;
    run_with_gap(h, d, 30000, 0, 0);  // 60 s
    CHECK(h.seq.held() == 0);
    REQUIRE(h.placed.size() == 30000);
    CHECK(h.misplaced() == 0);
    const auto& c = h.seq.counters();
    CHECK(c.wrap_gaps == 0);
    CHECK(c.wrap_lost == 0);
    CHECK(c.sequence_gaps == 0);
  }
}

}  // namespace
