// Capture pipeline: see capture.hpp.
#include "meltrig/rig/capture.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>

#include "meltrig/dataset/trapezoid.hpp"
#include "meltrig/rig/spsc_ring.hpp"

namespace meltrig::rig {
namespace {

using std::chrono::milliseconds;

// Channel storage of one ring slot: enough for every driver's channels.
constexpr std::size_t kMaxF32Channels = 4;
constexpr std::size_t kMaxU8Channels = 2;
// The longest a waiting thread sleeps before it looks at the (possibly virtual) clock again.
constexpr milliseconds kClockCheck{10};

struct Block {
  std::uint64_t first_index = 0;
  std::uint32_t count = 0;
  std::array<std::array<float, kBlockSamples>, kMaxF32Channels> f32{};
  std::array<std::array<std::uint8_t, kBlockSamples>, kMaxU8Channels> u8{};
};

/// Where each channel lives in a Block: (type, slot).
struct ChannelSlots {
  std::vector<std::pair<SampleType, std::size_t>> slots;
  static Result<ChannelSlots> of(const std::vector<ChannelSpec>& channels) {
    ChannelSlots cs;
    std::size_t nf = 0, nu = 0;
    for (const auto& c : channels) {
      cs.slots.emplace_back(c.type, c.type == SampleType::f32 ? nf++ : nu++);
    }
    if (channels.empty() || nf > kMaxF32Channels || nu > kMaxU8Channels) {
      return make_error(Errc::invalid_argument, "monitor declares " + std::to_string(nf) +
                                                    " float and " + std::to_string(nu) +
                                                    " uint8 channels; a capture holds 1.." +
                                                    std::to_string(kMaxF32Channels) + " and 0.." +
                                                    std::to_string(kMaxU8Channels));
    }
    return cs;
  }
};

std::string iso8601_utc(std::int64_t unix_ns) {
  std::time_t secs = static_cast<std::time_t>(unix_ns / 1'000'000'000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%s.%09lldZ", buf,
                static_cast<long long>(unix_ns % 1'000'000'000));
  return out;
}

/// Wakes the capture's threads: the writer when a block is published or the reader is done, a
/// reader waiting for ring space when a block is released, the supervisor when either thread
/// ends. Every state change goes through notify(), so no wake-up is lost.
class Wakeup {
 public:
  template <typename Pred>
  void wait_for(milliseconds d, Pred pred) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, d, pred);
  }
  template <typename Pred>
  void wait(Pred pred) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, pred);
  }
  void notify() {
    { std::lock_guard lk(mu_); }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable_any cv_;
};

/// Everything the reader thread shares with the others.
class Pipeline final : public SampleSink {
 public:
  Pipeline(std::size_t ring_blocks, const Clock& clock, ChannelSlots slots, bool wait_when_full)
      : ring_(ring_blocks),
        wait_when_full_(wait_when_full),
        clock_(clock),
        slots_(std::move(slots)) {}

  /// Set when the writer has failed: a waiting reader must not wait forever.
  std::atomic<bool> abandon_{false};
  /// Set when the reader has stopped the monitor and published everything.
  std::atomic<bool> reader_done_{false};
  Wakeup wake_;

