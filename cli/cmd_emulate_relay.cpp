// meltrig emulate lcus | icstation: a serial relay board on a pty until stopped, logging every
// relay state it enters (optionally to a file, so a test can check it after a driver exited).
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>

#include "cli_common.hpp"
#include "meltrig/fixtures/relay_emulators.hpp"

namespace meltrig::cli {
namespace {

struct EmulateRelayArgs {
  std::string link, log;
  int channels = 4;
  long long ignore_after = -1;
  double seconds = 0;
  bool command_mode = false;
};

int run(const EmulateRelayArgs& a, bool icstation) {
  fixtures::IcstationEmulatorConfig cfg;
  cfg.channels = a.channels;
  if (!a.log.empty()) cfg.log_file = std::filesystem::path(a.log);
  if (a.ignore_after >= 0) cfg.faults.ignore_after = static_cast<std::uint64_t>(a.ignore_after);
  cfg.command_mode = a.command_mode;
  std::unique_ptr<fixtures::RelayEmulator> e;
  if (icstation) {
    auto r = fixtures::IcstationEmulator::start(cfg, std::filesystem::path(a.link));
    if (!r)
      return r.error().code == Errc::invalid_argument ? usage(r.error().message)
                                                      : fail(r.error().describe());
    e = std::move(r.value());
  } else {
    auto r = fixtures::LcusEmulator::start(cfg, std::filesystem::path(a.link));
    if (!r)
      return r.error().code == Errc::invalid_argument ? usage(r.error().message)
                                                      : fail(r.error().describe());
    e = std::move(r.value());
  }
  std::printf("emulating %s with %d channels on %s; Ctrl-C to stop\n",
              icstation ? "an ICStation board" : "an LCUS board", a.channels, a.link.c_str());
  std::fflush(stdout);
  serve_until_stopped(a.seconds);
  e->stop();  // handles what a driver already wrote before the pty goes
  auto c = e->counters();
  auto log = e->log();
  std::printf(
      "emulator stopped: %zu state changes, last %s; %llu commands (%llu ignored by fault), "
      "%llu bytes discarded, %llu bad checksums, %llu out of range\n",
      log.size() - 1, log.back().channels_string().c_str(),
      static_cast<unsigned long long>(c.commands),
      static_cast<unsigned long long>(c.ignored_by_fault),
      static_cast<unsigned long long>(c.discarded_bytes),
      static_cast<unsigned long long>(c.bad_checksums),
      static_cast<unsigned long long>(c.out_of_range));
  return kOk;
}

void add_one(CLI::App& emulate, Commands& cmds, bool icstation) {
  auto a = std::make_shared<EmulateRelayArgs>();
  auto* s = emulate.add_subcommand(
      icstation ? "icstation" : "lcus",
      icstation ? "emulate an ICStation ICSE013A/012A/014A serial relay board until stopped"
                : "emulate an LCUS-1/2/4/8 serial relay board until stopped");
  s->add_option("--link", a->link, "create a symlink to the pty here")->required();
  s->add_option("--channels", a->channels, icstation ? "2, 4 or 8" : "1, 2, 4 or 8")
      ->check(icstation ? CLI::IsMember({2, 4, 8}) : CLI::IsMember({1, 2, 4, 8}))
      ->capture_default_str();
  s->add_option("--log", a->log, "append every relay state to this file (one line per change)");
  s->add_option("--ignore-after", a->ignore_after,
                "obey this many commands, then ignore the rest (0 = ignore all)")
      ->check(CLI::NonNegativeNumber);
  s->add_option("--seconds", a->seconds, "exit after this long (default: until signal)");
  if (icstation) {
    s->add_flag("--command-mode", a->command_mode,
                "start as a board identified earlier: already in command mode");
  }
  cmds.push_back({s, [a, icstation] { return run(*a, icstation); }});
}

}  // namespace

void add_emulate_relays(CLI::App& emulate, Commands& cmds) {
  add_one(emulate, cmds, false);
  add_one(emulate, cmds, true);
}

}  // namespace meltrig::cli
