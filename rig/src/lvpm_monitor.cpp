// LVPM driver: see lvpm_monitor.hpp.
#include "meltrig/rig/lvpm_monitor.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <thread>

namespace meltrig::rig {
namespace lv = fw::lvpm;
namespace {
std::shared_ptr<spdlog::logger> log() {
  static auto l = [] {
    auto existing = spdlog::get("lvpm");
    return existing ? existing : spdlog::default_logger()->clone("lvpm");
  }();
  return l;
}
}  // namespace

LvpmMonitor::LvpmMonitor(Options opt) : opt_(std::move(opt)) {}

std::vector<Candidate> LvpmMonitor::find(std::span<const fw::PortInfo> ports) {
  std::vector<Candidate> out;
  for (const auto& p : ports) {
    if (p.usb_product == lv::kUsbDescription || p.description == lv::kUsbDescription) {
      out.push_back({"lvpm", "lvpm:" + p.path, "USB product '" + p.usb_product + "'"});
    }
  }
  return out;
}

Result<std::unique_ptr<Monitor>> LvpmMonitor::make(const DeviceSpec& spec) {
  if (!spec.options.empty()) {
    return make_error(Errc::invalid_argument,
                      "device spec \"" + spec.str() + "\": lvpm takes no options");
  }
  Options o;
  o.port = spec.port;
  return std::unique_ptr<Monitor>(new LvpmMonitor(o));
}

Result<void> LvpmMonitor::send(const std::vector<std::uint8_t>& bytes) {
  if (!port_) return make_error(Errc::port_gone, opt_.port + ": not open");
  return port_->write_all(bytes, opt_.io_timeout);
}

Result<lv::Status> LvpmMonitor::read_status() {
  if (auto r = send(lv::cmd_get_status()); !r) return r.error();
  const std::int64_t deadline =
      opt_.clock->now_ns() + std::chrono::nanoseconds(opt_.io_timeout).count();
  std::array<std::uint8_t, 512> buf{};
  std::optional<lv::Status> got;
  while (!got) {
    std::int64_t left_ns = deadline - opt_.clock->now_ns();
    if (left_ns <= 0) break;
    auto n = port_->read_some(buf, std::chrono::milliseconds(left_ns / 1'000'000 + 1));
    if (!n) {
      if (n.error().code == Errc::timeout) break;
      return n.error();
    }
    // Skip whatever is not the status packet (e.g. data still arriving from an earlier run).
    decoder_.feed(std::span(buf.data(), *n), [&](std::span<const std::uint8_t> payload) {
      if (!got && lv::is_status_packet(payload)) {
        if (auto s = lv::parse_status(payload)) got = *s;
      }
    });
  }
  if (!got) {
    const auto& c = decoder_.counters();
    return make_error(Errc::protocol_error, opt_.port + ": no status packet within " +
                                                std::to_string(opt_.io_timeout.count()) + " ms (" +
                                                std::to_string(c.discarded_bytes) +
                                                " bytes discarded: is this an LVPM?)");
  }
  status_ = *got;
  have_status_ = true;
  return *got;
}

Result<MonitorInfo> LvpmMonitor::open() {
  auto p = fw::SerialPort::open(opt_.port);
  if (!p) return p.error();
  port_.emplace(std::move(p.value()));
  // A device left sampling by an earlier run keeps streaming: stop it and drop what is queued.
  if (auto r = send(lv::cmd_stop_sampling()); !r) return r.error();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (auto r = port_->discard_input(); !r) return r.error();
  auto s = read_status();
  if (!s) return s.error();
  if (s->sample_rate_khz == 0) {
    return make_error(Errc::protocol_error, opt_.port + ": status reports a sample rate of 0 kHz");
  }
  MonitorInfo info;
  info.driver = "lvpm";
  info.port = opt_.port;
  info.nominal_rate_hz = s->sample_rate_hz();
  info.serial_number = std::to_string(s->serial_number);
  info.firmware_version = std::to_string(s->firmware_version);
  info.channels = {
      {"current", "A", SampleType::f32, "main-channel current; NaN where the sample is missing"},
      {"voltage", "V", SampleType::f32, "main-channel voltage; NaN where the sample is missing"}};
  auto i = [](auto v) { return static_cast<std::int64_t>(v); };
  info.status = {
      {"firmware_version", i(s->firmware_version)},
      {"protocol_version", i(s->protocol_version)},
      {"serial_number", i(s->serial_number)},
      {"hardware_revision", i(s->hardware_revision)},
      {"sample_rate_khz", i(s->sample_rate_khz)},
      {"output_voltage_setting_v", s->output_voltage_v()},
      {"voltage_full_scale_v", lv::Calibrator::voltage_full_scale_v(s->hardware_revision)},
      {"power_up_current_limit_a", s->power_up_current_limit_a()},
      {"runtime_current_limit_a", s->runtime_current_limit_a()},
      {"usb_passthrough_mode", i(s->usb_passthrough_mode)},
      {"temperature_raw", i(s->temperature)},
      {"temperature_limit_raw", i(s->temperature_limit)},
      {"main_fine_resistor_ohm", s->main_fine_resistor_ohm()},
      {"main_coarse_resistor_ohm", s->main_coarse_resistor_ohm()},
      {"dac_cal_low", i(s->dac_cal_low)},
      {"dac_cal_high", i(s->dac_cal_high)},
      {"voltage1_v", s->voltage1_v()},
      {"voltage2_v", s->voltage2_v()},
      {"status_byte", i(s->status)},
      {"event_code", i(s->event_code)},
  };
  log()->info("{}: LVPM serial {} firmware {} hardware revision {}, {} kHz", opt_.port,
              s->serial_number, s->firmware_version, s->hardware_revision, s->sample_rate_khz);
  return info;
}

Result<void> LvpmMonitor::configure(const MonitorConfig& cfg) {
  auto vout = lv::cmd_set_vout(cfg.output_voltage_v);
  if (!vout) return vout.error();
  if (auto r = send(*vout); !r) return r.error();
  if (cfg.current_limit_a) {
    auto a = lv::cmd_set_power_up_current_limit(*cfg.current_limit_a);
    if (!a) return a.error();
    auto b = lv::cmd_set_runtime_current_limit(*cfg.current_limit_a);
    if (!b) return b.error();
    if (auto r = send(*a); !r) return r.error();
    if (auto r = send(*b); !r) return r.error();
  }
  auto mode = cfg.usb_passthrough == MonitorConfig::UsbPassthrough::on ? lv::UsbPassthrough::on
              : cfg.usb_passthrough == MonitorConfig::UsbPassthrough::automatic
                  ? lv::UsbPassthrough::automatic
                  : lv::UsbPassthrough::off;
  if (auto r = send(lv::cmd_set_usb_passthrough(mode)); !r) return r.error();
  // Read back: a monitor that ignored a setting must not be measured as if it had taken it.
  auto s = read_status();
  if (!s) return s.error();
  if (s->output_voltage_setting != *lv::vout_raw(cfg.output_voltage_v)) {
    return make_error(Errc::protocol_error, opt_.port + ": output voltage reads back as " +
                                                std::to_string(s->output_voltage_v()) + " V, not " +
                                                std::to_string(cfg.output_voltage_v) + " V");
  }
  if (s->usb_passthrough_mode != static_cast<std::uint8_t>(mode)) {
    return make_error(Errc::protocol_error, opt_.port + ": USB passthrough mode did not take");
  }
  const double full_scale = lv::Calibrator::voltage_full_scale_v(s->hardware_revision);
  if (cfg.output_voltage_v > full_scale) {
    log()->warn(
        "{}: output voltage {} V is above the voltage channel's full scale, {} V on hardware "
        "revision {}: voltage readings will clip (counted as voltage_clipped_samples) and power "
        "computed from them will read low",
        opt_.port, cfg.output_voltage_v, full_scale, s->hardware_revision);
  }
  return {};
}

Result<void> LvpmMonitor::start() {
  if (!have_status_) return make_error(Errc::invalid_argument, "LVPM: start() before open()");
  auto cfg = opt_.sequencer;
  cfg.rate_hz = status_.sample_rate_hz();
  sequencer_.emplace(cfg);
  packets_.clear();
  uncalibrated_.clear();
  next_tag_ = front_tag_ = 0;
  return send(lv::cmd_start_sampling());
}

void LvpmMonitor::on_payload(std::span<const std::uint8_t> payload, std::int64_t arrival_ns,
                             bool caught_up) {
  if (lv::is_status_packet(payload)) {
    if (auto s = lv::parse_status(payload)) status_ = *s;
    return;
  }
  auto p = lv::parse_sample_packet(payload);
  if (!p) {
    ++unexpected_packets_;
    return;
  }
  bool is_data = p->type == lv::PacketType::data;
  if (is_data) {
    if (payload.size() == last_data_len_ &&
        std::equal(payload.begin(), payload.end(), last_data_.begin())) {
      // Same sequence number and same bytes as the packet before: a duplicate, not 15 lost.
      duplicate_samples_ += p->n;
      pending_duplicates_.push_back({sequencer_->next_index(), p->n, GapKind::duplicate_dropped});
      return;
    }
    std::copy(payload.begin(), payload.end(), last_data_.begin());
    last_data_len_ = payload.size();
  } else {
    calibrator_.add(*p);
  }
  if (is_data && p->n == 0) is_data = false;  // carries no samples: nothing to place
  sequencer_->push(p->seq, is_data, p->n, arrival_ns, next_tag_, caught_up);
  if (is_data) {
    packets_.push_back(*p);
    ++next_tag_;
  }
}

void LvpmMonitor::emit(SampleSink& sink, const lv::PlacedPacket& placed,
                       const lv::SamplePacket& p) {
  if (calibrator_.generation() != cal_generation_emitted_) {
    cal_generation_emitted_ = calibrator_.generation();
    auto v = calibrator_.values();
    sink.calibration({placed.first_index, v.fine_zero, v.fine_ref, v.coarse_zero, v.coarse_ref});
  }
  calibrator_.convert(p, status_.hardware_revision, cur_, volt_);
  for (std::size_t i = 0; i < p.n; ++i)
    if (lv::Calibrator::voltage_clipped(p.samples[i].main_voltage)) ++voltage_clipped_samples_;
  const std::array<ChannelData, 2> cols = {std::span<const float>(cur_.data(), p.n),
                                           std::span<const float>(volt_.data(), p.n)};
  sink.samples(placed.first_index, cols);
}

void LvpmMonitor::release(SampleSink& sink) {
  for (const auto& g : pending_duplicates_)
    sink.gap(g);
  pending_duplicates_.clear();
  sequencer_->drain([&](const lv::PlacedPacket& placed) {
    assert(placed.tag == front_tag_ && !packets_.empty());
    lv::SamplePacket p = packets_.front();
    packets_.pop_front();
    ++front_tag_;
    if (placed.lost_before) {
      std::uint64_t first = placed.first_index - placed.lost_before;
      std::uint64_t by_seq = placed.lost_before - placed.wrap_lost;
      if (by_seq) sink.gap({first, by_seq, GapKind::missing});
      if (placed.wrap_lost) {
        sink.gap({first + by_seq, placed.wrap_lost,
                  placed.wrap_inferred ? GapKind::inferred : GapKind::missing_wrapped});
      }
    }
    if (!calibrator_.ready()) {
      uncalibrated_.emplace_back(placed, p);
      if (uncalibrated_.size() > opt_.max_uncalibrated_packets) {
        auto& [pl, pk] = uncalibrated_.front();
        sink.gap({pl.first_index, pk.n, GapKind::uncalibrated});
        uncalibrated_samples_ += pk.n;
        uncalibrated_.pop_front();
      }
      return;
    }
    for (auto& [pl, pk] : uncalibrated_)
      emit(sink, pl, pk);
    uncalibrated_.clear();
    emit(sink, placed, p);
  });
}

Result<void> LvpmMonitor::poll(SampleSink& sink, std::chrono::milliseconds timeout) {
  if (!port_ || !sequencer_)
    return make_error(Errc::invalid_argument, "LVPM: poll() before start()");
  return quiet_is_ok(read_into_sequencer(sink, timeout));
}

Result<void> LvpmMonitor::read_into_sequencer(SampleSink& sink, std::chrono::milliseconds timeout) {
  std::array<std::uint8_t, 4096> buf{};
  const std::int64_t called = opt_.clock->now_ns();
  auto n = port_->read_some(buf, timeout);
  if (!n) return n.error();
  const std::int64_t arrival = opt_.clock->now_ns();
  // A read that returns at once found data queued: its arrival time measures the host's backlog,
  // not the device. One that had to wait measures the device (plus wake-up latency).
  const bool caught_up = arrival - called >= fw::kCaughtUpWaitNs;
  decoder_.feed(std::span(buf.data(), *n), [&](std::span<const std::uint8_t> payload) {
    on_payload(payload, arrival, caught_up);
  });
  release(sink);
  return {};
}

Result<void> LvpmMonitor::stop(SampleSink& sink) {
  Result<void> result;
  if (port_) {
    result = send(lv::cmd_stop_sampling());
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

void LvpmMonitor::close() {
  port_.reset();
}

std::vector<Counter> LvpmMonitor::counters() const {
  const auto& f = decoder_.counters();
  lv::SequenceCounters s = sequencer_ ? sequencer_->counters() : lv::SequenceCounters{};
  std::vector<Counter> out = {
      {"missing_samples", s.sequence_lost + s.wrap_lost + s.inferred_lost + uncalibrated_samples_},
      {"sequence_gaps", s.sequence_gaps},
      {"sequence_lost_samples", s.sequence_lost},
  };
  append_wrap_counters(out, s);
  out.insert(out.end(), {
                            {"uncalibrated_samples", uncalibrated_samples_},
                            {"voltage_clipped_samples", voltage_clipped_samples_},
                            {"duplicate_samples", duplicate_samples_},
                            {"discarded_bytes", f.discarded_bytes},
                            {"checksum_errors", f.checksum_errors},
                            {"implausible_frames", f.implausible},
                            {"empty_frames", f.empty_frames},
                            {"unexpected_packets", unexpected_packets_},
                        });
  return out;
}

}  // namespace meltrig::rig
