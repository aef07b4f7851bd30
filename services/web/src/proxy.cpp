// Reverse proxy: route matching, upstream choice, one Attempt per try, retries, health checks and
// the response cache in front. The health and retry rules are numbered in proxy.hpp.
#include "proxy.hpp"

#include <boost/beast/http/empty_body.hpp>

#include <algorithm>

#include "semantics.hpp"
#include "served_by.hpp"
#include "stacknode/common/log.hpp"

namespace stacknode::web {
namespace {

namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

// How often the health checker wakes to see which upstream is due; pools' intervals are
// rounded up to it.
constexpr auto health_tick = std::chrono::milliseconds(100);

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Fields that describe one connection, not the message (RFC 9110 section 7.6.1).
bool is_hop_by_hop(const bhttp::fields::value_type& field) {
  switch (field.name()) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::proxy_connection:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::transfer_encoding:
    case bhttp::field::upgrade:
      return true;
    default:
      return false;
  }
}

// The field names a message's Connection header lists: those fields describe the connection too
// and are not forwarded. Parsed once per message, from a copy, so that the message's fields can
// be erased while this is in use.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(std::string_view header) : header_(header) {
    for (const auto token : bhttp::token_list(header_)) {
      if (count_ == max_tokens) {
        overflow_ = true;
        break;
      }
      tokens_[count_++] = token;
    }
  }
  ConnectionTokens(const ConnectionTokens&) = delete;
  ConnectionTokens& operator=(const ConnectionTokens&) = delete;

  bool names(std::string_view field) const {
    for (std::size_t index = 0; index < count_; ++index) {
      if (boost::beast::iequals(tokens_[index], field)) return true;
    }
    if (!overflow_) return false;
    for (const auto token : bhttp::token_list(header_)) {
      if (boost::beast::iequals(token, field)) return true;
    }
    return false;
  }

 private:
  // Tokens remembered; a longer list (rare: "keep-alive" or "close" plus a name or two is usual)
  // is scanned again per field instead.
  static constexpr std::size_t max_tokens = 8;
  std::string header_;
  std::array<std::string_view, max_tokens> tokens_{};
  std::size_t count_ = 0;
  bool overflow_ = false;
};

// Whether a field of a message whose Connection header gave `tokens` goes on to the next hop.
bool forwarded(const bhttp::fields::value_type& field, const ConnectionTokens& tokens) {
  return !is_hop_by_hop(field) && !tokens.names(field.name_string());
}

bool nothing_sent(http::ClientFailure failure) {
  return failure == http::ClientFailure::connect_refused ||
         failure == http::ClientFailure::connect_timeout ||
         failure == http::ClientFailure::connect_failed;
}

// A decoded path as a request target: RFC 3986 pchar characters and '/' stay, every other byte
// (space, '%', '?', '#', controls, non-ASCII) becomes %XX.
std::string encode_path(std::string_view path) {
  static constexpr char hex[] = "0123456789ABCDEF";
  static constexpr std::string_view kept_punctuation = "-._~!$&'()*+,;=:@/";
  std::string out;
  out.reserve(path.size());
  for (const char c : path) {
    const bool alphanumeric = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alphanumeric || kept_punctuation.find(c) != std::string_view::npos) {
      out += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    }
  }
  return out;
}

bool usable(const UpstreamState& upstream, std::int64_t now) {
  return upstream.up.load(std::memory_order_relaxed) &&
         upstream.ejected_until_ns.load(std::memory_order_relaxed) <= now;
}

}  // namespace

UpstreamState::UpstreamState(std::string upstream_address, metrics::Registry& registry,
                             std::string_view pool)
    : address(std::move(upstream_address)),
      endpoint(http::parse_endpoint(address)),
      requests(registry.counter("stacknode_web_upstream_requests_total",
                                "Requests sent to an upstream, retries included.",
                                {{"pool", std::string(pool)}, {"upstream", address}})),
      failures(registry.counter("stacknode_web_upstream_failures_total",
                                "Requests to an upstream that got no usable answer.",
                                {{"pool", std::string(pool)}, {"upstream", address}})),
      up_gauge(registry.gauge("stacknode_web_upstream_up",
                              "1 if the upstream passes its health checks.",
                              {{"pool", std::string(pool)}, {"upstream", address}})) {
  up_gauge.set(1);
}

