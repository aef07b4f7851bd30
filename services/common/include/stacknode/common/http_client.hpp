// HTTP/1.1 client with connection reuse, for proxying, health checks and tools.
// ConnectionPool lives on one io_context (one server thread) and is used only from it: it keeps
// idle keep-alive connections per upstream and hands each request a live one or a new one.
// BlockingClient wraps a pool on a private io_context for command-line tools and tests.
//
// Failures are told apart, because callers act differently on each: a refused connection is a
// fast "upstream down", a timeout may mean "slow", a closed or garbled answer is "upstream broken".
// A request that failed on a reused connection before any answer (the upstream closed its idle
// side at the same moment) is retried once on a fresh connection when that is safe: always if the
// request was not written, and only for idempotent methods if it was.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace stacknode::http {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

using ClientRequest = bhttp::request<bhttp::string_body>;
using ClientResponse = bhttp::response<bhttp::string_body>;

struct ClientTimeouts {
  std::chrono::milliseconds connect{2'000};
  // From the first byte written to the last byte of the answer read.
  std::chrono::milliseconds response{30'000};
};

enum class ClientFailure {
  none,
  connect_refused,     // nothing listens there: the fastest "down" signal
  connect_timeout,
  connect_failed,      // unreachable, reset during connect, ...
  timeout,             // connected, but no whole answer within ClientTimeouts::response
  closed,              // the upstream closed the connection before a whole answer
  malformed_response,  // not HTTP/1.x, or a broken head or body
  response_too_large,  // head or body over the pool's limits
};

std::string_view failure_name(ClientFailure failure);

// Methods that may be sent again after a failure without changing the outcome (RFC 9110 9.2.2).
bool idempotent(bhttp::verb method);

struct ClientResult {
  ClientFailure failure = ClientFailure::none;
  std::string detail;  // the underlying error's text, for logs
  ClientResponse response;
  bool reused_connection = false;
  bool ok() const { return failure == ClientFailure::none; }
};

struct PoolLimits {
  // Idle connections kept per upstream. It must cover the requests in flight to one upstream at
  // peak, or every request past it pays a connect and the upstream a TIME_WAIT: 256 covers a
  // worker thread's share of a busy front end.
  std::size_t max_idle_per_upstream = 256;
  // Upstreams (nginx, Beast, Node) close idle connections after 60-75 s; dropping ours earlier
  // avoids most races with their close.
  std::chrono::milliseconds idle_timeout{30'000};
  // An idle connection older than this is probed (a one-byte MSG_PEEK) before reuse, to skip one
  // the upstream closed meanwhile. Younger ones are reused as they are: under load that saves a
  // system call per request. Upstreams close idle connections after 2 s (gunicorn), 5 s (Node,
  // Apache) or more, so a closed one has been idle longer than this and is caught; a close that
  // races a reuse is covered by the retry rule above.
  std::chrono::milliseconds probe_after_idle{1'000};
  std::uint32_t header_bytes = 64 * 1024;
  // Answers are buffered whole; larger ones fail as response_too_large.
  std::uint64_t body_bytes = 64ull * 1024 * 1024;
};

class ConnectionPool {
 public:
  explicit ConnectionPool(asio::io_context& io, PoolLimits limits = {});
  ~ConnectionPool();
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // `done` runs on the pool's io_context, exactly once (not if the io_context is destroyed first).
  void async_request(const tcp::endpoint& upstream, ClientRequest request, ClientTimeouts timeouts,
                     std::function<void(ClientResult)> done);

  // The same, but `request` is not copied: it must stay alive and unchanged until `done` runs, and
  // its payload must be prepared (prepare_payload()). For a caller that keeps the request anyway,
  // such as a proxy that may send it again to another upstream.
  void async_request_borrowed(const tcp::endpoint& upstream, const ClientRequest& request,
                              ClientTimeouts timeouts, std::function<void(ClientResult)> done);

  std::size_t idle_connections() const;

  struct Connection;
  struct Exchange;

 private:
  friend struct Exchange;
  std::unique_ptr<Connection> take_idle(const tcp::endpoint& upstream);
  void give_back(std::unique_ptr<Connection> connection);

  asio::io_context& io_;
  PoolLimits limits_;
  std::map<tcp::endpoint, std::vector<std::unique_ptr<Connection>>> idle_;
  std::shared_ptr<bool> alive_;  // exchanges outliving the pool must not give connections back
};

class BlockingClient {
 public:
  explicit BlockingClient(PoolLimits limits = {});
  ~BlockingClient();
  ClientResult request(const tcp::endpoint& upstream, ClientRequest request,
                       ClientTimeouts timeouts = {});
  // GET `target` from "host:port".
  ClientResult get(std::string_view address, std::string_view target, ClientTimeouts timeouts = {});

 private:
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<ConnectionPool> pool_;
};

}  // namespace stacknode::http
