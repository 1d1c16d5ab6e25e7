// Evidence from a capture file (file_sync.hpp): trace in blocks, markers, triples, logic edges,
// probes, relay edges.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/sync/file_sync.hpp"

namespace meltrig::sync {

namespace {

constexpr std::size_t kBlock = 1 << 20;

Error file_error(const std::filesystem::path& p, const std::string& what) {
  return make_error(Errc::invalid_argument, p.string() + ": " + what);
}

std::optional<DeviceClock> clock_of(std::string_view name) {
  for (DeviceClock c : {DeviceClock::monotonic, DeviceClock::boottime, DeviceClock::realtime})
    if (clock_name(c) == name) return c;
  return std::nullopt;
}

std::optional<MarkKind> mark_kind(targets::MarkerKind k) {
  using K = targets::MarkerKind;
  switch (k) {
    case K::run_start:
      return MarkKind::run_start;
    case K::run_end:
      return MarkKind::run_end;
    case K::load_start:
      return MarkKind::load_start;
    case K::load_end:
      return MarkKind::load_end;
    case K::prefill_start:
      return MarkKind::prefill_start;
    case K::prefill_end:
      return MarkKind::prefill_end;
    case K::token:
      return MarkKind::token;
    case K::sync_start:
      return MarkKind::sync_start;
    case K::sync_end:
      return MarkKind::sync_end;
    case K::user:
      return std::nullopt;
  }
  return std::nullopt;
}

/// A float32 channel of the capture, read a page at a time for the trace (TraceSamples).
class ChannelSource final : public SampleSource {
 public:
  ChannelSource(dataset::CaptureReader reader, std::string channel)
      : r_(std::move(reader)), channel_(std::move(channel)) {}
  std::uint64_t size() const override { return r_.samples_written(); }
  bool load(std::uint64_t first, std::span<float> out) override {
    auto ok = r_.read(channel_, first, out);
    if (!ok && error_.empty()) error_ = ok.error().describe();
    return ok.ok();
  }
  std::string error() const override { return error_; }

