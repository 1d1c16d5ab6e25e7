// Monsoon HVPM (black, AAA10F) and reflashed LVPM vendor protocol over USB (VID 0x2AB9, PID
// 0x0001): control-transfer encodings, the 64-byte bulk sample packet, calibration maths and
// sample sequencing. Pure code: no I/O, no clocks (times are passed in). Both sides are here: the
// host side for drivers and the device side (request parsing, packet encoding, ADC quantisation)
// for emulators. Facts come from ../shared/PROTOCOLS.md (source: msoon/PyMonsoon); none were
// checked against hardware. Where sources disagree or are silent, the reading chosen is written
// next to the code that depends on it.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::fw::hvpm {

inline constexpr std::uint16_t kVendorId = 0x2AB9;
inline constexpr std::uint16_t kProductId = 0x0001;
/// Bulk-IN endpoint that carries sample packets.
inline constexpr std::uint8_t kBulkInEndpoint = 0x81;
/// Size of one bulk packet on the wire (full-speed maximum packet size).
inline constexpr std::size_t kPacketSize = 64;
inline constexpr std::size_t kHeaderSize = 4;
inline constexpr std::size_t kSampleSize = 18;
inline constexpr std::size_t kMaxSamplesPerPacket = 3;
/// Nominal sample rate (PyMonsoon: 50000 samples = 10 s).
inline constexpr double kNominalRateHz = 5000.0;
/// Default time between the device's calibration samples, in ms (PyMonsoon's default).
inline constexpr std::uint16_t kDefaultCalibrationIntervalMs = 1250;
/// Start argument meaning "no sample limit". PyMonsoon's sample engine defaults to 50000 samples,
/// which silently ends captures after 10 s; meltrig always asks for unlimited.
inline constexpr std::uint32_t kUnlimitedSamples = 0xFFFFFFFF;
/// Output-voltage register scale: raw = volts * 2^20.
inline constexpr double kVoltsToRaw = 1048576.0;
/// Voltage ADC step: 62.5 uV, times 4 for the HVPM main channel, 2 otherwise.
inline constexpr double kAdcVolts = 62.5e-6;

// ---------------------------------------------------------------------------------------------
// Control transfers.

/// bmRequestType of host-to-device (vendor, device) and device-to-host requests.
inline constexpr std::uint8_t kRequestTypeOut = 0x40;
inline constexpr std::uint8_t kRequestTypeIn = 0xC0;

/// bRequest values.
enum class Request : std::uint8_t { value = 0x01, start = 0x02, stop = 0x03, bootloader = 0xFF };

/// Register opcodes for set/get value (low byte of wIndex).
enum class Opcode : std::uint8_t {
  main_fine_resistor_offset = 0x02,    ///< LVPM, int8: ohm = 0.05 + 0.0001 * offset
  usb_fine_resistor_offset = 0x0D,     ///< LVPM, int8
  aux_fine_resistor_offset = 0x0E,     ///< LVPM, int8: ohm = 0.10 + 0.0001 * offset
  usb_passthrough = 0x10,              ///< 0 off, 1 on, 2 auto
  main_coarse_resistor_offset = 0x11,  ///< LVPM, int8
  usb_coarse_resistor_offset = 0x12,   ///< LVPM, int8
  aux_coarse_resistor_offset = 0x13,   ///< LVPM, int8
  main_fine_scale = 0x1A,              ///< HVPM calibration, u32
  main_coarse_scale = 0x1B,
  usb_fine_scale = 0x1C,
  usb_coarse_scale = 0x1D,
  aux_fine_scale = 0x1E,
  aux_coarse_scale = 0x1F,
  voltage_channel = 0x23,  ///< 0 main and USB, 1 main and aux
  main_fine_zero_offset = 0x25,
  main_coarse_zero_offset = 0x26,
  usb_fine_zero_offset = 0x27,
  usb_coarse_zero_offset = 0x28,
  output_voltage = 0x41,          ///< volts * 1048576
  serial_number = 0x42,           ///< read only in practice
  power_up_current_limit = 0x43,  ///< HVPM amps = 15.625 * (1 - raw / 65535)
  runtime_current_limit = 0x44,   ///< LVPM amps = 8 * (1 - raw / 1023)
  hardware_model = 0x45,          ///< 1 LVPM, 2 HVPM
  dac_cal_low = 0x88,
  dac_cal_high = 0x89,
  firmware_version = 0xC0,  ///< read only
  protocol_version = 0xC1,  ///< read only
  start_status = 0xC4,      ///< read only; bit 0x80 = sampling
};

