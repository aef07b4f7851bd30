// In-memory response cache for proxied responses (see response_cache.hpp for the numbered rules).
// This file owns the cache key, the storability checks (rules 1-4, in offer() and decide()), and
// the sharded LRU store with its byte accounting (rules 5-6, in Shard).
//
// Design notes:
//  - Key: "<method class>\n<host length>:<lowercased host>\n<target>\n<variant>". GET and HEAD
//    share the method class "GET"; the host is length-prefixed so no host/target split can
//    collide with another. The variant is empty for a response without Vary, and "gzip" or
//    "identity" for one with Vary: Accept-Encoding, after the request's gzip acceptance.
//    lookup() tries the plain key first, then the variant the request selects; storing any
//    representation of a URL drops the other kind (plain vs. varied), so the two never coexist.
//  - Size of an entry = key + stored header names and values + body (rule 5, exactly; no
//    allocator overhead is guessed), and that size is what max_object_bytes limits too.
//  - Sharding: shard_count = clamp(max_bytes / (largest_objects_per_shard * max_object_bytes),
//    1, max_shard_count) and each shard's budget is max_bytes / shard_count, so the sum of the
//    budgets never exceeds max_bytes. LRU order and eviction are per shard. With the default
//    limits (64 MiB, 1 MiB) that is 16 shards of 4 MiB; a cache too small to give every shard
//    room for a few of its largest objects gets fewer shards, down to one, whose LRU order is
//    then global and exact (this is what makes small caches, and their tests, predictable).
//  - Counters: a lookup refused by decide() returns null without counting a miss (it was never
//    looked up, and counting it would skew the hit ratio). Evictions count only entries pushed
//    out for room; a replaced entry or a stale one dropped when met is not an eviction.
//  - Responses are held by shared_ptr, so eviction never pulls a body from under a response that
//    is still being written, and a hit copies nothing while the shard lock is held.
#include "response_cache.hpp"

#include <algorithm>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "semantics.hpp"

