// meltrig emulate lvpm: a Monsoon LVPM on a pty until stopped.
#include <chrono>
#include <filesystem>
#include <thread>

#include "cli_common.hpp"
#include "meltrig/fixtures/lvpm_emulator.hpp"

namespace meltrig::cli {
namespace {

struct Args {
  std::string link, waveform = "constant:0.5";
  double noise = 0.0, seconds = 0.0;
  std::uint64_t seed = 1;
  std::vector<std::string> drops;
  bool garbage = false;
};

int run(const Args& a) {
  fixtures::LvpmEmulatorConfig cfg;
  auto w = fixtures::Waveform::parse(a.waveform);
  if (!w) return usage("--waveform: " + w.error().message);
  cfg.waveform = *w;
  cfg.waveform.noise_amps = a.noise;
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
  std::printf("emulating LVPM on %s; Ctrl-C to stop\n", a.link.c_str());
  std::fflush(stdout);
  serve_until_stopped(a.seconds);
  (*e)->stop();
  auto t = (*e)->truth();
  std::printf("emulator stopped: %llu samples sent, %llu dropped\n",
              static_cast<unsigned long long>(t.samples_sent),
              static_cast<unsigned long long>(t.samples_dropped));
  return kOk;
}

}  // namespace

void add_emulate_lvpm(CLI::App& emulate, Commands& cmds) {
  auto a = std::make_shared<Args>();
  auto* s = emulate.add_subcommand("lvpm", "emulate a Monsoon LVPM until stopped");
  s->add_option("--link", a->link, "create a symlink to the pty here")->required();
  s->add_option("--waveform", a->waveform, "constant:A | steps:T:A,T:A,... | csv:FILE")
      ->capture_default_str();
  s->add_option("--noise", a->noise, "Gaussian current noise, A (standard deviation)");
  s->add_option("--seed", a->seed, "noise seed")->capture_default_str();
  s->add_option("--drop", a->drops, "drop data packets FIRST:COUNT (repeatable)");
  s->add_flag("--garbage", a->garbage, "answer every command with random bytes");
  s->add_option("--seconds", a->seconds, "exit after this long (default: until signal)");
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
