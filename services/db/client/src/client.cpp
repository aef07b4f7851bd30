// The leader-following dqlite client: discovery, the pool, the write gates and the retry loop;
// the rules and invariants it keeps are numbered in client.hpp.
#include "stacknode/db/client.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <mutex>
#include <thread>
#include <utility>

namespace stacknode::db {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

milliseconds left_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return std::max(left, milliseconds{0});
}

// Sleeps `backoff` (never past `deadline`) and returns the next backoff (rule 5).
milliseconds back_off(milliseconds backoff, Clock::time_point deadline) {
  std::this_thread::sleep_for(std::min(backoff, left_until(deadline)));
  return std::min(backoff * retry_backoff_factor, retry_max_backoff);
}

// SQLite's result codes: the low byte of an extended code is its primary code.
constexpr std::uint64_t sqlite_primary_code_mask = 0xff;
constexpr std::uint64_t sqlite_busy = 5;

// Sleeps `backoff` plus up to as much again at random (never past `deadline`), so that writers
// of several clients refused together do not come back together; returns the next backoff.
milliseconds back_off_busy(milliseconds backoff, Clock::time_point deadline) {
  thread_local std::minstd_rand random(std::random_device{}());
  const auto jitter = std::chrono::microseconds(random() % (std::chrono::microseconds(backoff).count() + 1));
  std::this_thread::sleep_for(std::min<std::chrono::microseconds>(backoff + jitter, left_until(deadline)));
  return std::min(backoff * retry_backoff_factor, busy_max_backoff);
}

std::string describe(const wire::Node& node) {
  return std::to_string(node.id) + "@" + node.address;
}

std::string describe(const Error& error) {
  std::string text(to_string(error.kind));
  if (error.code != 0) text += " " + std::to_string(error.code);
  return text + ": " + error.message;
}

// Rule 1c: the node refused before running anything.
bool refused_as_not_leader(const Error& error) {
  return error.kind == ErrorKind::not_leader && error.code == wire::error_not_leader;
}

// Rule 3: a read may be sent again after any failure that is not the statement's own.
bool read_may_retry(const Error& error) {
  switch (error.kind) {
    case ErrorKind::not_leader:
    case ErrorKind::timeout:
    case ErrorKind::connection_lost:
    case ErrorKind::protocol:
      return true;
    case ErrorKind::sqlite:
    case ErrorKind::no_leader:
    case ErrorKind::invalid_request:
      return false;
  }
  return false;
}

// Rule 1a/1b: getting a connection ready failed before the caller's request was sent. The same
// kinds as rule 3: a SQLite refusal of OPEN is the same on any leader, no_leader means discovery
// already spent the budget.
bool preparation_may_retry(const Error& error) { return read_may_retry(error); }

Error invalid(std::string message) {
  return Error{ErrorKind::invalid_request, 0, std::move(message)};
}

}  // namespace

// What the Client and its Leases share: see "Pool invariants" in client.hpp.
struct Client::Shared {
  struct Idle {
    Connection connection;
    wire::DatabaseId database_id = 0;
  };
  using IdleByDatabase = std::map<std::string, std::vector<Idle>>;

  explicit Shared(ClientOptions const& options)
      : max_idle(options.max_idle_connections), addresses(options.addresses) {}

  // An idle connection to `address` with `database` open, if the pool has one (invariant 1).
  std::optional<Idle> take(const std::string& database, const std::string& address) {
    std::lock_guard lock(mutex);
    if (leader.id == 0 || leader.address != address) return std::nullopt;
    auto found = idle.find(database);
    if (found == idle.end() || found->second.empty()) return std::nullopt;
    Idle taken = std::move(found->second.back());
    found->second.pop_back();
    return taken;
  }

  // Invariants 2 and 3: kept only if it is to the current leader and there is room.
  void give_back(const std::string& database, Connection connection, wire::DatabaseId database_id) {
    std::optional<Connection> closing;  // destroyed after the lock is released
    std::lock_guard lock(mutex);
    std::vector<Idle>& kept = idle[database];
    if (leader.id == 0 || connection.address() != leader.address || kept.size() >= max_idle) {
      closing.emplace(std::move(connection));
      return;
    }
    kept.push_back(Idle{std::move(connection), database_id});
  }