const RouteConfig* ProxySite::match(std::string_view path) const {
  for (const auto& route : routes) {
    if (path.starts_with(route.prefix)) return &route;
    // "/api/" also matches "/api" itself.
    if (route.prefix.size() > 1 && route.prefix.back() == '/' &&
        path == std::string_view(route.prefix).substr(0, route.prefix.size() - 1)) {
      return &route;
    }
  }
  return nullptr;
}

std::shared_ptr<ProxySite> build_proxy_site(const WebConfig& config, const ProxySite* previous,
                                            metrics::Registry& registry) {
  auto site = std::make_shared<ProxySite>();
  site->served_by = config.served_by;
  site->routes = config.routes;
  std::stable_sort(site->routes.begin(), site->routes.end(),
                   [](const RouteConfig& a, const RouteConfig& b) { return a.prefix.size() > b.prefix.size(); });
  for (const auto& pool_config : config.pools) {
    auto pool = std::make_shared<Pool>();
    pool->config = pool_config;
    const Pool* old_pool = nullptr;
    if (previous != nullptr) {
      auto found = previous->pools.find(pool_config.name);
      if (found != previous->pools.end()) old_pool = found->second.get();
    }
    for (const auto& address : pool_config.upstreams) {
      std::shared_ptr<UpstreamState> state;
      if (old_pool != nullptr) {
        for (const auto& old : old_pool->upstreams) {
          if (old->address == address) state = old;  // keeps its health across a reload
        }
      }
      if (!state) state = std::make_shared<UpstreamState>(address, registry, pool_config.name);
      pool->upstreams.push_back(std::move(state));
    }
    site->pools.emplace(pool_config.name, std::move(pool));
  }
  return site;
}

// One proxied request, across its retries.
struct Proxy::Attempt : std::enable_shared_from_this<Attempt> {
  Proxy& proxy;
  std::shared_ptr<ProxySite> site;  // keeps the pool alive while the request is in flight
  Pool& pool;
  unsigned thread_index;
  http::ClientRequest upstream_request;
  bhttp::verb method;
  unsigned version;
  // What the cache needs, copied out of the client's request.
  std::string host, target, accept_encoding, cache_control;
  bool has_authorization = false;
  std::string cache_status;  // "MISS", "BYPASS" or "" (no cache on this route)
  bool offer_to_cache = false;  // the route caches: the upstream's answer goes to offer()
  http::Respond respond;
  std::vector<const UpstreamState*> tried;
  int retries_left;
  Clock::time_point started = Clock::now();

  Attempt(Proxy& owner, std::shared_ptr<ProxySite> held_site, Pool& chosen_pool, unsigned thread,
          http::Respond respond_to)
      : proxy(owner),
        site(std::move(held_site)),
        pool(chosen_pool),
        thread_index(thread),
        respond(std::move(respond_to)),
        retries_left(chosen_pool.config.retries) {}

  CacheRequest cache_request() const {
    return CacheRequest{bhttp::to_string(method), host, target, accept_encoding, cache_control,
                        has_authorization};
  }

  UpstreamState* choose() {
    const auto count = pool.upstreams.size();
    const auto start = pool.next.fetch_add(1, std::memory_order_relaxed);
    const auto now = now_ns();
    for (std::size_t offset = 0; offset < count; ++offset) {
      UpstreamState& candidate = *pool.upstreams[(start + offset) % count];
      if (!usable(candidate, now)) continue;
      if (std::find(tried.begin(), tried.end(), &candidate) != tried.end()) continue;
      return &candidate;
    }
    return nullptr;
  }

