// stacknoded's cache loop (issue 6, "Cache tier"): runs this node's redis-server as a child
// (configured here, restarted if it dies, stopped with stacknoded: it gets SIGTERM if stacknoded
// dies), gives it its role from the cluster state (cache.hpp: the primary and its epoch), reports
// its role and replication offset every round, proposes a failover when the primary has stopped
// reporting, keeps the node-local endpoint (cache_endpoint.hpp) pointed at the primary, and
// exports the cache's counters to /metrics.
//
// Roles: the primary's server runs `REPLICAOF NO ONE`; every other `REPLICAOF <primary> <port>`.
// A server is only ever started with its role already in its configuration (read from the
// cluster first), so an old primary that comes back starts as a replica and never takes a write
// of its own. A node whose server restarts while the cluster still names it primary (its data
// gone: nothing is persisted) hands the role to the live replica holding the most first.
// Split brain is bounded by min-replicas-to-write: a primary that has lost every replica for
// cache_min_replica_lag_s stops taking writes (set whenever the cluster has more than one node).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "stacknode/common/metrics.hpp"
#include "stacknode/node/cache.hpp"
#include "stacknode/node/cache_endpoint.hpp"
#include "stacknode/node/resp.hpp"

namespace stacknode::node {

inline constexpr std::chrono::milliseconds cache_interval{500};
// A node whose report has not changed for this long (on the reader's steady clock) is not alive
// for the failover decision. Reports change every cache_interval.
inline constexpr std::chrono::milliseconds cache_failover_after{2000};
inline constexpr std::chrono::milliseconds cache_call_timeout{1000};
inline constexpr std::chrono::milliseconds cache_restart_backoff{1000};
inline constexpr std::chrono::milliseconds cache_stop_wait{5000};
inline constexpr std::int64_t cache_min_replica_lag_s = 10;
// What node.cfg says (NodeConfig's cache_* settings, with their defaults), and where.
struct CacheSettings {
  bool enabled = true;
  std::uint16_t port = cache_port;  // redis-server's
  std::string bind;                 // where it listens: the node's service address and 127.0.0.1
  std::string endpoint;             // the node-local endpoint, "IPv4:port"
  std::uint32_t max_memory_mb = 0;
  std::string redis_server;
  std::filesystem::path dir;  // <state_dir>/cache: the config, the log
};

class CacheManager {
 public:
  CacheManager(ControlStore& store, std::int64_t self_id, std::string self_name, CacheSettings settings,
               metrics::Registry& registry);
  ~CacheManager();  // stop()

  // Binds the endpoint (throws std::runtime_error naming the address). Call before the loop runs.
  void start();
  // One round of the loop (see the top of this file). Never throws.
  void step();
  // Stops the endpoint and the server (SIGTERM, then SIGKILL after cache_stop_wait).
  void stop();

 private:
  struct Observed {
    CacheNodeRow row;
    std::chrono::steady_clock::time_point good;  // when a report with a live server last arrived
  };
  bool ensure_server(const CacheState& state, const std::vector<NodeRow>& nodes);
  bool spawn(const std::string& replica_of);
  void reap();
  std::optional<std::string> address_of(std::int64_t node_id, const std::vector<NodeRow>& nodes) const;
  std::optional<resp::Value> call(std::initializer_list<std::string> words);
  void warn_once(const std::string& problem);

  ControlStore& store_;
  std::int64_t self_id_;
  std::string self_name_;
  CacheSettings settings_;
  metrics::Registry& registry_;
  CacheEndpoint endpoint_;
  pid_t server_pid_ = -1;
  std::chrono::steady_clock::time_point next_start_{};
  std::string password_;
  resp::Client client_;
  std::map<std::int64_t, Observed> observed_;
  std::optional<std::int64_t> proposed_epoch_;  // the epoch whose failover was decided (by anyone)
  std::chrono::steady_clock::time_point last_read_{};  // this loop's last good read of the state
  double hits_seen_ = 0;
  double misses_seen_ = 0;
  std::string last_problem_;
};

}  // namespace stacknode::node
