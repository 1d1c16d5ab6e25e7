// build_report: analysis JSON and plot data of every file, inlined into the report page.
#include "meltrig/report/report.hpp"

#include <set>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/report/assets.hpp"
#include "meltrig/report/page.hpp"

namespace meltrig::report {

std::vector<double> focus_times(const analysis::Analysis& a) {
  std::vector<double> f;
  for (const analysis::RepResult& r : a.run.reps) {
    for (const analysis::PhaseResult& p : r.phases) {
      if (!p.present) continue;
      f.push_back(p.start_s);
      f.push_back(p.end_s);
      if (p.name == "decode") f.push_back((p.start_s + p.end_s) / 2);
    }
  }
  if (a.thermal.onset_s) f.push_back(*a.thermal.onset_s);
  return f;
}

namespace {

nlohmann::json telemetry_json(const analysis::TimedSeries& s, std::size_t max_points) {
  const std::size_t n = s.t_s.size();
  const std::size_t step = n > max_points ? (n + max_points - 1) / max_points : 1;
  nlohmann::json t = nlohmann::json::array(), v = nlohmann::json::array();
  for (std::size_t k = 0; k < n; k += step) {
    t.push_back(s.t_s[k]);
    v.push_back(std::isfinite(s.value[k]) ? nlohmann::json(s.value[k]) : nlohmann::json(nullptr));
  }
  return {{"name", s.name}, {"unit", s.unit}, {"t", t}, {"v", v}};
}

// File stems, made unique with their position where two files share one.
std::vector<std::string> labels_of(std::span<const std::filesystem::path> files) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (std::size_t k = 0; k < files.size(); ++k) {
    std::string l = files[k].stem().string();
    if (!seen.insert(l).second) l += " (" + std::to_string(k + 1) + ")";
    out.push_back(l);
  }
  return out;
}

}  // namespace

Result<nlohmann::json> plot_data(const std::filesystem::path& path,
                                 const analysis::CaptureAnalysis& ca, const std::string& label,
                                 const ReportOptions& opt) {
  auto r = dataset::CaptureReader::open(path);
  if (!r) return r.error();
  const auto focus = focus_times(ca.analysis);
  auto power = power_plot_data(*r, focus, opt.power);
  if (!power) return power.error();
  nlohmann::json tel = nlohmann::json::array();
  for (const analysis::TimedSeries& s : ca.telemetry)
    tel.push_back(telemetry_json(s, opt.max_telemetry_points));
  return nlohmann::json{{"label", label}, {"power", std::move(*power)}, {"telemetry", tel}};
}

Result<std::string> build_report(std::span<const std::filesystem::path> files,
                                 const ReportOptions& opt) {
  Page page;
  page.title = opt.title;
  page.styles = {"uPlot.min.css", "meltrig.css"};
  page.body = std::string(asset("report.html"));
  page.scripts = {"uPlot.iife.min.js", "plots.js", "report.js"};
  const auto labels = labels_of(files);
  nlohmann::json plots = nlohmann::json::array();
  for (std::size_t k = 0; k < files.size(); ++k) {
    auto ca = analysis::analyze_capture(files[k]);
    if (!ca) return ca.error();
    auto p = plot_data(files[k], *ca, labels[k], opt);
    if (!p) return p.error();
    plots.push_back(std::move(*p));
    page.data.emplace_back("meltrig-analysis-" + std::to_string(k), ca->json.dump());
  }
  page.data.emplace_back("meltrig-plot-data", nlohmann::json{{"files", plots}}.dump());
  return html_page(page);
}

}  // namespace meltrig::report
