// The web assets built into the program (analysis/report/assets/* and third_party/uplot/*):
// embedded at build time by cmake/embed_assets.cmake, so nothing is looked up at run time.
#pragma once

#include <span>
#include <string_view>

namespace meltrig::report {

struct Asset {
  std::string_view name;     ///< the file's base name, e.g. "uPlot.iife.min.js"
  std::string_view content;  ///< its bytes, unchanged
};

/// Every embedded asset, in the order the build lists them (generated source).
std::span<const Asset> embedded_assets();

/// The embedded asset called `name`; std::out_of_range naming it if there is none.
std::string_view asset(std::string_view name);

}  // namespace meltrig::report
