// Monsoon LVPM (white unit, firmware FTA22D) serial protocol: framing, commands, the status
// packet, sample packets and calibration maths. Pure code over byte spans: no I/O, no clocks.
// Both directions are here: the host side (drivers) and the device side (emulators).
// Facts come from public descriptions (e.g. msoon/PyMonsoon); where sources disagree, noted.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/fw/wrap_inference.hpp"

namespace meltrig::fw::lvpm {

/// Largest payload a frame can carry: L is one byte and counts the payload plus the checksum.
inline constexpr std::size_t kMaxPayload = 254;
/// Most samples in one sample packet: (254 - 5) / 8.
inline constexpr std::size_t kMaxSamplesPerPacket = 31;
/// Size of the status packet body (type byte included).
inline constexpr std::size_t kStatusSize = 58;
/// USB product string the LVPM reports; used for discovery.
inline constexpr const char* kUsbDescription = "Mobile Device Power Monitor";

// ---------------------------------------------------------------------------------------------
// Framing: [L][payload...][C], L = len(payload) + 1, C = (L + sum(payload)) & 0xFF.

/// Appends one framed packet carrying `payload` (at most kMaxPayload bytes) to `out`.
void append_frame(std::span<const std::uint8_t> payload, std::vector<std::uint8_t>& out);
/// One framed packet carrying `payload`.
std::vector<std::uint8_t> frame(std::span<const std::uint8_t> payload);

/// Outcome of looking at the front of a byte buffer.
struct FrameScan {
  enum class Kind { need_more, invalid, frame } kind;
  std::size_t frame_len = 0;  ///< for `frame`: bytes consumed (L + 1), payload at [1, L)
};
/// Looks at the front of `buf`: a complete frame with a valid checksum, too few bytes, or invalid
/// (checksum mismatch). L = 0 is a valid empty frame of length 1. Pure; never reads past `buf`.
FrameScan scan_frame(std::span<const std::uint8_t> buf);

/// Counters kept by the stream decoder; every discarded byte is counted.
struct FramingCounters {
  std::uint64_t frames = 0;
  std::uint64_t empty_frames = 0;     ///< L = 0
  std::uint64_t checksum_errors = 0;  ///< positions where a frame's checksum failed (each
                                      ///< costs one discarded byte while resynchronising)
  std::uint64_t implausible = 0;      ///< checksum passed but content made no sense
  std::uint64_t discarded_bytes = 0;  ///< bytes skipped while resynchronising
};

/// Splits a byte stream into frame payloads. Bytes arrive in arbitrary pieces (a frame may be
/// split across reads, garbage may sit between frames). On a bad frame it drops one byte and tries
/// again. The internal buffer is bounded (two maximal frames); nothing is allocated per frame.
class FrameDecoder {
 public:
  /// Which side's packets to accept: the device's (status, samples) or the host's (commands).
  enum class Direction { from_device, to_device };
  explicit FrameDecoder(Direction d = Direction::from_device) : direction_(d) {}

  /// Called for each valid, plausible payload. The span is valid only during the call.
  template <typename OnPayload>
  void feed(std::span<const std::uint8_t> bytes, OnPayload&& on_payload);

  const FramingCounters& counters() const { return counters_; }
  /// Bytes buffered waiting for the rest of a frame.
  std::size_t pending() const { return len_; }

