// HTTP/1.1 server base: listeners, sessions (plain and TLS), limits, timeouts, built-ins and
// graceful shutdown. The connection life and shutdown rules are stated in http_server.hpp; the
// functions named there (wait_request, read_header, read_body, dispatch, send) are in Session.
#include "stacknode/common/http_server.hpp"

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <atomic>
#include <csignal>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "stacknode/common/log.hpp"

namespace stacknode::http {
namespace {

// One page: nearly every request head arrives whole in the first read.
constexpr std::size_t first_read_bytes = 4096;
// After a rejected request the client may still be sending; reading (and dropping) for a moment
// before closing lets it see our answer instead of a connection reset.
constexpr auto linger_timeout = std::chrono::seconds(2);
constexpr std::size_t linger_read_bytes = 16 * 1024;
// A TLS close_notify that the peer never answers must not hold the connection.
constexpr auto tls_shutdown_timeout = std::chrono::seconds(2);
// Pause before accepting again after the process ran out of file descriptors.
constexpr auto accept_retry_delay = std::chrono::milliseconds(100);

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void begin_shutdown() = 0;
  virtual void force_close() = 0;
};

struct Worker {
  explicit Worker(unsigned worker_index)
      : index(worker_index), io(std::make_unique<asio::io_context>(1)) {}
  ~Worker() {
    // Asio objects go before their io_context; the session set stays alive while the io_context
    // destroys handlers that still hold sessions.
    acceptors.clear();
    drain_timer.reset();
    io.reset();
  }
  unsigned index;
  std::unique_ptr<asio::io_context> io;
  std::unordered_set<SessionBase*> sessions;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::optional<asio::steady_timer> drain_timer;
  bool stopping = false;
};

// The Date header every response carries (RFC 9110 section 6.6.1), formatted once a second per
// thread rather than once a request.
std::string_view http_date_now() {
  thread_local std::time_t formatted_second = 0;
  thread_local char text[32] = {};
  const std::time_t now = std::time(nullptr);
  if (now != formatted_second) {
    std::tm utc{};
    gmtime_r(&now, &utc);
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc);
    formatted_second = now;
  }
  return text;
}

bool is_client_gone(const boost::system::error_code& error) {
  return error == bhttp::error::end_of_stream || error == asio::error::eof ||
         error == asio::error::connection_reset || error == asio::error::broken_pipe ||
         error == asio::error::operation_aborted || error == asio::ssl::error::stream_truncated;
}

}  // namespace

bhttp::response<bhttp::string_body> text_response(bhttp::status status, unsigned version,
                                                  std::string body,
                                                  std::string_view content_type) {
  bhttp::response<bhttp::string_body> response{status, version};
  response.set(bhttp::field::content_type, content_type);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

tcp::endpoint parse_endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    throw std::invalid_argument("'" + std::string(text) + "' is not host:port");
  }
  std::string host(text.substr(0, colon));
  const std::string port_text(text.substr(colon + 1));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(port_text, &used);
    if (used != port_text.size() || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw std::invalid_argument("'" + std::string(text) + "': port must be 0-65535");
  }
  boost::system::error_code error;
  const auto address = asio::ip::make_address(host, error);
  if (error) {
    throw std::invalid_argument("'" + std::string(text) + "': '" + host +
                                "' is not an IP address (names are not resolved)");
  }
  return tcp::endpoint(address, static_cast<unsigned short>(port));
}

