// ViewServer: see server.hpp. One io_context run by a fixed number of threads; every connection
// on its own strand; the follower (HDF5 reads) only on `strand`, driven by `timer`.
#include "meltrig/view/server.hpp"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "meltrig/view/follower.hpp"
#include "view_assets.hpp"

namespace meltrig::view {
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {
using Message = std::shared_ptr<const std::string>;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}
}  // namespace

bool is_loopback(std::string_view address) {
  boost::system::error_code ec;
  const auto a = net::ip::make_address(std::string(address), ec);
  if (ec) return false;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).is_loopback();
  }
  return a.is_loopback();
}

class WsSession;

// Everything the sessions share; outlives the io_context (declared before it in Hub).
struct Core {
  ViewOptions opt;
  std::uint16_t port = 0;
  std::atomic<std::uint64_t> open{0}, accepted{0}, refused{0}, requests{0}, errors{0},
      ws_clients{0}, ws_sent{0}, ws_coalesced{0}, polls{0};
  std::mutex mu;  // guards status and clients
  Message status;
  std::vector<std::weak_ptr<WsSession>> clients;

  Message latest_status() {
    std::lock_guard lock(mu);
    return status;
  }
};

// Counts one open TCP connection from accept to close, whichever session holds it.
class ConnSlot {
 public:
  explicit ConnSlot(Core& c) : core_(&c) { ++c.open; }
  ConnSlot(ConnSlot&& o) noexcept : core_(std::exchange(o.core_, nullptr)) {}
  ConnSlot& operator=(ConnSlot&&) = delete;
  ~ConnSlot() {
    if (core_ != nullptr) --core_->open;
  }

 private:
  Core* core_;
};

// The server's state; ViewServer::Impl is this (a name the sessions may use).
struct Hub {
  Core core;
  std::optional<CaptureFollower> follower;  // used on `strand` only
  std::string poll_error;
  net::io_context ioc;
  net::strand<net::io_context::executor_type> strand{net::make_strand(ioc)};
  net::steady_timer timer{strand};
  net::steady_timer accept_retry{ioc};
  tcp::acceptor acceptor{ioc};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::jthread> threads;
  std::atomic<bool> stopped{false};

  Result<void> listen();
  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void refuse(tcp::socket& socket);
  void arm_timer();
  void tick();
  void publish(std::size_t first_bucket);
  void send_full(const std::shared_ptr<WsSession>& s, bool register_client);
  void send_since(const std::shared_ptr<WsSession>& s, std::uint64_t since);
};

