// Nordic PPK2: codec (commands, metadata, sample words, conversion), the streaming decoder and
// its counter tracking on hand-made byte streams, the elapsed-time wrap check on injected
// arrival times, and end-to-end captures from the pty emulator through the real driver into
// HDF5, read back with h5py, with every fault the emulator can inject.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "meltrig/fixtures/ppk2_emulator.hpp"
#include "meltrig/fw/ppk2_protocol.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/ppk2_monitor.hpp"
#include "meltrig/rig/registry.hpp"
#include "test_support.hpp"

using namespace meltrig;
using meltrig::test::TempDir;
namespace pp = meltrig::fw::ppk2;

namespace {

using Bytes = std::vector<std::uint8_t>;

std::string errmsg(const Error& e) {
  return e.describe();
}

// ---------------------------------------------------------------------------------------------
// Hand-made streams: sample i has a word that identifies it (ADC, range and logic from i).

std::uint32_t word_for(std::uint64_t i) {
  pp::SampleWord s;
  s.adc = static_cast<std::uint16_t>((i * 37 + 11) & pp::kAdcMask);
  s.range = static_cast<std::uint8_t>((i / 7) % pp::kRanges);
  s.counter = static_cast<std::uint8_t>(i & pp::kCounterMask);
  s.logic = static_cast<std::uint8_t>(i & 0xFF);
  return pp::pack_word(s);
}

Bytes bytes_of_words(const std::vector<std::uint32_t>& words) {
  Bytes b;
  for (auto w : words)
    pp::append_word(w, b);
  return b;
}

/// Words for samples [0, n) minus `lost` (set of indices).
std::vector<std::uint32_t> stream(std::uint64_t n, const std::vector<std::uint64_t>& lost = {}) {
  std::vector<std::uint32_t> w;
  for (std::uint64_t i = 0; i < n; ++i)
    if (std::find(lost.begin(), lost.end(), i) == lost.end()) w.push_back(word_for(i));
  return w;
}

/// Everything a decoder produced, one row per index (fill_missing on).
struct Decoded {
  std::vector<float> amps;
  std::vector<std::uint8_t> logic;
  std::vector<pp::DecoderGap> gaps;
  pp::DecoderCounters counters;
  bool continuous = true;  ///< every block started where the previous one ended
};

Decoded decode(std::span<const std::uint8_t> bytes, const pp::Converter& conv,
               std::size_t piece = 4096, std::size_t out_cap = 256) {
  pp::StreamDecoder dec(conv);
  Decoded d;
  std::vector<float> amps(out_cap);
  std::vector<std::uint8_t> logic(out_cap);
  auto on_block = [&](std::uint64_t first, std::size_t n) {
    if (first != d.amps.size()) d.continuous = false;
    d.amps.insert(d.amps.end(), amps.begin(), amps.begin() + static_cast<long>(n));
    d.logic.insert(d.logic.end(), logic.begin(), logic.begin() + static_cast<long>(n));
  };
  auto on_gap = [&](const pp::DecoderGap& g) { d.gaps.push_back(g); };
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    dec.feed(bytes.subspan(at, std::min(piece, bytes.size() - at)), pp::SampleSpans{amps, logic},
             on_block, on_gap);
  }
  dec.finish(pp::SampleSpans{amps, logic}, on_block, on_gap);
  d.counters = dec.counters();
  CHECK(dec.next_index() == d.amps.size());
  // Every byte and every index is accounted for.
  const auto& c = d.counters;
  CHECK(c.bytes == bytes.size());
  CHECK(c.bytes == 4 * (c.samples + c.duplicate_samples) + c.discarded_bytes);
  CHECK(dec.next_index() == c.samples + c.missing_samples);
  return d;
}

bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

/// Checks that row i holds sample i for every i in [0, n) except `missing` (NaN, logic 0).
void check_rows(const Decoded& d, const pp::Converter& conv, std::uint64_t n,
                const std::vector<std::uint64_t>& missing = {}) {
  REQUIRE(d.continuous);
  REQUIRE(d.amps.size() == n);
  std::size_t bad = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const bool miss = std::find(missing.begin(), missing.end(), i) != missing.end();
    const float want_a = miss ? std::numeric_limits<float>::quiet_NaN() : conv.amps(word_for(i));
    const std::uint8_t want_l = miss ? 0 : static_cast<std::uint8_t>(i & 0xFF);
    if (!same_float(d.amps[i], want_a) || d.logic[i] != want_l) {
      if (++bad <= 5) {
        INFO("row " << i << ": amps " << d.amps[i] << " want " << want_a << ", logic "
                    << int(d.logic[i]) << " want " << int(want_l));
        CHECK(false);
      }
    }
  }
  CHECK(bad == 0);
}

std::vector<std::uint64_t> range_of(std::uint64_t first, std::uint64_t count) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = first; i < first + count; ++i)
    v.push_back(i);
  return v;
}

}  // namespace

// =============================================================================================
// Commands

TEST_CASE("ppk2 codec: every command encodes to its documented bytes") {
  CHECK(pp::cmd_get_metadata() == Bytes{0x19});
  CHECK(pp::cmd_start() == Bytes{0x06});
  CHECK(pp::cmd_stop() == Bytes{0x07});
  CHECK(pp::cmd_reset() == Bytes{0x20});
  CHECK(pp::cmd_set_power_mode(pp::PowerMode::ampere) == Bytes{0x11, 0x01});
  CHECK(pp::cmd_set_power_mode(pp::PowerMode::source) == Bytes{0x11, 0x02});
  CHECK(pp::cmd_set_dut_power(false) == Bytes{0x0C, 0x00});
  CHECK(pp::cmd_set_dut_power(true) == Bytes{0x0C, 0x01});
  // Source voltage: mV as u16 big-endian. 3700 = 0x0E74, 800 = 0x0320, 5000 = 0x1388.
  CHECK(pp::cmd_set_source_voltage_mv(3700).value() == Bytes{0x0D, 0x0E, 0x74});
  CHECK(pp::cmd_set_source_voltage_mv(800).value() == Bytes{0x0D, 0x03, 0x20});
  CHECK(pp::cmd_set_source_voltage_mv(5000).value() == Bytes{0x0D, 0x13, 0x88});
  CHECK(pp::cmd_set_source_voltage(3.7).value() == Bytes{0x0D, 0x0E, 0x74});
  CHECK(pp::cmd_set_source_voltage(1.8004).value() == Bytes{0x0D, 0x07, 0x08});  // 1800 mV
  for (int mv : {799, 5001, 0, -1, 65535}) {
    auto r = pp::cmd_set_source_voltage_mv(mv);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find(std::to_string(mv) + " mV") != std::string::npos);
  }
  for (double v : {0.7994, 5.0006, std::nan(""), -3.0}) {
    auto r = pp::cmd_set_source_voltage(v);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
}