struct Server::Impl {
  Impl(ServerOptions server_options, Handler& request_handler, metrics::Registry& metric_registry,
       std::shared_ptr<TlsContext> tls_context)
      : options(std::move(server_options)),
        handler(request_handler),
        registry(metric_registry),
        tls(std::move(tls_context)) {
    if (options.threads == 0) options.threads = 1;
    for (unsigned index = 0; index < options.threads; ++index) {
      workers.push_back(std::make_unique<Worker>(index));
    }
    const std::string& prefix = options.metrics_prefix;
    for (unsigned status_class = 1; status_class <= 5; ++status_class) {
      responses_by_class[status_class] = &registry.counter(
          prefix + "_http_responses_total", "HTTP responses sent, by status class.",
          {{"code", std::to_string(status_class) + "xx"}});
    }
    request_seconds = &registry.histogram(prefix + "_http_request_duration_seconds",
                                          "Time from the first byte of a request to its last "
                                          "response byte.",
                                          metrics::default_latency_buckets());
    connections_open = &registry.gauge(prefix + "_http_connections_open", "Open client connections.");
    connections_total = &registry.counter(prefix + "_http_connections_accepted_total",
                                          "Client connections accepted.");
    for (const char* reason : {"malformed", "header_too_large", "body_too_large", "header_timeout",
                               "body_timeout", "tls_handshake"}) {
      rejected[reason] = &registry.counter(prefix + "_http_rejected_total",
                                           "Requests or connections refused for bad input or "
                                           "timeouts, by reason.",
                                           {{"reason", reason}});
    }
    request_bytes = &registry.counter(prefix + "_http_sent_bytes_total",
                                      "Bytes written to clients, heads included.");
  }

  ~Impl() { signals.reset(); }

  void start_accepting(Worker& worker);
  void accept(Worker& worker, std::size_t listener_index);
  void start_session(Worker& worker, std::size_t listener_index, tcp::socket socket);
  void stop_worker(Worker& worker);
  void wait_for_signal(Server& server);
  void session_closed(Worker& worker);
  void count_rejected(const char* reason) {
    auto found = rejected.find(reason);
    if (found != rejected.end()) found->second->inc();
  }
  // Built-in endpoints; returns a Reply when the request is one of them.
  std::optional<Reply> builtin(const Request& request);
  void completed(const CompletedRequest& done) {
    const unsigned status_class = done.reply.status() / 100;
    if (status_class >= 1 && status_class <= 5) responses_by_class[status_class]->inc();
    request_seconds->observe(done.seconds);
    request_bytes->inc(static_cast<double>(done.bytes_sent));
    if (observer) observer(done);
  }

  ServerOptions options;
  Handler& handler;
  metrics::Registry& registry;
  std::shared_ptr<TlsContext> tls;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<tcp::endpoint> bound;
  std::optional<asio::signal_set> signals;
  std::atomic<bool> stop_requested{false};
  std::function<void()> reload;
  std::function<bool()> healthy;
  RequestObserver observer;

  std::array<metrics::Counter*, 6> responses_by_class{};
  metrics::Histogram* request_seconds = nullptr;
  metrics::Gauge* connections_open = nullptr;
  metrics::Counter* connections_total = nullptr;
  metrics::Counter* request_bytes = nullptr;
  std::map<std::string, metrics::Counter*, std::less<>> rejected;
};

namespace {

template <class Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

  Session(Server::Impl& server, Worker& worker, tcp::socket socket, RequestContext context,
          std::shared_ptr<asio::ssl::context> tls_context)
      : server_(server),
        worker_(worker),
        tls_context_(std::move(tls_context)),
        stream_(make_stream(std::move(socket), tls_context_)),
        body_timer_(stream_.get_executor()),
        context_(std::move(context)) {
    worker_.sessions.insert(this);
    server_.connections_open->inc();
  }

  ~Session() override {
    server_.connections_open->dec();
    worker_.sessions.erase(this);
    server_.session_closed(worker_);
  }

  void start() {
    if constexpr (is_tls) {
      lowest().expires_after(server_.options.limits.tls_handshake_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              beast::bind_front_handler(&Session::on_handshake, this->shared_from_this()));
    } else {
      wait_request();
    }
  }

  void begin_shutdown() override {
    closing_ = true;
    if (!in_request_) force_close();
  }

  void force_close() override {
    boost::system::error_code ignored;
    lowest().socket().close(ignored);
  }

