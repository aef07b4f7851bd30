// Component test of the leader-following client (services/db/client/client.hpp) against a real
// 3-node dqlite cluster: libdqlite 1.11 nodes started in this process on loopback ports, node 1
// bootstrapping and nodes 2 and 3 joined through the client (ADD, then ASSIGN voter). Covers
// discovery from any member, requests through a follower's address, the pool's invariants,
// concurrent writers, following a leadership transfer, CLUSTER, a cluster without quorum (with a
// follower or with the old leader surviving), and a client with only dead addresses.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dqlite_node.hpp"
#include "net.hpp"
#include "process.hpp"
#include "stacknode/db/client.hpp"

#include <CppUTest/TestHarness.h>

using namespace stacknode::db;
namespace support = stacknode::test;
using std::chrono::milliseconds;

namespace {

constexpr int cluster_size = 3;
// Bounds a broken test only: a loopback cluster elects and answers well within it.
constexpr milliseconds test_timeout{20'000};
// The no-quorum test's leader_timeout: short, so that giving up is quick, and still longer than
// one election timeout, so the client has really waited for one.
constexpr milliseconds short_leader_timeout{2'000};
// What a call may take beyond leader_timeout: one attempt in flight and the last discovery round
// (loopback answers in milliseconds; an exec waits up to an election timeout for a lost quorum).
constexpr milliseconds give_up_slack{1'500};
constexpr int writer_threads = 8;
constexpr int writes_per_thread = 25;

using Node = support::DqliteNode;

ClientOptions options_for(std::vector<std::string> addresses,
                          milliseconds leader_timeout = test_timeout) {
  ClientOptions options;
  options.addresses = std::move(addresses);
  options.leader_timeout = leader_timeout;
  return options;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

template <typename T>
void check_ok(const Outcome<T>& outcome, const char* what) {
  if (!outcome) {
    FAIL((std::string(what) + ": " + std::string(to_string(outcome.error().kind)) + ": " +
          outcome.error().message)
             .c_str());
  }
}

std::int64_t single_integer(const Outcome<wire::RowSet>& rows) {
  check_ok(rows, "query");
  const wire::RowSet& set = rows.value();
  CHECK_EQUAL(1u, set.rows.size());
  CHECK_EQUAL(1u, set.rows[0].size());
  const auto* value = std::get_if<std::int64_t>(&set.rows[0][0]);
  CHECK(value != nullptr);
  return *value;
}

}  // namespace

TEST_GROUP(DqliteCluster) {
  // Members of the group, not locals: a failing check leaves the test body without running its
  // destructors, and teardown() must still stop every node.
  std::vector<std::unique_ptr<Node>> nodes;

  void setup() override {
    // libdqlite's libuv loops write to peers with write(2), which raises SIGPIPE when a stopped
    // node or a client that hung up has closed the socket; a process hosting nodes ignores it
    // (as stacknode-db must) and takes EPIPE instead.
    std::signal(SIGPIPE, SIG_IGN);
    for (wire::NodeId id = 1; id <= cluster_size; ++id) nodes.push_back(std::make_unique<Node>(id));
    // Node 1 bootstraps a cluster of one; the others join through the client, as stacknode-db will.
    Client client(options_for({nodes[0]->address()}));
    check_ok(client.find_leader(), "find_leader on the bootstrap node");
    for (std::size_t i = 1; i < nodes.size(); ++i) {
      check_ok(client.add(nodes[i]->id(), nodes[i]->address()), "add");
      check_ok(client.assign(nodes[i]->id(), wire::Role::voter), "assign voter");
    }
  }
  void teardown() override {
    nodes.clear();
  }

  std::vector<std::string> addresses() const {
    std::vector<std::string> all;
    for (const auto& node : nodes) all.push_back(node->address());
    return all;
  }
  Node& node_with_id(wire::NodeId id) {
    for (auto& node : nodes) {
      if (node->id() == id) return *node;
    }
    FAIL("no node with that id");
    return *nodes[0];
  }
};

TEST(DqliteCluster, EveryMemberLeadsTheClientToTheSameLeader) {
  wire::Node first;
  for (const auto& node : nodes) {
    Client client(options_for({node->address()}));
    Outcome<wire::Node> leader = client.find_leader();
    check_ok(leader, "find_leader");
    CHECK(leader->id >= 1 && leader->id <= cluster_size);
    STRCMP_EQUAL(node_with_id(leader->id).address().c_str(), leader->address.c_str());
    CHECK(client.leader() == leader.value());
    if (first.id == 0) first = leader.value();
    CHECK(leader.value() == first);
  }
}

TEST(DqliteCluster, ClusterListsThreeVoters) {
  Client client(options_for(addresses()));
  Outcome<wire::Nodes> listed = client.cluster();
  check_ok(listed, "cluster");
  CHECK_EQUAL(static_cast<std::size_t>(cluster_size), listed->nodes.size());
  for (const auto& node : nodes) {
    const auto found =
        std::find_if(listed->nodes.begin(), listed->nodes.end(),
                     [&](const wire::NodeInfo& info) { return info.id == node->id(); });
    CHECK(found != listed->nodes.end());
    STRCMP_EQUAL(node->address().c_str(), found->address.c_str());
    CHECK(found->role == wire::Role::voter);
  }
}

TEST(DqliteCluster, ExecAndQueryThroughAClientThatKnowsOnlyAFollower) {
  const wire::Node leader = Client(options_for(addresses())).find_leader().value();
  const Node& follower = node_with_id(leader.id % cluster_size + 1);
  Client client(options_for({follower.address()}));

  check_ok(client.exec("app", "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"), "create");
  Outcome<wire::Result> inserted =
      client.exec("app", "INSERT INTO t VALUES (?, ?)", {std::int64_t{7}, std::string("seven")});
  check_ok(inserted, "insert");
  CHECK_EQUAL(1u, inserted->rows_affected);
  CHECK(client.leader() == leader);

  Outcome<wire::RowSet> rows =
      client.query("app", "SELECT k, v FROM t WHERE k = ?", {std::int64_t{7}});
  check_ok(rows, "select");
  CHECK_EQUAL(1u, rows->rows.size());
  CHECK(rows->rows[0] == (wire::Row{std::int64_t{7}, std::string("seven")}));

  // A SQLite error is the statement's own: not retried, code kept.
  Outcome<wire::Result> duplicate = client.exec("app", "INSERT INTO t VALUES (7, 'again')");
  CHECK_FALSE(duplicate.ok());
  CHECK(duplicate.error().kind == ErrorKind::sqlite);
  CHECK_EQUAL(1555u, duplicate.error().code);  // SQLITE_CONSTRAINT_PRIMARYKEY

  // A transaction on one Lease, then the lease's connection goes back to the pool.
  {
    Outcome<Client::Lease> lease = client.lease("app");
    check_ok(lease, "lease");
    STRCMP_EQUAL(leader.address.c_str(), lease->address().c_str());
    Connection& connection = lease->connection();
    check_ok(connection.exec_sql(lease->database_id(), "BEGIN"), "begin");
    check_ok(connection.exec_sql(lease->database_id(), "INSERT INTO t VALUES (8, 'eight')"),
             "insert 8");
    check_ok(connection.exec_sql(lease->database_id(), "INSERT INTO t VALUES (9, 'nine')"),
             "insert 9");
    check_ok(connection.exec_sql(lease->database_id(), "COMMIT"), "commit");
  }
  CHECK_EQUAL(3, single_integer(client.query("app", "SELECT count(*) FROM t")));
  CHECK(client.lease("").error().kind == ErrorKind::invalid_request);

  Outcome<wire::Files> files = client.dump("app");
  check_ok(files, "dump");
  CHECK_EQUAL(2u, files->files.size());
  STRCMP_EQUAL("app", files->files[0].name.c_str());
}

TEST(DqliteCluster, LeasesReturnToThePoolUnlessBrokenOrDiscarded) {
  ClientOptions options = options_for(addresses());
  options.max_idle_connections = 1;
  Client client(options);
  check_ok(client.exec("app", "CREATE TABLE t (n INTEGER)"), "create");
  CHECK_EQUAL(1u, client.idle_connections());  // exec's connection, back in the pool
  {
    Outcome<Client::Lease> first = client.lease("app");
    check_ok(first, "first lease");
    CHECK_EQUAL(0u, client.idle_connections());  // the same connection, taken again
    Outcome<Client::Lease> second = client.lease("app");
    check_ok(second, "second lease");
    CHECK(first->database_id() ==
          second->database_id());  // dqlite 1.11 numbers from 0 per connection
  }
  CHECK_EQUAL(1u, client.idle_connections());  // invariant 3: the second one is closed
  {
    Outcome<Client::Lease> discarded = client.lease("app");
    check_ok(discarded, "lease to discard");
    discarded->discard();
  }
  CHECK_EQUAL(0u, client.idle_connections());
  {  // invariant 4: one with a statement still prepared is closed, a finalized one returns
    Outcome<Client::Lease> finalized = client.lease("app");
    check_ok(finalized, "lease to prepare and finalize on");
    Outcome<wire::Stmt> statement = finalized->connection().prepare(finalized->database_id(), "SELECT 1");
    check_ok(statement, "prepare");
    check_ok(finalized->connection().finalize(finalized->database_id(), statement->id), "finalize");
    Outcome<Client::Lease> prepared = client.lease("app");
    check_ok(prepared, "lease to prepare on");
    check_ok(prepared->connection().prepare(prepared->database_id(), "SELECT n FROM t"), "prepare");
  }  // `prepared` ends first: were it pooled, the pool (of 1) would be full for `finalized`
  CHECK_EQUAL(1u, client.idle_connections());
  {
    Outcome<Client::Lease> emptied = client.lease("app");  // takes the finalized one back out
    check_ok(emptied, "lease");
    CHECK_FALSE(emptied->connection().has_prepared());
  }
  client.lease("app")->discard();  // back to none idle, as before
  CHECK_EQUAL(0u, client.idle_connections());
  {
    Outcome<Client::Lease> other_database = client.lease("other");
    check_ok(other_database, "lease on another database");
    STRCMP_EQUAL("other", other_database->database().c_str());
  }
  CHECK_EQUAL(1u, client.idle_connections());
  // Invariant 2: when the leader changes, the connections to the old one are closed.
  check_ok(client.transfer(client.leader().id % cluster_size + 1), "transfer");
  CHECK_EQUAL(0u, client.idle_connections());
}

namespace {

// Threads of one Client take turns at its write gate; the threads of separate Clients (each
// stacknode-db node has its own) meet SQLITE_BUSY at the leader, which exec() retries (rule 6).
void write_concurrently(const std::string& database, Client& client, const std::vector<Client*>& per_writer) {
  check_ok(client.exec(database, "CREATE TABLE t (writer INTEGER, n INTEGER, UNIQUE (writer, n))"),
           "create");
  // Each thread records its failures; checks happen here, after join (CppUTest is not thread-safe).
  std::vector<std::vector<std::string>> failures(writer_threads);
  std::vector<std::thread> writers;
  for (int writer = 0; writer < writer_threads; ++writer) {
    writers.emplace_back([&database, &per_writer, &failures, writer] {
      for (int n = 0; n < writes_per_thread; ++n) {
        Outcome<wire::Result> done = per_writer[writer]->exec(database, "INSERT INTO t VALUES (?, ?)",
                                                 {std::int64_t{writer}, std::int64_t{n}});
        if (!done) {
          failures[writer].push_back(std::string(to_string(done.error().kind)) + " " +
                                     std::to_string(done.error().code) + ": " +
                                     done.error().message);
        }
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  for (const auto& failed : failures) {
    if (!failed.empty()) FAIL(("a writer failed: " + failed.front()).c_str());
  }
  CHECK_EQUAL(writer_threads * writes_per_thread,
              single_integer(client.query(database, "SELECT count(*) FROM t")));
  for (int writer = 0; writer < writer_threads; ++writer) {
    CHECK_EQUAL(writes_per_thread, single_integer(client.query(
                                       database, "SELECT count(DISTINCT n) FROM t WHERE writer = ?",
                                       {std::int64_t{writer}})));
  }
}

}  // namespace

TEST(DqliteCluster, ConcurrentWritersOfOneClientAllSucceedExactlyOnce) {
  Client client(options_for(addresses()));
  write_concurrently("one_client", client, std::vector<Client*>(writer_threads, &client));
}

TEST(DqliteCluster, ConcurrentWritersOfSeparateClientsAllSucceedExactlyOnce) {
  Client client(options_for(addresses()));
  std::vector<std::unique_ptr<Client>> own;
  std::vector<Client*> per_writer;
  for (int writer = 0; writer < writer_threads; ++writer) {
    own.push_back(std::make_unique<Client>(options_for(addresses())));
    per_writer.push_back(own.back().get());
  }
  write_concurrently("separate_clients", client, per_writer);
}

TEST(DqliteCluster, FollowsTheLeaderAfterATransfer) {
  Client client(options_for(addresses()));
  check_ok(client.exec("app", "CREATE TABLE t (n INTEGER)"), "create");
  const wire::Node before = client.leader();
  CHECK(before.id != 0);
  const wire::NodeId target = before.id % cluster_size + 1;

  check_ok(client.transfer(target), "transfer");
  Outcome<wire::Result> after = client.exec("app", "INSERT INTO t VALUES (1)");
  check_ok(after, "exec after the transfer");
  CHECK(client.leader().id != before.id);
  CHECK_EQUAL(target, client.leader().id);
  STRCMP_EQUAL(node_with_id(target).address().c_str(), client.leader().address.c_str());
  CHECK_EQUAL(1, single_integer(client.query("app", "SELECT count(*) FROM t")));
}

// The survivor is a follower: no node can win an election, and the client never sends the write.
TEST(DqliteCluster, WithoutQuorumExecGivesNoLeaderInTime) {
  Client client(options_for(addresses(), short_leader_timeout));
  check_ok(client.exec("app", "CREATE TABLE t (n INTEGER)"), "create");
  const wire::NodeId leader_id = client.leader().id;
  node_with_id(leader_id).stop();
  node_with_id(leader_id % cluster_size + 1).stop();

  const auto start = std::chrono::steady_clock::now();
  Outcome<wire::Result> written = client.exec("app", "INSERT INTO t VALUES (1)");
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK_FALSE(written.ok());
  if (written.error().kind != ErrorKind::no_leader && written.error().kind != ErrorKind::timeout) {
    FAIL(("unexpected " + std::string(to_string(written.error().kind)) + ": " +
          written.error().message)
             .c_str());
  }
  CHECK(took <= short_leader_timeout + give_up_slack);
  CHECK(client.query("app", "SELECT count(*) FROM t").error().kind == ErrorKind::no_leader);
}

// The survivor is the old leader: a write it accepts can never commit. The client returns an
// error (LEADERSHIP_LOST, if the write was sent before the leader stepped down: outcome unknown
// by rule 2; else no_leader), never a success.
TEST(DqliteCluster, WithoutQuorumTheOldLeaderNeverConfirmsAWrite) {
  Client client(options_for(addresses(), short_leader_timeout));
  check_ok(client.exec("app", "CREATE TABLE t (n INTEGER)"), "create");
  const wire::NodeId leader_id = client.leader().id;
  for (auto& node : nodes) {
    if (node->id() != leader_id) node->stop();
  }

  const auto start = std::chrono::steady_clock::now();
  Outcome<wire::Result> written = client.exec("app", "INSERT INTO t VALUES (1)");
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK_FALSE(written.ok());
  const Error& error = written.error();
  const bool leadership_lost =
      error.kind == ErrorKind::not_leader && error.code == wire::error_leadership_lost;
  if (error.kind != ErrorKind::no_leader && error.kind != ErrorKind::timeout && !leadership_lost) {
    FAIL(("unexpected " + std::string(to_string(error.kind)) + ": " + error.message).c_str());
  }
  CHECK(took <= short_leader_timeout + give_up_slack);
}

TEST_GROUP(DqliteClusterClientAlone){};

TEST(DqliteClusterClientAlone, OnlyDeadAddressesGiveNoLeaderNamingThem) {
  const std::string first = support::loopback_address(support::unused_port());
  const std::string second = support::loopback_address(support::unused_port());
  constexpr milliseconds quick{300};
  Client client(options_for({first, second}, quick));

  Outcome<wire::Node> leader = client.find_leader();
  CHECK_FALSE(leader.ok());
  CHECK(leader.error().kind == ErrorKind::no_leader);
  CHECK(contains(leader.error().message, first));
  CHECK(contains(leader.error().message, second));

  Outcome<wire::Result> written = client.exec("app", "CREATE TABLE t (n INTEGER)");
  CHECK_FALSE(written.ok());
  CHECK(written.error().kind == ErrorKind::no_leader);
  if (!contains(written.error().message, first) || !contains(written.error().message, second)) {
    FAIL(written.error().message.c_str());
  }
  CHECK_EQUAL(0u, client.leader().id);

  Client nobody(options_for({}, quick));
  CHECK(nobody.find_leader().error().kind == ErrorKind::no_leader);
}
