// One client connection to one dqlite node over TCP: connect with a deadline, the protocol
// handshake, then request/response round trips with the codec of wire.hpp, a whole row set
// gathered from its ROWS messages. Blocking sockets with poll() deadlines: every wait is bounded
// by the connection's timeout. Errors keep SQLite's code and message, and tell "not leader",
// "timeout", "connection lost" and protocol violations apart; after any error but a SQLite or
// not-leader failure the connection is closed and must be replaced.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "stacknode/db/tls.hpp"
#include "stacknode/db/wire.hpp"

namespace stacknode::db {

// How long a connection may wait for the node at each step (connect, a send, a reply) unless
// told otherwise: a LAN round trip plus a Raft commit is milliseconds; this only bounds a node
// that is gone without a reset.
inline constexpr std::chrono::milliseconds default_request_timeout{5'000};

enum class ErrorKind : std::uint8_t {
  sqlite,           // the node ran the request and SQLite refused it: code and message are its
  not_leader,       // the node is not the leader (or lost leadership during the request)
  no_leader,        // no node knows a leader (set by the leader-following client)
  timeout,          // the node did not answer in time; the connection is closed
  connection_lost,  // refused, reset or closed; the connection is closed
  protocol,         // the node sent bytes the codec refuses; the connection is closed
  invalid_request,  // the request cannot be encoded (e.g. text with a NUL); nothing was sent
};
std::string_view to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::connection_lost;
  std::uint64_t code = 0;  // SQLite's extended code for sqlite and not_leader, else 0
  std::string message;
  // The connection is still usable after this error.
  bool keeps_connection() const { return kind == ErrorKind::sqlite || kind == ErrorKind::not_leader; }
};

// A value or the reason there is none.
template <typename T>
class Outcome {
 public:
  Outcome(T value) : state_(std::move(value)) {}
  Outcome(Error error) : state_(std::move(error)) {}
  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(state_); }
  const T& value() const { return std::get<0>(state_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// "host:port" with an IPv4 host (dqlite's node addresses); nullopt if it is not one.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};
std::optional<Endpoint> parse_endpoint(std::string_view address);

class Connection {
 public:
  // Connects to `address` ("198.18.1.11:9001") and sends the handshake; with `tls` (a client
  // context), first runs a TLS handshake that checks the node's certificate (tls.hpp).
  static Outcome<Connection> open(std::string_view address,
                                  std::chrono::milliseconds timeout = default_request_timeout,
                                  const TlsContext* tls = nullptr);
  ~Connection();
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool is_open() const { return fd_ >= 0; }
  // For a pool, before it hands out an idle connection again: true if the connection is open and
  // the node has sent nothing since its last answer. Anything waiting (an end of file, a reset,
  // stray bytes) means the node closed it or is out of step, so the connection is closed and
  // false returned. One poll() that does not wait.
  bool verify_idle();
  const std::string& address() const { return address_; }

  // One request, one answer. A FAILURE answer becomes an Error (sqlite or not_leader). QUERY and
  // QUERY_SQL answers are gathered into a whole row set (wire::RowSet, complete) before returning.
  using Answer = std::variant<wire::Response, wire::RowSet>;
  Outcome<Answer> call(const wire::Request& request);

  // Typed conveniences over call(): each checks the answer's type (protocol error otherwise).
  Outcome<wire::Node> leader();
  Outcome<wire::DatabaseId> open_database(const std::string& name);
  Outcome<wire::Result> exec_sql(wire::DatabaseId db, const std::string& sql,
                                 std::vector<wire::Value> parameters = {});
  Outcome<wire::RowSet> query_sql(wire::DatabaseId db, const std::string& sql,
                                  std::vector<wire::Value> parameters = {});
  // Prepared statements belong to this connection on the node: they live until finalize() or
  // until the connection closes. query() gathers its row set as query_sql() does. exec(),
  // query() and finalize() refuse (invalid_request, nothing sent) an id this connection did not
  // prepare or has finalized: the node hands freed ids out again, and libdqlite 1.11 dies (NULL
  // dereference in its statement registry) on a freed id below the highest one in use.
  Outcome<wire::Stmt> prepare(wire::DatabaseId db, const std::string& sql);
  Outcome<wire::Result> exec(wire::DatabaseId db, wire::StatementId statement,
                             std::vector<wire::Value> parameters = {});
  Outcome<wire::RowSet> query(wire::DatabaseId db, wire::StatementId statement,
                              std::vector<wire::Value> parameters = {});
  Outcome<wire::Empty> finalize(wire::DatabaseId db, wire::StatementId statement);
  bool has_prepared() const { return !statements_.empty(); }
  Outcome<wire::Nodes> cluster();
  Outcome<wire::Empty> add(wire::NodeId id, const std::string& address);
  Outcome<wire::Empty> assign(wire::NodeId id, wire::Role role);
  Outcome<wire::Empty> remove(wire::NodeId id);
  Outcome<wire::Empty> transfer(wire::NodeId id);
  Outcome<wire::Files> dump(const std::string& name);

 private:
  Connection(int fd, std::string address, std::chrono::milliseconds timeout);
  // Sends or receives all `size` bytes, over TLS or the bare socket, within the timeout.
  std::optional<Error> move_all(std::uint8_t* bytes, std::size_t size, bool sending);
  Error fail(ErrorKind kind, std::string message);  // closes the connection
  std::optional<Error> send_all(const std::uint8_t* bytes, std::size_t size);
  std::optional<Error> receive_exactly(std::uint8_t* bytes, std::size_t size);
  // An error if `statement` was not prepared here or was finalized (not sent to the node).
  std::optional<Error> check_prepared(wire::StatementId statement) const;
  Outcome<wire::Response> receive_message();
  template <typename T>
  Outcome<T> expect(const wire::Request& request, const char* what);
  void close();

  int fd_ = -1;
  std::unique_ptr<TlsSession> tls_;  // over fd_, when the connection is TLS
  std::string address_;
  std::vector<wire::StatementId> statements_;  // prepared here and not finalized
  std::chrono::milliseconds timeout_;
};

}  // namespace stacknode::db
