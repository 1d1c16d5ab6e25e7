// Switchable USB hubs: the Yepkit YKUSH family (commands in HID reports) and standard hub port
// power (the hub-class control requests of the USB 2.0 and 3.x specifications that uhubctl
// sends). Pure code over bytes: no I/O, no clocks. Both directions are here: the host side
// (drivers) and the device side (emulators). docs/hubs.md lists the facts and where sources
// disagree.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::fw::ykush {

/// Microchip's vendor ID, which Yepkit boards use.
inline constexpr std::uint16_t kVendorId = 0x04D8;
/// YKUSH (current firmware), the early "legacy" YKUSH, and YKUSH3.
inline constexpr std::uint16_t kProductId = 0xF2F7, kLegacyProductId = 0x0042,
                               kYkush3ProductId = 0xF11B;
/// Report size of current firmware (no report ID: byte 0 is the command).
inline constexpr std::size_t kReportSize = 64;
/// Report size of the legacy board, which also wants the command twice (bytes 0 and 1).
inline constexpr std::size_t kLegacyReportSize = 6;
/// Reply status byte meaning "done".
inline constexpr std::uint8_t kStatusOk = 0x01;
/// Port numbers fit the command's low nibble; boards have 3 (YKUSH) or 4 (YKUSH3).
inline constexpr int kMaxPorts = 9;

/// Command bytes. Port commands carry the port (1..9) in the low nibble.
inline constexpr std::uint8_t kPortDown = 0x00;   ///< 0x01..0x09
inline constexpr std::uint8_t kPortUp = 0x10;     ///< 0x11..0x19
inline constexpr std::uint8_t kPortQuery = 0x20;  ///< 0x21..0x29
inline constexpr std::uint8_t kAllDown = 0x0A, kAllUp = 0x1A;
inline constexpr std::uint8_t kFirmwareVersion = 0xF0;  ///< reply: status, major, minor
inline constexpr std::uint8_t kPortCount = 0xF1;        ///< reply: status, count

/// How reports are laid out on the wire.
enum class Framing {
  current,  ///< 64-byte reports, command in byte 0
  legacy,   ///< 6-byte reports, command in bytes 0 and 1 (PID 0x0042)
};
inline constexpr std::size_t report_size(Framing f) {
  return f == Framing::legacy ? kLegacyReportSize : kReportSize;
}

/// A command the host sends.
struct Command {
  enum class Kind { port_up, port_down, all_up, all_down, query, firmware_version, port_count };
  Kind kind = Kind::query;
  int port = 0;  ///< 1..9 for port_up, port_down, query; 0 otherwise

  /// The command byte (e.g. 0x12 for port 2 up).
  std::uint8_t byte() const;
  /// "port 2 up (0x12)".
  std::string describe() const;
};

/// Command for one port; invalid_argument outside 1..kMaxPorts.
Result<Command> port_command(int port, bool on);
Result<Command> query_command(int port);

/// The output report for `c` (zero-padded to the framing's size).
std::vector<std::uint8_t> encode(const Command& c, Framing framing = Framing::current);

/// What a reply says.
struct Reply {
  bool ok = false;                           ///< byte 0 is 0x01
  std::optional<bool> powered;               ///< query: the state nibble (byte 1 >> 4) is non-zero
  std::optional<int> ports;                  ///< port_count: byte 1
  std::optional<std::uint8_t> major, minor;  ///< firmware_version: bytes 1 and 2
};

/// Reads the input report answering `c`. protocol_error (naming the command and the byte) for an
/// empty or short report, or a query reply naming another port in its low nibble. A status other
/// than 0x01 is not an error here (`ok` false): early firmware refuses 0xF0/0xF1 that way.
Result<Reply> parse_reply(const Command& c, std::span<const std::uint8_t> report);

/// Device side: the command in an output report; protocol_error naming the byte for an empty
/// report or an unknown command byte.
Result<Command> decode(std::span<const std::uint8_t> report, Framing framing = Framing::current);

/// Device side: the input report a board sends for `c` (status 0x01), given the power state of
/// every port (index 0 = port 1) and the firmware version.
std::vector<std::uint8_t> encode_reply(const Command& c, const std::vector<bool>& powered,
                                       std::uint8_t major, std::uint8_t minor,
                                       Framing framing = Framing::current);

}  // namespace meltrig::fw::ykush

