#include "meltrig/targets/adb_target.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

namespace meltrig::targets {
namespace {

RemoteSettings with_work_dir(const AdbConfig& c) {
  RemoteSettings s = c.remote;
  s.work_dir = c.work_dir;
  if (s.probe_path.empty() && !c.local_probe.empty()) s.probe_path = c.work_dir + "/meltrig_probe";
  return s;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::optional<long long> to_ll(std::string_view s) {
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

Result<DumpsysBattery> parse_dumpsys_battery(std::string_view text, std::string_view source) {
  if (text.find("Current Battery Service state:") == std::string_view::npos)
    return Error{Errc::parse_error,
                 std::string(source) + ":1: no 'Current Battery Service state:' header"};
  DumpsysBattery b;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = trim(line.substr(0, colon));
    std::string_view val = trim(line.substr(colon + 1));
    auto n = to_ll(val);
    if (key == "AC powered")
      b.ac_powered = val == "true";
    else if (key == "USB powered")
      b.usb_powered = val == "true";
    else if (key == "Wireless powered")
      b.wireless_powered = val == "true";
    else if (key == "status" && n)
      b.status = static_cast<int>(*n);
    else if (key == "level" && n)
      b.level = static_cast<int>(*n);
    else if (key == "voltage" && n)
      b.voltage_v = static_cast<double>(*n) * 1e-3;
    else if (key == "temperature" && n)
      b.temperature_c = static_cast<double>(*n) * 0.1;
    else if ((key == "current now" || key == "Current now") && n)
      b.current_now_raw = static_cast<double>(*n);
    else if (key == "technology")
      b.technology = std::string(val);
  }
  return b;
}

AdbTarget::AdbTarget(AdbConfig config)
    : RemoteShellTarget(with_work_dir(config)), cfg_(std::move(config)) {}

std::string AdbTarget::name() const {
  return "adb:" + (cfg_.serial.empty() ? std::string("default") : cfg_.serial);
}

std::string AdbTarget::describe() const {
  return name() + " work_dir=" + cfg_.work_dir +
         " probe=" + (rs_.probe_path.empty() ? std::string("none") : rs_.probe_path);
}

std::vector<std::string> AdbTarget::adb_argv(std::initializer_list<std::string> rest) const {
  std::vector<std::string> a = cfg_.adb;
  if (!cfg_.serial.empty()) a.insert(a.end(), {"-s", cfg_.serial});
  a.insert(a.end(), rest);
  return a;
}

std::vector<std::string> AdbTarget::transport_argv(const std::string& command_line) const {
  return adb_argv({"shell", command_line});
}

Result<void> AdbTarget::prepare() {
  if (!cfg_.serial.empty() && cfg_.serial.front() == '-')
    return Error{Errc::invalid_argument, "adb: serial '" + cfg_.serial + "' starts with '-'"};
  auto st = checked(run_process(adb_argv({"get-state"}), rs_.call_timeout), "get-state");
  if (!st) return st.error();
  if (trim(st.value().out) != "device")
    return Error{Errc::not_found, name() + ": get-state says '" +
                                      std::string(trim(st.value().out)) + "', not 'device'"};
  return prepare_device(cfg_.work_dir, cfg_.local_probe);
}

Result<void> AdbTarget::push(const std::filesystem::path& local, const std::string& remote) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(local, ec))
    return Error{Errc::not_found, local.string() + ": no such file"};
  auto r = checked(run_process(adb_argv({"push", local.string(), remote}), rs_.call_timeout),
                   "push " + local.string() + " -> " + remote);
  if (!r) return r.error();
  return {};
}

Result<void> AdbTarget::pull(const std::string& remote, const std::filesystem::path& local) {
  auto r = checked(run_process(adb_argv({"pull", remote, local.string()}), rs_.call_timeout),
                   "pull " + remote);
  if (!r) return r.error();
  return {};
}

Result<std::string> AdbTarget::logcat(const std::string& tag) {
  if (tag.empty() || tag.find_first_of(" \t\n:*") != std::string::npos || tag.front() == '-')
    return Error{Errc::invalid_argument, name() + ": logcat tag '" + tag + "' is not a plain tag"};
  auto r = checked(run_process(adb_argv({"logcat", "-d", "-s", tag}), rs_.call_timeout),
                   "logcat -d -s " + tag);
  if (!r) return r.error();
  return std::move(r.value().out);
}

Result<DumpsysBattery> AdbTarget::dumpsys_battery() {
  auto r = checked(shell({"dumpsys", "battery"}, rs_.call_timeout), "dumpsys battery");
  if (!r) return r.error();
  return parse_dumpsys_battery(r.value().out, name() + ":dumpsys battery");
}

Result<std::vector<UsbPowerEvent>> AdbTarget::usb_power_log() {
  auto r = checked(
      run_process(adb_argv({"logcat", "-d", "-b", "kernel", "-v", "monotonic"}), rs_.call_timeout),
      "logcat -d -b kernel -v monotonic");
  if (!r) return r.error();
  return parse_healthd_usb_log(r.value().out);
}

std::vector<UsbPowerEvent> parse_healthd_usb_log(std::string_view text) {
  std::vector<UsbPowerEvent> out;
  std::optional<bool> state;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const auto chg = line.find(" chg=");
    if (line.find("healthd") == std::string_view::npos || chg == std::string_view::npos) continue;
    // the monotonic stamp: leading "SECONDS.MILLIS"
    const auto first = line.find_first_not_of(' ');
    const auto dot = line.find('.', first);
    if (first == std::string_view::npos || dot == std::string_view::npos) continue;
    std::int64_t s = 0, ms = 0;
    auto a = std::from_chars(line.data() + first, line.data() + dot, s);
    auto b =
        std::from_chars(line.data() + dot + 1, line.data() + std::min(line.size(), dot + 4), ms);
    if (a.ec != std::errc{} || a.ptr != line.data() + dot || b.ec != std::errc{} ||
        b.ptr != line.data() + dot + 4)
      continue;
    const std::string_view chargers = line.substr(chg + 5, line.find(' ', chg + 5) - (chg + 5));
    const bool usb = chargers.find('u') != std::string_view::npos;
    if (state && *state != usb)
      out.push_back({s * 1'000'000'000 + ms * 1'000'000, usb, kHealthdLogWindowNs});
    state = usb;
  }
  return out;
}

}  // namespace meltrig::targets
