// A capture: one monitor's samples into one HDF5 file. A reader thread drives the monitor and
// feeds a bounded ring; a writer thread drains it into the CaptureWriter and flushes at least
// every `flush_interval`; the calling thread supervises (duration, interrupt, live status).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/fw/clock.hpp"
#include "meltrig/rig/monitor.hpp"

namespace meltrig::rig {

/// Samples per ring slot.
inline constexpr std::size_t kBlockSamples = 4096;

/// Live figures for a status line.
struct CaptureProgress {
  double elapsed_s = 0;
  std::uint64_t samples = 0;       ///< sample indices covered so far (including missing)
  double rate_hz = 0;              ///< samples per second of host time
  double mean_power_w = 0;         ///< over valid samples so far
  std::uint64_t lost_samples = 0;  ///< missing + ring overflow
};

/// How to run a capture.
struct CaptureOptions {
  std::filesystem::path output;
  double duration_s = 10.0;  ///< <= 0: until interrupted
  MonitorConfig monitor;
  std::size_t ring_blocks = 256;  ///< ring size in slots of kBlockSamples
  /// Overflow policy. false (live instruments, which cannot be paused): a full ring drops the
  /// newest samples and records them as a ring_overflow gap. true (finite offline sources such
  /// as replays and the unpaced synthetic source): the reader waits for the writer instead.
  /// A monitor that says MonitorInfo::can_wait gets the waiting policy either way.
  bool wait_when_full = false;
  std::chrono::milliseconds flush_interval{500};
  /// Compression of the file; unset: shuffle+deflate-1 below 1 Msps (readable everywhere),
  /// shuffle+lz4 from 1 Msps (deflate cannot keep up there; readers need the LZ4 plugin).
  std::optional<dataset::Compression> compression;
  std::chrono::milliseconds progress_interval{500};
  const std::atomic<bool>* interrupt = nullptr;  ///< set (e.g. by SIGINT) to stop cleanly
  /// Set to end the capture as complete: what it records is over (e.g. `meltrig run` once the
  /// runner and the idle tail are done). Ends it like the duration does.
  const std::atomic<bool>* finish = nullptr;
  std::function<void(const CaptureProgress&)> on_progress;
  std::vector<Attribute> root_attributes;  ///< extra root attributes (e.g. the command line)
  const Clock* clock = &SteadyClock::instance();
};

/// What a capture did. Present whenever the output file was created, even if the capture failed.
struct CaptureSummary {
  std::filesystem::path output;
  dataset::CaptureState state = dataset::CaptureState::running;
  std::string end_reason;
  std::optional<Error> failure;  ///< set when state == failed
  std::uint64_t samples = 0;     ///< rows in the file (valid + missing)
  std::uint64_t valid_samples = 0;
  double sample_rate_hz = 0;
  double mean_current_a = 0, mean_voltage_v = 0, mean_power_w = 0;
  double energy_j = 0;  ///< sum of I*V over valid samples / rate (rectangle rule)
  std::vector<Counter> counters;
};

/// Runs a capture on an opened monitor (`info` from Monitor::open()). Configures and starts it,
/// stops it at the end, and leaves a complete file whatever happens. Returns an Error only if the
/// output file could not be created; a failure after that is in CaptureSummary::failure.
Result<CaptureSummary> run_capture(Monitor& monitor, const MonitorInfo& info,
                                   const CaptureOptions& opt);

}  // namespace meltrig::rig
