// Lowercase hex of bytes, as stacknoded shows ids, pins and hashes, and the way back.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace stacknode::node {

inline std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  text.reserve(bytes.size() * 2);
  for (const std::uint8_t byte : bytes) {
    text += digits[byte >> 4];
    text += digits[byte & 0x0f];
  }
  return text;
}

// The value of one hex digit (either case), or -1.
inline int hex_digit_value(char digit) {
  if (digit >= '0' && digit <= '9') return digit - '0';
  if (digit >= 'a' && digit <= 'f') return digit - 'a' + 10;
  if (digit >= 'A' && digit <= 'F') return digit - 'A' + 10;
  return -1;
}

// Fills `bytes` from exactly 2 * bytes.size() hex digits; false (bytes unspecified) otherwise.
inline bool from_hex(std::string_view text, std::span<std::uint8_t> bytes) {
  if (text.size() != 2 * bytes.size()) return false;
  for (std::size_t index = 0; index < text.size(); ++index) {
    const int value = hex_digit_value(text[index]);
    if (value < 0) return false;
    bytes[index / 2] = static_cast<std::uint8_t>(bytes[index / 2] << 4 | value);
  }
  return true;
}

}  // namespace stacknode::node
