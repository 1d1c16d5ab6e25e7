// YKUSH and standard USB hub drivers: see usb_hubs.hpp.
#include "meltrig/rig/usb_hubs.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>

#include "meltrig/fw/usb_bulk.hpp"

namespace meltrig::rig {
namespace yk = fw::ykush;
namespace uh = fw::uhub;
namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto l = [] {
    auto existing = spdlog::get("hub");
    return existing ? existing : spdlog::default_logger()->clone("hub");
  }();
  return l;
}

constexpr std::string_view kSharedOptions[] = {"timeout_ms", "verify", "safe"};

bool is_shared(std::string_view key) {
  return std::find(std::begin(kSharedOptions), std::end(kSharedOptions), key) !=
         std::end(kSharedOptions);
}

Error spec_error(const DeviceSpec& spec, Errc code, const std::string& why) {
  return make_error(code, "device spec \"" + spec.str() + "\": " + why);
}

Error not_open(const std::string& spec) {
  return make_error(Errc::port_gone, spec + ": hub is not open");
}

Error bad_port(const std::string& spec, int port, int ports) {
  return make_error(Errc::invalid_argument, spec + ": port " + std::to_string(port) +
                                                " is outside 1.." + std::to_string(ports));
}

Error prefixed(const Error& e, const std::string& where) {
  return make_error(e.code, where + ": " + e.message);
}

/// The PORT part of a spec ("usb:1-1.4" of "uhub:usb:1-1.4:exact=1").
std::string port_of(const std::string& spec) {
  auto d = DeviceSpec::parse(spec);
  return d ? d->port : spec;
}

std::vector<int> all_ports(int n, bool on) {
  std::vector<int> v;
  for (int p = 1; on && p <= n; ++p)
    v.push_back(p);
  return v;
}

/// The options meant for the emulator: everything but the driver's own.
std::vector<std::pair<std::string, std::string>> emulator_options(const DeviceSpec& spec) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& kv : spec.options)
    if (!is_shared(kv.first)) out.push_back(kv);
  return out;
}

std::atomic<YkushHub::EmulatorFactory> g_ykush_factory{nullptr};
std::atomic<UsbHub::EmulatorFactory> g_uhub_factory{nullptr};

}  // namespace

Result<void> parse_hub_options(const DeviceSpec& spec, std::initializer_list<std::string_view> own,
                               HubOptions& opt) {
  for (const auto& [k, v] : spec.options) {
    if (is_shared(k) || std::find(own.begin(), own.end(), k) != own.end()) continue;
    std::string known;
    for (auto n : kSharedOptions)
      known += (known.empty() ? "" : ", ") + std::string(n);
    for (auto n : own)
      known += ", " + std::string(n);
    return spec_error(spec, Errc::invalid_argument,
                      "unknown option \"" + k + "\" (known: " + known + ")");
  }
  opt.spec = spec.str();
  auto to = spec.int_option("timeout_ms", opt.io_timeout.count(), 1, 60000);
  if (!to) return to.error();
  opt.io_timeout = std::chrono::milliseconds(*to);
  auto verify = spec.int_option("verify", opt.verify ? 1 : 0, 0, 1);
  if (!verify) return verify.error();
  opt.verify = *verify == 1;
  if (auto s = spec.option("safe")) {
    if (*s != "on" && *s != "off")
      return spec_error(spec, Errc::invalid_argument, "option safe=" + *s + " is not on or off");
    opt.safe_on = *s == "on";
  }
  return {};
}

namespace {
/// An emulated hub's driver options (the rest belong to the emulator).
Result<void> parse_driver_options(const DeviceSpec& spec, HubOptions& o) {
  DeviceSpec own{spec.driver, spec.port, {}};
  for (const auto& kv : spec.options)
    if (is_shared(kv.first)) own.options.push_back(kv);
  if (auto r = parse_hub_options(own, {}, o); !r) return r;
  o.spec = spec.str();
  return {};
}
}  // namespace

// --- YKUSH ---------------------------------------------------------------------------------------

YkushHub::YkushHub(std::unique_ptr<fw::HidReportTransport> transport, Options opt)
    : transport_(std::move(transport)), opt_(std::move(opt)) {}

void YkushHub::set_emulator_factory(EmulatorFactory f) {
  g_ykush_factory.store(f);
}

