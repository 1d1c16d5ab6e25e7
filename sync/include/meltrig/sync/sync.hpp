// Clock sync end to end: evidence from every source the rig records (coded power-signature pulses,
// logic-input edges, relay edges, clock probes, and for legacy data the workload itself), robust
// piecewise maps from each device clock to the monitor's sample clock and to host steady time, and
// a clear error naming what is missing when nothing supports a map. Methods: docs/sync.md.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "meltrig/sync/evidence.hpp"
#include "meltrig/sync/piecewise_map.hpp"
#include "meltrig/sync/signal.hpp"

namespace meltrig::sync {

/// Relations between the device clocks from its clock triples: between two consecutive triples
/// with the same boot - mono (and real - boot) offset the clocks move together; where the offset
/// jumps the device suspended (or its wall clock was set) somewhere in between.
class ClockRelations {
 public:
  explicit ClockRelations(std::vector<Triple> triples, std::int64_t threshold_ns = 1'000'000);
  /// `mono` on `clock`, or nullopt inside an interval holding a suspend (boot, real) or a step
  /// (real). Without triples only monotonic converts.
  std::optional<std::int64_t> convert(std::int64_t mono, DeviceClock clock) const;
  /// Boottime of `mono` for predictions: inside a suspend interval, the nearer triple's offset.
  std::int64_t continuous(std::int64_t mono) const;
  /// Monotonic intervals (between two triples) holding a suspend, or a realtime step.
  std::vector<ClockBreak> mono_breaks(bool suspends, bool realtime_steps) const;
  bool empty() const { return t_.empty(); }

