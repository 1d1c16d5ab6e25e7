// meltrig view (analysis/view/): the follower against known sample values, and the server on a
// capture that is still being written, on malformed requests and under 50 concurrent clients.
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <utility>  // before Asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <thread>

#include "meltrig/dataset/capture_writer.hpp"
#include "meltrig/dataset/run_record.hpp"
#include "meltrig/targets/markers.hpp"
#include "meltrig/view/follower.hpp"
#include "meltrig/view/server.hpp"
#include "test_support.hpp"

namespace {
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using nlohmann::json;
using namespace meltrig;
using meltrig::test::TempDir;

constexpr double kRate = 1000.0;
constexpr float kVolts = 4.0f;
float current_at(std::uint64_t i) {
  return 0.1f + 0.001f * static_cast<float>(i % 100);
}

dataset::CaptureLayout layout() {
  dataset::CaptureLayout l;
  l.sample_rate_hz = kRate;
  l.channels = {{"current", "A", dataset::SampleType::f32, "current"},
                {"voltage", "V", dataset::SampleType::f32, "voltage"}};
  l.chunk_samples = 256;
  l.counter_names = {"missing_samples"};
  return l;
}

// Appends samples [first, end) and flushes (no doctest macros: also called on a writer thread).
bool append_ok(dataset::CaptureWriter& w, std::uint64_t first, std::uint64_t end) {
  std::vector<float> cur, volt(end - first, kVolts);
  for (std::uint64_t i = first; i < end; ++i)
    cur.push_back(current_at(i));
  const std::array<dataset::ChannelData, 2> ch{std::span<const float>(cur),
                                               std::span<const float>(volt)};
  return w.append(dataset::SampleBlock{ch}).ok() && w.flush().ok();
}

void append(dataset::CaptureWriter& w, std::uint64_t first, std::uint64_t end) {
  REQUIRE(append_ok(w, first, end));
}

// The true mean power of samples [a, b), in double.
double power_mean(std::uint64_t a, std::uint64_t b) {
  double s = 0;
  for (std::uint64_t i = a; i < b; ++i)
    s += static_cast<double>(current_at(i)) * kVolts;
  return s / static_cast<double>(b - a);
}

dataset::CaptureWriter live_capture(const std::filesystem::path& file, std::uint64_t samples) {
  auto w = dataset::CaptureWriter::create(file, layout());
  REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.error().describe()));
  append(*w, 0, samples);
  return std::move(*w);
}

// Every bucket's mean against the truth (bucket j covers [j*B, min((j+1)*B, n))).
void check_buckets(const view::CaptureFollower& f) {
  const auto B = f.bucket_samples();
  const auto n = f.samples_written();
  REQUIRE(f.buckets().size() == (n + B - 1) / B);
  std::size_t bad = 0;
  for (std::size_t j = 0; j < f.buckets().size(); ++j) {
    const double truth = power_mean(j * B, std::min((j + 1) * B, n));
    bad += std::abs(f.buckets()[j].mean - truth) > 1e-5 * truth ? 1 : 0;
  }
  CHECK(bad == 0);
}

TEST_CASE("view follower: buckets follow the growing file, merge, and match the samples") {
  TempDir dir;
  const auto file = dir / "grow.h5";
  auto w = live_capture(file, 300);
  view::FollowerOptions o;
  o.max_points = 16;
  auto f = view::CaptureFollower::open(file, o);
  REQUIRE_MESSAGE(f.ok(), (f.ok() ? "" : f.error().describe()));
  CHECK(f->series() == "power");
  CHECK(f->bucket_samples() == 32);  // 300 samples in at most 16 buckets
  check_buckets(*f);
  CHECK(f->take_changed_from() == 0);
  // Grow past several bucket doublings (summaries at level 8 take over from the samples).
  for (std::uint64_t n = 300; n < 20000; n += 1700) {
    append(w, n, n + 1700);
    auto changed = f->poll();
    REQUIRE(changed.ok());
    CHECK(*changed);
    check_buckets(*f);
  }
  CHECK(f->bucket_samples() == 2048);  // 20,700 samples in at most 16 buckets
  CHECK_FALSE(*f->poll());             // nothing new
  CHECK(f->take_changed_from() == 0);  // the bucket size changed since the first call
  REQUIRE(w.finish(dataset::CaptureState::complete, "done").ok());
  CHECK(*f->poll());
  CHECK(f->state() == dataset::CaptureState::complete);
  const auto j = json::parse(f->update_json(0));
  CHECK(j["samples_written"] == 20700);
  CHECK(j["state"] == "complete");
  CHECK(j["points"]["t"].size() == 11);
  CHECK(j["points"]["t"][1].get<double>() == doctest::Approx(2048 / kRate));
}

