// Switchable USB hubs: the YKUSH and hub-class codecs byte by byte, both drivers against their
// emulators, fault injection, the registry, the safe state, and `meltrig relay` on a hub spec.
#include <doctest/doctest.h>

#include <array>
#include <vector>

#include "meltrig/fixtures/hub_emulators.hpp"
#include "meltrig/fw/usb_hub_protocols.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/routed_relay.hpp"
#include "meltrig/rig/usb_hubs.hpp"
#include "test_support.hpp"

using namespace meltrig;
namespace yk = fw::ykush;
namespace uh = fw::uhub;

namespace {

// Every test in this binary may name "ykush:emulated" and "uhub:emulated", as the CLI can.
const bool kHubEmulatorsInstalled = [] {
  rig::YkushHub::set_emulator_factory(&fixtures::make_emulated_ykush);
  rig::UsbHub::set_emulator_factory(&fixtures::make_emulated_uhub);
  return true;
}();

std::vector<std::uint8_t> bytes(std::initializer_list<int> b) {
  std::vector<std::uint8_t> v;
  for (int x : b)
    v.push_back(static_cast<std::uint8_t>(x));
  return v;
}

std::vector<std::uint8_t> setup_bytes(const uh::Setup& s) {
  auto a = s.bytes();
  return {a.begin(), a.end()};
}

std::shared_ptr<fixtures::YkushEmulator> ykush(fixtures::YkushEmulatorConfig c = {}) {
  auto e = fixtures::YkushEmulator::create(std::move(c));
  REQUIRE(e.ok());
  return *e;
}

std::shared_ptr<fixtures::UsbHubEmulator> hub(fixtures::UsbHubEmulatorConfig c = {}) {
  auto e = fixtures::UsbHubEmulator::create(std::move(c));
  REQUIRE(e.ok());
  return *e;
}

rig::YkushHub::Options yk_opts() {
  rig::YkushHub::Options o;
  o.spec = "ykush:emulated";
  return o;
}

rig::HubOptions hub_opts() {
  rig::HubOptions o;
  o.spec = "uhub:emulated";
  return o;
}

std::vector<bool> all(int n, bool on) {
  return std::vector<bool>(static_cast<std::size_t>(n), on);
}

}  // namespace

TEST_CASE("YKUSH codec: every command byte and both report framings") {
  auto up2 = yk::port_command(2, true);
  REQUIRE(up2.ok());
  auto r = yk::encode(*up2);
  REQUIRE(r.size() == 64);
  CHECK(r[0] == 0x12);
  CHECK(std::all_of(r.begin() + 1, r.end(), [](std::uint8_t b) { return b == 0; }));
  CHECK(yk::encode(*yk::port_command(3, false))[0] == 0x03);
  CHECK(yk::encode(*yk::query_command(1))[0] == 0x21);
  CHECK(yk::encode({yk::Command::Kind::all_up, 0})[0] == 0x1A);
  CHECK(yk::encode({yk::Command::Kind::all_down, 0})[0] == 0x0A);
  CHECK(yk::encode({yk::Command::Kind::firmware_version, 0})[0] == 0xF0);
  CHECK(yk::encode({yk::Command::Kind::port_count, 0})[0] == 0xF1);
  // The early board: 6-byte reports with the command twice.
  CHECK(yk::encode(*yk::port_command(1, false), yk::Framing::legacy) == bytes({1, 1, 0, 0, 0, 0}));
  CHECK(yk::port_command(0, true).error().code == Errc::invalid_argument);
  CHECK(yk::port_command(10, true).error().code == Errc::invalid_argument);
  CHECK(up2->describe() == "port 2 up (0x12)");

  // Device side decodes what the host encodes, and refuses what no board knows.
  for (int p = 1; p <= 9; ++p) {
    for (bool on : {false, true}) {
      auto c = yk::decode(yk::encode(*yk::port_command(p, on)));
      REQUIRE(c.ok());
      CHECK(c->port == p);
      CHECK(c->kind == (on ? yk::Command::Kind::port_up : yk::Command::Kind::port_down));
    }
  }
  auto bad = yk::decode(bytes({0x55, 0}));
  REQUIRE(!bad.ok());
  CHECK(bad.error().message.find("0x55") != std::string::npos);
  CHECK(!yk::decode(bytes({0x01, 0x02, 0, 0, 0, 0}), yk::Framing::legacy).ok());
}