namespace meltrig::fw::uhub {

/// bmRequestType values (USB 2.0 9.3.1): class requests to the hub device or one of its ports.
inline constexpr std::uint8_t kClassToPort = 0x23;      ///< OUT, class, recipient other (port)
inline constexpr std::uint8_t kClassFromPort = 0xA3;    ///< IN, class, recipient other (port)
inline constexpr std::uint8_t kClassFromDevice = 0xA0;  ///< IN, class, recipient device (hub)
/// bRequest values (USB 2.0 table 9-4).
inline constexpr std::uint8_t kGetStatus = 0x00, kClearFeature = 0x01, kSetFeature = 0x03,
                              kGetDescriptor = 0x06;
/// Feature selector PORT_POWER (USB 2.0 table 11-17).
inline constexpr std::uint16_t kPortPower = 8;
/// Hub descriptor types: USB 2.0 (0x29) and SuperSpeed (0x2A), asked for by bcdUSB >= 3.00.
inline constexpr std::uint8_t kHubDescriptor = 0x29, kSuperSpeedHubDescriptor = 0x2A;
inline constexpr std::uint16_t kSuperSpeedBcd = 0x0300;
/// USB hub device class.
inline constexpr std::uint8_t kHubClass = 0x09;
/// The hub descriptor is read into this many bytes; fewer than kMinDescriptor is refused.
inline constexpr std::size_t kDescriptorRead = 12, kMinDescriptor = 9;
/// GET_STATUS(port) answers wPortStatus and wPortChange, little-endian.
inline constexpr std::size_t kPortStatusSize = 4;
/// wPortStatus bits. PORT_POWER moved from bit 8 (USB 2.0) to bit 9 (SuperSpeed).
inline constexpr std::uint16_t kStatConnection = 0x0001, kStatEnable = 0x0002,
                               kStatOverCurrent = 0x0008, kStatPower = 0x0100,
                               kStatHighSpeed = 0x0400, kSsStatPower = 0x0200,
                               kSsLinkStateMask = 0x01E0, kSsLinkDisabled = 0x0080,
                               kSsLinkRxDetect = 0x00A0, kSsLinkU0 = 0x0000;
/// wHubCharacteristics: logical power switching mode (bits 1:0) and over-current mode (4:3).
inline constexpr std::uint16_t kLpsmMask = 0x0003, kLpsmGanged = 0x0000, kLpsmPerPort = 0x0001,
                               kOcpmMask = 0x0018, kOcpmGlobal = 0x0000, kOcpmPerPort = 0x0008,
                               kOcpmNone = 0x0010;

/// A control request's setup stage, exactly as on the wire.
struct Setup {
  std::uint8_t request_type = 0;
  std::uint8_t request = 0;
  std::uint16_t value = 0;
  std::uint16_t index = 0;
  std::uint16_t length = 0;

  /// The 8 setup bytes (multi-byte fields little-endian).
  std::array<std::uint8_t, 8> bytes() const;
  /// "SET_FEATURE(PORT_POWER) port 2 (bmRequestType 0x23 bRequest 0x03 wValue 0x0008 wIndex
  /// 0x0002 wLength 0)".
  std::string describe() const;
  bool in() const { return (request_type & 0x80) != 0; }
  bool operator==(const Setup&) const = default;
};

/// SET_FEATURE (on) or CLEAR_FEATURE (off) PORT_POWER for `port` (1..255); invalid_argument
/// otherwise.
Result<Setup> port_power(int port, bool on);
/// GET_STATUS for `port` (1..255), 4 bytes.
Result<Setup> port_status(int port);
/// GET_DESCRIPTOR for the hub descriptor: type 0x2A for a SuperSpeed hub, 0x29 otherwise.
Setup hub_descriptor(bool superspeed);

/// The parts of a hub descriptor a power switcher needs.
struct HubDescriptor {
  int ports = 0;
  std::uint16_t characteristics = 0;
  int power_on_to_good_ms = 0;  ///< bPwrOn2PwrGood x 2 ms
  bool per_port_power() const { return (characteristics & kLpsmMask) == kLpsmPerPort; }
  bool ganged_power() const { return (characteristics & kLpsmMask) == kLpsmGanged; }
  /// uhubctl's test for per-port power switching: per-port switching mode and over-current
  /// protection per port or global (a hub without over-current protection is not trusted).
  bool switchable() const {
    const auto ocpm = characteristics & kOcpmMask;
    return per_port_power() && (ocpm == kOcpmPerPort || ocpm == kOcpmGlobal);
  }
};

/// Parses a hub descriptor of the expected type; protocol_error naming the byte (offset and
/// value) for a short reply, a wrong descriptor type or a length byte below the minimum.
Result<HubDescriptor> parse_hub_descriptor(std::span<const std::uint8_t> bytes, bool superspeed);
/// Device side: a USB 2.0 (9 bytes for up to 7 ports) or SuperSpeed (12 bytes) hub descriptor.
std::vector<std::uint8_t> encode_hub_descriptor(const HubDescriptor& d, bool superspeed);

/// A port's status.
struct PortStatus {
  std::uint16_t status = 0, change = 0;
  bool powered(bool superspeed) const {
    return (status & (superspeed ? kSsStatPower : kStatPower)) != 0;
  }
};
/// Parses a GET_STATUS(port) reply; protocol_error for anything but 4 bytes.
Result<PortStatus> parse_port_status(std::span<const std::uint8_t> bytes);
/// Device side: the 4 reply bytes.
std::array<std::uint8_t, kPortStatusSize> encode_port_status(const PortStatus& s);

/// Where a USB device sits: bus number and the port numbers from the root hub down, written as
/// uhubctl and Linux sysfs write it: "1-1.4" (bus 1, root port 1, hub port 4), "2" (root hub 2).
struct Location {
  int bus = 0;
  std::vector<int> ports;
  std::string str() const;
  bool operator==(const Location&) const = default;
};
/// Parses "BUS[-P[.P...]]" (bus 1..255, ports 1..255, at most 7 tiers); invalid_argument naming
/// the text and the position of the first bad character.
Result<Location> parse_location(std::string_view text);

/// A hub as enumeration sees it, for pairing the halves of a USB 3 hub.
struct HubId {
  std::uint16_t vid = 0, pid = 0, bcd_usb = 0;
  Location location;
  bool superspeed() const { return bcd_usb >= kSuperSpeedBcd; }
};
/// The other half of `hubs[self]` (a USB 3 hub shows as a USB 2 hub and a SuperSpeed hub on two
/// buses): a hub of the other kind, same vendor ID, same port path on a different bus. Where
/// several fit the first is taken; nullopt when none does (a USB 2 hub, or the pair cannot be
/// told apart by port path, which uhubctl reports for some macOS hosts).
std::optional<std::size_t> find_dual(std::span<const HubId> hubs, std::size_t self);

}  // namespace meltrig::fw::uhub
