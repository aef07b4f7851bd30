// Unit tests of services/web semantics: tables of {description, input, expected} for request path
// normalisation, byte ranges, HTTP dates, entity-tags and preconditions, If-Range, Cache-Control,
// Accept-Encoding and MIME types, replayed through the real functions in semantics.cpp.
#include <CppUTest/TestHarness.h>

#include <cstdint>
#include <ctime>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "semantics.hpp"

using namespace stacknode::web;

namespace {

constexpr std::uint64_t largest_size = std::numeric_limits<std::uint64_t>::max();

const char* outcome_name(RangeOutcome outcome) {
  switch (outcome) {
    case RangeOutcome::full: return "full";
    case RangeOutcome::partial: return "partial";
    case RangeOutcome::unsatisfiable: return "unsatisfiable";
  }
  return "?";
}

const char* precondition_name(Precondition precondition) {
  switch (precondition) {
    case Precondition::proceed: return "proceed";
    case Precondition::not_modified: return "not_modified";
    case Precondition::failed: return "failed";
  }
  return "?";
}

// Sun, 06 Nov 1994 08:49:37 GMT: the RFC 9110 example date, used as Last-Modified throughout.
constexpr std::time_t example_time = 784111777;

}  // namespace

// ---- Paths ----

TEST_GROUP(RequestPath){};

TEST(RequestPath, AcceptedTargetsNormalise) {
  struct Case {
    const char* description;
    std::string target;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"root", "/", "/"},
      {"plain file", "/index.html", "/index.html"},
      {"trailing slash kept", "/a/b/", "/a/b/"},
      {"double slash collapsed", "/a//b", "/a/b"},
      {"leading double slash collapsed", "//a", "/a"},
      {"many slashes", "///a///b///", "/a/b/"},
      {"dot segment dropped", "/a/./b", "/a/b"},
      {"dot-dot resolved", "/a/b/../c", "/a/c"},
      {"trailing dot-dot leaves directory", "/a/b/..", "/a/"},
      {"trailing dot leaves directory", "/a/.", "/a/"},
      {"dot-dot back to root", "/a/..", "/"},
      {"encoded dot-dot resolved", "/a/%2e%2e/b", "/b"},
      {"upper-case encoded dot-dot", "/a/%2E%2E/b", "/b"},
      {"mixed encoded dot-dot", "/a/.%2e/b", "/b"},
      {"encoded dot dropped", "/a/%2e/b", "/a/b"},
      {"encoded slash splits segments", "/a%2Fb", "/a/b"},
      {"encoded slash with dot-dots", "/a/b%2f..%2f..%2fc", "/c"},
      {"query dropped", "/a/b?x=1&y=2", "/a/b"},
      {"fragment dropped", "/a/b#top", "/a/b"},
      {"dot-dots in query are not path", "/a?../../../etc/passwd", "/a"},
      {"bad escape in query is not path", "/a?%zz", "/a"},
      {"empty query", "/?", "/"},
      {"encoded question mark is data", "/a%3Fb", "/a?b"},
      {"encoded hash is data", "/a%23b", "/a#b"},
      {"plus is not a space", "/a+b", "/a+b"},
      {"encoded space", "/a%20b", "/a b"},
      {"encoded percent decoded once", "/%2541", "/%41"},
      {"backslash is an ordinary byte", "/a\\..\\b", "/a\\..\\b"},
      {"utf-8 bytes", "/%e2%82%AC.txt", "/\xe2\x82\xac.txt"},
      {"three dots is a name", "/...", "/..."},
      {"dot-dot prefix is a name", "/..a/b..", "/..a/b.."},
      {"hidden file", "/.well-known/x", "/.well-known/x"},
  };
  for (const Case& test : cases) {
    const PathResult result = normalize_request_path(test.target);
    CHECK_TRUE_TEXT(result.ok, test.description);
    STRCMP_EQUAL_TEXT("", result.error.c_str(), test.description);
    STRCMP_EQUAL_TEXT(test.expected, result.path.c_str(), test.description);
  }
}

