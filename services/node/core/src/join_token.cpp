// Join tokens: encoding, the bounds-checked parser, generation and the stored hash. The format
// is at the top of join_token.hpp.
#include "stacknode/node/join_token.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>

namespace stacknode::node {
namespace {

constexpr std::string_view base64url_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::uint8_t not_base64url = 0xff;
constexpr std::size_t token_id_chars = 12;
constexpr std::string_view whitespace = " \t\r\n";

using Bytes = std::vector<std::uint8_t>;

std::array<std::uint8_t, 32> sha256(std::span<const std::uint8_t> bytes) {
  std::array<std::uint8_t, 32> digest{};
  unsigned int length = 0;
  // EVP_Digest with SHA-256 fails only when OpenSSL itself is broken (no memory for the context).
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) {
    digest.fill(0);
  }
  return digest;
}

std::string encode_base64url(const Bytes& bytes) {
  std::string text;
  text.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t index = 0;
  for (; index + 3 <= bytes.size(); index += 3) {
    const std::uint32_t group = (std::uint32_t{bytes[index]} << 16) | (std::uint32_t{bytes[index + 1]} << 8) | bytes[index + 2];
    for (int shift = 18; shift >= 0; shift -= 6) text += base64url_alphabet[(group >> shift) & 0x3f];
  }
  const std::size_t left = bytes.size() - index;
  if (left > 0) {
    std::uint32_t group = std::uint32_t{bytes[index]} << 16;
    if (left == 2) group |= std::uint32_t{bytes[index + 1]} << 8;
    text += base64url_alphabet[(group >> 18) & 0x3f];
    text += base64url_alphabet[(group >> 12) & 0x3f];
    if (left == 2) text += base64url_alphabet[(group >> 6) & 0x3f];
  }
  return text;
}

std::uint8_t base64url_value(char character) {
  const std::size_t at = base64url_alphabet.find(character);
  return at == std::string_view::npos ? not_base64url : static_cast<std::uint8_t>(at);
}

// Canonical base64url only: a length of 1 mod 4 cannot be, and the unused low bits of the last
// character must be zero (so one token has exactly one spelling).
std::optional<Bytes> decode_base64url(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  Bytes bytes;
  bytes.reserve(text.size() * 3 / 4);
  std::uint32_t group = 0;
  int bits = 0;
  for (const char character : text) {
    const std::uint8_t value = base64url_value(character);
    if (value == not_base64url) return std::nullopt;
    group = (group << 6) | value;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<std::uint8_t>(group >> bits));
      group &= (1u << bits) - 1;
    }
  }
  if (group != 0) return std::nullopt;  // non-zero padding bits
  return bytes;
}

void put_u64(Bytes& bytes, std::uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) bytes.push_back(static_cast<std::uint8_t>(value >> shift));
}

// Reads fields front to back; every read checks what is left.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}
  bool take(std::span<std::uint8_t> out) {
    if (bytes_.size() - offset_ < out.size()) return false;
    std::copy_n(bytes_.begin() + static_cast<std::ptrdiff_t>(offset_), out.size(), out.begin());
    offset_ += out.size();
    return true;
  }
  bool take_u8(std::uint8_t& value) { return take(std::span(&value, 1)); }
  bool take_u64(std::uint64_t& value) {
    std::array<std::uint8_t, 8> raw{};
    if (!take(raw)) return false;
    value = 0;
    for (const std::uint8_t byte : raw) value = (value << 8) | byte;
    return true;
  }
  bool take_text(std::size_t length, std::string& text) {
    if (bytes_.size() - offset_ < length) return false;
    text.assign(reinterpret_cast<const char*>(bytes_.data()) + offset_, length);
    offset_ += length;
    return true;
  }
  std::size_t left() const { return bytes_.size() - offset_; }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t offset_ = 0;
};

