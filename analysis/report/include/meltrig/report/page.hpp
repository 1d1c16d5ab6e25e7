// Self-contained HTML pages from the embedded assets: every style, script and data block inline,
// so a page opens from a file or a mail attachment with no network. Used by `meltrig report` and
// shared with `meltrig view` (which serves such a page with its own policy and scripts).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meltrig::report {

/// Nothing may load: only the page's own inline scripts and styles run (and data: images).
inline constexpr std::string_view kOfflinePolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

struct Page {
  std::string title;                                 ///< HTML-escaped into <title> and <h1>
  std::string policy = std::string(kOfflinePolicy);  ///< Content-Security-Policy meta tag
  std::vector<std::string> styles;                   ///< asset names, inlined in order
  std::string body;  ///< HTML inside <main> (e.g. asset("report.html"))
  /// Data blocks, each as <script type="application/json" id="ID">TEXT</script>: (ID, JSON text).
  std::vector<std::pair<std::string, std::string>> data;
  std::vector<std::string> scripts;  ///< asset names, inlined in order after the data
};

/// The page from the template asset "page.html". std::out_of_range for an unknown asset;
/// std::invalid_argument if a script asset holds "</script" (it would end its element early).
std::string html_page(const Page& page);

/// JSON text safe inside a <script> element: every '<' becomes \u003c (valid JSON, same value).
std::string script_safe_json(std::string_view json);

/// Text safe in HTML content and attribute values (& < > " ').
std::string html_escape(std::string_view text);

}  // namespace meltrig::report
