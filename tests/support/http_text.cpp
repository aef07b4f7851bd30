// HTTP and Prometheus text for component tests; see http_text.hpp.
#include "http_text.hpp"

#include <cctype>
#include <utility>

#include "net.hpp"

namespace stacknode::test {

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string header_value(std::string_view head, std::string_view name) {
  const std::string wanted = lower(name) + ":";
  std::size_t line_start = head.find("\r\n");
  while (line_start != std::string_view::npos) {
    line_start += 2;
    std::size_t line_end = head.find("\r\n", line_start);
    if (line_end == std::string_view::npos) line_end = head.size();
    const std::string_view line = head.substr(line_start, line_end - line_start);
    if (lower(line.substr(0, wanted.size())) == wanted) {
      std::string_view value = line.substr(wanted.size());
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
      return std::string(value);
    }
    line_start = line_end == head.size() ? std::string_view::npos : line_end;
  }
  return {};
}

RawResponse split_response(const std::string& raw) {
  RawResponse response;
  response.status = status_of(raw);
  const auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) {
    response.head = raw;
    return response;
  }
  response.head = raw.substr(0, end);
  response.body = raw.substr(end + 4);
  return response;
}

std::vector<RawResponse> parse_responses(std::string_view raw) {
  std::vector<RawResponse> out;
  while (!raw.empty()) {
    const auto head_end = raw.find("\r\n\r\n");
    if (head_end == std::string_view::npos) break;
    RawResponse response;
    response.status = status_of(raw);
    response.head = std::string(raw.substr(0, head_end));
    raw.remove_prefix(head_end + 4);
    const std::string declared = header_value(response.head, "content-length");
    const std::size_t length = declared.empty() ? 0 : std::stoul(declared);
    if (raw.size() < length) break;
    response.body = std::string(raw.substr(0, length));
    raw.remove_prefix(length);
    out.push_back(std::move(response));
  }
  return out;
}

std::optional<double> metric_value(std::string_view exposition, std::string_view series) {
  const std::string wanted = std::string(series) + " ";
  std::size_t at = 0;
  while ((at = exposition.find(wanted, at)) != std::string_view::npos) {
    if (at == 0 || exposition[at - 1] == '\n') {
      return std::stod(std::string(exposition.substr(at + wanted.size())));
    }
    at += wanted.size();
  }
  return std::nullopt;
}

}  // namespace stacknode::test
