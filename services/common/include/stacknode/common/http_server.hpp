// HTTP/1.1 server base every stacknode daemon serves from (Boost.Beast over Asio).
// It owns listening sockets, connections, limits and timeouts, TLS, graceful shutdown, the
// built-in /healthz and /metrics, and per-request metrics. What to answer is the Handler's job.
//
// Threading: one io_context per thread, each with its own SO_REUSEPORT acceptor per listener, so
// the kernel spreads connections over threads and a connection lives on one thread for its whole
// life (no locks on the request path). Handlers run on the connection's thread and must answer
// through `respond` on that same thread.
//
// Connection life (Session in http_server.cpp). Each step sets a deadline on the connection; one
// sweep timer per worker thread checks them (every eighth of the shortest timeout, clamped to
// 10-500 ms), so a request costs no timer arm/cancel and a deadline fires at most one sweep late:
//  1. wait_request: idle keep-alive wait for the first byte of a request (idle_timeout).
//  2. read_header: the header must arrive whole within header_timeout (slowloris) and fit in
//     header_bytes (else 431). A declared body larger than body_bytes gets 413 before it is read.
//  3. read_body: within body_timeout (else 408), at most body_bytes (else 413).
//  4. handle: built-ins or the Handler; exactly one Reply.
//  5. write: within write_timeout; then back to 1 if keep-alive, else close.
// Malformed requests get 400 and the connection is closed; nothing else is affected.
// Graceful stop (stop()): listeners close at once; idle connections close; a connection in steps
// 2-5 finishes its request and answers with "Connection: close"; after shutdown_grace whatever is
// left is closed.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message_generator.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "stacknode/common/metrics.hpp"
#include "stacknode/common/tls.hpp"

struct ssl_st;  // OpenSSL's SSL

namespace stacknode::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

using Request = bhttp::request<bhttp::string_body>;