  void remember_leader(const wire::Node& node) {
    IdleByDatabase closing;
    std::lock_guard lock(mutex);
    if (node.address != leader.address) closing.swap(idle);
    leader = node;
    leader_hint = node.address;
  }

  // The leader at `address` failed us; the next request looks for one again.
  void forget_leader(const std::string& address) {
    IdleByDatabase closing;
    std::lock_guard lock(mutex);
    if (leader.address != address) return;  // another thread already moved on
    leader = wire::Node{};
    closing.swap(idle);
  }

  // The members to ask, the last leader first, each once.
  std::vector<std::string> candidates() const {
    std::lock_guard lock(mutex);
    std::vector<std::string> order;
    if (!leader_hint.empty()) order.push_back(leader_hint);
    for (const std::string& address : addresses) {
      if (std::find(order.begin(), order.end(), address) == order.end()) order.push_back(address);
    }
    return order;
  }

  // The database's write gate; gates live as long as the Client (one per database used).
  std::timed_mutex& write_gate(const std::string& database) {
    std::lock_guard lock(mutex);
    std::unique_ptr<std::timed_mutex>& gate = write_gates[database];
    if (!gate) gate = std::make_unique<std::timed_mutex>();
    return *gate;
  }

  const std::size_t max_idle;
  mutable std::mutex mutex;  // guards everything below
  std::vector<std::string> addresses;
  wire::Node leader;        // id 0: none known
  std::string leader_hint;  // the last leader's address, asked first in discovery
  IdleByDatabase idle;      // all to leader.address
  std::map<std::string, std::unique_ptr<std::timed_mutex>> write_gates;
};

// ---- Lease ----

Client::Lease::Lease(std::shared_ptr<Shared> shared, std::string database, Connection connection,
                     wire::DatabaseId database_id)
    : shared_(std::move(shared)),
      database_(std::move(database)),
      connection_(std::move(connection)),
      database_id_(database_id) {}

Client::Lease::Lease(Lease&& other) noexcept
    : shared_(std::move(other.shared_)),
      database_(std::move(other.database_)),
      connection_(std::move(other.connection_)),
      database_id_(other.database_id_),
      discarded_(other.discarded_),
      write_gate_(std::move(other.write_gate_)) {
  other.connection_.reset();
}

Client::Lease& Client::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    shared_ = std::move(other.shared_);
    database_ = std::move(other.database_);
    connection_ = std::move(other.connection_);
    other.connection_.reset();
    database_id_ = other.database_id_;
    discarded_ = other.discarded_;
    write_gate_ = std::move(other.write_gate_);
  }
  return *this;
}

Client::Lease::~Lease() {
  release();
}

void Client::Lease::release() {
  // A connection with statements still prepared is closed, which ends them on the node.
  if (shared_ && connection_ && connection_->is_open() && !connection_->has_prepared() && !discarded_) {
    shared_->give_back(database_, std::move(*connection_), database_id_);
  }
  connection_.reset();
  if (write_gate_.owns_lock()) write_gate_.unlock();  // after the connection is back in the pool
  write_gate_ = {};
  shared_.reset();  // last: the gate lives in Shared
}

// ---- Client ----

Client::Client(ClientOptions options)
    : options_(std::move(options)), shared_(std::make_shared<Shared>(options_)) {}

Client::~Client() = default;

void Client::set_addresses(std::vector<std::string> addresses) {
  std::lock_guard lock(shared_->mutex);
  shared_->addresses = std::move(addresses);
}

wire::Node Client::leader() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->leader;
}

std::size_t Client::idle_connections() const {
  std::lock_guard lock(shared_->mutex);
  std::size_t count = 0;
  for (const auto& [database, idle] : shared_->idle) count += idle.size();
  return count;
}

Outcome<wire::Node> Client::find_leader() {
  return discover(Clock::now() + options_.leader_timeout);
}

