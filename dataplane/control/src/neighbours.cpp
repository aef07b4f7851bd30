// ARP resolution bookkeeping of the control thread (neighbours.hpp).
#include "stacknode/dataplane/neighbours.hpp"

#include <algorithm>

namespace stacknode::dataplane {

std::vector<IpAddress> addresses_to_resolve(const ControlConfig& config) {
  std::vector<IpAddress> wanted;
  for (const auto& service : config.services) {
    for (const auto& backend : service.backends) wanted.push_back(backend.address);
  }
  if (config.gateway) wanted.push_back(*config.gateway);
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  std::erase_if(wanted, [&](const IpAddress& address) {
    return std::any_of(config.neighbours.begin(), config.neighbours.end(),
                       [&](const NeighbourConfig& entry) { return entry.address == address; });
  });
  return wanted;
}

std::vector<NeighbourConfig> merge_neighbours(const std::vector<NeighbourConfig>& configured,
                                              const std::vector<NeighbourConfig>& learned) {
  std::vector<NeighbourConfig> merged = configured;
  for (const auto& entry : learned) {
    const bool is_static =
        std::any_of(configured.begin(), configured.end(),
                    [&](const NeighbourConfig& fixed) { return fixed.address == entry.address; });
    if (!is_static) merged.push_back(entry);
  }
  return merged;
}

bool NeighbourResolver::set_wanted(const std::vector<IpAddress>& wanted, std::uint64_t now_ms) {
  bool changed = false;
  for (auto entry = entries_.begin(); entry != entries_.end();) {
    if (std::find(wanted.begin(), wanted.end(), entry->first) != wanted.end()) {
      ++entry;
      continue;
    }
    changed = changed || entry->second.mac.has_value();
    entry = entries_.erase(entry);
  }
  for (const auto& address : wanted) {
    if (entries_.find(address) == entries_.end()) entries_[address].next_ask_ms = now_ms;
  }
  return changed;
}

bool NeighbourResolver::learn(const IpAddress& address, const MacAddress& mac,
                              std::uint64_t now_ms) {
  const auto found = entries_.find(address);
  if (found == entries_.end()) return false;
  Entry& entry = found->second;
  const bool changed = entry.mac != mac;
  entry.mac = mac;
  entry.confirmed_ms = now_ms;
  entry.tries = 0;
  entry.next_ask_ms = now_ms + neighbour_refresh_after_ms;
  return changed;
}

NeighbourResolver::Tick NeighbourResolver::tick(std::uint64_t now_ms) {
  Tick tick;
  for (auto& [address, entry] : entries_) {
    if (entry.mac && now_ms - entry.confirmed_ms >= neighbour_forget_after_ms) {
      entry.mac.reset();
      entry.tries = 0;
      entry.next_ask_ms = now_ms;
      tick.changed = true;
    }
    if (now_ms < entry.next_ask_ms || tick.ask.size() == max_arp_requests_per_tick) continue;
    tick.ask.push_back(address);
    ++entry.tries;
    // A known entry being refreshed is asked every second until it answers or is forgotten.
    const bool quick = entry.mac.has_value() || entry.tries < neighbour_quick_tries;
    entry.next_ask_ms = now_ms + (quick ? neighbour_retry_ms : neighbour_backoff_ms);
  }
  return tick;
}

std::vector<NeighbourConfig> NeighbourResolver::learned() const {
  std::vector<NeighbourConfig> learned;
  for (const auto& [address, entry] : entries_) {
    if (entry.mac) learned.push_back({address, *entry.mac});
  }
  return learned;
}

}  // namespace stacknode::dataplane