TEST(RequestPath, RefusedTargets) {
  struct Case {
    const char* description;
    std::string target;
  };
  const std::vector<Case> cases = {
      {"empty", ""},
      {"relative", "a/b"},
      {"asterisk form", "*"},
      {"absolute form", "http://host/a"},
      {"query only", "?a"},
      {"dot-dot at root", "/.."},
      {"dot-dot at root with slash", "/../"},
      {"dot-dot before a name", "/../a"},
      {"climbs two from one", "/a/../.."},
      {"climbs after names", "/a/b/../../../etc/passwd"},
      {"encoded dot-dot at root", "/%2e%2e/etc/passwd"},
      {"encoded traversal with encoded slashes", "/a/%2e%2e%2f%2e%2e%2fetc"},
      {"dot-dot then encoded slash", "/..%2fetc"},
      {"invalid hex digits", "/%zz"},
      {"one hex digit then end", "/%4"},
      {"percent at end", "/a%"},
      {"second digit invalid", "/a%4g"},
      {"first digit invalid", "/a%g4"},
      {"percent-encoded percent sign missing digits", "/%%41"},
      {"decoded NUL", "/a%00b"},
      {"raw NUL", std::string("/a\0b", 4)},
      {"over the length limit", "/" + std::string(max_path_bytes, 'a')},
  };
  for (const Case& test : cases) {
    const PathResult result = normalize_request_path(test.target);
    CHECK_FALSE_TEXT(result.ok, test.description);
    CHECK_FALSE_TEXT(result.error.empty(), test.description);
    CHECK_TRUE_TEXT(result.path.empty(), test.description);
  }
}

TEST(RequestPath, LimitAppliesToTheWholeTargetBeforeDecoding) {
  // max_path_bytes counts the raw target, query included: the limit is about work done.
  const std::string at_limit = "/" + std::string(max_path_bytes - 1, 'a');
  CHECK_TRUE(normalize_request_path(at_limit).ok);
  CHECK_FALSE(normalize_request_path(at_limit + "?").ok);
  // Encoded, the same target decodes to a third of its size yet is still refused.
  std::string encoded = "/";
  while (encoded.size() <= max_path_bytes) encoded += "%61";
  CHECK_TRUE(encoded.size() / 3 < max_path_bytes);
  CHECK_FALSE(normalize_request_path(encoded).ok);
  encoded.resize(encoded.size() - 3);  // back under the limit: accepted, decoded to "/aaa..."
  const PathResult decoded = normalize_request_path(encoded);
  CHECK_TRUE(decoded.ok);
  UNSIGNED_LONGS_EQUAL((encoded.size() - 1) / 3 + 1, decoded.path.size());
}

// ---- Byte ranges ----

TEST_GROUP(ByteRanges){};

