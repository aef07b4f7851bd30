// libFuzzer target over the RESP2 reply parser (services/node/cache: resp::parse_reply), which reads
// whatever the node's redis-server (or anything listening on its port) sends. The input is the
// bytes as received. Sanitizers catch memory errors; the invariants below catch wrong answers and
// stop with __builtin_trap().
//
// Invariants checked:
//  1. complete => 0 < consumed <= size, no error; parsing exactly bytes[0, consumed) again is
//     complete with the same consumed and the same value.
//  2. invalid => a non-empty, one-line error, and more bytes (a CRLF appended) keep it invalid;
//     incomplete => no error and consumed == 0.
//  3. incomplete => shorter prefixes are incomplete too (checked for a few: no verdict is reached
//     early that more bytes would change).
//  4. Every value keeps the limits: arrays of at most max_array_items, nested at most max_nesting
//     deep, bulks of at most max_reply_bytes, lines of at most max_line_bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "stacknode/node/resp.hpp"

using namespace stacknode::node::resp;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool same(const Value& left, const Value& right) {
  if (left.kind != right.kind || left.text != right.text || left.integer != right.integer ||
      left.items.size() != right.items.size()) {
    return false;
  }
  for (std::size_t index = 0; index < left.items.size(); ++index) {
    if (!same(left.items[index], right.items[index])) return false;
  }
  return true;
}

// `depth` counts the arrays around `value`, itself included when it is one.
void check_limits(const Value& value, std::size_t depth) {
  switch (value.kind) {
    case Value::Kind::simple:
    case Value::Kind::error:
      check(value.text.size() <= max_line_bytes && value.text.find_first_of("\r\n") == std::string::npos);
      check(value.items.empty());
      break;
    case Value::Kind::bulk:
      check(value.text.size() <= max_reply_bytes && value.items.empty());
      break;
    case Value::Kind::integer:
    case Value::Kind::null:
      check(value.text.empty() && value.items.empty());
      break;
    case Value::Kind::array:
      check(depth + 1 <= max_nesting && value.items.size() <= max_array_items && value.text.empty());
      for (const Value& item : value.items) check_limits(item, depth + 1);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const Parsed parsed = parse_reply(bytes);
  switch (parsed.state) {
    case Parsed::State::complete: {
      check(parsed.consumed > 0 && parsed.consumed <= size && parsed.error.empty());
      check_limits(parsed.value, 0);
      const Parsed again = parse_reply(bytes.substr(0, parsed.consumed));
      check(again.state == Parsed::State::complete && again.consumed == parsed.consumed);
      check(same(again.value, parsed.value));
      break;
    }
    case Parsed::State::invalid:
      check(!parsed.error.empty() && parsed.error.find('\n') == std::string::npos);
      check(parse_reply(std::string(bytes) + "\r\n").state == Parsed::State::invalid);
      break;
    case Parsed::State::incomplete:
      check(parsed.error.empty() && parsed.consumed == 0);
      for (const std::size_t shorter : {size / 2, size - size / 4, size > 0 ? size - 1 : 0}) {
        check(parse_reply(bytes.substr(0, shorter)).state == Parsed::State::incomplete);
      }
      break;
  }
  return 0;
}
