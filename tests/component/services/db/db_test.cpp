// Component test of stacknode-db: three real processes on loopback form a dqlite cluster (node 1
// bootstraps, nodes 2 and 3 join through it), and the HTTP API is driven with curl. Covers:
// formation and membership as every node reports it, execute and query through every node with
// every value type, a transaction that fails part way and leaves nothing, bad input answered with
// its status and message while the node keeps serving, a backup that the sqlite3 tool opens,
// go-dqlite's shell (Debian's `dqlite`) reading a table written through our API, kill -9 of the
// leader under a writer (writes resume; every acknowledged write is there exactly once after the
// old leader returns), a removed node rejoining with a wiped data dir, and a cluster that lost
// quorum rebuilt from one survivor by stacknode-db-recover.
#include <signal.h>

#include <boost/json.hpp>

#include <cstdio>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "db_process.hpp"
#include "net.hpp"
#include "process.hpp"

#include <CppUTest/TestHarness.h>

namespace json = boost::json;
namespace fs = std::filesystem;
namespace support = stacknode::test;

namespace {

using support::DbNodeProcess;
using support::HttpAnswer;
using support::ok_json;
constexpr std::chrono::milliseconds eventually = support::db_eventually;
constexpr int node_count = 3;

// The value of an unlabelled metric in a /metrics exposition, or -1000 if absent.
double metric_value(const std::string& exposition, const std::string& name) {
  const std::size_t at = exposition.find("\n" + name + " ");
  return at == std::string::npos ? -1000.0 : std::atof(exposition.c_str() + at + name.size() + 2);
}

// The id of the node every member names as leader (polled: an election may be running).
int leader_id(const DbNodeProcess& node) {
  int leader = 0;
  support::poll_until(
      [&] {
        const HttpAnswer answer = node.try_http("GET", "/db/nodes");
        if (answer.status != 200) return false;
        const json::value listed = answer.json();
        for (const json::value& member : listed.at("nodes").as_array()) {
          if (member.at("leader").as_bool()) leader = static_cast<int>(member.at("id").to_number<std::int64_t>());
        }
        return leader != 0;
      },
      eventually);
  if (leader == 0) FAIL("no leader named");
  return leader;
}

std::string execute_body(const std::string& statements_json, bool transaction = false) {
  return std::string(R"({"database":"app","transaction":)") + (transaction ? "true" : "false") +
         R"(,"statements":)" + statements_json + "}";
}

}  // namespace

TEST_GROUP(StacknodeDb) {
  std::unique_ptr<support::TempDir> dir;
  std::vector<std::unique_ptr<DbNodeProcess>> nodes;

  void setup() override {
    dir = std::make_unique<support::TempDir>();
    nodes.push_back(std::make_unique<DbNodeProcess>(dir->path(), 1, ""));
    nodes[0]->wait_until_serving();
    for (int id = 2; id <= node_count; ++id) {
      nodes.push_back(std::make_unique<DbNodeProcess>(dir->path(), id, nodes[0]->dqlite_address()));
    }
    for (auto& node : nodes) node->wait_until_serving();
  }
  void teardown() override {
    nodes.clear();  // kills what still runs
    dir.reset();
  }
};

