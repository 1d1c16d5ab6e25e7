// LCUS and ICStation relay drivers: see serial_relays.hpp.
#include "meltrig/rig/serial_relays.hpp"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <initializer_list>
#include <string_view>
#include <thread>

namespace meltrig::rig {
namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto l = [] {
    auto existing = spdlog::get("relay");
    return existing ? existing : spdlog::default_logger()->clone("relay");
  }();
  return l;
}

std::string usb_id(const fw::PortInfo& p) {
  char s[16];
  std::snprintf(s, sizeof s, "%04x:%04x", p.usb_vid & 0xFFFF, p.usb_pid & 0xFFFF);
  return s;
}

// Unknown options are errors, not silently ignored: a typo in "chanels=8" must not leave a
// board driven as the default 4 channels.
Result<void> only_options(const DeviceSpec& spec, std::initializer_list<std::string_view> known) {
  for (const auto& [k, v] : spec.options) {
    bool ok = false;
    for (auto n : known)
      ok = ok || k == n;
    if (!ok) {
      std::string list;
      for (auto n : known)
        list += (list.empty() ? "" : ", ") + std::string(n);
      return make_error(
          Errc::invalid_argument,
          "device spec \"" + spec.str() + "\": unknown option \"" + k + "\" (known: " + list + ")");
    }
  }
  return {};
}

Error not_open(const std::string& port) {
  return make_error(Errc::port_gone, port + ": relay is not open");
}

Error bad_channel(const std::string& driver, const std::string& port, int channel, int channels) {
  return make_error(Errc::invalid_argument, driver + ":" + port + ": channel " +
                                                std::to_string(channel) + " is outside 1.." +
                                                std::to_string(channels));
}

}  // namespace

// --- LCUS ----------------------------------------------------------------------------------------

LcusRelay::LcusRelay(Options opt) : opt_(std::move(opt)) {}

std::vector<Candidate> LcusRelay::find(std::span<const fw::PortInfo> ports) {
  std::vector<Candidate> out;
  for (const auto& p : ports) {
    if (p.usb_vid == fw::lcus::kUsbVid && p.usb_pid == fw::lcus::kUsbPid) {
      out.push_back({"lcus", "lcus:" + p.path + ":channels=4",
                     "USB " + usb_id(p) +
                         " (CH340): may be an LCUS relay board; set channels= "
                         "to the board's 1, 2, 4 or 8"});
    }
  }
  return out;
}

Result<std::unique_ptr<Relay>> LcusRelay::make(const DeviceSpec& spec) {
  if (auto r = only_options(spec, {"channels", "gap_ms", "timeout_ms"}); !r) return r.error();
  Options o;
  o.port = spec.port;
  auto ch = spec.int_option("channels", 4, 1, 8);
  if (!ch) return ch.error();
  if (*ch != 1 && *ch != 2 && *ch != 4 && *ch != 8) {
    return make_error(Errc::invalid_argument, "device spec \"" + spec.str() +
                                                  "\": channels=" + std::to_string(*ch) +
                                                  ": LCUS boards have 1, 2, 4 or 8 channels");
  }
  o.channels = static_cast<int>(*ch);
  auto gap = spec.int_option("gap_ms", o.frame_gap.count(), 0, 1000);
  if (!gap) return gap.error();
  o.frame_gap = std::chrono::milliseconds(*gap);
  auto to = spec.int_option("timeout_ms", o.io_timeout.count(), 1, 60000);
  if (!to) return to.error();
  o.io_timeout = std::chrono::milliseconds(*to);
  return std::unique_ptr<Relay>(new LcusRelay(o));
}

Result<RelayInfo> LcusRelay::open() {
  fw::SerialSettings s;
  s.baud = fw::lcus::kBaud;
  auto p = fw::SerialPort::open(opt_.port, s);
  if (!p) return p.error();
  port_.emplace(std::move(p.value()));
  commanded_.assign(static_cast<std::size_t>(opt_.channels), std::nullopt);
  log()->info("{}: LCUS-{} opened (write-only: relay states cannot be read back)", opt_.port,
              opt_.channels);
  return RelayInfo{"lcus", opt_.port, opt_.channels, false, false};
}

