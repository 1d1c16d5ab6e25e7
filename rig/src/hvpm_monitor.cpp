// HVPM / reflashed-LVPM driver: see hvpm_monitor.hpp.
#include "meltrig/rig/hvpm_monitor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cassert>

namespace meltrig::rig {
namespace hv = fw::hvpm;
namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto l = [] {
    auto existing = spdlog::get("hvpm");
    return existing ? existing : spdlog::default_logger()->clone("hvpm");
  }();
  return l;
}

const char* model_name(hv::Model m) {
  return m == hv::Model::hvpm ? "HVPM" : m == hv::Model::lvpm ? "LVPM" : "unknown";
}

constexpr std::uint64_t kInvalidPacketsLogged = 5;
constexpr std::uint64_t kUncalibratedWarnSamples = 20000;

}  // namespace

HvpmMonitor::HvpmMonitor(std::unique_ptr<fw::UsbBulkTransport> transport)
    : HvpmMonitor(std::move(transport), Options{}) {}

HvpmMonitor::HvpmMonitor(std::unique_ptr<fw::UsbBulkTransport> transport, Options opt)
    : transport_(std::move(transport)), opt_(std::move(opt)) {
  opt_.packets_per_read = std::clamp<std::size_t>(opt_.packets_per_read, 1, 256);
  buf_.resize(opt_.packets_per_read * hv::kPacketSize);
}

std::vector<Candidate> HvpmMonitor::find(std::span<const fw::PortInfo>) {
  std::vector<Candidate> out;
  auto devices = fw::list_usb_devices(hv::kVendorId, hv::kProductId);
  if (!devices) {
    log()->info("cannot enumerate USB devices: {}", devices.error().describe());
    return out;
  }
  for (const auto& d : *devices) {
    std::string why =
        "USB 2ab9:0001 bus " + std::to_string(d.bus) + " address " + std::to_string(d.address);
    if (!d.product.empty()) why += " '" + d.product + "'";
    if (!d.note.empty()) why += " (" + d.note + ")";
    out.push_back({"hvpm", d.serial.empty() ? "hvpm:usb" : "hvpm:usb:serial=" + d.serial, why});
  }
  return out;
}

namespace {
std::atomic<HvpmMonitor::EmulatorFactory> g_emulator_factory{nullptr};
}  // namespace

void HvpmMonitor::set_emulator_factory(EmulatorFactory f) {
  g_emulator_factory.store(f);
}

Result<std::unique_ptr<Monitor>> HvpmMonitor::make_emulated(const DeviceSpec& spec) {
  auto factory = g_emulator_factory.load();
  if (!factory) {
    return make_error(Errc::invalid_argument,
                      "device spec \"" + spec.str() + "\": this program has no HVPM emulator");
  }
  auto t = factory(spec.options);
  if (!t) {
    return make_error(t.error().code, "device spec \"" + spec.str() + "\": " + t.error().message);
  }
  Options o;
  o.port = "emulated";
  return std::unique_ptr<Monitor>(new HvpmMonitor(std::move(t.value()), o));
}

Result<std::unique_ptr<Monitor>> HvpmMonitor::make(const DeviceSpec& spec) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_argument, "device spec \"" + spec.str() + "\": " + why);
  };
  if (spec.port == "emulated") return make_emulated(spec);
  if (spec.port.starts_with("emulated,")) {
    // "hvpm:emulated,key=value,...": the options written after a comma rather than a colon.
    auto d = DeviceSpec::parse("hvpm:emulated:" + spec.port.substr(9));
    if (!d) return d.error();
    return make_emulated(*d);
  }
  if (spec.port != "usb")
    return bad("HVPM devices are named hvpm:usb[:serial=NNN] or hvpm:emulated[:key=value,...]");
  Options o;
  std::optional<std::string> serial;
  for (const auto& [k, v] : spec.options) {
    if (k == "serial") {
      if (v.empty()) return bad("serial= needs a value");
      serial = v;
    } else if (k == "dropped_order") {
      if (v == "le") {
        o.dropped_byte_order = hv::DroppedByteOrder::little;
      } else if (v == "be") {
        o.dropped_byte_order = hv::DroppedByteOrder::big;
      } else {
        return bad("option dropped_order=" + v + " is not le or be");
      }
    } else if (k != "cal_ms") {
      return bad("unknown option \"" + k + "\" (hvpm takes serial, dropped_order, cal_ms)");
    }
  }
  auto cal = spec.int_option("cal_ms", hv::kDefaultCalibrationIntervalMs, 1, 65535);
  if (!cal) return cal.error();
  o.calibration_interval_ms = static_cast<std::uint16_t>(*cal);
  auto t = fw::LibusbTransport::open(hv::kVendorId, hv::kProductId, serial);
  if (!t) return t.error();
  o.port = (*t)->name();
  return std::unique_ptr<Monitor>(new HvpmMonitor(std::move(t.value()), o));
}

