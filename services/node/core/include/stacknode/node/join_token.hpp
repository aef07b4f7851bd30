// Join tokens: the one printable string that `stackctl cluster init` and `stackctl cluster token
// create` print and `stackctl cluster join TOKEN` takes on a new box. It carries everything the
// joiner needs before it trusts anyone, and nothing that needs DNS:
//   - the cluster id (16 random bytes), so that a token for another rack is told apart;
//   - the pin of the cluster CA (SHA-256 of its DER SubjectPublicKeyInfo): the joiner checks the
//     member's TLS chain against it before it sends anything secret;
//   - a random secret of 256 bits; the cluster stores only its SHA-256 (secret_hash), so a copy
//     of the control database does not give working tokens;
//   - the expiry (Unix seconds);
//   - every current member's address ("198.18.1.11:8443" or "[2001:db8::1]:8443"), tried in turn.
//
// Text form: "snj1." followed by base64url without padding (RFC 4648 section 5) of
//   version      u8      1
//   cluster id   16 bytes
//   CA pin       32 bytes
//   secret       32 bytes
//   expires at   u64     big-endian Unix seconds
//   addresses    u8 count (1..max_token_addresses), then per address u8 length + that many
//                ASCII bytes, each "IPv4:port" or "[IPv6]:port" (checked with inet_pton)
//   check        4 bytes, the first 4 of SHA-256 over everything before it
// The check is not a signature (anyone can recompute it): it turns a character lost or changed in
// copying into "damaged" instead of a confusing refusal later. Authenticity comes from the
// secret (checked by the cluster) and the pin (checked by the joiner).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/node/hex.hpp"

namespace stacknode::node {

inline constexpr std::string_view join_token_prefix = "snj1.";
inline constexpr std::uint8_t join_token_version = 1;
inline constexpr std::size_t cluster_id_bytes = 16;
inline constexpr std::size_t ca_pin_bytes = 32;            // SHA-256
inline constexpr std::size_t token_secret_bytes = 32;      // 256 bits; the issue asks >= 128
inline constexpr std::size_t token_check_bytes = 4;
inline constexpr std::size_t max_token_addresses = 64;     // a rack's members, with room
inline constexpr std::size_t max_token_address_chars = 47;  // "[" 39-char IPv6 "]:" 5-digit port
// The longest text a valid token can have; longer input is refused before it is decoded.
inline constexpr std::size_t max_join_token_chars =
    join_token_prefix.size() +
    ((1 + cluster_id_bytes + ca_pin_bytes + token_secret_bytes + 8 + 1 +
      max_token_addresses * (1 + max_token_address_chars) + token_check_bytes) * 4 + 2) / 3;

using ClusterId = std::array<std::uint8_t, cluster_id_bytes>;
using CaPin = std::array<std::uint8_t, ca_pin_bytes>;
using TokenSecret = std::array<std::uint8_t, token_secret_bytes>;

struct JoinToken {
  ClusterId cluster_id{};
  CaPin ca_pin{};
  TokenSecret secret{};
  std::uint64_t expires_at = 0;  // Unix seconds
  std::vector<std::string> addresses;

  bool expired(std::uint64_t now_unix_seconds) const { return now_unix_seconds >= expires_at; }
  friend bool operator==(const JoinToken&, const JoinToken&) = default;
};

enum class TokenError : std::uint8_t {
  none,
  not_a_token,     // no "snj1." prefix (or another version's prefix)
  too_long,        // longer than any valid token
  bad_character,   // a character outside base64url
  damaged,         // the check does not match: a character was changed, lost or added
  truncated,       // the bytes end inside a field
  bad_version,     // a version this build does not read
  bad_addresses,   // no address, too many, or one that is not IP:port
  trailing_bytes,  // bytes after the check
};
std::string_view to_string(TokenError error);

struct TokenParse {
  std::optional<JoinToken> token;
  TokenError error = TokenError::none;
  std::string message;  // for a person: what is wrong and what to do
  bool ok() const { return token.has_value(); }
};

// The text form. An address that would not parse back (empty, too long, not IP:port) makes the
// result empty: encode only what parse_join_token would accept.
std::optional<std::string> encode_join_token(const JoinToken& token);

// Refuses anything but a whole, well-formed token; never reads past the input. Surrounding
// whitespace (a pasted newline) is ignored. Does not check the expiry (JoinToken::expired).
TokenParse parse_join_token(std::string_view text);

// A member address taken apart: the host as inet_pton reads it, without brackets.
struct MemberAddress {
  std::string host;
  std::uint16_t port = 0;
  bool ipv6 = false;
};
// "IPv4:port" or "[IPv6]:port" with a port in 1..65535 written without leading zeros; nullopt
// for anything else (names included: no DNS in a rack).
std::optional<MemberAddress> parse_member_address(std::string_view address);
inline bool valid_member_address(std::string_view address) { return parse_member_address(address).has_value(); }
// The IP addresses a node certificate names for a node reached at these two valid member
// addresses (its API and its database): the distinct hosts, the API's first.
std::vector<std::string> node_certificate_hosts(std::string_view api_address, std::string_view db_address);

// A fresh token: random secret (OpenSSL's RAND_bytes), the given facts. Empty if the random
// source fails or an address is invalid.
std::optional<JoinToken> generate_join_token(const ClusterId& cluster_id, const CaPin& ca_pin,
                                             std::uint64_t expires_at, std::vector<std::string> addresses);

// What the cluster stores for a token: SHA-256 of the secret, lowercase hex (64 characters).
std::string secret_hash(const TokenSecret& secret);
// A token's public name for listing and revoking: the first 12 hex characters of its hash.
std::string token_id(const TokenSecret& secret);

}  // namespace stacknode::node
