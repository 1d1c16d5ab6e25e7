// Serial relay boards: LCUS and ICStation codecs checked against hand-written bytes, the
// emulators' scanners, the drivers against the emulators over real ptys, the routing helper, and
// the `meltrig relay` CLI as a child process, with the relay emulator's own log as the truth.
//
// What can be verified, honestly: neither board reports its relay state. LCUS is write-only, so
// a driver knows only that the port took the bytes; an LCUS that ignores frames cannot be told
// from one that obeys. An ICStation answers exactly once per power cycle (the ID byte), so a
// dead board is caught at open(), but one that stops obeying later cannot be. Both drivers do
// detect a vanished port. Tests below pin down each of these, the undetectable ones included.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <thread>

#include "meltrig/fixtures/pty.hpp"
#include "meltrig/fixtures/relay_emulators.hpp"
#include "meltrig/fw/relay_protocols.hpp"
#include "meltrig/fw/serial_port.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/routed_relay.hpp"
#include "meltrig/rig/serial_relays.hpp"
#include "test_support.hpp"

using namespace meltrig;
using meltrig::test::Process;
using meltrig::test::TempDir;
using Bytes = std::vector<std::uint8_t>;

namespace {

bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

std::vector<std::string> states(const std::vector<fixtures::RelayLogEntry>& log) {
  std::vector<std::string> out;
  for (const auto& e : log)
    out.push_back(e.channels_string());
  return out;
}

std::vector<std::string> file_states(const std::filesystem::path& p) {
  auto log = fixtures::read_relay_log(p);
  return log ? states(*log) : std::vector<std::string>{};
}

std::string last_state(const std::filesystem::path& p) {
  auto s = file_states(p);
  return s.empty() ? "" : s.back();
}

// Every lcus::Command the scanner yields, in order, as "ch:on".
struct Scanned {
  std::vector<std::string> commands;
  fw::lcus::ScanCounters counters;
  std::size_t pending = 0;
};
Scanned scan_in_pieces(const Bytes& stream, std::size_t piece) {
  fw::lcus::FrameScanner s;
  Scanned out;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    auto n = std::min(piece, stream.size() - at);
    s.feed(std::span(stream.data() + at, n), [&](const fw::lcus::Command& c) {
      out.commands.push_back(std::to_string(c.channel) + (c.on ? ":on" : ":off"));
    });
  }
  out.counters = s.counters();
  out.pending = s.pending();
  return out;
}

rig::LcusRelay::Options lcus_options(const std::string& port, int channels = 4) {
  rig::LcusRelay::Options o;
  o.port = port;
  o.channels = channels;
  o.frame_gap = std::chrono::milliseconds(2);
  return o;
}

rig::IcstationRelay::Options icstation_options(const std::string& port) {
  rig::IcstationRelay::Options o;
  o.port = port;
  o.id_timeout = std::chrono::milliseconds(300);
  o.settle = std::chrono::milliseconds(10);
  return o;
}

/// A relay in memory that records every call and can fail one of them, for the routing helper.
class FakeRelay final : public rig::Relay {
 public:
  std::vector<std::string>* calls;
  std::string fail_on;  ///< a call, e.g. "set 2 on", that returns io_error
  explicit FakeRelay(std::vector<std::string>* c, std::string fail = {})
      : calls(c), fail_on(std::move(fail)) {}
  Result<rig::RelayInfo> open() override {
    calls->push_back("open");
    return rig::RelayInfo{"fake", "mem", 4, false, false};
  }
  Result<void> set(int ch, bool on) override {
    return call("set " + std::to_string(ch) + (on ? " on" : " off"));
  }
  Result<void> set_all(bool on) override { return call(on ? "all on" : "all off"); }
  std::vector<std::optional<bool>> commanded() const override { return {}; }
  void close() override { calls->push_back("close"); }

 private:
  Result<void> call(const std::string& what) {
    calls->push_back(what);
    if (what == fail_on) return make_error(Errc::io_error, "fake: " + what + " failed");
    return {};
  }
};

}  // namespace

// --- codecs ------------------------------------------------------------------------------------

