// Unit tests of RESP2 (services/node/cache/include/stacknode/node/resp.hpp): commands encoded
// against bytes written here by hand, every reply type parsed from hand-written bytes, `consumed`
// with bytes after the reply, every prefix of a reply incomplete, and every refusal with its
// message (also fuzzed: fuzz_resp). The client is tested against redis-server in the component tier.
#include <CppUTest/TestHarness.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/node/resp.hpp"

using namespace stacknode::node::resp;
using namespace std::string_literals;

namespace {

// Bytes with CR, LF and other control bytes spelled out, for failure messages.
std::string printable(std::string_view bytes) {
  std::string out;
  for (const char byte : bytes) {
    if (byte == '\r') {
      out += "\\r";
    } else if (byte == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(byte) < 0x20 || static_cast<unsigned char>(byte) >= 0x7f) {
      static constexpr char digits[] = "0123456789abcdef";
      out += "\\x";
      out += digits[static_cast<unsigned char>(byte) >> 4];
      out += digits[static_cast<unsigned char>(byte) & 0x0f];
    } else {
      out += byte;
    }
  }
  return out;
}

void check_bytes(std::string_view expected, std::string_view actual) {
  if (expected != actual) {
    FAIL(("expected \"" + printable(expected) + "\" but got \"" + printable(actual) + "\"").c_str());
  }
}

const char* state_name(Parsed::State state) {
  switch (state) {
    case Parsed::State::complete: return "complete";
    case Parsed::State::incomplete: return "incomplete";
    case Parsed::State::invalid: return "invalid";
  }
  return "?";
}

// The reply at the front of `bytes`, which must be complete and take exactly `consumed` bytes.
Value parse_complete(std::string_view bytes, std::size_t consumed) {
  const Parsed parsed = parse_reply(bytes);
  if (parsed.state != Parsed::State::complete) {
    FAIL(("\"" + printable(bytes) + "\" is " + state_name(parsed.state) + " (" + parsed.error + "), not complete").c_str());
  }
  CHECK_EQUAL(consumed, parsed.consumed);
  CHECK(parsed.error.empty());
  return parsed.value;
}

Value parse_whole(std::string_view bytes) { return parse_complete(bytes, bytes.size()); }

void check_incomplete(std::string_view bytes) {
  const Parsed parsed = parse_reply(bytes);
  if (parsed.state != Parsed::State::incomplete) {
    FAIL(("\"" + printable(bytes) + "\" is " + state_name(parsed.state) + " (" + parsed.error + "), not incomplete").c_str());
  }
  CHECK_EQUAL(0u, parsed.consumed);
}

void check_invalid(std::string_view bytes, const std::string& fragment) {
  const Parsed parsed = parse_reply(bytes);
  if (parsed.state != Parsed::State::invalid) {
    FAIL(("\"" + printable(bytes.substr(0, 200)) + "\" is " + state_name(parsed.state) + ", not invalid").c_str());
  }
  if (parsed.error.find(fragment) == std::string::npos) {
    FAIL(("message \"" + parsed.error + "\" lacks \"" + fragment + "\"").c_str());
  }
  CHECK(parsed.error.find('\n') == std::string::npos);
}

// `depth` arrays, each holding the next, the innermost holding :1.
std::string nested_arrays(std::size_t depth) {
  std::string bytes;
  for (std::size_t level = 0; level < depth; ++level) bytes += "*1\r\n";
  return bytes + ":1\r\n";
}

}  // namespace

TEST_GROUP(RespEncode){};

TEST(RespEncode, CommandIsAnArrayOfBulkStrings) {
  const std::vector<std::string> words = {"SET", "key", "value"};
  check_bytes("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n", encode_command(words));
}

TEST(RespEncode, WordsAreBinarySafe) {
  const std::vector<std::string> words = {"SET", "", "a\r\nb\0c"s};
  check_bytes("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$6\r\na\r\nb\0c\r\n"s, encode_command(words));
}

TEST(RespEncode, OneWord) {
  const std::vector<std::string> words = {"PING"};
  check_bytes("*1\r\n$4\r\nPING\r\n", encode_command(words));
}

TEST(RespEncode, EncodedCommandParsesBackAsAnArrayOfBulks) {
  const std::vector<std::string> words = {"HSET", "h", "field", std::string(300, 'x')};
  const Value value = parse_whole(encode_command(words));
  CHECK(value.kind == Value::Kind::array);
  CHECK_EQUAL(words.size(), value.items.size());
  for (std::size_t index = 0; index < words.size(); ++index) {
    CHECK(value.items[index].kind == Value::Kind::bulk);
    check_bytes(words[index], value.items[index].text);
  }
}