/// Short name of an opcode for messages ("main fine scale (0x1A)").
std::string opcode_name(Opcode op);

/// Which instrument answers: the model register (0x45).
enum class Model : std::uint8_t { unknown = 0, lvpm = 1, hvpm = 2 };

/// USB passthrough modes (opcode 0x10).
enum class UsbPassthrough : std::uint8_t { off = 0, on = 1, automatic = 2 };
/// Voltage channel selection (opcode 0x23).
enum class VoltageChannel : std::uint8_t { main_and_usb = 0, main_and_aux = 1 };

/// One control transfer as it goes on the wire. For OUT transfers `data[0, length)` is the data
/// stage; for IN transfers `length` is how many bytes are asked for.
struct ControlTransfer {
  std::uint8_t request_type = kRequestTypeOut;
  std::uint8_t request = 0;
  std::uint16_t value = 0;  ///< wValue
  std::uint16_t index = 0;  ///< wIndex
  std::array<std::uint8_t, 4> data{};
  std::uint16_t length = 0;

  bool is_in() const { return request_type == kRequestTypeIn; }
  std::span<const std::uint8_t> payload() const { return {data.data(), length}; }
  bool operator==(const ControlTransfer&) const = default;
};

/// Set value: wValue = value bytes 0-1, wIndex = opcode | value byte 2 << 8, data = the 4-byte
/// little-endian value (byte 3 travels only in the data stage).
ControlTransfer set_value(Opcode op, std::uint32_t value);
/// Get value: IN request 0x01, wValue 0, wIndex = opcode, 4 bytes asked for.
ControlTransfer get_value(Opcode op);
/// Start sampling: wValue = calibration interval in ms, data = u32 sample limit, wIndex 0, as
/// PyMonsoon has sent it since February 2018 (before, it sent the start code 0x02 there; no
/// firmware is documented to need either).
ControlTransfer start_sampling(
    std::uint16_t calibration_interval_ms = kDefaultCalibrationIntervalMs,
    std::uint32_t max_samples = kUnlimitedSamples);
/// Stop sampling: request 0x03, no data.
ControlTransfer stop_sampling();
/// Decodes the answer to get_value: a 4-byte little-endian value (protocol_error naming the
/// opcode if the device answered fewer bytes).
Result<std::uint32_t> parse_value_reply(Opcode op, std::span<const std::uint8_t> reply);

/// How wide a register is and whether it is signed: the width the device keeps it at (PyMonsoon
/// reads each register with getValue(op, width[, signed])). Bytes beyond the width in the 4-byte
/// reply are not part of the value and are ignored. Scales, current limits, the serial number,
/// the model and firmware version are 2 bytes unsigned; the HVPM zero offsets 2 bytes SIGNED
/// (real units carry negative offsets); the LVPM resistor offsets 1 byte signed; protocol
/// version, USB passthrough, voltage channel and start status 1 byte unsigned. Registers no
/// public driver reads (output voltage) are taken as 4 bytes unsigned.
struct RegisterFormat {
  std::uint8_t bytes = 4;
  bool is_signed = false;
};
RegisterFormat register_format(Opcode op);
/// The most a zero offset may plausibly be, in ADC counts: real units carry tens of counts; a
/// value beyond this (1/16 of the ADC's range) is an unprogrammed or corrupted EEPROM.
inline constexpr std::int32_t kMaxZeroOffsetCounts = 4096;
/// Decodes a get_value reply at the register's width and signedness (register_format), then
/// rejects values no calibrated device holds: a current scale of 0 or 0xFFFF (blank EEPROM), a
/// zero offset beyond +-kMaxZeroOffsetCounts. protocol_error naming the register otherwise.
Result<std::int32_t> parse_register(Opcode op, std::span<const std::uint8_t> reply);
/// Device side: the 4-byte reply for a register value (little-endian; bytes beyond the
/// register's width carry `pad`, whose content on a real unit is unknown).
std::array<std::uint8_t, 4> register_reply(Opcode op, std::int32_t value, std::uint16_t pad = 0);

/// Output-voltage register value: HVPM 0.8..13.5 V, LVPM 2.01..4.55 V, or 0 = output off;
/// invalid_argument otherwise.
Result<std::uint32_t> output_voltage_raw(double volts, Model model);
double output_voltage_volts(std::uint32_t raw);
/// Current-limit register value: HVPM raw = 65535 * (1 - A / 15.625), 0 < A <= 15.625;
/// LVPM raw = 1023 * (1 - A / 8), 0 < A <= 8. invalid_argument otherwise.
Result<std::uint32_t> current_limit_raw(double amps, Model model);
double current_limit_amps(std::uint32_t raw, Model model);

