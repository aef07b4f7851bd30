// dqlite's client wire protocol, version 1, as pure code: typed requests encoded to bytes, and
// server messages (header + body) decoded to typed responses or to a named error. No sockets, no
// allocation beyond the values returned; the connection, leader following and pool build on it.
//
// The facts relied on, with their sources. "doc" is the dqlite "Wire protocol" reference
// (dqlite.io/docs/protocol, now canonical.com/dqlite/docs/reference/wire-protocol, source
// canonical/dqlite-docs reference/wire-protocol.md); "C" is canonical/dqlite src/ in the
// camelCase era that libdqlite 1.11 (Debian bookworm: 1.11.1-1, whose dqlite.h says 1.10.0) ships:
// protocol.h, request.h, response.h, gateway.c, query.c, tuple.c, bind.c, lib/serialize.h,
// lib/buffer.c; "go" is canonical/go-dqlite internal/protocol (message.go, constants.go). Where they
// disagree, this file follows C.
//  1. Handshake: the client's first 8 bytes are the protocol version, little-endian: 1
//     (doc "Setup"; C protocol.h DQLITE_PROTOCOL_VERSION; go VersionOne). The pre-1.0 legacy
//     version 0x86104dd760433fe5 is not spoken here.
//  2. Every message is an 8-byte header and a body (doc "Definitions"; C message.h; go
//     Message.finalize): bytes 0-3 the body size in 8-byte words (uint32 LE), byte 4 the type,
//     byte 5 the schema version (doc; C and go call it "flags"), bytes 6-7 unused ("extra").
//     Every body is a whole number of words. All integers are little-endian (C serialize.h
//     byte_flip*, go binary.LittleEndian).
//  3. Field encodings (doc "Data types"; C serialize.h): uint32 is 4 bytes, uint64/int64 8, a
//     float is the IEEE 754 double's bits as a uint64. text is UTF-8 plus a NUL terminator, zero
//     padded to a word boundary (textEncode memsets the padding). A blob is a uint64 length, then
//     the bytes, padded to a word; blobEncode does not zero that padding and the server's buffer
//     is malloc'ed (buffer.c), so blob padding is skipped unread, never checked.
//  4. Request types (C protocol.h, doc "Client messages"): LEADER 0, CLIENT 1, (HEARTBEAT 2),
//     OPEN 3, PREPARE 4, EXEC 5, QUERY 6, FINALIZE 7, EXEC_SQL 8, QUERY_SQL 9, INTERRUPT 10,
//     (CONNECT 11), ADD 12, ASSIGN 13, REMOVE 14, DUMP 15, CLUSTER 16, TRANSFER 17, DESCRIBE 18,
//     WEIGHT 19. Bodies as C request.h: LEADER u64 unused; CLIENT u64 id; OPEN text name, u64
//     flags, text vfs (go sends 0 and "volatile"); PREPARE u64 db, text sql; EXEC/QUERY u32 db,
//     u32 statement, params; FINALIZE u32 db, u32 statement; EXEC_SQL/QUERY_SQL u64 db, text sql,
//     params; INTERRUPT u64 db; ADD u64 id, text address; ASSIGN u64 id then u64 role (gateway.c
//     reads the role only if bytes remain; doc lists both); REMOVE/TRANSFER u64 id; DUMP text
//     name; CLUSTER u64 format (1 = with roles); DESCRIBE u64 format (0); WEIGHT u64 weight.
//  5. Response types (C protocol.h; doc "Server messages"): FAILURE 0 (u64 code, text message),
//     SERVER/"node" 1 (u64 id, text address: gateway.c handle_leader; id 0 and "" when no leader
//     is known), WELCOME 2 (u64 heartbeat timeout), SERVERS/"nodes" 3 (u64 count, then id,
//     address and, in format 1, u64 role each), DB 4 (u32 id, u32 unused), STMT 5 (u32 db, u32
//     id, u64 parameter count), RESULT 6 (u64 last insert id, u64 rows affected), ROWS 7, EMPTY 8
//     (u64 unused), FILES 9, METADATA 10 (u64 failure domain, u64 weight). Unused fields are
//     stack garbage in gateway.c (struct response_db's pad, response_empty), so never checked.
//  6. Value type codes (C protocol.h + sqlite3.h; doc "Data types"; go constants.go): INTEGER 1
//     (int64), FLOAT 2, TEXT 3, BLOB 4, NULL 5 (a zero word), UNIXTIME 9 (int64 seconds),
//     ISO8601 10 (text), BOOLEAN 11 (uint64 0/1). The doc's table leaves out 9.
//  7. Parameters (EXEC, QUERY, EXEC_SQL, QUERY_SQL; schema 0): one count byte, then ONE BYTE per
//     type code, zero padded so that count + codes fill whole words, then the values (C tuple.c
//     calcHeaderSize/tupleEncoderInit, doc "params-tuple", go putNamedValues). So at most 255
//     parameters. No parameters: the tuple is left out altogether (bind.c binds nothing when the
//     body is used up; go writes nothing). Unlike rows (fact 9), parameter codes are not packed
//     4 bits to a byte: doc, C and go agree on 8. Schema 1's params32 (a 4-byte count, doc) is
//     later than 1.11 and not used.
//  8. 1.11's parameter decoder (tuple.c tupleDecoderNext) has no case for UNIXTIME and refuses it,
//     so a UnixTime parameter is sent as INTEGER with the same seconds, which is how SQLite keeps
//     it either way. BOOLEAN is bound as 0/1 and ISO8601 as text (bind.c bindOne).
//  9. ROWS body (C query.c query_batch, gateway.c queryBatch; doc "Batch of table rows"): u64
//     column count (never 0: query_batch fails a statement without columns), the column names as
//     text, then rows, then one u64 end marker: DONE 0xffffffffffffffff when the statement is
//     finished, PART 0xeeeeeeeeeeeeeeee when another ROWS message follows. A row is its type codes,
//     4 bits each (column 0 in the low nibble of byte 0), zero padded to whole words (tupleEncoder
//     Init memsets it), then the values. A row header can never read as a marker: nibbles 0xe and
//     0xf are no type. Each PART message repeats the column count and names (query_batch writes
//     them every batch); the server fills about a memory page per message.
// 10. FILES body (gateway.c handle_dump/dumpFile): u64 count (2: the database, then its "-wal"),
//     then per file text name, u64 size and the size bytes raw. The doc calls the content "a blob",
//     which would add a second length word; C and go (Files.Next) write and read none. C only
//     sends whole pages, so sizes are word multiples; a size that is not is padded to the word.
// 11. Failure codes keep SQLite's (extended) code; dqlite adds SQLITE_IOERR_NOT_LEADER 10250 and
//     SQLITE_IOERR_LEADERSHIP_LOST 10506 (C leader.h, SQLITE_IOERR | 40 << 8, | 41 << 8).
//
// Decoding is strict where the server is exact and lenient where it leaves bytes undefined (3, 5):
// every read is bounds-checked, the body must be used up exactly, text padding and row-header
// padding must be zero, counts must fit both their named limit and the bytes left.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace stacknode::db::wire {

