// Unit tests of services/web ResponseCache: each numbered rule of response_cache.hpp (request
// decisions, storability, Vary: Accept-Encoding, LRU byte budget, freshness), its byte accounting
// and metrics, and a concurrent run checked for final consistency. Time is always passed in.
#include <CppUTest/TestHarness.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "response_cache.hpp"
#include "stacknode/common/metrics.hpp"

using stacknode::metrics::Registry;
using stacknode::web::CacheDecision;
using stacknode::web::CacheLimits;
using stacknode::web::CacheRequest;
using stacknode::web::CachedResponse;
using stacknode::web::HeaderList;
using stacknode::web::ResponseCache;

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

// An arbitrary fixed instant; tests move time by adding to it, never by sleeping.
const Clock::time_point start_time = Clock::time_point{} + std::chrono::hours(1000);

constexpr std::string_view metrics_prefix = "web";

// Limits small enough that tests reason about every byte. max_object_bytes == max_bytes gives
// the cache a single shard (fewer than four largest objects fit), so LRU order is global.
constexpr std::size_t small_cache_bytes = 4096;
constexpr CacheLimits small_limits{small_cache_bytes, small_cache_bytes};

CacheRequest get(std::string_view target, std::string_view accept_encoding = "") {
  CacheRequest request;
  request.method = "GET";
  request.host = "example.com";
  request.target = target;
  request.accept_encoding = accept_encoding;
  return request;
}

CacheRequest with_method(CacheRequest request, std::string_view method) {
  request.method = method;
  return request;
}

HeaderList fresh_for(std::string_view seconds_text) {
  return {{"Content-Type", "text/plain"}, {"Cache-Control", "max-age=" + std::string(seconds_text)}};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

double metric_value(const Registry& registry, const std::string& name) {
  const auto text = registry.expose();
  const auto line_start = text.find("\n" + name + " ");
  if (line_start == std::string::npos) FAIL(("metric not exposed: " + name).c_str());
  return std::stod(text.substr(line_start + name.size() + 2));
}

std::string field_value(const HeaderList& headers, std::string_view name) {
  for (const auto& [field_name, value] : headers) {
    if (field_name == name) return value;
  }
  return "<absent>";
}

// The bytes one entry takes, measured on a cache of its own (the key layout is not this test's
// business; rule 5 only says keys count).
std::size_t stored_size(const CacheRequest& request, const HeaderList& headers,
                        std::string_view body) {
  Registry registry;
  ResponseCache cache(small_limits, registry, metrics_prefix);
  CHECK_TRUE(cache.offer(request, 200, headers, body, start_time));
  return cache.bytes();
}

}  // namespace

TEST_GROUP(ResponseCacheDecide){};

TEST(ResponseCacheDecide, PlainGetAndHeadAreLookedUp) {
  CHECK(ResponseCache::decide(get("/")) == CacheDecision::lookup);
  CHECK(ResponseCache::decide(with_method(get("/"), "HEAD")) == CacheDecision::lookup);
}

TEST(ResponseCacheDecide, RequestNoStoreIsNoStoreRequest) {
  auto request = get("/");
  request.cache_control = "no-store";
  CHECK(ResponseCache::decide(request) == CacheDecision::no_store_request);
  request.cache_control = "max-age=10, NO-STORE";
  CHECK(ResponseCache::decide(request) == CacheDecision::no_store_request);
}

TEST(ResponseCacheDecide, RequestNoCacheBypasses) {
  auto request = get("/");
  request.cache_control = "no-cache";
  CHECK(ResponseCache::decide(request) == CacheDecision::bypass);
}

TEST(ResponseCacheDecide, AuthorizationIsNeitherServedNorStored) {
  auto request = get("/");
  request.has_authorization = true;
  CHECK(ResponseCache::decide(request) == CacheDecision::no_store_request);
}