TEST_CASE("ppk2 codec: the device-side command parser splits a stream and resyncs on garbage") {
  using K = pp::Command::Kind;
  Bytes s;
  auto add = [&](const Bytes& b) { s.insert(s.end(), b.begin(), b.end()); };
  add(pp::cmd_get_metadata());
  add({0xFF, 0x00});  // two unknown bytes
  add(pp::cmd_set_source_voltage_mv(3300).value());
  add(pp::cmd_set_power_mode(pp::PowerMode::source));
  add({0x11, 0x07});  // mode 7 is invalid: 0x11 is dropped, then 0x07 is a stop
  add(pp::cmd_set_dut_power(true));
  add({0x0D, 0x00, 0x10});  // 16 mV: 0x0D dropped, 0x00 and 0x10 are unknown
  add(pp::cmd_start());
  add({0x0C, 0x02});  // DUT power 2: 0x0C dropped, 0x02 unknown
  add(pp::cmd_reset());
  add({0x0D, 0x13});  // incomplete at the end: stays pending

  const std::vector<std::pair<K, std::uint16_t>> want = {
      {K::get_metadata, 0}, {K::set_source_voltage, 3300}, {K::set_power_mode, 2},
      {K::stop, 0},         {K::set_dut_power, 1},         {K::start, 0},
      {K::reset, 0}};
  auto run = [&](std::size_t split_at, std::size_t piece) {
    pp::CommandParser parser;
    std::vector<std::pair<K, std::uint16_t>> got;
    auto on = [&](const pp::Command& c) { got.emplace_back(c.kind, c.value); };
    std::span<const std::uint8_t> all(s);
    parser.feed(all.first(split_at), on);
    for (std::size_t at = split_at; at < all.size(); at += piece)
      parser.feed(all.subspan(at, std::min(piece, all.size() - at)), on);
    CHECK(got == want);
    const auto& c = parser.counters();
    CHECK(c.commands == 7);
    CHECK(c.unknown_opcodes == 5);    // FF, 00; the 00 10 after a dropped 0D; the 02 after 0C
    CHECK(c.invalid_arguments == 3);  // 11 07, 0D 00 10, 0C 02
    CHECK(c.discarded_bytes == 8);
    CHECK(parser.pending() == 2);
    // Every byte is in a command, discarded, or pending.
    CHECK(1 + 3 + 2 + 1 + 2 + 1 + 1 + c.discarded_bytes + parser.pending() == s.size());
  };
  for (std::size_t split = 0; split <= s.size(); ++split)
    run(split, s.size());
  run(0, 1);

  auto bad = pp::parse_command(Bytes{0x11, 0x09});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("0x11") != std::string::npos);
  CHECK(bad.error().message.find("0x09") != std::string::npos);
  auto unknown = pp::parse_command(Bytes{0x42});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message.find("0x42") != std::string::npos);
  CHECK(pp::parse_command(Bytes{0x0D, 0x13, 0x88}).value().value == 5000);
  CHECK_FALSE(pp::parse_command(Bytes{0x0D, 0x13, 0x89}).ok());  // 5001 mV
}

// =============================================================================================
// Metadata

TEST_CASE("ppk2 codec: a complete metadata block parses every key") {
  const std::string text =
      "Calibrated: 1\r\n"
      "R0: 1031.64\r\nR1: 101.65\r\nR2: 10.15\r\nR3: 0.94\r\nR4: 0.043\r\n"
      "GS0: 0\r\nGS1: 0.001\r\nGS2: 0\r\nGS3: 0.0012\r\nGS4: 0\r\n"
      "GI0: 1.0021\r\nGI1: 0.9987\r\nGI2: 1\r\nGI3: 0.9994\r\nGI4: 1.0008\r\n"
      "O0: 112\r\nO1: 75\r\nO2: 66.5\r\nO3: 57\r\nO4: 72\r\n"
      "S0: 2e-07\r\nS1: 0\r\nS2: 0\r\nS3: 0\r\nS4: 0\r\n"
      "I0: 1e-07\r\nI1: -2e-07\r\nI2: 0\r\nI3: 0\r\nI4: 0\r\n"
      "UG0: 1\r\nUG1: 1\r\nUG2: 1\r\nUG3: 1.01\r\nUG4: 1\r\n"
      "HW: 9173\r\nIA: 56\r\nVDD: 3700\r\nmode: 2\r\n\r\nEND\r\n"
      "this line after END is ignored\n";
  auto m = pp::parse_metadata(text);
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? "" : errmsg(m.error())));
  CHECK(m->calibrated);
  CHECK(m->r == std::array<double, 5>{1031.64, 101.65, 10.15, 0.94, 0.043});
  CHECK(m->gs == std::array<double, 5>{0, 0.001, 0, 0.0012, 0});
  CHECK(m->gi == std::array<double, 5>{1.0021, 0.9987, 1, 0.9994, 1.0008});
  CHECK(m->o == std::array<double, 5>{112, 75, 66.5, 57, 72});
  CHECK(m->s == std::array<double, 5>{2e-7, 0, 0, 0, 0});
  CHECK(m->i == std::array<double, 5>{1e-7, -2e-7, 0, 0, 0});
  CHECK(m->ug == std::array<double, 5>{1, 1, 1, 1.01, 1});
  CHECK(m->hw == std::optional<std::int64_t>(9173));
  CHECK(m->ia == std::optional<std::int64_t>(56));
  CHECK_FALSE(m->defaults_used());
  CHECK(m->missing_keys.empty());
  REQUIRE(m->extra.size() == 2);
  CHECK(m->extra[0] == std::pair<std::string, std::string>{"VDD", "3700"});
  CHECK(m->extra_number("VDD") == std::optional<double>(3700));
  CHECK(m->extra_number("mode") == std::optional<double>(2));
  CHECK_FALSE(m->extra_number("nope").has_value());

  // The emulator's formatter round-trips exactly (the driver must convert with its doubles).
  auto e = fixtures::Ppk2EmulatorConfig::default_metadata();
  e.r[2] = 10.150000000000000355;
  e.o[1] = 1.0 / 3.0;
  auto back = pp::parse_metadata(pp::format_metadata(e));
  REQUIRE(back.ok());
  CHECK(back->r == e.r);
  CHECK(back->o == e.o);
  CHECK(back->gi == e.gi);
  CHECK(back->hw == e.hw);
  CHECK(back->calibrated == e.calibrated);
  CHECK(pp::metadata_keys().size() == 38);
}

TEST_CASE("ppk2 codec: missing metadata keys fall back to the documented defaults, flagged") {
  auto m = pp::parse_metadata("R0: 1000\nO3: 57\nHW: 1\nEND");  // END without a newline
  REQUIRE(m.ok());
  CHECK(m->defaults_used());
  CHECK(m->r == std::array<double, 5>{1000, 101.65, 10.15, 0.94, 0.043});
  CHECK(m->o == std::array<double, 5>{0, 0, 0, 57, 0});
  CHECK(m->gs == std::array<double, 5>{0, 0, 0, 0, 0});
  CHECK(m->gi == std::array<double, 5>{1, 1, 1, 1, 1});
  CHECK(m->s == std::array<double, 5>{0, 0, 0, 0, 0});
  CHECK(m->i == std::array<double, 5>{0, 0, 0, 0, 0});
  CHECK(m->ug == std::array<double, 5>{1, 1, 1, 1, 1});
  CHECK_FALSE(m->ia.has_value());
  CHECK_FALSE(m->calibrated);
  REQUIRE(m->missing_keys.size() == 35);
  CHECK(m->missing_keys.front() == "Calibrated");
  CHECK(m->missing_keys[1] == "R1");
  CHECK(m->missing_keys.back() == "IA");
  CHECK(std::find(m->missing_keys.begin(), m->missing_keys.end(), "O3") == m->missing_keys.end());

  auto empty = pp::parse_metadata("END\n");
  REQUIRE(empty.ok());
  CHECK(empty->missing_keys.size() == 38);
  CHECK(empty->r == pp::Metadata{}.r);
}