  // --- reader side (SampleSink) ---
  void samples(std::uint64_t first, std::span<const ChannelData> cols) override {
    assert(cols.size() == slots_.slots.size());
    const std::size_t total = std::visit([](auto s) { return s.size(); }, cols[0]);
    for (std::size_t done = 0; done < total;) {
      if (!open_ || open_->first_index + open_->count != first + done ||
          open_->count == kBlockSamples) {
        publish();
        if (!acquire()) {  // ring full: drop this piece, count it, and say where
          std::size_t n = std::min(total - done, kBlockSamples);
          overflow(first + done, n);
          done += n;
          continue;
        }
        open_->first_index = first + done;
        open_->count = 0;
      }
      std::size_t n = std::min(total - done, kBlockSamples - open_->count);
      copy_into(*open_, cols, done, n);
      open_->count += static_cast<std::uint32_t>(n);
      done += n;
    }
    // Keep latency bounded: publish a partial block at least every 100 ms.
    std::int64_t now = clock_.now_ns();
    if (open_ && now - last_publish_ns_ > 100'000'000) publish();
  }
  void gap(const GapEvent& g) override {
    std::lock_guard lk(mu_);
    // Dropped duplicates cover no rows: they are recorded, not filled.
    (g.kind == GapKind::duplicate_dropped ? notes_ : gaps_).push_back(g);
  }
  void calibration(const CalibrationEvent& c) override {
    std::lock_guard lk(mu_);
    cals_.push_back(c);
  }
  /// Commits the block being filled.
  void publish() {
    if (open_ && open_->count) {
      ring_.commit();
      open_ = nullptr;
      wake_.notify();
    }
    last_publish_ns_ = clock_.now_ns();
  }
  void overflow(std::uint64_t first, std::uint64_t n) {
    overflow_samples_ += n;
    std::lock_guard lk(mu_);
    // Merge with the previous overflow gap when contiguous.
    if (!gaps_.empty() && gaps_.back().kind == GapKind::ring_overflow &&
        gaps_.back().first_index + gaps_.back().count == first) {
      gaps_.back().count += n;
    } else {
      gaps_.push_back({first, n, GapKind::ring_overflow});
    }
  }
  void snapshot_counters(const std::vector<Counter>& c) {
    std::lock_guard lk(mu_);
    counters_ = c;
  }

  // --- writer side ---
  /// The oldest published block, waiting up to `d` for one; nullptr if none came or the reader
  /// is done and everything is consumed.
  Block* next_block(milliseconds d) {
    Block* b = ring_.front();
    if (b || reader_done_.load()) return b;
    wake_.wait_for(d, [&] { return (b = ring_.front()) != nullptr || reader_done_.load(); });
    return b ? b : ring_.front();
  }
  void release_block() {
    ring_.pop();
    if (wait_when_full_) wake_.notify();
  }

  SpscRing<Block> ring_;
  const bool wait_when_full_;
  std::mutex mu_;
  std::deque<GapEvent> gaps_;   ///< holes in the index space, in index order
  std::deque<GapEvent> notes_;  ///< gap rows that cover no samples (duplicates dropped)
  std::deque<CalibrationEvent> cals_;
  std::vector<Counter> counters_;
  std::atomic<std::uint64_t> overflow_samples_{0};

 private:
  /// A slot to fill; with the waiting policy, waits for the writer to free one (unless it failed).
  bool acquire() {
    open_ = ring_.try_acquire();
    if (!open_ && wait_when_full_) {
      wake_.wait([&] { return (open_ = ring_.try_acquire()) != nullptr || abandon_.load(); });
    }
    return open_ != nullptr;
  }
  void copy_into(Block& b, std::span<const ChannelData> cols, std::size_t from, std::size_t n) {
    for (std::size_t c = 0; c < cols.size(); ++c) {
      auto [type, slot] = slots_.slots[c];
      if (type == SampleType::f32) {
        auto src = std::get<std::span<const float>>(cols[c]).subspan(from, n);
        std::copy(src.begin(), src.end(), b.f32[slot].begin() + b.count);
      } else {
        auto src = std::get<std::span<const std::uint8_t>>(cols[c]).subspan(from, n);
        std::copy(src.begin(), src.end(), b.u8[slot].begin() + b.count);
      }
    }
  }

  Block* open_ = nullptr;
  std::int64_t last_publish_ns_ = 0;
  const Clock& clock_;