namespace stacknode::web {

namespace {

// Enough shards that the io_context threads of one server (one per core) rarely contend on a
// lock, few enough that each shard's budget stays large.
constexpr std::size_t max_shard_count = 16;

// A shard must have room for at least this many objects of the largest allowed size, otherwise
// every large object would flush the rest of its shard. Caches too small for that get fewer
// shards (see the design notes above).
constexpr std::size_t largest_objects_per_shard = 4;

// The method class that GET and HEAD share in the key.
constexpr std::string_view get_method_class = "GET";

constexpr std::string_view plain_variant;
constexpr std::string_view gzip_variant = "gzip";
constexpr std::string_view identity_variant = "identity";

// Statuses that are cacheable by default (RFC 9110 section 15.1) and that rule 3 admits.
constexpr unsigned storable_statuses[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};

// Hop-by-hop fields (RFC 9110 section 7.6.1 and the historical Keep-Alive / Proxy-Connection):
// they describe one connection and are never stored. Fields named in Connection are dropped too.
constexpr std::string_view hop_by_hop_fields[] = {
    "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
};

// Methods that do not change state (RFC 9110 section 9.2.1); any other one invalidates the
// stored responses for its target when it succeeds (RFC 9111 section 4.4).
constexpr std::string_view safe_methods[] = {"GET", "HEAD", "OPTIONS", "TRACE"};

char to_lower_ascii(char character) {
  return (character >= 'A' && character <= 'Z') ? static_cast<char>(character - 'A' + 'a')
                                                 : character;
}

bool equals_ignoring_case(std::string_view left, std::string_view right) {
  return left.size() == right.size() &&
         std::equal(left.begin(), left.end(), right.begin(),
                    [](char left_character, char right_character) {
                      return to_lower_ascii(left_character) == to_lower_ascii(right_character);
                    });
}

std::string_view trim_whitespace(std::string_view text) {
  const auto is_space = [](char character) { return character == ' ' || character == '\t'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// Calls `visit` with every non-empty, trimmed element of a comma-separated field value.
template <typename Visitor>
void for_each_list_element(std::string_view value, Visitor&& visit) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    const auto element = trim_whitespace(value.substr(0, comma));
    if (!element.empty()) visit(element);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

// All values of a field, joined with ", " as RFC 9110 section 5.3 allows for list fields.
std::string combined_field_value(const HeaderList& headers, std::string_view name) {
  std::string combined;
  for (const auto& [field_name, field_value] : headers) {
    if (!equals_ignoring_case(field_name, name)) continue;
    if (!combined.empty()) combined += ", ";
    combined += field_value;
  }
  return combined;
}

bool has_field(const HeaderList& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [name](const auto& field) { return equals_ignoring_case(field.first, name); });
}

bool is_storable_status(unsigned status) {
  return std::find(std::begin(storable_statuses), std::end(storable_statuses), status) !=
         std::end(storable_statuses);
}

bool is_safe_method(std::string_view method) {
  return std::find(std::begin(safe_methods), std::end(safe_methods), method) !=
         std::end(safe_methods);
}

bool is_get_or_head(std::string_view method) { return method == "GET" || method == "HEAD"; }

enum class VaryKind {
  none,             // no Vary, or an empty one
  accept_encoding,  // only Accept-Encoding (rule 4)
  unsupported,      // anything else, Vary: * included: not stored (rule 3)
};

VaryKind classify_vary(const HeaderList& headers) {
  auto kind = VaryKind::none;
  for_each_list_element(combined_field_value(headers, "vary"), [&kind](std::string_view name) {
    if (equals_ignoring_case(name, "accept-encoding")) {
      if (kind == VaryKind::none) kind = VaryKind::accept_encoding;
    } else {
      kind = VaryKind::unsupported;
    }
  });
  return kind;
}

// The end-to-end fields of `headers`: hop-by-hop ones and those named in Connection removed.
HeaderList end_to_end_fields(const HeaderList& headers) {
  std::vector<std::string> connection_options;
  for_each_list_element(combined_field_value(headers, "connection"),
                        [&connection_options](std::string_view option) {
                          connection_options.emplace_back(option);
                        });
  const auto is_hop_by_hop = [&connection_options](std::string_view name) {
    const auto matches = [name](std::string_view other) { return equals_ignoring_case(name, other); };
    return std::any_of(std::begin(hop_by_hop_fields), std::end(hop_by_hop_fields), matches) ||
           std::any_of(connection_options.begin(), connection_options.end(), matches);
  };
  HeaderList kept;
  kept.reserve(headers.size());
  for (const auto& field : headers) {
    if (!is_hop_by_hop(field.first)) kept.push_back(field);
  }
  return kept;
}

// Rule 3's explicit freshness: s-maxage, else max-age; nullopt when neither is present.
std::optional<std::int64_t> freshness_lifetime_seconds(const CacheControl& cache_control) {
  if (cache_control.s_maxage) return cache_control.s_maxage;
  return cache_control.max_age;
}

// The key of one representation of (host, target); see the design notes for its layout.
std::string make_key(const CacheRequest& request, std::string_view variant) {
  const auto host_length = std::to_string(request.host.size());
  std::string key;
  constexpr std::size_t separator_count = 4;  // '\n', ':', '\n', '\n'
  key.reserve(get_method_class.size() + host_length.size() + request.host.size() +
              request.target.size() + variant.size() + separator_count);
  key += get_method_class;
  key += '\n';
  key += host_length;
  key += ':';
  for (const char character : request.host) key += to_lower_ascii(character);
  key += '\n';
  key += request.target;
  key += '\n';
  key += variant;
  return key;
}

std::size_t entry_size(const std::string& key, const CachedResponse& response) {
  std::size_t size = key.size() + response.body.size();
  for (const auto& [name, value] : response.headers) size += name.size() + value.size();
  return size;
}

std::size_t shard_count_for(const CacheLimits& limits) {
  if (limits.max_object_bytes == 0) return max_shard_count;  // nothing can be stored anyway
  const auto by_room = limits.max_bytes / limits.max_object_bytes / largest_objects_per_shard;
  return std::clamp<std::size_t>(by_room, 1, max_shard_count);
}

}  // namespace

// One lock, one LRU list (most recent first) and the index into it. Every function expects the
// caller to hold `mutex`.
struct ResponseCache::Shard {
  struct Entry {
    std::string key;
    std::shared_ptr<const CachedResponse> response;
    std::size_t size = 0;
  };

