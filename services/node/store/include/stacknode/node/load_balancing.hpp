// Load balancing as cluster state (issue 6): pools of node services, VIPs that send to a pool, and
// the VIP leases that say which one node answers for a VIP. The tables are schema migration 4;
// every change an operator makes is audited through ControlStore::change.
//
// The pure half (no database) is what every node computes the same way from the same rows, so
// that every dataplane builds the same Maglev tables: a pool's backends (pool_backends), the
// node a free VIP should go to (preferred_owner), and the dataplane's config for this node
// (dataplane_config, the control protocol's "config" object of dataplane/README.md).
#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/node/control.hpp"

namespace stacknode::node {

inline constexpr std::size_t max_lb_name_chars = 32;   // pool and VIP names
inline constexpr std::size_t max_health_path_chars = 256;
inline constexpr std::size_t max_pools = 64;
inline constexpr std::size_t max_vips = 256;
inline constexpr std::uint32_t max_member_weight = 65535;  // the dataplane's limit
inline constexpr std::uint16_t default_pool_port = 80;     // the web service of every node
inline constexpr std::string_view default_health_path = "/healthz";
// Health checks (HTTP GET of health_path, up when the status is below 400), per pool.
inline constexpr std::uint32_t default_health_interval_ms = 1000;
inline constexpr std::uint32_t min_health_interval_ms = 200;
inline constexpr std::uint32_t max_health_interval_ms = 60'000;
inline constexpr std::uint32_t default_health_timeout_ms = 1000;
inline constexpr std::uint32_t default_rise = 2;  // consecutive good checks to turn up
inline constexpr std::uint32_t default_fall = 2;  // consecutive bad checks to turn down
inline constexpr std::uint32_t max_rise_fall = 10;
// A node's view counts while it is this many of its pool's intervals old at most (a node that
// stopped checking, or cannot write, stops voting).
inline constexpr std::int64_t health_view_max_intervals = 5;
// The dataplane's Maglev table size for every VIP (a prime; dataplane/README.md).
inline constexpr std::uint32_t vip_table_size = 65537;

// A member's state as the operator set it: draining keeps its connections and gets no new ones;
// maintenance takes it out (the dataplane's "down": its flows are re-picked).
enum class MemberState : std::uint8_t { active, draining, maintenance };
std::string_view to_string(MemberState state);
std::optional<MemberState> parse_member_state(std::string_view text);

struct PoolRow {
  std::string name;
  std::uint16_t port = default_pool_port;  // the service the pool's members run (health checks)
  std::string health_path = std::string(default_health_path);
  std::uint32_t health_interval_ms = default_health_interval_ms;
  std::uint32_t health_timeout_ms = default_health_timeout_ms;
  std::uint32_t rise = default_rise;
  std::uint32_t fall = default_fall;
  std::int64_t created_at = 0;
};

// What the operator said about one node in one pool; nodes without a row are active, weight 1.
struct PoolMemberRow {
  std::string pool;
  std::int64_t node_id = 0;
  std::uint32_t weight = 1;
  MemberState state = MemberState::active;
};

struct VipRow {
  std::string name;
  std::string address;          // IPv4, dotted
  std::uint16_t port = 0;
  std::string protocol = "tcp";  // tcp or udp
  std::string pool;
  std::string mode = "ipip";  // ipip or l2_dsr (the dataplane's forwarding modes)
  std::int64_t created_at = 0;
};

// Leases are per VIP address: ARP answers for an address, whatever VIPs (ports) it carries.
struct VipLease {
  std::string address;
  std::int64_t node_id = 0;
  std::int64_t expires_at_ms = 0;  // Unix milliseconds
};

// One node's (checker_id's) view of one pool member (node_id) at at_ms.
struct HealthView {
  std::string pool;
  std::int64_t node_id = 0;
  std::int64_t checker_id = 0;
  bool up = true;
  std::int64_t at_ms = 0;
};

// Everything the load-balancing loop reads.
struct LbState {
  std::vector<NodeRow> nodes;
  std::vector<PoolRow> pools;
  std::vector<PoolMemberRow> members;
  std::vector<VipRow> vips;
  std::vector<VipLease> leases;
  std::vector<HealthView> health;
};

class LbStore {
 public:
  explicit LbStore(ControlStore& store) : store_(store) {}

  Checked<std::vector<PoolRow>> pools();
  Checked<Done> create_pool(const std::string& actor, const PoolRow& pool, std::int64_t now);
  // Refused (conflict) while a VIP sends to the pool.
  Checked<Done> delete_pool(const std::string& actor, const std::string& name, std::int64_t now);
  Checked<std::vector<PoolMemberRow>> members();
  // Sets `node_name`'s weight and/or state in `pool` (both must exist); what is not given stays
  // (a node without a row: weight 1, active).
  Checked<Done> set_member(const std::string& actor, const std::string& pool, const std::string& node_name,
                           std::optional<std::uint32_t> weight, std::optional<MemberState> state, std::int64_t now);

  Checked<std::vector<VipRow>> vips();
  // The pool must exist; (address, port, protocol) must be free; the address must not be a node's.
  Checked<Done> create_vip(const std::string& actor, const VipRow& vip, std::int64_t now);
  Checked<Done> delete_vip(const std::string& actor, const std::string& name, std::int64_t now);

  Checked<std::vector<VipLease>> leases();
  Checked<LbState> state();
  // Takes or renews the lease of VIP address `address` for `node_id` (expires_at_ms = now_ms +
  // lease_ms, for people: no node compares it with its own clock) if there is none, if `node_id`
  // holds it already, or if it is still exactly `replacing` (the row the caller saw unchanged
  // for a whole lease on its own clock: its holder stopped renewing). True when `node_id` holds
  // it afterwards. A write through Raft: it succeeds only where the majority is reachable. Not
  // audited (no one made it).
  Checked<bool> claim_lease(const std::string& address, std::int64_t node_id, std::int64_t now_ms, std::int64_t lease_ms,
                            const std::optional<VipLease>& replacing);
  // Records `view` (this node's verdict on a member); not audited.
  Checked<Done> record_health(const HealthView& view);

 private:
  ControlStore& store_;
};

// ---- The pure half ----

// The IPv4 address a node's services listen on: the host part of its API address.
std::optional<std::string> service_address(const NodeRow& node);

struct LbBackend {
  std::string address;
  std::uint32_t weight = 1;
  std::string state;  // the dataplane's: active, draining or down
};
// The backends of `pool`: every node's service address; the operator's state (maintenance is
// down); a node offline at `now` (Unix seconds) is down, and so is one that most fresh health
// views (member_healthy) call down.
std::vector<LbBackend> pool_backends(const LbState& state, const std::string& pool, std::int64_t now);
// The majority of the fresh views of `node_id` in `pool` at now_ms: true unless more than half of
// them say down (no fresh view: up, so a cluster whose checks have not run yet still serves).
bool member_healthy(const LbState& state, const PoolRow& pool, std::int64_t node_id, std::int64_t now_ms);

// Of `candidates` (node ids), the one a free VIP address should go to: the highest rendezvous
// score of (address, node), so that VIPs spread over nodes and a node's loss moves only its own.
std::optional<std::int64_t> preferred_owner(std::string_view address, std::span<const std::int64_t> candidates);

// The dataplane's config for this node: every VIP as a service (all nodes build the same
// backends), and `owned` (VIP addresses) as those this node answers ARP and echo for.
boost::json::object dataplane_config(const LbState& state, const std::set<std::string>& owned, std::uint64_t version,
                                     std::int64_t now);

}  // namespace stacknode::node
