// HTTP/1.1 client: pooled keep-alive connections per upstream and one Exchange per request
// (connect if needed, write, read, give the connection back). See http_client.hpp.
#include "stacknode/common/http_client.hpp"

#include <sys/socket.h>

#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>

#include <array>
#include <optional>

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

namespace {

// Concrete executor types: no type-erased executor on every completion.
using PlainSocket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>,
                                         asio::io_context::executor_type>;

// Bytes asked of the kernel per read of an answer: a typical answer arrives in one read.
constexpr std::size_t response_read_bytes = 16 * 1024;

}  // namespace

struct ConnectionPool::Connection {
  explicit Connection(asio::io_context& io, tcp::endpoint to) : socket(io.get_executor()), upstream(to) {}
  PlainSocket socket;
  beast::flat_buffer buffer;  // bytes read but not yet parsed; kept to reuse its allocation
  tcp::endpoint upstream;
  std::chrono::steady_clock::time_point idle_since;
};

namespace {

// An idle connection whose peer has closed (or sent unexpected bytes) is not worth a request.
bool still_usable(PlainSocket& socket) {
  char byte;
  const ssize_t peeked = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

// One request: connect (or reuse), write head and body in one gather write, read and parse the
// answer by hand-feeding a parser, give the connection back. One timer per exchange bounds the
// connect and then the whole answer; when it fires it cancels the socket and the pending step
// reports a timeout.
struct ConnectionPool::Exchange : std::enable_shared_from_this<Exchange> {
  // Sends `*borrowed` if given, else `to_own`, which the exchange keeps.
  Exchange(ConnectionPool& owner, tcp::endpoint to, const ClientRequest* borrowed, ClientRequest to_own,
           ClientTimeouts limits, std::function<void(ClientResult)> callback)
      : pool(owner),
        alive(owner.alive_),
        upstream(to),
        owned(std::move(to_own)),
        request(borrowed != nullptr ? *borrowed : owned),
        timeouts(limits),
        done(std::move(callback)),
        timer(owner.io_.get_executor()) {}

  void start() {
    connection = pool.take_idle(upstream);
    if (connection) {
      reused = true;
      arm(timeouts.response);
      return write();
    }
    connect();
  }

  void connect() {
    connection = std::make_unique<Connection>(pool.io_, upstream);
    arm(timeouts.connect);
    connection->socket.async_connect(upstream, [self = shared_from_this()](boost::system::error_code error) {
      self->on_connect(error);
    });
  }

  // Starts the one deadline; a handler from an earlier arming is told apart by its generation.
  void arm(std::chrono::milliseconds timeout) {
    timed_out = false;
    const unsigned armed = ++generation;
    timer.expires_after(timeout);
    timer.async_wait([self = shared_from_this(), armed](boost::system::error_code error) {
      if (error || armed != self->generation || !self->connection) return;
      self->timed_out = true;
      boost::system::error_code ignored;
      self->connection->socket.cancel(ignored);
    });
  }

  void disarm() {
    ++generation;
    timer.cancel();
  }

  void on_connect(boost::system::error_code error) {
    if (timed_out) return fail(ClientFailure::connect_timeout, asio::error::timed_out);
    if (error == asio::error::connection_refused) return fail(ClientFailure::connect_refused, error);
    if (error) return fail(ClientFailure::connect_failed, error);
    boost::system::error_code ignored;
    connection->socket.set_option(tcp::no_delay(true), ignored);
    arm(timeouts.response);
    write();
  }

  void write() {
    head.clear();
    append_request_head(head, request);
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::buffer(request.body())};
    asio::async_write(connection->socket, buffers,
                      [self = shared_from_this()](boost::system::error_code error, std::size_t) {
                        self->on_write(error);
                      });
  }

  void on_write(boost::system::error_code error) {
    if (timed_out) return fail(ClientFailure::timeout, asio::error::timed_out);
    if (error) {
      if (reused && !retried) return retry();
      return fail(ClientFailure::closed, error);
    }
    parser.emplace();
    parser->header_limit(pool.limits_.header_bytes);
    parser->body_limit(pool.limits_.body_bytes);
    parser->eager(true);
    if (request.method() == bhttp::verb::head) parser->skip(true);
    parse();
  }

  // Feeds the parser what is buffered; reads more while the answer is incomplete.
  void parse() {
    beast::flat_buffer& buffer = connection->buffer;
    while (buffer.size() > 0 && !parser->is_done()) {
      boost::system::error_code error;
      const std::size_t used = parser->put(buffer.data(), error);
      buffer.consume(used);
      if (error == bhttp::error::need_more) break;
      if (error) return on_read_error(error);
      if (used == 0) break;
    }
    if (parser->is_done()) return finish();
    connection->socket.async_read_some(
        buffer.prepare(response_read_bytes),
        [self = shared_from_this()](boost::system::error_code error, std::size_t bytes) {
          self->on_read(error, bytes);
        });
  }

  void on_read(boost::system::error_code error, std::size_t bytes) {
    if (timed_out) return fail(ClientFailure::timeout, asio::error::timed_out);
    if (error == asio::error::eof && parser->got_some()) {
      // An answer framed by the close ends here; any other is cut short (partial_message).
      boost::system::error_code eof_error;
      parser->put_eof(eof_error);
      if (!eof_error) return finish();
      return on_read_error(eof_error);
    }
    if (error) return on_read_error(error);
    connection->buffer.commit(bytes);
    parse();
  }

  void on_read_error(boost::system::error_code error) {
    const bool nothing_read = !parser->got_some();
    const bool closed = error == asio::error::eof || error == asio::error::connection_reset;
    if (closed && nothing_read && reused && !retried && idempotent(request.method())) {
      return retry();
    }
    if (closed || error == bhttp::error::partial_message) return fail(ClientFailure::closed, error);
    if (error == bhttp::error::header_limit || error == bhttp::error::body_limit) {
      return fail(ClientFailure::response_too_large, error);
    }
    return fail(ClientFailure::malformed_response, error);
  }

  void finish() {
    disarm();
    ClientResult result;
    result.reused_connection = reused;
    result.response = parser->release();
    // Bytes past the answer mean the upstream is out of step with us: do not reuse.
    const bool reusable =
        result.response.keep_alive() && !parser->need_eof() && connection->buffer.size() == 0;
    if (reusable && *alive) pool.give_back(std::move(connection));
    connection.reset();
    done(std::move(result));
  }

  void retry() {
    retried = true;
    reused = false;
    connect();
  }

  void fail(ClientFailure failure, boost::system::error_code error) {
    disarm();
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
  ClientRequest owned;  // the request, unless borrowed from the caller
  const ClientRequest& request;
  ClientTimeouts timeouts;
  std::function<void(ClientResult)> done;
  Timer timer;
  unsigned generation = 0;
  bool timed_out = false;
  std::string head;
  std::unique_ptr<Connection> connection;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser;
  bool reused = false;
  bool retried = false;
};

ConnectionPool::ConnectionPool(asio::io_context& io, PoolLimits limits)
    : io_(io), limits_(limits), alive_(std::make_shared<bool>(true)) {}

ConnectionPool::~ConnectionPool() { *alive_ = false; }

void ConnectionPool::async_request(const tcp::endpoint& upstream, ClientRequest request,
                                   ClientTimeouts timeouts, std::function<void(ClientResult)> done) {
  request.prepare_payload();
  std::make_shared<Exchange>(*this, upstream, nullptr, std::move(request), timeouts, std::move(done))
      ->start();
}

void ConnectionPool::async_request_borrowed(const tcp::endpoint& upstream, const ClientRequest& request,
                                            ClientTimeouts timeouts,
                                            std::function<void(ClientResult)> done) {
  std::make_shared<Exchange>(*this, upstream, &request, ClientRequest{}, timeouts, std::move(done))
      ->start();
}

std::unique_ptr<ConnectionPool::Connection> ConnectionPool::take_idle(const tcp::endpoint& upstream) {
  auto found = idle_.find(upstream);
  if (found == idle_.end()) return nullptr;
  auto& connections = found->second;
  const auto now = std::chrono::steady_clock::now();
  while (!connections.empty()) {
    std::unique_ptr<Connection> connection = std::move(connections.back());
    connections.pop_back();
    const auto idle_for = now - connection->idle_since;
    if (idle_for >= limits_.idle_timeout) continue;
    if (idle_for < limits_.probe_after_idle || still_usable(connection->socket)) return connection;
  }
  return nullptr;
}

void ConnectionPool::give_back(std::unique_ptr<Connection> connection) {
  auto& connections = idle_[connection->upstream];
  if (connections.size() >= limits_.max_idle_per_upstream) return;
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
