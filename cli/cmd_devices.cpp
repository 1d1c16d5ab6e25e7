// meltrig devices: the serial ports libserialport sees, with USB identity, and the drivers that
// may fit each (from every driver's find(); the USB drivers, HVPM and the switchable hubs,
// enumerate libusb themselves and find nothing where there is no USB).
#include <cstdio>

#include "cli_common.hpp"
#include "meltrig/rig/registry.hpp"

namespace meltrig::cli {
namespace {

int run() {
  auto ports = fw::list_serial_ports();
  if (!ports) return fail(ports.error().describe());
  std::printf("%zu serial port(s)\n", ports->size());
  for (const auto& p : *ports) {
    std::printf("  %-22s %-9s", p.path.c_str(), p.transport.c_str());
    if (p.usb_vid >= 0) std::printf(" %04x:%04x", p.usb_vid, p.usb_pid);
    if (!p.usb_manufacturer.empty() || !p.usb_product.empty()) {
      std::printf(" %s %s", p.usb_manufacturer.c_str(), p.usb_product.c_str());
    } else if (!p.description.empty()) {
      std::printf(" %s", p.description.c_str());
    }
    std::printf("\n");
  }
  auto cands = rig::find_candidates(*ports);
  std::printf("%zu candidate device(s)\n", cands.size());
  for (const auto& c : cands)
    std::printf("  %-36s %s\n", c.spec.c_str(), c.why.c_str());
  std::printf("drivers:\n");
  for (const auto& d : rig::drivers()) {
    std::printf("  %-10s %-8s %.*s\n", std::string(d.name).c_str(), std::string(d.kind).c_str(),
                static_cast<int>(d.description.size()), d.description.data());
  }
  return kOk;
}

}  // namespace

void add_devices(CLI::App& app, Commands& cmds) {
  auto* s = app.add_subcommand(
      "devices", "list serial ports, USB instruments and hubs, and the drivers that may fit them");
  cmds.push_back({s, [] { return run(); }});
}

}  // namespace meltrig::cli