  void try_next(http::ClientFailure last_failure = http::ClientFailure::none, std::string detail = {}) {
    UpstreamState* upstream = choose();
    if (upstream == nullptr) {
      if (tried.empty()) {
        proxy.no_upstream_.inc();
        return fail(bhttp::status::service_unavailable,
                    "no healthy upstream in pool '" + pool.config.name + "'\n", "");
      }
      return fail_after(last_failure, detail);
    }
    tried.push_back(upstream);
    upstream->requests.inc();
    const http::ClientTimeouts timeouts{pool.config.connect_timeout, pool.config.response_timeout};
    auto self = shared_from_this();
    const auto attempt_started = Clock::now();
    auto on_done = [self, upstream, attempt_started](http::ClientResult result) {
      self->on_result(*upstream, attempt_started, std::move(result));
    };
    http::ConnectionPool& connections = *proxy.connections_[thread_index];
    if (host.empty()) {
      // HTTP/1.0 clients may send no Host; the upstream gets HTTP/1.1, which requires one.
      http::ClientRequest outgoing = upstream_request;
      outgoing.set(bhttp::field::host, upstream->address);
      return connections.async_request(upstream->endpoint, std::move(outgoing), timeouts,
                                       std::move(on_done));
    }
    // The Attempt outlives the exchange (on_done holds it) and keeps the request for retries.
    connections.async_request_borrowed(upstream->endpoint, upstream_request, timeouts,
                                       std::move(on_done));
  }

  void on_result(UpstreamState& upstream, Clock::time_point attempt_started, http::ClientResult result) {
    const double seconds = std::chrono::duration<double>(Clock::now() - attempt_started).count();
    proxy.upstream_seconds_.observe(seconds);
    proxy.record_result(upstream, pool, result.ok());
    if (!result.ok()) {
      log::debug("upstream ", upstream.address, " failed: ", http::failure_name(result.failure), ": ",
                 result.detail);
      const bool safe = nothing_sent(result.failure) || http::idempotent(method);
      if (safe && retries_left > 0) {
        --retries_left;
        proxy.retries_.inc();
        return try_next(result.failure, result.detail);
      }
      return fail_after(result.failure, result.detail);
    }
    answer(upstream, seconds, std::move(result.response));
  }

