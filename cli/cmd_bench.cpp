// meltrig bench: benchmark programs that print figures (timing goals live here, never in tests).
//   meltrig bench decode    samples per second per decoder on one core
//   meltrig bench ingest    synthetic source -> decode -> ring -> compressed HDF5, vs raw write()
//   meltrig bench longrun   a long capture on an accelerated clock, tracking resident memory
//   meltrig bench sync      clock-map error over a drift x jitter grid (fixtures/sync_sim);
//                           --make/--file: sync of a long capture file, time and peak RSS
//   meltrig bench analyze   an hour at 5 kHz, 72,000 tokens, analysed end to end; numpy peer
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <vector>

#include "cli_common.hpp"
#include "meltrig/fixtures/analysis_bench.hpp"
#include "meltrig/fixtures/sync_sim.hpp"
#include "meltrig/fw/hvpm_protocol.hpp"
#include "meltrig/fw/lvpm_protocol.hpp"
#include "meltrig/fw/ppk2_protocol.hpp"
#include "meltrig/rig/synthetic_monitor.hpp"
#include "meltrig/targets/stamp.hpp"

namespace meltrig::cli {
namespace {

namespace lv = fw::lvpm;
namespace hv = fw::hvpm;
namespace pp = fw::ppk2;

/// One decoder benchmark: builds its input once, then decodes it `reps` times.
struct DecodeBench {
  const char* name;
  /// Decodes the prepared stream once; returns the number of samples produced.
  std::function<std::uint64_t()> run;
};

/// LVPM: a stream of framed 31-sample data packets, decoded to calibrated amps and volts.
DecodeBench lvpm_bench() {
  auto stream = std::make_shared<std::vector<std::uint8_t>>();
  std::vector<std::uint8_t> payload;
  for (std::uint8_t s = 0; s < 2; ++s) {  // one zero- and one ref-calibration packet first
    std::array<lv::RawSample, 2> cal{};
    cal[0].main_current = static_cast<std::int16_t>(s ? 3100 : 100);
    cal[1].main_current = static_cast<std::int16_t>(s ? 6101 : 101);
    payload.clear();
    lv::append_sample_packet(s, s ? lv::PacketType::ref_cal : lv::PacketType::zero_cal, cal,
                             payload);
    lv::append_frame(payload, *stream);
  }
  std::array<lv::RawSample, lv::kMaxSamplesPerPacket> raw{};
  for (std::size_t k = 0; k < 40000; ++k) {
    for (std::size_t i = 0; i < raw.size(); ++i) {
      auto v = static_cast<std::int16_t>((k * 31 + i) % 20000 * 2 + ((k + i) % 3 == 0));
      raw[i] = {v, 0, 0, static_cast<std::uint16_t>(64000 + (i % 4) * 4)};
    }
    payload.clear();
    lv::append_sample_packet(static_cast<std::uint8_t>(k + 2), lv::PacketType::data, raw, payload);
    lv::append_frame(payload, *stream);
  }
  auto out_i = std::make_shared<std::vector<float>>(lv::kMaxSamplesPerPacket);
  auto out_v = std::make_shared<std::vector<float>>(lv::kMaxSamplesPerPacket);
  return {"lvpm (serial, 8 B/sample, 31/packet)", [stream, out_i, out_v] {
            lv::FrameDecoder dec;
            lv::Calibrator cal;
            std::uint64_t n = 0;
            std::span<const std::uint8_t> all(*stream);
            for (std::size_t at = 0; at < all.size(); at += 4096) {  // reads of 4 KiB
              dec.feed(all.subspan(at, std::min<std::size_t>(4096, all.size() - at)),
                       [&](std::span<const std::uint8_t> p) {
                         auto sp = lv::parse_sample_packet(p);
                         if (!sp) return;
                         if (sp->type != lv::PacketType::data) {
                           cal.add(*sp);
                           return;
                         }
                         for (std::size_t i = 0; i < sp->n; ++i) {
                           (*out_i)[i] =
                               static_cast<float>(cal.current_amps(sp->samples[i].main_current));
                           (*out_v)[i] = static_cast<float>(
                               lv::Calibrator::voltage_volts(sp->samples[i].main_voltage, 1));
                         }
                         n += sp->n;
                       });
            }
            return n;
          }};
}

/// HVPM: 64-byte bulk packets of 3 samples (calibration samples interleaved as the device does,
/// one zero and one ref sample in every 8th packet), decoded in batches of 256 packets (a 16 KiB
/// USB transfer) and converted to main current, main voltage and USB current.
DecodeBench hvpm_bench() {
  auto stream = std::make_shared<std::vector<std::uint8_t>>();
  const hv::ChannelAdc adc;
  const hv::DeviceCalibration dev{hv::Model::hvpm, adc.scales, adc.scales};
  constexpr std::size_t kPackets = 400'000;
  stream->resize(kPackets * hv::kPacketSize);
  std::array<hv::RawSample, hv::kMaxSamplesPerPacket> s{};
  for (std::size_t k = 0; k < kPackets; ++k) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto [fine, coarse] = hv::quantize_current(
          0.05 + 0.4 * static_cast<double>((k * 3 + i) % 1000) / 1000.0, adc, hv::Model::hvpm);
      s[i] = {};
      s[i].main_fine = fine;
      s[i].main_coarse = coarse;
      s[i].usb_fine = fine;
      s[i].usb_coarse = coarse;
      s[i].main_voltage = hv::quantize_volts(4.0, hv::main_volts_per_count(hv::Model::hvpm));
      s[i].main_gain = static_cast<std::uint8_t>(hv::SampleKind::measurement);
    }
    if (k % 8 == 0) {  // a zero- and a ref-calibration sample
      s[0].main_gain = static_cast<std::uint8_t>(hv::SampleKind::zero_cal);
      s[0].main_fine = s[0].usb_fine = static_cast<std::uint16_t>(adc.fine_zero_cal);
      s[0].main_coarse = s[0].usb_coarse = static_cast<std::uint16_t>(adc.coarse_zero_cal);
      s[1].main_gain = static_cast<std::uint8_t>(hv::SampleKind::ref_cal);
      s[1].main_fine = s[1].usb_fine = static_cast<std::uint16_t>(adc.fine_ref_cal);
      s[1].main_coarse = s[1].usb_coarse = static_cast<std::uint16_t>(adc.coarse_ref_cal);
    }
    hv::encode_packet(0, static_cast<std::uint8_t>(k & 0x0F), s, hv::DroppedByteOrder::little,
                      std::span<std::uint8_t, hv::kPacketSize>(stream->data() + k * hv::kPacketSize,
                                                               hv::kPacketSize));
  }
  constexpr std::size_t kBatch = 256;
  struct Scratch {
    std::vector<hv::PacketHeader> headers = std::vector<hv::PacketHeader>(kBatch);
    std::vector<hv::RawSample> raw = std::vector<hv::RawSample>(kBatch * 3);
    std::vector<hv::RawSample> meas = std::vector<hv::RawSample>(kBatch * 3);
    std::vector<float> amps = std::vector<float>(kBatch * 3), volts = amps, usb = amps;
  };
  auto sc = std::make_shared<Scratch>();
  return {"hvpm (USB bulk, 18 B/sample, 3/packet)", [stream, sc, dev] {
            hv::Calibrator cal(dev);
            std::uint64_t n = 0;
            std::span<const std::uint8_t> all(*stream);
            const std::size_t step = kBatch * hv::kPacketSize;
            for (std::size_t at = 0; at < all.size(); at += step) {
              auto r = hv::decode_batch(all.subspan(at, std::min(step, all.size() - at)),
                                        hv::DroppedByteOrder::little, sc->headers, sc->raw);
              std::size_t m = 0;
              for (std::size_t i = 0; i < r.samples; ++i) {
                const auto& x = sc->raw[i];
                if (x.kind() == hv::SampleKind::measurement)
                  sc->meas[m++] = x;
                else
                  cal.add(x);
              }
              cal.convert(std::span(sc->meas).first(m), sc->amps, sc->volts, sc->usb);
              n += m;
            }
            return n;
          }};
}

