// Encoder and decoder of dqlite's client wire protocol (wire.hpp states the format and its
// sources). Writer appends little-endian fields to a body; Reader walks an untrusted message with
// every read bounds-checked and stops at the first error, remembering where it was.
#include "stacknode/db/wire.hpp"

#include <bit>
#include <cstring>
#include <string>
#include <utility>

namespace stacknode::db::wire {

namespace {

constexpr std::size_t padded_to_word(std::size_t size) {
  return (size + word_size - 1) / word_size * word_size;
}

// Smallest wire sizes, used to refuse a count before reserving room for it.
constexpr std::size_t min_text_bytes = word_size;                        // "" is one zero word
constexpr std::size_t min_node_bytes = 2 * word_size + min_text_bytes;   // id, address, role
constexpr std::size_t min_file_bytes = min_text_bytes + word_size;       // name, size

bool valid_value_type(std::uint8_t code) {
  switch (static_cast<ValueType>(code)) {
    case ValueType::integer:
    case ValueType::floating:
    case ValueType::text:
    case ValueType::blob:
    case ValueType::null:
    case ValueType::unix_time:
    case ValueType::iso8601:
    case ValueType::boolean:
      return true;
  }
  return false;
}

// ---- Writing ----

class Writer {
 public:
  void u8(std::uint8_t value) { body_.push_back(value); }
  void u32(std::uint32_t value) {
    for (int shift = 0; shift < 32; shift += 8) body_.push_back(static_cast<std::uint8_t>(value >> shift));
  }
  void u64(std::uint64_t value) {
    for (int shift = 0; shift < 64; shift += 8) body_.push_back(static_cast<std::uint8_t>(value >> shift));
  }
  void i64(std::int64_t value) { u64(static_cast<std::uint64_t>(value)); }
  void f64(double value) { u64(std::bit_cast<std::uint64_t>(value)); }
  void zeros_to_word() { body_.resize(padded_to_word(body_.size()), 0); }

  void text(std::string_view value) {
    if (value.find('\0') != std::string_view::npos) fail(EncodeError::text_contains_nul);
    body_.insert(body_.end(), value.begin(), value.end());
    body_.push_back(0);
    zeros_to_word();
  }
  void raw_padded(std::span<const std::uint8_t> bytes) {
    body_.insert(body_.end(), bytes.begin(), bytes.end());
    zeros_to_word();
  }
  void blob(std::span<const std::uint8_t> bytes) {
    u64(bytes.size());
    raw_padded(bytes);
  }

  void fail(EncodeError error) {
    if (error_ == EncodeError::none) error_ = error;
  }
  bool failed() const { return error_ != EncodeError::none; }
  std::vector<std::uint8_t>& body() { return body_; }

  // Header + body, or the first error.
  EncodeResult finish(std::uint8_t type) {
    EncodeResult result;
    if (!failed() && body_.size() > max_body_bytes) fail(EncodeError::body_too_large);
    if (failed()) {
      result.error = error_;
      return result;
    }
    const auto words = static_cast<std::uint32_t>(body_.size() / word_size);
    result.bytes.reserve(header_size + body_.size());
    for (int shift = 0; shift < 32; shift += 8) result.bytes.push_back(static_cast<std::uint8_t>(words >> shift));
    result.bytes.push_back(type);
    result.bytes.push_back(0);  // schema 0
    result.bytes.push_back(0);  // extra
    result.bytes.push_back(0);
    result.bytes.insert(result.bytes.end(), body_.begin(), body_.end());
    return result;
  }

