// html_page: the template asset with its slots filled by inline styles, data blocks and scripts.
#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "meltrig/report/assets.hpp"
#include "meltrig/report/page.hpp"

namespace meltrig::report {

namespace {

bool holds_script_end(std::string_view text) {
  constexpr std::string_view end = "</script";
  auto it = std::search(text.begin(), text.end(), end.begin(), end.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == b;
  });
  return it != text.end();
}

// The template with each {{name}} replaced by slots[name], in one pass (inserted text is never
// searched again); an unknown or missing slot is a build error of the assets.
std::string fill(std::string_view tpl,
                 const std::vector<std::pair<std::string, std::string>>& slots) {
  std::string out;
  std::vector<bool> used(slots.size(), false);
  std::size_t at = 0;
  for (auto open = tpl.find("{{"); open != std::string_view::npos; open = tpl.find("{{", at)) {
    const auto close = tpl.find("}}", open);
    if (close == std::string_view::npos) break;
    const std::string_view name = tpl.substr(open + 2, close - open - 2);
    auto it =
        std::find_if(slots.begin(), slots.end(), [&](const auto& s) { return s.first == name; });
    if (it == slots.end()) {
      throw std::invalid_argument("page.html: unknown slot " + std::string(name));
    }
    out.append(tpl.substr(at, open - at));
    out += it->second;
    used[static_cast<std::size_t>(it - slots.begin())] = true;
    at = close + 2;
  }
  out.append(tpl.substr(at));
  for (std::size_t k = 0; k < slots.size(); ++k)
    if (!used[k]) throw std::invalid_argument("page.html has no slot " + slots[k].first);
  return out;
}

}  // namespace

std::string script_safe_json(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  for (char c : json) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

std::string html_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string html_page(const Page& page) {
  std::string styles, data, scripts;
  for (const std::string& s : page.styles)
    styles += "<style>\n" + std::string(asset(s)) + "\n</style>\n";
  for (const auto& [id, json] : page.data) {
    data += "<script type=\"application/json\" id=\"" + html_escape(id) + "\">" +
            script_safe_json(json) + "</script>\n";
  }
  for (const std::string& s : page.scripts) {
    const std::string_view js = asset(s);
    if (holds_script_end(js)) {
      throw std::invalid_argument("asset '" + s + "' holds \"</script\": it cannot be inlined");
    }
    scripts += "<script>\n" + std::string(js) + "\n</script>\n";
  }
  const std::string title = html_escape(page.title);
  std::string out = fill(asset("page.html"), {{"policy", html_escape(page.policy)},
                                              {"title", title},
                                              {"styles", styles},
                                              {"body", page.body},
                                              {"data", data},
                                              {"scripts", scripts}});
  return out;
}

}  // namespace meltrig::report