  // The upstream's answer goes on as it is, less the fields of its connection.
  void answer(const UpstreamState& upstream, double seconds, http::ClientResponse&& response) {
    const ConnectionTokens connection_tokens(response[bhttp::field::connection]);
    for (auto field = response.begin(); field != response.end();) {
      field = forwarded(*field, connection_tokens) ? std::next(field) : response.erase(field);
    }
    response.version(version);
    if (offer_to_cache && proxy.cache_ != nullptr) {
      HeaderList stored_headers;
      for (const auto& field : response) {
        stored_headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
      proxy.cache_->offer(cache_request(), response.result_int(), stored_headers, response.body(),
                          Clock::now());
    }
    if (!cache_status.empty()) response.set("X-Cache", cache_status);
    set_served_by(response, site->served_by);  // after offer(): a hit sets its own
    // For HEAD the upstream's Content-Length describes the GET body: keep it, send no body.
    if (method != bhttp::verb::head) response.prepare_payload();
    http::Reply reply(std::move(response));
    reply.upstream = upstream.address;
    reply.upstream_seconds = seconds;
    reply.cache_status = cache_status;
    respond(std::move(reply));
  }

  void fail_after(http::ClientFailure failure, const std::string& detail) {
    const bool timed_out = failure == http::ClientFailure::timeout ||
                           failure == http::ClientFailure::connect_timeout;
    const std::string upstream = tried.empty() ? "" : tried.back()->address;
    fail(timed_out ? bhttp::status::gateway_timeout : bhttp::status::bad_gateway,
         std::string(timed_out ? "upstream timed out" : "upstream failed") + " (" +
             std::string(http::failure_name(failure)) + ")\n",
         upstream);
  }

  void fail(bhttp::status status, std::string body, const std::string& upstream) {
    auto response = http::text_response(status, version, std::move(body));
    response.set(bhttp::field::cache_control, "no-store");
    set_served_by(response, site->served_by);
    http::Reply reply(std::move(response));
    reply.upstream = upstream;
    reply.upstream_seconds = std::chrono::duration<double>(Clock::now() - started).count();
    reply.cache_status = cache_status;
    respond(std::move(reply));
  }
};

Proxy::Proxy(http::Server& server, metrics::Registry& registry, ResponseCache* cache)
    : server_(server),
      cache_(cache),
      no_upstream_(registry.counter("stacknode_web_proxy_no_upstream_total",
                                    "Proxied requests answered 503 because no upstream was up.")),
      retries_(registry.counter("stacknode_web_proxy_retries_total",
                                "Proxied requests sent again to another upstream after a failure.")),
      upstream_seconds_(registry.histogram("stacknode_web_upstream_duration_seconds",
                                           "Time of one exchange with an upstream.",
                                           metrics::default_latency_buckets())) {
  for (unsigned index = 0; index < server.thread_count(); ++index) {
    connections_.push_back(std::make_unique<http::ConnectionPool>(server.io(index)));
  }
}

Proxy::~Proxy() = default;

void Proxy::handle(const http::RequestContext& context, http::Request& request, std::string_view path,
                   std::shared_ptr<ProxySite> site, const RouteConfig& route, http::Respond respond) {
  Pool& pool = *site->pools.at(route.pool);
  auto attempt = std::make_shared<Attempt>(*this, site, pool, context.thread_index, std::move(respond));
  attempt->method = request.method();
  attempt->version = request.version();
  attempt->host = std::string(request[bhttp::field::host]);
  attempt->target = std::string(request.target());
  attempt->accept_encoding = std::string(request[bhttp::field::accept_encoding]);
  attempt->cache_control = std::string(request[bhttp::field::cache_control]);
  attempt->has_authorization = request.find(bhttp::field::authorization) != request.end();

  if (cache_ != nullptr && route.cache) {
    const CacheRequest cache_request = attempt->cache_request();
    const CacheDecision decision = ResponseCache::decide(cache_request);
    // Every answer is offered, whatever the method: offer() itself refuses what must not be
    // stored (rules 1-3), and for an unsafe method (POST, PUT, DELETE, ...) it drops what is
    // stored for the target, which that request may have changed (RFC 9111 section 4.4).
    attempt->offer_to_cache = true;
    if (decision == CacheDecision::lookup) {
      if (auto hit = cache_->lookup(cache_request, Clock::now())) {
        bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(hit->status),
                                                     request.version()};
        for (const auto& [name, value] : hit->headers) response.insert(name, value);
        const auto age = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - hit->stored_at);
        response.set(bhttp::field::age, std::to_string(age.count()));
        response.set("X-Cache", "HIT");
        set_served_by(response, site->served_by);
        if (request.method() != bhttp::verb::head) {
          response.body() = hit->body;
          response.prepare_payload();
        } else {
          response.content_length(hit->body.size());
        }
        http::Reply reply(std::move(response));
        reply.cache_status = "HIT";
        return attempt->respond(std::move(reply));
      }
      attempt->cache_status = "MISS";
    } else {
      attempt->cache_status = "BYPASS";
    }
  }

  // The request as the upstream sees it.
  std::string target(request.target());
  if (route.strip_prefix) {
    // Cut from the normalised path the route matched, not from the raw target: "/./api/x",
    // "/%61pi/x" and "/static/../api/x" match "/api/" too, and cutting the prefix's length off
    // their raw bytes would send the upstream another path ("/pi/x", "/tic/../api/x").
    std::string_view prefix = route.prefix;
    if (prefix.size() > 1 && prefix.back() == '/') prefix.remove_suffix(1);
    target = encode_path(path.substr(std::min(prefix.size(), path.size())));
    if (target.empty() || target.front() != '/') target.insert(target.begin(), '/');
    const std::string_view raw = request.target();
    const auto query = raw.find_first_of("?#");
    if (query != std::string_view::npos && raw[query] == '?') target += raw.substr(query);
  }
  http::ClientRequest& outgoing = attempt->upstream_request;
  outgoing.method(request.method());
  outgoing.target(target);
  outgoing.version(11);
  const ConnectionTokens connection_tokens(request[bhttp::field::connection]);
  for (const auto& field : request) {
    if (!forwarded(field, connection_tokens)) continue;
    if (field.name() == bhttp::field::expect) continue;  // answered by us already
    outgoing.insert(field.name(), field.name_string(), field.value());
  }
  const std::string client = http::format_address(context.remote.address());
  const auto forwarded = request["X-Forwarded-For"];
  outgoing.set("X-Forwarded-For", forwarded.empty() ? client : std::string(forwarded) + ", " + client);
  outgoing.set("X-Forwarded-Proto", context.tls ? "https" : "http");
  if (!attempt->host.empty()) outgoing.set("X-Forwarded-Host", attempt->host);
  outgoing.keep_alive(true);
  outgoing.body() = std::move(request.body());
  outgoing.prepare_payload();
  attempt->try_next();
}

