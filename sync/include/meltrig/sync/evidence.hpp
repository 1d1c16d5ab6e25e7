// Clock-sync evidence: plain value types for everything that ties a device clock to the monitor's
// sample clock or to the host's steady clock. Times are int64 nanoseconds. A monitor time is the
// sample index on the monitor's own time base, index x 1e9 / nominal rate (so 5 kHz gives 200 000
// ns per sample); sub-sample positions are kept as ns.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meltrig::sync {

/// The device clocks a map can start from (docs/markers.md, "Clock triples").
enum class DeviceClock : std::uint8_t { monotonic, boottime, realtime };
/// The clocks a map can lead to.
enum class TargetClock : std::uint8_t { monitor, host_steady };
/// Where a sync point came from.
enum class EvidenceKind : std::uint8_t {
  pulse_edge,     ///< a chip edge of a coded power-signature pulse
  logic_edge,     ///< a logic-input edge sampled with the current (PPK2 D0-D7)
  relay_edge,     ///< a relay / USB-cut step the device logged
  probe,          ///< an NTP-style clock probe through the target (host steady time)
  workload_edge,  ///< a load / prefill / decode transition matched in the power trace
};

std::string_view clock_name(DeviceClock c);
std::string_view target_name(TargetClock c);
std::string_view evidence_name(EvidenceKind k);

/// One observation: device time `device_ns` happened at `target_ns` on the target clock.
struct SyncPoint {
  std::int64_t device_ns = 0;
  std::int64_t target_ns = 0;
  std::int64_t sigma_ns = 1;  ///< one-sigma uncertainty of target_ns (>= 1)
  EvidenceKind kind = EvidenceKind::pulse_edge;
  /// Seen late by a latency that is never negative (a busy chip starts when a thread wakes): the
  /// fit gives these points their own offset and reports it as the latency.
  bool late_biased = false;
  std::uint32_t source = 0;  ///< which pulse, burst or edge group (diagnostics, segment checks)
};

/// A clock triple read on the device (CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME).
struct Triple {
  std::int64_t mono_ns = 0;
  std::int64_t boot_ns = 0;
  std::int64_t real_ns = 0;
};

/// A power (or current) trace sampled by the monitor: sample i is at monitor time
/// (first_index + i) x 1e9 / nominal_rate_hz. NaN marks a missing sample.
/// Where a trace too large to hold in memory reads its samples from: loads samples
/// [first, first + out.size()) into `out` (NaN = missing), or fails.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual std::uint64_t size() const = 0;
  virtual bool load(std::uint64_t first, std::span<float> out) = 0;
  /// What the first failed load said ("" when none failed).
  virtual std::string error() const = 0;
};

/// The samples of a trace: a span over memory, or pages of a SampleSource read on demand and
/// kept in a small least-recently-used cache (bounded memory whatever the trace's length; every
/// estimator sees exactly the samples it would see in memory). Element access only; copies
/// share the cache. A page that fails to load reads as NaN and sets failed().
class TraceSamples {
 public:
  static constexpr std::size_t kPageBits = 16;  ///< 65,536 samples (256 KiB) a page
  TraceSamples() = default;
  TraceSamples(std::span<const float> s) : data_(s.data()), n_(s.size()) {}  // NOLINT: implicit
  TraceSamples(const std::vector<float>& v) : TraceSamples(std::span<const float>(v)) {}  // NOLINT
  /// Pages of `source`, at most `max_pages` held at once.
  TraceSamples(std::shared_ptr<SampleSource> source, std::size_t max_pages);

  std::size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  float operator[](std::size_t i) const {
    if (data_ != nullptr) return data_[i];
    if (i - hot_->first < hot_->count) return hot_->data[i - hot_->first];  // the last page used
    return paged(i);
  }
  /// True when a page failed to load (its samples read NaN).
  bool failed() const;
  /// Most pages held at once so far (paged samples; 0 for a span).
  std::size_t peak_pages() const;

 private:
  struct Cache;
  /// The page the last access used (owned by the shared cache, valid until it loads another).
  struct Hot {
    const float* data = nullptr;
    std::size_t first = 0, count = 0;
  };
  float paged(std::size_t i) const;
  const float* data_ = nullptr;
  std::size_t n_ = 0;
  std::shared_ptr<Cache> cache_;
  Hot* hot_ = nullptr;
};

struct Trace {
  TraceSamples samples;
  double nominal_rate_hz = 0.0;
  std::int64_t first_index = 0;

  bool empty() const { return samples.empty() || nominal_rate_hz <= 0.0; }
  double period_ns() const { return 1e9 / nominal_rate_hz; }
  /// Monitor ns of a (fractional) position in `samples`.
  std::int64_t ns_of(double pos) const;
  /// Fractional position in `samples` of a monitor time.
  double pos_of(std::int64_t monitor_ns) const;
};

/// What the markers say, reduced to what sync needs (any marker source converts to this).
enum class MarkKind : std::uint8_t {
  run_start,
  run_end,
  load_start,
  load_end,
  prefill_start,
  prefill_end,
  token,
  sync_start,
  sync_end,
};

struct Mark {
  std::int64_t t_ns = 0;  ///< on the markers' clock
  MarkKind kind = MarkKind::token;
  std::uint64_t code = 0;  ///< sync.start: code, bits, chip_ns
  std::uint32_t bits = 0;
  std::int64_t chip_ns = 0;
};

/// An NTP-style probe through the target: host steady t0, the device's clocks, host steady t3.
struct Probe {
  std::int64_t host_t0_ns = 0;
  std::int64_t device_mono_ns = 0;
  std::int64_t host_t3_ns = 0;
};

/// Links host steady time to the monitor: the host steady time of sample 0 and how well it is
/// known (a capture's start stamp: USB start latency).
struct HostMonitorLink {
  std::int64_t host_steady_at_index0_ns = 0;
  std::int64_t uncertainty_ns = 1'000'000;
};

/// A relay or USB-cut switch: when the host commanded it, which way the monitor's current steps,
/// and (when the device logged the change) the device's own monotonic time of it.
struct RelayEdge {
  std::int64_t host_command_ns = 0;
  std::int64_t host_ack_ns = 0;  ///< the switch acknowledged (0 or earlier: not known)
  bool rising = true;            ///< the current steps up (device powered / USB cut)
  std::int64_t device_log_ns = std::numeric_limits<std::int64_t>::min();  ///< min(): not logged
  std::int64_t device_log_resolution_ns = 1'000'000;
};

/// Logic-input samples (PPK2 D0-D7, one byte per current sample, same index) and the device
/// times at which the runner toggled line `bit`, in order.
/// A level change of one logic input: the line read `level` from sample `index` on (and the
/// other level at index - 1), so the change happened in (index - 1, index] of sample time.
struct LogicEdge {
  std::int64_t index = 0;  ///< first_index + position of the first sample at the new level
  bool level = false;
};

struct LogicInput {
  std::span<const std::uint8_t> samples;
  /// The edges of input `bit` already extracted (indices counted from sample 0 of the capture,
  /// e.g. by a reader that scans the logic channel in chunks); when set, `samples` is ignored.
  std::optional<std::vector<LogicEdge>> edges;
  std::int64_t first_index = 0;
  double nominal_rate_hz = 0.0;
  int bit = 0;
  std::vector<std::int64_t> device_toggle_ns;  ///< on the markers' clock
};

}  // namespace meltrig::sync