TEST_CASE("relay lcus codec: every frame for channels 1..8 on and off, byte for byte") {
  // Written out by hand from `A0 ch state (A0+ch+state)&FF`, not computed by the code under test.
  const std::array<std::array<Bytes, 2>, 8> expect{{
      {Bytes{0xA0, 0x01, 0x00, 0xA1}, Bytes{0xA0, 0x01, 0x01, 0xA2}},
      {Bytes{0xA0, 0x02, 0x00, 0xA2}, Bytes{0xA0, 0x02, 0x01, 0xA3}},
      {Bytes{0xA0, 0x03, 0x00, 0xA3}, Bytes{0xA0, 0x03, 0x01, 0xA4}},
      {Bytes{0xA0, 0x04, 0x00, 0xA4}, Bytes{0xA0, 0x04, 0x01, 0xA5}},
      {Bytes{0xA0, 0x05, 0x00, 0xA5}, Bytes{0xA0, 0x05, 0x01, 0xA6}},
      {Bytes{0xA0, 0x06, 0x00, 0xA6}, Bytes{0xA0, 0x06, 0x01, 0xA7}},
      {Bytes{0xA0, 0x07, 0x00, 0xA7}, Bytes{0xA0, 0x07, 0x01, 0xA8}},
      {Bytes{0xA0, 0x08, 0x00, 0xA8}, Bytes{0xA0, 0x08, 0x01, 0xA9}},
  }};
  for (int ch = 1; ch <= 8; ++ch) {
    for (bool on : {false, true}) {
      CAPTURE(ch);
      CAPTURE(on);
      auto f = fw::lcus::encode(ch, on);
      REQUIRE(f.ok());
      const Bytes& want = expect[static_cast<std::size_t>(ch - 1)][on ? 1 : 0];
      CHECK(Bytes(f->begin(), f->end()) == want);
      auto d = fw::lcus::decode(want);
      REQUIRE(d.ok());
      CHECK(d->channel == ch);
      CHECK(d->on == on);
    }
  }
  for (int bad : {0, 9, -1, 256}) {
    auto f = fw::lcus::encode(bad, true);
    REQUIRE_FALSE(f.ok());
    CHECK(f.error().code == Errc::invalid_argument);
    CHECK(f.error().message.find(std::to_string(bad)) != std::string::npos);
  }
  // decode names the byte at fault.
  auto sum = fw::lcus::decode(Bytes{0xA0, 0x01, 0x01, 0xA1});
  REQUIRE_FALSE(sum.ok());
  CHECK(sum.error().message.find("byte 3 (checksum) is 0xA1, expected 0xA2") != std::string::npos);
  auto hdr = fw::lcus::decode(Bytes{0xA1, 0x01, 0x01, 0xA2});
  REQUIRE_FALSE(hdr.ok());
  CHECK(hdr.error().message.find("byte 0 is 0xA1") != std::string::npos);
  auto st = fw::lcus::decode(Bytes{0xA0, 0x01, 0x02, 0xA3});
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("byte 2 (state) is 0x02") != std::string::npos);
  auto ch9 = fw::lcus::decode(Bytes{0xA0, 0x09, 0x01, 0xAA});
  REQUIRE_FALSE(ch9.ok());
  CHECK(ch9.error().message.find("byte 1 (channel) is 0x09") != std::string::npos);
  auto short_frame = fw::lcus::decode(Bytes{0xA0, 0x01, 0x01});
  REQUIRE_FALSE(short_frame.ok());
  CHECK(short_frame.error().message.find("3 bytes") != std::string::npos);
}

TEST_CASE("relay lcus scanner: garbage, bad checksums and split writes") {
  const Bytes stream = {
      0x00, 0xFF, 0x13,        // garbage: 3 bytes discarded
      0xA0, 0x02, 0x01, 0xA3,  // ch 2 on
      0xA0, 0x03, 0x01, 0x00,  // bad checksum: costs 1 byte, then 3 more as garbage
      0xA0,                    // a stray header right before a frame
      0xA0, 0x03, 0x00, 0xA3,  // ch 3 off
      0xA0, 0x09, 0x01, 0xAA,  // checksum fine, channel 9: implausible
      0xA0, 0x01, 0x02, 0xA3,  // checksum fine, state 2: implausible
      0xA0, 0x08, 0x01, 0xA9,  // ch 8 on
      0xA0, 0x01,              // a frame cut short at the end: pending
  };
  const std::vector<std::string> want = {"2:on", "3:off", "8:on"};
  // The same commands and counters whether the bytes come at once, one by one, or in pieces.
  for (std::size_t piece : {stream.size(), std::size_t{1}, std::size_t{2}, std::size_t{3},
                            std::size_t{5}, std::size_t{7}}) {
    CAPTURE(piece);
    auto s = scan_in_pieces(stream, piece);
    CHECK(s.commands == want);
    CHECK(s.counters.frames == 3);
    CHECK(s.counters.bad_checksums == 2);  // the bad frame, and the stray A0 before ch 3
    CHECK(s.counters.implausible == 2);
    CHECK(s.pending == 2);
    // Every byte is in a frame, discarded, or pending.
    CHECK(4 * s.counters.frames + s.counters.discarded_bytes + s.pending == stream.size());
  }
  // A frame split at every possible point.
  const Bytes one = {0xA0, 0x05, 0x01, 0xA6};
  for (std::size_t cut = 0; cut < one.size(); ++cut) {
    fw::lcus::FrameScanner s;
    int got = 0;
    s.feed(std::span(one.data(), cut), [&](auto) { ++got; });
    CHECK(got == 0);
    s.feed(std::span(one.data() + cut, one.size() - cut), [&](const fw::lcus::Command& c) {
      ++got;
      CHECK(c.channel == 5);
      CHECK(c.on);
    });
    CHECK(got == 1);
    CHECK(s.counters().discarded_bytes == 0);
  }
}

