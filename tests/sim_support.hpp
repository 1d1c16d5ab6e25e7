// Helpers shared by the simulated-bench world tests: example scenarios, building worlds and
// editing scenario text, each failing the test with the error's description.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "meltrig/fixtures/sim_scenario.hpp"
#include "meltrig/fixtures/sim_world.hpp"
#include "test_support.hpp"

namespace meltrig::test::simw {

inline std::filesystem::path scenario_dir() {
  return std::filesystem::path(MELTRIG_SOURCE_DIR) / "examples" / "scenarios";
}

inline fixtures::sim::Scenario load(const std::string& file) {
  auto s = fixtures::sim::load_scenario(scenario_dir() / file);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  return s.value();
}

inline fixtures::sim::World build(const fixtures::sim::Scenario& s, std::uint64_t seed) {
  auto w = fixtures::sim::World::build(s, seed);
  REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
  return std::move(w).value();
}

inline fixtures::sim::Scenario parse_ok(const std::string& text) {
  auto s = fixtures::sim::parse_scenario(text, "test.toml");
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().describe()));
  return s.value();
}

inline std::string text_of(const std::string& file) {
  return read_file(scenario_dir() / file);
}

inline std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  auto p = s.find(from);
  REQUIRE_MESSAGE(p != std::string::npos, from);
  return s.replace(p, from.size(), to);
}

/// Least-squares slope of y over x.
inline double slope(const std::vector<double>& x, const std::vector<double>& y) {
  double n = static_cast<double>(x.size()), sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sx += x[i];
    sy += y[i];
    sxx += x[i] * x[i];
    sxy += x[i] * y[i];
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

}  // namespace meltrig::test::simw
