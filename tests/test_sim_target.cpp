// SimTarget: the simulated world behind the Target interface. The runner's marker file, clock
// probes and telemetry readings are judged against the same World queried directly.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <thread>

#include "meltrig/fixtures/sim_target.hpp"
#include "meltrig/targets/markers.hpp"
#include "test_support.hpp"

using namespace meltrig;
using fixtures::SimTarget;
using fixtures::SimTargetConfig;
using meltrig::test::TempDir;
namespace sim = fixtures::sim;

namespace {

const std::filesystem::path kPhone =
    std::filesystem::path(MELTRIG_SOURCE_DIR) / "examples/scenarios/phone_llamacpp.toml";

std::shared_ptr<const sim::World> phone_world() {
  auto scn = sim::load_scenario(kPhone);
  REQUIRE(scn.ok());
  auto w = sim::World::build(*scn, scn->run.seed);
  REQUIRE(w.ok());
  return std::make_shared<const sim::World>(std::move(w.value()));
}

/// A clock that stands still until told otherwise (exact instants).
class ManualClock final : public Clock {
 public:
  std::int64_t now_ns() const override { return now_.load(); }
  void set(std::int64_t ns) { now_.store(ns); }

 private:
  std::atomic<std::int64_t> now_{1'000'000'000};
};

SimTargetConfig config_in(const TempDir& dir) {
  SimTargetConfig c;
  c.root = dir / "device";
  return c;
}

/// Waits (real time, bounded) until `pred` holds.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::milliseconds(20000)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

}  // namespace

TEST_CASE("sim target: the runner's marker file is the world's marker text when run to the end") {
  TempDir dir;
  const auto world = phone_world();
  VirtualClock clock(50.0);
  SimTarget target(world, clock, config_in(dir));
  REQUIRE(target.prepare().ok());
  CHECK(target.name() == "sim:sim-phone-a");
  target.set_epoch(clock.now_ns());
  // An absolute device path maps under the scratch directory.
  auto h = target.launch({"sim-runner", "--markers", "/data/local/tmp/run.markers"});
  REQUIRE(h.ok());
  CHECK((*h)->running());
  auto r = (*h)->wait(std::chrono::milliseconds(60000));
  REQUIRE_MESSAGE(r.ok(), r.error().describe());
  CHECK(r->exit_code == 0);
  CHECK_FALSE((*h)->running());
  CHECK(test::read_file(dir / "device/data/local/tmp/run.markers") == world->marker_file_text());
  auto text = target.read_file("/data/local/tmp/run.markers");
  REQUIRE(text.ok());
  CHECK(*text == world->marker_file_text());
  // The last line was written no earlier than its true time.
  CHECK(target.true_time_s() >= world->marker_lines_by_true_time().back().first);
}

TEST_CASE("sim target: terminate mid-run leaves a prefix that parses, and appends nothing more") {
  TempDir dir;
  const auto world = phone_world();
  VirtualClock clock(50.0);
  SimTarget target(world, clock, config_in(dir));
  REQUIRE(target.prepare().ok());
  target.set_epoch(clock.now_ns());
  auto h = target.launch({"sim-runner", "--markers", "m.txt"});
  REQUIRE(h.ok());
  const double half = world->duration_s() / 2;
  REQUIRE(eventually([&] { return target.true_time_s() >= half; }));
  auto r = (*h)->terminate(std::chrono::milliseconds(100));
  REQUIRE(r.ok());
  CHECK(r->exit_code == 128 + 15);
  CHECK_FALSE((*h)->running());
  const std::string cut = test::read_file(dir / "device/m.txt");
  const std::string full = world->marker_file_text();
  REQUIRE(!cut.empty());
  CHECK(cut.size() < full.size());
  CHECK(full.compare(0, cut.size(), cut) == 0);
  CHECK(cut.back() == '\n');  // one write per line: never a torn line
  // Nothing more is written after terminate(), even as the lines fall due.
  const double t_stop = target.true_time_s();
  REQUIRE(eventually([&] { return target.true_time_s() >= t_stop + 3.0; }));
  CHECK(test::read_file(dir / "device/m.txt") == cut);
  auto again = (*h)->wait(std::chrono::milliseconds(10));
  REQUIRE(again.ok());
  CHECK(again->exit_code == 128 + 15);

  // The prefix parses cleanly, and its events are the world's first ones.
  auto log = targets::parse_markers(cut, "m.txt");
  REQUIRE(log.ok());
  CHECK(log->issues.empty());
  const auto& all = world->markers().events;
  REQUIRE(!log->events.empty());
  REQUIRE(log->events.size() < all.size());
  for (std::size_t i = 0; i < log->events.size(); ++i) {
    CHECK(log->events[i].t_ns == all[i].t_ns);
    CHECK(log->events[i].kind == all[i].kind);
  }
}

TEST_CASE("sim target: clock probes read the world's clocks at the true time") {
  TempDir dir;
  const auto world = phone_world();
  SUBCASE("exact on a clock that stands still") {
    ManualClock clock;
    SimTarget target(world, clock, config_in(dir));
    target.set_epoch(5'000'000'000);
    for (const double t : {0.0, 0.5, 7.25, 21.999, 22.0, 24.5}) {
      const auto at = 5'000'000'000 + static_cast<std::int64_t>(t * 1e9);
      clock.set(at);
      const double tt = static_cast<double>(at - 5'000'000'000) * 1e-9;
      auto p = target.probe_clock();
      REQUIRE(p.ok());
      CHECK(p->host_t0_ns == at);
      CHECK(p->host_t3_ns == at);
      CHECK(p->device_mono_ns == world->mono_ns(tt));
      CHECK(p->device_boot_ns == world->boot_ns(tt));
      CHECK(p->device_real_ns == world->real_ns(tt));
    }
    // Across the scenario's +15 ms realtime step, realtime - monotonic jumps by 15 ms.
    clock.set(5'000'000'000 + 21'000'000'000);
    auto a = target.probe_clock();
    clock.set(5'000'000'000 + 23'000'000'000);
    auto b = target.probe_clock();
    REQUIRE((a.ok() && b.ok()));
    const auto jump =
        (b->device_real_ns - b->device_mono_ns) - (a->device_real_ns - a->device_mono_ns);
    CHECK(jump == doctest::Approx(15e6).epsilon(1e-3));
    // The meltrig_probe stand-in prints the same clock line.
    auto out = target.run({"meltrig_probe"}, std::chrono::milliseconds(1000));
    REQUIRE(out.ok());
    auto line = targets::parse_probe_line(out->out, "sim");
    REQUIRE(line.ok());
    CHECK(line->device_mono_ns == world->mono_ns(23.0));
  }
  SUBCASE("inside [t0, t3] on a running clock, with a latency model") {
    VirtualClock clock(50.0);
    SimTargetConfig c = config_in(dir);
    c.probe_latency_ns = 2'000'000;  // 2 ms each way, of bench time
    c.probe_jitter_ns = 1'000'000;
    SimTarget target(world, clock, c);
    target.set_epoch(clock.now_ns());
    auto true_s = [&](std::int64_t ns) {
      return static_cast<double>(ns - target.epoch_ns()) * 1e-9;
    };
    for (int i = 0; i < 20; ++i) {
      auto p = target.probe_clock();
      REQUIRE(p.ok());
      CHECK(p->rtt_ns() >= 4'000'000);
      CHECK(p->device_mono_ns >= world->mono_ns(true_s(p->host_t0_ns)));
      CHECK(p->device_mono_ns <= world->mono_ns(true_s(p->host_t3_ns)));
      CHECK(p->device_boot_ns >= world->boot_ns(true_s(p->host_t0_ns)));
      CHECK(p->device_boot_ns <= world->boot_ns(true_s(p->host_t3_ns)));
    }
    auto best = target.probe_clock_burst(8);
    REQUIRE(best.ok());
    CHECK(best->rtt_ns() >= 4'000'000);
  }
}

TEST_CASE("sim target: telemetry readings are the world's latest samples at the device's now") {
  TempDir dir;
  const auto world = phone_world();
  ManualClock clock;
  SimTarget target(world, clock, config_in(dir));
  const std::int64_t epoch = 2'000'000'000;
  target.set_epoch(epoch);
  const auto& series = world->telemetry().series;
  REQUIRE(series.size() >= 4);
  for (const double t : {0.3, 1.0, 6.5, 12.02, 19.7, world->duration_s() - 0.01}) {
    clock.set(epoch + static_cast<std::int64_t>(t * 1e9));
    const double tt = static_cast<double>(clock.now_ns() - epoch) * 1e-9;
    auto snap = target.read_telemetry();
    REQUIRE(snap.ok());
    const std::int64_t mono = world->mono_ns(tt);
    CHECK(snap->device_mono_ns == mono);
    for (const auto& s : series) {
      INFO(s.name << " at t=" << t);
      std::optional<std::size_t> k;
      for (std::size_t i = 0; i < s.t_ns.size(); ++i)
        if (s.t_ns[i] <= mono) k = i;
      const auto* r = snap->find(s.name);
      if (!k) {
        CHECK(r == nullptr);
        continue;
      }
      REQUIRE(r != nullptr);
      CHECK(r->unit == s.unit);
      CHECK(r->value == s.value[*k]);
    }
  }
  // Before the first sample of any series there is nothing to read.
  clock.set(epoch - 1'000'000'000);
  auto early = target.read_telemetry();
  REQUIRE(early.ok());
  CHECK(early->readings.empty());
}

TEST_CASE("sim target: MarkerTail and TelemetrySampler work against it") {
  TempDir dir;
  const auto world = phone_world();
  const double speed = 50.0;
  VirtualClock clock(speed);
  SimTarget target(world, clock, config_in(dir));
  REQUIRE(target.prepare().ok());
  target.set_epoch(clock.now_ns());
  auto h = target.launch({"sim-runner", "--markers", "tail/markers.txt"});
  REQUIRE(h.ok());
  // 1 s of device time per sample.
  targets::TelemetrySampler sampler(target, std::chrono::milliseconds(20));
  sampler.start();
  targets::MarkerTail tail(target, "tail/markers.txt");
  std::string seen;
  std::size_t polls_with_lines = 0;
  bool ended = false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    ended = !(*h)->running();  // read before the poll, so the last poll sees every line
    auto lines = tail.poll();
    if (lines.ok()) {
      polls_with_lines += lines->empty() ? 0 : 1;
      for (const auto& l : *lines)
        seen += l + "\n";
    } else {
      CHECK(lines.error().code == Errc::not_found);  // before the runner created it
    }
    if (ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(ended);
  auto tel = sampler.stop();
  CHECK(seen == world->marker_file_text());
  CHECK(tail.pending().empty());
  CHECK(polls_with_lines > 5);  // followed while written, not read at the end in one go
  CHECK(sampler.errors() == 0);
  CHECK(sampler.samples() > 5);
  // Every sampled value is the world's latest sample at the stamp it was read at.
  const auto* soc = tel.find("thermal/soc");
  REQUIRE(soc != nullptr);
  for (const auto& s : tel.series) {
    const auto* w = world->telemetry().find(s.name);
    REQUIRE(w != nullptr);
    CHECK(s.unit == w->unit);
    for (std::size_t i = 0; i < s.t_ns.size(); ++i) {
      auto it = std::upper_bound(w->t_ns.begin(), w->t_ns.end(), s.t_ns[i]);
      REQUIRE(it != w->t_ns.begin());
      CHECK(s.value[i] == w->value[static_cast<std::size_t>(it - w->t_ns.begin()) - 1]);
    }
  }
}

TEST_CASE("sim target: paths cannot escape the scratch directory, other programs are refused") {
  TempDir dir;
  const auto world = phone_world();
  VirtualClock clock(50.0);
  SimTarget target(world, clock, config_in(dir));
  REQUIRE(target.prepare().ok());
  const auto host = dir / "host.txt";
  std::ofstream(host) << "payload\n";

  for (const std::string bad : {"../escape.txt", "a/../../escape.txt", "/../escape.txt", ""}) {
    INFO(bad);
    auto p = target.push(host, bad);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().code == Errc::invalid_argument);
    auto q = target.pull(bad, dir / "pulled.txt");
    REQUIRE_FALSE(q.ok());
    CHECK(q.error().code == Errc::invalid_argument);
    auto r = target.read_file(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    auto l = target.launch({"sim-runner", "--markers", bad});
    REQUIRE_FALSE(l.ok());
    CHECK(l.error().code == Errc::invalid_argument);
  }
  CHECK_FALSE(std::filesystem::exists(dir / "escape.txt"));
  CHECK_FALSE(std::filesystem::exists(dir / "pulled.txt"));

  // Push, cat and pull round-trip inside it.
  REQUIRE(target.push(host, "/sdcard/in.txt").ok());
  CHECK(test::read_file(dir / "device/sdcard/in.txt") == "payload\n");
  auto cat = target.run({"cat", "/sdcard/in.txt"}, std::chrono::milliseconds(1000));
  REQUIRE(cat.ok());
  CHECK(cat->exit_code == 0);
  CHECK(cat->out == "payload\n");
  auto missing = target.run({"cat", "nope.txt"}, std::chrono::milliseconds(1000));
  REQUIRE(missing.ok());
  CHECK(missing->exit_code == 1);
  CHECK(target.run({"true"}, std::chrono::milliseconds(1000))->exit_code == 0);
  REQUIRE(target.pull("/sdcard/in.txt", dir / "back.txt").ok());
  CHECK(test::read_file(dir / "back.txt") == "payload\n");
  auto nf = target.read_file("never-written.txt");
  REQUIRE_FALSE(nf.ok());
  CHECK(nf.error().code == Errc::not_found);

  auto other = target.launch({"llama-cli", "-m", "model.gguf"});
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().code == Errc::unsupported);
  CHECK(other.error().message.find("llama-cli") != std::string::npos);
  auto other_run = target.run({"uname", "-a"}, std::chrono::milliseconds(1000));
  REQUIRE_FALSE(other_run.ok());
  CHECK(other_run.error().code == Errc::unsupported);
  CHECK(other_run.error().message.find("uname") != std::string::npos);
  auto no_markers = target.launch({"sim-runner"});
  REQUIRE_FALSE(no_markers.ok());
  CHECK(no_markers.error().code == Errc::invalid_argument);
}