TEST_CASE("ppk2 codec: malformed metadata lines are reported with their line number") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"R0 1031.64\nEND\n", "line 1"},    {"Calibrated: 1\nR0: abc\nEND\n", "line 2"},
      {"\n\nGS1: 1.5x\nEND\n", "line 3"}, {"R0: 1\r\nR1: 2\r\nR0: 3\r\nEND\r\n", "line 3"},
      {"R1: 0\nEND\n", "line 1"},         {"R4: -0.04\nEND\n", "line 1"},
      {"HW: 1.5\nEND\n", "line 1"},       {"Calibrated: 2\nEND\n", "line 1"},
      {"R0: 1\n : 5\nEND\n", "line 2"},   {"VDD: 1\nVDD: 2\nEND\n", "line 2"},
      {"R0: inf\nEND\n", "line 1"},
  };
  for (const auto& [text, where] : cases) {
    auto m = pp::parse_metadata(text);
    INFO(text);
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().code == Errc::parse_error);
    CHECK(m.error().message.find(where) != std::string::npos);
  }
  auto no_end = pp::parse_metadata("R0: 1\nR1: 2\n");
  REQUIRE_FALSE(no_end.ok());
  CHECK(no_end.error().code == Errc::parse_error);
  CHECK(no_end.error().message.find("no END line") != std::string::npos);
}

TEST_CASE("ppk2 codec: the metadata collector skips binary bytes and stops at END") {
  const std::string text = pp::format_metadata(pp::Metadata{});
  // Sample words still in flight before the text, and after it the first bytes of a stream.
  const std::string in_flight("\x34\xD2\xA8\xA5\x00R0\x81", 8);
  const std::string all = in_flight + text + std::string("\x01\x02", 2);
  const Bytes s(all.begin(), all.end());
  for (std::size_t piece : {std::size_t{1}, std::size_t{3}, std::size_t{64}, s.size()}) {
    pp::MetadataCollector c;
    std::size_t used = 0;
    for (std::size_t at = 0; at < s.size() && !c.complete(); at += piece)
      used += c.feed(std::span(s).subspan(at, std::min(piece, s.size() - at)));
    REQUIRE(c.complete());
    CHECK(c.discarded_bytes() == 8);
    CHECK(std::string(c.text()) + "\n" == text);  // stops right after "END"
    CHECK(used == 8 + text.size() - 1);
    CHECK(pp::parse_metadata(c.text()).ok());
  }
  pp::MetadataCollector big;
  std::string lots(pp::MetadataCollector::kMaxBytes + 10, 'x');
  big.feed(std::span(reinterpret_cast<const std::uint8_t*>(lots.data()), lots.size()));
  CHECK(big.overflowed());
  CHECK_FALSE(big.complete());
}

// =============================================================================================
// Sample words and conversion

TEST_CASE("ppk2 codec: every field of the sample word, and invalid ranges") {
  // adc 0x1234, range 3, counter 0x2A, logic 0xA5 -> 0xA5A8D234, little-endian 34 D2 A8 A5.
  const pp::SampleWord s{0x1234, 3, 0x2A, 0xA5};
  CHECK(pp::pack_word(s) == 0xA5A8D234u);
  Bytes b;
  pp::append_word(pp::pack_word(s), b);
  CHECK(b == Bytes{0x34, 0xD2, 0xA8, 0xA5});
  const auto u = pp::unpack_word(pp::load_word(b.data()));
  CHECK(u.adc == 0x1234);
  CHECK(u.range == 3);
  CHECK(u.counter == 0x2A);
  CHECK(u.logic == 0xA5);
  // Bit 17 is unused: setting it changes no field.
  const auto v = pp::unpack_word(0xA5AAD234u);
  CHECK((v.adc == 0x1234 && v.range == 3 && v.counter == 0x2A && v.logic == 0xA5));
  // Field extremes.
  CHECK(pp::unpack_word(0x00003FFFu).adc == 0x3FFF);
  CHECK(pp::unpack_word(0x0001C000u).range == 7);
  CHECK(pp::unpack_word(0x00FC0000u).counter == 63);
  CHECK(pp::unpack_word(0xFF000000u).logic == 0xFF);
  CHECK(pp::unpack_word(0x00004000u).range == 1);
  CHECK(pp::unpack_word(0x00040000u).counter == 1);
  CHECK(pp::unpack_word(0x01000000u).logic == 1);
  for (std::uint8_t r = 0; r < 8; ++r)
    CHECK(pp::range_valid(r) == (r < 5));
  // A word with range 5..7 converts to NaN.
  const pp::Converter conv(pp::Metadata{}, 3.7);
  for (std::uint8_t r = 5; r < 8; ++r) {
    CHECK(std::isnan(conv.amps(pp::pack_word({100, r, 0, 0}))));
    CHECK(std::isnan(pp::current_amps(pp::Metadata{}, 100, r, 3.7)));
  }
}

TEST_CASE("ppk2 codec: conversion matches a hand calculation") {
  // Default calibration, range 0, ADC 8192: the shunt sees 8192 * 4 * 1.8 / 163840 = 0.36 V,
  // so I = 0.36 V / 1031.64 ohm = 348.959...uA.
  pp::Metadata d;
  CHECK(pp::current_amps(d, 8192, 0, 3.7) == doctest::Approx(0.36 / 1031.64).epsilon(1e-15));
  // Range 4, ADC 1000: 1000 * 4 * 1.8 / 163840 = 0.0439453125 V over 0.043 ohm = 1.0219840116 A.
  CHECK(pp::current_amps(d, 1000, 4, 3.7) == doctest::Approx(1.0219840116279069).epsilon(1e-12));

  // Every correction term: range 3 with R = 0.94, O = 57, GS = 0.0012, GI = 0.9994, S = 0.001
  // A/V, I = 0.0002 A, UG = 1.01, ADC 5000 at V = 3.7 V:
  //   x = (20000 - 57) * 1.0986328125e-5 / 0.94 = 0.219100341796875 / 0.94 = 0.23308547001795212
  //   inner = x * (0.0012 * x + 0.9994) + 0.001 * 3.7 + 0.0002
  //         = 0.23308547 * 0.99967970256 + 0.0039 = 0.23301081... + 0.0039 = 0.23691081...
  //   I = 1.01 * inner = 0.2392799...
  pp::Metadata m;
  m.r[3] = 0.94;
  m.o[3] = 57;
  m.gs[3] = 0.0012;
  m.gi[3] = 0.9994;
  m.s[3] = 0.001;
  m.i[3] = 0.0002;
  m.ug[3] = 1.01;
  const double x = 0.219100341796875 / 0.94;
  const double want = 1.01 * (x * (0.0012 * x + 0.9994) + 0.001 * 3.7 + 0.0002);
  CHECK(want == doctest::Approx(0.23927992).epsilon(1e-7));
  CHECK(pp::current_amps(m, 5000, 3, 3.7) == doctest::Approx(want).epsilon(1e-14));
  // The folded hot-path form agrees to float precision, for every range and many ADC values.
  const pp::Converter conv(m, 3.7);
  CHECK(conv.amps(pp::pack_word({5000, 3, 9, 0})) == doctest::Approx(want).epsilon(1e-7));
  for (std::uint8_t r = 0; r < 5; ++r) {
    for (std::uint16_t adc = 0; adc < 16384; adc += 97) {
      const double ref = pp::current_amps(m, adc, r, 3.7);
      const double fast = conv.amps(pp::pack_word({adc, r, 0, 0}));
      CHECK(std::abs(fast - ref) <= 1e-6 * std::abs(ref) + 1e-12);
    }
  }
  // The source-voltage term is in volts: 1 V more adds UG * S = 1.01 mA here.
  const pp::Converter conv5(m, 4.7);
  CHECK(conv5.amps(pp::pack_word({5000, 3, 0, 0})) - conv.amps(pp::pack_word({5000, 3, 0, 0})) ==
        doctest::Approx(1.01e-3).epsilon(1e-3));
}

