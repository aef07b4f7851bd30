// build_snapshot(): validates a SnapshotConfig and turns it into the immutable Snapshot the fast
// path reads (snapshot.hpp). Every refusal names the field and the value, so that the control
// socket can hand the message to the operator unchanged.
#include "stacknode/dataplane/snapshot.hpp"

#include <algorithm>

#include "wire.hpp"

namespace stacknode::dataplane {

namespace {

std::string port_name(const SnapshotConfig& config, std::size_t index) {
  std::string text = "ports[" + std::to_string(index) + "]";
  if (!config.ports[index].name.empty()) text += " (" + config.ports[index].name + ")";
  return text;
}

std::string service_name(const SnapshotConfig& config, std::size_t index) {
  return "services[" + std::to_string(index) + "] (" + to_string(config.services[index].vip) + ")";
}

// IPv4 only for now; the message says so, rather than "bad address".
std::string check_address(const IpAddress& address) {
  if (address.family == AddressFamily::ipv4) return {};
  if (address.family == AddressFamily::ipv6) return "IPv6 is not supported yet";
  return "address missing";
}

std::string check_mac(const MacAddress& mac) {
  if (mac.is_zero()) return "MAC address missing (00:00:00:00:00:00)";
  if (mac.is_multicast()) return "MAC address " + to_string(mac) + " is multicast";
  return {};
}

std::uint64_t power_of_two_at_least(std::uint64_t value) {
  std::uint64_t result = 1;
  while (result < value) result *= 2;
  return result;
}

// Checks every entry and sorts them by address; a problem names the entry.
std::string sort_neighbours(std::vector<NeighbourConfig>& neighbours) {
  for (std::size_t index = 0; index < neighbours.size(); ++index) {
    const std::string field = "neighbours[" + std::to_string(index) + "]";
    if (const std::string problem = check_address(neighbours[index].address); !problem.empty()) {
      return field + ": " + problem;
    }
    if (const std::string problem = check_mac(neighbours[index].mac); !problem.empty()) {
      return field + " (" + to_string(neighbours[index].address) + "): " + problem;
    }
  }
  std::sort(neighbours.begin(), neighbours.end(),
            [](const NeighbourConfig& left, const NeighbourConfig& right) { return left.address < right.address; });
  for (std::size_t index = 1; index < neighbours.size(); ++index) {
    if (neighbours[index].address == neighbours[index - 1].address) {
      return "neighbours: " + to_string(neighbours[index].address) + " is listed twice";
    }
  }
  return {};
}

const NeighbourConfig* find_neighbour(const std::vector<NeighbourConfig>& sorted, const IpAddress& address) {
  const auto found =
      std::lower_bound(sorted.begin(), sorted.end(), address,
                       [](const NeighbourConfig& entry, const IpAddress& wanted) { return entry.address < wanted; });
  return (found != sorted.end() && found->address == address) ? &*found : nullptr;
}

SnapshotBuildResult refuse(std::string message) {
  SnapshotBuildResult result;
  result.error = std::move(message);
  return result;
}

}  // namespace

std::string_view to_string(ForwardingMode mode) {
  switch (mode) {
    case ForwardingMode::ipip: return "ipip";
    case ForwardingMode::l2_dsr: return "l2_dsr";
  }
  return "unknown";
}

// Invariant 3: a backend's own entry, else (IPIP only: L2 DSR needs the backend itself on the
// segment) the gateway's.
void Snapshot::resolve_neighbours(const std::vector<NeighbourConfig>& sorted) {
  const NeighbourConfig* gateway = gateway_ ? find_neighbour(sorted, *gateway_) : nullptr;
  for (const Service& service : services_) {
    for (std::uint32_t index = 0; index < service.backend_count; ++index) {
      Backend& backend = backends_[service.first_backend + index];
      const NeighbourConfig* neighbour = find_neighbour(sorted, backend.address);
      if (neighbour == nullptr && service.mode == ForwardingMode::ipip) neighbour = gateway;
      backend.mac_known = neighbour != nullptr;
      backend.mac = neighbour != nullptr ? neighbour->mac : MacAddress{};
    }
  }
}

SnapshotBuildResult Snapshot::with_neighbours(std::vector<NeighbourConfig> neighbours) const {
  if (neighbours.size() > max_neighbours) {
    return refuse("neighbours: " + std::to_string(neighbours.size()) + " entries, the limit is " +
                  std::to_string(max_neighbours));
  }
  if (std::string problem = sort_neighbours(neighbours); !problem.empty()) return refuse(std::move(problem));
  std::unique_ptr<Snapshot> copy(new Snapshot(*this));
  copy->resolve_neighbours(neighbours);
  SnapshotBuildResult result;
  result.snapshot = std::move(copy);
  return result;
}

bool Snapshot::owns_vip(const IpAddress& address) const {
  return std::binary_search(owned_vips_.begin(), owned_vips_.end(), address);
}

int Snapshot::find_backend(const Service& service, const IpAddress& address) const {
  const std::span<const Backend> list = backends_of(service);
  const auto found = std::lower_bound(list.begin(), list.end(), address,
                                      [](const Backend& backend, const IpAddress& wanted) { return backend.address < wanted; });
  if (found == list.end() || found->address != address) return -1;
  return static_cast<int>(found - list.begin());
}

SnapshotBuildResult build_snapshot(const SnapshotConfig& config) {
  std::unique_ptr<Snapshot> snapshot(new Snapshot());
  snapshot->version_ = config.version;

  // ---- Ports ----
  if (config.ports.empty()) return refuse("ports: none configured");
  if (config.ports.size() > max_ports) {
    return refuse("ports: " + std::to_string(config.ports.size()) + " configured, the limit is " + std::to_string(max_ports));
  }
  std::vector<IpAddress> all_port_addresses;
  std::optional<std::size_t> service_port;
  bool any_front = false;
  for (std::size_t index = 0; index < config.ports.size(); ++index) {
    const PortConfig& port = config.ports[index];
    const std::string name = port_name(config, index);
    if (const std::string problem = check_mac(port.mac); !problem.empty()) return refuse(name + ": " + problem);
    if (port.mtu < min_port_mtu || port.mtu > max_port_mtu) {
      return refuse(name + ": mtu " + std::to_string(port.mtu) + " is outside [" + std::to_string(min_port_mtu) +
                    ", " + std::to_string(max_port_mtu) + "]");
    }
    if (port.vlan_id > max_vlan_id) {
      return refuse(name + ": vlan_id " + std::to_string(port.vlan_id) + " is outside [0, " +
                    std::to_string(max_vlan_id) + "] (0 means untagged)");
    }
    if (!port.front && !port.service) return refuse(name + ": has neither the front nor the service role");
    if (port.service) {
      if (service_port) {
        return refuse(name + ": a second port with the service role (" + port_name(config, *service_port) +
                      " has it); one service port is supported");
      }
      service_port = index;
    }
    any_front = any_front || port.front;
    if (port.addresses.size() > max_addresses_per_port) {
      return refuse(name + ": " + std::to_string(port.addresses.size()) + " addresses, the limit is " +
                    std::to_string(max_addresses_per_port));
    }
    Port& built = snapshot->ports_[index];
    built.mac = port.mac;
    built.mtu = port.mtu;
    built.vlan_id = port.vlan_id;
    built.front = port.front;
    built.service = port.service;
    for (std::size_t address_index = 0; address_index < port.addresses.size(); ++address_index) {
      const IpAddress& address = port.addresses[address_index];
      const std::string field = name + ": addresses[" + std::to_string(address_index) + "]";
      if (const std::string problem = check_address(address); !problem.empty()) return refuse(field + ": " + problem);
      if (std::find(all_port_addresses.begin(), all_port_addresses.end(), address) != all_port_addresses.end()) {
        return refuse(field + ": " + to_string(address) + " is listed twice");
      }
      all_port_addresses.push_back(address);
      built.addresses[built.address_count++] = address;
    }
  }
  snapshot->port_count_ = config.ports.size();
  if (!service_port) return refuse("ports: no port has the service role");
  if (!any_front) return refuse("ports: no port has the front role");
  snapshot->service_port_ = static_cast<std::uint16_t>(*service_port);
  for (const IpAddress& address : config.ports[*service_port].addresses) {
    if (address.is_ipv4()) {
      snapshot->outer_source_ = address;
      break;
    }
  }
  if (config.outer_ttl == 0) return refuse("outer_ttl: 0 is not a usable TTL");
  snapshot->outer_ttl_ = config.outer_ttl;

  // ---- Neighbours and gateway ----
  if (config.neighbours.size() > max_neighbours) {
    return refuse("neighbours: " + std::to_string(config.neighbours.size()) + " entries, the limit is " +
                  std::to_string(max_neighbours));
  }
  std::vector<NeighbourConfig> neighbours = config.neighbours;
  if (std::string problem = sort_neighbours(neighbours); !problem.empty()) return refuse(std::move(problem));
  if (config.gateway) {
    if (const std::string problem = check_address(*config.gateway); !problem.empty()) return refuse("gateway: " + problem);
    snapshot->gateway_ = *config.gateway;  // its MAC may be unresolved yet (invariant 3)
  }

  // ---- Owned VIPs ----
  if (config.owned_vips.size() > max_owned_vips) {
    return refuse("owned_vips: " + std::to_string(config.owned_vips.size()) + " entries, the limit is " +
                  std::to_string(max_owned_vips));
  }
  snapshot->owned_vips_ = config.owned_vips;
  for (std::size_t index = 0; index < config.owned_vips.size(); ++index) {
    if (const std::string problem = check_address(config.owned_vips[index]); !problem.empty()) {
      return refuse("owned_vips[" + std::to_string(index) + "]: " + problem);
    }
  }
  std::sort(snapshot->owned_vips_.begin(), snapshot->owned_vips_.end());
  for (std::size_t index = 1; index < snapshot->owned_vips_.size(); ++index) {
    if (snapshot->owned_vips_[index] == snapshot->owned_vips_[index - 1]) {
      return refuse("owned_vips: " + to_string(snapshot->owned_vips_[index]) + " is listed twice");
    }
  }

  // ---- Services ----
  if (config.services.size() > max_services) {
    return refuse("services: " + std::to_string(config.services.size()) + " configured, the limit is " +
                  std::to_string(max_services));
  }
  std::vector<VipKey> keys;
  for (std::size_t index = 0; index < config.services.size(); ++index) {
    const ServiceConfig& service = config.services[index];
    const std::string name = service_name(config, index);
    if (const std::string problem = check_address(service.vip.address); !problem.empty()) {
      return refuse(name + ": vip: " + problem);
    }
    if (service.vip.protocol != IpProtocol::tcp && service.vip.protocol != IpProtocol::udp) {
      return refuse(name + ": protocol must be tcp or udp");
    }
    if (service.vip.port == 0) return refuse(name + ": port 0 is not a service port");
    if (std::find(all_port_addresses.begin(), all_port_addresses.end(), service.vip.address) != all_port_addresses.end()) {
      return refuse(name + ": the VIP is also a port's own address");
    }
    if (std::find(keys.begin(), keys.end(), service.vip) != keys.end()) return refuse(name + ": configured twice");
    keys.push_back(service.vip);
    if (service.mode == ForwardingMode::ipip && !snapshot->outer_source_.is_ipv4()) {
      return refuse(name + ": IPIP forwarding needs an IPv4 address on the service port " +
                    port_name(config, *service_port) + " (the outer source)");
    }

    std::vector<MaglevBackend> list;
    list.reserve(service.backends.size());
    for (const BackendConfig& backend : service.backends) list.push_back({backend.address, backend.weight, backend.state});
    for (std::size_t backend_index = 0; backend_index < list.size(); ++backend_index) {
      if (const std::string problem = check_address(list[backend_index].address); !problem.empty()) {
        return refuse(name + ": backends[" + std::to_string(backend_index) + "]: " + problem);
      }
    }
    MaglevBuildResult maglev = build_maglev_table(std::move(list), service.maglev_table_size);
    if (!maglev.ok) return refuse(name + ": " + maglev.error);

    Service built;
    built.vip = service.vip;
    built.mode = service.mode;
    built.first_backend = static_cast<std::uint32_t>(snapshot->backends_.size());
    built.backend_count = static_cast<std::uint32_t>(maglev.table.backends.size());
    built.first_entry = static_cast<std::uint32_t>(snapshot->maglev_entries_.size());
    built.table_size = service.maglev_table_size;
    for (const MaglevBackend& backend : maglev.table.backends) {
      Backend resolved;
      resolved.address = backend.address;
      resolved.weight = backend.weight;
      resolved.state = backend.state;
      if (backend.state == BackendState::active) ++built.active_backends;
      snapshot->backends_.push_back(resolved);
    }
    snapshot->maglev_entries_.insert(snapshot->maglev_entries_.end(), maglev.table.entries.begin(),
                                     maglev.table.entries.end());
    snapshot->services_.push_back(built);
  }

  snapshot->resolve_neighbours(neighbours);
  if (snapshot->outer_source_.is_ipv4()) {
    for (Backend& backend : snapshot->backends_) {
      backend.ipip_header_sum =
          wire::ipip_fixed_header_sum(snapshot->outer_source_.bytes.data(), backend.address.bytes.data(),
                                      snapshot->outer_ttl_, static_cast<std::uint8_t>(IpProtocol::ipip));
    }
  }

  // ---- VIP index (invariant 5) ----
  const std::uint64_t index_size = power_of_two_at_least(std::max<std::uint64_t>(2, 2 * snapshot->services_.size()));
  snapshot->vip_index_.assign(index_size, Snapshot::no_service);
  snapshot->vip_index_mask_ = index_size - 1;
  for (std::uint32_t index = 0; index < snapshot->services_.size(); ++index) {
    std::uint64_t slot = Snapshot::vip_key_hash(snapshot->services_[index].vip) & snapshot->vip_index_mask_;
    while (snapshot->vip_index_[slot] != Snapshot::no_service) slot = (slot + 1) & snapshot->vip_index_mask_;
    snapshot->vip_index_[slot] = index;
  }

  SnapshotBuildResult result;
  result.snapshot = std::move(snapshot);
  return result;
}

}  // namespace stacknode::dataplane
