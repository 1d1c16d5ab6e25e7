// Driver for the Monsoon LVPM (white unit, serial protocol) behind the Monitor interface.
#pragma once

#include <deque>
#include <string>

#include "meltrig/fw/clock.hpp"
#include "meltrig/fw/lvpm_protocol.hpp"
#include "meltrig/fw/serial_port.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/rig/registry.hpp"

namespace meltrig::rig {

/// LVPM driver. Sample indices come from the packet stream: the 4-bit sequence counter plus a
/// cross-check of sample count against elapsed time (fw::lvpm::SampleSequencer). Data packets
/// that arrive before calibration is known are kept raw (up to `max_uncalibrated_packets`) and
/// converted once it is; beyond that they become an "uncalibrated" gap.
class LvpmMonitor final : public Monitor {
 public:
  struct Options : PortOptions {
    std::size_t max_uncalibrated_packets = 5000;
    fw::lvpm::SampleSequencer::Config sequencer{};
  };
  explicit LvpmMonitor(Options opt);

  /// Registry: USB serial ports whose product string is the LVPM's.
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  /// Registry: "lvpm:PORT" (no options).
  static Result<std::unique_ptr<Monitor>> make(const DeviceSpec& spec);

  Result<MonitorInfo> open() override;
  Result<void> configure(const MonitorConfig& cfg) override;
  Result<void> start() override;
  Result<void> poll(SampleSink& sink, std::chrono::milliseconds timeout) override;
  Result<void> stop(SampleSink& sink) override;
  void close() override;
  std::vector<Counter> counters() const override;

  /// The last status packet read.
  const fw::lvpm::Status& status() const { return status_; }

 private:
  Result<fw::lvpm::Status> read_status();
  Result<void> send(const std::vector<std::uint8_t>& bytes);
  void on_payload(std::span<const std::uint8_t> payload, std::int64_t arrival_ns, bool caught_up);
  Result<void> read_into_sequencer(SampleSink& sink, std::chrono::milliseconds timeout);
  void release(SampleSink& sink);
  void emit(SampleSink& sink, const fw::lvpm::PlacedPacket& placed,
            const fw::lvpm::SamplePacket& p);

  Options opt_;
  std::optional<fw::SerialPort> port_;
  fw::lvpm::FrameDecoder decoder_;
  fw::lvpm::Calibrator calibrator_;
  std::optional<fw::lvpm::SampleSequencer> sequencer_;
  fw::lvpm::Status status_;
  bool have_status_ = false;
  std::deque<fw::lvpm::SamplePacket> packets_;  ///< data packets waiting for placement, by tag
  std::uint32_t next_tag_ = 0;
  std::uint32_t front_tag_ = 0;
  std::deque<std::pair<fw::lvpm::PlacedPacket, fw::lvpm::SamplePacket>> uncalibrated_;
  std::uint64_t cal_generation_emitted_ = 0;
  std::uint64_t uncalibrated_samples_ = 0;
  std::uint64_t voltage_clipped_samples_ = 0;  ///< voltage word at full scale
  std::uint64_t unexpected_packets_ = 0;
  // The last data packet's bytes: a repeat with the same sequence number is a duplicate.
  std::array<std::uint8_t, fw::lvpm::kMaxPayload> last_data_{};
  std::size_t last_data_len_ = 0;
  std::uint64_t duplicate_samples_ = 0;
  std::vector<GapEvent> pending_duplicates_;
  std::array<float, fw::lvpm::kMaxSamplesPerPacket> cur_{}, volt_{};
};

}  // namespace meltrig::rig