TEST_CASE("YKUSH codec: replies (status byte, state nibble, port nibble)") {
  const auto q3 = *yk::query_command(3);
  auto on = yk::parse_reply(q3, bytes({0x01, 0x13}));
  REQUIRE(on.ok());
  CHECK(on->ok);
  CHECK(on->powered == true);
  CHECK(yk::parse_reply(q3, bytes({0x01, 0x03}))->powered == false);
  auto other = yk::parse_reply(q3, bytes({0x01, 0x12}));
  REQUIRE(!other.ok());
  CHECK(other.error().message.find("names port 2, not 3") != std::string::npos);
  CHECK(yk::parse_reply(q3, bytes({0x00, 0x13}))->ok == false);
  CHECK(yk::parse_reply(q3, {}).error().code == Errc::protocol_error);
  CHECK(yk::parse_reply(q3, bytes({0x01})).error().code == Errc::protocol_error);
  auto fwv = yk::parse_reply({yk::Command::Kind::firmware_version, 0}, bytes({1, 2, 7}));
  CHECK(fwv->major == 2);
  CHECK(fwv->minor == 7);
  CHECK(yk::parse_reply({yk::Command::Kind::port_count, 0}, bytes({1, 4}))->ports == 4);
  // The device side's reply to a query round-trips.
  const std::vector<bool> powered{true, false, true};
  auto rep = yk::encode_reply(q3, powered, 2, 0);
  CHECK(rep.size() == 64);
  CHECK(rep[0] == 0x01);
  CHECK(rep[1] == 0x13);
  CHECK(yk::encode_reply(*yk::query_command(2), powered, 2, 0)[1] == 0x02);
}

TEST_CASE("hub-class codec: setup bytes of every request uhubctl sends") {
  CHECK(setup_bytes(*uh::port_power(2, true)) == bytes({0x23, 0x03, 0x08, 0x00, 0x02, 0x00, 0, 0}));
  CHECK(setup_bytes(*uh::port_power(4, false)) ==
        bytes({0x23, 0x01, 0x08, 0x00, 0x04, 0x00, 0, 0}));
  CHECK(setup_bytes(*uh::port_status(3)) == bytes({0xA3, 0x00, 0, 0, 0x03, 0x00, 0x04, 0x00}));
  CHECK(setup_bytes(uh::hub_descriptor(false)) == bytes({0xA0, 0x06, 0x00, 0x29, 0, 0, 12, 0}));
  CHECK(setup_bytes(uh::hub_descriptor(true)) == bytes({0xA0, 0x06, 0x00, 0x2A, 0, 0, 12, 0}));
  CHECK(uh::port_power(0, true).error().code == Errc::invalid_argument);
  CHECK(uh::port_power(2, true)->describe() ==
        "SET_FEATURE(PORT_POWER) port 2 (bmRequestType 0x23 bRequest 0x03 wValue 0x0008 wIndex "
        "0x0002 wLength 0)");
}

