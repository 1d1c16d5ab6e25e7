// `meltrig report`: one self-contained HTML file for one or more captures. Every figure shown is
// read by the page from the embedded analysis JSON of each file (exactly what `meltrig analyze
// --json` prints, from analysis::analyze_capture); the power and telemetry curves are embedded
// as bounded plot data (power_data.hpp).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "meltrig/analysis/capture_analysis.hpp"
#include "meltrig/fw/result.hpp"
#include "meltrig/report/power_data.hpp"

namespace meltrig::report {

struct ReportOptions {
  PowerPlotOptions power;
  std::size_t max_telemetry_points = 4000;  ///< per series, evenly thinned beyond
  std::string title = "meltrig report";
};

/// Monitor seconds worth keeping fine detail around: every phase boundary, the middle of every
/// decode, the throttling onset.
std::vector<double> focus_times(const analysis::Analysis& a);

/// The plot data of one analysed capture: {label, power (power_plot_data), telemetry: [{name,
/// unit, t, v}]} (telemetry on the monitor's time base, as the analysis used it).
Result<nlohmann::json> plot_data(const std::filesystem::path& path,
                                 const analysis::CaptureAnalysis& ca, const std::string& label,
                                 const ReportOptions& opt);

/// The HTML page for `files`, each analysed with analysis::analyze_capture. Fails naming the
/// first file that cannot be read or analysed.
Result<std::string> build_report(std::span<const std::filesystem::path> files,
                                 const ReportOptions& opt = {});

}  // namespace meltrig::report