/// PPK2: 4-byte sample words with a running 6-bit counter, read in 4 KiB pieces, followed by the
/// streaming decoder (counter checks, loss and duplicate detection) and conversion to amps.
DecodeBench ppk2_bench() {
  auto stream = std::make_shared<std::vector<std::uint8_t>>();
  const pp::Metadata meta;
  constexpr std::size_t kWords = 4'000'000;
  stream->reserve(kWords * 4);
  for (std::size_t k = 0; k < kWords; ++k) {
    auto w = pp::quantize_current(1e-5 * static_cast<double>(1 + k % 50'000), meta, 3.7);
    w.counter = static_cast<std::uint8_t>(k % pp::kCounterModulo);
    w.logic = static_cast<std::uint8_t>(k >> 10);
    pp::append_word(pp::pack_word(w), *stream);
  }
  auto amps = std::make_shared<std::vector<float>>(8192);
  auto logic = std::make_shared<std::vector<std::uint8_t>>(8192);
  return {"ppk2 (serial, 4 B/sample, counter-checked)", [stream, amps, logic, meta] {
            pp::StreamDecoder dec(pp::Converter(meta, 3.7));
            std::uint64_t n = 0, gaps = 0;
            auto on_block = [&](std::uint64_t, std::size_t k) { n += k; };
            auto on_gap = [&](const pp::DecoderGap&) { ++gaps; };
            const pp::SampleSpans out{*amps, *logic};
            std::span<const std::uint8_t> all(*stream);
            for (std::size_t at = 0; at < all.size(); at += 4096)
              dec.feed(all.subspan(at, std::min<std::size_t>(4096, all.size() - at)), out, on_block,
                       on_gap);
            dec.finish(out, on_block, on_gap);
            return gaps == 0 ? n : 0;  // a gap in a clean stream would be a decoder bug
          }};
}

int run_decode() {
  std::vector<DecodeBench> benches = {lvpm_bench(), hvpm_bench(), ppk2_bench()};
  std::printf("decoder benchmark: bytes -> calibrated samples, one thread, best of 5 runs\n");
  for (auto& b : benches) {
    double best = 0;
    std::uint64_t samples = 0;
    for (int rep = 0; rep < 5; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      samples = b.run();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, static_cast<double>(samples) / s);
    }
    std::printf("  %-44s %8.1f M samples/s  (%llu samples per run)\n", b.name, best / 1e6,
                static_cast<unsigned long long>(samples));
  }
  return kOk;
}

/// Resident memory now and at its peak (kB), from /proc/self/status.
std::pair<long, long> rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string key;
  long rss = 0, hwm = 0;
  while (in >> key) {
    if (key == "VmRSS:")
      in >> rss;
    else if (key == "VmHWM:")
      in >> hwm;
  }
  return {rss, hwm};
}

