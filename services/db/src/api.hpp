// The HTTP SQL API of stacknode-db as pure functions: JSON request bodies parsed and checked into
// typed operations, and results rendered to JSON bodies. No sockets and no database here, so every
// rule is unit tested and the parsers of untrusted bodies are fuzzed. The wire format:
//
//   POST /db/execute  {"database": "app", "transaction": false,
//                      "statements": [{"sql": "INSERT INTO t VALUES (?, ?)", "params": [1, "x"]}]}
//                 ->  {"results": [{"rows_affected": 1, "last_insert_id": 7}]}
//   POST /db/query    {"database": "app", "sql": "SELECT ...", "params": [...]}
//                 ->  {"columns": ["a", "b"], "types": ["integer", "text"], "rows": [[1, "x"]]}
//   Values: JSON numbers (integers stay integers), strings, true/false, null, and the objects
//   {"blob": "<base64>"}, {"unix_time": <seconds>}, {"iso8601": "<text>"} for the other types;
//   rows come back in the same notation.
//   Errors: {"error": {"kind": "...", "message": "...", "sqlite_code": N, "statement": I}} with a
//   4xx/5xx status (error_status): bad JSON or a broken limit 400/413, SQL errors 400 (409 for a
//   constraint), no leader 503, timeouts 504.
#pragma once

#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "db_config.hpp"
#include "stacknode/db/connection.hpp"
#include "stacknode/db/wire.hpp"

namespace stacknode::db::api {

// Database names: letters, digits, '_' and '-', 1 to 64 characters (they become file names on
// the nodes and must not name the control plane's own by accident of case or path).
inline constexpr std::size_t max_database_name = 64;
// The control plane's database (DESIGN.md): served like any other, named here so that nothing
// here has to spell it.
inline constexpr std::string_view cluster_database = "cluster";
// JSON nesting the parser accepts: request bodies are two or three levels deep.
inline constexpr std::size_t max_json_depth = 16;

struct Statement {
  std::string sql;
  std::vector<wire::Value> parameters;
};

struct ExecuteRequest {
  std::string database;
  bool transaction = false;  // all statements or none
  std::vector<Statement> statements;
};

struct QueryRequest {
  std::string database;
  Statement statement;
};

struct NodeRequest {  // POST /db/nodes
  wire::NodeId id = 0;
  std::string address;
  wire::Role role = wire::Role::voter;
};

// A request refused before it reached the database: the HTTP status and the message.
struct BadRequest {
  unsigned status = 400;
  std::string message;
};

template <typename T>
struct Parsed {
  std::optional<T> value;
  BadRequest error;
  bool ok() const { return value.has_value(); }
};

Parsed<ExecuteRequest> parse_execute(std::string_view body, const ApiLimits& limits);
Parsed<QueryRequest> parse_query(std::string_view body, const ApiLimits& limits);
Parsed<NodeRequest> parse_node(std::string_view body);
Parsed<wire::Role> parse_role_body(std::string_view body);  // {"role": "standby"}
Parsed<wire::NodeId> parse_transfer(std::string_view body);  // {"id": 2}
// A node id in a path ("/db/nodes/3"): digits only, 1..INT64_MAX.
std::optional<wire::NodeId> parse_node_id(std::string_view text);
bool valid_database_name(std::string_view name);

// JSON <-> values (the notation at the top).
std::optional<wire::Value> value_from_json(const boost::json::value& json, std::string& problem);
boost::json::value value_to_json(const wire::Value& value);
std::string_view type_name(wire::ValueType type);
std::string base64_encode(const std::vector<std::uint8_t>& bytes);
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

// Renderings.
std::string render_results(const std::vector<wire::Result>& results);
// `types`: per column, the type of the first non-null value in it ("null" if none).
std::string render_rows(const wire::RowSet& rows);
std::string render_nodes(const wire::Nodes& nodes, wire::NodeId leader);

// An error answer: its status and its body. `statement` is the failed statement's index, if any.
struct ErrorAnswer {
  unsigned status = 500;
  std::string body;
};
ErrorAnswer render_error(const Error& error, std::optional<std::size_t> statement = std::nullopt);
ErrorAnswer render_bad_request(const BadRequest& bad);
unsigned error_status(const Error& error);

}  // namespace stacknode::db::api