 private:
  std::vector<Triple> t_;
  std::int64_t threshold_;
};

/// The busy intervals the markers imply (model load, prefill through the last token of a run,
/// the busy chips of each sync pulse), on the markers' clock, sorted.
std::vector<BusySpan> busy_spans(std::span<const Mark> marks);

/// What the pulse search saw.
struct PulseReport {
  std::size_t expected = 0;
  std::size_t found = 0;
  double min_psr = 0.0;
  double tau_ns = 0.0;  ///< rail time constant estimated from the chip edges
  double tau_se_ns = 0.0;
  /// What the uncertainty of tau can shift every edge by together (3 standard errors x the
  /// edges' mean sensitivity to tau): added to the bound of maps built on these edges.
  std::int64_t systematic_ns = 0;
  std::vector<std::string> misses;
};

/// Chip edges of every sync pulse in `marks`, located by FFT cross-correlation against the code
/// near where `tracker` predicts (device times converted by `to_cont` to a clock without
/// suspends), each edge then placed to sub-sample precision. Points are on the markers' clock.
std::vector<SyncPoint> pulse_points(const Trace& tr, std::span<const Mark> marks,
                                    const std::function<std::int64_t(std::int64_t)>& to_cont,
                                    Tracker& tracker, PulseReport& report);

struct WorkloadReport {
  std::size_t blocks = 0;
  std::size_t blocks_aligned = 0;
  std::size_t edges_expected = 0;
  std::size_t edges_found = 0;
  double tau_ns = 0.0;
  double tau_se_ns = 0.0;
  std::int64_t systematic_ns = 0;  ///< as PulseReport::systematic_ns
  std::size_t tokens_found = 0;    ///< token dips located (token_points)
};

/// Workload matching for markers without pulses: coarse alignment of the predicted activity with
/// the trace, block by block (block_ns of device time), then every busy/idle transition of the
/// activity located in the trace. Adds the block anchors to `tracker`.
std::vector<SyncPoint> workload_points(const Trace& tr, std::span<const Mark> marks,
                                       const std::function<std::int64_t(std::int64_t)>& to_cont,
                                       Tracker& tracker, WorkloadReport& report,
                                       std::int64_t block_ns = 120'000'000'000);

/// The per-token decode rhythm: every token that another follows within 2 s ends its compute at
/// its marker and leaves a dip in the decode level until the next one starts; each dip found
/// near where `prelim` (a map on the clock of to_cont, e.g. from workload_points) puts the
/// marker gives a point at the middle of the sample interval the dip began in (sigma T /
/// sqrt 12). Sources count from source0.
std::vector<SyncPoint> token_points(const Trace& tr, std::span<const Mark> marks,
                                    const std::function<std::int64_t(std::int64_t)>& to_cont,
                                    const ClockMap& prelim, std::uint32_t source0);

/// One point per probe burst (probes closer than burst_gap_ns): the lowest-RTT probe, device
/// monotonic at the host midpoint, sigma RTT / (2 sqrt 3) (uniform within +-RTT/2).
std::vector<SyncPoint> probe_points(std::span<const Probe> probes,
                                    std::int64_t burst_gap_ns = 500'000'000);

/// Host-steady points moved to the monitor's time base through the capture's start stamp.
std::vector<SyncPoint> host_to_monitor(std::span<const SyncPoint> host_pts,
                                       const HostMonitorLink& link);

/// Every change of input `bit` (0-7: PPK2 D0-D7) in `samples` (one byte per sample, bit n =
/// input Dn, sample i at index first_index + i), in order. Rows a capture lost (its gaps) must
/// be left out by the caller: a gap reads 0 and would fake edges. For readers of a dataset's
/// logic channel (`meltrig sync FILE`) and for logic_points.
std::vector<LogicEdge> logic_edges(std::span<const std::uint8_t> samples, int bit,
                                   std::int64_t first_index = 0);

/// Logic-input edges matched in order with the device's toggles: sample-exact points.
std::vector<SyncPoint> logic_points(const LogicInput& in, std::vector<std::string>& notes);

/// Relay edges the device logged, located in the trace near the host's command: each a point at
/// the middle of the device's window [device_log_ns - resolution, device_log_ns]. Edges the
/// device did not log, and edges whose step is not found within 100 ms of the command, are left
/// out with a line in `notes` (not an error).
std::vector<SyncPoint> relay_points(const Trace& tr, std::span<const RelayEdge> edges,
                                    const HostMonitorLink& link, std::vector<std::string>& notes);

/// Which sources synchronise may use.
struct SyncSources {
  bool pulses = true;
  bool logic = true;
  bool relay = true;
  bool workload = true;         ///< only when pulses, logic and relay edges give nothing
  bool workload_tokens = true;  ///< the workload's per-token rhythm too (token_points)
  bool probes = true;
  bool probes_to_monitor = true;  ///< probes + host link when nothing else reaches the monitor
};

struct SyncInputs {
  DeviceClock marks_clock = DeviceClock::monotonic;
  std::vector<Mark> marks;
  std::vector<Triple> triples;
  Trace trace;
  std::optional<LogicInput> logic;
  std::vector<Probe> probes;
  std::optional<HostMonitorLink> host_link;
  std::vector<RelayEdge> relay_edges;
  SyncSources use;
  PiecewiseOptions fit;
};

struct SyncDiagnostics {
  PulseReport pulses;
  WorkloadReport workload;
  std::size_t logic_points = 0;
  std::size_t relay_points = 0;
  std::size_t probe_bursts = 0;
  std::int64_t latency_p50_ns = 0;  ///< of late-biased points (busy chip starts) over the map
  std::int64_t latency_p99_ns = 0;
  std::vector<ClockBreak> breaks;  ///< on the monotonic clock
  std::vector<std::string> notes;
};

struct SyncOutput {
  std::string method;          ///< "pulses", "logic", "workload", "probes+host link", ...
  std::vector<ClockMap> maps;  ///< to the monitor per device clock, then to host steady
  std::vector<SyncPoint> monitor_evidence;  ///< on the markers' clock
  std::vector<SyncPoint> host_evidence;
  SyncDiagnostics diag;

  const ClockMap* find(DeviceClock c, TargetClock t) const;
};

/// Computes every map the evidence supports. Fails with a message naming each source and why it
/// gave nothing when no map to the monitor can be made (never falls back to the wall clock).
SyncResult<SyncOutput> synchronise(const SyncInputs& in);

}  // namespace meltrig::sync
