// Monsoon HVPM (and reflashed LVPM) over USB: control-transfer and packet bytes computed by hand,
// calibration maths by hand, the sample sequencer, the libusb transport as far as it can be tested
// without a device, the in-process emulator, and emulator -> driver -> capture -> HDF5 runs read
// back with h5py, one per injected fault, each proving exact loss counts and sample indices.
#include <doctest/doctest.h>
#include <libusb-1.0/libusb.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>

#include "meltrig/fixtures/emulated_hvpm.hpp"
#include "meltrig/fixtures/hvpm_emulator.hpp"
#include "meltrig/fw/hvpm_protocol.hpp"
#include "meltrig/fw/usb_bulk.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/hvpm_monitor.hpp"
#include "meltrig/rig/registry.hpp"
#include "test_support.hpp"

using namespace meltrig;
namespace hv = meltrig::fw::hvpm;
using meltrig::test::TempDir;

namespace {

using Bytes = std::vector<std::uint8_t>;

// One 18-byte sample as the device sends it (big-endian words, then usbGain, mainGain).
Bytes sample_bytes(std::uint16_t main_coarse, std::uint16_t main_fine, std::uint16_t usb_coarse,
                   std::uint16_t usb_fine, std::uint16_t aux_coarse, std::uint16_t aux_fine,
                   std::uint16_t main_v, std::uint16_t usb_v, std::uint8_t usb_gain,
                   std::uint8_t main_gain) {
  Bytes b;
  for (std::uint16_t w :
       {main_coarse, main_fine, usb_coarse, usb_fine, aux_coarse, aux_fine, main_v, usb_v}) {
    b.push_back(static_cast<std::uint8_t>(w >> 8));
    b.push_back(static_cast<std::uint8_t>(w & 0xFF));
  }
  b.push_back(usb_gain);
  b.push_back(main_gain);
  return b;
}

Bytes packet_bytes(std::uint8_t b0, std::uint8_t b1, std::uint8_t flags, std::uint8_t n,
                   const std::vector<Bytes>& samples, std::size_t size = 64) {
  Bytes p = {b0, b1, flags, n};
  for (const auto& s : samples)
    p.insert(p.end(), s.begin(), s.end());
  p.resize(size, 0);
  return p;
}

// A test clock that only moves when told to.
class ManualClock final : public Clock {
 public:
  std::int64_t now_ns() const override { return t_.load(); }
  void advance_ns(std::int64_t d) { t_ += d; }

 private:
  std::atomic<std::int64_t> t_{1'000'000'000};
};

// Hands a shared emulator to a monitor (which owns its transport), so a test can still read the
// emulator's truth after the monitor has closed.
class SharedTransport final : public fw::UsbBulkTransport {
 public:
  explicit SharedTransport(std::shared_ptr<fixtures::HvpmEmulator> e) : e_(std::move(e)) {}
  Result<void> control_out(std::uint8_t r, std::uint16_t v, std::uint16_t i,
                           std::span<const std::uint8_t> d, std::chrono::milliseconds t) override {
    return e_->control_out(r, v, i, d, t);
  }
  Result<std::size_t> control_in(std::uint8_t r, std::uint16_t v, std::uint16_t i,
                                 std::span<std::uint8_t> d, std::chrono::milliseconds t) override {
    return e_->control_in(r, v, i, d, t);
  }
  Result<std::size_t> bulk_read(std::uint8_t ep, std::span<std::uint8_t> b,
                                std::chrono::milliseconds t) override {
    return e_->bulk_read(ep, b, t);
  }
  std::string name() const override { return e_->name(); }

