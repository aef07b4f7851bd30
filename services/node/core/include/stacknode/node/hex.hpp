// Lowercase hex of bytes, as stacknoded shows ids, pins and hashes.
#pragma once

#include <cstdint>
#include <span>
#include <string>

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

}  // namespace stacknode::node