Result<ControlTransfer> set_output_voltage(double volts, Model model);
/// `which` is Opcode::power_up_current_limit or Opcode::runtime_current_limit.
Result<ControlTransfer> set_current_limit(Opcode which, double amps, Model model);
ControlTransfer set_usb_passthrough(UsbPassthrough mode);
ControlTransfer set_voltage_channel(VoltageChannel channel);

/// A control transfer as the device understands it (device side, for emulators).
struct HostRequest {
  enum class Kind { set_value, get_value, start, stop } kind = Kind::stop;
  Opcode op{};                                ///< set/get value
  std::uint32_t value = 0;                    ///< set value
  std::uint16_t calibration_interval_ms = 0;  ///< start
  std::uint32_t max_samples = 0;              ///< start
};
/// Parses a control transfer; protocol_error (naming the field) for anything else, including a
/// set value whose wValue/wIndex and data stage disagree.
Result<HostRequest> parse_request(std::uint8_t request_type, std::uint8_t request,
                                  std::uint16_t value, std::uint16_t index,
                                  std::span<const std::uint8_t> data);

// ---------------------------------------------------------------------------------------------
// Sample packets.

/// Byte order of the dropped-sample count (packet bytes 0-1). PyMonsoon and ACTS read it
/// little-endian, PyMonsoon's C++ backend big-endian; nobody has settled it against hardware, so
/// it is a setting. Little-endian is the default.
enum class DroppedByteOrder : std::uint8_t { little, big };

/// What a sample is, from mainGain bits 4-5.
enum class SampleKind : std::uint8_t {
  measurement = 0x00,
  zero_cal = 0x10,
  invalid = 0x20,
  ref_cal = 0x30,
};

/// One 18-byte sample, fields as transmitted (big-endian on the wire). The four main/USB current
/// words are unsigned on the HVPM and two's complement on the reflashed LVPM (PyMonsoon unpacks
/// them with 'H' and 'h' respectively): they are kept as raw 16-bit words here.
struct RawSample {
  std::uint16_t main_coarse = 0, main_fine = 0, usb_coarse = 0, usb_fine = 0;
  std::int16_t aux_coarse = 0, aux_fine = 0;
  std::uint16_t main_voltage = 0, usb_voltage = 0;
  std::uint8_t usb_gain = 0, main_gain = 0;

  SampleKind kind() const { return static_cast<SampleKind>(main_gain & 0x30); }
  bool operator==(const RawSample&) const = default;
};

/// Why a packet was rejected.
enum class PacketStatus : std::uint8_t {
  ok,
  too_short,         ///< fewer bytes than the header, or than its sample count needs
  too_many_samples,  ///< byte 3 says more than 3 samples
};

/// The 4-byte header of a packet, plus where the batch decoder put its samples.
struct PacketHeader {
  std::uint16_t dropped = 0;  ///< bytes 0-1: the device's dropped-sample count
  std::uint8_t flags = 0;     ///< byte 2; low nibble = packet counter
  std::uint8_t n = 0;         ///< byte 3: samples in the packet (0..3 when valid)
  PacketStatus status = PacketStatus::ok;
  std::uint32_t first_sample = 0;  ///< batch decoder: offset of the first sample in its output

  std::uint8_t counter() const { return flags & 0x0F; }
};

/// Decodes one packet of 4..64 bytes (the device sends 64; a short USB packet is accepted if it
/// holds all the samples its header announces). Writes the header and, when valid, header.n
/// samples. Never reads past `packet`; allocates nothing.
PacketStatus decode_packet(std::span<const std::uint8_t> packet, DroppedByteOrder order,
                           PacketHeader& header, std::span<RawSample, kMaxSamplesPerPacket> out);

/// One packet decoded by parse_packet: its header and header.n samples.
struct DecodedPacket {
  PacketHeader header;
  std::array<RawSample, kMaxSamplesPerPacket> samples{};
};
/// decode_packet with an error message, for tools, logs and tests: protocol_error naming
/// `position` (e.g. "packet 12") and the offending byte.
Result<DecodedPacket> parse_packet(std::span<const std::uint8_t> packet, DroppedByteOrder order,
                                   const std::string& position = "packet");

