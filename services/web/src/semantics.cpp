// HTTP semantics parsed by stacknode-web itself (see semantics.hpp): paths, byte ranges, dates,
// entity-tags and preconditions, Cache-Control, Accept-Encoding, MIME types. Every parser walks
// its input once, allocates at most one string no longer than its input, and never throws.
//
// Choices where the RFCs leave room (each is pinned by a test in semantics_test.cpp):
//  1. Paths: decoding happens before "." / ".." resolution, so %2e%2e and %2f are caught; a
//     trailing "." or ".." segment leaves a trailing '/' ("/a/b/.." is "/a/", as RFC 3986 5.2.4).
//  2. Ranges: every range-spec that is malformed, past the end, or has a number too large for 64
//     bits counts as unsatisfiable; one spec gives partial or unsatisfiable, several give full
//     unless all are unsatisfiable. A zero-length representation satisfies no range.
//  3. Dates: the three RFC 9110 forms, exact spacing, case-sensitive names; the weekday is not
//     checked against the date; second 60 (a leap second) is read as 59; years 1900-9999.
//  4. Entity-tag lists: a malformed list matches nothing ("W/" is case-sensitive, as specified).
//  5. Cache-Control: a repeated max-age / s-maxage with a different value makes it 0 (stale), as
//     RFC 9111 4.2.1 allows; a directive that should carry a number and does not counts as 0.
//  6. Accept-Encoding: an empty value accepts nothing (absent and empty cannot be told apart
//     here, and serving identity is always safe); a malformed q value counts as q=0; gzip and
//     x-gzip are one coding, and the highest q given to it wins; "*" applies only when gzip is
//     not named.
#include "semantics.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace stacknode::web {
namespace {

// ---- Character helpers (ASCII only: header bytes >= 0x80 are never letters here) ----

constexpr bool is_ows(char c) { return c == ' ' || c == '\t'; }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim_ows(std::string_view text) {
  while (!text.empty() && is_ows(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ows(text.back())) text.remove_suffix(1);
  return text;
}

bool equals_ignoring_case(std::string_view left, std::string_view right) {
  if (left.size() != right.size()) return false;
  for (std::size_t index = 0; index < left.size(); ++index) {
    if (to_lower(left[index]) != to_lower(right[index])) return false;
  }
  return true;
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), is_digit);
}

