// The leader-following dqlite client: finds the leader from any cluster members, keeps a pool of
// connections to it (one per leader address and database), follows it when it changes and
// retries a request only where that cannot run it twice. Thread-safe; built on connection.hpp.
//
// Retry rules. They decide whether a write runs exactly once, so they are deliberately narrow:
//  1. A request is retried, against a newly found leader, only when it certainly did not run:
//     a. the connect or the handshake failed (Connection::open): nothing was sent;
//     b. getting the connection ready failed: OPEN answered not_leader, or OPEN timed out or
//        lost the connection, or an idle pooled connection was found closed (verify_idle): the
//        caller's request had not been sent yet;
//     c. the answer was SQLITE_IOERR_NOT_LEADER (wire::error_not_leader): the node refused the
//        request before running it (dqlite checks leadership first).
//  2. A write (exec, add, assign, remove, transfer) is never retried after
//     SQLITE_IOERR_LEADERSHIP_LOST (kind not_leader, code wire::error_leadership_lost), nor after
//     a timeout, a lost connection or a protocol error once the request was sent: the write may
//     or may not have been applied, and the error goes to the caller, who decides (e.g. reads
//     back). For a write these kinds mean "unknown"; no_leader, sqlite and invalid_request mean
//     "not applied" (sqlite: for a single statement; EXEC_SQL runs a multi-statement text one
//     statement at a time, so earlier ones may have committed).
//  3. Reads (query, cluster, dump) are also retried on any transport error (timeout,
//     connection_lost, protocol) and after LEADERSHIP_LOST; never after a SQLite error or an
//     invalid request.
//  4. Retries are bounded by leader_timeout, counted from the call: no attempt starts after it
//     (the first always does), and the attempt in flight may take up to request_timeout per step.
//     When the budget is spent, the error is no_leader carrying the last failure's message (for a
//     write, rule 1 guarantees it did not run).
//  5. Between attempts the client backs off: retry_initial_backoff, doubling up to
//     retry_max_backoff, and never past the deadline.
//  6. exec() of a single statement (single_statement()) answered SQLITE_BUSY is retried on the
//     same leader, within the same budget, after busy_initial_backoff doubling up to
//     busy_max_backoff (with jitter): another client holds the database's write lock (a
//     stacknode-db on another node, or a Lease), and a statement refused BUSY did not run. A
//     multi-statement text is not retried: its earlier statements may have committed.
//  7. transaction() runs its body again, from BEGIN, when the attempt failed before COMMIT was
//     sent with SQLITE_BUSY or a not-leader refusal (rule 1c): a transaction that never reached
//     COMMIT is rolled back (by ROLLBACK, or by the node when the connection closes), so nothing
//     of it was applied. Same budget and backoff as rule 6. A COMMIT that fails with a transport
//     error or LEADERSHIP_LOST has an unknown outcome (rule 2) and goes to the caller.
//
// Leader discovery (find_leader): the members are asked LEADER in turn, the last known leader
// first. A member that names a leader (id != 0) other than itself is not taken at its word: the
// named node is asked too and must name itself (a follower's view can be stale). Rounds repeat
// with the same backoff until leader_timeout; then no_leader names each member's last answer.
//
// Pool invariants (Shared in client.cpp; all under its one mutex, never held across network I/O;
// connections leaving the pool are closed after the mutex is released):
//  1. An idle connection is keyed by (leader address, database) and has that database OPEN
//     (dqlite 1.11 allows one open database per connection). Database "" is the key of
//     connections with none open, used for CLUSTER, ADD, ASSIGN, REMOVE, TRANSFER, DUMP.
//  2. Only connections to the current leader are kept: remember_leader and forget_leader close
//     the others; a Lease returned for another address is closed.
//  3. At most max_idle_connections idle per key; a connection returned beyond that is closed.
//  4. A connection is reused only if verify_idle() passes; a broken (!is_open()) or discarded
//     Lease is not returned, nor one whose connection still holds prepared statements (closing
//     it ends them on the node: a pooled connection never carries another caller's statements).
//
// Writes and SQLite's write lock (observed on libdqlite 1.11): the leader holds a database's
// write lock until a transaction's frames are replicated, and a second connection that writes
// meanwhile gets SQLITE_BUSY at once (8 threads x 50 INSERTs on 8 connections: 385 of 400 BUSY).
// So exec() goes through a per-database write gate of this Client: a second mutex (one per
// database) that IS held across the request, by design, so that this Client's writers take
// turns. A wait for the gate is bounded by the call's leader_timeout (then: timeout, not sent).
// Writes on a Lease, or from another Client or process, do not pass the gate and may still get
// SQLITE_BUSY (the statement did not run). Statements on a Lease share one connection: a
// transaction (BEGIN ... COMMIT) must stay on one Lease, and must end before the Lease does.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/db/connection.hpp"
#include "stacknode/db/wire.hpp"

