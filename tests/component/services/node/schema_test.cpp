// Component test of the control-plane schema's migration runner (services/node/store/schema.hpp)
// against a real libdqlite node in the test process (tests/support/dqlite_node.hpp): a fresh
// database reaches the last version with every table; running again changes nothing; a failing
// migration leaves nothing behind; a database newer than the build is refused with what to do;
// two clients (two nodes starting together) migrating at once apply each migration once.
#include <CppUTest/TestHarness.h>

#include <algorithm>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dqlite_node.hpp"
#include "stacknode/node/schema.hpp"

using namespace stacknode::node;
using namespace stacknode::db;
namespace support = stacknode::test;

namespace {

constexpr std::int64_t test_now = 1'795'000'000;
constexpr int concurrent_migrators = 4;

template <typename T>
void check_ok(const Outcome<T>& outcome, const char* what) {
  if (!outcome) FAIL((std::string(what) + ": " + outcome.error().message).c_str());
}

std::vector<std::string> column_strings(const Outcome<wire::RowSet>& rows) {
  check_ok(rows, "query");
  std::vector<std::string> values;
  for (const wire::Row& row : rows->rows) values.push_back(std::get<std::string>(row.at(0)));
  return values;
}

std::int64_t count_of(Client& client, const std::string& database, const std::string& sql) {
  Outcome<wire::RowSet> rows = client.query(database, sql);
  check_ok(rows, sql.c_str());
  return std::get<std::int64_t>(rows->rows.at(0).at(0));
}

}  // namespace

TEST_GROUP(ControlSchema) {
  std::unique_ptr<support::DqliteNode> node;
  std::unique_ptr<Client> client;
  void setup() override {
    std::signal(SIGPIPE, SIG_IGN);  // a process hosting dqlite nodes takes EPIPE instead
    node = std::make_unique<support::DqliteNode>();
    ClientOptions options;
    options.addresses = {node->address()};
    client = std::make_unique<Client>(options);
  }
  void teardown() override {
    client.reset();
    node.reset();
  }
};

TEST(ControlSchema, AFreshDatabaseReachesTheLastVersionWithEveryTable) {
  const auto last = static_cast<std::int64_t>(control_schema().size());
  CHECK_EQUAL(0, *schema_version(*client, "cluster"));
  Outcome<std::int64_t> version = migrate(*client, "cluster", control_schema(), test_now);
  check_ok(version, "migrate");
  CHECK_EQUAL(last, *version);
  CHECK_EQUAL(last, *schema_version(*client, "cluster"));
  std::vector<std::string> tables =
      column_strings(client->query("cluster", "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"));
  const std::vector<std::string> expected = {"api_tokens",   "audit_log",  "backend_health",       "cache_cluster",
                                             "cache_nodes",  "cluster",
                                             "content_chunks", "content_nodes", "content_sites",
                                             "content_uploads", "content_versions",
                                             "join_tokens",  "nodes",      "pool_members",         "pools",
                                             "revoked_certificates", "schema_migrations", "settings", "users",
                                             "vip_leases",   "vips"};
  CHECK(tables == expected);
  CHECK_EQUAL(last, count_of(*client, "cluster", "SELECT count(*) FROM schema_migrations"));
  CHECK_EQUAL(last, count_of(*client, "cluster", "SELECT count(*) FROM schema_migrations WHERE applied_at = 1795000000"));
  // Version 2: API tokens (login sessions) may expire.
  check_ok(client->exec("cluster", "SELECT expires_at FROM api_tokens"), "api_tokens.expires_at");
  // The tables hold what they are for: the cluster row is a singleton.
  check_ok(client->exec("cluster", "INSERT INTO cluster VALUES (1, 'c', 'n', 'cert', 'key', 0)"), "insert cluster");
  CHECK_FALSE(client->exec("cluster", "INSERT INTO cluster VALUES (2, 'c', 'n', 'cert', 'key', 0)").ok());
}

