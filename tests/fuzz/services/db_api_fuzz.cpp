// libFuzzer target over stacknode-db's HTTP API parsers (services/db/src/api.hpp): the input is a
// request body as it arrives from a client, parsed as every kind of body; and a path segment as a
// node id. Sanitizers catch memory errors; the invariants below catch wrong answers and stop with
// __builtin_trap().
//
// Invariants checked:
//  1. A parsed execute or query request keeps every limit: statement count, SQL size, parameter
//     count, and a valid database name; a refusal carries a 4xx status and a message.
//  2. A value parsed from JSON renders back to JSON that parses to an equal value.
//  3. base64: what decodes re-encodes to the same text.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api.hpp"

using namespace stacknode::db;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

ApiLimits fuzz_limits() {
  ApiLimits limits;
  limits.statement_bytes = 256;
  limits.statements = 8;
  limits.parameters = 8;
  return limits;
}

template <typename T>
void check_refusal(const api::Parsed<T>& parsed) {
  if (!parsed.ok()) check(parsed.error.status >= 400 && parsed.error.status < 500 && !parsed.error.message.empty());
}

void check_statement(const api::Statement& statement, const ApiLimits& limits) {
  check(!statement.sql.empty() && statement.sql.size() <= limits.statement_bytes);
  check(statement.parameters.size() <= limits.parameters);
  for (const wire::Value& value : statement.parameters) {  // invariant 2
    std::string problem;
    const auto again = api::value_from_json(api::value_to_json(value), problem);
    check(again.has_value() && (*again == value || (std::holds_alternative<double>(value) &&
                                                     std::get<double>(value) != std::get<double>(value))));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const ApiLimits limits = fuzz_limits();

  const auto execute = api::parse_execute(body, limits);
  check_refusal(execute);
  if (execute.ok()) {
    check(api::valid_database_name(execute.value->database));
    check(!execute.value->statements.empty() && execute.value->statements.size() <= limits.statements);
    for (const auto& statement : execute.value->statements) check_statement(statement, limits);
  }
  const auto query = api::parse_query(body, limits);
  check_refusal(query);
  if (query.ok()) {
    check(api::valid_database_name(query.value->database));
    check_statement(query.value->statement, limits);
  }
  check_refusal(api::parse_node(body));
  check_refusal(api::parse_role_body(body));
  check_refusal(api::parse_transfer(body));
  if (const auto id = api::parse_node_id(body)) check(*id > 0);

  if (const auto bytes = api::base64_decode(body)) check(api::base64_encode(*bytes) == body);  // 3
  return 0;
}
