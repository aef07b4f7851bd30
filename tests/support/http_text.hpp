// HTTP and Prometheus text as component tests see it: the fields of a response head, the responses
// in bytes read off a socket, one series of a /metrics exposition. Plain string work, no sockets.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stacknode::test {

bool contains(std::string_view text, std::string_view part);
// ASCII lower case (field names).
std::string lower(std::string_view text);

// The value of field `name` in a response head (case-insensitive), "" when absent.
std::string header_value(std::string_view head, std::string_view name);

struct RawResponse {
  int status = 0;
  std::string head;  // status line and fields, without the blank line
  std::string body;
};

// Splits `raw` at the end of the first head: the body is everything after it. Without a whole
// head, all of `raw` is the head and the body is empty.
RawResponse split_response(const std::string& raw);

// Splits what a server sent into whole responses, framed by Content-Length (1xx answers have none
// and no body; a response without one has an empty body). A trailing partial response is left out.
std::vector<RawResponse> parse_responses(std::string_view raw);

// The value of one series in a Prometheus exposition ("name" or "name{labels}"), if present.
std::optional<double> metric_value(std::string_view exposition, std::string_view series);

}  // namespace stacknode::test
