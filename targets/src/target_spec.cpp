#include "meltrig/targets/target_spec.hpp"

#include <charconv>
#include <string>
#include <utility>
#include <vector>

namespace meltrig::targets {
namespace {

using Options = std::vector<std::pair<std::string, std::string>>;

Error bad(std::string_view spec, const std::string& what) {
  return Error{Errc::invalid_argument, "target spec '" + std::string(spec) + "': " + what};
}

/// Splits "k=v,k=v" (empty text: no options).
Result<Options> split_options(std::string_view spec, std::string_view text) {
  Options out;
  if (text.empty()) return out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(pos, comma - pos);
    std::size_t eq = item.find('=');
    if (item.empty() || eq == std::string_view::npos || eq == 0) {
      return bad(spec, "option '" + std::string(item) + "' is not key=value");
    }
    out.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    pos = comma + 1;
  }
  return out;
}

Result<long long> to_int(std::string_view spec, const std::string& key, const std::string& v,
                         long long lo, long long hi) {
  long long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < lo || n > hi) {
    return bad(spec, key + "=" + v + ": expected an integer " + std::to_string(lo) + ".." +
                         std::to_string(hi));
  }
  return n;
}

Result<bool> to_bool(std::string_view spec, const std::string& key, const std::string& v) {
  if (v == "yes") return true;
  if (v == "no") return false;
  return bad(spec, key + "=" + v + ": expected yes or no");
}

Result<CurrentUnit> to_unit(std::string_view spec, const std::string& key, const std::string& v) {
  if (v == "auto") return CurrentUnit::automatic;
  if (v == "uA") return CurrentUnit::microamp;
  if (v == "mA") return CurrentUnit::milliamp;
  return bad(spec, key + "=" + v + ": expected auto, uA or mA");
}

Result<void> nonempty(std::string_view spec, const std::string& key, const std::string& v) {
  if (v.empty()) return bad(spec, key + "= needs a value");
  return {};
}

/// Applies the options every remote target shares; false if `key` is not one of them.
Result<bool> apply_remote(std::string_view spec, const std::string& key, const std::string& v,
                          RemoteSettings& rs, std::string& work_dir,
                          std::filesystem::path& local_probe) {
  if (key == "probe") {
    if (auto r = nonempty(spec, key, v); !r) return r.error();
    local_probe = v;
  } else if (key == "device_probe") {
    if (auto r = nonempty(spec, key, v); !r) return r.error();
    rs.probe_path = v;
  } else if (key == "work_dir") {
    if (auto r = nonempty(spec, key, v); !r) return r.error();
    work_dir = v;
  } else if (key == "sysfs") {
    if (auto r = nonempty(spec, key, v); !r) return r.error();
    rs.sysfs_root = v;
  } else if (key == "timeout_ms") {
    auto n = to_int(spec, key, v, 1, 3600000);
    if (!n) return n.error();
    rs.call_timeout = milliseconds(*n);
  } else if (key == "battery_unit") {
    auto u = to_unit(spec, key, v);
    if (!u) return u.error();
    rs.battery_current_unit = *u;
  } else if (key == "persistent_probe") {
    auto b = to_bool(spec, key, v);
    if (!b) return b.error();
    rs.persistent_probe = *b;
  } else {
    return false;
  }
  return true;
}

/// The text after "kind:" (empty if the spec is just "kind"); nullopt if another kind.
std::optional<std::string_view> after_kind(std::string_view spec, std::string_view kind) {
  if (spec == kind) return std::string_view{};
  if (spec.size() > kind.size() && spec.substr(0, kind.size()) == kind &&
      spec[kind.size()] == ':') {
    return spec.substr(kind.size() + 1);
  }
  return std::nullopt;
}

}  // namespace

Result<LocalConfig> parse_local_spec(std::string_view spec) {
  auto rest = after_kind(spec, "local");
  if (!rest) return bad(spec, "not a local spec");
  auto opts = split_options(spec, *rest);
  if (!opts) return opts.error();
  LocalConfig c;
  for (const auto& [k, v] : *opts) {
    if (k == "root") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.root = v;
    } else if (k == "sysfs") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.sysfs_root = v;
    } else if (k == "probe") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.probe_path = v;
    } else if (k == "battery_unit") {
      auto u = to_unit(spec, k, v);
      if (!u) return u.error();
      c.battery_current_unit = *u;
    } else if (k == "timeout_ms") {
      auto n = to_int(spec, k, v, 1, 3600000);
      if (!n) return n.error();
      c.call_timeout = milliseconds(*n);
    } else {
      return bad(spec, "unknown key '" + k +
                           "' (local takes root, sysfs, probe, battery_unit, "
                           "timeout_ms)");
    }
  }
  return c;
}

