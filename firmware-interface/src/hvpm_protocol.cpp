// Monsoon HVPM / reflashed LVPM USB protocol: see hvpm_protocol.hpp.
#include "meltrig/fw/hvpm_protocol.hpp"

#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace meltrig::fw::hvpm {
namespace {

inline std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) | p[1]);
}
inline void put_be16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v & 0xFF);
}
inline std::uint32_t le32(std::span<const std::uint8_t> d) {
  return static_cast<std::uint32_t>(d[0]) | (static_cast<std::uint32_t>(d[1]) << 8) |
         (static_cast<std::uint32_t>(d[2]) << 16) | (static_cast<std::uint32_t>(d[3]) << 24);
}
inline void put_le32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// One 18-byte big-endian sample. Kept tiny and inline: it is the inner loop of a capture.
inline RawSample decode_sample(const std::uint8_t* s) {
  RawSample r;
  r.main_coarse = be16(s);
  r.main_fine = be16(s + 2);
  r.usb_coarse = be16(s + 4);
  r.usb_fine = be16(s + 6);
  r.aux_coarse = static_cast<std::int16_t>(be16(s + 8));
  r.aux_fine = static_cast<std::int16_t>(be16(s + 10));
  r.main_voltage = be16(s + 12);
  r.usb_voltage = be16(s + 14);
  // mainGain (which carries the sample type) is the last byte: PyMonsoon swaps byte pairs before
  // unpacking and then takes the type from the byte that was at offset 17.
  r.usb_gain = s[16];
  r.main_gain = s[17];
  return r;
}

// Header of one packet; the status says whether its samples may be read.
inline PacketStatus decode_header(const std::uint8_t* p, std::size_t len, DroppedByteOrder order,
                                  PacketHeader& h) {
  h = PacketHeader{};
  if (len < kHeaderSize) {
    h.status = PacketStatus::too_short;
    return h.status;
  }
  h.dropped = order == DroppedByteOrder::little
                  ? static_cast<std::uint16_t>(p[0] | (static_cast<unsigned>(p[1]) << 8))
                  : be16(p);
  h.flags = p[2];
  h.n = p[3];
  if (h.n > kMaxSamplesPerPacket)
    h.status = PacketStatus::too_many_samples;
  else if (len < kHeaderSize + kSampleSize * h.n)
    h.status = PacketStatus::too_short;
  return h.status;
}

std::string hex(unsigned v, int digits) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%0*X", digits, v);
  return b;
}

bool within(double v, double lo, double hi) {
  // Ranges are written in round decimal volts/amps; allow for their binary representation.
  return v >= lo - 1e-9 && v <= hi + 1e-9;
}

}  // namespace

// One case per opcode of the wire protocol, each a single name: splitting it would scatter it.
// table-like: a switch from opcode to name
std::string opcode_name(Opcode op) {
  const char* n = "register";
  switch (op) {
    case Opcode::main_fine_resistor_offset:
      n = "main fine resistor offset";
      break;
    case Opcode::usb_fine_resistor_offset:
      n = "USB fine resistor offset";
      break;
    case Opcode::aux_fine_resistor_offset:
      n = "aux fine resistor offset";
      break;
    case Opcode::usb_passthrough:
      n = "USB passthrough";
      break;
    case Opcode::main_coarse_resistor_offset:
      n = "main coarse resistor offset";
      break;
    case Opcode::usb_coarse_resistor_offset:
      n = "USB coarse resistor offset";
      break;
    case Opcode::aux_coarse_resistor_offset:
      n = "aux coarse resistor offset";
      break;
    case Opcode::main_fine_scale:
      n = "main fine scale";
      break;
    case Opcode::main_coarse_scale:
      n = "main coarse scale";
      break;
    case Opcode::usb_fine_scale:
      n = "USB fine scale";
      break;
    case Opcode::usb_coarse_scale:
      n = "USB coarse scale";
      break;
    case Opcode::aux_fine_scale:
      n = "aux fine scale";
      break;
    case Opcode::aux_coarse_scale:
      n = "aux coarse scale";
      break;
    case Opcode::voltage_channel:
      n = "voltage channel";
      break;
    case Opcode::main_fine_zero_offset:
      n = "main fine zero offset";
      break;
    case Opcode::main_coarse_zero_offset:
      n = "main coarse zero offset";
      break;
    case Opcode::usb_fine_zero_offset:
      n = "USB fine zero offset";
      break;
    case Opcode::usb_coarse_zero_offset:
      n = "USB coarse zero offset";
      break;
    case Opcode::output_voltage:
      n = "output voltage";
      break;
    case Opcode::serial_number:
      n = "serial number";
      break;
    case Opcode::power_up_current_limit:
      n = "power-up current limit";
      break;
    case Opcode::runtime_current_limit:
      n = "runtime current limit";
      break;
    case Opcode::hardware_model:
      n = "hardware model";
      break;
    case Opcode::dac_cal_low:
      n = "DAC calibration low";
      break;
    case Opcode::dac_cal_high:
      n = "DAC calibration high";
      break;
    case Opcode::firmware_version:
      n = "firmware version";
      break;
    case Opcode::protocol_version:
      n = "protocol version";
      break;
    case Opcode::start_status:
      n = "start status";
      break;
  }
  return std::string(n) + " (" + hex(static_cast<unsigned>(op), 2) + ")";
}