TEST_CASE("view follower: the latest tokens come from the marker file beside the capture") {
  TempDir dir;
  const auto file = dir / "run.h5";
  auto w = live_capture(file, 100);
  std::ofstream(file.string() + ".markers") << "meltrig-markers 1 clock=monotonic\n"
                                               "1000000000 run.start id=x\n"
                                               "1500000000 token index=0\n"
                                               "1750000000 token index=1\n";
  view::FollowerOptions o;
  o.latest_tokens = 1;
  auto f = view::CaptureFollower::open(file, o);
  REQUIRE(f.ok());
  CHECK(f->token_count() == 2);
  const auto j = json::parse(f->status_json());
  CHECK(j["tokens"]["count"] == 2);
  REQUIRE(j["tokens"]["latest"].size() == 1);
  CHECK(j["tokens"]["latest"][0]["index"] == 1);
  CHECK(j["tokens"]["latest"][0]["t_s"].get<double>() == doctest::Approx(0.75));
}

TEST_CASE("view follower: a finished capture's stored markers give the tokens") {
  TempDir dir;
  const auto file = dir / "done.h5";
  {
    auto w = live_capture(file, 100);
    REQUIRE(w.finish(dataset::CaptureState::complete, "done").ok());
  }
  auto log = targets::parse_markers(
      "meltrig-markers 1 clock=monotonic\n"
      "2000000000 run.start id=x\n"
      "2250000000 token index=0\n"
      "2500000000 run.end status=ok\n",
      "m");
  REQUIRE(log.ok());
  REQUIRE(dataset::write_markers(file, "runner", *log).ok());
  // Markers are read once the file has been quiet for a second: date it back.
  std::filesystem::last_write_time(
      file, std::filesystem::file_time_type::clock::now() - std::chrono::seconds(10));
  auto f = view::CaptureFollower::open(file, {});
  REQUIRE(f.ok());
  CHECK(f->token_count() == 1);
  const auto j = json::parse(f->status_json());
  CHECK(j["tokens"]["source"] == "/markers/runner");
  CHECK(j["tokens"]["last_event"] == "run.end");
  CHECK(j["tokens"]["latest"][0]["t_s"].get<double>() == doctest::Approx(0.25));
  CHECK_FALSE(*f->poll());  // the reader was reopened and nothing changed
  CHECK(f->samples_written() == 100);
}

// A synchronous HTTP/1.1 exchange on a fresh connection: status and body.
std::pair<int, std::string> http_get(std::uint16_t port, const std::string& target) {
  net::io_context ioc;
  tcp::socket s(ioc);
  s.connect({net::ip::make_address("127.0.0.1"), port});
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return {res.result_int(), res.body()};
}

// Sends raw bytes, returns everything the server sends before it closes.
std::string raw_exchange(std::uint16_t port, const std::string& bytes) {
  net::io_context ioc;
  tcp::socket s(ioc);
  s.connect({net::ip::make_address("127.0.0.1"), port});
  net::write(s, net::buffer(bytes));
  std::string out;
  beast::error_code ec;
  std::array<char, 4096> buf{};
  for (std::size_t n; (n = s.read_some(net::buffer(buf), ec)) > 0 || !ec;)
    out.append(buf.data(), n);
  return out;
}

// Resident memory of process `pid` (a separate `meltrig view`, so the clients' own threads and
// allocator arenas in this process do not count).
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// `count` GETs spread over `clients` concurrent clients; returns how many came back 200 with a
// body.
int flood(std::uint16_t port, int clients, int each) {
  static const std::array<std::string, 3> paths{"/api/status", "/", "/uPlot.iife.min.js"};
  std::atomic<int> ok{0};
  std::vector<std::jthread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int r = 0; r < each; ++r) {
        try {
          const auto [code, body] = http_get(port, paths[(c + r) % paths.size()]);
          ok += code == 200 && !body.empty() ? 1 : 0;
        } catch (const std::exception&) {
        }
      }
    });
  }
  threads.clear();  // joins
  return ok.load();
}

view::ViewOptions options(const std::filesystem::path& file) {
  view::ViewOptions o;
  o.file = file;
  o.port = 0;
  o.poll_interval = std::chrono::milliseconds(20);
  return o;
}

