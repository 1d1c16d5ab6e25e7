// Monsoon LVPM serial protocol: see lvpm_protocol.hpp.
#include "meltrig/fw/lvpm_protocol.hpp"

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace meltrig::fw::lvpm {
namespace {

std::uint8_t checksum(std::uint8_t len, std::span<const std::uint8_t> payload) {
  unsigned sum = len;
  for (auto b : payload)
    sum += b;
  return static_cast<std::uint8_t>(sum & 0xFF);
}

std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(p[0]) << 8) | p[1]);
}
void put_be16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v & 0xFF);
}

std::vector<std::uint8_t> frames_of(std::initializer_list<std::initializer_list<std::uint8_t>> ps) {
  std::vector<std::uint8_t> out;
  for (auto p : ps)
    append_frame(std::span<const std::uint8_t>(p.begin(), p.size()), out);
  return out;
}

Result<std::vector<std::uint8_t>> limit_frames(double amps, std::uint8_t reg_lo, const char* what) {
  if (!(amps > 0.0 && amps <= 8.0)) {
    return make_error(Errc::invalid_argument, std::string(what) + " current limit " +
                                                  std::to_string(amps) + " A is outside (0, 8] A");
  }
  std::uint16_t raw = current_limit_raw(amps);
  return frames_of(
      {{0x01, reg_lo, static_cast<std::uint8_t>(raw & 0xFF)},
       {0x01, static_cast<std::uint8_t>(reg_lo + 1), static_cast<std::uint8_t>(raw >> 8)}});
}

}  // namespace

// --- framing -----------------------------------------------------------------------------------

void append_frame(std::span<const std::uint8_t> payload, std::vector<std::uint8_t>& out) {
  assert(payload.size() <= kMaxPayload);
  auto len = static_cast<std::uint8_t>(payload.size() + 1);
  out.push_back(len);
  out.insert(out.end(), payload.begin(), payload.end());
  out.push_back(checksum(len, payload));
}

std::vector<std::uint8_t> frame(std::span<const std::uint8_t> payload) {
  std::vector<std::uint8_t> out;
  out.reserve(payload.size() + 2);
  append_frame(payload, out);
  return out;
}

FrameScan scan_frame(std::span<const std::uint8_t> buf) {
  if (buf.empty()) return {FrameScan::Kind::need_more, 0};
  std::uint8_t len = buf[0];
  if (len == 0) return {FrameScan::Kind::frame, 1};
  if (buf.size() < std::size_t{len} + 1) return {FrameScan::Kind::need_more, 0};
  auto payload = buf.subspan(1, len - 1u);
  if (buf[len] != checksum(len, payload)) return {FrameScan::Kind::invalid, 0};
  return {FrameScan::Kind::frame, std::size_t{len} + 1};
}

bool FrameDecoder::plausible(std::span<const std::uint8_t> payload) const {
  if (direction_ == Direction::to_device) return parse_command(payload).ok();
  return is_sample_packet(payload) || is_status_packet(payload);
}

// --- commands ----------------------------------------------------------------------------------

std::uint16_t current_limit_raw(double amps) {
  return static_cast<std::uint16_t>(1023 - static_cast<int>(amps / 8.0 * 1023.0));
}
double current_limit_amps(std::uint16_t raw) {
  return 8.0 * (1023.0 - raw) / 1023.0;
}

std::optional<std::uint8_t> vout_raw(double volts) {
  if (volts == 0.0) return std::uint8_t{0};
  long raw = std::lround((volts - 2.0) * 100.0);
  if (raw < 1 || raw > 255) return std::nullopt;
  return static_cast<std::uint8_t>(raw);
}
double vout_volts(std::uint8_t raw) {
  return raw == 0 ? 0.0 : 2.0 + 0.01 * raw;
}

std::vector<std::uint8_t> cmd_get_status() {
  return frames_of({{0x01, 0x00, 0x00}});
}

Result<std::vector<std::uint8_t>> cmd_set_vout(double volts) {
  auto raw = vout_raw(volts);
  if (!raw) {
    return make_error(Errc::invalid_argument, "output voltage " + std::to_string(volts) +
                                                  " V is outside 2.01..4.55 V (or 0 for off)");
  }
  return frames_of({{0x01, 0x01, *raw}});
}

Result<std::vector<std::uint8_t>> cmd_set_power_up_current_limit(double amps) {
  return limit_frames(amps, 0x08, "power-up");
}
Result<std::vector<std::uint8_t>> cmd_set_runtime_current_limit(double amps) {
  return limit_frames(amps, 0x0A, "runtime");
}
std::vector<std::uint8_t> cmd_set_usb_passthrough(UsbPassthrough mode) {
  return frames_of({{0x01, 0x10, static_cast<std::uint8_t>(mode)}});
}
std::vector<std::uint8_t> cmd_start_sampling() {
  return frames_of({{0x01, 0x1B, 0x01}, {0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, 0xE8}});
}
std::vector<std::uint8_t> cmd_stop_sampling() {
  return frames_of({{0x03, 0x00}});
}

