// The small interface every power-monitor driver implements: a lifecycle (open, configure,
// start, poll, stop, close), status, and loss counters. Drivers push decoded samples, addressed
// by their unwrapped sample index, into a SampleSink; they never stamp samples with host time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "meltrig/dataset/dataset_types.hpp"
#include "meltrig/fw/clock.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/fw/wrap_inference.hpp"

namespace meltrig::rig {

// The sample and metadata vocabulary drivers speak is the dataset's (one declaration, in
// meltrig/dataset/dataset_types.hpp); drivers name it unqualified through these.
using dataset::Attribute;
using dataset::ChannelData;
using dataset::ChannelSpec;
using dataset::GapKind;
using dataset::SampleType;

/// A run of sample indices with no valid data.
struct GapEvent {
  std::uint64_t first_index;
  std::uint64_t count;
  GapKind kind;
};

/// Calibration in effect from `sample_index` on (raw ADC counts).
struct CalibrationEvent {
  std::uint64_t sample_index;
  double fine_zero, fine_ref, coarse_zero, coarse_ref;
};

/// Receives decoded data from a driver, on the driver's I/O thread.
class SampleSink {
 public:
  virtual ~SampleSink() = default;
  /// Contiguous samples starting at `first_index`: one span per channel in MonitorInfo::channels
  /// order, all the same length (NaN in float channels where a value is missing).
  virtual void samples(std::uint64_t first_index, std::span<const ChannelData> columns) = 0;
  virtual void gap(const GapEvent& g) = 0;
  virtual void calibration(const CalibrationEvent& c) = 0;
};

/// What a driver knows about the opened device.
struct MonitorInfo {
  std::string driver;  ///< e.g. "lvpm"
  std::string port;    ///< the port or device spec it was opened on
  double nominal_rate_hz = 0;
  std::string serial_number;
  std::string firmware_version;
  std::vector<Attribute> status;      ///< the device status as read at open
  std::vector<ChannelSpec> channels;  ///< what SampleSink::samples() delivers, in order
  int current_channel = 0;            ///< float channel in amps used for power
  int voltage_channel = 1;            ///< float channel in volts, or -1: use fixed_voltage_v
  double fixed_voltage_v = 0.0;       ///< supply voltage when no voltage channel is sampled
  /// The source can wait for the writer (a replay, an unpaced synthetic source); a live
  /// instrument cannot, so its captures drop and count on a full ring instead.
  bool can_wait = false;
};

/// Settings applied before sampling starts.
struct MonitorConfig {
  double output_voltage_v = 4.0;
  std::optional<double> current_limit_a;  ///< runtime and power-up limit
  enum class UsbPassthrough { off, on, automatic } usb_passthrough = UsbPassthrough::off;
};

/// The settings every port-attached driver takes (each driver's Options adds its own).
struct PortOptions {
  std::string port;                            ///< the port or device spec to open
  std::chrono::milliseconds io_timeout{1000};  ///< one command's reply
  const Clock* clock = &SteadyClock::instance();
};

/// A named counter of lost or discarded data.
struct Counter {
  const char* name;
  std::uint64_t value;
};

/// The elapsed-time wrap inference's counters, named alike for every driver that uses it.
inline void append_wrap_counters(std::vector<Counter>& out, const fw::WrapCounters& w) {
  out.insert(out.end(),
             {{"wrap_gaps", w.wrap_gaps},
              {"wrap_lost_samples", w.wrap_lost},
              {"inferred_gaps", w.inferred_gaps},
              {"inferred_lost_samples", w.inferred_lost},
              {"inferred_uncertainty_samples", w.inferred_uncertainty},
              {"stalls_absorbed", w.stalls_absorbed},
              {"longest_hold_ms", static_cast<std::uint64_t>(w.longest_hold_ns / 1'000'000)}});
}

/// A power monitor. Not thread-safe: one I/O thread drives it after open().
class Monitor {
 public:
  virtual ~Monitor() = default;
  virtual Result<MonitorInfo> open() = 0;
  virtual Result<void> configure(const MonitorConfig& cfg) = 0;
  virtual Result<void> start() = 0;
  /// Reads and decodes for up to `timeout`, pushing whatever is final into `sink`. A quiet
  /// interval is not an error; port_gone and io_error are. A finite source returns
  /// `end_of_stream` (message: what it delivered) once it has delivered everything: the capture
  /// then ends normally (complete). `cancelled` means a stop was requested (the capture ends as
  /// interrupted); it never stands for "the source finished".
  virtual Result<void> poll(SampleSink& sink, std::chrono::milliseconds timeout) = 0;
  /// Stops sampling, reads what is still in flight, and releases every held sample to `sink`.
  virtual Result<void> stop(SampleSink& sink) = 0;
  virtual void close() = 0;
  /// The loss counters, in a fixed order (names do not change during a capture).
  virtual std::vector<Counter> counters() const = 0;
};

/// A quiet read is not an error: `r` with a timeout turned into success.
inline Result<void> quiet_is_ok(Result<void> r) {
  if (!r && r.error().code != Errc::timeout) return r;
  return {};
}

/// What a driver's stop() does after its stop command: `read(timeout)` until the line is quiet for
/// 200 ms (at most 3 s of `clock`), so what was in flight reaches the sink. A quiet read ends it;
/// any other error is returned.
template <typename Read>
Result<void> drain_in_flight(const Clock& clock, Read read) {
  const std::int64_t limit = clock.now_ns() + 3'000'000'000;
  while (clock.now_ns() < limit) {
    auto r = read(std::chrono::milliseconds(200));
    if (!r) return quiet_is_ok(std::move(r));
  }
  return {};
}

}  // namespace meltrig::rig
