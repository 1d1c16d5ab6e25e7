// Driver for the Nordic Power Profiler Kit II (serial protocol) behind the Monitor interface.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "meltrig/fw/clock.hpp"
#include "meltrig/fw/ppk2_protocol.hpp"
#include "meltrig/fw/serial_port.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/rig/registry.hpp"

namespace meltrig::rig {

/// PPK2 driver: source-meter mode, 100 kS/s, channels "current" (f32, A) and "logic" (u8, bit n =
/// input Dn). Sample indices come from the 6-bit counter in every word (fw::ppk2::StreamDecoder)
/// plus the shared elapsed-time inference for losses that wrap it (fw::WrapInference with
/// fw::ppk2::wrap_config()); each read is one chunk, held back while the inference is undecided
/// (up to `wrap.horizon_ns` of data, bounded by `wrap.max_held_s`).
///
/// Voltage: the PPK2 samples no voltage, so MonitorInfo::fixed_voltage_v is the source voltage.
/// open() must report it before configure() sets it: it reports the "VDD" the device lists in its
/// metadata if it does, else Options::source_voltage_v. configure() then sets the requested
/// voltage and, when the metadata lists VDD, reads it back.
class Ppk2Monitor final : public Monitor {
 public:
  /// Driver settings.
  struct Options : PortOptions {
    double source_voltage_v = 4.0;  ///< reported by open() when the metadata has no VDD
    fw::WrapConfig wrap = fw::ppk2::wrap_config();
  };
  explicit Ppk2Monitor(Options opt);

  /// Registry: USB serial ports with the PPK2's VID:PID (1915:C00A), or whose product string or
  /// description contains "PPK2".
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  /// Registry: "ppk2:PORT" (no options).
  static Result<std::unique_ptr<Monitor>> make(const DeviceSpec& spec);

  Result<MonitorInfo> open() override;
  /// Source mode, source voltage = cfg.output_voltage_v (0.8..5.0 V), DUT power on. A current
  /// limit or USB passthrough other than off is unsupported (the PPK2 has neither).
  Result<void> configure(const MonitorConfig& cfg) override;
  Result<void> start() override;
  Result<void> poll(SampleSink& sink, std::chrono::milliseconds timeout) override;
  /// Stops streaming (DUT power stays as configured), reads what is in flight and releases all.
  Result<void> stop(SampleSink& sink) override;
  void close() override;
  std::vector<Counter> counters() const override;

  /// The metadata read at open().
  const fw::ppk2::Metadata& metadata() const { return metadata_; }

 private:
  /// One decoded piece of a chunk, in provisional (decoder) indices.
  struct Item {
    enum class Kind : std::uint8_t { run, missing, duplicate } kind;
    std::uint64_t index;
    std::uint64_t count;
    std::size_t data = 0;  ///< for runs: offset into the chunk's sample storage
  };
  /// The samples and events of one read, waiting for the elapsed-time check.
  struct Chunk {
    std::uint64_t end = 0;  ///< provisional index after the chunk
    std::vector<float> amps;
    std::vector<std::uint8_t> logic;
    std::vector<Item> items;
  };

  Result<fw::ppk2::Metadata> read_metadata();
  Result<void> send(const std::vector<std::uint8_t>& bytes);
  Result<void> read_into_chunk(SampleSink& sink, std::chrono::milliseconds timeout);
  void decode(std::span<const std::uint8_t> bytes, std::int64_t arrival_ns, bool at_end,
              bool caught_up);
  void release(SampleSink& sink);
  void emit(SampleSink& sink, const Chunk& c, const fw::WrapPlacement& placed);

  Options opt_;
  std::optional<fw::SerialPort> port_;
  fw::ppk2::Metadata metadata_;
  bool have_metadata_ = false;
  double source_v_ = 0;
  std::optional<fw::ppk2::StreamDecoder> decoder_;
  std::optional<fw::WrapInference> wrap_;
  std::deque<Chunk> chunks_;  ///< waiting for placement; front has tag front_tag_
  std::vector<Chunk> spare_;  ///< storage of released chunks, reused
  std::uint32_t next_tag_ = 0, front_tag_ = 0;
  std::int64_t last_arrival_ns_ = 0;
  std::vector<std::uint8_t> read_buf_;
  std::array<float, 4096> amps_buf_{};
  std::array<std::uint8_t, 4096> logic_buf_{};
  std::uint64_t metadata_discarded_bytes_ = 0;
};

}  // namespace meltrig::rig
