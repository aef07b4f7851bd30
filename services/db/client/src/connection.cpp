// One client connection to one dqlite node; see connection.hpp.
#include "stacknode/db/connection.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

namespace stacknode::db {
namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline`, at least 0, for poll().
int milliseconds_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Waits until `fd` is ready for `events`: 1 ready, 0 deadline passed, -1 error (errno).
int wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd waiting{fd, events, 0};
    const int ready = ::poll(&waiting, 1, milliseconds_left(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return ready;
    return 1;
  }
}

template <typename T>
const T* answer_as(const Connection::Answer& answer) {
  if constexpr (std::is_same_v<T, wire::RowSet>) {
    return std::get_if<wire::RowSet>(&answer);
  } else {
    const auto* response = std::get_if<wire::Response>(&answer);
    return response == nullptr ? nullptr : std::get_if<T>(response);
  }
}

}  // namespace

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::sqlite: return "sqlite";
    case ErrorKind::not_leader: return "not_leader";
    case ErrorKind::no_leader: return "no_leader";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::connection_lost: return "connection_lost";
    case ErrorKind::protocol: return "protocol";
    case ErrorKind::invalid_request: return "invalid_request";
  }
  return "unknown";
}

std::optional<Endpoint> parse_endpoint(std::string_view address) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  Endpoint endpoint;
  endpoint.host = std::string(address.substr(0, colon));
  in_addr parsed{};
  if (::inet_pton(AF_INET, endpoint.host.c_str(), &parsed) != 1) return std::nullopt;
  const std::string_view port = address.substr(colon + 1);
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), endpoint.port);
  if (error != std::errc() || end != port.data() + port.size() || endpoint.port == 0) {
    return std::nullopt;
  }
  return endpoint;
}

Outcome<Connection> Connection::open(std::string_view address, std::chrono::milliseconds timeout,
                                     const TlsContext* tls) {
  const std::optional<Endpoint> endpoint = parse_endpoint(address);
  if (!endpoint) {
    return Error{ErrorKind::invalid_request, 0,
                 "'" + std::string(address) + "' is not an IPv4 host:port address"};
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Error{ErrorKind::connection_lost, 0, std::string("socket: ") + std::strerror(errno)};
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(endpoint->port);
  ::inet_pton(AF_INET, endpoint->host.c_str(), &target.sin_addr);
  const auto deadline = Clock::now() + timeout;
  const std::string where = std::string(address);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
    if (errno != EINPROGRESS) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      return Error{ErrorKind::connection_lost, 0, "connect to " + where + ": " + reason};
    }
    const int ready = wait_for(fd, POLLOUT, deadline);
    int socket_error = 0;
    socklen_t length = sizeof socket_error;
    if (ready == 1) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &socket_error, &length);
    if (ready != 1 || socket_error != 0) {
      ::close(fd);
      if (ready == 0) return Error{ErrorKind::timeout, 0, "connect to " + where + ": timed out"};
      return Error{ErrorKind::connection_lost, 0,
                   "connect to " + where + ": " + std::strerror(ready < 0 ? errno : socket_error)};
    }
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  Connection connection(fd, where, timeout);
  if (tls != nullptr) {
    std::string problem;
    connection.tls_ = TlsSession::handshake(fd, *tls, endpoint->host, deadline, problem);
    if (!connection.tls_) {
      return connection.fail(problem.find("timed out") != std::string::npos ? ErrorKind::timeout
                                                                            : ErrorKind::connection_lost,
                             problem);
    }
  }
  const auto handshake = wire::encode_handshake();
  if (auto error = connection.send_all(handshake.data(), handshake.size())) return std::move(*error);
  return connection;
}

Connection::Connection(int fd, std::string address, std::chrono::milliseconds timeout)
    : fd_(fd), address_(std::move(address)), timeout_(timeout) {}

Connection::~Connection() { close(); }

Connection::Connection(Connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      tls_(std::move(other.tls_)),
      address_(std::move(other.address_)),
      statements_(std::move(other.statements_)),
      timeout_(other.timeout_) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    tls_ = std::move(other.tls_);
    address_ = std::move(other.address_);
    statements_ = std::move(other.statements_);
    timeout_ = other.timeout_;
  }
  return *this;
}

bool Connection::verify_idle() {
  if (!is_open()) return false;
  pollfd idle{fd_, POLLIN, 0};
  int ready = 0;
  do {
    ready = ::poll(&idle, 1, 0);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0 && (!tls_ || tls_->pending() == 0)) return true;
  if (ready > 0 && tls_ && tls_->pending() == 0) {
    // A TLS record that carries no data (a key update) leaves the connection idle.
    std::uint8_t stray = 0;
    if (tls_->read(&stray, 1).status == TlsSession::Status::want_read) return true;
  }
  close();
  return false;
}

void Connection::close() {
  tls_.reset();  // before the socket it runs on
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  statements_.clear();  // they died with the connection on the node
}

Error Connection::fail(ErrorKind kind, std::string message) {
  close();
  return Error{kind, 0, address_ + ": " + std::move(message)};
}

std::optional<Error> Connection::send_all(const std::uint8_t* bytes, std::size_t size) {
  return move_all(const_cast<std::uint8_t*>(bytes), size, true);  // sending only reads them
}

std::optional<Error> Connection::receive_exactly(std::uint8_t* bytes, std::size_t size) {
  return move_all(bytes, size, false);
}

std::optional<Error> Connection::move_all(std::uint8_t* bytes, std::size_t size, bool sending) {
  const auto deadline = Clock::now() + timeout_;
  while (size > 0) {
    short wait_events = sending ? POLLOUT : POLLIN;
    if (tls_) {
      const TlsSession::Io io = sending ? tls_->write(bytes, size) : tls_->read(bytes, size);
      if (io.status == TlsSession::Status::done) {
        bytes += io.bytes;
        size -= io.bytes;
        continue;
      }
      if (io.status == TlsSession::Status::closed) return fail(ErrorKind::connection_lost, "the node closed the connection");
      if (io.status == TlsSession::Status::failed) return fail(ErrorKind::connection_lost, tls_->error());
      wait_events = io.status == TlsSession::Status::want_write ? POLLOUT : POLLIN;
    } else {
      const ssize_t moved = sending ? ::send(fd_, bytes, size, MSG_NOSIGNAL) : ::recv(fd_, bytes, size, 0);
      if (moved > 0) {
        bytes += moved;
        size -= static_cast<std::size_t>(moved);
        continue;
      }
      if (moved == 0 && !sending) return fail(ErrorKind::connection_lost, "the node closed the connection");
      if (moved < 0 && errno == EINTR) continue;
      if (moved < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        return fail(ErrorKind::connection_lost, std::string(sending ? "send: " : "receive: ") + std::strerror(errno));
      }
    }
    const int ready = wait_for(fd_, wait_events, deadline);
    if (ready == 0) return fail(ErrorKind::timeout, sending ? "sending timed out" : "no answer in time");
    if (ready < 0) return fail(ErrorKind::connection_lost, std::strerror(errno));
  }
  return std::nullopt;
}

Outcome<wire::Response> Connection::receive_message() {
  std::vector<std::uint8_t> message(wire::header_size);
  if (auto error = receive_exactly(message.data(), wire::header_size)) return std::move(*error);
  const wire::HeaderResult header = wire::decode_header(message);
  if (!header.ok()) {
    return fail(ErrorKind::protocol, "bad message header: " + std::string(wire::to_string(header.error)));
  }
  message.resize(wire::header_size + header.header.body_bytes());
  if (auto error = receive_exactly(message.data() + wire::header_size, header.header.body_bytes())) {
    return std::move(*error);
  }
  wire::DecodeResult decoded = wire::decode_response(message);
  if (!decoded.ok()) return fail(ErrorKind::protocol, "bad message: " + wire::describe(decoded));
  return std::move(decoded.response);
}

Outcome<Connection::Answer> Connection::call(const wire::Request& request) {
  if (!is_open()) return Error{ErrorKind::connection_lost, 0, address_ + ": the connection is closed"};
  const wire::EncodeResult encoded = wire::encode_request(request);
  if (!encoded.ok()) {
    return Error{ErrorKind::invalid_request, 0, std::string(wire::to_string(encoded.error))};
  }
  if (auto error = send_all(encoded.bytes.data(), encoded.bytes.size())) return std::move(*error);

  const bool is_query = std::holds_alternative<wire::Query>(request) ||
                        std::holds_alternative<wire::QuerySql>(request);
  wire::RowSet rows;
  for (;;) {
    Outcome<wire::Response> received = receive_message();
    if (!received) return received.error();
    if (auto* failure = std::get_if<wire::Failure>(&received.value())) {
      // A failure may come after some ROWS messages: the statement ended there. The connection
      // stays in step either way: the failure is the request's last message.
      const bool leadership = failure->code == wire::error_not_leader ||
                              failure->code == wire::error_leadership_lost;
      return Error{leadership ? ErrorKind::not_leader : ErrorKind::sqlite, failure->code,
                   std::move(failure->message)};
    }
    auto* batch = std::get_if<wire::Rows>(&received.value());
    if (!is_query || batch == nullptr) {
      if (batch != nullptr) return fail(ErrorKind::protocol, "rows in answer to a request that is not a query");
      if (is_query && !rows.columns.empty()) return fail(ErrorKind::protocol, "a row set ended without DONE");
      return Answer(std::move(received.value()));
    }
    const wire::RowSetError appended = wire::append_rows(rows, std::move(*batch));
    if (appended != wire::RowSetError::none) {
      return fail(ErrorKind::protocol, "row set: " + std::string(wire::to_string(appended)));
    }
    if (rows.complete) return Answer(std::move(rows));
  }
}

template <typename T>
Outcome<T> Connection::expect(const wire::Request& request, const char* what) {
  Outcome<Answer> answer = call(request);
  if (!answer) return answer.error();
  if (const T* typed = answer_as<T>(answer.value())) return *typed;
  return fail(ErrorKind::protocol, std::string("unexpected answer to ") + what);
}

Outcome<wire::Node> Connection::leader() { return expect<wire::Node>(wire::Leader{}, "LEADER"); }

Outcome<wire::DatabaseId> Connection::open_database(const std::string& name) {
  Outcome<wire::Db> db = expect<wire::Db>(wire::Open{name}, "OPEN");
  if (!db) return db.error();
  return db->id;
}

Outcome<wire::Result> Connection::exec_sql(wire::DatabaseId db, const std::string& sql,
                                           std::vector<wire::Value> parameters) {
  return expect<wire::Result>(wire::ExecSql{db, sql, std::move(parameters)}, "EXEC_SQL");
}

Outcome<wire::RowSet> Connection::query_sql(wire::DatabaseId db, const std::string& sql,
                                            std::vector<wire::Value> parameters) {
  return expect<wire::RowSet>(wire::QuerySql{db, sql, std::move(parameters)}, "QUERY_SQL");
}

Outcome<wire::Stmt> Connection::prepare(wire::DatabaseId db, const std::string& sql) {
  Outcome<wire::Stmt> prepared = expect<wire::Stmt>(wire::Prepare{db, sql}, "PREPARE");
  if (prepared) statements_.push_back(prepared->id);
  return prepared;
}

std::optional<Error> Connection::check_prepared(wire::StatementId statement) const {
  if (std::find(statements_.begin(), statements_.end(), statement) != statements_.end()) return std::nullopt;
  return Error{ErrorKind::invalid_request, 0,
               "statement " + std::to_string(statement) + " is not prepared on this connection (or was finalized)"};
}

Outcome<wire::Result> Connection::exec(wire::DatabaseId db, wire::StatementId statement,
                                       std::vector<wire::Value> parameters) {
  if (auto refused = check_prepared(statement)) return std::move(*refused);
  return expect<wire::Result>(wire::Exec{db, statement, std::move(parameters)}, "EXEC");
}

Outcome<wire::RowSet> Connection::query(wire::DatabaseId db, wire::StatementId statement,
                                        std::vector<wire::Value> parameters) {
  if (auto refused = check_prepared(statement)) return std::move(*refused);
  return expect<wire::RowSet>(wire::Query{db, statement, std::move(parameters)}, "QUERY");
}

Outcome<wire::Empty> Connection::finalize(wire::DatabaseId db, wire::StatementId statement) {
  if (auto refused = check_prepared(statement)) return std::move(*refused);
  Outcome<wire::Empty> finalized = expect<wire::Empty>(wire::Finalize{db, statement}, "FINALIZE");
  // Gone on the node whenever it answered; after a transport error the connection is closed.
  if (finalized || finalized.error().keeps_connection()) std::erase(statements_, statement);
  return finalized;
}

Outcome<wire::Nodes> Connection::cluster() { return expect<wire::Nodes>(wire::Cluster{}, "CLUSTER"); }

Outcome<wire::Empty> Connection::add(wire::NodeId id, const std::string& address) {
  return expect<wire::Empty>(wire::Add{id, address}, "ADD");
}

Outcome<wire::Empty> Connection::assign(wire::NodeId id, wire::Role role) {
  return expect<wire::Empty>(wire::Assign{id, role}, "ASSIGN");
}

Outcome<wire::Empty> Connection::remove(wire::NodeId id) {
  return expect<wire::Empty>(wire::Remove{id}, "REMOVE");
}

Outcome<wire::Empty> Connection::transfer(wire::NodeId id) {
  return expect<wire::Empty>(wire::Transfer{id}, "TRANSFER");
}

Outcome<wire::Files> Connection::dump(const std::string& name) {
  return expect<wire::Files>(wire::Dump{name}, "DUMP");
}

}  // namespace stacknode::db
