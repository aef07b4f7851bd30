// Unit tests of dqlite's wire protocol codec (services/db/client/include/stacknode/db/wire.hpp):
// every request encoded against bytes derived by hand from the protocol facts listed at the top of
// wire.hpp (each derivation is written next to its vector), every response decoded from such
// bytes, all value types in a row set, a PART then DONE row set, and each malformed input's error.
#include <CppUTest/TestHarness.h>

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "stacknode/db/wire.hpp"

using namespace stacknode::db::wire;

namespace {

using Bytes = std::vector<std::uint8_t>;

// Concatenates chunks, so that each vector reads field by field.
Bytes join(std::initializer_list<Bytes> chunks) {
  Bytes all;
  for (const Bytes& chunk : chunks) all.insert(all.end(), chunk.begin(), chunk.end());
  return all;
}

std::string hex(const Bytes& bytes) {
  std::string text;
  char buffer[4];
  for (std::size_t index = 0; index < bytes.size(); ++index) {
    std::snprintf(buffer, sizeof buffer, "%02x", bytes[index]);
    text += buffer;
    text += (index % 8 == 7) ? " | " : " ";
  }
  return text;
}

void check_bytes(const Bytes& expected, const Bytes& actual) {
  if (expected != actual) FAIL(("expected " + hex(expected) + "\n     got " + hex(actual)).c_str());
}

void check_encodes(const Request& request, const Bytes& expected) {
  const EncodeResult result = encode_request(request);
  if (!result.ok()) FAIL(std::string(to_string(result.error)).c_str());
  check_bytes(expected, result.bytes);
}

template <typename T>
T decode_as(const Bytes& message) {
  const DecodeResult result = decode_response(message);
  if (!result.ok()) FAIL(describe(result).c_str());
  const T* value = std::get_if<T>(&result.response);
  if (value == nullptr) FAIL("decoded to another response type");
  return *value;
}

void check_refused(const Bytes& message, DecodeError error, std::size_t offset) {
  const DecodeResult result = decode_response(message);
  if (result.error != error || result.offset != offset) {
    FAIL(("expected " + std::string(to_string(error)) + " at byte " + std::to_string(offset) + ", got " +
          describe(result)).c_str());
  }
}

// Re-encoding a decoded response gives the same bytes (for inputs without server garbage).
void check_round_trip(const Bytes& message) {
  const DecodeResult decoded = decode_response(message);
  if (!decoded.ok()) FAIL(describe(decoded).c_str());
  const EncodeResult encoded = encode_response(decoded.response);
  if (!encoded.ok()) FAIL(std::string(to_string(encoded.error)).c_str());
  check_bytes(message, encoded.bytes);
}

}  // namespace

// ---- Requests ----

TEST_GROUP(WireEncode){};

TEST(WireEncode, HandshakeIsVersionOneLittleEndian) {
  // Fact 1: one word, 1 in little-endian.
  const auto handshake = encode_handshake();
  check_bytes({0x01, 0, 0, 0, 0, 0, 0, 0}, Bytes(handshake.begin(), handshake.end()));
}

TEST(WireEncode, Leader) {
  // Header: 1 body word (01 00 00 00), type LEADER 0, schema 0, extra 00 00. Body: u64 unused 0.
  check_encodes(Leader{}, {0x01, 0, 0, 0, 0x00, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0});
}

TEST(WireEncode, Client) {
  // Header: 1 word, type CLIENT 1. Body: u64 id 0x0102 little-endian = 02 01 00 ...
  check_encodes(Client{0x0102}, {0x01, 0, 0, 0, 0x01, 0, 0, 0, /**/ 0x02, 0x01, 0, 0, 0, 0, 0, 0});
}

TEST(WireEncode, Open) {
  // Body: text "test.db" (7 bytes + NUL = 8, one word), u64 flags 0 (one word), text "volatile"
  // (8 bytes + NUL = 9, padded to 16: two words). 4 words, type OPEN 3.
  check_encodes(Open{"test.db", 0, "volatile"},
                join({{0x04, 0, 0, 0, 0x03, 0, 0, 0},
                      {'t', 'e', 's', 't', '.', 'd', 'b', 0},
                      {0, 0, 0, 0, 0, 0, 0, 0},
                      {'v', 'o', 'l', 'a', 't', 'i', 'l', 'e', 0, 0, 0, 0, 0, 0, 0, 0}}));
}

