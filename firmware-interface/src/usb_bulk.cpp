// USB transport, libusb-1.0 backend: see usb_bulk.hpp.
#include "meltrig/fw/usb_bulk.hpp"

#include <libusb-1.0/libusb.h>

#include <algorithm>
#include <climits>
#include <cstdio>

#include "libusb_common.hpp"

namespace meltrig::fw {
using namespace detail;
namespace {

// bmRequestType: vendor request, recipient device, OUT (0x40) or IN (0xC0).
constexpr std::uint8_t kVendorOut = 0x40;
constexpr std::uint8_t kVendorIn = 0xC0;
static_assert(kVendorOut ==
              (static_cast<int>(LIBUSB_REQUEST_TYPE_VENDOR) |
               static_cast<int>(LIBUSB_RECIPIENT_DEVICE) | static_cast<int>(LIBUSB_ENDPOINT_OUT)));
static_assert(kVendorIn ==
              (static_cast<int>(LIBUSB_REQUEST_TYPE_VENDOR) |
               static_cast<int>(LIBUSB_RECIPIENT_DEVICE) | static_cast<int>(LIBUSB_ENDPOINT_IN)));

}  // namespace

Errc libusb_errc(int rc) {
  switch (rc) {
    case LIBUSB_ERROR_TIMEOUT:
      return Errc::timeout;
    case LIBUSB_ERROR_NO_DEVICE:
      return Errc::port_gone;
    case LIBUSB_ERROR_NOT_FOUND:
      return Errc::not_found;
    case LIBUSB_ERROR_OVERFLOW:
      return Errc::overflow;
    default:
      return Errc::io_error;
  }
}

Result<std::vector<UsbDeviceInfo>> list_usb_devices(std::uint16_t vid, std::uint16_t pid) {
  DeviceList dl;
  if (auto r = dl.load(); !r) return r.error();
  std::vector<UsbDeviceInfo> out;
  for (ssize_t i = 0; i < dl.devices.count; ++i) {
    libusb_device* dev = dl.devices.list[i];
    libusb_device_descriptor d{};
    if (libusb_get_device_descriptor(dev, &d) != 0) continue;
    if (d.idVendor != vid || d.idProduct != pid) continue;
    UsbDeviceInfo info;
    info.vid = d.idVendor;
    info.pid = d.idProduct;
    info.bus = libusb_get_bus_number(dev);
    info.address = libusb_get_device_address(dev);
    libusb_device_handle* h = nullptr;
    int rc = libusb_open(dev, &h);
    if (rc == 0) {
      info.serial = read_string(h, d.iSerialNumber);
      info.manufacturer = read_string(h, d.iManufacturer);
      info.product = read_string(h, d.iProduct);
      libusb_close(h);
    } else {
      info.note = "cannot open: " + libusb_message(rc);
    }
    out.push_back(std::move(info));
  }
  return out;
}

Result<std::unique_ptr<LibusbTransport>> LibusbTransport::open(
    std::uint16_t vid, std::uint16_t pid, const std::optional<std::string>& serial,
    int interface_number) {
  const std::string what =
      "USB device " + vidpid(vid, pid) + (serial ? " with serial number " + *serial : "");
  std::unique_ptr<LibusbTransport> t(new LibusbTransport());
  DeviceArray devices;
  if (auto r = start_and_list(t->ctx_, devices); !r) return r.error();
  libusb_device** list = devices.list;
  const ssize_t count = devices.count;
  int rc = 0;
  // Remember why a matching device could not be used, so "not found" is only said when true.
  std::optional<Error> refused;
  int matches = 0;
  for (ssize_t i = 0; i < count && !t->handle_; ++i) {
    libusb_device* dev = list[i];
    libusb_device_descriptor d{};
    if (libusb_get_device_descriptor(dev, &d) != 0) continue;
    if (d.idVendor != vid || d.idProduct != pid) continue;
    ++matches;
    auto o = open_if_serial(dev, d.iSerialNumber, serial);
    if (!o) {
      refused = make_error(o.error().code, what + ": " + o.error().message);
      continue;
    }
    if (!*o) continue;
    t->handle_ = (*o)->handle;
    t->serial_ = (*o)->serial;
    const std::string& sn = t->serial_;
    t->name_ = "usb " + vidpid(vid, pid) + " bus " + std::to_string(libusb_get_bus_number(dev)) +
               " address " + std::to_string(libusb_get_device_address(dev)) +
               (sn.empty() ? "" : " serial " + sn);
  }
  if (!t->handle_) {
    if (refused) return *refused;
    return make_error(Errc::not_found,
                      "no " + what + " (" + std::to_string(matches) +
                          " device(s) with that VID:PID; is it plugged in and powered?)");
  }
  // An unconfigured device (configuration 0) has no interfaces to claim yet.
  int config = -1;
  if (libusb_get_configuration(t->handle_, &config) == 0 && config == 0) {
    rc = libusb_set_configuration(t->handle_, 1);
    if (rc != 0) return t->fail(rc, "cannot select configuration 1");
  }
  // Detach a kernel driver bound to the interface while we hold it; not every OS supports it.
  (void)libusb_set_auto_detach_kernel_driver(t->handle_, 1);
  rc = libusb_claim_interface(t->handle_, interface_number);
  if (rc != 0) {
    Error e = t->fail(rc, "cannot claim interface " + std::to_string(interface_number));
    if (e.code == Errc::not_found) e.code = Errc::io_error;  // the device exists
    return e;
  }
  t->interface_ = interface_number;
  return t;
}

LibusbTransport::~LibusbTransport() {
  if (handle_) {
    if (interface_ >= 0) (void)libusb_release_interface(handle_, interface_);
    libusb_close(handle_);
  }
  if (ctx_) libusb_exit(ctx_);
}

Error LibusbTransport::fail(int rc, const std::string& what) const {
  return make_error(libusb_errc(rc), name_ + ": " + what + ": " + libusb_message(rc));
}

Result<void> LibusbTransport::control_out(std::uint8_t request, std::uint16_t value,
                                          std::uint16_t index, std::span<const std::uint8_t> data,
                                          std::chrono::milliseconds timeout) {
  if (data.size() > 0xFFFF)
    return make_error(Errc::invalid_argument, name_ + ": control data longer than 65535 bytes");
  // libusb takes a non-const buffer for both directions; it does not write to an OUT stage.
  int rc = libusb_control_transfer(handle_, kVendorOut, request, value, index,
                                   const_cast<unsigned char*>(data.data()),
                                   static_cast<std::uint16_t>(data.size()), timeout_ms(timeout));
  if (rc < 0) {
    char what[64];
    std::snprintf(what, sizeof what, "control OUT request 0x%02X wValue 0x%04X wIndex 0x%04X",
                  request, value, index);
    return fail(rc, what);
  }
  if (static_cast<std::size_t>(rc) != data.size()) {
    return make_error(Errc::io_error, name_ + ": control OUT request sent " + std::to_string(rc) +
                                          " of " + std::to_string(data.size()) + " bytes");
  }
  return {};
}

Result<std::size_t> LibusbTransport::control_in(std::uint8_t request, std::uint16_t value,
                                                std::uint16_t index, std::span<std::uint8_t> data,
                                                std::chrono::milliseconds timeout) {
  const auto len = static_cast<std::uint16_t>(std::min<std::size_t>(data.size(), 0xFFFF));
  int rc = libusb_control_transfer(handle_, kVendorIn, request, value, index, data.data(), len,
                                   timeout_ms(timeout));
  if (rc < 0) {
    char what[64];
    std::snprintf(what, sizeof what, "control IN request 0x%02X wValue 0x%04X wIndex 0x%04X",
                  request, value, index);
    return fail(rc, what);
  }
  return static_cast<std::size_t>(rc);
}

Result<std::size_t> LibusbTransport::bulk_read(std::uint8_t endpoint,
                                               std::span<std::uint8_t> buffer,
                                               std::chrono::milliseconds timeout) {
  int transferred = 0;
  const int len = static_cast<int>(std::min<std::size_t>(buffer.size(), INT_MAX));
  int rc = libusb_bulk_transfer(handle_, endpoint, buffer.data(), len, &transferred,
                                timeout_ms(timeout));
  // A transfer of full-size packets only completes when the buffer is full; at the deadline
  // libusb reports a timeout but hands over what did arrive. That is data, not an error.
  if (rc == 0 || (rc == LIBUSB_ERROR_TIMEOUT && transferred > 0)) {
    return static_cast<std::size_t>(transferred);
  }
  char what[48];
  std::snprintf(what, sizeof what, "bulk read on endpoint 0x%02X", endpoint);
  return fail(rc, what);
}

}  // namespace meltrig::fw
