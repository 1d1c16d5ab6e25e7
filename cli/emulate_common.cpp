// What the emulate commands share: see emulate_common.hpp.
#include "emulate_common.hpp"

namespace meltrig::cli {

void add_emulate_options(CLI::App& s, EmulateArgs& a, const std::string& seed_help) {
  s.add_option("--link", a.link, "create a symlink to the pty here")->required();
  s.add_option("--waveform", a.waveform, "constant:A | steps:T:A,T:A,... | csv:FILE")
      ->capture_default_str();
  s.add_option("--noise", a.noise, "Gaussian current noise, A (standard deviation)");
  s.add_option("--seed", a.seed, seed_help)->capture_default_str();
}

void add_emulate_seconds(CLI::App& s, EmulateArgs& a) {
  s.add_option("--seconds", a.seconds, "exit after this long (default: until signal)");
}

Result<fixtures::Waveform> emulate_waveform(const EmulateArgs& a) {
  auto w = fixtures::Waveform::parse(a.waveform);
  if (!w) return make_error(Errc::invalid_argument, "--waveform: " + w.error().message);
  w->noise_amps = a.noise;
  return w;
}

}  // namespace meltrig::cli