 public:
  const ChannelSlots slots_;
};

/// Writer-thread statistics over valid samples; energy by the trapezoid rule (as analysis/).
struct Stats {
  explicit Stats(double rate_hz) : energy(rate_hz) {}
  std::uint64_t valid = 0;
  double sum_i = 0, sum_v = 0, sum_p = 0;
  dataset::TrapezoidSum energy;
};

/// The file layout of a capture of `info` with `opt`.
dataset::CaptureLayout make_layout(const std::vector<Counter>& driver_counters,
                                   const MonitorInfo& info, const CaptureOptions& opt) {
  dataset::CaptureLayout layout;
  for (const auto& c : driver_counters)
    layout.counter_names.emplace_back(c.name);
  layout.counter_names.emplace_back("ring_overflow_samples");
  layout.sample_rate_hz = info.nominal_rate_hz;
  layout.channels = info.channels;
  const std::int64_t wall_ns = wall_clock_unix_ns();
  const std::int64_t steady_ns = opt.clock->now_ns();
  layout.root_attributes = {{"meltrig_version", std::string(MELTRIG_VERSION)},
                            {"host_wall_clock_start_utc", iso8601_utc(wall_ns)},
                            {"host_wall_clock_start_unix_ns", wall_ns},
                            {"host_steady_clock_start_ns", steady_ns}};
  for (const auto& a : opt.root_attributes)
    layout.root_attributes.push_back(a);
  const auto usb = opt.monitor.usb_passthrough;
  layout.monitor_attributes = {
      {"driver", info.driver},
      {"port", info.port},
      {"serial_number", info.serial_number},
      {"firmware_version", info.firmware_version},
      {"nominal_rate_hz", info.nominal_rate_hz},
      {"output_voltage_v", opt.monitor.output_voltage_v},
      {"usb_passthrough", std::string(usb == MonitorConfig::UsbPassthrough::on    ? "on"
                                      : usb == MonitorConfig::UsbPassthrough::off ? "off"
                                                                                  : "auto")},
  };
  if (info.voltage_channel < 0) {
    // Power and energy in the summary use the set output voltage: say so in the file.
    layout.monitor_attributes.push_back(
        {"voltage_source", std::string("not sampled; power uses output_voltage_v")});
  }
  if (opt.monitor.current_limit_a) {
    layout.monitor_attributes.push_back({"current_limit_a", *opt.monitor.current_limit_a});
  }
  layout.status_at_start = info.status;
  layout.chunk_samples = info.nominal_rate_hz >= 1e6 ? 65536 : 16384;
  layout.compression = opt.compression               ? *opt.compression
                       : info.nominal_rate_hz >= 1e6 ? dataset::Compression::lz4()
                                                     : dataset::Compression::deflate(1);
  return layout;
}

/// How the supervisor saw the capture end.
struct Ending {
  dataset::CaptureState state = dataset::CaptureState::complete;
  std::string reason;
};

/// A driver may hold data for up to its loss inference's 10 s horizon and release it at once:
/// unless told, the ring holds 20 s of samples (256..1024 blocks) so such a burst is not dropped.
std::size_t ring_slots(const CaptureOptions& opt, const MonitorInfo& info) {
  if (opt.ring_blocks) return *opt.ring_blocks;
  const auto horizon_blocks = static_cast<std::size_t>(20.0 * info.nominal_rate_hz / kBlockSamples);
  return std::clamp<std::size_t>(horizon_blocks, 256, 1024);
}

/// One running capture: the reader, writer and supervisor steps over shared state.
class Capture {
 public:
  Capture(Monitor& monitor, const MonitorInfo& info, const CaptureOptions& opt,
          dataset::CaptureWriter writer, ChannelSlots slots, std::size_t counters)
      : monitor_(monitor),
        info_(info),
        opt_(opt),
        writer_(std::move(writer)),
        pipe_(ring_slots(opt, info), *opt.clock, std::move(slots),
              opt.wait_when_full || info.can_wait),
        cur_slot_(pipe_.slots_.slots.at(static_cast<std::size_t>(info.current_channel)).second),
        volt_slot_(info.voltage_channel < 0
                       ? -1
                       : static_cast<int>(
                             pipe_.slots_.slots.at(static_cast<std::size_t>(info.voltage_channel))
                                 .second)),
        stats_(info.nominal_rate_hz),
        counter_values_(counters) {}

  /// Reader thread: poll the monitor until asked to stop or the source ends, then stop it.
  void read(std::stop_token st);
  /// Writer thread: drain the ring into the file, fill holes, flush on time.
  void write();
  /// Calling thread: wait for the duration, an interrupt, a finish request or a thread's end,
  /// reporting progress meanwhile.
  Ending supervise(std::int64_t t0);
  CaptureSummary summarize(Ending ending);

 private:
  Result<void> write_events();
  Result<void> fill_to(std::uint64_t target);
  Result<void> flush_all();
  Result<void> store(const Block& b, std::vector<ChannelData>& cols);
  Result<void> finish_trailing();
  void account(const Block& b);
  void fail(const Error& e);
  CaptureProgress progress(double elapsed);