/// What decode_batch did.
struct BatchResult {
  std::size_t packets = 0;          ///< headers written
  std::size_t samples = 0;          ///< samples written
  std::size_t invalid_packets = 0;  ///< of `packets`, how many were rejected
  std::size_t bytes_consumed = 0;   ///< input bytes covered by `packets`
};
/// Decodes back-to-back packets: `bytes` is cut into 64-byte packets (the last one may be
/// short, as a USB transfer ends with a short packet). Headers go to `headers` (invalid ones too,
/// with their status), samples of valid packets to `samples`, each packet's at
/// header.first_sample. Stops early when either output is full (bytes_consumed says where).
/// The hot path of a capture: no allocation, no branches per sample beyond the loop.
BatchResult decode_batch(std::span<const std::uint8_t> bytes, DroppedByteOrder order,
                         std::span<PacketHeader> headers, std::span<RawSample> samples);

/// Encodes a packet (device side): header bytes 0-3, the samples, zero padding to 64 bytes.
void encode_packet(std::uint16_t dropped, std::uint8_t flags, std::span<const RawSample> samples,
                   DroppedByteOrder order, std::span<std::uint8_t, kPacketSize> out);

// ---------------------------------------------------------------------------------------------
// Calibration.

/// Calibration of one current channel (main or USB) in the units PyMonsoon uses: `*_scale` is
/// the current at the reference point (coarse in mA, fine in uA), `*_zero_offset` the EEPROM zero
/// offset in ADC counts that is added to the measured zero level.
struct ChannelScales {
  double fine_scale = 0, coarse_scale = 0;
  double fine_zero_offset = 0, coarse_zero_offset = 0;
};

/// Everything the converter needs to know about the instrument.
struct DeviceCalibration {
  Model model = Model::hvpm;
  ChannelScales main, usb;
};

/// The reflashed LVPM keeps no scales: they follow from its sense resistors (PyMonsoon LVPM.py).
/// ohm = 0.05 + 0.0001 * offset (offset is the int8 resistor-offset register).
double lvpm_resistor_ohm(std::int8_t offset);
/// Fine scale 35946 * (0.05 / R), coarse 3103.4 * (0.05 / R).
double lvpm_fine_scale(double ohm);
double lvpm_coarse_scale(double ohm);

/// Raw fine reading at or above which the fine range is saturated and coarse is used:
/// 64000 (HVPM, unsigned words) or 30000 (LVPM, signed words).
double fine_threshold(Model model);
/// Volts per count of the main-channel voltage word: 62.5 uV * 4 (HVPM) or * 2 (LVPM).
double main_volts_per_count(Model model);
/// Volts per count of the USB voltage word: 62.5 uV * 2.
double usb_volts_per_count(Model model);

/// Calibration in effect for one channel, in raw counts: `*_zero` includes the EEPROM offset.
struct ChannelCal {
  double fine_zero = 0, fine_ref = 0, coarse_zero = 0, coarse_ref = 0;
};

/// Keeps the running calibration and converts raw samples. Each of fine/coarse zero/ref of the
/// main and USB channels is the mean of the last 5 calibration readings seen (PyMonsoon's rolling
/// window). zero = EEPROM zero offset + that mean; slope = scale / (ref - zero);
/// I = (raw - zero) * slope in mA (fine: / 1000 more). A channel converts once each of its four
/// values has at least one reading; calibrated() says when every window of main, USB and aux is
/// full, the point from which PyMonsoon converts and drivers should too. Words that read exactly
/// 0 in a calibration sample are skipped, as PyMonsoon does (it treats them as "not measured").
/// The aux words are only counted (nothing converts aux). A degenerate calibration (ref == zero)
/// converts to NaN rather than infinity.
class Calibrator {
 public:
  static constexpr std::size_t kWindow = 5;

  explicit Calibrator(DeviceCalibration device);

  /// Takes a zero- or ref-calibration sample; other kinds are ignored.
  void add(const RawSample& s);
  bool main_ready() const;
  bool usb_ready() const;
  /// Every zero and ref window of main, USB and aux (fine and coarse) holds kWindow readings.
  bool calibrated() const;
  /// The windows still short of kWindow readings, e.g. "aux fine zero 0/5", for messages; empty
  /// when calibrated().
  std::string missing_readings() const;
  ChannelCal main() const;
  ChannelCal usb() const;
  /// Bumps each time the calibration values change.
  std::uint64_t generation() const { return generation_; }
  const DeviceCalibration& device() const { return dev_; }

  double main_amps(const RawSample& s) const;
  double usb_amps(const RawSample& s) const;
  double main_volts(const RawSample& s) const;
  double usb_volts(const RawSample& s) const;