TEST_CASE("relay icstation codec: ID table, command mode and active-low bitmaps by hand") {
  namespace ic = fw::icstation;
  CHECK(ic::board_for_id(0xAD)->channels == 2);
  CHECK(ic::board_for_id(0xAB)->channels == 4);
  CHECK(ic::board_for_id(0xAC)->channels == 8);
  CHECK(ic::board_for_id(0xAB)->model == "ICSE012A");
  auto unknown = ic::board_for_id(0x42);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == Errc::protocol_error);
  CHECK(unknown.error().message.find("0x42") != std::string::npos);
  CHECK(ic::board_for_channels(8)->id == 0xAC);
  CHECK_FALSE(ic::board_for_channels(3).ok());

  // Active-low: bit n = channel n+1, 0 = on; relays a board lacks are sent as 1 (off).
  CHECK(ic::encode_bitmap(0b0000, 4).value() == 0xFF);  // all off
  CHECK(ic::encode_bitmap(0b0001, 4).value() == 0xFE);  // channel 1 on
  CHECK(ic::encode_bitmap(0b0010, 4).value() == 0xFD);  // channel 2 on
  CHECK(ic::encode_bitmap(0b1111, 4).value() == 0xF0);  // all four on
  CHECK(ic::encode_bitmap(0x80, 8).value() == 0x7F);    // channel 8 on
  CHECK(ic::encode_bitmap(0b10, 2).value() == 0xFD);
  auto beyond = ic::encode_bitmap(0x10, 4);
  REQUIRE_FALSE(beyond.ok());
  CHECK(beyond.error().message.find("0x10") != std::string::npos);
  CHECK(ic::decode_bitmap(0xFE, 4) == 0b0001);
  CHECK(ic::decode_bitmap(0x00, 2) == 0b11);
  // 0x50 read as a bitmap: relays 1-4, 6 and 8 on. This is what the identify request does to a
  // board already in command mode.
  CHECK(ic::decode_bitmap(ic::kIdentify, 8) == 0b10101111);

  ic::DeviceDecoder d(*ic::board_for_channels(4));
  using K = ic::DeviceAction::Kind;
  auto a = d.on_byte(0x50);
  CHECK(a.kind == K::reply_id);
  CHECK(a.reply == 0xAB);
  CHECK(d.on_byte(0x12).kind == K::ignored);  // noise before command mode does nothing
  CHECK(d.on_byte(0xFE).kind == K::ignored);
  CHECK(d.on_mask() == 0);
  CHECK(d.on_byte(0x51).kind == K::enter_command_mode);
  CHECK(d.command_mode());
  a = d.on_byte(0xFB);  // channel 3 on
  CHECK(a.kind == K::set_relays);
  CHECK(a.on_mask == 0b0100);
  a = d.on_byte(0x50);  // not an identify request any more
  CHECK(a.kind == K::set_relays);
  CHECK(a.on_mask == 0b1111);
  a = d.on_byte(0x51);  // nor is 0x51 special
  CHECK(a.kind == K::set_relays);
  CHECK(a.on_mask == 0b1110);
  CHECK(d.counters().identify_requests == 1);
  CHECK(d.counters().ignored_bytes == 2);
  d.power_cycle();
  CHECK_FALSE(d.command_mode());
  CHECK(d.on_mask() == 0);
  CHECK(d.on_byte(0x50).reply == 0xAB);
}

// --- emulators ---------------------------------------------------------------------------------