 private:
  bool plausible(std::span<const std::uint8_t> payload) const;
  std::array<std::uint8_t, 2 * (kMaxPayload + 2)> buf_{};
  std::size_t len_ = 0;
  Direction direction_;
  FramingCounters counters_;
};

// ---------------------------------------------------------------------------------------------
// Commands (host -> device).

/// USB passthrough modes for `01 10 m`.
enum class UsbPassthrough : std::uint8_t { off = 0, on = 1, automatic = 2 };

/// Frame for "get status" (`01 00 00`); the device answers with a status packet.
std::vector<std::uint8_t> cmd_get_status();
/// Frame for "set Vout" (`01 01 vv`): vv = round((V - 2.0) * 100), 2.01..4.55 V; 0 V turns the
/// output off. Other values are invalid_argument.
Result<std::vector<std::uint8_t>> cmd_set_vout(double volts);
/// Two frames for the power-up current limit (`01 08 lo`, `01 09 hi`), 0 < amps <= 8.
Result<std::vector<std::uint8_t>> cmd_set_power_up_current_limit(double amps);
/// Two frames for the runtime current limit (`01 0A lo`, `01 0B hi`), 0 < amps <= 8.
Result<std::vector<std::uint8_t>> cmd_set_runtime_current_limit(double amps);
/// Frame for USB passthrough (`01 10 m`).
std::vector<std::uint8_t> cmd_set_usb_passthrough(UsbPassthrough mode);
/// Two frames to start sampling (`01 1B 01`, then `02 FF FF FF FF 03 E8`), exactly as every known
/// driver sends them; the meaning of the second frame's arguments is undocumented.
std::vector<std::uint8_t> cmd_start_sampling();
/// Frame to stop sampling (`03 00`).
std::vector<std::uint8_t> cmd_stop_sampling();

/// Current-limit register encoding: raw = 1023 - int(I / 8 * 1023).
std::uint16_t current_limit_raw(double amps);
/// Inverse: amps = 8 * (1023 - raw) / 1023.
double current_limit_amps(std::uint16_t raw);
/// Vout register encoding; nullopt when out of range (0 V = off is raw 0).
std::optional<std::uint8_t> vout_raw(double volts);
/// Vout register decoding: 0 = off (0 V), otherwise 2.0 + 0.01 * raw.
double vout_volts(std::uint8_t raw);

/// A command as the device sees it (device side, for emulators).
struct Command {
  enum class Kind {
    get_status,
    set_vout,
    power_up_limit_lo,
    power_up_limit_hi,
    runtime_limit_lo,
    runtime_limit_hi,
    usb_passthrough,
    start_prepare,  ///< `01 1B 01`
    start,          ///< `02 FF FF FF FF 03 E8` (any arguments accepted)
    stop,           ///< `03 00`
    unknown_set,    ///< `01 xx yy` with an unknown register
  } kind;
  std::uint8_t reg = 0;    ///< register byte of `01 reg value`
  std::uint8_t value = 0;  ///< value byte
};
/// Parses one command payload; protocol_error for payloads that are no command.
Result<Command> parse_command(std::span<const std::uint8_t> payload);

// ---------------------------------------------------------------------------------------------
// Status packet (58 bytes, big-endian).

/// Every field of the status packet, raw as transmitted (41 fields, in wire order).
struct Status {
  std::uint8_t packet_type = 0x10;
  std::uint8_t firmware_version = 0;
  std::uint8_t protocol_version = 0;
  std::int16_t main_fine_current = 0;
  std::int16_t usb_fine_current = 0;
  std::int16_t aux_fine_current = 0;
  std::uint16_t voltage1 = 0;
  std::int16_t main_coarse_current = 0;
  std::int16_t usb_coarse_current = 0;
  std::int16_t aux_coarse_current = 0;
  std::uint16_t voltage2 = 0;
  std::uint8_t output_voltage_setting = 0;
  std::uint8_t temperature = 0;
  std::uint8_t status = 0;
  std::uint8_t leds = 0;
  std::int8_t main_fine_resistor = 0;
  std::uint16_t serial_number = 0;
  std::uint8_t sample_rate_khz = 0;
  std::uint16_t dac_cal_low = 0;
  std::uint16_t dac_cal_high = 0;
  std::uint16_t power_up_current_limit = 0;
  std::uint16_t runtime_current_limit = 0;
  std::uint8_t power_up_time = 0;
  std::int8_t usb_fine_resistor = 0;
  std::int8_t aux_fine_resistor = 0;
  std::uint16_t initial_usb_voltage = 0;
  std::uint16_t initial_aux_voltage = 0;
  std::uint8_t hardware_revision = 0;
  std::uint8_t temperature_limit = 0;
  std::uint8_t usb_passthrough_mode = 0;
  std::int8_t main_coarse_resistor = 0;
  std::int8_t usb_coarse_resistor = 0;
  std::int8_t aux_coarse_resistor = 0;
  std::int8_t def_main_fine_resistor = 0;
  std::int8_t def_usb_fine_resistor = 0;
  std::int8_t def_aux_fine_resistor = 0;
  std::int8_t def_main_coarse_resistor = 0;
  std::int8_t def_usb_coarse_resistor = 0;
  std::int8_t def_aux_coarse_resistor = 0;
  std::uint8_t event_code = 0;
  std::uint16_t event_data = 0;

