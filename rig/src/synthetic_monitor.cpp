// Synthetic monitor: see synthetic_monitor.hpp.
#include "meltrig/rig/synthetic_monitor.hpp"

#include <cmath>
#include <thread>

namespace meltrig::rig {
namespace lv = fw::lvpm;
namespace {

constexpr lv::CalibrationValues kCal{100, 3100, 100, 6100};
constexpr std::size_t kCyclePackets = 4096;  // a multiple of 16: sequence numbers line up
constexpr std::size_t kPerPacket = lv::kMaxSamplesPerPacket;

}  // namespace

SyntheticMonitor::SyntheticMonitor(Options opt) : opt_(opt) {}

std::vector<Candidate> SyntheticMonitor::find(std::span<const fw::PortInfo>) {
  return {};
}

Result<std::unique_ptr<Monitor>> SyntheticMonitor::make(const DeviceSpec& spec) {
  Options o;
  char* end = nullptr;
  o.rate_hz = std::strtod(spec.port.c_str(), &end);
  if (end == spec.port.c_str() || *end != '\0' || !(o.rate_hz >= 1 && o.rate_hz <= 1e8)) {
    return make_error(Errc::invalid_argument,
                      "device spec \"" + spec.str() + "\": synthetic takes a rate in Hz (1..1e8)");
  }
  auto paced = spec.int_option("paced", 1, 0, 1);
  if (!paced) return paced.error();
  auto samples = spec.int_option("samples", 0, 0, std::numeric_limits<long>::max());
  if (!samples) return samples.error();
  auto seed = spec.int_option("seed", 1, 0, std::numeric_limits<long>::max());
  if (!seed) return seed.error();
  o.paced = *paced == 1;
  o.max_samples = static_cast<std::uint64_t>(*samples);
  o.seed = static_cast<std::uint64_t>(*seed);
  return std::unique_ptr<Monitor>(new SyntheticMonitor(o));
}

Result<MonitorInfo> SyntheticMonitor::open() {
  // One cycle: a phone-like current (a slow sine between 0.2 and 1.8 A with a 7 Hz ripple and
  // noise), quantised as the LVPM's ADC would, so compression sees realistic data.
  std::uint64_t rng = opt_.seed * 0x9E3779B97F4A7C15ull + 7;
  auto uniform = [&rng] {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return static_cast<double>((rng * 2685821657736338717ull) >> 11) * 0x1.0p-53;
  };
  std::vector<std::uint8_t> payload;
  std::array<lv::RawSample, kPerPacket> raw{};
  cycle_.clear();
  frame_starts_.clear();
  for (std::size_t k = 0; k < kCyclePackets; ++k) {
    for (std::size_t i = 0; i < kPerPacket; ++i) {
      double t =
          static_cast<double>(k * kPerPacket + i) / static_cast<double>(kCyclePackets * kPerPacket);
      double amps = 1.0 + 0.8 * std::sin(2 * M_PI * t) + 0.05 * std::sin(2 * M_PI * 7 * t) +
                    0.01 * (uniform() - 0.5);
      raw[i] = {lv::quantize_current(amps, kCal), 0, 0,
                lv::quantize_voltage(4.0 + 0.002 * (uniform() - 0.5), 1)};
    }
    payload.clear();
    lv::append_sample_packet(static_cast<std::uint8_t>(k & 0x0F), lv::PacketType::data, raw,
                             payload);
    frame_starts_.push_back(cycle_.size());
    lv::append_frame(payload, cycle_);
  }
  cycle_samples_ = kCyclePackets * kPerPacket;
  // Calibration: zero and ref packets, decoded once.
  for (auto type : {lv::PacketType::zero_cal, lv::PacketType::ref_cal}) {
    bool zero = type == lv::PacketType::zero_cal;
    std::array<lv::RawSample, 2> c{};
    c[0].main_current = static_cast<std::int16_t>(zero ? kCal.fine_zero : kCal.fine_ref);
    c[1].main_current =
        static_cast<std::int16_t>(static_cast<int>(zero ? kCal.coarse_zero : kCal.coarse_ref) | 1);
    payload.clear();
    lv::append_sample_packet(0, type, c, payload);
    if (auto p = lv::parse_sample_packet(payload)) calibrator_.add(*p);
  }
  MonitorInfo info;
  info.driver = "synthetic";
  info.port = std::to_string(opt_.rate_hz);
  info.nominal_rate_hz = opt_.rate_hz;
  info.serial_number = "synthetic-" + std::to_string(opt_.seed);
  info.firmware_version = "n/a";
  info.channels = {{"current", "A", SampleType::f32, "synthetic current (LVPM-framed replay)"},
                   {"voltage", "V", SampleType::f32, "synthetic voltage"}};
  info.can_wait = !opt_.paced;  // unpaced, it is a replay: it may wait for the writer
  info.status = {{"paced", static_cast<std::int64_t>(opt_.paced)},
                 {"cycle_samples", static_cast<std::int64_t>(cycle_samples_)}};
  return info;
}

Result<void> SyntheticMonitor::configure(const MonitorConfig&) {
  return {};
}

Result<void> SyntheticMonitor::start() {
  t0_ = opt_.clock->now_ns();
  started_ = true;
  return {};
}

void SyntheticMonitor::decode(std::span<const std::uint8_t> bytes, SampleSink& sink) {
  bytes_ += bytes.size();
  decoder_.feed(bytes, [&](std::span<const std::uint8_t> payload) {
    auto p = lv::parse_sample_packet(payload);
    if (!p || p->type != lv::PacketType::data) return;
    calibrator_.convert(*p, 1, cur_, volt_);
    const std::array<ChannelData, 2> cols = {std::span<const float>(cur_.data(), p->n),
                                             std::span<const float>(volt_.data(), p->n)};
    sink.samples(produced_, cols);
    produced_ += p->n;
  });
}

Result<void> SyntheticMonitor::poll(SampleSink& sink, std::chrono::milliseconds timeout) {
  if (!started_) return make_error(Errc::invalid_argument, "synthetic: poll() before start()");
  std::uint64_t due;
  if (opt_.paced) {
    auto now = opt_.clock->now_ns();
    due = static_cast<std::uint64_t>(static_cast<double>(now - t0_) * 1e-9 * opt_.rate_hz);
  } else {
    due = produced_ + 64 * kPerPacket;  // one batch per poll when unpaced
  }
  if (opt_.max_samples) {
    if (produced_ + kPerPacket > opt_.max_samples) {
      return make_error(Errc::end_of_stream,
                        "synthetic source delivered its " + std::to_string(produced_) + " samples");
    }
    due = std::min(due, opt_.max_samples);
  }
  if (due < produced_ + kPerPacket) {
    // Nothing due yet: wait a little in real time (never longer than the caller allows).
    std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(1)));
    return {};
  }
  // Replay whole frames of the cycle until the due sample count is covered.
  std::size_t packets = (due - produced_) / kPerPacket;
  while (packets > 0) {
    std::size_t first = next_frame_;
    std::size_t n = std::min(packets, kCyclePackets - first);
    std::size_t begin = frame_starts_[first];
    std::size_t end = first + n < kCyclePackets ? frame_starts_[first + n] : cycle_.size();
    decode(std::span<const std::uint8_t>(cycle_).subspan(begin, end - begin), sink);
    next_frame_ = (first + n) % kCyclePackets;
    packets -= n;
  }
  return {};
}

Result<void> SyntheticMonitor::stop(SampleSink&) {
  started_ = false;
  return {};
}

std::vector<Counter> SyntheticMonitor::counters() const {
  const auto& f = decoder_.counters();
  return {{"missing_samples", 0}, {"discarded_bytes", f.discarded_bytes}};
}

}  // namespace meltrig::rig