TEST_CASE("ppk2 codec: the emulator's quantiser picks the smallest range that does not saturate") {
  const auto m = fixtures::Ppk2EmulatorConfig::default_metadata();
  const double v = 3.7;
  const std::vector<std::pair<double, std::uint8_t>> cases = {
      {-1e-3, 0}, {0.0, 0}, {100e-6, 0}, {600e-6, 0}, {1e-3, 1}, {5e-3, 1},
      {50e-3, 2}, {0.1, 3}, {0.5, 3},    {0.7, 3},    {0.9, 4},  {2.0, 4}};
  for (const auto& [amps, range] : cases) {
    const auto w = pp::quantize_current(amps, m, v);
    INFO(amps);
    CHECK(w.range == range);
    if (amps > 1e-5) {
      // Back through the conversion: within half an ADC step of the range used.
      const double lsb = 4 * pp::kAdcMult / m.r[w.range] * m.gi[w.range] * 1.01;
      CHECK(std::abs(pp::current_amps(m, w.adc, w.range, v) - amps) <= 0.5 * lsb + 1e-9);
    }
  }
}

// =============================================================================================
// Streaming decoder

TEST_CASE("ppk2 decoder: words split at every byte boundary decode identically") {
  const pp::Converter conv(fixtures::Ppk2EmulatorConfig::default_metadata(), 3.7);
  const auto words = stream(300);
  const Bytes b = bytes_of_words(words);
  const Decoded whole = decode(b, conv);
  check_rows(whole, conv, 300);
  CHECK(whole.gaps.empty());
  CHECK(whole.counters.discarded_bytes == 0);
  for (std::size_t split = 0; split <= b.size(); ++split) {
    pp::StreamDecoder dec(conv);
    std::vector<float> amps(64);
    std::vector<std::uint8_t> logic(64);
    std::vector<float> got;
    auto on_block = [&](std::uint64_t first, std::size_t n) {
      CHECK(first == got.size());
      got.insert(got.end(), amps.begin(), amps.begin() + static_cast<long>(n));
    };
    auto on_gap = [&](const pp::DecoderGap&) { CHECK(false); };
    dec.feed(std::span(b).first(split), pp::SampleSpans{amps, logic}, on_block, on_gap);
    dec.feed(std::span(b).subspan(split), pp::SampleSpans{amps, logic}, on_block, on_gap);
    dec.finish(pp::SampleSpans{amps, logic}, on_block, on_gap);
    REQUIRE(got.size() == 300);
    CHECK(std::equal(got.begin(), got.end(), whole.amps.begin(), same_float));
  }
  // Byte by byte, 3 bytes at a time, and with an output of 1 sample.
  check_rows(decode(b, conv, 1), conv, 300);
  check_rows(decode(b, conv, 3, 1), conv, 300);
  check_rows(decode(b, conv, 4096, 7), conv, 300);
}

TEST_CASE("ppk2 decoder: counter gaps are filled as missing and counted exactly") {
  const pp::Converter conv(pp::Metadata{}, 3.7);
  SUBCASE("10 lost") {
    auto lost = range_of(40, 10);
    auto d = decode(bytes_of_words(stream(200, lost)), conv);
    check_rows(d, conv, 200, lost);
    REQUIRE(d.gaps.size() == 1);
    CHECK(d.gaps[0].kind == pp::DecoderGap::Kind::missing);
    CHECK(d.gaps[0].first_index == 40);
    CHECK(d.gaps[0].count == 10);
    CHECK(d.counters.missing_samples == 10);
    CHECK(d.counters.counter_gaps == 1);
  }
  SUBCASE("1 lost, 63 lost, and a wrap of the counter with nothing lost") {
    std::vector<std::uint64_t> lost = {70};
    auto more = range_of(130, 63);
    lost.insert(lost.end(), more.begin(), more.end());
    auto d = decode(bytes_of_words(stream(400, lost)), conv, 5);
    check_rows(d, conv, 400, lost);
    CHECK(d.counters.missing_samples == 64);
    CHECK(d.counters.counter_gaps == 2);
    CHECK(d.counters.corrupted_counters == 0);
  }
  SUBCASE("exactly 64 lost: invisible to the counter (the elapsed-time check's job)") {
    auto d = decode(bytes_of_words(stream(300, range_of(100, 64))), conv);
    CHECK(d.amps.size() == 236);
    CHECK(d.counters.missing_samples == 0);
  }
  SUBCASE("the first lock starts at index 0 whatever the counter, after a partial word") {
    Bytes b = {0xAB, 0xCD};  // the tail of a word from before
    auto words = stream(100);
    words.erase(words.begin(), words.begin() + 5);  // the stream starts at counter 5
    auto rest = bytes_of_words(words);
    b.insert(b.end(), rest.begin(), rest.end());
    auto d = decode(b, conv);
    CHECK(d.amps.size() == 95);
    CHECK(d.counters.discarded_bytes == 2);
    CHECK(d.logic[0] == 5);
  }
}

TEST_CASE("ppk2 decoder: up to 4 corrupted counters in a row are kept at their index") {
  const pp::Converter conv(pp::Metadata{}, 3.7);
  for (std::uint64_t run = 1; run <= 4; ++run) {
    CAPTURE(run);
    auto words = stream(200);
    for (std::uint64_t k = 0; k < run; ++k)
      words[50 + k] ^= 0x15u << pp::kCounterShift;  // flip counter bits only
    words[120] ^= 0x3Fu << pp::kCounterShift;
    auto d = decode(bytes_of_words(words), conv, 11);
    check_rows(d, conv, 200);
    CHECK(d.gaps.empty());
    CHECK(d.counters.corrupted_counters == run + 1);
    CHECK(d.counters.missing_samples == 0);
  }
  // Five in a row are more than tolerated: they count as lost, and later indices stay right.
  auto words = stream(200);
  for (std::uint64_t k = 0; k < 5; ++k)
    words[50 + k] ^= 0x15u << pp::kCounterShift;
  auto d = decode(bytes_of_words(words), conv);
  check_rows(d, conv, 200, range_of(50, 5));
  CHECK(d.counters.missing_samples == 5);
  CHECK(d.counters.corrupted_counters == 0);
}

