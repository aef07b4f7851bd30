// X-Served-By for stacknode-web: the field that names the node whose web server answered (so an
// operator behind a VIP can tell the nodes apart), the rule for its value (web.served_by), and
// the one function every response-building place calls to set it. Header-only and pure.
//
// Every answer the web handler produces carries it: static files (200, 206, 304, 404, 503, ...),
// proxied answers (where it replaces an upstream's own X-Served-By, so it always names this
// node), cache hits, proxy errors and bad request paths. Answers made by the server base itself
// (/healthz, /metrics, 400/408/413/431 for malformed or oversized requests) do not pass through
// the handler and go without it.
#pragma once

#include <cstddef>
#include <string_view>

#include <boost/beast/http/message.hpp>

namespace stacknode::web {

inline constexpr std::string_view served_by_field = "X-Served-By";
// A node name fits easily; the bound keeps a header line short and a typo (a path, a sentence)
// from being sent to every client.
inline constexpr std::size_t served_by_max_length = 64;

// 1..served_by_max_length characters of [A-Za-z0-9._-]: safe in a header without quoting, and
// no CR/LF can reach a response head. (Empty means "no header" and is checked by the caller.)
inline bool valid_served_by(std::string_view value) {
  if (value.empty() || value.size() > served_by_max_length) return false;
  for (const char c : value) {
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !digit && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

// Sets X-Served-By on `response` (replacing any it has); nothing when `served_by` is empty.
template <class Response>
void set_served_by(Response& response, std::string_view served_by) {
  if (!served_by.empty()) response.set(served_by_field, served_by);
}

}  // namespace stacknode::web
