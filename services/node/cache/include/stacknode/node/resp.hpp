// RESP2, the Redis protocol, as far as stacknoded needs it to drive the node's redis-server
// (issue 6, "Cache tier"): commands out as arrays of bulk strings, one reply in (simple string,
// error, integer, bulk string or null, array, nested), and a small blocking client with deadlines.
// Replies come from the node's own redis-server, but are parsed as if they could be anything:
// every length is checked against the limits below before it is trusted (fuzzed: fuzz_resp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace stacknode::node::resp {

inline constexpr std::size_t max_reply_bytes = 4u << 20;  // INFO is a few KiB; a GET of a cache value more
inline constexpr std::size_t max_array_items = 4096;
inline constexpr std::size_t max_nesting = 8;
inline constexpr std::size_t max_line_bytes = 64 * 1024;  // a simple string, error or integer line

struct Value {
  enum class Kind : std::uint8_t { simple, error, integer, bulk, null, array };
  Kind kind = Kind::null;
  std::string text;          // simple, error, bulk
  std::int64_t integer = 0;  // integer
  std::vector<Value> items;  // array
};

// `words` as one command: *N\r\n then $len\r\nword\r\n per word.
std::string encode_command(std::span<const std::string> words);

struct Parsed {
  enum class State : std::uint8_t { complete, incomplete, invalid };
  State state = State::incomplete;
  Value value;               // when complete
  std::size_t consumed = 0;  // bytes of `bytes` the reply took, when complete
  std::string error;         // when invalid: what is wrong, one line
};
// One reply from the front of `bytes` (bytes after it are left alone). Incomplete when `bytes`
// ends before the reply does; invalid when it can never become a reply (bad type byte, bad
// number, a length over the limits, CR without LF, nesting deeper than max_nesting).
Parsed parse_reply(std::string_view bytes);

// A blocking connection to one redis-server over TCP (IPv4), each call with a deadline.
class Client {
 public:
  Client() = default;
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects to host:port (IPv4 literal) within `timeout`; the empty string, else why not.
  std::string connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);
  // Sends the command and reads its one reply within `timeout`; the reply (an error reply is a
  // reply), or the failure (not connected, I/O error, timeout, closed, invalid reply) as a string.
  // After a failure the connection is closed.
  std::variant<Value, std::string> call(std::span<const std::string> words, std::chrono::milliseconds timeout);
  bool connected() const { return fd_ >= 0; }
  void close();

 private:
  int fd_ = -1;
  std::string buffer_;  // bytes read past the last reply
};

}  // namespace stacknode::node::resp