  Shard(std::size_t budget, metrics::Gauge& bytes_gauge, metrics::Gauge& entries_gauge)
      : budget_bytes(budget), bytes_gauge(bytes_gauge), entries_gauge(entries_gauge) {}

  // Gives the shard's share back to the gauges, which outlive the cache.
  ~Shard() {
    bytes_gauge.dec(static_cast<double>(used_bytes));
    entries_gauge.dec(static_cast<double>(lru.size()));
  }

  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // The entry for `key`, moved to the front, or null.
  std::shared_ptr<const CachedResponse> touch(const std::string& key) {
    const auto found = index.find(key);
    if (found == index.end()) return nullptr;
    lru.splice(lru.begin(), lru, found->second);
    return found->second->response;
  }

  void erase(std::string_view key) {
    const auto found = index.find(key);
    if (found == index.end()) return;
    const auto position = found->second;
    index.erase(found);  // before the list node, which owns the key the index points into
    used_bytes -= position->size;
    bytes_gauge.dec(static_cast<double>(position->size));
    entries_gauge.dec();
    lru.erase(position);
  }

  // Evicts least recently used entries until `incoming` more bytes fit; returns how many went.
  // The caller has checked that `incoming` <= budget_bytes.
  std::size_t make_room(std::size_t incoming) {
    std::size_t evicted = 0;
    while (used_bytes + incoming > budget_bytes && !lru.empty()) {
      erase(lru.back().key);
      ++evicted;
    }
    return evicted;
  }

  void insert(std::string key, std::shared_ptr<const CachedResponse> response, std::size_t size) {
    lru.push_front(Entry{std::move(key), std::move(response), size});
    index.emplace(lru.front().key, lru.begin());
    used_bytes += size;
    bytes_gauge.inc(static_cast<double>(size));
    entries_gauge.inc();
  }

