#include "meltrig/targets/sysfs_telemetry.hpp"

#include "meltrig/targets/sysfs_patterns.h"

#include <glob.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>

namespace meltrig::targets {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

std::optional<std::int64_t> to_int(std::string_view s) {
  s = trim(s);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    auto pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

/// The digits after `prefix` in `s` (e.g. "thermal_zone12" -> "12"), or empty.
std::string_view number_after(std::string_view s, std::string_view prefix) {
  if (!s.starts_with(prefix)) return {};
  auto rest = s.substr(prefix.size());
  if (rest.empty()) return {};
  for (char c : rest)
    if (c < '0' || c > '9') return {};
  return rest;
}

/// A label usable inside a series name: no '/', no whitespace.
std::string clean_label(std::string_view s) {
  std::string out;
  for (char c : trim(s))
    out.push_back((c == '/' || c == ' ' || c == '\t') ? '_' : c);
  return out;
}

bool is_gpu_devfreq(std::string_view name) {
  for (std::string_view key : {"gpu", "gv11b", "gp10b", "ga10b", "gk20a", "gm20b", "mali", "kgsl"})
    if (name.find(key) != std::string_view::npos) return true;
  return false;
}

/// Per-rail figures gathered before readings are emitted (V, I, P in SI units).
struct Rail {
  std::string label;
  std::string source;
  std::optional<double> volts, amps, watts;
};

void emit_rail(const Rail& r, std::vector<TelemetryReading>& out) {
  const std::string base = "power/" + r.label + "/";
  if (r.volts) out.push_back({base + "voltage", "V", *r.volts, r.source});
  if (r.amps) out.push_back({base + "current", "A", *r.amps, r.source});
  if (r.watts)
    out.push_back({base + "power", "W", *r.watts, r.source});
  else if (r.volts && r.amps)
    out.push_back({base + "power", "W", *r.volts * *r.amps, r.source + " (V x I)"});
}

/// Turns sysfs entries into readings: one entry at a time (add), rails and supplies gathered
/// until every entry is seen (finish).
class SysfsReadings {
 public:
  SysfsReadings(const SysfsEntries& entries, CurrentUnitState& current_unit)
      : current_unit_(current_unit) {
    // Index by path so related files (type + temp, label + input) meet.
    for (const auto& [p, v] : entries)
      by_path_.emplace(p, v);
  }

  void add(const std::string& path, const std::string& value) {
    auto parts = split(path, '/');
    const auto n = parts.size();
    if (n == 4 && parts[0] == "class" && parts[1] == "thermal" && parts[3] == "temp") {
      thermal(path, parts, value);
    } else if (n == 6 && parts[0] == "devices" && parts[4] == "cpufreq" &&
               parts[5] == "scaling_cur_freq") {
      cpufreq(path, parts, value);
    } else if (n == 4 && parts[0] == "class" && parts[1] == "devfreq" && parts[3] == "cur_freq") {
      devfreq(path, parts, value);
    } else if (n == 4 && parts[0] == "class" && parts[1] == "power_supply") {
      power_supply(path, parts, value);
    } else if (n == 4 && parts[0] == "class" && parts[1] == "hwmon") {
      hwmon(path, parts, value);
    } else if (n == 7 && parts[0] == "bus" && parts[3] == "ina3221x") {
      iio_ina3221x(path, parts, value);
    }
  }

  std::vector<TelemetryReading> finish() {
    for (const auto& [_, s] : supplies_)
      emit_rail(s, out_);
    for (const auto& [_, r] : rails_)
      emit_rail(r, out_);
    return std::move(out_);
  }

 private:
  using Parts = std::vector<std::string_view>;

  std::optional<std::string> lookup(const std::string& p) const {
    auto it = by_path_.find(p);
    if (it == by_path_.end()) return std::nullopt;
    return it->second;
  }

  // class/thermal/thermal_zoneN/temp (millidegC)
  void thermal(const std::string& path, const Parts& parts, const std::string& value) {
    auto zone = number_after(parts[2], "thermal_zone");
    auto v = to_int(value);
    if (zone.empty() || !v) return;
    auto type = lookup("class/thermal/" + std::string(parts[2]) + "/type");
    std::string name = "thermal/zone" + std::string(zone);
    if (type && !clean_label(*type).empty()) name += "/" + clean_label(*type);
    out_.push_back({name, "degC", static_cast<double>(*v) / 1000.0, path + " (millidegC)"});
  }

  void cpufreq(const std::string& path, const Parts& parts, const std::string& value) {
    auto cpu = number_after(parts[3], "cpu");
    auto v = to_int(value);
    if (cpu.empty() || !v) return;
    out_.push_back({"cpu/cpu" + std::string(cpu) + "/freq", "Hz", static_cast<double>(*v) * 1e3,
                    path + " (kHz)"});
  }

  void devfreq(const std::string& path, const Parts& parts, const std::string& value) {
    auto v = to_int(value);
    if (!v) return;
    std::string dev = clean_label(parts[2]);
    out_.push_back({(is_gpu_devfreq(dev) ? "gpu/" : "devfreq/") + dev + "/freq", "Hz",
                    static_cast<double>(*v), path + " (Hz)"});
  }

  /// Decides the unit of current_now once: configured, or from the first non-zero value.
  void choose_current_unit(std::int64_t v) {
    if (current_unit_.chosen) return;
    if (current_unit_.setting == CurrentUnit::microamp) {
      current_unit_.chosen = CurrentUnit::microamp;
      current_unit_.reason = "configured: uA";
    } else if (current_unit_.setting == CurrentUnit::milliamp) {
      current_unit_.chosen = CurrentUnit::milliamp;
      current_unit_.reason = "configured: mA";
    } else if (v != 0) {
      const bool ma = std::llabs(v) < 20000;
      current_unit_.chosen = ma ? CurrentUnit::milliamp : CurrentUnit::microamp;
      current_unit_.reason = "auto: first non-zero current_now " + std::to_string(v) +
                             (ma ? " has |value| < 20000 -> mA" : " has |value| >= 20000 -> uA");
    }
  }

  void power_supply(const std::string& path, const Parts& parts, const std::string& value) {
    auto v = to_int(value);
    if (!v) return;
    Rail& s = supplies_[std::string(parts[2])];
    s.label = clean_label(parts[2]);
    if (parts[3] == "voltage_now") {
      s.volts = static_cast<double>(*v) * 1e-6;  // uV
      s.source += (s.source.empty() ? "" : "; ") + path + " (uV)";
    } else if (parts[3] == "current_now") {
      choose_current_unit(*v);
      const bool ma = current_unit_.chosen == CurrentUnit::milliamp;
      s.amps = static_cast<double>(*v) * (ma ? 1e-3 : 1e-6);
      s.source += (s.source.empty() ? "" : "; ") + path + (ma ? " (mA, " : " (uA, ") +
                  (current_unit_.reason.empty() ? "undecided: all zero so far, read as uA"
                                                : current_unit_.reason) +
                  "; sign as the driver reports it)";
    }
  }

  void hwmon(const std::string& path, const Parts& parts, const std::string& value) {
    auto name = lookup("class/hwmon/" + std::string(parts[2]) + "/name");
    if (!name || !trim(*name).starts_with("ina3221")) return;
    std::string_view file = parts[3];
    std::string_view ch;
    bool is_curr = false;
    if (file.starts_with("in") && file.ends_with("_input") && !file.starts_with("in_")) {
      ch = file.substr(2, file.size() - 2 - 6);
    } else if (file.starts_with("curr") && file.ends_with("_input")) {
      ch = file.substr(4, file.size() - 4 - 6);
      is_curr = true;
    } else {
      return;
    }
    auto v = to_int(value);
    if (ch.empty() || !v) return;
    const std::string key = std::string(parts[2]) + "/" + std::string(ch);
    Rail& r = rails_[key];
    if (r.label.empty()) {
      auto label =
          lookup("class/hwmon/" + std::string(parts[2]) + "/in" + std::string(ch) + "_label");
      r.label = label && !clean_label(*label).empty()
                    ? clean_label(*label)
                    : std::string(parts[2]) + "_ch" + std::string(ch);
    }
    if (is_curr)
      r.amps = static_cast<double>(*v) * 1e-3;  // mA
    else
      r.volts = static_cast<double>(*v) * 1e-3;  // mV
    r.source += (r.source.empty() ? "" : "; ") + path + (is_curr ? " (mA)" : " (mV)");
  }

  // bus/i2c/drivers/ina3221x/<dev>/iio:deviceK/<file>: older Jetson L4T.
  void iio_ina3221x(const std::string& path, const Parts& parts, const std::string& value) {
    std::string_view file = parts[6];
    std::string_view ch;
    int kind = 0;  // 1 power mW, 2 current mA, 3 voltage mV
    for (auto [prefix, k] :
         {std::pair{std::string_view("in_power"), 1}, std::pair{std::string_view("in_current"), 2},
          std::pair{std::string_view("in_voltage"), 3}}) {
      if (file.starts_with(prefix) && file.ends_with("_input")) {
        ch = file.substr(prefix.size(), file.size() - prefix.size() - 6);
        kind = k;
      }
    }
    auto v = to_int(value);
    if (kind == 0 || ch.empty() || !v) return;
    const std::string iio_dir = path.substr(0, path.size() - file.size() - 1);
    Rail& r = rails_[iio_dir + "#" + std::string(ch)];
    if (r.label.empty()) {
      auto label = lookup(iio_dir + "/rail_name_" + std::string(ch));
      r.label = label && !clean_label(*label).empty() ? clean_label(*label)
                                                      : "ina3221x_ch" + std::string(ch);
    }
    const double x = static_cast<double>(*v) * 1e-3;
    if (kind == 1) r.watts = x;
    if (kind == 2) r.amps = x;
    if (kind == 3) r.volts = x;
    r.source += (r.source.empty() ? "" : "; ") + path +
                (kind == 1   ? " (mW)"
                 : kind == 2 ? " (mA)"
                             : " (mV)");
  }

  CurrentUnitState& current_unit_;
  std::map<std::string, std::string, std::less<>> by_path_;
  std::vector<TelemetryReading> out_;
  std::map<std::string, Rail> rails_;  // key: rail id (keeps hwmon/iio channels apart)
  std::map<std::string, Rail> supplies_;
};

}  // namespace

const std::vector<std::string>& sysfs_telemetry_patterns() {
  static const std::vector<std::string> patterns(std::begin(meltrig_sysfs_patterns),
                                                 std::end(meltrig_sysfs_patterns));
  return patterns;
}

SysfsEntries collect_sysfs(const std::filesystem::path& root) {
  SysfsEntries entries;
  std::string root_str = root.string();
  while (root_str.size() > 1 && root_str.back() == '/')
    root_str.pop_back();
  for (const auto& pat : sysfs_telemetry_patterns()) {
    std::string full = root_str + "/" + pat;
    glob_t g{};
    if (::glob(full.c_str(), 0, nullptr, &g) == 0) {
      for (std::size_t i = 0; i < g.gl_pathc; ++i) {
        std::ifstream in(g.gl_pathv[i]);
        std::string line;
        if (!in || !std::getline(in, line)) continue;
        entries.emplace_back(std::string(g.gl_pathv[i]).substr(root_str.size() + 1),
                             std::string(trim(line)));
      }
    }
    ::globfree(&g);
  }
  return entries;
}

Result<std::pair<ClockProbe, SysfsEntries>> parse_telemetry_dump(std::string_view text,
                                                                 std::string_view source) {
  auto probe = parse_probe_line(text, source);
  if (!probe) return probe.error();
  SysfsEntries entries;
  auto lines = split(text, '\n');
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::string_view l = lines[i];
    if (l.empty()) continue;
    auto tab = l.find('\t');
    if (tab == std::string_view::npos || tab == 0)
      return Error{Errc::parse_error, std::string(source) + ":" + std::to_string(i + 1) +
                                          ": expected 'PATH<TAB>VALUE'"};
    entries.emplace_back(std::string(l.substr(0, tab)), std::string(trim(l.substr(tab + 1))));
  }
  return std::pair{probe.value(), std::move(entries)};
}

std::vector<TelemetryReading> readings_from_sysfs(const SysfsEntries& entries,
                                                  CurrentUnitState& current_unit) {
  SysfsReadings r(entries, current_unit);
  for (const auto& [path, value] : entries)
    r.add(path, value);
  return r.finish();
}

}  // namespace meltrig::targets
