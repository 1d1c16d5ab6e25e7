// meltrig emulate lvpm: a Monsoon LVPM on a pty until stopped.
#include <chrono>
#include <filesystem>
#include <thread>

#include "cli_common.hpp"
#include "emulate_common.hpp"
#include "meltrig/fixtures/lvpm_emulator.hpp"

namespace meltrig::cli {
namespace {

struct Args : EmulateArgs {
  Args() { waveform = "constant:0.5"; }
  std::vector<std::string> drops;
  bool garbage = false;
};

int run(const Args& a) {
  fixtures::LvpmEmulatorConfig cfg;
  auto w = emulate_waveform(a);
  if (!w) return usage(w.error().message);
  cfg.waveform = *w;
  cfg.seed = a.seed;
  cfg.faults.answer_garbage = a.garbage;
  for (const auto& d : a.drops) {
    auto c = d.find(':');
    try {
      if (c == std::string::npos) throw std::invalid_argument(d);
      cfg.faults.drop_data_packets.emplace_back(std::stoull(d.substr(0, c)),
                                                std::stoull(d.substr(c + 1)));
    } catch (const std::exception&) {
      return usage("--drop \"" + d + "\": expected FIRST:COUNT");
    }
  }
  auto e = fixtures::LvpmEmulator::start(cfg, std::filesystem::path(a.link));
  if (!e) return fail(e.error().describe());
  auto t = serve_emulator(**e, a, "LVPM");
  std::printf("emulator stopped: %llu samples sent, %llu dropped\n",
              static_cast<unsigned long long>(t.samples_sent),
              static_cast<unsigned long long>(t.samples_dropped));
  return kOk;
}

}  // namespace

void add_emulate_lvpm(CLI::App& emulate, Commands& cmds) {
  auto a = std::make_shared<Args>();
  auto* s = emulate.add_subcommand("lvpm", "emulate a Monsoon LVPM until stopped");
  add_emulate_options(*s, *a, "noise seed");
  s->add_option("--drop", a->drops, "drop data packets FIRST:COUNT (repeatable)");
  s->add_flag("--garbage", a->garbage, "answer every command with random bytes");
  add_emulate_seconds(*s, *a);
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