Result<void> fsync_path(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return make_error(Errc::file_error, p.string() + ": cannot open to fsync");
  int r = ::fsync(fd);
  ::close(fd);
  if (r != 0) return make_error(Errc::file_error, p.string() + ": fsync failed");
  return {};
}

struct IngestArgs {
  std::string dir = ".";
  std::uint64_t samples = 100'000'000;
  double rate = 1e6;
};

/// The capture pipeline at full speed, then plain write() of the same wire bytes; both timed
/// until the data is on disk (fsync), since page-cache speed is not what a long capture gets.
int run_ingest(const IngestArgs& a) {
  namespace fs = std::filesystem;
  fs::path dir = a.dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto h5 = dir / "meltrig-bench-ingest.h5";
  auto raw = dir / "meltrig-bench-ingest.raw";
  fs::remove(h5, ec);
  fs::remove(raw, ec);

  rig::SyntheticMonitor::Options so;
  so.rate_hz = a.rate;
  so.paced = false;
  so.max_samples = a.samples;
  rig::SyntheticMonitor src(so);
  auto info = src.open();
  if (!info) return fail(info.error().describe());
  rig::CaptureOptions opt;
  opt.output = h5;
  opt.duration_s = 0;
  opt.wait_when_full = true;  // measure throughput, not how fast a full ring can drop
  opt.interrupt = interrupt_token();
  auto t0 = std::chrono::steady_clock::now();
  auto s = rig::run_capture(src, *info, opt);
  if (!s) return fail(s.error().describe());
  if (s->failure) return fail(s->failure->describe());
  if (auto r = fsync_path(h5); !r) return fail(r.error().describe());
  double t_ingest = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::uint64_t wire_bytes = src.bytes_decoded();
  const auto file_bytes = fs::file_size(h5, ec);

  // Plain write() of the same number of wire bytes, in 1 MiB writes, then fsync.
  const auto& cycle = src.cycle_bytes();
  std::vector<std::uint8_t> block(1 << 20);
  for (std::size_t i = 0; i < block.size(); ++i)
    block[i] = cycle[i % cycle.size()];
  int fd = ::open(raw.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return fail(raw.string() + ": cannot create");
  t0 = std::chrono::steady_clock::now();
  for (std::uint64_t left = wire_bytes; left > 0;) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, block.size()));
    ssize_t w = ::write(fd, block.data(), n);
    if (w <= 0) {
      ::close(fd);
      return fail(raw.string() + ": write failed");
    }
    left -= static_cast<std::uint64_t>(w);
  }
  ::fsync(fd);
  ::close(fd);
  double t_raw = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const double n = static_cast<double>(s->samples);
  const double mb = static_cast<double>(wire_bytes) / 1e6;
  std::printf(
      "ingest benchmark: %llu samples (%.0f Hz time base), %.1f MB of LVPM-framed wire bytes, in "
      "%s\n",
      static_cast<unsigned long long>(s->samples), a.rate, mb, dir.c_str());
  std::printf(
      "  pipeline (decode, ring, HDF5 + summaries, fsync): %7.2f s %8.1f M samples/s %8.1f MB/s\n",
      t_ingest, n / t_ingest / 1e6, mb / t_ingest);
  std::printf(
      "  raw write() of the same bytes (fsync):            %7.2f s %8.1f M samples/s %8.1f MB/s\n",
      t_raw, n / t_raw / 1e6, mb / t_raw);
  std::printf("  ratio pipeline / raw write: %.2f\n", t_raw / t_ingest);
  std::printf("  HDF5 file %.1f MB (%.2f bytes/sample); samples lost: %llu\n",
              static_cast<double>(file_bytes) / 1e6, static_cast<double>(file_bytes) / n,
              static_cast<unsigned long long>(s->samples - s->valid_samples));
  std::printf("  peak resident memory: %.1f MiB\n", static_cast<double>(rss_kb().second) / 1024.0);
  fs::remove(h5, ec);
  fs::remove(raw, ec);
  return kOk;
}