Outcome<wire::Node> Client::discover(Clock::time_point deadline) {
  const milliseconds probe_cap = std::min(options_.request_timeout, leader_probe_max_timeout);
  // LEADER asked of one member, on a connection of its own (not pooled: it is not to the leader
  // yet, and its timeout is the probe's).
  auto ask = [&](const std::string& address) -> Outcome<wire::Node> {
    const milliseconds timeout =
        std::min(std::max(left_until(deadline), leader_probe_min_timeout), probe_cap);
    Outcome<Connection> connection = Connection::open(address, timeout, options_.tls.get());
    if (!connection) return connection.error();
    return connection->leader();
  };

  milliseconds backoff = retry_initial_backoff;
  for (;;) {
    const std::vector<std::string> members = shared_->candidates();
    if (members.empty()) {
      return Error{ErrorKind::no_leader, 0, "no cluster member addresses are configured"};
    }
    std::vector<std::string> answers;
    for (const std::string& address : members) {
      Outcome<wire::Node> named = ask(address);
      if (!named) {
        answers.push_back(address + ": " + describe(named.error()));
        continue;
      }
      if (named->id == 0) {
        answers.push_back(address + ": knows no leader");
        continue;
      }
      if (named->address == address) {
        shared_->remember_leader(named.value());
        return named;
      }
      // A follower's view may be stale: the named node must name itself.
      Outcome<wire::Node> confirmed = ask(named->address);
      if (confirmed && confirmed.value() == named.value()) {
        shared_->remember_leader(named.value());
        return named;
      }
      answers.push_back(address + ": names " + describe(named.value()) + ", which answers " +
                        (confirmed ? (confirmed->id == 0 ? std::string("it knows no leader")
                                                         : "leader " + describe(confirmed.value()))
                                   : describe(confirmed.error())));
    }
    if (Clock::now() >= deadline) {
      std::string message = "no leader found within " +
                            std::to_string(options_.leader_timeout.count()) + " ms; asked ";
      for (std::size_t i = 0; i < answers.size(); ++i) {
        message += (i == 0 ? "" : "; ") + answers[i];
      }
      return Error{ErrorKind::no_leader, 0, std::move(message)};
    }
    backoff = back_off(backoff, deadline);
  }
}

Outcome<wire::Node> Client::current_leader(Clock::time_point deadline) {
  wire::Node known = leader();
  if (known.id != 0) return known;
  return discover(deadline);
}

Outcome<Client::Lease> Client::acquire(const std::string& database, Clock::time_point deadline) {
  Outcome<wire::Node> found = current_leader(deadline);
  if (!found) return found.error();
  const std::string& address = found->address;
  while (std::optional<Shared::Idle> idle = shared_->take(database, address)) {
    if (idle->connection.verify_idle()) {
      return Lease(shared_, database, std::move(idle->connection), idle->database_id);
    }
    // Closed by the node while idle (it stopped, or dropped us): try the next one.
  }
  Outcome<Connection> opened = Connection::open(address, options_.request_timeout, options_.tls.get());
  if (!opened) {
    shared_->forget_leader(address);
    return opened.error();
  }
  wire::DatabaseId database_id = 0;
  if (!database.empty()) {
    Outcome<wire::DatabaseId> open = opened->open_database(database);
    if (!open) {
      if (preparation_may_retry(open.error())) shared_->forget_leader(address);
      return open.error();
    }
    database_id = open.value();
  }
  return Lease(shared_, database, std::move(opened.value()), database_id);
}

