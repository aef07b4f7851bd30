// The HTTPS exchanges of `stackctl` with a member's API during join and node update: a JSON POST,
// and the member's answer read back (its JSON object, its error message). Internal to the ops
// library.
#pragma once

#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "stacknode/node/pinned_https.hpp"

namespace stacknode::node {
namespace member_request {

namespace bhttp = boost::beast::http;
namespace json = boost::json;

inline bhttp::request<bhttp::string_body> post(const std::string& address, std::string_view target, const json::object& body) {
  bhttp::request<bhttp::string_body> request{bhttp::verb::post, target, 11};
  request.set(bhttp::field::host, address);
  request.set(bhttp::field::user_agent, "stackctl");
  request.set(bhttp::field::content_type, "application/json");
  request.body() = json::serialize(body);
  return request;
}

// The member's JSON answer, or nullopt if it is not a JSON object.
inline std::optional<json::object> answer_object(const PinnedAnswer& answer) {
  boost::system::error_code error;
  json::value value = json::parse(answer.response.body(), error);
  if (error || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

// The member's error message, or its status when it sent none.
inline std::string member_message(const PinnedAnswer& answer) {
  const std::optional<json::object> body = answer_object(answer);
  if (body) {
    if (const json::value* error = body->if_contains("error"); error && error->is_object()) {
      if (const json::value* message = error->as_object().if_contains("message"); message && message->is_string()) {
        return std::string(message->as_string());
      }
    }
  }
  return "it answered HTTP " + std::to_string(answer.response.result_int());
}

inline std::string string_of(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value && value->is_string() ? std::string(value->as_string()) : std::string();
}

}  // namespace member_request
}  // namespace stacknode::node