inline constexpr std::uint64_t protocol_version = 1;
inline constexpr std::size_t word_size = 8;
inline constexpr std::size_t header_size = 8;
// Bodies larger than this are refused both ways before anything is allocated: 2^25 words
// (256 MiB), the MESSAGE__MAX_WORDS dqlite put on its own input. A DUMP answer carries the whole
// database in one message, so this is also the largest database we can back up through DUMP.
inline constexpr std::uint32_t max_body_words = 1u << 25;
inline constexpr std::size_t max_body_bytes = std::size_t{max_body_words} * word_size;
// The count field of a schema-0 parameter tuple is one byte.
inline constexpr std::size_t max_parameters = 255;
// SQLite's compile-time ceiling on columns (SQLITE_MAX_COLUMN may not exceed 32767).
inline constexpr std::uint64_t max_columns = 32767;
// Raft clusters are a handful of voters plus standbys and spares; a rack is at most a few dozen
// nodes. A count beyond this is garbage, not a cluster.
inline constexpr std::uint64_t max_nodes = 1024;
// A DUMP answer is the database and its WAL (fact 10).
inline constexpr std::uint64_t max_files = 2;

inline constexpr std::uint64_t rows_done_marker = 0xffffffffffffffffull;
inline constexpr std::uint64_t rows_part_marker = 0xeeeeeeeeeeeeeeeeull;

// dqlite's failure codes for leadership (fact 11); everything else is SQLite's own code.
inline constexpr std::uint64_t error_not_leader = 10 | (40 << 8);
inline constexpr std::uint64_t error_leadership_lost = 10 | (41 << 8);

enum class RequestType : std::uint8_t {
  leader = 0,
  client = 1,
  heartbeat = 2,  // legacy, not sent
  open = 3,
  prepare = 4,
  exec = 5,
  query = 6,
  finalize = 7,
  exec_sql = 8,
  query_sql = 9,
  interrupt = 10,
  connect = 11,  // node to node, not sent by clients
  add = 12,
  assign = 13,
  remove = 14,
  dump = 15,
  cluster = 16,
  transfer = 17,
  describe = 18,
  weight = 19,
};