TEST_CASE("hub-class codec: hub descriptors and port status bits") {
  // USB 2 hub, 4 ports, per-port switching and over-current, 100 ms power-on to good.
  auto d = uh::parse_hub_descriptor(bytes({9, 0x29, 4, 0x09, 0x00, 50, 100, 0x00, 0xFF}), false);
  REQUIRE(d.ok());
  CHECK(d->ports == 4);
  CHECK(d->switchable());
  CHECK(d->power_on_to_good_ms == 100);
  CHECK(!uh::parse_hub_descriptor(bytes({9, 0x29, 4, 0x00, 0, 50, 100, 0, 0xFF}), false)
             ->switchable());  // ganged
  CHECK(!uh::parse_hub_descriptor(bytes({9, 0x29, 4, 0x11, 0, 50, 100, 0, 0xFF}), false)
             ->switchable());  // no over-current protection
  auto wrong = uh::parse_hub_descriptor(bytes({9, 0x29, 4, 0x09, 0, 50, 100, 0, 0xFF}), true);
  REQUIRE(!wrong.ok());
  CHECK(wrong.error().message.find("byte 1 (bDescriptorType) is 0x29") != std::string::npos);
  CHECK(!uh::parse_hub_descriptor(bytes({9, 0x29, 4, 0x09}), false).ok());
  // Encoded descriptors have the specification's lengths and parse back.
  uh::HubDescriptor seven{7, 0x0009, 100};
  auto usb2 = uh::encode_hub_descriptor(seven, false);
  CHECK(usb2 == bytes({9, 0x29, 7, 0x09, 0x00, 50, 100, 0x00, 0xFF}));
  auto ss = uh::encode_hub_descriptor(seven, true);
  CHECK(ss.size() == 12);
  CHECK(uh::parse_hub_descriptor(ss, true)->ports == 7);
  CHECK(uh::encode_hub_descriptor({8, 0x0009, 100}, false).size() == 11);  // 9 bits -> 2 bytes

  // PORT_POWER is bit 8 on a USB 2 hub and bit 9 on a SuperSpeed hub.
  auto s2 = uh::parse_port_status(bytes({0x03, 0x05, 0x01, 0x00}));
  REQUIRE(s2.ok());
  CHECK(s2->status == 0x0503);
  CHECK(s2->change == 0x0001);
  CHECK(s2->powered(false));
  CHECK(!s2->powered(true));
  auto s3 = uh::parse_port_status(bytes({0xA0, 0x02, 0, 0}));
  CHECK(s3->powered(true));
  CHECK(!s3->powered(false));
  CHECK(!uh::parse_port_status(bytes({0xA0, 0x02})).ok());
  CHECK(uh::encode_port_status({0x02A0, 0x0001}) == std::array<std::uint8_t, 4>{0xA0, 0x02, 1, 0});
}

TEST_CASE("hub locations and pairing the two halves of a USB 3 hub") {
  auto l = uh::parse_location("1-1.4");
  REQUIRE(l.ok());
  CHECK(l->bus == 1);
  CHECK(l->ports == std::vector<int>{1, 4});
  CHECK(l->str() == "1-1.4");
  CHECK(uh::parse_location("2")->ports.empty());
  auto bad = uh::parse_location("1-1..4");
  REQUIRE(!bad.ok());
  CHECK(bad.error().message.find("position 5") != std::string::npos);
  CHECK(!uh::parse_location("1-").ok());
  CHECK(!uh::parse_location("x").ok());
  CHECK(!uh::parse_location("1-0").ok());

  std::vector<uh::HubId> hubs{{0x2109, 0x2817, 0x0210, *uh::parse_location("1-1.4")},
                              {0x2109, 0x0817, 0x0320, *uh::parse_location("2-1.4")},
                              {0x05e3, 0x0608, 0x0200, *uh::parse_location("1-2")},
                              {0x2109, 0x0817, 0x0320, *uh::parse_location("2-3")}};
  CHECK(uh::find_dual(hubs, 0) == std::optional<std::size_t>(1));
  CHECK(uh::find_dual(hubs, 1) == std::optional<std::size_t>(0));
  CHECK(!uh::find_dual(hubs, 2));  // USB 2 only
  CHECK(!uh::find_dual(hubs, 3));  // no USB 2 hub at port path 3
}