TEST(ByteRanges, Table) {
  struct Case {
    const char* header;
    std::uint64_t size;
    RangeOutcome outcome;
    std::uint64_t first;
    std::uint64_t length;
  };
  constexpr auto full = RangeOutcome::full;
  constexpr auto partial = RangeOutcome::partial;
  constexpr auto unsatisfiable = RangeOutcome::unsatisfiable;
  const std::vector<Case> cases = {
      {"", 1000, full, 0, 0},
      {"bytes=0-99", 1000, partial, 0, 100},
      {"bytes=100-", 1000, partial, 100, 900},
      {"bytes=-500", 1000, partial, 500, 500},
      {"bytes=-1000", 1000, partial, 0, 1000},
      {"bytes=-5000", 1000, partial, 0, 1000},  // suffix larger than the file: all of it
      {"bytes=0-0", 1000, partial, 0, 1},
      {"bytes=999-", 1000, partial, 999, 1},
      {"bytes=999-999", 1000, partial, 999, 1},
      {"bytes=990-5000", 1000, partial, 990, 10},  // clipped to the end
      {"bytes=0-18446744073709551615", 1000, partial, 0, 1000},
      {"bytes=1000-", 1000, unsatisfiable, 0, 0},
      {"bytes=1000-1001", 1000, unsatisfiable, 0, 0},
      {"bytes=5-4", 1000, unsatisfiable, 0, 0},
      {"bytes=-0", 1000, unsatisfiable, 0, 0},
      {"bytes=", 1000, unsatisfiable, 0, 0},
      {"bytes=,,", 1000, unsatisfiable, 0, 0},
      {"bytes=abc", 1000, unsatisfiable, 0, 0},
      {"bytes=0-1x", 1000, unsatisfiable, 0, 0},
      {"bytes=-", 1000, unsatisfiable, 0, 0},
      {"bytes=--5", 1000, unsatisfiable, 0, 0},
      {"bytes=1-2-3", 1000, unsatisfiable, 0, 0},
      {"bytes=+1-2", 1000, unsatisfiable, 0, 0},
      {"bytes=0x10-20", 1000, unsatisfiable, 0, 0},
      {"bytes=0 - 99", 1000, unsatisfiable, 0, 0},  // no whitespace inside a range-spec
      {"bytes=18446744073709551616-", 1000, unsatisfiable, 0, 0},
      {"bytes=0-18446744073709551616", 1000, unsatisfiable, 0, 0},
      {"bytes=-18446744073709551616", 1000, unsatisfiable, 0, 0},
      {"bytes=99999999999999999999999999999999-", 1000, unsatisfiable, 0, 0},
      {"bytes = 0-99", 1000, partial, 0, 100},
      {"  bytes=  0-99  ", 1000, partial, 0, 100},
      {"bytes=\t0-99\t", 1000, partial, 0, 100},
      {"Bytes=0-99", 1000, partial, 0, 100},
      {"BYTES=0-99", 1000, partial, 0, 100},
      {"bytes=0-99,", 1000, partial, 0, 100},  // empty list elements are ignored
      {"bytes=,, 0-99 ,,", 1000, partial, 0, 100},
      {"bytes=0-99,200-299", 1000, full, 0, 0},
      {"bytes=0-99 , 200-299", 1000, full, 0, 0},
      {"bytes=-5,7-", 1000, full, 0, 0},
      {"bytes=0-99, 5000-6000", 1000, full, 0, 0},  // one satisfiable of several
      {"bytes=5000-6000, 0-99", 1000, full, 0, 0},
      {"bytes=0-99, junk", 1000, full, 0, 0},
      {"bytes=5000-6000, 7000-", 1000, unsatisfiable, 0, 0},  // none satisfiable
      {"bytes=5-4, -0, x", 1000, unsatisfiable, 0, 0},
      {"items=0-5", 1000, full, 0, 0},
      {"bytesx=0-5", 1000, full, 0, 0},
      {"bytes", 1000, full, 0, 0},
      {"bytes 0-5", 1000, full, 0, 0},
      {"=0-5", 1000, full, 0, 0},
      {"bytes=0-", 0, unsatisfiable, 0, 0},
      {"bytes=-5", 0, unsatisfiable, 0, 0},
      {"bytes=0-0", 0, unsatisfiable, 0, 0},
      {"bytes=0-0,-1", 0, unsatisfiable, 0, 0},
      {"", 0, full, 0, 0},
      {"items=1-2", 0, full, 0, 0},
      {"bytes=0-0", 1, partial, 0, 1},
      {"bytes=-1", 1, partial, 0, 1},
      {"bytes=-9", 1, partial, 0, 1},
      {"bytes=1-", 1, unsatisfiable, 0, 0},
      {"bytes=0-", largest_size, partial, 0, largest_size},
      {"bytes=-1", largest_size, partial, largest_size - 1, 1},
      {"bytes=-18446744073709551615", largest_size, partial, 0, largest_size},
      {"bytes=18446744073709551614-", largest_size, partial, largest_size - 1, 1},
      {"bytes=1-18446744073709551615", largest_size, partial, 1, largest_size - 1},
      {"bytes=18446744073709551615-", largest_size, unsatisfiable, 0, 0},
  };
  for (const Case& test : cases) {
    const std::string description = std::string("'") + test.header + "' size " + std::to_string(test.size);
    const RangeResult result = parse_range(test.header, test.size);
    STRCMP_EQUAL_TEXT(outcome_name(test.outcome), outcome_name(result.outcome), description.c_str());
    if (test.outcome == RangeOutcome::partial) {
      UNSIGNED_LONGLONGS_EQUAL_TEXT(test.first, result.range.first, description.c_str());
      UNSIGNED_LONGLONGS_EQUAL_TEXT(test.length, result.range.length, description.c_str());
    }
  }
}

TEST(ByteRanges, ManyRangesCostNothingExtra) {
  // An attacker's long range list must still give one answer: full, as several ranges do.
  std::string header = "bytes=";
  for (int index = 0; index < 10000; ++index) header += "0-0,";
  STRCMP_EQUAL("full", outcome_name(parse_range(header, 1000).outcome));
}

TEST(ByteRanges, ContentRangeValues) {
  STRCMP_EQUAL("bytes 0-99/1234", content_range({0, 100}, 1234).c_str());
  STRCMP_EQUAL("bytes 1233-1233/1234", content_range({1233, 1}, 1234).c_str());
  STRCMP_EQUAL("bytes 18446744073709551614-18446744073709551614/18446744073709551615",
               content_range({largest_size - 1, 1}, largest_size).c_str());
  STRCMP_EQUAL("bytes 0-18446744073709551614/18446744073709551615",
               content_range({0, largest_size}, largest_size).c_str());
  STRCMP_EQUAL("bytes */1234", unsatisfied_content_range(1234).c_str());
  STRCMP_EQUAL("bytes */0", unsatisfied_content_range(0).c_str());
  // An empty range cannot be spelled first-last; the 416 form is the honest answer.
  STRCMP_EQUAL("bytes */10", content_range({0, 0}, 10).c_str());
}