std::vector<Candidate> YkushHub::find(std::span<const fw::PortInfo>) {
  std::vector<Candidate> out;
  for (auto pid : {yk::kProductId, yk::kYkush3ProductId, yk::kLegacyProductId}) {
    auto devices = fw::list_usb_devices(yk::kVendorId, pid);
    if (!devices) {
      log()->info("cannot enumerate USB devices: {}", devices.error().describe());
      return out;
    }
    for (const auto& d : *devices) {
      char id[16];
      std::snprintf(id, sizeof id, "%04x:%04x", d.vid, d.pid);
      std::string spec = "ykush:usb";
      std::string opts = d.serial.empty() ? "" : "serial=" + d.serial;
      if (pid == yk::kLegacyProductId) opts += std::string(opts.empty() ? "" : ",") + "legacy=1";
      if (!opts.empty()) spec += ":" + opts;
      std::string why = "USB " + std::string(id) + " bus " + std::to_string(d.bus) + " address " +
                        std::to_string(d.address) + " '" + d.product + "'";
      if (!d.note.empty()) why += " (" + d.note + ")";
      out.push_back({"ykush", spec, why});
    }
  }
  return out;
}

Result<std::unique_ptr<Relay>> YkushHub::make(const DeviceSpec& spec) {
  Options o;
  const bool emulated = spec.port == "emulated";
  if (!emulated && spec.port != "usb") {
    return spec_error(spec, Errc::invalid_argument,
                      "YKUSH hubs are named ykush:usb[:serial=S,...] or ykush:emulated[:...]");
  }
  if (emulated) {
    if (auto r = parse_driver_options(spec, o); !r) return r.error();
    if (spec.option("legacy") == "1") o.framing = yk::Framing::legacy;  // the board's framing
    auto factory = g_ykush_factory.load();
    if (!factory)
      return spec_error(spec, Errc::invalid_argument, "this program has no YKUSH emulator");
    auto t = factory(emulator_options(spec));
    if (!t) return spec_error(spec, t.error().code, t.error().message);
    return std::unique_ptr<Relay>(new YkushHub(std::move(t.value()), o));
  }
  if (auto r = parse_hub_options(spec, {"serial", "ports", "legacy"}, o); !r) return r.error();
  if (spec.option("ports")) {
    auto n = spec.int_option("ports", 3, 1, yk::kMaxPorts);
    if (!n) return n.error();
    o.ports = static_cast<int>(*n);
  }
  auto legacy = spec.int_option("legacy", 0, 0, 1);
  if (!legacy) return legacy.error();
  if (*legacy) o.framing = yk::Framing::legacy;
  auto serial = spec.option("serial");
  const std::array<std::uint16_t, 3> pids{yk::kProductId, yk::kYkush3ProductId,
                                          yk::kLegacyProductId};
  auto t = fw::LibusbHid::open(yk::kVendorId, pids, serial);
  if (!t) return spec_error(spec, t.error().code, t.error().message);
  if ((*t)->pid() == yk::kLegacyProductId) o.framing = yk::Framing::legacy;
  return std::unique_ptr<Relay>(new YkushHub(std::move(t.value()), o));
}

std::string YkushHub::where() const {
  return opt_.spec + " (" + (transport_ ? transport_->name() : std::string("closed")) + ")";
}

Result<yk::Reply> YkushHub::transact(const yk::Command& c) {
  if (!transport_ || !open_) return not_open(opt_.spec);
  std::array<std::uint8_t, yk::kReportSize> buf{};
  if (drain_) {
    // A reply that came late would otherwise answer the next command.
    for (int i = 0; i < 16; ++i)
      if (!transport_->read_report(buf, std::chrono::milliseconds(1))) break;
    drain_ = false;
  }
  if (auto w = transport_->write_report(yk::encode(c, opt_.framing), opt_.io_timeout); !w)
    return prefixed(w.error(), where() + ": sending " + c.describe());
  auto n = transport_->read_report(buf, opt_.io_timeout);
  if (!n) {
    drain_ = true;
    if (n.error().code == Errc::timeout) {
      return make_error(Errc::timeout, where() + ": no reply to " + c.describe() + " within " +
                                           std::to_string(opt_.io_timeout.count()) + " ms");
    }
    return prefixed(n.error(), where() + ": reading the reply to " + c.describe());
  }
  auto r = yk::parse_reply(c, std::span<const std::uint8_t>(buf.data(), *n));
  if (!r) {
    drain_ = true;
    return prefixed(r.error(), where());
  }
  return r;
}

