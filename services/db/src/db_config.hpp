// stacknode-db's settings: the `db` section of node.cfg (and `paths`), read once at start. Every
// value is checked here, so the rest of the daemon can trust it; a bad value throws
// config::ConfigError naming file:line and key (exit status 2).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "stacknode/common/config.hpp"
#include "stacknode/common/http_server.hpp"
#include "stacknode/db/wire.hpp"

namespace stacknode::db {

// dqlite derives its Raft timers from the one-way network latency: heartbeat 1.5x, election
// timeout 15x (randomised up to 2x by Raft). 20 ms on a LAN gives a 300-600 ms election timeout,
// so a lost leader is replaced in well under a second, against 3-6 s with dqlite's defaults, and
// still leaves room for a busy node's scheduling hiccups.
inline constexpr unsigned default_network_latency_ms = 20;
inline constexpr unsigned max_network_latency_ms = 3'600'000;  // dqlite's own ceiling
// Raft log entries between snapshots, and entries kept after one (dqlite's defaults).
inline constexpr unsigned default_snapshot_threshold = 1024;
inline constexpr unsigned default_snapshot_trailing = 8192;
inline constexpr std::uint16_t default_wire_port = 7000;
// The HTTP SQL API has no authentication of its own: by default only this box's processes (the
// app tier, stackctl) reach it. Listening wider is a choice node.cfg has to make.
inline constexpr std::string_view default_http_listen = "127.0.0.1:7001";
inline constexpr unsigned max_http_threads = 64;
inline constexpr unsigned default_db_workers = 16;  // blocking database calls in flight at once
inline constexpr unsigned max_db_workers = 256;

// What the HTTP API accepts (db.limits). Each is refused with a 4xx naming the limit.
struct ApiLimits {
  std::size_t statement_bytes = 64 * 1024;  // one SQL text
  std::size_t statements = 1000;            // per execute/query request
  std::size_t parameters = wire::max_parameters;
  std::size_t rows = 100'000;               // per query response
  std::uint64_t body_bytes = 16 * 1024 * 1024;
};

struct DbConfig {
  // From db.node_id; 0 when node.cfg leaves it out, and then from identity_file (read_identity).
  wire::NodeId node_id = 0;
  std::string identity_file;  // db.identity_file: written by stackctl at cluster init or join
  std::string address;      // "host:port" other nodes and clients reach this node's dqlite at
  std::string bind;         // where it listens (default: address)
  std::string data_dir;     // Raft log and snapshots
  // With ca.crt, node.crt and node.key (and revoked): the wire port runs mutual TLS
  // (tls_gateway.hpp). db.tls_dir in node.cfg, or tls_dir in the identity file; "": plain TCP.
  std::string tls_dir;
  std::vector<std::string> join;  // members of an existing cluster, tried in turn on first start
  wire::Role role = wire::Role::voter;  // asked for when joining
  std::uint64_t failure_domain = 0;
  unsigned network_latency_ms = default_network_latency_ms;
  unsigned snapshot_threshold = default_snapshot_threshold;
  unsigned snapshot_trailing = default_snapshot_trailing;
  std::vector<http::Listener> listeners;
  unsigned http_threads = 1;
  unsigned workers = default_db_workers;
  http::ServerLimits http_limits;
  ApiLimits limits;
  std::string runtime_dir;
};

// Reads and validates `db` and `paths` from the root of node.cfg.
DbConfig load_db_config(const config::Section& root);

// The identity file stackctl writes when this box inits or joins a cluster (services/node
// README, "Design of init and join"), libconfig syntax:
//   node_id = 2;  join = ["198.18.1.11:7000"];  role = "standby";
//   tls_dir = "/var/lib/stacknode/db-tls";  address = "198.18.1.12:7002";
// All but node_id are optional; `address` (written by `stackctl node update --db-address`) takes
// the place of db.address and db.bind.
// Sets node_id, join and role in `config`; throws config::ConfigError naming the file and key.
void read_identity(DbConfig& config);

}  // namespace stacknode::db