TEST(ControlSchema, RunningAgainChangesNothing) {
  check_ok(migrate(*client, "cluster", control_schema(), test_now), "first");
  check_ok(client->exec("cluster", "INSERT INTO settings VALUES ('kept', 'yes')"), "insert");
  Outcome<std::int64_t> again = migrate(*client, "cluster", control_schema(), test_now + 60);
  check_ok(again, "second");
  CHECK_EQUAL(static_cast<std::int64_t>(control_schema().size()), *again);
  CHECK_EQUAL(1, count_of(*client, "cluster", "SELECT count(*) FROM settings WHERE key = 'kept'"));
  CHECK_EQUAL(0, count_of(*client, "cluster", "SELECT count(*) FROM schema_migrations WHERE applied_at != 1795000000"));
}

TEST(ControlSchema, AFailingMigrationLeavesNothingBehind) {
  const std::vector<Migration> broken = {
      {1, "good", {"CREATE TABLE first (a INTEGER)"}},
      {2, "half good", {"CREATE TABLE second (a INTEGER)", "CREATE TABLE oops (a INTEGER", "CREATE TABLE third (a)"}},
  };
  Outcome<std::int64_t> version = migrate(*client, "scratch", broken, test_now);
  CHECK_FALSE(version.ok());
  CHECK(version.error().kind == ErrorKind::sqlite);
  const std::string& message = version.error().message;
  if (message.find("migration 2 (half good) failed") == std::string::npos || message.find("CREATE TABLE oops") == std::string::npos) {
    FAIL(message.c_str());
  }
  // Version 1 applied and recorded; nothing of version 2: not its first table, no record.
  CHECK_EQUAL(1, *schema_version(*client, "scratch"));
  CHECK_EQUAL(1, count_of(*client, "scratch", "SELECT count(*) FROM sqlite_master WHERE name = 'first'"));
  CHECK_EQUAL(0, count_of(*client, "scratch", "SELECT count(*) FROM sqlite_master WHERE name IN ('second', 'third')"));
  // Fixed, it goes on from version 1.
  const std::vector<Migration> fixed = {broken[0], {2, "fixed", {"CREATE TABLE second (a INTEGER)"}}};
  Outcome<std::int64_t> after = migrate(*client, "scratch", fixed, test_now);
  check_ok(after, "fixed");
  CHECK_EQUAL(2, *after);
}

TEST(ControlSchema, ADatabaseNewerThanThisBuildIsRefusedWithWhatToDo) {
  check_ok(migrate(*client, "cluster", control_schema(), test_now), "migrate");
  const std::vector<Migration> older(control_schema().begin(), control_schema().end() - 1);
  Outcome<std::int64_t> refused = migrate(*client, "cluster", older, test_now);
  CHECK_FALSE(refused.ok());
  if (refused.error().message.find("update this node's firmware") == std::string::npos) FAIL(refused.error().message.c_str());
  const std::vector<Migration> gap = {{2, "no version 1", {"CREATE TABLE x (a)"}}};
  Outcome<std::int64_t> misnumbered = migrate(*client, "other", gap, test_now);
  CHECK_FALSE(misnumbered.ok());
  CHECK(misnumbered.error().kind == ErrorKind::invalid_request);
}

TEST(ControlSchema, NodesMigratingAtOnceApplyEachMigrationOnce) {
  // Separate clients, as separate stacknoded processes would have: they meet each other's
  // write lock at the leader.
  const std::vector<Migration> many = {
      {1, "one", {"CREATE TABLE one (a INTEGER)"}},
      {2, "two", {"CREATE TABLE two (a INTEGER)", "INSERT INTO one VALUES (2)"}},
      {3, "three", {"CREATE TABLE three (a INTEGER)", "INSERT INTO one VALUES (3)"}},
  };
  std::vector<std::string> failures(concurrent_migrators);
  std::vector<std::thread> threads;
  for (int index = 0; index < concurrent_migrators; ++index) {
    threads.emplace_back([&, index] {
      ClientOptions options;
      options.addresses = {node->address()};
      Client own(options);
      Outcome<std::int64_t> version = migrate(own, "race", many, test_now);
      if (!version) failures[index] = version.error().message;
      else if (*version != 3) failures[index] = "ended at version " + std::to_string(*version);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::string& failure : failures) {
    if (!failure.empty()) FAIL(failure.c_str());
  }
  CHECK_EQUAL(3, count_of(*client, "race", "SELECT count(*) FROM schema_migrations"));
  CHECK_EQUAL(2, count_of(*client, "race", "SELECT count(*) FROM one"));  // each data step once
}