struct LongrunArgs {
  std::string dir = ".";
  double rate = 5000;
  double hours = 24;
  double speed = 0;  ///< 0: unpaced (as fast as the pipeline goes)
  bool keep = false;
};

/// A long capture from the synthetic source, on an accelerated clock (or unpaced), printing
/// resident memory as it goes: it must stay flat, whatever the length.
int run_longrun(const LongrunArgs& a) {
  namespace fs = std::filesystem;
  fs::path out = fs::path(a.dir) / "meltrig-bench-longrun.h5";
  std::error_code ec;
  fs::create_directories(a.dir, ec);
  fs::remove(out, ec);
  const double seconds = a.hours * 3600.0;
  const auto samples = static_cast<std::uint64_t>(seconds * a.rate);
  VirtualClock vclock(a.speed > 0 ? a.speed : 1.0);
  rig::SyntheticMonitor::Options so;
  so.rate_hz = a.rate;
  so.paced = a.speed > 0;
  so.max_samples = samples;
  so.clock = &vclock;
  rig::SyntheticMonitor src(so);
  auto info = src.open();
  if (!info) return fail(info.error().describe());
  rig::CaptureOptions opt;
  opt.output = out;
  opt.duration_s = 0;                 // the source ends after `samples`
  opt.wait_when_full = a.speed <= 0;  // an unpaced source waits for the writer
  opt.clock = &vclock;
  opt.interrupt = interrupt_token();
  // Every 2 s of wall time; the interval is measured on the (virtual) capture clock.
  opt.progress_interval =
      std::chrono::milliseconds(static_cast<long>(2000 * std::max(1.0, a.speed)));
  std::printf("long run: %.1f h at %.0f Hz = %llu samples, %s, into %s\n", a.hours, a.rate,
              static_cast<unsigned long long>(samples),
              a.speed > 0 ? ("virtual clock x" + std::to_string(static_cast<long>(a.speed))).c_str()
                          : "unpaced",
              out.c_str());
  std::printf("  %10s %14s %10s %10s\n", "wall s", "samples", "RSS MiB", "peak MiB");
  auto t0 = std::chrono::steady_clock::now();
  long first_rss = 0, max_rss = 0;
  opt.on_progress = [&](const rig::CaptureProgress& p) {
    auto [rss, hwm] = rss_kb();
    if (!first_rss) first_rss = rss;
    max_rss = std::max(max_rss, rss);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %10.1f %14llu %10.1f %10.1f\n", wall, static_cast<unsigned long long>(p.samples),
                static_cast<double>(rss) / 1024.0, static_cast<double>(hwm) / 1024.0);
    std::fflush(stdout);
  };
  auto s = rig::run_capture(src, *info, opt);
  if (!s) return fail(s.error().describe());
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto [rss, hwm] = rss_kb();
  std::printf("  done: %llu samples in %.1f s wall (%.1f M samples/s); file %.2f GB; state %s\n",
              static_cast<unsigned long long>(s->samples), wall,
              static_cast<double>(s->samples) / wall / 1e6,
              static_cast<double>(fs::file_size(out, ec)) / 1e9,
              s->failure ? s->failure->describe().c_str() : s->end_reason.c_str());
  std::printf(
      "  resident memory: first sample %.1f MiB, max sampled %.1f MiB, peak (VmHWM) %.1f MiB\n",
      static_cast<double>(first_rss) / 1024.0, static_cast<double>(max_rss) / 1024.0,
      static_cast<double>(hwm) / 1024.0);
  (void)rss;
  if (!a.keep) fs::remove(out, ec);
  return s->failure ? kFailure : kOk;
}