Result<void> LcusRelay::set(int channel, bool on) {
  if (!port_) return not_open(opt_.port);
  if (channel < 1 || channel > opt_.channels)
    return bad_channel("lcus", opt_.port, channel, opt_.channels);
  auto frame = fw::lcus::encode(channel, on);
  if (!frame) return frame.error();
  auto& slot = commanded_[static_cast<std::size_t>(channel - 1)];
  if (auto r = port_->write_all(*frame, opt_.io_timeout); !r) {
    // Part of the frame may have gone out: the board's state for this channel is now unknown.
    slot.reset();
    return r;
  }
  slot = on;
  if (opt_.frame_gap.count() > 0) std::this_thread::sleep_for(opt_.frame_gap);
  return {};
}

Result<void> LcusRelay::set_all(bool on) {
  // One frame per channel: the LCUS protocol has no documented all-channels frame.
  for (int ch = 1; ch <= opt_.channels; ++ch) {
    if (auto r = set(ch, on); !r) return r;
  }
  return {};
}

void LcusRelay::close() {
  port_.reset();
}

// --- ICStation -----------------------------------------------------------------------------------

IcstationRelay::IcstationRelay(Options opt) : opt_(std::move(opt)) {}

std::vector<Candidate> IcstationRelay::find(std::span<const fw::PortInfo> ports) {
  struct Bridge {
    int vid, pid;
    const char* name;
  };
  // The ICSE012A carries a Prolific PL2303; clones ship with CH340 or FTDI bridges.
  static constexpr Bridge kBridges[] = {
      {0x067b, 0x2303, "PL2303"}, {0x1a86, 0x7523, "CH340"}, {0x0403, 0x6001, "FTDI FT232R"}};
  std::vector<Candidate> out;
  for (const auto& p : ports) {
    for (const auto& b : kBridges) {
      if (p.usb_vid == b.vid && p.usb_pid == b.pid) {
        out.push_back({"icstation", "icstation:" + p.path,
                       "USB " + usb_id(p) + " (" + b.name +
                           "): may be an ICStation relay board; opening it identifies the board, "
                           "which works once per power cycle"});
      }
    }
  }
  return out;
}

Result<std::unique_ptr<Relay>> IcstationRelay::make(const DeviceSpec& spec) {
  if (auto r = only_options(spec, {"channels", "settle_ms", "timeout_ms"}); !r) return r.error();
  Options o;
  o.port = spec.port;
  if (spec.option("channels")) {
    auto ch = spec.int_option("channels", 0, 1, 8);
    if (!ch) return ch.error();
    if (!fw::icstation::board_for_channels(static_cast<int>(*ch))) {
      return make_error(Errc::invalid_argument, "device spec \"" + spec.str() +
                                                    "\": channels=" + std::to_string(*ch) +
                                                    ": ICStation boards have 2, 4 or 8 channels");
    }
    o.channels = static_cast<int>(*ch);
  }
  auto settle = spec.int_option("settle_ms", o.settle.count(), 0, 10000);
  if (!settle) return settle.error();
  o.settle = std::chrono::milliseconds(*settle);
  auto to = spec.int_option("timeout_ms", o.io_timeout.count(), 1, 60000);
  if (!to) return to.error();
  o.io_timeout = std::chrono::milliseconds(*to);
  return std::unique_ptr<Relay>(new IcstationRelay(o));
}