TEST(StacknodeDb, ThreeNodesFormOneClusterAndEveryNodeServes) {
  for (const auto& node : nodes) {
    const json::value listed = ok_json(node->http("GET", "/db/nodes"), "nodes");
    const json::array& members = listed.at("nodes").as_array();
    CHECK_EQUAL(3u, members.size());
    int leaders = 0;
    for (const json::value& member : members) {
      STRCMP_EQUAL("voter", member.at("role").as_string().c_str());
      leaders += member.at("leader").as_bool() ? 1 : 0;
    }
    CHECK_EQUAL(1, leaders);
    CHECK_EQUAL(200, node->http("GET", "/readyz").status);
  }
  // /metrics: every node a voter of 3, exactly one of them the leader (refreshed every 2 s).
  const bool metrics_agree = support::poll_until(
      [&] {
        double leaders = 0;
        for (const auto& node : nodes) {
          const HttpAnswer metrics = node->try_http("GET", "/metrics");
          if (metric_value(metrics.body, "stacknode_db_role") != 0 ||
              metric_value(metrics.body, "stacknode_db_members") != 3) {
            return false;
          }
          leaders += metric_value(metrics.body, "stacknode_db_is_leader");
        }
        return leaders == 1;
      },
      eventually);
  CHECK_TEXT(metrics_agree, nodes[0]->http("GET", "/metrics").body.c_str());
  ok_json(nodes[1]->http("POST", "/db/execute",
                         execute_body(R"J([{"sql":"CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, n TEXT,)J"
                                      R"J( flag BOOLEAN, at DATETIME, stamp DATETIME)"}])J")),
          "create");
  const json::value inserted = ok_json(
      nodes[2]->http("POST", "/db/execute",
                     execute_body(R"J([{"sql":"INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)",)J"
                                  R"J("params":[-9000000000, 2.5, "ünïcode", {"blob":"AAH+/w=="}, null, true,)J"
                                  R"J({"unix_time":1700000000}, {"iso8601":"2026-11-29 05:00:00"}]}])J")),
      "insert");
  CHECK(inserted.at("results") == json::parse(R"([{"rows_affected":1,"last_insert_id":1}])"));
  for (const auto& node : nodes) {
    const json::value rows =
        ok_json(node->http("POST", "/db/query", R"({"database":"app","sql":"SELECT * FROM t"})"), "query");
    CHECK(rows.at("rows") == json::parse(R"J([[-9000000000, 2.5, "ünïcode", {"blob":"AAH+/w=="}, null, true,
                                                {"unix_time":1700000000}, {"iso8601":"2026-11-29 05:00:00"}]])J"));
    CHECK(rows.at("types") ==
          json::parse(R"(["integer","float","text","blob","null","boolean","unix_time","iso8601"])"));
  }
}

TEST(StacknodeDb, AFailedTransactionLeavesNothingAndNamesItsStatement) {
  ok_json(nodes[0]->http("POST", "/db/execute",
                         execute_body(R"J([{"sql":"CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)"},)J"
                                      R"J({"sql":"INSERT INTO k VALUES (1, 'one')"}])J")),
          "setup");
  const HttpAnswer failed = nodes[1]->http(
      "POST", "/db/execute",
      execute_body(R"J([{"sql":"INSERT INTO k VALUES (2, 'two')"},{"sql":"INSERT INTO k VALUES (1, 'again')"}])J",
                   true));
  CHECK_EQUAL(409, failed.status);
  const json::value error = failed.json().at("error");
  STRCMP_EQUAL("sqlite", error.at("kind").as_string().c_str());
  CHECK_EQUAL(1u, error.at("statement").to_number<std::uint64_t>());
  CHECK_EQUAL(1555u, error.at("sqlite_code").to_number<std::uint64_t>());  // SQLITE_CONSTRAINT_PRIMARYKEY
  const json::value rows =
      ok_json(nodes[2]->http("POST", "/db/query", R"({"database":"app","sql":"SELECT id FROM k ORDER BY id"})"),
              "query");
  CHECK(rows.at("rows") == json::parse("[[1]]"));
}

