// Relay routing and safe state: see relay.hpp.
#include "meltrig/rig/relay.hpp"

namespace meltrig::rig {

Result<void> route_exclusive(Relay& relay, int channel) {
  if (auto r = relay.set_all(false); !r) return r;
  return relay.set(channel, true);
}

Result<void> RelaySafeState::restore() {
  if (!relay_) return {};
  Relay* r = relay_;
  relay_ = nullptr;
  if (auto a = r->set_all(false); !a) return a;
  for (int ch : safe_on_) {
    if (auto b = r->set(ch, true); !b) return b;
  }
  return {};
}

}  // namespace meltrig::rig