// The retry loop of rules 1-5: `request(Lease&)` is one attempt on a ready connection.
template <typename T, typename Request>
Outcome<T> Client::perform(const std::string& database, Kind kind, Clock::time_point deadline,
                           Request&& request) {
  milliseconds backoff = retry_initial_backoff;
  std::optional<Error> last;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      if (Clock::now() >= deadline) {
        return Error{ErrorKind::no_leader, 0,
                     "no leader took the request within " +
                         std::to_string(options_.leader_timeout.count()) +
                         " ms; last: " + describe(*last)};
      }
      backoff = back_off(backoff, deadline);
    }
    Outcome<Lease> lease = acquire(database, deadline);
    if (!lease) {
      if (!preparation_may_retry(lease.error())) return lease.error();
      last = lease.error();
      continue;
    }
    Outcome<T> result = request(lease.value());
    if (result) return result;
    const Error& error = result.error();
    if (error.kind == ErrorKind::sqlite || error.kind == ErrorKind::invalid_request) return result;
    // Not the statement's own failure: the node is not (or no longer) the leader, or the way to
    // it broke. Either way the next request looks for the leader again, whether or not this one
    // may be retried.
    lease->discard();
    shared_->forget_leader(lease->address());
    if (refused_as_not_leader(error) || (kind == Kind::read && read_may_retry(error))) {
      last = error;
      continue;
    }
    return result;
  }
}

Outcome<Client::Lease> Client::lease(const std::string& database) {
  if (database.empty()) return invalid("a lease needs a database name");
  const auto deadline = Clock::now() + options_.leader_timeout;
  milliseconds backoff = retry_initial_backoff;
  for (;;) {
    Outcome<Lease> lease = acquire(database, deadline);
    if (lease || !preparation_may_retry(lease.error())) return lease;
    if (Clock::now() >= deadline) {
      return Error{ErrorKind::no_leader, 0,
                   "no leader opened '" + database + "' within " +
                       std::to_string(options_.leader_timeout.count()) +
                       " ms; last: " + describe(lease.error())};
    }
    backoff = back_off(backoff, deadline);
  }
}

Outcome<std::unique_lock<std::timed_mutex>> Client::take_write_gate(const std::string& database,
                                                                   Clock::time_point deadline) {
  std::unique_lock gate(shared_->write_gate(database), std::defer_lock);
  if (!gate.try_lock_until(deadline)) {
    return Error{ErrorKind::timeout, 0,
                 "not sent: this client's earlier writes to '" + database + "' took longer than " +
                     std::to_string(options_.leader_timeout.count()) + " ms"};
  }
  return gate;
}

Outcome<Client::Lease> Client::write_lease(const std::string& database) {
  if (database.empty()) return invalid("a lease needs a database name");
  Outcome<std::unique_lock<std::timed_mutex>> gate =
      take_write_gate(database, Clock::now() + options_.leader_timeout);
  if (!gate) return gate.error();
  Outcome<Lease> leased = lease(database);
  if (leased) leased->write_gate_ = std::move(gate.value());
  return leased;
}

bool refused_busy(const Error& error) {
  return error.kind == ErrorKind::sqlite && (error.code & sqlite_primary_code_mask) == sqlite_busy;
}

bool single_statement(std::string_view sql) {
  const std::size_t semicolon = sql.find(';');
  if (semicolon == std::string_view::npos) return true;
  return sql.find_first_not_of("; \t\r\n\f\v", semicolon) == std::string_view::npos;
}

Outcome<wire::Result> Client::exec(const std::string& database, const std::string& sql,
                                   std::vector<wire::Value> parameters) {
  if (database.empty()) return invalid("exec needs a database name");
  const auto deadline = Clock::now() + options_.leader_timeout;
  Outcome<std::unique_lock<std::timed_mutex>> gate = take_write_gate(database, deadline);
  if (!gate) return gate.error();
  const bool may_retry_busy = single_statement(sql);
  milliseconds backoff = busy_initial_backoff;
  for (;;) {
    Outcome<wire::Result> done = perform<wire::Result>(database, Kind::write, deadline, [&](Lease& lease) {
      return lease.connection().exec_sql(lease.database_id(), sql, parameters);
    });
    if (done || !refused_busy(done.error()) || !may_retry_busy || Clock::now() >= deadline) return done;
    backoff = back_off_busy(backoff, deadline);  // rule 6
  }
}

Outcome<wire::RowSet> Client::query(const std::string& database, const std::string& sql,
                                    std::vector<wire::Value> parameters) {
  if (database.empty()) return invalid("query needs a database name");
  const auto deadline = Clock::now() + options_.leader_timeout;
  return perform<wire::RowSet>(database, Kind::read, deadline, [&](Lease& lease) {
    return lease.connection().query_sql(lease.database_id(), sql, parameters);
  });
}

