// Helpers the libusb backends share (usb_bulk.cpp, usb_control.cpp). Internal to meltrig_fw.
#pragma once

#include <libusb-1.0/libusb.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <string>

#include "meltrig/fw/result.hpp"

namespace meltrig::fw::detail {

// libusb reads a timeout of 0 as "forever": every call here has a real deadline instead.
inline unsigned int timeout_ms(std::chrono::milliseconds t) {
  return static_cast<unsigned int>(std::clamp<long long>(t.count(), 1, INT_MAX));
}

inline std::string hex4(std::uint16_t v) {
  char b[8];
  std::snprintf(b, sizeof b, "%04x", v);
  return b;
}

inline std::string vidpid(std::uint16_t vid, std::uint16_t pid) {
  return hex4(vid) + ":" + hex4(pid);
}

// Reads string descriptor `index` as ASCII; empty when the device has none or it cannot be read.
inline std::string read_string(libusb_device_handle* h, std::uint8_t index) {
  if (index == 0) return {};
  unsigned char buf[256];
  int n = libusb_get_string_descriptor_ascii(h, index, buf, sizeof buf);
  if (n <= 0) return {};
  return std::string(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

inline std::string libusb_message(int rc) {
  std::string s = libusb_error_name(rc);
  if (rc == LIBUSB_ERROR_ACCESS) {
    s += " (no permission: a udev rule granting access to the device is needed)";
  } else if (rc == LIBUSB_ERROR_BUSY) {
    s += " (another program or kernel driver holds the interface)";
  } else if (rc == LIBUSB_ERROR_PIPE) {
    s += " (the device stalled the request: unsupported or refused)";
  }
  return s;
}

/// A device opened by open_if_serial().
struct OpenedDevice {
  libusb_device_handle* handle = nullptr;
  std::string serial;  ///< its iSerialNumber, empty if none
};

/// Opens `dev`; nullopt (closed again) when `serial` is given and the device reports another.
/// The error (code from the table, message "cannot open: ...") says why it could not be opened.
inline Result<std::optional<OpenedDevice>> open_if_serial(
    libusb_device* dev, std::uint8_t serial_index, const std::optional<std::string>& serial) {
  libusb_device_handle* h = nullptr;
  int rc = libusb_open(dev, &h);
  if (rc != 0) {
    const Errc code = rc == LIBUSB_ERROR_NO_DEVICE ? Errc::port_gone : Errc::io_error;
    return make_error(code, "cannot open: " + libusb_message(rc));
  }
  std::string sn = read_string(h, serial_index);
  if (serial && sn != *serial) {
    libusb_close(h);
    return std::optional<OpenedDevice>();
  }
  return std::optional<OpenedDevice>(OpenedDevice{h, std::move(sn)});
}

/// A device list, freed on destruction (the context it came from must outlive it).
struct DeviceArray {
  libusb_device** list = nullptr;
  ssize_t count = 0;
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (list) libusb_free_device_list(list, 1);
  }
};

/// Starts `ctx` (left null on failure) and lists its devices into `devices`.
inline Result<void> start_and_list(libusb_context*& ctx, DeviceArray& devices) {
  int rc = libusb_init(&ctx);
  if (rc != 0) {
    ctx = nullptr;
    return make_error(Errc::io_error, "libusb: cannot initialise: " + libusb_message(rc));
  }
  devices.count = libusb_get_device_list(ctx, &devices.list);
  if (devices.count < 0) {
    int err = static_cast<int>(devices.count);
    devices.count = 0;
    devices.list = nullptr;
    return make_error(Errc::io_error, "libusb: cannot list devices: " + libusb_message(err));
  }
  return {};
}

/// A libusb context of its own and its device list, both released on destruction.
struct DeviceList {
  struct Context {
    libusb_context* p = nullptr;
    ~Context() {
      if (p) libusb_exit(p);
    }
  } ctx;
  DeviceArray devices;  // declared after ctx: freed before the context ends
  Result<void> load() { return start_and_list(ctx.p, devices); }
};

}  // namespace meltrig::fw::detail
