#include "meltrig/targets/target.hpp"

namespace meltrig::targets {

const TelemetryReading* TelemetrySnapshot::find(std::string_view name) const {
  for (const auto& r : readings)
    if (r.name == name) return &r;
  return nullptr;
}

void TelemetrySnapshot::append_to(Telemetry& t) const {
  for (const auto& r : readings) {
    auto& s = t.get(r.name, r.unit, "monotonic");
    if (s.description.empty()) s.description = r.description;
    s.t_ns.push_back(device_mono_ns);
    s.value.push_back(r.value);
  }
}

Result<ClockProbe> Target::probe_clock_burst(int n) {
  if (n < 1) return Error{Errc::invalid_argument, "probe_clock_burst: n must be >= 1"};
  std::optional<ClockProbe> best;
  std::optional<Error> last;
  for (int i = 0; i < n; ++i) {
    auto p = probe_clock();
    if (!p) {
      last = p.error();
      continue;
    }
    if (!best || p.value().rtt_ns() < best->rtt_ns()) best = p.value();
  }
  if (!best) return *last;
  return *best;
}

MarkerTail::MarkerTail(Target& target, std::string remote_path)
    : target_(target), path_(std::move(remote_path)) {}

Result<std::vector<std::string>> MarkerTail::poll() {
  auto chunk = target_.read_file(path_, offset_);
  if (!chunk) return chunk.error();
  offset_ += chunk.value().size();
  partial_ += chunk.value();
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (true) {
    auto nl = partial_.find('\n', start);
    if (nl == std::string::npos) break;
    lines.push_back(partial_.substr(start, nl - start));
    start = nl + 1;
  }
  partial_.erase(0, start);
  return lines;
}

TelemetrySampler::TelemetrySampler(Target& target, milliseconds period)
    : target_(target), period_(period) {}

TelemetrySampler::~TelemetrySampler() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

void TelemetrySampler::start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](std::stop_token st) { loop(st); });
}

void TelemetrySampler::loop(std::stop_token st) {
  // Paced by an absolute schedule (next = start + k x period), so slow reads do not add drift.
  auto next = std::chrono::steady_clock::now();
  std::mutex wait_mu;
  std::condition_variable_any cv;
  while (!st.stop_requested()) {
    auto snap = target_.read_telemetry();
    if (snap) {
      std::lock_guard lock(mu_);
      snap.value().append_to(telemetry_);
      ++samples_;
    } else {
      std::lock_guard lock(mu_);
      last_error_ = snap.error();
      ++errors_;
    }
    next += period_;
    auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // fell behind: skip missed slots rather than burst
    std::unique_lock lk(wait_mu);
    cv.wait_until(lk, st, next, [] { return false; });
  }
}

Telemetry TelemetrySampler::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  std::lock_guard lock(mu_);
  return telemetry_;
}

std::optional<Error> TelemetrySampler::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

}  // namespace meltrig::targets