 private:
  static Stream make_stream(tcp::socket socket, const std::shared_ptr<asio::ssl::context>& tls) {
    if constexpr (is_tls) {
      return Stream(beast::tcp_stream(std::move(socket)), *tls);
    } else {
      return Stream(std::move(socket));
    }
  }

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
  const ServerLimits& limits() const { return server_.options.limits; }

  void on_handshake(boost::system::error_code error) {
    if (error) {
      if (!is_client_gone(error)) server_.count_rejected("tls_handshake");
      return;
    }
    wait_request();
  }

  // Step 1: idle keep-alive wait for the first byte of the next request.
  void wait_request() {
    if (closing_) return close();
    in_request_ = false;
    parser_.emplace();
    parser_->header_limit(limits().header_bytes);
    parser_->body_limit(limits().body_bytes);
    if (buffer_.size() > 0) return read_header();
    lowest().expires_after(limits().idle_timeout);
    stream_.async_read_some(buffer_.prepare(first_read_bytes),
                            beast::bind_front_handler(&Session::on_first_bytes, this->shared_from_this()));
  }

  void on_first_bytes(boost::system::error_code error, std::size_t bytes) {
    if (error) return;  // idle timeout, client closed, or shutdown: the session just ends
    buffer_.commit(bytes);
    read_header();
  }