Result<Command> parse_command(std::span<const std::uint8_t> p) {
  if (p.size() == 3 && p[0] == 0x01) {
    Command c{Command::Kind::unknown_set, p[1], p[2]};
    switch (p[1]) {
      case 0x00:
        c.kind = Command::Kind::get_status;
        break;
      case 0x01:
        c.kind = Command::Kind::set_vout;
        break;
      case 0x08:
        c.kind = Command::Kind::power_up_limit_lo;
        break;
      case 0x09:
        c.kind = Command::Kind::power_up_limit_hi;
        break;
      case 0x0A:
        c.kind = Command::Kind::runtime_limit_lo;
        break;
      case 0x0B:
        c.kind = Command::Kind::runtime_limit_hi;
        break;
      case 0x10:
        c.kind = Command::Kind::usb_passthrough;
        break;
      case 0x1B:
        c.kind = Command::Kind::start_prepare;
        break;
      default:
        break;
    }
    return c;
  }
  if (p.size() == 7 && p[0] == 0x02) return Command{Command::Kind::start, 0, 0};
  if (p.size() == 2 && p[0] == 0x03 && p[1] == 0x00) return Command{Command::Kind::stop, 0, 0};
  return make_error(Errc::protocol_error,
                    "not an LVPM command (" + std::to_string(p.size()) + "-byte payload)");
}

// --- status ------------------------------------------------------------------------------------

bool is_status_packet(std::span<const std::uint8_t> p) {
  return p.size() == kStatusSize && p[0] == 0x10;
}

Result<Status> parse_status(std::span<const std::uint8_t> p) {
  if (!is_status_packet(p)) {
    char type[8] = "--";
    if (!p.empty()) std::snprintf(type, sizeof type, "%02X", p[0]);
    return make_error(Errc::protocol_error, "not a status packet (" + std::to_string(p.size()) +
                                                " bytes, type 0x" + type + ")");
  }
  auto u8 = [&](std::size_t o) { return p[o]; };
  auto i8 = [&](std::size_t o) { return static_cast<std::int8_t>(p[o]); };
  auto u16 = [&](std::size_t o) { return be16(&p[o]); };
  auto i16 = [&](std::size_t o) { return static_cast<std::int16_t>(be16(&p[o])); };
  Status s;
  s.packet_type = u8(0);
  s.firmware_version = u8(1);
  s.protocol_version = u8(2);
  s.main_fine_current = i16(3);
  s.usb_fine_current = i16(5);
  s.aux_fine_current = i16(7);
  s.voltage1 = u16(9);
  s.main_coarse_current = i16(11);
  s.usb_coarse_current = i16(13);
  s.aux_coarse_current = i16(15);
  s.voltage2 = u16(17);
  s.output_voltage_setting = u8(19);
  s.temperature = u8(20);
  s.status = u8(21);
  // 22: pad
  s.leds = u8(23);
  s.main_fine_resistor = i8(24);
  s.serial_number = u16(25);
  s.sample_rate_khz = u8(27);
  s.dac_cal_low = u16(28);
  s.dac_cal_high = u16(30);
  s.power_up_current_limit = u16(32);
  s.runtime_current_limit = u16(34);
  s.power_up_time = u8(36);
  s.usb_fine_resistor = i8(37);
  s.aux_fine_resistor = i8(38);
  s.initial_usb_voltage = u16(39);
  s.initial_aux_voltage = u16(41);
  s.hardware_revision = u8(43);
  s.temperature_limit = u8(44);
  s.usb_passthrough_mode = u8(45);
  s.main_coarse_resistor = i8(46);
  s.usb_coarse_resistor = i8(47);
  s.aux_coarse_resistor = i8(48);
  s.def_main_fine_resistor = i8(49);
  s.def_usb_fine_resistor = i8(50);
  s.def_aux_fine_resistor = i8(51);
  s.def_main_coarse_resistor = i8(52);
  s.def_usb_coarse_resistor = i8(53);
  s.def_aux_coarse_resistor = i8(54);
  s.event_code = u8(55);
  s.event_data = u16(56);
  return s;
}

