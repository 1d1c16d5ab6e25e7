// The sweep engine: see sweep.hpp and docs/plan.md ("What a sweep does").
#include "meltrig/rig/sweep.hpp"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>

#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/routed_relay.hpp"

namespace meltrig::rig {
namespace {

namespace fs = std::filesystem;

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

/// Waits `seconds` of `clock` time; false if `stop` was requested first (woken at once).
bool wait_on(const Clock& clock, double seconds, std::stop_token stop) {
  const std::int64_t until = clock.now_ns() + static_cast<std::int64_t>(seconds * 1e9);
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  while (clock.now_ns() < until) {
    // The clock may run faster than real time: look again every 10 ms at most.
    const auto left = std::chrono::nanoseconds(until - clock.now_ns());
    const auto nap = std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(10));
    if (cv.wait_for(lock, stop, nap, [] { return false; }), stop.stop_requested()) return false;
  }
  return true;
}

/// A hub opened for the whole sweep; its safe state is every planned port powered.
struct OpenHub {
  std::unique_ptr<Relay> relay;
  std::optional<RelaySafeState> guard;
};

class Sweeper {
 public:
  Sweeper(const SweepOptions& o, SweepBench& b)
      : o_(o), b_(b), dir_(shard_directory(o.output, o.shard)) {}
  Result<SweepOutcome> go();

 private:
  Result<void> open_journal();
  Result<void> save();
  void log(const std::string& line);
  void keep_apart(JournalEntry& e, const std::string& why);
  Result<void> open_hubs();
  Result<void> set_usb(const PlanDevice& d, bool on);
  double cool_down(const PlanDevice& d);
  /// One run; an error stops the sweep (the rig is in doubt), a failed run does not.
  Result<void> run_one(JournalEntry& e);
  SessionOptions session_options(JournalEntry& e, const PlanDevice& d);
  void record(JournalEntry& e, const SessionResult& r, double start_temp);
  void progress(const JournalEntry& e, const std::string& step);
  /// Restores every hub's safe state and says in the log what state relays and hubs were left in.
  void release_bench();