TEST_GROUP(RespParse){};

TEST(RespParse, SimpleString) {
  const Value value = parse_whole("+PONG\r\n");
  CHECK(value.kind == Value::Kind::simple);
  STRCMP_EQUAL("PONG", value.text.c_str());
  const Value empty = parse_whole("+\r\n");
  CHECK(empty.kind == Value::Kind::simple);
  STRCMP_EQUAL("", empty.text.c_str());
}

TEST(RespParse, Error) {
  const Value value = parse_whole("-ERR wrong number of arguments for 'get' command\r\n");
  CHECK(value.kind == Value::Kind::error);
  STRCMP_EQUAL("ERR wrong number of arguments for 'get' command", value.text.c_str());
}

TEST(RespParse, Integers) {
  const struct {
    const char* bytes;
    std::int64_t expected;
  } cases[] = {
      {":0\r\n", 0},
      {":1000\r\n", 1000},
      {":-1\r\n", -1},
      {":-0\r\n", 0},
      {":007\r\n", 7},
      {":9223372036854775807\r\n", std::numeric_limits<std::int64_t>::max()},
      {":-9223372036854775808\r\n", std::numeric_limits<std::int64_t>::min()},
  };
  for (const auto& test : cases) {
    const Value value = parse_whole(test.bytes);
    CHECK(value.kind == Value::Kind::integer);
    CHECK_EQUAL(test.expected, value.integer);
  }
}

TEST(RespParse, BulkStrings) {
  const Value value = parse_whole("$5\r\nhello\r\n");
  CHECK(value.kind == Value::Kind::bulk);
  STRCMP_EQUAL("hello", value.text.c_str());

  const Value empty = parse_whole("$0\r\n\r\n");
  CHECK(empty.kind == Value::Kind::bulk);
  CHECK_EQUAL(0u, empty.text.size());

  // CR, LF and NUL inside a bulk are payload: only the length says where it ends.
  const Value binary = parse_whole("$8\r\na\r\nb\0\r\nc\r\n"s);
  CHECK(binary.kind == Value::Kind::bulk);
  check_bytes("a\r\nb\0\r\nc"s, binary.text);
}

TEST(RespParse, NullBulkAndNullArray) {
  CHECK(parse_whole("$-1\r\n").kind == Value::Kind::null);
  CHECK(parse_whole("*-1\r\n").kind == Value::Kind::null);
}

TEST(RespParse, EmptyArray) {
  const Value value = parse_whole("*0\r\n");
  CHECK(value.kind == Value::Kind::array);
  CHECK_EQUAL(0u, value.items.size());
}

TEST(RespParse, ArrayOfEveryKind) {
  const Value value = parse_whole("*6\r\n+OK\r\n-ERR no\r\n:-42\r\n$3\r\nabc\r\n$-1\r\n*0\r\n");
  CHECK(value.kind == Value::Kind::array);
  CHECK_EQUAL(6u, value.items.size());
  CHECK(value.items[0].kind == Value::Kind::simple);
  STRCMP_EQUAL("OK", value.items[0].text.c_str());
  CHECK(value.items[1].kind == Value::Kind::error);
  STRCMP_EQUAL("ERR no", value.items[1].text.c_str());
  CHECK(value.items[2].kind == Value::Kind::integer);
  CHECK_EQUAL(-42, value.items[2].integer);
  CHECK(value.items[3].kind == Value::Kind::bulk);
  STRCMP_EQUAL("abc", value.items[3].text.c_str());
  CHECK(value.items[4].kind == Value::Kind::null);
  CHECK(value.items[5].kind == Value::Kind::array);
  CHECK_EQUAL(0u, value.items[5].items.size());
}

TEST(RespParse, NestedArrays) {
  // [[1, [b"x"]], null, []]
  const Value value = parse_whole("*3\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n*-1\r\n*0\r\n");
  CHECK(value.kind == Value::Kind::array);
  CHECK_EQUAL(3u, value.items.size());
  const Value& first = value.items[0];
  CHECK(first.kind == Value::Kind::array);
  CHECK_EQUAL(2u, first.items.size());
  CHECK_EQUAL(1, first.items[0].integer);
  CHECK(first.items[1].kind == Value::Kind::array);
  CHECK_EQUAL(1u, first.items[1].items.size());
  STRCMP_EQUAL("x", first.items[1].items[0].text.c_str());
  CHECK(value.items[1].kind == Value::Kind::null);
  CHECK(value.items[2].kind == Value::Kind::array);
  CHECK_EQUAL(0u, value.items[2].items.size());
}