  Monitor& monitor_;
  const MonitorInfo& info_;
  const CaptureOptions& opt_;
  dataset::CaptureWriter writer_;
  Pipeline pipe_;
  const std::size_t cur_slot_;
  const int volt_slot_;
  Stats stats_;
  std::vector<std::uint64_t> counter_values_;
  std::optional<Error> reader_error_;
  std::optional<Ending> source_ended_;  ///< the source ended the stream (end_of_stream, cancelled)
  std::optional<Error> writer_error_;
  std::atomic<bool> writer_failed_{false};
  std::atomic<std::uint64_t> samples_covered_{0};
  std::atomic<double> mean_power_{0.0};
};

void Capture::read(std::stop_token st) {
  while (!st.stop_requested()) {
    auto r = monitor_.poll(pipe_, milliseconds(50));
    pipe_.snapshot_counters(monitor_.counters());
    if (!r) {
      // A finite source (a replay, a synthetic run) ends with `end_of_stream`: a normal end.
      // `cancelled` is a stop someone asked for: the capture ends as interrupted, not failed.
      if (r.error().code == Errc::end_of_stream)
        source_ended_ = Ending{dataset::CaptureState::complete, r.error().message};
      else if (r.error().code == Errc::cancelled)
        source_ended_ = Ending{dataset::CaptureState::interrupted, r.error().describe()};
      else
        reader_error_ = r.error();
      break;
    }
  }
  // Stop sampling and release everything in flight (also after an error: what is decoded is
  // kept). A port that is gone cannot be stopped; that is not a second error.
  auto r = monitor_.stop(pipe_);
  if (!r && !reader_error_ && r.error().code != Errc::port_gone) reader_error_ = r.error();
  pipe_.publish();
  pipe_.snapshot_counters(monitor_.counters());
  pipe_.reader_done_ = true;
  pipe_.wake_.notify();
}

Result<void> Capture::write_events() {
  std::lock_guard lk(pipe_.mu_);
  while (!pipe_.notes_.empty()) {
    const auto& g = pipe_.notes_.front();
    if (auto r = writer_.add_gap({g.first_index, g.count, g.kind}); !r) return r;
    pipe_.notes_.pop_front();
  }
  while (!pipe_.cals_.empty()) {
    const auto& c = pipe_.cals_.front();
    if (auto r = writer_.add_calibration(
            {c.sample_index, c.fine_zero, c.fine_ref, c.coarse_zero, c.coarse_ref});
        !r)
      return r;
    pipe_.cals_.pop_front();
  }
  return {};
}

// Fills sample indices [written, target) from the gap events that explain them.
Result<void> Capture::fill_to(std::uint64_t target) {
  while (writer_.samples_written() < target) {
    std::uint64_t at = writer_.samples_written();
    std::optional<GapEvent> g;
    {
      std::lock_guard lk(pipe_.mu_);
      while (!pipe_.gaps_.empty() &&
             pipe_.gaps_.front().first_index + pipe_.gaps_.front().count <= at) {
        pipe_.gaps_.pop_front();  // already covered
      }
      if (!pipe_.gaps_.empty() && pipe_.gaps_.front().first_index <= at) {
        g = pipe_.gaps_.front();
        pipe_.gaps_.pop_front();
      }
    }
    std::uint64_t n;
    GapKind kind;
    if (g) {
      n = std::min(g->first_index + g->count, target) - at;
      kind = g->kind;
    } else {
      // No event explains the hole: the stream jumped. Record it as a resync gap.
      n = target - at;
      kind = GapKind::resync;
      std::lock_guard lk(pipe_.mu_);
      if (!pipe_.gaps_.empty()) n = std::min(n, pipe_.gaps_.front().first_index - at);
    }
    if (auto r = writer_.append_missing(n, kind); !r) return r;
    stats_.energy.skip();
  }
  return {};
}

Result<void> Capture::flush_all() {
  if (auto r = write_events(); !r) return r;
  {
    std::lock_guard lk(pipe_.mu_);
    for (std::size_t i = 0; i < pipe_.counters_.size() && i + 1 < counter_values_.size(); ++i) {
      counter_values_[i] = pipe_.counters_[i].value;
    }
  }
  counter_values_.back() = pipe_.overflow_samples_.load();
  if (auto r = writer_.set_counters(counter_values_); !r) return r;
  return writer_.flush();
}

void Capture::account(const Block& b) {
  const float* cur = b.f32[cur_slot_].data();
  const float* volt =
      volt_slot_ >= 0 ? b.f32[static_cast<std::size_t>(volt_slot_)].data() : nullptr;
  // Without a voltage channel the supply is the voltage just configured (MonitorInfo's
  // fixed_voltage_v was read at open(), before configure() set the output).
  const auto fixed_v = static_cast<float>(opt_.monitor.output_voltage_v);
  for (std::uint32_t i = 0; i < b.count; ++i) {
    float c = cur[i], v = volt ? volt[i] : fixed_v;
    if (std::isfinite(c) && std::isfinite(v)) {
      const double p = static_cast<double>(c) * v;
      ++stats_.valid;
      stats_.sum_i += c;
      stats_.sum_v += v;
      stats_.sum_p += p;
      stats_.energy.add(p);
    } else {
      stats_.energy.skip();
    }
  }
}

Result<void> Capture::store(const Block& b, std::vector<ChannelData>& cols) {
  if (auto r = fill_to(b.first_index); !r) return r;
  account(b);
  for (std::size_t c = 0; c < cols.size(); ++c) {
    auto [type, slot] = pipe_.slots_.slots[c];
    if (type == SampleType::f32)
      cols[c] = std::span<const float>(b.f32[slot].data(), b.count);
    else
      cols[c] = std::span<const std::uint8_t>(b.u8[slot].data(), b.count);
  }
  auto r = writer_.append(dataset::SampleBlock{cols});
  if (!r) return r;
  samples_covered_ = writer_.samples_written();
  if (stats_.valid) mean_power_ = stats_.sum_p / static_cast<double>(stats_.valid);
  return {};
}

// Trailing gaps (e.g. packets lost right before the end), then the last flush.
Result<void> Capture::finish_trailing() {
  std::uint64_t end = writer_.samples_written();
  {
    std::lock_guard lk(pipe_.mu_);
    for (const auto& g : pipe_.gaps_)
      end = std::max(end, g.first_index + g.count);
  }
  if (auto r = fill_to(end); !r) return r;
  return flush_all();
}

void Capture::fail(const Error& e) {
  writer_error_ = e;
  writer_failed_ = true;
  // A reader waiting for ring space must not wait forever: from now on it drops and counts.
  pipe_.abandon_ = true;
  pipe_.wake_.notify();
}

void Capture::write() {
  std::vector<ChannelData> cols(pipe_.slots_.slots.size());
  const std::int64_t flush_ns = std::chrono::nanoseconds(opt_.flush_interval).count();
  std::int64_t last_flush = opt_.clock->now_ns();
  for (;;) {
    Block* b = pipe_.next_block(kClockCheck);
    if (b) {
      auto r = store(*b, cols);
      pipe_.release_block();
      if (!r) return fail(r.error());
    } else if (pipe_.reader_done_.load() && !pipe_.ring_.front()) {
      break;
    }
    if (opt_.clock->now_ns() - last_flush >= flush_ns) {
      if (auto r = flush_all(); !r) return fail(r.error());
      last_flush = opt_.clock->now_ns();
    }
  }
  if (auto r = finish_trailing(); !r) fail(r.error());
}

CaptureProgress Capture::progress(double elapsed) {
  CaptureProgress p;
  p.elapsed_s = elapsed;
  p.samples = samples_covered_.load();
  p.rate_hz = elapsed > 0 ? static_cast<double>(p.samples) / elapsed : 0;
  p.mean_power_w = mean_power_.load();
  {
    std::lock_guard lk(pipe_.mu_);
    for (const auto& c : pipe_.counters_)
      if (std::string_view(c.name) == "missing_samples") p.lost_samples += c.value;
  }
  p.lost_samples += pipe_.overflow_samples_.load();
  return p;
}

Ending Capture::supervise(std::int64_t t0) {
  // Interrupt and finish requests wake the wait at once; the duration and the progress line are
  // checked against the capture's clock (which may run faster than real time).
  std::stop_callback on_interrupt(opt_.interrupt, [this] { pipe_.wake_.notify(); });
  std::stop_callback on_finish(opt_.finish, [this] { pipe_.wake_.notify(); });
  std::int64_t last_progress = t0;
  for (;;) {
    pipe_.wake_.wait_for(kClockCheck * 2, [&] {
      return opt_.interrupt.stop_requested() || opt_.finish.stop_requested() ||
             pipe_.reader_done_.load() || writer_failed_.load();
    });
    std::int64_t now = opt_.clock->now_ns();
    double elapsed = static_cast<double>(now - t0) * 1e-9;
    if (opt_.interrupt.stop_requested())
      return {dataset::CaptureState::interrupted,
              "interrupted after " + std::to_string(elapsed) + " s"};
    if (pipe_.reader_done_.load() || writer_failed_.load()) return {};
    if (opt_.finish.stop_requested())
      return {dataset::CaptureState::complete, "finished after " + std::to_string(elapsed) + " s"};
    if (opt_.duration_s > 0 && elapsed >= opt_.duration_s)
      return {dataset::CaptureState::complete,
              "duration of " + std::to_string(opt_.duration_s) + " s reached"};
    if (opt_.on_progress &&
        now - last_progress >= std::chrono::nanoseconds(opt_.progress_interval).count()) {
      last_progress = now;
      opt_.on_progress(progress(elapsed));
    }
  }
}

CaptureSummary Capture::summarize(Ending ending) {
  if (source_ended_ && ending.state == dataset::CaptureState::complete) ending = *source_ended_;
  if (reader_error_) ending = {dataset::CaptureState::failed, reader_error_->describe()};
  if (writer_error_) ending = {dataset::CaptureState::failed, writer_error_->describe()};
  CaptureSummary s;
  s.output = opt_.output;
  s.state = ending.state;
  s.end_reason = ending.reason;
  if (writer_error_)
    s.failure = writer_error_;
  else if (reader_error_)
    s.failure = reader_error_;
  s.samples = writer_.samples_written();
  s.valid_samples = stats_.valid;
  s.sample_rate_hz = info_.nominal_rate_hz;
  if (stats_.valid) {
    auto n = static_cast<double>(stats_.valid);
    s.mean_current_a = stats_.sum_i / n;
    s.mean_voltage_v = stats_.sum_v / n;
    s.mean_power_w = stats_.sum_p / n;
  }
  s.energy_j = stats_.energy.integral();
  {
    std::lock_guard lk(pipe_.mu_);
    s.counters = pipe_.counters_;
  }
  s.counters.push_back({"ring_overflow_samples", pipe_.overflow_samples_.load()});
  if (auto r = writer_.finish(s.state, s.end_reason); !r && !s.failure) {
    s.state = dataset::CaptureState::failed;
    s.failure = r.error();
    s.end_reason = r.error().describe();
  }
  return s;
}

CaptureSummary start_failed(dataset::CaptureWriter& writer, const CaptureOptions& opt,
                            const Error& e) {
  (void)writer.finish(dataset::CaptureState::failed, e.describe());
  CaptureSummary s;
  s.output = opt.output;
  s.state = dataset::CaptureState::failed;
  s.failure = e;
  s.end_reason = e.describe();
  return s;
}

}  // namespace

