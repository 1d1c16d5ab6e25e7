// The driver registry and device specs.
#include <doctest/doctest.h>

#include <algorithm>

#include "meltrig/rig/registry.hpp"
#include "test_support.hpp"

using namespace meltrig;

TEST_CASE("registry: device specs parse driver, port and options") {
  auto a = rig::DeviceSpec::parse("lvpm:/dev/ttyACM0");
  REQUIRE(a.ok());
  CHECK(a->driver == "lvpm");
  CHECK(a->port == "/dev/ttyACM0");
  CHECK(a->options.empty());

  auto b = rig::DeviceSpec::parse("lcus:/dev/serial/by-id/usb-1a86:7523:channels=4,safe=off");
  REQUIRE(b.ok());
  CHECK(b->port == "/dev/serial/by-id/usb-1a86:7523");  // a ':' inside the port is kept
  CHECK(b->option("channels") == std::optional<std::string>("4"));
  CHECK(b->option("safe") == std::optional<std::string>("off"));
  CHECK_FALSE(b->option("nope").has_value());
  CHECK(b->int_option("channels", 1, 1, 8).value() == 4);
  CHECK(b->int_option("missing", 2, 1, 8).value() == 2);
  auto bad_int = b->int_option("safe", 1, 1, 8);
  REQUIRE_FALSE(bad_int.ok());
  CHECK(bad_int.error().message.find("safe=off") != std::string::npos);
  CHECK(b->str() == "lcus:/dev/serial/by-id/usb-1a86:7523:channels=4,safe=off");

  for (const char* bad : {"", "lvpm", ":/dev/x", "lvpm:", "lcus:/dev/x:=4"}) {
    auto r = rig::DeviceSpec::parse(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) {
      CHECK(r.error().code == Errc::invalid_argument);
      CHECK(r.error().message.find(std::string("\"") + bad + "\"") != std::string::npos);
    }
  }
}

TEST_CASE("registry: every driver is listed once with find and exactly one maker") {
  std::vector<std::string> names;
  for (const auto& d : rig::drivers()) {
    CHECK(std::find(names.begin(), names.end(), std::string(d.name)) == names.end());
    names.emplace_back(d.name);
    CHECK((d.kind == "monitor" || d.kind == "relay" || d.kind == "hub"));
    CHECK((d.make_monitor != nullptr) != (d.make_relay != nullptr));
    CHECK((d.kind == "monitor") == (d.make_monitor != nullptr));
    CHECK(static_cast<bool>(d.find));
    CHECK(rig::find_driver(d.name) == &d);
  }
  CHECK(rig::find_driver("lvpm") != nullptr);
  CHECK(rig::find_driver("nope") == nullptr);
}

TEST_CASE("registry: find() names an LVPM by its USB product string, make() checks the spec") {
  fw::PortInfo lvpm;
  lvpm.path = "/dev/ttyACM3";
  lvpm.transport = "usb";
  lvpm.usb_product = "Mobile Device Power Monitor";
  fw::PortInfo other;
  other.path = "/dev/ttyS0";
  other.transport = "native";
  std::vector<fw::PortInfo> ports = {other, lvpm};
  auto c = rig::find_candidates(ports);
  auto it =
      std::find_if(c.begin(), c.end(), [](const rig::Candidate& x) { return x.driver == "lvpm"; });
  REQUIRE(it != c.end());
  CHECK(it->spec == "lvpm:/dev/ttyACM3");
  CHECK(std::count_if(c.begin(), c.end(), [](const rig::Candidate& x) {
          return x.spec.find("/dev/ttyS0") != std::string::npos && x.driver == "lvpm";
        }) == 0);

  auto m = rig::make_monitor(rig::DeviceSpec::parse("lvpm:/dev/ttyACM3").value());
  CHECK(m.ok());
  auto with_opt = rig::make_monitor(rig::DeviceSpec::parse("lvpm:/dev/ttyACM3:rate=9").value());
  CHECK_FALSE(with_opt.ok());
  auto unknown = rig::make_monitor(rig::DeviceSpec::parse("nosuch:/dev/x").value());
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message.find("lvpm") != std::string::npos);  // lists the known ones
  CHECK_FALSE(rig::make_relay(rig::DeviceSpec::parse("lvpm:/dev/x").value()).ok());
}

TEST_CASE("registry: meltrig devices lists ports and drivers") {
  meltrig::test::TempDir dir;
  meltrig::test::Process p({meltrig::test::cli(), "devices"}, dir.path(), "devices");
  CHECK(p.wait() == 0);
  CHECK(p.out().find("serial port(s)") != std::string::npos);
  CHECK(p.out().find("lvpm") != std::string::npos);
}
