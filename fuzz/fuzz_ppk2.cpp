// libFuzzer target for the PPK2 codec: arbitrary bytes, fed in arbitrary pieces, through the
// streaming word decoder (with the elapsed-time wrap check on synthetic arrival times), the
// metadata collector and parser, and the device-side command parser. Asserts that every byte and
// every sample index is accounted for and that indices never go backwards.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "meltrig/fw/ppk2_protocol.hpp"

namespace pp = meltrig::fw::ppk2;
namespace fw = meltrig::fw;

#define FUZZ_ASSERT(c)      \
  do {                      \
    if (!(c)) std::abort(); \
  } while (0)

namespace {

/// The bytes a parsed command came from.
std::vector<std::uint8_t> encode(const pp::Command& c) {
  using K = pp::Command::Kind;
  switch (c.kind) {
    case K::get_metadata:
      return pp::cmd_get_metadata();
    case K::set_source_voltage:
      return pp::cmd_set_source_voltage_mv(c.value).value();
    case K::set_power_mode:
      return pp::cmd_set_power_mode(static_cast<pp::PowerMode>(c.value));
    case K::set_dut_power:
      return pp::cmd_set_dut_power(c.value != 0);
    case K::start:
      return pp::cmd_start();
    case K::stop:
      return pp::cmd_stop();
    case K::reset:
      return pp::cmd_reset();
  }
  std::abort();
}

void check_decoder_counters(const pp::StreamDecoder& d) {
  const auto& c = d.counters();
  FUZZ_ASSERT(c.bytes == 4 * (c.samples + c.duplicate_samples) + c.discarded_bytes + d.pending());
  FUZZ_ASSERT(d.next_index() == c.samples + c.missing_samples);
  FUZZ_ASSERT(c.invalid_range <= c.samples);
  FUZZ_ASSERT(c.corrupted_counters <= c.samples);
  FUZZ_ASSERT(c.counter_gaps <= c.missing_samples);
  FUZZ_ASSERT(d.pending() < pp::StreamDecoder::kBufferBytes + 4 * pp::StreamDecoder::kWindow);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // The first byte chooses how the stream is cut into reads, the second the decoder's options
  // and output size (a tiny output exercises block boundaries).
  const std::size_t piece = 1 + data[0] % 64;
  const bool fill = data[1] & 1;
  const std::size_t out_cap = 1 + (data[1] >> 1) % 16 * 37;
  auto bytes = std::span<const std::uint8_t>(data + 2, size - 2);

  pp::Metadata cal;
  cal.gs[3] = 0.0012;
  cal.o = {112, 75, 66, 57, 72};
  pp::StreamDecoder dec(pp::Converter(cal, 3.7), pp::StreamDecoder::Options{fill});
  std::vector<float> amps(out_cap);
  std::vector<std::uint8_t> logic(out_cap);
  std::uint64_t next = 0, rows = 0, missing = 0, dups = 0;
  auto on_block = [&](std::uint64_t first, std::size_t n) {
    FUZZ_ASSERT(n > 0 && n <= out_cap);
    if (fill)
      FUZZ_ASSERT(first == next);  // with filling, rows are contiguous
    else
      FUZZ_ASSERT(first >= next);  // indices never go backwards
    for (std::size_t k = 0; k < n; ++k)
      FUZZ_ASSERT(!std::isinf(amps[k]));
    next = first + n;
    rows += n;
  };
  auto on_gap = [&](const pp::DecoderGap& g) {
    FUZZ_ASSERT(g.count > 0);
    FUZZ_ASSERT(g.first_index >= next);
    if (g.kind == pp::DecoderGap::Kind::missing) {
      FUZZ_ASSERT(g.count < pp::kCounterModulo);
      missing += g.count;
      if (!fill) next = g.first_index + g.count;
    } else {
      dups += g.count;
    }
  };

  fw::WrapInference wrap(pp::wrap_config());
  std::uint32_t tag = 0, placed = 0;
  std::uint64_t last_offset = 0;
  std::int64_t t = 1'000'000'000;
  auto on_placed = [&](const fw::WrapPlacement& p) {
    FUZZ_ASSERT(p.tag == placed++);  // in order, none lost
    FUZZ_ASSERT(p.offset >= last_offset);
    FUZZ_ASSERT(p.wrap_lost % pp::kCounterModulo == 0);
    last_offset = p.offset + p.wrap_lost;
  };

  pp::MetadataCollector meta;
  pp::CommandParser commands;
  std::uint64_t command_bytes = 0;

  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    auto chunk = bytes.subspan(at, std::min(piece, bytes.size() - at));
    dec.feed(chunk, pp::SampleSpans{amps, logic}, on_block, on_gap);
    check_decoder_counters(dec);
    // Arrival times from the data: late, early and bursty reads.
    t += 100'000 + static_cast<std::int64_t>(chunk[0]) * 20'000;
    wrap.push(dec.next_index(), t, tag++,
              fw::WrapEvidence{(chunk[0] & 1) != 0, (chunk[0] & 2) != 0});
    wrap.drain(on_placed);
    FUZZ_ASSERT(wrap.offset() == last_offset || wrap.held() > 0);

    const std::size_t used = meta.feed(chunk);
    FUZZ_ASSERT(used <= chunk.size());
    FUZZ_ASSERT(meta.text().size() <= pp::MetadataCollector::kMaxBytes + 1);

    commands.feed(chunk, [&](const pp::Command& c) {
      auto again = encode(c);
      FUZZ_ASSERT(pp::parse_command(again).ok());
      command_bytes += again.size();
    });
    FUZZ_ASSERT(commands.pending() < 3);
  }
  dec.finish(pp::SampleSpans{amps, logic}, on_block, on_gap);
  check_decoder_counters(dec);
  FUZZ_ASSERT(dec.pending() == 0);
  const auto& c = dec.counters();
  FUZZ_ASSERT(c.missing_samples == missing);
  FUZZ_ASSERT(c.duplicate_samples == dups);
  FUZZ_ASSERT(fill ? rows == c.samples + c.missing_samples : rows == c.samples);
  wrap.finish();
  wrap.drain(on_placed);
  FUZZ_ASSERT(placed == tag && wrap.held() == 0);

  const auto& k = commands.counters();
  FUZZ_ASSERT(command_bytes + k.discarded_bytes + commands.pending() == bytes.size());
  FUZZ_ASSERT(k.discarded_bytes == k.unknown_opcodes + k.invalid_arguments);

  // The metadata parser on the whole input as text, and on what the collector kept.
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  for (std::string_view s : {text, meta.text()}) {
    auto m = pp::parse_metadata(s);
    if (!m) {
      FUZZ_ASSERT(m.error().message.find("PPK2 metadata") == 0);
      continue;
    }
    FUZZ_ASSERT(m->missing_keys.size() <= pp::metadata_keys().size());
    for (double r : m->r)
      FUZZ_ASSERT(r > 0);
    auto again = pp::parse_metadata(pp::format_metadata(*m));
    FUZZ_ASSERT(again.ok());
    FUZZ_ASSERT(again->r == m->r && again->gs == m->gs && again->gi == m->gi && again->o == m->o &&
                again->s == m->s && again->i == m->i && again->ug == m->ug);
    FUZZ_ASSERT(again->hw == (m->hw ? m->hw : std::optional<std::int64_t>(0)));
  }
  if (meta.complete()) FUZZ_ASSERT(meta.text().ends_with("END"));
  return 0;
}
