// meltrig bench: benchmark programs that print figures (timing goals live here, never in tests).
//   meltrig bench decode   samples per second per decoder on one core
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/fw/lvpm_protocol.hpp"

namespace meltrig::cli {
namespace {

namespace lv = fw::lvpm;

/// One decoder benchmark: builds its input once, then decodes it `reps` times.
struct DecodeBench {
  const char* name;
  /// Decodes the prepared stream once; returns the number of samples produced.
  std::function<std::uint64_t()> run;
};

/// LVPM: a stream of framed 31-sample data packets, decoded to calibrated amps and volts.
DecodeBench lvpm_bench() {
  auto stream = std::make_shared<std::vector<std::uint8_t>>();
  std::vector<std::uint8_t> payload;
  for (std::uint8_t s = 0; s < 2; ++s) {  // one zero- and one ref-calibration packet first
    std::array<lv::RawSample, 2> cal{};
    cal[0].main_current = static_cast<std::int16_t>(s ? 3100 : 100);
    cal[1].main_current = static_cast<std::int16_t>(s ? 6101 : 101);
    payload.clear();
    lv::append_sample_packet(s, s ? lv::PacketType::ref_cal : lv::PacketType::zero_cal, cal,
                             payload);
    lv::append_frame(payload, *stream);
  }
  std::array<lv::RawSample, lv::kMaxSamplesPerPacket> raw{};
  for (std::size_t k = 0; k < 40000; ++k) {
    for (std::size_t i = 0; i < raw.size(); ++i) {
      auto v = static_cast<std::int16_t>((k * 31 + i) % 20000 * 2 + ((k + i) % 3 == 0));
      raw[i] = {v, 0, 0, static_cast<std::uint16_t>(64000 + (i % 4) * 4)};
    }
    payload.clear();
    lv::append_sample_packet(static_cast<std::uint8_t>(k + 2), lv::PacketType::data, raw, payload);
    lv::append_frame(payload, *stream);
  }
  auto out_i = std::make_shared<std::vector<float>>(lv::kMaxSamplesPerPacket);
  auto out_v = std::make_shared<std::vector<float>>(lv::kMaxSamplesPerPacket);
  return {"lvpm (serial, 8 B/sample, 31/packet)", [stream, out_i, out_v] {
            lv::FrameDecoder dec;
            lv::Calibrator cal;
            std::uint64_t n = 0;
            std::span<const std::uint8_t> all(*stream);
            for (std::size_t at = 0; at < all.size(); at += 4096) {  // reads of 4 KiB
              dec.feed(all.subspan(at, std::min<std::size_t>(4096, all.size() - at)),
                       [&](std::span<const std::uint8_t> p) {
                         auto sp = lv::parse_sample_packet(p);
                         if (!sp) return;
                         if (sp->type != lv::PacketType::data) {
                           cal.add(*sp);
                           return;
                         }
                         for (std::size_t i = 0; i < sp->n; ++i) {
                           (*out_i)[i] =
                               static_cast<float>(cal.current_amps(sp->samples[i].main_current));
                           (*out_v)[i] = static_cast<float>(
                               lv::Calibrator::voltage_volts(sp->samples[i].main_voltage, 1));
                         }
                         n += sp->n;
                       });
            }
            return n;
          }};
}

int run_decode() {
  std::vector<DecodeBench> benches = {lvpm_bench()};
  std::printf("decoder benchmark: bytes -> calibrated samples, one thread, best of 5 runs\n");
  for (auto& b : benches) {
    double best = 0;
    std::uint64_t samples = 0;
    for (int rep = 0; rep < 5; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      samples = b.run();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, static_cast<double>(samples) / s);
    }
    std::printf("  %-44s %8.1f M samples/s  (%llu samples per run)\n", b.name, best / 1e6,
                static_cast<unsigned long long>(samples));
  }
  return kOk;
}

}  // namespace

void add_bench(CLI::App& app, Commands& cmds) {
  auto* bench = app.add_subcommand("bench", "benchmark programs that print figures");
  bench->require_subcommand(1);
  auto* decode = bench->add_subcommand("decode", "samples per second per decoder on one core");
  cmds.push_back({decode, [] { return run_decode(); }});
}

}  // namespace meltrig::cli
