// Inputs from a capture file: see capture_inputs.hpp.
#include "meltrig/analysis/capture_inputs.hpp"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "meltrig/dataset/capture_reader.hpp"
#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/run_record.hpp"

namespace meltrig::analysis {

namespace {

constexpr std::size_t kBlock = 65536;

Error file_error(const std::filesystem::path& p, const std::string& what) {
  return make_error(Errc::invalid_argument, p.string() + ": " + what);
}

/// One block of power samples read ahead.
struct Block {
  std::uint64_t first = 0;
  std::size_t n = 0;
  std::vector<float> p = std::vector<float>(kBlock), v = std::vector<float>(kBlock);
};

/// Reads block `first` into `b`: the `power` channel, or current x voltage.
Result<void> read_block(const dataset::CaptureReader& r, bool direct, std::uint64_t first,
                        Block& b) {
  b.first = first;
  b.n = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, r.samples_written() - first));
  auto out = std::span<float>(b.p.data(), b.n);
  auto ok = r.read(direct ? "power" : "current", first, out);
  if (ok && !direct) ok = r.read("voltage", first, std::span<float>(b.v.data(), b.n));
  if (!ok) return ok;
  if (!direct)
    for (std::size_t i = 0; i < b.n; ++i)
      b.p[i] *= b.v[i];
  return {};
}

/// Hands every block of the capture to `sink` in order while a reader thread reads (and HDF5
/// decompresses) up to kDepth blocks ahead: reading and integrating run on two cores. Memory:
/// kDepth blocks. The first error (a read, or the sink's) ends the stream.
Result<void> stream_blocks(const dataset::CaptureReader& r, const ChunkSink& sink) {
  constexpr std::size_t kDepth = 4;
  const bool direct = r.find_channel("power") != nullptr;
  const std::uint64_t n = r.samples_written();
  const std::uint64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<Block> ring(kDepth);
  std::mutex m;
  std::condition_variable_any cv;
  std::uint64_t produced = 0, consumed = 0;
  Result<void> read_error;
  bool failed = false;
  std::jthread reader([&](std::stop_token stop) {
    for (std::uint64_t k = 0; k < blocks; ++k) {
      {
        std::unique_lock lk(m);
        if (!cv.wait(lk, stop, [&] { return produced - consumed < kDepth; })) return;
      }
      auto ok = read_block(r, direct, k * kBlock, ring[k % kDepth]);
      std::lock_guard lk(m);
      if (!ok) {
        read_error = std::move(ok);
        failed = true;
      } else {
        ++produced;
      }
      cv.notify_all();
      if (failed) return;
    }
  });
  for (std::uint64_t k = 0; k < blocks; ++k) {
    {
      std::unique_lock lk(m);
      cv.wait(lk, [&] { return produced > k || failed; });
      if (produced <= k) return read_error;
    }
    const Block& b = ring[k % kDepth];
    auto fed = sink(b.first, std::span<const float>(b.p.data(), b.n));
    {
      std::lock_guard lk(m);
      ++consumed;
    }
    cv.notify_all();
    if (!fed) return fed;  // the reader stops at its next wait (jthread: stop, then join)
  }
  return {};
}

// Power in blocks from a shared reader (read ahead on a second thread).
SampleSeries series_from_reader(std::shared_ptr<const dataset::CaptureReader> r) {
  SampleSeries s;
  s.rate_hz = r->sample_rate_hz();
  s.for_each_chunk = [r](const ChunkSink& sink) { return stream_blocks(*r, sink); };
  return s;
}

}  // namespace

Result<targets::MarkerLog> read_runner_markers(const std::filesystem::path& path) {
  auto names = dataset::list_markers(path);
  if (!names) return names.error();
  if (names->empty()) return file_error(path, "no markers (/markers is empty or absent)");
  std::string name = names->front();
  for (const std::string& n : *names)
    if (n == "runner") name = n;
  return dataset::read_markers(path, name);
}

Result<AnalysisInputs> inputs_from_capture(const std::filesystem::path& path, const ClockMap& map,
                                           double jitter_s) {
  auto reader = dataset::CaptureReader::open(path);
  if (!reader) return reader.error();
  if (reader->state() == dataset::CaptureState::running) {
    return file_error(path,
                      "capture state 'running' (still being written, or crashed): not analysed");
  }
  if (reader->find_channel("power") == nullptr &&
      (reader->find_channel("current") == nullptr || reader->find_channel("voltage") == nullptr)) {
    return file_error(path, "no power channel and no current and voltage channels");
  }
  auto log = read_runner_markers(path);
  if (!log) return log.error();
  auto shared = std::make_shared<const dataset::CaptureReader>(std::move(reader).value());
  AnalysisInputs in;
  in.samples = series_from_reader(shared);
  auto ev = events_from_markers(*log, map, jitter_s);
  if (!ev) return file_error(path, ev.error().message);
  in.events = std::move(ev).value();
  auto tel = dataset::read_telemetry(path);
  if (tel) in.telemetry = series_from_telemetry(*tel, map);
  return in;
}

}  // namespace meltrig::analysis