 private:
  std::shared_ptr<fixtures::HvpmEmulator> e_;
};

void check_set(const hv::ControlTransfer& t, std::uint16_t value, std::uint16_t index,
               std::array<std::uint8_t, 4> data) {
  CHECK(t.request_type == 0x40);
  CHECK(t.request == 0x01);
  CHECK(t.value == value);
  CHECK(t.index == index);
  CHECK(t.length == 4);
  CHECK(t.data == data);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Control transfers.

TEST_CASE("hvpm protocol: set-value transfers for every opcode, bytes by hand") {
  using O = hv::Opcode;
  // Output voltage: V * 2^20. 4.0 V = 0x400000; 3.7 V = 3879731.2 -> 0x3B3333; 13.5 V = 0xD80000.
  check_set(*hv::set_output_voltage(4.0, hv::Model::hvpm), 0x0000, 0x4041,
            {0x00, 0x00, 0x40, 0x00});
  check_set(*hv::set_output_voltage(3.7, hv::Model::hvpm), 0x3333, 0x3B41,
            {0x33, 0x33, 0x3B, 0x00});
  check_set(*hv::set_output_voltage(13.5, hv::Model::hvpm), 0x0000, 0xD841,
            {0x00, 0x00, 0xD8, 0x00});
  check_set(*hv::set_output_voltage(0.0, hv::Model::hvpm), 0x0000, 0x0041, {0, 0, 0, 0});
  // LVPM 4.55 V = 4771020.8 -> 4771021 = 0x48CCCD.
  check_set(*hv::set_output_voltage(4.55, hv::Model::lvpm), 0xCCCD, 0x4841,
            {0xCD, 0xCC, 0x48, 0x00});
  // USB passthrough and voltage channel.
  check_set(hv::set_usb_passthrough(hv::UsbPassthrough::off), 0x0000, 0x0010, {0, 0, 0, 0});
  check_set(hv::set_usb_passthrough(hv::UsbPassthrough::on), 0x0001, 0x0010, {1, 0, 0, 0});
  check_set(hv::set_usb_passthrough(hv::UsbPassthrough::automatic), 0x0002, 0x0010, {2, 0, 0, 0});
  check_set(hv::set_voltage_channel(hv::VoltageChannel::main_and_aux), 0x0001, 0x0023,
            {1, 0, 0, 0});
  // HVPM current limit 8 A: 65535 * (1 - 8 / 15.625) = 31981.08 -> 31981 = 0x7CED.
  check_set(*hv::set_current_limit(O::power_up_current_limit, 8.0, hv::Model::hvpm), 0x7CED, 0x0043,
            {0xED, 0x7C, 0, 0});
  check_set(*hv::set_current_limit(O::runtime_current_limit, 8.0, hv::Model::hvpm), 0x7CED, 0x0044,
            {0xED, 0x7C, 0, 0});
  // LVPM current limit 4.6 A: 1023 * (1 - 4.6 / 8) = 434.775 -> 435 = 0x01B3.
  check_set(*hv::set_current_limit(O::runtime_current_limit, 4.6, hv::Model::lvpm), 0x01B3, 0x0044,
            {0xB3, 0x01, 0, 0});
  // Scales 0x1A-0x1F, zero offsets 0x25-0x28: 35946 = 0x8C6A; byte 2 goes to wIndex's high byte,
  // byte 3 only in the data stage.
  for (std::uint8_t op = 0x1A; op <= 0x1F; ++op) {
    check_set(hv::set_value(static_cast<O>(op), 35946), 0x8C6A, op, {0x6A, 0x8C, 0, 0});
  }
  for (std::uint8_t op = 0x25; op <= 0x28; ++op) {
    check_set(hv::set_value(static_cast<O>(op), 0x12345678), 0x5678,
              static_cast<std::uint16_t>(0x3400 | op), {0x78, 0x56, 0x34, 0x12});
  }
  check_set(hv::set_value(O::serial_number, 20001), 0x4E21, 0x0042, {0x21, 0x4E, 0, 0});
  check_set(hv::set_value(O::hardware_model, 2), 0x0002, 0x0045, {2, 0, 0, 0});
  check_set(hv::set_value(O::firmware_version, 32), 0x0020, 0x00C0, {0x20, 0, 0, 0});
  check_set(hv::set_value(O::start_status, 0x80), 0x0080, 0x00C4, {0x80, 0, 0, 0});
  check_set(hv::set_value(O::dac_cal_low, 0x00ABCDEF), 0xCDEF, 0xAB88, {0xEF, 0xCD, 0xAB, 0x00});
  check_set(hv::set_value(O::dac_cal_high, 0x00010203), 0x0203, 0x0189, {0x03, 0x02, 0x01, 0x00});
  check_set(hv::set_value(O::voltage_channel, 0), 0x0000, 0x0023, {0, 0, 0, 0});

  // Get value: IN request 0x01, wValue 0, wIndex = opcode, 4 bytes.
  for (O op : {O::serial_number, O::hardware_model, O::firmware_version, O::main_fine_scale,
               O::usb_coarse_zero_offset, O::start_status, O::dac_cal_high}) {
    auto t = hv::get_value(op);
    CHECK(t.request_type == 0xC0);
    CHECK(t.request == 0x01);
    CHECK(t.value == 0);
    CHECK(t.index == static_cast<std::uint16_t>(op));
    CHECK(t.length == 4);
  }
  const std::uint8_t reply[4] = {0x78, 0x56, 0x34, 0x12};
  CHECK(hv::parse_value_reply(O::serial_number, reply).value() == 0x12345678u);
  auto short_reply = hv::parse_value_reply(O::main_fine_scale, std::span(reply, 3));
  REQUIRE_FALSE(short_reply.ok());
  CHECK(short_reply.error().code == Errc::protocol_error);
  CHECK(short_reply.error().message.find("main fine scale (0x1A)") != std::string::npos);
  CHECK(short_reply.error().message.find("3 byte") != std::string::npos);
}

TEST_CASE("hvpm protocol: start asks for unlimited samples, stop carries no data") {
  auto s = hv::start_sampling();
  CHECK(s.request_type == 0x40);
  CHECK(s.request == 0x02);
  CHECK(s.value == 1250);  // 0x04E2: calibration interval in ms
  CHECK(s.index == 0);     // as PyMonsoon sends it since 2018 (it sent 0x0002 before)
  CHECK(s.length == 4);
  CHECK(s.data == std::array<std::uint8_t, 4>{0xFF, 0xFF, 0xFF, 0xFF});  // never 50000
  auto limited = hv::start_sampling(500, 50000);
  CHECK(limited.value == 0x01F4);
  CHECK(limited.data == std::array<std::uint8_t, 4>{0x50, 0xC3, 0x00, 0x00});
  auto stop = hv::stop_sampling();
  CHECK(stop.request_type == 0x40);
  CHECK(stop.request == 0x03);
  CHECK(stop.value == 0);
  CHECK(stop.index == 0);
  CHECK(stop.length == 0);
}

TEST_CASE("hvpm protocol: out-of-range settings are refused, naming the value") {
  for (double v : {0.5, 13.6, -1.0, std::numeric_limits<double>::quiet_NaN()}) {
    auto r = hv::set_output_voltage(v, hv::Model::hvpm);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
  auto lv = hv::set_output_voltage(5.0, hv::Model::lvpm);
  REQUIRE_FALSE(lv.ok());
  CHECK(lv.error().message.find("5 V") != std::string::npos);
  CHECK(lv.error().message.find("2.01..4.55") != std::string::npos);
  CHECK(hv::set_output_voltage(0.8, hv::Model::hvpm).ok());
  CHECK(hv::set_output_voltage(2.01, hv::Model::lvpm).ok());
  CHECK_FALSE(hv::set_current_limit(hv::Opcode::runtime_current_limit, 0.0, hv::Model::hvpm).ok());
  CHECK_FALSE(hv::set_current_limit(hv::Opcode::runtime_current_limit, 16.0, hv::Model::hvpm).ok());
  CHECK_FALSE(hv::set_current_limit(hv::Opcode::runtime_current_limit, 8.5, hv::Model::lvpm).ok());
  CHECK_FALSE(hv::set_current_limit(hv::Opcode::usb_passthrough, 1.0, hv::Model::hvpm).ok());
  // Register values decode back: raw 0 is the highest limit.
  CHECK(hv::current_limit_amps(0, hv::Model::hvpm) == doctest::Approx(15.625));
  CHECK(hv::current_limit_amps(31981, hv::Model::hvpm) == doctest::Approx(8.0).epsilon(1e-4));
  CHECK(hv::current_limit_amps(435, hv::Model::lvpm) == doctest::Approx(4.6).epsilon(1e-3));
  CHECK(hv::output_voltage_volts(0x400000) == 4.0);
}

TEST_CASE("hvpm protocol: the device side parses what the host side encodes") {
  using K = hv::HostRequest::Kind;
  for (int op : {0x10, 0x1A, 0x23, 0x28, 0x41, 0x43, 0x44, 0x88, 0x89}) {
    auto t = hv::set_value(static_cast<hv::Opcode>(op), 0x00C0FFEE);
    auto r = hv::parse_request(t.request_type, t.request, t.value, t.index, t.payload());
    REQUIRE(r.ok());
    CHECK(r->kind == K::set_value);
    CHECK(static_cast<int>(r->op) == op);
    CHECK(r->value == 0x00C0FFEEu);
  }
  auto st = hv::start_sampling(1250, hv::kUnlimitedSamples);
  auto sr = hv::parse_request(st.request_type, st.request, st.value, st.index, st.payload());
  REQUIRE(sr.ok());
  CHECK(sr->kind == K::start);
  CHECK(sr->calibration_interval_ms == 1250);
  CHECK(sr->max_samples == 0xFFFFFFFFu);
  auto gv = hv::get_value(hv::Opcode::hardware_model);
  auto gr = hv::parse_request(gv.request_type, gv.request, gv.value, gv.index, {});
  REQUIRE(gr.ok());
  CHECK(gr->kind == K::get_value);
  CHECK(gr->op == hv::Opcode::hardware_model);
  CHECK(hv::parse_request(0x40, 0x03, 0, 0, {})->kind == K::stop);

  // wValue says 0x1234 but the data stage says 0x5678: refused, naming both.
  const std::uint8_t data[4] = {0x78, 0x56, 0, 0};
  auto bad = hv::parse_request(0x40, 0x01, 0x1234, 0x0041, data);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::protocol_error);
  CHECK(bad.error().message.find("wValue 0x1234") != std::string::npos);
  CHECK(bad.error().message.find("0x00005678") != std::string::npos);
  CHECK_FALSE(hv::parse_request(0x40, 0x01, 0, 0x41, std::span(data, 2)).ok());
  CHECK_FALSE(hv::parse_request(0x40, 0x07, 0, 0, {}).ok());
  CHECK_FALSE(hv::parse_request(0x21, 0x01, 0, 0, {}).ok());
}

// ---------------------------------------------------------------------------------------------
// Packets.

TEST_CASE("hvpm packets: a 64-byte packet decoded by hand, both byte orders of the dropped count") {
  // Dropped count bytes 05 01; flags 0x2A (counter 0xA); 3 samples: measurement, zero-cal, ref-cal.
  auto meas =
      sample_bytes(0x1234, 0xFA00, 0x0102, 0x0304, 0xFFFE, 0x0005, 0x3E80, 0x9C40, 0x01, 0x00);
  auto zero = sample_bytes(0x0078, 0x0096, 0x0079, 0x0097, 0, 0, 0x3E80, 0, 0x00, 0x10);
  auto ref = sample_bytes(0x75F8, 0x7622, 0x75F9, 0x7623, 0, 0, 0x3E80, 0, 0x00, 0x33);
  Bytes p = packet_bytes(0x05, 0x01, 0x2A, 3, {meas, zero, ref});
  REQUIRE(p.size() == 64);
  CHECK(p[4] == 0x12);  // mainCoarse high byte first
  CHECK(p[4 + 16] == 0x01);
  CHECK(p[4 + 17] == 0x00);  // mainGain is the 18th byte

  for (auto order : {hv::DroppedByteOrder::little, hv::DroppedByteOrder::big}) {
    hv::PacketHeader h;
    std::array<hv::RawSample, 3> s{};
    REQUIRE(hv::decode_packet(p, order, h, s) == hv::PacketStatus::ok);
    CHECK(h.dropped == (order == hv::DroppedByteOrder::little ? 0x0105 : 0x0501));
    CHECK(h.flags == 0x2A);
    CHECK(h.counter() == 0x0A);
    CHECK(h.n == 3);
    CHECK(s[0].main_coarse == 0x1234);
    CHECK(s[0].main_fine == 64000);
    CHECK(s[0].usb_coarse == 0x0102);
    CHECK(s[0].usb_fine == 0x0304);
    CHECK(s[0].aux_coarse == -2);
    CHECK(s[0].aux_fine == 5);
    CHECK(s[0].main_voltage == 16000);
    CHECK(s[0].usb_voltage == 40000);
    CHECK(s[0].usb_gain == 1);
    CHECK(s[0].main_gain == 0);
    CHECK(s[0].kind() == hv::SampleKind::measurement);
    CHECK(s[1].kind() == hv::SampleKind::zero_cal);
    CHECK(s[1].main_fine == 150);
    CHECK(s[2].kind() == hv::SampleKind::ref_cal);  // low bits of mainGain are the gain
    CHECK(s[2].main_fine == 0x7622);
    // Encoding gives the same bytes back.
    std::array<std::uint8_t, 64> again{};
    hv::encode_packet(h.dropped, h.flags, s, order, again);
    CHECK(std::equal(again.begin(), again.end(), p.begin()));
  }
  // An invalid-type sample (mainGain 0x20).
  Bytes q = packet_bytes(0, 0, 0x01, 1, {sample_bytes(1, 2, 3, 4, 5, 6, 7, 8, 0, 0x27)});
  hv::PacketHeader h;
  std::array<hv::RawSample, 3> s{};
  REQUIRE(hv::decode_packet(q, hv::DroppedByteOrder::little, h, s) == hv::PacketStatus::ok);
  CHECK(s[0].kind() == hv::SampleKind::invalid);
}

TEST_CASE("hvpm packets: invalid packets are rejected with their position") {
  hv::PacketHeader h;
  std::array<hv::RawSample, 3> s{};
  Bytes four = packet_bytes(0, 0, 0x03, 4, {});
  CHECK(hv::decode_packet(four, hv::DroppedByteOrder::little, h, s) ==
        hv::PacketStatus::too_many_samples);
  auto e = hv::parse_packet(four, hv::DroppedByteOrder::little, "packet 17");
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code == Errc::protocol_error);
  CHECK(e.error().message.find("packet 17") != std::string::npos);
  CHECK(e.error().message.find("byte 3 announces 4 samples") != std::string::npos);

  Bytes tiny = {1, 2, 3};
  CHECK(hv::decode_packet(tiny, hv::DroppedByteOrder::big, h, s) == hv::PacketStatus::too_short);
  CHECK(hv::parse_packet(tiny, hv::DroppedByteOrder::big).error().message.find("4-byte header") !=
        std::string::npos);
  // Three samples need 4 + 54 = 58 bytes: 57 is short, 58 is a valid short USB packet.
  auto z = sample_bytes(0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  Bytes cut = packet_bytes(0, 0, 0, 3, {z, z, z}, 57);
  CHECK(hv::decode_packet(cut, hv::DroppedByteOrder::little, h, s) == hv::PacketStatus::too_short);
  CHECK(hv::parse_packet(cut, hv::DroppedByteOrder::little).error().message.find("need 58") !=
        std::string::npos);
  Bytes exact = packet_bytes(0, 0, 0, 3, {z, z, z}, 58);
  CHECK(hv::decode_packet(exact, hv::DroppedByteOrder::little, h, s) == hv::PacketStatus::ok);
  Bytes empty = packet_bytes(9, 0, 0x0F, 0, {});
  REQUIRE(hv::decode_packet(empty, hv::DroppedByteOrder::little, h, s) == hv::PacketStatus::ok);
  CHECK(h.n == 0);
  CHECK(h.dropped == 9);
}

TEST_CASE("hvpm packets: the batch decoder fills caller spans and stops when they are full") {
  auto a = sample_bytes(1, 2, 3, 4, 5, 6, 7, 8, 0, 0);
  auto b = sample_bytes(11, 12, 13, 14, 15, 16, 17, 18, 0, 0x10);
  Bytes stream;
  for (const auto& p : {packet_bytes(1, 0, 0, 3, {a, b, a}), packet_bytes(0, 0, 1, 9, {}),
                        packet_bytes(2, 0, 2, 2, {b, b}), packet_bytes(3, 0, 3, 1, {a}, 22)}) {
    stream.insert(stream.end(), p.begin(), p.end());
  }
  std::array<hv::PacketHeader, 8> headers{};
  std::array<hv::RawSample, 16> samples{};
  auto r = hv::decode_batch(stream, hv::DroppedByteOrder::little, headers, samples);
  CHECK(r.packets == 4);
  CHECK(r.invalid_packets == 1);
  CHECK(r.samples == 6);
  CHECK(r.bytes_consumed == stream.size());
  CHECK(headers[1].status == hv::PacketStatus::too_many_samples);
  CHECK(headers[2].first_sample == 3);
  CHECK(headers[2].dropped == 2);
  CHECK(headers[3].first_sample == 5);
  CHECK(samples[0].main_coarse == 1);
  CHECK(samples[1].main_coarse == 11);
  CHECK(samples[3].kind() == hv::SampleKind::zero_cal);
  CHECK(samples[5].usb_voltage == 8);

  // Room for 4 samples: the second valid packet (2 samples) does not fit and is left unread.
  std::array<hv::RawSample, 4> few{};
  auto partial = hv::decode_batch(stream, hv::DroppedByteOrder::little, headers, few);
  CHECK(partial.packets == 2);
  CHECK(partial.samples == 3);
  CHECK(partial.bytes_consumed == 128);
  auto two =
      hv::decode_batch(stream, hv::DroppedByteOrder::little, std::span(headers.data(), 1), samples);
  CHECK(two.packets == 1);
  CHECK(two.bytes_consumed == 64);
}

// ---------------------------------------------------------------------------------------------
// Calibration.

TEST_CASE("hvpm calibration: HVPM maths by hand, fine/coarse switch at 64000") {
  hv::DeviceCalibration dev;
  dev.model = hv::Model::hvpm;
  dev.main = {35946, 3103, 100, 80};
  dev.usb = {36000, 3000, 0, 0};
  hv::Calibrator cal(dev);
  CHECK_FALSE(cal.main_ready());
  hv::RawSample m;
  m.main_fine = 15250;
  CHECK(std::isnan(cal.main_amps(m)));

  auto cal_sample = [](std::uint8_t kind, std::uint16_t fine, std::uint16_t coarse) {
    hv::RawSample s;
    s.main_fine = fine;
    s.main_coarse = coarse;
    s.usb_fine = fine;
    s.usb_coarse = coarse;
    s.main_gain = kind;
    return s;
  };
  // Six zero-cal readings: only the last five count (mean fine 150, coarse 120).
  cal.add(cal_sample(0x10, 9999, 9999));
  for (int f : {148, 152, 150, 149, 151})
    cal.add(cal_sample(0x10, static_cast<std::uint16_t>(f), static_cast<std::uint16_t>(f - 30)));
  cal.add(cal_sample(0x30, 30250, 30200));
  cal.add(cal_sample(0x30, 0, 0));  // words of 0 are "not measured" (PyMonsoon): skipped
  REQUIRE(cal.main_ready());
  auto c = cal.main();
  CHECK(c.fine_zero == doctest::Approx(250.0));  // EEPROM offset 100 + mean 150
  CHECK(c.fine_ref == doctest::Approx(30250.0));
  CHECK(c.coarse_zero == doctest::Approx(200.0));  // 80 + 120
  CHECK(c.coarse_ref == doctest::Approx(30200.0));

  // Fine: slope = 35946 / (30250 - 250) uA/count; (15250 - 250) counts = 17973 uA.
  m.main_fine = 15250;
  m.main_coarse = 1000;
  CHECK(cal.main_amps(m) == doctest::Approx(0.017973).epsilon(1e-9));
  m.main_fine = 63999;  // still fine
  CHECK(cal.main_amps(m) == doctest::Approx((63999.0 - 250.0) * 35946.0 / 30000.0 * 1e-6));
  // At 64000 the fine range is saturated: coarse, slope 3103 / 30000 mA/count.
  m.main_fine = 64000;
  m.main_coarse = 10200;
  CHECK(cal.main_amps(m) == doctest::Approx(10000.0 * 3103.0 / 30000.0 * 1e-3));  // 1.034333 A
  // Voltages: main 16000 counts * 62.5 uV * 4 = 4 V; USB 40000 * 62.5 uV * 2 = 5 V.
  m.main_voltage = 16000;
  m.usb_voltage = 40000;
  CHECK(cal.main_volts(m) == doctest::Approx(4.0));
  CHECK(cal.usb_volts(m) == doctest::Approx(5.0));
  // USB channel: zero offsets 0 here, scale 36000.
  m.usb_fine = 3150;
  CHECK(cal.usb_amps(m) == doctest::Approx(3000.0 * 36000.0 / 30100.0 * 1e-6));

  // The batch converter agrees with the scalar maths.
  std::array<hv::RawSample, 3> in{m, m, m};
  in[1].main_fine = 15250;
  std::array<float, 3> a{}, v{}, u{};
  cal.convert(in, a, v, u);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(a[i] == doctest::Approx(cal.main_amps(in[i])).epsilon(1e-6));
    CHECK(v[i] == doctest::Approx(4.0));
    CHECK(u[i] == doctest::Approx(cal.usb_amps(in[i])).epsilon(1e-6));
  }
  // ref == zero is degenerate: NaN, not infinity.
  hv::Calibrator flat(dev);
  flat.add(cal_sample(0x10, 200, 200));
  flat.add(cal_sample(0x30, 300, 280));  // fine ref 300 = 100 + 200 = zero
  m.main_fine = 1000;
  CHECK(std::isnan(flat.main_amps(m)));
}

TEST_CASE("hvpm calibration: reflashed LVPM scales from resistors, signed words, 30000 threshold") {
  CHECK(hv::lvpm_resistor_ohm(0) == doctest::Approx(0.05));
  CHECK(hv::lvpm_resistor_ohm(10) == doctest::Approx(0.051));
  CHECK(hv::lvpm_resistor_ohm(-5) == doctest::Approx(0.0495));
  CHECK(hv::lvpm_fine_scale(0.05) == doctest::Approx(35946.0));
  CHECK(hv::lvpm_coarse_scale(0.05) == doctest::Approx(3103.4));
  CHECK(hv::lvpm_fine_scale(0.051) == doctest::Approx(35946.0 * 0.05 / 0.051));
  hv::DeviceCalibration dev;
  dev.model = hv::Model::lvpm;
  dev.main = {35946.0, 3103.4, 0, 0};
  dev.usb = dev.main;
  hv::Calibrator cal(dev);
  hv::RawSample z, r;
  z.main_fine = 100;
  z.main_coarse = 50;
  z.usb_fine = z.usb_coarse = 1;
  z.main_gain = 0x10;
  r.main_fine = 15100;
  r.main_coarse = 15050;
  r.usb_fine = r.usb_coarse = 2;
  r.main_gain = 0x30;
  cal.add(z);
  cal.add(r);
  hv::RawSample m;
  m.main_fine = static_cast<std::uint16_t>(-200);  // 0xFF38: a negative current on the LVPM
  CHECK(cal.main_amps(m) == doctest::Approx(-300.0 * 35946.0 / 15000.0 * 1e-6));
  m.main_fine = 30000;  // saturated for the LVPM
  m.main_coarse = 1550;
  CHECK(cal.main_amps(m) == doctest::Approx(1500.0 * 3103.4 / 15000.0 * 1e-3));
  m.main_voltage = 16000;  // 16000 * 62.5 uV * 2
  CHECK(cal.main_volts(m) == doctest::Approx(2.0));
}

TEST_CASE("hvpm calibration: the emulator's ADC quantisation inverts the converter") {
  hv::ChannelAdc adc;
  hv::DeviceCalibration dev{hv::Model::hvpm, adc.scales, adc.scales};
  hv::Calibrator cal(dev);
  hv::RawSample z, r;
  z.main_fine = 150;
  z.main_coarse = 120;
  z.main_gain = 0x10;
  r.main_fine = 30250;
  r.main_coarse = 30200;
  r.main_gain = 0x30;
  cal.add(z);
  cal.add(r);
  for (double amps : {0.0, 1e-4, 0.01, 0.0763, 0.08, 0.5, 1.7, 3.9, 6.0}) {
    auto w = hv::quantize_current(amps, adc, hv::Model::hvpm);
    hv::RawSample s;
    s.main_fine = w[0];
    s.main_coarse = w[1];
    const bool fine = w[0] < 64000;
    const double step = fine ? 35946.0 / 30000.0 * 1e-6 : 3103.0 / 30000.0 * 1e-3;
    INFO(amps);
    CHECK(std::abs(cal.main_amps(s) - amps) <= 0.5 * step + 1e-12);
  }
}

// ---------------------------------------------------------------------------------------------
// Sequencing.

namespace {
constexpr std::int64_t kMs = 1'000'000;
// A packet of 3 samples is due every 0.6 ms at 5 kHz.
std::int64_t due(std::uint64_t end_index) {
  return static_cast<std::int64_t>(end_index) * 200'000;
}
std::vector<hv::PlacedPacket> drain(hv::SampleSequencer& s) {
  std::vector<hv::PlacedPacket> out;
  s.drain([&](const hv::PlacedPacket& p) { out.push_back(p); });
  return out;
}
}  // namespace

TEST_CASE("hvpm sequencer: counter gaps, device drops and calibration-only packets") {
  hv::SampleSequencer s({});
  s.begin(0);
  s.push(0, 0, 3, due(3), 0);
  s.push(1, 0, 3, due(6), 1);
  s.push(4, 0, 3, due(15), 2);   // counters 2 and 3 lost: 6 samples
  s.push(5, 0, 0, due(15), 99);  // a calibration-only packet: no slots
  s.push(6, 7, 3, due(25), 3);   // the device dropped 7 samples before this one
  s.push(7, 7, 2, due(27), 4);   // a short packet
  auto p = drain(s);
  REQUIRE(p.size() == 5);
  CHECK(p[0].first_index == 0);
  CHECK(p[1].first_index == 3);
  CHECK(p[2].first_index == 12);
  CHECK(p[2].counter_lost == 6);
  CHECK(p[2].lost_before == 6);
  CHECK(p[3].first_index == 22);
  CHECK(p[3].device_dropped == 7);
  CHECK(p[3].counter_lost == 0);
  CHECK(p[4].first_index == 25);
  CHECK(p[4].slots == 2);
  CHECK(s.counters().counter_gaps == 1);
  CHECK(s.counters().counter_lost == 6);
  CHECK(s.counters().device_dropped == 7);
  CHECK(s.nominal_slots() == 3);
  // The dropped count is a 16-bit running total: 65535 -> 2 is an increase of 3.
  hv::SampleSequencer w({});
  w.begin(0);
  w.push(0, 0, 3, due(3), 0);
  w.push(1, 0xFFFF, 3, due(65541), 1);
  w.push(2, 2, 3, due(65547), 2);
  auto q = drain(w);
  REQUIRE(q.size() == 3);
  CHECK(q[1].device_dropped == 65535);
  CHECK(q[2].device_dropped == 3);
  CHECK(q[2].first_index == 65544);
}

TEST_CASE("hvpm sequencer: a dropped count that runs ahead of the clock is ignored and counted") {
  // Bytes 00 07 meant as big-endian 7 but read little-endian: 1792 samples (358 ms) in 10 ms.
  hv::SampleSequencer s({});
  s.begin(0);
  for (std::uint8_t k = 0; k < 10; ++k)
    s.push(k, 0, 3, due(3u * (k + 1u)), k);
  s.push(10, 0x0700, 3, due(33), 10);
  auto p = drain(s);
  REQUIRE(p.size() == 11);
  CHECK(p[10].first_index == 30);
  CHECK(s.counters().dropped_implausible == 1);
  CHECK(s.counters().device_dropped == 0);
  // A first packet whose count exceeds everything the device could have taken since start.
  hv::SampleSequencer f({});
  f.begin(0);
  f.push(0, 40000, 3, 5 * kMs, 0);
  CHECK(drain(f).at(0).first_index == 0);
  CHECK(f.counters().dropped_implausible == 1);
  // A plausible first count: 10 samples dropped before the first packet.
  hv::SampleSequencer g({});
  g.begin(0);
  g.push(0, 10, 3, due(13), 0);
  CHECK(drain(g).at(0).first_index == 10);
  CHECK(g.counters().device_dropped == 10);
}

TEST_CASE("hvpm sequencer: 16 lost packets are found from elapsed time, a stall is not a loss") {
  hv::SampleSequencer s({});
  s.begin(0);
  std::uint64_t end = 0;
  std::uint8_t c = 0;
  std::uint32_t tag = 0;
  auto send = [&](std::int64_t late_ns = 0) {
    end += 3;
    s.push(c, 0, 3, due(end) + late_ns, tag++);
    c = (c + 1) & 0x0F;
  };
  for (int i = 0; i < 2000; ++i)
    send();
  // 16 packets vanish: the counter comes back to the same value, the clock does not. Nothing
  // else shows it, so it is decided after the 10 s horizon (17000 packets = 10.2 s).
  end += 48;
  for (int i = 0; i < 18000; ++i)
    send();
  s.finish();
  auto p = drain(s);
  REQUIRE(p.size() == 20000);
  CHECK(p[1999].first_index == 5997);
  CHECK(p[2000].first_index == 6048);
  CHECK(p[2000].wrap_lost == 48);
  CHECK(p[2000].lost_before == 48);
  CHECK(p[19999].first_index == 6048 + 3 * 17999);
  CHECK(s.counters().wrap_gaps == 1);
  CHECK(s.counters().wrap_lost == 48);

  // A 300 ms host stall: packets arrive late in a burst, then latency returns to normal.
  hv::SampleSequencer t({});
  t.begin(0);
  end = 0;
  c = 0;
  tag = 0;
  auto send2 = [&](std::int64_t arrival) {
    end += 3;
    t.push(c, 0, 3, arrival, tag++);
    c = (c + 1) & 0x0F;
  };
  for (int i = 0; i < 2000; ++i)
    send2(due(end + 3));
  const std::int64_t burst = due(end) + 300 * kMs;
  while (due(end + 3) < burst)
    send2(burst);
  for (int i = 0; i < 2000; ++i)
    send2(due(end + 3));
  t.finish();
  auto q = drain(t);
  for (std::size_t i = 0; i < q.size(); ++i)
    REQUIRE(q[i].first_index == 3 * i);
  CHECK(t.counters().wrap_gaps == 0);
  CHECK(t.counters().stalls_absorbed >= 1);
}

// ---------------------------------------------------------------------------------------------
// Transport and registry (no USB device exists here).

TEST_CASE("hvpm usb: libusb starts, no 2ab9:0001 device is not_found, errors map apart") {
  auto list = fw::list_usb_devices(hv::kVendorId, hv::kProductId);
  REQUIRE_MESSAGE(list.ok(), (list.ok() ? "" : list.error().describe()));
  if (!list->empty()) {
    MESSAGE("a real 2ab9:0001 device is attached; skipping the not-found checks");
    return;
  }
  auto t = fw::LibusbTransport::open(hv::kVendorId, hv::kProductId);
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().code == Errc::not_found);
  CHECK(t.error().message.find("2ab9:0001") != std::string::npos);
  auto s = fw::LibusbTransport::open(hv::kVendorId, hv::kProductId, std::string("12345"));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("serial number 12345") != std::string::npos);