// --- control transfers -------------------------------------------------------------------------

ControlTransfer set_value(Opcode op, std::uint32_t value) {
  ControlTransfer t;
  t.request_type = kRequestTypeOut;
  t.request = static_cast<std::uint8_t>(Request::value);
  t.value = static_cast<std::uint16_t>(value & 0xFFFF);
  t.index = static_cast<std::uint16_t>(static_cast<unsigned>(op) | (((value >> 16) & 0xFF) << 8));
  put_le32(t.data.data(), value);
  t.length = 4;
  return t;
}

ControlTransfer get_value(Opcode op) {
  ControlTransfer t;
  t.request_type = kRequestTypeIn;
  t.request = static_cast<std::uint8_t>(Request::value);
  t.value = 0;
  t.index = static_cast<std::uint16_t>(op);
  t.length = 4;
  return t;
}

ControlTransfer start_sampling(std::uint16_t calibration_interval_ms, std::uint32_t max_samples) {
  ControlTransfer t;
  t.request_type = kRequestTypeOut;
  t.request = static_cast<std::uint8_t>(Request::start);
  t.value = calibration_interval_ms;
  t.index = 0;
  put_le32(t.data.data(), max_samples);
  t.length = 4;
  return t;
}

ControlTransfer stop_sampling() {
  ControlTransfer t;
  t.request_type = kRequestTypeOut;
  t.request = static_cast<std::uint8_t>(Request::stop);
  return t;
}

Result<std::uint32_t> parse_value_reply(Opcode op, std::span<const std::uint8_t> reply) {
  if (reply.size() < 4) {
    return make_error(Errc::protocol_error, "get " + opcode_name(op) + ": the device answered " +
                                                std::to_string(reply.size()) +
                                                " byte(s), expected 4");
  }
  return le32(reply);
}

RegisterFormat register_format(Opcode op) {
  switch (op) {
    case Opcode::main_fine_zero_offset:
    case Opcode::main_coarse_zero_offset:
    case Opcode::usb_fine_zero_offset:
    case Opcode::usb_coarse_zero_offset:
      return {2, true};
    case Opcode::main_fine_resistor_offset:
    case Opcode::main_coarse_resistor_offset:
    case Opcode::usb_fine_resistor_offset:
    case Opcode::usb_coarse_resistor_offset:
    case Opcode::aux_fine_resistor_offset:
    case Opcode::aux_coarse_resistor_offset:
      return {1, true};
    case Opcode::protocol_version:
    case Opcode::usb_passthrough:
    case Opcode::voltage_channel:
    case Opcode::start_status:
      return {1, false};
    case Opcode::output_voltage:
      return {4, false};
    default:
      return {2, false};
  }
}

namespace {
bool is_current_scale(Opcode op) {
  return op == Opcode::main_fine_scale || op == Opcode::main_coarse_scale ||
         op == Opcode::usb_fine_scale || op == Opcode::usb_coarse_scale;
}
}  // namespace