TEST_CASE("ppk2 decoder: duplicated words are dropped and counted, indices unchanged") {
  const pp::Converter conv(pp::Metadata{}, 3.7);
  auto base = stream(200);
  std::vector<std::uint32_t> words;
  for (std::size_t i = 0; i < base.size(); ++i) {
    words.push_back(base[i]);
    if (i == 30 || (i >= 60 && i < 63)) words.push_back(base[i]);
    if (i == 100) {
      words.push_back(base[i]);
      words.push_back(base[i]);  // sent three times
    }
  }
  auto d = decode(bytes_of_words(words), conv, 9);
  check_rows(d, conv, 200);
  CHECK(d.counters.duplicate_samples == 6);
  CHECK(d.counters.missing_samples == 0);
  std::vector<std::uint64_t> at;
  for (const auto& g : d.gaps) {
    CHECK(g.kind == pp::DecoderGap::Kind::duplicate);
    at.push_back(g.first_index);
  }
  CHECK(at == std::vector<std::uint64_t>{31, 61, 62, 63, 101, 101});
}

TEST_CASE("ppk2 decoder: garbage bytes between words are skipped exactly, indices unchanged") {
  const pp::Converter conv(pp::Metadata{}, 3.7);
  std::mt19937_64 rng(7);
  std::uint64_t trials = 0, wrong_total = 0, twins = 0;
  for (std::uint32_t g = 1; g <= 12; ++g) {
    for (int rep = 0; rep < 20; ++rep) {
      const std::uint64_t n = 400;
      const std::uint64_t at = 20 + rng() % 300;
      Bytes b = bytes_of_words(stream(n));
      Bytes junk(g);
      for (auto& x : junk)
        x = static_cast<std::uint8_t>(rng());
      b.insert(b.begin() + static_cast<long>(4 * at), junk.begin(), junk.end());
      CAPTURE(g);
      CAPTURE(at);
      auto d = decode(b, conv, 1 + rng() % 50);
      ++trials;
      // A real loss of 63 samples and a garbage word whose counter repeats the last one look
      // the same; the decoder reads it as the loss a real device can have (documented).
      if (d.counters.missing_samples == 63) {
        const std::uint32_t j0 = pp::load_word(junk.data());
        CHECK(g % 4 == 0);
        CHECK(pp::word_counter(j0) == ((at - 1) & 63));
        ++twins;
        continue;
      }
      // Indices are always exact. About 1 insertion in 100 has two equally good readings (a
      // word made of garbage and a neighbouring real byte whose counter happens to fit): then
      // one row holds that word instead of the real sample.
      REQUIRE(d.amps.size() == n);
      CHECK(d.counters.missing_samples == 0);
      CHECK(d.counters.resyncs == (g % 4 != 0 ? 1u : 0u));  // whole words are dropped in step
      std::size_t wrong = 0;
      for (std::uint64_t i = 0; i < n; ++i)
        wrong += !same_float(d.amps[i], conv.amps(word_for(i))) || d.logic[i] != (i & 0xFF);
      CHECK(wrong <= 1);
      wrong_total += wrong;
      if (wrong == 0 && d.counters.overlap_words == 0) CHECK(d.counters.discarded_bytes == g);
    }
  }
  CHECK(wrong_total <= 8);
  CHECK(twins <= 4);
  CHECK(trials == 240);
}

TEST_CASE("ppk2 decoder: a word with a valid counter and an invalid range is a NaN sample") {
  const pp::Converter conv(pp::Metadata{}, 3.7);
  auto words = stream(100);
  words[40] |= 0x7u << pp::kRangeShift;  // range 7
  words[41] = (words[41] & ~(0x7u << pp::kRangeShift)) | (0x5u << pp::kRangeShift);
  auto d = decode(bytes_of_words(words), conv);
  REQUIRE(d.amps.size() == 100);
  CHECK(std::isnan(d.amps[40]));
  CHECK(std::isnan(d.amps[41]));
  CHECK(d.logic[40] == 40);
  CHECK(d.counters.invalid_range == 2);
  CHECK(d.gaps.empty());
}

// =============================================================================================
// Elapsed-time check

namespace {
/// A synthetic device: 100 samples per chunk (1 ms at 100 kS/s), arrival jitter 0..200 us.
struct ChunkFeed {
  std::mt19937_64 rng{3};
  std::int64_t t_start = 5'000'000'000;
  std::int64_t last = 0;
  std::int64_t arrival(std::uint64_t end_true, std::int64_t extra_ns = 0) {
    const auto nominal = t_start + static_cast<std::int64_t>(end_true * 10'000);
    last = std::max(last, nominal + static_cast<std::int64_t>(rng() % 200'000) + extra_ns);
    return last;
  }
};
}  // namespace

TEST_CASE("ppk2 wrap check: a 128-sample loss the counter cannot see is found from elapsed time") {
  fw::WrapInference w(pp::wrap_config());
  ChunkFeed f;
  std::vector<fw::WrapPlacement> placed;
  const std::uint64_t lost = 128;
  // The counter sees nothing: decided after the 10 s horizon (chunks are 1 ms apart).
  for (std::uint32_t k = 0; k < 13000; ++k) {
    const std::uint64_t end_true = 100ull * (k + 1);
    const std::uint64_t end_seen = k >= 2000 ? end_true - lost : end_true;  // lost in chunk 2000
    w.push(end_seen, f.arrival(end_true), k);
    w.drain([&](const fw::WrapPlacement& p) { placed.push_back(p); });
  }
  w.finish();
  w.drain([&](const fw::WrapPlacement& p) { placed.push_back(p); });
  REQUIRE(placed.size() == 13000);
  for (std::uint32_t k = 0; k < 13000; ++k) {
    CHECK(placed[k].tag == k);
    CHECK(placed[k].offset == (k > 2000 ? lost : 0));
    CHECK(placed[k].wrap_lost == (k == 2000 ? lost : 0));
  }
  CHECK(w.counters().wrap_gaps == 1);
  CHECK(w.counters().wrap_lost == lost);
}

TEST_CASE("ppk2 wrap check: a 50 ms stall followed by a burst is not a loss") {
  fw::WrapInference w(pp::wrap_config());
  ChunkFeed f;
  std::uint64_t released = 0, max_offset = 0;
  for (std::uint32_t k = 0; k < 3000; ++k) {
    const std::uint64_t end = 100ull * (k + 1);
    // Chunks 1000..1049 are held by the host and arrive together at the end of the stall.
    const std::int64_t extra = (k >= 1000 && k < 1050) ? (1050 - k) * 1'000'000 : 0;
    w.push(end, f.arrival(end, extra), k);
    w.drain([&](const fw::WrapPlacement& p) {
      ++released;
      max_offset = std::max(max_offset, p.offset + p.wrap_lost);
    });
  }
  w.finish();
  w.drain([&](const fw::WrapPlacement&) { ++released; });
  CHECK(released == 3000);
  CHECK(max_offset == 0);
  CHECK(w.counters().wrap_gaps == 0);
  CHECK(w.counters().stalls_absorbed >= 1);
}

TEST_CASE("ppk2 wrap check: a host that falls 0.5 s behind for 2 s does not invent a loss") {
  fw::WrapInference w(pp::wrap_config());
  ChunkFeed f;
  std::uint64_t max_offset = 0, released = 0;
  for (std::uint32_t k = 0; k < 6000; ++k) {
    const std::uint64_t end = 100ull * (k + 1);
    // From chunk 1000 the reader slips behind by up to 0.5 s and finds data queued at every
    // read (not caught up); from chunk 3000 it catches up again.
    std::int64_t behind = 0;
    if (k >= 1000 && k < 3000) behind = std::min<std::int64_t>(k - 1000, 500) * 1'000'000;
    w.push(end, f.arrival(end, behind), k, fw::WrapEvidence{false, behind == 0});
    w.drain([&](const fw::WrapPlacement& p) {
      ++released;
      max_offset = std::max(max_offset, p.offset + p.wrap_lost);
    });
  }
  w.finish();
  w.drain([&](const fw::WrapPlacement&) { ++released; });
  CHECK(released == 6000);
  CHECK(max_offset == 0);
  CHECK(w.counters().wrap_gaps == 0);
}

TEST_CASE("ppk2 wrap check: late reads just before a loss do not take it from the counter's gap") {
  fw::WrapInference w(pp::wrap_config());
  ChunkFeed f;
  std::vector<fw::WrapPlacement> placed;
  // 1000 samples lost in chunk 2000: the counter saw 1000 mod 64 = 40 of them there; the
  // elapsed-time check must add the other 960 in that chunk, although chunks 1990..1999 were
  // read 1.5 ms late.
  for (std::uint32_t k = 0; k < 4000; ++k) {
    const std::uint64_t end_true = 100ull * (k + 1);
    const std::uint64_t end_seen = k >= 2000 ? end_true - 960 : end_true;
    const std::int64_t late = (k >= 1990 && k < 2000) ? 1'500'000 : 0;
    w.push(end_seen, f.arrival(end_true, late), k, fw::WrapEvidence{k == 2000});
    w.drain([&](const fw::WrapPlacement& p) { placed.push_back(p); });
  }
  w.finish();
  w.drain([&](const fw::WrapPlacement& p) { placed.push_back(p); });
  REQUIRE(placed.size() == 4000);
  for (std::uint32_t k = 0; k < 4000; ++k) {
    CHECK(placed[k].offset == (k > 2000 ? 960u : 0u));
    CHECK(placed[k].wrap_lost == (k == 2000 ? 960u : 0u));
  }
}

// =============================================================================================
// End to end: emulator on a pty -> libserialport -> driver -> ring -> HDF5 -> h5py

namespace {

struct Run {
  rig::CaptureSummary summary;
  fixtures::Ppk2Truth truth;
};

Run capture(fixtures::Ppk2EmulatorConfig cfg, const std::filesystem::path& out, double seconds,
            double volts = 3.7, std::int64_t horizon_ns = 0) {
  auto emu = fixtures::Ppk2Emulator::start(std::move(cfg));
  REQUIRE(emu.ok());
  rig::Ppk2Monitor::Options mo;
  mo.port = (*emu)->port_path();
  if (horizon_ns > 0) mo.wrap.horizon_ns = horizon_ns;
  rig::Ppk2Monitor monitor(mo);
  auto info = monitor.open();
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : errmsg(info.error())));
  rig::CaptureOptions opt;
  opt.output = out;
  opt.duration_s = seconds;
  opt.monitor.output_voltage_v = volts;
  auto s = rig::run_capture(monitor, *info, opt);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : errmsg(s.error())));
  monitor.close();
  (*emu)->stop();
  return {*s, (*emu)->truth()};
}