TEST_CASE("relay emulators: the LCUS emulator takes valid frames only, across split writes") {
  TempDir dir;
  fixtures::RelayEmulatorConfig cfg;
  cfg.channels = 4;
  cfg.log_file = dir / "lcus.log";
  auto emu = fixtures::LcusEmulator::start(cfg);
  REQUIRE(emu.ok());
  auto port = fw::SerialPort::open((*emu)->port_path());
  REQUIRE(port.ok());
  const Bytes stream = {
      0x55, 0xA0, 0x00,        // garbage
      0xA0, 0x01, 0x01, 0xA2,  // ch 1 on
      0xA0, 0x02, 0x01, 0xA4,  // bad checksum: ignored
      0xA0, 0x03, 0x01, 0xA4,  // ch 3 on
      0xA0, 0x06, 0x01, 0xA7,  // ch 6 on: valid, but a 4-channel board has no channel 6
      0xA0, 0x01, 0x00, 0xA1,  // ch 1 off
  };
  // Written in 1..3-byte pieces with pauses, so the emulator sees frames split across reads.
  for (std::size_t at = 0; at < stream.size();) {
    std::size_t n = std::min<std::size_t>(1 + at % 3, stream.size() - at);
    REQUIRE(port->write_all(std::span(stream.data() + at, n), std::chrono::milliseconds(500)).ok());
    at += n;
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  port->close();
  (*emu)->stop();
  CHECK(states((*emu)->log()) == std::vector<std::string>{"0000", "1000", "1010", "0010"});
  auto c = (*emu)->counters();
  CHECK(c.bytes_received == stream.size());
  CHECK(c.commands == 4);
  CHECK(c.out_of_range == 1);
  CHECK(c.bad_checksums >= 1);
  CHECK(c.discarded_bytes == stream.size() - 4 * 4);
  // The file says the same, with the cause of each entry.
  auto file = fixtures::read_relay_log(dir / "lcus.log");
  REQUIRE(file.ok());
  CHECK(states(*file) == states((*emu)->log()));
  CHECK(file->front().cause == "power_on");
  CHECK(file->back().cause == "command");
  CHECK(std::is_sorted(file->begin(), file->end(),
                       [](const auto& x, const auto& y) { return x.t_ns < y.t_ns; }));
  CHECK(test::read_file(dir / "lcus.log").find("channels=1010 cause=command\n") !=
        std::string::npos);
}

TEST_CASE("relay emulators: the ICStation emulator answers its ID once per power cycle") {
  fixtures::IcstationEmulatorConfig cfg;
  cfg.channels = 8;
  auto emu = fixtures::IcstationEmulator::start(cfg);
  REQUIRE(emu.ok());
  auto port = fw::SerialPort::open((*emu)->port_path());
  REQUIRE(port.ok());
  auto ask_id = [&]() -> std::optional<std::uint8_t> {
    const std::uint8_t b = 0x50;
    REQUIRE(port->write_all(std::span(&b, 1), std::chrono::milliseconds(500)).ok());
    std::uint8_t id = 0;
    auto n = port->read_some(std::span(&id, 1), std::chrono::milliseconds(200));
    if (!n) return std::nullopt;
    return id;
  };
  CHECK(ask_id() == std::optional<std::uint8_t>(0xAC));
  CHECK(ask_id() == std::optional<std::uint8_t>(0xAC));  // before 0x51 it may ask again
  const std::uint8_t enter = 0x51;
  REQUIRE(port->write_all(std::span(&enter, 1), std::chrono::milliseconds(500)).ok());
  CHECK(wait_until([&] { return (*emu)->command_mode(); }));
  CHECK_FALSE(ask_id().has_value());  // silent, and the 0x50 became a bitmap
  CHECK(wait_until([&] { return (*emu)->on_mask() == 0b10101111; }));
  (*emu)->power_cycle();
  CHECK((*emu)->on_mask() == 0);
  CHECK(ask_id() == std::optional<std::uint8_t>(0xAC));
  port->close();
  (*emu)->stop();
  auto log = (*emu)->log();
  CHECK(states(log) == std::vector<std::string>{"00000000", "11110101", "00000000"});
  CHECK(log.back().cause == "power_cycle");
  CHECK((*emu)->counters().identify_replies == 3);
}

// --- drivers against emulators over real ptys --------------------------------------------------

TEST_CASE("relay drivers: LCUS set and exclusive routing produce exactly the expected states") {
  fixtures::RelayEmulatorConfig cfg;
  cfg.channels = 4;
  auto emu = fixtures::LcusEmulator::start(cfg);
  REQUIRE(emu.ok());
  rig::LcusRelay relay(lcus_options((*emu)->port_path()));
  auto info = relay.open();
  REQUIRE(info.ok());
  CHECK(info->channels == 4);
  CHECK_FALSE(info->read_back);
  CHECK(relay.commanded() == std::vector<std::optional<bool>>(4, std::nullopt));
  REQUIRE(relay.set(1, true).ok());
  REQUIRE(relay.set(3, true).ok());
  const std::size_t before_route = 3;  // power_on, 1000, 1010
  REQUIRE(rig::route_exclusive(relay, 2).ok());
  REQUIRE(rig::route_exclusive(relay, 4).ok());
  auto bad = relay.set(5, true);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::invalid_argument);
  CHECK(bad.error().message.find("channel 5 is outside 1..4") != std::string::npos);
  CHECK(relay.commanded() == std::vector<std::optional<bool>>{false, false, false, true});
  relay.close();
  (*emu)->stop();
  auto log = (*emu)->log();
  CHECK(states(log) ==
        std::vector<std::string>{"0000", "1000", "1010", "0010", "0000", "0100", "0000", "0001"});
  // Exclusive routing: from the first route on, never two channels on at once.
  for (std::size_t i = before_route; i < log.size(); ++i)
    CHECK(log[i].count_on() <= 1);
  CHECK((*emu)->counters().discarded_bytes == 0);
}

TEST_CASE("relay drivers: ICStation identifies, enters command mode and routes exclusively") {
  fixtures::IcstationEmulatorConfig cfg;
  cfg.channels = 4;
  auto emu = fixtures::IcstationEmulator::start(cfg);
  REQUIRE(emu.ok());
  rig::IcstationRelay relay(icstation_options((*emu)->port_path()));
  auto info = relay.open();
  REQUIRE_MESSAGE(info.ok(), (info.ok() ? "" : info.error().describe()));
  CHECK(info->channels == 4);
  CHECK(info->active_low);
  CHECK_FALSE(info->read_back);
  CHECK(relay.board().model == "ICSE012A");
  CHECK(wait_until([&] { return (*emu)->command_mode(); }));
  REQUIRE(relay.set(1, true).ok());
  REQUIRE(relay.set(3, true).ok());
  REQUIRE(rig::route_exclusive(relay, 2).ok());
  REQUIRE(relay.set(2, false).ok());
  CHECK(relay.commanded() == std::vector<std::optional<bool>>(4, false));
  relay.close();
  (*emu)->stop();
  auto log = (*emu)->log();
  // set_all is one byte, so routing is exactly two states: all off, then one on.
  CHECK(states(log) == std::vector<std::string>{"0000", "1000", "1010", "0000", "0100", "0000"});
  auto c = (*emu)->counters();
  CHECK(c.identify_replies == 1);
  CHECK(c.bytes_received == 2 + 5);  // 0x50, 0x51, then one bitmap per call
}

