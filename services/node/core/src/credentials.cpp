// Admin passwords (argon2id via libsodium) and API tokens (random, stored as SHA-256); see
// credentials.hpp.
#include "stacknode/node/credentials.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "stacknode/node/join_token.hpp"

namespace stacknode::node {
namespace {

constexpr std::string_view password_alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
constexpr std::size_t token_id_chars = 12;

std::string sha256_hex(std::string_view text) {
  std::array<std::uint8_t, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(text.data()), text.size());
  return to_hex(digest);
}

}  // namespace

bool init_credentials() { return sodium_init() >= 0; }

std::string password_problem(std::string_view password) {
  if (password.size() < password_min_chars) {
    return "the password is too short: at least " + std::to_string(password_min_chars) + " characters";
  }
  if (password.size() > password_max_chars) {
    return "the password is too long: at most " + std::to_string(password_max_chars) + " characters";
  }
  if (std::any_of(password.begin(), password.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return "the password has a control character";
  }
  return "";
}

std::optional<std::string> hash_password(std::string_view password) {
  if (!password_problem(password).empty()) return std::nullopt;
  char stored[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(stored, password.data(), password.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
    return std::nullopt;  // out of memory
  }
  return std::string(stored);
}

bool verify_password(std::string_view password, const std::string& stored) {
  if (password.size() > password_max_chars || stored.size() >= crypto_pwhash_STRBYTES) return false;
  return crypto_pwhash_str_verify(stored.c_str(), password.data(), password.size()) == 0;
}

std::string generate_password() {
  std::string password;
  password.reserve(generated_password_chars);
  for (std::size_t index = 0; index < generated_password_chars; ++index) {
    password += password_alphabet[randombytes_uniform(static_cast<std::uint32_t>(password_alphabet.size()))];
  }
  return password;
}

ApiToken generate_api_token() {
  std::array<std::uint8_t, api_token_secret_bytes> secret{};
  randombytes_buf(secret.data(), secret.size());
  ApiToken token;
  token.text = std::string(api_token_prefix) + to_hex(secret);
  token.stored_hash = sha256_hex(token.text);
  token.id = token.stored_hash.substr(0, token_id_chars);
  return token;
}

std::optional<std::string> api_token_hash(std::string_view text) {
  if (!text.starts_with(api_token_prefix)) return std::nullopt;
  const std::string_view hex = text.substr(api_token_prefix.size());
  if (hex.size() != api_token_secret_bytes * 2 ||
      !std::all_of(hex.begin(), hex.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
    return std::nullopt;
  }
  return sha256_hex(text);
}

}  // namespace stacknode::node
