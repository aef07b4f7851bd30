// The cache tier as cluster state (issue 6, "Cache tier"): which node's redis-server is the
// primary (with an epoch that every failover raises), the cluster's cache password, and what each
// node's cache last reported (its role and replication offset). Schema migration 6.
//
// Failover is decided here, by the control plane, not by a vote among the Redis servers: every
// node's cache loop reads the state, and when the primary has stopped reporting for a while (on the
// reader's own steady clock) it proposes the live node whose cache holds the most replicated data
// (the highest offset; ties to the lowest id). The proposal is a conditional write through Raft
// (set_primary: only if the epoch is still the one it read), so exactly one proposal per epoch
// wins, and only a node that reaches the majority can make one.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "stacknode/node/control.hpp"

namespace stacknode::node {

inline constexpr std::uint16_t cache_port = 6379;  // every node's redis-server (DESIGN.md)
inline constexpr std::size_t cache_password_bytes = 24;  // random, as 48 hex digits

struct CacheClusterRow {
  std::optional<std::int64_t> primary;  // node id; none before the first election
  std::int64_t epoch = 0;
  std::string password;
};

// What one node's cache loop last reported about its redis-server.
struct CacheNodeRow {
  std::int64_t node_id = 0;
  std::string role;  // "primary" or "replica" (what the server says), "down" when it does not answer
  std::int64_t offset = 0;  // master_repl_offset: how much of the replication stream it holds
  std::int64_t epoch = 0;   // the epoch its role was set for
  std::int64_t at_ms = 0;   // Unix ms of the report (for people; no node compares it with its clock)
};

struct CacheState {
  CacheClusterRow cluster;
  std::vector<CacheNodeRow> nodes;
};

class CacheStore {
 public:
  explicit CacheStore(ControlStore& store) : store_(store) {}

  // The state; the first call in a cluster creates the cluster row with a random password.
  Checked<CacheState> state();
  // Records this node's report (every round: the row changes each time, which is how others see
  // that the node is alive). Not audited.
  Checked<Done> report(const CacheNodeRow& row);
  // Makes `node_id` the primary if the epoch is still `expected_epoch`; true when this call did it.
  // A failover (the cluster had a primary) is audited (cache.primary) with `reason`; the first
  // election of a new cluster is not (nothing happened to anyone's data).
  Checked<bool> set_primary(const std::string& actor, std::int64_t node_id, std::int64_t expected_epoch,
                            const std::string& reason, std::int64_t now);

 private:
  ControlStore& store_;
};

// The node that should become the primary now, or nothing when the current one stays: the
// current primary stays while it is alive (offsets are not compared with it: reports are taken at
// different moments, and a replica's can pass the primary's last one; a primary that restarts
// empty hands over before its server starts, daemon/cache.hpp). Otherwise the live node with the
// highest offset, ties to the lowest id. `alive`: nodes whose reports are still changing, as the
// caller saw them, and whose role is not "down".
std::optional<std::int64_t> cache_promotion(const CacheState& state, const std::set<std::int64_t>& alive);

}  // namespace stacknode::node
