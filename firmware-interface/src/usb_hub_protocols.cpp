// YKUSH HID reports and standard hub port-power requests: see usb_hub_protocols.hpp.
#include "meltrig/fw/usb_hub_protocols.hpp"

#include <charconv>
#include <cstdio>

namespace meltrig::fw {
namespace {

std::string hex2(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02X", v & 0xFFu);
  return b;
}

std::string hex4(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%04X", v & 0xFFFFu);
  return b;
}

}  // namespace

// --- YKUSH ---------------------------------------------------------------------------------------

namespace ykush {

std::uint8_t Command::byte() const {
  const auto p = static_cast<std::uint8_t>(port & 0x0F);
  switch (kind) {
    case Kind::port_up:
      return static_cast<std::uint8_t>(kPortUp | p);
    case Kind::port_down:
      return static_cast<std::uint8_t>(kPortDown | p);
    case Kind::all_up:
      return kAllUp;
    case Kind::all_down:
      return kAllDown;
    case Kind::query:
      return static_cast<std::uint8_t>(kPortQuery | p);
    case Kind::firmware_version:
      return kFirmwareVersion;
    case Kind::port_count:
      return kPortCount;
  }
  return 0;
}

std::string Command::describe() const {
  std::string what;
  switch (kind) {
    case Kind::port_up:
      what = "port " + std::to_string(port) + " up";
      break;
    case Kind::port_down:
      what = "port " + std::to_string(port) + " down";
      break;
    case Kind::all_up:
      what = "all ports up";
      break;
    case Kind::all_down:
      what = "all ports down";
      break;
    case Kind::query:
      what = "port " + std::to_string(port) + " status";
      break;
    case Kind::firmware_version:
      what = "firmware version";
      break;
    case Kind::port_count:
      what = "port count";
      break;
  }
  return what + " (" + hex2(byte()) + ")";
}

namespace {
Result<int> check_port(int port) {
  if (port < 1 || port > kMaxPorts) {
    return make_error(Errc::invalid_argument, "YKUSH port " + std::to_string(port) +
                                                  " is outside 1.." + std::to_string(kMaxPorts));
  }
  return port;
}
}  // namespace

Result<Command> port_command(int port, bool on) {
  if (auto p = check_port(port); !p) return p.error();
  return Command{on ? Command::Kind::port_up : Command::Kind::port_down, port};
}

Result<Command> query_command(int port) {
  if (auto p = check_port(port); !p) return p.error();
  return Command{Command::Kind::query, port};
}

std::vector<std::uint8_t> encode(const Command& c, Framing framing) {
  std::vector<std::uint8_t> r(report_size(framing), 0);
  r[0] = c.byte();
  if (framing == Framing::legacy) r[1] = c.byte();
  return r;
}

Result<Reply> parse_reply(const Command& c, std::span<const std::uint8_t> report) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::protocol_error, "YKUSH reply to " + c.describe() + ": " + why);
  };
  if (report.empty()) return bad("empty report");
  Reply r;
  r.ok = report[0] == kStatusOk;
  if (!r.ok) return r;
  using K = Command::Kind;
  const std::size_t need = c.kind == K::firmware_version                     ? 3
                           : (c.kind == K::query || c.kind == K::port_count) ? 2
                                                                             : 1;
  if (report.size() < need) {
    return bad(std::to_string(report.size()) + " byte(s), expected at least " +
               std::to_string(need));
  }
  if (c.kind == K::query) {
    const int port = report[1] & 0x0F;
    if (port != c.port) {
      return bad("byte 1 is " + hex2(report[1]) + ": low nibble names port " +
                 std::to_string(port) + ", not " + std::to_string(c.port));
    }
    r.powered = (report[1] >> 4) != 0;
  } else if (c.kind == K::port_count) {
    r.ports = report[1];
  } else if (c.kind == K::firmware_version) {
    r.major = report[1];
    r.minor = report[2];
  }
  return r;
}

Result<Command> decode(std::span<const std::uint8_t> report, Framing framing) {
  if (report.empty()) return make_error(Errc::protocol_error, "YKUSH: empty output report");
  if (framing == Framing::legacy && (report.size() < 2 || report[1] != report[0])) {
    return make_error(
        Errc::protocol_error,
        "YKUSH legacy report: byte 1 must repeat the command in byte 0 (" + hex2(report[0]) + ")");
  }
  const std::uint8_t b = report[0];
  const int port = b & 0x0F;
  using K = Command::Kind;
  if (b == kAllUp) return Command{K::all_up, 0};
  if (b == kAllDown) return Command{K::all_down, 0};
  if (b == kFirmwareVersion) return Command{K::firmware_version, 0};
  if (b == kPortCount) return Command{K::port_count, 0};
  if (port >= 1 && port <= kMaxPorts) {
    switch (b & 0xF0) {
      case kPortDown:
        return Command{K::port_down, port};
      case kPortUp:
        return Command{K::port_up, port};
      case kPortQuery:
        return Command{K::query, port};
      default:
        break;
    }
  }
  return make_error(Errc::protocol_error,
                    "YKUSH: unknown command byte " + hex2(b) + " at offset 0 of the report");
}