TEST(RespParse, NestingUpToTheLimit) {
  Value value = parse_whole(nested_arrays(max_nesting));
  for (std::size_t level = 0; level < max_nesting; ++level) {
    CHECK(value.kind == Value::Kind::array);
    CHECK_EQUAL(1u, value.items.size());
    Value inner = value.items[0];
    value = std::move(inner);
  }
  CHECK(value.kind == Value::Kind::integer);
  CHECK_EQUAL(1, value.integer);
}

TEST(RespParse, ConsumedIsExactWithTrailingBytes) {
  STRCMP_EQUAL("PONG", parse_complete("+PONG\r\n+PONG\r\n", 7).text.c_str());
  parse_complete(":12\r\n$3\r\nabc\r\n", 5);
  parse_complete("$3\r\nabc\r\n*1\r\n", 9);
  parse_complete("$-1\r\ngarbage\xff", 5);
  parse_complete("*2\r\n:1\r\n:2\r\n:3\r\n", 12);
  parse_complete("*0\r\n*0\r\n", 4);
  // Two replies in a row: the second starts exactly where the first ended.
  const std::string two = "*1\r\n$2\r\nab\r\n-ERR x\r\n";
  const Parsed first = parse_reply(two);
  CHECK(first.state == Parsed::State::complete);
  CHECK_EQUAL(12u, first.consumed);
  const Value second = parse_whole(std::string_view(two).substr(first.consumed));
  CHECK(second.kind == Value::Kind::error);
  STRCMP_EQUAL("ERR x", second.text.c_str());
}

TEST(RespParse, EveryPrefixOfAReplyIsIncomplete) {
  const std::string replies[] = {
      "*5\r\n+OK\r\n-ERR bad\r\n:-9223372036854775808\r\n$6\r\nab\r\ncd\r\n*2\r\n$-1\r\n*-1\r\n",
      "$0\r\n\r\n",
      ":9223372036854775807\r\n",
      nested_arrays(max_nesting),
  };
  for (const std::string& reply : replies) {
    for (std::size_t length = 0; length < reply.size(); ++length) {
      check_incomplete(std::string_view(reply).substr(0, length));
    }
    parse_whole(reply);
  }
}

TEST(RespParse, UnknownTypeByte) {
  check_invalid("?x\r\n", "unknown reply type byte 0x3f at byte 0");
  check_invalid("PING\r\n", "unknown reply type byte 0x50");
  check_invalid("_\r\n", "unknown reply type byte 0x5f");  // RESP3's null is not RESP2
  check_invalid("*2\r\n:1\r\n\x00"s, "unknown reply type byte 0x00 at byte 8");
}

TEST(RespParse, BadIntegers) {
  check_invalid(":\r\n", "integer at byte 1 has no digits");
  check_invalid(":-\r\n", "has no digits");
  check_invalid(":12a\r\n", "integer at byte 1 is not a decimal number (byte 0x61)");
  check_invalid(":+5\r\n", "not a decimal number");
  check_invalid(": 5\r\n", "not a decimal number");
  check_invalid(":5 \r\n", "not a decimal number");
  check_invalid(":1.5\r\n", "not a decimal number");
  check_invalid(":--1\r\n", "not a decimal number");
  // Refused before its line ends: no digits can follow that would make it a number.
  check_invalid(":12a", "not a decimal number");
  check_invalid("$x", "bulk length at byte 1 is not a decimal number");
  check_invalid("*1x\r\n", "array count at byte 1 is not a decimal number");
}

TEST(RespParse, IntegerOverflow) {
  check_invalid(":9223372036854775808\r\n", "integer at byte 1 overflows a signed 64-bit integer");
  check_invalid(":-9223372036854775809\r\n", "overflows a signed 64-bit integer");
  check_invalid(":99999999999999999999\r\n", "overflows");
  check_invalid(":9223372036854775808", "overflows");  // before its CRLF arrives
  check_invalid("$9223372036854775808\r\n", "bulk length at byte 1 overflows");
  check_invalid("*99999999999999999999\r\n", "array count at byte 1 overflows");
}

TEST(RespParse, NumberLineLongerThanAnyNumber) {
  check_invalid(":" + std::string(21, '0'), "integer line at byte 1 longer than 20 bytes");
  // 20 leading zeros are still a number.
  CHECK_EQUAL(0, parse_whole(":" + std::string(20, '0') + "\r\n").integer);
}

