// RESP2 for the cache tier (see resp.hpp): command encoding, the reply parser, and the blocking
// client that drives the node's redis-server over TCP with a deadline on every call.
//
// Invariants of parse_reply (checked by fuzz_resp):
//  1. Nothing is read outside `bytes`; every length is compared with its limit before it is used.
//  2. A verdict only ever depends on bytes that are present, so it is monotone: if a prefix of the
//     input is invalid, every longer input is invalid; if a prefix is complete, every longer input
//     is complete with the same value and `consumed`. Hence an incomplete input has only
//     incomplete prefixes. Partial numbers and partial bulk terminators are checked as far as
//     they go (Parser::read_number, Parser::read_bulk) so that garbage is refused at once.
//  3. A reply never takes more than max_reply_bytes bytes: the parser only looks at that many, and
//     an input longer than that which is still incomplete there is invalid (parse_reply).
#include "stacknode/node/resp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

namespace stacknode::node::resp {

namespace {

// The longest signed 64-bit decimal, "-9223372036854775808": integer, bulk length and array count
// lines longer than this cannot be valid, so they are refused without waiting for their CRLF.
constexpr std::size_t max_number_bytes = 20;
// One recv() into the client's buffer; replies larger than this arrive in several reads.
constexpr std::size_t read_chunk_bytes = 64 * 1024;
// The wire's line terminator, its length used wherever a line or bulk payload ends.
constexpr std::string_view crlf = "\r\n";

enum class Step : std::uint8_t { ok, incomplete, invalid };

std::string hex_byte(char byte) {
  static constexpr char digits[] = "0123456789abcdef";
  const auto value = static_cast<unsigned char>(byte);
  return std::string("0x") + digits[value >> 4] + digits[value & 0x0f];
}

// One reply taken from the front of `bytes_`, recursively for arrays (depth <= max_nesting + 1).
class Parser {
 public:
  explicit Parser(std::string_view bytes) : bytes_(bytes) {}

  Step read_value(Value& out, std::size_t depth) {
    if (pos_ >= bytes_.size()) return Step::incomplete;
    const std::size_t type_at = pos_;
    const char type = bytes_[pos_++];
    switch (type) {
      case '+':
        out.kind = Value::Kind::simple;
        return read_text_line(out.text, "simple string");
      case '-':
        out.kind = Value::Kind::error;
        return read_text_line(out.text, "error");
      case ':':
        out.kind = Value::Kind::integer;
        return read_number(out.integer, "integer");
      case '$':
        return read_bulk(out);
      case '*':
        return read_array(out, depth + 1);
      default:
        return fail("unknown reply type byte " + hex_byte(type) + " at byte " + std::to_string(type_at));
    }
  }

  std::size_t position() const { return pos_; }
  std::string& error() { return error_; }

 private:
  Step fail(std::string message) {
    error_ = std::move(message);
    return Step::invalid;
  }

  // The line starting at pos_ up to its CRLF (excluded) into `line`, at most `limit` bytes long;
  // pos_ moves past the CRLF. A bare CR or LF is invalid: RESP lines never contain either.
  Step read_line(std::size_t limit, std::string_view what, std::string_view& line) {
    const std::size_t start = pos_;
    const std::string_view rest = bytes_.substr(start);
    const std::size_t window = std::min(rest.size(), limit + 1);
    for (std::size_t index = 0; index < window; ++index) {
      const char byte = rest[index];
      if (byte == '\n') return fail("LF without CR in " + std::string(what) + " at byte " + std::to_string(start + index));
      if (byte != '\r') continue;
      if (index + 1 == rest.size()) return Step::incomplete;
      if (rest[index + 1] != '\n') {
        return fail("CR without LF in " + std::string(what) + " at byte " + std::to_string(start + index));
      }
      line = rest.substr(0, index);
      pos_ = start + index + crlf.size();
      return Step::ok;
    }
    if (rest.size() > limit) {
      return fail(std::string(what) + " line at byte " + std::to_string(start) + " longer than " +
                  std::to_string(limit) + " bytes");
    }
    return Step::incomplete;
  }

  Step read_text_line(std::string& text, std::string_view what) {
    std::string_view line;
    const Step step = read_line(max_line_bytes, what, line);
    if (step == Step::ok) text.assign(line);
    return step;
  }

