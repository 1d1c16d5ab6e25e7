// A relay routed for the lifetime of an object: see routed_relay.hpp.
#include "meltrig/rig/routed_relay.hpp"

#include "meltrig/rig/registry.hpp"

namespace meltrig::rig {

Result<std::unique_ptr<RoutedRelay>> RoutedRelay::open(std::string_view spec, int channel,
                                                       std::vector<int> safe_on) {
  auto s = DeviceSpec::parse(spec);
  if (!s) return s.error();
  auto r = make_relay(*s);
  if (!r) return r.error();
  return open(std::move(r.value()), channel, std::move(safe_on));
}

Result<std::unique_ptr<RoutedRelay>> RoutedRelay::open(std::unique_ptr<Relay> relay, int channel,
                                                       std::vector<int> safe_on) {
  auto info = relay->open();
  if (!info) return info.error();
  if (safe_on.empty()) safe_on = info->safe_on;  // the driver's safe state (hubs: all ports on)
  auto check = [&](int ch, const char* what) -> Result<void> {
    if (ch >= 1 && ch <= info->channels) return {};
    return make_error(Errc::invalid_argument,
                      info->driver + ":" + info->port + ": " + what + " channel " +
                          std::to_string(ch) + " is outside 1.." + std::to_string(info->channels));
  };
  // Checked before anything is switched, so a typo never leaves a half-made route behind.
  Result<void> ok = check(channel, "route");
  for (int ch : safe_on)
    if (ok) ok = check(ch, "safe-state");
  if (!ok) {
    relay->close();
    return ok.error();
  }
  std::unique_ptr<RoutedRelay> rr(
      new RoutedRelay(std::move(relay), *info, channel, std::move(safe_on)));
  rr->guard_.emplace(*rr->relay_, rr->safe_on_);  // armed before the first switch
  if (auto r = route_exclusive(*rr->relay_, channel); !r) {
    auto back = rr->restore();
    return make_error(
        r.error().code,
        r.error().message + (back ? "; safe state (" + rr->safe_state_text() + ") restored"
                                  : "; safe state NOT restored: " + back.error().describe()));
  }
  return rr;
}

RoutedRelay::RoutedRelay(std::unique_ptr<Relay> relay, RelayInfo info, int channel,
                         std::vector<int> safe_on)
    : relay_(std::move(relay)),
      info_(std::move(info)),
      channel_(channel),
      safe_on_(std::move(safe_on)) {}

RoutedRelay::~RoutedRelay() {
  (void)restore();
}

Result<void> RoutedRelay::restore() {
  if (restored_) return *restored_;
  Result<void> r;
  if (guard_) r = guard_->restore();
  relay_->close();
  restored_ = r;
  return r;
}

std::string commanded_text(const Relay& relay) {
  const auto c = relay.commanded();
  if (c.empty()) return "no channels";
  std::string s;
  for (std::size_t i = 0; i < c.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(i + 1) + (c[i] ? (*c[i] ? " on" : " off") : " unknown");
  }
  return s;
}

std::string RoutedRelay::safe_state_text() const {
  if (safe_on_.empty()) return "all off";
  std::string s = "channel" + std::string(safe_on_.size() > 1 ? "s " : " ");
  for (std::size_t i = 0; i < safe_on_.size(); ++i)
    s += (i ? "," : "") + std::to_string(safe_on_[i]);
  return s + " on";
}

}  // namespace meltrig::rig
