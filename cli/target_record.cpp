#include "target_record.hpp"

namespace meltrig::cli {

void take_probes(targets::Target& target, int n, TargetRecord& rec) {
  for (int i = 0; i < n; ++i) {
    auto p = target.probe_clock();
    if (p) {
      rec.probes.push_back(*p);
    } else {
      ++rec.probe_failures;
      rec.last_probe_error = p.error();
    }
  }
}

std::string join_for_humans(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`;&|<>()*?[]{}~#!") == std::string::npos;
    if (plain) {
      s += a;
      continue;
    }
    s += '\'';
    for (char c : a)
      s += c == '\'' ? std::string("'\\''") : std::string(1, c);
    s += '\'';
  }
  return s;
}

Result<void> write_target(dataset::RunRecord& f, const TargetRecord& rec,
                          std::string_view telemetry_group) {
  auto i64 = [](auto v) { return static_cast<std::int64_t>(v); };
  std::vector<dataset::Attribute> attrs = {
      {"describe", rec.describe},
      {"runner_argv", join_for_humans(rec.argv)},
      {"runner_argc", i64(rec.argv.size())},
      {"exit_code", i64(rec.exit_code)},
      {"timed_out", i64(rec.timed_out ? 1 : 0)},
      {"interrupted", i64(rec.interrupted ? 1 : 0)},
      {"probe_count", i64(rec.probes.size())},
      {"probe_failures", i64(rec.probe_failures)},
      {"probe_clock", rec.probe_clock},
      {"telemetry_samples", i64(rec.telemetry_samples)},
      {"telemetry_errors", i64(rec.telemetry_errors)},
  };
  attrs.insert(attrs.end(), rec.extra_attributes.begin(), rec.extra_attributes.end());
  if (auto w = f.write_attribute_group("/target", attrs); !w) return w;
  if (auto w = f.write_clock_probes("/target/probes", rec.probes,
                                    "host clock (/target attribute probe_clock)");
      !w)
    return w;
  if (rec.telemetry.series.empty()) return {};
  return f.write_telemetry(rec.telemetry, telemetry_group);
}

}  // namespace meltrig::cli