TokenParse refuse(TokenError error, std::string message) {
  TokenParse parse;
  parse.error = error;
  parse.message = std::move(message);
  return parse;
}

}  // namespace

std::string_view to_string(TokenError error) {
  switch (error) {
    case TokenError::none: return "none";
    case TokenError::not_a_token: return "not_a_token";
    case TokenError::too_long: return "too_long";
    case TokenError::bad_character: return "bad_character";
    case TokenError::damaged: return "damaged";
    case TokenError::truncated: return "truncated";
    case TokenError::bad_version: return "bad_version";
    case TokenError::bad_addresses: return "bad_addresses";
    case TokenError::trailing_bytes: return "trailing_bytes";
  }
  return "unknown";
}

std::optional<MemberAddress> parse_member_address(std::string_view address) {
  if (address.empty() || address.size() > max_token_address_chars) return std::nullopt;
  std::string_view host;
  std::string_view port;
  const bool ipv6 = address.front() == '[';
  if (ipv6) {
    const std::size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':') return std::nullopt;
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const std::size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  unsigned number = 0;
  const auto [end, problem] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (port.empty() || problem != std::errc{} || end != port.data() + port.size() || number == 0 || number > 65535) {
    return std::nullopt;
  }
  if (port.front() == '0') return std::nullopt;  // one spelling per port
  MemberAddress parsed{std::string(host), static_cast<std::uint16_t>(number), ipv6};
  std::array<std::uint8_t, sizeof(in6_addr)> binary{};
  if (inet_pton(ipv6 ? AF_INET6 : AF_INET, parsed.host.c_str(), binary.data()) != 1) return std::nullopt;
  return parsed;
}

std::optional<std::string> encode_join_token(const JoinToken& token) {
  if (token.addresses.empty() || token.addresses.size() > max_token_addresses) return std::nullopt;
  if (!std::all_of(token.addresses.begin(), token.addresses.end(),
                   [](const std::string& address) { return valid_member_address(address); })) {
    return std::nullopt;
  }
  Bytes bytes;
  bytes.push_back(join_token_version);
  bytes.insert(bytes.end(), token.cluster_id.begin(), token.cluster_id.end());
  bytes.insert(bytes.end(), token.ca_pin.begin(), token.ca_pin.end());
  bytes.insert(bytes.end(), token.secret.begin(), token.secret.end());
  put_u64(bytes, token.expires_at);
  bytes.push_back(static_cast<std::uint8_t>(token.addresses.size()));
  for (const std::string& address : token.addresses) {
    bytes.push_back(static_cast<std::uint8_t>(address.size()));
    bytes.insert(bytes.end(), address.begin(), address.end());
  }
  const auto check = sha256(bytes);
  bytes.insert(bytes.end(), check.begin(), check.begin() + token_check_bytes);
  return std::string(join_token_prefix) + encode_base64url(bytes);
}