std::array<std::uint8_t, kStatusSize> encode_status(const Status& s) {
  std::array<std::uint8_t, kStatusSize> p{};
  auto u8 = [&](std::size_t o, std::uint8_t v) { p[o] = v; };
  auto i8 = [&](std::size_t o, std::int8_t v) { p[o] = static_cast<std::uint8_t>(v); };
  auto u16 = [&](std::size_t o, std::uint16_t v) { put_be16(&p[o], v); };
  auto i16 = [&](std::size_t o, std::int16_t v) { put_be16(&p[o], static_cast<std::uint16_t>(v)); };
  u8(0, 0x10);
  u8(1, s.firmware_version);
  u8(2, s.protocol_version);
  i16(3, s.main_fine_current);
  i16(5, s.usb_fine_current);
  i16(7, s.aux_fine_current);
  u16(9, s.voltage1);
  i16(11, s.main_coarse_current);
  i16(13, s.usb_coarse_current);
  i16(15, s.aux_coarse_current);
  u16(17, s.voltage2);
  u8(19, s.output_voltage_setting);
  u8(20, s.temperature);
  u8(21, s.status);
  u8(23, s.leds);
  i8(24, s.main_fine_resistor);
  u16(25, s.serial_number);
  u8(27, s.sample_rate_khz);
  u16(28, s.dac_cal_low);
  u16(30, s.dac_cal_high);
  u16(32, s.power_up_current_limit);
  u16(34, s.runtime_current_limit);
  u8(36, s.power_up_time);
  i8(37, s.usb_fine_resistor);
  i8(38, s.aux_fine_resistor);
  u16(39, s.initial_usb_voltage);
  u16(41, s.initial_aux_voltage);
  u8(43, s.hardware_revision);
  u8(44, s.temperature_limit);
  u8(45, s.usb_passthrough_mode);
  i8(46, s.main_coarse_resistor);
  i8(47, s.usb_coarse_resistor);
  i8(48, s.aux_coarse_resistor);
  i8(49, s.def_main_fine_resistor);
  i8(50, s.def_usb_fine_resistor);
  i8(51, s.def_aux_fine_resistor);
  i8(52, s.def_main_coarse_resistor);
  i8(53, s.def_usb_coarse_resistor);
  i8(54, s.def_aux_coarse_resistor);
  u8(55, s.event_code);
  u16(56, s.event_data);
  return p;
}

// --- sample packets ----------------------------------------------------------------------------

bool is_sample_packet(std::span<const std::uint8_t> p) {
  if (p.size() < 5 || p.size() > 5 + 8 * kMaxSamplesPerPacket || (p.size() - 5) % 8 != 0) {
    return false;
  }
  if ((p[0] & 0xF0) != 0x20) return false;
  return p[1] <= 2;
}

Result<SamplePacket> parse_sample_packet(std::span<const std::uint8_t> p) {
  if (!is_sample_packet(p)) {
    return make_error(Errc::protocol_error,
                      "not a sample packet (" + std::to_string(p.size()) + " bytes)");
  }
  SamplePacket sp;
  sp.head = p[0];
  sp.seq = p[0] & 0x0F;
  sp.type = static_cast<PacketType>(p[1]);
  sp.n = static_cast<std::uint8_t>((p.size() - 5) / 8);
  const std::uint8_t* s = p.data() + 4;
  for (std::size_t i = 0; i < sp.n; ++i, s += 8) {
    sp.samples[i] =
        RawSample{static_cast<std::int16_t>(be16(s)), static_cast<std::int16_t>(be16(s + 2)),
                  static_cast<std::int16_t>(be16(s + 4)), be16(s + 6)};
  }
  return sp;
}

void append_sample_packet(std::uint8_t seq, PacketType type, std::span<const RawSample> samples,
                          std::vector<std::uint8_t>& out) {
  assert(samples.size() <= kMaxSamplesPerPacket);
  out.push_back(static_cast<std::uint8_t>(0x20 | (seq & 0x0F)));
  out.push_back(static_cast<std::uint8_t>(type));
  out.push_back(0);
  out.push_back(0);
  for (const auto& s : samples) {
    std::uint8_t b[8];
    put_be16(b, static_cast<std::uint16_t>(s.main_current));
    put_be16(b + 2, static_cast<std::uint16_t>(s.usb_current));
    put_be16(b + 4, static_cast<std::uint16_t>(s.aux_current));
    put_be16(b + 6, s.main_voltage);
    out.insert(out.end(), b, b + 8);
  }
  out.push_back(0);
}

// --- calibration -------------------------------------------------------------------------------

void Calibrator::Window::push(double x) {
  if (count == kWindow)
    sum -= v[next];
  else
    ++count;
  v[next] = x;
  sum += x;
  next = (next + 1) % kWindow;
}

void Calibrator::add(const SamplePacket& p) {
  if (p.type == PacketType::data) return;
  Window& fine = p.type == PacketType::zero_cal ? fine_zero_ : fine_ref_;
  Window& coarse = p.type == PacketType::zero_cal ? coarse_zero_ : coarse_ref_;
  for (std::size_t i = 0; i < p.n; ++i) {
    // ACTS: even entries fine, odd coarse. The coarse word carries the range bit: strip it.
    if (i % 2 == 0)
      fine.push(p.samples[i].main_current);
    else
      coarse.push(p.samples[i].main_current & ~1);
  }
  recompute();
}