TEST_CASE("relay drivers: ICStation channels never commanded are sent as off") {
  fixtures::IcstationEmulatorConfig cfg;
  cfg.channels = 4;
  auto emu = fixtures::IcstationEmulator::start(cfg);
  REQUIRE(emu.ok());
  {
    rig::IcstationRelay relay(icstation_options((*emu)->port_path()));
    REQUIRE(relay.open().ok());
    REQUIRE(relay.set(1, true).ok());
    REQUIRE(relay.set(4, true).ok());
  }
  REQUIRE(wait_until([&] { return (*emu)->on_mask() == 0b1001; }));
  // A new session on the same board (already in command mode) knows nothing of channel 1 or 4.
  auto o = icstation_options((*emu)->port_path());
  o.channels = 4;
  rig::IcstationRelay again(o);
  auto before = (*emu)->counters().bytes_received;
  REQUIRE(again.open().ok());
  CHECK((*emu)->counters().bytes_received == before);  // channels given: nothing sent at open
  REQUIRE(again.set(2, true).ok());
  again.close();
  (*emu)->stop();
  CHECK(states((*emu)->log()) == std::vector<std::string>{"0000", "1000", "1001", "0100"});
}

TEST_CASE("relay drivers: ICStation already in command mode fails to identify and is undone") {
  fixtures::IcstationEmulatorConfig cfg;
  cfg.channels = 4;
  cfg.command_mode = true;  // identified by an earlier run, not power-cycled since
  auto emu = fixtures::IcstationEmulator::start(cfg);
  REQUIRE(emu.ok());
  rig::IcstationRelay relay(icstation_options((*emu)->port_path()));
  auto info = relay.open();
  REQUIRE_FALSE(info.ok());
  CHECK(info.error().code == Errc::timeout);
  CHECK(info.error().message.find("0x50") != std::string::npos);
  CHECK(info.error().message.find("Power-cycle") != std::string::npos);
  CHECK(info.error().message.find("channels=N") != std::string::npos);
  CHECK(wait_until([&] { return (*emu)->log().size() == 3; }));
  // The protocol's hazard, made visible: 0x50 switched all four relays on until the driver's
  // 0xFF turned them off again, id_timeout later. The driver cannot prevent this, only undo it.
  CHECK(states((*emu)->log()) == std::vector<std::string>{"0000", "1111", "0000"});

  // With channels=4 the driver sends nothing at open and works.
  auto o = icstation_options((*emu)->port_path());
  o.channels = 4;
  rig::IcstationRelay known(o);
  REQUIRE(known.open().ok());
  REQUIRE(rig::route_exclusive(known, 3).ok());
  known.close();
  // The pty hands bytes over asynchronously: let the board take the route before pulling power.
  REQUIRE(wait_until([&] { return (*emu)->on_mask() == 0b0100; }));
  // After a power cycle, identification works again.
  (*emu)->power_cycle();
  rig::IcstationRelay fresh(icstation_options((*emu)->port_path()));
  REQUIRE(fresh.open().ok());
  fresh.close();
  (*emu)->stop();
  CHECK(states((*emu)->log()) == std::vector<std::string>{"0000", "1111", "0000", "0010", "0000"});
}