 private:
  std::vector<std::uint8_t> body_;
  EncodeError error_ = EncodeError::none;
};

// The bytes of one value, without its type code.
void write_value(Writer& writer, const Value& value) {
  std::visit(
      [&](const auto& item) {
        using T = std::decay_t<decltype(item)>;
        if constexpr (std::is_same_v<T, std::int64_t>) {
          writer.i64(item);
        } else if constexpr (std::is_same_v<T, double>) {
          writer.f64(item);
        } else if constexpr (std::is_same_v<T, std::string>) {
          writer.text(item);
        } else if constexpr (std::is_same_v<T, Blob>) {
          writer.blob(item);
        } else if constexpr (std::is_same_v<T, Null>) {
          writer.u64(0);
        } else if constexpr (std::is_same_v<T, bool>) {
          writer.u64(item ? 1 : 0);
        } else if constexpr (std::is_same_v<T, UnixTime>) {
          writer.i64(item.seconds);
        } else {
          static_assert(std::is_same_v<T, Iso8601>);
          writer.text(item.text);
        }
      },
      value);
}

ValueType parameter_type(const Value& value) {
  const ValueType type = value_type(value);
  return type == ValueType::unix_time ? ValueType::integer : type;  // fact 8
}

// Parameter tuple (fact 7): nothing at all when there are no parameters.
void write_parameters(Writer& writer, const std::vector<Value>& parameters) {
  if (parameters.empty()) return;
  if (parameters.size() > max_parameters) {
    writer.fail(EncodeError::too_many_parameters);
    return;
  }
  writer.u8(static_cast<std::uint8_t>(parameters.size()));
  for (const Value& value : parameters) writer.u8(static_cast<std::uint8_t>(parameter_type(value)));
  writer.zeros_to_word();
  for (const Value& value : parameters) write_value(writer, value);
}

// Row tuple (fact 9): 4-bit codes, column 0 in the low nibble, zero padded to a word.
void write_row(Writer& writer, const Row& row) {
  std::vector<std::uint8_t>& body = writer.body();
  const std::size_t header_start = body.size();
  body.resize(header_start + padded_to_word((row.size() + 1) / 2), 0);
  for (std::size_t index = 0; index < row.size(); ++index) {
    const auto code = static_cast<std::uint8_t>(value_type(row[index]));
    body[header_start + index / 2] |= static_cast<std::uint8_t>(index % 2 == 0 ? code : code << 4);
  }
  for (const Value& value : row) write_value(writer, value);
}

// ---- Reading ----

class Reader {
 public:
  Reader(std::span<const std::uint8_t> message, std::size_t start) : message_(message), offset_(start) {}

  std::size_t offset() const { return offset_; }
  std::size_t remaining() const { return message_.size() - offset_; }
  bool failed() const { return error_ != DecodeError::none; }
  DecodeError error() const { return error_; }
  std::size_t error_offset() const { return error_offset_; }

  bool fail(DecodeError error) { return fail_at(error, offset_); }
  bool fail_at(DecodeError error, std::size_t at) {
    if (!failed()) {
      error_ = error;
      error_offset_ = at;
    }
    return false;
  }

  bool u8(std::uint8_t& out) {
    if (failed() || remaining() < 1) return fail(DecodeError::truncated);
    out = message_[offset_++];
    return true;
  }
  bool u32(std::uint32_t& out) {
    if (failed() || remaining() < 4) return fail(DecodeError::truncated);
    out = 0;
    for (int index = 3; index >= 0; --index) out = out << 8 | message_[offset_ + static_cast<std::size_t>(index)];
    offset_ += 4;
    return true;
  }
  bool peek_u64(std::uint64_t& out) const {
    if (failed() || remaining() < word_size) return false;
    out = 0;
    for (int index = 7; index >= 0; --index) out = out << 8 | message_[offset_ + static_cast<std::size_t>(index)];
    return true;
  }
  bool u64(std::uint64_t& out) {
    if (!peek_u64(out)) return fail(DecodeError::truncated);
    offset_ += word_size;
    return true;
  }
  bool i64(std::int64_t& out) {
    std::uint64_t bits = 0;
    if (!u64(bits)) return false;
    out = static_cast<std::int64_t>(bits);
    return true;
  }
  bool f64(double& out) {
    std::uint64_t bits = 0;
    if (!u64(bits)) return false;
    out = std::bit_cast<double>(bits);
    return true;
  }

