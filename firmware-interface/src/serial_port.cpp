// Serial transport over libserialport: see serial_port.hpp.
#include "meltrig/fw/serial_port.hpp"

#include <libserialport.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

extern "C" int meltrig_pty_modem_lines_linked(void);

namespace meltrig::fw {
namespace {

#if SP_PACKAGE_VERSION_MAJOR == 0 && SP_PACKAGE_VERSION_MINOR == 1 && SP_PACKAGE_VERSION_MICRO == 1
// libserialport builds a port record from /sys/class/tty/<name>, which a Unix98 pty does not
// have, so sp_get_port_by_name() refuses ptys. For pty slaves only, we build the record
// ourselves with the library's own 0.1.1 Linux layout (libserialport_internal.h; libsigrok's
// drivers declare it the same way); sp_free_port() frees it as one of its own. Everything after
// (open, configure, read, write) goes through libserialport unchanged.
struct PortRecord011 {
  char* name;
  char* description;
  enum sp_transport transport;
  int usb_bus, usb_address, usb_vid, usb_pid;
  char *usb_manufacturer, *usb_product, *usb_serial, *bluetooth_address;
  int fd;
};
constexpr bool kCanBuildPtyRecord = true;
#else
constexpr bool kCanBuildPtyRecord = false;
#endif

bool is_pty_slave(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) return false;
  unsigned m = major(st.st_rdev);
  return m >= 136 && m <= 143;
}

sp_port* pty_port_record(const std::string& real_path) {
#if SP_PACKAGE_VERSION_MAJOR == 0 && SP_PACKAGE_VERSION_MINOR == 1 && SP_PACKAGE_VERSION_MICRO == 1
  auto* r = static_cast<PortRecord011*>(std::calloc(1, sizeof(PortRecord011)));
  if (!r) return nullptr;
  r->name = ::strdup(real_path.c_str());
  r->description = ::strdup("pseudo-terminal");
  r->transport = SP_TRANSPORT_NATIVE;
  r->usb_bus = r->usb_address = r->usb_vid = r->usb_pid = -1;
  r->fd = -1;
  return reinterpret_cast<sp_port*>(r);
#else
  (void)real_path;
  return nullptr;
#endif
}

std::string last_sp_message() {
  char* m = sp_last_error_message();
  std::string s = m ? m : "unknown error";
  sp_free_error_message(m);
  return s;
}

bool gone_errno(int e) {
  return e == EIO || e == ENXIO || e == ENODEV || e == EBADF;
}

}  // namespace

Result<SerialPort> SerialPort::open(const std::string& path, const SerialSettings& settings) {
  (void)meltrig_pty_modem_lines_linked();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return make_error(Errc::not_found, path + ": no such serial port");
  }
  std::string real = std::filesystem::canonical(path, ec).string();
  if (ec) real = path;

  sp_port* port = nullptr;
  if (sp_get_port_by_name(real.c_str(), &port) != SP_OK) {
    port = nullptr;
    if (kCanBuildPtyRecord && is_pty_slave(real)) port = pty_port_record(real);
    if (!port)
      return make_error(Errc::io_error, path + ": not a serial port libserialport knows (" +
                                            last_sp_message() + ")");
  }
  if (sp_open(port, SP_MODE_READ_WRITE) != SP_OK) {
    std::string msg = last_sp_message();
    sp_free_port(port);
    return make_error(Errc::io_error, path + ": cannot open: " + msg);
  }
  SerialPort sp(path, port);
  if (sp_set_baudrate(port, settings.baud) != SP_OK || sp_set_bits(port, settings.bits) != SP_OK ||
      sp_set_parity(port, SP_PARITY_NONE) != SP_OK ||
      sp_set_stopbits(port, settings.stop_bits) != SP_OK ||
      sp_set_flowcontrol(port, SP_FLOWCONTROL_NONE) != SP_OK) {
    return sp.failure("cannot configure");
  }
  return sp;
}

SerialPort::SerialPort(SerialPort&& o) noexcept : path_(std::move(o.path_)), port_(o.port_) {
  o.port_ = nullptr;
}

SerialPort& SerialPort::operator=(SerialPort&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    port_ = o.port_;
    o.port_ = nullptr;
  }
  return *this;
}