TEST_CASE("relay drivers: ICStation with an unknown ID byte is a protocol error") {
  auto pty = fixtures::Pty::open();
  REQUIRE(pty.ok());
  std::jthread board([fd = pty->master_fd()](std::stop_token st) {
    while (!st.stop_requested()) {
      std::uint8_t b = 0;
      if (::read(fd, &b, 1) == 1 && b == 0x50) {
        const std::uint8_t reply = 0x42;
        (void)::write(fd, &reply, 1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  rig::IcstationRelay relay(icstation_options(pty->port_path()));
  auto info = relay.open();
  REQUIRE_FALSE(info.ok());
  CHECK(info.error().code == Errc::protocol_error);
  CHECK(info.error().message.find("0x42") != std::string::npos);
  CHECK(info.error().message.find(pty->port_path()) != std::string::npos);
}

TEST_CASE("relay faults: what an ignoring relay looks like to each driver") {
  SUBCASE("a dead ICStation (ignores everything) is reported at open") {
    fixtures::IcstationEmulatorConfig cfg;
    cfg.faults.ignore_after = 0;
    auto emu = fixtures::IcstationEmulator::start(cfg);
    REQUIRE(emu.ok());
    rig::IcstationRelay relay(icstation_options((*emu)->port_path()));
    auto info = relay.open();
    REQUIRE_FALSE(info.ok());
    CHECK(info.error().code == Errc::timeout);
    (*emu)->stop();
    CHECK((*emu)->counters().ignored_by_fault >= 1);
    CHECK((*emu)->log().size() == 1);
  }
  SUBCASE("an ICStation that stops obeying after identification cannot be detected") {
    fixtures::IcstationEmulatorConfig cfg;
    cfg.faults.ignore_after = 2;  // obeys 0x50 and 0x51, ignores every bitmap
    auto emu = fixtures::IcstationEmulator::start(cfg);
    REQUIRE(emu.ok());
    rig::IcstationRelay relay(icstation_options((*emu)->port_path()));
    auto info = relay.open();
    REQUIRE(info.ok());
    CHECK_FALSE(info->read_back);  // what the driver admits
    CHECK(rig::route_exclusive(relay, 2).ok());
    CHECK(relay.commanded()[1] == std::optional<bool>(true));  // what it believes
    relay.close();
    (*emu)->stop();
    CHECK((*emu)->on_mask() == 0);  // what the board did: nothing
    CHECK((*emu)->counters().ignored_by_fault == 2);
  }
  SUBCASE("an LCUS that ignores frames cannot be detected: it is write-only") {
    fixtures::RelayEmulatorConfig cfg;
    cfg.faults.ignore_after = 4;  // the four "off" frames of the route are obeyed, "on" is not
    auto emu = fixtures::LcusEmulator::start(cfg);
    REQUIRE(emu.ok());
    rig::LcusRelay relay(lcus_options((*emu)->port_path()));
    auto info = relay.open();
    REQUIRE(info.ok());
    CHECK_FALSE(info->read_back);
    CHECK(rig::route_exclusive(relay, 3).ok());
    CHECK(relay.commanded()[2] == std::optional<bool>(true));
    relay.close();
    (*emu)->stop();
    CHECK((*emu)->on_mask() == 0);
    CHECK((*emu)->counters().ignored_by_fault == 1);
  }
  SUBCASE("a vanished port is detected by both drivers") {
    fixtures::RelayEmulatorConfig lc;
    auto lemu = fixtures::LcusEmulator::start(lc);
    REQUIRE(lemu.ok());
    rig::LcusRelay lcus(lcus_options((*lemu)->port_path()));
    REQUIRE(lcus.open().ok());
    REQUIRE(lcus.set(1, true).ok());
    (*lemu)->stop();
    auto r = lcus.set(1, false);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::port_gone);
    CHECK_FALSE(lcus.commanded()[0].has_value());  // unknown now, not "still on"

    fixtures::IcstationEmulatorConfig ic;
    auto iemu = fixtures::IcstationEmulator::start(ic);
    REQUIRE(iemu.ok());
    rig::IcstationRelay icst(icstation_options((*iemu)->port_path()));
    REQUIRE(icst.open().ok());
    REQUIRE(icst.set(2, true).ok());
    (*iemu)->stop();
    auto r2 = icst.set_all(false);
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().code == Errc::port_gone);
    CHECK_FALSE(icst.commanded()[1].has_value());
    CHECK(icst.commanded()[0] == std::optional<bool>(false));  // unchanged by the lost byte
  }
}

// --- registry and routing helper -----------------------------------------------------------------

TEST_CASE("relay registry: find() says 'may be' by USB bridge, make() checks every option") {
  fw::PortInfo ch340;
  ch340.path = "/dev/ttyUSB0";
  ch340.transport = "usb";
  ch340.usb_vid = 0x1a86;
  ch340.usb_pid = 0x7523;
  fw::PortInfo pl2303 = ch340;
  pl2303.path = "/dev/ttyUSB1";
  pl2303.usb_vid = 0x067b;
  pl2303.usb_pid = 0x2303;
  fw::PortInfo acm;
  acm.path = "/dev/ttyACM0";
  std::vector<fw::PortInfo> ports = {ch340, pl2303, acm};
  auto c = rig::find_candidates(ports);
  auto has = [&](const std::string& driver, const std::string& path) {
    return std::any_of(c.begin(), c.end(), [&](const rig::Candidate& x) {
      return x.driver == driver && x.spec.find(path) != std::string::npos;
    });
  };
  CHECK(has("lcus", "/dev/ttyUSB0"));
  CHECK(has("icstation", "/dev/ttyUSB0"));
  CHECK_FALSE(has("lcus", "/dev/ttyUSB1"));
  CHECK(has("icstation", "/dev/ttyUSB1"));
  CHECK_FALSE(has("lcus", "/dev/ttyACM0"));
  CHECK_FALSE(has("icstation", "/dev/ttyACM0"));
  for (const auto& x : c) {
    if (x.driver == "lcus" || x.driver == "icstation")
      CHECK(x.why.find("may be") != std::string::npos);
  }

  auto spec = [](const char* s) { return rig::DeviceSpec::parse(s).value(); };
  CHECK(rig::make_relay(spec("lcus:/dev/ttyUSB0")).ok());
  CHECK(rig::make_relay(spec("lcus:/dev/ttyUSB0:channels=8,gap_ms=0")).ok());
  CHECK(rig::make_relay(spec("icstation:/dev/ttyUSB0:channels=2")).ok());
  for (const char* bad : {"lcus:/dev/x:channels=3", "lcus:/dev/x:channels=9",
                          "lcus:/dev/x:chanels=4", "icstation:/dev/x:channels=4,speed=2",
                          "icstation:/dev/x:channels=1", "lcus:/dev/x:gap_ms=-1"}) {
    CAPTURE(bad);
    auto r = rig::make_relay(spec(bad));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find(spec(bad).str()) != std::string::npos);
  }
  CHECK(rig::make_relay(spec("lcus:/dev/x:chanels=4")).error().message.find("\"chanels\"") !=
        std::string::npos);
  CHECK_FALSE(rig::make_monitor(spec("lcus:/dev/x")).ok());
}

TEST_CASE("relay routing helper: routes, restores on destruction, and on a failed route") {
  std::vector<std::string> calls;
  {
    auto rr = rig::RoutedRelay::open(std::make_unique<FakeRelay>(&calls), 2, {1});
    REQUIRE(rr.ok());
    CHECK(calls == std::vector<std::string>{"open", "all off", "set 2 on"});
    CHECK((*rr)->safe_state_text() == "channel 1 on");
  }
  CHECK(calls ==
        std::vector<std::string>{"open", "all off", "set 2 on", "all off", "set 1 on", "close"});

  calls.clear();
  auto failed = rig::RoutedRelay::open(std::make_unique<FakeRelay>(&calls, "set 3 on"), 3);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code == Errc::io_error);
  CHECK(failed.error().message.find("safe state (all off) restored") != std::string::npos);
  CHECK(calls == std::vector<std::string>{"open", "all off", "set 3 on", "all off", "close"});

  calls.clear();
  auto restore_fails =
      rig::RoutedRelay::open(std::make_unique<FakeRelay>(&calls, "set 4 on"), 2, {4});
  REQUIRE(restore_fails.ok());
  auto r = (*restore_fails)->restore();
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("set 4 on") != std::string::npos);
  CHECK((*restore_fails)->restore().ok() == false);  // idempotent: same answer, no new calls
  CHECK(std::count(calls.begin(), calls.end(), "close") == 1);

  calls.clear();
  auto bad_safe = rig::RoutedRelay::open(std::make_unique<FakeRelay>(&calls), 2, {1, 7});
  REQUIRE_FALSE(bad_safe.ok());
  CHECK(bad_safe.error().code == Errc::invalid_argument);
  CHECK(bad_safe.error().message.find("safe-state channel 7 is outside 1..4") != std::string::npos);
  CHECK(calls == std::vector<std::string>{"open", "close"});  // nothing was switched
}

