// What `meltrig run` and `meltrig sim` record about the device under test: the runner's argv and
// exit, the clock probes taken around the capture, and the telemetry sampled during it, written to
// /target, /target/probes and a telemetry group (docs/targets.md, "meltrig run").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/dataset/run_record.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/targets/target.hpp"
#include "meltrig/targets/telemetry.hpp"

namespace meltrig::cli {

struct TargetRecord {
  std::string describe;
  std::vector<std::string> argv;
  int exit_code = -1;
  bool timed_out = false;
  bool interrupted = false;
  std::vector<targets::ClockProbe> probes;  ///< every successful probe, in the order taken
  int probe_failures = 0;
  std::optional<Error> last_probe_error;
  targets::Telemetry telemetry;  ///< what the TelemetrySampler read during the capture
  std::uint64_t telemetry_samples = 0, telemetry_errors = 0;
  /// The host clock of the probes' host_t0_ns/host_t3_ns (attribute `probe_clock`).
  std::string probe_clock;
  /// Command-specific attributes of /target (e.g. the simulated bench's epoch).
  std::vector<dataset::Attribute> extra_attributes;
};

/// Takes `n` clock probes back to back; successes are appended to rec.probes, failures counted.
void take_probes(targets::Target& target, int n, TargetRecord& rec);

/// The argv as one line a shell would split back into it (plain words bare, others in '...').
std::string join_for_humans(const std::vector<std::string>& argv);

/// Writes /target (attributes), /target/probes/* and, if any series was sampled, the sampled
/// telemetry under /`telemetry_group` (layout of /telemetry, docs/dataset.md).
Result<void> write_target(dataset::RunRecord& f, const TargetRecord& rec,
                          std::string_view telemetry_group);

}  // namespace meltrig::cli