TEST(RespParse, BulkLengthOverTheLimit) {
  check_invalid("$" + std::to_string(max_reply_bytes + 1) + "\r\n",
                "bulk length " + std::to_string(max_reply_bytes + 1) + " at byte 1 over the limit of " +
                    std::to_string(max_reply_bytes) + " bytes");
  check_invalid("$-2\r\n", "bulk length -2 at byte 1 is negative");
}

TEST(RespParse, ReplyOverTheLimit) {
  // A bulk of exactly max_reply_bytes fits no reply: its header and CRLF come on top.
  check_invalid("$" + std::to_string(max_reply_bytes) + "\r\n", "reply longer than " + std::to_string(max_reply_bytes));
  // Two bulks that fit one by one but not together.
  const std::string half = std::to_string(max_reply_bytes / 2);
  check_invalid("*2\r\n$" + half + "\r\n" + std::string(max_reply_bytes / 2, 'a') + "\r\n$" + half + "\r\n",
                "reply longer than");
  // A bulk that just fits.
  const std::size_t largest = max_reply_bytes - 2 - std::to_string(max_reply_bytes).size() - 1 - 2;
  const std::string bulk = "$" + std::to_string(largest) + "\r\n" + std::string(largest, 'b') + "\r\n";
  CHECK_EQUAL(max_reply_bytes, bulk.size());
  CHECK_EQUAL(largest, parse_whole(bulk).text.size());
  // More than max_reply_bytes of lines that are each within their limit.
  std::string lines = "*4096\r\n";
  while (lines.size() <= max_reply_bytes) lines += "+" + std::string(max_line_bytes - 1, 's') + "\r\n";
  check_invalid(lines, "reply longer than");
}

TEST(RespParse, ArrayCountOverTheLimit) {
  check_invalid("*" + std::to_string(max_array_items + 1) + "\r\n",
                "array count " + std::to_string(max_array_items + 1) + " at byte 1 over the limit of " +
                    std::to_string(max_array_items) + " items");
  check_invalid("*-2\r\n", "array count -2 at byte 1 is negative");
  // Exactly max_array_items is fine.
  std::string full = "*" + std::to_string(max_array_items) + "\r\n";
  for (std::size_t index = 0; index < max_array_items; ++index) full += ":1\r\n";
  CHECK_EQUAL(max_array_items, parse_whole(full).items.size());
}

TEST(RespParse, NestingOverTheLimit) {
  check_invalid(nested_arrays(max_nesting + 1), "arrays nested deeper than " + std::to_string(max_nesting));
  // Refused as soon as the too-deep array's header is there.
  std::string headers;
  for (std::size_t level = 0; level <= max_nesting; ++level) headers += "*1\r\n";
  check_invalid(headers, "nested deeper");
}

TEST(RespParse, CrWithoutLf) {
  check_invalid("+OK\rX", "CR without LF in simple string at byte 3");
  check_invalid("-ERR\r\r\n", "CR without LF in error at byte 4");
  check_invalid(":12\r3\n", "CR without LF in integer at byte 3");
  check_invalid("$3\rabc\r\n", "CR without LF in bulk length at byte 2");
  check_invalid("*1\r\n+a\rb\r\n", "CR without LF in simple string at byte 6");
  check_invalid("+a\nb\r\n", "LF without CR in simple string at byte 2");
}

TEST(RespParse, BulkPayloadNotFollowedByCrlf) {
  check_invalid("$3\r\nabcd\r\n", "bulk payload at byte 4 not followed by CRLF");
  check_invalid("$3\r\nabc\rX", "bulk payload at byte 4 not followed by CRLF");
  check_invalid("$3\r\nabc\n\r", "not followed by CRLF");
  // Refused as soon as the byte after the payload is there.
  check_invalid("$3\r\nabcX", "not followed by CRLF");
  check_invalid("$0\r\nX", "bulk payload at byte 4 not followed by CRLF");
}

TEST(RespParse, LineLongerThanTheLimit) {
  const std::string long_line(max_line_bytes + 1, 'a');
  check_invalid("+" + long_line, "simple string line at byte 1 longer than " + std::to_string(max_line_bytes) + " bytes");
  check_invalid("-" + long_line + "\r\n", "error line at byte 1 longer than");
  // A line of exactly max_line_bytes is fine, and incomplete until its CRLF.
  const std::string longest(max_line_bytes, 'a');
  check_incomplete("+" + longest);
  check_incomplete("+" + longest + "\r");
  CHECK_EQUAL(max_line_bytes, parse_whole("+" + longest + "\r\n").text.size());
}

TEST(RespParse, EmptyInputIsIncomplete) { check_incomplete(""); }