std::uint64_t counter(const rig::CaptureSummary& s, const std::string& name) {
  for (const auto& c : s.counters)
    if (name == c.name) return c.value;
  FAIL("no counter " << name);
  return 0;
}

// A triangle between 1 mA and 301 mA with a 0.2 s period (3 A/s, 30 uA per sample), as CSV
// points for the emulator and as the same points for the Python check.
const char* kTriangle = "0.001,0.301,0.1";  // lo, hi, half period

fixtures::Waveform triangle(const TempDir& dir) {
  auto p = dir / "triangle.csv";
  std::ofstream f(p);
  f.precision(17);
  for (int k = 0; k <= 60; ++k)
    f << k * 0.1 << "," << (k % 2 ? 0.301 : 0.001) << "\n";
  f.close();
  auto w = fixtures::Waveform::from_csv(p);
  REQUIRE(w.ok());
  return *w;
}

fixtures::Ppk2EmulatorConfig stamped(const TempDir& dir) {
  fixtures::Ppk2EmulatorConfig cfg;
  cfg.waveform = triangle(dir);
  // The logic inputs carry the low byte of the sample index: an exact stamp of every row.
  cfg.logic = [](std::uint64_t i) { return static_cast<std::uint8_t>(i & 0xFF); };
  return cfg;
}

// Checks a capture file: NaN rows exactly at `nan_ranges` (plus `exempt` ranges, which may hold
// anything), gap rows exactly `gaps`, the named counters, and for every other valid row: logic ==
// index & 0xFF and current within 0.1 mA of the triangle at the row's time.
int check_file(const TempDir& dir, const std::filesystem::path& file, const std::string& nan_ranges,
               const std::string& gaps, const std::string& counters, std::string* out,
               const std::string& exempt = "[]") {
  const char* script = R"PY(
import sys, json, h5py, numpy as np
path = sys.argv[1]
nan_ranges, gaps_want, counters_want, exempt = (json.loads(a) for a in sys.argv[2:6])
lo, hi, half = (float(x) for x in sys.argv[6].split(","))
with h5py.File(path, "r", swmr=True) as f:
    m = f["monitor"]
    assert m.attrs["driver"] == "ppk2"
    assert m.attrs["sample_rate_hz"] == 100000.0
    assert m["current"].attrs["unit"] == "A" and m["logic"].attrs["unit"] == ""
    n = int(f["capture_state/samples_written"][()])
    cur, logic = m["current"][:n], m["logic"][:n]
    skip = np.zeros(n, bool)
    for a, b in exempt:
        skip[a:b] = True
    want = [i for a, b in nan_ranges for i in range(a, b)]
    got = [int(i) for i in np.flatnonzero(np.isnan(cur) & ~skip)]
    assert got == want, ("nan rows", got[:10], len(got), len(want))
    rows = sorted([int(g["first_index"]), int(g["count"]), int(g["kind"])] for g in m["gaps"][:])
    assert rows == sorted(gaps_want), ("gap rows", rows, gaps_want)
    names = [x.decode() if isinstance(x, bytes) else x for x in m["counters"].attrs["names"]]
    k = dict(zip(names, (int(v) for v in m["counters"][:])))
    for name, v in counters_want.items():
        assert k[name] == v, ("counter", name, k[name], v, k)
    idx = np.arange(n)
    ok = ~np.isnan(cur) & ~skip
    stamp_bad = np.flatnonzero(ok & (logic != (idx & 0xFF)))
    assert len(stamp_bad) == 0, ("logic stamp", stamp_bad[:10], len(stamp_bad))
    ph = np.mod(idx / 100000.0, 2 * half) / half
    truth = np.where(ph < 1, lo + (hi - lo) * ph, hi - (hi - lo) * (ph - 1))
    err = np.abs(cur - truth)
    worst = float(err[ok].max()) if ok.any() else 0.0
    assert worst < 1e-4, ("misplaced or wrong samples", worst, np.flatnonzero(ok & (err >= 1e-4))[:10])
    print("ok", n, worst, k)
)PY";
  return meltrig::test::run_python(
      script, {file.string(), nan_ranges, gaps, counters, exempt, kTriangle}, dir.path(), out);
}

}  // namespace

