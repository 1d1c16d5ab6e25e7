#include "meltrig/targets/shell_quote.hpp"

namespace meltrig::targets {

std::string sh_quote(std::string_view arg) {
  std::string q;
  q.reserve(arg.size() + 2);
  q.push_back('\'');
  for (char c : arg) {
    if (c == '\'')
      q += "'\\''";
    else
      q.push_back(c);
  }
  q.push_back('\'');
  return q;
}

std::string sh_join(const std::vector<std::string>& argv) {
  std::string line;
  for (const auto& a : argv) {
    if (!line.empty()) line.push_back(' ');
    line += sh_quote(a);
  }
  return line;
}

}  // namespace meltrig::targets
