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
#include <charconv>
#include <atomic>
#include <csignal>
#include <cstring>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "stacknode/common/daemon.hpp"
#include "stacknode/common/log.hpp"

namespace stacknode::http {
namespace {

// One page: nearly every request head arrives whole in the first read.
constexpr std::size_t first_read_bytes = 4096;
// Later reads of a request (a long head, a body) take up to this much at a time.
constexpr std::size_t read_chunk_bytes = 16 * 1024;
// After a rejected request the client may still be sending; reading (and dropping) for a moment
// before closing lets it see our answer instead of a connection reset.
constexpr auto linger_timeout = std::chrono::seconds(2);
constexpr std::size_t linger_read_bytes = 16 * 1024;
// A TLS close_notify that the peer never answers must not hold the connection.
constexpr auto tls_shutdown_timeout = std::chrono::seconds(2);
// Pause before accepting again after the process ran out of file descriptors.
constexpr auto accept_retry_delay = std::chrono::milliseconds(100);
// Deadlines are checked by one sweep per thread rather than a timer per connection (re-arming
// timers three times a request cost more than the rest of the session logic). A deadline fires
// up to one sweep interval late: an eighth of the shortest configured timeout, within these bounds.
constexpr auto min_sweep_interval = std::chrono::milliseconds(10);
constexpr auto max_sweep_interval = std::chrono::milliseconds(500);

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
using Clock = std::chrono::steady_clock;
// Concrete executor types: the type-erased any_io_executor costs a copy of a polymorphic object
// on every operation.
using Acceptor = asio::basic_socket_acceptor<tcp, asio::io_context::executor_type>;
using PlainSocket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using TlsStream = asio::ssl::stream<PlainSocket>;

// What a session is waiting for, and so what its deadline means when it passes.
enum class Phase : std::uint8_t { none, tls_handshake, idle, header, body, write, closing };

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void begin_shutdown() = 0;
  virtual void force_close() = 0;

  bool deadline_passed(Clock::time_point now) const { return phase_ != Phase::none && now >= deadline_; }
  void check_deadline(Clock::time_point now) {
    if (phase_ == Phase::none || now < deadline_) return;
    const Phase expired = phase_;
    phase_ = Phase::none;
    on_deadline(expired);
  }

 protected:
  void set_deadline(Phase phase, std::chrono::milliseconds timeout) {
    phase_ = phase;
    deadline_ = Clock::now() + timeout;
  }
  void clear_deadline() { phase_ = Phase::none; }
  virtual void on_deadline(Phase expired) = 0;