TEST(ByteRanges, ParsedRangeFormatsAsContentRange) {
  const RangeResult result = parse_range("bytes=-500", 1234);
  STRCMP_EQUAL("bytes 734-1233/1234", content_range(result.range, 1234).c_str());
}

// ---- Entity-tags ----

TEST_GROUP(EntityTags){};

TEST(EntityTags, MadeFromSizeAndModificationTime) {
  STRCMP_EQUAL("\"4d2-5f5e100\"", make_etag(1234, 100000000, false).c_str());
  STRCMP_EQUAL("\"4d2-5f5e100-gz\"", make_etag(1234, 100000000, true).c_str());
  STRCMP_EQUAL("\"0-0\"", make_etag(0, 0, false).c_str());
  STRCMP_EQUAL("\"ffffffffffffffff-7fffffffffffffff\"",
               make_etag(largest_size, std::numeric_limits<std::int64_t>::max(), false).c_str());
  STRCMP_EQUAL("\"1-ffffffffffffffff-gz\"", make_etag(1, -1, true).c_str());
  // Different files, or the same file changed by one nanosecond, get different tags.
  CHECK(make_etag(1, 2, false) != make_etag(2, 1, false));
  CHECK(make_etag(10, 1000, false) != make_etag(10, 1001, false));
}

// ---- Dates ----

TEST_GROUP(HttpDates){};

