// Unit tests of stacknoded's admin passwords and API tokens (services/node/core credentials.hpp):
// argon2id strings verify only their own password, refused passwords say why, generated
// passwords and tokens have their documented shape and differ, a token's stored hash is the
// SHA-256 of its text (computed here with OpenSSL, not libsodium).
#include <CppUTest/TestHarness.h>

#include <openssl/evp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "stacknode/node/credentials.hpp"
#include "stacknode/node/join_token.hpp"

using namespace stacknode::node;

TEST_GROUP(Credentials) {
  void setup() override { CHECK(init_credentials()); }
};

TEST(Credentials, APasswordHashVerifiesItsPasswordOnly) {
  const std::optional<std::string> stored = hash_password("correct horse battery");
  CHECK(stored.has_value());
  CHECK(stored->starts_with("$argon2id$"));
  CHECK(verify_password("correct horse battery", *stored));
  CHECK_FALSE(verify_password("correct horse batterY", *stored));
  CHECK_FALSE(verify_password("", *stored));
  CHECK_FALSE(verify_password("correct horse battery", "$argon2id$garbage"));
  CHECK_FALSE(verify_password("correct horse battery", ""));
  // Salted: the same password hashes differently each time, and both verify.
  const std::optional<std::string> again = hash_password("correct horse battery");
  CHECK(*again != *stored);
  CHECK(verify_password("correct horse battery", *again));
}

TEST(Credentials, RefusedPasswordsSayWhy) {
  CHECK(password_problem("short").find("too short") != std::string::npos);
  CHECK(password_problem(std::string(password_max_chars + 1, 'a')).find("too long") != std::string::npos);
  CHECK(password_problem("twelve chars\n").find("control character") != std::string::npos);
  CHECK(password_problem("twelve chars").empty());
  CHECK_FALSE(hash_password("short").has_value());
}

TEST(Credentials, GeneratedPasswordsAreLongUnambiguousAndDiffer) {
  const std::string first = generate_password();
  const std::string second = generate_password();
  CHECK_EQUAL(generated_password_chars, first.size());
  CHECK(first != second);
  CHECK(password_problem(first).empty());
  for (const char look_alike : {'0', 'O', '1', 'l', 'I'}) CHECK(first.find(look_alike) == std::string::npos);
}

TEST(Credentials, ApiTokensAreShownOnceAndStoredAsTheirHash) {
  const ApiToken token = generate_api_token();
  CHECK(token.text.starts_with("snt1."));
  CHECK_EQUAL(5u + 64u, token.text.size());
  std::vector<std::uint8_t> digest(32);
  unsigned int length = 0;
  EVP_Digest(token.text.data(), token.text.size(), digest.data(), &length, EVP_sha256(), nullptr);
  STRCMP_EQUAL(to_hex(digest).c_str(), token.stored_hash.c_str());
  STRCMP_EQUAL(token.stored_hash.substr(0, 12).c_str(), token.id.c_str());
  CHECK(api_token_hash(token.text) == token.stored_hash);
  CHECK(generate_api_token().text != token.text);
  for (const std::string& bad : {std::string("snt1."), token.text.substr(1), token.text + "0", "snt1." + std::string(64, 'G'),
                                "snt1." + std::string(64, 'A'), std::string("Bearer ") + token.text}) {
    if (api_token_hash(bad).has_value()) FAIL(bad.c_str());
  }
}
