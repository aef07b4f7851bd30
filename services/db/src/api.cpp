// The HTTP SQL API's parsing and rendering; see api.hpp for the format.
#include "api.hpp"

#include <boost/json.hpp>

#include <array>
#include <charconv>
#include <cmath>

namespace stacknode::db::api {
namespace {

namespace json = boost::json;

constexpr std::uint64_t sqlite_constraint = 19;  // SQLITE_CONSTRAINT, the primary code
constexpr std::uint64_t sqlite_primary_code_mask = 0xff;
constexpr unsigned status_payload_too_large = 413;

constexpr std::string_view base64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

template <typename T>
Parsed<T> refuse(std::string message, unsigned status = 400) {
  Parsed<T> parsed;
  parsed.error = {status, std::move(message)};
  return parsed;
}

// The body as a JSON object, or why not.
std::optional<json::object> parse_object(std::string_view body, std::string& problem) {
  json::parse_options options;
  options.max_depth = max_json_depth;
  boost::system::error_code error;
  json::value value = json::parse(body, error, {}, options);
  if (error) {
    problem = "the body is not JSON: " + error.message();
    return std::nullopt;
  }
  if (!value.is_object()) {
    problem = "the body must be a JSON object";
    return std::nullopt;
  }
  return std::move(value.as_object());
}

// Every key of `object` must be one of `known`.
bool only_known_keys(const json::object& object, std::initializer_list<std::string_view> known,
                     const std::string& where, std::string& problem) {
  for (const auto& entry : object) {
    bool found = false;
    for (std::string_view key : known) found = found || entry.key() == key;
    if (!found) {
      problem = where + "unknown key \"" + std::string(entry.key()) + "\"";
      return false;
    }
  }
  return true;
}

bool read_database(const json::object& object, std::string& database, std::string& problem) {
  const json::value* name = object.if_contains("database");
  if (name == nullptr || !name->is_string()) {
    problem = "\"database\" is required: a name";
    return false;
  }
  database = std::string(name->as_string());
  if (!valid_database_name(database)) {
    problem = "\"database\": \"" + database.substr(0, max_database_name) +
              "\" is not a database name (letters, digits, '_' and '-', 1 to " +
              std::to_string(max_database_name) + " characters)";
    return false;
  }
  return true;
}

// {"sql": "...", "params": [...]} at `where`.
bool read_statement(const json::object& object, const ApiLimits& limits, const std::string& where,
                    Statement& statement, BadRequest& bad) {
  std::string problem;
  const json::value* sql = object.if_contains("sql");
  if (sql == nullptr || !sql->is_string() || sql->as_string().empty()) {
    bad = {400, where + "\"sql\" is required: the SQL text"};
    return false;
  }
  if (sql->as_string().size() > limits.statement_bytes) {
    bad = {status_payload_too_large, where + "\"sql\" is " + std::to_string(sql->as_string().size()) +
                                         " bytes, more than the limit of " +
                                         std::to_string(limits.statement_bytes)};
    return false;
  }
  if (sql->as_string().find('\0') != json::string::npos) {
    bad = {400, where + "\"sql\" contains a NUL character"};
    return false;
  }
  statement.sql = std::string(sql->as_string());
  if (const json::value* params = object.if_contains("params")) {
    if (!params->is_array()) {
      bad = {400, where + "\"params\" must be an array"};
      return false;
    }
    if (params->as_array().size() > limits.parameters) {
      bad = {status_payload_too_large, where + "\"params\" has " + std::to_string(params->as_array().size()) +
                                           " values, more than the limit of " + std::to_string(limits.parameters)};
      return false;
    }
    std::size_t index = 0;
    for (const json::value& param : params->as_array()) {
      std::optional<wire::Value> value = value_from_json(param, problem);
      if (!value) {
        bad = {400, where + "params[" + std::to_string(index) + "]: " + problem};
        return false;
      }
      statement.parameters.push_back(std::move(*value));
      ++index;
    }
  }
  return true;
}

json::object error_object(std::string_view kind, const std::string& message) {
  return json::object{{"kind", kind}, {"message", message}};
}

}  // namespace

bool valid_database_name(std::string_view name) {
  if (name.empty() || name.size() > max_database_name) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Parsed<ExecuteRequest> parse_execute(std::string_view body, const ApiLimits& limits) {
  std::string problem;
  std::optional<json::object> object = parse_object(body, problem);
  if (!object) return refuse<ExecuteRequest>(problem);
  if (!only_known_keys(*object, {"database", "transaction", "statements"}, "", problem)) {
    return refuse<ExecuteRequest>(problem);
  }
  ExecuteRequest request;
  if (!read_database(*object, request.database, problem)) return refuse<ExecuteRequest>(problem);
  if (const json::value* transaction = object->if_contains("transaction")) {
    if (!transaction->is_bool()) return refuse<ExecuteRequest>("\"transaction\" must be true or false");
    request.transaction = transaction->as_bool();
  }
  const json::value* statements = object->if_contains("statements");
  if (statements == nullptr || !statements->is_array() || statements->as_array().empty()) {
    return refuse<ExecuteRequest>("\"statements\" is required: a non-empty array");
  }
  if (statements->as_array().size() > limits.statements) {
    return refuse<ExecuteRequest>("\"statements\" has " + std::to_string(statements->as_array().size()) +
                                      " entries, more than the limit of " + std::to_string(limits.statements),
                                  status_payload_too_large);
  }
  std::size_t index = 0;
  for (const json::value& entry : statements->as_array()) {
    const std::string where = "statements[" + std::to_string(index++) + "]: ";
    if (!entry.is_object()) return refuse<ExecuteRequest>(where + "must be an object {\"sql\": ...}");
    if (!only_known_keys(entry.as_object(), {"sql", "params"}, where, problem)) {
      return refuse<ExecuteRequest>(problem);
    }
    Statement statement;
    BadRequest bad;
    if (!read_statement(entry.as_object(), limits, where, statement, bad)) {
      return refuse<ExecuteRequest>(bad.message, bad.status);
    }
    request.statements.push_back(std::move(statement));
  }
  Parsed<ExecuteRequest> parsed;
  parsed.value = std::move(request);
  return parsed;
}

Parsed<QueryRequest> parse_query(std::string_view body, const ApiLimits& limits) {
  std::string problem;
  std::optional<json::object> object = parse_object(body, problem);
  if (!object) return refuse<QueryRequest>(problem);
  if (!only_known_keys(*object, {"database", "sql", "params"}, "", problem)) {
    return refuse<QueryRequest>(problem);
  }
  QueryRequest request;
  if (!read_database(*object, request.database, problem)) return refuse<QueryRequest>(problem);
  BadRequest bad;
  if (!read_statement(*object, limits, "", request.statement, bad)) {
    return refuse<QueryRequest>(bad.message, bad.status);
  }
  Parsed<QueryRequest> parsed;
  parsed.value = std::move(request);
  return parsed;
}

Parsed<wire::Role> parse_role_body(std::string_view body) {
  std::string problem;
  std::optional<json::object> object = parse_object(body, problem);
  if (!object) return refuse<wire::Role>(problem);
  if (!only_known_keys(*object, {"role"}, "", problem)) return refuse<wire::Role>(problem);
  const json::value* role = object->if_contains("role");
  const std::string text = role != nullptr && role->is_string() ? std::string(role->as_string()) : "";
  Parsed<wire::Role> parsed;
  if (text == "voter") parsed.value = wire::Role::voter;
  if (text == "standby") parsed.value = wire::Role::standby;
  if (text == "spare") parsed.value = wire::Role::spare;
  if (!parsed.value) return refuse<wire::Role>("\"role\" must be \"voter\", \"standby\" or \"spare\"");
  return parsed;
}

namespace {
std::optional<wire::NodeId> node_id_of(const json::value* id) {
  if (id == nullptr) return std::nullopt;
  if (id->is_uint64() && id->get_uint64() > 0 && id->get_uint64() <= INT64_MAX) return id->get_uint64();
  if (id->is_int64() && id->get_int64() > 0) return static_cast<wire::NodeId>(id->get_int64());
  return std::nullopt;
}
}  // namespace

Parsed<NodeRequest> parse_node(std::string_view body) {
  std::string problem;
  std::optional<json::object> object = parse_object(body, problem);
  if (!object) return refuse<NodeRequest>(problem);
  if (!only_known_keys(*object, {"id", "address", "role"}, "", problem)) return refuse<NodeRequest>(problem);
  NodeRequest request;
  const std::optional<wire::NodeId> id = node_id_of(object->if_contains("id"));
  if (!id) return refuse<NodeRequest>("\"id\" is required: a node id from 1");
  request.id = *id;
  const json::value* address = object->if_contains("address");
  if (address == nullptr || !address->is_string() || !parse_endpoint(address->as_string())) {
    return refuse<NodeRequest>("\"address\" is required: an IPv4 host:port");
  }
  request.address = std::string(address->as_string());
  if (object->contains("role")) {
    json::object role_only{{"role", object->at("role")}};
    Parsed<wire::Role> role = parse_role_body(json::serialize(role_only));
    if (!role.ok()) return refuse<NodeRequest>(role.error.message);
    request.role = *role.value;
  }
  Parsed<NodeRequest> parsed;
  parsed.value = std::move(request);
  return parsed;
}

Parsed<wire::NodeId> parse_transfer(std::string_view body) {
  std::string problem;
  std::optional<json::object> object = parse_object(body, problem);
  if (!object) return refuse<wire::NodeId>(problem);
  if (!only_known_keys(*object, {"id"}, "", problem)) return refuse<wire::NodeId>(problem);
  Parsed<wire::NodeId> parsed;
  parsed.value = node_id_of(object->if_contains("id"));
  if (!parsed.value) return refuse<wire::NodeId>("\"id\" is required: the node to hand leadership to");
  return parsed;
}

std::optional<wire::NodeId> parse_node_id(std::string_view text) {
  wire::NodeId id = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (error != std::errc() || end != text.data() + text.size() || id == 0 || id > INT64_MAX) return std::nullopt;
  return id;
}

std::optional<wire::Value> value_from_json(const json::value& value, std::string& problem) {
  switch (value.kind()) {
    case json::kind::null: return wire::Value(wire::Null{});
    case json::kind::bool_: return wire::Value(value.get_bool());
    case json::kind::int64: return wire::Value(value.get_int64());
    case json::kind::uint64:
      if (value.get_uint64() > INT64_MAX) {
        problem = "integer beyond SQLite's 64-bit signed range";
        return std::nullopt;
      }
      return wire::Value(static_cast<std::int64_t>(value.get_uint64()));
    case json::kind::double_:
      if (!std::isfinite(value.get_double())) {
        problem = "not a finite number";
        return std::nullopt;
      }
      return wire::Value(value.get_double());
    case json::kind::string: return wire::Value(std::string(value.get_string()));
    case json::kind::array: problem = "an array is not a value"; return std::nullopt;
    case json::kind::object: break;
  }
  const json::object& object = value.get_object();
  if (object.size() != 1) {
    problem = "an object value has exactly one key: \"blob\", \"unix_time\" or \"iso8601\"";
    return std::nullopt;
  }
  const auto& [key, inner] = *object.begin();
  if (key == "blob" && inner.is_string()) {
    std::optional<std::vector<std::uint8_t>> bytes = base64_decode(inner.get_string());
    if (!bytes) {
      problem = "\"blob\" is not base64";
      return std::nullopt;
    }
    return wire::Value(std::move(*bytes));
  }
  if (key == "unix_time" && inner.is_int64()) return wire::Value(wire::UnixTime{inner.get_int64()});
  if (key == "iso8601" && inner.is_string()) return wire::Value(wire::Iso8601{std::string(inner.get_string())});
  problem = "{\"" + std::string(key) +
            "\": ...} is not a value: use {\"blob\": base64}, {\"unix_time\": seconds} or {\"iso8601\": text}";
  return std::nullopt;
}

json::value value_to_json(const wire::Value& value) {
  struct Visitor {
    json::value operator()(std::int64_t v) const { return v; }
    json::value operator()(double v) const { return v; }
    json::value operator()(const std::string& v) const { return json::string(v); }
    json::value operator()(const wire::Blob& v) const { return json::object{{"blob", base64_encode(v)}}; }
    json::value operator()(wire::Null) const { return nullptr; }
    json::value operator()(bool v) const { return v; }
    json::value operator()(const wire::UnixTime& v) const { return json::object{{"unix_time", v.seconds}}; }
    json::value operator()(const wire::Iso8601& v) const { return json::object{{"iso8601", v.text}}; }
  };
  return std::visit(Visitor{}, value);
}

std::string_view type_name(wire::ValueType type) {
  switch (type) {
    case wire::ValueType::integer: return "integer";
    case wire::ValueType::floating: return "float";
    case wire::ValueType::text: return "text";
    case wire::ValueType::blob: return "blob";
    case wire::ValueType::null: return "null";
    case wire::ValueType::unix_time: return "unix_time";
    case wire::ValueType::iso8601: return "iso8601";
    case wire::ValueType::boolean: return "boolean";
  }
  return "unknown";
}

std::string base64_encode(const std::vector<std::uint8_t>& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t index = 0; index < bytes.size(); index += 3) {
    const std::size_t left = bytes.size() - index;
    const std::uint32_t group = (std::uint32_t{bytes[index]} << 16) |
                                (left > 1 ? std::uint32_t{bytes[index + 1]} << 8 : 0) |
                                (left > 2 ? std::uint32_t{bytes[index + 2]} : 0);
    out += base64_alphabet[(group >> 18) & 63];
    out += base64_alphabet[(group >> 12) & 63];
    out += left > 1 ? base64_alphabet[(group >> 6) & 63] : '=';
    out += left > 2 ? base64_alphabet[group & 63] : '=';
  }
  return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::array<int, 256> digit{};
  digit.fill(-1);
  for (std::size_t index = 0; index < base64_alphabet.size(); ++index) {
    digit[static_cast<unsigned char>(base64_alphabet[index])] = static_cast<int>(index);
  }
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t index = 0; index < text.size(); index += 4) {
    const bool last = index + 4 == text.size();
    const std::size_t padding = last ? (text[index + 3] == '=') + (text[index + 2] == '=') : 0;
    if (padding == 1 && text[index + 2] == '=') return std::nullopt;  // "x=y=" is not padding
    std::uint32_t group = 0;
    for (std::size_t offset = 0; offset < 4; ++offset) {
      const char c = text[index + offset];
      if (offset >= 4 - padding) {
        group <<= 6;
        continue;
      }
      const int value = digit[static_cast<unsigned char>(c)];
      if (value < 0) return std::nullopt;
      group = (group << 6) | static_cast<std::uint32_t>(value);
    }
    // Canonical only: the bits a padded group does not use must be zero (RFC 4648 section 3.5),
    // so one byte string has one spelling.
    if ((padding == 2 && (group & 0xffff) != 0) || (padding == 1 && (group & 0xff) != 0)) return std::nullopt;
    out.push_back(static_cast<std::uint8_t>(group >> 16));
    if (padding < 2) out.push_back(static_cast<std::uint8_t>(group >> 8));
    if (padding < 1) out.push_back(static_cast<std::uint8_t>(group));
  }
  return out;
}

