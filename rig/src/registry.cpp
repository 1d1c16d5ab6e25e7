// The driver registry: see registry.hpp. To add a driver, add its line to kDrivers.
#include "meltrig/rig/registry.hpp"

#include <charconv>

#include "meltrig/rig/hvpm_monitor.hpp"
#include "meltrig/rig/lvpm_monitor.hpp"
#include "meltrig/rig/ppk2_monitor.hpp"
#include "meltrig/rig/serial_relays.hpp"
#include "meltrig/rig/synthetic_monitor.hpp"
#include "meltrig/rig/usb_hubs.hpp"

namespace meltrig::rig {
namespace {

const DriverEntry kDrivers[] = {
    {"lvpm", "monitor", "Monsoon LVPM (white, serial protocol), 5 kHz", &LvpmMonitor::find,
     &LvpmMonitor::make, nullptr},
    {"hvpm", "monitor", "Monsoon HVPM / reflashed LVPM (USB), 5 kHz", &HvpmMonitor::find,
     &HvpmMonitor::make, nullptr},
    {"ppk2", "monitor", "Nordic Power Profiler Kit II (source mode), 100 kHz", &Ppk2Monitor::find,
     &Ppk2Monitor::make, nullptr},
    {"lcus", "relay", "LCUS-1/2/4/8 serial relay (CH340), write-only", &LcusRelay::find, nullptr,
     &LcusRelay::make},
    {"icstation", "relay", "ICStation ICSE012A/013A/014A serial relay, write-only",
     &IcstationRelay::find, nullptr, &IcstationRelay::make},
    {"ykush", "hub", "Yepkit YKUSH/YKUSH3 switchable USB hub (HID reports), ports read back",
     &YkushHub::find, nullptr, &YkushHub::make},
    {"uhub", "hub", "USB hub with per-port power switching (hub-class requests, both USB 3 halves)",
     &UsbHub::find, nullptr, &UsbHub::make},
    {"synthetic", "monitor", "in-process source replaying LVPM-framed packets at any rate",
     &SyntheticMonitor::find, &SyntheticMonitor::make, nullptr},
};

std::string names_of(std::string_view kind) {
  std::string s;
  for (const auto& d : kDrivers) {
    if (d.kind != kind) continue;
    if (!s.empty()) s += ", ";
    s += d.name;
  }
  return s;
}

}  // namespace

Result<DeviceSpec> DeviceSpec::parse(std::string_view spec) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_argument, "device spec \"" + std::string(spec) + "\": " + why +
                                                  " (expected DRIVER:PORT[:key=value,...])");
  };
  auto c1 = spec.find(':');
  if (c1 == std::string_view::npos || c1 == 0) return bad("no driver name");
  DeviceSpec d;
  d.driver = std::string(spec.substr(0, c1));
  std::string_view rest = spec.substr(c1 + 1);
  // Options follow the last ':' if everything after it is key=value pairs; ports may hold ':'.
  auto c2 = rest.rfind(':');
  if (c2 != std::string_view::npos && rest.substr(c2 + 1).find('=') != std::string_view::npos) {
    std::string_view opts = rest.substr(c2 + 1);
    rest = rest.substr(0, c2);
    while (!opts.empty()) {
      auto comma = opts.find(',');
      std::string_view kv = opts.substr(0, comma);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos || eq == 0)
        return bad("option \"" + std::string(kv) + "\" is not key=value");
      d.options.emplace_back(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
      if (comma == std::string_view::npos) break;
      opts = opts.substr(comma + 1);
    }
  }
  if (rest.empty()) return bad("no port");
  d.port = std::string(rest);
  return d;
}

std::optional<std::string> DeviceSpec::option(std::string_view key) const {
  for (const auto& [k, v] : options)
    if (k == key) return v;
  return std::nullopt;
}

Result<long> DeviceSpec::int_option(std::string_view key, long fallback, long lo, long hi) const {
  auto v = option(key);
  if (!v) return fallback;
  long out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || p != v->data() + v->size() || out < lo || out > hi) {
    return make_error(Errc::invalid_argument, "device spec \"" + str() + "\": option " +
                                                  std::string(key) + "=" + *v +
                                                  " is not an integer in " + std::to_string(lo) +
                                                  ".." + std::to_string(hi));
  }
  return out;
}

std::string DeviceSpec::str() const {
  std::string s = driver + ":" + port;
  for (std::size_t i = 0; i < options.size(); ++i) {
    s += (i ? "," : ":") + options[i].first + "=" + options[i].second;
  }
  return s;
}

std::span<const DriverEntry> drivers() {
  return kDrivers;
}

const DriverEntry* find_driver(std::string_view name) {
  for (const auto& d : kDrivers)
    if (d.name == name) return &d;
  return nullptr;
}

Result<std::unique_ptr<Monitor>> make_monitor(const DeviceSpec& spec) {
  const DriverEntry* d = find_driver(spec.driver);
  if (!d || !d->make_monitor) {
    return make_error(
        Errc::invalid_argument,
        "\"" + spec.driver + "\" is not a monitor driver (monitors: " + names_of("monitor") + ")");
  }
  return d->make_monitor(spec);
}

Result<std::unique_ptr<Relay>> make_relay(const DeviceSpec& spec) {
  const DriverEntry* d = find_driver(spec.driver);
  if (!d || !d->make_relay) {
    return make_error(Errc::invalid_argument,
                      "\"" + spec.driver + "\" is not a relay or hub driver (relays: " +
                          names_of("relay") + "; hubs: " + names_of("hub") + ")");
  }
  return d->make_relay(spec);
}

std::vector<Candidate> find_candidates(std::span<const fw::PortInfo> ports) {
  std::vector<Candidate> out;
  for (const auto& d : kDrivers) {
    if (!d.find) continue;
    auto c = d.find(ports);
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

}  // namespace meltrig::rig
