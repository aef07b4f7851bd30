// stacknoded's load-balancing loop (issue 6): which VIPs this node answers for (leases in the
// control database), the local dataplane's config (pushed whole over its control socket, again
// after a dataplane restart), and the kernel side of direct server return on this node (every
// VIP on `lo`, ARP for it left to the dataplane).
//
// Leases: a node answers for a VIP only while it holds the VIP's lease, taken and renewed every
// `lb_interval` through Raft (so only a node that reaches the majority can), valid for
// `vip_lease` from the moment the request was sent. A free or expired lease is taken by the
// VIP's preferred owner among the online nodes but the one whose lease ran out
// (preferred_owner); a held lease stays with its
// holder (no move back when a node returns). The holder stops answering `lease_margin` before
// others may take the VIP, and a second thread (the enforcer) takes a lapsed VIP out of the
// dataplane even while the loop waits on an unreachable database.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "stacknode/common/metrics.hpp"
#include "stacknode/node/load_balancing.hpp"

namespace stacknode::node {

inline constexpr std::chrono::milliseconds lb_interval{300};
inline constexpr std::chrono::milliseconds vip_lease{1500};
inline constexpr std::chrono::milliseconds lease_margin{300};
inline constexpr std::chrono::milliseconds lease_enforce_interval{100};
inline constexpr std::chrono::milliseconds dataplane_reply_timeout{2000};
inline constexpr std::size_t max_dataplane_reply_bytes = 1 << 20;
// How often the dataplane's counters are read for /metrics: each read walks the connection
// tables (dataplane/README.md: every few seconds, not in a tight loop).
inline constexpr std::chrono::seconds dataplane_counters_interval{5};

struct LoadBalancerOptions {
  std::string dataplane_socket;  // "" when this node runs no dataplane
  bool manage_kernel = true;     // put VIPs on lo and set arp_ignore/arp_announce
};

// One request line to the dataplane's control socket and its reply line, parsed; nullopt with
// `error` set when the socket does not answer within dataplane_reply_timeout.
std::optional<boost::json::object> dataplane_request(const std::string& socket_path, const boost::json::object& request,
                                                     std::string& error);

class LoadBalancer {
 public:
  // `registry` gets the dataplane's counters (export_counters) and which VIPs this node answers.
  LoadBalancer(ControlStore& store, std::int64_t self_id, LoadBalancerOptions options, metrics::Registry& registry);
  // The loop's step: read the state, renew and take leases, push the dataplane's config when it
  // changed or the dataplane restarted, and keep the kernel's VIPs.
  void step();
  // The enforcer's step: a VIP whose lease lapsed leaves the dataplane now.
  void enforce();
  // For /metrics and tests: the VIP addresses this node answers for now.
  std::set<std::string> owned() const;
  // Reads the dataplane's counters into the registry: per VIP and backend packets, bytes and new
  // flows (counters: the dataplane's totals as deltas, so a restarted dataplane's reset counts
  // from zero again), active flows (gauges), drops by reason, and whether it answered.
  void export_counters();

 private:
  using Clock = std::chrono::steady_clock;
  std::set<std::string> owned_locked(Clock::time_point now) const;
  // Applies the config when it differs from the last applied, or (check_restart) when the
  // dataplane reports another version than the last applied (it restarted).
  void push_locked(Clock::time_point now, bool check_restart);
  void keep_kernel(const LbState& state);

  ControlStore& store_;
  LbStore lb_;
  std::int64_t self_id_;
  LoadBalancerOptions options_;
  mutable std::mutex mutex_;
  std::optional<LbState> state_;                          // the last state read
  std::map<std::string, Clock::time_point> held_until_;   // VIP address -> this node answers until
  std::string pushed_;                                    // the config last applied, without version
  std::uint64_t pushed_version_ = 0;
  std::uint64_t next_version_;
  // Logged once per distinct message: the step's (its thread only) and the pushes' (under mutex_).
  std::string last_step_problem_;
  std::string last_push_problem_;
  std::set<std::string> kernel_vips_;                     // addresses this loop put on lo
  bool kernel_prepared_ = false;
  metrics::Registry& registry_;
  std::map<std::string, double> exported_;  // the dataplane's last total per counter child
  std::set<std::string> owned_gauges_;      // VIP addresses with a stacknode_vip_answered gauge
};

}  // namespace stacknode::node