// ---------------------------------------------------------------------------------------------
// WebSocket session: writes queued messages one at a time; a queue over the byte limit is
// dropped and replaced by one full update (a slow client skips frames, never grows memory).
class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket&& socket, ConnSlot slot, Hub& server)
      : server_(server), slot_(std::move(slot)), ws_(std::move(socket)) {
    ++server_.core.ws_clients;
  }
  ~WsSession() { --server_.core.ws_clients; }

  void run(Request req) {
    ws_.set_option(
        websocket::stream_base::timeout{std::chrono::seconds(30), std::chrono::seconds(60), true});
    ws_.read_message_max(server_.core.opt.max_ws_message_bytes);
    ws_.async_accept(req, beast::bind_front_handler(&WsSession::on_accept, shared_from_this()));
  }

  /// From any thread: queue `msg` (full: a complete update that replaces anything queued).
  void deliver(Message msg, bool full) {
    net::post(ws_.get_executor(), [self = shared_from_this(), msg = std::move(msg), full] {
      self->enqueue(msg, full);
    });
  }

 private:
  void on_accept(beast::error_code ec) {
    if (ec) return;
    ws_.text(true);
    server_.send_full(shared_from_this(), true);
    do_read();
  }

  void do_read() {
    ws_.async_read(in_, beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
  }

  // {"since": sample_index}: the buckets from that sample on. Anything else gets an error message.
  void on_read(beast::error_code ec, std::size_t) {
    if (ec) {
      closed_ = true;
      return;
    }
    const auto j = nlohmann::json::parse(beast::buffers_to_string(in_.data()), nullptr, false);
    in_.consume(in_.size());
    if (j.is_object() && j.contains("since") && j["since"].is_number_unsigned()) {
      server_.send_since(shared_from_this(), j["since"].get<std::uint64_t>());
    } else {
      const nlohmann::json err = {{"type", "error"},
                                  {"message", "expected {\"since\": sample_index}"}};
      enqueue(std::make_shared<const std::string>(err.dump()), false);
    }
    do_read();
  }

  void enqueue(const Message& msg, bool full) {
    if (closed_) return;
    const std::size_t limit = server_.core.opt.max_queued_bytes;
    if (full) {
      drop_queued();
      needs_full_ = false;
    } else if (needs_full_) {
      return;  // a full update is on its way
    } else if (queued_bytes_ + msg->size() > limit) {
      drop_queued();
      needs_full_ = true;
      server_.send_full(shared_from_this(), false);
      return;
    }
    queue_.push_back(msg);
    queued_bytes_ += msg->size();
    if (!writing_) write_next();
  }

  // Drops every queued message except the one being written.
  void drop_queued() {
    const std::size_t keep = writing_ ? 1 : 0;
    while (queue_.size() > keep) {
      queued_bytes_ -= queue_.back()->size();
      queue_.pop_back();
      ++server_.core.ws_coalesced;
    }
  }

  void write_next() {
    writing_ = true;
    ws_.async_write(net::buffer(*queue_.front()),
                    beast::bind_front_handler(&WsSession::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    queued_bytes_ -= queue_.front()->size();
    queue_.pop_front();
    writing_ = false;
    if (ec) {
      closed_ = true;
      queue_.clear();
      return;
    }
    ++server_.core.ws_sent;
    if (!queue_.empty()) write_next();
  }

  Hub& server_;
  ConnSlot slot_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer in_;
  std::deque<Message> queue_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false, needs_full_ = false, closed_ = false;
};

void Hub::send_full(const std::shared_ptr<WsSession>& s, bool register_client) {
  net::post(strand, [this, s, register_client] {
    if (!follower) return;
    s->deliver(std::make_shared<const std::string>(follower->update_json(0)), true);
    if (register_client) {
      std::lock_guard lock(core.mu);
      core.clients.push_back(s);
    }
  });
}

void Hub::send_since(const std::shared_ptr<WsSession>& s, std::uint64_t since) {
  net::post(strand, [this, s, since] {
    if (follower)
      s->deliver(std::make_shared<const std::string>(follower->update_since_json(since)), true);
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP session: one request at a time (keep-alive), bounded request size, idle timeout.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, Hub& server)
      : server_(server), slot_(server.core), stream_(std::move(socket)) {}

  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::do_read, shared_from_this()));
  }

 private:
  const ViewOptions& opt() const { return server_.core.opt; }

  void do_read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(opt().max_request_bytes));
    parser_->body_limit(opt().max_request_bytes);
    stream_.expires_after(opt().idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout) return close();
    if (ec) {
      // A malformed or oversized request gets its 4xx; anything else (reset) just closes.
      const bool limit = ec == http::error::header_limit || ec == http::error::body_limit ||
                         ec == http::error::buffer_overflow;
      if (limit || ec.category() == http::make_error_code(http::error::bad_target).category()) {
        return send(error_response(
            limit ? http::status::request_header_fields_too_large : http::status::bad_request, 11,
            "bad request: " + ec.message()));
      }
      return close();
    }
    Request req = parser_->release();
    if (websocket::is_upgrade(req) && path_of(req) == "/ws") return upgrade(std::move(req));
    send(respond(req));
  }

  static std::string_view path_of(const Request& req) {
    const std::string_view t = sv(req.target());
    return t.substr(0, t.find('?'));
  }

  // DNS rebinding: on a loopback bind, only a loopback Host is served.
  bool host_allowed(const Request& req) const {
    if (opt().allow_remote) return true;
    const std::string p = ":" + std::to_string(server_.core.port);
    const std::string_view h = sv(req[http::field::host]);
    for (const std::string& base :
         {std::string("127.0.0.1"), std::string("localhost"), std::string("[::1]"), opt().bind}) {
      if (h == base || h == base + p) return true;
    }
    return false;
  }

  void upgrade(Request req) {
    const std::string_view origin = sv(req[http::field::origin]);
    if (!host_allowed(req) ||
        (!origin.empty() && origin != "http://" + std::string(sv(req[http::field::host])))) {
      return send(error_response(http::status::forbidden, req.version(), "origin not allowed"));
    }
    stream_.expires_never();
    std::make_shared<WsSession>(stream_.release_socket(), std::move(slot_), server_)
        ->run(std::move(req));
  }

  Response respond(const Request& req) const {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      Response r = error_response(http::status::method_not_allowed, req.version(), "GET only");
      r.set(http::field::allow, "GET, HEAD");
      return r;
    }
    if (!host_allowed(req)) {
      return error_response(http::status::forbidden, req.version(), "host not allowed");
    }
    const std::string_view path = path_of(req);
    Response r;
    if (path == "/api/status") {
      const Message s = server_.core.latest_status();
      r = make(http::status::ok, req.version(), "application/json", s ? *s : "{}");
    } else if (path == "/ws") {
      r = error_response(http::status::upgrade_required, req.version(), "WebSocket only");
    } else {
      const std::string_view p = path == "/index.html" ? "/" : path;
      const auto assets = view_assets();
      const auto it = std::ranges::find(assets, p, &Asset::path);
      if (it == assets.end())
        return error_response(http::status::not_found, req.version(), "not found");
      r = make(http::status::ok, req.version(), it->content_type, std::string(it->bytes));
    }
    r.keep_alive(req.keep_alive());
    if (req.method() == http::verb::head) {
      const auto n = r.body().size();
      r.body().clear();
      r.content_length(n);
    }
    return r;
  }

  static Response make(http::status status, unsigned version, std::string_view type,
                       std::string body) {
    Response r{status, version};
    r.set(http::field::server, "meltrig-view");
    r.set(http::field::content_type, beast::string_view(type.data(), type.size()));
    r.set(http::field::cache_control, "no-store");
    r.set("X-Content-Type-Options", "nosniff");
    r.body() = std::move(body);
    r.prepare_payload();
    return r;
  }

  static Response error_response(http::status status, unsigned version, const std::string& what) {
    Response r = make(status, version, "text/plain; charset=utf-8", what + "\n");
    r.keep_alive(false);
    return r;
  }

  void send(Response res) {
    ++server_.core.requests;
    if (res.result_int() >= 400) ++server_.core.errors;
    auto sp = std::make_shared<Response>(std::move(res));
    http::async_write(stream_, *sp,
                      [self = shared_from_this(), sp](beast::error_code ec, std::size_t) {
                        if (ec || sp->need_eof()) return self->close();
                        self->do_read();
                      });
  }

  // Lingering close: stop sending, then read and discard what the client still sends (bounded
  // in time and bytes), so closing with unread input does not reset the connection before the
  // client has read our response (e.g. a 431 sent before the whole header arrived).
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(5));
    drain(0);
  }

  void drain(std::size_t drained) {
    if (drained > 1024 * 1024) return;
    stream_.async_read_some(net::buffer(discard_), [self = shared_from_this(), drained](
                                                       beast::error_code ec, std::size_t n) {
      if (!ec) self->drain(drained + n);
    });
  }

  Hub& server_;
  ConnSlot slot_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 4096> discard_{};
};

