// stacknoded's load-balancing loop (issue 6): which VIPs this node answers for (leases in the
// control database), the local dataplane's config (pushed whole over its control socket, again
// after a dataplane restart), and the kernel side of direct server return on this node (every
// VIP on `lo`, ARP for it left to the dataplane).
//
// Leases: a node answers for a VIP address only while it holds the address's lease, taken and
// renewed every `lb_interval` through Raft (so only a node that reaches the majority can), valid
// for `vip_lease` from the moment the request was sent, on the holder's steady clock; it stops
// answering `lease_margin` before that, and a second thread (the enforcer) takes a lapsed address
// out of the dataplane even while the loop waits on an unreachable database. Other nodes take a
// lease over only after seeing the same lease row (each renewal changes it) for a whole
// `vip_lease` on their own steady clocks: no wall clocks are compared between nodes. A free or
// stale lease goes to the address's preferred owner among the online nodes, without the stale
// holder (preferred_owner); a held lease stays with its holder (no move back when a node
// returns). stacknoded clears the dataplane's owned addresses when it starts and when it stops,
// and the dataplane drops them by itself when stacknoded stops renewing (dataplane_ownership).
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
// The dataplane answers for its owned VIPs this long after each apply or renew (every
// lb_interval while this node's loop runs): if stacknoded dies, its dataplane stops answering by
// itself, no later than this node's lease would have let it (vip_lease - lease_margin).
inline constexpr std::chrono::milliseconds dataplane_ownership = vip_lease - lease_margin;
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
  // Clears the dataplane's owned addresses (and services): at start, before the first step, so
  // that what a previous run left behind is not answered without a lease; and at stop.
  void release();
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
  // dataplane reports another version than the last applied (it restarted). The config is made
  // under mutex_; the socket is used under io_mutex_ only, so owned() and the state never wait
  // for the dataplane.
  void push(bool check_restart);
  // Sends `config` (version set here) and records it as applied; "" when it was, else why not.
  std::string apply(boost::json::object config, const std::string& text);
  void keep_kernel(const LbState& state);

  LbStore lb_;
  std::int64_t self_id_;
  LoadBalancerOptions options_;
  mutable std::mutex mutex_;  // the state below
  std::mutex io_mutex_;        // the dataplane socket and pushed_/pushed_version_/next_version_
  std::optional<LbState> state_;                          // the last state read
  std::map<std::string, Clock::time_point> held_until_;   // VIP address -> this node answers until
  std::string pushed_;                                    // the config last applied, without version
  std::uint64_t pushed_version_ = 0;
  std::uint64_t next_version_;
  // Logged once per distinct message: the step's (its thread only) and the pushes' (under mutex_).
  std::string last_step_problem_;
  std::string last_push_problem_;
  std::set<std::string> kernel_vips_;                     // addresses this loop put on lo
  struct Observed {
    VipLease row;
    Clock::time_point since;  // when this node first saw the row as it is (step thread only)
  };
  std::map<std::string, Observed> observed_;  // VIP address -> another node's lease as last seen
  // VIP address -> since when (this node's clock) it has had no lease: each vip_lease it stays
  // free, the next node in its preference order may take it (the preferred one may be unable to).
  std::map<std::string, Clock::time_point> free_since_;
  // The local dataplane took the last apply or renew: only then does this node take or renew
  // leases (a node that cannot answer for a VIP must not hold it). Guarded by io_mutex_.
  bool dataplane_answers_ = false;
  bool said_cannot_answer_ = false;
  bool kernel_prepared_ = false;
  bool ipip_ready_ = false;       // tunl0 up for the VIPs in ipip mode (keep_kernel)
  bool ipip_missing_ = false;     // this kernel has no IPIP device (said once)
  metrics::Registry& registry_;
  std::map<std::string, double> exported_;  // the dataplane's last total per counter child
};

}  // namespace stacknode::node