  // NUL-terminated, zero padded to a word (fact 3).
  bool text(std::string& out) {
    if (failed()) return false;
    const std::span<const std::uint8_t> rest = message_.subspan(offset_);
    const void* nul = std::memchr(rest.data(), 0, rest.size());
    if (nul == nullptr) return fail(DecodeError::unterminated_text);
    const auto length = static_cast<std::size_t>(static_cast<const std::uint8_t*>(nul) - rest.data());
    const std::size_t padded = padded_to_word(length + 1);
    if (padded > rest.size()) {
      offset_ += rest.size();
      return fail(DecodeError::truncated);
    }
    for (std::size_t index = length + 1; index < padded; ++index) {
      if (rest[index] != 0) {
        offset_ += index;
        return fail(DecodeError::bad_padding);
      }
    }
    out.assign(reinterpret_cast<const char*>(rest.data()), length);
    offset_ += padded;
    return true;
  }

  // `size` raw bytes, then padding to a word that is skipped unread (fact 3).
  bool raw_padded(std::uint64_t size, std::vector<std::uint8_t>& out) {
    if (failed()) return false;
    if (size > remaining() || padded_to_word(static_cast<std::size_t>(size)) > remaining()) {
      return fail(DecodeError::truncated);
    }
    const auto length = static_cast<std::size_t>(size);
    out.assign(message_.begin() + static_cast<std::ptrdiff_t>(offset_),
               message_.begin() + static_cast<std::ptrdiff_t>(offset_ + length));
    offset_ += padded_to_word(length);
    return true;
  }
  bool blob(std::vector<std::uint8_t>& out) {
    std::uint64_t size = 0;
    return u64(size) && raw_padded(size, out);
  }

  // Row header padding (fact 9): must be zero.
  bool zero_bytes(std::size_t count) {
    if (failed() || remaining() < count) return fail(DecodeError::truncated);
    for (std::size_t index = 0; index < count; ++index) {
      if (message_[offset_] != 0) return fail(DecodeError::bad_padding);
      ++offset_;
    }
    return true;
  }

  // A count of items at least `min_item_bytes` each, within `limit` and the bytes left.
  bool count(std::uint64_t& out, std::uint64_t limit, std::size_t min_item_bytes, DecodeError too_many) {
    const std::size_t at = offset_;
    if (!u64(out)) return false;
    if (out > limit || out > remaining() / min_item_bytes) return fail_at(too_many, at);
    return true;
  }

