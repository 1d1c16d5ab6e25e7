// Serial relay boards: LCUS-1/2/4/8 (CH340, 4-byte `A0 ch state sum` frames, write-only) and
// ICStation ICSE012A/013A/014A (identify with 0x50, enter command mode with 0x51, then every
// byte is the whole active-low relay bitmap). Pure code over bytes: no I/O, no clocks. Both
// directions are here: the host side (drivers) and the device side (emulators, fuzzers).
// Facts come from the boards' public command descriptions (no vendor specification exists).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "meltrig/fw/result.hpp"

namespace meltrig::fw::lcus {

/// First byte of every frame.
inline constexpr std::uint8_t kHeader = 0xA0;
/// Every frame is exactly this long.
inline constexpr std::size_t kFrameSize = 4;
/// The largest board (LCUS-8); channels are numbered 1..8 on the wire.
inline constexpr int kMaxChannels = 8;
/// Line speed of every LCUS variant (8N1).
inline constexpr int kBaud = 9600;
/// USB bridge of the boards (WCH CH340). Many other gadgets use it too: only "may be an LCUS".
inline constexpr int kUsbVid = 0x1a86, kUsbPid = 0x7523;

/// One switch command as it travels on the wire.
using Frame = std::array<std::uint8_t, kFrameSize>;

/// A decoded switch command.
struct Command {
  int channel = 0;  ///< 1..8
  bool on = false;
};

/// The frame checksum: (0xA0 + channel + state) & 0xFF.
constexpr std::uint8_t checksum(std::uint8_t channel, std::uint8_t state) {
  return static_cast<std::uint8_t>((kHeader + channel + state) & 0xFF);
}

/// The frame switching `channel` (1..8) on or off; invalid_argument for any other channel.
Result<Frame> encode(int channel, bool on);

/// Decodes exactly one frame (4 bytes); protocol_error naming the offending byte and its offset.
Result<Command> decode(std::span<const std::uint8_t> frame);

/// Outcome of looking at the front of a byte buffer (the shape of lvpm::FrameScan).
struct FrameScan {
  enum class Kind {
    need_more,     ///< could still become a frame
    not_header,    ///< first byte is not 0xA0
    bad_checksum,  ///< four bytes from 0xA0 whose checksum does not match
    implausible,   ///< checksum matches but channel is not 1..8 or state is not 0/1
    frame,
  } kind = Kind::need_more;
  Command command;  ///< for `frame`
};
/// Classifies the front of `buf`. Pure; never reads past `buf` or beyond kFrameSize bytes.
FrameScan scan(std::span<const std::uint8_t> buf);

/// What a FrameScanner discarded; every byte not in a frame is counted once in discarded_bytes.
struct ScanCounters {
  std::uint64_t frames = 0;
  std::uint64_t discarded_bytes = 0;  ///< bytes dropped while resynchronising
  std::uint64_t bad_checksums = 0;    ///< positions where a 0xA0 frame failed its checksum
  std::uint64_t implausible = 0;      ///< valid checksum, channel or state out of range
};

/// Device-side frame scanner for emulators: bytes arrive in arbitrary pieces, possibly with
/// garbage between frames. Anything that is not a valid frame costs one byte and the scan
/// restarts at the next byte, so one stray byte never swallows the frame behind it. The buffer
/// holds at most one partial frame (3 bytes); nothing is allocated.
class FrameScanner {
 public:
  /// Takes one byte; returns the command when it completes a valid frame.
  std::optional<Command> push(std::uint8_t byte);
  /// Feeds a piece of the stream, calling `on_command(Command)` for each valid frame in order.
  template <typename OnCommand>
  void feed(std::span<const std::uint8_t> bytes, OnCommand&& on_command) {
    for (auto b : bytes) {
      if (auto c = push(b)) on_command(*c);
    }
  }
  const ScanCounters& counters() const { return counters_; }
  /// Bytes held as the start of a frame that has not completed yet (0..3).
  std::size_t pending() const { return len_; }

 private:
  std::array<std::uint8_t, kFrameSize> buf_{};
  std::size_t len_ = 0;
  ScanCounters counters_;
};

}  // namespace meltrig::fw::lcus