Result<std::int32_t> parse_register(Opcode op, std::span<const std::uint8_t> reply) {
  auto raw = parse_value_reply(op, reply);
  if (!raw) return raw.error();
  const RegisterFormat f = register_format(op);
  std::int32_t v = 0;
  if (f.bytes == 1) {
    v = f.is_signed ? static_cast<std::int8_t>(*raw & 0xFF)
                    : static_cast<std::int32_t>(*raw & 0xFF);
  } else if (f.bytes == 2) {
    v = f.is_signed ? static_cast<std::int16_t>(*raw & 0xFFFF)
                    : static_cast<std::int32_t>(*raw & 0xFFFF);
  } else {
    v = static_cast<std::int32_t>(*raw);  // 4-byte registers: only the output voltage (< 2^24)
  }
  auto bad = [&](const std::string& why) {
    return make_error(Errc::protocol_error,
                      opcode_name(op) + " reads " + std::to_string(v) + ": " + why);
  };
  if (is_current_scale(op) && (v == 0 || v == 0xFFFF))
    return bad("a blank EEPROM value; the monitor holds no calibration");
  if (f.bytes == 2 && f.is_signed && std::abs(v) > kMaxZeroOffsetCounts) {
    return bad("beyond +-" + std::to_string(kMaxZeroOffsetCounts) +
               " counts; real units carry tens of counts (a corrupt or unprogrammed EEPROM)");
  }
  return v;
}

std::array<std::uint8_t, 4> register_reply(Opcode op, std::int32_t value, std::uint16_t pad) {
  const RegisterFormat f = register_format(op);
  std::array<std::uint8_t, 4> out{};
  put_le32(out.data(), static_cast<std::uint32_t>(value));
  for (std::size_t i = f.bytes; i < out.size(); ++i)
    out[i] = static_cast<std::uint8_t>(i % 2 ? pad >> 8 : pad & 0xFF);
  return out;
}

Result<std::uint32_t> output_voltage_raw(double volts, Model model) {
  if (volts == 0.0) return 0u;
  double lo = 0.8, hi = 13.5;
  if (model == Model::lvpm) {
    lo = 2.01;
    hi = 4.55;
  } else if (model != Model::hvpm) {
    return make_error(Errc::invalid_argument, "output voltage: unknown monitor model");
  }
  if (!std::isfinite(volts) || !within(volts, lo, hi)) {
    char b[128];
    std::snprintf(b, sizeof b,
                  "output voltage %g V is outside %.2f..%.2f V (or 0 for off) for the %s", volts,
                  lo, hi, model == Model::lvpm ? "LVPM" : "HVPM");
    return make_error(Errc::invalid_argument, b);
  }
  return static_cast<std::uint32_t>(std::lround(volts * kVoltsToRaw));
}

double output_voltage_volts(std::uint32_t raw) {
  return static_cast<double>(raw) / kVoltsToRaw;
}

Result<std::uint32_t> current_limit_raw(double amps, Model model) {
  const double max = model == Model::lvpm ? 8.0 : 15.625;
  const double full = model == Model::lvpm ? 1023.0 : 65535.0;
  if (model != Model::lvpm && model != Model::hvpm)
    return make_error(Errc::invalid_argument, "current limit: unknown monitor model");
  if (!std::isfinite(amps) || !(amps > 0.0) || amps > max) {
    char b[96];
    std::snprintf(b, sizeof b, "current limit %g A is outside (0, %g] A for the %s", amps, max,
                  model == Model::lvpm ? "LVPM" : "HVPM");
    return make_error(Errc::invalid_argument, b);
  }
  return static_cast<std::uint32_t>(std::lround(full * (1.0 - amps / max)));
}

double current_limit_amps(std::uint32_t raw, Model model) {
  if (model == Model::lvpm) return 8.0 * (1.0 - std::min<double>(raw, 1023) / 1023.0);
  return 15.625 * (1.0 - std::min<double>(raw, 65535) / 65535.0);
}

Result<ControlTransfer> set_output_voltage(double volts, Model model) {
  auto raw = output_voltage_raw(volts, model);
  if (!raw) return raw.error();
  return set_value(Opcode::output_voltage, *raw);
}

Result<ControlTransfer> set_current_limit(Opcode which, double amps, Model model) {
  if (which != Opcode::power_up_current_limit && which != Opcode::runtime_current_limit) {
    return make_error(Errc::invalid_argument,
                      opcode_name(which) + " is not a current-limit register");
  }
  auto raw = current_limit_raw(amps, model);
  if (!raw) return raw.error();
  return set_value(which, *raw);
}

ControlTransfer set_usb_passthrough(UsbPassthrough mode) {
  return set_value(Opcode::usb_passthrough, static_cast<std::uint32_t>(mode));
}

ControlTransfer set_voltage_channel(VoltageChannel channel) {
  return set_value(Opcode::voltage_channel, static_cast<std::uint32_t>(channel));
}