// A non-empty run of digits as a uint64; nullopt for anything else, including overflow.
std::optional<std::uint64_t> parse_unsigned(std::string_view digits) {
  if (!all_digits(digits)) return std::nullopt;
  constexpr std::uint64_t largest = UINT64_MAX;
  std::uint64_t value = 0;
  for (const char c : digits) {
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (largest - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// Cuts the next comma-separated element off the front of `rest` and returns it without OWS.
// Commas inside a quoted-string (with backslash quoted-pairs) do not split; an unterminated
// quote runs to the end.
std::string_view take_list_element(std::string_view& rest) {
  bool in_quotes = false;
  std::size_t index = 0;
  for (; index < rest.size(); ++index) {
    const char c = rest[index];
    if (in_quotes) {
      if (c == '\\') {
        ++index;  // the quoted-pair's second byte, whatever it is
      } else if (c == '"') {
        in_quotes = false;
      }
    } else if (c == '"') {
      in_quotes = true;
    } else if (c == ',') {
      break;
    }
  }
  index = std::min(index, rest.size());
  const std::string_view element = rest.substr(0, index);
  rest.remove_prefix(index < rest.size() ? index + 1 : index);
  return trim_ows(element);
}

// ---- Paths ----

PathResult refuse_path(std::string_view why) {
  PathResult result;
  result.error = std::string(why);
  return result;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// ---- Byte ranges ----

// One range-spec ("0-99", "100-", "-500") against `size`; nullopt when it is malformed or not
// satisfiable. A last-pos past the end is clipped; a suffix longer than the file means all of it.
std::optional<ByteRange> resolve_range_spec(std::string_view spec, std::uint64_t size) {
  const std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos || size == 0) return std::nullopt;
  const std::string_view first_text = spec.substr(0, dash);
  const std::string_view last_text = spec.substr(dash + 1);

  if (first_text.empty()) {  // suffix-range: the last N bytes
    const auto suffix_length = parse_unsigned(last_text);
    if (!suffix_length || *suffix_length == 0) return std::nullopt;
    const std::uint64_t length = std::min(*suffix_length, size);
    return ByteRange{size - length, length};
  }

  const auto first = parse_unsigned(first_text);
  if (!first || *first >= size) return std::nullopt;
  std::uint64_t last = size - 1;
  if (!last_text.empty()) {
    const auto requested_last = parse_unsigned(last_text);
    if (!requested_last || *requested_last < *first) return std::nullopt;
    last = std::min(*requested_last, last);
  }
  return ByteRange{*first, last - *first + 1};
}

// ---- Dates ----

// IMF-fixdate years have four digits; RFC 5322 puts the earliest at 1900.
constexpr int earliest_http_year = 1900;
constexpr int latest_http_year = 9999;
// RFC 850 two-digit years: below this pivot they are 20yy, from it 19yy (RFC 9110 5.6.7 asks for
// "not more than 50 years in the future"; a fixed pivot keeps parsing independent of the clock).
constexpr int rfc850_century_pivot = 70;
// 1900-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the times an HTTP date can spell.
constexpr std::time_t earliest_http_time = -2208988800;
constexpr std::time_t latest_http_time = 253402300799;
static_assert(sizeof(std::time_t) >= 8, "HTTP dates up to year 9999 need a 64-bit time_t");

constexpr std::size_t imf_fixdate_length = 29;  // "Sun, 06 Nov 1994 08:49:37 GMT"
constexpr std::size_t asctime_length = 24;      // "Sun Nov  6 08:49:37 1994"
constexpr std::size_t rfc850_tail_length = 24;  // ", 06-Nov-94 08:49:37 GMT"
constexpr std::size_t time_of_day_length = 8;   // "08:49:37"
constexpr std::size_t formatted_date_buffer = 32;

constexpr std::array<std::string_view, 7> short_day_names = {"Sun", "Mon", "Tue", "Wed",
                                                             "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> long_day_names = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> month_names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

template <std::size_t Count>
std::optional<int> index_of(const std::array<std::string_view, Count>& names, std::string_view name) {
  for (std::size_t index = 0; index < Count; ++index) {
    if (names[index] == name) return static_cast<int>(index);
  }
  return std::nullopt;
}

std::optional<int> parse_fixed_digits(std::string_view text) {
  if (!all_digits(text)) return std::nullopt;
  int value = 0;
  for (const char c : text) value = value * 10 + (c - '0');
  return value;
}

struct CalendarTime {
  int year = 0;
  int month = 0;  // 0 = January
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
};

// "hh:mm:ss" into `fields`; false if it is not that shape.
bool parse_time_of_day(std::string_view text, CalendarTime& fields) {
  if (text.size() != time_of_day_length || text[2] != ':' || text[5] != ':') return false;
  const auto hour = parse_fixed_digits(text.substr(0, 2));
  const auto minute = parse_fixed_digits(text.substr(3, 2));
  const auto second = parse_fixed_digits(text.substr(6, 2));
  if (!hour || !minute || !second) return false;
  fields.hour = *hour;
  fields.minute = *minute;
  fields.second = *second;
  return true;
}

bool is_leap_year(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int days_in_month(int year, int month) {
  constexpr std::array<int, 12> days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 1 && is_leap_year(year) ? 29 : days[static_cast<std::size_t>(month)];
}

std::optional<std::time_t> to_time(CalendarTime fields) {
  if (fields.year < earliest_http_year || fields.year > latest_http_year) return std::nullopt;
  if (fields.day < 1 || fields.day > days_in_month(fields.year, fields.month)) return std::nullopt;
  if (fields.hour > 23 || fields.minute > 59 || fields.second > 60) return std::nullopt;
  // POSIX time has no leap seconds; holding the clock at :59 keeps the date in its own minute.
  if (fields.second == 60) fields.second = 59;
  std::tm broken_down{};
  broken_down.tm_year = fields.year - 1900;
  broken_down.tm_mon = fields.month;
  broken_down.tm_mday = fields.day;
  broken_down.tm_hour = fields.hour;
  broken_down.tm_min = fields.minute;
  broken_down.tm_sec = fields.second;
  return timegm(&broken_down);
}

// "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<std::time_t> parse_imf_fixdate(std::string_view text) {
  if (text.size() != imf_fixdate_length || text[3] != ',' || text[4] != ' ' || text[7] != ' ' ||
      text[11] != ' ' || text[16] != ' ' || text[25] != ' ' || text.substr(26) != "GMT") {
    return std::nullopt;
  }
  CalendarTime fields;
  const auto month = index_of(month_names, text.substr(8, 3));
  const auto day = parse_fixed_digits(text.substr(5, 2));
  const auto year = parse_fixed_digits(text.substr(12, 4));
  if (!index_of(short_day_names, text.substr(0, 3)) || !month || !day || !year ||
      !parse_time_of_day(text.substr(17, time_of_day_length), fields)) {
    return std::nullopt;
  }
  fields.year = *year;
  fields.month = *month;
  fields.day = *day;
  return to_time(fields);
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
std::optional<std::time_t> parse_rfc850_date(std::string_view text) {
  const std::size_t comma = text.find(',');
  if (comma == std::string_view::npos || !index_of(long_day_names, text.substr(0, comma))) {
    return std::nullopt;
  }
  const std::string_view tail = text.substr(comma);
  if (tail.size() != rfc850_tail_length || tail[1] != ' ' || tail[4] != '-' || tail[8] != '-' ||
      tail[11] != ' ' || tail[20] != ' ' || tail.substr(21) != "GMT") {
    return std::nullopt;
  }
  CalendarTime fields;
  const auto day = parse_fixed_digits(tail.substr(2, 2));
  const auto month = index_of(month_names, tail.substr(5, 3));
  const auto two_digit_year = parse_fixed_digits(tail.substr(9, 2));
  if (!day || !month || !two_digit_year ||
      !parse_time_of_day(tail.substr(12, time_of_day_length), fields)) {
    return std::nullopt;
  }
  fields.year = *two_digit_year + (*two_digit_year < rfc850_century_pivot ? 2000 : 1900);
  fields.month = *month;
  fields.day = *day;
  return to_time(fields);
}

// "Sun Nov  6 08:49:37 1994" (a one-digit day is padded with a space)
std::optional<std::time_t> parse_asctime_date(std::string_view text) {
  if (text.size() != asctime_length || text[3] != ' ' || text[7] != ' ' || text[10] != ' ' ||
      text[19] != ' ') {
    return std::nullopt;
  }
  CalendarTime fields;
  const auto month = index_of(month_names, text.substr(4, 3));
  const std::string_view day_text = text[8] == ' ' ? text.substr(9, 1) : text.substr(8, 2);
  const auto day = parse_fixed_digits(day_text);
  const auto year = parse_fixed_digits(text.substr(20, 4));
  if (!index_of(short_day_names, text.substr(0, 3)) || !month || !day || !year ||
      !parse_time_of_day(text.substr(11, time_of_day_length), fields)) {
    return std::nullopt;
  }
  fields.year = *year;
  fields.month = *month;
  fields.day = *day;
  return to_time(fields);
}

// ---- Entity-tags ----

struct EntityTag {
  bool weak = false;
  std::string_view opaque;  // with its double quotes
};

// etagc = %x21 / %x23-7E / obs-text
constexpr bool is_etag_char(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte == 0x21 || (byte >= 0x23 && byte != 0x7F);
}

// Takes one entity-tag off the front of `text`; nullopt (and `text` unspecified) if malformed.
std::optional<EntityTag> take_entity_tag(std::string_view& text) {
  EntityTag tag;
  if (text.starts_with("W/")) {
    tag.weak = true;
    text.remove_prefix(2);
  }
  if (text.empty() || text.front() != '"') return std::nullopt;
  std::size_t index = 1;
  while (index < text.size() && is_etag_char(text[index])) ++index;
  if (index >= text.size() || text[index] != '"') return std::nullopt;
  tag.opaque = text.substr(0, index + 1);
  text.remove_prefix(index + 1);
  return tag;
}

// `text` as exactly one entity-tag (surrounding OWS allowed).
std::optional<EntityTag> parse_single_entity_tag(std::string_view text) {
  text = trim_ows(text);
  auto tag = take_entity_tag(text);
  if (!tag || !text.empty()) return std::nullopt;
  return tag;
}

enum class Comparison { strong, weak };

bool tags_match(const EntityTag& left, const EntityTag& right, Comparison comparison) {
  if (comparison == Comparison::strong && (left.weak || right.weak)) return false;
  return left.opaque == right.opaque;
}

// If-Match / If-None-Match: "*" or a comma-separated list of entity-tags. True if the list is
// well formed and one of its tags matches `current_etag` (or the list is "*": the representation
// exists, since we were asked about it).
bool entity_tag_list_matches(std::string_view list, std::string_view current_etag,
                             Comparison comparison) {
  list = trim_ows(list);
  if (list == "*") return true;
  const auto current = parse_single_entity_tag(current_etag);
  bool matched = false;
  while (true) {
    while (!list.empty() && (is_ows(list.front()) || list.front() == ',')) list.remove_prefix(1);
    if (list.empty()) break;
    const auto tag = take_entity_tag(list);
    if (!tag) return false;
    if (current && tags_match(*tag, *current, comparison)) matched = true;
    list = trim_ows(list);
    if (!list.empty() && list.front() != ',') return false;
  }
  return matched;
}

// ---- Cache-Control ----

// RFC 9111 1.2.2: a delta-seconds too large to represent is taken as 2^31.
constexpr std::int64_t max_delta_seconds = std::int64_t{1} << 31;

// A directive's value (token or quoted-string) as delta-seconds, capped; 0 when malformed.
std::int64_t parse_delta_seconds(std::string_view value) {
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  if (!all_digits(value)) return 0;
  std::int64_t seconds = 0;
  for (const char c : value) {
    seconds = std::min(seconds * 10 + (c - '0'), max_delta_seconds);
  }
  return seconds;
}

// A repeated numeric directive keeps its value only if every occurrence agrees.
void merge_seconds(std::optional<std::int64_t>& field, std::int64_t seconds) {
  field = (field && *field != seconds) ? 0 : seconds;
}

// ---- Accept-Encoding ----

constexpr int qvalue_scale = 1000;  // qvalues have at most three decimals: thousandths

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
std::optional<int> parse_qvalue(std::string_view text) {
  constexpr std::size_t max_decimals = 3;
  if (text.empty() || (text[0] != '0' && text[0] != '1')) return std::nullopt;
  int value = (text[0] - '0') * qvalue_scale;
  if (text.size() == 1) return value;
  if (text[1] != '.') return std::nullopt;
  const std::string_view decimals = text.substr(2);
  if (decimals.size() > max_decimals) return std::nullopt;
  int place = qvalue_scale / 10;
  for (const char c : decimals) {
    if (!is_digit(c)) return std::nullopt;
    value += (c - '0') * place;
    place /= 10;
  }
  if (value > qvalue_scale) return std::nullopt;
  return value;
}

// ---- MIME types ----

struct MimeEntry {
  std::string_view extension;  // lower case, without the dot
  std::string_view type;
};

constexpr std::string_view default_mime_type = "application/octet-stream";

constexpr std::array mime_table = {
    MimeEntry{"html", "text/html; charset=utf-8"},
    MimeEntry{"htm", "text/html; charset=utf-8"},
    MimeEntry{"css", "text/css; charset=utf-8"},
    MimeEntry{"js", "text/javascript; charset=utf-8"},  // RFC 9239
    MimeEntry{"mjs", "text/javascript; charset=utf-8"},
    MimeEntry{"json", "application/json; charset=utf-8"},
    MimeEntry{"map", "application/json; charset=utf-8"},  // source maps are JSON
    MimeEntry{"txt", "text/plain; charset=utf-8"},
    MimeEntry{"xml", "application/xml; charset=utf-8"},
    MimeEntry{"svg", "image/svg+xml; charset=utf-8"},
    MimeEntry{"csv", "text/csv; charset=utf-8"},
    MimeEntry{"md", "text/markdown; charset=utf-8"},
    MimeEntry{"png", "image/png"},
    MimeEntry{"jpg", "image/jpeg"},
    MimeEntry{"jpeg", "image/jpeg"},
    MimeEntry{"gif", "image/gif"},
    MimeEntry{"webp", "image/webp"},
    MimeEntry{"avif", "image/avif"},
    MimeEntry{"ico", "image/vnd.microsoft.icon"},
    MimeEntry{"woff", "font/woff"},
    MimeEntry{"woff2", "font/woff2"},
    MimeEntry{"ttf", "font/ttf"},
    MimeEntry{"otf", "font/otf"},
    MimeEntry{"pdf", "application/pdf"},
    MimeEntry{"wasm", "application/wasm"},  // browsers refuse streaming compile under other types
    MimeEntry{"mp4", "video/mp4"},
    MimeEntry{"webm", "video/webm"},
    MimeEntry{"mp3", "audio/mpeg"},
    MimeEntry{"ogg", "audio/ogg"},
    MimeEntry{"wav", "audio/wav"},
    MimeEntry{"zip", "application/zip"},
    MimeEntry{"gz", "application/gzip"},
    MimeEntry{"tar", "application/x-tar"},
};

}  // namespace

// ---- Paths ----

PathResult normalize_request_path(std::string_view target) {
  if (target.size() > max_path_bytes) return refuse_path("request target too long");
  if (target.empty() || target.front() != '/') return refuse_path("request target must start with '/'");
  target = target.substr(0, target.find_first_of("?#"));

  // Percent-decode first, so encoded dots and slashes take part in segment resolution below.
  std::string decoded;
  decoded.reserve(target.size());
  for (std::size_t index = 0; index < target.size(); ++index) {
    char c = target[index];
    if (c == '%') {
      if (index + 2 >= target.size()) {
        return refuse_path("incomplete percent escape in path");
      }
      const int high = hex_value(target[index + 1]);
      const int low = hex_value(target[index + 2]);
      if (high < 0 || low < 0) return refuse_path("invalid percent escape in path");
      c = static_cast<char>(high * 16 + low);
      index += 2;
    }
    if (c == '\0') return refuse_path("NUL byte in path");
    decoded.push_back(c);
  }

  // Resolve segments into `result.path`, which only ever shrinks relative to `decoded`.
  PathResult result;
  std::string& path = result.path;
  path.reserve(decoded.size());
  bool trailing_slash = false;
  std::string_view rest = std::string_view(decoded).substr(1);  // past the leading '/'
  while (true) {
    const std::size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    if (segment == "..") {
      if (path.empty()) return refuse_path("path climbs above the root");
      path.erase(path.rfind('/'));
      trailing_slash = true;
    } else if (segment.empty() || segment == ".") {
      trailing_slash = true;
    } else {
      path.push_back('/');
      path.append(segment);
      trailing_slash = false;
    }
    if (last) break;
    rest.remove_prefix(slash + 1);
  }
  if (path.empty() || trailing_slash) path.push_back('/');
  result.ok = true;
  return result;
}

// ---- Byte ranges ----

RangeResult parse_range(std::string_view header, std::uint64_t size) {
  RangeResult result;
  const std::size_t equals = header.find('=');
  if (equals == std::string_view::npos) return result;  // no range-unit "=": not a Range we know
  if (!equals_ignoring_case(trim_ows(header.substr(0, equals)), "bytes")) return result;

  std::string_view range_set = header.substr(equals + 1);
  std::size_t spec_count = 0;
  std::size_t satisfiable_count = 0;
  while (!range_set.empty()) {
    const std::size_t comma = range_set.find(',');
    const std::string_view spec = trim_ows(range_set.substr(0, comma));
    range_set.remove_prefix(comma == std::string_view::npos ? range_set.size() : comma + 1);
    if (spec.empty()) continue;  // RFC 9110 5.6.1.2: empty list elements are ignored
    ++spec_count;
    if (const auto range = resolve_range_spec(spec, size)) {
      ++satisfiable_count;
      result.range = *range;  // only kept when it is the one spec
    }
  }
  if (satisfiable_count == 0) {
    result.outcome = RangeOutcome::unsatisfiable;
    result.range = {};
  } else if (spec_count == 1) {
    result.outcome = RangeOutcome::partial;
  } else {
    result.range = {};  // several ranges: serve everything
  }
  return result;
}

std::string content_range(const ByteRange& range, std::uint64_t size) {
  if (range.length == 0) return unsatisfied_content_range(size);  // "first-last" cannot say empty
  return "bytes " + std::to_string(range.first) + "-" +
         std::to_string(range.first + (range.length - 1)) + "/" + std::to_string(size);
}

std::string unsatisfied_content_range(std::uint64_t size) {
  return "bytes */" + std::to_string(size);
}

// ---- Validators and conditional requests ----

std::string make_etag(std::uint64_t size, std::int64_t mtime_ns, bool gzip_variant) {
  // 16 hex digits each, quotes, '-', "-gz" and the terminator.
  constexpr std::size_t etag_buffer = 48;
  char buffer[etag_buffer];
  // A pre-1970 mtime prints as its two's complement: still unique, still only hex digits.
  std::snprintf(buffer, sizeof buffer, "\"%llx-%llx%s\"", static_cast<unsigned long long>(size),
                static_cast<unsigned long long>(static_cast<std::uint64_t>(mtime_ns)),
                gzip_variant ? "-gz" : "");
  return buffer;
}

std::string format_http_date(std::time_t time) {
  time = std::clamp(time, earliest_http_time, latest_http_time);
  std::tm broken_down{};
  gmtime_r(&time, &broken_down);
  char buffer[formatted_date_buffer];
  std::snprintf(buffer, sizeof buffer, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                short_day_names[static_cast<std::size_t>(broken_down.tm_wday)].data(),
                broken_down.tm_mday, month_names[static_cast<std::size_t>(broken_down.tm_mon)].data(),
                broken_down.tm_year + 1900, broken_down.tm_hour, broken_down.tm_min,
                broken_down.tm_sec);
  return buffer;
}

std::optional<std::time_t> parse_http_date(std::string_view text) {
  text = trim_ows(text);
  if (auto time = parse_imf_fixdate(text)) return time;
  if (auto time = parse_rfc850_date(text)) return time;
  return parse_asctime_date(text);
}

Precondition evaluate_preconditions(const ConditionalHeaders& headers, std::string_view etag,
                                    std::time_t last_modified, bool get_or_head) {
  const std::string_view if_match = trim_ows(headers.if_match);
  const std::string_view if_none_match = trim_ows(headers.if_none_match);

  // Step 1 / 2: If-Match, else If-Unmodified-Since (an unparseable date is ignored).
  if (!if_match.empty()) {
    if (!entity_tag_list_matches(if_match, etag, Comparison::strong)) return Precondition::failed;
  } else if (const auto since = parse_http_date(headers.if_unmodified_since)) {
    if (last_modified > *since) return Precondition::failed;
  }

  // Step 3 / 4: If-None-Match, else If-Modified-Since for GET and HEAD.
  if (!if_none_match.empty()) {
    if (entity_tag_list_matches(if_none_match, etag, Comparison::weak)) {
      return get_or_head ? Precondition::not_modified : Precondition::failed;
    }
  } else if (get_or_head) {
    if (const auto since = parse_http_date(headers.if_modified_since)) {
      if (last_modified <= *since) return Precondition::not_modified;
    }
  }
  return Precondition::proceed;
}

bool if_range_allows(std::string_view if_range, std::string_view etag, std::time_t last_modified) {
  if_range = trim_ows(if_range);
  if (if_range.empty()) return true;
  if (if_range.front() == '"' || if_range.starts_with("W/")) {
    const auto requested = parse_single_entity_tag(if_range);
    const auto current = parse_single_entity_tag(etag);
    return requested && current && tags_match(*requested, *current, Comparison::strong);
  }
  const auto date = parse_http_date(if_range);
  return date && *date == last_modified;
}

// ---- Cache-Control ----

CacheControl parse_cache_control(std::string_view header) {
  CacheControl result;
  std::string_view rest = header;
  while (!rest.empty()) {
    const std::string_view directive = take_list_element(rest);
    const std::size_t equals = directive.find('=');
    const std::string_view name = trim_ows(directive.substr(0, equals));
    const bool has_value = equals != std::string_view::npos;
    const std::string_view value = has_value ? trim_ows(directive.substr(equals + 1)) : "";

    // no-cache="field" and private="field" narrow the directive to some fields; treating them
    // as the plain directive is the cautious reading for a cache.
    if (equals_ignoring_case(name, "no-store")) {
      result.no_store = true;
    } else if (equals_ignoring_case(name, "no-cache")) {
      result.no_cache = true;
    } else if (equals_ignoring_case(name, "private")) {
      result.is_private = true;
    } else if (equals_ignoring_case(name, "public")) {
      result.is_public = true;
    } else if (equals_ignoring_case(name, "must-revalidate")) {
      result.must_revalidate = true;
    } else if (equals_ignoring_case(name, "max-age")) {
      merge_seconds(result.max_age, has_value ? parse_delta_seconds(value) : 0);
    } else if (equals_ignoring_case(name, "s-maxage")) {
      merge_seconds(result.s_maxage, has_value ? parse_delta_seconds(value) : 0);
    }
  }
  return result;
}

// ---- Content negotiation and types ----

bool accepts_gzip(std::string_view accept_encoding) {
  std::optional<int> gzip_quality;  // the highest q given to gzip or x-gzip
  std::optional<int> any_quality;   // the highest q given to "*"
  std::string_view rest = accept_encoding;
  while (!rest.empty()) {
    std::string_view element = take_list_element(rest);
    const std::size_t semicolon = element.find(';');
    const std::string_view coding = trim_ows(element.substr(0, semicolon));
    element.remove_prefix(semicolon == std::string_view::npos ? element.size() : semicolon + 1);

    int quality = qvalue_scale;
    bool quality_seen = false;
    while (!element.empty()) {
      const std::size_t next = element.find(';');
      const std::string_view parameter = element.substr(0, next);
      element.remove_prefix(next == std::string_view::npos ? element.size() : next + 1);
      const std::size_t equals = parameter.find('=');
      if (equals == std::string_view::npos || quality_seen) continue;
      if (!equals_ignoring_case(trim_ows(parameter.substr(0, equals)), "q")) continue;
      quality_seen = true;
      quality = parse_qvalue(trim_ows(parameter.substr(equals + 1))).value_or(0);
    }

    if (equals_ignoring_case(coding, "gzip") || equals_ignoring_case(coding, "x-gzip")) {
      gzip_quality = std::max(gzip_quality.value_or(0), quality);
    } else if (coding == "*") {
      any_quality = std::max(any_quality.value_or(0), quality);
    }
  }
  if (gzip_quality) return *gzip_quality > 0;
  return any_quality.value_or(0) > 0;
}

std::string_view mime_type_for(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return default_mime_type;
  const std::string_view extension = name.substr(dot + 1);
  for (const MimeEntry& entry : mime_table) {
    if (equals_ignoring_case(extension, entry.extension)) return entry.type;
  }
  return default_mime_type;
}

}  // namespace stacknode::web