  // A signed 64-bit decimal line: optional '-', then one or more digits, no overflow. When the
  // line is cut short, the digits so far are still checked (invariant 2).
  Step read_number(std::int64_t& value, std::string_view what) {
    const std::size_t start = pos_;
    std::string_view line;
    const Step step = read_line(max_number_bytes, what, line);
    if (step == Step::invalid) return step;
    const bool whole = step == Step::ok;
    if (!whole) {
      line = bytes_.substr(start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    }
    const std::string where = std::string(what) + " at byte " + std::to_string(start);
    const bool negative = !line.empty() && line.front() == '-';
    const std::string_view digits = negative ? line.substr(1) : line;
    if (whole && digits.empty()) return fail(where + " has no digits");
    // Accumulated as a negative number so that INT64_MIN fits.
    std::int64_t accumulated = 0;
    for (const char byte : digits) {
      if (byte < '0' || byte > '9') return fail(where + " is not a decimal number (byte " + hex_byte(byte) + ")");
      const int digit = byte - '0';
      if (accumulated < (std::numeric_limits<std::int64_t>::min() + digit) / 10) {
        return fail(where + " overflows a signed 64-bit integer");
      }
      accumulated = accumulated * 10 - digit;
    }
    if (!negative && accumulated == std::numeric_limits<std::int64_t>::min()) {
      return fail(where + " overflows a signed 64-bit integer");
    }
    if (!whole) return Step::incomplete;
    value = negative ? accumulated : -accumulated;
    return Step::ok;
  }

  Step read_bulk(Value& out) {
    const std::size_t length_at = pos_;
    std::int64_t length = 0;
    if (const Step step = read_number(length, "bulk length"); step != Step::ok) return step;
    if (length == -1) {
      out.kind = Value::Kind::null;
      return Step::ok;
    }
    const std::string where = "bulk length " + std::to_string(length) + " at byte " + std::to_string(length_at);
    if (length < 0) return fail(where + " is negative");
    if (static_cast<std::uint64_t>(length) > max_reply_bytes) {
      return fail(where + " over the limit of " + std::to_string(max_reply_bytes) + " bytes");
    }
    const auto size = static_cast<std::size_t>(length);
    if (pos_ + size + crlf.size() > max_reply_bytes) {
      return fail("reply longer than " + std::to_string(max_reply_bytes) + " bytes");
    }
    const std::string_view rest = bytes_.substr(pos_);
    // The terminator is checked as far as it has arrived (invariant 2).
    for (std::size_t index = 0; index < crlf.size() && size + index < rest.size(); ++index) {
      if (rest[size + index] != crlf[index]) {
        return fail("bulk payload at byte " + std::to_string(pos_) + " not followed by CRLF");
      }
    }
    if (rest.size() < size + crlf.size()) return Step::incomplete;
    out.kind = Value::Kind::bulk;
    out.text.assign(rest.substr(0, size));
    pos_ += size + crlf.size();
    return Step::ok;
  }

  Step read_array(Value& out, std::size_t depth) {
    const std::size_t count_at = pos_;
    std::int64_t count = 0;
    if (const Step step = read_number(count, "array count"); step != Step::ok) return step;
    if (count == -1) {
      out.kind = Value::Kind::null;
      return Step::ok;
    }
    const std::string where = "array count " + std::to_string(count) + " at byte " + std::to_string(count_at);
    if (count < 0) return fail(where + " is negative");
    if (static_cast<std::uint64_t>(count) > max_array_items) {
      return fail(where + " over the limit of " + std::to_string(max_array_items) + " items");
    }
    if (depth > max_nesting) return fail("arrays nested deeper than " + std::to_string(max_nesting));
    out.kind = Value::Kind::array;
    // Grown item by item, never reserved from `count`: a count is only a claim until items arrive.
    for (std::int64_t index = 0; index < count; ++index) {
      Value item;
      if (const Step step = read_value(item, depth); step != Step::ok) return step;
      out.items.push_back(std::move(item));
    }
    return Step::ok;
  }

  std::string_view bytes_;
  std::size_t pos_ = 0;
  std::string error_;
};

std::string errno_text(int number) { return std::strerror(number); }

// Milliseconds left until `deadline` for poll(), rounded up, 0 once it has passed.
int poll_timeout(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), std::numeric_limits<int>::max()));
}