std::string HvpmMonitor::where() const {
  return transport_ ? transport_->name() : opt_.port;
}

Result<void> HvpmMonitor::send(const hv::ControlTransfer& t) {
  if (!transport_) return make_error(Errc::port_gone, opt_.port + ": closed");
  return transport_->control_out(t.request, t.value, t.index, t.payload(), opt_.io_timeout);
}

Result<std::int32_t> HvpmMonitor::get(hv::Opcode op) {
  if (!transport_) return make_error(Errc::port_gone, opt_.port + ": closed");
  const hv::ControlTransfer t = hv::get_value(op);
  std::array<std::uint8_t, 4> reply{};
  auto n = transport_->control_in(t.request, t.value, t.index, reply, opt_.io_timeout);
  if (!n) {
    Error e = n.error();
    e.message = "reading " + hv::opcode_name(op) + ": " + e.message;
    return e;
  }
  // At the register's own width and signedness: zero offsets are signed 16-bit.
  auto v = hv::parse_register(op, std::span<const std::uint8_t>(reply.data(), *n));
  if (!v) return make_error(Errc::protocol_error, where() + ": " + v.error().message);
  return *v;
}

Result<void> HvpmMonitor::read_calibration() {
  using O = hv::Opcode;
  device_ = hv::DeviceCalibration{};
  device_.model = model_;
  if (model_ == hv::Model::hvpm) {
    struct Field {
      O op;
      double* dst;
    };
    const Field fields[] = {
        {O::main_fine_scale, &device_.main.fine_scale},
        {O::main_coarse_scale, &device_.main.coarse_scale},
        {O::usb_fine_scale, &device_.usb.fine_scale},
        {O::usb_coarse_scale, &device_.usb.coarse_scale},
        {O::main_fine_zero_offset, &device_.main.fine_zero_offset},
        {O::main_coarse_zero_offset, &device_.main.coarse_zero_offset},
        {O::usb_fine_zero_offset, &device_.usb.fine_zero_offset},
        {O::usb_coarse_zero_offset, &device_.usb.coarse_zero_offset},
        {O::aux_fine_scale, &aux_scales_[0]},
        {O::aux_coarse_scale, &aux_scales_[1]},
    };
    for (const auto& f : fields) {
      auto v = get(f.op);  // range-checked: a blank scale or an absurd offset is refused here
      if (!v) return v.error();
      *f.dst = static_cast<double>(*v);
    }
    return {};
  }
  // The LVPM's scales follow from its sense resistors; it has no zero offsets (PyMonsoon).
  const O ops[6] = {O::main_fine_resistor_offset, O::main_coarse_resistor_offset,
                    O::usb_fine_resistor_offset,  O::usb_coarse_resistor_offset,
                    O::aux_fine_resistor_offset,  O::aux_coarse_resistor_offset};
  for (std::size_t i = 0; i < 6; ++i) {
    auto v = get(ops[i]);  // signed 8-bit, as Operations.py documents
    if (!v) return v.error();
    resistor_offsets_[i] = static_cast<std::int8_t>(*v);
  }
  const auto& r = resistor_offsets_;
  device_.main = {hv::lvpm_fine_scale(hv::lvpm_resistor_ohm(r[0])),
                  hv::lvpm_coarse_scale(hv::lvpm_resistor_ohm(r[1])), 0, 0};
  device_.usb = {hv::lvpm_fine_scale(hv::lvpm_resistor_ohm(r[2])),
                 hv::lvpm_coarse_scale(hv::lvpm_resistor_ohm(r[3])), 0, 0};
  return {};
}