Result<SshConfig> parse_ssh_spec(std::string_view spec) {
  auto rest = after_kind(spec, "ssh");
  if (!rest) return bad(spec, "not an ssh spec");
  std::string_view dest = *rest, options;
  if (auto colon = rest->find(':'); colon != std::string_view::npos) {
    dest = rest->substr(0, colon);
    options = rest->substr(colon + 1);
  }
  SshConfig c;
  if (auto at = dest.rfind('@'); at != std::string_view::npos) {
    c.user = std::string(dest.substr(0, at));
    dest = dest.substr(at + 1);
    if (c.user.empty()) return bad(spec, "empty user before '@'");
  }
  if (dest.empty()) return bad(spec, "missing host (ssh:[USER@]HOST[:key=value,...])");
  // ssh would read a leading '-' as an option.
  if (dest.front() == '-' || (!c.user.empty() && c.user.front() == '-')) {
    return bad(spec, "host or user starts with '-'");
  }
  c.host = std::string(dest);
  auto opts = split_options(spec, options);
  if (!opts) return opts.error();
  for (const auto& [k, v] : *opts) {
    auto shared = apply_remote(spec, k, v, c.remote, c.work_dir, c.local_probe);
    if (!shared) return shared.error();
    if (*shared) continue;
    if (k == "port") {
      auto n = to_int(spec, k, v, 1, 65535);
      if (!n) return n.error();
      c.port = static_cast<int>(*n);
    } else if (k == "key") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.identity_file = v;
    } else if (k == "known_hosts") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.known_hosts_file = v;
    } else if (k == "strict") {
      if (v != "yes" && v != "accept-new" && v != "no") {
        return bad(spec, "strict=" + v + ": expected yes, accept-new or no");
      }
      c.strict_host_key_checking = v;
    } else if (k == "connect_timeout") {
      auto n = to_int(spec, k, v, 1, 3600);
      if (!n) return n.error();
      c.connect_timeout_s = static_cast<int>(*n);
    } else if (k == "ssh") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.ssh_program = v;
    } else if (k == "control_master") {
      auto b = to_bool(spec, k, v);
      if (!b) return b.error();
      c.control_master = *b;
    } else {
      return bad(spec, "unknown key '" + k +
                           "' (ssh takes port, key, known_hosts, strict, probe, device_probe, "
                           "work_dir, sysfs, connect_timeout, ssh, control_master, "
                           "persistent_probe, battery_unit, timeout_ms)");
    }
  }
  return c;
}

Result<AdbConfig> parse_adb_spec(std::string_view spec) {
  auto rest = after_kind(spec, "adb");
  if (!rest) return bad(spec, "not an adb spec");
  auto opts = split_options(spec, *rest);
  if (!opts) return opts.error();
  AdbConfig c;
  for (const auto& [k, v] : *opts) {
    auto shared = apply_remote(spec, k, v, c.remote, c.work_dir, c.local_probe);
    if (!shared) return shared.error();
    if (*shared) continue;
    if (k == "serial") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.serial = v;
    } else if (k == "adb") {
      if (auto r = nonempty(spec, k, v); !r) return r.error();
      c.adb = {v};
    } else {
      return bad(spec, "unknown key '" + k +
                           "' (adb takes serial, adb, probe, device_probe, work_dir, sysfs, "
                           "persistent_probe, battery_unit, timeout_ms)");
    }
  }
  return c;
}

Result<std::unique_ptr<Target>> make_target(std::string_view spec) {
  if (after_kind(spec, "local")) {
    auto c = parse_local_spec(spec);
    if (!c) return c.error();
    return std::unique_ptr<Target>(std::make_unique<LocalTarget>(std::move(*c)));
  }
  if (after_kind(spec, "ssh")) {
    auto c = parse_ssh_spec(spec);
    if (!c) return c.error();
    return std::unique_ptr<Target>(std::make_unique<SshTarget>(std::move(*c)));
  }
  if (after_kind(spec, "adb")) {
    auto c = parse_adb_spec(spec);
    if (!c) return c.error();
    return std::unique_ptr<Target>(std::make_unique<AdbTarget>(std::move(*c)));
  }
  return bad(spec, "unknown kind (expected local[:...], ssh:[USER@]HOST[:...] or adb[:...])");
}

}  // namespace meltrig::targets
