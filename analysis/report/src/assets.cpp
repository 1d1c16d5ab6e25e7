// Lookup of the embedded assets by name.
#include <stdexcept>
#include <string>

#include "meltrig/report/assets.hpp"

namespace meltrig::report {

std::string_view asset(std::string_view name) {
  for (const Asset& a : embedded_assets())
    if (a.name == name) return a.content;
  throw std::out_of_range("no embedded asset '" + std::string(name) + "'");
}

}  // namespace meltrig::report
