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

/// Wall-clock (UTC) time in nanoseconds since the Unix epoch; for metadata only.
inline std::int64_t wall_clock_unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace meltrig
