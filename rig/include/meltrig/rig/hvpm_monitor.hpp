// Driver for the Monsoon HVPM (and the reflashed LVPM, which speaks the same USB protocol)
// behind the Monitor interface, over any fw::UsbBulkTransport: libusb for real devices, the
// in-process emulator in tests.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "meltrig/fw/clock.hpp"
#include "meltrig/fw/hvpm_protocol.hpp"
#include "meltrig/fw/usb_bulk.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/rig/registry.hpp"

namespace meltrig::rig {

/// HVPM / reflashed-LVPM driver. Channels: "current" (main, A), "voltage" (main, V) and
/// "usb_current" (A). Sample indices come from fw::hvpm::SampleSequencer: the device's
/// dropped-sample count and the 4-bit packet counter become `missing` gaps, counter wraps found
/// from elapsed time `missing_wrapped` gaps, repeated packets `duplicate_dropped` rows, and
/// samples the device flags invalid `missing` rows at their own index. EEPROM registers are read
/// at their width and signedness (zero offsets signed 16-bit) and range-checked. As PyMonsoon,
/// no sample converts before every calibration window (zero and ref, fine and coarse, of main,
/// USB and aux) holds 5 readings: measurement samples that arrive before that are an
/// `uncalibrated` gap.
class HvpmMonitor final : public Monitor {
 public:
  /// Driver settings; the defaults suit a real device.
  /// `port` is how the device was named (recorded as MonitorInfo::port), "usb" by default.
  struct Options : PortOptions {
    Options() { port = "usb"; }
    std::uint16_t calibration_interval_ms = fw::hvpm::kDefaultCalibrationIntervalMs;
    fw::hvpm::DroppedByteOrder dropped_byte_order = fw::hvpm::DroppedByteOrder::little;
    /// Packets asked for per bulk read. One keeps each packet's arrival time its own, which is
    /// what the elapsed-time wrap check needs to place a loss precisely.
    std::size_t packets_per_read = 1;
    fw::hvpm::SampleSequencer::Config sequencer{};
  };
  explicit HvpmMonitor(std::unique_ptr<fw::UsbBulkTransport> transport);
  HvpmMonitor(std::unique_ptr<fw::UsbBulkTransport> transport, Options opt);

  /// Registry: enumerates USB devices 2ab9:0001 (serial ports are not this driver's; ignored).
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  /// Registry: "hvpm:usb" (the first device) or "hvpm:usb:serial=NNN"; further options
  /// dropped_order=le|be and cal_ms=1..65535. Opens the device with libusb. "hvpm:emulated" (or
  /// "hvpm:emulated:key=value,...", also written "hvpm:emulated,key=value,...") drives the
  /// in-process emulator made by the installed EmulatorFactory, which takes the options.
  static Result<std::unique_ptr<Monitor>> make(const DeviceSpec& spec);

  /// Makes the transport behind "hvpm:emulated" from the spec's options (invalid_argument naming
  /// a bad option). The emulator lives in the fixtures library, which this one does not link: a
  /// program that offers emulated monitors (the CLI, the tests) installs the factory at start.
  using EmulatorFactory = Result<std::unique_ptr<fw::UsbBulkTransport>> (*)(
      std::span<const std::pair<std::string, std::string>> options);
  static void set_emulator_factory(EmulatorFactory factory);

  Result<MonitorInfo> open() override;
  Result<void> configure(const MonitorConfig& cfg) override;
  Result<void> start() override;
  Result<void> poll(SampleSink& sink, std::chrono::milliseconds timeout) override;
  Result<void> stop(SampleSink& sink) override;
  void close() override;
  std::vector<Counter> counters() const override;

  /// The model the device reported at open().
  fw::hvpm::Model model() const { return model_; }
  /// The calibration constants read at open().
  const fw::hvpm::DeviceCalibration& device_calibration() const { return device_; }

 private:
  /// A packet's sample slots, waiting for the sequencer to place them.
  struct Slots {
    std::array<fw::hvpm::RawSample, fw::hvpm::kMaxSamplesPerPacket> s{};
    std::uint8_t n = 0;
    bool calibrated = false;  ///< the calibration was complete when the packet arrived
  };

  static Result<std::unique_ptr<Monitor>> make_emulated(const DeviceSpec& spec);
  /// A register at its width and signedness, range-checked (fw::hvpm::parse_register).
  Result<std::int32_t> get(fw::hvpm::Opcode op);
  /// Reads the model's calibration registers into device_ (and aux scales / resistor offsets).
  Result<void> read_calibration();
  std::vector<Attribute> calibration_status(std::int32_t serial, std::int32_t firmware) const;
  /// Appends the registers a device may refuse (protocol version, limits, ...) to `status`.
  Result<void> read_informational(std::vector<Attribute>& status);
  void note_uncalibrated(std::uint64_t n);
  Result<void> send(const fw::hvpm::ControlTransfer& t);
  Result<std::size_t> read_bulk(std::chrono::milliseconds timeout);
  void on_packet(std::span<const std::uint8_t> packet, std::int64_t arrival_ns, bool caught_up);
  Result<void> read_into_sequencer(SampleSink& sink, std::chrono::milliseconds timeout);
  void release(SampleSink& sink);
  void emit(SampleSink& sink, std::uint64_t first_index, const Slots& slots);
  std::string where() const;

  std::unique_ptr<fw::UsbBulkTransport> transport_;
  Options opt_;
  fw::hvpm::Model model_ = fw::hvpm::Model::unknown;
  fw::hvpm::DeviceCalibration device_;
  std::optional<fw::hvpm::Calibrator> calibrator_;
  std::optional<fw::hvpm::SampleSequencer> sequencer_;
  bool opened_ = false;
  std::vector<std::uint8_t> buf_;
  std::deque<Slots> waiting_;  ///< packets pushed to the sequencer, by tag
  std::uint32_t next_tag_ = 0;
  std::array<double, 2> aux_scales_{};             ///< HVPM: aux fine, coarse scale (recorded only)
  std::array<std::int8_t, 6> resistor_offsets_{};  ///< LVPM: main, USB, aux (fine, coarse)
  std::uint64_t cal_generation_emitted_ = 0;
  std::array<std::uint8_t, fw::hvpm::kPacketSize> last_packet_{};
  std::size_t last_packet_len_ = 0;
  std::vector<GapEvent> pending_duplicates_;
  std::uint64_t packets_read_ = 0;
  // Counters.
  std::uint64_t invalid_packets_ = 0;
  std::uint64_t invalid_samples_ = 0;
  std::uint64_t duplicate_samples_ = 0;
  std::uint64_t uncalibrated_samples_ = 0;
  std::array<float, fw::hvpm::kMaxSamplesPerPacket> cur_{}, volt_{}, usb_{};
};

}  // namespace meltrig::rig