TEST(StacknodeDb, BadInputGetsItsStatusAndTheNodeKeepsServing) {
  struct Case {
    const char* method;
    const char* path;
    std::string body;
    int status;
    const char* fragment;
  };
  const std::vector<Case> cases = {
      {"POST", "/db/execute", "{not json", 400, "not JSON"},
      {"POST", "/db/execute", R"({"database":"../x","statements":[{"sql":"SELECT 1"}]})", 400, "not a database name"},
      {"POST", "/db/execute", execute_body(R"([{"sql":"SELEKT 1"}])"), 400, "syntax error"},
      {"POST", "/db/query", R"({"database":"app","sql":"SELECT * FROM missing"})", 400, "no such table"},
      {"POST", "/db/execute", std::string(70'000, ' '), 413, ""},
      {"GET", "/db/nowhere", "", 404, "no such endpoint"},
      {"POST", "/db/nodes", R"({"id":9,"address":"nowhere"})", 400, "IPv4 host:port"},
  };
  for (const Case& bad : cases) {
    const HttpAnswer answer = nodes[0]->http(bad.method, bad.path, bad.body);
    if (answer.status != bad.status || answer.body.find(bad.fragment) == std::string::npos) {
      FAIL((std::string(bad.method) + " " + bad.path + ": expected " + std::to_string(bad.status) + " with \"" +
            bad.fragment + "\", got " + std::to_string(answer.status) + " " + answer.body)
               .c_str());
    }
  }
  const HttpAnswer syntax = nodes[0]->http("POST", "/db/execute", execute_body(R"([{"sql":"SELEKT 1"}])"));
  CHECK_EQUAL(1u, syntax.json().at("error").at("sqlite_code").to_number<std::uint64_t>());
  ok_json(nodes[0]->http("POST", "/db/query", R"({"database":"app","sql":"SELECT 1"})"), "still serving");
  CHECK(nodes[0]->process().running());
}

TEST(StacknodeDb, BackupOpensInSqlite3AndTheGoClientReadsOurTable) {
  support::require_program("sqlite3", "sqlite3");
  support::require_program("dqlite", "go-dqlite");
  ok_json(nodes[0]->http("POST", "/db/execute",
                         execute_body(R"J([{"sql":"CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"},)J"
                                      R"J({"sql":"INSERT INTO notes (body) VALUES ('first'), ('second')"}])J")),
          "write");
  const support::CommandResult saved = support::run_command(
      {"curl", "-sS", "--fail", "-o", (dir->path() / "backup.db").string(),
       "http://127.0.0.1:" + std::to_string(nodes[1]->http_port()) + "/db/backup?database=app"});
  CHECK_EQUAL(0, saved.status);
  const support::CommandResult opened =
      support::run_command({"sqlite3", (dir->path() / "backup.db").string(), "SELECT group_concat(body) FROM notes"});
  CHECK_EQUAL(0, opened.status);
  STRCMP_EQUAL("first,second\n", opened.output.c_str());

  std::string servers;
  for (const auto& node : nodes) servers += (servers.empty() ? "" : ",") + node->dqlite_address();
  const support::CommandResult go = support::run_command(
      {"dqlite", "-s", servers, "app", "SELECT body FROM notes ORDER BY id", "-f", "json"});
  if (go.status != 0 || go.output.find("first") == std::string::npos || go.output.find("second") == std::string::npos) {
    FAIL(("go-dqlite's shell did not read the table: " + go.output).c_str());
  }
}

TEST(StacknodeDb, KillingTheLeaderLosesNoAcknowledgedWriteAndDoublesNone) {
  // Writes acknowledged after the kill before the test moves on: enough to show writing resumed.
  constexpr int writes_after_kill = 20;
  constexpr int writes_before_kill = 20;
  ok_json(nodes[0]->http("POST", "/db/execute", execute_body(R"J([{"sql":"CREATE TABLE seq (n INTEGER)"}])J")),
          "create");
  const int leader = leader_id(*nodes[0]);
  DbNodeProcess& victim = *nodes[static_cast<std::size_t>(leader - 1)];
  const DbNodeProcess& writer_node = *nodes[static_cast<std::size_t>(leader % node_count)];

  // One writer, sequence numbers 1, 2, ...; each number is sent once and never retried, so a
  // number can be in the table at most once unless the database doubled it.
  std::mutex lock;
  std::set<int> acknowledged, unknown;
  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged_count{0};
  std::thread writer([&] {
    for (int n = 1; !stop.load(); ++n) {
      const HttpAnswer answer = writer_node.try_http(
          "POST", "/db/execute",
          execute_body(R"J([{"sql":"INSERT INTO seq VALUES (?)","params":[)J" + std::to_string(n) + "]}]"));
      std::lock_guard guard(lock);
      if (answer.status == 200) {
        acknowledged.insert(n);
        acknowledged_count.fetch_add(1);
      } else {
        unknown.insert(n);  // refused, or outcome unknown: may or may not be in the table
      }
    }
  });
  const bool wrote = support::poll_until([&] { return acknowledged_count.load() >= writes_before_kill; }, eventually);
  victim.kill9();
  const int at_kill = acknowledged_count.load();
  const bool resumed = support::poll_until([&] { return acknowledged_count.load() >= at_kill + writes_after_kill; },
                                           eventually);
  stop = true;
  writer.join();
  CHECK(wrote);
  if (!resumed) FAIL(("writes did not resume after the leader was killed:\n" + writer_node.output()).c_str());

  victim.restart();
  victim.wait_until_serving();
  std::map<int, int> copies;  // n -> rows holding it, read through the node that was killed
  support::poll_until(
      [&] {
        const HttpAnswer answer = victim.try_http(
            "POST", "/db/query", R"({"database":"app","sql":"SELECT n, count(*) FROM seq GROUP BY n"})");
        if (answer.status != 200) return false;
        copies.clear();
        const json::value result = answer.json();
        for (const json::value& row : result.at("rows").as_array()) {
          copies[static_cast<int>(row.at(0).to_number<std::int64_t>())] =
              static_cast<int>(row.at(1).to_number<std::int64_t>());
        }
        // The returning node may still be catching up: wait until it has every acknowledged write.
        for (int n : acknowledged) {
          if (copies.count(n) == 0) return false;
        }
        return true;
      },
      eventually);
  for (int n : acknowledged) {
    if (copies.count(n) == 0 || copies[n] != 1) {
      FAIL(("acknowledged write " + std::to_string(n) + " is in the table " +
            std::to_string(copies.count(n) ? copies[n] : 0) + " times").c_str());
    }
  }
  for (const auto& [n, count] : copies) {
    if (acknowledged.count(n) == 0 && unknown.count(n) == 0) FAIL(("a write never sent: " + std::to_string(n)).c_str());
    if (count != 1) FAIL(("write " + std::to_string(n) + " doubled").c_str());
  }
  std::printf("\n  %zu writes acknowledged (%d after the kill of leader %d), %zu refused or unknown\n",
              acknowledged.size(), acknowledged_count.load() - at_kill, leader, unknown.size());
}

TEST(StacknodeDb, ARemovedNodeRejoinsWithAWipedDataDir) {
  ok_json(nodes[0]->http("POST", "/db/execute",
                         execute_body(R"J([{"sql":"CREATE TABLE kept (v TEXT)"},)J"
                                      R"J({"sql":"INSERT INTO kept VALUES ('before')"}])J")),
          "write");
  // A follower other than node 1 (node 1 with an empty data dir would bootstrap a new cluster).
  const int leader = leader_id(*nodes[0]);
  const int removed = leader == 3 ? 2 : 3;
  DbNodeProcess& node = *nodes[static_cast<std::size_t>(removed - 1)];
  ok_json(nodes[0]->http("DELETE", "/db/nodes/" + std::to_string(removed)), "remove");
  CHECK_EQUAL(2u, ok_json(nodes[0]->http("GET", "/db/nodes"), "nodes").at("nodes").as_array().size());
  node.kill9();
  node.wipe_data();
  node.restart();
  node.wait_until_serving();  // joined again: ADD and ASSIGN through the leader
  const json::value listed = ok_json(nodes[0]->http("GET", "/db/nodes"), "nodes");
  CHECK_EQUAL(3u, listed.at("nodes").as_array().size());
  const json::value rows =
      ok_json(node.http("POST", "/db/query", R"({"database":"app","sql":"SELECT v FROM kept"})"), "query");
  CHECK(rows.at("rows") == json::parse(R"([["before"]])"));
}

TEST(StacknodeDb, ConcurrentWritersGetNoLockErrorsAndShareCommits) {
  // Writers at once, each its own keep-alive-less loop, spread over the three nodes (whose clients
  // meet each other's write lock at the leader); every tenth value breaks a CHECK constraint, so
  // batches hold failing statements next to good ones.
  constexpr int writers = 16;
  constexpr int writes_per_writer = 15;
  constexpr int failing_every = 10;
  ok_json(nodes[0]->http("POST", "/db/execute",
                         execute_body(R"J([{"sql":"CREATE TABLE w (writer INTEGER, n INTEGER CHECK (n % 10 != 9))"}])J")),
          "create");
  std::mutex lock;
  std::map<int, int> statuses;  // HTTP status -> count
  std::set<std::pair<int, int>> acknowledged, refused;
  std::vector<std::thread> threads;
  for (int writer = 0; writer < writers; ++writer) {
    threads.emplace_back([&, writer] {
      for (int n = 0; n < writes_per_writer; ++n) {
        const HttpAnswer answer = nodes[writer % nodes.size()]->try_http(
            "POST", "/db/execute",
            execute_body(R"J([{"sql":"INSERT INTO w VALUES (?, ?)","params":[)J" + std::to_string(writer) + "," +
                         std::to_string(n) + "]}]"));
        std::lock_guard guard(lock);
        ++statuses[answer.status];
        (answer.status == 200 ? acknowledged : refused).insert({writer, n});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // Exactly the values that break the constraint are refused (409), every other write is 200:
  // no "database is locked", no lost write.
  for (int writer = 0; writer < writers; ++writer) {
    for (int n = 0; n < writes_per_writer; ++n) {
      const bool should_fail = n % failing_every == failing_every - 1;
      if ((should_fail ? refused : acknowledged).count({writer, n}) != 1) {
        std::string seen;
        for (const auto& [status, count] : statuses) seen += " " + std::to_string(status) + "x" + std::to_string(count);
        FAIL(("write " + std::to_string(writer) + "/" + std::to_string(n) + " answered wrongly; statuses:" + seen).c_str());
      }
    }
  }
  CHECK_EQUAL(static_cast<std::size_t>(writers * (writes_per_writer - writes_per_writer / failing_every)),
              acknowledged.size());
  CHECK_EQUAL(static_cast<std::size_t>(statuses[409]), refused.size());
  const json::value count = ok_json(
      nodes[2]->http("POST", "/db/query", R"({"database":"app","sql":"SELECT count(*), count(DISTINCT writer * 1000 + n) FROM w"})"),
      "count");
  const json::value expected_count = json::array{json::array{acknowledged.size(), acknowledged.size()}};
  CHECK(count.at("rows") == expected_count);
  // Some statements shared a COMMIT: fewer batches than batched statements.
  double batched = 0, batches = 0;
  for (const auto& node : nodes) {
    const HttpAnswer metrics = node->http("GET", "/metrics");
    batched += metric_value(metrics.body, "stacknode_db_group_commit_statements");
    batches += metric_value(metrics.body, "stacknode_db_group_commit_batches");
  }
  std::printf("\n  %zu writes acknowledged, %zu refused by the constraint; %.0f statements in %.0f shared commits\n",
              acknowledged.size(), refused.size(), batched, batches);
  CHECK(batches > 0 && batched > batches);
}

TEST_GROUP(StacknodeDbIdentity) {
  std::unique_ptr<support::TempDir> dir;
  std::vector<std::unique_ptr<DbNodeProcess>> nodes;
  void setup() override { dir = std::make_unique<support::TempDir>(); }
  void teardown() override {
    nodes.clear();
    dir.reset();
  }
  // A node started without an identity, once it has said that it waits for one.
  DbNodeProcess& start_waiting(int id) {
    nodes.push_back(std::make_unique<DbNodeProcess>(dir->path(), id, "", true));
    DbNodeProcess& node = *nodes.back();
    const bool waiting = support::poll_until(
        [&] { return node.output().find("waiting for " + node.identity_path().string()) != std::string::npos; },
        eventually);
    if (!waiting) FAIL(("no wait announced:\n" + node.output()).c_str());
    CHECK(node.process().running());
    CHECK_FALSE(node.serving());  // nothing to serve without an identity
    return node;
  }
};

TEST(StacknodeDbIdentity, ANodeWithoutIdentityWaitsThenBootstrapsOrJoinsFromIt) {
  DbNodeProcess& first = start_waiting(1);
  first.write_identity("node_id = 1;\n");
  first.wait_until_serving();
  ok_json(first.http("POST", "/db/execute", execute_body(R"J([{"sql":"CREATE TABLE t (v TEXT)"},{"sql":"INSERT INTO t VALUES ('from 1')"}])J")),
          "write through the bootstrapped node");
  DbNodeProcess& second = start_waiting(2);
  second.write_identity("node_id = 2;\njoin = [\"" + first.dqlite_address() + "\"];\nrole = \"standby\";\n");
  second.wait_until_serving();
  const json::value rows = ok_json(second.http("POST", "/db/query", R"({"database":"app","sql":"SELECT v FROM t"})"), "read");
  CHECK(rows.at("rows") == json::value(json::array{json::array{"from 1"}}));
  const json::value listed = ok_json(first.http("GET", "/db/nodes"), "nodes");
  const json::array& members = listed.at("nodes").as_array();
  CHECK_EQUAL(2u, members.size());
  for (const json::value& member : members) {
    if (member.at("id").to_number<int>() == 2) STRCMP_EQUAL("standby", member.at("role").as_string().c_str());
  }
}

TEST(StacknodeDbIdentity, ABrokenIdentityFileStopsTheNodeWithItsName) {
  DbNodeProcess& node = start_waiting(1);
  node.write_identity("node_id = 1;\nnodeid = 3;\n");
  const std::optional<int> status = node.process().wait(eventually);
  CHECK(status.has_value());
  CHECK(*status != 0);
  const std::string output = node.output();
  if (output.find("identity file") == std::string::npos || output.find("nodeid") == std::string::npos) FAIL(output.c_str());
  CHECK_FALSE(node.serving());
}

// `stackctl node reset` removes the identity file: the node leaves, clears its data (it belongs
// to a cluster this box is no longer in) and waits for a new identity, without exiting.
TEST(StacknodeDbIdentity, ARemovedIdentityMakesTheNodeLeaveClearItsDataAndWaitAgain) {
  DbNodeProcess& node = start_waiting(1);
  node.write_identity("node_id = 1;\n");
  node.wait_until_serving();
  ok_json(node.http("POST", "/db/execute", execute_body(R"J([{"sql":"CREATE TABLE kept (v TEXT)"}])J")), "write");
  fs::remove(node.identity_path());
  const auto waiting_again = [&] {
    const std::string output = node.output();
    const std::size_t first = output.find("waiting for " + node.identity_path().string());
    return output.find("waiting for " + node.identity_path().string(), first + 1) != std::string::npos;
  };
  if (!support::poll_until(waiting_again, eventually)) FAIL(("did not leave and wait again:\n" + node.output()).c_str());
  CHECK(node.process().running());
  CHECK(fs::is_empty(node.data_dir()));
  // A new identity starts from nothing: the old cluster's table is gone.
  node.write_identity("node_id = 1;\n");
  node.wait_until_serving();
  const json::value tables = ok_json(
      node.http("POST", "/db/query", R"({"database":"app","sql":"SELECT count(*) FROM sqlite_master WHERE name = 'kept'"})"),
      "query");
  CHECK(tables.at("rows") == json::value(json::array{json::array{0}}));
}

// A join that stackctl undid (identity removed) while this node still retried it: the node stops
// trying at once, instead of adding itself to the cluster after the undo, and waits again.
TEST(StacknodeDbIdentity, AJoinCalledOffStopsTryingAndWaitsAgain) {
  DbNodeProcess& node = start_waiting(2);
  const std::string nobody = support::loopback_address(support::unused_port());
  node.write_identity("node_id = 2;\njoin = [\"" + nobody + "\"];\nrole = \"standby\";\n");
  const bool trying = support::poll_until(
      [&] { return node.output().find("identity from") != std::string::npos; }, eventually);
  CHECK(trying);
  fs::remove(node.identity_path());
  const bool called_off = support::poll_until(
      [&] { return node.output().find("the join was called off") != std::string::npos; }, eventually);
  if (!called_off) FAIL(("the join went on:\n" + node.output()).c_str());
  CHECK(node.process().running());
  CHECK_FALSE(node.serving());
}

TEST(StacknodeDb, AClusterThatLostQuorumIsRecoveredFromOneSurvivor) {
  // Node 1 leads, so that its log holds every committed write: it is the survivor to recover from
  // (the README's step: the node with the most up-to-date log).
  if (leader_id(*nodes[0]) != 1) ok_json(nodes[0]->http("POST", "/db/leader", R"({"id":1})"), "transfer");
  CHECK_EQUAL(1, leader_id(*nodes[0]));
  ok_json(nodes[0]->http("POST", "/db/execute",
                         execute_body(R"J([{"sql":"CREATE TABLE survived (v TEXT)"},)J"
                                      R"J({"sql":"INSERT INTO survived VALUES ('kept')"}])J")),
          "write");
  // Every node down: nodes 2 and 3 are lost for good, node 1 is the survivor.
  for (auto& node : nodes) node->kill9();
  const std::string recover = (support::binary_dir() / "stacknode-db-recover").string();
  const std::string member = "1=" + nodes[0]->dqlite_address();
  // Refused while the node still runs: restart it, try, and stop it again.
  nodes[0]->restart();
  nodes[0]->wait_until_serving();
  const support::CommandResult refused =
      support::run_command({recover, "--config", nodes[0]->config_path().string(), "--member", member});
  CHECK_EQUAL(1, refused.status);
  CHECK(refused.output.find("stop this node") != std::string::npos);
  nodes[0]->kill9();
  CHECK_EQUAL(2, support::run_command({recover, "--config", nodes[0]->config_path().string(), "--member", "x"}).status);

  const support::CommandResult recovered =
      support::run_command({recover, "--config", nodes[0]->config_path().string(), "--member", member});
  if (recovered.status != 0) FAIL(recovered.output.c_str());
  nodes[0]->restart();
  nodes[0]->wait_until_serving();
  const json::value listed = ok_json(nodes[0]->http("GET", "/db/nodes"), "nodes");
  CHECK_EQUAL(1u, listed.at("nodes").as_array().size());
  const json::value rows =
      ok_json(nodes[0]->http("POST", "/db/query", R"({"database":"app","sql":"SELECT v FROM survived"})"), "query");
  CHECK(rows.at("rows") == json::parse(R"([["kept"]])"));
  ok_json(nodes[0]->http("POST", "/db/execute",
                         execute_body(R"J([{"sql":"INSERT INTO survived VALUES ('after')"}])J")),
          "a write after recovery");
}
