// A sweep: every run of a plan (device x workload x repetition, in the plan's order), each one a
// rig::Session into a dataset of its own, with power routing, cool-down, the USB-cut protocol,
// analysis, a journal that lets an interrupted sweep resume, and a catalog of every run.
// docs/plan.md describes the plan and what a sweep does with it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "meltrig/fw/clock.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/rig/journal.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/rig/plan.hpp"
#include "meltrig/rig/session.hpp"

namespace meltrig::rig {

/// This host's part of a sweep: devices i, i+N, i+2N, ... (1-based, in plan order).
struct Shard {
  int index = 1;
  int count = 1;
  /// "I/N" with 1 <= I <= N; invalid_argument naming the text otherwise.
  static Result<Shard> parse(std::string_view text);
  bool whole() const { return count == 1; }
  std::string str() const { return std::to_string(index) + "/" + std::to_string(count); }
};

/// Every run of `plan` for `shard`, in the order they are measured. Interleaved: repetition by
/// repetition, each repetition going through every device x workload; blocked: device by device,
/// workload by workload, all repetitions together. With shuffle, the configurations inside each
/// repetition (interleaved) or the blocks (blocked) are shuffled by `seed` (Fisher-Yates on
/// splitmix64, the same on every host). A run's seed is derived from `seed` and its id.
std::vector<SweepRun> expand_runs(const Plan& plan, std::uint64_t seed, const Shard& shard);

/// What a sweep runs on: real instruments and devices, or a simulated bench (fixtures).
class SweepBench {
 public:
  virtual ~SweepBench() = default;
  /// The clock of waits and ETAs (a simulated bench's virtual clock).
  virtual const Clock& clock() const = 0;
  /// A driver spec as the plan gives it under `key` ("relays.NAME", "hubs.NAME"), made openable
  /// (a simulated bench puts its emulator's port for "emulated").
  virtual std::string resolve(const std::string& /*key*/, const std::string& spec) const {
    return spec;
  }
  /// The monitor measuring `device` (not opened).
  virtual Result<std::unique_ptr<Monitor>> monitor(const PlanDevice& device) = 0;
  /// Readies `device` for `run` and fills in what the session needs of it: so.target, the
  /// runner, the capture's duration and clock, hooks. so.capture.output and the relay are set.
  virtual Result<void> prepare(const SweepRun& run, const PlanDevice& device,
                               const PlanWorkload& workload, SessionOptions& so) = 0;
  /// The device's temperature now, degC (for a cool-down to a temperature).
  virtual Result<double> temperature_c(const PlanDevice& device) = 0;
  /// USB power of `device` was switched (the hub said yes).
  virtual void usb_switched(const PlanDevice& /*device*/, bool /*on*/) {}
  /// After the session: anything the bench adds to the file (a simulated bench: its truth).
  virtual Result<void> finish(const SweepRun& /*run*/, const PlanDevice& /*device*/,
                              const SessionResult& /*result*/) {
    return {};
  }
};

/// The live display, called from the sweep's threads.
struct SweepProgress {
  std::size_t run = 0, runs = 0;  ///< run i of N (1-based) in this shard
  std::string id;
  std::string step;        ///< "cool-down", "capture", "analysis", ...
  double eta_s = -1;       ///< < 0: not known yet
  double power_w = 0;      ///< live mean power of the capture
  double tok_s = 0;        ///< tokens per second of the runner so far
  std::uint64_t lost = 0;  ///< samples lost so far in this run
};

struct SweepOptions {
  Plan plan;
  Shard shard;
  std::uint64_t seed = 1;        ///< the plan's seed unless --seed
  std::filesystem::path output;  ///< the output directory (shard: a subdirectory)
  std::stop_token interrupt;     ///< Ctrl-C: the run in progress is kept apart, state saved
  std::function<void(const std::string&)> log;         ///< one line per event (also run.log)
  std::function<void(const SweepProgress&)> progress;  ///< the live line (may be empty)
  std::vector<dataset::Attribute> root_attributes;     ///< e.g. the command line
  /// The metrics of a finished run's dataset (sweep::analyse_run; rig does not depend on the
  /// analysis). Empty: only what the capture says (energy, samples, losses).
  std::function<RunMetrics(const std::filesystem::path&)> analyse;
};

struct SweepOutcome {
  std::size_t runs = 0;             ///< runs in this shard
  std::size_t complete = 0;         ///< complete now (including earlier invocations)
  std::size_t done_now = 0;         ///< completed by this invocation
  std::size_t failed = 0;           ///< failed in this invocation (redone on the next)
  std::size_t resumed_partial = 0;  ///< half-done runs found and kept apart in partial/
  bool interrupted = false;
  std::filesystem::path catalog;
  std::filesystem::path journal;
  std::vector<JournalEntry> entries;  ///< the journal at the end
};

/// Runs (or resumes) a sweep. Errors before anything was switched: a journal from another plan
/// or seed in the output directory, a bench that cannot start. A run that fails is recorded as
/// failed and the sweep goes on; a relay or hub that does not take its safe state stops it.
Result<SweepOutcome> run_sweep(const SweepOptions& options, SweepBench& bench);

/// The output directory of a shard: `output` itself for the whole sweep, else
/// `output/shard-I-of-N`.
std::filesystem::path shard_directory(const std::filesystem::path& output, const Shard& shard);

}  // namespace meltrig::rig
