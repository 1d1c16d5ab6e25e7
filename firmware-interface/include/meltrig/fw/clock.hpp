// The host's monotonic clock as int64 nanoseconds, injectable so timing code can be tested and
// emulators can run on an accelerated virtual clock. Wall-clock time is metadata, read once.
#pragma once

#include <chrono>
#include <cstdint>

namespace meltrig {

/// A monotonic clock in nanoseconds. Implementations must be safe to call from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ns() const = 0;
};

/// std::chrono::steady_clock.
class SteadyClock final : public Clock {
 public:
  std::int64_t now_ns() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  /// The process-wide instance.
  static const SteadyClock& instance() {
    static const SteadyClock c;
    return c;
  }
};

/// An accelerated clock: time runs `speed` times faster than `base` from the moment it is made,
/// so an emulator paced by elapsed time x rate and a capture's duration check both see hours pass
/// in minutes. Starts at the base clock's current time.
class VirtualClock final : public Clock {
 public:
  explicit VirtualClock(double speed, const Clock& base = SteadyClock::instance())
      : base_(base), speed_(speed), start_(base.now_ns()) {}
  std::int64_t now_ns() const override {
    return start_ +
           static_cast<std::int64_t>(static_cast<double>(base_.now_ns() - start_) * speed_);
  }
  double speed() const { return speed_; }

 private:
  const Clock& base_;
  double speed_;
  std::int64_t start_;
};

/// Wall-clock (UTC) time in nanoseconds since the Unix epoch; for metadata only.
inline std::int64_t wall_clock_unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace meltrig