 private:
  dataset::CaptureReader r_;
  std::string channel_;
  std::string error_;
};

/// The edges of logic input `bit` up to the capture's first gap, the channel scanned in blocks
/// (memory: one block and the edges). A lost row reads 0, and toggles lost inside a gap would
/// shift the in-order pairing of every later edge with the runner's toggles: `*cut` gets the
/// first gap's first row, if there is one, and nothing from there on is used.
Result<std::vector<LogicEdge>> scan_logic(const dataset::CaptureReader& r, int bit,
                                          std::optional<std::uint64_t>* cut) {
  auto gaps = r.gaps();
  if (!gaps) return gaps.error();
  std::uint64_t n = r.samples_written();
  for (const dataset::Gap& g : *gaps)
    if (g.count > 0 && g.first_index < n) n = g.first_index, *cut = g.first_index;
  std::vector<std::uint8_t> block(kBlock + 1);
  std::vector<LogicEdge> out;
  for (std::uint64_t first = 0; first < n; first += kBlock) {
    // each block starts with the last sample of the one before, so no edge falls between them
    const std::uint64_t from = first == 0 ? 0 : first - 1;
    const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock + 1, n - from));
    auto ok = r.read("logic", from, std::span<std::uint8_t>(block.data(), k));
    if (!ok) return ok.error();
    auto e = logic_edges(std::span<const std::uint8_t>(block.data(), k), bit,
                         static_cast<std::int64_t>(from));
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

/// The runner's markers: /markers/runner, else the first set.
Result<targets::MarkerLog> runner_markers(const std::filesystem::path& path, std::string& name) {
  auto names = dataset::list_markers(path);
  if (!names) return names.error();
  if (names->empty()) return file_error(path, "no markers (/markers is empty or absent)");
  name = names->front();
  for (const std::string& n : *names)
    if (n == "runner") name = n;
  return dataset::read_markers(path, name);
}

/// Marks, logic toggles (per line) and triples from the log.
void take_markers(const targets::MarkerLog& log, FileEvidence& ev,
                  std::array<std::vector<std::int64_t>, 8>& toggles) {
  std::size_t pulses = 0, tokens = 0;
  for (const targets::MarkerEvent& e : log.events) {
    if (e.kind == targets::MarkerKind::user && e.label == kLogicToggleEvent) {
      const int line = std::isfinite(e.value) ? static_cast<int>(e.value) : 0;
      if (line >= 0 && line < 8) toggles[static_cast<std::size_t>(line)].push_back(e.t_ns);
      continue;
    }
    auto k = mark_kind(e.kind);
    if (!k) continue;
    ev.inputs.marks.push_back({e.t_ns, *k, e.code, e.bits, e.chip_ns});
    pulses += *k == MarkKind::sync_start ? 1 : 0;
    tokens += *k == MarkKind::token ? 1 : 0;
  }
  for (const targets::ClockTriple& t : log.clocks)
    ev.inputs.triples.push_back({t.mono_ns, t.boot_ns, t.real_ns});
  ev.found.push_back("markers/" + ev.markers_group + " (" + log.clock +
                     "): " + std::to_string(pulses) + " sync pulses, " + std::to_string(tokens) +
                     " tokens, " + std::to_string(log.clocks.size()) + " clock triples");
}

/// Clock probes (/target/probes) and the relay edges (/relay/edges) the file holds, if any.
Result<void> take_host_evidence(const std::filesystem::path& path, const dataset::CaptureReader& r,
                                FileEvidence& ev) {
  const auto* start = dataset::find_attribute(r.root_attributes(), "host_steady_clock_start_ns");
  if (start != nullptr && std::holds_alternative<std::int64_t>(*start))
    ev.inputs.host_link = HostMonitorLink{std::get<std::int64_t>(*start), 1'000'000};
  auto target = dataset::read_group(path, "target");
  if (!target) return target.error();
  const dataset::GroupData* probes = *target ? (*target)->group("probes") : nullptr;
  using I64 = std::vector<std::int64_t>;
  auto col = [](const dataset::GroupData* g, const char* n) -> const I64* {
    const dataset::Column* c = g != nullptr ? g->column(n) : nullptr;
    return c != nullptr ? std::get_if<I64>(&c->values) : nullptr;
  };
  const I64 *t0 = col(probes, "host_t0_ns"), *mono = col(probes, "device_mono_ns"),
            *t3 = col(probes, "host_t3_ns");
  if (t0 != nullptr && mono != nullptr && t3 != nullptr)
    for (std::size_t i = 0; i < std::min({t0->size(), mono->size(), t3->size()}); ++i)
      ev.inputs.probes.push_back({(*t0)[i], (*mono)[i], (*t3)[i]});
  ev.found.push_back("clock probes: " + std::to_string(ev.inputs.probes.size()) +
                     (ev.inputs.host_link ? "" : " (no host start stamp: no host link)"));
  auto relay = dataset::read_group(path, "relay");
  if (!relay) return relay.error();
  const dataset::GroupData* edges = *relay ? (*relay)->group("edges") : nullptr;
  const I64 *cmd = col(edges, "host_command_ns"), *rising = col(edges, "rising"),
            *log = col(edges, "device_log_ns"), *res = col(edges, "device_log_resolution_ns"),
            *ack = col(edges, "host_ack_ns");
  if (cmd != nullptr && rising != nullptr && log != nullptr)
    for (std::size_t i = 0; i < std::min({cmd->size(), rising->size(), log->size()}); ++i)
      ev.inputs.relay_edges.push_back({(*cmd)[i], ack != nullptr && i < ack->size() ? (*ack)[i] : 0,
                                       (*rising)[i] != 0, (*log)[i],
                                       res != nullptr && i < res->size() ? (*res)[i] : 1'000'000});
  ev.found.push_back("relay edges: " + std::to_string(ev.inputs.relay_edges.size()));
  return {};
}

/// The logic input of the first line the runner toggled, from the capture's `logic` channel.
Result<void> take_logic(const dataset::CaptureReader& r,
                        std::array<std::vector<std::int64_t>, 8>& toggles, FileEvidence& ev) {
  const dataset::ChannelSpec* ch = r.find_channel("logic");
  std::size_t line = 0;
  while (line < 8 && toggles[line].empty())
    ++line;
  if (ch == nullptr || ch->type != dataset::SampleType::u8) {
    ev.found.push_back(std::string("logic inputs: no logic channel") +
                       (line < 8 ? " (the runner logged toggles)" : ""));
    return {};
  }
  if (line == 8) {
    ev.found.push_back("logic inputs: a logic channel, but no '" + std::string(kLogicToggleEvent) +
                       "' toggles in the markers");
    return {};
  }
  std::optional<std::uint64_t> cut;
  auto edges = scan_logic(r, static_cast<int>(line), &cut);
  if (!edges) return edges.error();
  LogicInput in;
  in.edges = std::move(*edges);
  in.nominal_rate_hz = r.sample_rate_hz();
  in.bit = static_cast<int>(line);
  in.device_toggle_ns = toggles[line];
  if (cut)
    ev.found.push_back("logic inputs: edges from the first gap (sample " + std::to_string(*cut) +
                       ") on left out");
  ev.inputs.logic = std::move(in);
  ev.found.push_back("logic inputs: D" + std::to_string(line) + ", " +
                     std::to_string(toggles[line].size()) + " toggles");
  return {};
}

/// The trace of `ev` read whole into memory (FileSyncOptions::trace_in_memory).
Result<void> load_trace(FileEvidence& ev) {
  const std::uint64_t n = ev.trace_source->size();
  ev.trace_memory = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n));
  for (std::uint64_t first = 0; first < n; first += kBlock) {
    const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, n - first));
    if (!ev.trace_source->load(first, std::span<float>(ev.trace_memory->data() + first, k)))
      return file_error(ev.file, "reading the power trace failed: " + ev.trace_source->error());
  }
  ev.inputs.trace.samples = TraceSamples(std::span<const float>(*ev.trace_memory));
  return {};
}

}  // namespace