// A finished capture of `samples` samples, served.
std::unique_ptr<view::ViewServer> serve_finished(const std::filesystem::path& file,
                                                 std::uint64_t samples) {
  {
    auto w = live_capture(file, samples);
    REQUIRE(w.finish(dataset::CaptureState::complete, "done").ok());
  }
  auto server = view::ViewServer::start(options(file));
  REQUIRE_MESSAGE(server.ok(), (server.ok() ? "" : server.error().describe()));
  return std::move(*server);
}

}  // namespace

TEST_CASE(
    "meltrig view: a WebSocket client sees the sample count grow while the capture is written") {
  TempDir dir;
  const auto file = dir / "live.h5";
  constexpr std::uint64_t kStart = 1000, kRound = 3000, kRounds = 5;
  constexpr std::uint64_t kTotal = kStart + kRound * kRounds;
  auto w = live_capture(file, kStart);
  auto server = view::ViewServer::start(options(file));
  REQUIRE_MESSAGE(server.ok(), (server.ok() ? "" : server.error().describe()));
  const std::uint16_t port = (*server)->port();
  CHECK(port != 0);
  net::io_context ioc;
  websocket::stream<tcp::socket> ws(ioc);
  ws.next_layer().connect({net::ip::make_address("127.0.0.1"), port});
  ws.handshake("127.0.0.1:" + std::to_string(port), "/ws");

  // The writer adds a round only once the client has seen the previous count, so growth is seen
  // however slow the machine; every wait is bounded.
  std::mutex mu;
  std::condition_variable_any cv;
  std::uint64_t seen = 0;
  std::atomic<bool> writer_ok{true};
  std::jthread writer([&](std::stop_token st) {
    for (std::uint64_t n = kStart; n <= kTotal; n += kRound) {
      std::unique_lock lk(mu);
      if (!cv.wait_for(lk, st, std::chrono::seconds(60), [&] { return seen >= n; })) {
        writer_ok = false;
        return;
      }
      lk.unlock();
      const bool ok = n == kTotal ? w.finish(dataset::CaptureState::complete, "done").ok()
                                  : append_ok(w, n, n + kRound);
      if (!ok) writer_ok = false;
    }
  });
  // Should the server go silent, the read fails after 120 s instead of hanging the suite.
  std::jthread watchdog([&](std::stop_token st) {
    std::mutex m;
    std::condition_variable_any c;
    std::unique_lock lk(m);
    if (!c.wait_for(lk, st, std::chrono::seconds(120), [] { return false; }))
      ::shutdown(ws.next_layer().native_handle(), SHUT_RDWR);
  });

  std::vector<std::uint64_t> counts;
  std::uint64_t bucket = 0;
  std::vector<double> t, mean;
  std::string state;
  beast::flat_buffer buf;
  while (state != "complete" && writer_ok) {
    ws.read(buf);
    const auto m = json::parse(beast::buffers_to_string(buf.data()));
    buf.consume(buf.size());
    REQUIRE(m["type"] == "update");
    const std::uint64_t n = m["samples_written"];
    if (counts.empty() || n != counts.back()) counts.push_back(n);
    state = m["state"];
    const auto& p = m["points"];
    REQUIRE((p["first"] == 0 || p["bucket"] == bucket));  // a new bucket size resends all
    bucket = p["bucket"];
    t.resize(p["first"]);
    mean.resize(p["first"]);
    for (std::size_t i = 0; i < p["t"].size(); ++i) {
      t.push_back(p["t"][i]);
      mean.push_back(p["mean"][i]);
    }
    if (counts.size() == 1 && n == kStart) ws.write(net::buffer(std::string(R"({"since": 0})")));
    std::lock_guard lk(mu);
    seen = n;
    cv.notify_all();
  }
  CHECK(writer_ok);
  INFO("counts seen: " << counts.size());
  CHECK(counts.size() == kRounds + 1);  // every round's count was received
  CHECK(std::is_sorted(counts.begin(), counts.end()));
  CHECK(counts.back() == kTotal);
  REQUIRE(t.size() == (kTotal + bucket - 1) / bucket);
  std::size_t bad = 0;
  for (std::size_t j = 0; j < t.size(); ++j) {
    const double truth = power_mean(j * bucket, std::min((j + 1) * bucket, kTotal));
    bad +=
        std::abs(mean[j] - truth) > 1e-5 * truth || t[j] != static_cast<double>(j * bucket) / kRate
            ? 1
            : 0;
  }
  CHECK(bad == 0);
  ws.close(websocket::close_code::normal);
}