enum class ResponseType : std::uint8_t {
  failure = 0,
  node = 1,
  welcome = 2,
  nodes = 3,
  db = 4,
  stmt = 5,
  result = 6,
  rows = 7,
  empty = 8,
  files = 9,
  metadata = 10,
};

enum class ValueType : std::uint8_t {
  integer = 1,
  floating = 2,
  text = 3,
  blob = 4,
  null = 5,
  unix_time = 9,
  iso8601 = 10,
  boolean = 11,
};

enum class Role : std::uint8_t { voter = 0, standby = 1, spare = 2 };

inline constexpr std::uint64_t cluster_format_with_roles = 1;
inline constexpr std::uint64_t describe_format = 0;

// ---- Values (parameters and row cells) ----

struct Null {
  bool operator==(const Null&) const = default;
};
struct UnixTime {
  std::int64_t seconds = 0;
  bool operator==(const UnixTime&) const = default;
};
struct Iso8601 {
  std::string text;
  bool operator==(const Iso8601&) const = default;
};
using Blob = std::vector<std::uint8_t>;
using Value = std::variant<std::int64_t, double, std::string, Blob, Null, bool, UnixTime, Iso8601>;

// The type code a value is sent with in a row (fact 6).
ValueType value_type(const Value& value);

// ---- Requests ----

using DatabaseId = std::uint32_t;   // DB answers carry a uint32 (fact 5)
using StatementId = std::uint32_t;  // STMT answers carry a uint32
using NodeId = std::uint64_t;

struct Leader {};
struct Client {
  std::uint64_t id = 0;
};
struct Open {
  std::string name;
  std::uint64_t flags = 0;
  std::string vfs = "volatile";  // what go-dqlite sends; 1.11 ignores both
};
struct Prepare {
  DatabaseId db_id = 0;
  std::string sql;
};
struct Exec {
  DatabaseId db_id = 0;
  StatementId statement_id = 0;
  std::vector<Value> parameters;
};
struct Query {
  DatabaseId db_id = 0;
  StatementId statement_id = 0;
  std::vector<Value> parameters;
};
struct Finalize {
  DatabaseId db_id = 0;
  StatementId statement_id = 0;
};
struct ExecSql {
  DatabaseId db_id = 0;
  std::string sql;
  std::vector<Value> parameters;
};
struct QuerySql {
  DatabaseId db_id = 0;
  std::string sql;
  std::vector<Value> parameters;
};
struct Interrupt {
  DatabaseId db_id = 0;
};
struct Add {
  NodeId node_id = 0;
  std::string address;
};
struct Assign {
  NodeId node_id = 0;
  Role role = Role::voter;
};
struct Remove {
  NodeId node_id = 0;
};
struct Dump {
  std::string name;
};
struct Cluster {};  // always asks for format 1 (with roles), which decode_response expects
struct Transfer {
  NodeId node_id = 0;
};
struct Describe {};  // format 0
struct Weight {
  std::uint64_t weight = 0;
};

using Request = std::variant<Leader, Client, Open, Prepare, Exec, Query, Finalize, ExecSql, QuerySql,
                             Interrupt, Add, Assign, Remove, Dump, Cluster, Transfer, Describe, Weight>;

RequestType request_type(const Request& request);

// ---- Responses ----

struct Failure {
  std::uint64_t code = 0;
  std::string message;
  bool operator==(const Failure&) const = default;
};
struct Node {  // the answer to LEADER: id 0 and an empty address when no leader is known
  NodeId id = 0;
  std::string address;
  bool operator==(const Node&) const = default;
};
struct Welcome {
  std::uint64_t heartbeat_timeout = 0;
  bool operator==(const Welcome&) const = default;
};
struct NodeInfo {
  NodeId id = 0;
  std::string address;
  Role role = Role::voter;
  bool operator==(const NodeInfo&) const = default;
};
struct Nodes {
  std::vector<NodeInfo> nodes;
  bool operator==(const Nodes&) const = default;
};
struct Db {
  DatabaseId id = 0;
  bool operator==(const Db&) const = default;
};
struct Stmt {
  DatabaseId db_id = 0;
  StatementId id = 0;
  std::uint64_t parameter_count = 0;
  bool operator==(const Stmt&) const = default;
};
struct Result {
  std::uint64_t last_insert_id = 0;
  std::uint64_t rows_affected = 0;
  bool operator==(const Result&) const = default;
};
using Row = std::vector<Value>;
struct Rows {  // one ROWS message; more: PART (another follows), else DONE
  std::vector<std::string> columns;
  std::vector<Row> rows;
  bool more = false;
  bool operator==(const Rows&) const = default;
};
struct Empty {
  bool operator==(const Empty&) const = default;
};
struct File {
  std::string name;
  std::vector<std::uint8_t> content;
  bool operator==(const File&) const = default;
};
struct Files {
  std::vector<File> files;
  bool operator==(const Files&) const = default;
};
struct Metadata {
  std::uint64_t failure_domain = 0;
  std::uint64_t weight = 0;
  bool operator==(const Metadata&) const = default;
};