  // Step 2: the whole head within header_timeout.
  void read_header() {
    in_request_ = true;
    started_ = std::chrono::steady_clock::now();
    lowest().expires_after(limits().header_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::on_header, this->shared_from_this()));
  }

  void on_header(boost::system::error_code error, std::size_t) {
    if (error) return on_read_error(error, "header_timeout");
    const auto declared = parser_->content_length();
    if (declared && *declared > limits().body_bytes) {
      return reject(bhttp::status::payload_too_large,
                    "request body of " + std::to_string(*declared) + " bytes exceeds the limit of " +
                        std::to_string(limits().body_bytes) + " bytes\n",
                    "body_too_large");
    }
    if (parser_->is_done()) return dispatch();
    const auto expect = parser_->get()[bhttp::field::expect];
    if (parser_->get().version() >= 11 && beast::iequals(expect, "100-continue")) {
      static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
      lowest().expires_after(limits().write_timeout);
      asio::async_write(stream_, asio::buffer(continue_line.data(), continue_line.size()),
                        beast::bind_front_handler(&Session::on_continue_sent, this->shared_from_this()));
      return;
    }
    read_body();
  }

  void on_continue_sent(boost::system::error_code error, std::size_t) {
    if (error) return;
    read_body();
  }

  // Step 3: the body within body_timeout and body_bytes. The deadline is a timer of its own, not
  // the stream's expiry: that one closes the socket and would leave no way to answer 408.
  void read_body() {
    lowest().expires_never();
    body_timed_out_ = false;
    body_timer_.expires_after(limits().body_timeout);
    body_timer_.async_wait([self = this->shared_from_this()](boost::system::error_code error) {
      if (error) return;  // the read finished first and cancelled the timer
      self->body_timed_out_ = true;
      self->lowest().cancel();
    });
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_body, this->shared_from_this()));
  }

  void on_body(boost::system::error_code error, std::size_t) {
    body_timer_.cancel();
    if (error == asio::error::operation_aborted && body_timed_out_) {
      return reject(bhttp::status::request_timeout,
                    "request body did not arrive within " +
                        std::to_string(limits().body_timeout.count()) + " ms\n",
                    "body_timeout");
    }
    if (error) return on_read_error(error, "body_timeout");
    dispatch();
  }

  void on_read_error(boost::system::error_code error, const char* timeout_reason) {
    if (error == beast::error::timeout) {
      // tcp_stream closes the socket on timeout; all that is left is to count it.
      server_.count_rejected(timeout_reason);
      return;
    }
    if (is_client_gone(error)) return;
    if (error == bhttp::error::header_limit) {
      return reject(bhttp::status::request_header_fields_too_large,
                    "request head exceeds " + std::to_string(limits().header_bytes) + " bytes\n",
                    "header_too_large");
    }
    if (error == bhttp::error::body_limit) {
      return reject(bhttp::status::payload_too_large,
                    "request body exceeds " + std::to_string(limits().body_bytes) + " bytes\n",
                    "body_too_large");
    }
    reject(bhttp::status::bad_request, "malformed request: " + error.message() + "\n", "malformed");
  }

  // Answers bad input and closes the connection; nothing reaches the handler.
  void reject(bhttp::status status, std::string message, const char* reason) {
    server_.count_rejected(reason);
    closing_ = true;
    linger_ = true;
    request_ = {};
    send(Reply(text_response(status, 11, std::move(message))));
  }

  // Step 4: built-ins or the handler.
  void dispatch() {
    request_ = parser_->release();
    context_.received = started_;
    if (auto builtin = server_.builtin(request_)) return send(std::move(*builtin));
    responded_ = false;
    auto self = this->shared_from_this();
    try {
      server_.handler.handle(context_, request_, [self](Reply reply) {
        if (self->responded_) return;  // a handler bug; the first answer stands
        self->responded_ = true;
        self->send(std::move(reply));
      });
    } catch (const std::exception& failure) {
      log::error("request handler failed for ", request_.target(), ": ", failure.what());
      if (!responded_) {
        responded_ = true;
        send(Reply(text_response(bhttp::status::internal_server_error, request_.version(),
                                 "internal error\n")));
      }
    }
  }

  // Step 5: write the reply, then keep going or close.
  void send(Reply reply) {
    reply_.emplace(std::move(reply));
    // A handler asks to close with "Connection: close". Without this default an HTTP/1.0 answer
    // that says nothing would read as "close" too, and 1.0 clients asking for keep-alive (ab -k,
    // some balancers' health checks) would never get it.
    reply_->default_header(bhttp::field::connection, "keep-alive");
    keep_alive_ = !closing_ && reply_->keep_alive() && request_.keep_alive();
    reply_->keep_alive(keep_alive_);
    if (request_.method() == bhttp::verb::head) reply_->strip_body_for_head();
    reply_->default_header(bhttp::field::server, server_.options.server_header);
    reply_->default_header(bhttp::field::date, http_date_now());
    lowest().expires_after(limits().write_timeout);
    beast::async_write(stream_, reply_->take(),
                       beast::bind_front_handler(&Session::on_write, this->shared_from_this()));
  }

  void on_write(boost::system::error_code error, std::size_t bytes) {
    const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_);
    server_.completed(CompletedRequest{context_, request_, *reply_, bytes, elapsed.count()});
    reply_.reset();
    if (error) return;
    if (!keep_alive_) return close();
    wait_request();
  }

  void close() {
    if constexpr (is_tls) {
      lowest().expires_after(tls_shutdown_timeout);
      stream_.async_shutdown([self = this->shared_from_this()](boost::system::error_code) {
        self->force_close();
      });
    } else {
      boost::system::error_code ignored;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      if (linger_) {
        lowest().expires_after(linger_timeout);
        return drain_after_close();
      }
      lowest().socket().close(ignored);
    }
  }

  // Lingering close: drop what the client still sends until it closes or linger_timeout passes.
  void drain_after_close() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(linger_read_bytes),
                            [self = this->shared_from_this()](boost::system::error_code error, std::size_t) {
                              if (!error) return self->drain_after_close();
                              self->force_close();
                            });
  }

  Server::Impl& server_;
  Worker& worker_;
  std::shared_ptr<asio::ssl::context> tls_context_;  // before stream_: the stream refers to it
  Stream stream_;
  asio::steady_timer body_timer_;
  RequestContext context_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request request_;
  std::optional<Reply> reply_;
  std::chrono::steady_clock::time_point started_;
  bool in_request_ = false;
  bool closing_ = false;
  bool keep_alive_ = false;
  bool responded_ = false;
  bool linger_ = false;
  bool body_timed_out_ = false;
};

}  // namespace