TEST_CASE("YKUSH driver against the emulator: open, switch, read back") {
  auto emu = ykush();
  rig::YkushHub h(emu->connect(), yk_opts());
  auto info = h.open();
  REQUIRE(info.ok());
  CHECK(info->driver == "ykush");
  CHECK(info->channels == 3);
  CHECK(info->read_back);
  CHECK(info->safe_on == std::vector<int>{1, 2, 3});
  CHECK(h.firmware() == std::pair<int, int>(2, 0));
  REQUIRE(h.set(2, false).ok());
  CHECK(emu->vbus() == std::vector<bool>{true, false, true});
  CHECK(h.commanded()[1] == false);
  CHECK(!h.commanded()[0]);
  CHECK(*h.read_power() == emu->vbus());
  CHECK(rig::commanded_text(h) == "1 unknown, 2 off, 3 unknown");
  REQUIRE(h.set_all(false).ok());
  CHECK(emu->vbus() == all(3, false));
  // On the wire: firmware version, port count, port 2 down and its read-back, all down and the
  // read-back of every port, then read_power's three queries in between.
  std::vector<std::uint8_t> sent;
  for (const auto& r : emu->reports()) {
    CHECK(r.size() == 64);
    sent.push_back(r[0]);
  }
  CHECK(sent == bytes({0xF0, 0xF1, 0x02, 0x22, 0x21, 0x22, 0x23, 0x0A, 0x21, 0x22, 0x23}));
  CHECK(h.set(4, true).error().code == Errc::invalid_argument);
  h.close();
  CHECK(h.set(1, true).error().code == Errc::port_gone);
}

TEST_CASE("YKUSH driver: early firmware and the legacy 6-byte board") {
  fixtures::YkushEmulatorConfig c;
  c.old_firmware = true;
  c.framing = yk::Framing::legacy;
  auto emu = ykush(c);
  auto o = yk_opts();
  o.framing = yk::Framing::legacy;
  rig::YkushHub h(emu->connect(), o);
  auto info = h.open();
  REQUIRE(info.ok());
  CHECK(info->channels == 3);  // 0xF1 refused: the original board's 3 ports
  CHECK(!h.firmware());
  REQUIRE(h.set(1, false).ok());
  CHECK(emu->reports().back() == bytes({0x21, 0x21, 0, 0, 0, 0}));
  CHECK(emu->vbus() == std::vector<bool>{false, true, true});
}

TEST_CASE("standard hub driver: both halves of a USB 3 hub, exact requests") {
  auto emu = hub();
  rig::UsbHub h(emu->connect(), hub_opts());
  CHECK(h.halves() == 2);
  auto info = h.open();
  REQUIRE(info.ok());
  CHECK(info->driver == "uhub");
  CHECK(info->channels == 4);
  CHECK(info->read_back);
  REQUIRE(h.set(3, false).ok());
  CHECK(emu->vbus() == std::vector<bool>{true, true, false, true});
  CHECK(!emu->half_power(0, 2));
  CHECK(!emu->half_power(1, 2));
  const auto log = emu->control_log();
  REQUIRE(log.size() == 6);
  CHECK(log[0] == std::pair<int, uh::Setup>(0, uh::hub_descriptor(false)));
  CHECK(log[1] == std::pair<int, uh::Setup>(1, uh::hub_descriptor(true)));
  CHECK(log[2] == std::pair<int, uh::Setup>(0, *uh::port_power(3, false)));
  CHECK(log[3] == std::pair<int, uh::Setup>(0, *uh::port_status(3)));
  CHECK(log[4] == std::pair<int, uh::Setup>(1, *uh::port_power(3, false)));
  CHECK(log[5] == std::pair<int, uh::Setup>(1, *uh::port_status(3)));
  CHECK(*h.read_power() == emu->vbus());
  REQUIRE(h.set(3, true).ok());
  CHECK(emu->vbus() == all(4, true));
}

TEST_CASE("hub emulator: switching one half of a USB 3 hub leaves VBUS on") {
  auto emu = hub();
  std::array<std::uint8_t, 4> st{};
  REQUIRE(emu->on_control(0, *uh::port_power(1, false), {}).ok());
  CHECK(emu->vbus()[0]);  // the SuperSpeed half still powers it
  REQUIRE(emu->on_control(1, *uh::port_power(1, false), {}).ok());
  CHECK(!emu->vbus()[0]);
  // Status bits as a real hub reports them: USB 2 half 0x0000 off; SuperSpeed half SS.Disabled.
  REQUIRE(emu->on_control(0, *uh::port_status(1), st).ok());
  CHECK(uh::parse_port_status(st)->status == 0x0000);
  REQUIRE(emu->on_control(1, *uh::port_status(1), st).ok());
  CHECK(uh::parse_port_status(st)->status == uh::kSsLinkDisabled);
  REQUIRE(emu->on_control(1, *uh::port_status(2), st).ok());
  CHECK(uh::parse_port_status(st)->status == (uh::kSsStatPower | uh::kSsLinkRxDetect));
  CHECK(emu->log().back().channels_string() == "0111");
}