 private:
  Phase phase_ = Phase::none;
  Clock::time_point deadline_;
};

std::chrono::milliseconds sweep_interval(const ServerLimits& limits) {
  const auto shortest = std::min({limits.header_timeout, limits.body_timeout, limits.idle_timeout,
                                  limits.write_timeout, limits.tls_handshake_timeout});
  return std::clamp<std::chrono::milliseconds>(shortest / 8, min_sweep_interval, max_sweep_interval);
}

struct Worker {
  explicit Worker(unsigned worker_index)
      : index(worker_index), io(std::make_unique<asio::io_context>(1)) {}
  ~Worker() {
    // Asio objects go before their io_context; the session set stays alive while the io_context
    // destroys handlers that still hold sessions.
    acceptors.clear();
    drain_timer.reset();
    sweep_timer.reset();
    io.reset();
  }
  unsigned index;
  std::unique_ptr<asio::io_context> io;
  std::unordered_set<SessionBase*> sessions;
  std::vector<std::unique_ptr<Acceptor>> acceptors;
  std::optional<asio::steady_timer> drain_timer;
  std::optional<asio::steady_timer> sweep_timer;
  std::vector<SessionBase*> expired;  // scratch space of the sweep
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

namespace {

// Sizes the head once, then copies: no strlen and no regrowth per piece.
void append_fields(std::string& out, const bhttp::fields& fields) {
  static constexpr std::string_view separator = ": ";
  static constexpr std::string_view line_end = "\r\n";
  std::size_t size = out.size() + line_end.size();
  for (const auto& field : fields) {
    size += field.name_string().size() + separator.size() + field.value().size() + line_end.size();
  }
  std::size_t at = out.size();
  out.resize(size);
  char* const data = out.data();
  const auto put = [&](std::string_view text) {
    std::memcpy(data + at, text.data(), text.size());
    at += text.size();
  };
  for (const auto& field : fields) {
    put(field.name_string());
    put(separator);
    put(field.value());
    put(line_end);
  }
  put(line_end);
}

void append_version(std::string& out, unsigned version) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10 % 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

}  // namespace

void append_response_head(std::string& out, const bhttp::response_header<>& head) {
  append_version(out, head.version());
  const unsigned status = head.result_int();
  const char code[] = {' ', static_cast<char>('0' + status / 100 % 10),
                       static_cast<char>('0' + status / 10 % 10), static_cast<char>('0' + status % 10), ' '};
  out.append(code, sizeof code);
  out += head.reason();
  out += "\r\n";
  append_fields(out, head);
}

void append_request_head(std::string& out, const bhttp::request_header<>& head) {
  out += head.method_string();
  out += ' ';
  out += head.target();
  out += ' ';
  append_version(out, head.version());
  out += "\r\n";
  append_fields(out, head);
}

bhttp::response<bhttp::string_body> text_response(bhttp::status status, unsigned version,
                                                  std::string body,
                                                  std::string_view content_type) {
  bhttp::response<bhttp::string_body> response{status, version};
  response.set(bhttp::field::content_type, content_type);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

std::string format_address(const asio::ip::address& address) {
  if (!address.is_v4()) return address.to_string();
  const auto bytes = address.to_v4().to_bytes();
  char text[sizeof "255.255.255.255"];
  char* at = text;
  for (std::size_t index = 0; index < bytes.size(); ++index) {
    if (index > 0) *at++ = '.';
    at = std::to_chars(at, std::end(text), bytes[index]).ptr;
  }
  return std::string(text, at);
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
  void start_session(Worker& worker, std::size_t listener_index, PlainSocket socket);
  void sweep(Worker& worker);
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
  static constexpr bool is_tls = std::is_same_v<Stream, TlsStream>;

  Session(Server::Impl& server, Worker& worker, PlainSocket socket, RequestContext context,
          std::shared_ptr<asio::ssl::context> tls_context)
      : server_(server),
        worker_(worker),
        tls_context_(std::move(tls_context)),
        stream_(make_stream(std::move(socket), tls_context_)),
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
      set_deadline(Phase::tls_handshake, limits().tls_handshake_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](boost::system::error_code error) {
                                self->on_handshake(error);
                              });
    } else {
      wait_request();
    }
  }

  void begin_shutdown() override {
    closing_ = true;
    if (!in_request_) force_close();
  }

  void force_close() override {
    clear_deadline();
    boost::system::error_code ignored;
    lowest().close(ignored);
  }

 private:
  using Self = Session<Stream>;

  static Stream make_stream(PlainSocket socket, const std::shared_ptr<asio::ssl::context>& tls) {
    if constexpr (is_tls) {
      return Stream(std::move(socket), *tls);
    } else {
      return Stream(std::move(socket));
    }
  }

