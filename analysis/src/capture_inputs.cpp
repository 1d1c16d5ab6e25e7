// Inputs from a capture file: see capture_inputs.hpp.
#include "meltrig/analysis/capture_inputs.hpp"

#include <memory>
#include <string>
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

// Power in blocks from a shared reader: the `power` channel, or current x voltage.
SampleSeries series_from_reader(std::shared_ptr<const dataset::CaptureReader> r) {
  SampleSeries s;
  s.rate_hz = r->sample_rate_hz();
  s.for_each_chunk = [r](const ChunkSink& sink) -> Result<void> {
    const bool direct = r->find_channel("power") != nullptr;
    std::vector<float> p(kBlock), v(kBlock);
    const std::uint64_t n = r->samples_written();
    for (std::uint64_t first = 0; first < n; first += kBlock) {
      const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, n - first));
      auto out = std::span<float>(p.data(), k);
      auto ok = r->read(direct ? "power" : "current", first, out);
      if (ok && !direct) ok = r->read("voltage", first, std::span<float>(v.data(), k));
      if (!ok) return ok;
      if (!direct)
        for (std::size_t i = 0; i < k; ++i)
          p[i] *= v[i];
      auto fed = sink(first, out);
      if (!fed) return fed;
    }
    return {};
  };
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
