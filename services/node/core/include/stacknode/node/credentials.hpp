// Local admin passwords and API tokens of stacknoded's REST API. Passwords are stored as
// libsodium's argon2id strings (crypto_pwhash_str: algorithm, parameters and salt inside the
// string, so old hashes keep verifying when the parameters change); API tokens are random 256-bit
// secrets shown once, stored as SHA-256 (they are not guessable, so a slow hash buys nothing and
// would make every API call slow).
//
// API token text: "snt1." + 64 lowercase hex characters. The first 12 hex characters of the
// stored hash name a token in listings and in the audit log.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace stacknode::node {

// argon2id cost: libsodium's "interactive" limits (2 passes, 64 MiB), about 50-100 ms per login
// on the development VM; the login rate limit, not the hash, keeps guessing slow enough.
inline constexpr std::size_t password_min_chars = 12;
inline constexpr std::size_t password_max_chars = 256;  // a hash input this long is a mistake
inline constexpr std::size_t generated_password_chars = 20;
inline constexpr std::string_view api_token_prefix = "snt1.";
inline constexpr std::size_t api_token_secret_bytes = 32;

// Sodium must be initialised once before anything below; false if it cannot be (no entropy).
bool init_credentials();

// Why `password` cannot be an admin password, or empty if it can: 12-256 characters, no control
// characters.
std::string password_problem(std::string_view password);

// The argon2id string to store, or empty when the password is refused (password_problem) or
// libsodium cannot allocate the memory it needs.
std::optional<std::string> hash_password(std::string_view password);
// True only if `password` matches `stored` (a string from hash_password). Constant time in the
// password; a malformed `stored` never matches.
bool verify_password(std::string_view password, const std::string& stored);

// A password for `stackctl cluster init` to show once when none is given: 20 characters from an
// alphabet without look-alikes (no 0/O, 1/l/I), about 115 bits.
std::string generate_password();

struct ApiToken {
  std::string text;        // "snt1.<64 hex>": shown once, never stored
  std::string stored_hash;  // what the database keeps
  std::string id;           // the first 12 characters of stored_hash
};
ApiToken generate_api_token();
// The stored hash of a presented token, or empty if `text` is not shaped like one.
std::optional<std::string> api_token_hash(std::string_view text);

}  // namespace stacknode::node
