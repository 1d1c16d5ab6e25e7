// Storing an imported MELT run: see melt_capture.hpp.
#include "meltrig/rig/melt_capture.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <system_error>

#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/run_record.hpp"

namespace meltrig::rig {
namespace {

namespace melt = targets::melt;

constexpr std::size_t kAppendBlock = 65536;

// Whole seconds and the fraction apart: 1.7e18 ns is past a double's exact integers.
std::int64_t unix_s_to_ns(double unix_s) {
  const double whole = std::floor(unix_s);
  return static_cast<std::int64_t>(whole) * 1'000'000'000 + std::llround((unix_s - whole) * 1e9);
}

dataset::CaptureLayout melt_layout(const melt::MeltImport& m,
                                   const std::vector<dataset::Attribute>& invocation) {
  const melt::PowerTrace& trace = m.trace;
  dataset::CaptureLayout layout;
  layout.root_attributes = {{"meltrig_version", std::string(MELTRIG_VERSION)},
                            {"source", std::string("melt-import")},
                            {"melt_run_dir", std::filesystem::absolute(m.run.dir).string()}};
  if (!std::isnan(trace.start_unix_s)) {
    layout.root_attributes.push_back(
        {"host_wall_clock_start_utc", iso8601_utc_us(trace.start_unix_s)});
    layout.root_attributes.push_back(
        {"host_wall_clock_start_unix_ns", unix_s_to_ns(trace.start_unix_s)});
  }
  for (const auto& attr : invocation)
    layout.root_attributes.push_back(attr);
  layout.monitor = "monsoon";
  layout.monitor_attributes = {
      {"driver", std::string("melt-import")},
      {"instrument", std::string("Monsoon HVPM via PyMonsoon (MELT bench)")},
      {"source_file", m.run.monsoon_csv ? m.run.monsoon_csv->string() : std::string()},
      {"nominal_rate_hz", kMeltMonsoonRateHz},
      {"time_note", std::string("rows are samples in arrival order; t = i / sample_rate_hz is "
                                "nominal; MELT's host arrival stamps are in "
                                "/monsoon_host_time/t_rel_s")}};
  layout.sample_rate_hz = kMeltMonsoonRateHz;
  layout.channels = {
      {"current", "A", dataset::SampleType::f32, "main channel current (MELT CSV mA / 1000)"},
      {"voltage", "V", dataset::SampleType::f32, "main channel voltage"}};
  layout.counter_names = {"malformed_rows"};
  return layout;
}

Result<void> write_trace(const std::filesystem::path& output, const melt::MeltImport& m,
                         const std::vector<dataset::Attribute>& invocation) {
  const melt::PowerTrace& trace = m.trace;
  auto writer = dataset::CaptureWriter::create(output, melt_layout(m, invocation));
  if (!writer) return writer.error();
  for (std::size_t at = 0; at < trace.size(); at += kAppendBlock) {
    const std::size_t n = std::min(kAppendBlock, trace.size() - at);
    const std::array<dataset::ChannelData, 2> channels{
        std::span<const float>(trace.current_a.data() + at, n),
        std::span<const float>(trace.voltage_v.data() + at, n)};
    if (auto r = writer->append({channels}); !r) return r;
  }
  const std::array<std::uint64_t, 1> counters{trace.malformed_rows};
  if (auto r = writer->set_counters(counters); !r) return r;
  return writer->finish(dataset::CaptureState::complete,
                        "imported from MELT run " + m.run.dir.string());
}

Result<void> write_host_time(dataset::RunRecord& extras, const melt::MeltImport& m) {
  std::vector<dataset::Attribute> host_time_attrs = {
      {"description", std::string("MELT's host arrival time of each sample's USB packet: host "
                                  "time.time() minus PyMonsoon's start, s; row i = sample i of "
                                  "/monsoon; consecutive samples may share one stamp")},
      {"unit", std::string("s")}};
  if (auto r =
          extras.write_series("/monsoon_host_time/t_rel_s", m.trace.host_t_rel_s, host_time_attrs);
      !r)
    return r;
  std::vector<dataset::Attribute> group_attrs = {
      {"start_unix_s", m.trace.start_unix_s},
      {"start_source", m.run.t_monsoon ? m.run.t_monsoon->string() : std::string()},
      {"note", std::string("start_unix_s = host time.time() right after sampling started "
                           "(MELT's .t_monsoon; NaN if absent). Markers are on the phone's own, "
                           "unsynchronised wall clock: aligning them with this time is only as "
                           "good as the two clocks' agreement")}};
  return extras.write_attribute_group("/monsoon_host_time", group_attrs);
}

Result<void> store(const std::filesystem::path& output, const melt::MeltImport& m,
                   const std::vector<dataset::Attribute>& invocation) {
  if (auto r = write_trace(output, m, invocation); !r) return r;
  auto extras = dataset::RunRecord::open(output);
  if (!extras) return extras.error();
  if (auto r = write_host_time(*extras, m); !r) return r;
  for (const auto& l : m.logs) {
    if (auto r = extras->write_markers(l.group, l.log); !r) return r;
  }
  return extras->close();
}

}  // namespace

std::string iso8601_utc_us(double unix_s) {
  const auto secs = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::array<char, 64> buf{};
  const auto micros = static_cast<long>((unix_s - static_cast<double>(secs)) * 1e6);
  std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf.data();
}

Result<void> store_melt_import(const std::filesystem::path& output,
                               const melt::MeltImport& imported,
                               const std::vector<dataset::Attribute>& invocation) {
  auto r = store(output, imported, invocation);
  if (!r) {
    std::error_code ec;
    std::filesystem::remove(output, ec);
  }
  return r;
}

}  // namespace meltrig::rig
