// meltrig emulate ppk2: a Nordic PPK2 on a pty until stopped.
#include <chrono>
#include <filesystem>
#include <thread>

#include "cli_common.hpp"
#include "emulate_common.hpp"
#include "meltrig/fixtures/ppk2_emulator.hpp"

namespace meltrig::cli {
namespace {

struct Args : EmulateArgs {
  Args() { waveform = "constant:0.05"; }
  std::string logic = "none";
  double disconnect_at = -1.0;
  int source_mv = 3700;
  std::vector<std::string> drops, duplicates, omit;
  std::vector<std::uint64_t> corrupt;
  std::string stall, garbage;
  bool split = false, answer_garbage = false;
  double buffer_s = 0.0;
};

/// "A:B" as two numbers; throws std::invalid_argument (caught by the caller) on anything else.
template <typename T>
std::pair<T, T> pair_of(const std::string& s) {
  auto c = s.find(':');
  if (c == std::string::npos) throw std::invalid_argument(s);
  std::size_t end1 = 0, end2 = 0;
  T a, b;
  if constexpr (std::is_floating_point_v<T>) {
    a = std::stod(s.substr(0, c), &end1);
    b = std::stod(s.substr(c + 1), &end2);
  } else {
    a = std::stoull(s.substr(0, c), &end1);
    b = std::stoull(s.substr(c + 1), &end2);
  }
  if (end1 != c || end2 != s.size() - c - 1) throw std::invalid_argument(s);
  return {a, b};
}

/// Parses --logic: none | index | square:PERIOD | edges:INDEX=BYTE,INDEX=BYTE,...
bool parse_logic(const std::string& spec, fixtures::Ppk2EmulatorConfig& cfg) {
  if (spec == "none") return true;
  if (spec == "index") {
    cfg.logic = [](std::uint64_t i) { return static_cast<std::uint8_t>(i & 0xFF); };
    return true;
  }
  if (spec.rfind("square:", 0) == 0) {
    const std::uint64_t period = std::stoull(spec.substr(7));
    if (period == 0) return false;
    cfg.logic = [period](std::uint64_t i) { return static_cast<std::uint8_t>((i / period) & 1); };
    return true;
  }
  if (spec.rfind("edges:", 0) == 0) {
    std::string rest = spec.substr(6);
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string item = rest.substr(0, comma);
      auto eq = item.find('=');
      if (eq == std::string::npos) return false;
      const std::uint64_t at = std::stoull(item.substr(0, eq));
      const unsigned long byte = std::stoul(item.substr(eq + 1), nullptr, 0);
      if (byte > 0xFF) return false;
      cfg.logic_edges.emplace_back(at, static_cast<std::uint8_t>(byte));
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    }
    return true;
  }
  return false;
}

int run(const Args& a) {
  fixtures::Ppk2EmulatorConfig cfg;
  auto w = emulate_waveform(a);
  if (!w) return usage(w.error().message);
  cfg.waveform = *w;
  cfg.seed = a.seed;
  cfg.initial_source_mv = a.source_mv;
  cfg.metadata_omit = a.omit;
  auto& f = cfg.faults;
  f.answer_garbage = a.answer_garbage;
  f.split_writes = a.split;
  if (a.buffer_s > 0) cfg.output_limit_bytes = static_cast<std::size_t>(a.buffer_s * 400000.0);
  f.disconnect_at_s = a.disconnect_at;
  f.corrupt_counters = a.corrupt;
  try {
    if (!parse_logic(a.logic, cfg)) return usage("--logic \"" + a.logic + "\": see --help");
  } catch (const std::exception&) {
    return usage("--logic \"" + a.logic + "\": see --help");
  }
  for (const auto& [list, name, out] :
       {std::tuple{&a.drops, "--drop", &f.drop_samples},
        std::tuple{&a.duplicates, "--duplicate", &f.duplicate_samples}}) {
    for (const auto& d : *list) {
      try {
        out->push_back(pair_of<std::uint64_t>(d));
      } catch (const std::exception&) {
        return usage(std::string(name) + " \"" + d + "\": expected FIRST:COUNT");
      }
    }
  }
  try {
    if (!a.stall.empty()) std::tie(f.stall_at_s, f.stall_s) = pair_of<double>(a.stall);
  } catch (const std::exception&) {
    return usage("--stall \"" + a.stall + "\": expected AT_S:SECONDS");
  }
  try {
    if (!a.garbage.empty()) {
      auto [bytes, every] = pair_of<std::uint64_t>(a.garbage);
      f.garbage_bytes = static_cast<std::uint32_t>(bytes);
      f.garbage_every = static_cast<std::uint32_t>(every);
    }
  } catch (const std::exception&) {
    return usage("--garbage \"" + a.garbage + "\": expected BYTES:EVERY_N_SAMPLES");
  }
  auto e = fixtures::Ppk2Emulator::start(cfg, std::filesystem::path(a.link));
  if (!e) return fail(e.error().describe());
  auto t = serve_emulator(**e, a, "PPK2", [&] { return (*e)->running(); });
  std::printf("emulator stopped: %llu samples sent, %llu dropped, %llu duplicated\n",
              static_cast<unsigned long long>(t.samples_sent),
              static_cast<unsigned long long>(t.samples_dropped),
              static_cast<unsigned long long>(t.samples_duplicated));
  return kOk;
}

}  // namespace

void add_emulate_ppk2(CLI::App& emulate, Commands& cmds) {
  auto a = std::make_shared<Args>();
  auto* s = emulate.add_subcommand("ppk2", "emulate a Nordic PPK2 until stopped");
  add_emulate_options(*s, *a, "noise and garbage seed");
  s->add_option("--source-mv", a->source_mv, "source voltage at power-up, mV")
      ->capture_default_str();
  s->add_option("--logic", a->logic,
                "logic inputs: none | index (low byte of the sample index) | square:PERIOD "
                "(D0 toggles every PERIOD samples) | edges:INDEX=BYTE,...")
      ->capture_default_str();
  s->add_option("--omit-metadata", a->omit, "leave this metadata key out (repeatable)");
  s->add_option("--drop", a->drops, "never send samples FIRST:COUNT (repeatable)");
  s->add_option("--duplicate", a->duplicates, "send samples FIRST:COUNT twice (repeatable)");
  s->add_option("--corrupt", a->corrupt, "flip counter bits of this sample (repeatable)");
  s->add_flag("--split", a->split, "write the stream in 1-3 byte pieces");
  s->add_option("--buffer-s", a->buffer_s,
                "device output buffer, seconds of samples (default 0.65); beyond it samples drop");
  s->add_option("--stall", a->stall, "hold output AT_S:SECONDS after start, then burst");
  s->add_option("--disconnect-at", a->disconnect_at, "close the pty this long after start, s");
  s->add_option("--garbage", a->garbage, "insert BYTES:EVERY random bytes every EVERY samples");
  s->add_flag("--answer-garbage", a->answer_garbage, "answer every command with random bytes");
  add_emulate_seconds(*s, *a);
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
