// Shared pieces of the command line: see cli_common.hpp.
#include "cli_common.hpp"

#include <unistd.h>

#include <cstdio>
#include <memory>

namespace meltrig::cli {

std::atomic<bool> g_interrupted{false};

int fail(const std::string& what) {
  std::fprintf(stderr, "meltrig: error: %s\n", what.c_str());
  return kFailure;
}

int usage(const std::string& what) {
  std::fprintf(stderr, "meltrig: usage error: %s\n", what.c_str());
  return kUsage;
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

int route_relay(const std::string& spec, int channel, const std::vector<int>& safe_on,
                std::unique_ptr<rig::RoutedRelay>& routed) {
  if (spec.empty()) return kOk;
  auto r = rig::RoutedRelay::open(spec, channel, safe_on);
  if (!r) return fail("--relay " + spec + ": " + r.error().describe());
  routed = std::move(r.value());
  return kOk;
}

int restore_relay(std::unique_ptr<rig::RoutedRelay>& routed, const std::string& spec) {
  if (!routed) return kOk;
  auto r = routed->restore();
  const std::string state = routed->safe_state_text();
  routed.reset();
  if (!r) return fail("relay " + spec + ": SAFE STATE NOT RESTORED: " + r.error().describe());
  std::fprintf(stderr, "relay %s: safe state restored (%s)\n", spec.c_str(), state.c_str());
  return kOk;
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
