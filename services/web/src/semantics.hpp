// HTTP semantics that stacknode-web parses itself, as pure functions over strings: request path
// normalisation, byte ranges, conditional requests (ETag, dates), Cache-Control, Accept-Encoding
// and MIME types. Everything here handles untrusted input from clients or upstreams: it never
// throws, never allocates without bound, and is covered by the fuzz target
// tests/fuzz/services/web/semantics_fuzz.cpp.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace stacknode::web {

// ---- Paths ----

// Request targets longer than this are refused before decoding (nginx's default head buffer is
// 8 KiB for the whole request line; a path near that is an attack or a bug).
inline constexpr std::size_t max_path_bytes = 8 * 1024;

struct PathResult {
  bool ok = false;
  // Decoded and normalised: starts with '/', no "." or ".." segments, no empty segments, keeps a
  // trailing '/' if the request had one or ended in a "." or ".." segment ("/a/b/.." is "/a/").
  // Only meaningful when ok.
  std::string path;
  std::string error;  // why the target was refused, for the 400 body; empty when ok
};

// From the request target (origin form, "/a/b?q"): drops the query, percent-decodes, resolves
// "." and ".." (also when encoded as %2e), collapses "//". Refuses: anything not starting with
// '/', bad percent escapes, a decoded NUL byte, ".." that would climb above the root, and targets
// over max_path_bytes.
PathResult normalize_request_path(std::string_view target);

// ---- Byte ranges (RFC 9110 section 14) ----

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};

enum class RangeOutcome {
  full,           // no Range, a unit other than bytes, or several ranges of which at least one
                  // is satisfiable: send 200 with all
  partial,        // exactly one satisfiable range: send 206 with `range`
  unsatisfiable,  // "bytes=" with no satisfiable range, or malformed: send 416
};

struct RangeResult {
  RangeOutcome outcome = RangeOutcome::full;
  ByteRange range;
};

// `header` is the Range field value; `size` the representation's length.
// "bytes=0-99", "bytes=100-" and "bytes=-500" (the last 500) are supported; a range running past
// the end is clipped to it. More than one range gives `full` (RFC 9110 allows ignoring them)
// unless none of them is satisfiable. A range-spec that is malformed, starts at or past the end,
// or holds a number too large for 64 bits is not satisfiable; a size of 0 satisfies none.
RangeResult parse_range(std::string_view header, std::uint64_t size);

// Content-Range value for a partial response: "bytes 0-99/1234".
std::string content_range(const ByteRange& range, std::uint64_t size);
// Content-Range value for a 416: "bytes */1234".
std::string unsatisfied_content_range(std::uint64_t size);

// ---- Validators and conditional requests (RFC 9110 section 13) ----

// A strong ETag from the file's identity: "\"<size hex>-<mtime ns hex>\"", with "-gz" appended
// inside the quotes for the precompressed variant.
std::string make_etag(std::uint64_t size, std::int64_t mtime_ns, bool gzip_variant);

// IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT".
std::string format_http_date(std::time_t time);
// IMF-fixdate, RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37
// 1994"); nullopt for anything else.
std::optional<std::time_t> parse_http_date(std::string_view text);

struct ConditionalHeaders {
  std::string_view if_match;
  std::string_view if_none_match;
  std::string_view if_modified_since;
  std::string_view if_unmodified_since;
};

enum class Precondition {
  proceed,       // serve normally
  not_modified,  // 304 (GET/HEAD only)
  failed,        // 412
};

// RFC 9110 section 13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since
// (the last only when If-None-Match is absent). `etag` is the current strong ETag.
Precondition evaluate_preconditions(const ConditionalHeaders& headers, std::string_view etag,
                                    std::time_t last_modified, bool get_or_head);

// If-Range: true if the Range may be honoured (the validator matches: strong ETag comparison, or
// an HTTP date exactly equal to Last-Modified); an empty header allows the range.
bool if_range_allows(std::string_view if_range, std::string_view etag, std::time_t last_modified);

// ---- Cache-Control (RFC 9111 section 5.2) ----

struct CacheControl {
  bool no_store = false;
  bool no_cache = false;
  bool is_private = false;
  bool is_public = false;
  bool must_revalidate = false;
  std::optional<std::int64_t> max_age;   // seconds; a malformed value counts as 0 (stale)
  std::optional<std::int64_t> s_maxage;  // seconds; likewise
};

// Tolerant: directive names are case-insensitive, unknown directives are ignored, quoted values
// are accepted, values are capped at 2^31 seconds as RFC 9111 asks.
CacheControl parse_cache_control(std::string_view header);

// ---- Content negotiation and types ----

// True if the Accept-Encoding value accepts gzip (q > 0, directly or through "*").
bool accepts_gzip(std::string_view accept_encoding);

// MIME type by file extension (case-insensitive); text types carry "; charset=utf-8".
// Unknown extensions give "application/octet-stream".
std::string_view mime_type_for(std::string_view path);

}  // namespace stacknode::web