  mutable std::mutex mutex;
  const std::size_t budget_bytes;
  std::size_t used_bytes = 0;
  std::list<Entry> lru;
  // Keys point into the list nodes, which never move while they are listed.
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index;
  metrics::Gauge& bytes_gauge;
  metrics::Gauge& entries_gauge;
};

ResponseCache::ResponseCache(CacheLimits limits, metrics::Registry& registry,
                             std::string_view metrics_prefix)
    : limits_(limits),
      hits_(registry.counter(std::string(metrics_prefix) + "_cache_hits_total",
                             "Requests answered from the response cache.")),
      misses_(registry.counter(std::string(metrics_prefix) + "_cache_misses_total",
                               "Cacheable requests the response cache had no fresh entry for.")),
      evictions_(registry.counter(std::string(metrics_prefix) + "_cache_evictions_total",
                                  "Entries evicted from the response cache to make room.")),
      stores_(registry.counter(std::string(metrics_prefix) + "_cache_stores_total",
                               "Responses stored in the response cache.")) {
  auto& bytes_gauge = registry.gauge(std::string(metrics_prefix) + "_cache_bytes",
                                     "Bytes held by the response cache (keys, fields, bodies).");
  auto& entries_gauge = registry.gauge(std::string(metrics_prefix) + "_cache_entries",
                                       "Entries held by the response cache.");
  const auto shard_count = shard_count_for(limits_);
  const auto budget = limits_.max_bytes / shard_count;
  shards_.reserve(shard_count);
  for (std::size_t index = 0; index < shard_count; ++index) {
    shards_.push_back(std::make_unique<Shard>(budget, bytes_gauge, entries_gauge));
  }
}

ResponseCache::~ResponseCache() = default;

CacheDecision ResponseCache::decide(const CacheRequest& request) {
  if (!is_get_or_head(request.method)) return CacheDecision::no_store_request;
  const auto cache_control = parse_cache_control(request.cache_control);
  // Authorization: a shared cache must neither answer nor keep it (rule 2; RFC 9111 section 3.5).
  if (cache_control.no_store || request.has_authorization) return CacheDecision::no_store_request;
  if (cache_control.no_cache) return CacheDecision::bypass;
  return CacheDecision::lookup;
}

std::shared_ptr<const CachedResponse> ResponseCache::lookup(
    const CacheRequest& request, std::chrono::steady_clock::time_point now) {
  if (decide(request) != CacheDecision::lookup) return nullptr;
  const auto plain_key = make_key(request, plain_variant);
  const auto varied_key =
      make_key(request, accepts_gzip(request.accept_encoding) ? gzip_variant : identity_variant);
  auto& shard = *shards_[std::hash<std::string>{}(plain_key) % shards_.size()];
  {
    const std::lock_guard lock(shard.mutex);
    for (const auto* key : {&plain_key, &varied_key}) {
      auto response = shard.touch(*key);
      if (!response) continue;
      if (now < response->fresh_until) {
        hits_.inc();
        return response;
      }
      shard.erase(*key);  // rule 6: stale, dropped when met
    }
  }
  misses_.inc();
  return nullptr;
}

bool ResponseCache::offer(const CacheRequest& request, unsigned status, const HeaderList& headers,
                          std::string_view body, std::chrono::steady_clock::time_point now) {
  const auto plain_key = make_key(request, plain_variant);
  auto& shard = *shards_[std::hash<std::string>{}(plain_key) % shards_.size()];
  const auto gzip_key = make_key(request, gzip_variant);
  const auto identity_key = make_key(request, identity_variant);

  // RFC 9111 section 4.4: a successful unsafe request invalidates what is stored for its target.
  if (!is_safe_method(request.method)) {
    if (status >= 200 && status < 400) {
      const std::lock_guard lock(shard.mutex);
      for (const auto* key : {&plain_key, &gzip_key, &identity_key}) shard.erase(*key);
    }
    return false;
  }

  // Rules 1 and 2: HEAD is answered from GET entries but its own responses have no body to store.
  if (request.method != "GET" || request.has_authorization ||
      decide(request) == CacheDecision::no_store_request) {
    return false;
  }

  // Rule 3.
  if (!is_storable_status(status) || has_field(headers, "set-cookie")) return false;
  const auto cache_control = parse_cache_control(combined_field_value(headers, "cache-control"));
  if (cache_control.no_store || cache_control.no_cache || cache_control.is_private) return false;
  const auto lifetime = freshness_lifetime_seconds(cache_control);
  if (!lifetime || *lifetime <= 0) return false;
  const auto vary = classify_vary(headers);
  if (vary == VaryKind::unsupported) return false;

  // Rule 4.
  const bool varied = vary == VaryKind::accept_encoding;
  const auto& key =
      !varied ? plain_key : (accepts_gzip(request.accept_encoding) ? gzip_key : identity_key);

  auto response = std::make_shared<CachedResponse>();
  response->status = status;
  response->headers = end_to_end_fields(headers);
  response->stored_at = now;
  response->fresh_until = now + std::chrono::seconds(*lifetime);
  // Sized before the body is copied, so an oversized body is refused without being copied.
  const auto size = entry_size(key, *response) + body.size();
  if (size > limits_.max_object_bytes || size > shard.budget_bytes) return false;
  response->body.assign(body);

  // Rule 5: the new representation replaces every stored one of this URL, then room is made.
  std::size_t evicted = 0;
  {
    const std::lock_guard lock(shard.mutex);
    if (varied) {
      shard.erase(plain_key);
      shard.erase(key);
    } else {
      for (const auto* other : {&plain_key, &gzip_key, &identity_key}) shard.erase(*other);
    }
    evicted = shard.make_room(size);
    shard.insert(key, std::move(response), size);
  }
  if (evicted > 0) evictions_.inc(static_cast<double>(evicted));
  stores_.inc();
  return true;
}

std::size_t ResponseCache::bytes() const {
  std::size_t total = 0;
  for (const auto& shard : shards_) {
    const std::lock_guard lock(shard->mutex);
    total += shard->used_bytes;
  }
  return total;
}

std::size_t ResponseCache::entries() const {
  std::size_t total = 0;
  for (const auto& shard : shards_) {
    const std::lock_guard lock(shard->mutex);
    total += shard->lru.size();
  }
  return total;
}

}  // namespace stacknode::web
