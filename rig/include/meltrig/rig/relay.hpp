// The interface every relay board and switchable hub implements, and MELT-style exclusive
// routing (all channels off, then one on) with a safe state restored on every exit path.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "meltrig/fw/result.hpp"

namespace meltrig::rig {

/// What a relay driver knows after open().
struct RelayInfo {
  std::string driver;
  std::string port;
  int channels = 0;         ///< channels are numbered 1..channels
  bool active_low = false;  ///< the board's coil logic (handled by the driver)
  bool read_back = false;   ///< the board can report its state
  /// Channels on in the driver's safe state: none for relay boards; every port for switchable
  /// USB hubs unless their spec says safe=off (docs/hubs.md).
  std::vector<int> safe_on = {};
};

/// A relay board. Not thread-safe. Channel numbers are 1-based, as printed on boards.
class Relay {
 public:
  virtual ~Relay() = default;
  virtual Result<RelayInfo> open() = 0;
  /// Switches one channel; invalid_argument for a channel outside 1..channels.
  virtual Result<void> set(int channel, bool on) = 0;
  /// Switches every channel.
  virtual Result<void> set_all(bool on) = 0;
  /// The state last commanded per channel (index 0 = channel 1); nullopt until commanded.
  /// Boards without read-back cannot confirm it.
  virtual std::vector<std::optional<bool>> commanded() const = 0;
  virtual void close() = 0;
};

/// MELT's routing: all channels off, then `channel` on, so two devices are never powered at once.
Result<void> route_exclusive(Relay& relay, int channel);

/// Puts a relay into its safe state (all channels off, unless configured otherwise) when it goes
/// out of scope: on a normal end, an error return, or after SIGINT/SIGTERM have turned into a
/// normal return through the CLI's interrupt flag. For a hub pass RelayInfo::safe_on. A safe
/// state with every channel on is entered with set_all(true), never through all-off.
class RelaySafeState {
 public:
  /// `safe_on` lists the channels that are on in the safe state (default: none).
  explicit RelaySafeState(Relay& relay, std::vector<int> safe_on = {})
      : relay_(&relay), safe_on_(std::move(safe_on)) {}
  ~RelaySafeState() { (void)restore(); }
  RelaySafeState(const RelaySafeState&) = delete;
  RelaySafeState& operator=(const RelaySafeState&) = delete;
  /// Restores now (idempotent); returns the first failure.
  Result<void> restore();
  /// Leaves the relay as it is on scope exit.
  void release() { relay_ = nullptr; }

 private:
  Relay* relay_;
  std::vector<int> safe_on_;
};

}  // namespace meltrig::rig
