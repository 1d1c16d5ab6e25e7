// Serial transport over libserialport. Every call takes a timeout, and timeout, I/O error and a
// port that vanished (unplugged cable, killed emulator) are distinct results.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "meltrig/fw/result.hpp"

struct sp_port;

namespace meltrig::fw {

/// Line settings. Monsoon and PPK2 are USB CDC-ACM devices, where the baud rate is nominal.
struct SerialSettings {
  int baud = 115200;
  int bits = 8;
  int stop_bits = 1;
};

/// One serial port, opened for reading and writing. Move-only; closes on destruction.
/// Not thread-safe: one I/O thread owns a port.
class SerialPort {
 public:
  /// Opens `path` (a /dev node or a symlink to one, e.g. an emulator's pty link).
  /// not_found when the path does not exist; io_error when it cannot be opened or configured.
  static Result<SerialPort> open(const std::string& path, const SerialSettings& settings = {});

  SerialPort(SerialPort&& o) noexcept;
  SerialPort& operator=(SerialPort&& o) noexcept;
  SerialPort(const SerialPort&) = delete;
  SerialPort& operator=(const SerialPort&) = delete;
  ~SerialPort();

  /// Reads what is available, waiting up to `timeout` for the first byte. Returns the number of
  /// bytes read (> 0), or timeout (nothing arrived), port_gone (hang-up, device removed) or
  /// io_error.
  Result<std::size_t> read_some(std::span<std::uint8_t> buf, std::chrono::milliseconds timeout);
  /// Writes all of `bytes` within `timeout`; timeout if the port would not take them in time.
  Result<void> write_all(std::span<const std::uint8_t> bytes, std::chrono::milliseconds timeout);
  /// Discards bytes received but not yet read.
  Result<void> discard_input();
  /// Closes the port (idempotent).
  void close();

  const std::string& path() const { return path_; }
  bool is_open() const { return port_ != nullptr; }

 private:
  SerialPort(std::string path, sp_port* port) : path_(std::move(path)), port_(port) {}
  Error failure(const char* what) const;
  bool hung_up() const;

  std::string path_;
  sp_port* port_ = nullptr;
};

/// A serial port the OS lists, with what its USB descriptor says.
struct PortInfo {
  std::string path;
  std::string description;
  std::string transport;  ///< "usb", "native", "bluetooth"
  int usb_vid = -1, usb_pid = -1;
  std::string usb_manufacturer, usb_product, usb_serial;
};
/// Lists serial ports through libserialport.
Result<std::vector<PortInfo>> list_serial_ports();

}  // namespace meltrig::fw