std::vector<std::uint8_t> encode_reply(const Command& c, const std::vector<bool>& powered,
                                       std::uint8_t major, std::uint8_t minor, Framing framing) {
  std::vector<std::uint8_t> r(report_size(framing), 0);
  r[0] = kStatusOk;
  using K = Command::Kind;
  if (c.kind == K::query) {
    const auto i = static_cast<std::size_t>(c.port - 1);
    const bool on = i < powered.size() && powered[i];
    r[1] = static_cast<std::uint8_t>((on ? 0x10 : 0x00) | (c.port & 0x0F));
  } else if (c.kind == K::port_count) {
    r[1] = static_cast<std::uint8_t>(powered.size());
  } else if (c.kind == K::firmware_version) {
    r[1] = major;
    r[2] = minor;
  } else {
    r[1] = c.byte();  // what firmware puts here for switch commands is not documented
  }
  return r;
}

}  // namespace ykush

// --- standard hub port power ---------------------------------------------------------------------

namespace uhub {
namespace {

Result<int> check_port(int port) {
  if (port < 1 || port > 255) {
    return make_error(Errc::invalid_argument,
                      "hub port " + std::to_string(port) + " is outside 1..255");
  }
  return port;
}

std::uint16_t le16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>(b[at] | (b[at + 1] << 8));
}

}  // namespace

std::array<std::uint8_t, 8> Setup::bytes() const {
  return {request_type,
          request,
          static_cast<std::uint8_t>(value & 0xFF),
          static_cast<std::uint8_t>(value >> 8),
          static_cast<std::uint8_t>(index & 0xFF),
          static_cast<std::uint8_t>(index >> 8),
          static_cast<std::uint8_t>(length & 0xFF),
          static_cast<std::uint8_t>(length >> 8)};
}

std::string Setup::describe() const {
  std::string what;
  if (request_type == kClassToPort && value == kPortPower &&
      (request == kSetFeature || request == kClearFeature)) {
    what = std::string(request == kSetFeature ? "SET_FEATURE" : "CLEAR_FEATURE") +
           "(PORT_POWER) port " + std::to_string(index);
  } else if (request_type == kClassFromPort && request == kGetStatus) {
    what = "GET_STATUS port " + std::to_string(index);
  } else if (request_type == kClassFromDevice && request == kGetDescriptor) {
    what = "GET_DESCRIPTOR(hub " + hex2(static_cast<unsigned>(value >> 8)) + ")";
  } else {
    what = "control request";
  }
  return what + " (bmRequestType " + hex2(request_type) + " bRequest " + hex2(request) +
         " wValue " + hex4(value) + " wIndex " + hex4(index) + " wLength " +
         std::to_string(length) + ")";
}

Result<Setup> port_power(int port, bool on) {
  if (auto p = check_port(port); !p) return p.error();
  return Setup{kClassToPort, on ? kSetFeature : kClearFeature, kPortPower,
               static_cast<std::uint16_t>(port), 0};
}

Result<Setup> port_status(int port) {
  if (auto p = check_port(port); !p) return p.error();
  return Setup{kClassFromPort, kGetStatus, 0, static_cast<std::uint16_t>(port), kPortStatusSize};
}

Setup hub_descriptor(bool superspeed) {
  const std::uint8_t type = superspeed ? kSuperSpeedHubDescriptor : kHubDescriptor;
  return Setup{kClassFromDevice, kGetDescriptor, static_cast<std::uint16_t>(type << 8), 0,
               kDescriptorRead};
}

Result<HubDescriptor> parse_hub_descriptor(std::span<const std::uint8_t> b, bool superspeed) {
  const std::uint8_t want = superspeed ? kSuperSpeedHubDescriptor : kHubDescriptor;
  auto bad = [&](const std::string& why) {
    return make_error(Errc::protocol_error, "hub descriptor (type " + hex2(want) + "): " + why);
  };
  if (b.size() < kMinDescriptor) {
    return bad(std::to_string(b.size()) + " byte(s), expected at least " +
               std::to_string(kMinDescriptor));
  }
  if (b[1] != want) return bad("byte 1 (bDescriptorType) is " + hex2(b[1]));
  if (b[0] < kMinDescriptor) return bad("byte 0 (bDescLength) is " + std::to_string(b[0]));
  if (b[2] == 0) return bad("byte 2 (bNbrPorts) is 0");
  HubDescriptor d;
  d.ports = b[2];
  d.characteristics = le16(b, 3);
  d.power_on_to_good_ms = b[5] * 2;
  return d;
}