// --- the CLI as a child process, checked by the emulator's own log -------------------------------

namespace {

struct CliBench {
  TempDir dir;
  std::filesystem::path link = dir / "relay";
  std::filesystem::path log = dir / "relay.log";
  std::unique_ptr<Process> emu;

  explicit CliBench(const std::vector<std::string>& emulate_args) {
    std::vector<std::string> argv = {test::cli(), "emulate"};
    argv.insert(argv.end(), emulate_args.begin(), emulate_args.end());
    argv.insert(argv.end(), {"--link", link.string(), "--log", log.string()});
    emu = std::make_unique<Process>(argv, dir.path(), "emu");
    REQUIRE(test::wait_for_path(link));
    REQUIRE(wait_until([&] { return file_states(log).size() == 1; }));  // power-on line
  }
  /// Stops the emulator (it handles what was already written) and returns its log.
  std::vector<std::string> finish() {
    emu->signal(SIGTERM);
    CHECK(emu->wait(std::chrono::seconds(20)) == 0);
    return file_states(log);
  }
  int run(const std::vector<std::string>& args, const std::string& tag) {
    std::vector<std::string> argv = {test::cli(), "relay"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, dir.path(), tag);
    int rc = p.wait(std::chrono::seconds(30));
    INFO(tag, ": ", p.out(), p.err());
    return rc;
  }
};

}  // namespace

TEST_CASE("relay cli: one-shot on/off and route leave exactly the commanded states") {
  CliBench b({"lcus", "--channels", "4"});
  const std::string spec = "lcus:" + b.link.string() + ":channels=4";
  CHECK(b.run({spec, "3", "on"}, "on") == 0);
  CHECK(b.run({spec, "route", "2"}, "route") == 0);
  CHECK(b.run({spec, "2", "off"}, "off") == 0);
  CHECK(b.run({spec, "9", "on"}, "bad") == 1);  // the driver names the channel
  CHECK(b.run({spec, "two", "on"}, "usage") == 2);
  CHECK(b.run({spec, "route"}, "usage2") == 2);
  CHECK(b.run({spec, "1", "on", "--seconds", "3"}, "usage3") == 2);
  CHECK(b.finish() == std::vector<std::string>{"0000", "0010", "0000", "0100", "0000"});
}