// Waits for `events` on `fd` until `deadline`: 1 ready, 0 deadline passed, -1 error (errno set).
int wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    pollfd waiting{fd, events, 0};
    const int ready = ::poll(&waiting, 1, poll_timeout(deadline));
    if (ready < 0 && errno == EINTR) continue;
    return ready;
  }
}

}  // namespace

std::string encode_command(std::span<const std::string> words) {
  std::string out = "*" + std::to_string(words.size()) + "\r\n";
  for (const std::string& word : words) {
    out += "$" + std::to_string(word.size()) + "\r\n";
    out += word;
    out += crlf;
  }
  return out;
}

Parsed parse_reply(std::string_view bytes) {
  Parser parser(bytes.substr(0, max_reply_bytes));
  Parsed parsed;
  switch (parser.read_value(parsed.value, 0)) {
    case Step::ok:
      parsed.state = Parsed::State::complete;
      parsed.consumed = parser.position();
      break;
    case Step::invalid:
      parsed.state = Parsed::State::invalid;
      parsed.error = std::move(parser.error());
      parsed.value = Value{};
      break;
    case Step::incomplete:
      parsed.value = Value{};
      if (bytes.size() > max_reply_bytes) {
        parsed.state = Parsed::State::invalid;
        parsed.error = "reply longer than " + std::to_string(max_reply_bytes) + " bytes";
      } else {
        parsed.state = Parsed::State::incomplete;
      }
      break;
  }
  return parsed;
}

Client::~Client() { close(); }

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

std::string Client::connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout) {
  close();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string target = "connect to " + host + ":" + std::to_string(port);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) return target + ": not an IPv4 address";
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return target + ": socket: " + errno_text(errno);
  const auto fail = [&](const std::string& why) {
    ::close(fd);
    return target + ": " + why;
  };
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    if (errno != EINPROGRESS) return fail(errno_text(errno));
    const int ready = wait_for(fd, POLLOUT, deadline);
    if (ready < 0) return fail("poll: " + errno_text(errno));
    if (ready == 0) return fail("timeout after " + std::to_string(timeout.count()) + " ms");
    int error = 0;
    socklen_t error_size = sizeof error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_size) != 0) return fail(errno_text(errno));
    if (error != 0) return fail(errno_text(error));
  }
  const int on = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0) {
    return fail("TCP_NODELAY: " + errno_text(errno));
  }
  fd_ = fd;
  return {};
}

std::variant<Value, std::string> Client::call(std::span<const std::string> words, std::chrono::milliseconds timeout) {
  if (fd_ < 0) return std::string("not connected");
  if (words.empty()) return std::string("empty command");  // redis-server ignores "*0", never replies
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string command_name = words.front().substr(0, max_line_bytes);
  const auto fail = [&](const std::string& why) -> std::variant<Value, std::string> {
    close();
    return command_name + ": " + why;
  };
  const std::string timeout_text = "timeout: no reply within " + std::to_string(timeout.count()) + " ms";

  const std::string request = encode_command(words);
  std::string_view unsent = request;
  while (!unsent.empty()) {
    const ssize_t sent = ::send(fd_, unsent.data(), unsent.size(), MSG_NOSIGNAL);
    if (sent >= 0) {
      unsent.remove_prefix(static_cast<std::size_t>(sent));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return fail("send: " + errno_text(errno));
    const int ready = wait_for(fd_, POLLOUT, deadline);
    if (ready < 0) return fail("poll: " + errno_text(errno));
    if (ready == 0) return fail(timeout_text + " (request not sent)");
  }

  while (true) {
    Parsed parsed = parse_reply(buffer_);
    if (parsed.state == Parsed::State::complete) {
      buffer_.erase(0, parsed.consumed);
      return std::move(parsed.value);
    }
    if (parsed.state == Parsed::State::invalid) return fail("invalid reply: " + parsed.error);
    const int ready = wait_for(fd_, POLLIN, deadline);
    if (ready < 0) return fail("poll: " + errno_text(errno));
    if (ready == 0) return fail(timeout_text);
    const std::size_t old_size = buffer_.size();
    buffer_.resize(old_size + read_chunk_bytes);
    const ssize_t received = ::recv(fd_, buffer_.data() + old_size, read_chunk_bytes, 0);
    buffer_.resize(old_size + (received > 0 ? static_cast<std::size_t>(received) : 0));
    if (received == 0) return fail("server closed the connection before replying");
    if (received < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      return fail("recv: " + errno_text(errno));
    }
  }
}

}  // namespace stacknode::node::resp