  CHECK(fw::libusb_errc(LIBUSB_ERROR_NO_DEVICE) == Errc::port_gone);
  CHECK(fw::libusb_errc(LIBUSB_ERROR_TIMEOUT) == Errc::timeout);
  CHECK(fw::libusb_errc(LIBUSB_ERROR_IO) == Errc::io_error);
  CHECK(fw::libusb_errc(LIBUSB_ERROR_PIPE) == Errc::io_error);
  CHECK(fw::libusb_errc(LIBUSB_ERROR_OVERFLOW) == Errc::overflow);
  CHECK(fw::libusb_errc(LIBUSB_ERROR_NOT_FOUND) == Errc::not_found);

  // The registry: hvpm is listed, ignores serial ports, and checks its spec before opening.
  REQUIRE(rig::find_driver("hvpm") != nullptr);
  fw::PortInfo acm;
  acm.path = "/dev/ttyACM0";
  acm.usb_vid = 0x2AB9;
  acm.usb_pid = 0x0001;
  std::vector<fw::PortInfo> ports = {acm};
  auto cands = rig::find_driver("hvpm")->find(ports);
  CHECK(cands.empty());
  auto m = rig::make_monitor(rig::DeviceSpec::parse("hvpm:usb").value());
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::not_found);
  auto ms = rig::make_monitor(rig::DeviceSpec::parse("hvpm:usb:serial=777").value());
  REQUIRE_FALSE(ms.ok());
  CHECK(ms.error().message.find("777") != std::string::npos);
  auto port = rig::make_monitor(rig::DeviceSpec::parse("hvpm:/dev/ttyACM0").value());
  REQUIRE_FALSE(port.ok());
  CHECK(port.error().code == Errc::invalid_argument);
  CHECK(port.error().message.find("hvpm:usb") != std::string::npos);
  auto opt = rig::make_monitor(rig::DeviceSpec::parse("hvpm:usb:rate=9").value());
  REQUIRE_FALSE(opt.ok());
  CHECK(opt.error().message.find("rate") != std::string::npos);
  auto order = rig::make_monitor(rig::DeviceSpec::parse("hvpm:usb:dropped_order=xx").value());
  REQUIRE_FALSE(order.ok());
  CHECK(order.error().message.find("dropped_order=xx") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The emulator on a manual clock.

TEST_CASE("hvpm emulator: answers control transfers and paces packets by elapsed time") {
  ManualClock clock;
  fixtures::HvpmEmulatorConfig cfg;
  cfg.clock = &clock;
  cfg.cal_samples = 3;  // one packet of each kind
  cfg.waveform = fixtures::Waveform::constant(1.0);
  fixtures::HvpmEmulator emu(cfg);
  auto get = [&](hv::Opcode op) {
    std::array<std::uint8_t, 4> b{};
    auto t = hv::get_value(op);
    auto n = emu.control_in(t.request, t.value, t.index, b, std::chrono::milliseconds(10));
    REQUIRE(n.ok());
    REQUIRE(*n == 4);
    auto v = hv::parse_register(op, b);
    REQUIRE(v.ok());
    return *v;
  };
  auto send = [&](const hv::ControlTransfer& t) {
    return emu.control_out(t.request, t.value, t.index, t.payload(), std::chrono::milliseconds(10));
  };
  CHECK(get(hv::Opcode::hardware_model) == 2);
  CHECK(get(hv::Opcode::serial_number) == 20001);
  CHECK(get(hv::Opcode::main_fine_scale) == 36500);
  CHECK(get(hv::Opcode::main_coarse_zero_offset) == -9);  // the default EEPROM is not all-positive
  CHECK(get(hv::Opcode::start_status) == 0);
  auto ro = send(hv::set_value(hv::Opcode::firmware_version, 1));
  REQUIRE_FALSE(ro.ok());
  CHECK(ro.error().code == Errc::io_error);
  REQUIRE(send(*hv::set_output_voltage(4.0, hv::Model::hvpm)).ok());
  CHECK(emu.truth().vout_v == 4.0);

  std::array<std::uint8_t, 64 * 64> buf{};
  auto idle = emu.bulk_read(0x81, buf, std::chrono::milliseconds(2));
  REQUIRE_FALSE(idle.ok());
  CHECK(idle.error().code == Errc::timeout);
  CHECK(emu.bulk_read(0x82, buf, std::chrono::milliseconds(2)).error().code == Errc::io_error);

  REQUIRE(send(hv::start_sampling()).ok());
  CHECK(get(hv::Opcode::start_status) == 0x80);
  clock.advance_ns(6 * kMs);  // 30 samples: 10 data packets, after a zero- and a ref-cal packet
  auto n = emu.bulk_read(0x81, buf, std::chrono::milliseconds(2));
  REQUIRE(n.ok());
  REQUIRE(*n == 12 * 64);
  hv::Calibrator cal({hv::Model::hvpm, cfg.main_adc.scales, cfg.usb_adc.scales});
  for (std::size_t k = 0; k < 12; ++k) {
    auto p = hv::parse_packet(std::span(buf.data() + 64 * k, 64), hv::DroppedByteOrder::little);
    REQUIRE(p.ok());
    CHECK(p->header.counter() == k);
    CHECK(p->header.dropped == 0);
    CHECK(p->header.n == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      const auto& s = p->samples[i];
      if (k < 2) {
        CHECK(s.kind() == (k == 0 ? hv::SampleKind::zero_cal : hv::SampleKind::ref_cal));
        cal.add(s);
      } else {
        CHECK(s.kind() == hv::SampleKind::measurement);
        CHECK(cal.main_amps(s) == doctest::Approx(1.0).epsilon(2e-4));
        CHECK(cal.main_volts(s) == doctest::Approx(4.0));
      }
    }
  }
  CHECK(emu.truth().samples_sent == 30);

  // A start with PyMonsoon's default 50000-sample limit ends sampling by itself.
  REQUIRE(send(hv::start_sampling(1250, 50000)).ok());
  clock.advance_ns(11'000 * kMs);
  std::size_t total = 0;
  while (true) {
    auto r = emu.bulk_read(0x81, buf, std::chrono::milliseconds(1));
    if (!r) break;
    total += *r;
  }
  CHECK(emu.truth().sampling == false);
  CHECK(emu.truth().max_samples == 50000u);
  CHECK(emu.truth().samples_generated == 30 + 50000);

  emu.disconnect();
  CHECK(emu.bulk_read(0x81, buf, std::chrono::milliseconds(1)).error().code == Errc::port_gone);
  CHECK(send(hv::stop_sampling()).error().code == Errc::port_gone);
}

// ---------------------------------------------------------------------------------------------
// Emulator -> HvpmMonitor -> run_capture -> HDF5 -> h5py.

namespace {

// A triangle between 0.1 A and 3.9 A, period 0.4 s (19 A/s): a sample one slot (200 us) out of
// place reads 3.8 mA from its truth, far above the 0.2 mA coarse quantisation.
fixtures::Waveform triangle(const TempDir& dir) {
  auto p = dir / "triangle.csv";
  std::ofstream f(p);
  for (int k = 0; k <= 150; ++k)
    f << k * 0.2 << "," << (k % 2 ? 3.9 : 0.1) << "\n";
  f.close();
  auto w = fixtures::Waveform::from_csv(p);
  REQUIRE(w.ok());
  return *w;
}

struct Run {
  rig::CaptureSummary summary;
  fixtures::HvpmTruth truth;
  rig::MonitorInfo info;
};

Run run(const TempDir& dir, fixtures::HvpmEmulatorConfig cfg, double seconds,
        rig::HvpmMonitor::Options mo = {}, rig::MonitorConfig mc = {}) {
  auto emu = std::make_shared<fixtures::HvpmEmulator>(cfg);
  rig::HvpmMonitor monitor(std::make_unique<SharedTransport>(emu), mo);
  auto info = monitor.open();
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.error().describe()));
  rig::CaptureOptions opt;
  opt.output = dir / "hvpm.h5";
  opt.duration_s = seconds;
  opt.monitor = mc;
  auto s = rig::run_capture(monitor, *info, opt);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  monitor.close();
  return {*s, emu->truth(), *info};
}

std::uint64_t counter(const rig::CaptureSummary& s, const std::string& name) {
  for (const auto& c : s.counters)
    if (c.name == name) return c.value;
  FAIL("no counter " << name);
  return 0;
}

// Checks the file: NaN rows exactly at `nan_ranges`, gap rows exactly `gaps`, the named counters,
// and every valid sample within 2 mA of the triangle's value at its index.
int check_file(const TempDir& dir, const std::string& nan_ranges, const std::string& gaps,
               const std::string& counters, std::string* out) {
  const char* script = R"PY(
import sys, json, h5py, numpy as np
path, nan_ranges, gaps_want, counters_want = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
with h5py.File(path, "r", swmr=True) as f:
    m = f["monitor"]
    assert m.attrs["driver"] == "hvpm"
    n = int(f["capture_state/samples_written"][()])
    cur = m["current"][:n]
    assert len(m["voltage"]) >= n and len(m["usb_current"]) >= n
    want = [i for a, b in nan_ranges for i in range(a, b)]
    got = list(np.flatnonzero(np.isnan(cur)))
    assert got == want, ("nan rows", got[:10], len(got), len(want))
    rows = sorted([int(g["first_index"]), int(g["count"]), int(g["kind"])] for g in m["gaps"][:])
    assert rows == sorted(gaps_want), ("gap rows", rows, gaps_want)
    names = [x.decode() if isinstance(x, bytes) else x for x in m["counters"].attrs["names"]]
    k = dict(zip(names, (int(v) for v in m["counters"][:])))
    for name, v in counters_want.items():
        assert k[name] == v, ("counter", name, k[name], v, k)
    t = np.arange(n) / m.attrs["sample_rate_hz"]
    ph = np.mod(t, 0.4) / 0.4
    truth = np.where(ph < 0.5, 0.1 + 7.6 * ph, 3.9 - 7.6 * (ph - 0.5))
    ok = ~np.isnan(cur)
    err = float(np.abs(cur[ok] - truth[ok]).max())
    assert err < 2e-3, ("misplaced samples", err)  # one slot off reads 3.8 mA off
    print("ok", n, err)
)PY";
  return meltrig::test::run_python(script, {(dir / "hvpm.h5").string(), nan_ranges, gaps, counters},
                                   dir.path(), out);
}