namespace meltrig::fw::icstation {

/// Host -> board before command mode: "who are you?"; the board answers with its ID byte.
inline constexpr std::uint8_t kIdentify = 0x50;
/// Host -> board: enter command mode; from then on every byte is a relay bitmap.
inline constexpr std::uint8_t kEnterCommandMode = 0x51;
/// Line speed (8N1).
inline constexpr int kBaud = 9600;
/// The largest board (ICSE014A).
inline constexpr int kMaxChannels = 8;

/// One ICStation board model.
struct Board {
  std::uint8_t id;  ///< the answer to kIdentify
  int channels;
  std::string_view model;
};
/// Every known board: the ID byte decides the channel count.
inline constexpr std::array<Board, 3> kBoards{{
    {0xAD, 2, "ICSE013A"},
    {0xAB, 4, "ICSE012A"},
    {0xAC, 8, "ICSE014A"},
}};

/// The board answering `id`; protocol_error naming the byte when no known board sends it.
Result<Board> board_for_id(std::uint8_t id);
/// The board with `channels` relays (2, 4 or 8); invalid_argument otherwise.
Result<Board> board_for_channels(int channels);

/// Bits 0..channels-1 set: the relays a board of that size has.
constexpr std::uint8_t channel_mask(int channels) {
  return channels >= 8 ? std::uint8_t{0xFF} : static_cast<std::uint8_t>((1u << channels) - 1u);
}

/// The wire byte for a set of relays that should be on (bit n = channel n+1, 1 = on). The board
/// is active-low, so the byte is the complement. Bits for relays the board does not have are
/// sent as 1 (off): should the board be larger than configured, its extra relays stay off.
/// invalid_argument when `on_mask` names a channel beyond `channels` or `channels` is not 1..8.
Result<std::uint8_t> encode_bitmap(std::uint8_t on_mask, int channels);
/// The relays a wire byte turns on (bit n = channel n+1, 1 = on), limited to `channels`.
constexpr std::uint8_t decode_bitmap(std::uint8_t wire, int channels) {
  return static_cast<std::uint8_t>(~wire & channel_mask(channels));
}

/// What the board does with one received byte.
struct DeviceAction {
  enum class Kind {
    reply_id,            ///< before command mode, 0x50: answer `reply`
    enter_command_mode,  ///< before command mode, 0x51
    set_relays,          ///< in command mode: the byte is the new bitmap, `on_mask` the result
    ignored,             ///< before command mode, any other byte
  } kind = Kind::ignored;
  std::uint8_t reply = 0;    ///< for reply_id
  std::uint8_t on_mask = 0;  ///< for set_relays: relays now on (bit n = channel n+1)
};

/// Counters of the board-side decoder.
struct DeviceCounters {
  std::uint64_t identify_requests = 0;
  std::uint64_t bitmaps = 0;
  std::uint64_t ignored_bytes = 0;  ///< bytes before command mode that were neither 0x50 nor 0x51
};

/// The board's side of the protocol, for emulators: a state machine over received bytes. Once in
/// command mode it never leaves it and never answers again (0x50 is then just a bitmap that turns
/// relays on); only power_cycle() brings back identification, as on the real firmware.
class DeviceDecoder {
 public:
  explicit DeviceDecoder(Board board, bool command_mode = false)
      : board_(board), command_mode_(command_mode) {}
  /// Decides what one received byte does.
  DeviceAction on_byte(std::uint8_t byte);
  /// Power is removed and restored: identification mode, all relays off.
  void power_cycle() {
    command_mode_ = false;
    on_mask_ = 0;
  }
  bool command_mode() const { return command_mode_; }
  /// Relays on now (bit n = channel n+1).
  std::uint8_t on_mask() const { return on_mask_; }
  const Board& board() const { return board_; }
  const DeviceCounters& counters() const { return counters_; }

 private:
  Board board_;
  bool command_mode_;
  std::uint8_t on_mask_ = 0;
  DeviceCounters counters_;
};

}  // namespace meltrig::fw::icstation