Result<HostRequest> parse_request(std::uint8_t request_type, std::uint8_t request,
                                  std::uint16_t value, std::uint16_t index,
                                  std::span<const std::uint8_t> data) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::protocol_error,
                      "control transfer (bmRequestType " + hex(request_type, 2) + ", bRequest " +
                          hex(request, 2) + ", wValue " + hex(value, 4) + ", wIndex " +
                          hex(index, 4) + ", " + std::to_string(data.size()) +
                          " data bytes): " + why);
  };
  HostRequest r;
  if (request_type == kRequestTypeIn) {
    if (request != static_cast<std::uint8_t>(Request::value)) return bad("unknown IN request");
    r.kind = HostRequest::Kind::get_value;
    r.op = static_cast<Opcode>(index & 0xFF);
    return r;
  }
  if (request_type != kRequestTypeOut) return bad("not a vendor request to the device");
  switch (request) {
    case static_cast<std::uint8_t>(Request::value): {
      if (data.size() != 4) return bad("set value needs a 4-byte data stage");
      r.kind = HostRequest::Kind::set_value;
      r.op = static_cast<Opcode>(index & 0xFF);
      r.value = le32(data);
      if ((r.value & 0xFFFF) != value || ((r.value >> 16) & 0xFF) != (index >> 8u)) {
        return bad("wValue/wIndex disagree with the data stage value " + hex(r.value, 8));
      }
      return r;
    }
    case static_cast<std::uint8_t>(Request::start):
      if (data.size() != 4) return bad("start needs a 4-byte sample limit");
      r.kind = HostRequest::Kind::start;
      r.calibration_interval_ms = value;
      r.max_samples = le32(data);
      return r;
    case static_cast<std::uint8_t>(Request::stop):
      r.kind = HostRequest::Kind::stop;
      return r;
    default:
      return bad("unknown OUT request");
  }
}

// --- sample packets ----------------------------------------------------------------------------

PacketStatus decode_packet(std::span<const std::uint8_t> packet, DroppedByteOrder order,
                           PacketHeader& header, std::span<RawSample, kMaxSamplesPerPacket> out) {
  const std::size_t len = std::min(packet.size(), kPacketSize);
  if (decode_header(packet.data(), len, order, header) != PacketStatus::ok) return header.status;
  const std::uint8_t* s = packet.data() + kHeaderSize;
  for (std::size_t i = 0; i < header.n; ++i, s += kSampleSize)
    out[i] = decode_sample(s);
  return PacketStatus::ok;
}

Result<DecodedPacket> parse_packet(std::span<const std::uint8_t> packet, DroppedByteOrder order,
                                   const std::string& position) {
  DecodedPacket d;
  switch (decode_packet(packet, order, d.header, d.samples)) {
    case PacketStatus::ok:
      return d;
    case PacketStatus::too_many_samples:
      return make_error(Errc::protocol_error, "HVPM " + position + ": byte 3 announces " +
                                                  std::to_string(d.header.n) +
                                                  " samples, at most 3 fit a packet");
    case PacketStatus::too_short:
      break;
  }
  return make_error(
      Errc::protocol_error,
      "HVPM " + position + ": " + std::to_string(packet.size()) + " bytes, " +
          (packet.size() < kHeaderSize
               ? std::string("shorter than the 4-byte header")
               : "byte 3 announces " + std::to_string(d.header.n) + " samples that need " +
                     std::to_string(kHeaderSize + kSampleSize * d.header.n)));
}

BatchResult decode_batch(std::span<const std::uint8_t> bytes, DroppedByteOrder order,
                         std::span<PacketHeader> headers, std::span<RawSample> samples) {
  BatchResult r;
  const std::uint8_t* base = bytes.data();
  const std::size_t size = bytes.size();
  std::size_t off = 0;
  while (off < size && r.packets < headers.size()) {
    const std::size_t len = std::min(kPacketSize, size - off);
    const std::uint8_t* p = base + off;
    PacketHeader& h = headers[r.packets];
    if (decode_header(p, len, order, h) == PacketStatus::ok) {
      if (samples.size() - r.samples < h.n) break;  // no room: leave the packet for next time
      h.first_sample = static_cast<std::uint32_t>(r.samples);
      const std::uint8_t* s = p + kHeaderSize;
      RawSample* out = samples.data() + r.samples;
      for (std::size_t i = 0; i < h.n; ++i, s += kSampleSize)
        out[i] = decode_sample(s);
      r.samples += h.n;
    } else {
      h.first_sample = static_cast<std::uint32_t>(r.samples);
      ++r.invalid_packets;
    }
    ++r.packets;
    off += len;
  }
  r.bytes_consumed = off;
  return r;
}

