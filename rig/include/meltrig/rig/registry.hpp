// The driver registry, in SoapySDR's shape: each driver offers find() and make(), and one
// function lists them all explicitly (no static initialisers that vanish from static libraries).
// Devices are named by specs "driver:port[:key=value,key=value]".
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/fw/serial_port.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/rig/relay.hpp"

namespace meltrig::rig {

/// A parsed device spec, e.g. "lvpm:/dev/ttyACM0" or "lcus:/dev/ttyUSB0:channels=4".
struct DeviceSpec {
  std::string driver;
  std::string port;
  std::vector<std::pair<std::string, std::string>> options;

  /// Parses "driver:port[:key=value,...]"; invalid_argument naming the spec and the bad part.
  static Result<DeviceSpec> parse(std::string_view spec);
  /// The value of option `key`, if given.
  std::optional<std::string> option(std::string_view key) const;
  /// Option `key` as an integer in [lo, hi], or `fallback` when absent; invalid_argument otherwise.
  Result<long> int_option(std::string_view key, long fallback, long lo, long hi) const;
  std::string str() const;
};

/// A port a driver thinks it may drive, and why.
struct Candidate {
  std::string driver;
  std::string spec;  ///< a spec that would open it
  std::string why;   ///< e.g. "USB 2ab9:0001 'Mobile Device Power Monitor'"
};

/// One driver's entry. Exactly one of make_monitor / make_relay is set.
struct DriverEntry {
  std::string_view name;
  std::string_view kind;  ///< "monitor", "relay" or "hub" (a hub is a Relay: make_relay)
  std::string_view description;
  std::vector<Candidate> (*find)(std::span<const fw::PortInfo> ports);
  Result<std::unique_ptr<Monitor>> (*make_monitor)(const DeviceSpec& spec);
  Result<std::unique_ptr<Relay>> (*make_relay)(const DeviceSpec& spec);
};

/// Every driver meltrig has, listed in one place (registry.cpp).
std::span<const DriverEntry> drivers();
/// The entry called `name`, or nullptr.
const DriverEntry* find_driver(std::string_view name);
/// Makes a monitor from a spec; invalid_argument for unknown drivers or relay drivers.
Result<std::unique_ptr<Monitor>> make_monitor(const DeviceSpec& spec);
/// Makes a relay or switchable hub from a spec; invalid_argument for unknown or monitor drivers.
Result<std::unique_ptr<Relay>> make_relay(const DeviceSpec& spec);
/// Asks every driver which of `ports` it may drive.
std::vector<Candidate> find_candidates(std::span<const fw::PortInfo> ports);

}  // namespace meltrig::rig