  /// Converts measurement samples into amps and volts (every span at least in.size() long; an
  /// empty span skips that output). A channel that is not calibrated yet gives NaN. The hot
  /// path: precomputed constants, no allocation.
  void convert(std::span<const RawSample> in, std::span<float> main_amps,
               std::span<float> main_volts, std::span<float> usb_amps) const;

 private:
  struct Window {
    std::array<double, kWindow> v{};
    std::size_t count = 0, next = 0;
    void push(double x);
    double mean() const;
  };
  /// Precomputed conversion of one channel: amps = (raw - zero) * k.
  struct Linear {
    double fine_zero = 0, fine_k = 0, coarse_zero = 0, coarse_k = 0;
    bool ready = false;
  };
  static Linear linear(const ChannelCal& c, const ChannelScales& s, bool ready);
  double amps(const Linear& l, std::uint16_t fine, std::uint16_t coarse) const;
  double word(std::uint16_t w) const;  ///< a current word as a number, per the model's signedness
  void recompute();

  DeviceCalibration dev_;
  bool signed_words_ = false;
  double threshold_ = 64000;
  double main_vk_ = 0, usb_vk_ = 0;
  // main fine zero/ref, main coarse zero/ref, usb fine zero/ref, usb coarse zero/ref, aux ditto
  std::array<Window, 12> w_{};
  Linear main_, usb_;
  std::uint64_t generation_ = 0;
};

/// The ADC of one current channel as an emulator models it: what zero- and ref-calibration
/// samples read (counts), and the EEPROM scales and zero offsets that go with them.
struct ChannelAdc {
  double fine_zero_cal = 150, fine_ref_cal = 30250;      ///< raw fine readings at zero and ref
  double coarse_zero_cal = 120, coarse_ref_cal = 30200;  ///< raw coarse readings at zero and ref
  ChannelScales scales{35946, 3103, 100, 80};
  /// The calibration a converter reaches with noise-free calibration samples.
  ChannelCal cal() const;
};

/// Encodes a current (amps) into the fine and coarse words as the ADC would: rounded to counts,
/// clamped to the word's range (the fine word saturates above its range, so the converter falls
/// back to coarse). Returns {fine, coarse}.
std::array<std::uint16_t, 2> quantize_current(double amps, const ChannelAdc& adc, Model model);
/// Encodes a voltage into a main- or USB-voltage word (rounded, clamped to 0..65535).
std::uint16_t quantize_volts(double volts, double volts_per_count);

// ---------------------------------------------------------------------------------------------
// Loss accounting: the 4-bit packet counter, the device's dropped-sample count, and a
// cross-check of sample count against elapsed time for counter wraps.

/// A packet's place in the sample index space, decided by the SampleSequencer.
struct PlacedPacket {
  std::uint64_t first_index = 0;     ///< sample index of the packet's first slot
  std::uint64_t lost_before = 0;     ///< samples missing right before it (sum of the three below)
  std::uint64_t counter_lost = 0;    ///< from gaps of the packet counter
  std::uint64_t device_dropped = 0;  ///< from the device's dropped-sample count
  std::uint64_t wrap_lost = 0;       ///< inferred from elapsed time (16-packet counter wraps)
  std::uint32_t tag = 0;             ///< the caller's handle for the packet
  std::uint8_t slots = 0;            ///< sample slots the packet fills
};

/// Counters of the sequencer.
struct SequenceCounters {
  std::uint64_t packets = 0;
  std::uint64_t counter_gaps = 0;     ///< gap events seen by the 4-bit counter
  std::uint64_t counter_lost = 0;     ///< samples presumed lost in those
  std::uint64_t device_dropped = 0;   ///< samples the device reported it could not deliver
  std::uint64_t wrap_gaps = 0;        ///< gaps of 16+ packets found from elapsed time
  std::uint64_t wrap_lost = 0;        ///< samples lost in those
  std::uint64_t stalls_absorbed = 0;  ///< late bursts that turned out to be host stalls
  /// Dropped-count increases that would put samples ahead of the clock (a wrong byte order or a
  /// per-packet rather than cumulative count would do that): ignored, counted here.
  std::uint64_t dropped_implausible = 0;
};

