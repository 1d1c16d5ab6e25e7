// One measured run: see session.hpp.
#include "meltrig/rig/session.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

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
  void finish_capture();
  void restore_relay();
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

std::variant<SessionResult, SessionError> Session::run(Monitor& monitor,
                                                       std::stop_token interrupt) {
  Run r(opt_, monitor, std::move(interrupt));
  return r.go();
}

}  // namespace meltrig::rig
