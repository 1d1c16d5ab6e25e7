// Drivers for serial relay boards behind the Relay interface: LCUS-1/2/4/8 and ICStation
// ICSE012A/013A/014A. Neither board can report its relay state, so a driver knows only what it
// commanded and that the port took the bytes; commanded() says so and RelayInfo::read_back is
// false. A vanished port or a write that does not complete is reported.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "meltrig/fw/relay_protocols.hpp"
#include "meltrig/fw/serial_port.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/relay.hpp"

namespace meltrig::rig {

/// LCUS-1/2/4/8 (CH340, 9600 8N1): one `A0 ch state sum` frame per channel switch. Write-only:
/// a board that ignores a frame cannot be detected.
/// Spec: "lcus:PORT[:channels=1|2|4|8,gap_ms=M,timeout_ms=T]".
class LcusRelay final : public Relay {
 public:
  /// Driver settings; make() fills them from the spec.
  struct Options {
    std::string port;
    int channels = 4;
    std::chrono::milliseconds io_timeout{1000};
    /// Pause after each frame: the board's microcontroller handles one frame at a time, and
    /// users' scripts pause between frames. 20 ms is well above the 4.2 ms a frame takes at
    /// 9600 baud.
    std::chrono::milliseconds frame_gap{20};
  };
  explicit LcusRelay(Options opt);

  /// Registry: USB serial ports with the CH340's VID:PID, as "may be an LCUS".
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  /// Registry: parses channels, gap_ms and timeout_ms; invalid_argument names the bad option.
  static Result<std::unique_ptr<Relay>> make(const DeviceSpec& spec);

  Result<RelayInfo> open() override;
  Result<void> set(int channel, bool on) override;
  Result<void> set_all(bool on) override;
  std::vector<std::optional<bool>> commanded() const override { return commanded_; }
  void close() override;

 private:
  Options opt_;
  std::optional<fw::SerialPort> port_;
  std::vector<std::optional<bool>> commanded_;
};

/// ICStation ICSE013A/012A/014A (2/4/8 relays, 9600 8N1). open() identifies the board (0x50 ->
/// ID byte -> channel count) and enters command mode (0x51); after that every byte is the whole
/// active-low bitmap, so set() also sends every other channel: channels never commanded in this
/// session are sent as off. The firmware answers 0x50 only once per power cycle: for a board
/// already in command mode, give channels=N and open() sends nothing.
/// Spec: "icstation:PORT[:channels=2|4|8,settle_ms=M,timeout_ms=T]".
class IcstationRelay final : public Relay {
 public:
  /// Driver settings; make() fills them from the spec.
  struct Options {
    std::string port;
    /// Set: the board is already in command mode (identified earlier, not power-cycled since);
    /// open() skips identification.
    std::optional<int> channels;
    std::chrono::milliseconds io_timeout{1000};
    /// How long to wait for the ID byte. A board in command mode never answers, and meanwhile
    /// it holds 0x50 as its relay bitmap (relays 1-4, 6, 8 on): keep this short.
    std::chrono::milliseconds id_timeout{500};
    /// Pause after 0x51 before the first bitmap, for the board's slow firmware.
    std::chrono::milliseconds settle{100};
  };
  explicit IcstationRelay(Options opt);

  /// Registry: USB serial bridges these boards ship with (PL2303, CH340, FTDI), as "may be".
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  /// Registry: parses channels, settle_ms and timeout_ms; invalid_argument names the option.
  static Result<std::unique_ptr<Relay>> make(const DeviceSpec& spec);

  /// timeout when the board does not answer 0x50 (the message says why that may be, and that
  /// 0xFF was sent to undo 0x50 taken as a bitmap); protocol_error for an unknown ID byte.
  Result<RelayInfo> open() override;
  Result<void> set(int channel, bool on) override;
  Result<void> set_all(bool on) override;
  std::vector<std::optional<bool>> commanded() const override { return commanded_; }
  void close() override;

  /// The identified (or configured) board; valid after open().
  const fw::icstation::Board& board() const { return board_; }

 private:
  Result<fw::icstation::Board> identify();
  Result<void> send_bitmap(const std::vector<std::optional<bool>>& want);

  Options opt_;
  std::optional<fw::SerialPort> port_;
  fw::icstation::Board board_{0, 0, {}};
  std::vector<std::optional<bool>> commanded_;
};

}  // namespace meltrig::rig
