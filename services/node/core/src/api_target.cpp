// The REST API's request targets taken apart; see api_target.hpp.
#include "stacknode/node/api_target.hpp"

namespace stacknode::node {

std::optional<ApiTarget> parse_api_target(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  if (!path.starts_with(api_prefix)) return std::nullopt;
  ApiTarget parsed;
  std::string_view rest = path.substr(api_prefix.size());
  while (!rest.empty()) {
    const std::size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    if (segment.empty() || segment.find('%') != std::string_view::npos) return std::nullopt;
    if (parsed.segments.size() == max_api_segments) return std::nullopt;
    parsed.segments.emplace_back(segment);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
  std::string_view query = target.size() > path.size() ? target.substr(path.size() + 1) : std::string_view();
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t equals = pair.find('=');
    if (equals == std::string_view::npos || pair.find('%') != std::string_view::npos) return std::nullopt;
    if (parsed.query.size() == max_api_parameters) return std::nullopt;
    parsed.query[std::string(pair.substr(0, equals))] = std::string(pair.substr(equals + 1));
  }
  return parsed;
}

}  // namespace stacknode::node
