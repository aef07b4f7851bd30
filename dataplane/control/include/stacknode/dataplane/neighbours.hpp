// ARP resolution of the service port's next hops, as the control thread runs it: which addresses
// need resolving (backends and the gateway without a static neighbour entry), when to ask for
// each, what the replies taught, and when a silent neighbour is forgotten. Pure code driven by a
// millisecond clock, so the timing rules are unit-tested without waiting; the DPDK shell sends the
// requests (arp.hpp) and republishes the snapshot with learned() when it changes
// (Snapshot::with_neighbours, no Maglev rebuild).
//
// Rules: an unresolved address is asked every second for its first tries, then every 30 s (a
// backend behind a router never answers; its IPIP traffic goes to the gateway meanwhile). A
// learned entry is asked again after a minute and forgotten when nothing confirmed it for 90 s,
// so a replaced backend's new MAC is picked up and a dead one stops being sent to. Static entries
// from the config always win and are never asked for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "stacknode/dataplane/control_protocol.hpp"

namespace stacknode::dataplane {

inline constexpr std::uint64_t neighbour_retry_ms = 1'000;
inline constexpr unsigned neighbour_quick_tries = 3;
inline constexpr std::uint64_t neighbour_backoff_ms = 30'000;
inline constexpr std::uint64_t neighbour_refresh_after_ms = 60'000;
inline constexpr std::uint64_t neighbour_forget_after_ms = 90'000;
// Requests sent per tick at most, so that a config with thousands of new backends does not burst
// thousands of broadcasts at once; the rest are asked on the next ticks.
inline constexpr std::size_t max_arp_requests_per_tick = 64;

// Backends of every service and the gateway, minus those with a static neighbour entry; sorted,
// each once.
std::vector<IpAddress> addresses_to_resolve(const ControlConfig& config);

// The static entries plus the learned ones for addresses without a static entry: what the
// snapshot is resolved from.
std::vector<NeighbourConfig> merge_neighbours(const std::vector<NeighbourConfig>& configured,
                                              const std::vector<NeighbourConfig>& learned);

class NeighbourResolver {
 public:
  // Replaces the set of addresses to resolve: new ones are asked at the next tick, entries no
  // longer wanted are dropped. True when learned() changed.
  bool set_wanted(const std::vector<IpAddress>& wanted, std::uint64_t now_ms);

  // An ARP reply from `address`. Ignored (false) unless the address is wanted; true when
  // learned() changed (a new entry or a new MAC).
  bool learn(const IpAddress& address, const MacAddress& mac, std::uint64_t now_ms);

  struct Tick {
    std::vector<IpAddress> ask;  // send an ARP request for each, now
    bool changed = false;        // learned() changed: an entry was forgotten
  };
  Tick tick(std::uint64_t now_ms);

  std::vector<NeighbourConfig> learned() const;  // sorted by address
  std::size_t wanted() const { return entries_.size(); }

 private:
  struct Entry {
    std::optional<MacAddress> mac;
    std::uint64_t confirmed_ms = 0;  // last reply
    std::uint64_t next_ask_ms = 0;
    unsigned tries = 0;  // requests since the last reply
  };
  std::map<IpAddress, Entry> entries_;
};

}  // namespace stacknode::dataplane
