// Relay routing and safe state: see relay.hpp.
#include "meltrig/rig/relay.hpp"

#include <algorithm>

namespace meltrig::rig {

Result<void> route_exclusive(Relay& relay, int channel) {
  if (auto r = relay.set_all(false); !r) return r;
  return relay.set(channel, true);
}

Result<void> RelaySafeState::restore() {
  if (!relay_) return {};
  Relay* r = relay_;
  relay_ = nullptr;
  // Every channel on (a hub's default): no detour through all-off, which would cut every port.
  const auto n = static_cast<int>(r->commanded().size());
  bool all_on = n > 0;
  for (int ch = 1; ch <= n && all_on; ++ch)
    all_on = std::find(safe_on_.begin(), safe_on_.end(), ch) != safe_on_.end();
  if (all_on) return r->set_all(true);
  if (auto a = r->set_all(false); !a) return a;
  for (int ch : safe_on_) {
    if (auto b = r->set(ch, true); !b) return b;
  }
  return {};
}

}  // namespace meltrig::rig