// A HEAD answer is the GET answer's head, Content-Length included, without the body (RFC 9110
// 9.3.2): the serializer writes whatever body the message holds, so the body goes after
// text_response has set Content-Length from it.
std::optional<Reply> Server::Impl::builtin(const Request& request) {
  if (request.method() != bhttp::verb::get && request.method() != bhttp::verb::head) {
    return std::nullopt;
  }
  const auto target = request.target();
  if (target == "/healthz") {
    const bool ok = !healthy || healthy();
    auto response = text_response(ok ? bhttp::status::ok : bhttp::status::service_unavailable,
                                  request.version(), ok ? "ok\n" : "unhealthy\n");
    response.set(bhttp::field::cache_control, "no-store");
    return Reply(std::move(response));
  }
  if (target == "/metrics") {
    auto response = text_response(bhttp::status::ok, request.version(), registry.expose(),
                                  metrics::Registry::content_type);
    response.set(bhttp::field::cache_control, "no-store");
    return Reply(std::move(response));
  }
  return std::nullopt;
}

void Server::Impl::accept(Worker& worker, std::size_t listener_index) {
  tcp::acceptor& acceptor = *worker.acceptors[listener_index];
  acceptor.async_accept(*worker.io, [this, &worker, listener_index](boost::system::error_code error,
                                                                   tcp::socket socket) {
    if (error == asio::error::operation_aborted || worker.stopping) return;
    if (!error) {
      connections_total->inc();
      start_session(worker, listener_index, std::move(socket));
      return accept(worker, listener_index);
    }
    log::warn("accept on ", bound[listener_index], " failed: ", error.message());
    auto timer = std::make_shared<asio::steady_timer>(*worker.io, accept_retry_delay);
    timer->async_wait([this, &worker, listener_index, timer](boost::system::error_code wait_error) {
      if (!wait_error && !worker.stopping) accept(worker, listener_index);
    });
  });
}

void Server::Impl::start_session(Worker& worker, std::size_t listener_index, tcp::socket socket) {
  boost::system::error_code error;
  socket.set_option(tcp::no_delay(true), error);
  RequestContext context;
  context.remote = socket.remote_endpoint(error);
  if (error) return;  // the client is already gone
  context.thread_index = worker.index;
  context.io = worker.io.get();
  context.tls = options.listeners[listener_index].tls;
  if (context.tls) {
    auto session = std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
        *this, worker, std::move(socket), std::move(context), tls->current());
    session->start();
  } else {
    auto session = std::make_shared<Session<beast::tcp_stream>>(*this, worker, std::move(socket),
                                                                std::move(context), nullptr);
    session->start();
  }
}

void Server::Impl::stop_worker(Worker& worker) {
  if (worker.stopping) return;
  worker.stopping = true;
  for (auto& acceptor : worker.acceptors) {
    boost::system::error_code ignored;
    acceptor->close(ignored);
  }
  if (worker.index == 0 && signals) {
    boost::system::error_code ignored;
    signals->cancel(ignored);
  }
  // Copy: begin_shutdown may end a session, which erases itself from the set.
  const std::vector<SessionBase*> sessions(worker.sessions.begin(), worker.sessions.end());
  for (SessionBase* session : sessions) session->begin_shutdown();
  if (worker.sessions.empty()) {
    worker.io->stop();
    return;
  }
  worker.drain_timer.emplace(*worker.io, options.limits.shutdown_grace);
  worker.drain_timer->async_wait([&worker](boost::system::error_code error) {
    if (error) return;
    const std::vector<SessionBase*> left(worker.sessions.begin(), worker.sessions.end());
    for (SessionBase* session : left) session->force_close();
    worker.io->stop();
  });
}