struct StampArgs {
  std::string stamp_tool, runner, dir = ".";
  int tokens = 300, runs = 3;
  bool realtime = false, pipe = false;
};

/// A sibling build product: `name` under DIR/../SUB or DIR/../../SUB, DIR = this binary's dir.
std::string beside_build(const std::string& sub) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (const char* up : {"..", "../.."}) {
    const fs::path p = exe.parent_path() / up / sub;
    if (!ec && fs::exists(p, ec)) return p.lexically_normal().string();
  }
  return sub;
}

int run_stamp(const StampArgs& a) {
  namespace mt = meltrig::targets;
  mt::StampBenchOptions o;
  o.stamp_tool = a.stamp_tool.empty() ? beside_build("targets/meltrig_stamp") : a.stamp_tool;
  o.runner = a.runner.empty() ? beside_build("examples/meltrig_toy_runner") : a.runner;
  o.dir = a.dir;
  o.tokens = a.tokens;
  o.realtime = a.realtime;
  o.pipe = a.pipe;
  std::printf("toy runner --stream, %d tokens, under %s%s%s\n", a.tokens, o.stamp_tool.c_str(),
              a.realtime ? " --realtime" : "", a.pipe ? " --pipe" : "");
  for (int i = 0; i < a.runs; ++i) {
    auto e = mt::measure_stamp_errors(o);
    if (!e) return fail(e.error().describe());
    double load[1] = {0};
    (void)::getloadavg(load, 1);
    std::printf(
        "run %d: %lld/%lld tokens found, %lld chunks, %lld coalesced; stamp - emission us: p50 "
        "%.1f p90 %.1f p99 %.1f max %.1f (load %.2f)\n",
        i + 1, static_cast<long long>(e->found), static_cast<long long>(e->true_tokens),
        static_cast<long long>(e->chunks), static_cast<long long>(e->coalesced),
        static_cast<double>(e->quantile(0.5)) / 1e3, static_cast<double>(e->quantile(0.9)) / 1e3,
        static_cast<double>(e->quantile(0.99)) / 1e3, static_cast<double>(e->quantile(1.0)) / 1e3,
        load[0]);
  }
  return kOk;
}

