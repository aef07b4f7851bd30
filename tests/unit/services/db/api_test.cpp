// Unit tests of stacknode-db's HTTP API parsing and rendering (services/db/src/api.hpp): every
// request shape accepted and refused with its status and message, the JSON notation of every
// value type both ways, base64, limits, the error statuses by kind, and which statements group
// commit may batch.
#include <CppUTest/TestHarness.h>

#include <boost/json.hpp>

#include <string>

#include "api.hpp"
#include "group_commit.hpp"

using namespace stacknode::db;
namespace json = boost::json;

namespace {

ApiLimits small_limits() {
  ApiLimits limits;
  limits.statement_bytes = 64;
  limits.statements = 3;
  limits.parameters = 4;
  return limits;
}

// The refusal of `parsed`, which must be one: its status and a message containing `fragment`.
template <typename T>
void check_refused(const api::Parsed<T>& parsed, unsigned status, const std::string& fragment) {
  CHECK_FALSE(parsed.ok());
  CHECK_EQUAL(status, parsed.error.status);
  if (parsed.error.message.find(fragment) == std::string::npos) {
    FAIL(("message \"" + parsed.error.message + "\" lacks \"" + fragment + "\"").c_str());
  }
}

}  // namespace

TEST_GROUP(DbApiExecute){};

TEST(DbApiExecute, AcceptsStatementsWithEveryValueNotation) {
  const auto parsed = api::parse_execute(
      R"J({"database": "app", "transaction": true, "statements": [
           {"sql": "INSERT INTO t VALUES (?, ?, ?, ?)", "params": [1, -2.5, "x", null]},
           {"sql": "INSERT INTO u VALUES (?, ?, ?, ?)",
            "params": [true, {"blob": "AAH/"}, {"unix_time": 1700000000}, {"iso8601": "2026-11-29"}]},
           {"sql": "DELETE FROM v"}]})J",
      small_limits());
  CHECK(parsed.ok());
  const api::ExecuteRequest& request = *parsed.value;
  STRCMP_EQUAL("app", request.database.c_str());
  CHECK(request.transaction);
  CHECK_EQUAL(3u, request.statements.size());
  CHECK(request.statements[0].parameters ==
        (std::vector<wire::Value>{std::int64_t{1}, -2.5, std::string("x"), wire::Null{}}));
  CHECK(request.statements[1].parameters ==
        (std::vector<wire::Value>{true, wire::Blob{0x00, 0x01, 0xff}, wire::UnixTime{1'700'000'000},
                                  wire::Iso8601{"2026-11-29"}}));
  CHECK(request.statements[2].parameters.empty());
}

TEST(DbApiExecute, RefusesMalformedBodiesNamingTheField) {
  const ApiLimits limits = small_limits();
  check_refused(api::parse_execute("{", limits), 400, "not JSON");
  check_refused(api::parse_execute("[]", limits), 400, "JSON object");
  check_refused(api::parse_execute(R"({"statements": [{"sql": "x"}]})", limits), 400, "\"database\" is required");
  check_refused(api::parse_execute(R"({"database": "../etc", "statements": [{"sql": "x"}]})", limits), 400,
                "not a database name");
  check_refused(api::parse_execute(R"({"database": "a", "statements": []})", limits), 400, "non-empty array");
  check_refused(api::parse_execute(R"({"database": "a", "statements": [{"sql": ""}]})", limits), 400,
                "statements[0]: \"sql\" is required");
  check_refused(api::parse_execute(R"({"database": "a", "statements": [{"sql": "x", "param": []}]})", limits), 400,
                "statements[0]: unknown key \"param\"");
  check_refused(api::parse_execute(R"({"database": "a", "transaction": 1, "statements": [{"sql": "x"}]})", limits),
                400, "\"transaction\" must be true or false");
  check_refused(api::parse_execute(R"({"database": "a", "statements": [{"sql": "x", "params": [[1]]}]})", limits),
                400, "statements[0]: params[0]: an array is not a value");
  check_refused(
      api::parse_execute(R"({"database": "a", "statements": [{"sql": "x", "params": [{"blob": "A"}]}]})", limits),
      400, "not base64");
  check_refused(
      api::parse_execute(R"({"database": "a", "statements": [{"sql": "x", "params": [{"when": 1}]}]})", limits),
      400, "is not a value");
  check_refused(api::parse_execute(
                    R"({"database": "a", "statements": [{"sql": "x", "params": [18446744073709551615]}]})", limits),
                400, "64-bit signed range");
}

TEST(DbApiExecute, LimitsAreEnforcedWith413) {
  const ApiLimits limits = small_limits();
  check_refused(api::parse_execute(R"({"database": "a", "statements": [{"sql": "x"}, {"sql": "x"}, {"sql": "x"},
                                       {"sql": "x"}]})",
                                   limits),
                413, "more than the limit of 3");
  const std::string long_sql(65, 'x');
  check_refused(api::parse_execute(R"({"database": "a", "statements": [{"sql": ")" + long_sql + R"("}]})", limits),
                413, "65 bytes, more than the limit of 64");
  check_refused(api::parse_execute(R"({"database": "a", "statements": [{"sql": "x", "params": [1,2,3,4,5]}]})",
                                   limits),
                413, "5 values, more than the limit of 4");
}

TEST_GROUP(DbApiOther){};

