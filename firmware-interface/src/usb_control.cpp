// Hub control requests and HID reports, libusb-1.0 backends: see usb_control.hpp.
#include "meltrig/fw/usb_control.hpp"

#include <libusb-1.0/libusb.h>

#include <array>

#include "libusb_common.hpp"
#include "meltrig/fw/usb_bulk.hpp"

namespace meltrig::fw {
using namespace detail;
namespace {

constexpr int kMaxTiers = 7;

uhub::Location location_of(libusb_device* dev) {
  uhub::Location loc;
  loc.bus = libusb_get_bus_number(dev);
  std::array<std::uint8_t, kMaxTiers> ports{};
  int n = libusb_get_port_numbers(dev, ports.data(), static_cast<int>(ports.size()));
  for (int i = 0; i < n; ++i)
    loc.ports.push_back(ports[static_cast<std::size_t>(i)]);
  return loc;
}

// Reads the hub descriptor through an open handle (the request uhubctl sends).
Result<uhub::HubDescriptor> read_hub_descriptor(libusb_device_handle* h, bool superspeed) {
  const uhub::Setup s = uhub::hub_descriptor(superspeed);
  std::array<std::uint8_t, uhub::kDescriptorRead> buf{};
  int rc = libusb_control_transfer(h, s.request_type, s.request, s.value, s.index, buf.data(),
                                   s.length, 1000);
  if (rc < 0) return make_error(libusb_errc(rc), s.describe() + ": " + libusb_message(rc));
  return uhub::parse_hub_descriptor(std::span(buf.data(), static_cast<std::size_t>(rc)),
                                    superspeed);
}

}  // namespace

Result<std::vector<UsbHubInfo>> list_usb_hubs() {
  DeviceList dl;
  if (auto r = dl.load(); !r) return r.error();
  std::vector<UsbHubInfo> out;
  for (ssize_t i = 0; i < dl.devices.count; ++i) {
    libusb_device* dev = dl.devices.list[i];
    libusb_device_descriptor d{};
    if (libusb_get_device_descriptor(dev, &d) != 0 || d.bDeviceClass != uhub::kHubClass) continue;
    UsbHubInfo info;
    info.id = {d.idVendor, d.idProduct, d.bcdUSB, location_of(dev)};
    libusb_device_handle* h = nullptr;
    int rc = libusb_open(dev, &h);
    if (rc != 0) {
      info.note = "cannot open: " + libusb_message(rc);
    } else {
      info.product = read_string(h, d.iProduct);
      auto desc = read_hub_descriptor(h, info.id.superspeed());
      if (desc) {
        info.descriptor = *desc;
      } else {
        info.note = "cannot read the hub descriptor: " + desc.error().message;
      }
      libusb_close(h);
    }
    out.push_back(std::move(info));
  }
  return out;
}

// --- LibusbHub -----------------------------------------------------------------------------------

Result<std::unique_ptr<LibusbHub>> LibusbHub::open(const uhub::Location& location) {
  std::unique_ptr<LibusbHub> t(new LibusbHub());
  DeviceArray devices;
  if (auto r = start_and_list(t->ctx_, devices); !r) return r.error();
  libusb_device** list = devices.list;
  const ssize_t count = devices.count;
  int rc = 0;
  std::optional<Error> failure;
  for (ssize_t i = 0; i < count && !t->handle_ && !failure; ++i) {
    libusb_device* dev = list[i];
    libusb_device_descriptor d{};
    if (libusb_get_device_descriptor(dev, &d) != 0 || location_of(dev) != location) continue;
    const std::string what =
        "USB device " + vidpid(d.idVendor, d.idProduct) + " at " + location.str();
    if (d.bDeviceClass != uhub::kHubClass) {
      failure = make_error(Errc::invalid_argument, what + " is not a hub (device class " +
                                                       std::to_string(d.bDeviceClass) + ")");
      break;
    }
    rc = libusb_open(dev, &t->handle_);
    if (rc != 0) {
      t->handle_ = nullptr;
      failure = make_error(Errc::io_error, what + ": cannot open: " + libusb_message(rc));
      break;
    }
    t->bcd_usb_ = d.bcdUSB;
    t->name_ = "usb hub " + vidpid(d.idVendor, d.idProduct) + " at " + location.str() +
               (d.bcdUSB >= uhub::kSuperSpeedBcd ? " (SuperSpeed)" : " (USB 2)");
  }
  if (failure) return *failure;
  if (!t->handle_) {
    return make_error(Errc::not_found, "no USB hub at location " + location.str() +
                                           " (`meltrig devices` lists the hubs it sees)");
  }
  return t;
}

LibusbHub::~LibusbHub() {
  if (handle_) libusb_close(handle_);
  if (ctx_) libusb_exit(ctx_);
}

Result<std::size_t> LibusbHub::control(const uhub::Setup& s, std::span<std::uint8_t> data,
                                       std::chrono::milliseconds timeout) {
  if (data.size() < s.length) {
    return make_error(Errc::invalid_argument,
                      name_ + ": " + s.describe() + ": buffer smaller than wLength");
  }
  int rc = libusb_control_transfer(handle_, s.request_type, s.request, s.value, s.index,
                                   data.data(), s.length, timeout_ms(timeout));
  if (rc < 0) {
    return make_error(libusb_errc(rc), name_ + ": " + s.describe() + ": " + libusb_message(rc));
  }
  return static_cast<std::size_t>(rc);
}

// --- LibusbHid -----------------------------------------------------------------------------------

Result<std::unique_ptr<LibusbHid>> LibusbHid::open(std::uint16_t vid,
                                                   std::span<const std::uint16_t> pids,
                                                   const std::optional<std::string>& serial) {
  std::unique_ptr<LibusbHid> t(new LibusbHid());
  DeviceArray devices;
  if (auto r = start_and_list(t->ctx_, devices); !r) return r.error();
  libusb_device** list = devices.list;
  const ssize_t count = devices.count;
  int rc = 0;
  std::optional<Error> refused;
  for (ssize_t i = 0; i < count && !t->handle_; ++i) {
    libusb_device* dev = list[i];
    libusb_device_descriptor d{};
    if (libusb_get_device_descriptor(dev, &d) != 0 || d.idVendor != vid) continue;
    bool known = false;
    for (auto p : pids)
      known = known || p == d.idProduct;
    if (!known) continue;
    auto o = open_if_serial(dev, d.iSerialNumber, serial);
    if (!o) {
      refused = make_error(o.error().code,
                           "USB device " + vidpid(vid, d.idProduct) + ": " + o.error().message);
      continue;
    }
    if (!*o) continue;
    t->handle_ = (*o)->handle;
    t->pid_ = d.idProduct;
    t->serial_ = (*o)->serial;
    const std::string& sn = t->serial_;
    t->name_ = "usb " + vidpid(vid, d.idProduct) + " at " + location_of(dev).str() +
               (sn.empty() ? "" : " serial " + sn);
  }
  if (!t->handle_) {
    if (refused) return *refused;
    return make_error(Errc::not_found, "no USB HID device " + hex4(vid) + ":" +
                                           (pids.empty() ? std::string("?") : hex4(pids[0])) +
                                           (serial ? " with serial number " + *serial : "") +
                                           " (is it plugged in?)");
  }
  (void)libusb_set_auto_detach_kernel_driver(t->handle_, 1);
  rc = libusb_claim_interface(t->handle_, 0);
  if (rc != 0) {
    return make_error(Errc::io_error,
                      t->name_ + ": cannot claim HID interface 0: " + libusb_message(rc));
  }
  t->claimed_ = true;
  if (auto r = t->find_endpoints(); !r) return r.error();
  return t;
}

Result<void> LibusbHid::find_endpoints() {
  libusb_config_descriptor* cfg = nullptr;
  int rc = libusb_get_active_config_descriptor(libusb_get_device(handle_), &cfg);
  if (rc != 0) {
    return make_error(libusb_errc(rc),
                      name_ + ": cannot read the configuration: " + libusb_message(rc));
  }
  if (cfg->bNumInterfaces > 0 && cfg->interface[0].num_altsetting > 0) {
    const libusb_interface_descriptor& alt = cfg->interface[0].altsetting[0];
    for (int e = 0; e < alt.bNumEndpoints; ++e) {
      const libusb_endpoint_descriptor& ep = alt.endpoint[e];
      if ((ep.bmAttributes & 0x03) != LIBUSB_TRANSFER_TYPE_INTERRUPT) continue;
      if (ep.bEndpointAddress & LIBUSB_ENDPOINT_IN) {
        ep_in_ = ep.bEndpointAddress;
      } else {
        ep_out_ = ep.bEndpointAddress;
      }
    }
  }
  libusb_free_config_descriptor(cfg);
  if (!ep_in_) return make_error(Errc::io_error, name_ + ": HID interface has no interrupt IN");
  return {};
}

LibusbHid::~LibusbHid() {
  if (handle_) {
    if (claimed_) (void)libusb_release_interface(handle_, 0);
    libusb_close(handle_);
  }
  if (ctx_) libusb_exit(ctx_);
}

Result<void> LibusbHid::write_report(std::span<const std::uint8_t> report,
                                     std::chrono::milliseconds timeout) {
  auto* data = const_cast<unsigned char*>(report.data());  // libusb does not write OUT data
  const int len = static_cast<int>(report.size());
  int rc = 0, sent = 0;
  if (ep_out_) {
    rc = libusb_interrupt_transfer(handle_, ep_out_, data, len, &sent, timeout_ms(timeout));
  } else {
    // SET_REPORT (class, interface, OUT), report type output (2), report ID 0, interface 0.
    rc = libusb_control_transfer(handle_, 0x21, 0x09, 0x0200, 0, data,
                                 static_cast<std::uint16_t>(len), timeout_ms(timeout));
    sent = rc;
  }
  if (rc < 0) {
    return make_error(libusb_errc(rc), name_ + ": writing a " + std::to_string(len) +
                                           "-byte output report: " + libusb_message(rc));
  }
  if (sent != len) {
    return make_error(Errc::io_error, name_ + ": output report: sent " + std::to_string(sent) +
                                          " of " + std::to_string(len) + " bytes");
  }
  return {};
}

Result<std::size_t> LibusbHid::read_report(std::span<std::uint8_t> buffer,
                                           std::chrono::milliseconds timeout) {
  int got = 0;
  int rc = libusb_interrupt_transfer(handle_, ep_in_, buffer.data(),
                                     static_cast<int>(buffer.size()), &got, timeout_ms(timeout));
  if (rc < 0) {
    return make_error(libusb_errc(rc), name_ + ": reading an input report: " + libusb_message(rc));
  }
  return static_cast<std::size_t>(got);
}

}  // namespace meltrig::fw