bool Calibrator::ready() const {
  return fine_zero_.count && fine_ref_.count && coarse_zero_.count && coarse_ref_.count;
}

CalibrationValues Calibrator::values() const {
  return {fine_zero_.mean(), fine_ref_.mean(), coarse_zero_.mean(), coarse_ref_.mean()};
}

void Calibrator::recompute() {
  ++generation_;
  if (!ready()) return;
  auto v = values();
  fz_ = v.fine_zero;
  cz_ = v.coarse_zero;
  // A degenerate calibration (ref == zero) gives NaN samples rather than infinities.
  fine_scale_ = v.fine_ref != v.fine_zero ? kFineRefAmps / (v.fine_ref - v.fine_zero)
                                          : std::numeric_limits<double>::quiet_NaN();
  coarse_scale_ = v.coarse_ref != v.coarse_zero ? kCoarseRefAmps / (v.coarse_ref - v.coarse_zero)
                                                : std::numeric_limits<double>::quiet_NaN();
}

double Calibrator::current_amps(std::int16_t raw) const {
  if (raw & 1) return ((raw & ~1) - cz_) * coarse_scale_;
  return (raw - fz_) * fine_scale_;
}

void Calibrator::convert(const SamplePacket& p, std::uint8_t hardware_revision,
                         std::span<float> amps, std::span<float> volts) const {
  assert(amps.size() >= p.n && volts.size() >= p.n);
  const double lsb = hardware_revision == 1 ? 62.5e-6 : 125e-6;
  for (std::size_t i = 0; i < p.n; ++i) {
    amps[i] = static_cast<float>(current_amps(p.samples[i].main_current));
    volts[i] = static_cast<float>((p.samples[i].main_voltage & ~3u) * lsb);
  }
}

double Calibrator::voltage_volts(std::uint16_t raw, std::uint8_t hardware_revision) {
  double lsb = hardware_revision == 1 ? 62.5e-6 : 125e-6;
  return (raw & ~3u) * lsb;
}

std::int16_t quantize_current(double amps, const CalibrationValues& cal,
                              std::int32_t fine_limit_counts) {
  auto even = [](double x) { return 2 * static_cast<std::int64_t>(std::llround(x / 2.0)); };
  auto clamp16 = [](std::int64_t v) {
    return static_cast<std::int16_t>(std::clamp<std::int64_t>(v, -32768, 32767));
  };
  std::int64_t fine = even(cal.fine_zero + amps * (cal.fine_ref - cal.fine_zero) / kFineRefAmps);
  if (fine < fine_limit_counts && fine >= -32768) return clamp16(fine);
  std::int64_t coarse =
      even(cal.coarse_zero + amps * (cal.coarse_ref - cal.coarse_zero) / kCoarseRefAmps);
  return clamp16(std::clamp<std::int64_t>(coarse, -32768, 32766) | 1);
}

std::uint16_t quantize_voltage(double volts, std::uint8_t hardware_revision) {
  double lsb = hardware_revision == 1 ? 62.5e-6 : 125e-6;
  long counts = std::lround(volts / lsb / 4.0) * 4;
  return static_cast<std::uint16_t>(std::clamp<long>(counts, 0, 65532));
}

// --- sequencing --------------------------------------------------------------------------------

void SampleSequencer::push(std::uint8_t seq, bool is_data, std::uint8_t n, std::int64_t arrival_ns,
                           std::uint32_t tag, bool caught_up) {
  ++seq_counters_.packets;
  if (have_seq_) {
    unsigned gap = (seq - last_seq_ - 1u) & 0x0Fu;
    if (gap > 0) {
      ++seq_counters_.sequence_gaps;
      std::uint64_t lost = std::uint64_t{gap} * (last_n_ ? last_n_ : n);
      seq_counters_.sequence_lost += lost;
      pending_lost_ += lost;
    }
  }
  have_seq_ = true;
  last_seq_ = seq & 0x0F;
  if (!is_data) return;

  PlacedPacket p;
  p.first_index = next_index_ + pending_lost_;
  p.lost_before = pending_lost_;
  p.lost_by_sequence = pending_lost_ > 0;
  p.tag = tag;
  p.n = n;
  pending_lost_ = 0;
  next_index_ = p.first_index + n;
  last_n_ = n;
  const WrapEvidence ev{p.lost_by_sequence, caught_up, 16.0 * std::max<std::uint8_t>(n, 1)};
  wrap_.push(p, next_index_, arrival_ns, ev);
}

SequenceCounters SampleSequencer::counters() const {
  SequenceCounters c = seq_counters_;
  static_cast<WrapCounters&>(c) = wrap_.inference().counters();
  return c;
}

}  // namespace meltrig::fw::lvpm
