// Transports for switchable USB hubs: any control request on a device's endpoint 0 (standard
// hubs' port power), and HID reports (the YKUSH). Drivers see only the two interfaces; the
// libusb-1.0 backends are here, and fixtures provide in-process emulators behind the same
// interfaces. Failures follow UsbBulkTransport's contract (usb_bulk.hpp): `timeout`, `port_gone`
// (unplugged), `io_error` (e.g. a stalled request), `overflow`.
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
#include "meltrig/fw/usb_hub_protocols.hpp"

struct libusb_context;
struct libusb_device_handle;

namespace meltrig::fw {

/// Control requests on one device's default endpoint. Not thread-safe.
class UsbControlTransport {
 public:
  virtual ~UsbControlTransport() = default;
  /// Sends `setup`. OUT: `data` is the data stage (setup.length bytes). IN: up to setup.length
  /// bytes are read into `data` (which must hold them); returns how many the device answered.
  virtual Result<std::size_t> control(const uhub::Setup& setup, std::span<std::uint8_t> data,
                                      std::chrono::milliseconds timeout) = 0;
  /// The device descriptor's bcdUSB (0x0300 and above: a SuperSpeed hub).
  virtual std::uint16_t bcd_usb() const = 0;
  /// Names the device for messages, e.g. "usb hub 2109:2817 at 1-1.4".
  virtual std::string name() const = 0;
};

/// Output and input reports of one HID interface without report IDs. Not thread-safe.
class HidReportTransport {
 public:
  virtual ~HidReportTransport() = default;
  /// Sends one output report.
  virtual Result<void> write_report(std::span<const std::uint8_t> report,
                                    std::chrono::milliseconds timeout) = 0;
  /// Reads one input report into `buffer`; returns its length, or `timeout` when none came.
  virtual Result<std::size_t> read_report(std::span<std::uint8_t> buffer,
                                          std::chrono::milliseconds timeout) = 0;
  virtual std::string name() const = 0;
};

/// A USB hub as enumeration sees it.
struct UsbHubInfo {
  uhub::HubId id;
  std::string product;                            ///< iProduct, empty if unreadable
  std::optional<uhub::HubDescriptor> descriptor;  ///< nullopt when it could not be read
  std::string note;  ///< why the descriptor could not be read, or empty
};

/// Every device of the hub class, with its hub descriptor where the hub could be opened.
/// io_error if libusb cannot start (e.g. no USB in a container).
Result<std::vector<UsbHubInfo>> list_usb_hubs();

/// libusb backend for hub control requests: the hub at a location, opened without claiming any
/// interface (the kernel's hub driver keeps the hub; class requests to the device and its ports
/// go through endpoint 0, as uhubctl sends them).
class LibusbHub final : public UsbControlTransport {
 public:
  /// not_found when no hub sits at `location`; io_error when it cannot be opened (permissions).
  static Result<std::unique_ptr<LibusbHub>> open(const uhub::Location& location);
  ~LibusbHub() override;
  LibusbHub(const LibusbHub&) = delete;
  LibusbHub& operator=(const LibusbHub&) = delete;

  Result<std::size_t> control(const uhub::Setup& setup, std::span<std::uint8_t> data,
                              std::chrono::milliseconds timeout) override;
  std::uint16_t bcd_usb() const override { return bcd_usb_; }
  std::string name() const override { return name_; }

 private:
  LibusbHub() = default;
  libusb_context* ctx_ = nullptr;
  libusb_device_handle* handle_ = nullptr;
  std::uint16_t bcd_usb_ = 0;
  std::string name_;
};

/// libusb backend for a HID device: interface 0 claimed (the kernel's usbhid driver detached
/// while claimed), output reports on the interrupt OUT endpoint or, when the interface has none,
/// as SET_REPORT control requests; input reports from the interrupt IN endpoint.
class LibusbHid final : public HidReportTransport {
 public:
  /// The first device whose VID is `vid` and PID one of `pids` (and serial number `serial`).
  /// not_found when there is none; io_error when one cannot be opened or claimed.
  static Result<std::unique_ptr<LibusbHid>> open(std::uint16_t vid,
                                                 std::span<const std::uint16_t> pids,
                                                 const std::optional<std::string>& serial);
  ~LibusbHid() override;
  LibusbHid(const LibusbHid&) = delete;
  LibusbHid& operator=(const LibusbHid&) = delete;

  Result<void> write_report(std::span<const std::uint8_t> report,
                            std::chrono::milliseconds timeout) override;
  Result<std::size_t> read_report(std::span<std::uint8_t> buffer,
                                  std::chrono::milliseconds timeout) override;
  std::string name() const override { return name_; }
  std::uint16_t pid() const { return pid_; }
  const std::string& serial() const { return serial_; }

 private:
  LibusbHid() = default;
  Result<void> find_endpoints();
  libusb_context* ctx_ = nullptr;
  libusb_device_handle* handle_ = nullptr;
  bool claimed_ = false;
  std::uint8_t ep_in_ = 0, ep_out_ = 0;  ///< 0: none found
  std::uint16_t pid_ = 0;
  std::string name_, serial_;
};

}  // namespace meltrig::fw