Result<std::size_t> HvpmMonitor::read_bulk(std::chrono::milliseconds timeout) {
  if (!transport_) return make_error(Errc::port_gone, opt_.port + ": closed");
  return transport_->bulk_read(hv::kBulkInEndpoint, buf_, timeout);
}

Result<MonitorInfo> HvpmMonitor::open() {
  if (!transport_) return make_error(Errc::port_gone, opt_.port + ": closed");
  using O = hv::Opcode;
  // A device left sampling by an earlier run keeps streaming: stop it and drop what is queued.
  if (auto r = send(hv::stop_sampling()); !r) return r.error();
  const std::int64_t drain_until = opt_.clock->now_ns() + 1'000'000'000;
  while (opt_.clock->now_ns() < drain_until) {
    auto n = read_bulk(std::chrono::milliseconds(20));
    if (!n) {
      if (n.error().code == Errc::timeout) break;
      return n.error();
    }
  }

  auto model = get(O::hardware_model);
  if (!model) return model.error();
  if (*model != 1 && *model != 2) {
    return make_error(Errc::protocol_error,
                      where() + ": hardware model register reads " + std::to_string(*model) +
                          " (expected 1 for a reflashed LVPM or 2 for an HVPM)");
  }
  model_ = static_cast<hv::Model>(*model);
  auto serial = get(O::serial_number);
  if (!serial) return serial.error();
  auto firmware = get(O::firmware_version);
  if (!firmware) return firmware.error();

  if (auto r = read_calibration(); !r) return r.error();
  calibrator_.emplace(device_);

  MonitorInfo info;
  info.driver = "hvpm";
  info.port = opt_.port;
  info.nominal_rate_hz = hv::kNominalRateHz;
  info.serial_number = std::to_string(*serial);
  info.firmware_version = std::to_string(*firmware);
  info.channels = {
      {"current", "A", SampleType::f32, "main-channel current; NaN where the sample is missing"},
      {"voltage", "V", SampleType::f32, "main-channel voltage; NaN where the sample is missing"},
      {"usb_current", "A", SampleType::f32,
       "USB-channel current; NaN where missing or before the USB channel is calibrated"}};
  info.current_channel = 0;
  info.voltage_channel = 1;
  info.status = calibration_status(*serial, *firmware);
  if (auto r = read_informational(info.status); !r) return r.error();
  opened_ = true;
  log()->info("{}: {} serial {} firmware {}", where(), model_name(model_), *serial, *firmware);
  return info;
}

std::vector<Attribute> HvpmMonitor::calibration_status(std::int32_t serial,
                                                       std::int32_t firmware) const {
  auto i64 = [](auto v) { return static_cast<std::int64_t>(v); };
  std::vector<Attribute> st = {
      {"model", std::string(model_name(model_))},
      {"transport", where()},
      {"serial_number", i64(serial)},
      {"firmware_version", i64(firmware)},
      {"main_fine_scale", device_.main.fine_scale},
      {"main_coarse_scale", device_.main.coarse_scale},
      {"usb_fine_scale", device_.usb.fine_scale},
      {"usb_coarse_scale", device_.usb.coarse_scale},
      {"main_fine_zero_offset", device_.main.fine_zero_offset},
      {"main_coarse_zero_offset", device_.main.coarse_zero_offset},
      {"usb_fine_zero_offset", device_.usb.fine_zero_offset},
      {"usb_coarse_zero_offset", device_.usb.coarse_zero_offset},
      {"fine_threshold_counts", hv::fine_threshold(model_)},
      {"main_volts_per_count", hv::main_volts_per_count(model_)},
      {"calibration_interval_ms", i64(opt_.calibration_interval_ms)},
      {"calibration_readings_required", i64(hv::Calibrator::kWindow)},
      {"dropped_count_byte_order",
       std::string(opt_.dropped_byte_order == hv::DroppedByteOrder::little ? "little" : "big")},
  };
  if (model_ == hv::Model::hvpm) {
    st.push_back({"aux_fine_scale", aux_scales_[0]});
    st.push_back({"aux_coarse_scale", aux_scales_[1]});
  } else {
    const char* names[6] = {"main_fine_resistor_offset", "main_coarse_resistor_offset",
                            "usb_fine_resistor_offset",  "usb_coarse_resistor_offset",
                            "aux_fine_resistor_offset",  "aux_coarse_resistor_offset"};
    for (std::size_t i = 0; i < 6; ++i)
      st.push_back({names[i], i64(resistor_offsets_[i])});
  }
  return st;
}

