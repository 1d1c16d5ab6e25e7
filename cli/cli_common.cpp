// Shared pieces of the command line: see cli_common.hpp.
#include "cli_common.hpp"

#include <pthread.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>

namespace meltrig::cli {

std::atomic<bool> g_interrupted{false};

namespace {
std::stop_source g_interrupt;
// Wakes the watcher thread when it is to end (never sent by anyone else).
constexpr int kWakeSignal = SIGUSR2;

sigset_t watched_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, kWakeSignal);
  return set;
}
}  // namespace

std::stop_token interrupt_token() {
  return g_interrupt.get_token();
}

void serve_until_stopped(double seconds, const std::function<bool()>& running) {
  using clock = std::chrono::steady_clock;
  const auto until = seconds > 0 ? clock::now() + std::chrono::duration_cast<clock::duration>(
                                                      std::chrono::duration<double>(seconds))
                                 : clock::time_point::max();
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lk(mu);
  std::stop_token st = interrupt_token();
  // `running` has no event of its own: it is looked at every 50 ms; the interrupt wakes at once.
  while (!st.stop_requested() && clock::now() < until && (!running || running())) {
    const auto next = std::min(until, clock::now() + std::chrono::milliseconds(50));
    cv.wait_until(lk, st, next, [] { return false; });
  }
}

InterruptWatcher::InterruptWatcher() {
  const sigset_t set = watched_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::jthread([set](std::stop_token st) {
    while (!st.stop_requested()) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0 || sig == kWakeSignal) continue;
      g_interrupted.store(true);
      g_interrupt.request_stop();
    }
  });
}

InterruptWatcher::~InterruptWatcher() {
  thread_.request_stop();
  pthread_kill(thread_.native_handle(), kWakeSignal);
}

int relay_report(const std::optional<Error>& error, const std::string& safe_state,
                 const std::string& spec) {
  if (spec.empty()) return kOk;
  if (error) return fail("relay " + spec + ": SAFE STATE NOT RESTORED: " + error->describe());
  std::fprintf(stderr, "relay %s: safe state restored (%s)\n", spec.c_str(), safe_state.c_str());
  return kOk;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "meltrig: error: %s\n", what.c_str());
  return kFailure;
}

int usage(const std::string& what) {
  std::fprintf(stderr, "meltrig: usage error: %s\n", what.c_str());
  return kUsage;
}

int write_file_whole(const std::string& path,
                     const std::function<Result<void>(std::ostream&)>& write) {
  const std::string tmp = path + ".part";
  std::error_code ec;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return fail(path + ": cannot create " + tmp + ": " + std::strerror(errno));
    auto res = write(out);
    out.close();
    if (!res || !out) {
      std::filesystem::remove(tmp, ec);
      return fail(res ? path + ": cannot write: " + std::strerror(errno) : res.error().describe());
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return fail(path + ": cannot write: " + ec.message());
  }
  return kOk;
}

namespace {
std::vector<dataset::Attribute> g_invocation;
}

void set_invocation(int argc, char** argv) {
  std::string cmdline;
  for (int i = 0; i < argc; ++i)
    cmdline += (i ? " " : "") + std::string(argv[i]);
  g_invocation = {{"command_line", cmdline}};
}

const std::vector<dataset::Attribute>& invocation_attributes() {
  return g_invocation;
}

void print_summary(const rig::CaptureSummary& s) {
  const char* state = s.state == dataset::CaptureState::complete      ? "complete"
                      : s.state == dataset::CaptureState::interrupted ? "interrupted"
                      : s.state == dataset::CaptureState::failed      ? "FAILED"
                                                                      : "running";
  double secs = s.sample_rate_hz > 0 ? static_cast<double>(s.samples) / s.sample_rate_hz : 0;
  std::printf("capture %s: %s\n", state, s.output.c_str());
  if (!s.end_reason.empty()) std::printf("  ended:          %s\n", s.end_reason.c_str());
  std::printf("  samples:        %llu (%llu valid) = %.3f s at %.0f Hz\n",
              static_cast<unsigned long long>(s.samples),
              static_cast<unsigned long long>(s.valid_samples), secs, s.sample_rate_hz);
  std::printf("  mean current:   %.6f A\n", s.mean_current_a);
  std::printf("  mean voltage:   %.6f V\n", s.mean_voltage_v);
  std::printf("  mean power:     %.6f W\n", s.mean_power_w);
  std::printf("  energy:         %.6f J\n", s.energy_j);
  std::printf("  losses:        ");
  bool any = false;
  for (const auto& c : s.counters) {
    if (c.value) {
      std::printf(" %s=%llu", c.name, static_cast<unsigned long long>(c.value));
      any = true;
    }
  }
  std::printf("%s\n", any ? "" : " none");
}

std::function<void(const rig::CaptureProgress&)> status_line(bool quiet) {
  if (quiet) return {};
  bool tty = ::isatty(STDERR_FILENO);
  auto last_line = std::make_shared<double>(-10.0);
  return [tty, last_line](const rig::CaptureProgress& p) {
    if (!tty && p.elapsed_s - *last_line < 2.0) return;  // a line every 2 s into logs
    *last_line = p.elapsed_s;
    std::fprintf(stderr, "%s%7.1f s  %10llu samples  %8.0f Sa/s  %8.4f W  lost %llu%s",
                 tty ? "\r" : "", p.elapsed_s, static_cast<unsigned long long>(p.samples),
                 p.rate_hz, p.mean_power_w, static_cast<unsigned long long>(p.lost_samples),
                 tty ? "   " : "\n");
    std::fflush(stderr);
  };
}

}  // namespace meltrig::cli