Outcome<wire::Result> Client::Transaction::exec(const std::string& sql, std::vector<wire::Value> parameters) {
  return lease_.connection().exec_sql(lease_.database_id(), sql, parameters);
}

Outcome<wire::RowSet> Client::Transaction::query(const std::string& sql, std::vector<wire::Value> parameters) {
  return lease_.connection().query_sql(lease_.database_id(), sql, parameters);
}

Outcome<wire::Empty> Client::transaction(const std::string& database, const TransactionBody& body) {
  if (database.empty()) return invalid("a transaction needs a database name");
  const auto deadline = Clock::now() + options_.leader_timeout;
  milliseconds backoff = busy_initial_backoff;
  for (;;) {
    Outcome<Lease> lease = write_lease(database);
    if (!lease) return lease.error();
    Connection& connection = lease->connection();
    // Everything up to COMMIT: on failure the transaction is rolled back and may run again.
    const auto attempt = [&]() -> std::optional<Error> {
      if (Outcome<wire::Result> begun = connection.exec_sql(lease->database_id(), "BEGIN"); !begun) {
        return begun.error();
      }
      Transaction transaction(*lease);
      return body(transaction);
    };
    if (std::optional<Error> failed = attempt()) {
      if (connection.is_open() && !connection.exec_sql(lease->database_id(), "ROLLBACK")) lease->discard();
      if (refused_as_not_leader(*failed)) shared_->forget_leader(lease->address());
      const bool may_retry = refused_busy(*failed) || refused_as_not_leader(*failed);
      if (!may_retry || Clock::now() >= deadline) return *failed;
      lease = Error{};  // the lease and its write gate go back before the pause
      backoff = back_off_busy(backoff, deadline);  // rule 7
      continue;
    }
    Outcome<wire::Result> committed = connection.exec_sql(lease->database_id(), "COMMIT");
    if (!committed) {
      if (connection.is_open() && !connection.exec_sql(lease->database_id(), "ROLLBACK")) lease->discard();
      return committed.error();
    }
    return wire::Empty{};
  }
}

// Cluster requests use connections with no database open (invariant 1: key "").
Outcome<wire::Nodes> Client::cluster() {
  return perform<wire::Nodes>("", Kind::read, Clock::now() + options_.leader_timeout,
                              [](Lease& lease) { return lease.connection().cluster(); });
}

Outcome<wire::Empty> Client::add(wire::NodeId id, const std::string& address) {
  return perform<wire::Empty>("", Kind::write, Clock::now() + options_.leader_timeout,
                              [&](Lease& lease) { return lease.connection().add(id, address); });
}

Outcome<wire::Empty> Client::assign(wire::NodeId id, wire::Role role) {
  return perform<wire::Empty>("", Kind::write, Clock::now() + options_.leader_timeout,
                              [&](Lease& lease) { return lease.connection().assign(id, role); });
}

Outcome<wire::Empty> Client::remove(wire::NodeId id) {
  return perform<wire::Empty>("", Kind::write, Clock::now() + options_.leader_timeout,
                              [&](Lease& lease) { return lease.connection().remove(id); });
}

Outcome<wire::Empty> Client::transfer(wire::NodeId id) {
  std::string old_leader;
  Outcome<wire::Empty> done = perform<wire::Empty>(
      "", Kind::write, Clock::now() + options_.leader_timeout, [&](Lease& lease) {
        old_leader = lease.address();
        return lease.connection().transfer(id);
      });
  if (done) shared_->forget_leader(old_leader);
  return done;
}

Outcome<wire::Files> Client::dump(const std::string& database) {
  if (database.empty()) return invalid("dump needs a database name");
  return perform<wire::Files>("", Kind::read, Clock::now() + options_.leader_timeout,
                              [&](Lease& lease) { return lease.connection().dump(database); });
}

}  // namespace stacknode::db