void Proxy::record_result(UpstreamState& upstream, const Pool& pool, bool success) {
  if (success) {
    upstream.consecutive_failures.store(0, std::memory_order_relaxed);
    return;
  }
  upstream.failures.inc();
  const int failures = upstream.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures >= pool.config.max_fails) {
    const auto until = now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      pool.config.eject_duration).count();
    if (upstream.ejected_until_ns.exchange(until) <= now_ns()) {
      log::warn("upstream ", upstream.address, " of pool ", pool.config.name, " ejected for ",
                pool.config.eject_duration.count(), " ms after ", failures, " failures in a row");
    }
    upstream.consecutive_failures.store(0, std::memory_order_relaxed);
  }
}

void Proxy::check_health_of(std::shared_ptr<ProxySite> site) {
  checked_site_ = std::move(site);
  last_checked_.clear();  // the new site may hold new upstreams; check all of them now
  if (!check_timer_) {
    check_timer_ = std::make_unique<boost::asio::steady_timer>(server_.io(0));
    schedule_checks();
  }
}

void Proxy::stop_health_checks() {
  checks_stopped_ = true;
  if (check_timer_) check_timer_->cancel();
}

void Proxy::schedule_checks() {
  check_timer_->expires_after(health_tick);
  check_timer_->async_wait([this](boost::system::error_code error) {
    if (error || checks_stopped_) return;
    run_checks();
    schedule_checks();
  });
}

void Proxy::run_checks() {
  const auto now = Clock::now();
  for (const auto& [name, pool] : checked_site_->pools) {
    for (const auto& upstream : pool->upstreams) {
      auto& last = last_checked_[upstream.get()];
      if (now - last < pool->config.health_interval) continue;
      last = now;
      http::ClientRequest check{bhttp::verb::get, pool->config.health_path, 11};
      check.set(bhttp::field::host, upstream->address);
      check.set(bhttp::field::user_agent, "stacknode-web health check");
      const http::ClientTimeouts timeouts{pool->config.health_timeout, pool->config.health_timeout};
      connections_[0]->async_request(
          upstream->endpoint, std::move(check), timeouts,
          [upstream = upstream, pool = pool](http::ClientResult result) {
            const bool good = result.ok() && result.response.result_int() < 400;
            int streak = upstream->check_streak.load(std::memory_order_relaxed);
            streak = good ? std::max(streak, 0) + 1 : std::min(streak, 0) - 1;
            upstream->check_streak.store(streak, std::memory_order_relaxed);
            const bool was_up = upstream->up.load(std::memory_order_relaxed);
            if (!was_up && streak >= pool->config.rise) {
              upstream->up.store(true);
              upstream->up_gauge.set(1);
              log::info("upstream ", upstream->address, " of pool ", pool->config.name, " is up");
            } else if (was_up && -streak >= pool->config.fall) {
              upstream->up.store(false);
              upstream->up_gauge.set(0);
              log::warn("upstream ", upstream->address, " of pool ", pool->config.name,
                        " is down: ", good ? "" : (result.ok() ? "status " + std::to_string(result.response.result_int())
                                                               : std::string(http::failure_name(result.failure))));
            }
          });
    }
  }
}

}  // namespace stacknode::web
