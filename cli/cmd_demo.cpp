// meltrig demo: an emulated LVPM on a pty, captured through the real serial path.
#include <unistd.h>

#include <filesystem>

#include "cli_common.hpp"
#include "meltrig/fixtures/lvpm_emulator.hpp"

namespace meltrig::cli {

int run_capture_command(const std::string& monitor, const std::string& output, double duration,
                        double voltage, bool quiet);

namespace {

struct Args {
  std::string output = "demo.h5", waveform = "steps:0:0.25,2:1.2,4:0.6,7:1.5,9:0.3";
  double seconds = 10.0;
};

int run(const Args& a) {
  auto w = fixtures::Waveform::parse(a.waveform);
  if (!w) return usage("--waveform: " + w.error().message);
  fixtures::LvpmEmulatorConfig cfg;
  cfg.waveform = *w;
  cfg.waveform.noise_amps = 0.01;
  auto link =
      std::filesystem::temp_directory_path() / ("meltrig-demo-lvpm-" + std::to_string(::getpid()));
  auto e = fixtures::LvpmEmulator::start(cfg, link);
  if (!e) return fail(e.error().describe());
  std::printf("emulated Monsoon LVPM on %s; capturing %.0f s through libserialport\n", link.c_str(),
              a.seconds);
  std::fflush(stdout);
  int rc = run_capture_command("lvpm:" + link.string(), a.output, a.seconds, 4.0, false);
  (*e)->stop();
  auto t = (*e)->truth();
  if (t.samples_sent) {
    std::printf("emulator truth: %llu samples sent, mean current %.6f A (quantised %.6f A)\n",
                static_cast<unsigned long long>(t.samples_sent),
                t.sum_true_amps / static_cast<double>(t.samples_sent),
                t.sum_quantized_amps / static_cast<double>(t.samples_sent));
  }
  return rc;
}

}  // namespace

void add_demo(CLI::App& app, Commands& cmds) {
  auto a = std::make_shared<Args>();
  auto* s = app.add_subcommand(
      "demo", "emulate an LVPM on a pty and capture from it through the real serial path");
  s->add_option("-o,--output", a->output, "HDF5 file to create")->capture_default_str();
  s->add_option("--duration", a->seconds, "seconds")->capture_default_str();
  s->add_option("--waveform", a->waveform, "the emulated device's current")->capture_default_str();
  cmds.push_back({s, [a] { return run(*a); }});
}

}  // namespace meltrig::cli
