// libFuzzer target over stacknoded's request-target parser (services/node/core: parse_api_target),
// which every API request from the network goes through before authentication. Sanitizers catch
// memory errors; the invariants below catch wrong answers and stop with __builtin_trap().
//
// Invariants checked:
//  1. An accepted target starts with /api/v1/ and keeps the limits (segments, parameters).
//  2. No accepted segment is empty or holds '/', '?' or '%'; no parameter name or value holds '&'
//     or '%'; no parameter name holds '='.
//  3. The segments joined with '/' are the path after /api/v1/ exactly.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "stacknode/node/api_target.hpp"

using namespace stacknode::node;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  const std::optional<ApiTarget> parsed = parse_api_target(target);
  if (!parsed) return 0;
  check(target.starts_with(api_prefix));
  check(parsed->segments.size() <= max_api_segments && parsed->query.size() <= max_api_parameters);
  std::string joined;
  for (const std::string& segment : parsed->segments) {
    check(!segment.empty() && segment.find_first_of("/?%") == std::string::npos);
    joined += (joined.empty() ? "" : "/") + segment;
  }
  const std::string_view path = target.substr(0, target.find('?'));
  check(joined == path.substr(api_prefix.size()) || joined + "/" == path.substr(api_prefix.size()));
  for (const auto& [name, value] : parsed->query) {
    check(name.find_first_of("&%=") == std::string::npos && value.find_first_of("&%") == std::string::npos);
  }
  return 0;
}