TEST(WireEncode, Prepare) {
  // Body: u64 db 0, text "SELECT 1" (8 + NUL = 9 -> 16). 3 words, type PREPARE 4.
  check_encodes(Prepare{0, "SELECT 1"},
                join({{0x03, 0, 0, 0, 0x04, 0, 0, 0},
                      {0, 0, 0, 0, 0, 0, 0, 0},
                      {'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0, 0, 0, 0, 0, 0, 0, 0}}));
}

TEST(WireEncode, ExecWithoutParametersLeavesTheTupleOut) {
  // Body: u32 db 0, u32 statement 7, no tuple at all (fact 7). 1 word, type EXEC 5.
  check_encodes(Exec{0, 7, {}}, {0x01, 0, 0, 0, 0x05, 0, 0, 0, /**/ 0, 0, 0, 0, 0x07, 0, 0, 0});
}

TEST(WireEncode, ExecWithTwoParameters) {
  // Body: u32 db 1, u32 statement 2 (one word). Tuple header: count 02, one byte per code
  // (INTEGER 01, TEXT 03), zero padded: 02 01 03 00 00 00 00 00. Values: int64 -2 (fe ff .. ff),
  // text "hi" (68 69 00 + 5 zero bytes). 4 words, type EXEC 5.
  check_encodes(Exec{1, 2, {std::int64_t{-2}, std::string("hi")}},
                join({{0x04, 0, 0, 0, 0x05, 0, 0, 0},
                      {0x01, 0, 0, 0, 0x02, 0, 0, 0},
                      {0x02, 0x01, 0x03, 0, 0, 0, 0, 0},
                      {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                      {'h', 'i', 0, 0, 0, 0, 0, 0}}));
}

TEST(WireEncode, QueryWithEveryParameterType) {
  // Eight parameters: the count byte and eight code bytes are 9 bytes, padded to 16 (the header
  // grows a word past 7 parameters). Codes: INTEGER 01, FLOAT 02, TEXT 03, BLOB 04, NULL 05,
  // BOOLEAN 0b, UnixTime sent as INTEGER 01 (fact 8), ISO8601 0a. Values:
  //   7 -> 07 00 ..; 1.5 = 0x3ff8000000000000 -> 00 00 00 00 00 00 f8 3f; "x" -> 78 00 + 6 zeros;
  //   blob {1,2,3} -> length 03 00 .. then 01 02 03 + 5 zeros; NULL -> a zero word; true -> 01 00 ..;
  //   1700000000 s = 0x6553f100 -> 00 f1 53 65 00 00 00 00; "2024-01-02" (10 + NUL -> 16).
  // Body: 1 (ids) + 2 (header) + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 2 = 13 words (0x0d), type QUERY 6.
  const std::vector<Value> parameters = {std::int64_t{7},  1.5,  std::string("x"), Blob{1, 2, 3},
                                         Null{},           true, UnixTime{1700000000},
                                         Iso8601{"2024-01-02"}};
  check_encodes(Query{0, 1, parameters},
                join({{0x0d, 0, 0, 0, 0x06, 0, 0, 0},
                      {0, 0, 0, 0, 0x01, 0, 0, 0},
                      {0x08, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0b, 0x01},
                      {0x0a, 0, 0, 0, 0, 0, 0, 0},
                      {0x07, 0, 0, 0, 0, 0, 0, 0},
                      {0, 0, 0, 0, 0, 0, 0xf8, 0x3f},
                      {'x', 0, 0, 0, 0, 0, 0, 0},
                      {0x03, 0, 0, 0, 0, 0, 0, 0},
                      {0x01, 0x02, 0x03, 0, 0, 0, 0, 0},
                      {0, 0, 0, 0, 0, 0, 0, 0},
                      {0x01, 0, 0, 0, 0, 0, 0, 0},
                      {0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0},
                      {'2', '0', '2', '4', '-', '0', '1', '-', '0', '2', 0, 0, 0, 0, 0, 0}}));
}

TEST(WireEncode, Finalize) {
  // Body: u32 db 0, u32 statement 3. 1 word, type FINALIZE 7.
  check_encodes(Finalize{0, 3}, {0x01, 0, 0, 0, 0x07, 0, 0, 0, /**/ 0, 0, 0, 0, 0x03, 0, 0, 0});
}

TEST(WireEncode, ExecSql) {
  // Body: u64 db 0, text "BEGIN" (5 + NUL -> 8), no parameters. 2 words, type EXEC_SQL 8.
  check_encodes(ExecSql{0, "BEGIN", {}},
                join({{0x02, 0, 0, 0, 0x08, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0}, {'B', 'E', 'G', 'I', 'N', 0, 0, 0}}));
}

TEST(WireEncode, QuerySqlWithOneParameter) {
  // Body: u64 db 0, text "SELECT ?" (8 + NUL -> 16), tuple header 01 01 + 6 zeros, int64 5.
  // 5 words, type QUERY_SQL 9.
  check_encodes(QuerySql{0, "SELECT ?", {std::int64_t{5}}},
                join({{0x05, 0, 0, 0, 0x09, 0, 0, 0},
                      {0, 0, 0, 0, 0, 0, 0, 0},
                      {'S', 'E', 'L', 'E', 'C', 'T', ' ', '?', 0, 0, 0, 0, 0, 0, 0, 0},
                      {0x01, 0x01, 0, 0, 0, 0, 0, 0},
                      {0x05, 0, 0, 0, 0, 0, 0, 0}}));
}

TEST(WireEncode, Interrupt) {
  // Body: u64 db 0. 1 word, type INTERRUPT 10.
  check_encodes(Interrupt{0}, {0x01, 0, 0, 0, 0x0a, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0});
}

TEST(WireEncode, Add) {
  // Body: u64 id 2, text "127.0.0.1:9002" (14 + NUL = 15 -> 16). 3 words, type ADD 12.
  check_encodes(Add{2, "127.0.0.1:9002"},
                join({{0x03, 0, 0, 0, 0x0c, 0, 0, 0},
                      {0x02, 0, 0, 0, 0, 0, 0, 0},
                      {'1', '2', '7', '.', '0', '.', '0', '.', '1', ':', '9', '0', '0', '2', 0, 0}}));
}

TEST(WireEncode, Assign) {
  // Body: u64 id 2, u64 role STANDBY 1. 2 words, type ASSIGN 13.
  check_encodes(Assign{2, Role::standby},
                join({{0x02, 0, 0, 0, 0x0d, 0, 0, 0}, {0x02, 0, 0, 0, 0, 0, 0, 0}, {0x01, 0, 0, 0, 0, 0, 0, 0}}));
}

TEST(WireEncode, RemoveTransferWeight) {
  // Each: body u64 (id 3, id 2, weight 5), 1 word; types REMOVE 14, TRANSFER 17, WEIGHT 19.
  check_encodes(Remove{3}, {0x01, 0, 0, 0, 0x0e, 0, 0, 0, /**/ 0x03, 0, 0, 0, 0, 0, 0, 0});
  check_encodes(Transfer{2}, {0x01, 0, 0, 0, 0x11, 0, 0, 0, /**/ 0x02, 0, 0, 0, 0, 0, 0, 0});
  check_encodes(Weight{5}, {0x01, 0, 0, 0, 0x13, 0, 0, 0, /**/ 0x05, 0, 0, 0, 0, 0, 0, 0});
}

TEST(WireEncode, Dump) {
  // Body: text "test.db" (one word). Type DUMP 15.
  check_encodes(Dump{"test.db"}, {0x01, 0, 0, 0, 0x0f, 0, 0, 0, /**/ 't', 'e', 's', 't', '.', 'd', 'b', 0});
}

TEST(WireEncode, ClusterAsksForRolesAndDescribeForFormatZero) {
  // CLUSTER 16: u64 format 1; DESCRIBE 18: u64 format 0.
  check_encodes(Cluster{}, {0x01, 0, 0, 0, 0x10, 0, 0, 0, /**/ 0x01, 0, 0, 0, 0, 0, 0, 0});
  check_encodes(Describe{}, {0x01, 0, 0, 0, 0x12, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0});
}

TEST(WireEncode, RefusesTextWithNul) {
  const EncodeResult result = encode_request(ExecSql{0, std::string("SELECT 1\0; DROP", 15), {}});
  CHECK(result.error == EncodeError::text_contains_nul);
  CHECK(result.bytes.empty());
  CHECK(encode_request(Exec{0, 0, {Iso8601{std::string("a\0b", 3)}}}).error == EncodeError::text_contains_nul);
}

TEST(WireEncode, ParameterCountLimit) {
  const std::vector<Value> most(max_parameters, Value{Null{}});
  const EncodeResult ok = encode_request(Exec{0, 0, most});
  CHECK(ok.ok());
  // 1 + 255 code bytes = 256 = 32 words of header, 255 words of values, 1 word of ids.
  LONGS_EQUAL(header_size + 8 + 256 + 255 * 8, ok.bytes.size());
  LONGS_EQUAL(255, ok.bytes[16]);
  const std::vector<Value> too_many(max_parameters + 1, Value{Null{}});
  CHECK(encode_request(Exec{0, 0, too_many}).error == EncodeError::too_many_parameters);
}

// ---- Responses ----

TEST_GROUP(WireDecode){};

TEST(WireDecode, Failure) {
  // Header: 3 words, type FAILURE 0. Body: u64 code 10250 (NOT_LEADER = 0x280a -> 0a 28 ..),
  // text "not leader" (10 + NUL -> 16).
  const Bytes message = join({{0x03, 0, 0, 0, 0x00, 0, 0, 0},
                              {0x0a, 0x28, 0, 0, 0, 0, 0, 0},
                              {'n', 'o', 't', ' ', 'l', 'e', 'a', 'd', 'e', 'r', 0, 0, 0, 0, 0, 0}});
  const Failure failure = decode_as<Failure>(message);
  LONGS_EQUAL(error_not_leader, failure.code);
  STRCMP_EQUAL("not leader", failure.message.c_str());
  check_round_trip(message);
}

TEST(WireDecode, Node) {
  // Type 1: u64 id 1, text "127.0.0.1:9001" (15 -> 16). 3 words.
  const Bytes message = join({{0x03, 0, 0, 0, 0x01, 0, 0, 0},
                              {0x01, 0, 0, 0, 0, 0, 0, 0},
                              {'1', '2', '7', '.', '0', '.', '0', '.', '1', ':', '9', '0', '0', '1', 0, 0}});
  const Node node = decode_as<Node>(message);
  LONGS_EQUAL(1, node.id);
  STRCMP_EQUAL("127.0.0.1:9001", node.address.c_str());
  check_round_trip(message);
  // No leader known: id 0 and "" (one zero word).
  const Node none = decode_as<Node>(join({{0x02, 0, 0, 0, 0x01, 0, 0, 0}, Bytes(16, 0)}));
  LONGS_EQUAL(0, none.id);
  CHECK(none.address.empty());
}

TEST(WireDecode, Welcome) {
  // Type 2: u64 heartbeat timeout 15000 = 0x3a98 -> 98 3a ..
  const Bytes message = {0x01, 0, 0, 0, 0x02, 0, 0, 0, /**/ 0x98, 0x3a, 0, 0, 0, 0, 0, 0};
  LONGS_EQUAL(15000, decode_as<Welcome>(message).heartbeat_timeout);
  check_round_trip(message);
}

TEST(WireDecode, Nodes) {
  // Type 3: u64 count 2; then id 1, "a:1" (4 -> 8), role 0; id 2, "b:2", role SPARE 2. 7 words.
  const Bytes message = join({{0x07, 0, 0, 0, 0x03, 0, 0, 0},
                              {0x02, 0, 0, 0, 0, 0, 0, 0},
                              {0x01, 0, 0, 0, 0, 0, 0, 0},
                              {'a', ':', '1', 0, 0, 0, 0, 0},
                              {0x00, 0, 0, 0, 0, 0, 0, 0},
                              {0x02, 0, 0, 0, 0, 0, 0, 0},
                              {'b', ':', '2', 0, 0, 0, 0, 0},
                              {0x02, 0, 0, 0, 0, 0, 0, 0}});
  const Nodes nodes = decode_as<Nodes>(message);
  LONGS_EQUAL(2, nodes.nodes.size());
  CHECK(nodes.nodes[0] == (NodeInfo{1, "a:1", Role::voter}));
  CHECK(nodes.nodes[1] == (NodeInfo{2, "b:2", Role::spare}));
  check_round_trip(message);
}

TEST(WireDecode, DbIgnoresItsUnusedHalf) {
  // Type 4: u32 id 0, u32 unused, which 1.11 leaves as stack garbage (wire.hpp fact 5).
  const Db db = decode_as<Db>({0x01, 0, 0, 0, 0x04, 0, 0, 0, /**/ 0, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde});
  LONGS_EQUAL(0, db.id);
  check_round_trip({0x01, 0, 0, 0, 0x04, 0, 0, 0, /**/ 0x05, 0, 0, 0, 0, 0, 0, 0});
}

TEST(WireDecode, Stmt) {
  // Type 5: u32 db 0, u32 id 5, u64 parameter count 2.
  const Bytes message = {0x02, 0, 0, 0, 0x05, 0, 0, 0, /**/ 0, 0, 0, 0, 0x05, 0, 0, 0, /**/ 0x02, 0, 0, 0, 0, 0, 0, 0};
  CHECK(decode_as<Stmt>(message) == (Stmt{0, 5, 2}));
  check_round_trip(message);
}

TEST(WireDecode, Result) {
  // Type 6: u64 last insert id 3, u64 rows affected 1.
  const Bytes message = {0x02, 0, 0, 0, 0x06, 0, 0, 0, /**/ 0x03, 0, 0, 0, 0, 0, 0, 0, /**/ 0x01, 0, 0, 0, 0, 0, 0, 0};
  CHECK(decode_as<Result>(message) == (Result{3, 1}));
  check_round_trip(message);
}

TEST(WireDecode, EmptyIgnoresItsUnusedWord) {
  // Type 8: one unused word, uninitialised in 1.11's gateway.c.
  decode_as<Empty>({0x01, 0, 0, 0, 0x08, 0, 0, 0, /**/ 1, 2, 3, 4, 5, 6, 7, 8});
  check_round_trip({0x01, 0, 0, 0, 0x08, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0});
}

TEST(WireDecode, Files) {
  // Type 9: u64 count 2; "test.db" (8), u64 size 16, 16 raw bytes; "test.db-wal" (11 + NUL -> 16),
  // u64 size 0, nothing. 1 + 1 + 1 + 2 + 2 + 1 = 8 words.
  const Bytes message = join({{0x08, 0, 0, 0, 0x09, 0, 0, 0},
                              {0x02, 0, 0, 0, 0, 0, 0, 0},
                              {'t', 'e', 's', 't', '.', 'd', 'b', 0},
                              {0x10, 0, 0, 0, 0, 0, 0, 0},
                              {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', 0},
                              {'t', 'e', 's', 't', '.', 'd', 'b', '-', 'w', 'a', 'l', 0, 0, 0, 0, 0},
                              {0, 0, 0, 0, 0, 0, 0, 0}});
  const Files files = decode_as<Files>(message);
  LONGS_EQUAL(2, files.files.size());
  STRCMP_EQUAL("test.db", files.files[0].name.c_str());
  LONGS_EQUAL(16, files.files[0].content.size());
  MEMCMP_EQUAL("SQLite format 3", files.files[0].content.data(), 16);
  STRCMP_EQUAL("test.db-wal", files.files[1].name.c_str());
  CHECK(files.files[1].content.empty());
  check_round_trip(message);
}

TEST(WireDecode, Metadata) {
  // Type 10: u64 failure domain 1, u64 weight 2.
  const Bytes message = {0x02, 0, 0, 0, 0x0a, 0, 0, 0, /**/ 0x01, 0, 0, 0, 0, 0, 0, 0, /**/ 0x02, 0, 0, 0, 0, 0, 0, 0};
  CHECK(decode_as<Metadata>(message) == (Metadata{1, 2}));
  check_round_trip(message);
}

namespace {

// Type 7, one row of every value type, then DONE. Columns "a".."h" (one word each). Row header:
// 8 nibbles in 4 bytes, column 0 low: INTEGER 1 | FLOAT 2 -> 0x21, TEXT 3 | BLOB 4 -> 0x43,
// NULL 5 | UNIXTIME 9 -> 0x95, ISO8601 a | BOOLEAN b -> 0xba, then 4 zero bytes. Values: 42;
// -0.5 = 0xbfe0000000000000; "hello" (6 -> 8); blob length 2, de ad + 6 pad; a zero word; 86400 =
// 0x15180 -> 80 51 01 00 ..; "2024-01-02 03:04:05" (19 + NUL -> 24); 1. Words: 1 count + 8 names
// + 1 header + 1 + 1 + 1 + 2 + 1 + 1 + 3 + 1 + 1 marker = 22 (0x16).
Bytes every_type_rows() {
  return join({{0x16, 0, 0, 0, 0x07, 0, 0, 0},
               {0x08, 0, 0, 0, 0, 0, 0, 0},
               {'a', 0, 0, 0, 0, 0, 0, 0},
               {'b', 0, 0, 0, 0, 0, 0, 0},
               {'c', 0, 0, 0, 0, 0, 0, 0},
               {'d', 0, 0, 0, 0, 0, 0, 0},
               {'e', 0, 0, 0, 0, 0, 0, 0},
               {'f', 0, 0, 0, 0, 0, 0, 0},
               {'g', 0, 0, 0, 0, 0, 0, 0},
               {'h', 0, 0, 0, 0, 0, 0, 0},
               {0x21, 0x43, 0x95, 0xba, 0, 0, 0, 0},
               {0x2a, 0, 0, 0, 0, 0, 0, 0},
               {0, 0, 0, 0, 0, 0, 0xe0, 0xbf},
               {'h', 'e', 'l', 'l', 'o', 0, 0, 0},
               {0x02, 0, 0, 0, 0, 0, 0, 0},
               {0xde, 0xad, 0, 0, 0, 0, 0, 0},
               {0, 0, 0, 0, 0, 0, 0, 0},
               {0x80, 0x51, 0x01, 0, 0, 0, 0, 0},
               {'2', '0', '2', '4', '-', '0', '1', '-', '0', '2', ' ', '0', '3', ':', '0', '4', ':', '0', '5', 0, 0, 0, 0, 0},
               {0x01, 0, 0, 0, 0, 0, 0, 0},
               {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}});
}

// Type 7 with one column "n" and the given integers, then the given marker. Each row: header
// 01 + 7 zeros (one INTEGER nibble), then the value.
Bytes integer_rows(std::initializer_list<std::uint8_t> values, bool more) {
  Bytes body = {0x01, 0, 0, 0, 0, 0, 0, 0, /**/ 'n', 0, 0, 0, 0, 0, 0, 0};
  for (std::uint8_t value : values) body = join({body, {0x01, 0, 0, 0, 0, 0, 0, 0}, {value, 0, 0, 0, 0, 0, 0, 0}});
  body = join({body, Bytes(8, more ? 0xee : 0xff)});
  return join({{static_cast<std::uint8_t>(body.size() / 8), 0, 0, 0, 0x07, 0, 0, 0}, body});
}

}  // namespace

TEST(WireDecode, RowsWithEveryValueType) {
  const Rows rows = decode_as<Rows>(every_type_rows());
  CHECK(rows.columns == (std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h"}));
  CHECK_FALSE(rows.more);
  LONGS_EQUAL(1, rows.rows.size());
  const Row& row = rows.rows[0];
  CHECK(row[0] == Value{std::int64_t{42}});
  CHECK(row[1] == Value{-0.5});
  CHECK(row[2] == Value{std::string("hello")});
  CHECK(row[3] == (Value{Blob{0xde, 0xad}}));
  CHECK(row[4] == Value{Null{}});
  CHECK(row[5] == Value{UnixTime{86400}});
  CHECK(row[6] == Value{Iso8601{"2024-01-02 03:04:05"}});
  CHECK(row[7] == Value{true});
  check_round_trip(every_type_rows());
}

TEST(WireDecode, RowsOddColumnCountAndNoRows) {
  // 3 columns "x","y","z"; row header 0x31 0x05 (TEXT|INTEGER, NULL in the low nibble, high nibble
  // unused and zero) + 6 zeros; values 7, "q", a zero word; DONE. 1 + 3 + 1 + 3 + 1 = 9 words.
  const Bytes message = join({{0x09, 0, 0, 0, 0x07, 0, 0, 0},
                              {0x03, 0, 0, 0, 0, 0, 0, 0},
                              {'x', 0, 0, 0, 0, 0, 0, 0},
                              {'y', 0, 0, 0, 0, 0, 0, 0},
                              {'z', 0, 0, 0, 0, 0, 0, 0},
                              {0x31, 0x05, 0, 0, 0, 0, 0, 0},
                              {0x07, 0, 0, 0, 0, 0, 0, 0},
                              {'q', 0, 0, 0, 0, 0, 0, 0},
                              {0, 0, 0, 0, 0, 0, 0, 0},
                              {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}});
  const Rows rows = decode_as<Rows>(message);
  LONGS_EQUAL(1, rows.rows.size());
  CHECK(rows.rows[0] == (Row{std::int64_t{7}, std::string("q"), Null{}}));
  check_round_trip(message);

  const Rows none = decode_as<Rows>(integer_rows({}, false));
  LONGS_EQUAL(1, none.columns.size());
  CHECK(none.rows.empty());
  CHECK_FALSE(none.more);
}

TEST(WireDecode, MultiMessageRowSetPartThenDone) {
  RowSet set;
  Rows first = decode_as<Rows>(integer_rows({1, 2}, true));
  CHECK(first.more);
  CHECK(append_rows(set, std::move(first)) == RowSetError::none);
  CHECK_FALSE(set.complete);
  Rows last = decode_as<Rows>(integer_rows({3}, false));
  CHECK_FALSE(last.more);
  CHECK(append_rows(set, std::move(last)) == RowSetError::none);
  CHECK(set.complete);
  CHECK(set.columns == std::vector<std::string>{"n"});
  LONGS_EQUAL(3, set.rows.size());
  for (std::size_t index = 0; index < 3; ++index) {
    CHECK(set.rows[index] == Row{std::int64_t(index + 1)});
  }
  CHECK(append_rows(set, decode_as<Rows>(integer_rows({4}, false))) == RowSetError::already_complete);
  LONGS_EQUAL(3, set.rows.size());
}

TEST(WireDecode, RowSetRefusesChangedColumns) {
  RowSet set;
  CHECK(append_rows(set, decode_as<Rows>(integer_rows({1}, true))) == RowSetError::none);
  Rows other{{"m"}, {}, false};
  CHECK(append_rows(set, std::move(other)) == RowSetError::column_mismatch);
  CHECK_FALSE(set.complete);
}

// ---- Malformed input ----

TEST_GROUP(WireMalformed){};

TEST(WireMalformed, ShortHeader) {
  check_refused({0x01, 0, 0}, DecodeError::truncated, 3);
  CHECK(decode_header(Bytes{0x01, 0, 0, 0, 0x01, 0, 0}).error == DecodeError::truncated);
}

TEST(WireMalformed, BodyShorterOrLongerThanAnnounced) {
  // 2 words announced, 1 given; then 1 announced, 2 given.
  check_refused({0x02, 0, 0, 0, 0x02, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0}, DecodeError::truncated, 16);
  check_refused(join({{0x01, 0, 0, 0, 0x02, 0, 0, 0}, Bytes(16, 0)}), DecodeError::length_mismatch, 16);
}

TEST(WireMalformed, BodyBeyondLimit) {
  // max_body_words + 1 = 0x02000001 words, refused from the header alone.
  const Bytes header = {0x01, 0, 0, 0x02, 0x07, 0, 0, 0};
  const HeaderResult result = decode_header(header);
  CHECK(result.error == DecodeError::body_too_large);
  LONGS_EQUAL(max_body_words + 1, result.header.body_words);
  check_refused(header, DecodeError::body_too_large, 0);
  CHECK(decode_header(Bytes{0x00, 0, 0, 0x02, 0x07, 0, 0, 0}).ok());
}

TEST(WireMalformed, SchemaAndTypeCodes) {
  check_refused({0x01, 0, 0, 0, 0x02, 0x01, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0}, DecodeError::unsupported_schema, 5);
  check_refused({0x01, 0, 0, 0, 0x0b, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0}, DecodeError::unknown_type, 4);
  check_refused({0x01, 0, 0, 0, 0xff, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0}, DecodeError::unknown_type, 4);
}

TEST(WireMalformed, TruncatedField) {
  // RESULT needs two words; one given (the header agrees with the body, the body is short).
  check_refused({0x01, 0, 0, 0, 0x06, 0, 0, 0, /**/ 0x03, 0, 0, 0, 0, 0, 0, 0}, DecodeError::truncated, 16);
}

TEST(WireMalformed, TrailingBytes) {
  check_refused(join({{0x02, 0, 0, 0, 0x02, 0, 0, 0}, Bytes(16, 0)}), DecodeError::trailing_bytes, 16);
  // A word after a ROWS end marker.
  Bytes rows = integer_rows({1}, false);
  rows[0] += 1;
  rows = join({rows, Bytes(8, 0)});
  check_refused(rows, DecodeError::trailing_bytes, rows.size() - 8);
}

TEST(WireMalformed, TextWithoutTerminator) {
  check_refused({0x02, 0, 0, 0, 0x00, 0, 0, 0, /**/ 0x01, 0, 0, 0, 0, 0, 0, 0, /**/ 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'},
                DecodeError::unterminated_text, 16);
}

TEST(WireMalformed, TextPaddingNotZero) {
  // "ab" NUL, then a 0x01 where padding must be zero (byte 16 + 4).
  check_refused({0x02, 0, 0, 0, 0x00, 0, 0, 0, /**/ 0x01, 0, 0, 0, 0, 0, 0, 0, /**/ 'a', 'b', 0, 0, 0x01, 0, 0, 0},
                DecodeError::bad_padding, 20);
}

TEST(WireMalformed, RowHeaderPaddingNotZero) {
  // One INTEGER column: header byte 0x01 then padding; a 0x10 high nibble in the one code byte,
  // and then a stray byte in the padding.
  Bytes high_nibble = integer_rows({1}, false);
  high_nibble[24] = 0x11;
  check_refused(high_nibble, DecodeError::bad_padding, 25);
  Bytes padding = integer_rows({1}, false);
  padding[27] = 0x01;
  check_refused(padding, DecodeError::bad_padding, 27);
}

TEST(WireMalformed, UnknownValueType) {
  // Nibble 6 is no type (fact 6).
  Bytes message = integer_rows({1}, false);
  message[24] = 0x06;
  check_refused(message, DecodeError::unknown_value_type, 32);
}

TEST(WireMalformed, RowsWithoutEndMarker) {
  Bytes message = integer_rows({1}, false);
  message.resize(message.size() - 8);
  message[0] -= 1;
  check_refused(message, DecodeError::truncated, message.size());
}

TEST(WireMalformed, RowsColumnCounts) {
  // Zero columns.
  check_refused({0x02, 0, 0, 0, 0x07, 0, 0, 0, /**/ 0, 0, 0, 0, 0, 0, 0, 0, /**/ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                DecodeError::no_columns, 8);
  // 2^32 columns, and max_columns + 1 = 32768 (0x8000): beyond the limit.
  check_refused({0x01, 0, 0, 0, 0x07, 0, 0, 0, /**/ 0, 0, 0, 0, 0x01, 0, 0, 0}, DecodeError::too_many_columns, 8);
  check_refused({0x01, 0, 0, 0, 0x07, 0, 0, 0, /**/ 0, 0x80, 0, 0, 0, 0, 0, 0}, DecodeError::too_many_columns, 8);
  // 3 columns but only two words left: within the limit, beyond the bytes.
  check_refused(join({{0x03, 0, 0, 0, 0x07, 0, 0, 0}, {0x03, 0, 0, 0, 0, 0, 0, 0}, Bytes(16, 0)}),
                DecodeError::too_many_columns, 8);
}

TEST(WireMalformed, BlobLongerThanTheBody) {
  // One BLOB column (header 0x04) whose length word says 2^63.
  Bytes message = integer_rows({0}, false);
  message[24] = 0x04;
  message[32 + 7] = 0x80;
  check_refused(message, DecodeError::truncated, 40);
}

TEST(WireMalformed, NodesCountAndRole) {
  // max_nodes + 1 = 1025 (0x0401) nodes.
  check_refused({0x01, 0, 0, 0, 0x03, 0, 0, 0, /**/ 0x01, 0x04, 0, 0, 0, 0, 0, 0}, DecodeError::too_many_nodes, 8);
  // One node with role 3.
  check_refused(join({{0x04, 0, 0, 0, 0x03, 0, 0, 0},
                      {0x01, 0, 0, 0, 0, 0, 0, 0},
                      {0x01, 0, 0, 0, 0, 0, 0, 0},
                      {'a', 0, 0, 0, 0, 0, 0, 0},
                      {0x03, 0, 0, 0, 0, 0, 0, 0}}),
                DecodeError::unknown_role, 32);
}

TEST(WireMalformed, FilesCountAndSize) {
  // Three files announced (max_files is 2), with room for them.
  check_refused(join({{0x07, 0, 0, 0, 0x09, 0, 0, 0}, {0x03, 0, 0, 0, 0, 0, 0, 0}, Bytes(48, 0)}),
                DecodeError::too_many_files, 8);
  // One file whose size (64) runs past the body.
  check_refused(join({{0x04, 0, 0, 0, 0x09, 0, 0, 0},
                      {0x01, 0, 0, 0, 0, 0, 0, 0},
                      {'f', 0, 0, 0, 0, 0, 0, 0},
                      {0x40, 0, 0, 0, 0, 0, 0, 0},
                      Bytes(8, 0)}),
                DecodeError::truncated, 32);
}

TEST(WireMalformed, DescribeNamesErrorAndOffset) {
  const DecodeResult result = decode_response(Bytes{0x01, 0, 0, 0, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  STRCMP_EQUAL("unknown response type at byte 4", describe(result).c_str());
}

TEST(WireMalformed, EncoderRefusesWhatTheDecoderRefuses) {
  CHECK(encode_response(Rows{}).error == EncodeError::no_columns);
  CHECK(encode_response(Rows{{"a"}, {Row{}}, false}).error == EncodeError::row_width_mismatch);
  CHECK(encode_response(Files{std::vector<File>(3)}).error == EncodeError::too_many_files);
  CHECK(encode_response(Nodes{std::vector<NodeInfo>(max_nodes + 1)}).error == EncodeError::too_many_nodes);
  CHECK(encode_response(Failure{1, std::string("a\0b", 3)}).error == EncodeError::text_contains_nul);
}