/// Assigns sample indices to packets. Three sources of loss, added up before each packet:
/// - the device's dropped-sample count (bytes 0-1), read as a cumulative 16-bit count since
///   start (PyMonsoon shows the latest value as the running total): its increase is the number
///   of samples the device produced but could not deliver. They are taken to have left no packet
///   behind, so the counter does not see them. An increase that would place samples in the
///   future (ahead of elapsed time x rate) is implausible and ignored (and counted).
/// - gaps of the 4-bit packet counter: packets that left the device and never arrived; each is
///   counted as the nominal samples per packet (the most seen in one packet so far).
/// - counter wraps (16 or more packets lost): invisible to the counter, found as LVPM's
///   SampleSequencer finds them: residual = elapsed * rate - end_index; its sliding minimum is
///   the latency floor; a packet more than half a wrap above the floor is held until later
///   packets come back down (a host stall: no loss) or it stays up for `settle_ns` (whole wraps
///   lost: the held packets move up by that many samples).
/// Calibration samples occupy no slot (packets of calibration samples only have slots = 0 and are
/// followed for the counter and the dropped count); invalid samples (type 0x20) do occupy their
/// slot. Known limit: a lost packet that held calibration samples is counted as a full packet of
/// missing samples. Pure and deterministic: the caller passes arrival times (host steady clock).
class SampleSequencer {
 public:
  /// Rates and time constants of the sequencer.
  struct Config {
    double rate_hz = kNominalRateHz;
    std::int64_t settle_ns = 1'000'000'000;        ///< how long an elevated residual must persist
    std::int64_t floor_window_ns = 3'000'000'000;  ///< sliding window of the latency floor
    double wrap_threshold = 0.75;                  ///< fraction of a wrap that counts as one
    /// Infer counter wraps from elapsed time. Off for runs on an accelerated virtual clock,
    /// where host jitter times the speed-up exceeds a wrap's duration.
    bool infer_wraps = true;
    /// Samples per packet assumed for lost packets until a packet has shown the real number.
    std::uint8_t nominal_slots = kMaxSamplesPerPacket;
  };
  explicit SampleSequencer(Config cfg) : cfg_(cfg) {}

  /// When sampling was started (host steady clock): bounds what the first dropped count can be.
  void begin(std::int64_t start_ns);
  /// Every valid packet, in arrival order; only packets with slots > 0 receive indices.
  void push(std::uint8_t counter, std::uint16_t dropped, std::uint8_t slots,
            std::int64_t arrival_ns, std::uint32_t tag);
  /// Releases packets whose placement is final, in order.
  template <typename OnPlaced>
  void drain(OnPlaced&& on_placed);
  /// At the end of a capture: decides held packets with what is known; drain() then releases all.
  void finish() { decide(true); }

  const SequenceCounters& counters() const { return counters_; }
  /// Index after the last pushed packet (provisional while packets are held).
  std::uint64_t next_index() const { return next_index_; }
  std::size_t held() const { return held_.size(); }
  /// Samples per packet assumed for a lost packet.
  std::uint8_t nominal_slots() const { return max_slots_ ? max_slots_ : cfg_.nominal_slots; }

 private:
  struct Held {
    PlacedPacket p;
    std::int64_t arrival_ns;
    double residual;
  };
  double residual(std::uint64_t end_index, std::int64_t arrival_ns) const;
  double wrap_samples() const { return 16.0 * std::max<std::uint8_t>(nominal_slots(), 1); }
  bool dropped_plausible(std::uint64_t end_index, std::int64_t arrival_ns) const;
  void decide(bool at_end);
  void commit_front(std::size_t count, std::uint64_t shift);
  void floor_push(std::int64_t t, double r);
  double floor() const;

  Config cfg_;
  bool have_start_ = false;
  std::int64_t start_ns_ = 0;
  bool have_counter_ = false;
  std::uint8_t last_counter_ = 0;
  bool have_dropped_ = false;
  std::uint16_t last_dropped_ = 0;
  std::uint8_t max_slots_ = 0;
  bool have_t0_ = false;
  std::int64_t t0_ = 0;
  std::uint64_t next_index_ = 0;
  std::uint64_t pending_counter_lost_ = 0;
  std::uint64_t pending_device_dropped_ = 0;
  std::vector<Held> held_;
  std::vector<PlacedPacket> ready_;
  std::vector<std::pair<std::int64_t, double>> floor_q_;  ///< monotone deque for the sliding min
  std::size_t floor_head_ = 0;
  SequenceCounters counters_;
};

template <typename OnPlaced>
void SampleSequencer::drain(OnPlaced&& on_placed) {
  for (const auto& p : ready_)
    on_placed(p);
  ready_.clear();
}

}  // namespace meltrig::fw::hvpm