Result<bool> YkushHub::query(int port) {
  auto c = yk::query_command(port);
  if (!c) return c.error();
  auto r = transact(*c);
  if (!r) return r.error();
  if (!r->ok) {
    return make_error(Errc::protocol_error,
                      where() + ": the board refused " + c->describe() + " (status byte not 0x01)");
  }
  return *r->powered;
}

Result<RelayInfo> YkushHub::open() {
  if (!transport_) return not_open(opt_.spec);
  open_ = true;
  drain_ = true;  // whatever an earlier program left unread
  auto fwv = transact({yk::Command::Kind::firmware_version, 0});
  if (!fwv) {
    open_ = false;
    return fwv.error();
  }
  if (fwv->ok) firmware_ = std::pair<int, int>(*fwv->major, *fwv->minor);
  auto count = transact({yk::Command::Kind::port_count, 0});
  if (!count) {
    open_ = false;
    return count.error();
  }
  ports_ = count->ok && *count->ports >= 1 && *count->ports <= yk::kMaxPorts ? *count->ports : 3;
  if (opt_.ports) ports_ = *opt_.ports;
  commanded_.assign(static_cast<std::size_t>(ports_), std::nullopt);
  log()->info("{}: YKUSH with {} ports, firmware {}", where(), ports_,
              firmware_ ? std::to_string(firmware_->first) + "." + std::to_string(firmware_->second)
                        : std::string("unknown (0xF0 refused)"));
  RelayInfo info{"ykush", port_of(opt_.spec), ports_, false, true};
  info.safe_on = all_ports(ports_, opt_.safe_on);
  return info;
}

Result<void> YkushHub::switch_checked(const yk::Command& c) {
  const bool all = c.kind == yk::Command::Kind::all_up || c.kind == yk::Command::Kind::all_down;
  const bool on = c.kind == yk::Command::Kind::all_up || c.kind == yk::Command::Kind::port_up;
  const int first = all ? 1 : c.port, last = all ? ports_ : c.port;
  auto forget = [&] {
    for (int p = first; p <= last; ++p)
      commanded_[static_cast<std::size_t>(p - 1)].reset();
  };
  auto r = transact(c);
  if (!r) {
    forget();
    return r.error();
  }
  if (!r->ok) {
    forget();
    return make_error(Errc::protocol_error,
                      where() + ": the board refused " + c.describe() + " (status byte not 0x01)");
  }
  for (int p = first; p <= last; ++p)
    commanded_[static_cast<std::size_t>(p - 1)] = on;
  if (!opt_.verify) return {};
  for (int p = first; p <= last; ++p) {
    auto now = query(p);
    if (!now) return now.error();
    if (*now != on) {
      commanded_[static_cast<std::size_t>(p - 1)].reset();
      return make_error(Errc::io_error, where() + ": port " + std::to_string(p) + " reads " +
                                            (*now ? "powered" : "off") + " after " + c.describe() +
                                            ": the board did not switch it");
    }
  }
  return {};
}

Result<void> YkushHub::set(int channel, bool on) {
  if (!open_) return not_open(opt_.spec);
  if (channel < 1 || channel > ports_) return bad_port(opt_.spec, channel, ports_);
  auto c = yk::port_command(channel, on);
  if (!c) return c.error();
  return switch_checked(*c);
}

Result<void> YkushHub::set_all(bool on) {
  if (!open_) return not_open(opt_.spec);
  return switch_checked({on ? yk::Command::Kind::all_up : yk::Command::Kind::all_down, 0});
}

Result<std::vector<bool>> YkushHub::read_power() {
  std::vector<bool> out;
  for (int p = 1; p <= ports_; ++p) {
    auto q = query(p);
    if (!q) return q.error();
    out.push_back(*q);
  }
  return out;
}

void YkushHub::close() {
  open_ = false;
  transport_.reset();
}

// --- standard hub --------------------------------------------------------------------------------

UsbHub::UsbHub(std::vector<std::unique_ptr<fw::UsbControlTransport>> halves, Options opt)
    : opt_(std::move(opt)) {
  for (auto& t : halves) {
    const bool ss = t->bcd_usb() >= uh::kSuperSpeedBcd;
    halves_.push_back(Half{std::move(t), ss, {}});
  }
}

