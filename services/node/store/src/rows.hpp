// Helpers shared by the control store's source files (control.cpp, load_balancing.cpp,
// content.cpp): Problems by kind, typed column readers, name checks, the "exactly one row" check,
// and reading every row of a query. Private to the store library.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/node/control.hpp"

namespace stacknode::node::rows {

using db::wire::Value;

inline Problem invalid(std::string message) { return {ProblemKind::invalid, std::move(message)}; }
inline Problem not_found(std::string message) { return {ProblemKind::not_found, std::move(message)}; }
inline Problem conflict(std::string message) { return {ProblemKind::conflict, std::move(message)}; }

// Column readers: a column of another type than the schema says is a broken database.
inline std::int64_t integer(const Value& value) {
  const auto* number = std::get_if<std::int64_t>(&value);
  return number ? *number : 0;
}
inline std::optional<std::int64_t> optional_integer(const Value& value) {
  const auto* number = std::get_if<std::int64_t>(&value);
  if (number == nullptr) return std::nullopt;
  return *number;
}
inline std::string text(const Value& value) {
  const auto* string = std::get_if<std::string>(&value);
  return string ? *string : std::string();
}

// 1 to max_chars characters from a-z A-Z 0-9 - _ .
inline bool valid_name(std::string_view name, std::size_t max_chars) {
  if (name.empty() || name.size() > max_chars) return false;
  for (const char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                         c == '_' || c == '.';
    if (!allowed) return false;
  }
  return true;
}

// The number of rows a statement changed, for "exactly one" checks.
inline std::optional<Problem> expect_one(const db::Outcome<db::wire::Result>& done, const std::string& missing) {
  if (!done) return problem_from(done.error());
  if (done->rows_affected != 1) return not_found(missing);
  return std::nullopt;
}

// Every row of `sql` (no parameters), each converted by `convert`.
template <typename Row, typename Convert>
Checked<std::vector<Row>> all_rows(ControlStore& store, const std::string& sql, Convert convert) {
  db::Outcome<db::wire::RowSet> rows = store.client().query(store.database(), sql);
  if (!rows) return problem_from(rows.error());
  std::vector<Row> result;
  for (const db::wire::Row& row : rows->rows) result.push_back(convert(row));
  return result;
}

// The Problem of a failed query inside a change's transaction, or nothing.
inline std::optional<Problem> database_problem(const db::Outcome<db::wire::RowSet>& rows) {
  if (!rows) return problem_from(rows.error());
  return std::nullopt;
}

}  // namespace stacknode::node::rows