  /// Vout setting in volts (0 = output off).
  double output_voltage_v() const { return vout_volts(output_voltage_setting); }
  double power_up_current_limit_a() const { return current_limit_amps(power_up_current_limit); }
  double runtime_current_limit_a() const { return current_limit_amps(runtime_current_limit); }
  /// Nominal sample rate in Hz (sampleRate is in kHz).
  double sample_rate_hz() const { return 1000.0 * sample_rate_khz; }
  /// Resistor values: 0.05 + 0.0001 * raw ohm (aux adds another 0.05).
  double main_fine_resistor_ohm() const { return 0.05 + 0.0001 * main_fine_resistor; }
  double main_coarse_resistor_ohm() const { return 0.05 + 0.0001 * main_coarse_resistor; }
  double aux_fine_resistor_ohm() const { return 0.10 + 0.0001 * aux_fine_resistor; }
  /// Status voltages are in units of 125 uV.
  double voltage1_v() const { return voltage1 * 125e-6; }
  double voltage2_v() const { return voltage2 * 125e-6; }
};

/// Parses a status packet body (58 bytes, first byte 0x10).
Result<Status> parse_status(std::span<const std::uint8_t> payload);
/// Encodes a status packet body (58 bytes) for emulators.
std::array<std::uint8_t, kStatusSize> encode_status(const Status& s);

// ---------------------------------------------------------------------------------------------
// Sample packets.

/// Packet type (byte 1).
enum class PacketType : std::uint8_t { data = 0, zero_cal = 1, ref_cal = 2 };

/// One raw 8-byte sample: main, usb, aux current (signed) and main voltage (unsigned).
struct RawSample {
  std::int16_t main_current;
  std::int16_t usb_current;
  std::int16_t aux_current;
  std::uint16_t main_voltage;
};

/// A decoded sample packet; samples point into the payload's storage copy below.
struct SamplePacket {
  std::uint8_t seq = 0;      ///< 4-bit packet counter (low nibble of byte 0)
  std::uint8_t head = 0x20;  ///< byte 0 as received (0x20..0x2F)
  PacketType type = PacketType::data;
  std::uint8_t n = 0;  ///< number of samples
  std::array<RawSample, kMaxSamplesPerPacket> samples{};
};

/// True when `payload` looks like a sample packet (0x20..0x2F head, known type, length 5 + 8N).
bool is_sample_packet(std::span<const std::uint8_t> payload);
/// True when `payload` looks like a status packet.
bool is_status_packet(std::span<const std::uint8_t> payload);
/// Parses a sample packet body; protocol_error if it is none.
Result<SamplePacket> parse_sample_packet(std::span<const std::uint8_t> payload);
/// Encodes a sample packet body for emulators: head, type, 2 unknown bytes, samples, 1 trailing.
void append_sample_packet(std::uint8_t seq, PacketType type, std::span<const RawSample> samples,
                          std::vector<std::uint8_t>& out_payload);

// ---------------------------------------------------------------------------------------------
// Calibration.

/// One set of calibration values in raw ADC counts, as the converter uses them.
struct CalibrationValues {
  double fine_zero = 0, fine_ref = 0, coarse_zero = 0, coarse_ref = 0;
};

/// Current scale constants: the reference points correspond to these currents in amps.
inline constexpr double kFineRefAmps = 0.0332;
inline constexpr double kCoarseRefAmps = 2.88;

/// Keeps the calibration state: each of fine/coarse zero/ref is the mean of the last 5 values
/// seen (ACTS's 5-sample window). In a calibration packet even entries are fine, odd coarse.
/// Converts raw samples once both calibration packet types have been seen.
class Calibrator {
 public:
  static constexpr std::size_t kWindow = 5;

