// One measured run: see session.hpp.
#include "meltrig/rig/session.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "meltrig/dataset/group_store.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/rig/routed_relay.hpp"

namespace meltrig::rig {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

Steady::duration seconds(double s) {
  return std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(s));
}

bool is_token_line(const std::string& line) {
  auto sp = line.find(' ');
  return sp != std::string::npos && line.compare(sp + 1, 6, "token ") == 0;
}

/// Wakes the session's thread when the capture ends, and lets it wait for that, for a deadline
/// or for the interrupt, whichever comes first.
class CaptureEnd {
 public:
  void set() {
    {
      std::lock_guard lk(mu_);
      ended_ = true;
    }
    cv_.notify_all();
  }
  bool ended() {
    std::lock_guard lk(mu_);
    return ended_;
  }
  /// Waits up to `d`, or until `interrupt` is requested, or (with `until_end`) until the capture
  /// ended.
  void pause(std::stop_token interrupt, Steady::duration d, bool until_end) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, interrupt, d, [&] { return until_end && ended_; });
  }
  /// Waits until the capture ended or `interrupt` was requested.
  void wait(std::stop_token interrupt) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, interrupt, [&] { return ended_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable_any cv_;
  bool ended_ = false;
};

/// The state of one run() call.
class Run {
 public:
  Run(const SessionOptions& opt, Monitor& monitor, std::stop_token interrupt)
      : opt_(opt), monitor_(monitor), interrupt_(std::move(interrupt)), argv_(opt.runner.argv) {}

  std::variant<SessionResult, SessionError> go();

 private:
  std::optional<SessionError> prepare_target();
  std::optional<SessionError> route_relay();
  void start_capture(const MonitorInfo& info);
  void drive_runner();
  void follow_runner(targets::RunHandle& h);
  void end_runner(targets::RunHandle& h);
  void switch_usb(std::stop_token stop, std::int64_t start_ns);
  void finish_capture();
  void restore_relay();
  void store_edges();
  void pull_markers();
  void store();
  /// Idles for `s` seconds of capture; false if interrupted.
  bool idle(double s) {
    end_.pause(interrupt_, seconds(s), false);
    return !interrupt_.stop_requested();
  }

  const SessionOptions& opt_;
  Monitor& monitor_;
  std::stop_token interrupt_;
  std::vector<std::string> argv_;  ///< what is launched: the runner's argv, or its wrapped form
  struct Teardown {
    targets::Target* t = nullptr;
    ~Teardown() {
      if (t) (void)t->teardown();
    }
  } teardown_;
  std::unique_ptr<RoutedRelay> routed_;
  std::unique_ptr<targets::RunHandle> runner_;
  std::unique_ptr<targets::TelemetrySampler> sampler_;
  CaptureEnd end_;
  std::jthread capture_;
  std::jthread switcher_;  ///< makes opt_.usb_switches while the capture runs
  SessionResult r_;
};

std::optional<SessionError> Run::prepare_target() {
  targets::Target* t = opt_.target;
  if (!t) return std::nullopt;
  // The target first: nothing is switched or recorded for a device that does not answer.
  if (auto p = t->prepare(); !p) return SessionError{SessionStep::target, p.error(), t->name()};
  teardown_.t = t;
  for (const auto& [local, remote] : opt_.pushes) {
    if (auto p = t->push(local, remote); !p)
      return SessionError{SessionStep::push, p.error(), local + ":" + remote};
  }
  if (opt_.wrap_runner && !argv_.empty()) {
    auto w = opt_.wrap_runner(*t, argv_);
    if (!w) return SessionError{SessionStep::runner, w.error(), argv_.front()};
    argv_ = std::move(*w);
  }
  return std::nullopt;
}

std::optional<SessionError> Run::route_relay() {
  if (opt_.relay.empty()) return std::nullopt;
  auto r = RoutedRelay::open(opt_.relay, opt_.route, opt_.safe_on);
  if (!r) return SessionError{SessionStep::relay, r.error(), opt_.relay};
  routed_ = std::move(r.value());
  return std::nullopt;
}

