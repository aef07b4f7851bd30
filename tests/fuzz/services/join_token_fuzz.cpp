// libFuzzer target over stacknoded's join token parser (services/node/core: parse_join_token),
// the one parser a person pastes into: the input is the text as pasted. Sanitizers catch memory
// errors; the invariants below catch wrong answers and stop with __builtin_trap().
//
// Invariants checked:
//  1. A refusal has a kind and a message; an acceptance has neither.
//  2. An accepted token keeps every limit (1..max_token_addresses addresses, each a valid
//     member address) and its encoding is the input without its surrounding whitespace: a token
//     has exactly one spelling.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "stacknode/node/join_token.hpp"

using namespace stacknode::node;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const TokenParse parse = parse_join_token(text);
  if (!parse.ok()) {
    check(parse.error != TokenError::none && !parse.message.empty());
    return 0;
  }
  check(parse.error == TokenError::none && parse.message.empty());
  const JoinToken& token = *parse.token;
  check(!token.addresses.empty() && token.addresses.size() <= max_token_addresses);
  for (const std::string& address : token.addresses) check(valid_member_address(address));
  const std::optional<std::string> again = encode_join_token(token);
  check(again.has_value());
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  const std::size_t last = text.find_last_not_of(" \t\r\n");
  check(*again == text.substr(first, last - first + 1));
  return 0;
}