  /// Takes a zero- or ref-calibration packet. Data packets are ignored.
  void add(const SamplePacket& p);
  /// True once zero and ref values for both fine and coarse exist.
  bool ready() const;
  /// The current calibration (means over the window).
  CalibrationValues values() const;
  /// Main-channel current in amps: lowest bit 1 = coarse range, 0 = fine.
  double current_amps(std::int16_t raw) const;
  /// Main voltage in volts: (raw & ~3) * 62.5 uV for hardware revision 1, otherwise 125 uV
  /// (catapult's reading).
  static double voltage_volts(std::uint16_t raw, std::uint8_t hardware_revision);
  /// The highest voltage the main channel can report: 65532 counts (4.096 V on hardware
  /// revision 1, 8.19 V otherwise). A reading at full scale is clipped: the true voltage may be
  /// higher.
  static double voltage_full_scale_v(std::uint8_t hardware_revision) {
    return voltage_volts(kVoltageFullScaleRaw, hardware_revision);
  }
  static bool voltage_clipped(std::uint16_t raw) { return (raw & ~3u) >= kVoltageFullScaleRaw; }
  static constexpr std::uint16_t kVoltageFullScaleRaw = 65532;
  /// Converts a data packet's main channel into amps and volts (spans of at least p.n).
  void convert(const SamplePacket& p, std::uint8_t hardware_revision, std::span<float> amps,
               std::span<float> volts) const;
  /// Bumps each time the calibration values change (so a driver can record them).
  std::uint64_t generation() const { return generation_; }

 private:
  struct Window {
    std::array<double, kWindow> v{};
    std::size_t count = 0, next = 0;
    double sum = 0;
    void push(double x);
    double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
  };
  void recompute();
  Window fine_zero_, fine_ref_, coarse_zero_, coarse_ref_;
  double fine_scale_ = 0, coarse_scale_ = 0, fz_ = 0, cz_ = 0;
  std::uint64_t generation_ = 0;
};

/// Encodes a current for the emulator as the LVPM ADC would: fine range (even counts) while it
/// fits below `fine_limit_counts`, else coarse (odd counts). Returns the raw word.
std::int16_t quantize_current(double amps, const CalibrationValues& cal,
                              std::int32_t fine_limit_counts = 30000);
/// Encodes a voltage for the emulator: counts of 62.5 uV (hardware revision 1) or 125 uV, low two
/// bits clear.
std::uint16_t quantize_voltage(double volts, std::uint8_t hardware_revision);

// ---------------------------------------------------------------------------------------------
// Loss accounting: the 4-bit sequence plus the shared elapsed-time inference (wrap_inference.hpp).

/// A data packet's place in the sample index space, decided by the SampleSequencer.
struct PlacedPacket {
  std::uint64_t first_index = 0;  ///< sample index of the packet's first sample
  std::uint64_t lost_before = 0;  ///< samples presumed lost right before this packet
  bool lost_by_sequence = false;  ///< the sequence counter showed a gap
  /// Part of lost_before placed from elapsed time (16-packet wraps); see WrapPlacement.
  std::uint64_t wrap_lost = 0;
  bool wrap_inferred = false;          ///< wrap_lost is an undecided estimate (an `inferred` gap)
  std::uint64_t wrap_uncertainty = 0;  ///< for an inferred estimate: +- samples
  std::uint32_t tag = 0;               ///< caller's handle for the packet (e.g. a buffer slot)
  std::uint8_t n = 0;                  ///< samples in the packet
};

/// Counters of the sequencer: the elapsed-time inference's plus the sequence counter's.
struct SequenceCounters : WrapCounters {
  std::uint64_t packets = 0;
  std::uint64_t sequence_gaps = 0;  ///< gap events seen by the 4-bit counter
  std::uint64_t sequence_lost = 0;  ///< samples presumed lost from sequence gaps
};

/// Assigns sample indices to data packets. The sequence counter sees gaps of 1..15 packets; a gap
/// of 16 or more wraps it, and fw::WrapInference finds those from elapsed time (one wrap is 16
/// packets of the last seen size; a sequence gap is the counter's evidence of a loss). Packets
/// are released in order through `drain`. Pure and deterministic: the caller passes arrival
/// times and whether the read that brought a packet had to wait for it. Assumes packets carry a
/// constant number of samples (the last seen N is used for lost packets) and that calibration
/// packets do not advance the sample index; a lost calibration packet is counted as N lost
/// samples.
class SampleSequencer {
 public:
  using Config = WrapConfig;
  explicit SampleSequencer(Config cfg) : wrap_(cfg) {}