  const SweepOptions& o_;
  SweepBench& b_;
  fs::path dir_;
  Journal journal_;
  SweepOutcome out_;
  std::map<std::string, OpenHub> hubs_;
  std::map<std::string, std::string> relays_left_;  ///< relay -> the safe state it was left in
  std::ofstream log_file_;
  std::size_t index_ = 0;  ///< 1-based run being measured
  std::chrono::steady_clock::duration spent_{};
  std::size_t measured_ = 0;
  SweepProgress live_;
  std::mutex live_mu_;
};

void Sweeper::log(const std::string& line) {
  if (log_file_) log_file_ << utc_now() << " " << line << std::endl;
  if (o_.log) o_.log(line);
}

Result<void> Sweeper::save() {
  if (auto s = journal_.save(out_.journal); !s) return s;
  return write_atomically(out_.catalog, catalog_csv(journal_.entries));
}

void Sweeper::keep_apart(JournalEntry& e, const std::string& why) {
  std::error_code ec;
  const fs::path file = dir_ / e.file;
  const std::string stem = "partial/" + e.run.id + ".attempt" + std::to_string(e.attempts);
  fs::create_directories(dir_ / "partial", ec);
  bool moved = false;
  for (const auto& [from, to] :
       {std::pair{file, stem + ".h5"},
        std::pair{fs::path(file.string() + ".markers"), stem + ".h5.markers"}}) {
    if (!fs::exists(from, ec)) continue;
    fs::rename(from, dir_ / to, ec);
    if (!ec && to.ends_with(".h5")) {
      e.partials.push_back(to);
      moved = true;
    }
  }
  fs::remove(file.string() + ".markers.tmp", ec);
  e.note = why;
  log("run " + e.run.id + ": " + why +
      (moved ? "; its partial data kept as " + e.partials.back() : "; no data had been written") +
      "; it will be redone");
}

Result<void> Sweeper::open_journal() {
  std::error_code ec;
  fs::create_directories(dir_ / "runs", ec);
  if (ec) return Error{Errc::io_error, dir_.string() + ": cannot create: " + ec.message()};
  out_.journal = dir_ / "journal.json";
  out_.catalog = dir_ / "catalog.csv";
  log_file_.open(dir_ / "sweep.log", std::ios::app);
  const auto runs = expand_runs(o_.plan, o_.seed, o_.shard);
  if (fs::exists(out_.journal)) {
    auto j = Journal::load(out_.journal);
    if (!j) return j.error();
    if (j->plan_digest != o_.plan.digest || j->seed != o_.seed || j->shard != o_.shard.str())
      return Error{Errc::invalid_argument,
                   out_.journal.string() + ": belongs to another sweep (plan " + j->plan_digest +
                       ", seed " + std::to_string(j->seed) + ", shard " + j->shard +
                       "); choose another output directory to start a new one"};
    journal_ = std::move(*j);
    for (JournalEntry& e : journal_.entries) {
      if (e.state == RunState::running) {
        keep_apart(e, "was half-done when the sweep stopped");
        e.state = RunState::pending;
        ++out_.resumed_partial;
      }
    }
    log("resuming " + out_.journal.string());
  } else {
    journal_ = Journal{o_.plan.digest, o_.seed, o_.shard.str(), {}};
    for (const SweepRun& r : runs) {
      JournalEntry e;
      e.run = r;
      e.file = "runs/" + r.id + ".h5";
      journal_.entries.push_back(std::move(e));
    }
  }
  return save();
}

Result<void> Sweeper::open_hubs() {
  for (const PlanSwitch& h : o_.plan.hubs) {
    auto spec = DeviceSpec::parse(b_.resolve("hubs." + h.name, h.spec));
    if (!spec) return spec.error();
    auto relay = make_relay(*spec);
    if (!relay) return Error{relay.error().code, "hub " + h.name + ": " + relay.error().message};
    if (auto info = (*relay)->open(); !info)
      return Error{info.error().code,
                   "hub " + h.name + " (" + spec->str() + "): " + info.error().message};
    std::vector<int> ports;
    for (const auto& [dev, port] : h.channels)
      ports.push_back(port);
    OpenHub& oh = hubs_[h.name];
    oh.relay = std::move(*relay);
    oh.guard.emplace(*oh.relay, ports);
    for (int p : ports)
      if (auto s = oh.relay->set(p, true); !s)
        return Error{s.error().code, "hub " + h.name + ": " + s.error().message};
  }
  return {};
}

Result<void> Sweeper::set_usb(const PlanDevice& d, bool on) {
  auto it = hubs_.find(d.hub);
  if (it == hubs_.end()) return {};
  if (auto s = it->second.relay->set(d.hub_port, on); !s)
    return Error{s.error().code,
                 "hub " + d.hub + " port " + std::to_string(d.hub_port) + ": " + s.error().message};
  b_.usb_switched(d, on);
  return {};
}

double Sweeper::cool_down(const PlanDevice& d) {
  const PlanCooldown& c = o_.plan.cooldown;
  auto temp = [&] {
    auto t = b_.temperature_c(d);
    return t ? *t : std::nan("");
  };
  if (c.mode == CooldownMode::time) {
    wait_on(b_.clock(), c.time_s, o_.interrupt);
  } else if (c.mode == CooldownMode::temperature) {
    const std::int64_t deadline =
        b_.clock().now_ns() + static_cast<std::int64_t>(c.timeout_s * 1e9);
    double t = temp();
    while (!(t <= c.to_c)) {
      if (b_.clock().now_ns() >= deadline) {
        log("device " + d.name + ": cool-down timed out at " + std::to_string(t) + " degC (goal " +
            std::to_string(c.to_c) + ")");
        break;
      }
      if (!wait_on(b_.clock(), c.poll_s, o_.interrupt)) break;
      t = temp();
    }
  }
  return temp();
}

void Sweeper::progress(const JournalEntry& e, const std::string& step) {
  std::lock_guard lock(live_mu_);
  live_.run = index_;
  live_.runs = out_.runs;
  if (live_.id != e.run.id) {  // a new run: nothing measured yet
    live_.power_w = live_.tok_s = 0;
    live_.lost = 0;
  }
  live_.id = e.run.id;
  live_.step = step;
  const std::size_t left = out_.runs - out_.complete;
  live_.eta_s = measured_ ? std::chrono::duration<double>(spent_).count() /
                                static_cast<double>(measured_) * static_cast<double>(left)
                          : -1;
  if (o_.progress) o_.progress(live_);
}

SessionOptions Sweeper::session_options(JournalEntry& e, const PlanDevice& d) {
  SessionOptions so;
  so.capture.output = dir_ / e.file;
  so.capture.monitor.output_voltage_v = d.supply_v;
  so.capture.root_attributes = o_.root_attributes;
  for (const auto& [k, v] :
       std::vector<std::pair<std::string, std::string>>{{"sweep_plan", o_.plan.source},
                                                        {"sweep_plan_digest", o_.plan.digest},
                                                        {"sweep_run", e.run.id},
                                                        {"sweep_device", e.run.device},
                                                        {"sweep_workload", e.run.workload},
                                                        {"sweep_model", e.run.model}})
    so.capture.root_attributes.push_back({k, v});
  so.capture.root_attributes.push_back({"sweep_seed", static_cast<std::int64_t>(e.run.seed)});
  so.capture.root_attributes.push_back(
      {"sweep_repetition", static_cast<std::int64_t>(e.run.repetition)});
  if (!d.relay.empty()) {
    so.capture.root_attributes.push_back(
        {"relay", b_.resolve("relays." + d.relay, o_.plan.relay(d.relay)->spec)});
    so.capture.root_attributes.push_back(
        {"relay_route_channel", static_cast<std::int64_t>(d.relay_channel)});
  }
  so.capture.on_progress = [this](const CaptureProgress& p) {
    std::lock_guard lock(live_mu_);
    live_.power_w = p.mean_power_w;
    live_.lost = p.lost_samples;
    if (o_.progress) o_.progress(live_);
  };
  // Tokens per second of device time (the bench clock), from the first token seen.
  struct First {
    std::int64_t t_ns = 0;
    std::uint64_t n = 0;
  };
  auto first = std::make_shared<First>();
  so.on_tokens = [this, first](std::uint64_t n) {
    const std::int64_t now = b_.clock().now_ns();
    std::lock_guard lock(live_mu_);
    if (first->n == 0 && n > 0) *first = {now, n};
    const double s = static_cast<double>(now - first->t_ns) * 1e-9;
    live_.tok_s = first->n && s > 0 ? static_cast<double>(n - first->n) / s : 0;
  };
  if (o_.plan.usb_cut.enabled) {
    // Toggles during the capture: restore, cut, restore, ... (each a relay edge).
    bool on = true;
    for (double t : o_.plan.usb_cut.toggles_s) {
      so.usb_switches.push_back({t, on});
      on = !on;
    }
    so.set_usb = [this, &d](bool usb_on) { return set_usb(d, usb_on); };
    so.after_capture = [this, &d] {
      if (auto s = set_usb(d, true); !s) log("device " + d.name + ": " + s.error().describe());
    };
  }
  return so;
}

void Sweeper::record(JournalEntry& e, const SessionResult& r, double start_temp) {
  const CaptureSummary& c = *r.capture;
  RunMetrics m = o_.analyse ? o_.analyse(dir_ / e.file) : RunMetrics{};
  m.samples = c.samples;
  m.lost_samples = c.samples - c.valid_samples;
  m.duration_s = c.sample_rate_hz > 0 ? static_cast<double>(c.samples) / c.sample_rate_hz : 0;
  m.energy_j = c.energy_j;
  m.mean_power_w = c.mean_power_w;
  m.start_temp_c = start_temp;
  m.usb_cut = o_.plan.usb_cut.enabled;
  e.metrics = m;
  e.state = RunState::complete;
  e.note.clear();
  e.finished_utc = utc_now();
}

Result<void> Sweeper::run_one(JournalEntry& e) {
  const PlanDevice& d = *o_.plan.device(e.run.device);
  const PlanWorkload& w = *o_.plan.workload(e.run.workload);
  e.state = RunState::running;
  ++e.attempts;
  if (auto s = save(); !s) return s;
  log("run " + std::to_string(index_) + "/" + std::to_string(out_.runs) + " " + e.run.id +
      " (attempt " + std::to_string(e.attempts) + ")");
  std::unique_ptr<RoutedRelay> routed;
  if (!d.relay.empty()) {
    const PlanSwitch& rs = *o_.plan.relay(d.relay);
    auto r =
        RoutedRelay::open(b_.resolve("relays." + rs.name, rs.spec), d.relay_channel, rs.safe_on);
    if (!r) return Error{r.error().code, "relay " + rs.name + ": " + r.error().message};
    routed = std::move(*r);
  }
  progress(e, "cool-down");
  const double start_temp = cool_down(d);
  SessionOptions so = session_options(e, d);
  if (auto p = b_.prepare(e.run, d, w, so); !p)
    return Error{p.error().code, "device " + d.name + ": " + p.error().message};
  auto monitor = b_.monitor(d);
  if (!monitor) return monitor.error();
  if (o_.plan.usb_cut.enabled) {
    if (auto s = set_usb(d, false); !s) return s;
    wait_on(b_.clock(), o_.plan.usb_cut.settle_s, o_.interrupt);
  }
  progress(e, "capture");
  auto outcome = Session(std::move(so)).run(**monitor, o_.interrupt);
  if (o_.plan.usb_cut.enabled) (void)set_usb(d, true);  // idempotent after after_capture
  if (routed) {
    if (auto s = routed->restore(); !s)
      return Error{s.error().code,
                   "relay " + d.relay + ": SAFE STATE NOT RESTORED: " + s.error().message};
    relays_left_[d.relay] = routed->safe_state_text();
  }
  if (o_.interrupt.stop_requested()) {
    keep_apart(e, "interrupted (Ctrl-C) during the run");
    e.state = RunState::pending;
    out_.interrupted = true;
    return save();
  }
  std::string failure;
  if (auto* se = std::get_if<SessionError>(&outcome))
    failure = se->subject + ": " + se->error.describe();
  auto* r = std::get_if<SessionResult>(&outcome);
  for (const std::string& n : r ? r->edge_notes : std::vector<std::string>{})
    log("run " + e.run.id + ": " + n);
  if (r && !r->capture)
    failure = r->capture.error().describe();
  else if (r && r->capture->failure)
    failure = r->capture->failure->describe();
  else if (r && r->marker_error)
    failure = "markers: " + r->marker_error->describe();
  else if (r && !r->run_error.empty())
    failure = r->run_error;
  else if (r && r->store_error)
    failure = r->store_error->describe();
  if (failure.empty() && r) {
    if (auto f = b_.finish(e.run, d, *r); !f) failure = f.error().describe();
  }
  if (!failure.empty()) {
    ++out_.failed;
    keep_apart(e, "failed: " + failure);
    e.state = RunState::failed;
    return save();
  }
  progress(e, "analysis");
  record(e, *r, start_temp);
  ++out_.complete;
  ++out_.done_now;
  log("run " + e.run.id + " complete: " + std::to_string(e.metrics.tokens) + " tokens, " +
      std::to_string(e.metrics.j_per_token) + " J/token" +
      (e.metrics.error.empty() ? "" : " (analysis: " + e.metrics.error + ")"));
  return save();
}

Result<SweepOutcome> Sweeper::go() {
  if (auto j = open_journal(); !j) return j.error();
  out_.runs = journal_.entries.size();
  for (const JournalEntry& e : journal_.entries)
    out_.complete += e.state == RunState::complete ? 1 : 0;
  if (out_.complete < out_.runs) {
    if (auto h = open_hubs(); !h) return h.error();
  }
  std::vector<JournalEntry*> todo;
  for (JournalEntry& e : journal_.entries)
    if (e.state != RunState::complete) todo.push_back(&e);
  std::sort(todo.begin(), todo.end(), [](auto* a, auto* b) { return a->run.order < b->run.order; });
  for (JournalEntry* e : todo) {
    if (o_.interrupt.stop_requested()) {
      out_.interrupted = true;
      break;
    }
    index_ = static_cast<std::size_t>(e - journal_.entries.data()) + 1;
    const auto t0 = std::chrono::steady_clock::now();
    if (auto r = run_one(*e); !r) {
      e->state = RunState::failed;
      e->note = r.error().describe();
      (void)save();
      release_bench();
      return r.error();
    }
    spent_ += std::chrono::steady_clock::now() - t0;
    ++measured_;
    if (out_.interrupted) break;
  }
  release_bench();
  out_.entries = journal_.entries;
  return out_;
}

void Sweeper::release_bench() {
  for (const auto& [name, state] : relays_left_)
    log("relay " + name + ": left in its safe state (" + state + ")");
  for (auto& [name, h] : hubs_) {
    if (auto s = h.guard->restore(); !s)
      log("hub " + name + ": SAFE STATE NOT RESTORED: " + s.error().describe());
    else
      log("hub " + name + ": left in its safe state (planned ports powered)");
    h.guard->release();
    h.relay->close();
  }
  hubs_.clear();
}

}  // namespace

Result<SweepOutcome> run_sweep(const SweepOptions& options, SweepBench& bench) {
  Sweeper s(options, bench);
  return s.go();
}

}  // namespace meltrig::rig