SerialPort::~SerialPort() {
  close();
}

void SerialPort::close() {
  if (!port_) return;
  sp_close(port_);
  sp_free_port(port_);
  port_ = nullptr;
}

Error SerialPort::failure(const char* what) const {
  int e = sp_last_error_code();
  std::string msg = path_ + ": " + what + ": " + last_sp_message();
  if (gone_errno(e) || hung_up()) return make_error(Errc::port_gone, msg + " (device gone)");
  return make_error(Errc::io_error, msg);
}

bool SerialPort::hung_up() const {
  if (!port_) return true;
  int fd = -1;
  if (sp_get_port_handle(port_, &fd) != SP_OK || fd < 0) return true;
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) < 0) return errno != EINTR;
  if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return true;
  // A USB CDC-ACM device that is unplugged takes its /dev node with it.
  std::error_code ec;
  return !std::filesystem::exists(path_, ec);
}

Result<std::size_t> SerialPort::read_some(std::span<std::uint8_t> buf,
                                          std::chrono::milliseconds timeout) {
  if (!port_) return make_error(Errc::port_gone, path_ + ": port is closed");
  auto ms = static_cast<unsigned>(std::max<std::int64_t>(timeout.count(), 1));
  sp_return r = sp_blocking_read_next(port_, buf.data(), buf.size(), ms);
  if (r < 0) return failure("read failed");
  if (r == 0) {
    // libserialport reports a hung-up pty or a removed device as "nothing arrived": ask the OS.
    if (hung_up()) return make_error(Errc::port_gone, path_ + ": device disconnected");
    return make_error(Errc::timeout,
                      path_ + ": no data within " + std::to_string(timeout.count()) + " ms");
  }
  return static_cast<std::size_t>(r);
}

Result<void> SerialPort::write_all(std::span<const std::uint8_t> bytes,
                                   std::chrono::milliseconds timeout) {
  if (!port_) return make_error(Errc::port_gone, path_ + ": port is closed");
  if (bytes.empty()) return {};
  auto ms = static_cast<unsigned>(std::max<std::int64_t>(timeout.count(), 1));
  sp_return r = sp_blocking_write(port_, bytes.data(), bytes.size(), ms);
  if (r < 0) return failure("write failed");
  if (static_cast<std::size_t>(r) < bytes.size()) {
    if (hung_up()) return make_error(Errc::port_gone, path_ + ": device disconnected");
    return make_error(Errc::timeout, path_ + ": wrote " + std::to_string(r) + " of " +
                                         std::to_string(bytes.size()) + " bytes within " +
                                         std::to_string(timeout.count()) + " ms");
  }
  return {};
}

Result<void> SerialPort::discard_input() {
  if (!port_) return make_error(Errc::port_gone, path_ + ": port is closed");
  if (sp_flush(port_, SP_BUF_INPUT) != SP_OK) return failure("flush failed");
  return {};
}

Result<std::vector<PortInfo>> list_serial_ports() {
  sp_port** list = nullptr;
  if (sp_list_ports(&list) != SP_OK) {
    return make_error(Errc::io_error, "cannot list serial ports: " + last_sp_message());
  }
  std::vector<PortInfo> out;
  for (int i = 0; list[i]; ++i) {
    sp_port* p = list[i];
    auto str = [](const char* s) { return s ? std::string(s) : std::string(); };
    PortInfo info;
    info.path = str(sp_get_port_name(p));
    info.description = str(sp_get_port_description(p));
    switch (sp_get_port_transport(p)) {
      case SP_TRANSPORT_USB: {
        info.transport = "usb";
        sp_get_port_usb_vid_pid(p, &info.usb_vid, &info.usb_pid);
        info.usb_manufacturer = str(sp_get_port_usb_manufacturer(p));
        info.usb_product = str(sp_get_port_usb_product(p));
        info.usb_serial = str(sp_get_port_usb_serial(p));
        break;
      }
      case SP_TRANSPORT_BLUETOOTH:
        info.transport = "bluetooth";
        break;
      default:
        info.transport = "native";
        break;
    }
    out.push_back(std::move(info));
  }
  sp_free_port_list(list);
  return out;
}

}  // namespace meltrig::fw
