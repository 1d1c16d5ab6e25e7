#include "meltrig/targets/clock_probe.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <string>

namespace meltrig::targets {
namespace {

bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && blank(s.back()))
    s.remove_suffix(1);
  return s;
}

}  // namespace

Result<ClockProbe> parse_probe_line(std::string_view text, std::string_view source) {
  std::string_view line = trim(text.substr(0, text.find('\n')));
  ClockProbe p;
  std::array<std::int64_t*, 3> fields = {&p.device_mono_ns, &p.device_boot_ns, &p.device_real_ns};
  if (std::count(line.begin(), line.end(), ' ') != 2)
    return Error{Errc::parse_error, std::string(source) + ":1: expected 'MONO BOOT REAL', got '" +
                                        std::string(line) + "'"};
  std::string_view rest = line;
  for (auto* field : fields) {
    auto sp = rest.find(' ');
    std::string_view part = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
    std::string_view digits = trim(part);
    std::int64_t v = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || v < 0)
      return Error{Errc::parse_error, std::string(source) + ":1: clock value '" +
                                          std::string(part) + "' is not a non-negative integer"};
    *field = v;
  }
  return p;
}

}  // namespace meltrig::targets
