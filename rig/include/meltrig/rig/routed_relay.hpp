// A relay routed to one channel for as long as an object lives: made from a spec, opened, safe
// state armed, then routed exclusively (all off, then one on). However the owner ends (normal
// return, error return, or a signal turned into a return by the CLI's interrupt flag) the safe
// state is restored when the object goes. For `meltrig relay hold` and for capture commands that
// power one phone through a relay while they measure.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "meltrig/fw/result.hpp"
#include "meltrig/rig/relay.hpp"

namespace meltrig::rig {

/// What `relay` was last told, for run logs: "1 on, 2 off, 3 unknown" (unknown: never commanded,
/// or a command whose outcome is not known); "no channels" before open().
std::string commanded_text(const Relay& relay);

/// Owns a relay routed exclusively to one channel, and restores its safe state on destruction.
/// Not movable (the safe-state guard points at the relay): hold it by unique_ptr.
class RoutedRelay {
 public:
  /// Makes the relay from `spec` ("lcus:/dev/ttyUSB0:channels=4"), opens it and routes it;
  /// see the overload below.
  static Result<std::unique_ptr<RoutedRelay>> open(std::string_view spec, int channel,
                                                   std::vector<int> safe_on = {});
  /// Opens `relay`, takes the driver's safe state (RelayInfo::safe_on) when `safe_on` is empty,
  /// checks `channel` and every `safe_on` channel against its channel count
  /// (invalid_argument before anything is switched), arms the safe state, then routes. If
  /// routing fails the safe state is restored before the error is returned (its message then
  /// also says whether that restore worked).
  static Result<std::unique_ptr<RoutedRelay>> open(std::unique_ptr<Relay> relay, int channel,
                                                   std::vector<int> safe_on = {});
  ~RoutedRelay();
  RoutedRelay(const RoutedRelay&) = delete;
  RoutedRelay& operator=(const RoutedRelay&) = delete;

  const RelayInfo& info() const { return info_; }
  int channel() const { return channel_; }
  const std::vector<int>& safe_on() const { return safe_on_; }
  /// The relay, e.g. for commanded(). Switching it directly bypasses nothing: the safe state is
  /// still restored at the end.
  Relay& relay() { return *relay_; }
  /// Restores the safe state now and closes the relay; returns the first failure. Idempotent:
  /// later calls (and the destructor) return or do nothing.
  Result<void> restore();
  /// "all off" or "channels 1,3 on".
  std::string safe_state_text() const;

 private:
  RoutedRelay(std::unique_ptr<Relay> relay, RelayInfo info, int channel, std::vector<int> safe_on);

  std::unique_ptr<Relay> relay_;  // declared before guard_: the guard goes first
  RelayInfo info_;
  int channel_;
  std::vector<int> safe_on_;
  std::optional<RelaySafeState> guard_;
  std::optional<Result<void>> restored_;
};

}  // namespace meltrig::rig
