// HTTP/1.1 client: pooled keep-alive connections per upstream and one Exchange per request
// (connect if needed, write, read, give the connection back). See http_client.hpp.
#include "stacknode/common/http_client.hpp"

#include <sys/socket.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "stacknode/common/http_server.hpp"

namespace stacknode::http {

namespace beast = boost::beast;

std::string_view failure_name(ClientFailure failure) {
  switch (failure) {
    case ClientFailure::none: return "none";
    case ClientFailure::connect_refused: return "connect_refused";
    case ClientFailure::connect_timeout: return "connect_timeout";
    case ClientFailure::connect_failed: return "connect_failed";
    case ClientFailure::timeout: return "timeout";
    case ClientFailure::closed: return "closed";
    case ClientFailure::malformed_response: return "malformed_response";
    case ClientFailure::response_too_large: return "response_too_large";
  }
  return "unknown";
}

struct ConnectionPool::Connection {
  explicit Connection(asio::io_context& io, tcp::endpoint to) : stream(io), upstream(to) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  tcp::endpoint upstream;
  std::chrono::steady_clock::time_point idle_since;
};

namespace {

bool idempotent(bhttp::verb method) {
  switch (method) {
    case bhttp::verb::get:
    case bhttp::verb::head:
    case bhttp::verb::options:
    case bhttp::verb::put:
    case bhttp::verb::delete_:
    case bhttp::verb::trace:
      return true;
    default:
      return false;
  }
}

// An idle connection whose peer has closed (or sent unexpected bytes) is not worth a request.
bool still_usable(tcp::socket& socket) {
  char byte;
  const ssize_t peeked = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

struct ConnectionPool::Exchange : std::enable_shared_from_this<Exchange> {
  Exchange(ConnectionPool& owner, tcp::endpoint to, ClientRequest message, ClientTimeouts limits,
           std::function<void(ClientResult)> callback)
      : pool(owner),
        alive(owner.alive_),
        upstream(to),
        request(std::move(message)),
        timeouts(limits),
        done(std::move(callback)) {}

  void start() {
    connection = pool.take_idle(upstream);
    if (connection) {
      reused = true;
      return write();
    }
    connection = std::make_unique<Connection>(pool.io_, upstream);
    connection->stream.expires_after(timeouts.connect);
    connection->stream.async_connect(
        upstream, beast::bind_front_handler(&Exchange::on_connect, shared_from_this()));
  }

  void on_connect(boost::system::error_code error) {
    if (error == asio::error::connection_refused) return fail(ClientFailure::connect_refused, error);
    if (error == beast::error::timeout) return fail(ClientFailure::connect_timeout, error);
    if (error) return fail(ClientFailure::connect_failed, error);
    boost::system::error_code ignored;
    connection->stream.socket().set_option(tcp::no_delay(true), ignored);
    write();
  }

  void write() {
    deadline = std::chrono::steady_clock::now() + timeouts.response;
    connection->stream.expires_at(deadline);
    bhttp::async_write(connection->stream, request,
                       beast::bind_front_handler(&Exchange::on_write, shared_from_this()));
  }

  void on_write(boost::system::error_code error, std::size_t) {
    if (error) {
      if (reused && !retried) return retry();
      return fail(error == beast::error::timeout ? ClientFailure::timeout : ClientFailure::closed,
                  error);
    }
    parser.emplace();
    parser->header_limit(pool.limits_.header_bytes);
    parser->body_limit(pool.limits_.body_bytes);
    if (request.method() == bhttp::verb::head) parser->skip(true);
    connection->stream.expires_at(deadline);
    bhttp::async_read(connection->stream, connection->buffer, *parser,
                      beast::bind_front_handler(&Exchange::on_read, shared_from_this()));
  }

  void on_read(boost::system::error_code error, std::size_t bytes) {
    if (error) {
      const bool nothing_read = !parser->got_some();
      const bool closed = error == bhttp::error::end_of_stream || error == asio::error::eof ||
                          error == asio::error::connection_reset;
      if (closed && nothing_read && reused && !retried && idempotent(request.method())) {
        return retry();
      }
      if (error == beast::error::timeout) return fail(ClientFailure::timeout, error);
      if (closed || error == bhttp::error::partial_message) return fail(ClientFailure::closed, error);
      if (error == bhttp::error::header_limit || error == bhttp::error::body_limit) {
        return fail(ClientFailure::response_too_large, error);
      }
      return fail(ClientFailure::malformed_response, error);
    }
    ClientResult result;
    result.reused_connection = reused;
    result.response = parser->release();
    const bool reusable = result.response.keep_alive() && !parser->need_eof();
    if (reusable && *alive) {
      pool.give_back(std::move(connection));
    }
    done(std::move(result));
  }

  void retry() {
    retried = true;
    reused = false;
    connection = std::make_unique<Connection>(pool.io_, upstream);
    connection->stream.expires_after(timeouts.connect);
    connection->stream.async_connect(
        upstream, beast::bind_front_handler(&Exchange::on_connect, shared_from_this()));
  }

  void fail(ClientFailure failure, boost::system::error_code error) {
    ClientResult result;
    result.failure = failure;
    result.detail = error.message();
    result.reused_connection = reused;
    connection.reset();
    done(std::move(result));
  }

  ConnectionPool& pool;
  std::shared_ptr<bool> alive;
  tcp::endpoint upstream;
  ClientRequest request;
  ClientTimeouts timeouts;
  std::function<void(ClientResult)> done;
  std::unique_ptr<Connection> connection;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;
  std::chrono::steady_clock::time_point deadline;
  bool reused = false;
  bool retried = false;
};

ConnectionPool::ConnectionPool(asio::io_context& io, PoolLimits limits)
    : io_(io), limits_(limits), alive_(std::make_shared<bool>(true)) {}

ConnectionPool::~ConnectionPool() { *alive_ = false; }

void ConnectionPool::async_request(const tcp::endpoint& upstream, ClientRequest request,
                                   ClientTimeouts timeouts, std::function<void(ClientResult)> done) {
  request.prepare_payload();
  std::make_shared<Exchange>(*this, upstream, std::move(request), timeouts, std::move(done))->start();
}

std::unique_ptr<ConnectionPool::Connection> ConnectionPool::take_idle(const tcp::endpoint& upstream) {
  auto found = idle_.find(upstream);
  if (found == idle_.end()) return nullptr;
  auto& connections = found->second;
  const auto now = std::chrono::steady_clock::now();
  while (!connections.empty()) {
    std::unique_ptr<Connection> connection = std::move(connections.back());
    connections.pop_back();
    if (now - connection->idle_since < limits_.idle_timeout &&
        still_usable(connection->stream.socket())) {
      return connection;
    }
  }
  return nullptr;
}

void ConnectionPool::give_back(std::unique_ptr<Connection> connection) {
  auto& connections = idle_[connection->upstream];
  if (connections.size() >= limits_.max_idle_per_upstream) return;
  connection->stream.expires_never();
  connection->idle_since = std::chrono::steady_clock::now();
  connections.push_back(std::move(connection));
}

std::size_t ConnectionPool::idle_connections() const {
  std::size_t total = 0;
  for (const auto& [upstream, connections] : idle_) total += connections.size();
  return total;
}

BlockingClient::BlockingClient(PoolLimits limits)
    : io_(std::make_unique<asio::io_context>(1)),
      pool_(std::make_unique<ConnectionPool>(*io_, limits)) {}

BlockingClient::~BlockingClient() { pool_.reset(); }

ClientResult BlockingClient::request(const tcp::endpoint& upstream, ClientRequest request,
                                     ClientTimeouts timeouts) {
  ClientResult out;
  pool_->async_request(upstream, std::move(request), timeouts,
                       [&out](ClientResult result) { out = std::move(result); });
  io_->restart();
  io_->run();
  return out;
}

ClientResult BlockingClient::get(std::string_view address, std::string_view target,
                                 ClientTimeouts timeouts) {
  const tcp::endpoint upstream = parse_endpoint(address);
  ClientRequest request{bhttp::verb::get, target, 11};
  request.set(bhttp::field::host, address);
  return this->request(upstream, std::move(request), timeouts);
}

}  // namespace stacknode::http