/// meltrig bench analyze: options into fixtures::abench::BenchOptions (the body is there).
/// `meltrig bench sync --make FILE` / `--file FILE`: sync of a long capture in bounded memory.
struct SyncFileArgs {
  std::string make, file;
  double rate_hz = 5000.0;
  bool in_memory = false;
};

int run_sync_file(const fixtures::sim::SyncBenchOptions& so, const SyncFileArgs& a) {
  if (!a.make.empty()) {
    if (std::filesystem::exists(a.make)) return fail(a.make + ": already exists");
    fixtures::sim::MonitorModel m = so.monitor;
    m.rate_hz = a.rate_hz;
    m.seed = so.seed;
    auto n = fixtures::sim::write_sync_bench_capture(a.make, so.minutes, 50.0, m);
    if (!n) return fail(n.error().describe());
    std::printf("%s: %llu samples at %.0f Hz (%.1f min, drift 50 ppm, pulsed)\n", a.make.c_str(),
                static_cast<unsigned long long>(*n), a.rate_hz, so.minutes);
    return kOk;  // the sync runs in a process of its own: its peak RSS is the sync's
  }
  return fixtures::sim::print_sync_file_bench(a.file, a.in_memory, stdout) ? kOk : kFailure;
}

void add_bench_analyze(CLI::App& bench, Commands& cmds) {
  struct AnalyzeArgs {
    fixtures::abench::BenchOptions o;
    bool uncompressed = false, no_peer = false, peer = false;
  };
  auto aa = std::make_shared<AnalyzeArgs>();
  auto& ab = aa->o;
  auto* an = bench.add_subcommand(
      "analyze", "a synthetic hour at 5 kHz with 72,000 tokens analysed end to end; numpy peer");
  an->add_option("--dir", ab.dir, "directory for the temporary capture (default: system temp)");
  an->add_option("--seconds", ab.run.seconds, "capture length")->capture_default_str();
  an->add_option("--rate", ab.run.rate_hz, "sample rate, Hz")->capture_default_str();
  an->add_option("--tokens", ab.run.tokens, "token markers")->capture_default_str();
  an->add_option("--repetitions", ab.run.repetitions, "repetitions")->capture_default_str();
  an->add_option("--token-samples", ab.run.token_samples, "samples per token")
      ->capture_default_str();
  an->add_flag("--uncompressed", aa->uncompressed,
               "store the samples uncompressed (default: shuffle+deflate-1, as a 5 kHz capture)");
  an->add_option("--repeats", ab.repeats, "timed analyses")->capture_default_str();
  an->add_option("--python", ab.peer_options.python, "python3 with numpy and h5py")
      ->capture_default_str();
  an->add_option("--peer-script", ab.peer_options.script, "the numpy peer script");
  an->add_flag("--no-peer", aa->no_peer, "skip the numpy peer");
  an->add_flag("--keep", ab.keep, "keep the temporary directory");
  an->add_option("--make", ab.make, "only write the synthetic capture (and its /truth) here");
  an->add_option("--file", ab.file,
                 "analyse a capture made by --make with the same options, checked against its "
                 "/truth (no numpy peer unless --peer)");
  an->add_flag("--peer", aa->peer, "with --file: run the numpy peer too");
  cmds.push_back({an, [aa] {
                    if (aa->uncompressed) aa->o.run.compression = dataset::Compression::none();
                    aa->o.peer = aa->o.file.empty() ? !aa->no_peer : aa->peer;
                    return fixtures::abench::run_analysis_bench(aa->o, stdout);
                  }});
}
}  // namespace