void UsbHub::set_emulator_factory(EmulatorFactory f) {
  g_uhub_factory.store(f);
}

std::string UsbHub::where(const Half& h) const {
  return opt_.spec + " (" + (h.t ? h.t->name() : std::string("closed")) + ")";
}

Result<std::size_t> UsbHub::request(Half& h, const uh::Setup& s, std::span<std::uint8_t> data) {
  if (!open_ || !h.t) return not_open(opt_.spec);
  auto n = h.t->control(s, data, opt_.io_timeout);
  if (!n) return prefixed(n.error(), where(h) + ": " + s.describe());
  return n;
}

Result<bool> UsbHub::half_power(Half& h, int port) {
  auto s = uh::port_status(port);
  if (!s) return s.error();
  std::array<std::uint8_t, uh::kPortStatusSize> buf{};
  auto n = request(h, *s, buf);
  if (!n) return n.error();
  auto st = uh::parse_port_status(std::span<const std::uint8_t>(buf.data(), *n));
  if (!st) return prefixed(st.error(), where(h) + ": " + s->describe());
  return st->powered(h.superspeed);
}

Result<void> UsbHub::switch_half(Half& h, int port, bool on) {
  auto s = uh::port_power(port, on);
  if (!s) return s.error();
  if (auto n = request(h, *s, {}); !n) return n.error();
  if (!opt_.verify) return {};
  auto now = half_power(h, port);
  if (!now) return now.error();
  if (*now != on) {
    return make_error(Errc::io_error, where(h) + ": port " + std::to_string(port) + " reads " +
                                          (*now ? "powered" : "off") + " after " + s->describe() +
                                          ": the hub did not switch it");
  }
  return {};
}

Result<RelayInfo> UsbHub::open() {
  if (halves_.empty()) return not_open(opt_.spec);
  open_ = true;
  ports_ = 0;
  for (auto& h : halves_) {
    const uh::Setup s = uh::hub_descriptor(h.superspeed);
    std::array<std::uint8_t, uh::kDescriptorRead> buf{};
    auto n = request(h, s, buf);
    auto d =
        n ? uh::parse_hub_descriptor(std::span<const std::uint8_t>(buf.data(), *n), h.superspeed)
          : Result<uh::HubDescriptor>(n.error());
    if (!d) {
      open_ = false;
      return n ? prefixed(d.error(), where(h)) : d.error();
    }
    if (!d->switchable()) {
      open_ = false;
      char ch[8];
      std::snprintf(ch, sizeof ch, "0x%04X", d->characteristics);
      return make_error(Errc::unsupported, where(h) + ": the hub descriptor (wHubCharacteristics " +
                                               ch + ") says " +
                                               (d->per_port_power() ? "no over-current protection"
                                                : d->ganged_power() ? "ganged power switching"
                                                                    : "no power switching") +
                                               ": its ports cannot be switched one by one");
    }
    h.desc = *d;
    ports_ = ports_ == 0 ? d->ports : std::min(ports_, d->ports);
  }
  commanded_.assign(static_cast<std::size_t>(ports_), std::nullopt);
  log()->info("{}: {} port(s), {} half/halves", opt_.spec, ports_, halves_.size());
  RelayInfo info{"uhub", port_of(opt_.spec), ports_, false, true};
  info.safe_on = all_ports(ports_, opt_.safe_on);
  return info;
}

Result<void> UsbHub::set(int channel, bool on) {
  if (!open_) return not_open(opt_.spec);
  if (channel < 1 || channel > ports_) return bad_port(opt_.spec, channel, ports_);
  auto& slot = commanded_[static_cast<std::size_t>(channel - 1)];
  slot.reset();
  for (auto& h : halves_) {
    if (auto r = switch_half(h, channel, on); !r) return r;
  }
  slot = on;
  return {};
}

Result<void> UsbHub::set_all(bool on) {
  // The hub class has no all-ports request: one per port, every half.
  for (int p = 1; p <= ports_; ++p) {
    if (auto r = set(p, on); !r) return r;
  }
  return open_ ? Result<void>{} : Result<void>(not_open(opt_.spec));
}

Result<std::vector<bool>> UsbHub::read_power() {
  std::vector<bool> out(static_cast<std::size_t>(ports_), false);
  for (auto& h : halves_) {
    for (int p = 1; p <= ports_; ++p) {
      auto on = half_power(h, p);
      if (!on) return on.error();
      if (*on) out[static_cast<std::size_t>(p - 1)] = true;
    }
  }
  return out;
}

