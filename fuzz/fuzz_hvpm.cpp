// libFuzzer target for the HVPM codec: arbitrary bytes cut into 64-byte packets (the last one may
// be short, as a USB transfer can end), decoded with both byte orders of the dropped count, one
// packet at a time and in a batch, re-encoded, fed through the calibrator and the sample
// sequencer; plus the device-side control-request parser. Asserts the invariants drivers rely on.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "meltrig/fw/hvpm_protocol.hpp"

namespace hv = meltrig::fw::hvpm;

#define FUZZ_ASSERT(c)      \
  do {                      \
    if (!(c)) std::abort(); \
  } while (0)

namespace {

void check_request(std::span<const std::uint8_t> b) {
  if (b.size() < 6) return;
  const auto value = static_cast<std::uint16_t>(b[2] | (b[3] << 8));
  const auto index = static_cast<std::uint16_t>(b[4] | (b[5] << 8));
  const std::uint8_t type = (b[0] & 1) ? hv::kRequestTypeIn : hv::kRequestTypeOut;
  auto data = b.subspan(6, std::min<std::size_t>(b.size() - 6, 8));
  auto r = hv::parse_request(type, b[1], value, index, data);
  if (!r) return;
  if (r->kind == hv::HostRequest::Kind::set_value) {
    // A set value the device accepts is exactly what the host side encodes for it.
    auto t = hv::set_value(r->op, r->value);
    FUZZ_ASSERT(t.value == value && t.index == index && t.request == b[1]);
    FUZZ_ASSERT(std::equal(data.begin(), data.end(), t.data.begin()) && data.size() == 4);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte chooses the model, the packet spacing in time and the sequencer settings.
  const std::uint8_t mode = data[0];
  const auto model = (mode & 1) ? hv::Model::lvpm : hv::Model::hvpm;
  const std::int64_t step_ns = (1 + ((mode >> 1) & 7)) * 150'000;
  auto bytes = std::span<const std::uint8_t>(data + 1, size - 1);
  check_request(bytes);

  const std::size_t n_packets = (bytes.size() + hv::kPacketSize - 1) / hv::kPacketSize;
  std::vector<hv::PacketHeader> headers_le(n_packets), headers_be(n_packets);
  std::vector<hv::RawSample> samples_le(3 * n_packets), samples_be(3 * n_packets);
  auto le = hv::decode_batch(bytes, hv::DroppedByteOrder::little, headers_le, samples_le);
  auto be = hv::decode_batch(bytes, hv::DroppedByteOrder::big, headers_be, samples_be);
  // Enough room: every byte is covered, both orders agree on everything but the dropped count.
  FUZZ_ASSERT(le.packets == n_packets && le.bytes_consumed == bytes.size());
  FUZZ_ASSERT(be.packets == le.packets && be.samples == le.samples);
  FUZZ_ASSERT(be.invalid_packets == le.invalid_packets);
  FUZZ_ASSERT(le.samples <= 3 * (le.packets - le.invalid_packets));

  // Scales from the input, so the calibrator sees odd values too (zero, huge, equal ref/zero).
  hv::DeviceCalibration dev;
  dev.model = model;
  if (bytes.size() >= 8) {
    dev.main = {static_cast<double>(bytes[0] << 8 | bytes[1]), static_cast<double>(bytes[2]),
                static_cast<double>(bytes[3]), static_cast<double>(bytes[4])};
    dev.usb = {static_cast<double>(bytes[5] << 8 | bytes[6]), static_cast<double>(bytes[7]), 0, 0};
  } else {
    dev.main = dev.usb = {35946, 3103, 100, 80};
  }
  hv::Calibrator cal(dev);
  hv::SampleSequencer::Config scfg;
  scfg.infer_wraps = (mode & 0x10) == 0;
  scfg.settle_ns = 50'000'000;
  scfg.horizon_ns = 200'000'000;
  hv::SampleSequencer seq(scfg);
  seq.begin(0);
  std::uint64_t last_end = 0;
  std::uint64_t placed_slots = 0, placed_lost = 0;
  auto on_placed = [&](const hv::PlacedPacket& p) {
    FUZZ_ASSERT(p.lost_before == p.counter_lost + p.device_dropped + p.wrap_lost);
    FUZZ_ASSERT(p.wrap_inferred || p.wrap_uncertainty == 0);
    FUZZ_ASSERT(p.first_index == last_end + p.lost_before);  // indices never go backwards
    FUZZ_ASSERT(p.slots >= 1 && p.slots <= hv::kMaxSamplesPerPacket);
    last_end = p.first_index + p.slots;
    placed_slots += p.slots;
    placed_lost += p.lost_before;
  };
  std::uint64_t pushed_slots = 0;
  std::int64_t t = 0;
  std::array<float, 3> amps{}, volts{}, usb{};

  for (std::size_t k = 0; k < n_packets; ++k) {
    auto piece = bytes.subspan(k * hv::kPacketSize,
                               std::min(hv::kPacketSize, bytes.size() - k * hv::kPacketSize));
    hv::PacketHeader h;
    std::array<hv::RawSample, 3> s{};
    const auto st = hv::decode_packet(piece, hv::DroppedByteOrder::little, h, s);
    const auto& hb = headers_le[k];
    FUZZ_ASSERT(st == hb.status && h.flags == hb.flags && h.dropped == hb.dropped);
    FUZZ_ASSERT(hv::parse_packet(piece, hv::DroppedByteOrder::little).ok() ==
                (st == hv::PacketStatus::ok));
    // The two byte orders read the same two bytes swapped.
    FUZZ_ASSERT(headers_be[k].dropped ==
                static_cast<std::uint16_t>((hb.dropped >> 8) | (hb.dropped << 8)));
    if (st != hv::PacketStatus::ok) continue;
    FUZZ_ASSERT(h.n <= hv::kMaxSamplesPerPacket);
    FUZZ_ASSERT(piece.size() >= hv::kHeaderSize + hv::kSampleSize * h.n);
    for (std::size_t i = 0; i < h.n; ++i) {
      FUZZ_ASSERT(s[i] == samples_le[hb.first_sample + i]);
      FUZZ_ASSERT(s[i] == samples_be[headers_be[k].first_sample + i]);
    }
    // Re-encoding gives the packet's meaningful bytes back, zero padding after them.
    std::array<std::uint8_t, hv::kPacketSize> again{};
    hv::encode_packet(h.dropped, h.flags, std::span(s.data(), h.n), hv::DroppedByteOrder::little,
                      again);
    const std::size_t used = hv::kHeaderSize + hv::kSampleSize * h.n;
    FUZZ_ASSERT(std::equal(piece.begin(), piece.begin() + static_cast<std::ptrdiff_t>(used),
                           again.begin()));
    FUZZ_ASSERT(std::all_of(again.begin() + static_cast<std::ptrdiff_t>(used), again.end(),
                            [](std::uint8_t b) { return b == 0; }));

    std::array<hv::RawSample, 3> slots{};
    std::uint8_t n_slots = 0;
    for (std::size_t i = 0; i < h.n; ++i) {
      const auto kind = s[i].kind();
      if (kind == hv::SampleKind::zero_cal || kind == hv::SampleKind::ref_cal) cal.add(s[i]);
      if (kind == hv::SampleKind::measurement || kind == hv::SampleKind::invalid)
        slots[n_slots++] = s[i];
    }
    cal.convert(std::span(slots.data(), n_slots), amps, volts, usb);
    for (std::size_t i = 0; i < n_slots; ++i) {
      FUZZ_ASSERT(std::isfinite(volts[i]) && volts[i] >= 0.0f);
      if (!cal.main_ready()) FUZZ_ASSERT(std::isnan(amps[i]));
    }
    t += step_ns;
    seq.push(h.counter(), h.dropped, n_slots, t, static_cast<std::uint32_t>(k));
    pushed_slots += n_slots;
    seq.drain(on_placed);
  }
  seq.finish();
  seq.drain(on_placed);
  FUZZ_ASSERT(seq.held() == 0);
  FUZZ_ASSERT(placed_slots == pushed_slots);
  const auto& c = seq.counters();
  FUZZ_ASSERT(last_end == placed_slots + placed_lost);
  // Losses after the last packet with samples are counted but have nothing to sit before.
  FUZZ_ASSERT(placed_lost <= c.counter_lost + c.device_dropped + c.wrap_lost + c.inferred_lost);
  return 0;
}