struct ServerLimits {
  // 16 KiB of request head is what nginx allows with its default large_client_header_buffers
  // (4 x 8k per line); it fits every browser and API client we serve.
  std::uint32_t header_bytes = 16 * 1024;
  // Bodies are buffered whole before the handler runs; 1 MiB covers API bodies and form posts.
  std::uint64_t body_bytes = 1024 * 1024;
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds write_timeout{60'000};
  std::chrono::milliseconds tls_handshake_timeout{10'000};
  std::chrono::milliseconds shutdown_grace{10'000};
};

struct Listener {
  std::string address;  // "host:port"; port 0 picks a free one (tests)
  bool tls = false;
};

struct ServerOptions {
  std::vector<Listener> listeners;
  unsigned threads = 1;
  ServerLimits limits;
  std::string metrics_prefix = "stacknode_http";  // e.g. "stacknode_web"
  std::string server_header = "stacknode";
};

// What the server knows of one request; valid until the Reply has been written.
struct RequestContext {
  tcp::endpoint remote;
  bool tls = false;
  // The OpenSSL session of a TLS connection, for its peer's certificate (TlsContext with a client
  // CA verified it during the handshake); nullptr on plain HTTP.
  ssl_st* tls_session = nullptr;
  unsigned thread_index = 0;
  asio::io_context* io = nullptr;
  std::chrono::steady_clock::time_point received;
};

// Appends a message head as it goes on the wire: start line, fields in order, blank line.
void append_response_head(std::string& out, const bhttp::response_header<>& head);
void append_request_head(std::string& out, const bhttp::request_header<>& head);

// One response, type-erased over its body type, with notes for the access log.
class Reply {
 public:
  template <class Body, class Fields>
  Reply(bhttp::response<Body, Fields>&& response)  // NOLINT: implicit by design
      : status_(response.result_int()),
        body_bytes_(payload_size(response)),
        holder_(std::make_unique<Holder<bhttp::response<Body, Fields>>>(std::move(response))) {}

  unsigned status() const { return status_; }
  std::uint64_t body_bytes() const { return body_bytes_; }
  void keep_alive(bool keep) { holder_->keep_alive(keep); }
  bool keep_alive() const { return holder_->keep_alive(); }
  bhttp::message_generator take() { return holder_->take(); }
  // The fast path for the common bodies (string, empty; not chunked): appends the whole head to
  // `head` and points `body` at the body bytes, which stay valid while this Reply lives. Returns
  // false for other bodies, which go through take() and Beast's serializer.
  bool serialize(std::string& head, asio::const_buffer& body) { return holder_->serialize(head, body); }
  // For a HEAD request: keeps the head (Content-Length of the body it would have) and drops a
  // string body, so no handler can send a body to HEAD by mistake.
  void strip_body_for_head() { holder_->strip_body_for_head(); }
  // Sets a header field unless the handler already set it (the server's "Server" header).
  void default_header(bhttp::field field, std::string_view value) {
    holder_->default_header(field, value);
  }

  // Access-log notes filled by handlers that proxy or cache.
  std::string upstream;               // "host:port" that answered, if any
  double upstream_seconds = -1;       // time spent on the upstream exchange, -1 if none
  std::string cache_status;           // "HIT", "MISS", "BYPASS" or empty

 private:
  template <class Message>
  static std::uint64_t payload_size(Message& message) {
    auto size = message.payload_size();
    return size ? *size : 0;
  }
  struct HolderBase {
    virtual ~HolderBase() = default;
    virtual void keep_alive(bool keep) = 0;
    virtual bool keep_alive() const = 0;
    virtual bhttp::message_generator take() = 0;
    virtual bool serialize(std::string& head, asio::const_buffer& body) = 0;
    virtual void default_header(bhttp::field field, std::string_view value) = 0;
    virtual void strip_body_for_head() = 0;
  };
  template <class Message>
  struct Holder final : HolderBase {
    explicit Holder(Message&& m) : message(std::move(m)) {}
    void keep_alive(bool keep) override { message.keep_alive(keep); }
    bool keep_alive() const override { return message.keep_alive(); }
    bhttp::message_generator take() override { return bhttp::message_generator(std::move(message)); }
    bool serialize(std::string& head, asio::const_buffer& body) override {
      using Body = typename Message::body_type;
      constexpr bool string_body = std::is_same_v<Body, bhttp::string_body>;
      constexpr bool empty_body = std::is_same_v<Body, bhttp::empty_body>;
      if constexpr ((string_body || empty_body) &&
                    std::is_same_v<typename Message::fields_type, bhttp::fields>) {
        if (message.chunked()) return false;
        append_response_head(head, message.base());
        if constexpr (string_body) body = asio::buffer(message.body());
        return true;
      } else {
        return false;
      }
    }
    void default_header(bhttp::field field, std::string_view value) override {
      if (message.find(field) == message.end()) message.set(field, value);
    }
    void strip_body_for_head() override {
      if constexpr (std::is_same_v<typename Message::body_type, bhttp::string_body>) {
        if (message.body().empty()) return;
        if (message.find(bhttp::field::content_length) == message.end()) {
          message.content_length(message.body().size());
        }
        message.body().clear();
      }
    }
    Message message;
  };
  unsigned status_;
  std::uint64_t body_bytes_;
  std::unique_ptr<HolderBase> holder_;
};

using Respond = std::function<void(Reply)>;

class Handler {
 public:
  virtual ~Handler() = default;
  // Runs on the connection's thread; calls `respond` exactly once, now or later on that thread.
  virtual void handle(const RequestContext& context, Request& request, Respond respond) = 0;
};

// Called after each response is written (access log); runs on the connection's thread.
struct CompletedRequest {
  const RequestContext& context;
  const Request& request;
  const Reply& reply;
  std::uint64_t bytes_sent;  // on the wire, head included
  double seconds;            // from the first byte of the request to the last byte written
};
using RequestObserver = std::function<void(const CompletedRequest&)>;

// A plain-text response with the usual headers, for errors and small answers.
bhttp::response<bhttp::string_body> text_response(bhttp::status status, unsigned version,
                                                  std::string body,
                                                  std::string_view content_type = "text/plain; charset=utf-8");

class Server {
 public:
  Server(ServerOptions options, Handler& handler, metrics::Registry& registry,
         std::shared_ptr<TlsContext> tls = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener on every thread. Throws std::runtime_error naming the address on failure.
  void bind();
  // Where listener i is bound (its real port when it asked for port 0).
  std::vector<tcp::endpoint> bound_endpoints() const;

  // Serves until stop(); blocks the caller, which becomes thread 0. SIGTERM and SIGINT call
  // stop(); SIGHUP calls the reload hook, if `handle_signals`.
  void run(bool handle_signals = true);
  void stop();  // thread-safe; graceful, see the top of this file
  void on_reload(std::function<void()> reload);
  void on_request(RequestObserver observer);
  // /healthz answers 200 while this returns true (default: always), else 503.
  void on_health(std::function<bool()> healthy);

  unsigned thread_count() const;
  asio::io_context& io(unsigned thread_index);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Parses "host:port", "[v6]:port" or ":port" (all addresses). Throws std::invalid_argument.
tcp::endpoint parse_endpoint(std::string_view text);

// An address as text ("198.18.0.1", "2001:db8::1"), for X-Forwarded-For and logs; IPv4 without
// going through inet_ntop's printf, since a proxy formats one per request.
std::string format_address(const asio::ip::address& address);

}  // namespace stacknode::http
