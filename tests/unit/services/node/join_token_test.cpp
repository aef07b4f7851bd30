// Unit tests of stacknoded's join tokens (services/node/core/include/stacknode/node/join_token.hpp):
// the text form against bytes built here by hand (with OpenSSL's own base64 and SHA-256, not the
// code under test), round trips, and every refusal with its kind and message: each changed
// character, each cut, other versions, bad addresses, bytes after the check.
#include <CppUTest/TestHarness.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "stacknode/node/join_token.hpp"

using namespace stacknode::node;

namespace {

using Bytes = std::vector<std::uint8_t>;

// base64url without padding, by way of OpenSSL's standard base64.
std::string reference_base64url(const Bytes& bytes) {
  std::string text(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()), bytes.data(), static_cast<int>(bytes.size()));
  text.resize(static_cast<std::size_t>(length));
  while (!text.empty() && text.back() == '=') text.pop_back();
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  return text;
}

Bytes reference_sha256(const Bytes& bytes) {
  Bytes digest(32);
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

// A token's text from its payload: the check appended, encoded, prefixed.
std::string craft(Bytes payload) {
  const Bytes digest = reference_sha256(payload);
  payload.insert(payload.end(), digest.begin(), digest.begin() + 4);
  return "snj1." + reference_base64url(payload);
}

// version 1, cluster id 0x11.., pin 0x22.., secret 0x33.., expiry 0x0102030405060708, then
// `addresses` as count + (length, bytes).
Bytes payload_with(std::uint8_t version, const std::vector<std::string>& addresses) {
  Bytes bytes{version};
  bytes.insert(bytes.end(), 16, 0x11);
  bytes.insert(bytes.end(), 32, 0x22);
  bytes.insert(bytes.end(), 32, 0x33);
  for (std::uint8_t byte = 1; byte <= 8; ++byte) bytes.push_back(byte);
  bytes.push_back(static_cast<std::uint8_t>(addresses.size()));
  for (const std::string& address : addresses) {
    bytes.push_back(static_cast<std::uint8_t>(address.size()));
    bytes.insert(bytes.end(), address.begin(), address.end());
  }
  return bytes;
}

JoinToken sample_token() {
  JoinToken token;
  token.cluster_id.fill(0x11);
  token.ca_pin.fill(0x22);
  token.secret.fill(0x33);
  token.expires_at = 0x0102030405060708;
  token.addresses = {"198.18.1.11:8443", "[2001:db8::1]:8443", "198.18.1.13:8443"};
  return token;
}

void check_refused(std::string_view text, TokenError error, const std::string& fragment) {
  const TokenParse parse = parse_join_token(text);
  CHECK_FALSE(parse.ok());
  STRCMP_EQUAL(std::string(to_string(error)).c_str(), std::string(to_string(parse.error)).c_str());
  if (parse.message.find(fragment) == std::string::npos) {
    FAIL(("message \"" + parse.message + "\" lacks \"" + fragment + "\"").c_str());
  }
}

}  // namespace

TEST_GROUP(JoinToken){};

TEST(JoinToken, TextIsThePrefixAndTheBase64urlOfTheDocumentedBytes) {
  const std::optional<std::string> text = encode_join_token(sample_token());
  CHECK(text.has_value());
  STRCMP_EQUAL(craft(payload_with(1, sample_token().addresses)).c_str(), text->c_str());
}

TEST(JoinToken, ParsesBackToTheSameTokenWithSurroundingWhitespace) {
  const std::string text = *encode_join_token(sample_token());
  const TokenParse parse = parse_join_token("  " + text + "\r\n");
  if (!parse.ok()) FAIL(parse.message.c_str());
  CHECK(*parse.token == sample_token());
  CHECK(text.size() <= max_join_token_chars);
}

TEST(JoinToken, EveryChangedCharacterIsRefused) {
  const std::string text = *encode_join_token(sample_token());
  for (std::size_t index = join_token_prefix.size(); index < text.size(); ++index) {
    for (const char replacement : {'A', 'q', '7', '-', '_'}) {
      if (text[index] == replacement) continue;
      std::string changed = text;
      changed[index] = replacement;
      const TokenParse parse = parse_join_token(changed);
      if (parse.ok()) FAIL(("accepted with position " + std::to_string(index) + " changed").c_str());
      CHECK(parse.error == TokenError::damaged);
    }
  }
}

TEST(JoinToken, EveryCutIsRefused) {
  const std::string text = *encode_join_token(sample_token());
  for (std::size_t length = 0; length < text.size(); ++length) {
    const TokenParse parse = parse_join_token(std::string_view(text).substr(0, length));
    if (parse.ok()) FAIL(("accepted cut to " + std::to_string(length) + " characters").c_str());
  }
  check_refused(text.substr(0, text.size() - 1), TokenError::damaged, "copy it again");
}