TEST_CASE("relay cli: hold restores the safe state after SIGINT (LCUS, all off)") {
  CliBench b({"lcus", "--channels", "4"});
  // Channel 3 is on before the hold starts: routing must switch it off before 2 goes on.
  REQUIRE(b.run({"lcus:" + b.link.string() + ":channels=4", "3", "on"}, "pre") == 0);
  Process hold({test::cli(), "relay", "lcus:" + b.link.string() + ":channels=4", "hold", "2"},
               b.dir.path(), "hold");
  REQUIRE(wait_until([&] { return last_state(b.log) == "0100"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  hold.signal(SIGINT);
  int rc = hold.wait(std::chrono::seconds(20));
  INFO(hold.out(), hold.err());
  CHECK(rc == 0);
  CHECK(hold.out().find("interrupted; safe state restored (all off)") != std::string::npos);
  CHECK(hold.out().find("not verified") != std::string::npos);  // LCUS cannot read back
  CHECK(b.finish() == std::vector<std::string>{"0000", "0010", "0000", "0100", "0000"});
}

TEST_CASE("relay cli: hold restores the configured safe state after SIGTERM (ICStation)") {
  CliBench b({"icstation", "--channels", "4"});
  Process hold(
      {test::cli(), "relay", "icstation:" + b.link.string(), "hold", "2", "--safe-on", "1,4"},
      b.dir.path(), "hold");
  REQUIRE(wait_until([&] { return last_state(b.log) == "0100"; }));
  hold.signal(SIGTERM);
  int rc = hold.wait(std::chrono::seconds(20));
  INFO(hold.out(), hold.err());
  CHECK(rc == 0);
  CHECK(hold.out().find("safe state restored (channels 1,4 on)") != std::string::npos);
  // All off, then each safe channel on: one bitmap byte per call on this board.
  CHECK(b.finish() == std::vector<std::string>{"0000", "0100", "0000", "1000", "1001"});
}

TEST_CASE("relay cli: hold ends normally after --seconds and restores all off") {
  CliBench b({"lcus", "--channels", "2"});
  Process hold({test::cli(), "relay", "lcus:" + b.link.string() + ":channels=2", "hold", "1",
                "--seconds", "0.5"},
               b.dir.path(), "hold");
  int rc = hold.wait(std::chrono::seconds(20));
  INFO(hold.out(), hold.err());
  CHECK(rc == 0);
  CHECK(hold.out().find("time up; safe state restored (all off)") != std::string::npos);
  CHECK(b.finish() == std::vector<std::string>{"00", "10", "00"});
}

// The honest error-exit test: the error must happen while the channel is on and must leave the
// relay port working, otherwise either there is nothing to restore (an error before routing) or
// nothing can restore it (the port is gone: a later test). `hold --run COMMAND` is that
// situation: the work done while a phone is powered (a capture, a benchmark) fails, the relay
// itself is fine.
TEST_CASE("relay cli: hold restores the safe state when the held command fails (error exit)") {
  CliBench b({"lcus", "--channels", "4"});
  Process hold({test::cli(), "relay", "lcus:" + b.link.string() + ":channels=4", "hold", "2",
                "--safe-on", "1", "--run", "sleep 0.3; exit 3"},
               b.dir.path(), "hold");
  int rc = hold.wait(std::chrono::seconds(20));
  INFO(hold.out(), hold.err());
  CHECK(rc == 1);
  CHECK(hold.err().find("--run command exited with 3 while channel 2 was held") !=
        std::string::npos);
  CHECK(hold.out().find("safe state restored (channel 1 on)") != std::string::npos);
  // 2 was on while the command ran, then all off, then the safe state: the restore is visible
  // in the board's own log, distinct from every state before it.
  CHECK(b.finish() == std::vector<std::string>{"0000", "0100", "0000", "1000"});
}

TEST_CASE("relay cli: hold with a held command that succeeds, and a signal while it runs") {
  CliBench b({"lcus", "--channels", "4"});
  const std::string spec = "lcus:" + b.link.string() + ":channels=4";
  CHECK(b.run({spec, "hold", "3", "--run", "true"}, "ok") == 0);
  // The shell starts a child of its own: stopping must reach the whole group.
  Process hold({test::cli(), "relay", spec, "hold", "4", "--run", "sleep 30; true"}, b.dir.path(),
               "hold");
  REQUIRE(wait_until([&] { return last_state(b.log) == "0001"; }));
  hold.signal(SIGINT);  // the held command is asked to stop too
  int rc = hold.wait(std::chrono::seconds(20));
  INFO(hold.out(), hold.err());
  CHECK(rc == 0);
  CHECK(b.finish() == std::vector<std::string>{"0000", "0010", "0000", "0001", "0000"});
}

// The case where restoring is impossible: the port vanished while held. The CLI must say so
// loudly and exit 1; the board's log shows it was left as routed.
TEST_CASE("relay cli: hold reports a safe state it could not restore (port gone)") {
  CliBench b({"lcus", "--channels", "4"});
  Process hold({test::cli(), "relay", "lcus:" + b.link.string() + ":channels=4", "hold", "2",
                "--seconds", "1.5"},
               b.dir.path(), "hold");
  REQUIRE(wait_until([&] { return last_state(b.log) == "0100"; }));
  b.emu->signal(SIGKILL);
  CHECK(b.emu->wait() == 128 + SIGKILL);
  int rc = hold.wait(std::chrono::seconds(20));
  INFO(hold.out(), hold.err());
  CHECK(rc == 1);
  CHECK(hold.err().find("SAFE STATE NOT RESTORED") != std::string::npos);
  CHECK(hold.err().find("port gone") != std::string::npos);
  CHECK(file_states(b.log) == std::vector<std::string>{"0000", "0100"});
}

TEST_CASE("relay cli: hold with an impossible route switches nothing and exits 1") {
  CliBench b({"lcus", "--channels", "4"});
  const std::string spec = "lcus:" + b.link.string() + ":channels=4";
  CHECK(b.run({spec, "hold", "5"}, "ch5") == 1);
  CHECK(b.run({spec, "hold", "2", "--safe-on", "0"}, "safe0") == 1);
  CHECK(b.run({spec, "hold", "2", "--seconds", "-1"}, "neg") == 2);
  CHECK(b.finish() == std::vector<std::string>{"0000"});
}