void encode_packet(std::uint16_t dropped, std::uint8_t flags, std::span<const RawSample> samples,
                   DroppedByteOrder order, std::span<std::uint8_t, kPacketSize> out) {
  assert(samples.size() <= kMaxSamplesPerPacket);
  std::fill(out.begin(), out.end(), std::uint8_t{0});
  if (order == DroppedByteOrder::little) {
    out[0] = static_cast<std::uint8_t>(dropped & 0xFF);
    out[1] = static_cast<std::uint8_t>(dropped >> 8);
  } else {
    put_be16(out.data(), dropped);
  }
  out[2] = flags;
  out[3] = static_cast<std::uint8_t>(samples.size());
  std::uint8_t* s = out.data() + kHeaderSize;
  for (const auto& x : samples) {
    put_be16(s, x.main_coarse);
    put_be16(s + 2, x.main_fine);
    put_be16(s + 4, x.usb_coarse);
    put_be16(s + 6, x.usb_fine);
    put_be16(s + 8, static_cast<std::uint16_t>(x.aux_coarse));
    put_be16(s + 10, static_cast<std::uint16_t>(x.aux_fine));
    put_be16(s + 12, x.main_voltage);
    put_be16(s + 14, x.usb_voltage);
    s[16] = x.usb_gain;
    s[17] = x.main_gain;
    s += kSampleSize;
  }
}

// --- calibration -------------------------------------------------------------------------------

double lvpm_resistor_ohm(std::int8_t offset) {
  return 0.05 + 0.0001 * offset;
}
double lvpm_fine_scale(double ohm) {
  return 35946.0 * (0.05 / ohm);
}
double lvpm_coarse_scale(double ohm) {
  return 3103.4 * (0.05 / ohm);
}

double fine_threshold(Model model) {
  return model == Model::lvpm ? 30000.0 : 64000.0;
}
double main_volts_per_count(Model model) {
  return kAdcVolts * (model == Model::lvpm ? 2.0 : 4.0);
}
double usb_volts_per_count(Model) {
  return kAdcVolts * 2.0;
}

void Calibrator::Window::push(double x) {
  v[next] = x;
  next = (next + 1) % kWindow;
  if (count < kWindow) ++count;
}

double Calibrator::Window::mean() const {
  if (count == 0) return 0.0;
  double s = 0;
  for (std::size_t i = 0; i < count; ++i)
    s += v[i];
  return s / static_cast<double>(count);
}

Calibrator::Calibrator(DeviceCalibration device) : dev_(device) {
  signed_words_ = dev_.model == Model::lvpm;
  threshold_ = fine_threshold(dev_.model);
  main_vk_ = main_volts_per_count(dev_.model);
  usb_vk_ = usb_volts_per_count(dev_.model);
  recompute();
  generation_ = 0;
}

double Calibrator::word(std::uint16_t w) const {
  return signed_words_ ? static_cast<double>(static_cast<std::int16_t>(w)) : static_cast<double>(w);
}

void Calibrator::add(const RawSample& s) {
  const SampleKind k = s.kind();
  if (k != SampleKind::zero_cal && k != SampleKind::ref_cal) return;
  const std::size_t ref = k == SampleKind::ref_cal ? 1 : 0;
  const std::uint16_t words[6] = {s.main_fine,
                                  s.main_coarse,
                                  s.usb_fine,
                                  s.usb_coarse,
                                  static_cast<std::uint16_t>(s.aux_fine),
                                  static_cast<std::uint16_t>(s.aux_coarse)};
  for (std::size_t i = 0; i < 6; ++i) {
    if (words[i] == 0) continue;  // PyMonsoon: a word of 0 was not measured
    // Aux words are signed on both models.
    w_[2 * i + ref].push(i >= 4 ? static_cast<double>(static_cast<std::int16_t>(words[i]))
                                : word(words[i]));
  }
  recompute();
}

bool Calibrator::main_ready() const {
  return w_[0].count && w_[1].count && w_[2].count && w_[3].count;
}
bool Calibrator::usb_ready() const {
  return w_[4].count && w_[5].count && w_[6].count && w_[7].count;
}

