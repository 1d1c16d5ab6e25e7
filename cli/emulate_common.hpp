// What `meltrig emulate lvpm` and `meltrig emulate ppk2` share: the link, waveform, noise, seed and
// duration options, the waveform they build, and serving the emulator until stopped.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "cli_common.hpp"
#include "meltrig/fixtures/waveform.hpp"

namespace meltrig::cli {

struct EmulateArgs {
  std::string link;
  std::string waveform;  ///< the command's default, e.g. "constant:0.5"
  double noise = 0.0, seconds = 0.0;
  std::uint64_t seed = 1;
};

/// --link, --waveform, --noise and --seed (`seed_help` says what the seed drives).
void add_emulate_options(CLI::App& s, EmulateArgs& a, const std::string& seed_help);
/// --seconds.
void add_emulate_seconds(CLI::App& s, EmulateArgs& a);

/// The --waveform with the --noise added; the usage error's message if it does not parse.
Result<fixtures::Waveform> emulate_waveform(const EmulateArgs& a);

/// Announces the emulator (`what` on the link), serves until interrupted, --seconds pass or
/// `running` turns false, then stops it and returns its truth.
template <typename Emulator>
auto serve_emulator(Emulator& e, const EmulateArgs& a, const char* what,
                    const std::function<bool()>& running = {}) {
  std::printf("emulating %s on %s; Ctrl-C to stop\n", what, a.link.c_str());
  std::fflush(stdout);
  serve_until_stopped(a.seconds, running);
  e.stop();
  return e.truth();
}

}  // namespace meltrig::cli