std::string render_results(const std::vector<wire::Result>& results) {
  json::array list;
  for (const wire::Result& result : results) {
    list.push_back(json::object{{"rows_affected", result.rows_affected},
                                {"last_insert_id", result.last_insert_id}});
  }
  return json::serialize(json::object{{"results", std::move(list)}});
}

std::string render_rows(const wire::RowSet& rows) {
  json::array columns;
  for (const std::string& column : rows.columns) columns.push_back(json::string(column));
  json::array types;
  for (std::size_t column = 0; column < rows.columns.size(); ++column) {
    wire::ValueType type = wire::ValueType::null;
    for (const wire::Row& row : rows.rows) {
      if (column < row.size() && !std::holds_alternative<wire::Null>(row[column])) {
        type = wire::value_type(row[column]);
        break;
      }
    }
    types.push_back(json::string(type_name(type)));
  }
  json::array out_rows;
  for (const wire::Row& row : rows.rows) {
    json::array cells;
    for (const wire::Value& value : row) cells.push_back(value_to_json(value));
    out_rows.push_back(std::move(cells));
  }
  return json::serialize(
      json::object{{"columns", std::move(columns)}, {"types", std::move(types)}, {"rows", std::move(out_rows)}});
}

std::string render_nodes(const wire::Nodes& nodes, wire::NodeId leader) {
  json::array list;
  for (const wire::NodeInfo& node : nodes.nodes) {
    const char* role = node.role == wire::Role::voter ? "voter" : node.role == wire::Role::standby ? "standby" : "spare";
    list.push_back(json::object{{"id", node.id}, {"address", node.address}, {"role", role},
                                {"leader", node.id == leader}});
  }
  return json::serialize(json::object{{"nodes", std::move(list)}});
}

unsigned error_status(const Error& error) {
  switch (error.kind) {
    case ErrorKind::sqlite:
      return (error.code & sqlite_primary_code_mask) == sqlite_constraint ? 409 : 400;
    case ErrorKind::invalid_request: return 400;
    case ErrorKind::not_leader:
    case ErrorKind::no_leader:
    case ErrorKind::connection_lost: return 503;
    case ErrorKind::timeout: return 504;
    case ErrorKind::protocol: return 502;
  }
  return 500;
}

ErrorAnswer render_error(const Error& error, std::optional<std::size_t> statement) {
  json::object detail = error_object(to_string(error.kind), error.message);
  if (error.kind == ErrorKind::sqlite || error.kind == ErrorKind::not_leader) detail["sqlite_code"] = error.code;
  if (statement) detail["statement"] = *statement;
  return {error_status(error), json::serialize(json::object{{"error", std::move(detail)}})};
}

ErrorAnswer render_bad_request(const BadRequest& bad) {
  return {bad.status, json::serialize(json::object{{"error", error_object("bad_request", bad.message)}})};
}

}  // namespace stacknode::db::api