void Run::start_capture(const MonitorInfo& info) {
  if (opt_.before_capture) opt_.before_capture();
  if (opt_.target && !opt_.runner.argv.empty() && opt_.runner.launch_with_capture) {
    auto h = opt_.target->launch(argv_);
    if (h)
      runner_ = std::move(h.value());
    else
      r_.run_error = "runner " + opt_.runner.argv.front() + ": " + h.error().describe();
  }
  // The capture ends at its duration, on interrupt, or when this thread requests its stop.
  capture_ = std::jthread([this, &info](std::stop_token finish) {
    CaptureOptions copt = opt_.capture;
    copt.interrupt = interrupt_;
    copt.finish = finish;
    r_.capture = run_capture(monitor_, info, copt);
    end_.set();
  });
  if (opt_.target) {
    sampler_ = std::make_unique<targets::TelemetrySampler>(*opt_.target, opt_.telemetry_period);
    sampler_->start();
  }
  if (!opt_.usb_switches.empty() && opt_.set_usb)
    switcher_ = std::jthread([this, start = opt_.capture.clock->now_ns()](std::stop_token st) {
      switch_usb(std::move(st), start);
    });
}

void Run::switch_usb(std::stop_token stop, std::int64_t start_ns) {
  const Clock& clock = *opt_.capture.clock;
  std::mutex mu;
  std::condition_variable_any cv;
  std::size_t k = 0;
  for (const UsbSwitch& u : opt_.usb_switches) {
    const std::string what = "USB switch " + std::to_string(k++) + (u.on ? " (restore)" : " (cut)");
    const std::int64_t due = start_ns + std::llround(u.at_s * 1e9);
    // The clock may run faster than real time: look again every 10 ms at most.
    for (std::int64_t now = clock.now_ns();
         now < due && !stop.stop_requested() && !interrupt_.stop_requested() && !end_.ended();
         now = clock.now_ns()) {
      std::unique_lock lk(mu);
      cv.wait_for(
          lk, stop,
          std::min<std::chrono::nanoseconds>(std::chrono::nanoseconds(due - now), milliseconds(10)),
          [] { return false; });
    }
    if (stop.stop_requested() || interrupt_.stop_requested() || end_.ended()) {
      r_.edge_notes.push_back(what + ": not made, the capture ended first");
      continue;
    }
    SwitchEdge e;
    e.rising = !u.on;  // USB cut: the monitor carries the share USB supplied
    e.host_command_ns = clock.now_ns();
    auto done = opt_.set_usb(u.on);
    e.host_ack_ns = clock.now_ns();
    if (done)
      r_.edges.push_back(e);
    else
      r_.edge_notes.push_back(what + ": " + done.error().describe());
  }
}

void Run::drive_runner() {
  const RunnerPlan& plan = opt_.runner;
  if (!opt_.target || plan.argv.empty()) return;
  if (!plan.launch_with_capture) {
    if (!idle(plan.idle_before_s)) return;
    auto h = opt_.target->launch(argv_);
    if (!h) {
      r_.run_error = "runner " + plan.argv.front() + ": " + h.error().describe();
      return;
    }
    runner_ = std::move(h.value());
  }
  if (!runner_) return;
  follow_runner(*runner_);
  end_runner(*runner_);
  if (!plan.launch_with_capture) idle(plan.idle_after_s);
}

void Run::follow_runner(targets::RunHandle& h) {
  const RunnerPlan& plan = opt_.runner;
  std::optional<targets::MarkerTail> tail;
  if (!plan.markers.empty()) tail.emplace(*opt_.target, plan.markers);
  std::uint64_t tokens = 0;  // for the live line; the file's markers are the record
  const auto deadline = Steady::now() + seconds(plan.timeout_s);
  for (;;) {
    if (tail) {
      if (auto lines = tail->poll(); lines) {
        for (const auto& l : *lines)
          tokens += is_token_line(l) ? 1 : 0;
        if (opt_.on_tokens) opt_.on_tokens(tokens);
      }
    }
    if (!h.running()) return;
    if (interrupt_.stop_requested()) {
      r_.record.interrupted = true;
      return;
    }
    if (plan.timeout_s > 0 && Steady::now() >= deadline) {
      r_.record.timed_out = true;
      return;
    }
    // With the capture tied to its duration, the runner's part ends with it.
    if (plan.launch_with_capture && end_.ended()) return;
    end_.pause(interrupt_, milliseconds(50), plan.launch_with_capture);
  }
}

void Run::end_runner(targets::RunHandle& h) {
  const RunnerPlan& plan = opt_.runner;
  dataset::TargetRecord& rec = r_.record;
  const std::string& name = plan.argv.front();
  Result<targets::RunOutput> out =
      (rec.timed_out || rec.interrupted) ? h.terminate() : h.wait(plan.exit_grace);
  if (!out && plan.launch_with_capture && !rec.timed_out && !rec.interrupted)
    out = h.terminate(milliseconds(0));
  if (!out) {
    r_.run_error = "runner " + name + ": " + out.error().describe();
    return;
  }
  rec.exit_code = out->exit_code;
  r_.runner_output = out->out + out->err;
  if (rec.timed_out) {
    r_.run_error = "runner " + name + ": timed out after " + std::to_string(plan.timeout_s) +
                   " s and was terminated";
  } else if (!rec.interrupted && out->exit_code != 0) {
    r_.run_error = "runner " + name + " exited with code " + std::to_string(out->exit_code);
    if (!out->err.empty()) r_.run_error += "; its stderr: " + out->err;
  }
}

