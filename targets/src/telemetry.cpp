#include "meltrig/targets/telemetry.hpp"

namespace meltrig::targets {

TelemetrySeries& Telemetry::get(std::string_view name, std::string_view unit,
                                std::string_view clock) {
  for (auto& s : series)
    if (s.name == name) return s;
  TelemetrySeries s;
  s.name = name;
  s.unit = unit;
  s.clock = clock;
  series.push_back(std::move(s));
  return series.back();
}

void Telemetry::add(std::string_view name, std::string_view unit, std::int64_t t_ns, double value,
                    std::string_view clock) {
  auto& s = get(name, unit, clock);
  s.t_ns.push_back(t_ns);
  s.value.push_back(value);
}

const TelemetrySeries* Telemetry::find(std::string_view name) const {
  for (const auto& s : series)
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace meltrig::targets
