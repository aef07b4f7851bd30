// What stacknoded and stackctl read from node.cfg: this box's name and API address (node), where
// the API listens (api), its paths (paths) and its stacknode-db (db, read by db_config.hpp).
//
//   node: { name = "sn1"; api_address = "198.18.1.11:8443"; };
//   api:  { listen = "198.18.1.11:8443"; threads = 1; workers = 4; };   (listen: api_address)
//   lb:   { manage_kernel = true; };       (VIPs on lo, arp_ignore/arp_announce: see load_balancer.hpp)
//   dataplane: { control_socket = "..."; }  (read only to find the local dataplane: a node.cfg
//              without a dataplane section has none, and stacknoded pushes no config)
//
// Per-box facts only; everything cluster-wide lives in the control database. A bad value throws
// config::ConfigError naming file:line and key.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "db_config.hpp"
#include "stacknode/node/cache.hpp"
#include "stacknode/common/config.hpp"
#include "stacknode/common/http_server.hpp"

namespace stacknode::node {

inline constexpr unsigned max_api_threads = 16;
// Blocking calls in flight at once (database round trips, argon2id checks of 64 MiB each).
inline constexpr unsigned default_api_workers = 4;
inline constexpr unsigned max_api_workers = 64;
// The cache tier's settings (services/cache/README.md).
inline constexpr std::int64_t max_cache_memory_mb = 1 << 20;  // redis-server's maxmemory, in MiB
inline constexpr std::uint32_t default_cache_memory_mb = 256;
inline constexpr std::string_view default_cache_endpoint = "127.0.0.1:6380";
inline constexpr std::string_view default_redis_server = "/usr/bin/redis-server";

struct NodeConfig {
  std::string name;
  std::string api_address;  // how members and stackctl reach this box's API
  std::string api_listen;   // where it listens (default: api_address)
  unsigned api_threads = 1;
  unsigned api_workers = default_api_workers;
  http::ServerLimits api_limits;
  std::filesystem::path state_dir;    // pki/ lives here
  std::filesystem::path runtime_dir;
  std::filesystem::path content_dir;  // sites' versions (content_sync.hpp); stacknode-web serves from here
  db::DbConfig db;
  std::string dataplane_socket;  // "" when node.cfg has no dataplane section
  bool manage_kernel = true;
  // The cache tier (node.cfg `cache`; daemon/cache.hpp): redis-server run by stacknoded.
  bool cache_enabled = true;
  std::uint16_t cache_port = node::cache_port;
  std::string cache_endpoint = std::string(default_cache_endpoint);  // the node-local endpoint to the primary
  std::uint32_t cache_max_memory_mb = default_cache_memory_mb;
  std::string redis_server = std::string(default_redis_server);

  std::filesystem::path pki_dir() const { return state_dir / "pki"; }
};

NodeConfig load_node_config(const config::Section& root);

}  // namespace stacknode::node
