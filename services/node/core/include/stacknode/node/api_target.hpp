// The request target of stacknoded's REST API taken apart: "/api/v1/a/b?limit=5&after=x" into
// the segments after /api/v1/ and the query parameters. Pure and untrusted-input safe (fuzzed:
// tests/fuzz/services/api_target_fuzz.cpp). The API's names and parameters are plain (ids,
// names, numbers), so percent-escapes, empty segments and bare keys are refused, not decoded.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stacknode::node {

inline constexpr std::string_view api_prefix = "/api/v1/";
// More segments or parameters than any endpoint has is not a request for this API.
inline constexpr std::size_t max_api_segments = 8;
inline constexpr std::size_t max_api_parameters = 16;

struct ApiTarget {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

// nullopt when the target is not under api_prefix, or has an empty segment, a '%', a parameter
// without '=', or more segments or parameters than the limits.
std::optional<ApiTarget> parse_api_target(std::string_view target);

}  // namespace stacknode::node