// ---------------------------------------------------------------------------------------------
Result<void> Hub::listen() {
  const std::string where = core.opt.bind + " port " + std::to_string(core.opt.port);
  boost::system::error_code ec;
  const auto address = net::ip::make_address(core.opt.bind, ec);
  if (ec) return Error{Errc::invalid_argument, core.opt.bind + ": not a numeric IP address"};
  const tcp::endpoint ep{address, core.opt.port};
  if (acceptor.open(ep.protocol(), ec); ec) {
    return Error{Errc::io_error, "cannot open a socket for " + where + ": " + ec.message()};
  }
  acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (acceptor.bind(ep, ec); ec) {
    return Error{Errc::io_error, "cannot bind " + where + ": " + ec.message()};
  }
  if (acceptor.listen(net::socket_base::max_listen_connections, ec); ec) {
    return Error{Errc::io_error, "cannot listen on " + where + ": " + ec.message()};
  }
  core.port = acceptor.local_endpoint().port();
  return {};
}

void Hub::do_accept() {
  acceptor.async_accept(net::make_strand(ioc), beast::bind_front_handler(&Hub::on_accept, this));
}

void Hub::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
  if (ec) {  // e.g. out of file descriptors: try again shortly instead of spinning
    accept_retry.expires_after(std::chrono::milliseconds(100));
    accept_retry.async_wait([this](beast::error_code e) {
      if (!e && acceptor.is_open()) do_accept();
    });
    return;
  }
  ++core.accepted;
  if (core.open.load() >= core.opt.max_connections) {
    refuse(socket);
  } else {
    std::make_shared<HttpSession>(std::move(socket), *this)->run();
  }
  do_accept();
}