TEST_CASE("ppk2 capture: a known waveform with logic edges reads back exactly through h5py") {
  TempDir dir;
  fixtures::Ppk2EmulatorConfig cfg;
  auto w = fixtures::Waveform::steps({{0, 0.0004}, {0.4, 0.005}, {0.8, 0.06}, {1.2, 0.35}});
  REQUIRE(w.ok());
  cfg.waveform = *w;
  cfg.logic_edges = {{1, 0x01}, {12345, 0x03}, {54321, 0x02}, {99999, 0x80}, {150001, 0x00}};
  auto out = dir / "known.h5";
  auto r = capture(cfg, out, 2.0, 3.3);

  CHECK(r.summary.state == dataset::CaptureState::complete);
  CHECK(r.truth.samples_dropped == 0);
  CHECK(r.truth.samples_sent >= 190'000);
  CHECK(r.truth.source_mv == 3300);
  CHECK(r.truth.dut_power);
  CHECK(r.truth.power_mode == 2);
  for (std::size_t k = 0; k < pp::kRanges - 1; ++k)
    CHECK(r.truth.range_samples[k] > 0);  // the steps visit ranges 0..3
  // Every sample the emulator sent is in the file, no more, no less.
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(r.summary.valid_samples == r.truth.samples_sent);
  const double n = static_cast<double>(r.truth.samples_sent);
  const double true_mean = r.truth.sum_true_amps / n;
  CHECK(std::abs(r.summary.mean_current_a - true_mean) / true_mean < 1e-3);
  CHECK(r.summary.mean_current_a == doctest::Approx(r.truth.sum_quantized_amps / n).epsilon(1e-6));
  // No voltage channel: power is the current times the 3.3 V just set (not the 3.7 V the
  // metadata listed at open()).
  CHECK(r.summary.mean_voltage_v == doctest::Approx(3.3));
  CHECK(r.summary.mean_power_w == doctest::Approx(3.3 * r.summary.mean_current_a).epsilon(1e-6));
  CHECK(counter(r.summary, "missing_samples") == 0);
  CHECK(counter(r.summary, "discarded_bytes") == 0);

  std::string edges = "[";
  for (const auto& [i, b] : r.truth.logic_edges) {
    if (i >= r.truth.samples_sent) continue;
    edges += '[';
    edges += std::to_string(i);
    edges += ',';
    edges += std::to_string(b);
    edges += "],";
  }
  edges.back() = ']';
  const char* check = R"PY(
import sys, json, h5py, numpy as np
path, n_want, mean_want, edges = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
with h5py.File(path, "r") as f:
    assert int(f["capture_state/state"][()]) == 1
    m = f["monitor"]
    assert m.attrs["driver"] == "ppk2"
    cur, logic = m["current"][:], m["logic"][:]
    assert len(cur) == n_want == len(logic) == int(f["capture_state/samples_written"][()]), len(cur)
    assert cur.dtype == np.float32 and logic.dtype == np.uint8
    assert not np.isnan(cur).any()
    mean = float(np.mean(cur.astype(np.float64)))
    assert abs(mean - mean_want) / mean_want < 1e-3, (mean, mean_want)
    # Logic edges at their exact sample index.
    idx = np.flatnonzero(np.diff(logic.astype(np.int16))) + 1
    got = [[int(i), int(logic[i])] for i in idx]
    assert got == edges, (got, edges)
    st = m["status_at_start"].attrs
    assert st["calibrated"] == 1 and st["hw"] == 9173 and st["metadata_defaults_used"] == 0
    assert abs(st["r3"] - 0.94) < 1e-12
    print("ok", len(cur), mean, got)
)PY";
  std::string py;
  int rc = meltrig::test::run_python(
      check, {out.string(), std::to_string(r.truth.samples_sent), std::to_string(true_mean), edges},
      dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: 10 lost samples are counted exactly and later samples keep their index") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.drop_samples = {{30000, 10}};
  auto r = capture(cfg, dir / "f.h5", 1.0);
  CHECK(r.truth.samples_dropped == 10);
  CHECK(r.summary.samples == r.truth.samples_generated);
  std::string py;
  int rc = check_file(dir, dir / "f.h5", "[[30000,30010]]", "[[30000,10,0]]",
                      R"({"missing_samples":10,"counter_gaps":1,"wrap_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: 1000 lost samples wrap the counter, elapsed time finds the wraps") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.drop_samples = {{50000, 1000}};  // 1000 = 15 x 64 + 40: the counter sees 40
  auto r = capture(cfg, dir / "f.h5", 2.0);
  CHECK(r.truth.samples_dropped == 1000);
  CHECK(r.summary.samples == r.truth.samples_generated);
  std::string py;
  int rc = check_file(dir, dir / "f.h5", "[[50000,51000]]", "[[50000,40,0],[50040,960,1]]",
                      R"({"missing_samples":1000,"counter_gaps":1,"wrap_gaps":1,)"
                      R"("wrap_lost_samples":960})",
                      &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: exactly 128 lost samples (no counter jump) are found from elapsed time") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.drop_samples = {{50000, 128}};
  auto out = dir / "f.h5";
  // Nothing but elapsed time shows this loss: with the default 10 s horizon it would be decided
  // only after 10 s; a 1 s horizon keeps the test short (the default is tested on its own).
  auto r = capture(cfg, out, 2.0, 3.7, 1'000'000'000);
  CHECK(r.truth.samples_dropped == 128);
  CHECK(r.summary.samples == r.truth.samples_generated);
  CHECK(counter(r.summary, "missing_samples") == 128);
  CHECK(counter(r.summary, "wrap_gaps") == 1);
  // Nothing marks where in the read the loss was: the gap is put at the start of the read that
  // showed it, so the samples of that read before the loss sit 128 rows late. Every sample after
  // the loss is at its index. Find the gap row and check exactly that.
  const char* find_gap = R"PY(
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    g = f["monitor/gaps"][:]
    assert len(g) == 1 and int(g[0]["count"]) == 128 and int(g[0]["kind"]) == 1, g
    print(int(g[0]["first_index"]))
)PY";
  std::string py;
  REQUIRE(meltrig::test::run_python(find_gap, {out.string()}, dir.path(), &py) == 0);
  const std::uint64_t a = std::stoull(py);
  CHECK(a <= 50000);
  // Late reads just before the loss can move it a few reads earlier (see fw::WrapInference).
  CHECK(a >= 50000 - 20000);
  // Starts from std::string: GCC 12 at -O3 misreports "literal" + std::string&& (-Wrestrict).
  const std::string a0 = std::to_string(a), a1 = std::to_string(a + 128);
  const std::string nan = std::string("[[") + a0 + "," + a1 + "]]";
  const std::string late = std::string("[[") + a1 + ",50128]]";
  const std::string gap_row = std::string("[[") + a0 + ",128,1]]";
  int rc =
      check_file(dir, out, nan, gap_row,
                 R"({"missing_samples":128,"wrap_lost_samples":128,"counter_gaps":0})", &py, late);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: duplicated samples are dropped and counted, indices unchanged") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.duplicate_samples = {{20000, 1}, {40000, 3}};
  auto r = capture(cfg, dir / "f.h5", 1.0);
  CHECK(r.truth.samples_duplicated == 4);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, dir / "f.h5", "[]", "[[20001,1,2],[40001,1,2],[40002,1,2],[40003,1,2]]",
                      R"({"duplicate_samples":4,"missing_samples":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: corrupted counters keep their samples at the right index") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.corrupt_counters = {10000, 20000, 20001, 30000, 30001, 30002, 30003};
  auto r = capture(cfg, dir / "f.h5", 1.0);
  CHECK(r.truth.counters_corrupted == 7);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, dir / "f.h5", "[]", "[]",
                      R"({"corrupted_counters":7,"missing_samples":0,"discarded_bytes":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: words split into 1-3 byte writes lose nothing") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.split_writes = true;
  auto r = capture(cfg, dir / "f.h5", 1.0);
  CHECK(r.truth.samples_dropped == 0);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, dir / "f.h5", "[]", "[]",
                      R"({"missing_samples":0,"discarded_bytes":0,"wrap_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: a 300 ms device stall is a late burst, not a loss") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.stall_at_s = 0.7;
  cfg.faults.stall_s = 0.3;
  auto r = capture(cfg, dir / "f.h5", 2.0);
  CHECK(r.truth.samples_dropped == 0);
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(counter(r.summary, "stalls_absorbed") >= 1);
  std::string py;
  int rc = check_file(dir, dir / "f.h5", "[]", "[]", R"({"missing_samples":0,"wrap_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: garbage bytes in the stream are skipped without losing an index") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.garbage_bytes = 5;
  cfg.faults.garbage_every = 9973;
  cfg.seed = 11;
  auto r = capture(cfg, dir / "f.h5", 1.0);
  REQUIRE(r.truth.garbage_bytes >= 5 * 9);
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(counter(r.summary, "discarded_bytes") == r.truth.garbage_bytes);
  CHECK(counter(r.summary, "resyncs") == r.truth.garbage_bytes / 5);
  std::string py;
  int rc = check_file(dir, dir / "f.h5", "[]", "[]",
                      R"({"missing_samples":0,"overlap_words":0,"wrap_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 faults: a disconnect ends the capture with port_gone and a readable file") {
  TempDir dir;
  auto cfg = stamped(dir);
  cfg.faults.disconnect_at_s = 1.0;
  auto r = capture(cfg, dir / "f.h5", 10.0);
  CHECK(r.truth.disconnected);
  CHECK(r.summary.state == dataset::CaptureState::failed);
  REQUIRE(r.summary.failure.has_value());
  CHECK(r.summary.failure->code == Errc::port_gone);
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(r.summary.samples >= 90'000);
  const char* state = R"PY(
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert int(f["capture_state/state"][()]) == 2
    reason = f["capture_state/end_reason"][()].rstrip(b"\0").decode()
    assert "disconnected" in reason or "gone" in reason, reason
    print("ok", reason)
)PY";
  std::string py;
  CHECK(meltrig::test::run_python(state, {(dir / "f.h5").string()}, dir.path(), &py) == 0);
  INFO(py);
  int rc = check_file(dir, dir / "f.h5", "[]", "[]", R"({"missing_samples":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("ppk2 driver: metadata without calibration keys is used with defaults, and flagged") {
  TempDir dir;
  fixtures::Ppk2EmulatorConfig cfg;
  cfg.metadata_omit = {"GI3", "O3", "Calibrated"};
  auto emu = fixtures::Ppk2Emulator::start(cfg);
  REQUIRE(emu.ok());
  rig::Ppk2Monitor::Options mo;
  mo.port = (*emu)->port_path();
  rig::Ppk2Monitor monitor(mo);
  auto info = monitor.open();
  REQUIRE(info.ok());
  CHECK(monitor.metadata().missing_keys == std::vector<std::string>{"Calibrated", "GI3", "O3"});
  CHECK(monitor.metadata().gi[3] == 1.0);
  CHECK(monitor.metadata().o[3] == 0.0);
  CHECK(monitor.metadata().o[2] == 66.0);
  CHECK(info->fixed_voltage_v == doctest::Approx(3.7));  // the VDD the device lists
  CHECK(info->voltage_channel == -1);
  REQUIRE(info->channels.size() == 2);
  CHECK(info->channels[1].type == dataset::SampleType::u8);
  // Settings the PPK2 does not have are refused, an impossible voltage too.
  rig::MonitorConfig mc;
  mc.current_limit_a = 1.0;
  CHECK(monitor.configure(mc).error().code == Errc::unsupported);
  mc.current_limit_a.reset();
  mc.output_voltage_v = 5.5;
  CHECK(monitor.configure(mc).error().code == Errc::invalid_argument);
  mc.output_voltage_v = 1.8;
  REQUIRE(monitor.configure(mc).ok());
  CHECK((*emu)->truth().source_mv == 1800);
  CHECK((*emu)->truth().dut_power);
  monitor.close();
}

TEST_CASE("ppk2 driver: find() and make() through the registry") {
  fw::PortInfo a, b, c;
  a.path = "/dev/ttyACM0";
  a.usb_vid = 0x1915;
  a.usb_pid = 0xC00A;
  b.path = "/dev/ttyACM1";
  b.usb_product = "PPK2";
  c.path = "/dev/ttyACM2";
  c.usb_vid = 0x1915;
  c.usb_pid = 0x520F;
  std::vector<fw::PortInfo> ports = {a, b, c};
  auto found = rig::Ppk2Monitor::find(ports);
  REQUIRE(found.size() == 2);
  CHECK(found[0].spec == "ppk2:/dev/ttyACM0");
  CHECK(found[0].why.find("1915:c00a") != std::string::npos);
  CHECK(found[1].spec == "ppk2:/dev/ttyACM1");
  REQUIRE(rig::find_driver("ppk2") != nullptr);
  auto spec = rig::DeviceSpec::parse("ppk2:/dev/ttyACM0");
  REQUIRE(spec.ok());
  CHECK(rig::make_monitor(*spec).ok());
  auto opts = rig::DeviceSpec::parse("ppk2:/dev/ttyACM0:rate=5");
  REQUIRE(opts.ok());
  auto bad = rig::make_monitor(*opts);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("no options") != std::string::npos);
}

TEST_CASE("ppk2 capture: the CLI captures from `meltrig emulate ppk2` through the registry") {
  TempDir dir;
  auto link = dir / "ppk2";
  meltrig::test::Process emu({meltrig::test::cli(), "emulate", "ppk2", "--link", link.string(),
                              "--waveform", "constant:0.12", "--logic", "square:1000"},
                             dir.path(), "emu");
  REQUIRE(meltrig::test::wait_for_path(link));
  auto out = dir / "cli.h5";
  meltrig::test::Process cap({meltrig::test::cli(), "capture", "--monitor", "ppk2:" + link.string(),
                              "--voltage", "3.7", "--duration", "1", "-q", "-o", out.string()},
                             dir.path(), "cap");
  int rc = cap.wait(std::chrono::seconds(30));
  INFO(cap.err());
  CHECK(rc == 0);
  const char* check = R"PY(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    assert int(f["capture_state/state"][()]) == 1
    m = f["monitor"]
    assert m.attrs["driver"] == "ppk2" and m.attrs["output_voltage_v"] == 3.7
    cur, logic = m["current"][:], m["logic"][:]
    assert len(cur) >= 90000 and not np.isnan(cur).any(), len(cur)
    assert abs(float(np.mean(cur)) - 0.12) < 1e-4, np.mean(cur)
    assert set(np.unique(logic)) == {0, 1}
    edges = np.flatnonzero(np.diff(logic.astype(np.int16))) + 1
    assert all(e % 1000 == 0 for e in edges), edges[:5]
    print("ok", len(cur))
)PY";
  std::string py;
  int prc = meltrig::test::run_python(check, {out.string()}, dir.path(), &py);
  INFO(py);
  CHECK(prc == 0);
  emu.signal(SIGTERM);
  CHECK(emu.wait() == 0);
}
