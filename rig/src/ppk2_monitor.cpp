// PPK2 driver: see ppk2_monitor.hpp.
#include "meltrig/rig/ppk2_monitor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <thread>

namespace meltrig::rig {
namespace pp = fw::ppk2;
namespace {

std::shared_ptr<spdlog::logger> log() {
  static auto l = [] {
    auto existing = spdlog::get("ppk2");
    return existing ? existing : spdlog::default_logger()->clone("ppk2");
  }();
  return l;
}

constexpr std::size_t kReadBytes = 16384;

bool contains_ppk2(const std::string& s) {
  return s.find("PPK2") != std::string::npos;
}

}  // namespace

Ppk2Monitor::Ppk2Monitor(Options opt) : opt_(std::move(opt)), read_buf_(kReadBytes) {}

std::vector<Candidate> Ppk2Monitor::find(std::span<const fw::PortInfo> ports) {
  std::vector<Candidate> out;
  for (const auto& p : ports) {
    char ids[16];
    std::snprintf(ids, sizeof ids, "%04x:%04x", p.usb_vid & 0xFFFF, p.usb_pid & 0xFFFF);
    if (p.usb_vid == pp::kUsbVid && p.usb_pid == pp::kUsbPid) {
      out.push_back({"ppk2", "ppk2:" + p.path, std::string("USB ") + ids});
    } else if (contains_ppk2(p.usb_product) || contains_ppk2(p.description)) {
      out.push_back(
          {"ppk2", "ppk2:" + p.path,
           "USB product '" + (p.usb_product.empty() ? p.description : p.usb_product) + "'"});
    }
  }
  return out;
}

Result<std::unique_ptr<Monitor>> Ppk2Monitor::make(const DeviceSpec& spec) {
  if (!spec.options.empty()) {
    return make_error(Errc::invalid_argument,
                      "device spec \"" + spec.str() + "\": ppk2 takes no options");
  }
  Options o;
  o.port = spec.port;
  return std::unique_ptr<Monitor>(new Ppk2Monitor(o));
}

Result<void> Ppk2Monitor::send(const std::vector<std::uint8_t>& bytes) {
  if (!port_) return make_error(Errc::port_gone, opt_.port + ": not open");
  return port_->write_all(bytes, opt_.io_timeout);
}

Result<pp::Metadata> Ppk2Monitor::read_metadata() {
  if (auto r = send(pp::cmd_get_metadata()); !r) return r.error();
  const std::int64_t deadline =
      opt_.clock->now_ns() + std::chrono::nanoseconds(opt_.io_timeout).count();
  pp::MetadataCollector collector;
  std::array<std::uint8_t, 1024> buf{};
  while (!collector.complete() && !collector.overflowed()) {
    const std::int64_t left_ns = deadline - opt_.clock->now_ns();
    if (left_ns <= 0) break;
    auto n = port_->read_some(buf, std::chrono::milliseconds(left_ns / 1'000'000 + 1));
    if (!n) {
      if (n.error().code == Errc::timeout) break;
      return n.error();
    }
    collector.feed(std::span(buf.data(), *n));  // bytes after END are not ours: dropped
  }
  metadata_discarded_bytes_ += collector.discarded_bytes();
  if (!collector.complete()) {
    return make_error(Errc::protocol_error, opt_.port +
                                                ": no metadata answer (\"... END\") within " +
                                                std::to_string(opt_.io_timeout.count()) + " ms (" +
                                                std::to_string(collector.discarded_bytes()) +
                                                " bytes discarded: is this a PPK2?)");
  }
  auto m = pp::parse_metadata(collector.text());
  if (!m) return make_error(m.error().code, opt_.port + ": " + m.error().message);
  return m;
}

Result<MonitorInfo> Ppk2Monitor::open() {
  auto p = fw::SerialPort::open(opt_.port);
  if (!p) return p.error();
  port_.emplace(std::move(p.value()));
  // A device left streaming by an earlier run keeps streaming: stop it and drop what is queued.
  if (auto r = send(pp::cmd_stop()); !r) return r.error();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (auto r = port_->discard_input(); !r) return r.error();
  auto m = read_metadata();
  if (!m) return m.error();
  metadata_ = *m;
  have_metadata_ = true;
  const auto vdd_mv = metadata_.extra_number("VDD");
  source_v_ = vdd_mv ? *vdd_mv * 1e-3 : opt_.source_voltage_v;
  if (metadata_.defaults_used()) {
    std::string keys;
    for (const auto& k : metadata_.missing_keys)
      keys += (keys.empty() ? "" : ",") + k;
    log()->warn("{}: metadata lacks {}; using the documented defaults for them", opt_.port, keys);
  }

  MonitorInfo info;
  info.driver = "ppk2";
  info.port = opt_.port;
  info.nominal_rate_hz = pp::kSampleRateHz;
  info.serial_number = "";
  info.firmware_version = "";
  info.channels = {
      {"current", "A", SampleType::f32, "DUT current; NaN where the sample is missing"},
      {"logic", "", SampleType::u8,
       "digital inputs D0-D7 sampled with the current, bit n = input Dn; 0 where missing"}};
  info.current_channel = 0;
  info.voltage_channel = -1;
  info.fixed_voltage_v = source_v_;
  auto i = [](auto v) { return static_cast<std::int64_t>(v); };
  info.status = {
      {"calibrated", i(metadata_.calibrated)},
      {"hw", i(metadata_.hw.value_or(-1))},
      {"ia", i(metadata_.ia.value_or(-1))},
      {"metadata_defaults_used", i(metadata_.defaults_used())},
  };
  std::string missing;
  for (const auto& k : metadata_.missing_keys)
    missing += (missing.empty() ? "" : ",") + k;
  info.status.push_back({"metadata_missing_keys", missing});
  const std::pair<const char*, const std::array<double, pp::kRanges>*> families[] = {
      {"r", &metadata_.r}, {"gs", &metadata_.gs}, {"gi", &metadata_.gi}, {"o", &metadata_.o},
      {"s", &metadata_.s}, {"i", &metadata_.i},   {"ug", &metadata_.ug}};
  for (const auto& [name, values] : families) {
    for (std::size_t r = 0; r < pp::kRanges; ++r)
      info.status.push_back({std::string(name) + std::to_string(r), (*values)[r]});
  }
  for (const auto& [k, v] : metadata_.extra)
    info.status.push_back({"metadata_" + k, v});
  log()->info("{}: PPK2 hw {} ia {} calibrated {}", opt_.port, metadata_.hw.value_or(-1),
              metadata_.ia.value_or(-1), metadata_.calibrated);
  return info;
}

Result<void> Ppk2Monitor::configure(const MonitorConfig& cfg) {
  if (!have_metadata_) return make_error(Errc::invalid_argument, "PPK2: configure() before open()");
  if (cfg.current_limit_a) {
    return make_error(Errc::unsupported, opt_.port + ": the PPK2 has no current limit");
  }
  if (cfg.usb_passthrough != MonitorConfig::UsbPassthrough::off) {
    return make_error(Errc::unsupported, opt_.port + ": the PPK2 has no USB passthrough");
  }
  auto vdd = pp::cmd_set_source_voltage(cfg.output_voltage_v);
  if (!vdd) return make_error(vdd.error().code, opt_.port + ": " + vdd.error().message);
  if (auto r = send(pp::cmd_set_power_mode(pp::PowerMode::source)); !r) return r.error();
  if (auto r = send(*vdd); !r) return r.error();
  if (auto r = send(pp::cmd_set_dut_power(true)); !r) return r.error();
  const double mv = std::round(cfg.output_voltage_v * 1000.0);
  // Read back where the device tells: a monitor that ignored the voltage must not be measured as
  // if it had taken it (the conversion also depends on it).
  auto m = read_metadata();
  if (!m) return m.error();
  if (auto got = m->extra_number("VDD"); got && *got != mv) {
    return make_error(Errc::protocol_error, opt_.port + ": source voltage reads back as " +
                                                std::to_string(*got) + " mV, not " +
                                                std::to_string(mv) + " mV");
  }
  source_v_ = mv * 1e-3;
  return {};
}

Result<void> Ppk2Monitor::start() {
  if (!have_metadata_) return make_error(Errc::invalid_argument, "PPK2: start() before open()");
  if (auto r = port_->discard_input(); !r) return r.error();
  decoder_.emplace(pp::Converter(metadata_, source_v_),
                   pp::StreamDecoder::Options{.fill_missing = false});
  wrap_.emplace(opt_.wrap);
  for (auto& c : chunks_)
    spare_.push_back(std::move(c));
  chunks_.clear();
  next_tag_ = front_tag_ = 0;
  return send(pp::cmd_start());
}

void Ppk2Monitor::decode(std::span<const std::uint8_t> bytes, std::int64_t arrival_ns, bool at_end,
                         bool caught_up) {
  Chunk c;
  if (!spare_.empty()) {
    c = std::move(spare_.back());
    spare_.pop_back();
    c.amps.clear();
    c.logic.clear();
    c.items.clear();
  }
  auto on_block = [&](std::uint64_t first, std::size_t n) {
    if (!c.items.empty() && c.items.back().kind == Item::Kind::run &&
        c.items.back().index + c.items.back().count == first) {
      c.items.back().count += n;
    } else {
      c.items.push_back({Item::Kind::run, first, n, c.amps.size()});
    }
    c.amps.insert(c.amps.end(), amps_buf_.begin(), amps_buf_.begin() + static_cast<long>(n));
    c.logic.insert(c.logic.end(), logic_buf_.begin(), logic_buf_.begin() + static_cast<long>(n));
  };
  auto on_gap = [&](const pp::DecoderGap& g) {
    const auto kind =
        g.kind == pp::DecoderGap::Kind::missing ? Item::Kind::missing : Item::Kind::duplicate;
    if (kind == Item::Kind::duplicate && !c.items.empty() &&
        c.items.back().kind == Item::Kind::duplicate && c.items.back().index == g.first_index) {
      c.items.back().count += g.count;
      return;
    }
    c.items.push_back({kind, g.first_index, g.count, 0});
  };
  const pp::SampleSpans out{amps_buf_, logic_buf_};
  if (at_end)
    decoder_->finish(out, on_block, on_gap);
  else
    decoder_->feed(bytes, out, on_block, on_gap);
  if (c.items.empty()) {
    spare_.push_back(std::move(c));
    return;
  }
  c.end = decoder_->next_index();
  const bool gap = std::any_of(c.items.begin(), c.items.end(),
                               [](const Item& it) { return it.kind == Item::Kind::missing; });
  wrap_->push(c.end, arrival_ns, next_tag_++, fw::WrapEvidence{gap, caught_up, 0.0});
  chunks_.push_back(std::move(c));
}

void Ppk2Monitor::emit(SampleSink& sink, const Chunk& c, const fw::WrapPlacement& placed) {
  // The elapsed-time check cannot say where in the chunk a whole-wrap loss happened: put it
  // right after the chunk's first counter gap (the loss event the counter did see), else at the
  // chunk's start.
  std::size_t wrap_at = 0;
  if (placed.wrap_lost) {
    for (std::size_t k = 0; k < c.items.size(); ++k) {
      if (c.items[k].kind == Item::Kind::missing) {
        wrap_at = k + 1;
        break;
      }
    }
  }
  std::uint64_t off = placed.offset;
  for (std::size_t k = 0; k <= c.items.size(); ++k) {
    if (placed.wrap_lost && k == wrap_at) {
      const std::uint64_t at =
          (k < c.items.size() ? c.items[k].index : c.items[k - 1].index + c.items[k - 1].count);
      sink.gap({at + off, placed.wrap_lost,
                placed.inferred ? GapKind::inferred : GapKind::missing_wrapped});
      off += placed.wrap_lost;
    }
    if (k == c.items.size()) break;
    const Item& it = c.items[k];
    switch (it.kind) {
      case Item::Kind::run: {
        const std::array<ChannelData, 2> cols = {
            std::span<const float>(c.amps.data() + it.data, it.count),
            std::span<const std::uint8_t>(c.logic.data() + it.data, it.count)};
        sink.samples(it.index + off, cols);
        break;
      }
      case Item::Kind::missing:
        sink.gap({it.index + off, it.count, GapKind::missing});
        break;
      case Item::Kind::duplicate:
        sink.gap({it.index + off, it.count, GapKind::duplicate_dropped});
        break;
    }
  }
}

void Ppk2Monitor::release(SampleSink& sink) {
  wrap_->drain([&](const fw::WrapPlacement& placed) {
    assert(!chunks_.empty() && placed.tag == front_tag_);
    emit(sink, chunks_.front(), placed);
    spare_.push_back(std::move(chunks_.front()));
    chunks_.pop_front();
    ++front_tag_;
  });
  // Keep a few buffers for reuse; drop the rest (a long hold may have needed many).
  if (spare_.size() > 64) spare_.resize(64);
}

Result<void> Ppk2Monitor::read_into_chunk(SampleSink& sink, std::chrono::milliseconds timeout) {
  const std::int64_t called = opt_.clock->now_ns();
  auto n = port_->read_some(read_buf_, timeout);
  if (!n) return n.error();
  last_arrival_ns_ = opt_.clock->now_ns();
  // A read that returns at once found data queued: its arrival time measures the host's backlog,
  // not the device. One that had to wait measures the device (plus wake-up latency).
  const bool caught_up = last_arrival_ns_ - called >= fw::kCaughtUpWaitNs;
  decode(std::span(read_buf_.data(), *n), last_arrival_ns_, false, caught_up);
  release(sink);
  return {};
}

Result<void> Ppk2Monitor::poll(SampleSink& sink, std::chrono::milliseconds timeout) {
  if (!port_ || !decoder_) return make_error(Errc::invalid_argument, "PPK2: poll() before start()");
  return quiet_is_ok(read_into_chunk(sink, timeout));
}

Result<void> Ppk2Monitor::stop(SampleSink& sink) {
  Result<void> result;
  if (port_ && decoder_) {
    result = send(pp::cmd_stop());
    if (result) {
      result = drain_in_flight(
          *opt_.clock, [&](std::chrono::milliseconds t) { return read_into_chunk(sink, t); });
    }
  }
  if (decoder_) {
    // Bytes still buffered arrived with the last read: they carry its arrival time.
    decode({}, last_arrival_ns_, true, false);
    wrap_->finish();
    release(sink);
  }
  return result;
}

void Ppk2Monitor::close() {
  port_.reset();
}

std::vector<Counter> Ppk2Monitor::counters() const {
  const pp::DecoderCounters d = decoder_ ? decoder_->counters() : pp::DecoderCounters{};
  const fw::WrapCounters w = wrap_ ? wrap_->counters() : fw::WrapCounters{};
  std::vector<Counter> out = {
      {"missing_samples", d.missing_samples + w.wrap_lost + w.inferred_lost},
      {"counter_gaps", d.counter_gaps},
      {"counter_lost_samples", d.missing_samples},
  };
  append_wrap_counters(out, w);
  out.insert(out.end(), {
                            {"corrupted_counters", d.corrupted_counters},
                            {"duplicate_samples", d.duplicate_samples},
                            {"invalid_range_samples", d.invalid_range},
                            {"discarded_bytes", d.discarded_bytes},
                            {"resyncs", d.resyncs},
                            {"overlap_words", d.overlap_words},
                            {"metadata_discarded_bytes", metadata_discarded_bytes_},
                        });
  return out;
}

}  // namespace meltrig::rig
