// Component test of the dqlite client (services/db/client) against a real dqlite node: libdqlite
// 1.11 from Debian, started in this process on a loopback port with its own data directory, so
// every byte the client sends and reads is the real server's. Covers the handshake, LEADER,
// CLUSTER, OPEN, EXEC_SQL/QUERY_SQL and prepared statements (PREPARE, EXEC, QUERY, FINALIZE) with
// every parameter type, a row set spread over several messages, SQLite errors that keep their code
// and the connection, DUMP, and the transport errors (refused, silent peer).
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dqlite_node.hpp"
#include "net.hpp"
#include "process.hpp"
#include "stacknode/db/connection.hpp"

#include <CppUTest/TestHarness.h>

using namespace stacknode::db;
namespace support = stacknode::test;

namespace {

// Short: a node on loopback answers in milliseconds; only bounds a broken test.
constexpr std::chrono::milliseconds test_timeout{10'000};
constexpr std::chrono::milliseconds silent_peer_timeout{300};
// Enough text that the rows cannot fit in one ROWS message (the server fills about a page each).
constexpr int many_rows = 2000;
constexpr std::size_t row_text_bytes = 100;
constexpr char sqlite_file_magic[] = "SQLite format 3";  // the first 16 bytes, NUL included

using support::DqliteNode;

// `outcome` failed with SQLITE_ERROR and a message containing `fragment`, on a connection that
// stays usable.
template <typename T>
void check_sqlite_error(const Outcome<T>& outcome, const std::string& fragment) {
  CHECK_FALSE(outcome.ok());
  CHECK(outcome.error().kind == ErrorKind::sqlite);
  CHECK_EQUAL(1u, outcome.error().code);  // SQLITE_ERROR
  if (outcome.error().message.find(fragment) == std::string::npos) FAIL(outcome.error().message.c_str());
  CHECK(outcome.error().keeps_connection());
}

Connection connect_or_fail(const std::string& address) {
  Outcome<Connection> connection = Connection::open(address, test_timeout);
  if (!connection) FAIL(("connect: " + connection.error().message).c_str());
  return std::move(connection.value());
}

// The leader may take a moment to elect itself after start: LEADER until it names one.
void wait_for_leader(Connection& connection) {
  const bool elected = support::poll_until(
      [&] {
        Outcome<wire::Node> leader = connection.leader();
        return leader && leader->id != 0;
      },
      test_timeout);
  CHECK(elected);
}

}  // namespace

TEST_GROUP(DqliteClient) {
  std::unique_ptr<DqliteNode> node;
  void setup() override { node = std::make_unique<DqliteNode>(); }
  void teardown() override { node.reset(); }
};

TEST(DqliteClient, LeaderAndClusterOfOneNode) {
  Connection connection = connect_or_fail(node->address());
  wait_for_leader(connection);
  Outcome<wire::Node> leader = connection.leader();
  CHECK(leader.ok());
  CHECK_EQUAL(1u, leader->id);
  STRCMP_EQUAL(node->address().c_str(), leader->address.c_str());
  Outcome<wire::Nodes> nodes = connection.cluster();
  CHECK(nodes.ok());
  CHECK_EQUAL(1u, nodes->nodes.size());
  CHECK(nodes->nodes[0] == (wire::NodeInfo{1, node->address(), wire::Role::voter}));
}

TEST(DqliteClient, EveryParameterTypeRoundTrips) {
  Connection connection = connect_or_fail(node->address());
  wait_for_leader(connection);
  Outcome<wire::DatabaseId> db = connection.open_database("types");
  CHECK(db.ok());
  CHECK(connection.exec_sql(*&db.value(), "CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, n TEXT,"
                                           " flag BOOLEAN, at DATETIME, stamp DATETIME)")
            .ok());
  const wire::Blob blob = {0x00, 0x01, 0xfe, 0xff, 0x00};
  Outcome<wire::Result> inserted = connection.exec_sql(
      db.value(), "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      {std::int64_t{-9'000'000'000}, 2.5, std::string("text with ünïcode"), blob, wire::Null{}, true,
       wire::UnixTime{1'700'000'000}, wire::Iso8601{"2026-11-29 05:00:00"}});
  CHECK(inserted.ok());
  CHECK_EQUAL(1u, inserted->rows_affected);
  CHECK_EQUAL(1u, inserted->last_insert_id);

  Outcome<wire::RowSet> rows = connection.query_sql(db.value(), "SELECT * FROM t");
  if (!rows) FAIL(rows.error().message.c_str());
  CHECK(rows->complete);
  CHECK(rows->columns == (std::vector<std::string>{"i", "f", "s", "b", "n", "flag", "at", "stamp"}));
  CHECK_EQUAL(1u, rows->rows.size());
  const wire::Row& row = rows->rows[0];
  CHECK(row[0] == wire::Value(std::int64_t{-9'000'000'000}));
  CHECK(row[1] == wire::Value(2.5));
  CHECK(row[2] == wire::Value(std::string("text with ünïcode")));
  CHECK(row[3] == wire::Value(blob));
  CHECK(row[4] == wire::Value(wire::Null{}));
  // Typed by the column's declared type: BOOLEAN comes back as a boolean, DATETIME integers as
  // Unix time and DATETIME text as ISO 8601 (dqlite's query.c).
  CHECK(row[5] == wire::Value(true));
  CHECK(row[6] == wire::Value(wire::UnixTime{1'700'000'000}));
  CHECK(row[7] == wire::Value(wire::Iso8601{"2026-11-29 05:00:00"}));
}

TEST(DqliteClient, ARowSetOverSeveralMessagesArrivesWhole) {
  Connection connection = connect_or_fail(node->address());
  wait_for_leader(connection);
  const wire::DatabaseId db = connection.open_database("many").value();
  CHECK(connection.exec_sql(db, "CREATE TABLE t (n INTEGER, s TEXT)").ok());
  CHECK(connection.exec_sql(db, "BEGIN").ok());
  for (int n = 0; n < many_rows; ++n) {
    std::string text(row_text_bytes, static_cast<char>('a' + n % 26));
    CHECK(connection.exec_sql(db, "INSERT INTO t VALUES (?, ?)", {std::int64_t{n}, text}).ok());
  }
  CHECK(connection.exec_sql(db, "COMMIT").ok());
  Outcome<wire::RowSet> rows = connection.query_sql(db, "SELECT n, s FROM t ORDER BY n");
  if (!rows) FAIL(rows.error().message.c_str());
  CHECK_EQUAL(static_cast<std::size_t>(many_rows), rows->rows.size());
  for (int n = 0; n < many_rows; ++n) {
    const wire::Row& row = rows->rows[static_cast<std::size_t>(n)];
    CHECK(row[0] == wire::Value(std::int64_t{n}));
    CHECK(row[1] == wire::Value(std::string(row_text_bytes, static_cast<char>('a' + n % 26))));
  }

  // The same through a prepared statement: QUERY's row set is gathered as QUERY_SQL's is.
  Outcome<wire::Stmt> select = connection.prepare(db, "SELECT n, s FROM t WHERE n >= ? ORDER BY n");
  if (!select) FAIL(select.error().message.c_str());
  constexpr int first_selected = 1;
  Outcome<wire::RowSet> prepared_rows =
      connection.query(db, select->id, {std::int64_t{first_selected}});
  if (!prepared_rows) FAIL(prepared_rows.error().message.c_str());
  CHECK(prepared_rows->complete);
  CHECK_EQUAL(static_cast<std::size_t>(many_rows - first_selected), prepared_rows->rows.size());
  for (int n = first_selected; n < many_rows; ++n) {
    const wire::Row& row = prepared_rows->rows[static_cast<std::size_t>(n - first_selected)];
    CHECK(row[0] == wire::Value(std::int64_t{n}));
    CHECK(row[1] == wire::Value(std::string(row_text_bytes, static_cast<char>('a' + n % 26))));
  }
  CHECK(connection.finalize(db, select->id).ok());
}

TEST(DqliteClient, PreparedStatementsRunManyTimesWithEveryParameterType) {
  Connection connection = connect_or_fail(node->address());
  wait_for_leader(connection);
  const wire::DatabaseId db = connection.open_database("prepared").value();
  CHECK(connection.exec_sql(db, "CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, n TEXT,"
                                " flag BOOLEAN, at DATETIME, stamp DATETIME)")
            .ok());
  Outcome<wire::Stmt> insert = connection.prepare(db, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
  if (!insert) FAIL(insert.error().message.c_str());
  CHECK_EQUAL(db, insert->db_id);
  CHECK_EQUAL(8u, insert->parameter_count);

  // Blobs of 1, 5 and 9 bytes: inside a word, and across a word boundary.
  const std::vector<wire::Row> inserted = {
      {std::int64_t{-9'000'000'000}, 2.5, std::string("text with ünïcode"), wire::Blob{0x00},
       wire::Null{}, true, wire::UnixTime{1'700'000'000}, wire::Iso8601{"2026-11-29 05:00:00"}},
      {std::int64_t{7}, -0.125, std::string("second"), wire::Blob{0x00, 0x01, 0xfe, 0xff, 0x00},
       wire::Null{}, false, wire::UnixTime{0}, wire::Iso8601{"1999-12-31 23:59:59"}},
      {std::int64_t{9'000'000'000}, 1e300, std::string(""),
       wire::Blob{1, 2, 3, 4, 5, 6, 7, 8, 9}, wire::Null{}, true, wire::UnixTime{-86'400},
       wire::Iso8601{"2038-01-19 03:14:08"}},
  };
  for (std::size_t index = 0; index < inserted.size(); ++index) {
    Outcome<wire::Result> result = connection.exec(db, insert->id, inserted[index]);
    if (!result) FAIL(result.error().message.c_str());
    CHECK_EQUAL(1u, result->rows_affected);
    CHECK_EQUAL(index + 1, result->last_insert_id);
  }

  Outcome<wire::Stmt> select = connection.prepare(db, "SELECT * FROM t WHERE i > ? ORDER BY i");
  if (!select) FAIL(select.error().message.c_str());
  CHECK_EQUAL(1u, select->parameter_count);
  // Same statement, two bindings: the second must not see the first's parameter.
  Outcome<wire::RowSet> above_zero = connection.query(db, select->id, {std::int64_t{0}});
  if (!above_zero) FAIL(above_zero.error().message.c_str());
  CHECK(above_zero->complete);
  CHECK(above_zero->columns ==
        (std::vector<std::string>{"i", "f", "s", "b", "n", "flag", "at", "stamp"}));
  CHECK(above_zero->rows == (std::vector<wire::Row>{inserted[1], inserted[2]}));
  Outcome<wire::RowSet> everything =
      connection.query(db, select->id, {std::int64_t{-10'000'000'000}});
  if (!everything) FAIL(everything.error().message.c_str());
  CHECK(everything->rows == inserted);  // ordered by i, which is the insertion order

  // Lowest id first, then the freed lower id again: sent to libdqlite 1.11, that request kills
  // the node (its statement registry dereferences NULL for a freed id below the highest in use).
  // The connection refuses ids it did not prepare or has finalized, before sending anything.
  CHECK(select->id > insert->id);
  CHECK(connection.finalize(db, insert->id).ok());
  Outcome<wire::Result> finalized_exec = connection.exec(db, insert->id, inserted[0]);
  CHECK_FALSE(finalized_exec.ok());
  CHECK(finalized_exec.error().kind == ErrorKind::invalid_request);
  Outcome<wire::Empty> finalized_twice = connection.finalize(db, insert->id);
  CHECK_FALSE(finalized_twice.ok());
  CHECK(finalized_twice.error().kind == ErrorKind::invalid_request);
  Outcome<wire::RowSet> never_prepared = connection.query(db, select->id + 1, {std::int64_t{0}});
  CHECK_FALSE(never_prepared.ok());
  CHECK(never_prepared.error().kind == ErrorKind::invalid_request);
  CHECK(connection.finalize(db, select->id).ok());
  Outcome<wire::RowSet> finalized_query = connection.query(db, select->id, {std::int64_t{0}});
  CHECK_FALSE(finalized_query.ok());
  CHECK(finalized_query.error().kind == ErrorKind::invalid_request);

  // Still in step: nothing more was inserted, and new statements work.
  CHECK(connection.is_open());
  Outcome<wire::RowSet> count = connection.query_sql(db, "SELECT count(*) FROM t");
  if (!count) FAIL(count.error().message.c_str());
  CHECK(count->rows == (std::vector<wire::Row>{{std::int64_t{3}}}));
  Outcome<wire::Stmt> again = connection.prepare(db, "SELECT s FROM t WHERE i = ?");
  if (!again) FAIL(again.error().message.c_str());
  Outcome<wire::RowSet> second = connection.query(db, again->id, {std::int64_t{7}});
  if (!second) FAIL(second.error().message.c_str());
  CHECK(second->rows == (std::vector<wire::Row>{{std::string("second")}}));
}

TEST(DqliteClient, PreparingBadSqlIsASqliteErrorThatKeepsTheConnection) {
  Connection connection = connect_or_fail(node->address());
  wait_for_leader(connection);
  const wire::DatabaseId db = connection.open_database("bad_prepare").value();
  check_sqlite_error(connection.prepare(db, "SELEKT 1"), "near \"SELEKT\": syntax error");
  check_sqlite_error(connection.prepare(db, "SELECT * FROM missing"), "no such table: missing");

  CHECK(connection.is_open());
  Outcome<wire::Stmt> good = connection.prepare(db, "SELECT 1");
  if (!good) FAIL(good.error().message.c_str());
  Outcome<wire::RowSet> one = connection.query(db, good->id);
  if (!one) FAIL(one.error().message.c_str());
  CHECK(one->rows == (std::vector<wire::Row>{{std::int64_t{1}}}));
}

TEST(DqliteClient, SqliteErrorsKeepTheirCodeAndTheConnection) {
  Connection connection = connect_or_fail(node->address());
  wait_for_leader(connection);
  const wire::DatabaseId db = connection.open_database("errors").value();
  check_sqlite_error(connection.exec_sql(db, "SELEKT 1"), "syntax error");

  CHECK(connection.exec_sql(db, "CREATE TABLE t (k INTEGER PRIMARY KEY)").ok());
  CHECK(connection.exec_sql(db, "INSERT INTO t VALUES (1)").ok());
  Outcome<wire::Result> duplicate = connection.exec_sql(db, "INSERT INTO t VALUES (1)");
  CHECK(duplicate.error().kind == ErrorKind::sqlite);
  CHECK_EQUAL(1555u, duplicate.error().code);  // SQLITE_CONSTRAINT_PRIMARYKEY
  Outcome<wire::RowSet> count = connection.query_sql(db, "SELECT count(*) FROM t");
  CHECK(count.ok());
  CHECK(count->rows[0][0] == wire::Value(std::int64_t{1}));
}

TEST(DqliteClient, DumpIsADatabaseFileAndItsWal) {
  Connection connection = connect_or_fail(node->address());
  wait_for_leader(connection);
  const wire::DatabaseId db = connection.open_database("dumped").value();
  CHECK(connection.exec_sql(db, "CREATE TABLE t (v TEXT)").ok());
  CHECK(connection.exec_sql(db, "INSERT INTO t VALUES ('kept')").ok());
  Outcome<wire::Files> files = connection.dump("dumped");
  if (!files) FAIL(files.error().message.c_str());
  CHECK_EQUAL(2u, files->files.size());
  STRCMP_EQUAL("dumped", files->files[0].name.c_str());
  STRCMP_EQUAL("dumped-wal", files->files[1].name.c_str());
  const auto& database = files->files[0].content;
  CHECK(database.size() >= sizeof sqlite_file_magic);
  CHECK(std::memcmp(database.data(), sqlite_file_magic, sizeof sqlite_file_magic) == 0);
  CHECK(!files->files[1].content.empty());  // the rows are still in the WAL
}

TEST_GROUP(DqliteClientTransport){};

TEST(DqliteClientTransport, RefusedSilentAndMalformedAddresses) {
  Outcome<Connection> refused =
      Connection::open(support::loopback_address(support::unused_port()), test_timeout);
  CHECK_FALSE(refused.ok());
  CHECK(refused.error().kind == ErrorKind::connection_lost);

  support::LoopbackListener silent;  // accepts into its backlog, never answers
  Outcome<Connection> opened =
      Connection::open(support::loopback_address(silent.port()), silent_peer_timeout);
  CHECK(opened.ok());
  Outcome<wire::Node> leader = opened->leader();
  CHECK_FALSE(leader.ok());
  CHECK(leader.error().kind == ErrorKind::timeout);
  CHECK_FALSE(opened->is_open());
  CHECK(opened->leader().error().kind == ErrorKind::connection_lost);

  for (const char* address : {"", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "localhost:9001",
                              "127.0.0.1:80x"}) {
    Outcome<Connection> bad = Connection::open(address, test_timeout);
    CHECK_FALSE(bad.ok());
    CHECK(bad.error().kind == ErrorKind::invalid_request);
  }
}
