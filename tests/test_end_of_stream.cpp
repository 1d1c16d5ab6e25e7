// How a source's end reaches the capture: `end_of_stream` (a finite source delivered everything)
// is a normal end, `cancelled` (a stop someone asked for) ends the capture as interrupted, and any
// other error fails it. Each keeps every sample delivered before it.
#include <doctest/doctest.h>

#include <array>
#include <vector>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/rig/capture.hpp"
#include "meltrig/rig/monitor.hpp"
#include "meltrig/rig/synthetic_monitor.hpp"
#include "test_support.hpp"

using namespace meltrig;
using meltrig::test::TempDir;

namespace {

/// Delivers `blocks` blocks of 100 samples (current = index in mA), one per poll, then returns
/// `end` from every later poll.
class ScriptedMonitor final : public rig::Monitor {
 public:
  ScriptedMonitor(std::uint64_t blocks, Error end) : blocks_(blocks), end_(std::move(end)) {}

  Result<rig::MonitorInfo> open() override {
    rig::MonitorInfo info;
    info.driver = "scripted";
    info.port = "test";
    info.nominal_rate_hz = 1000;
    info.channels = {{"current", "A", rig::SampleType::f32, "index in mA"}};
    info.voltage_channel = -1;
    info.fixed_voltage_v = 4.0;
    info.can_wait = true;
    return info;
  }
  Result<void> configure(const rig::MonitorConfig&) override { return {}; }
  Result<void> start() override { return {}; }
  Result<void> poll(rig::SampleSink& sink, std::chrono::milliseconds) override {
    if (next_ >= blocks_ * kBlock) return end_;
    std::array<float, kBlock> cur{};
    for (std::size_t i = 0; i < kBlock; ++i)
      cur[i] = static_cast<float>(static_cast<double>(next_ + i) * 1e-3);
    const std::array<rig::ChannelData, 1> cols = {std::span<const float>(cur)};
    sink.samples(next_, cols);
    next_ += kBlock;
    return {};
  }
  Result<void> stop(rig::SampleSink&) override { return {}; }
  void close() override {}
  std::vector<rig::Counter> counters() const override { return {{"missing_samples", 0}}; }

 private:
  static constexpr std::size_t kBlock = 100;
  std::uint64_t blocks_;
  Error end_;
  std::uint64_t next_ = 0;
};

rig::CaptureSummary capture_until(const Error& end, const TempDir& dir) {
  ScriptedMonitor m(25, end);
  auto info = m.open();
  REQUIRE(info.ok());
  rig::CaptureOptions opt;
  opt.output = dir / "s.h5";
  opt.duration_s = 0;  // until the source ends
  auto s = rig::run_capture(m, *info, opt);
  REQUIRE(s.ok());
  // Whatever ended it, every sample delivered before the end is in the file.
  CHECK(s->samples == 2500);
  CHECK(s->valid_samples == 2500);
  auto r = dataset::CaptureReader::open(opt.output);
  REQUIRE(r.ok());
  CHECK(r->samples_written() == 2500);
  CHECK(r->state() == s->state);
  CHECK(r->end_reason() == s->end_reason);
  return *s;
}

}  // namespace

TEST_CASE("end of stream: the error table names it apart from a requested stop") {
  CHECK(errc_name(Errc::end_of_stream) == "end of stream");
  CHECK(errc_name(Errc::cancelled) == "cancelled");
  CHECK(errc_name(Errc::end_of_stream) != errc_name(Errc::cancelled));
}

TEST_CASE("end of stream: a source that delivered everything ends the capture as complete") {
  TempDir dir;
  auto s = capture_until(make_error(Errc::end_of_stream, "scripted source delivered 2500"), dir);
  CHECK(s.state == dataset::CaptureState::complete);
  CHECK_FALSE(s.failure);
  CHECK(s.end_reason == "scripted source delivered 2500");
}

TEST_CASE("end of stream: a source stopped on request ends the capture as interrupted") {
  TempDir dir;
  auto s = capture_until(make_error(Errc::cancelled, "stop requested by the device"), dir);
  CHECK(s.state == dataset::CaptureState::interrupted);
  CHECK_FALSE(s.failure);  // a requested stop is not a failure ...
  CHECK(s.end_reason == "cancelled: stop requested by the device");  // ... nor a finished source
}

TEST_CASE("end of stream: any other error from the source fails the capture") {
  TempDir dir;
  auto s = capture_until(make_error(Errc::port_gone, "test: device disconnected"), dir);
  CHECK(s.state == dataset::CaptureState::failed);
  REQUIRE(s.failure);
  CHECK(s.failure->code == Errc::port_gone);
}

TEST_CASE("end of stream: the synthetic source reports end_of_stream, never cancelled") {
  rig::SyntheticMonitor::Options so;
  so.paced = false;
  so.max_samples = 310;
  rig::SyntheticMonitor m(so);
  REQUIRE(m.open().ok());
  REQUIRE(m.start().ok());
  struct Count final : rig::SampleSink {
    std::uint64_t n = 0;
    void samples(std::uint64_t, std::span<const rig::ChannelData> c) override {
      n += std::get<std::span<const float>>(c[0]).size();
    }
    void gap(const rig::GapEvent&) override {}
    void calibration(const rig::CalibrationEvent&) override {}
  } sink;
  Result<void> r;
  for (int i = 0; i < 100 && r.ok(); ++i)
    r = m.poll(sink, std::chrono::milliseconds(1));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::end_of_stream);
  CHECK(sink.n == 310);
}