Result<void> HvpmMonitor::read_informational(std::vector<Attribute>& status) {
  using O = hv::Opcode;
  // Informational registers: a device that refuses one is still usable, one that is gone is not.
  auto optional_get = [&](O op) -> Result<std::optional<std::int32_t>> {
    auto v = get(op);
    if (v) return std::optional<std::int32_t>(*v);
    if (v.error().code == Errc::port_gone) return v.error();
    log()->info("{}: {}", where(), v.error().describe());
    return std::optional<std::int32_t>();
  };
  struct Extra {
    O op;
    const char* name;
  };
  const Extra extras[] = {{O::protocol_version, "protocol_version"},
                          {O::usb_passthrough, "usb_passthrough_mode"},
                          {O::voltage_channel, "voltage_channel"},
                          {O::start_status, "start_status"}};
  for (const auto& e : extras) {
    auto v = optional_get(e.op);
    if (!v) return v.error();
    if (*v) status.push_back({e.name, static_cast<std::int64_t>(**v)});
  }
  for (O op : {O::power_up_current_limit, O::runtime_current_limit}) {
    auto v = optional_get(op);
    if (!v) return v.error();
    if (*v) {
      status.push_back(
          {op == O::power_up_current_limit ? "power_up_current_limit_a" : "runtime_current_limit_a",
           hv::current_limit_amps(static_cast<std::uint32_t>(**v), model_)});
    }
  }
  return {};
}

Result<void> HvpmMonitor::configure(const MonitorConfig& cfg) {
  if (!opened_) return make_error(Errc::invalid_argument, "HVPM: configure() before open()");
  using O = hv::Opcode;
  auto vout = hv::set_output_voltage(cfg.output_voltage_v, model_);
  if (!vout) return make_error(Errc::invalid_argument, where() + ": " + vout.error().message);
  if (auto r = send(*vout); !r) return r.error();
  // Read back what the public drivers read back (limits, passthrough): a monitor that ignored a
  // setting must not be measured as if it had taken it. The output voltage register is not read
  // back: no public driver reads it, so what a real device answers is unknown.
  auto check = [&](O op, std::uint32_t want) -> Result<void> {
    auto got = get(op);
    if (!got) return got.error();
    if (static_cast<std::uint32_t>(*got) != want) {
      return make_error(Errc::protocol_error, where() + ": " + hv::opcode_name(op) +
                                                  " reads back " + std::to_string(*got) + ", not " +
                                                  std::to_string(want));
    }
    return {};
  };
  if (cfg.current_limit_a) {
    for (O op : {O::power_up_current_limit, O::runtime_current_limit}) {
      auto t = hv::set_current_limit(op, *cfg.current_limit_a, model_);
      if (!t) return make_error(Errc::invalid_argument, where() + ": " + t.error().message);
      if (auto r = send(*t); !r) return r.error();
      if (auto r = check(op, *hv::current_limit_raw(*cfg.current_limit_a, model_)); !r) return r;
    }
  }
  auto mode = cfg.usb_passthrough == MonitorConfig::UsbPassthrough::on ? hv::UsbPassthrough::on
              : cfg.usb_passthrough == MonitorConfig::UsbPassthrough::automatic
                  ? hv::UsbPassthrough::automatic
                  : hv::UsbPassthrough::off;
  if (auto r = send(hv::set_usb_passthrough(mode)); !r) return r.error();
  return check(O::usb_passthrough, static_cast<std::uint32_t>(mode));
}

Result<void> HvpmMonitor::start() {
  if (!opened_) return make_error(Errc::invalid_argument, "HVPM: start() before open()");
  auto cfg = opt_.sequencer;
  cfg.rate_hz = hv::kNominalRateHz;
  sequencer_.emplace(cfg);
  calibrator_.emplace(device_);  // every run calibrates afresh
  cal_generation_emitted_ = 0;
  waiting_.clear();
  pending_duplicates_.clear();
  last_packet_len_ = 0;
  next_tag_ = 0;
  packets_read_ = 0;
  sequencer_->begin(opt_.clock->now_ns());
  // Never a sample limit: PyMonsoon's 50000-sample default silently ends captures at 10 s.
  return send(hv::start_sampling(opt_.calibration_interval_ms, hv::kUnlimitedSamples));
}

