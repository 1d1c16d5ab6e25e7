// LCUS and ICStation serial relay protocols: see relay_protocols.hpp.
#include "meltrig/fw/relay_protocols.hpp"

#include <cstdio>
#include <string>

namespace meltrig::fw {
namespace {

std::string hex(std::uint8_t b) {
  char s[8];
  std::snprintf(s, sizeof s, "0x%02X", b);
  return s;
}

}  // namespace

namespace lcus {

Result<Frame> encode(int channel, bool on) {
  if (channel < 1 || channel > kMaxChannels) {
    return make_error(Errc::invalid_argument,
                      "LCUS channel " + std::to_string(channel) + " is outside 1..8");
  }
  auto ch = static_cast<std::uint8_t>(channel);
  std::uint8_t state = on ? 1 : 0;
  return Frame{kHeader, ch, state, checksum(ch, state)};
}

Result<Command> decode(std::span<const std::uint8_t> f) {
  auto bad = [](const std::string& why) {
    return make_error(Errc::protocol_error, "LCUS frame: " + why);
  };
  if (f.size() != kFrameSize) {
    return bad(std::to_string(f.size()) + " bytes, expected " + std::to_string(kFrameSize));
  }
  if (f[0] != kHeader) return bad("byte 0 is " + hex(f[0]) + ", expected header 0xA0");
  if (f[3] != checksum(f[1], f[2])) {
    return bad("byte 3 (checksum) is " + hex(f[3]) + ", expected " + hex(checksum(f[1], f[2])));
  }
  if (f[1] < 1 || f[1] > kMaxChannels) {
    return bad("byte 1 (channel) is " + hex(f[1]) + ", expected 0x01..0x08");
  }
  if (f[2] > 1) return bad("byte 2 (state) is " + hex(f[2]) + ", expected 0x00 or 0x01");
  return Command{f[1], f[2] == 1};
}

FrameScan scan(std::span<const std::uint8_t> buf) {
  using K = FrameScan::Kind;
  if (buf.empty()) return {K::need_more, {}};
  if (buf[0] != kHeader) return {K::not_header, {}};
  if (buf.size() < kFrameSize) return {K::need_more, {}};
  if (buf[3] != checksum(buf[1], buf[2])) return {K::bad_checksum, {}};
  if (buf[1] < 1 || buf[1] > kMaxChannels || buf[2] > 1) return {K::implausible, {}};
  return {K::frame, Command{buf[1], buf[2] == 1}};
}

std::optional<Command> FrameScanner::push(std::uint8_t byte) {
  buf_[len_++] = byte;
  for (;;) {
    FrameScan s = scan(std::span<const std::uint8_t>(buf_.data(), len_));
    switch (s.kind) {
      case FrameScan::Kind::need_more:
        return std::nullopt;
      case FrameScan::Kind::frame:
        ++counters_.frames;
        len_ = 0;
        return s.command;
      case FrameScan::Kind::bad_checksum:
        ++counters_.bad_checksums;
        break;
      case FrameScan::Kind::implausible:
        ++counters_.implausible;
        break;
      case FrameScan::Kind::not_header:
        break;
    }
    // Resync: drop one byte and look at the rest again (it may hold the next header).
    ++counters_.discarded_bytes;
    for (std::size_t i = 1; i < len_; ++i)
      buf_[i - 1] = buf_[i];
    --len_;
  }
}

}  // namespace lcus

namespace icstation {

Result<Board> board_for_id(std::uint8_t id) {
  for (const auto& b : kBoards)
    if (b.id == id) return b;
  return make_error(Errc::protocol_error, "ICStation identification answer " + hex(id) +
                                              " is no known board (0xAD 2 ch, 0xAB 4 ch, "
                                              "0xAC 8 ch)");
}

Result<Board> board_for_channels(int channels) {
  for (const auto& b : kBoards)
    if (b.channels == channels) return b;
  return make_error(Errc::invalid_argument,
                    "ICStation boards have 2, 4 or 8 channels, not " + std::to_string(channels));
}

Result<std::uint8_t> encode_bitmap(std::uint8_t on_mask, int channels) {
  if (channels < 1 || channels > kMaxChannels) {
    return make_error(Errc::invalid_argument,
                      "ICStation channel count " + std::to_string(channels) + " is outside 1..8");
  }
  if (on_mask & ~channel_mask(channels)) {
    return make_error(Errc::invalid_argument, "ICStation relay mask " + hex(on_mask) +
                                                  " names a channel beyond " +
                                                  std::to_string(channels));
  }
  return static_cast<std::uint8_t>(~on_mask);
}

DeviceAction DeviceDecoder::on_byte(std::uint8_t byte) {
  using K = DeviceAction::Kind;
  if (command_mode_) {
    ++counters_.bitmaps;
    on_mask_ = decode_bitmap(byte, board_.channels);
    return {K::set_relays, 0, on_mask_};
  }
  if (byte == kIdentify) {
    ++counters_.identify_requests;
    return {K::reply_id, board_.id, 0};
  }
  if (byte == kEnterCommandMode) {
    command_mode_ = true;
    return {K::enter_command_mode, 0, 0};
  }
  ++counters_.ignored_bytes;
  return {K::ignored, 0, 0};
}

}  // namespace icstation
}  // namespace meltrig::fw