TEST(ResponseCacheDecide, OtherMethodsAreNeverCached) {
  for (const auto method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"}) {
    CHECK(ResponseCache::decide(with_method(get("/"), method)) == CacheDecision::no_store_request);
  }
}

TEST_GROUP(ResponseCache) {
  Registry registry;
  ResponseCache cache{small_limits, registry, metrics_prefix};
};

TEST(ResponseCache, HitAfterStoreWithMaxAge) {
  CHECK_TRUE(cache.offer(get("/page?q=1"), 200, fresh_for("60"), "hello", start_time));
  const auto response = cache.lookup(get("/page?q=1"), start_time + seconds(1));
  CHECK_TRUE(response != nullptr);
  UNSIGNED_LONGS_EQUAL(200, response->status);
  STRCMP_EQUAL("hello", response->body.c_str());
  STRCMP_EQUAL("text/plain", field_value(response->headers, "Content-Type").c_str());
  CHECK_TRUE(response->stored_at == start_time);
  CHECK_TRUE(response->fresh_until == start_time + seconds(60));
  LONGS_EQUAL(1, cache.entries());
}

TEST(ResponseCache, KeyIsHostAndTargetWithCaseInsensitiveHost) {
  CHECK_TRUE(cache.offer(get("/page?q=1"), 200, fresh_for("60"), "hello", start_time));
  auto other_case_host = get("/page?q=1");
  other_case_host.host = "EXAMPLE.com";
  CHECK_TRUE(cache.lookup(other_case_host, start_time) != nullptr);
  auto other_host = get("/page?q=1");
  other_host.host = "example.org";
  CHECK_TRUE(cache.lookup(other_host, start_time) == nullptr);
  CHECK_TRUE(cache.lookup(get("/page?q=2"), start_time) == nullptr);
  CHECK_TRUE(cache.lookup(get("/PAGE?q=1"), start_time) == nullptr);
}

TEST(ResponseCache, SMaxAgeTakesPrecedenceOverMaxAge) {
  const HeaderList shorter_shared = {{"Cache-Control", "max-age=100, s-maxage=10"}};
  CHECK_TRUE(cache.offer(get("/short"), 200, shorter_shared, "x", start_time));
  CHECK_TRUE(cache.lookup(get("/short"), start_time + seconds(9)) != nullptr);
  CHECK_TRUE(cache.lookup(get("/short"), start_time + seconds(11)) == nullptr);

  const HeaderList longer_shared = {{"Cache-Control", "s-maxage=100, max-age=10"}};
  CHECK_TRUE(cache.offer(get("/long"), 200, longer_shared, "x", start_time));
  CHECK_TRUE(cache.lookup(get("/long"), start_time + seconds(50)) != nullptr);

  const HeaderList zero_shared = {{"Cache-Control", "max-age=100, s-maxage=0"}};
  CHECK_FALSE(cache.offer(get("/zero"), 200, zero_shared, "x", start_time));
}

TEST(ResponseCache, CacheControlSplitOverSeveralFieldsIsCombined) {
  const HeaderList split = {{"cache-control", "public"}, {"CACHE-CONTROL", "max-age=30"}};
  CHECK_TRUE(cache.offer(get("/split"), 200, split, "x", start_time));
  const HeaderList split_private = {{"Cache-Control", "max-age=30"}, {"Cache-Control", "private"}};
  CHECK_FALSE(cache.offer(get("/split-private"), 200, split_private, "x", start_time));
}