  /// Every sample packet (data or calibration) goes through here in arrival order so the 4-bit
  /// counter is followed. Only data packets receive indices.
  void push(std::uint8_t seq, bool is_data, std::uint8_t n, std::int64_t arrival_ns,
            std::uint32_t tag, bool caught_up = true);
  /// Releases packets whose placement is final, in order.
  template <typename OnPlaced>
  void drain(OnPlaced&& on_placed);
  /// At the end of a capture: decides held packets with what is known; drain() then releases
  /// everything.
  void finish() { wrap_.finish(); }

  SequenceCounters counters() const;
  /// Index after the last pushed packet (provisional while packets are held).
  std::uint64_t next_index() const { return next_index_ + wrap_.inference().offset(); }
  /// Number of packets held back, waiting for a decision.
  std::size_t held() const { return wrap_.inference().held(); }

 private:
  PacketWrapInference<PlacedPacket> wrap_;
  bool have_seq_ = false;
  std::uint8_t last_seq_ = 0;
  std::uint8_t last_n_ = 0;
  std::uint64_t next_index_ = 0;    ///< index after the last pushed packet, before wraps
  std::uint64_t pending_lost_ = 0;  ///< samples lost (by sequence) before the next data packet
  SequenceCounters seq_counters_;
};

// ---------------------------------------------------------------------------------------------
// Template definitions.

template <typename OnPayload>
void FrameDecoder::feed(std::span<const std::uint8_t> bytes, OnPayload&& on_payload) {
  while (!bytes.empty()) {
    std::size_t take = std::min(bytes.size(), buf_.size() - len_);
    std::copy_n(bytes.begin(), take, buf_.begin() + static_cast<std::ptrdiff_t>(len_));
    len_ += take;
    bytes = bytes.subspan(take);

    std::size_t pos = 0;
    while (pos < len_) {
      auto view = std::span<const std::uint8_t>(buf_.data() + pos, len_ - pos);
      FrameScan s = scan_frame(view);
      if (s.kind == FrameScan::Kind::need_more) break;
      if (s.kind == FrameScan::Kind::frame) {
        if (s.frame_len == 1) {  // L = 0: an empty packet
          ++counters_.empty_frames;
          ++counters_.frames;
          pos += 1;
          continue;
        }
        auto payload = view.subspan(1, s.frame_len - 2);
        if (plausible(payload)) {
          ++counters_.frames;
          on_payload(payload);
          pos += s.frame_len;
          continue;
        }
        ++counters_.implausible;
      } else {
        ++counters_.checksum_errors;
      }
      ++counters_.discarded_bytes;  // resync: drop one byte and look again
      ++pos;
    }
    if (pos > 0) {
      std::copy(buf_.begin() + static_cast<std::ptrdiff_t>(pos),
                buf_.begin() + static_cast<std::ptrdiff_t>(len_), buf_.begin());
      len_ -= pos;
    }
  }
}

template <typename OnPlaced>
void SampleSequencer::drain(OnPlaced&& on_placed) {
  wrap_.drain(on_placed);
}

}  // namespace meltrig::fw::lvpm
