// libFuzzer target for the LVPM codec: arbitrary bytes, fed in arbitrary pieces, through both
// frame decoders, every packet parser, the calibrator and the sample sequencer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "meltrig/fw/lvpm_protocol.hpp"

namespace lv = meltrig::fw::lvpm;

#define FUZZ_ASSERT(c)      \
  do {                      \
    if (!(c)) std::abort(); \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte chooses how the stream is cut into reads.
  const std::size_t piece = 1 + data[0] % 64;
  auto bytes = std::span<const std::uint8_t>(data + 1, size - 1);

  lv::FrameDecoder from_device;
  lv::FrameDecoder to_device(lv::FrameDecoder::Direction::to_device);
  lv::Calibrator cal;
  lv::SampleSequencer seq({});
  std::uint64_t payload_bytes = 0, last_end = 0;
  std::int64_t t = 0;
  std::uint32_t tag = 0;

  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    auto chunk = bytes.subspan(at, std::min(piece, bytes.size() - at));
    t += 2'000'000;
    from_device.feed(chunk, [&](std::span<const std::uint8_t> p) {
      payload_bytes += p.size() + 2;
      FUZZ_ASSERT(lv::is_sample_packet(p) || lv::is_status_packet(p));
      if (auto s = lv::parse_status(p)) {
        auto round = lv::encode_status(*s);
        FUZZ_ASSERT(std::equal(round.begin() + 1, round.end(), p.begin() + 1) ||
                    p[22] != 0);  // the pad byte is not kept
      }
      if (auto sp = lv::parse_sample_packet(p)) {
        FUZZ_ASSERT(sp->n <= lv::kMaxSamplesPerPacket);
        cal.add(*sp);
        if (cal.ready()) (void)cal.current_amps(sp->samples[0].main_current);
        seq.push(sp->seq, sp->type == lv::PacketType::data && sp->n > 0, sp->n, t, tag++);
        seq.drain([&](const lv::PlacedPacket& pp) {
          FUZZ_ASSERT(pp.first_index >= last_end);  // indices never go backwards
          last_end = pp.first_index + pp.n;
        });
      }
    });
    to_device.feed(
        chunk, [&](std::span<const std::uint8_t> p) { FUZZ_ASSERT(lv::parse_command(p).ok()); });
    FUZZ_ASSERT(from_device.pending() <= 2 * (lv::kMaxPayload + 2));
  }
  seq.finish();
  seq.drain([&](const lv::PlacedPacket& pp) {
    FUZZ_ASSERT(pp.first_index >= last_end);
    last_end = pp.first_index + pp.n;
  });
  const auto& c = from_device.counters();
  // Every byte is either in a frame, discarded, or still pending.
  FUZZ_ASSERT(payload_bytes + c.empty_frames + c.discarded_bytes + from_device.pending() ==
              bytes.size());
  return 0;
}