TEST_CASE("standard hub driver: a USB 2 hub, and ganged hubs refused") {
  fixtures::UsbHubEmulatorConfig c;
  c.usb3 = false;
  c.ports = 7;
  auto emu = hub(c);
  rig::UsbHub h(emu->connect(), hub_opts());
  CHECK(h.halves() == 1);
  REQUIRE(h.open()->channels == 7);
  REQUIRE(h.set(7, false).ok());
  CHECK(emu->vbus() == std::vector<bool>{true, true, true, true, true, true, false});

  c.ganged = true;
  rig::UsbHub g(hub(c)->connect(), hub_opts());
  auto r = g.open();
  REQUIRE(!r.ok());
  CHECK(r.error().code == Errc::unsupported);
  CHECK(r.error().message.find("ganged") != std::string::npos);
  CHECK(r.error().message.find("uhub:emulated") != std::string::npos);
}

TEST_CASE("hub faults: clear errors naming the device and the request") {
  SUBCASE("YKUSH: no reply") {
    fixtures::YkushEmulatorConfig c;
    c.faults.silent_after = 2;  // open's two requests are answered
    auto emu = ykush(c);
    rig::YkushHub h(emu->connect(), yk_opts());
    REQUIRE(h.open().ok());
    auto r = h.set(1, false);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::timeout);
    CHECK(
        r.error().message.find("ykush:emulated (emulated YKUSH): no reply to port 1 down (0x01)") !=
        std::string::npos);
    CHECK(!h.commanded()[0]);  // unknown, not assumed
    CHECK(emu->vbus() == all(3, true));
  }
  SUBCASE("YKUSH: wrong reply") {
    fixtures::YkushEmulatorConfig c;
    c.faults.wrong_reply = {3};
    rig::YkushHub h(ykush(c)->connect(), yk_opts());
    REQUIRE(h.open().ok());
    auto r = h.set(2, true);
    REQUIRE(!r.ok());
    CHECK(r.error().code == Errc::protocol_error);
    CHECK(r.error().message.find("refused port 2 up (0x12)") != std::string::npos);
    REQUIRE(h.set(2, true).ok());  // the next request is answered again
  }
  SUBCASE("YKUSH: unplugged") {
    fixtures::YkushEmulatorConfig c;
    c.faults.disconnect_after = 2;
    rig::YkushHub h(ykush(c)->connect(), yk_opts());
    REQUIRE(h.open().ok());
    auto r = h.set_all(false);
    CHECK(r.error().code == Errc::port_gone);
    CHECK(r.error().message.find("sending all ports down (0x0A)") != std::string::npos);
  }
  SUBCASE("YKUSH: acknowledged but not switched") {
    fixtures::YkushEmulatorConfig c;
    c.faults.stuck_power = true;
    rig::YkushHub h(ykush(c)->connect(), yk_opts());
    REQUIRE(h.open().ok());
    auto r = h.set(3, false);
    CHECK(r.error().code == Errc::io_error);
    CHECK(r.error().message.find("port 3 reads powered after port 3 down (0x03)") !=
          std::string::npos);
  }
  SUBCASE("hub: no reply") {
    fixtures::UsbHubEmulatorConfig c;
    c.faults.silent_after = 2;
    rig::UsbHub h(hub(c)->connect(), hub_opts());
    REQUIRE(h.open().ok());
    auto r = h.set(2, false);
    CHECK(r.error().code == Errc::timeout);
    CHECK(r.error().message.find("uhub:emulated (emulated hub USB 2 half at 1-1): "
                                 "CLEAR_FEATURE(PORT_POWER) port 2 (bmRequestType 0x23 bRequest "
                                 "0x01 wValue 0x0008 wIndex 0x0002 wLength 0)") !=
          std::string::npos);
  }
  SUBCASE("hub: wrong replies") {
    fixtures::UsbHubEmulatorConfig c;
    c.faults.wrong_reply = {1, 4, 8};  // descriptor; GET_STATUS; SuperSpeed CLEAR_FEATURE
    auto emu = hub(c);
    rig::UsbHub h(emu->connect(), hub_opts());
    auto o = h.open();
    REQUIRE(!o.ok());
    CHECK(o.error().message.find("bDescriptorType") != std::string::npos);
    REQUIRE(h.open().ok());    // requests 2 and 3
    auto s = h.set(1, false);  // 4 (CLEAR) fails: stalled
    CHECK(s.error().code == Errc::io_error);
    CHECK(s.error().message.find("stalled") != std::string::npos);
    auto t = h.set(1, false);  // 5 CLEAR, 6 GET_STATUS, 7 SS CLEAR, 8 SS GET_STATUS short
    CHECK(t.error().code == Errc::protocol_error);
    CHECK(t.error().message.find("SuperSpeed half") != std::string::npos);
    CHECK(t.error().message.find("GET_STATUS port 1") != std::string::npos);
  }
  SUBCASE("hub: unplugged") {
    fixtures::UsbHubEmulatorConfig c;
    c.faults.disconnect_after = 2;
    rig::UsbHub h(hub(c)->connect(), hub_opts());
    REQUIRE(h.open().ok());
    CHECK(h.set(4, true).error().code == Errc::port_gone);
  }
}