void Run::finish_capture() {
  // A capture tied to the runner ends now; any other runs to its duration (or interrupt).
  const bool tied_to_runner =
      opt_.target && !opt_.runner.argv.empty() && !opt_.runner.launch_with_capture;
  if (!tied_to_runner) end_.wait(interrupt_);
  if (sampler_) {
    r_.record.telemetry = sampler_->stop();
    r_.record.telemetry_samples = sampler_->samples();
    r_.record.telemetry_errors = sampler_->errors();
  }
  if (opt_.target) take_probes(*opt_.target, opt_.probes_per_burst, r_.record);
  if (switcher_.joinable()) {
    switcher_.request_stop();
    switcher_.join();
  }
  capture_.request_stop();
  capture_.join();
  monitor_.close();
}

void Run::restore_relay() {
  if (!routed_) return;
  auto restored = routed_->restore();
  r_.relay_safe_state = routed_->safe_state_text();
  routed_.reset();
  if (!restored) r_.relay_error = restored.error();
}

void Run::pull_markers() {
  const std::string& remote = opt_.runner.markers;
  if (!opt_.target || remote.empty()) return;
  const bool keep = !opt_.markers_copy.empty();
  const std::filesystem::path local =
      keep ? opt_.markers_copy
           : std::filesystem::path(opt_.capture.output.string() + ".markers.tmp");
  if (auto pulled = opt_.target->pull(remote, local); !pulled) {
    r_.marker_error = pulled.error();
  } else if (auto parsed = targets::read_marker_file(local); !parsed) {
    r_.marker_error = parsed.error();
  } else {
    // A kept copy is the source as stored; a temporary one is named by its device path.
    if (!keep) parsed->source = remote;
    r_.markers = std::move(*parsed);
  }
  if (!keep) {
    std::error_code ec;
    std::filesystem::remove(local, ec);
  }
}

void Run::store() {
  if (!r_.capture || !opt_.target) return;
  auto file = dataset::RunRecord::open(opt_.capture.output);
  if (!file) {
    r_.store_error = file.error();
    return;
  }
  if (opt_.target_attributes) r_.record.extra_attributes = opt_.target_attributes();
  Result<void> w{};
  if (r_.markers && opt_.before_store_markers)
    w = opt_.before_store_markers(*file, *r_.markers, r_.runner_output);
  if (w && r_.markers) w = file->write_markers("runner", *r_.markers);
  if (w) w = dataset::write_target_record(*file, r_.record, opt_.telemetry_group);
  auto closed = file->close();
  if (!w)
    r_.store_error = w.error();
  else if (!closed)
    r_.store_error = closed.error();
}

void Run::store_edges() {
  if (!r_.capture || r_.edges.empty()) return;
  // Read after the run: a device whose USB was cut may only answer once it is restored.
  if (opt_.target) {
    auto log = opt_.target->usb_power_log();
    if (log)
      pair_device_log(r_.edges, *log, r_.record.probes, r_.edge_notes);
    else
      r_.edge_notes.push_back("device log of USB power: " + log.error().describe());
  }
  if (auto w = write_relay_edges(opt_.capture.output, r_.edges); !w && !r_.store_error)
    r_.store_error = w.error();
}

std::variant<SessionResult, SessionError> Run::go() {
  if (std::filesystem::exists(opt_.capture.output))
    return SessionError{
        SessionStep::output,
        Error{Errc::invalid_argument, opt_.capture.output.string() +
                                          ": already exists; choose another output or remove it"},
        opt_.capture.output.string()};
  if (auto e = prepare_target()) return *e;
  if (auto e = route_relay()) return *e;
  auto info = monitor_.open();
  if (!info) {
    restore_relay();
    return SessionError{SessionStep::monitor, info.error(), ""};
  }
  dataset::TargetRecord& rec = r_.record;
  if (opt_.target) {
    rec.describe = opt_.target->describe();
    rec.argv = argv_;
    rec.probe_clock = opt_.probe_clock;
    take_probes(*opt_.target, opt_.probes_per_burst, rec);
  }
  start_capture(*info);
  drive_runner();
  finish_capture();
  if (opt_.after_capture) opt_.after_capture();
  restore_relay();
  pull_markers();
  store();
  store_edges();
  return std::move(r_);
}

}  // namespace

