// USB transport for vendor-protocol instruments (the Monsoon HVPM and reflashed LVPM): vendor
// control transfers and bulk-IN reads on one claimed interface. Every call takes a timeout, and
// a timeout, an I/O error and an unplugged device are distinct results, so a driver never
// mistakes a vanished device for a quiet one. Drivers see only UsbBulkTransport; LibusbTransport
// is the libusb-1.0 backend and fixtures provide in-process emulators behind the same interface.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "meltrig/fw/result.hpp"

// libusb's opaque handles, declared here so that users of this header need not see libusb.h.
struct libusb_context;
struct libusb_device_handle;

namespace meltrig::fw {

/// Vendor control requests and bulk-IN reads on one device. Not thread-safe: one I/O thread.
///
/// Contract of every call: it returns within about `timeout` (a zero or negative timeout is
/// raised to 1 ms, never "wait forever"); failures are `timeout` (nothing happened in time; the
/// device may still be fine), `port_gone` (the device was unplugged or reset: give up),
/// `io_error` (the device refused the request, e.g. a stalled endpoint) or `overflow` (the device
/// sent more than the buffer holds).
class UsbBulkTransport {
 public:
  virtual ~UsbBulkTransport() = default;

  /// Vendor request to the device (bmRequestType 0x40, recipient device) with `data` as its data
  /// stage (wLength = data.size(), at most 65535).
  virtual Result<void> control_out(std::uint8_t request, std::uint16_t value, std::uint16_t index,
                                   std::span<const std::uint8_t> data,
                                   std::chrono::milliseconds timeout) = 0;
  /// Vendor request from the device (bmRequestType 0xC0) asking for up to data.size() bytes;
  /// returns how many the device answered with.
  virtual Result<std::size_t> control_in(std::uint8_t request, std::uint16_t value,
                                         std::uint16_t index, std::span<std::uint8_t> data,
                                         std::chrono::milliseconds timeout) = 0;
  /// Reads from bulk-IN `endpoint` into `buffer`. Returns the bytes that arrived within `timeout`
  /// (possibly several device packets back to back; 0 only for a zero-length packet), or
  /// `timeout` when nothing did. Data that arrived before a timeout is returned, not dropped.
  virtual Result<std::size_t> bulk_read(std::uint8_t endpoint, std::span<std::uint8_t> buffer,
                                        std::chrono::milliseconds timeout) = 0;
  /// Names the device for messages, e.g. "usb 2ab9:0001 bus 1 address 4 serial 12345".
  virtual std::string name() const = 0;
};

/// What enumeration knows about one USB device.
struct UsbDeviceInfo {
  std::uint16_t vid = 0, pid = 0;
  std::uint8_t bus = 0, address = 0;
  std::string serial;        ///< iSerialNumber, empty if absent or unreadable
  std::string manufacturer;  ///< iManufacturer, empty if absent or unreadable
  std::string product;       ///< iProduct, empty if absent or unreadable
  std::string note;          ///< why the strings could not be read (e.g. permissions), or empty
};

/// Lists the devices with this VID:PID. Strings need the device opened; where that fails (no
/// permission) the device is still listed, with `note` saying why. io_error if libusb cannot start.
Result<std::vector<UsbDeviceInfo>> list_usb_devices(std::uint16_t vid, std::uint16_t pid);

/// The Errc a libusb error code (LIBUSB_ERROR_*) maps to: LIBUSB_ERROR_TIMEOUT -> timeout,
/// LIBUSB_ERROR_NO_DEVICE -> port_gone, LIBUSB_ERROR_NOT_FOUND -> not_found,
/// LIBUSB_ERROR_OVERFLOW -> overflow, everything else -> io_error.
Errc libusb_errc(int libusb_error);

/// The libusb-1.0 backend: one device opened by VID:PID (and serial number, when given), with
/// interface `interface_number` claimed (the kernel driver detached while claimed). Owns its own
/// libusb context; the destructor releases the interface, closes the device and the context.
class LibusbTransport final : public UsbBulkTransport {
 public:
  /// Opens the first matching device. not_found when no device has this VID:PID (and serial);
  /// io_error when one exists but cannot be opened or claimed (the message says why: permissions,
  /// busy).
  static Result<std::unique_ptr<LibusbTransport>> open(
      std::uint16_t vid, std::uint16_t pid, const std::optional<std::string>& serial = std::nullopt,
      int interface_number = 0);
  ~LibusbTransport() override;
  LibusbTransport(const LibusbTransport&) = delete;
  LibusbTransport& operator=(const LibusbTransport&) = delete;

  Result<void> control_out(std::uint8_t request, std::uint16_t value, std::uint16_t index,
                           std::span<const std::uint8_t> data,
                           std::chrono::milliseconds timeout) override;
  Result<std::size_t> control_in(std::uint8_t request, std::uint16_t value, std::uint16_t index,
                                 std::span<std::uint8_t> data,
                                 std::chrono::milliseconds timeout) override;
  Result<std::size_t> bulk_read(std::uint8_t endpoint, std::span<std::uint8_t> buffer,
                                std::chrono::milliseconds timeout) override;
  std::string name() const override { return name_; }

  /// The serial number string the device reports (empty if none).
  const std::string& serial() const { return serial_; }

 private:
  LibusbTransport() = default;
  Error fail(int rc, const std::string& what) const;

  libusb_context* ctx_ = nullptr;
  libusb_device_handle* handle_ = nullptr;
  int interface_ = -1;  ///< claimed interface, -1 when none
  std::string name_;
  std::string serial_;
};

}  // namespace meltrig::fw
