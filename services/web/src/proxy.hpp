// Reverse proxy for stacknode-web: path-prefix routes to pools of upstreams, health, retries and
// the response cache in front of them.
//
// Upstream health (UpstreamState, shared by every thread, atomics only):
//  1. An upstream starts up. `fall` consecutive failed active checks (HealthChecker) mark it
//     down; `rise` consecutive good ones mark it up again.
//  2. Passive ejection (Proxy::record_result): `max_fails` consecutive failed proxy attempts take
//     it out until now + eject_duration; any success clears the count.
//  3. A request goes to the next upstream, round robin, that is up and not ejected. If there is
//     none, the answer is an immediate 503: never a hang.
// Retries: a failure to connect means nothing was sent, so any request is retried on another
// upstream; a failure after sending (timeout, closed, garbage) is retried only for idempotent
// methods. At most `retries` further attempts. Failures end in 502 (connection refused, closed,
// garbage) or 504 (timeout).
// Every answer of the proxy (the upstream's, a cache hit, 502/503/504) carries this node's
// X-Served-By when configured, replacing one the upstream sent (served_by.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "response_cache.hpp"
#include "stacknode/common/http_client.hpp"
#include "stacknode/common/http_server.hpp"
#include "stacknode/common/metrics.hpp"
#include "web_config.hpp"

namespace stacknode::web {

struct UpstreamState {
  UpstreamState(std::string upstream_address, metrics::Registry& registry, std::string_view pool);
  std::string address;
  http::tcp::endpoint endpoint;
  std::atomic<bool> up{true};
  std::atomic<int> check_streak{0};   // >0 good checks in a row, <0 bad checks in a row
  std::atomic<int> consecutive_failures{0};
  std::atomic<std::int64_t> ejected_until_ns{0};  // steady_clock nanoseconds
  metrics::Counter& requests;
  metrics::Counter& failures;
  metrics::Gauge& up_gauge;
};

struct Pool {
  PoolConfig config;
  std::vector<std::shared_ptr<UpstreamState>> upstreams;
  std::atomic<std::uint64_t> next{0};  // round robin position
};

// One configuration's routes and pools; rebuilt on reload (keeping the health of upstreams that
// stay), and held by in-flight requests until they finish.
struct ProxySite {
  std::vector<RouteConfig> routes;  // sorted, longest prefix first
  std::map<std::string, std::shared_ptr<Pool>> pools;
  std::string served_by;  // X-Served-By of this configuration; "" for none
  // The route for a normalised path, or null.
  const RouteConfig* match(std::string_view path) const;
};

std::shared_ptr<ProxySite> build_proxy_site(const WebConfig& config, const ProxySite* previous,
                                            metrics::Registry& registry);

class Proxy {
 public:
  // One connection pool per server thread; `cache` may be null (caching off).
  Proxy(http::Server& server, metrics::Registry& registry, ResponseCache* cache);
  ~Proxy();

  // `path` is the request's normalised path (normalize_request_path), which `route` matched.
  void handle(const http::RequestContext& context, http::Request& request, std::string_view path,
              std::shared_ptr<ProxySite> site, const RouteConfig& route, http::Respond respond);

  // Active health checks of `site`'s pools run from thread 0 until the next set_site or stop.
  void check_health_of(std::shared_ptr<ProxySite> site);
  void stop_health_checks();

  struct Attempt;

 private:
  friend struct Attempt;
  void schedule_checks();
  void run_checks();
  void record_result(UpstreamState& upstream, const Pool& pool, bool success);

  http::Server& server_;
  ResponseCache* cache_;
  std::vector<std::unique_ptr<http::ConnectionPool>> connections_;  // by thread index
  std::shared_ptr<ProxySite> checked_site_;                         // thread 0 only
  std::unique_ptr<boost::asio::steady_timer> check_timer_;          // thread 0 only
  std::chrono::steady_clock::time_point next_check_;
  std::map<const UpstreamState*, std::chrono::steady_clock::time_point> last_checked_;
  bool checks_stopped_ = false;
  metrics::Counter& no_upstream_;
  metrics::Counter& retries_;
  metrics::Histogram& upstream_seconds_;
};

}  // namespace stacknode::web
