// In-memory response cache for proxied responses: size-bounded LRU, honouring Cache-Control and
// Vary: Accept-Encoding. It owns stored responses and the decision whether a response may be
// stored; the proxy asks it before going upstream and offers it what came back.
//
// Rules (RFC 9111, as a shared cache):
//  1. Only GET (and HEAD, answered from GET entries) requests are looked up or stored.
//  2. A request with Authorization or Cache-Control no-store goes upstream and nothing is stored
//     from it; with Cache-Control no-cache it goes upstream and the answer may be stored.
//  3. A response is stored only with explicit freshness: s-maxage, else max-age, > 0; never with
//     no-store, no-cache or private, never with Set-Cookie, never with Vary other than
//     Accept-Encoding (Vary: * included), never for statuses other than 200, 203, 204, 300, 301,
//     308, 404, 405, 410, 414, 501, never over max_object_bytes.
//  4. Vary: Accept-Encoding keys the entry by whether the request accepts gzip.
//  5. Total bytes (bodies + header fields + key) stay <= max_bytes; least recently used entries
//     are evicted first, and each eviction is counted.
//  6. An entry past its freshness is never served; it is dropped when met.
// Thread-safe: shards, each with its own lock and LRU list (a key always maps to one shard).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stacknode/common/metrics.hpp"

namespace stacknode::web {

struct CacheLimits {
  std::size_t max_bytes = 64 * 1024 * 1024;
  std::size_t max_object_bytes = 1024 * 1024;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// What a request brings that matters to the cache.
struct CacheRequest {
  std::string_view method;            // "GET", "HEAD", ...
  std::string_view host;              // Host header
  std::string_view target;            // request target, query included
  std::string_view accept_encoding;
  std::string_view cache_control;
  bool has_authorization = false;
};

struct CachedResponse {
  unsigned status = 200;
  HeaderList headers;  // end-to-end fields as the upstream sent them (no hop-by-hop fields)
  std::string body;
  std::chrono::steady_clock::time_point stored_at;
  std::chrono::steady_clock::time_point fresh_until;
};

enum class CacheDecision {
  lookup,  // may be served from the cache, and stored
  bypass,  // must go upstream; the answer may be stored (Cache-Control: no-cache)
  no_store_request,  // must go upstream and must not be stored
};

class ResponseCache {
 public:
  // Metrics: <prefix>_cache_hits_total, _cache_misses_total, _cache_evictions_total,
  // _cache_stores_total, _cache_bytes (gauge), _cache_entries (gauge).
  ResponseCache(CacheLimits limits, metrics::Registry& registry, std::string_view metrics_prefix);
  ~ResponseCache();

  // Rules 1 and 2.
  static CacheDecision decide(const CacheRequest& request);

  // A fresh entry for the request, or null (counted as a miss; rule 6).
  std::shared_ptr<const CachedResponse> lookup(const CacheRequest& request,
                                               std::chrono::steady_clock::time_point now);

  // Offers a response that came back from upstream; stores it if rules 3-5 allow.
  // Returns true if stored.
  bool offer(const CacheRequest& request, unsigned status, const HeaderList& headers,
             std::string_view body, std::chrono::steady_clock::time_point now);

  std::size_t bytes() const;
  std::size_t entries() const;

  struct Shard;

 private:
  CacheLimits limits_;
  std::vector<std::unique_ptr<Shard>> shards_;
  metrics::Counter& hits_;
  metrics::Counter& misses_;
  metrics::Counter& evictions_;
  metrics::Counter& stores_;
};

}  // namespace stacknode::web
