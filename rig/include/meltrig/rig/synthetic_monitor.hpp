// A synthetic monitor: an in-process source behind the Monitor interface (libsigrok's "demo"
// driver), for benchmarks and long-run tests. It replays a pre-generated stream of LVPM-framed
// sample packets through the real LVPM codec (framing, checksum, calibration), at any rate:
// paced by elapsed time x rate on its clock (a VirtualClock makes hours pass in minutes), or
// unpaced, as fast as the pipeline takes it.
#pragma once

#include <vector>

#include "meltrig/fw/clock.hpp"
#include "meltrig/fw/lvpm_protocol.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/rig/registry.hpp"

namespace meltrig::rig {

class SyntheticMonitor final : public Monitor {
 public:
  struct Options {
    double rate_hz = 1'000'000.0;
    bool paced = true;              ///< false: produce as fast as the pipeline takes it
    std::uint64_t max_samples = 0;  ///< stop producing after this many (0 = unlimited)
    std::uint64_t seed = 1;
    const Clock* clock = &SteadyClock::instance();
  };
  explicit SyntheticMonitor(Options opt);

  /// Registry: no ports to find.
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  /// Registry: "synthetic:RATE_HZ[:paced=0|1,samples=N,seed=N]".
  static Result<std::unique_ptr<Monitor>> make(const DeviceSpec& spec);

  Result<MonitorInfo> open() override;
  Result<void> configure(const MonitorConfig& cfg) override;
  Result<void> start() override;
  Result<void> poll(SampleSink& sink, std::chrono::milliseconds timeout) override;
  Result<void> stop(SampleSink& sink) override;
  void close() override {}
  std::vector<Counter> counters() const override;

  /// The wire bytes of one replay cycle (what a raw-write benchmark writes).
  const std::vector<std::uint8_t>& cycle_bytes() const { return cycle_; }
  /// Samples produced so far.
  std::uint64_t produced() const { return produced_; }
  /// Wire bytes decoded so far.
  std::uint64_t bytes_decoded() const { return bytes_; }

 private:
  void decode(std::span<const std::uint8_t> bytes, SampleSink& sink);

  Options opt_;
  std::vector<std::uint8_t> cycle_;  ///< packets whose sequence numbers repeat every cycle
  std::size_t cycle_samples_ = 0;
  std::size_t pos_ = 0;  ///< next byte of the cycle to replay (a frame boundary)
  std::vector<std::size_t> frame_starts_;
  std::size_t next_frame_ = 0;
  fw::lvpm::FrameDecoder decoder_;
  fw::lvpm::Calibrator calibrator_;
  std::int64_t t0_ = 0;
  std::uint64_t produced_ = 0, bytes_ = 0;
  std::array<float, fw::lvpm::kMaxSamplesPerPacket> cur_{}, volt_{};
  bool started_ = false;
};

}  // namespace meltrig::rig