TEST(JoinToken, TextThatIsNoTokenGetsAMessageSayingWhatToDo) {
  check_refused("", TokenError::not_a_token, "empty");
  check_refused("hello", TokenError::not_a_token, "stackctl cluster token create");
  check_refused("snj2.AAAA", TokenError::not_a_token, "another version");
  check_refused("snj1.AAA*AAAA", TokenError::bad_character, "position 9");
  check_refused("snj1.A", TokenError::damaged, "copy it again");
  check_refused("snj1.AAAA", TokenError::truncated, "cut short");
  check_refused("snj1." + std::string(max_join_token_chars, 'A'), TokenError::too_long, "longer than any");
}

TEST(JoinToken, WellCheckedBytesWithWrongFieldsAreRefusedByField) {
  check_refused(craft(payload_with(2, {"198.18.1.11:8443"})), TokenError::bad_version, "version 2");
  check_refused(craft(payload_with(1, {})), TokenError::bad_addresses, "0 member addresses");
  check_refused(craft(payload_with(1, {"198.18.1.11"})), TokenError::bad_addresses, "address 1 is not IP:port");
  Bytes cut = payload_with(1, {"198.18.1.11:8443"});
  cut.resize(cut.size() - 3);  // inside the address
  check_refused(craft(cut), TokenError::truncated, "member addresses");
  Bytes longer = payload_with(1, {"198.18.1.11:8443"});
  longer.push_back(0);
  check_refused(craft(longer), TokenError::trailing_bytes, "1 bytes after");
}

TEST(JoinToken, MemberAddressesAreIpAndPortOnly) {
  for (const char* good : {"198.18.1.11:8443", "[2001:db8::1]:8443", "[::1]:1", "0.0.0.0:65535"}) {
    if (!valid_member_address(good)) FAIL(good);
  }
  for (const char* bad : {"", "198.18.1.11", "node1:8443", "198.18.1.11:0", "198.18.1.11:65536", "198.18.1.11:080",
                          "198.18.1.11:84a3", "[2001:db8::1]8443", "2001:db8::1:8443", "[198.18.1.11]:8443",
                          "198.18.1.256:8443", "[2001:db8::1]:"}) {
    if (valid_member_address(bad)) FAIL(bad);
  }
  const std::optional<MemberAddress> v6 = parse_member_address("[2001:db8::1]:8443");
  CHECK(v6.has_value());
  STRCMP_EQUAL("2001:db8::1", v6->host.c_str());
  CHECK_EQUAL(8443, v6->port);
  CHECK(v6->ipv6);
  const std::optional<MemberAddress> v4 = parse_member_address("198.18.1.11:7000");
  STRCMP_EQUAL("198.18.1.11", v4->host.c_str());
  CHECK_EQUAL(7000, v4->port);
  CHECK_FALSE(v4->ipv6);
  JoinToken token = sample_token();
  token.addresses.push_back("rack-1:8443");
  CHECK_FALSE(encode_join_token(token).has_value());
  token.addresses.clear();
  CHECK_FALSE(encode_join_token(token).has_value());
  token.addresses.assign(max_token_addresses + 1, "198.18.1.11:8443");
  CHECK_FALSE(encode_join_token(token).has_value());
  token.addresses.assign(max_token_addresses, "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535");
  const std::optional<std::string> longest = encode_join_token(token);
  CHECK(longest.has_value());
  CHECK(longest->size() <= max_join_token_chars);
  CHECK(parse_join_token(*longest).ok());
}

TEST(JoinToken, GeneratedSecretsDifferAndOnlyTheirHashIsKept) {
  ClusterId cluster{};
  CaPin pin{};
  const std::optional<JoinToken> first = generate_join_token(cluster, pin, 1000, {"198.18.1.11:8443"});
  const std::optional<JoinToken> second = generate_join_token(cluster, pin, 1000, {"198.18.1.11:8443"});
  CHECK(first.has_value() && second.has_value());
  CHECK(first->secret != second->secret);
  const Bytes secret(first->secret.begin(), first->secret.end());
  STRCMP_EQUAL(to_hex(reference_sha256(secret)).c_str(), secret_hash(first->secret).c_str());
  STRCMP_EQUAL(secret_hash(first->secret).substr(0, 12).c_str(), token_id(first->secret).c_str());
  CHECK(secret_hash(first->secret) != secret_hash(second->secret));
  CHECK_FALSE(generate_join_token(cluster, pin, 1000, {"nowhere"}).has_value());
  CHECK_FALSE(first->expired(999));
  CHECK(first->expired(1000));
}
