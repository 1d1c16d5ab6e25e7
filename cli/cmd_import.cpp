// meltrig import melt DIR -o run.h5 [--iteration I] [--conversation C] [--all]
//
// Turns a MELT run directory (see targets/melt_import.hpp) into one meltrig capture:
// - measurements_monsoon.csv -> a capture with monitor group "monsoon", channels current (A) and
//   voltage (V) float32 at a nominal 5000 Hz (the Monsoon HVPM's rate under PyMonsoon). MELT
//   stamped samples with host arrival time per USB packet, so the original stamps are kept
//   row for row in /monsoon_host_time/t_rel_s (float64, s), with `.t_monsoon` as the group's
//   start_unix_s attribute;
// - each events file -> /markers/iter{I}_conv{C} (an MLC CSV beside a llama.cpp .tsv of the same
//   iteration and conversation -> /markers/iter{I}_conv{C}_mlc), a `.log` beside it supplying the
//   llama_print_timings cross-check.
// What was imported and every issue (file:line) go to stderr. Exit 0 if anything was imported,
// 1 if nothing could be (no output file is left then), 2 on usage errors.
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/targets/melt_import.hpp"

namespace meltrig::cli {
namespace {

namespace melt = targets::melt;

/// MELT's Monsoon HVPM under PyMonsoon samples at a nominal 5 kHz; MELT recorded no rate.
constexpr double kMeltMonsoonRateHz = 5000.0;
constexpr std::size_t kAppendBlock = 65536;

struct ImportArgs {
  std::string dir;
  std::string output;
  std::int64_t iteration = -1;
  std::int64_t conversation = -1;
  bool all = false;
  CLI::Option* iteration_opt = nullptr;
  CLI::Option* conversation_opt = nullptr;
};

struct NamedLog {
  std::string group;
  targets::MarkerLog log;
};

void print_issues(const std::vector<targets::MarkerIssue>& issues) {
  for (const auto& i : issues)
    std::fprintf(stderr, "  issue: %s\n", i.describe().c_str());
}

std::string iso8601_utc(double unix_s) {
  const auto secs = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::array<char, 64> buf{};
  const auto micros = static_cast<long>((unix_s - static_cast<double>(secs)) * 1e6);
  std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf.data();
}

// Whole seconds and the fraction apart: 1.7e18 ns is past a double's exact integers.
std::int64_t unix_s_to_ns(double unix_s) {
  const double whole = std::floor(unix_s);
  return static_cast<std::int64_t>(whole) * 1'000'000'000 + std::llround((unix_s - whole) * 1e9);
}

Result<void> write_capture(const ImportArgs& a, const melt::MeltRun& run,
                           const melt::PowerTrace& trace) {
  dataset::CaptureLayout layout;
  layout.root_attributes = {{"meltrig_version", std::string(MELTRIG_VERSION)},
                            {"source", std::string("melt-import")},
                            {"melt_run_dir", std::filesystem::absolute(run.dir).string()}};
  if (!std::isnan(trace.start_unix_s)) {
    layout.root_attributes.push_back(
        {"host_wall_clock_start_utc", iso8601_utc(trace.start_unix_s)});
    layout.root_attributes.push_back(
        {"host_wall_clock_start_unix_ns", unix_s_to_ns(trace.start_unix_s)});
  }
  for (const auto& attr : invocation_attributes())
    layout.root_attributes.push_back(attr);
  layout.monitor = "monsoon";
  layout.monitor_attributes = {
      {"driver", std::string("melt-import")},
      {"instrument", std::string("Monsoon HVPM via PyMonsoon (MELT bench)")},
      {"source_file", run.monsoon_csv ? run.monsoon_csv->string() : std::string()},
      {"nominal_rate_hz", kMeltMonsoonRateHz},
      {"time_note", std::string("rows are samples in arrival order; t = i / sample_rate_hz is "
                                "nominal; MELT's host arrival stamps are in "
                                "/monsoon_host_time/t_rel_s")}};
  layout.sample_rate_hz = kMeltMonsoonRateHz;
  layout.channels = {
      {"current", "A", dataset::SampleType::f32, "main channel current (MELT CSV mA / 1000)"},
      {"voltage", "V", dataset::SampleType::f32, "main channel voltage"}};
  layout.counter_names = {"malformed_rows"};
  auto writer = dataset::CaptureWriter::create(a.output, layout);
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
                        "imported from MELT run " + run.dir.string());
}

int run(const ImportArgs& a) {
  const bool filtered = a.iteration_opt->count() > 0 || a.conversation_opt->count() > 0;
  if (a.all && filtered) return usage("--all cannot be combined with --iteration/--conversation");
  if (std::filesystem::exists(a.output)) {
    return fail(a.output + ": already exists; choose another output or remove it");
  }
  auto scanned = melt::scan_run_dir(a.dir);
  if (!scanned) return fail(scanned.error().describe());
  const melt::MeltRun& run = *scanned;
  for (const auto& p : run.unrecognised)
    std::fprintf(stderr, "melt import: ignored %s (not a MELT measurements file)\n", p.c_str());

  melt::PowerTrace trace;
  if (run.monsoon_csv) {
    auto t = melt::read_monsoon_csv(*run.monsoon_csv);
    if (t) {
      trace = std::move(*t);
    } else {
      std::fprintf(stderr, "melt import: %s\n", t.error().describe().c_str());
    }
  } else {
    std::fprintf(stderr, "melt import: %s: no measurements_monsoon.csv\n", a.dir.c_str());
  }
  if (run.t_monsoon) {
    auto start = melt::read_t_monsoon(*run.t_monsoon);
    if (start) {
      trace.start_unix_s = *start;
    } else {
      std::fprintf(stderr, "melt import: %s\n", start.error().describe().c_str());
    }
  } else {
    std::fprintf(stderr, "melt import: %s: no .t_monsoon: the trace's start time is unknown\n",
                 a.dir.c_str());
  }

  std::vector<NamedLog> logs;
  std::vector<targets::MarkerIssue> other_issues;
  for (const auto& c : run.conversations) {
    if (a.iteration_opt->count() > 0 && c.iteration != a.iteration) continue;
    if (a.conversation_opt->count() > 0 && c.conversation != a.conversation) continue;
    const std::string base =
        "iter" + std::to_string(c.iteration) + "_conv" + std::to_string(c.conversation);
    std::optional<melt::LlamaTimings> timings;
    if (c.timings_log) {
      auto t = melt::read_llama_timings(*c.timings_log);
      if (!t) {
        std::fprintf(stderr, "melt import: %s\n", t.error().describe().c_str());
      } else {
        other_issues.insert(other_issues.end(), t->issues.begin(), t->issues.end());
        if (!t->blocks.empty()) timings = t->blocks.back();
        if (t->blocks.size() > 1) {
          std::fprintf(stderr, "melt import: %s: %zu llama_print_timings blocks, using the last\n",
                       c.timings_log->c_str(), t->blocks.size());
        }
        if (!c.llamacpp_events) {
          std::fprintf(stderr, "melt import: %s: no llama.cpp events file to cross-check\n",
                       c.timings_log->c_str());
        }
      }
    }
    if (c.llamacpp_events) {
      auto log = melt::read_llamacpp_events(*c.llamacpp_events, timings ? &*timings : nullptr);
      if (log) {
        logs.push_back({base, std::move(*log)});
      } else {
        std::fprintf(stderr, "melt import: %s\n", log.error().describe().c_str());
      }
    }
    if (c.mlc_csv) {
      auto log = melt::read_mlc_csv(*c.mlc_csv);
      if (log) {
        logs.push_back({c.llamacpp_events ? base + "_mlc" : base, std::move(*log)});
      } else {
        std::fprintf(stderr, "melt import: %s\n", log.error().describe().c_str());
      }
    }
  }
  if (filtered && logs.empty()) {
    std::fprintf(stderr,
                 "melt import: no events file matches the --iteration/--conversation given\n");
  }

  if (trace.size() == 0 && logs.empty()) {
    print_issues(trace.issues);
    print_issues(other_issues);
    return fail(a.dir + ": nothing could be imported");
  }
  auto fail_and_remove = [&](const Error& e) {
    std::error_code ec;
    std::filesystem::remove(a.output, ec);
    return fail(e.describe());
  };
  if (auto r = write_capture(a, run, trace); !r) return fail_and_remove(r.error());
  auto extras = dataset::RunRecord::open(a.output);
  if (!extras) return fail_and_remove(extras.error());
  std::vector<dataset::Attribute> host_time_attrs = {
      {"description", std::string("MELT's host arrival time of each sample's USB packet: host "
                                  "time.time() minus PyMonsoon's start, s; row i = sample i of "
                                  "/monsoon; consecutive samples may share one stamp")},
      {"unit", std::string("s")}};
  if (auto r =
          extras->write_series("/monsoon_host_time/t_rel_s", trace.host_t_rel_s, host_time_attrs);
      !r) {
    return fail_and_remove(r.error());
  }
  std::vector<dataset::Attribute> group_attrs = {
      {"start_unix_s", trace.start_unix_s},
      {"start_source", run.t_monsoon ? run.t_monsoon->string() : std::string()},
      {"note", std::string("start_unix_s = host time.time() right after sampling started "
                           "(MELT's .t_monsoon; NaN if absent). Markers are on the phone's own, "
                           "unsynchronised wall clock: aligning them with this time is only as "
                           "good as the two clocks' agreement")}};
  if (auto r = extras->write_attribute_group("/monsoon_host_time", group_attrs); !r) {
    return fail_and_remove(r.error());
  }
  for (const auto& l : logs) {
    if (auto r = extras->write_markers(l.group, l.log); !r) return fail_and_remove(r.error());
  }
  if (auto r = extras->close(); !r) return fail_and_remove(r.error());

  std::fprintf(stderr, "melt import: %s -> %s\n", a.dir.c_str(), a.output.c_str());
  std::fprintf(
      stderr, "  monsoon: %zu samples (%llu malformed rows skipped), start %s\n", trace.size(),
      static_cast<unsigned long long>(trace.malformed_rows),
      std::isnan(trace.start_unix_s) ? "unknown" : iso8601_utc(trace.start_unix_s).c_str());
  print_issues(trace.issues);
  for (const auto& l : logs) {
    std::size_t tokens = 0;
    std::int64_t prompt = -1;
    for (const auto& e : l.log.events) {
      if (e.kind == targets::MarkerKind::token) ++tokens;
      if (e.kind == targets::MarkerKind::prefill_start) prompt = e.index;
    }
    std::fprintf(stderr,
                 "  /markers/%s: %zu events, %zu tokens, prompt tokens %s, %zu issues (%s)\n",
                 l.group.c_str(), l.log.events.size(), tokens,
                 prompt >= 0 ? std::to_string(prompt).c_str() : "unknown", l.log.issues.size(),
                 l.log.source.c_str());
    print_issues(l.log.issues);
  }
  print_issues(other_issues);
  return kOk;
}

}  // namespace

void add_import(CLI::App& app, Commands& cmds) {
  auto* import = app.add_subcommand("import", "convert recordings of other rigs into captures");
  import->require_subcommand(1);
  auto a = std::make_shared<ImportArgs>();
  auto* s = import->add_subcommand("melt", "a MELT run directory (Monsoon CSV + runner events)");
  s->add_option("dir", a->dir, "run directory holding measurements_monsoon.csv")->required();
  s->add_option("-o,--output", a->output, "capture file to create (HDF5)")->required();
  a->iteration_opt = s->add_option("--iteration", a->iteration, "only this iteration I");
  a->conversation_opt =
      s->add_option("--conversation", a->conversation, "only this conversation C");
  s->add_flag("--all", a->all, "every iteration and conversation (the default)");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
