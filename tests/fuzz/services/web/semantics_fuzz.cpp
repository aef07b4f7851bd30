// libFuzzer target for services/web semantics: the input goes, whole, to every parser in
// semantics.hpp (path, Range at several sizes, dates, preconditions, If-Range, Cache-Control,
// Accept-Encoding, MIME types). Sanitizers catch memory errors; the invariants below catch wrong
// answers and stop with __builtin_trap() so libFuzzer saves the input.
//
// Invariants checked:
//  1. A normalised path starts with '/', has no "//", "/./", "/../", trailing "/." or "/..", no
//     NUL, is no longer than the target, and normalises to itself (when it has no '%', '?', '#'
//     that a second pass would read differently). A refused target carries an error.
//  2. A partial range is non-empty and lies within the size; size 0 is never partial; Range is
//     answered the same whatever the case of its letters.
//  3. A parsed date formats to 29 bytes and parses back to itself; any time_t formats to a date
//     that parses.
//  4. Only GET/HEAD ever get not_modified; without conditions, everything proceeds; If-Range
//     with a weak tag never allows.
//  5. Cache-Control ages lie in [0, 2^31].
//  6. Accept-Encoding and MIME types ignore letter case; a MIME type is never empty.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

#include "semantics.hpp"

using namespace stacknode::web;

namespace {

constexpr std::size_t imf_fixdate_length = 29;  // "Sun, 06 Nov 1994 08:49:37 GMT"

void check(bool condition) {
  if (!condition) __builtin_trap();
}

std::string ascii_lower(std::string_view text) {
  std::string result(text);
  for (char& c : result) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return result;
}

std::string ascii_upper(std::string_view text) {
  std::string result(text);
  for (char& c : result) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return result;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

void check_path(std::string_view input) {
  const PathResult result = normalize_request_path(input);
  if (!result.ok) {
    check(!result.error.empty());
    return;
  }
  const std::string_view path = result.path;
  check(result.error.empty());
  check(!path.empty() && path.front() == '/');
  check(path.size() <= input.size());
  check(!contains(path, std::string_view("\0", 1)));
  check(!contains(path, "//") && !contains(path, "/./") && !contains(path, "/../"));
  check(!path.ends_with("/.") && !path.ends_with("/.."));
  if (path.find_first_of("%?#") == std::string_view::npos) {
    const PathResult again = normalize_request_path(path);
    check(again.ok && again.path == path);
  }
}

void check_range(std::string_view input, std::uint64_t size) {
  const RangeResult result = parse_range(input, size);
  if (result.outcome == RangeOutcome::partial) {
    check(size > 0);
    check(result.range.length > 0);
    check(result.range.first < size);
    check(result.range.length <= size - result.range.first);
    check(content_range(result.range, size).starts_with("bytes "));
  }
  const RangeResult upper = parse_range(ascii_upper(input), size);
  check(upper.outcome == result.outcome);
  check(upper.range.first == result.range.first && upper.range.length == result.range.length);
}

void check_dates(std::string_view input, const std::uint8_t* data, std::size_t size) {
  if (const auto parsed = parse_http_date(input)) {
    const std::string formatted = format_http_date(*parsed);
    check(formatted.size() == imf_fixdate_length);
    const auto again = parse_http_date(formatted);
    check(again && *again == *parsed);
  }
  // Any time_t, from the input's first bytes, formats to something that parses and is stable.
  std::int64_t raw_time = 0;
  std::memcpy(&raw_time, data, size < sizeof raw_time ? size : sizeof raw_time);
  const std::string formatted = format_http_date(static_cast<std::time_t>(raw_time));
  const auto parsed = parse_http_date(formatted);
  check(parsed.has_value());
  check(format_http_date(*parsed) == formatted);
}

void check_preconditions(std::string_view input) {
  const std::string etag = make_etag(1234, 784111777000000000, false);
  const std::time_t last_modified = 784111777;
  check(evaluate_preconditions({}, etag, last_modified, true) == Precondition::proceed);
  const ConditionalHeaders each_alone[] = {
      {input, "", "", ""},
      {"", input, "", ""},
      {"", "", input, ""},
      {"", "", "", input},
      {input, input, input, input},
  };
  for (const ConditionalHeaders& headers : each_alone) {
    evaluate_preconditions(headers, etag, last_modified, true);
    check(evaluate_preconditions(headers, etag, last_modified, false) != Precondition::not_modified);
  }
  // If-Modified-Since alone never affects other methods.
  check(evaluate_preconditions({"", "", input, ""}, etag, last_modified, false) ==
        Precondition::proceed);

  const bool allowed = if_range_allows(input, etag, last_modified);
  std::string_view trimmed = input;
  while (!trimmed.empty() && (trimmed.front() == ' ' || trimmed.front() == '\t')) trimmed.remove_prefix(1);
  if (trimmed.starts_with("W/")) check(!allowed);
  check(if_range_allows(etag, etag, last_modified));
}

void check_cache_control(std::string_view input) {
  constexpr std::int64_t max_delta_seconds = std::int64_t{1} << 31;
  const CacheControl result = parse_cache_control(input);
  if (result.max_age) check(*result.max_age >= 0 && *result.max_age <= max_delta_seconds);
  if (result.s_maxage) check(*result.s_maxage >= 0 && *result.s_maxage <= max_delta_seconds);
  const CacheControl upper = parse_cache_control(ascii_upper(input));
  check(upper.no_store == result.no_store && upper.max_age == result.max_age);
}

void check_negotiation(std::string_view input) {
  check(accepts_gzip(ascii_lower(input)) == accepts_gzip(ascii_upper(input)));
  const std::string_view type = mime_type_for(input);
  check(!type.empty() && contains(type, "/"));
  check(mime_type_for(ascii_upper(input)) == type);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_path(input);
  for (const std::uint64_t representation_size :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{100}, std::uint64_t{12345},
        std::uint64_t{UINT64_MAX}}) {
    check_range(input, representation_size);
  }
  check_dates(input, data, size);
  check_preconditions(input);
  check_cache_control(input);
  check_negotiation(input);
  return 0;
}