  PlainSocket& lowest() {
    if constexpr (is_tls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }
  const ServerLimits& limits() const { return server_.options.limits; }

  void on_deadline(Phase expired) override {
    switch (expired) {
      case Phase::body:
        // Not a plain close: the client gets a 408. The read ends with operation_aborted and
        // on_read_error answers.
        body_timed_out_ = true;
        lowest().cancel();
        return;
      case Phase::header:
        server_.count_rejected("header_timeout");
        break;
      case Phase::tls_handshake:
        server_.count_rejected("tls_handshake");
        break;
      case Phase::none:
      case Phase::idle:
      case Phase::write:
      case Phase::closing:
        break;
    }
    force_close();
  }

  void on_handshake(boost::system::error_code error) {
    clear_deadline();
    if (error) {
      if (!is_client_gone(error)) server_.count_rejected("tls_handshake");
      return;
    }
    if constexpr (is_tls) context_.tls_session = stream_.native_handle();
    wait_request();
  }

  // Step 1: idle keep-alive wait for the first byte of the next request. Asio does not retry a
  // read speculatively after one that drained the socket, so this read costs no system call until
  // the socket is readable (a readiness wait would cost an epoll_ctl re-arm per request instead).
  void wait_request() {
    if (closing_) return close();
    in_request_ = false;
    parser_.emplace();
    parser_->header_limit(limits().header_bytes);
    parser_->body_limit(limits().body_bytes);
    if (buffer_.size() > 0) return begin_request();  // pipelined
    set_deadline(Phase::idle, limits().idle_timeout);
    stream_.async_read_some(buffer_.prepare(first_read_bytes),
                            [self = this->shared_from_this()](boost::system::error_code error,
                                                              std::size_t bytes) {
                              self->on_first_bytes(error, bytes);
                            });
  }

  void on_first_bytes(boost::system::error_code error, std::size_t bytes) {
    if (error) return;  // idle timeout, client closed, or shutdown: the session just ends
    buffer_.commit(bytes);
    begin_request();
  }

  // Reads more of the request, then goes on with `next`.
  void read_more(void (Self::*next)()) {
    stream_.async_read_some(buffer_.prepare(read_chunk_bytes),
                            [self = this->shared_from_this(), next](boost::system::error_code error,
                                                                    std::size_t bytes) {
                              if (error) return self->on_read_error(error);
                              self->buffer_.commit(bytes);
                              ((*self).*next)();
                            });
  }

  // Gives the parser what is buffered. True when it wants more bytes; on a parse error it
  // answers and returns false with `failed` set.
  bool feed(bool& failed) {
    failed = false;
    if (buffer_.size() == 0) return true;
    boost::system::error_code error;
    const std::size_t used = parser_->put(buffer_.data(), error);
    buffer_.consume(used);
    if (error == bhttp::error::need_more) return true;
    if (error) {
      failed = true;
      on_parse_error(error);
      return false;
    }
    return used == 0;  // nothing taken without an error: only more bytes can help
  }

  // Step 2: the whole head within header_timeout.
  void begin_request() {
    in_request_ = true;
    started_ = Clock::now();
    set_deadline(Phase::header, limits().header_timeout);
    parse_header();
  }

  void parse_header() {
    while (!parser_->is_header_done()) {
      bool failed = false;
      if (feed(failed)) return read_more(&Self::parse_header);
      if (failed) return;
    }
    on_header();
  }

  void on_header() {
    clear_deadline();
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
      set_deadline(Phase::write, limits().write_timeout);
      asio::async_write(stream_, asio::buffer(continue_line.data(), continue_line.size()),
                        [self = this->shared_from_this()](boost::system::error_code error, std::size_t) {
                          if (error) return;
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  // Step 3: the body within body_timeout and body_bytes; a late body gets a 408 (on_deadline).
  void read_body() {
    body_timed_out_ = false;
    set_deadline(Phase::body, limits().body_timeout);
    parse_body();
  }

  void parse_body() {
    while (!parser_->is_done()) {
      bool failed = false;
      if (feed(failed)) return read_more(&Self::parse_body);
      if (failed) return;
    }
    clear_deadline();
    dispatch();
  }

  void on_read_error(boost::system::error_code error) {
    if (error == asio::error::operation_aborted && body_timed_out_) {
      return reject(bhttp::status::request_timeout,
                    "request body did not arrive within " +
                        std::to_string(limits().body_timeout.count()) + " ms\n",
                    "body_timeout");
    }
    // Anything else (the client went away, a deadline closed the socket) just ends the session.
  }

  void on_parse_error(boost::system::error_code error) {
    clear_deadline();
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

  // Step 5: write the reply, then keep going or close. String and empty bodies go out as one
  // gathered write of our own head and the body; others through Beast's serializer.
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
    set_deadline(Phase::write, limits().write_timeout);
    auto on_written = [self = this->shared_from_this()](boost::system::error_code error,
                                                        std::size_t bytes) {
      self->on_write(error, bytes);
    };
    head_.clear();
    asio::const_buffer body;
    if (reply_->serialize(head_, body)) {
      const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), body};
      asio::async_write(stream_, buffers, std::move(on_written));
    } else {
      beast::async_write(stream_, reply_->take(), std::move(on_written));
    }
  }

  void on_write(boost::system::error_code error, std::size_t bytes) {
    clear_deadline();
    const auto elapsed = std::chrono::duration<double>(Clock::now() - started_);
    server_.completed(CompletedRequest{context_, request_, *reply_, bytes, elapsed.count()});
    reply_.reset();
    if (error) return;
    if (!keep_alive_) return close();
    wait_request();
  }

  void close() {
    if constexpr (is_tls) {
      set_deadline(Phase::closing, tls_shutdown_timeout);
      stream_.async_shutdown([self = this->shared_from_this()](boost::system::error_code) {
        self->force_close();
      });
    } else {
      boost::system::error_code ignored;
      lowest().shutdown(tcp::socket::shutdown_send, ignored);
      if (linger_) {
        set_deadline(Phase::closing, linger_timeout);
        return drain_after_close();
      }
      force_close();
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
  RequestContext context_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request request_;
  std::optional<Reply> reply_;
  std::string head_;  // the response head being written; its capacity is kept between requests
  Clock::time_point started_;
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
  Acceptor& acceptor = *worker.acceptors[listener_index];
  acceptor.async_accept([this, &worker, listener_index](boost::system::error_code error,
                                                       PlainSocket socket) {
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

void Server::Impl::start_session(Worker& worker, std::size_t listener_index, PlainSocket socket) {
  boost::system::error_code error;
  socket.set_option(tcp::no_delay(true), error);
  RequestContext context;
  context.remote = socket.remote_endpoint(error);
  if (error) return;  // the client is already gone
  context.thread_index = worker.index;
  context.io = worker.io.get();
  context.tls = options.listeners[listener_index].tls;
  if (context.tls) {
    auto session = std::make_shared<Session<TlsStream>>(
        *this, worker, std::move(socket), std::move(context), tls->current());
    session->start();
  } else {
    auto session = std::make_shared<Session<PlainSocket>>(*this, worker, std::move(socket),
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
      auto acceptor = std::make_unique<Acceptor>(worker->io->get_executor());
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
  // The daemon's own server (the one that handles its signals) serving means the daemon is ready.
  if (handle_signals) boost::asio::post(*first.io, [] { daemon::notify_ready(); });
  first.io->run();
  for (auto& thread : threads) thread.join();
  if (handle_signals) {
    daemon::notify_stopping();
    // Stopping already. Without this, destroying the signal set puts back the default action,
    // and a second SIGTERM or SIGINT (an impatient operator, `systemctl stop` twice) would kill
    // the rest of the daemon's shutdown with status 143 instead of letting it exit 0.
    impl.signals.reset();
    std::signal(SIGTERM, SIG_IGN);
    std::signal(SIGINT, SIG_IGN);
  }
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
  worker.sweep_timer.emplace(*worker.io);
  sweep(worker);
}

// Closes (or answers 408 on) every session of this thread whose deadline has passed.
void Server::Impl::sweep(Worker& worker) {
  worker.sweep_timer->expires_after(sweep_interval(options.limits));
  worker.sweep_timer->async_wait([this, &worker](boost::system::error_code error) {
    if (error) return;
    const auto now = Clock::now();
    // on_deadline may end a session, which erases itself from the set: collect, then act.
    for (SessionBase* session : worker.sessions) {
      if (session->deadline_passed(now)) worker.expired.push_back(session);
    }
    for (SessionBase* session : worker.expired) {
      if (worker.sessions.contains(session)) session->check_deadline(now);
    }
    worker.expired.clear();
    sweep(worker);
  });
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