 private:
  std::span<const std::uint8_t> message_;
  std::size_t offset_ = 0;
  DecodeError error_ = DecodeError::none;
  std::size_t error_offset_ = 0;
};

bool read_value(Reader& reader, std::uint8_t code, Value& out) {
  switch (static_cast<ValueType>(code)) {
    case ValueType::integer: {
      std::int64_t value = 0;
      if (!reader.i64(value)) return false;
      out = value;
      return true;
    }
    case ValueType::floating: {
      double value = 0;
      if (!reader.f64(value)) return false;
      out = value;
      return true;
    }
    case ValueType::text: {
      std::string value;
      if (!reader.text(value)) return false;
      out = std::move(value);
      return true;
    }
    case ValueType::blob: {
      Blob value;
      if (!reader.blob(value)) return false;
      out = std::move(value);
      return true;
    }
    case ValueType::null: {
      std::uint64_t ignored = 0;  // a zero word; never checked (go reads it the same way)
      if (!reader.u64(ignored)) return false;
      out = Null{};
      return true;
    }
    case ValueType::unix_time: {
      UnixTime value;
      if (!reader.i64(value.seconds)) return false;
      out = value;
      return true;
    }
    case ValueType::iso8601: {
      Iso8601 value;
      if (!reader.text(value.text)) return false;
      out = std::move(value);
      return true;
    }
    case ValueType::boolean: {
      std::uint64_t value = 0;
      if (!reader.u64(value)) return false;
      out = value != 0;
      return true;
    }
  }
  return reader.fail(DecodeError::unknown_value_type);
}

bool read_row(Reader& reader, std::size_t columns, Row& row) {
  const std::size_t code_bytes = (columns + 1) / 2;
  const std::size_t header_bytes = padded_to_word(code_bytes);
  if (reader.remaining() < header_bytes) return reader.fail(DecodeError::truncated);
  std::vector<std::uint8_t> codes(columns);
  for (std::size_t index = 0; index < code_bytes; ++index) {
    std::uint8_t slot = 0;
    reader.u8(slot);
    codes[2 * index] = slot & 0x0f;
    if (2 * index + 1 < columns) {
      codes[2 * index + 1] = slot >> 4;
    } else if ((slot >> 4) != 0) {
      return reader.fail(DecodeError::bad_padding);  // the unused high nibble of an odd count
    }
  }
  if (!reader.zero_bytes(header_bytes - code_bytes)) return false;
  for (std::size_t index = 0; index < columns; ++index) {
    if (!valid_value_type(codes[index])) return reader.fail(DecodeError::unknown_value_type);
  }
  row.resize(columns);
  for (std::size_t index = 0; index < columns; ++index) {
    if (!read_value(reader, codes[index], row[index])) return false;
  }
  return true;
}

bool read_rows(Reader& reader, Rows& rows) {
  const std::size_t at = reader.offset();
  std::uint64_t columns = 0;
  if (!reader.count(columns, max_columns, min_text_bytes, DecodeError::too_many_columns)) return false;
  if (columns == 0) return reader.fail_at(DecodeError::no_columns, at);
  rows.columns.resize(static_cast<std::size_t>(columns));
  for (std::string& name : rows.columns) {
    if (!reader.text(name)) return false;
  }
  while (true) {
    std::uint64_t word = 0;
    if (!reader.peek_u64(word)) return reader.fail(DecodeError::truncated);  // no end marker
    if (word == rows_done_marker || word == rows_part_marker) {
      reader.u64(word);
      rows.more = word == rows_part_marker;
      return true;
    }
    Row row;
    if (!read_row(reader, rows.columns.size(), row)) return false;
    rows.rows.push_back(std::move(row));
  }
}

bool read_role(Reader& reader, Role& role) {
  const std::size_t at = reader.offset();
  std::uint64_t code = 0;
  if (!reader.u64(code)) return false;
  if (code > static_cast<std::uint64_t>(Role::spare)) return reader.fail_at(DecodeError::unknown_role, at);
  role = static_cast<Role>(code);
  return true;
}

bool read_body(Reader& reader, std::uint8_t type, Response& response) {
  switch (static_cast<ResponseType>(type)) {
    case ResponseType::failure: {
      Failure failure;
      if (!reader.u64(failure.code) || !reader.text(failure.message)) return false;
      response = std::move(failure);
      return true;
    }
    case ResponseType::node: {
      Node node;
      if (!reader.u64(node.id) || !reader.text(node.address)) return false;
      response = std::move(node);
      return true;
    }
    case ResponseType::welcome: {
      Welcome welcome;
      if (!reader.u64(welcome.heartbeat_timeout)) return false;
      response = welcome;
      return true;
    }
    case ResponseType::nodes: {
      Nodes nodes;
      std::uint64_t count = 0;
      if (!reader.count(count, max_nodes, min_node_bytes, DecodeError::too_many_nodes)) return false;
      nodes.nodes.resize(static_cast<std::size_t>(count));
      for (NodeInfo& node : nodes.nodes) {
        if (!reader.u64(node.id) || !reader.text(node.address) || !read_role(reader, node.role)) return false;
      }
      response = std::move(nodes);
      return true;
    }
    case ResponseType::db: {
      Db db;
      std::uint32_t unused = 0;
      if (!reader.u32(db.id) || !reader.u32(unused)) return false;
      response = db;
      return true;
    }
    case ResponseType::stmt: {
      Stmt stmt;
      if (!reader.u32(stmt.db_id) || !reader.u32(stmt.id) || !reader.u64(stmt.parameter_count)) return false;
      response = stmt;
      return true;
    }
    case ResponseType::result: {
      Result result;
      if (!reader.u64(result.last_insert_id) || !reader.u64(result.rows_affected)) return false;
      response = result;
      return true;
    }
    case ResponseType::rows: {
      Rows rows;
      if (!read_rows(reader, rows)) return false;
      response = std::move(rows);
      return true;
    }
    case ResponseType::empty: {
      std::uint64_t unused = 0;
      if (!reader.u64(unused)) return false;
      response = Empty{};
      return true;
    }
    case ResponseType::files: {
      Files files;
      std::uint64_t count = 0;
      if (!reader.count(count, max_files, min_file_bytes, DecodeError::too_many_files)) return false;
      files.files.resize(static_cast<std::size_t>(count));
      for (File& file : files.files) {
        std::uint64_t size = 0;
        if (!reader.text(file.name) || !reader.u64(size) || !reader.raw_padded(size, file.content)) return false;
      }
      response = std::move(files);
      return true;
    }
    case ResponseType::metadata: {
      Metadata metadata;
      if (!reader.u64(metadata.failure_domain) || !reader.u64(metadata.weight)) return false;
      response = metadata;
      return true;
    }
  }
  return reader.fail(DecodeError::unknown_type);
}

}  // namespace

ValueType value_type(const Value& value) {
  static constexpr ValueType by_index[] = {ValueType::integer, ValueType::floating, ValueType::text,
                                           ValueType::blob,    ValueType::null,     ValueType::boolean,
                                           ValueType::unix_time, ValueType::iso8601};
  static_assert(std::size(by_index) == std::variant_size_v<Value>);
  return by_index[value.index()];
}

RequestType request_type(const Request& request) {
  static constexpr RequestType by_index[] = {
      RequestType::leader,    RequestType::client,   RequestType::open,     RequestType::prepare,
      RequestType::exec,      RequestType::query,    RequestType::finalize, RequestType::exec_sql,
      RequestType::query_sql, RequestType::interrupt, RequestType::add,     RequestType::assign,
      RequestType::remove,    RequestType::dump,     RequestType::cluster,  RequestType::transfer,
      RequestType::describe,  RequestType::weight};
  static_assert(std::size(by_index) == std::variant_size_v<Request>);
  return by_index[request.index()];
}

ResponseType response_type(const Response& response) {
  static constexpr ResponseType by_index[] = {
      ResponseType::failure, ResponseType::node,   ResponseType::welcome, ResponseType::nodes,
      ResponseType::db,      ResponseType::stmt,   ResponseType::result,  ResponseType::rows,
      ResponseType::empty,   ResponseType::files,  ResponseType::metadata};
  static_assert(std::size(by_index) == std::variant_size_v<Response>);
  return by_index[response.index()];
}

std::array<std::uint8_t, 8> encode_handshake() {
  std::array<std::uint8_t, 8> bytes{};
  for (std::size_t index = 0; index < bytes.size(); ++index) {
    bytes[index] = static_cast<std::uint8_t>(protocol_version >> (8 * index));
  }
  return bytes;
}

EncodeResult encode_request(const Request& request) {
  Writer writer;
  std::visit(
      [&](const auto& item) {
        using T = std::decay_t<decltype(item)>;
        if constexpr (std::is_same_v<T, Leader>) {
          writer.u64(0);
        } else if constexpr (std::is_same_v<T, Client>) {
          writer.u64(item.id);
        } else if constexpr (std::is_same_v<T, Open>) {
          writer.text(item.name);
          writer.u64(item.flags);
          writer.text(item.vfs);
        } else if constexpr (std::is_same_v<T, Prepare>) {
          writer.u64(item.db_id);
          writer.text(item.sql);
        } else if constexpr (std::is_same_v<T, Exec> || std::is_same_v<T, Query>) {
          writer.u32(item.db_id);
          writer.u32(item.statement_id);
          write_parameters(writer, item.parameters);
        } else if constexpr (std::is_same_v<T, Finalize>) {
          writer.u32(item.db_id);
          writer.u32(item.statement_id);
        } else if constexpr (std::is_same_v<T, ExecSql> || std::is_same_v<T, QuerySql>) {
          writer.u64(item.db_id);
          writer.text(item.sql);
          write_parameters(writer, item.parameters);
        } else if constexpr (std::is_same_v<T, Interrupt>) {
          writer.u64(item.db_id);
        } else if constexpr (std::is_same_v<T, Add>) {
          writer.u64(item.node_id);
          writer.text(item.address);
        } else if constexpr (std::is_same_v<T, Assign>) {
          writer.u64(item.node_id);
          writer.u64(static_cast<std::uint64_t>(item.role));
        } else if constexpr (std::is_same_v<T, Remove> || std::is_same_v<T, Transfer>) {
          writer.u64(item.node_id);
        } else if constexpr (std::is_same_v<T, Dump>) {
          writer.text(item.name);
        } else if constexpr (std::is_same_v<T, Cluster>) {
          writer.u64(cluster_format_with_roles);
        } else if constexpr (std::is_same_v<T, Describe>) {
          writer.u64(describe_format);
        } else {
          static_assert(std::is_same_v<T, Weight>);
          writer.u64(item.weight);
        }
      },
      request);
  return writer.finish(static_cast<std::uint8_t>(request_type(request)));
}

EncodeResult encode_response(const Response& response) {
  Writer writer;
  std::visit(
      [&](const auto& item) {
        using T = std::decay_t<decltype(item)>;
        if constexpr (std::is_same_v<T, Failure>) {
          writer.u64(item.code);
          writer.text(item.message);
        } else if constexpr (std::is_same_v<T, Node>) {
          writer.u64(item.id);
          writer.text(item.address);
        } else if constexpr (std::is_same_v<T, Welcome>) {
          writer.u64(item.heartbeat_timeout);
        } else if constexpr (std::is_same_v<T, Nodes>) {
          if (item.nodes.size() > max_nodes) return writer.fail(EncodeError::too_many_nodes);
          writer.u64(item.nodes.size());
          for (const NodeInfo& node : item.nodes) {
            writer.u64(node.id);
            writer.text(node.address);
            writer.u64(static_cast<std::uint64_t>(node.role));
          }
        } else if constexpr (std::is_same_v<T, Db>) {
          writer.u32(item.id);
          writer.u32(0);
        } else if constexpr (std::is_same_v<T, Stmt>) {
          writer.u32(item.db_id);
          writer.u32(item.id);
          writer.u64(item.parameter_count);
        } else if constexpr (std::is_same_v<T, Result>) {
          writer.u64(item.last_insert_id);
          writer.u64(item.rows_affected);
        } else if constexpr (std::is_same_v<T, Rows>) {
          if (item.columns.empty()) return writer.fail(EncodeError::no_columns);
          if (item.columns.size() > max_columns) return writer.fail(EncodeError::too_many_columns);
          writer.u64(item.columns.size());
          for (const std::string& name : item.columns) writer.text(name);
          for (const Row& row : item.rows) {
            if (row.size() != item.columns.size()) return writer.fail(EncodeError::row_width_mismatch);
            write_row(writer, row);
            if (writer.failed() || writer.body().size() > max_body_bytes) return;  // stop growing
          }
          writer.u64(item.more ? rows_part_marker : rows_done_marker);
        } else if constexpr (std::is_same_v<T, Empty>) {
          writer.u64(0);
        } else if constexpr (std::is_same_v<T, Files>) {
          if (item.files.size() > max_files) return writer.fail(EncodeError::too_many_files);
          writer.u64(item.files.size());
          for (const File& file : item.files) {
            writer.text(file.name);
            writer.u64(file.content.size());
            writer.raw_padded(file.content);
          }
        } else {
          static_assert(std::is_same_v<T, Metadata>);
          writer.u64(item.failure_domain);
          writer.u64(item.weight);
        }
      },
      response);
  return writer.finish(static_cast<std::uint8_t>(response_type(response)));
}

HeaderResult decode_header(std::span<const std::uint8_t> bytes) {
  HeaderResult result;
  if (bytes.size() < header_size) {
    result.error = DecodeError::truncated;
    return result;
  }
  result.header.body_words = static_cast<std::uint32_t>(bytes[0]) | static_cast<std::uint32_t>(bytes[1]) << 8 |
                             static_cast<std::uint32_t>(bytes[2]) << 16 | static_cast<std::uint32_t>(bytes[3]) << 24;
  result.header.type = bytes[4];
  result.header.schema = bytes[5];
  result.header.extra = static_cast<std::uint16_t>(bytes[6] | bytes[7] << 8);
  if (result.header.body_words > max_body_words) result.error = DecodeError::body_too_large;
  return result;
}

DecodeResult decode_response(std::span<const std::uint8_t> message) {
  DecodeResult result;
  const HeaderResult header = decode_header(message);
  if (!header.ok()) {
    result.error = header.error;
    result.offset = header.error == DecodeError::truncated ? message.size() : 0;
    return result;
  }
  const std::size_t expected = header_size + header.header.body_bytes();
  if (message.size() < expected) {
    result.error = DecodeError::truncated;
    result.offset = message.size();
    return result;
  }
  if (message.size() > expected) {
    result.error = DecodeError::length_mismatch;
    result.offset = expected;
    return result;
  }
  if (header.header.schema != 0) {
    result.error = DecodeError::unsupported_schema;
    result.offset = 5;
    return result;
  }
  if (header.header.type > static_cast<std::uint8_t>(ResponseType::metadata)) {
    result.error = DecodeError::unknown_type;
    result.offset = 4;
    return result;
  }
  Reader reader(message, header_size);
  if (read_body(reader, header.header.type, result.response) && reader.remaining() != 0) {
    reader.fail(DecodeError::trailing_bytes);
  }
  if (reader.failed()) {
    result.response = Response{};
    result.error = reader.error();
    result.offset = reader.error_offset();
  }
  return result;
}

std::string describe(const DecodeResult& result) {
  if (result.ok()) return "ok";
  return std::string(to_string(result.error)) + " at byte " + std::to_string(result.offset);
}

RowSetError append_rows(RowSet& set, Rows&& message) {
  if (set.complete) return RowSetError::already_complete;
  const bool first = set.columns.empty();  // every ROWS message has at least one column
  if (!first && message.columns != set.columns) return RowSetError::column_mismatch;
  if (first) set.columns = std::move(message.columns);
  set.rows.insert(set.rows.end(), std::make_move_iterator(message.rows.begin()),
                  std::make_move_iterator(message.rows.end()));
  set.complete = !message.more;
  return RowSetError::none;
}

std::string_view to_string(EncodeError error) {
  switch (error) {
    case EncodeError::none: return "none";
    case EncodeError::text_contains_nul: return "text contains a NUL byte";
    case EncodeError::too_many_parameters: return "more than 255 parameters";
    case EncodeError::body_too_large: return "body larger than the message limit";
    case EncodeError::no_columns: return "rows without columns";
    case EncodeError::too_many_columns: return "too many columns";
    case EncodeError::row_width_mismatch: return "row width differs from the column count";
    case EncodeError::too_many_nodes: return "too many nodes";
    case EncodeError::too_many_files: return "too many files";
  }
  return "unknown encode error";
}

std::string_view to_string(DecodeError error) {
  switch (error) {
    case DecodeError::none: return "none";
    case DecodeError::truncated: return "truncated";
    case DecodeError::length_mismatch: return "bytes after the announced body";
    case DecodeError::body_too_large: return "body larger than the message limit";
    case DecodeError::unsupported_schema: return "unsupported schema version";
    case DecodeError::unknown_type: return "unknown response type";
    case DecodeError::unterminated_text: return "text without a NUL terminator";
    case DecodeError::bad_padding: return "non-zero padding";
    case DecodeError::unknown_value_type: return "unknown value type";
    case DecodeError::unknown_role: return "unknown node role";
    case DecodeError::no_columns: return "rows without columns";
    case DecodeError::too_many_columns: return "too many columns";
    case DecodeError::too_many_nodes: return "too many nodes";
    case DecodeError::too_many_files: return "too many files";
    case DecodeError::trailing_bytes: return "bytes after the last field";
  }
  return "unknown decode error";
}

std::string_view to_string(RowSetError error) {
  switch (error) {
    case RowSetError::none: return "none";
    case RowSetError::already_complete: return "rows after the last message";
    case RowSetError::column_mismatch: return "columns differ between messages";
  }
  return "unknown row set error";
}

}  // namespace stacknode::db::wire