Result<FileEvidence> gather_evidence(const std::filesystem::path& path,
                                     const FileSyncOptions& opt) {
  auto reader = dataset::CaptureReader::open(path);
  if (!reader) return reader.error();
  const dataset::CaptureReader& r = *reader;
  if (r.state() == dataset::CaptureState::running)
    return file_error(path, "capture state 'running' (still being written, or crashed): no sync");
  FileEvidence ev;
  ev.file = path;
  ev.trace_channel = r.find_channel("current") != nullptr ? "current"
                     : r.find_channel("power") != nullptr ? "power"
                                                          : "";
  if (ev.trace_channel.empty()) return file_error(path, "no current or power channel");
  auto log = runner_markers(path, ev.markers_group);
  if (!log) return log.error();
  auto clock = clock_of(log->clock);
  if (!clock)
    return file_error(path, "/markers/" + ev.markers_group + ": markers on an unknown clock '" +
                                log->clock + "' (known: monotonic, boottime, realtime)");
  ev.inputs.marks_clock = *clock;
  std::array<std::vector<std::int64_t>, 8> toggles;
  take_markers(*log, ev, toggles);
  const double rate = r.sample_rate_hz();
  ev.found.push_back("power trace: " + std::to_string(r.samples_written()) + " samples of " +
                     ev.trace_channel + " at " + std::to_string(rate) + " Hz");
  if (auto t = take_logic(r, toggles, ev); !t) return t.error();
  if (auto h = take_host_evidence(path, r, ev); !h) return h.error();
  // the trace is read a page at a time as the estimators ask for it (bounded memory)
  ev.trace_source = std::make_shared<ChannelSource>(std::move(*reader), ev.trace_channel);
  ev.inputs.trace = Trace{TraceSamples(ev.trace_source, opt.trace_pages), rate, 0};
  if (opt.trace_in_memory)
    if (auto l = load_trace(ev); !l) return l.error();
  return ev;
}

namespace {

std::size_t trace_points(const SyncOutput& o) {
  std::size_t n = 0;
  for (const SyncPoint& p : o.monitor_evidence)
    n += p.kind != EvidenceKind::probe ? 1 : 0;
  return n;
}

/// The pulse search starts from the clock probes when there are any. Probes that disagree with
/// the trace (taken while the device clock was still being set, or over a link whose start stamp
/// is off) send it to the wrong place: when pulses were missed, the search is run again seeded by
/// the workload alone, and the run with more evidence from the trace wins. The host maps always
/// come from the probes.
SyncResult<SyncOutput> synchronise_file(const SyncInputs& in) {
  auto all = synchronise(in);
  const bool missed = !all || all->diag.pulses.found < all->diag.pulses.expected;
  if (!missed || in.probes.empty()) return all;
  SyncInputs alone = in;
  alone.use.probes = false;
  alone.use.probes_to_monitor = false;
  auto trace_only = synchronise(alone);
  if (!trace_only || (all && trace_points(*trace_only) <= trace_points(*all))) return all;
  if (all) {
    for (ClockMap& m : all->maps)
      if (m.target == TargetClock::host_steady) trace_only->maps.push_back(std::move(m));
    trace_only->host_evidence = std::move(all->host_evidence);
    trace_only->diag.probe_bursts = all->diag.probe_bursts;
  }
  trace_only->diag.notes.push_back(
      "pulse search seeded by the workload: seeded by the clock probes it " +
      (all ? "found " + std::to_string(all->diag.pulses.found) + " of " +
                 std::to_string(all->diag.pulses.expected) + " pulses"
           : std::string("gave no map")) +
      " (the probes disagree with the trace)");
  return trace_only;
}

}  // namespace

Result<FileSync> sync_file(const std::filesystem::path& path, const FileSyncOptions& opt) {
  auto ev = gather_evidence(path, opt);
  if (!ev) return ev.error();
  auto out = synchronise_file(ev->inputs);
  if (ev->inputs.trace.samples.failed())
    return file_error(path, "reading the power trace failed: " + ev->trace_source->error());
  if (!out)
    return file_error(
        path, "sync failed: " + out.error().message + " (file holds: " + [&] {
          std::string f;
          for (const std::string& x : ev->found)
            f += (f.empty() ? "" : "; ") + x;
          return f;
        }() + ")");
  FileSync s;
  s.method = out->method;
  s.marks_clock = ev->inputs.marks_clock;
  s.maps = std::move(out->maps);
  s.monitor_evidence = std::move(out->monitor_evidence);
  s.host_evidence = std::move(out->host_evidence);
  s.diag = std::move(out->diag);
  s.markers_group = ev->markers_group;
  s.found = std::move(ev->found);
  return s;
}

}  // namespace meltrig::sync