bool Calibrator::calibrated() const {
  return std::all_of(w_.begin(), w_.end(), [](const Window& w) { return w.count >= kWindow; });
}

std::string Calibrator::missing_readings() const {
  static constexpr const char* kNames[12] = {
      "main fine zero", "main fine ref", "main coarse zero", "main coarse ref",
      "USB fine zero",  "USB fine ref",  "USB coarse zero",  "USB coarse ref",
      "aux fine zero",  "aux fine ref",  "aux coarse zero",  "aux coarse ref"};
  std::string out;
  for (std::size_t i = 0; i < w_.size(); ++i) {
    if (w_[i].count >= kWindow) continue;
    if (!out.empty()) out += ", ";
    out +=
        std::string(kNames[i]) + " " + std::to_string(w_[i].count) + "/" + std::to_string(kWindow);
  }
  return out;
}

ChannelCal Calibrator::main() const {
  return {dev_.main.fine_zero_offset + w_[0].mean(), w_[1].mean(),
          dev_.main.coarse_zero_offset + w_[2].mean(), w_[3].mean()};
}
ChannelCal Calibrator::usb() const {
  return {dev_.usb.fine_zero_offset + w_[4].mean(), w_[5].mean(),
          dev_.usb.coarse_zero_offset + w_[6].mean(), w_[7].mean()};
}

Calibrator::Linear Calibrator::linear(const ChannelCal& c, const ChannelScales& s, bool ready) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  Linear l;
  l.ready = ready;
  l.fine_zero = c.fine_zero;
  l.coarse_zero = c.coarse_zero;
  // Fine: scale / (ref - zero) gives uA per count; coarse gives mA per count. Stored as A/count.
  l.fine_k = c.fine_ref != c.fine_zero ? s.fine_scale / (c.fine_ref - c.fine_zero) * 1e-6 : nan;
  l.coarse_k =
      c.coarse_ref != c.coarse_zero ? s.coarse_scale / (c.coarse_ref - c.coarse_zero) * 1e-3 : nan;
  if (!ready) l.fine_k = l.coarse_k = nan;
  return l;
}

void Calibrator::recompute() {
  ++generation_;
  main_ = linear(main(), dev_.main, main_ready());
  usb_ = linear(usb(), dev_.usb, usb_ready());
}

double Calibrator::amps(const Linear& l, std::uint16_t fine, std::uint16_t coarse) const {
  const double f = word(fine);
  if (f < threshold_) return (f - l.fine_zero) * l.fine_k;
  return (word(coarse) - l.coarse_zero) * l.coarse_k;
}

double Calibrator::main_amps(const RawSample& s) const {
  return amps(main_, s.main_fine, s.main_coarse);
}
double Calibrator::usb_amps(const RawSample& s) const {
  return amps(usb_, s.usb_fine, s.usb_coarse);
}
double Calibrator::main_volts(const RawSample& s) const {
  return s.main_voltage * main_vk_;
}
double Calibrator::usb_volts(const RawSample& s) const {
  return s.usb_voltage * usb_vk_;
}

void Calibrator::convert(std::span<const RawSample> in, std::span<float> main_amps_out,
                         std::span<float> main_volts_out, std::span<float> usb_amps_out) const {
  assert(main_amps_out.empty() || main_amps_out.size() >= in.size());
  assert(main_volts_out.empty() || main_volts_out.size() >= in.size());
  assert(usb_amps_out.empty() || usb_amps_out.size() >= in.size());
  const std::size_t n = in.size();
  if (!main_amps_out.empty()) {
    for (std::size_t i = 0; i < n; ++i)
      main_amps_out[i] = static_cast<float>(amps(main_, in[i].main_fine, in[i].main_coarse));
  }
  if (!main_volts_out.empty()) {
    for (std::size_t i = 0; i < n; ++i)
      main_volts_out[i] = static_cast<float>(in[i].main_voltage * main_vk_);
  }
  if (!usb_amps_out.empty()) {
    for (std::size_t i = 0; i < n; ++i)
      usb_amps_out[i] = static_cast<float>(amps(usb_, in[i].usb_fine, in[i].usb_coarse));
  }
}

ChannelCal ChannelAdc::cal() const {
  return {scales.fine_zero_offset + fine_zero_cal, fine_ref_cal,
          scales.coarse_zero_offset + coarse_zero_cal, coarse_ref_cal};
}