void Server::Impl::session_closed(Worker& worker) {
  if (worker.stopping && worker.sessions.empty() && worker.io) worker.io->stop();
}

Server::Server(ServerOptions options, Handler& handler, metrics::Registry& registry,
               std::shared_ptr<TlsContext> tls)
    : impl_(std::make_unique<Impl>(std::move(options), handler, registry, std::move(tls))) {
  for (const auto& listener : impl_->options.listeners) {
    if (listener.tls && !impl_->tls) {
      throw std::runtime_error("listener " + listener.address +
                               " wants TLS but no certificate is configured");
    }
  }
}

Server::~Server() = default;

void Server::bind() {
  auto& impl = *impl_;
  for (const auto& listener : impl.options.listeners) {
    tcp::endpoint endpoint;
    try {
      endpoint = parse_endpoint(listener.address);
    } catch (const std::invalid_argument& bad) {
      throw std::runtime_error(std::string("listen address ") + bad.what());
    }
    for (auto& worker : impl.workers) {
      auto acceptor = std::make_unique<tcp::acceptor>(*worker->io);
      boost::system::error_code error;
      acceptor->open(endpoint.protocol(), error);
      if (!error) acceptor->set_option(asio::socket_base::reuse_address(true), error);
      if (!error) acceptor->set_option(reuse_port(true), error);
      if (!error) acceptor->bind(endpoint, error);
      if (!error) acceptor->listen(asio::socket_base::max_listen_connections, error);
      if (error) {
        throw std::runtime_error("cannot listen on " + listener.address + ": " + error.message());
      }
      // Port 0: the first thread's bind picked the port; the others join it.
      if (endpoint.port() == 0) endpoint = acceptor->local_endpoint();
      worker->acceptors.push_back(std::move(acceptor));
    }
    impl.bound.push_back(endpoint);
  }
}

std::vector<tcp::endpoint> Server::bound_endpoints() const { return impl_->bound; }

void Server::run(bool handle_signals) {
  auto& impl = *impl_;
  if (impl.bound.empty() && !impl.options.listeners.empty()) bind();
  Worker& first = *impl.workers.front();
  if (handle_signals) {
    impl.signals.emplace(*first.io, SIGTERM, SIGINT, SIGHUP);
    impl.wait_for_signal(*this);
  }
  for (auto& worker : impl.workers) impl.start_accepting(*worker);
  std::vector<std::thread> threads;
  for (std::size_t index = 1; index < impl.workers.size(); ++index) {
    threads.emplace_back([&worker = *impl.workers[index]]() { worker.io->run(); });
  }
  first.io->run();
  for (auto& thread : threads) thread.join();
}

void Server::Impl::wait_for_signal(Server& server) {
  signals->async_wait([this, &server](boost::system::error_code error, int signal_number) {
    if (error) return;
    if (signal_number == SIGHUP) {
      log::info("SIGHUP: reloading");
      if (reload) reload();
      return wait_for_signal(server);
    }
    log::info("signal ", signal_number, ": stopping gracefully");
    server.stop();
  });
}

void Server::Impl::start_accepting(Worker& worker) {
  for (std::size_t index = 0; index < worker.acceptors.size(); ++index) accept(worker, index);
}

void Server::stop() {
  auto& impl = *impl_;
  if (impl.stop_requested.exchange(true)) return;
  for (auto& worker : impl.workers) {
    asio::post(*worker->io, [&impl, &worker]() { impl.stop_worker(*worker); });
  }
}

void Server::on_reload(std::function<void()> reload) { impl_->reload = std::move(reload); }
void Server::on_request(RequestObserver observer) { impl_->observer = std::move(observer); }
void Server::on_health(std::function<bool()> healthy) { impl_->healthy = std::move(healthy); }
unsigned Server::thread_count() const { return static_cast<unsigned>(impl_->workers.size()); }
asio::io_context& Server::io(unsigned thread_index) { return *impl_->workers.at(thread_index)->io; }

}  // namespace stacknode::http