// Over the connection limit: one non-blocking attempt at a 503, then close.
void Hub::refuse(tcp::socket& socket) {
  ++core.refused;
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n";
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(net::buffer(kBusy), ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void Hub::arm_timer() {
  timer.expires_after(core.opt.poll_interval);
  timer.async_wait([this](beast::error_code ec) {
    if (ec || stopped) return;
    tick();
    arm_timer();
  });
}

// On `strand`: checks the file for growth and sends what changed to every client.
void Hub::tick() {
  ++core.polls;
  auto changed = follower->poll();
  if (!changed) {
    if (changed.error().message == poll_error) return;
    poll_error = changed.error().message;  // e.g. the file was deleted: keep what was shown
    const nlohmann::json err = {{"type", "error"}, {"message", poll_error}};
    const auto msg = std::make_shared<const std::string>(err.dump());
    std::lock_guard lock(core.mu);
    for (const auto& w : core.clients)
      if (auto s = w.lock()) s->deliver(msg, false);
    return;
  }
  poll_error.clear();
  if (*changed) publish(follower->take_changed_from());
}

void Hub::publish(std::size_t first_bucket) {
  const auto status = std::make_shared<const std::string>(follower->status_json());
  const auto msg = std::make_shared<const std::string>(follower->update_json(first_bucket));
  std::lock_guard lock(core.mu);
  core.status = status;
  std::erase_if(core.clients, [](const std::weak_ptr<WsSession>& w) { return w.expired(); });
  for (const auto& w : core.clients)
    if (auto s = w.lock()) s->deliver(msg, false);
}

struct ViewServer::Impl : Hub {};

ViewServer::ViewServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ViewServer::~ViewServer() {
  stop();
}

Result<std::unique_ptr<ViewServer>> ViewServer::start(ViewOptions options) {
  if (!options.allow_remote && !is_loopback(options.bind)) {
    return Error{Errc::invalid_argument,
                 options.bind +
                     " is not a loopback address: serving a capture beyond this "
                     "machine needs allow_remote (--allow-remote)"};
  }
  auto follower = CaptureFollower::open(
      options.file, {.max_points = options.max_points, .markers = options.markers});
  if (!follower) return follower.error();
  auto impl = std::make_unique<Impl>();
  impl->core.opt = std::move(options);
  impl->core.opt.threads = std::max(1u, impl->core.opt.threads);
  impl->follower = std::move(*follower);
  impl->follower->take_changed_from();
  impl->core.status = std::make_shared<const std::string>(impl->follower->status_json());
  if (auto l = impl->listen(); !l) return l.error();
  impl->work.emplace(impl->ioc.get_executor());
  impl->do_accept();
  net::post(impl->strand, [p = impl.get()] { p->arm_timer(); });
  for (unsigned i = 0; i < impl->core.opt.threads; ++i) {
    impl->threads.emplace_back([p = impl.get()] {
      for (;;) {
        try {
          p->ioc.run();
          return;
        } catch (const std::exception&) {  // a handler threw: keep serving the others
        }
      }
    });
  }
  return std::unique_ptr<ViewServer>(new ViewServer(std::move(impl)));
}

std::uint16_t ViewServer::port() const {
  return impl_->core.port;
}

std::string ViewServer::url() const {
  const std::string& b = impl_->core.opt.bind;
  const bool v6 = b.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + b + "]" : b) + ":" + std::to_string(port()) + "/";
}

void ViewServer::stop() {
  if (impl_->stopped.exchange(true)) return;
  net::post(impl_->ioc, [p = impl_.get()] {
    beast::error_code ignored;
    p->acceptor.close(ignored);
    p->accept_retry.cancel();
  });
  net::post(impl_->strand, [p = impl_.get()] { p->timer.cancel(); });
  impl_->work.reset();
  impl_->ioc.stop();  // open connections are closed when their sessions are destroyed
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
}

ViewStats ViewServer::stats() const {
  const Core& c = impl_->core;
  return {.open_connections = c.open,
          .accepted = c.accepted,
          .refused = c.refused,
          .http_requests = c.requests,
          .http_errors = c.errors,
          .ws_clients = c.ws_clients,
          .ws_sent = c.ws_sent,
          .ws_coalesced = c.ws_coalesced,
          .polls = c.polls};
}

}  // namespace meltrig::view