TEST(DbApiOther, QueryNodeRoleTransferAndPaths) {
  const auto query = api::parse_query(R"({"database": "app", "sql": "SELECT ?", "params": [7]})", small_limits());
  CHECK(query.ok());
  STRCMP_EQUAL("SELECT ?", query.value->statement.sql.c_str());
  check_refused(api::parse_query(R"({"database": "app"})", small_limits()), 400, "\"sql\" is required");

  const auto node = api::parse_node(R"({"id": 4, "address": "198.18.1.14:7000", "role": "standby"})");
  CHECK(node.ok());
  CHECK_EQUAL(4u, node.value->id);
  CHECK(node.value->role == wire::Role::standby);
  check_refused(api::parse_node(R"({"id": 0, "address": "198.18.1.14:7000"})"), 400, "\"id\" is required");
  check_refused(api::parse_node(R"({"id": 4, "address": "node4:7000"})"), 400, "IPv4 host:port");
  check_refused(api::parse_node(R"({"id": 4, "address": "198.18.1.14:7000", "role": "boss"})"), 400,
                "\"role\" must be");
  CHECK(*api::parse_transfer(R"({"id": 2})").value == 2u);
  check_refused(api::parse_transfer(R"({"id": -1})"), 400, "\"id\" is required");

  CHECK(api::parse_node_id("12") == wire::NodeId{12});
  CHECK_FALSE(api::parse_node_id("0"));
  CHECK_FALSE(api::parse_node_id("1x"));
  CHECK_FALSE(api::parse_node_id(""));
  CHECK_FALSE(api::parse_node_id("99999999999999999999"));
}

TEST(DbApiOther, Base64RoundTripsAndRefusesGarbage) {
  for (std::size_t size = 0; size < 10; ++size) {
    std::vector<std::uint8_t> bytes;
    for (std::size_t index = 0; index < size; ++index) bytes.push_back(static_cast<std::uint8_t>(index * 97 + 3));
    CHECK(api::base64_decode(api::base64_encode(bytes)) == bytes);
  }
  STRCMP_EQUAL("AAH/", api::base64_encode({0x00, 0x01, 0xff}).c_str());
  STRCMP_EQUAL("YQ==", api::base64_encode({'a'}).c_str());
  for (const char* bad : {"A", "AA=A", "A===", "AA==AA==", "AA!A", "=AAA", "15==", "YR=="}) CHECK_FALSE(api::base64_decode(bad));
}

TEST(DbApiOther, RowsRenderWithTypesFromTheFirstNonNullValue) {
  wire::RowSet rows;
  rows.columns = {"n", "name", "data", "flag", "at"};
  rows.rows = {{wire::Null{}, std::string("a"), wire::Blob{0xff}, true, wire::UnixTime{5}},
               {std::int64_t{2}, wire::Null{}, wire::Null{}, false, wire::Iso8601{"2026"}}};
  rows.complete = true;
  const json::value rendered = json::parse(api::render_rows(rows));
  CHECK(rendered.at("columns") == json::parse(R"(["n","name","data","flag","at"])"));
  CHECK(rendered.at("types") == json::parse(R"(["integer","text","blob","boolean","unix_time"])"));
  CHECK(rendered.at("rows") ==
        json::parse(R"([[null,"a",{"blob":"/w=="},true,{"unix_time":5}],[2,null,null,false,{"iso8601":"2026"}]])"));
}

TEST(DbApiOther, ErrorsCarryKindCodeAndStatus) {
  const api::ErrorAnswer syntax = api::render_error({ErrorKind::sqlite, 1, "near \"SELEKT\": syntax error"}, 2);
  CHECK_EQUAL(400u, syntax.status);
  CHECK(json::parse(syntax.body) ==
        json::parse(R"({"error":{"kind":"sqlite","message":"near \"SELEKT\": syntax error","sqlite_code":1,"statement":2}})"));
  CHECK_EQUAL(409u, api::render_error({ErrorKind::sqlite, 1555, "UNIQUE constraint failed"}).status);
  CHECK_EQUAL(503u, api::render_error({ErrorKind::no_leader, 0, "no leader"}).status);
  CHECK_EQUAL(503u, api::render_error({ErrorKind::not_leader, 10250, "not leader"}).status);
  CHECK_EQUAL(504u, api::render_error({ErrorKind::timeout, 0, "timeout"}).status);
  const api::ErrorAnswer bad = api::render_bad_request({413, "too big"});
  CHECK_EQUAL(413u, bad.status);
  CHECK(json::parse(bad.body) == json::parse(R"({"error":{"kind":"bad_request","message":"too big"}})"));
}

TEST(DbApiOther, NodesRenderWithRolesAndLeader) {
  wire::Nodes nodes;
  nodes.nodes = {{1, "198.18.1.11:7000", wire::Role::voter}, {2, "198.18.1.12:7000", wire::Role::standby}};
  CHECK(json::parse(api::render_nodes(nodes, 2)) ==
        json::parse(R"({"nodes":[{"id":1,"address":"198.18.1.11:7000","role":"voter","leader":false},
                                 {"id":2,"address":"198.18.1.12:7000","role":"standby","leader":true}]})"));
}

TEST_GROUP(DbGroupCommit){};

TEST(DbGroupCommit, OnlyStatementsSafeInsideASavepointAreBatched) {
  for (const char* sql : {"INSERT INTO t VALUES (1)", "  update t SET v = 2", "DELETE FROM t;", "replace into t values (3)",
                          "CREATE TABLE u (v)", "DROP TABLE u ; ", "ALTER TABLE t ADD COLUMN w"}) {
    if (!GroupCommit::batchable(sql)) FAIL(sql);
  }
  for (const char* sql : {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT a", "RELEASE a", "PRAGMA foreign_keys = 1",
                          "VACUUM", "ATTACH 'x' AS y", "SELECT 1", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
                          "INSERT INTO t VALUES (1); COMMIT", "INSERT INTO t VALUES (';')", ""}) {
    if (GroupCommit::batchable(sql)) FAIL(sql);
  }
}