fixtures::HvpmEmulatorConfig triangle_config(const TempDir& dir) {
  fixtures::HvpmEmulatorConfig cfg;
  cfg.waveform = triangle(dir);
  return cfg;
}

}  // namespace

TEST_CASE("hvpm capture: 5 s of a known waveform through the driver read back exactly by h5py") {
  TempDir dir;
  fixtures::HvpmEmulatorConfig cfg;
  auto w = fixtures::Waveform::steps({{0, 0.3}, {1.25, 1.1}, {2.5, 0.05}, {3.75, 2.2}});
  REQUIRE(w.ok());
  cfg.waveform = *w;
  cfg.waveform.noise_amps = 0.02;
  cfg.usb_current_a = 0.2;
  cfg.seed = 7;
  rig::MonitorConfig mc;
  mc.output_voltage_v = 4.0;
  mc.current_limit_a = 8.0;
  mc.usb_passthrough = rig::MonitorConfig::UsbPassthrough::on;
  auto r = run(dir, cfg, 5.0, {}, mc);

  CHECK(r.summary.state == dataset::CaptureState::complete);
  CHECK(r.info.channels.size() == 3);
  CHECK(r.info.serial_number == "20001");
  CHECK(r.truth.samples_device_dropped == 0);
  CHECK(r.truth.samples_sent >= 24'000);
  CHECK(r.truth.power_up_limit_raw == 31981);
  CHECK(r.truth.runtime_limit_raw == 31981);
  CHECK(r.truth.calibration_interval_ms == 1250);
  CHECK(r.truth.max_samples == hv::kUnlimitedSamples);
  CHECK(r.truth.rejected_requests == 0);
  // Every sample the emulator handed over is in the file, no more, no less.
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(r.summary.valid_samples == r.truth.samples_sent);
  const double true_mean = r.truth.sum_true_amps / static_cast<double>(r.truth.samples_sent);
  CHECK(std::abs(r.summary.mean_current_a - true_mean) / true_mean < 1e-3);
  CHECK(r.summary.mean_voltage_v == doctest::Approx(4.0).epsilon(1e-6));
  CHECK(counter(r.summary, "missing_samples") == 0);

  const char* script = R"PY(
import sys, h5py, numpy as np
path, expect_n, expect_mean = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with h5py.File(path, "r") as f:
    m = f["monitor"]
    assert m.attrs["sample_rate_hz"] == 5000.0
    assert m.attrs["driver"] == "hvpm"
    cur, volt, usb = m["current"][:], m["voltage"][:], m["usb_current"][:]
    assert m["usb_current"].attrs["unit"] == "A"
    assert len(cur) == len(volt) == len(usb) == expect_n, (len(cur), expect_n)
    assert f["capture_state/state"][()] == 1
    assert not np.isnan(cur).any() and not np.isnan(usb).any()
    rel = abs(float(np.mean(cur)) - expect_mean) / expect_mean
    assert rel < 1e-3, rel
    assert abs(float(np.mean(volt)) - 4.0) < 1e-4
    assert abs(float(np.mean(usb)) - 0.2) < 1e-3, float(np.mean(usb))
    st = m["status_at_start"].attrs
    assert st["model"] == "HVPM" and st["main_fine_scale"] == 36500.0, dict(st)
    assert st["main_fine_zero_offset"] == -15.0 and st["usb_coarse_zero_offset"] == 2.0, dict(st)
    assert len(m["calibration"]) >= 1
    cal = m["calibration"][0]
    # zero = EEPROM offset -15 + zero reading 150
    assert abs(cal["fine_zero"] - 135) < 2 and abs(cal["coarse_ref"] - 30200) < 2, cal
    print("ok", len(cur), rel)
)PY";
  std::string py;
  int rc = meltrig::test::run_python(
      script,
      {(dir / "hvpm.h5").string(), std::to_string(r.truth.samples_sent), std::to_string(true_mean)},
      dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm capture: a reflashed LVPM (model 1) converts with resistor-derived scales") {
  TempDir dir;
  fixtures::HvpmEmulatorConfig cfg;
  cfg.model = hv::Model::lvpm;
  cfg.lvpm_resistor_offsets = {12, -7, 0, 0};
  cfg.waveform = fixtures::Waveform::constant(0.75);
  auto r = run(dir, cfg, 1.5);
  CHECK(r.summary.state == dataset::CaptureState::complete);
  CHECK(r.summary.samples == r.truth.samples_sent);
  const double true_mean = r.truth.sum_true_amps / static_cast<double>(r.truth.samples_sent);
  CHECK(std::abs(r.summary.mean_current_a - true_mean) / true_mean < 1e-3);
  CHECK(r.summary.mean_voltage_v == doctest::Approx(4.0).epsilon(1e-6));  // 62.5 uV * 2 steps
}

TEST_CASE(
    "hvpm faults: 20 and 3 lost packets are counted exactly, later samples keep their index") {
  TempDir dir;
  auto cfg = triangle_config(dir);
  cfg.faults.drop_data_packets = {{300, 20}, {700, 3}};  // 20 wraps the 4-bit counter; 3 does not
  auto r = run(dir, cfg, 3.0);
  CHECK(r.summary.state == dataset::CaptureState::complete);
  CHECK(r.truth.samples_lost_in_transit == 69);
  CHECK(r.summary.valid_samples == r.truth.samples_sent);
  std::string py;
  // 4 packets seen by the counter, 16 more inferred from elapsed time; then 3 by the counter.
  int rc = check_file(dir, "[[900,960],[2100,2109]]", "[[900,12,0],[912,48,1],[2100,9,0]]",
                      R"({"missing_samples":69,"wrap_lost_samples":48,"counter_gaps":2})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm faults: exactly 16 lost packets (invisible to the counter) are found") {
  TempDir dir;
  auto cfg = triangle_config(dir);
  cfg.faults.drop_data_packets = {{400, 16}};
  // Only elapsed time shows this loss: a 1 s horizon (default 10 s) keeps the test short.
  rig::HvpmMonitor::Options mo;
  mo.sequencer.horizon_ns = 1'000'000'000;
  auto r = run(dir, cfg, 3.0, mo);
  CHECK(r.truth.samples_lost_in_transit == 48);
  std::string py;
  int rc = check_file(dir, "[[1200,1248]]", "[[1200,48,1]]",
                      R"({"missing_samples":48,"wrap_gaps":1,"counter_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm faults: duplicated packets are dropped and counted, indices unchanged") {
  TempDir dir;
  auto cfg = triangle_config(dir);
  cfg.faults.duplicate_data_packets = {{100, 1}, {500, 2}};
  auto r = run(dir, cfg, 2.5);
  CHECK(r.truth.samples_duplicated == 9);
  CHECK(r.summary.samples == r.truth.samples_sent);
  std::string py;
  int rc = check_file(dir, "[]", "[[303,3,2],[1503,3,2],[1506,3,2]]",
                      R"({"duplicate_samples":9,"missing_samples":0,"counter_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm faults: corrupted packets are rejected and their samples lost exactly") {
  TempDir dir;
  auto cfg = triangle_config(dir);
  cfg.faults.corrupt_data_packets = {200, 201, 650};
  auto r = run(dir, cfg, 2.5);
  CHECK(r.truth.samples_corrupted == 9);
  std::string py;
  int rc = check_file(dir, "[[600,606],[1950,1953]]", "[[600,6,0],[1950,3,0]]",
                      R"({"missing_samples":9,"counter_gaps":2,"invalid_packets":3})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm faults: device-side drops come from the dropped count, in either byte order") {
  for (auto order : {hv::DroppedByteOrder::little, hv::DroppedByteOrder::big}) {
    TempDir dir;
    auto cfg = triangle_config(dir);
    cfg.dropped_byte_order = order;
    cfg.faults.device_drops = {{1000, 7}, {4000, 500}};
    rig::HvpmMonitor::Options mo;
    mo.dropped_byte_order = order;
    auto r = run(dir, cfg, 2.5, mo);
    CHECK(r.truth.samples_device_dropped == 507);
    CHECK(r.summary.valid_samples == r.truth.samples_sent);
    std::string py;
    int rc = check_file(
        dir, "[[1000,1007],[4000,4500]]", "[[1000,7,0],[4000,500,0]]",
        R"({"missing_samples":507,"device_dropped_samples":507,"counter_gaps":0,"dropped_count_implausible":0})",
        &py);
    INFO(py);
    CHECK(rc == 0);
  }
}

TEST_CASE("hvpm faults: a host stall that overflows the device FIFO is accounted from the device") {
  TempDir dir;
  auto cfg = triangle_config(dir);
  cfg.fifo_packets = 200;  // 120 ms of packets
  cfg.faults.stall_at_s = 0.8;
  cfg.faults.stall_s = 0.5;
  auto r = run(dir, cfg, 2.5);
  const std::uint64_t lost = r.truth.samples_overflowed;
  CHECK(lost > 1000);
  CHECK(r.truth.samples_device_dropped == lost);
  CHECK(counter(r.summary, "device_dropped_samples") == lost);
  CHECK(counter(r.summary, "missing_samples") == lost);
  CHECK(counter(r.summary, "wrap_gaps") == 0);
  CHECK(r.summary.valid_samples == r.truth.samples_sent);
  const char* script = R"PY(
import sys, h5py, numpy as np
lost = int(sys.argv[2])
with h5py.File(sys.argv[1], "r") as f:
    m = f["monitor"]
    cur = m["current"][:]
    gaps = m["gaps"][:]
    assert int(np.isnan(cur).sum()) == lost
    assert sum(int(g["count"]) for g in gaps) == lost and all(int(g["kind"]) == 0 for g in gaps)
    t = np.arange(len(cur)) / 5000.0
    ph = np.mod(t, 0.4) / 0.4
    truth = np.where(ph < 0.5, 0.1 + 7.6 * ph, 3.9 - 7.6 * (ph - 0.5))
    ok = ~np.isnan(cur)
    err = float(np.abs(cur[ok] - truth[ok]).max())
    assert err < 2e-3, err
    print("ok", len(cur), lost, len(gaps), err)
)PY";
  std::string py;
  int rc = meltrig::test::run_python(script, {(dir / "hvpm.h5").string(), std::to_string(lost)},
                                     dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm faults: a 600 ms stall within the FIFO is a late burst, not a loss") {
  TempDir dir;
  auto cfg = triangle_config(dir);
  cfg.faults.stall_at_s = 0.8;
  cfg.faults.stall_s = 0.6;
  auto r = run(dir, cfg, 2.5);
  CHECK(r.truth.samples_device_dropped == 0);
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(counter(r.summary, "stalls_absorbed") >= 1);
  std::string py;
  int rc = check_file(dir, "[]", "[]", R"({"missing_samples":0,"wrap_gaps":0})", &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm faults: a disconnect ends the capture with port_gone and a readable file") {
  TempDir dir;
  auto cfg = triangle_config(dir);
  cfg.faults.disconnect_at_s = 1.2;
  auto r = run(dir, cfg, 10.0);
  CHECK(r.truth.disconnected);
  CHECK(r.summary.state == dataset::CaptureState::failed);
  REQUIRE(r.summary.failure.has_value());
  CHECK(r.summary.failure->code == Errc::port_gone);
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(r.summary.samples > 5000);
  std::string py;
  int rc = check_file(dir, "[]", "[]", R"({"missing_samples":0})", &py);
  INFO(py);
  CHECK(rc == 0);
  const char* state = R"PY(
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert int(f["capture_state/state"][()]) == 2
    reason = f["capture_state/end_reason"][()].rstrip(b"\0").decode()
    assert "disconnected" in reason, reason
    print("ok", reason)
)PY";
  rc = meltrig::test::run_python(state, {(dir / "hvpm.h5").string()}, dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

// ---------------------------------------------------------------------------------------------
// Issue 16: EEPROM registers at the device's width and signedness, PyMonsoon's start request and
// calibration start, a realistic emulator reachable from the command line.

namespace {

std::array<std::uint8_t, 4> le(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 24)};
}

std::string open_error(fixtures::HvpmEmulatorConfig cfg) {
  rig::HvpmMonitor m(std::make_unique<fixtures::HvpmEmulator>(cfg));
  auto info = m.open();
  return info.ok() ? std::string() : info.error().message;
}

// The issue's offsets: main fine/coarse -15/-9, USB fine/coarse -3/-2 counts.
fixtures::HvpmEmulatorConfig negative_offsets() {
  fixtures::HvpmEmulatorConfig cfg;
  cfg.main_adc.scales.fine_zero_offset = -15;
  cfg.main_adc.scales.coarse_zero_offset = -9;
  cfg.usb_adc.scales.fine_zero_offset = -3;
  cfg.usb_adc.scales.coarse_zero_offset = -2;
  return cfg;
}

}  // namespace

TEST_CASE("hvpm registers: zero offsets signed 16-bit, scales unsigned, bytes beyond ignored") {
  using O = hv::Opcode;
  // By hand: -15 is 0xFFF1; bytes 2-3 are not part of a 2-byte register, whatever they hold.
  CHECK(*hv::parse_register(O::main_fine_zero_offset, le(0x0000FFF1)) == -15);
  CHECK(*hv::parse_register(O::main_fine_zero_offset, le(0xBEEFFFF1)) == -15);
  CHECK(*hv::parse_register(O::usb_coarse_zero_offset, le(0xFFFF0002)) == 2);
  CHECK(*hv::parse_register(O::main_fine_scale, le(0xBEEF8E94)) == 36500);  // unsigned 0x8E94
  CHECK(*hv::parse_register(O::main_coarse_scale, le(0x0000FFF0)) == 65520);
  CHECK(*hv::parse_register(O::serial_number, le(0xFFFF4E21)) == 20001);
  CHECK(*hv::parse_register(O::main_fine_resistor_offset, le(0x000000F9)) == -7);  // int8
  CHECK(*hv::parse_register(O::usb_passthrough, le(0xAAAAAA02)) == 2);
  for (auto op : {O::main_fine_zero_offset, O::usb_coarse_zero_offset, O::main_fine_scale,
                  O::aux_fine_resistor_offset, O::usb_passthrough}) {
    for (std::int32_t v : {-15, 2, 100}) {
      const auto f = hv::register_format(op);
      if (!f.is_signed && v < 0) continue;
      CHECK(*hv::parse_register(op, hv::register_reply(op, v, 0xBEEF)) == v);
    }
  }
  // Impossible values are refused, naming the register.
  auto blank = hv::parse_register(O::main_coarse_scale, le(0));
  REQUIRE_FALSE(blank.ok());
  CHECK(blank.error().message.find("main coarse scale (0x1B) reads 0") != std::string::npos);
  auto erased = hv::parse_register(O::usb_fine_scale, le(0xFFFF));
  REQUIRE_FALSE(erased.ok());
  CHECK(erased.error().message.find("USB fine scale (0x1C) reads 65535") != std::string::npos);
  auto absurd = hv::parse_register(O::usb_coarse_zero_offset, le(0x8000));
  REQUIRE_FALSE(absurd.ok());
  CHECK(absurd.error().message.find("USB coarse zero offset (0x28) reads -32768") !=
        std::string::npos);

  // Through the driver: what the emulator's EEPROM holds, with junk in the unused reply bytes.
  auto cfg = negative_offsets();
  cfg.usb_adc.scales.coarse_zero_offset = 7;
  cfg.register_pad = 0xBEEF;
  rig::HvpmMonitor m(std::make_unique<fixtures::HvpmEmulator>(cfg));
  auto info = m.open();
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.error().describe()));
  const auto& d = m.device_calibration();
  CHECK(d.main.fine_zero_offset == -15);
  CHECK(d.main.coarse_zero_offset == -9);
  CHECK(d.usb.fine_zero_offset == -3);
  CHECK(d.usb.coarse_zero_offset == 7);
  CHECK(d.main.fine_scale == 36500);
  CHECK(d.main.coarse_scale == 6400);
  CHECK(d.usb.fine_scale == 14000);
  CHECK(d.usb.coarse_scale == 600);
  CHECK(info->serial_number == "20001");

  // The reflashed LVPM: 1-byte signed resistor offsets.
  fixtures::HvpmEmulatorConfig lv;
  lv.model = hv::Model::lvpm;
  lv.lvpm_resistor_offsets = {-12, 7, -3, 0};
  lv.register_pad = 0xBEEF;
  rig::HvpmMonitor lm(std::make_unique<fixtures::HvpmEmulator>(lv));
  REQUIRE(lm.open().ok());
  CHECK(lm.device_calibration().main.fine_scale ==
        doctest::Approx(hv::lvpm_fine_scale(hv::lvpm_resistor_ohm(-12))));
  CHECK(lm.device_calibration().main.coarse_scale ==
        doctest::Approx(hv::lvpm_coarse_scale(hv::lvpm_resistor_ohm(7))));
  CHECK(lm.device_calibration().usb.fine_scale ==
        doctest::Approx(hv::lvpm_fine_scale(hv::lvpm_resistor_ohm(-3))));

  // A device whose EEPROM holds impossible values is refused at open(), naming the register.
  auto no_scale = negative_offsets();
  no_scale.main_adc.scales.coarse_scale = 0;
  CHECK(open_error(no_scale).find("main coarse scale (0x1B) reads 0") != std::string::npos);
  auto huge = negative_offsets();
  huge.usb_adc.scales.fine_zero_offset = -5000;
  CHECK(open_error(huge).find("USB fine zero offset (0x27) reads -5000") != std::string::npos);
}

TEST_CASE("hvpm calibration: nothing converts before 5 readings of main, USB and aux each") {
  hv::DeviceCalibration dev{hv::Model::hvpm, {36500, 6400, -15, -9}, {14000, 600, -3, 2}};
  auto cal_sample = [](bool zero, std::int16_t aux) {
    hv::RawSample s;
    s.main_fine = s.usb_fine = zero ? 150 : 30250;
    s.main_coarse = s.usb_coarse = zero ? 120 : 30200;
    s.aux_fine = s.aux_coarse = aux;
    s.main_gain = zero ? 0x10 : 0x30;
    return s;
  };
  hv::Calibrator cal(dev);
  for (int i = 0; i < 4; ++i) {
    cal.add(cal_sample(true, -40));
    cal.add(cal_sample(false, 29000));
  }
  CHECK(cal.main_ready());        // one reading is enough for the maths...
  CHECK_FALSE(cal.calibrated());  // ...but not for a driver: PyMonsoon waits for 5 of each
  CHECK(cal.missing_readings().find("main fine zero 4/5") != std::string::npos);
  cal.add(cal_sample(true, -40));
  CHECK_FALSE(cal.calibrated());
  CHECK(cal.missing_readings() ==
        "main fine ref 4/5, main coarse ref 4/5, USB fine ref 4/5, "
        "USB coarse ref 4/5, aux fine ref 4/5, aux coarse ref 4/5");
  cal.add(cal_sample(false, 29000));
  CHECK(cal.calibrated());
  CHECK(cal.missing_readings().empty());
  // Aux words of 0 are "not measured": main and USB alone never complete the calibration.
  hv::Calibrator no_aux(dev);
  for (int i = 0; i < 10; ++i) {
    no_aux.add(cal_sample(true, 0));
    no_aux.add(cal_sample(false, 0));
  }
  CHECK_FALSE(no_aux.calibrated());
  CHECK(no_aux.missing_readings() ==
        "aux fine zero 0/5, aux fine ref 0/5, aux coarse zero 0/5, aux coarse ref 0/5");

  // Through the driver: 2 calibration samples per burst (bursts at samples 0, 6250, 12500) give
  // 5 readings with the third burst; every sample before it is an `uncalibrated` gap.
  TempDir dir;
  auto cfg = negative_offsets();
  cfg.cal_samples = 2;
  cfg.waveform = fixtures::Waveform::constant(0.8);
  auto r = run(dir, cfg, 3.5);
  CHECK(r.summary.state == dataset::CaptureState::complete);
  const std::uint64_t uncal = counter(r.summary, "uncalibrated_samples");
  CHECK(uncal >= 12498);  // the packet holding sample 12500 may start up to 2 samples before it
  CHECK(uncal <= 12500);
  CHECK(counter(r.summary, "missing_samples") == uncal);
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(r.summary.valid_samples == r.truth.samples_sent - uncal);
  CHECK(std::abs(r.summary.mean_current_a - 0.8) / 0.8 < 1e-3);
  const char* script = R"PY(
import sys, h5py, numpy as np
uncal = int(sys.argv[2])
with h5py.File(sys.argv[1], "r") as f:
    m = f["monitor"]
    cur = m["current"][:]
    nan = np.flatnonzero(np.isnan(cur))
    assert list(nan) == list(range(uncal)), (nan[:5], len(nan), uncal)
    gaps = m["gaps"][:]
    assert all(int(g["kind"]) == 5 for g in gaps), gaps
    assert sum(int(g["count"]) for g in gaps) == uncal
    assert int(m["calibration"][0]["sample_index"]) == uncal, m["calibration"][:]
    print("ok", uncal, len(gaps))
)PY";
  std::string py;
  int rc = meltrig::test::run_python(script, {(dir / "hvpm.h5").string(), std::to_string(uncal)},
                                     dir.path(), &py);
  INFO(py);
  CHECK(rc == 0);
}

TEST_CASE("hvpm capture: negative zero offsets, mean current within 0.1% of the truth") {
  TempDir dir;
  auto cfg = negative_offsets();
  // Fine range (30 mA) and coarse range (1.5 A) in turn, so every offset matters.
  auto w = fixtures::Waveform::steps({{0, 0.03}, {1.0, 1.5}, {2.0, 0.03}});
  REQUIRE(w.ok());
  cfg.waveform = *w;
  cfg.usb_current_a = 0.004;  // USB fine range
  rig::MonitorConfig mc;
  mc.usb_passthrough = rig::MonitorConfig::UsbPassthrough::on;
  auto r = run(dir, cfg, 3.0, {}, mc);
  REQUIRE(r.summary.state == dataset::CaptureState::complete);
  REQUIRE(r.truth.samples_sent > 10'000);
  CHECK(r.summary.samples == r.truth.samples_sent);
  CHECK(r.summary.valid_samples == r.truth.samples_sent);
  const double truth = r.truth.sum_true_amps / static_cast<double>(r.truth.samples_sent);
  const double err = std::abs(r.summary.mean_current_a - truth) / truth;
  MESSAGE("negative offsets: mean " << r.summary.mean_current_a << " A, truth " << truth
                                    << " A, relative error " << err);
  CHECK(err < 1e-3);
  // PyMonsoon's start request: wIndex 0.
  bool started = false;
  for (const auto& t : r.truth.control_log) {
    if (t.request != 0x02) continue;
    CHECK(t.index == 0);
    CHECK(t.value == 1250);
    started = true;
  }
  CHECK(started);

  // What the driver did before (offsets read as unsigned 32-bit words): the same samples convert
  // with offsets of 65521, 65527, 65533, 65534 counts.
  hv::DeviceCalibration unsigned_read{
      hv::Model::hvpm, {36500, 6400, 65536 - 15, 65536 - 9}, {14000, 600, 65536 - 3, 65536 - 2}};
  hv::Calibrator old(unsigned_read);
  hv::Calibrator exact({hv::Model::hvpm, cfg.main_adc.scales, cfg.usb_adc.scales});
  for (bool zero : {true, false}) {
    hv::RawSample s;
    const auto& a = cfg.main_adc;
    s.main_fine = static_cast<std::uint16_t>(zero ? a.fine_zero_cal : a.fine_ref_cal);
    s.main_coarse = static_cast<std::uint16_t>(zero ? a.coarse_zero_cal : a.coarse_ref_cal);
    s.usb_fine =
        static_cast<std::uint16_t>(zero ? cfg.usb_adc.fine_zero_cal : cfg.usb_adc.fine_ref_cal);
    s.usb_coarse =
        static_cast<std::uint16_t>(zero ? cfg.usb_adc.coarse_zero_cal : cfg.usb_adc.coarse_ref_cal);
    s.main_gain = zero ? 0x10 : 0x30;
    old.add(s);
    exact.add(s);
  }
  double worst = 0, old_mean = 0;
  for (double amps : {0.03, 1.5, 0.03}) {  // the waveform's steps, a second each
    hv::RawSample s;
    auto words = hv::quantize_current(amps, cfg.main_adc, hv::Model::hvpm);
    s.main_fine = words[0];
    s.main_coarse = words[1];
    CHECK(exact.main_amps(s) == doctest::Approx(amps).epsilon(1e-3));
    worst = std::max(worst, std::abs(old.main_amps(s) - amps));
    old_mean += old.main_amps(s) / 3;
  }
  MESSAGE("offsets read unsigned (the driver before issue 16): up to "
          << worst << " A wrong; mean " << old_mean << " A for a true 0.52 A ("
          << (old_mean - 0.52) / 0.52 * 100 << "%)");
  CHECK(worst > 1.0);
}

TEST_CASE("hvpm emulated: hvpm:emulated specs reach the real driver, the truth as JSON") {
  fixtures::HvpmEmulatorConfig def;  // the default EEPROM: both signs, non-zero aux words
  CHECK(def.main_adc.scales.fine_zero_offset < 0);
  CHECK(def.usb_adc.scales.coarse_zero_offset > 0);
  CHECK(def.aux_cal[0] != 0);
  CHECK(def.aux_cal[3] != 0);
  CHECK(def.aux_fine_scale > 0);

  auto parsed = fixtures::parse_emulated_hvpm(std::vector<std::pair<std::string, std::string>>{
      {"main_fine_zero", "-15"}, {"usb_coarse_zero", "3"}, {"current", "0.25"}, {"seed", "9"}});
  REQUIRE(parsed.ok());
  CHECK(parsed->config.main_adc.scales.fine_zero_offset == -15);
  CHECK(parsed->config.usb_adc.scales.coarse_zero_offset == 3);
  CHECK(parsed->config.waveform.at(1.0) == 0.25);
  auto bad = fixtures::parse_emulated_hvpm(
      std::vector<std::pair<std::string, std::string>>{{"main_fine_zero", "-1.5"}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("main_fine_zero=-1.5") != std::string::npos);
  auto unknown = fixtures::parse_emulated_hvpm(
      std::vector<std::pair<std::string, std::string>>{{"curent", "1"}});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message.find("unknown option \"curent\"") != std::string::npos);

  rig::HvpmMonitor::set_emulator_factory(&fixtures::make_emulated_hvpm);
  TempDir dir;
  const auto truth_path = dir / "truth.json";
  auto spec = rig::DeviceSpec::parse(
      "hvpm:emulated,main_fine_zero=-15,main_coarse_zero=-9,usb_fine_zero=-3,usb_coarse_zero=-2,"
      "current=0.25,truth=" +
      truth_path.string());
  REQUIRE(spec.ok());
  auto monitor = rig::make_monitor(*spec);
  REQUIRE_MESSAGE(monitor.ok(), (monitor.ok() ? "" : monitor.error().describe()));
  auto info = (*monitor)->open();
  REQUIRE(info.ok());
  rig::CaptureOptions opt;
  opt.output = dir / "emulated.h5";
  opt.duration_s = 2.0;
  auto s = rig::run_capture(**monitor, *info, opt);
  REQUIRE(s.ok());
  (*monitor)->close();
  std::ifstream f(truth_path);
  auto j = nlohmann::json::parse(f);
  CHECK(j["samples_sent"].get<std::uint64_t>() == s->samples);
  CHECK(j["samples_generated"].get<std::uint64_t>() >= s->samples);
  CHECK(j["mean_current_a"].get<double>() == doctest::Approx(0.25));
  CHECK(j["mean_voltage_v"].get<double>() == doctest::Approx(4.0));
  CHECK(j["eeprom"]["main_fine_zero_offset"].get<double>() == -15);
  CHECK(std::abs(s->mean_current_a - 0.25) / 0.25 < 1e-3);

  auto bad_spec = rig::make_monitor(*rig::DeviceSpec::parse("hvpm:emulated:main_fine_scale=x"));
  REQUIRE_FALSE(bad_spec.ok());
  CHECK(bad_spec.error().message.find("hvpm:emulated:main_fine_scale=x") != std::string::npos);
  CHECK(bad_spec.error().message.find("option main_fine_scale=x") != std::string::npos);
}

TEST_CASE("hvpm emulated: meltrig capture --monitor hvpm:emulated,... through the CLI") {
  TempDir dir;
  const auto truth = dir / "truth.json";
  const auto out = dir / "cli.h5";
  meltrig::test::Process p(
      {meltrig::test::cli(), "capture", "--monitor",
       "hvpm:emulated,main_fine_zero=-15,main_coarse_zero=-9,usb_fine_zero=-3,usb_coarse_zero=-2,"
       "current=0.25,truth=" +
           truth.string(),
       "--duration", "2", "-q", "-o", out.string()},
      dir.path(), "capture");
  const int rc = p.wait();
  INFO(p.out() << p.err());
  REQUIRE(rc == 0);
  const char* script = R"PY(
import sys, json, h5py, numpy as np
truth = json.load(open(sys.argv[2]))
with h5py.File(sys.argv[1], "r") as f:
    m = f["monitor"]
    cur = m["current"][:]
    assert len(cur) == truth["samples_sent"], (len(cur), truth)
    err = abs(float(np.nanmean(cur)) - truth["mean_current_a"]) / truth["mean_current_a"]
    assert err < 1e-3, err
    assert abs(float(np.nanmean(m["voltage"][:])) - truth["mean_voltage_v"]) < 1e-4
    assert m["status_at_start"].attrs["main_fine_zero_offset"] == -15.0
    print("ok", len(cur), err)
)PY";
  std::string py;
  int prc = meltrig::test::run_python(script, {out.string(), truth.string()}, dir.path(), &py);
  INFO(py);
  CHECK(prc == 0);

  meltrig::test::Process bad(
      {meltrig::test::cli(), "capture", "--monitor", "hvpm:emulated:usb_fine_zero=-40000",
       "--duration", "1", "-q", "-o", (dir / "bad.h5").string()},
      dir.path(), "bad");
  CHECK(bad.wait() == 2);
  CHECK(bad.err().find("option usb_fine_zero=-40000") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "bad.h5"));
}
