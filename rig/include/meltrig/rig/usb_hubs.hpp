// Switchable USB hubs behind the Relay interface: ports are channels 1..N, set(port, on)
// switches a port's power. YkushHub drives the Yepkit YKUSH family over HID reports; UsbHub
// drives any hub with per-port power switching through the standard hub-class requests, both
// halves of a USB 3 hub together (as uhubctl does). Both read every switched port back, so
// RelayInfo::read_back is true and a hub that acknowledges but does not switch is an error.
// Safe state: every port powered (USB connected is the normal state; cutting it is the
// measurement-time state), or every port off with safe=off in the spec (docs/hubs.md).
#pragma once

#include <chrono>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meltrig/fw/usb_control.hpp"
#include "meltrig/fw/usb_hub_protocols.hpp"
#include "meltrig/rig/registry.hpp"
#include "meltrig/rig/relay.hpp"

namespace meltrig::rig {

/// What a switchable hub can do beyond Relay: read every port's power from the device.
class PortPowerReadBack {
 public:
  virtual ~PortPowerReadBack() = default;
  /// Each port's power as the device reports it now (index 0 = port 1).
  virtual Result<std::vector<bool>> read_power() = 0;
};

/// Settings both hub drivers share; make() fills them from the spec's options
/// timeout_ms=1..60000, verify=0|1 and safe=on|off.
struct HubOptions {
  std::string spec;  ///< the spec the hub was made from, for messages
  std::chrono::milliseconds io_timeout{1000};
  bool verify = true;   ///< read each switched port back and fail when it did not follow
  bool safe_on = true;  ///< safe state: every port powered (false: every port off)
};

/// Yepkit YKUSH / YKUSH3 (HID 04d8:f2f7, f11b; the early board 04d8:0042 with 6-byte reports).
/// open() asks for the firmware version (0xF0) and port count (0xF1); boards that refuse them
/// (early firmware) are taken as 3 ports unless ports=N says otherwise.
/// Specs: "ykush:usb[:serial=S,ports=N,legacy=0|1,...]", "ykush:emulated[:key=value,...]".
class YkushHub final : public Relay, public PortPowerReadBack {
 public:
  struct Options : HubOptions {
    fw::ykush::Framing framing = fw::ykush::Framing::current;
    std::optional<int> ports;  ///< overrides the port count the board reports
  };
  YkushHub(std::unique_ptr<fw::HidReportTransport> transport, Options opt);

  /// Registry: enumerates YKUSH boards over libusb (serial ports are ignored; no USB: none).
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  static Result<std::unique_ptr<Relay>> make(const DeviceSpec& spec);
  /// The transport behind "ykush:emulated", from the spec's options (installed by programs that
  /// link the fixtures: fixtures::make_emulated_ykush).
  using EmulatorFactory = Result<std::unique_ptr<fw::HidReportTransport>> (*)(
      std::span<const std::pair<std::string, std::string>> options);
  static void set_emulator_factory(EmulatorFactory factory);

  Result<RelayInfo> open() override;
  Result<void> set(int channel, bool on) override;
  Result<void> set_all(bool on) override;
  std::vector<std::optional<bool>> commanded() const override { return commanded_; }
  void close() override;
  Result<std::vector<bool>> read_power() override;

  /// Firmware version from open() (nullopt when the board refused 0xF0).
  std::optional<std::pair<int, int>> firmware() const { return firmware_; }

 private:
  Result<fw::ykush::Reply> transact(const fw::ykush::Command& c);
  Result<void> switch_checked(const fw::ykush::Command& c);
  Result<bool> query(int port);
  std::string where() const;

  std::unique_ptr<fw::HidReportTransport> transport_;
  Options opt_;
  bool open_ = false;
  bool drain_ = false;  ///< a reply went missing: drop stale input before the next command
  int ports_ = 0;
  std::optional<std::pair<int, int>> firmware_;
  std::vector<std::optional<bool>> commanded_;
};

/// A standard USB hub with per-port power switching, named by location ("1-1.4"). For a USB 3
/// hub both halves (the USB 2 hub and its SuperSpeed companion on another bus) are switched and
/// read back; a port's VBUS goes off only when both halves have it off. Hubs whose descriptor
/// says ganged or no power switching are refused (unsupported).
/// Specs: "uhub:usb:LOCATION[:exact=1,...]" (exact=1: that hub only, no companion),
/// "uhub:emulated[:ports=N,usb3=0|1,...]".
class UsbHub final : public Relay, public PortPowerReadBack {
 public:
  using Options = HubOptions;
  /// `halves`: one transport per logical hub (USB 2 first, then the SuperSpeed companion).
  UsbHub(std::vector<std::unique_ptr<fw::UsbControlTransport>> halves, Options opt);

  /// Registry: every hub libusb sees whose descriptor allows per-port switching, one candidate
  /// per physical hub (the USB 2 half names a USB 3 hub).
  static std::vector<Candidate> find(std::span<const fw::PortInfo> ports);
  static Result<std::unique_ptr<Relay>> make(const DeviceSpec& spec);
  using EmulatorFactory = Result<std::vector<std::unique_ptr<fw::UsbControlTransport>>> (*)(
      std::span<const std::pair<std::string, std::string>> options);
  static void set_emulator_factory(EmulatorFactory factory);

  Result<RelayInfo> open() override;
  Result<void> set(int channel, bool on) override;
  Result<void> set_all(bool on) override;
  std::vector<std::optional<bool>> commanded() const override { return commanded_; }
  void close() override;
  /// A port reads powered when any half reports it powered (VBUS is shared).
  Result<std::vector<bool>> read_power() override;

  /// Number of logical hubs switched together (2 for a USB 3 hub).
  std::size_t halves() const { return halves_.size(); }

 private:
  struct Half {
    std::unique_ptr<fw::UsbControlTransport> t;
    bool superspeed = false;
    fw::uhub::HubDescriptor desc;
  };
  Result<std::size_t> request(Half& h, const fw::uhub::Setup& s, std::span<std::uint8_t> data);
  Result<bool> half_power(Half& h, int port);
  Result<void> switch_half(Half& h, int port, bool on);
  std::string where(const Half& h) const;

  std::vector<Half> halves_;
  Options opt_;
  bool open_ = false;
  int ports_ = 0;
  std::vector<std::optional<bool>> commanded_;
};

/// Parses the options both hub drivers share (timeout_ms, verify, safe) into `opt`, and refuses
/// any option not in `shared` or `own` (invalid_argument naming the option and the known ones).
Result<void> parse_hub_options(const DeviceSpec& spec, std::initializer_list<std::string_view> own,
                               HubOptions& opt);

}  // namespace meltrig::rig
