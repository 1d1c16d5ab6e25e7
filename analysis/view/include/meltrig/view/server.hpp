// ViewServer: the live page of `meltrig view` (Boost.Beast HTTP and WebSocket on one
// io_context with a fixed number of threads). It follows one capture file with a
// CaptureFollower polled by an asio timer and pushes JSON updates to every WebSocket client;
// the file is only ever opened read-only.
//
// HTTP: GET / (the page), /view.js, /uPlot.iife.min.js, /uPlot.min.css, /api/status (the
// latest update without points); GET /ws upgrades to the WebSocket. Protocol and limits:
// docs/view.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "meltrig/fw/result.hpp"

namespace meltrig::view {

struct ViewOptions {
  std::filesystem::path file;
  /// A marker file to follow for the latest tokens (default: FILE.markers if it exists).
  std::optional<std::filesystem::path> markers;
  std::string bind = "127.0.0.1";               ///< a numeric IPv4 or IPv6 address
  std::uint16_t port = 0;                       ///< 0: an ephemeral port (see ViewServer::port())
  bool allow_remote = false;                    ///< required for an address that is not loopback
  unsigned threads = 2;                         ///< io_context threads
  std::size_t max_connections = 256;            ///< open at once; more get 503 and close
  std::size_t max_request_bytes = 8 * 1024;     ///< request line + headers + body
  std::size_t max_ws_message_bytes = 4 * 1024;  ///< a client's WebSocket message
  std::size_t max_queued_bytes = 4 * 1024 * 1024;  ///< per WebSocket client, then coalesced
  std::chrono::milliseconds poll_interval{250};    ///< how often the file is checked for growth
  std::chrono::seconds idle_timeout{30};           ///< an HTTP connection with no request
  std::size_t max_points = 2000;                   ///< plot buckets (see CaptureFollower)
};

/// Counters of the server's activity (all since start).
struct ViewStats {
  std::uint64_t open_connections = 0;  ///< TCP connections open now (HTTP and WebSocket)
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;        ///< over max_connections
  std::uint64_t http_requests = 0;  ///< requests answered (any status)
  std::uint64_t http_errors = 0;    ///< answered with 4xx/5xx
  std::uint64_t ws_clients = 0;     ///< WebSocket clients connected now
  std::uint64_t ws_sent = 0;        ///< messages written to clients
  std::uint64_t ws_coalesced = 0;   ///< queued messages dropped for a slow client (resent whole)
  std::uint64_t polls = 0;          ///< timer polls of the file
};

class ViewServer {
 public:
  /// Opens the capture (errors name the file), binds (errors name the address and port) and
  /// starts the threads. invalid_argument for a non-loopback `bind` without allow_remote.
  static Result<std::unique_ptr<ViewServer>> start(ViewOptions options);
  ~ViewServer();  ///< stop(), then joins the threads
  ViewServer(const ViewServer&) = delete;
  ViewServer& operator=(const ViewServer&) = delete;

  std::uint16_t port() const;  ///< the bound port (the ephemeral one for port 0)
  std::string url() const;     ///< "http://127.0.0.1:PORT/"
  /// Stops accepting, closes every connection and stops the threads. Idempotent; safe from any
  /// thread except the server's own.
  void stop();
  ViewStats stats() const;

 private:
  struct Impl;
  explicit ViewServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z (numeric addresses only).
bool is_loopback(std::string_view address);

}  // namespace meltrig::view