namespace stacknode::db {

// Waits between attempts (rule 5): the first retry comes quickly, since a refused not-leader or a
// reconnect is usually settled by one new LEADER round; doubling to a cap of half a second keeps
// a cluster in an election from being hammered while still noticing the new leader well within
// the failover goal of 2 s (dqlite's election timeout is 15 x the configured latency, 300 ms
// at stacknode-db's default of 20 ms).
inline constexpr std::chrono::milliseconds retry_initial_backoff{25};
inline constexpr std::chrono::milliseconds retry_max_backoff{500};
// Rule 6: another client's transaction holds the write lock for about one Raft commit.
inline constexpr std::chrono::milliseconds busy_initial_backoff{1};
inline constexpr std::chrono::milliseconds busy_max_backoff{50};

// True if `sql` holds at most one statement: no ';' but trailing ones (a ';' inside a string
// literal also counts, which only makes the answer "no" where "yes" would be right).
bool single_statement(std::string_view sql);

// SQLITE_BUSY (any extended code): the database's write lock is another connection's; the
// statement did not run.
bool refused_busy(const Error& error);
inline constexpr int retry_backoff_factor = 2;
// A LEADER probe during discovery does not touch Raft: a live member answers in well under a
// millisecond on a LAN. A member that does not answer in a second is as good as gone for
// discovery, so probes wait at most this (or request_timeout if shorter), and the others are
// asked instead of waiting the full request timeout on one silent address.
inline constexpr std::chrono::milliseconds leader_probe_max_timeout{1'000};
// When the discovery deadline has (nearly) passed, the last round's probes still get this long:
// enough for a loopback or LAN answer, short enough to keep find_leader close to leader_timeout.
inline constexpr std::chrono::milliseconds leader_probe_min_timeout{50};

struct ClientOptions {
  std::vector<std::string> addresses;  // any cluster members ("127.0.0.1:9001")
  std::chrono::milliseconds request_timeout = default_request_timeout;  // per step, per connection
  // How long to keep looking for a leader (a new election), and the retry budget of one call.
  std::chrono::milliseconds leader_timeout{10'000};
  std::size_t max_idle_connections = 16;  // per (leader, database)
  // A client TLS context when the cluster's wire port runs TLS (tls.hpp); null for plain TCP.
  std::shared_ptr<const TlsContext> tls;
};

class Client {
  struct Shared;  // the pool, the leader, the addresses and their mutex (client.cpp)

 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Membership changed: later discoveries ask these. Thread-safe; the current leader is kept
  // until a request to it fails.
  void set_addresses(std::vector<std::string> addresses);

  // Asks the members in turn (see "Leader discovery"), remembers and returns the leader;
  // ErrorKind::no_leader naming each member's answer when none is found within leader_timeout.
  Outcome<wire::Node> find_leader();
  // The leader the client follows now, as last found; id 0 when none is known.
  wire::Node leader() const;
  // Idle pooled connections, all databases together (for metrics and tests).
  std::size_t idle_connections() const;

  // A pooled connection to the current leader with `database` open. Returned to the pool when
  // destroyed unless it broke (!is_open()) or discard() was called. Must not be shared between
  // threads; may outlive the Client (it then closes its connection).
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    Connection& connection() { return *connection_; }
    wire::DatabaseId database_id() const { return database_id_; }
    const std::string& database() const { return database_; }
    const std::string& address() const { return connection_->address(); }  // the leader's
    // Closes the connection when the Lease ends instead of pooling it (e.g. after a
    // transaction was left open).
    void discard() { discarded_ = true; }

   private:
    friend class Client;
    Lease(std::shared_ptr<Shared> shared, std::string database, Connection connection,
          wire::DatabaseId database_id);
    void release();

    std::shared_ptr<Shared> shared_;
    std::string database_;
    std::optional<Connection> connection_;
    wire::DatabaseId database_id_ = 0;
    bool discarded_ = false;
    std::unique_lock<std::timed_mutex> write_gate_;  // held by a write_lease() until it ends
  };
  // Finds the leader if none is known and retries as rule 1 says until leader_timeout.
  // `database` must not be empty.
  Outcome<Lease> lease(const std::string& database);
  // A lease that also holds the database's write gate until it ends, so that a transaction
  // (BEGIN ... COMMIT on the lease) takes its turn with exec() instead of meeting SQLITE_BUSY.
  // The wait for the gate is bounded by leader_timeout (then: timeout, nothing sent).
  Outcome<Lease> write_lease(const std::string& database);

  // One EXEC_SQL (through the write gate) / QUERY_SQL on a pooled connection to the leader.
  Outcome<wire::Result> exec(const std::string& database, const std::string& sql,
                             std::vector<wire::Value> parameters = {});
  Outcome<wire::RowSet> query(const std::string& database, const std::string& sql,
                              std::vector<wire::Value> parameters = {});

  // The statements of one transaction, all on one connection to the leader.
  class Transaction {
   public:
    Outcome<wire::Result> exec(const std::string& sql, std::vector<wire::Value> parameters = {});
    Outcome<wire::RowSet> query(const std::string& sql, std::vector<wire::Value> parameters = {});

   private:
    friend class Client;
    explicit Transaction(Lease& lease) : lease_(lease) {}
    Lease& lease_;
  };
  // What a transaction does between BEGIN and COMMIT: nullopt to commit, or an error to roll back
  // and return (a failed statement's error, or the caller's own, e.g. "token already used"). It
  // may run more than once (rule 7), so it acts only through its Transaction, and whatever it
  // records for the caller it should reset at its start.
  using TransactionBody = std::function<std::optional<Error>(Transaction&)>;
  // BEGIN, `body`, COMMIT on one write_lease() of `database`; ROLLBACK when the body fails.
  Outcome<wire::Empty> transaction(const std::string& database, const TransactionBody& body);

  Outcome<wire::Nodes> cluster();
  Outcome<wire::Empty> add(wire::NodeId id, const std::string& address);
  Outcome<wire::Empty> assign(wire::NodeId id, wire::Role role);
  Outcome<wire::Empty> remove(wire::NodeId id);
  // Leadership to node `id`; on success the client forgets the old leader and finds the new one
  // with the next request.
  Outcome<wire::Empty> transfer(wire::NodeId id);
  Outcome<wire::Files> dump(const std::string& database);

 private:
  using Clock = std::chrono::steady_clock;
  enum class Kind : bool { read, write };

  // This client's write gate of `database`, waited for until `deadline` (then: timeout, not sent).
  Outcome<std::unique_lock<std::timed_mutex>> take_write_gate(const std::string& database,
                                                              Clock::time_point deadline);
  Outcome<wire::Node> discover(Clock::time_point deadline);
  Outcome<wire::Node> current_leader(Clock::time_point deadline);
  // One try at a ready connection (no retries); forgets the leader when it cannot reach it.
  Outcome<Lease> acquire(const std::string& database, Clock::time_point deadline);
  template <typename T, typename Request>
  Outcome<T> perform(const std::string& database, Kind kind, Clock::time_point deadline,
                     Request&& request);

  const ClientOptions options_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace stacknode::db