TokenParse parse_join_token(std::string_view text) {
  const std::size_t first = text.find_first_not_of(whitespace);
  if (first == std::string_view::npos) return refuse(TokenError::not_a_token, "the token is empty");
  text = text.substr(first, text.find_last_not_of(whitespace) - first + 1);
  if (text.size() > max_join_token_chars) {
    return refuse(TokenError::too_long, "this is longer than any join token (" + std::to_string(text.size()) +
                                            " characters, at most " + std::to_string(max_join_token_chars) + ")");
  }
  if (!text.starts_with(join_token_prefix)) {
    if (text.starts_with("snj")) {
      return refuse(TokenError::not_a_token,
                    "this join token is of another version than this stacknode reads (snj1.): update the box first");
    }
    return refuse(TokenError::not_a_token,
                  "this is not a join token (they start with snj1.); get one with 'stackctl cluster token create'");
  }
  const std::string_view body = text.substr(join_token_prefix.size());
  const std::optional<Bytes> decoded = decode_base64url(body);
  if (!decoded) {
    const auto bad = std::find_if(body.begin(), body.end(), [](char c) { return base64url_value(c) == not_base64url; });
    if (bad != body.end()) {
      return refuse(TokenError::bad_character,
                    "the token has a character that cannot be in one at position " +
                        std::to_string(join_token_prefix.size() + static_cast<std::size_t>(bad - body.begin()) + 1) +
                        ": copy it again, whole");
    }
    return refuse(TokenError::damaged, "the token is damaged (characters lost or added in copying): copy it again, whole");
  }
  const Bytes& bytes = *decoded;
  if (bytes.size() <= token_check_bytes) {
    return refuse(TokenError::truncated, "the token is cut short: copy it again, whole");
  }
  const std::span<const std::uint8_t> payload(bytes.data(), bytes.size() - token_check_bytes);
  const auto check = sha256(payload);
  if (!std::equal(check.begin(), check.begin() + token_check_bytes, bytes.end() - token_check_bytes)) {
    return refuse(TokenError::damaged,
                  "the token is damaged (its check does not match: a character was changed, lost or added): copy it again, whole");
  }
  Reader reader(payload);
  JoinToken token;
  std::uint8_t version = 0;
  if (!reader.take_u8(version)) return refuse(TokenError::truncated, "the token is cut short");
  if (version != join_token_version) {
    return refuse(TokenError::bad_version, "the token is of format version " + std::to_string(version) +
                                               "; this stacknode reads version " + std::to_string(join_token_version));
  }
  std::uint8_t count = 0;
  if (!reader.take(token.cluster_id) || !reader.take(token.ca_pin) || !reader.take(token.secret) ||
      !reader.take_u64(token.expires_at) || !reader.take_u8(count)) {
    return refuse(TokenError::truncated, "the token is cut short");
  }
  if (count == 0 || count > max_token_addresses) {
    return refuse(TokenError::bad_addresses, "the token lists " + std::to_string(count) + " member addresses (1 to " +
                                                 std::to_string(max_token_addresses) + " expected)");
  }
  for (std::uint8_t index = 0; index < count; ++index) {
    std::uint8_t length = 0;
    std::string address;
    if (!reader.take_u8(length) || !reader.take_text(length, address)) {
      return refuse(TokenError::truncated, "the token is cut short in its member addresses");
    }
    if (!valid_member_address(address)) {
      return refuse(TokenError::bad_addresses, "the token's member address " + std::to_string(index + 1) +
                                                   " is not IP:port");
    }
    token.addresses.push_back(std::move(address));
  }
  if (reader.left() != 0) {
    return refuse(TokenError::trailing_bytes, "the token has " + std::to_string(reader.left()) +
                                                  " bytes after its last field");
  }
  TokenParse parse;
  parse.token = std::move(token);
  return parse;
}

std::optional<JoinToken> generate_join_token(const ClusterId& cluster_id, const CaPin& ca_pin,
                                             std::uint64_t expires_at, std::vector<std::string> addresses) {
  JoinToken token;
  token.cluster_id = cluster_id;
  token.ca_pin = ca_pin;
  token.expires_at = expires_at;
  token.addresses = std::move(addresses);
  if (RAND_bytes(token.secret.data(), static_cast<int>(token.secret.size())) != 1) return std::nullopt;
  if (!encode_join_token(token)) return std::nullopt;  // the same checks as the text form
  return token;
}

std::string secret_hash(const TokenSecret& secret) { return to_hex(sha256(secret)); }

std::string token_id(const TokenSecret& secret) { return secret_hash(secret).substr(0, token_id_chars); }

std::vector<std::string> node_certificate_hosts(std::string_view api_address, std::string_view db_address) {
  std::vector<std::string> hosts = {parse_member_address(api_address)->host};
  std::string db_host = parse_member_address(db_address)->host;
  if (db_host != hosts.front()) hosts.push_back(std::move(db_host));
  return hosts;
}

}  // namespace stacknode::node