std::uint64_t SessionResult::token_markers() const {
  std::uint64_t n = 0;
  if (markers) {
    for (const auto& e : markers->events)
      n += e.kind == targets::MarkerKind::token ? 1 : 0;
  }
  return n;
}

void take_probes(targets::Target& target, int n, dataset::TargetRecord& rec) {
  for (int i = 0; i < n; ++i) {
    auto p = target.probe_clock();
    if (p) {
      rec.probes.push_back(*p);
    } else {
      ++rec.probe_failures;
      rec.last_probe_error = p.error();
    }
  }
}

namespace {

/// The first unused event of `e`'s direction inside the window probe `p` predicts, or npos.
std::size_t find_logged(const SwitchEdge& e, const targets::ClockProbe& p, std::int64_t slack,
                        const std::vector<targets::UsbPowerEvent>& log,
                        const std::vector<bool>& used) {
  const std::int64_t lo = e.host_command_ns + p.offset_ns() - slack;
  const std::int64_t hi = e.host_ack_ns + p.offset_ns() + slack;
  for (std::size_t i = 0; i < log.size(); ++i) {
    const targets::UsbPowerEvent& ev = log[i];
    if (!used[i] && ev.usb_powered != e.rising && ev.device_mono_ns >= lo &&
        ev.device_mono_ns <= hi + ev.window_ns)
      return i;
  }
  return std::string::npos;
}

}  // namespace

void pair_device_log(std::vector<SwitchEdge>& edges, const std::vector<targets::UsbPowerEvent>& log,
                     const std::vector<targets::ClockProbe>& probes,
                     std::vector<std::string>& notes) {
  constexpr double kDrift = 100e-6;             // allowance for the clocks' rates
  constexpr std::int64_t kMargin = 10'000'000;  // for what the switch itself takes
  std::vector<bool> used(log.size(), false);
  for (std::size_t k = 0; k < edges.size(); ++k) {
    SwitchEdge& e = edges[k];
    auto cost = [&](const targets::ClockProbe& p) {
      return static_cast<double>(p.rtt_ns()) +
             kDrift * std::abs(static_cast<double>(p.host_mid_ns() - e.host_command_ns));
    };
    // the best probe first; another when it predicts nothing (a probe taken across a clock
    // change, e.g. before the device's clocks were reset)
    std::vector<const targets::ClockProbe*> order;
    for (const auto& p : probes)
      order.push_back(&p);
    std::sort(order.begin(), order.end(), [&](auto* a, auto* b) { return cost(*a) < cost(*b); });
    std::size_t i = std::string::npos;
    for (const targets::ClockProbe* p : order) {
      i = find_logged(e, *p, static_cast<std::int64_t>(cost(*p)) + kMargin, log, used);
      if (i != std::string::npos) break;
    }
    if (i == std::string::npos) {
      notes.push_back("relay edge " + std::to_string(k) +
                      (e.rising ? " (USB cut)" : " (USB restored)") +
                      (probes.empty() ? ": no clock probes to find the device's log of it"
                                      : ": not in the device's log of USB power changes"));
      continue;
    }
    used[i] = true;
    e.device_log_ns = log[i].device_mono_ns;
    e.device_log_resolution_ns = log[i].window_ns;
  }
}

Result<void> write_relay_edges(const std::filesystem::path& file,
                               const std::vector<SwitchEdge>& edges) {
  std::vector<std::int64_t> cmd, ack, rising, log, res;
  for (const SwitchEdge& e : edges) {
    cmd.push_back(e.host_command_ns);
    ack.push_back(e.host_ack_ns);
    rising.push_back(e.rising ? 1 : 0);
    log.push_back(e.device_log_ns);
    res.push_back(e.device_log_resolution_ns);
  }
  dataset::GroupData g{"relay", {}, {}, {}};
  dataset::GroupData eg{"edges", {}, {}, {}};
  eg.columns = {{"host_command_ns", std::move(cmd), "ns"},
                {"host_ack_ns", std::move(ack), "ns"},
                {"rising", std::move(rising), ""},
                {"device_log_ns", std::move(log), "ns"},
                {"device_log_resolution_ns", std::move(res), "ns"}};
  g.groups.push_back(std::move(eg));
  return dataset::replace_group(file, g);
}

std::variant<SessionResult, SessionError> Session::run(Monitor& monitor,
                                                       std::stop_token interrupt) {
  Run r(opt_, monitor, std::move(interrupt));
  return r.go();
}

}  // namespace meltrig::rig