using Response =
    std::variant<Failure, Node, Welcome, Nodes, Db, Stmt, Result, Rows, Empty, Files, Metadata>;

ResponseType response_type(const Response& response);

// ---- Encoding ----

enum class EncodeError : std::uint8_t {
  none,
  text_contains_nul,    // text is NUL-terminated on the wire: it would be cut short
  too_many_parameters,  // more than max_parameters
  body_too_large,       // more than max_body_bytes
  no_columns,           // a ROWS answer needs at least one column (fact 9)
  too_many_columns,     // more than max_columns
  row_width_mismatch,   // a row whose value count differs from the column count
  too_many_nodes,       // more than max_nodes
  too_many_files,       // more than max_files
};
std::string_view to_string(EncodeError error);

struct EncodeResult {
  std::vector<std::uint8_t> bytes;  // header + body, when error is none
  EncodeError error = EncodeError::none;
  bool ok() const { return error == EncodeError::none; }
};

std::array<std::uint8_t, 8> encode_handshake();
EncodeResult encode_request(const Request& request);
// The server side of the same format, for fake servers in tests and for round trips.
EncodeResult encode_response(const Response& response);

// ---- Decoding (untrusted input) ----

struct Header {
  std::uint32_t body_words = 0;
  std::uint8_t type = 0;
  std::uint8_t schema = 0;
  std::uint16_t extra = 0;
  std::size_t body_bytes() const { return std::size_t{body_words} * word_size; }
};

enum class DecodeError : std::uint8_t {
  none,
  truncated,           // a field, or the body the header announced, runs past the bytes given
  length_mismatch,     // more bytes given than header + announced body
  body_too_large,      // the header announces more than max_body_words
  unsupported_schema,  // schema byte not 0: a format newer than 1.11's
  unknown_type,        // response type code not in fact 5
  unterminated_text,   // no NUL before the end of the body
  bad_padding,         // a non-zero byte where text or row-header padding must be zero
  unknown_value_type,  // a row type code not in fact 6
  unknown_role,        // a node role other than 0, 1, 2
  no_columns,          // ROWS with a column count of 0
  too_many_columns,    // beyond max_columns or the bytes left
  too_many_nodes,      // beyond max_nodes or the bytes left
  too_many_files,      // beyond max_files or the bytes left
  trailing_bytes,      // the body goes on after the last field (or after the rows' end marker)
};
std::string_view to_string(DecodeError error);

struct HeaderResult {
  Header header;
  DecodeError error = DecodeError::none;
  bool ok() const { return error == DecodeError::none; }
};
// The first 8 bytes of a message: what the transport reads before it knows the body's size.
// Refuses a body beyond max_body_words, so the caller can size its buffer from the result.
HeaderResult decode_header(std::span<const std::uint8_t> bytes);

struct DecodeResult {
  Response response;
  DecodeError error = DecodeError::none;
  std::size_t offset = 0;  // where in the message (header included) the error was found
  bool ok() const { return error == DecodeError::none; }
};
// One whole server message: header and exactly the body it announces.
DecodeResult decode_response(std::span<const std::uint8_t> message);
// "truncated at byte 24", for logs and error replies.
std::string describe(const DecodeResult& result);

// ---- Multi-message row sets ----

// The rows of one statement, gathered from its ROWS messages (PART..., then DONE).
struct RowSet {
  std::vector<std::string> columns;
  std::vector<Row> rows;
  bool complete = false;  // a DONE message has been added
};

enum class RowSetError : std::uint8_t {
  none,
  already_complete,  // a message after the DONE one
  column_mismatch,   // a message whose columns differ from the first one's
};
std::string_view to_string(RowSetError error);

// Appends one message's rows. On an error the row set is left as it was.
RowSetError append_rows(RowSet& set, Rows&& message);

}  // namespace stacknode::db::wire