std::vector<std::uint8_t> encode_hub_descriptor(const HubDescriptor& d, bool superspeed) {
  const auto ch = d.characteristics;
  const auto good = static_cast<std::uint8_t>(d.power_on_to_good_ms / 2);
  const auto n = static_cast<std::uint8_t>(d.ports);
  if (superspeed) {
    // bHubHdrDecLat 0, wHubDelay 0, DeviceRemovable 0 (every port removable).
    return {12,
            kSuperSpeedHubDescriptor,
            n,
            static_cast<std::uint8_t>(ch & 0xFF),
            static_cast<std::uint8_t>(ch >> 8),
            good,
            0,
            0,
            0,
            0,
            0,
            0};
  }
  // DeviceRemovable then PortPwrCtrlMask, one bit per port plus bit 0, rounded up to bytes.
  const std::size_t mask_bytes = (static_cast<std::size_t>(d.ports) + 1 + 7) / 8;
  std::vector<std::uint8_t> out{0,
                                kHubDescriptor,
                                n,
                                static_cast<std::uint8_t>(ch & 0xFF),
                                static_cast<std::uint8_t>(ch >> 8),
                                good,
                                100};
  out.insert(out.end(), mask_bytes, 0x00);
  out.insert(out.end(), mask_bytes, 0xFF);
  out[0] = static_cast<std::uint8_t>(out.size());
  return out;
}

Result<PortStatus> parse_port_status(std::span<const std::uint8_t> b) {
  if (b.size() != kPortStatusSize) {
    return make_error(Errc::protocol_error, "port status: " + std::to_string(b.size()) +
                                                " byte(s), expected " +
                                                std::to_string(kPortStatusSize));
  }
  return PortStatus{le16(b, 0), le16(b, 2)};
}

std::array<std::uint8_t, kPortStatusSize> encode_port_status(const PortStatus& s) {
  return {static_cast<std::uint8_t>(s.status & 0xFF), static_cast<std::uint8_t>(s.status >> 8),
          static_cast<std::uint8_t>(s.change & 0xFF), static_cast<std::uint8_t>(s.change >> 8)};
}

std::string Location::str() const {
  std::string s = std::to_string(bus);
  for (std::size_t i = 0; i < ports.size(); ++i)
    s += (i == 0 ? "-" : ".") + std::to_string(ports[i]);
  return s;
}

Result<Location> parse_location(std::string_view text) {
  auto bad = [&](std::size_t pos, const std::string& why) {
    return make_error(Errc::invalid_argument, "USB location \"" + std::string(text) +
                                                  "\" at position " + std::to_string(pos + 1) +
                                                  ": " + why + " (expected BUS[-PORT[.PORT...]])");
  };
  Location loc;
  std::size_t pos = 0;
  auto number = [&](int& out) -> bool {
    const char* b = text.data() + pos;
    auto [p, ec] = std::from_chars(b, text.data() + text.size(), out);
    if (ec != std::errc() || p == b || out < 1 || out > 255) return false;
    pos += static_cast<std::size_t>(p - b);
    return true;
  };
  if (!number(loc.bus)) return bad(pos, "a bus number 1..255 is needed");
  if (pos == text.size()) return loc;
  if (text[pos] != '-') return bad(pos, "'-' expected after the bus number");
  char sep = '-';
  while (pos < text.size()) {
    if (text[pos] != sep) return bad(pos, std::string("'") + sep + "' expected");
    ++pos;
    int p = 0;
    if (!number(p)) return bad(pos, "a port number 1..255 is needed");
    loc.ports.push_back(p);
    if (loc.ports.size() > 7) return bad(pos, "more than 7 tiers");
    sep = '.';
  }
  return loc;
}

std::optional<std::size_t> find_dual(std::span<const HubId> hubs, std::size_t self) {
  if (self >= hubs.size()) return std::nullopt;
  const HubId& h = hubs[self];
  for (std::size_t j = 0; j < hubs.size(); ++j) {
    const HubId& o = hubs[j];
    if (j == self || o.superspeed() == h.superspeed() || o.vid != h.vid) continue;
    if (o.location.bus != h.location.bus && o.location.ports == h.location.ports) return j;
  }
  return std::nullopt;
}

}  // namespace uhub
}  // namespace meltrig::fw