std::array<std::uint16_t, 2> quantize_current(double amps, const ChannelAdc& adc, Model model) {
  const ChannelCal c = adc.cal();
  const double fine = c.fine_zero + amps * 1e6 * (c.fine_ref - c.fine_zero) / adc.scales.fine_scale;
  const double coarse =
      c.coarse_zero + amps * 1e3 * (c.coarse_ref - c.coarse_zero) / adc.scales.coarse_scale;
  const bool is_signed = model == Model::lvpm;
  const double lo = is_signed ? -32768.0 : 0.0, hi = is_signed ? 32767.0 : 65535.0;
  auto word = [&](double x) {
    double r = std::isfinite(x) ? std::clamp(std::round(x), lo, hi) : hi;
    return static_cast<std::uint16_t>(static_cast<std::int32_t>(r) & 0xFFFF);
  };
  return {word(fine), word(coarse)};
}

std::uint16_t quantize_volts(double volts, double volts_per_count) {
  double c = std::round(volts / volts_per_count);
  if (!std::isfinite(c)) return 0;
  return static_cast<std::uint16_t>(std::clamp(c, 0.0, 65535.0));
}

// --- sequencing --------------------------------------------------------------------------------

void SampleSequencer::begin(std::int64_t start_ns) {
  have_start_ = true;
  start_ns_ = start_ns;
}

bool SampleSequencer::dropped_plausible(std::uint64_t end_index, std::int64_t arrival_ns) const {
  // The device cannot have dropped samples it has not taken yet: with them counted, the packet
  // must not end ahead of elapsed time x rate. The slack covers host jitter and clock error.
  const double slack = 2.0 * wrap_samples() + 0.05 * cfg_.rate_hz;
  if (wrap_.inference().has_origin()) {
    double fl = std::min(wrap_.inference().floor(), 0.0);
    return wrap_.inference().residual(end_index, arrival_ns) >= fl - slack;
  }
  if (have_start_) {
    double produced = static_cast<double>(arrival_ns - start_ns_) * 1e-9 * cfg_.rate_hz;
    return static_cast<double>(end_index) <= produced + slack;
  }
  return true;
}

void SampleSequencer::push(std::uint8_t counter, std::uint16_t dropped, std::uint8_t slots,
                           std::int64_t arrival_ns, std::uint32_t tag, bool caught_up) {
  ++seq_counters_.packets;
  if (have_counter_) {
    unsigned gap = (counter - last_counter_ - 1u) & 0x0Fu;
    if (gap > 0) {
      ++seq_counters_.counter_gaps;
      std::uint64_t lost = std::uint64_t{gap} * nominal_slots();
      seq_counters_.counter_lost += lost;
      pending_counter_lost_ += lost;
    }
  }
  have_counter_ = true;
  last_counter_ = counter & 0x0F;

  // The count runs from 0 at start, so the first packet's value is already an increase.
  std::uint64_t delta =
      have_dropped_ ? static_cast<std::uint16_t>(dropped - last_dropped_) : std::uint64_t{dropped};
  have_dropped_ = true;
  last_dropped_ = dropped;
  if (delta > 0) {
    std::uint64_t end =
        next_index_ + pending_counter_lost_ + pending_device_dropped_ + delta + slots;
    if (dropped_plausible(end, arrival_ns)) {
      seq_counters_.device_dropped += delta;
      pending_device_dropped_ += delta;
    } else {
      ++seq_counters_.dropped_implausible;
    }
  }
  if (slots == 0) return;

  PlacedPacket p;
  p.counter_lost = pending_counter_lost_;
  p.device_dropped = pending_device_dropped_;
  p.lost_before = p.counter_lost + p.device_dropped;
  p.first_index = next_index_ + p.lost_before;
  p.tag = tag;
  p.slots = slots;
  pending_counter_lost_ = pending_device_dropped_ = 0;
  next_index_ = p.first_index + slots;
  max_slots_ = std::max(max_slots_, std::min<std::uint8_t>(slots, kMaxSamplesPerPacket));
  wrap_.push(p, next_index_, arrival_ns,
             WrapEvidence{p.lost_before > 0, caught_up, wrap_samples()});
}

SequenceCounters SampleSequencer::counters() const {
  SequenceCounters c = seq_counters_;
  static_cast<WrapCounters&>(c) = wrap_.inference().counters();
  return c;
}

}  // namespace meltrig::fw::hvpm