TEST_CASE("meltrig view: malformed and refused requests get a 4xx and the server stays up") {
  TempDir dir;
  const auto file = dir / "done.h5";
  auto server = serve_finished(file, 1000);
  const std::uint16_t port = server->port();
  const std::string host = "Host: 127.0.0.1:" + std::to_string(port) + "\r\n";
  const auto status_of = [&](const std::string& bytes) {
    return raw_exchange(port, bytes).substr(0, 12);
  };
  CHECK(status_of("NONSENSE\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status_of("GET /\x01 HTTP/1.1\r\n" + host + "\r\n") == "HTTP/1.1 400");
  CHECK(status_of("GET / HTTP/1.1\r\n" + host + "X-Big: " + std::string(20000, 'a') + "\r\n\r\n") ==
        "HTTP/1.1 431");
  CHECK(status_of("POST / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n") == "HTTP/1.1 405");
  CHECK(status_of("GET / HTTP/1.1\r\nHost: evil.example:80\r\n\r\n") == "HTTP/1.1 403");
  CHECK(http_get(port, "/nope").first == 404);
  CHECK(http_get(port, "/ws").first == 426);
  // ... and the next requests succeed.
  const auto [code, body] = http_get(port, "/api/status");
  CHECK(code == 200);
  const auto j = json::parse(body);
  CHECK(j["state"] == "complete");
  CHECK(j["samples_written"] == 1000);
  const auto page = http_get(port, "/");
  CHECK(page.first == 200);
  CHECK(page.second.find("/uPlot.iife.min.js") != std::string::npos);
  CHECK(http_get(port, "/uPlot.iife.min.js").second.find("uPlot") != std::string::npos);
  CHECK(server->stats().http_errors == 7);
  // A non-loopback address needs allow_remote.
  auto remote = options(file);
  remote.bind = "0.0.0.0";
  const auto refused = view::ViewServer::start(remote);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("--allow-remote") != std::string::npos);
  CHECK(view::is_loopback("127.0.0.2"));
  CHECK(view::is_loopback("::1"));
  CHECK_FALSE(view::is_loopback("192.168.1.2"));
}

TEST_CASE("meltrig view: 1,000 requests from 50 concurrent clients, every one answered") {
  TempDir dir;
  const auto file = dir / "done.h5";
  auto server = serve_finished(file, 50000);
  const std::uint16_t port = server->port();
  CHECK(flood(port, 50, 20) == 1000);
  CHECK(http_get(port, "/api/status").first == 200);
  const auto s = server->stats();
  CHECK(s.refused == 0);
  CHECK(s.http_requests >= 1001);
  CHECK(s.http_errors == 0);
  // Every connection is closed again (bounded wait: the server sees each client's close).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (server->stats().open_connections > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(server->stats().open_connections == 0);
}

TEST_CASE("meltrig view: the server's memory stays flat over 1,000 requests from 50 clients") {
  TempDir dir;
  const auto file = dir / "done.h5";
  {
    auto w = live_capture(file, 50000);
    REQUIRE(w.finish(dataset::CaptureState::complete, "done").ok());
  }
  test::Process view({test::cli(), "view", file.string(), "--port", "0", "--seconds", "600"},
                     dir.path(), "view");
  // The command prints its URL once it listens ("... at http://127.0.0.1:PORT/ ...").
  std::uint16_t port = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (port == 0 && std::chrono::steady_clock::now() < until) {
    const std::string out = view.out();
    if (const auto at = out.find("http://127.0.0.1:");
        at != std::string::npos && out.find('/', at + 17) != std::string::npos)
      port = static_cast<std::uint16_t>(std::stoi(out.substr(at + 17)));
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE_MESSAGE(port != 0, view.err());
  CHECK(flood(port, 50, 2) == 100);  // warm-up: the server's buffers and caches exist from here on
  const long before = rss_kib(view.pid());
  CHECK(flood(port, 50, 20) == 1000);
  const long after = rss_kib(view.pid());
  MESSAGE("meltrig view RSS before " << before << " KiB, after " << after << " KiB");
  CHECK(before > 0);
#ifndef MELTRIG_SANITIZED
  CHECK(after - before < 16 * 1024);
#else
  // Under ASan, freed memory waits in its quarantine (up to 256 MB): the growth measures that,
  // not the server. The bound is checked in the release suite.
#endif
  view.signal(SIGINT);
  CHECK(view.wait() == 0);
}