TEST_CASE("hubs in the registry: kind hub, made by make_relay, listed, bad specs named") {
  for (const char* name : {"ykush", "uhub"}) {
    const auto* d = rig::find_driver(name);
    REQUIRE(d != nullptr);
    CHECK(d->kind == "hub");
    CHECK((d->make_relay != nullptr));
    CHECK((d->make_monitor == nullptr));
  }
  auto y = rig::make_relay(*rig::DeviceSpec::parse("ykush:emulated"));
  REQUIRE(y.ok());
  CHECK((*y)->open()->channels == 3);
  auto u = rig::make_relay(*rig::DeviceSpec::parse("uhub:emulated:ports=2,usb3=1,timeout_ms=50"));
  REQUIRE(u.ok());
  CHECK((*u)->open()->channels == 2);
  REQUIRE((*u)->set(2, false).ok());

  auto legacy = rig::make_relay(*rig::DeviceSpec::parse("ykush:emulated:legacy=1,ports=2"));
  REQUIRE(legacy.ok());
  CHECK((*legacy)->open()->channels == 2);
  CHECK((*legacy)->set(2, false).ok());

  auto typo = rig::make_relay(*rig::DeviceSpec::parse("ykush:emulated:prots=4"));
  REQUIRE(!typo.ok());
  CHECK(typo.error().message.find("\"prots\"") != std::string::npos);
  auto port = rig::make_relay(*rig::DeviceSpec::parse("ykush:/dev/hidraw0"));
  CHECK(port.error().code == Errc::invalid_argument);
  auto loc = rig::make_relay(*rig::DeviceSpec::parse("uhub:usb:1-1..4"));
  REQUIRE(!loc.ok());
  CHECK(loc.error().message.find("position 5") != std::string::npos);
  auto safe = rig::make_relay(*rig::DeviceSpec::parse("uhub:emulated:safe=maybe"));
  CHECK(safe.error().message.find("safe=maybe") != std::string::npos);
  CHECK(!rig::make_monitor(*rig::DeviceSpec::parse("ykush:emulated")).ok());
  // Enumeration is safe without USB (none in most containers): whatever it finds is well named.
  for (const auto& c : rig::YkushHub::find({}))
    CHECK(c.spec.rfind("ykush:usb", 0) == 0);
  for (const auto& c : rig::UsbHub::find({}))
    CHECK(c.spec.rfind("uhub:usb:", 0) == 0);
}

