// libFuzzer target over dqlite's wire protocol codec (services/db/client, wire.hpp): the input is
// one server message as it would arrive from a socket (header + body), decoded by
// decode_response(); the same bytes also drive the request encoder. Sanitizers catch memory
// errors; the invariants below catch wrong answers and stop with __builtin_trap().
//
// Invariants checked:
//  1. decode_response() either succeeds or names an error at an offset within the input.
//  2. A decoded response re-encodes (encode_response) and decodes again to an equal response
//     (values compared bit for bit, so NaNs count as equal to themselves).
//  3. Re-encoding is canonical: encoding the second decode gives the same bytes again.
//  4. decode_header() agrees with decode_response() on the body size and the size limit.
//  5. A request built from the input (SQL text and parameters) encodes to a whole number of words
//     whose header announces exactly the body, or is refused for a NUL or too many parameters.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "stacknode/db/wire.hpp"

using namespace stacknode::db::wire;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool same_value(const Value& left, const Value& right) {
  if (left.index() != right.index()) return false;
  if (const double* number = std::get_if<double>(&left)) {
    return std::bit_cast<std::uint64_t>(*number) == std::bit_cast<std::uint64_t>(std::get<double>(right));
  }
  return left == right;
}

bool same_response(const Response& left, const Response& right) {
  if (left.index() != right.index()) return false;
  const Rows* left_rows = std::get_if<Rows>(&left);
  if (left_rows == nullptr) return left == right;
  const Rows& right_rows = std::get<Rows>(right);
  if (left_rows->columns != right_rows.columns || left_rows->more != right_rows.more ||
      left_rows->rows.size() != right_rows.rows.size()) {
    return false;
  }
  for (std::size_t row = 0; row < left_rows->rows.size(); ++row) {
    if (left_rows->rows[row].size() != right_rows.rows[row].size()) return false;
    for (std::size_t column = 0; column < left_rows->rows[row].size(); ++column) {
      if (!same_value(left_rows->rows[row][column], right_rows.rows[row][column])) return false;
    }
  }
  return true;
}

std::uint32_t read_u32(std::span<const std::uint8_t> bytes) {
  return static_cast<std::uint32_t>(bytes[0]) | static_cast<std::uint32_t>(bytes[1]) << 8 |
         static_cast<std::uint32_t>(bytes[2]) << 16 | static_cast<std::uint32_t>(bytes[3]) << 24;
}

// Parameters from the input's bytes: each byte picks a type, the next 8 bytes feed the value.
std::vector<Value> parameters_from(std::span<const std::uint8_t> bytes) {
  std::vector<Value> parameters;
  std::size_t at = 0;
  while (at < bytes.size() && parameters.size() <= max_parameters) {
    const std::uint8_t kind = bytes[at++];
    std::uint64_t word = 0;
    for (std::size_t index = 0; index < 8 && at < bytes.size(); ++index) word = word << 8 | bytes[at++];
    switch (kind % 8) {
      case 0: parameters.emplace_back(static_cast<std::int64_t>(word)); break;
      case 1: parameters.emplace_back(std::bit_cast<double>(word)); break;
      case 2: parameters.emplace_back(std::string(reinterpret_cast<const char*>(&word), kind % 9)); break;
      case 3: parameters.emplace_back(Blob(kind % 17, static_cast<std::uint8_t>(word))); break;
      case 4: parameters.emplace_back(Null{}); break;
      case 5: parameters.emplace_back(word % 2 == 1); break;
      case 6: parameters.emplace_back(UnixTime{static_cast<std::int64_t>(word)}); break;
      default: parameters.emplace_back(Iso8601{std::to_string(word)}); break;
    }
  }
  return parameters;
}

void check_request(std::span<const std::uint8_t> input) {
  const std::size_t split = input.empty() ? 0 : input[0] % (input.size() + 1);
  const std::string sql(reinterpret_cast<const char*>(input.data()), split);
  const std::vector<Value> parameters = parameters_from(input.subspan(split));
  const EncodeResult result = encode_request(QuerySql{1, sql, parameters});
  if (!result.ok()) {
    check(result.bytes.empty());
    check(result.error == EncodeError::text_contains_nul || result.error == EncodeError::too_many_parameters);
    check(result.error != EncodeError::too_many_parameters || parameters.size() > max_parameters);
    return;
  }
  check(parameters.size() <= max_parameters);
  check(result.bytes.size() % word_size == 0 && result.bytes.size() >= header_size + word_size);
  check(std::size_t{read_u32(result.bytes)} * word_size == result.bytes.size() - header_size);
  check(result.bytes[4] == static_cast<std::uint8_t>(RequestType::query_sql));
  if (!parameters.empty()) {
    // The tuple starts after the db id and the padded SQL text; its count byte is the count.
    const std::size_t tuple = header_size + word_size + (sql.size() / word_size + 1) * word_size;
    check(result.bytes[tuple] == parameters.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);

  const DecodeResult decoded = decode_response(input);  // 1
  check(decoded.ok() || decoded.offset <= size);
  check(decoded.ok() == (decoded.error == DecodeError::none));

  const HeaderResult header = decode_header(input);  // 4
  if (!header.ok()) {
    check(!decoded.ok() && decoded.error == header.error);
  } else if (decoded.ok()) {
    check(header.header.body_bytes() + header_size == size);
    check(header.header.schema == 0);
  }

  if (decoded.ok()) {  // 2, 3
    const EncodeResult encoded = encode_response(decoded.response);
    check(encoded.ok());
    const DecodeResult again = decode_response(encoded.bytes);
    check(again.ok());
    check(same_response(decoded.response, again.response));
    const EncodeResult encoded_again = encode_response(again.response);
    check(encoded_again.ok() && encoded_again.bytes == encoded.bytes);
    check(encoded.bytes.size() == size);  // garbage in unused fields and padding becomes zeros
  }

  check_request(input);  // 5
  return 0;
}
