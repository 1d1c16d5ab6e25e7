// Capture pipeline: see capture.hpp.
#include "meltrig/rig/capture.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>

#include "meltrig/rig/spsc_ring.hpp"

namespace meltrig::rig {
namespace {

// Channel storage of one ring slot: enough for every driver's channels.
constexpr std::size_t kMaxF32Channels = 4;
constexpr std::size_t kMaxU8Channels = 2;

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

  // --- reader side (SampleSink) ---
  void samples(std::uint64_t first, std::span<const ChannelData> cols) override {
    assert(cols.size() == slots_.slots.size());
    const std::size_t total = std::visit([](auto s) { return s.size(); }, cols[0]);
    for (std::size_t done = 0; done < total;) {
      if (!open_ || open_->first_index + open_->count != first + done ||
          open_->count == kBlockSamples) {
        publish();
        open_ = ring_.try_acquire();
        while (!open_ && wait_when_full_ && !abandon_.load(std::memory_order_relaxed)) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
          open_ = ring_.try_acquire();
        }
        if (!open_) {  // ring full: drop this piece, count it, and say where
          std::size_t n = std::min(total - done, kBlockSamples);
          overflow(first + done, n);
          done += n;
          continue;
        }
        open_->first_index = first + done;
        open_->count = 0;
      }
      std::size_t n = std::min(total - done, kBlockSamples - open_->count);
      for (std::size_t c = 0; c < cols.size(); ++c) {
        auto [type, slot] = slots_.slots[c];
        if (type == SampleType::f32) {
          auto src = std::get<std::span<const float>>(cols[c]).subspan(done, n);
          std::copy(src.begin(), src.end(), open_->f32[slot].begin() + open_->count);
        } else {
          auto src = std::get<std::span<const std::uint8_t>>(cols[c]).subspan(done, n);
          std::copy(src.begin(), src.end(), open_->u8[slot].begin() + open_->count);
        }
      }
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
  SpscRing<Block> ring_;
  const bool wait_when_full_;
  std::mutex mu_;
  std::deque<GapEvent> gaps_;   ///< holes in the index space, in index order
  std::deque<GapEvent> notes_;  ///< gap rows that cover no samples (duplicates dropped)
  std::deque<CalibrationEvent> cals_;
  std::vector<Counter> counters_;
  std::atomic<std::uint64_t> overflow_samples_{0};

 private:
  Block* open_ = nullptr;
  std::int64_t last_publish_ns_ = 0;
  const Clock& clock_;

 public:
  const ChannelSlots slots_;
};

/// Writer-thread state: statistics over valid samples.
struct Stats {
  std::uint64_t valid = 0;
  double sum_i = 0, sum_v = 0, sum_p = 0;
};

}  // namespace

Result<CaptureSummary> run_capture(Monitor& monitor, const MonitorInfo& info,
                                   const CaptureOptions& opt) {
  auto log = spdlog::default_logger();
  if (info.nominal_rate_hz <= 0) {
    return make_error(Errc::invalid_argument, "monitor reports no sample rate");
  }
  if (auto r = monitor.configure(opt.monitor); !r) return r.error();

  // The writer's counters: the driver's, then the capture's own.
  std::vector<Counter> initial = monitor.counters();
  dataset::CaptureLayout layout;
  for (const auto& c : initial)
    layout.counter_names.emplace_back(c.name);
  layout.counter_names.emplace_back("ring_overflow_samples");
  layout.sample_rate_hz = info.nominal_rate_hz;
  auto slots = ChannelSlots::of(info.channels);
  if (!slots) return slots.error();
  layout.channels = info.channels;
  const auto cur_slot = slots->slots.at(static_cast<std::size_t>(info.current_channel)).second;
  const int volt_slot =
      info.voltage_channel < 0
          ? -1
          : static_cast<int>(
                slots->slots.at(static_cast<std::size_t>(info.voltage_channel)).second);
  const std::int64_t wall_ns = wall_clock_unix_ns();
  const std::int64_t steady_ns = opt.clock->now_ns();
  layout.root_attributes = {{"meltrig_version", std::string(MELTRIG_VERSION)},
                            {"host_wall_clock_start_utc", iso8601_utc(wall_ns)},
                            {"host_wall_clock_start_unix_ns", wall_ns},
                            {"host_steady_clock_start_ns", steady_ns}};
  for (const auto& a : opt.root_attributes)
    layout.root_attributes.push_back(a);
  layout.monitor_attributes = {
      {"driver", info.driver},
      {"port", info.port},
      {"serial_number", info.serial_number},
      {"firmware_version", info.firmware_version},
      {"nominal_rate_hz", info.nominal_rate_hz},
      {"output_voltage_v", opt.monitor.output_voltage_v},
      {"usb_passthrough",
       std::string(opt.monitor.usb_passthrough == MonitorConfig::UsbPassthrough::on    ? "on"
                   : opt.monitor.usb_passthrough == MonitorConfig::UsbPassthrough::off ? "off"
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

  auto created = dataset::CaptureWriter::create(opt.output, layout);
  if (!created) return created.error();
  dataset::CaptureWriter writer = std::move(created.value());

  Pipeline pipe(opt.ring_blocks, *opt.clock, std::move(slots.value()),
                opt.wait_when_full || info.can_wait);
  std::atomic<bool> stop_reader{false};
  std::atomic<bool> reader_done{false};
  std::optional<Error> reader_error;
  std::string source_finished;
  std::optional<Error> writer_error;
  std::atomic<bool> writer_failed{false};

  if (auto r = monitor.start(); !r) {
    (void)writer.finish(dataset::CaptureState::failed, r.error().describe());
    CaptureSummary s;
    s.output = opt.output;
    s.state = dataset::CaptureState::failed;
    s.failure = r.error();
    s.end_reason = r.error().describe();
    return s;
  }
  const std::int64_t t0 = opt.clock->now_ns();

  std::thread reader([&] {
    while (!stop_reader.load(std::memory_order_relaxed)) {
      auto r = monitor.poll(pipe, std::chrono::milliseconds(50));
      pipe.snapshot_counters(monitor.counters());
      if (!r) {
        // A finite source (a replay, a synthetic run) ends with `cancelled`: a normal end.
        if (r.error().code == Errc::cancelled)
          source_finished = r.error().message;
        else
          reader_error = r.error();
        break;
      }
    }
    // Stop sampling and release everything in flight (also after an error: what is decoded
    // is kept). A port that is gone cannot be stopped; that is not a second error.
    auto r = monitor.stop(pipe);
    if (!r && !reader_error && r.error().code != Errc::port_gone) reader_error = r.error();
    pipe.publish();
    pipe.snapshot_counters(monitor.counters());
    reader_done = true;
  });

  Stats stats;
  std::atomic<std::uint64_t> samples_covered{0};
  std::atomic<double> mean_power{0.0};
  std::vector<std::uint64_t> counter_values(layout.counter_names.size());

  auto write_events = [&]() -> Result<void> {
    std::lock_guard lk(pipe.mu_);
    while (!pipe.notes_.empty()) {
      const auto& g = pipe.notes_.front();
      if (auto r = writer.add_gap({g.first_index, g.count, g.kind}); !r) return r;
      pipe.notes_.pop_front();
    }
    while (!pipe.cals_.empty()) {
      const auto& c = pipe.cals_.front();
      if (auto r = writer.add_calibration(
              {c.sample_index, c.fine_zero, c.fine_ref, c.coarse_zero, c.coarse_ref});
          !r)
        return r;
      pipe.cals_.pop_front();
    }
    return {};
  };
  // Fills sample indices [written, target) from the gap events that explain them.
  auto fill_to = [&](std::uint64_t target) -> Result<void> {
    while (writer.samples_written() < target) {
      std::uint64_t at = writer.samples_written();
      std::optional<GapEvent> g;
      {
        std::lock_guard lk(pipe.mu_);
        while (!pipe.gaps_.empty() &&
               pipe.gaps_.front().first_index + pipe.gaps_.front().count <= at) {
          pipe.gaps_.pop_front();  // already covered
        }
        if (!pipe.gaps_.empty() && pipe.gaps_.front().first_index <= at) {
          g = pipe.gaps_.front();
          pipe.gaps_.pop_front();
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
        std::lock_guard lk(pipe.mu_);
        if (!pipe.gaps_.empty()) n = std::min(n, pipe.gaps_.front().first_index - at);
      }
      if (auto r = writer.append_missing(n, kind); !r) return r;
    }
    return {};
  };
  auto flush_all = [&]() -> Result<void> {
    if (auto r = write_events(); !r) return r;
    {
      std::lock_guard lk(pipe.mu_);
      for (std::size_t i = 0; i < pipe.counters_.size() && i + 1 < counter_values.size(); ++i) {
        counter_values[i] = pipe.counters_[i].value;
      }
    }
    counter_values.back() = pipe.overflow_samples_.load();
    if (auto r = writer.set_counters(counter_values); !r) return r;
    return writer.flush();
  };

  std::thread writer_thread([&] {
    std::vector<ChannelData> cols(pipe.slots_.slots.size());
    std::int64_t last_flush = opt.clock->now_ns();
    auto fail = [&](const Error& e) {
      writer_error = e;
      writer_failed = true;
      pipe.abandon_ = true;
    };
    while (true) {
      Block* b = pipe.ring_.front();
      if (!b) {
        bool finished = reader_done.load();
        if (finished && !pipe.ring_.front()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      } else {
        if (auto r = fill_to(b->first_index); !r) {
          fail(r.error());
          break;
        }
        const float* cur = b->f32[cur_slot].data();
        const float* volt =
            volt_slot >= 0 ? b->f32[static_cast<std::size_t>(volt_slot)].data() : nullptr;
        // Without a voltage channel the supply is the voltage just configured (MonitorInfo's
        // fixed_voltage_v was read at open(), before configure() set the output).
        const auto fixed_v = static_cast<float>(opt.monitor.output_voltage_v);
        for (std::uint32_t i = 0; i < b->count; ++i) {
          float c = cur[i], v = volt ? volt[i] : fixed_v;
          if (std::isfinite(c) && std::isfinite(v)) {
            ++stats.valid;
            stats.sum_i += c;
            stats.sum_v += v;
            stats.sum_p += static_cast<double>(c) * v;
          }
        }
        for (std::size_t c = 0; c < cols.size(); ++c) {
          auto [type, slot] = pipe.slots_.slots[c];
          if (type == SampleType::f32)
            cols[c] = std::span<const float>(b->f32[slot].data(), b->count);
          else
            cols[c] = std::span<const std::uint8_t>(b->u8[slot].data(), b->count);
        }
        auto r = writer.append(dataset::SampleBlock{cols});
        pipe.ring_.pop();
        if (!r) {
          fail(r.error());
          break;
        }
        samples_covered = writer.samples_written();
        if (stats.valid) mean_power = stats.sum_p / static_cast<double>(stats.valid);
      }
      if (opt.clock->now_ns() - last_flush >=
          std::chrono::nanoseconds(opt.flush_interval).count()) {
        if (auto r = flush_all(); !r) {
          fail(r.error());
          break;
        }
        last_flush = opt.clock->now_ns();
      }
    }
    if (!writer_failed) {
      // Trailing gaps (e.g. packets lost right before the end).
      std::uint64_t end = writer.samples_written();
      {
        std::lock_guard lk(pipe.mu_);
        for (const auto& g : pipe.gaps_)
          end = std::max(end, g.first_index + g.count);
      }
      if (auto r = fill_to(end); !r)
        fail(r.error());
      else if (auto f = flush_all(); !f)
        fail(f.error());
    }
    // After a writer failure the reader must not block on a full ring: drain and discard.
    while (!reader_done.load()) {
      while (pipe.ring_.front())
        pipe.ring_.pop();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });

  // Supervise.
  dataset::CaptureState state = dataset::CaptureState::complete;
  std::string reason;
  std::int64_t last_progress = t0;
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::int64_t now = opt.clock->now_ns();
    double elapsed = static_cast<double>(now - t0) * 1e-9;
    if (opt.interrupt && opt.interrupt->load()) {
      state = dataset::CaptureState::interrupted;
      reason = "interrupted after " + std::to_string(elapsed) + " s";
      break;
    }
    if (reader_done.load() || writer_failed.load()) break;
    if (opt.finish && opt.finish->load()) {
      reason = "finished after " + std::to_string(elapsed) + " s";
      break;
    }
    if (opt.duration_s > 0 && elapsed >= opt.duration_s) {
      reason = "duration of " + std::to_string(opt.duration_s) + " s reached";
      break;
    }
    if (opt.on_progress &&
        now - last_progress >= std::chrono::nanoseconds(opt.progress_interval).count()) {
      last_progress = now;
      CaptureProgress p;
      p.elapsed_s = elapsed;
      p.samples = samples_covered.load();
      p.rate_hz = elapsed > 0 ? static_cast<double>(p.samples) / elapsed : 0;
      p.mean_power_w = mean_power.load();
      {
        std::lock_guard lk(pipe.mu_);
        for (const auto& c : pipe.counters_)
          if (std::string_view(c.name) == "missing_samples") p.lost_samples += c.value;
      }
      p.lost_samples += pipe.overflow_samples_.load();
      opt.on_progress(p);
    }
  }
  stop_reader = true;
  reader.join();
  writer_thread.join();

  if (!source_finished.empty() && state == dataset::CaptureState::complete)
    reason = source_finished;
  if (reader_error) {
    state = dataset::CaptureState::failed;
    reason = reader_error->describe();
  }
  if (writer_error) {
    state = dataset::CaptureState::failed;
    reason = writer_error->describe();
  }
  CaptureSummary s;
  s.output = opt.output;
  s.state = state;
  s.end_reason = reason;
  if (writer_error)
    s.failure = writer_error;
  else if (reader_error)
    s.failure = reader_error;
  s.samples = writer.samples_written();
  s.valid_samples = stats.valid;
  s.sample_rate_hz = info.nominal_rate_hz;
  if (stats.valid) {
    auto n = static_cast<double>(stats.valid);
    s.mean_current_a = stats.sum_i / n;
    s.mean_voltage_v = stats.sum_v / n;
    s.mean_power_w = stats.sum_p / n;
    s.energy_j = stats.sum_p / info.nominal_rate_hz;
  }
  {
    std::lock_guard lk(pipe.mu_);
    s.counters = pipe.counters_;
  }
  s.counters.push_back({"ring_overflow_samples", pipe.overflow_samples_.load()});
  if (auto r = writer.finish(state, reason); !r && !s.failure) {
    s.state = dataset::CaptureState::failed;
    s.failure = r.error();
    s.end_reason = r.error().describe();
  }
  log->debug("capture ended: {}", s.end_reason);
  return s;
}

}  // namespace meltrig::rig