void HvpmMonitor::on_packet(std::span<const std::uint8_t> packet, std::int64_t arrival_ns,
                            bool caught_up) {
  const std::uint64_t number = packets_read_++;
  hv::PacketHeader h;
  std::array<hv::RawSample, hv::kMaxSamplesPerPacket> s{};
  if (hv::decode_packet(packet, opt_.dropped_byte_order, h, s) != hv::PacketStatus::ok) {
    // Its samples are lost; the next packet's counter shows the gap.
    if (++invalid_packets_ <= kInvalidPacketsLogged) {
      auto p = hv::parse_packet(packet, opt_.dropped_byte_order,
                                "packet " + std::to_string(number) + " of the run");
      if (!p) log()->warn("{}: {}", where(), p.error().message);
    }
    return;
  }
  Slots slots;
  for (std::size_t i = 0; i < h.n; ++i) {
    auto k = s[i].kind();
    if (k == hv::SampleKind::measurement || k == hv::SampleKind::invalid) slots.s[slots.n++] = s[i];
  }
  const std::size_t len = std::min(packet.size(), hv::kPacketSize);
  if (len == last_packet_len_ &&
      std::equal(packet.begin(), packet.begin() + len, last_packet_.begin())) {
    // The same counter and bytes as the packet before: a repeat, not 15 lost packets.
    duplicate_samples_ += slots.n;
    if (slots.n)
      pending_duplicates_.push_back(
          {sequencer_->next_index(), slots.n, GapKind::duplicate_dropped});
    return;
  }
  std::copy_n(packet.begin(), len, last_packet_.begin());
  last_packet_len_ = len;
  for (std::size_t i = 0; i < h.n; ++i) {
    auto k = s[i].kind();
    if (k == hv::SampleKind::zero_cal || k == hv::SampleKind::ref_cal) {
      calibrator_->add(s[i]);
    }
  }
  // Whether the calibration was complete when the packet arrived (in stream order), decided now:
  // the sequencer may hold the packet while later calibration samples come in.
  slots.calibrated = calibrator_->calibrated();
  sequencer_->push(h.counter(), h.dropped, slots.n, arrival_ns, next_tag_, caught_up);
  if (slots.n) {
    waiting_.push_back(slots);
    ++next_tag_;
  }
}

void HvpmMonitor::emit(SampleSink& sink, std::uint64_t first_index, const Slots& slots) {
  if (calibrator_->generation() != cal_generation_emitted_) {
    cal_generation_emitted_ = calibrator_->generation();
    auto c = calibrator_->main();
    sink.calibration({first_index, c.fine_zero, c.fine_ref, c.coarse_zero, c.coarse_ref});
  }
  // Runs of measurement samples become sample blocks; runs of invalid samples keep their slots
  // as missing rows, so the samples after them stay at their index.
  std::size_t i = 0;
  while (i < slots.n) {
    const bool valid = slots.s[i].kind() == hv::SampleKind::measurement;
    std::size_t j = i + 1;
    while (j < slots.n && (slots.s[j].kind() == hv::SampleKind::measurement) == valid)
      ++j;
    const std::size_t n = j - i;
    if (valid) {
      auto run = std::span<const hv::RawSample>(slots.s.data() + i, n);
      calibrator_->convert(run, cur_, volt_, usb_);
      const std::array<ChannelData, 3> cols = {std::span<const float>(cur_.data(), n),
                                               std::span<const float>(volt_.data(), n),
                                               std::span<const float>(usb_.data(), n)};
      sink.samples(first_index + i, cols);
    } else {
      invalid_samples_ += n;
      sink.gap({first_index + i, n, GapKind::missing});
    }
    i = j;
  }
}