TEST_CASE("hub safe state: every port powered on every exit path, configurable") {
  SUBCASE("routed and restored without a detour through all-off") {
    auto emu = hub();
    {
      auto rr = rig::RoutedRelay::open(
          std::unique_ptr<rig::Relay>(new rig::UsbHub(emu->connect(), hub_opts())), 2);
      REQUIRE(rr.ok());
      CHECK((*rr)->safe_state_text() == "channels 1,2,3,4 on");
      CHECK(emu->vbus() == std::vector<bool>{false, true, false, false});
    }
    CHECK(emu->vbus() == all(4, true));
    // Routed (only port 2), then port by port up to all on: port 2 never lost power again.
    auto log = emu->log();
    std::size_t routed = log.size();
    for (std::size_t i = 0; i < log.size(); ++i)
      if (log[i].channels_string() == "0100") routed = i;
    REQUIRE(routed < log.size());
    for (std::size_t i = routed; i < log.size(); ++i)
      CHECK(log[i].is_on(2));
    CHECK(log.back().channels_string() == "1111");
  }
  SUBCASE("an error return inside the guarded scope") {
    auto emu = ykush();
    auto run = [&]() -> Result<void> {
      rig::YkushHub h(emu->connect(), yk_opts());
      auto info = h.open();
      if (!info) return info.error();
      rig::RelaySafeState guard(h, info->safe_on);
      if (auto r = h.set_all(false); !r) return r;
      return make_error(Errc::io_error, "the workload failed");
    };
    CHECK(run().error().message == "the workload failed");
    CHECK(emu->vbus() == all(3, true));
  }
  SUBCASE("safe=off: every port off") {
    auto o = yk_opts();
    o.safe_on = false;
    auto emu = ykush();
    {
      auto rr = rig::RoutedRelay::open(
          std::unique_ptr<rig::Relay>(new rig::YkushHub(emu->connect(), o)), 1);
      REQUIRE(rr.ok());
      CHECK((*rr)->safe_state_text() == "all off");
    }
    CHECK(emu->vbus() == all(3, false));
  }
}

TEST_CASE("meltrig relay drives an emulated hub, meltrig devices lists the hub drivers") {
  test::TempDir dir;
  const auto log = dir / "hub.log";
  test::Process p({test::cli(), "relay", "uhub:emulated:ports=4,log=" + log.string(), "hold", "2",
                   "--seconds", "0.1"},
                  dir.path(), "relay");
  REQUIRE(p.wait() == 0);
  CHECK(p.out().find("safe state restored (channels 1,2,3,4 on)") != std::string::npos);
  auto entries = fixtures::read_relay_log(log);
  REQUIRE(entries.ok());
  std::vector<std::string> states;
  for (const auto& e : *entries)
    states.push_back(e.channels_string());
  REQUIRE(!states.empty());
  CHECK(states.front() == "1111");
  CHECK(std::find(states.begin(), states.end(), "0100") != states.end());
  CHECK(states.back() == "1111");

  test::Process st({test::cli(), "relay", "ykush:emulated:initial=off", "status"}, dir.path(),
                   "status");
  REQUIRE(st.wait() == 0);
  CHECK(st.out() ==
        "ykush:emulated:initial=off: port 1 off\nykush:emulated:initial=off: port 2 "
        "off\nykush:emulated:initial=off: port 3 off\n");
  auto board = fixtures::LcusEmulator::start({});
  REQUIRE(board.ok());
  test::Process lcus({test::cli(), "relay", "lcus:" + (*board)->port_path(), "status"}, dir.path(),
                     "lcus");
  CHECK(lcus.wait() == 1);
  CHECK(lcus.err().find("cannot report their state") != std::string::npos);

  test::Process d({test::cli(), "devices"}, dir.path(), "devices");
  REQUIRE(d.wait() == 0);
  CHECK(d.out().find("ykush      hub") != std::string::npos);
  CHECK(d.out().find("uhub       hub") != std::string::npos);
}