TEST(HttpDates, FormatsImfFixdate) {
  struct Case {
    std::time_t time;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
      {example_time, "Sun, 06 Nov 1994 08:49:37 GMT"},
      {951825600, "Tue, 29 Feb 2000 12:00:00 GMT"},
      {2147483648, "Tue, 19 Jan 2038 03:14:08 GMT"},
      {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
      {-2208988800, "Mon, 01 Jan 1900 00:00:00 GMT"},
      {253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"},
      // Outside what four year digits can spell: clamped to the nearest representable time.
      {std::numeric_limits<std::time_t>::max(), "Fri, 31 Dec 9999 23:59:59 GMT"},
      {253402300800, "Fri, 31 Dec 9999 23:59:59 GMT"},
      {std::numeric_limits<std::time_t>::min(), "Mon, 01 Jan 1900 00:00:00 GMT"},
  };
  for (const Case& test : cases) {
    STRCMP_EQUAL_TEXT(test.expected, format_http_date(test.time).c_str(),
                      std::to_string(test.time).c_str());
  }
}

TEST(HttpDates, ParsesTheThreeForms) {
  struct Case {
    const char* text;
    std::time_t expected;
  };
  const std::vector<Case> cases = {
      {"Sun, 06 Nov 1994 08:49:37 GMT", example_time},
      {"Sunday, 06-Nov-94 08:49:37 GMT", example_time},
      {"Sun Nov  6 08:49:37 1994", example_time},
      {"Sun Nov 06 08:49:37 1994", example_time},  // asctime's day may be two digits
      {"Wed Nov 16 08:49:37 1994", 784975777},
      {"  Sun, 06 Nov 1994 08:49:37 GMT\t", example_time},  // surrounding whitespace
      {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
      {"Thursday, 01-Jan-70 00:00:00 GMT", 0},            // yy >= 70: 19yy
      {"Wednesday, 31-Dec-69 23:59:59 GMT", 3155759999},  // yy < 70: 20yy
      {"Saturday, 01-Jan-00 00:00:00 GMT", 946684800},
      {"Tue, 29 Feb 2000 12:00:00 GMT", 951825600},  // leap year
      {"Mon, 01 Jan 1900 00:00:00 GMT", -2208988800},
      {"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799},
      {"Sat, 31 Dec 2016 23:59:60 GMT", 1483228799},  // leap second held at :59
      {"Mon, 06 Nov 1994 08:49:37 GMT", example_time},  // weekday not cross-checked
  };
  for (const Case& test : cases) {
    const auto parsed = parse_http_date(test.text);
    CHECK_TRUE_TEXT(parsed.has_value(), test.text);
    LONGLONGS_EQUAL_TEXT(test.expected, *parsed, test.text);
  }
}

TEST(HttpDates, RefusesEverythingElse) {
  const std::vector<const char*> cases = {
      "",
      "garbage",
      "784111777",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 08:49:37 gmt",
      "sun, 06 nov 1994 08:49:37 GMT",  // names are case-sensitive
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 94 08:49:37 GMT",
      "Sun,06 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 08:49:37 GMT x",
      "Sun, 06 Nov 1994 08:49:37",
      "Sun, 06 Nov 1994 8:49:37 GMT",
      "Sun, 06 Nov 1994 08-49-37 GMT",
      "Sun, 06 Nov 1994 08:4a:37 GMT",
      "Sun, +6 Nov 1994 08:49:37 GMT",
      "Xyz, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06 Foo 1994 08:49:37 GMT",
      "Sun, 00 Nov 1994 08:49:37 GMT",
      "Sun, 32 Jan 1994 08:49:37 GMT",
      "Sun, 31 Nov 1994 08:49:37 GMT",
      "Sun, 30 Feb 2000 08:49:37 GMT",
      "Sun, 29 Feb 1900 08:49:37 GMT",  // 1900 is not a leap year
      "Sun, 29 Feb 1999 08:49:37 GMT",
      "Sun, 06 Nov 1994 24:00:00 GMT",
      "Sun, 06 Nov 1994 08:60:00 GMT",
      "Sun, 06 Nov 1994 08:49:61 GMT",
      "Sun, 06 Nov 1899 08:49:37 GMT",  // before the earliest HTTP year
      "Sunday, 06-Nov-1994 08:49:37 GMT",
      "Sun, 06-Nov-94 08:49:37 GMT",  // RFC 850 needs the long day name
      "Sunday, 06 Nov 1994 08:49:37 GMT",
      "Funday, 06-Nov-94 08:49:37 GMT",
      "Sunday, 06-Nov-94 08:49:37 UTC",
      "Sunday, 31-Apr-94 08:49:37 GMT",
      "Sun Nov 6 08:49:37 1994",  // asctime pads a one-digit day with a space
      "Sun Nov  6 08:49:37 94",
      "Sun Nov  6 08:49:37 1994 GMT",
      "Sun Nov  0 08:49:37 1994",
      "Sunday Nov  6 08:49:37 1994",
  };
  for (const char* text : cases) {
    CHECK_FALSE_TEXT(parse_http_date(text).has_value(), text);
  }
}

TEST(HttpDates, FormattedDatesRoundTrip) {
  // Every day from 1900 to 9999 at a moving time of day, plus the edges.
  constexpr std::time_t seconds_per_step = 86400 * 97 + 3671;
  std::size_t checked = 0;
  for (std::time_t time = -2208988800; time <= 253402300799; time += seconds_per_step) {
    const auto parsed = parse_http_date(format_http_date(time));
    CHECK_TRUE(parsed.has_value());
    if (*parsed != time) LONGLONGS_EQUAL(time, *parsed);
    ++checked;
  }
  CHECK_TRUE(checked > 30000);
}

// ---- Preconditions ----

TEST_GROUP(Preconditions){};

TEST(Preconditions, Rfc9110Order) {
  const std::string etag = make_etag(1234, 5, false);  // "\"4d2-5\""
  const char* before = "Sun, 06 Nov 1994 08:49:36 GMT";
  const char* equal = "Sun, 06 Nov 1994 08:49:37 GMT";
  const char* after = "Sun, 06 Nov 1994 08:49:38 GMT";
  struct Case {
    const char* description;
    ConditionalHeaders headers;
    bool get_or_head;
    Precondition expected;
  };
  constexpr auto proceed = Precondition::proceed;
  constexpr auto not_modified = Precondition::not_modified;
  constexpr auto failed = Precondition::failed;
  const std::vector<Case> cases = {
      {"no conditions, GET", {}, true, proceed},
      {"no conditions, PUT", {}, false, proceed},
      // If-None-Match: weak comparison.
      {"INM same tag GET", {"", "\"4d2-5\"", "", ""}, true, not_modified},
      {"INM weak same tag GET", {"", "W/\"4d2-5\"", "", ""}, true, not_modified},
      {"INM same tag PUT", {"", "\"4d2-5\"", "", ""}, false, failed},
      {"INM star GET", {"", "*", "", ""}, true, not_modified},
      {"INM star PUT", {"", " * ", "", ""}, false, failed},
      {"INM other tag", {"", "\"4d2-6\"", "", ""}, true, proceed},
      {"INM gzip variant differs", {"", "\"4d2-5-gz\"", "", ""}, true, proceed},
      {"INM list with spaces", {"", "\"x\", \"4d2-5\"", "", ""}, true, not_modified},
      {"INM list without spaces", {"", "\"x\",W/\"4d2-5\"", "", ""}, true, not_modified},
      {"INM list padded", {"", "  \"x\" ,\t\"4d2-5\" , ", "", ""}, true, not_modified},
      {"INM list none match", {"", "\"a\", \"b\", W/\"c\"", "", ""}, true, proceed},
      {"INM comma inside tag", {"", "\"4d2-5,\"", "", ""}, true, proceed},
      {"INM unquoted", {"", "4d2-5", "", ""}, true, proceed},
      {"INM lower-case w/", {"", "w/\"4d2-5\"", "", ""}, true, proceed},
      {"INM trailing junk", {"", "\"4d2-5\" junk", "", ""}, true, proceed},
      {"INM junk after match", {"", "\"4d2-5\", junk", "", ""}, true, proceed},
      {"INM unterminated", {"", "\"4d2-5", "", ""}, true, proceed},
      {"INM star inside list", {"", "\"x\", *", "", ""}, true, proceed},
      // If-Modified-Since: GET/HEAD only, only without If-None-Match.
      {"IMS equal GET", {"", "", equal, ""}, true, not_modified},
      {"IMS later GET", {"", "", after, ""}, true, not_modified},
      {"IMS earlier GET", {"", "", before, ""}, true, proceed},
      {"IMS equal PUT", {"", "", equal, ""}, false, proceed},
      {"IMS RFC 850", {"", "", "Sunday, 06-Nov-94 08:49:37 GMT", ""}, true, not_modified},
      {"IMS asctime", {"", "", "Sun Nov  6 08:49:37 1994", ""}, true, not_modified},
      {"IMS unparseable", {"", "", "yesterday", ""}, true, proceed},
      {"IMS ignored with INM", {"", "\"other\"", equal, ""}, true, proceed},
      {"INM wins over stale IMS", {"", "\"4d2-5\"", before, ""}, true, not_modified},
      // If-Match: strong comparison.
      {"IM same tag", {"\"4d2-5\"", "", "", ""}, false, proceed},
      {"IM same tag GET", {"\"4d2-5\"", "", "", ""}, true, proceed},
      {"IM weak tag never matches", {"W/\"4d2-5\"", "", "", ""}, false, failed},
      {"IM star", {"*", "", "", ""}, false, proceed},
      {"IM other tag", {"\"4d2-6\"", "", "", ""}, false, failed},
      {"IM other tag GET", {"\"4d2-6\"", "", "", ""}, true, failed},
      {"IM list", {"\"a\", \"4d2-5\"", "", "", ""}, false, proceed},
      {"IM malformed", {"4d2-5", "", "", ""}, false, failed},
      // If-Unmodified-Since: only without If-Match.
      {"IUS earlier", {"", "", "", before}, false, failed},
      {"IUS earlier GET", {"", "", "", before}, true, failed},
      {"IUS equal", {"", "", "", equal}, false, proceed},
      {"IUS later", {"", "", "", after}, false, proceed},
      {"IUS unparseable", {"", "", "", "not a date"}, false, proceed},
      {"IUS ignored with matching IM", {"\"4d2-5\"", "", "", before}, false, proceed},
      // Order between the steps.
      {"IM ok then INM match GET", {"\"4d2-5\"", "\"4d2-5\"", "", ""}, true, not_modified},
      {"IM fails before INM", {"\"x\"", "\"4d2-5\"", "", ""}, true, failed},
      {"IUS fails before INM", {"", "\"4d2-5\"", "", before}, true, failed},
      {"IUS ok then IMS", {"", "", equal, after}, true, not_modified},
  };
  for (const Case& test : cases) {
    const Precondition result = evaluate_preconditions(test.headers, etag, example_time, test.get_or_head);
    STRCMP_EQUAL_TEXT(precondition_name(test.expected), precondition_name(result), test.description);
  }
}

TEST_GROUP(IfRange){};

TEST(IfRange, StrongValidatorsOnly) {
  const std::string etag = make_etag(1234, 5, false);  // "\"4d2-5\""
  struct Case {
    const char* if_range;
    bool allowed;
  };
  const std::vector<Case> cases = {
      {"", true},
      {"  ", true},
      {"\"4d2-5\"", true},
      {" \"4d2-5\" ", true},
      {"W/\"4d2-5\"", false},  // a weak tag never matches
      {"\"4d2-6\"", false},
      {"\"4d2-5\", \"x\"", false},  // one validator, not a list
      {"\"4d2-5", false},
      {"*", false},
      {"Sun, 06 Nov 1994 08:49:37 GMT", true},
      {"Sunday, 06-Nov-94 08:49:37 GMT", true},
      {"Sun Nov  6 08:49:37 1994", true},
      {"Sun, 06 Nov 1994 08:49:36 GMT", false},  // must equal Last-Modified exactly
      {"Sun, 06 Nov 1994 08:49:38 GMT", false},
      {"not a date", false},
  };
  for (const Case& test : cases) {
    CHECK_EQUAL_TEXT(test.allowed, if_range_allows(test.if_range, etag, example_time), test.if_range);
  }
  // A current weak ETag cannot satisfy a strong comparison either.
  CHECK_FALSE(if_range_allows("W/\"4d2-5\"", "W/\"4d2-5\"", example_time));
  CHECK_FALSE(if_range_allows("\"4d2-5\"", "W/\"4d2-5\"", example_time));
}

// ---- Cache-Control ----

TEST_GROUP(CacheControlHeader){};

TEST(CacheControlHeader, Table) {
  constexpr std::int64_t none = -1;  // the optional is empty
  constexpr std::int64_t cap = std::int64_t{1} << 31;
  struct Case {
    const char* header;
    bool no_store, no_cache, is_private, is_public, must_revalidate;
    std::int64_t max_age, s_maxage;
  };
  const std::vector<Case> cases = {
      {"", false, false, false, false, false, none, none},
      {"max-age=60", false, false, false, false, false, 60, none},
      {"MAX-AGE=60", false, false, false, false, false, 60, none},
      {"Max-Age=0060", false, false, false, false, false, 60, none},
      {"max-age=\"30\"", false, false, false, false, false, 30, none},
      {"max-age=60, s-maxage=\"30\"", false, false, false, false, false, 60, 30},
      {"s-maxage=10", false, false, false, false, false, none, 10},
      {" max-age = 60 ", false, false, false, false, false, 60, none},
      {"max-age=abc", false, false, false, false, false, 0, none},
      {"max-age=-5", false, false, false, false, false, 0, none},
      {"max-age=", false, false, false, false, false, 0, none},
      {"max-age", false, false, false, false, false, 0, none},
      {"max-age=60x", false, false, false, false, false, 0, none},
      {"max-age=6 0", false, false, false, false, false, 0, none},
      {"max-age=\"\"", false, false, false, false, false, 0, none},
      {"max-age=\"60", false, false, false, false, false, 0, none},
      {"max-age=2147483647", false, false, false, false, false, 2147483647, none},
      {"max-age=2147483648", false, false, false, false, false, cap, none},
      {"max-age=2147483649", false, false, false, false, false, cap, none},
      {"max-age=99999999999999999999999999999", false, false, false, false, false, cap, none},
      {"max-age=60, max-age=60", false, false, false, false, false, 60, none},
      {"max-age=60, max-age=120", false, false, false, false, false, 0, none},  // conflict: stale
      {"no-store", true, false, false, false, false, none, none},
      {"No-Store", true, false, false, false, false, none, none},
      {"no-storex, xno-store", false, false, false, false, false, none, none},
      {"no-cache, private, public, must-revalidate", false, true, true, true, true, none, none},
      {"NO-CACHE,PRIVATE,PUBLIC,MUST-REVALIDATE", false, true, true, true, true, none, none},
      {"private=\"Set-Cookie, X-Foo\", max-age=5", false, false, true, false, false, 5, none},
      {"no-cache=\"a,b\"", false, true, false, false, false, none, none},
      {"foo=bar, max-age=10, baz", false, false, false, false, false, 10, none},
      {"x=\"max-age=5\"", false, false, false, false, false, none, none},
      {"x=\"a\\\", max-age=5\", max-age=7", false, false, false, false, false, 7, none},
      {",,max-age=3,,", false, false, false, false, false, 3, none},
      {"public, max-age=31536000, s-maxage=0", false, false, false, true, false, 31536000, 0},
  };
  for (const Case& test : cases) {
    const CacheControl result = parse_cache_control(test.header);
    CHECK_EQUAL_TEXT(test.no_store, result.no_store, test.header);
    CHECK_EQUAL_TEXT(test.no_cache, result.no_cache, test.header);
    CHECK_EQUAL_TEXT(test.is_private, result.is_private, test.header);
    CHECK_EQUAL_TEXT(test.is_public, result.is_public, test.header);
    CHECK_EQUAL_TEXT(test.must_revalidate, result.must_revalidate, test.header);
    LONGLONGS_EQUAL_TEXT(test.max_age, result.max_age.value_or(none), test.header);
    LONGLONGS_EQUAL_TEXT(test.s_maxage, result.s_maxage.value_or(none), test.header);
  }
}

// ---- Accept-Encoding ----

TEST_GROUP(AcceptEncoding){};

TEST(AcceptEncoding, Table) {
  struct Case {
    const char* header;
    bool accepted;
  };
  const std::vector<Case> cases = {
      {"", false},
      {"gzip", true},
      {"GZIP", true},
      {"  gzip  ", true},
      {"x-gzip", true},
      {"X-Gzip", true},
      {"deflate, gzip", true},
      {"gzip, deflate, br", true},
      {"deflate, br", false},
      {"identity", false},
      {"identity;q=1, *;q=0", false},
      {"gzipx", false},
      {"agzip", false},
      {"gzip;q=0", false},
      {"gzip;Q=0", false},
      {"gzip; q=0.5", true},
      {"gzip ; q=0.001", true},
      {"gzip;q=0.000", false},
      {"gzip;q=0.", false},
      {"gzip;q=1", true},
      {"gzip;q=1.", true},
      {"gzip;q=1.000", true},
      {"gzip;q=1.001", false},  // not a qvalue: counts as 0
      {"gzip;q=2", false},
      {"gzip;q=abc", false},
      {"gzip;q=", false},
      {"gzip;q=0.5000", false},
      {"gzip;q=-1", false},
      {"gzip;q = 0.5", true},
      {"gzip;level=9", true},  // other parameters ignored
      {"gzip;level=9;q=0", false},
      {"gzip;q=0;q=1", false},  // the first q counts
      {"*", true},
      {"*;q=0.1", true},
      {"*;q=0", false},
      {"gzip;q=0, *", false},  // named gzip beats "*"
      {"*, gzip;q=0", false},
      {"gzip;q=0.5, *;q=0", true},
      {"br;q=1.0, gzip;q=0.8, *;q=0.1", true},
      {"gzip;q=0, x-gzip;q=0.5", true},  // one coding: the highest q wins
      {";q=1", false},
      {",,,", false},
  };
  for (const Case& test : cases) {
    CHECK_EQUAL_TEXT(test.accepted, accepts_gzip(test.header), test.header);
  }
}

// ---- MIME types ----

TEST_GROUP(MimeTypes){};

TEST(MimeTypes, Table) {
  struct Case {
    const char* path;
    const char* type;
  };
  const std::vector<Case> cases = {
      {"/index.html", "text/html; charset=utf-8"},
      {"/a.htm", "text/html; charset=utf-8"},
      {"/a.css", "text/css; charset=utf-8"},
      {"/a.js", "text/javascript; charset=utf-8"},
      {"/a.mjs", "text/javascript; charset=utf-8"},
      {"/a.json", "application/json; charset=utf-8"},
      {"/a.txt", "text/plain; charset=utf-8"},
      {"/a.xml", "application/xml; charset=utf-8"},
      {"/a.svg", "image/svg+xml; charset=utf-8"},
      {"/a.csv", "text/csv; charset=utf-8"},
      {"/a.md", "text/markdown; charset=utf-8"},
      {"/a.js.map", "application/json; charset=utf-8"},
      {"/a.png", "image/png"},
      {"/a.jpg", "image/jpeg"},
      {"/a.jpeg", "image/jpeg"},
      {"/a.gif", "image/gif"},
      {"/a.webp", "image/webp"},
      {"/a.avif", "image/avif"},
      {"/favicon.ico", "image/vnd.microsoft.icon"},
      {"/a.woff", "font/woff"},
      {"/a.woff2", "font/woff2"},
      {"/a.ttf", "font/ttf"},
      {"/a.otf", "font/otf"},
      {"/a.pdf", "application/pdf"},
      {"/a.wasm", "application/wasm"},
      {"/a.mp4", "video/mp4"},
      {"/a.webm", "video/webm"},
      {"/a.mp3", "audio/mpeg"},
      {"/a.ogg", "audio/ogg"},
      {"/a.wav", "audio/wav"},
      {"/a.zip", "application/zip"},
      {"/archive.tar.gz", "application/gzip"},
      {"/a.tar", "application/x-tar"},
      {"/STYLE.CSS", "text/css; charset=utf-8"},
      {"/Photo.JpEg", "image/jpeg"},
      {"index.html", "text/html; charset=utf-8"},
      {"/README", "application/octet-stream"},
      {"/dir.d/file", "application/octet-stream"},
      {"/file.", "application/octet-stream"},
      {"/a.html/", "application/octet-stream"},
      {"/a.unknown", "application/octet-stream"},
      {"/a.htmlx", "application/octet-stream"},
      {"/a.ht", "application/octet-stream"},
      {"", "application/octet-stream"},
  };
  for (const Case& test : cases) {
    const std::string type(mime_type_for(test.path));
    STRCMP_EQUAL_TEXT(test.type, type.c_str(), test.path);
  }
}