void HvpmMonitor::release(SampleSink& sink) {
  for (const auto& g : pending_duplicates_)
    sink.gap(g);
  pending_duplicates_.clear();
  // Gaps and samples go out in index order: a packet's losses travel with it.
  auto lost_gaps = [&](const hv::PlacedPacket& p) {
    if (!p.lost_before) return;
    const std::uint64_t first = p.first_index - p.lost_before;
    const std::uint64_t missing = p.counter_lost + p.device_dropped;
    if (missing) sink.gap({first, missing, GapKind::missing});
    if (p.wrap_lost) {
      sink.gap({first + missing, p.wrap_lost,
                p.wrap_inferred ? GapKind::inferred : GapKind::missing_wrapped});
    }
  };
  sequencer_->drain([&](const hv::PlacedPacket& placed) {
    assert(!waiting_.empty());
    Slots slots = waiting_.front();
    waiting_.pop_front();
    lost_gaps(placed);
    if (!slots.calibrated) {
      // As PyMonsoon: nothing converts before every calibration window holds 5 readings.
      sink.gap({placed.first_index, slots.n, GapKind::uncalibrated});
      note_uncalibrated(slots.n);
      return;
    }
    emit(sink, placed.first_index, slots);
  });
}

void HvpmMonitor::note_uncalibrated(std::uint64_t n) {
  const std::uint64_t before = uncalibrated_samples_;
  uncalibrated_samples_ += n;
  // PyMonsoon gives up after 20000 samples (4 s) without a full calibration; the driver keeps
  // waiting, and says why once.
  if (before < kUncalibratedWarnSamples && uncalibrated_samples_ >= kUncalibratedWarnSamples) {
    log()->warn("{}: no calibration after {} samples; still missing: {}", where(),
                uncalibrated_samples_, calibrator_->missing_readings());
  }
}

Result<void> HvpmMonitor::poll(SampleSink& sink, std::chrono::milliseconds timeout) {
  if (!sequencer_) return make_error(Errc::invalid_argument, "HVPM: poll() before start()");
  return quiet_is_ok(read_into_sequencer(sink, timeout));
}

Result<void> HvpmMonitor::read_into_sequencer(SampleSink& sink, std::chrono::milliseconds timeout) {
  const std::int64_t called = opt_.clock->now_ns();
  auto n = read_bulk(timeout);
  if (!n) return n.error();
  const std::int64_t arrival = opt_.clock->now_ns();
  // A read that returns at once found data queued (a backlog); one that waited measures the device.
  const bool caught_up = arrival - called >= fw::kCaughtUpWaitNs;
  for (std::size_t off = 0; off < *n; off += hv::kPacketSize) {
    on_packet(std::span<const std::uint8_t>(buf_.data() + off, std::min(hv::kPacketSize, *n - off)),
              arrival, caught_up);
  }
  release(sink);
  return {};
}

Result<void> HvpmMonitor::stop(SampleSink& sink) {
  Result<void> result;
  if (transport_ && sequencer_) {
    result = send(hv::stop_sampling());
    if (result) {
      result = drain_in_flight(
          *opt_.clock, [&](std::chrono::milliseconds t) { return read_into_sequencer(sink, t); });
    }
  }
  if (sequencer_) {
    sequencer_->finish();
    release(sink);
  }
  return result;
}

void HvpmMonitor::close() {
  // Releases the interface and the device (LibusbTransport's destructor).
  transport_.reset();
  opened_ = false;
}

std::vector<Counter> HvpmMonitor::counters() const {
  hv::SequenceCounters s = sequencer_ ? sequencer_->counters() : hv::SequenceCounters{};
  std::vector<Counter> out = {
      {"missing_samples", s.counter_lost + s.device_dropped + s.wrap_lost + s.inferred_lost +
                              uncalibrated_samples_ + invalid_samples_},
      {"device_dropped_samples", s.device_dropped},
      {"counter_gaps", s.counter_gaps},
      {"counter_lost_samples", s.counter_lost},
  };
  append_wrap_counters(out, s);
  out.insert(out.end(), {
                            {"invalid_samples", invalid_samples_},
                            {"uncalibrated_samples", uncalibrated_samples_},
                            {"duplicate_samples", duplicate_samples_},
                            {"invalid_packets", invalid_packets_},
                            {"dropped_count_implausible", s.dropped_implausible},
                        });
  return out;
}

}  // namespace meltrig::rig