Result<fw::icstation::Board> IcstationRelay::identify() {
  namespace ic = fw::icstation;
  if (auto r = port_->discard_input(); !r) return r.error();
  const std::uint8_t req = ic::kIdentify;
  if (auto r = port_->write_all(std::span(&req, 1), opt_.io_timeout); !r) return r.error();
  std::uint8_t id = 0;
  auto n = port_->read_some(std::span(&id, 1), opt_.id_timeout);
  if (!n) {
    if (n.error().code != Errc::timeout) return n.error();
    // A board in command mode has just taken 0x50 as its bitmap and switched relays on; all
    // off (0xFF) undoes that. A board still waiting for identification ignores 0xFF.
    const std::uint8_t all_off = 0xFF;
    bool undone = port_->write_all(std::span(&all_off, 1), opt_.io_timeout).ok();
    return make_error(
        Errc::timeout,
        opt_.port + ": no answer to the ICStation identify request (0x50) within " +
            std::to_string(opt_.id_timeout.count()) +
            " ms. A board identified before and not power-cycled since is in command mode, "
            "where 0x50 is a relay bitmap (relays 1-4, 6, 8 on); " +
            (undone ? "0xFF (all off) was sent to undo it" : "sending 0xFF to undo it FAILED") +
            ". Power-cycle the board, or give channels=N to use it without identification.");
  }
  auto b = ic::board_for_id(id);
  if (!b) return make_error(b.error().code, opt_.port + ": " + b.error().message);
  return *b;
}

Result<RelayInfo> IcstationRelay::open() {
  namespace ic = fw::icstation;
  fw::SerialSettings s;
  s.baud = ic::kBaud;
  auto p = fw::SerialPort::open(opt_.port, s);
  if (!p) return p.error();
  port_.emplace(std::move(p.value()));
  if (opt_.channels) {
    // Sending 0x50 or 0x51 now would switch relays: the board is told to be in command mode.
    board_ = ic::board_for_channels(*opt_.channels).value();
    log()->info("{}: ICStation {} assumed in command mode (channels={})", opt_.port, board_.model,
                board_.channels);
  } else {
    auto b = identify();
    if (!b) {
      port_.reset();
      return b.error();
    }
    board_ = *b;
    const std::uint8_t enter = ic::kEnterCommandMode;
    if (auto r = port_->write_all(std::span(&enter, 1), opt_.io_timeout); !r) {
      port_.reset();
      return r.error();
    }
    if (opt_.settle.count() > 0) std::this_thread::sleep_for(opt_.settle);
    log()->info("{}: ICStation {} identified (ID 0x{:02X}, {} relays), command mode", opt_.port,
                board_.model, board_.id, board_.channels);
  }
  commanded_.assign(static_cast<std::size_t>(board_.channels), std::nullopt);
  return RelayInfo{"icstation", opt_.port, board_.channels, true, false};
}

Result<void> IcstationRelay::send_bitmap(const std::vector<std::optional<bool>>& want) {
  std::uint8_t on_mask = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    if (want[i].value_or(false)) on_mask = static_cast<std::uint8_t>(on_mask | (1u << i));
  auto wire = fw::icstation::encode_bitmap(on_mask, board_.channels);
  if (!wire) return wire.error();
  const std::uint8_t byte = *wire;
  if (auto r = port_->write_all(std::span(&byte, 1), opt_.io_timeout); !r) {
    // The byte may or may not have reached the board: channels it would change are unknown.
    for (std::size_t i = 0; i < want.size(); ++i)
      if (commanded_[i] != std::optional<bool>(want[i].value_or(false))) commanded_[i].reset();
    return r;
  }
  for (std::size_t i = 0; i < want.size(); ++i)
    commanded_[i] = want[i].value_or(false);
  return {};
}

Result<void> IcstationRelay::set(int channel, bool on) {
  if (!port_) return not_open(opt_.port);
  if (channel < 1 || channel > board_.channels)
    return bad_channel("icstation", opt_.port, channel, board_.channels);
  auto want = commanded_;
  want[static_cast<std::size_t>(channel - 1)] = on;
  return send_bitmap(want);
}

Result<void> IcstationRelay::set_all(bool on) {
  if (!port_) return not_open(opt_.port);
  return send_bitmap(std::vector<std::optional<bool>>(commanded_.size(), on));
}

void IcstationRelay::close() {
  port_.reset();
}

}  // namespace meltrig::rig