void UsbHub::close() {
  open_ = false;
  for (auto& h : halves_)
    h.t.reset();
}

std::vector<Candidate> UsbHub::find(std::span<const fw::PortInfo>) {
  std::vector<Candidate> out;
  auto hubs = fw::list_usb_hubs();
  if (!hubs) {
    log()->info("cannot enumerate USB hubs: {}", hubs.error().describe());
    return out;
  }
  std::vector<uh::HubId> ids;
  for (const auto& h : *hubs)
    ids.push_back(h.id);
  for (std::size_t i = 0; i < hubs->size(); ++i) {
    const auto& h = (*hubs)[i];
    auto dual = uh::find_dual(ids, i);
    if (h.id.superspeed() && dual) continue;  // named by its USB 2 half
    char id[40];
    std::snprintf(id, sizeof id, "USB hub %04x:%04x USB %x.%02x", h.id.vid, h.id.pid,
                  h.id.bcd_usb >> 8, h.id.bcd_usb & 0xFF);
    std::string why = id;
    if (!h.product.empty()) why += " '" + h.product + "'";
    if (h.descriptor) {
      if (!h.descriptor->switchable()) continue;
      why += ", " + std::to_string(h.descriptor->ports) + " ports, per-port power switching";
    } else {
      why += ", " + h.note;
    }
    if (dual) why += ", SuperSpeed half at " + (*hubs)[*dual].id.location.str();
    out.push_back({"uhub", "uhub:usb:" + h.id.location.str(), why});
  }
  return out;
}

namespace {

/// The hub at `loc` and, unless `exact`, its other half: USB 2 half first.
Result<std::vector<std::unique_ptr<fw::UsbControlTransport>>> open_real_hub(const uh::Location& loc,
                                                                            bool exact) {
  std::vector<uh::Location> where{loc};
  if (!exact) {
    auto hubs = fw::list_usb_hubs();
    if (!hubs) return hubs.error();
    std::vector<uh::HubId> ids;
    std::optional<std::size_t> self;
    for (std::size_t i = 0; i < hubs->size(); ++i) {
      ids.push_back((*hubs)[i].id);
      if ((*hubs)[i].id.location == loc) self = i;
    }
    if (!self) {
      return make_error(Errc::not_found, "no USB hub at location " + loc.str() +
                                             " (`meltrig devices` lists the hubs it sees)");
    }
    if (auto dual = uh::find_dual(ids, *self)) {
      where.push_back(ids[*dual].location);
      if (ids[*self].superspeed()) std::swap(where[0], where[1]);
    }
  }
  std::vector<std::unique_ptr<fw::UsbControlTransport>> out;
  for (const auto& l : where) {
    auto t = fw::LibusbHub::open(l);
    if (!t) return t.error();
    out.push_back(std::move(t.value()));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Relay>> UsbHub::make(const DeviceSpec& spec) {
  Options o;
  if (spec.port == "emulated") {
    if (auto r = parse_driver_options(spec, o); !r) return r.error();
    auto factory = g_uhub_factory.load();
    if (!factory)
      return spec_error(spec, Errc::invalid_argument, "this program has no hub emulator");
    auto t = factory(emulator_options(spec));
    if (!t) return spec_error(spec, t.error().code, t.error().message);
    return std::unique_ptr<Relay>(new UsbHub(std::move(t.value()), o));
  }
  if (!spec.port.starts_with("usb:")) {
    return spec_error(spec, Errc::invalid_argument,
                      "standard hubs are named uhub:usb:LOCATION (e.g. uhub:usb:1-1.4) or "
                      "uhub:emulated[:ports=N,usb3=0|1]");
  }
  if (auto r = parse_hub_options(spec, {"exact"}, o); !r) return r.error();
  auto loc = uh::parse_location(std::string_view(spec.port).substr(4));
  if (!loc) return spec_error(spec, loc.error().code, loc.error().message);
  auto exact = spec.int_option("exact", 0, 0, 1);
  if (!exact) return exact.error();
  auto halves = open_real_hub(*loc, *exact == 1);
  if (!halves) return spec_error(spec, halves.error().code, halves.error().message);
  return std::unique_ptr<Relay>(new UsbHub(std::move(halves.value()), o));
}

}  // namespace meltrig::rig