TEST(ResponseCache, ResponsesWithoutExplicitFreshnessAreNotStored) {
  CHECK_FALSE(cache.offer(get("/"), 200, {}, "x", start_time));
  CHECK_FALSE(cache.offer(get("/"), 200, {{"Cache-Control", "public"}}, "x", start_time));
  CHECK_FALSE(cache.offer(get("/"), 200, fresh_for("0"), "x", start_time));
  CHECK_FALSE(cache.offer(get("/"), 200, {{"Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}}, "x",
                          start_time));
  LONGS_EQUAL(0, cache.entries());
}

TEST(ResponseCache, ResponsesThatMustNotBeSharedAreNotStored) {
  struct Case {
    const char* description;
    HeaderList headers;
  };
  const Case cases[] = {
      {"no-store", {{"Cache-Control", "max-age=60, no-store"}}},
      {"no-cache", {{"Cache-Control", "max-age=60, no-cache"}}},
      {"private", {{"Cache-Control", "private, max-age=60"}}},
      {"private, upper case", {{"cache-control", "PRIVATE, s-maxage=60"}}},
      {"Set-Cookie", {{"Cache-Control", "max-age=60"}, {"Set-Cookie", "session=1"}}},
      {"set-cookie, lower case", {{"Cache-Control", "max-age=60"}, {"set-cookie", "a=b"}}},
      {"Vary: *", {{"Cache-Control", "max-age=60"}, {"Vary", "*"}}},
      {"Vary: Cookie", {{"Cache-Control", "max-age=60"}, {"Vary", "Cookie"}}},
      {"Vary: Accept-Encoding, User-Agent",
       {{"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding, User-Agent"}}},
      {"Vary split over two fields",
       {{"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding"}, {"vary", "Cookie"}}},
  };
  for (const auto& test_case : cases) {
    CHECK_FALSE_TEXT(cache.offer(get("/"), 200, test_case.headers, "x", start_time),
                     test_case.description);
    CHECK_TEXT(cache.lookup(get("/"), start_time) == nullptr, test_case.description);
  }
  LONGS_EQUAL(0, cache.entries());
  LONGS_EQUAL(0, cache.bytes());
}

TEST(ResponseCache, OnlyHeuristicallyCacheableStatusesAreStored) {
  for (const unsigned status : {200u, 203u, 204u, 300u, 301u, 308u, 404u, 405u, 410u, 414u, 501u}) {
    const auto target = "/status/" + std::to_string(status);
    CHECK_TEXT(cache.offer(get(target), status, fresh_for("60"), "", start_time), target.c_str());
  }
  for (const unsigned status : {201u, 206u, 302u, 304u, 307u, 400u, 403u, 500u, 502u, 503u}) {
    const auto target = "/status/" + std::to_string(status);
    CHECK_FALSE_TEXT(cache.offer(get(target), status, fresh_for("60"), "", start_time),
                     target.c_str());
  }
  LONGS_EQUAL(11, cache.entries());
  UNSIGNED_LONGS_EQUAL(404, cache.lookup(get("/status/404"), start_time)->status);
}

TEST(ResponseCache, VaryAcceptEncodingKeysByGzipAcceptance) {
  HeaderList gzip_headers = fresh_for("60");
  gzip_headers.emplace_back("Vary", "Accept-Encoding");
  gzip_headers.emplace_back("Content-Encoding", "gzip");
  HeaderList identity_headers = fresh_for("60");
  identity_headers.emplace_back("vary", "accept-encoding");

  CHECK_TRUE(cache.offer(get("/v", "gzip, br"), 200, gzip_headers, "compressed", start_time));
  CHECK_TRUE(cache.lookup(get("/v"), start_time) == nullptr);
  CHECK_TRUE(cache.lookup(get("/v", "br"), start_time) == nullptr);
  CHECK_TRUE(cache.lookup(get("/v", "gzip;q=0"), start_time) == nullptr);
  const auto gzip_hit = cache.lookup(get("/v", "br, gzip"), start_time);
  CHECK_TRUE(gzip_hit != nullptr);
  STRCMP_EQUAL("compressed", gzip_hit->body.c_str());

  CHECK_TRUE(cache.offer(get("/v", "identity"), 200, identity_headers, "plain", start_time));
  LONGS_EQUAL(2, cache.entries());
  STRCMP_EQUAL("plain", cache.lookup(get("/v"), start_time)->body.c_str());
  STRCMP_EQUAL("compressed", cache.lookup(get("/v", "gzip"), start_time)->body.c_str());
  STRCMP_EQUAL("plain", cache.lookup(get("/v", "deflate"), start_time)->body.c_str());
}

TEST(ResponseCache, UnvariedResponseReplacesBothVariants) {
  HeaderList varied = fresh_for("60");
  varied.emplace_back("Vary", "Accept-Encoding");
  CHECK_TRUE(cache.offer(get("/v", "gzip"), 200, varied, "compressed", start_time));
  CHECK_TRUE(cache.offer(get("/v"), 200, varied, "plain", start_time));
  LONGS_EQUAL(2, cache.entries());

  CHECK_TRUE(cache.offer(get("/v"), 200, fresh_for("60"), "same for all", start_time));
  LONGS_EQUAL(1, cache.entries());
  LONGS_EQUAL(stored_size(get("/v"), fresh_for("60"), "same for all"), cache.bytes());
  STRCMP_EQUAL("same for all", cache.lookup(get("/v", "gzip"), start_time)->body.c_str());
  STRCMP_EQUAL("same for all", cache.lookup(get("/v"), start_time)->body.c_str());

  CHECK_TRUE(cache.offer(get("/v", "gzip"), 200, varied, "compressed again", start_time));
  LONGS_EQUAL(1, cache.entries());
  STRCMP_EQUAL("compressed again", cache.lookup(get("/v", "gzip"), start_time)->body.c_str());
  CHECK_TRUE(cache.lookup(get("/v"), start_time) == nullptr);
}

TEST(ResponseCache, RequestNoStoreIsNeverStoredButNoCacheMayBe) {
  auto no_store = get("/a");
  no_store.cache_control = "no-store";
  CHECK_FALSE(cache.offer(no_store, 200, fresh_for("60"), "x", start_time));

  auto no_cache = get("/b");
  no_cache.cache_control = "no-cache";
  CHECK_TRUE(cache.lookup(no_cache, start_time) == nullptr);
  CHECK_TRUE(cache.offer(no_cache, 200, fresh_for("60"), "x", start_time));
  CHECK_TRUE(cache.lookup(no_cache, start_time) == nullptr);  // still bypasses
  CHECK_TRUE(cache.lookup(get("/b"), start_time) != nullptr);
  LONGS_EQUAL(1, cache.entries());
}

TEST(ResponseCache, AuthorizationIsNeitherServedNorStored) {
  CHECK_TRUE(cache.offer(get("/private"), 200, fresh_for("60"), "public copy", start_time));
  auto authorized = get("/private");
  authorized.has_authorization = true;
  CHECK_TRUE(cache.lookup(authorized, start_time) == nullptr);
  CHECK_FALSE(cache.offer(authorized, 200, fresh_for("60"), "for one user", start_time));
  STRCMP_EQUAL("public copy", cache.lookup(get("/private"), start_time)->body.c_str());
}

TEST(ResponseCache, HeadIsServedFromTheGetEntryButNotStored) {
  const auto head = with_method(get("/doc"), "HEAD");
  CHECK_FALSE(cache.offer(head, 200, fresh_for("60"), "", start_time));
  CHECK_TRUE(cache.lookup(get("/doc"), start_time) == nullptr);

  CHECK_TRUE(cache.offer(get("/doc"), 200, fresh_for("60"), "document", start_time));
  const auto response = cache.lookup(head, start_time);
  CHECK_TRUE(response != nullptr);
  STRCMP_EQUAL("document", response->body.c_str());  // the caller sends the head only
}

TEST(ResponseCache, PostIsNeverCachedAndASuccessfulOneInvalidates) {
  const auto post = with_method(get("/form"), "POST");
  CHECK_FALSE(cache.offer(post, 200, fresh_for("60"), "posted", start_time));
  CHECK_TRUE(cache.lookup(post, start_time) == nullptr);
  LONGS_EQUAL(0, cache.entries());

  CHECK_TRUE(cache.offer(get("/form"), 200, fresh_for("60"), "form", start_time));
  CHECK_FALSE(cache.offer(post, 500, {}, "failed", start_time));
  CHECK_TRUE(cache.lookup(get("/form"), start_time) != nullptr);  // an error changes nothing
  CHECK_FALSE(cache.offer(post, 303, {}, "", start_time));
  CHECK_TRUE(cache.lookup(get("/form"), start_time) == nullptr);
  LONGS_EQUAL(0, cache.entries());
  LONGS_EQUAL(0, cache.bytes());
}

TEST(ResponseCache, ExpiredEntryIsNotServedAndIsDropped) {
  CHECK_TRUE(cache.offer(get("/e"), 200, fresh_for("60"), "body", start_time));
  CHECK_TRUE(cache.lookup(get("/e"), start_time + seconds(59)) != nullptr);
  CHECK_TRUE(cache.lookup(get("/e"), start_time + seconds(60)) == nullptr);
  LONGS_EQUAL(0, cache.entries());
  LONGS_EQUAL(0, cache.bytes());
  // Dropped, not just hidden: a lookup back in time finds nothing either.
  CHECK_TRUE(cache.lookup(get("/e"), start_time) == nullptr);
  DOUBLES_EQUAL(1, metric_value(registry, "web_cache_hits_total"), 0);
  DOUBLES_EQUAL(2, metric_value(registry, "web_cache_misses_total"), 0);
  DOUBLES_EQUAL(0, metric_value(registry, "web_cache_evictions_total"), 0);
}

TEST(ResponseCache, HopByHopFieldsAreNotStored) {
  const HeaderList headers = {
      {"Cache-Control", "max-age=60"},
      {"Connection", "keep-alive, X-Hop-Only"},
      {"Keep-Alive", "timeout=5"},
      {"TRANSFER-ENCODING", "chunked"},
      {"te", "trailers"},
      {"Trailer", "Expires"},
      {"Upgrade", "h2c"},
      {"Proxy-Connection", "keep-alive"},
      {"x-hop-only", "1"},
      {"ETag", "\"abc\""},
      {"Content-Type", "text/html"},
  };
  CHECK_TRUE(cache.offer(get("/h"), 200, headers, "<p>", start_time));
  const auto response = cache.lookup(get("/h"), start_time);
  CHECK_TRUE(response != nullptr);
  const HeaderList expected = {
      {"Cache-Control", "max-age=60"}, {"ETag", "\"abc\""}, {"Content-Type", "text/html"}};
  CHECK_TRUE(response->headers == expected);
  LONGS_EQUAL(stored_size(get("/h"), expected, "<p>"), cache.bytes());
}

TEST(ResponseCache, ReplacingTheSameKeyKeepsAccountingExact) {
  const auto small = stored_size(get("/r"), fresh_for("60"), "0123456789");
  CHECK_TRUE(cache.offer(get("/r"), 200, fresh_for("60"), "0123456789", start_time));
  LONGS_EQUAL(small, cache.bytes());
  CHECK_TRUE(cache.offer(get("/r"), 200, fresh_for("60"), std::string(30, 'x'), start_time));
  LONGS_EQUAL(1, cache.entries());
  LONGS_EQUAL(small + 20, cache.bytes());
  STRCMP_EQUAL(std::string(30, 'x').c_str(), cache.lookup(get("/r"), start_time)->body.c_str());
  // Bytes are the key, every stored name and value, and the body: 4 more header bytes count.
  CHECK_TRUE(cache.offer(get("/r"), 200, {{"Cache-Control", "max-age=60"}, {"Ab", "cd"}}, "",
                         start_time));
  LONGS_EQUAL(small - 10 - std::string("Content-Type" "text/plain").size() + 4, cache.bytes());
  DOUBLES_EQUAL(cache.bytes(), metric_value(registry, "web_cache_bytes"), 0);
  DOUBLES_EQUAL(1, metric_value(registry, "web_cache_entries"), 0);
  DOUBLES_EQUAL(3, metric_value(registry, "web_cache_stores_total"), 0);
  DOUBLES_EQUAL(0, metric_value(registry, "web_cache_evictions_total"), 0);
}

TEST(ResponseCache, ObjectsOverMaxObjectBytesAreRefused) {
  constexpr std::size_t object_limit = 100;
  Registry own_registry;
  ResponseCache limited({small_cache_bytes, object_limit}, own_registry, metrics_prefix);
  const auto overhead = stored_size(get("/o"), fresh_for("60"), "");
  const auto fitting_body = std::string(object_limit - overhead, 'b');
  CHECK_TRUE(limited.offer(get("/o"), 200, fresh_for("60"), fitting_body, start_time));
  LONGS_EQUAL(object_limit, limited.bytes());
  CHECK_FALSE(limited.offer(get("/p"), 200, fresh_for("60"), fitting_body + "b", start_time));
  CHECK_FALSE(limited.offer(get("/p"), 200, fresh_for("60"), std::string(100000, 'b'), start_time));
  LONGS_EQUAL(1, limited.entries());
  LONGS_EQUAL(object_limit, limited.bytes());
}

TEST(ResponseCache, ObjectsOverTheWholeBudgetAreRefusedWithoutEvicting) {
  Registry own_registry;
  ResponseCache limited({200, 1000}, own_registry, metrics_prefix);
  CHECK_TRUE(limited.offer(get("/small"), 200, fresh_for("60"), "x", start_time));
  CHECK_FALSE(limited.offer(get("/big"), 200, fresh_for("60"), std::string(300, 'b'), start_time));
  LONGS_EQUAL(1, limited.entries());
  DOUBLES_EQUAL(0, metric_value(own_registry, "web_cache_evictions_total"), 0);
}

TEST(ResponseCache, ShardedCacheNeverExceedsMaxBytes) {
  // Room for ten of the largest objects gives two shards (four largest objects each at least),
  // each with half of max_bytes; entries here are about 80 bytes.
  constexpr std::size_t sharded_budget = 1000;
  constexpr std::size_t object_limit = 100;
  Registry own_registry;
  ResponseCache sharded({sharded_budget, object_limit}, own_registry, metrics_prefix);
  constexpr int offered_count = 200;
  for (int index = 0; index < offered_count; ++index) {
    const auto target = "/s/" + std::to_string(index);
    CHECK_TRUE(sharded.offer(get(target), 200, fresh_for("60"), target, start_time));
    CHECK_TRUE(sharded.bytes() <= sharded_budget);
  }
  CHECK_TRUE(sharded.entries() > 1);
  DOUBLES_EQUAL(offered_count - static_cast<double>(sharded.entries()),
                metric_value(own_registry, "web_cache_evictions_total"), 0);
}

TEST(ResponseCache, ZeroLimitsStoreNothing) {
  Registry own_registry;
  ResponseCache empty({0, 0}, own_registry, metrics_prefix);
  CHECK_FALSE(empty.offer(get("/"), 200, fresh_for("60"), "", start_time));
  ResponseCache no_room({0, 1000}, own_registry, "web_other");
  CHECK_FALSE(no_room.offer(get("/"), 200, fresh_for("60"), "", start_time));
  LONGS_EQUAL(0, empty.bytes() + no_room.bytes());
}

TEST(ResponseCache, LeastRecentlyUsedIsEvictedFirstAndCounted) {
  // Same-length targets and bodies, so every entry has the same size; room for exactly three.
  const auto entry_bytes = stored_size(get("/a"), fresh_for("60"), "body-a");
  const std::size_t budget = 3 * entry_bytes;
  Registry own_registry;
  // max_object_bytes == max_bytes: one shard, so LRU order is global (see response_cache.cpp).
  ResponseCache lru({budget, budget}, own_registry, metrics_prefix);
  const auto store = [&](const char* target, const char* body) {
    return lru.offer(get(target), 200, fresh_for("60"), body, start_time);
  };
  const auto cached = [&](const char* target) {
    return lru.lookup(get(target), start_time) != nullptr;
  };
  const auto evictions = [&] { return metric_value(own_registry, "web_cache_evictions_total"); };

  CHECK_TRUE(store("/a", "body-a"));
  CHECK_TRUE(store("/b", "body-b"));
  CHECK_TRUE(store("/c", "body-c"));
  LONGS_EQUAL(budget, lru.bytes());
  DOUBLES_EQUAL(0, evictions(), 0);

  CHECK_TRUE(cached("/a"));  // order, most recent first: a c b
  CHECK_TRUE(store("/d", "body-d"));  // evicts b
  DOUBLES_EQUAL(1, evictions(), 0);
  LONGS_EQUAL(3, lru.entries());
  LONGS_EQUAL(budget, lru.bytes());
  CHECK_FALSE(cached("/b"));  // d a c

  CHECK_TRUE(store("/e", "body-e"));  // evicts c
  DOUBLES_EQUAL(2, evictions(), 0);
  CHECK_FALSE(cached("/c"));
  CHECK_TRUE(cached("/a"));  // a e d
  CHECK_TRUE(cached("/d"));  // d a e
  CHECK_TRUE(cached("/e"));  // e d a

  // Replacing an entry is not an eviction, and a bigger object evicts as many as it needs.
  CHECK_TRUE(store("/e", "body-E"));
  DOUBLES_EQUAL(2, evictions(), 0);
  const auto two_entries_body = std::string(entry_bytes + 6, 'z');
  CHECK_TRUE(lru.offer(get("/f"), 200, fresh_for("60"), two_entries_body, start_time));
  DOUBLES_EQUAL(4, evictions(), 0);  // a, then d
  LONGS_EQUAL(2, lru.entries());
  CHECK_TRUE(cached("/e"));
  CHECK_TRUE(cached("/f"));
  LONGS_EQUAL(budget, lru.bytes());
}

TEST(ResponseCache, MetricsAreExposed) {
  CHECK_TRUE(cache.offer(get("/m"), 200, fresh_for("60"), "metric", start_time));
  CHECK_TRUE(cache.lookup(get("/m"), start_time) != nullptr);
  CHECK_TRUE(cache.lookup(get("/m"), start_time) != nullptr);
  CHECK_TRUE(cache.lookup(get("/missing"), start_time) == nullptr);
  auto bypassed = get("/m");
  bypassed.cache_control = "no-cache";
  CHECK_TRUE(cache.lookup(bypassed, start_time) == nullptr);  // not looked up, not a miss

  const auto text = registry.expose();
  CHECK_TRUE(contains(text, "# TYPE web_cache_hits_total counter\nweb_cache_hits_total 2\n"));
  CHECK_TRUE(contains(text, "# TYPE web_cache_misses_total counter\nweb_cache_misses_total 1\n"));
  CHECK_TRUE(contains(text, "# TYPE web_cache_stores_total counter\nweb_cache_stores_total 1\n"));
  CHECK_TRUE(
      contains(text, "# TYPE web_cache_evictions_total counter\nweb_cache_evictions_total 0\n"));
  CHECK_TRUE(contains(text, "# TYPE web_cache_entries gauge\nweb_cache_entries 1\n"));
  CHECK_TRUE(contains(text, "# TYPE web_cache_bytes gauge\nweb_cache_bytes " +
                                std::to_string(cache.bytes()) + "\n"));
}

TEST(ResponseCache, GaugesReturnToZeroWhenTheCacheGoes) {
  Registry own_registry;
  {
    ResponseCache short_lived(small_limits, own_registry, metrics_prefix);
    CHECK_TRUE(short_lived.offer(get("/g"), 200, fresh_for("60"), "gone soon", start_time));
    CHECK_TRUE(metric_value(own_registry, "web_cache_bytes") > 0);
  }
  DOUBLES_EQUAL(0, metric_value(own_registry, "web_cache_bytes"), 0);
  DOUBLES_EQUAL(0, metric_value(own_registry, "web_cache_entries"), 0);
}

TEST(ResponseCache, DefaultLimitsHoldManyEntriesWithinBudget) {
  // Default limits use several shards; every entry fits, and the total stays exact.
  Registry own_registry;
  ResponseCache large(CacheLimits{}, own_registry, metrics_prefix);
  constexpr int entry_count = 1000;
  std::size_t expected_bytes = 0;
  for (int index = 0; index < entry_count; ++index) {
    const auto target = "/item/" + std::to_string(index);
    CHECK_TRUE(large.offer(get(target), 200, fresh_for("60"), target, start_time));
    expected_bytes += stored_size(get(target), fresh_for("60"), target);
  }
  LONGS_EQUAL(entry_count, large.entries());
  LONGS_EQUAL(expected_bytes, large.bytes());
  for (int index = 0; index < entry_count; ++index) {
    const auto target = "/item/" + std::to_string(index);
    const auto response = large.lookup(get(target), start_time);
    CHECK_TRUE(response != nullptr);
    STRCMP_EQUAL(target.c_str(), response->body.c_str());
  }
}

TEST(ResponseCache, ConcurrentLookupsAndOffersStayConsistent) {
  constexpr int thread_count = 4;
  constexpr int operations_per_thread = 3000;
  constexpr int distinct_targets = 64;
  // Room for roughly a third of the targets, so threads evict one another's entries all along.
  constexpr std::size_t concurrent_budget = 2048;
  Registry own_registry;
  ResponseCache shared({concurrent_budget, concurrent_budget}, own_registry, metrics_prefix);
  std::atomic<int> wrong_bodies{0};
  std::atomic<int> lookups{0};

  std::vector<std::thread> threads;
  for (int thread_index = 0; thread_index < thread_count; ++thread_index) {
    threads.emplace_back([&, thread_index] {
      for (int step = 0; step < operations_per_thread; ++step) {
        const auto number = (step * 7 + thread_index * 13) % distinct_targets;
        const auto target = "/t/" + std::to_string(number);
        const auto accept_encoding = (step % 3 == 0) ? "gzip" : "";
        HeaderList headers = fresh_for("60");
        if (number % 2 == 0) headers.emplace_back("Vary", "Accept-Encoding");
        if (step % 2 == 0) {
          // Each body names its target (and variant), so a crossed key would be seen.
          const auto body = target + (number % 2 == 0 ? std::string("|") + accept_encoding : "");
          shared.offer(get(target, accept_encoding), 200, headers, body, start_time);
        } else {
          lookups.fetch_add(1);
          const auto response = shared.lookup(get(target, accept_encoding), start_time);
          if (!response) continue;
          const auto expected =
              target + (number % 2 == 0 ? std::string("|") + accept_encoding : "");
          if (response->body != expected) wrong_bodies.fetch_add(1);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();

  LONGS_EQUAL(0, wrong_bodies.load());
  CHECK_TRUE(shared.bytes() <= concurrent_budget);
  CHECK_TRUE(shared.entries() > 0);
  DOUBLES_EQUAL(shared.bytes(), metric_value(own_registry, "web_cache_bytes"), 0);
  DOUBLES_EQUAL(shared.entries(), metric_value(own_registry, "web_cache_entries"), 0);
  DOUBLES_EQUAL(lookups.load(),
                metric_value(own_registry, "web_cache_hits_total") +
                    metric_value(own_registry, "web_cache_misses_total"),
                0);
  const auto stores = metric_value(own_registry, "web_cache_stores_total");
  const auto evictions = metric_value(own_registry, "web_cache_evictions_total");
  CHECK_TRUE(evictions > 0);
  CHECK_TRUE(stores >= evictions + shared.entries());  // the rest were replaced
}