Result<CaptureSummary> run_capture(Monitor& monitor, const MonitorInfo& info,
                                   const CaptureOptions& opt) {
  if (info.nominal_rate_hz <= 0) {
    return make_error(Errc::invalid_argument, "monitor reports no sample rate");
  }
  if (auto r = monitor.configure(opt.monitor); !r) return r.error();
  auto slots = ChannelSlots::of(info.channels);
  if (!slots) return slots.error();
  // The writer's counters: the driver's, then the capture's own.
  const dataset::CaptureLayout layout = make_layout(monitor.counters(), info, opt);
  auto created = dataset::CaptureWriter::create(opt.output, layout);
  if (!created) return created.error();
  if (auto r = monitor.start(); !r) return start_failed(created.value(), opt, r.error());

  Capture capture(monitor, info, opt, std::move(created.value()), std::move(slots.value()),
                  layout.counter_names.size());
  const std::int64_t t0 = opt.clock->now_ns();
  std::jthread reader([&](std::stop_token st) { capture.read(st); });
  std::jthread writer([&] { capture.write(); });
  Ending ending = capture.supervise(t0);
  reader.request_stop();
  reader.join();  // the reader stops the monitor and publishes the rest; then the writer ends
  writer.join();
  CaptureSummary s = capture.summarize(std::move(ending));
  spdlog::default_logger()->debug("capture ended: {}", s.end_reason);
  return s;
}

}  // namespace meltrig::rig