void add_bench(CLI::App& app, Commands& cmds) {
  auto* bench = app.add_subcommand("bench", "benchmark programs that print figures");
  bench->require_subcommand(1);
  auto* decode = bench->add_subcommand("decode", "samples per second per decoder on one core");
  cmds.push_back({decode, [] { return run_decode(); }});

  auto ia = std::make_shared<IngestArgs>();
  auto* ingest = bench->add_subcommand(
      "ingest", "synthetic source -> decode -> ring -> compressed HDF5, against raw write()");
  ingest->add_option("--dir", ia->dir, "directory for the test files")->capture_default_str();
  ingest->add_option("--samples", ia->samples, "samples to capture")->capture_default_str();
  ingest->add_option("--rate", ia->rate, "time-base rate, Hz")->capture_default_str();
  cmds.push_back({ingest, [ia] { return run_ingest(*ia); }});

  auto la = std::make_shared<LongrunArgs>();
  auto* longrun = bench->add_subcommand(
      "longrun", "a long capture on an accelerated clock, printing resident memory");
  longrun->add_option("--dir", la->dir, "directory for the capture file")->capture_default_str();
  longrun->add_option("--rate", la->rate, "sample rate, Hz")->capture_default_str();
  longrun->add_option("--hours", la->hours, "capture length in hours of device time")
      ->capture_default_str();
  longrun->add_option("--speed", la->speed, "virtual clock speed-up; 0 = unpaced")
      ->capture_default_str();
  longrun->add_flag("--keep", la->keep, "keep the capture file");
  cmds.push_back({longrun, [la] { return run_longrun(*la); }});

  auto sa = std::make_shared<StampArgs>();
  auto* stamp = bench->add_subcommand(
      "stamp", "stamp minus true emission time: the toy runner streaming under meltrig_stamp");
  stamp->add_option("--stamp-tool", sa->stamp_tool, "meltrig_stamp (default: this build's)");
  stamp->add_option("--runner", sa->runner, "meltrig_toy_runner (default: this build's)");
  stamp->add_option("--dir", sa->dir, "directory for the marker files")->capture_default_str();
  stamp->add_option("--tokens", sa->tokens, "tokens per run")->capture_default_str();
  stamp->add_option("--runs", sa->runs, "runs")->capture_default_str();
  stamp->add_flag("--realtime", sa->realtime, "meltrig_stamp --realtime (SCHED_FIFO stamper)");
  stamp->add_flag("--pipe", sa->pipe, "meltrig_stamp --pipe (the runner's stdout on a pipe)");
  cmds.push_back({stamp, [sa] { return run_stamp(*sa); }});

  auto so = std::make_shared<fixtures::sim::SyncBenchOptions>();
  auto* sync = bench->add_subcommand(
      "sync", "clock-map error vs the true map: drift x token jitter, pulses, MELT, probes");
  sync->add_option("--minutes", so->minutes, "device time per cell")->capture_default_str();
  sync->add_option("--seed", so->seed, "world seed")->capture_default_str();
  sync->add_flag_callback(
      "--perturbed", [so] { so->device_keys = fixtures::sim::kPerturbedDevice; },
      "a slower rail (120 us), faster governor (6 + 3 ms) and longer wake latencies");
  auto drifts = std::make_shared<std::vector<double>>(std::vector<double>{0, 20, 50, 100});
  sync->add_option("--drift", *drifts, "drifts to run, ppm (repeatable)")->capture_default_str();
  auto sf = std::make_shared<SyncFileArgs>();
  sync->add_option("--make", sf->make,
                   "write a pulsed capture of --minutes at --rate to this file, then stop");
  sync->add_option("--rate", sf->rate_hz, "--make: monitor sample rate, Hz")->capture_default_str();
  sync->add_option("--file", sf->file,
                   "time `meltrig sync` of this file (peak RSS, map error against its /truth)");
  sync->add_flag("--in-memory", sf->in_memory, "--file: read the whole trace into memory first");
  cmds.push_back({sync, [so, drifts, sf] {
                    if (!sf->make.empty() || !sf->file.empty()) return run_sync_file(*so, *sf);
                    fixtures::sim::print_sync_bench(*so, *drifts, {0, 100e-6, 1e-3}, stdout);
                    return kOk;
                  }});

  add_bench_analyze(*bench, cmds);
}

}  // namespace meltrig::cli
