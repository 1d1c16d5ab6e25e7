// libFuzzer target for the serial relay codecs: arbitrary bytes, cut into arbitrary pieces,
// through the LCUS frame scanner (checked against a byte-at-a-time scanner and against decode())
// and through the ICStation board-side decoder for every board size, with the bitmap codec.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "meltrig/fw/relay_protocols.hpp"

namespace lcus = meltrig::fw::lcus;
namespace ic = meltrig::fw::icstation;

#define FUZZ_ASSERT(c)      \
  do {                      \
    if (!(c)) std::abort(); \
  } while (0)

namespace {

void check_lcus(std::span<const std::uint8_t> bytes, std::size_t piece) {
  lcus::FrameScanner pieces, single;
  std::vector<lcus::Command> a, b;
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    auto chunk = bytes.subspan(at, std::min(piece, bytes.size() - at));
    pieces.feed(chunk, [&](const lcus::Command& c) { a.push_back(c); });
    FUZZ_ASSERT(pieces.pending() < lcus::kFrameSize);
  }
  for (auto byte : bytes) {
    if (auto c = single.push(byte)) b.push_back(*c);
  }
  // How the stream is cut never changes what is found.
  FUZZ_ASSERT(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    FUZZ_ASSERT(a[i].channel == b[i].channel && a[i].on == b[i].on);
  const auto& c = pieces.counters();
  const auto& d = single.counters();
  FUZZ_ASSERT(c.frames == d.frames && c.discarded_bytes == d.discarded_bytes &&
              c.bad_checksums == d.bad_checksums && c.implausible == d.implausible);
  // Every byte is in a frame, discarded, or pending.
  FUZZ_ASSERT(lcus::kFrameSize * c.frames + c.discarded_bytes + pieces.pending() == bytes.size());
  FUZZ_ASSERT(c.frames == a.size());
  // Each command is a valid frame that re-encodes and decodes to itself.
  for (const auto& cmd : a) {
    FUZZ_ASSERT(cmd.channel >= 1 && cmd.channel <= lcus::kMaxChannels);
    auto f = lcus::encode(cmd.channel, cmd.on);
    FUZZ_ASSERT(f.ok());
    auto back = lcus::decode(*f);
    FUZZ_ASSERT(back.ok() && back->channel == cmd.channel && back->on == cmd.on);
  }
  // scan() and decode() agree on 4-byte windows (the first 64: decode() builds an error message
  // per invalid window, which would otherwise dominate the run time).
  for (std::size_t i = 0; i + lcus::kFrameSize <= bytes.size() && i < 64; ++i) {
    auto w = bytes.subspan(i, lcus::kFrameSize);
    auto s = lcus::scan(w);
    FUZZ_ASSERT(s.kind != lcus::FrameScan::Kind::need_more);
    FUZZ_ASSERT((s.kind == lcus::FrameScan::Kind::frame) == lcus::decode(w).ok());
  }
}

void check_icstation(std::span<const std::uint8_t> bytes, const ic::Board& board,
                     bool start_in_command_mode) {
  using K = ic::DeviceAction::Kind;
  ic::DeviceDecoder dec(board, start_in_command_mode);
  std::uint64_t replies = 0, enters = 0, sets = 0, ignored = 0;
  for (auto byte : bytes) {
    const bool was_command_mode = dec.command_mode();
    auto a = dec.on_byte(byte);
    switch (a.kind) {
      case K::reply_id:
        FUZZ_ASSERT(!was_command_mode && byte == ic::kIdentify && a.reply == board.id);
        ++replies;
        break;
      case K::enter_command_mode:
        FUZZ_ASSERT(!was_command_mode && byte == ic::kEnterCommandMode && dec.command_mode());
        ++enters;
        break;
      case K::set_relays: {
        FUZZ_ASSERT(was_command_mode);
        FUZZ_ASSERT((a.on_mask & ~ic::channel_mask(board.channels)) == 0);
        FUZZ_ASSERT(a.on_mask == ic::decode_bitmap(byte, board.channels));
        FUZZ_ASSERT(a.on_mask == dec.on_mask());
        auto wire = ic::encode_bitmap(a.on_mask, board.channels);
        FUZZ_ASSERT(wire.ok() && ic::decode_bitmap(*wire, board.channels) == a.on_mask);
        ++sets;
        break;
      }
      case K::ignored:
        FUZZ_ASSERT(!was_command_mode && byte != ic::kIdentify && byte != ic::kEnterCommandMode);
        ++ignored;
        break;
    }
    // Command mode is never left without a power cycle.
    FUZZ_ASSERT(!was_command_mode || dec.command_mode());
  }
  FUZZ_ASSERT(enters <= 1);
  FUZZ_ASSERT(replies + enters + sets + ignored == bytes.size());
  const auto& c = dec.counters();
  FUZZ_ASSERT(c.identify_requests == replies && c.bitmaps == sets && c.ignored_bytes == ignored);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte chooses how the stream is cut into reads and whether the ICStation starts
  // in command mode.
  const std::size_t piece = 1 + data[0] % 16;
  const bool command_mode = data[0] & 0x80;
  auto bytes = std::span<const std::uint8_t>(data + 1, size - 1);

  check_lcus(bytes, piece);
  for (const auto& board : ic::kBoards)
    check_icstation(bytes, board, command_mode);

  // The ID table: exactly the three known bytes identify a board, consistently both ways.
  for (auto byte : bytes.first(std::min<std::size_t>(bytes.size(), 8))) {
    auto b = ic::board_for_id(byte);
    FUZZ_ASSERT(b.ok() == (byte == 0xAB || byte == 0xAC || byte == 0xAD));
    if (b) FUZZ_ASSERT(ic::board_for_channels(b->channels)->id == byte);
  }
  // The bitmap codec over any mask and channel count.
  if (bytes.size() >= 2) {
    const std::uint8_t mask = bytes[0];
    const int channels = bytes[1] % 10;  // 0..9: includes the invalid counts 0 and 9
    auto w = ic::encode_bitmap(mask, channels);
    const bool valid = channels >= 1 && channels <= 8 && (mask & ~ic::channel_mask(channels)) == 0;
    FUZZ_ASSERT(w.ok() == valid);
    if (w) {
      FUZZ_ASSERT(ic::decode_bitmap(*w, channels) == mask);
      FUZZ_ASSERT((*w | ic::channel_mask(channels)) == 0xFF);  // absent relays sent as off
    }
  }
  return 0;
}
