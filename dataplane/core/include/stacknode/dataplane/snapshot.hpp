// The dataplane's configuration snapshot: everything the fast path reads (ports, services, their
// backends in canonical order, Maglev tables, owned VIPs, neighbours resolved to MACs), built and
// validated on the control thread by build_snapshot() and then never changed. The DPDK shell
// publishes a `const Snapshot*` with an atomic pointer swap and frees the old one after an rte_rcu
// quiescent period; a snapshot owns all its memory and points at nothing outside itself.
//
// Invariants (established by build_snapshot, relied on by process_packet):
//  1. Immutable after build: only const accessors exist.
//  2. A service's backends are contiguous in backends(), in canonical order (maglev.hpp), and its
//     Maglev entries index them; a service's table size is prime.
//  3. Every backend has the destination MAC resolved at build time (its own neighbour entry, else
//     the service port's gateway's), or mac_known is false and packets to it are dropped with
//     DropReason::no_neighbour. Missing neighbours are not a config error: ARP resolution runs
//     later and republishes.
//  4. The service port exists; when an IPIP service exists, the service port has an IPv4
//     address (the outer source).
//  5. The VIP index is an open-addressing table of at least twice the services, so every probe
//     sequence ends at an empty slot.
#pragma once

#include <cstddef>
#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "stacknode/dataplane/addresses.hpp"
#include "stacknode/dataplane/flow_hash.hpp"
#include "stacknode/dataplane/maglev.hpp"

namespace stacknode::dataplane {

inline constexpr std::size_t max_ports = 8;
inline constexpr std::size_t max_addresses_per_port = 16;
inline constexpr std::size_t max_services = 4096;
inline constexpr std::size_t max_owned_vips = 4096;
inline constexpr std::size_t max_neighbours = 65536;
// Ethernet MTU (largest IP packet) limits: 576 is the IPv4 minimum every host must accept
// (RFC 791), 9216 the common jumbo-frame limit of switches.
inline constexpr std::uint16_t min_port_mtu = 576;
inline constexpr std::uint16_t max_port_mtu = 9216;
inline constexpr std::uint16_t default_port_mtu = 1500;
inline constexpr std::uint16_t max_vlan_id = 4094;
inline constexpr std::uint8_t default_outer_ttl = 64;  // Linux's default TTL

enum class ForwardingMode : std::uint8_t {
  ipip,    // IPIP encapsulation to the backend's service address (RFC 2003), the default
  l2_dsr,  // rewrite the destination MAC to the backend's; backend on the service port's segment
};
std::string_view to_string(ForwardingMode mode);

// ---- What the control side gives ----

struct PortConfig {
  std::string name;  // for messages only
  MacAddress mac;
  std::uint16_t mtu = default_port_mtu;
  std::uint16_t vlan_id = 0;  // 0: untagged; else frames carry this 802.1Q VLAN id
  bool front = false;         // clients and VIPs: ARP for owned VIPs is answered here
  bool service = false;       // backends: encapsulated packets leave here
  std::vector<IpAddress> addresses;  // the port's own addresses (ARP, echo); the first IPv4 one
                                     // of the service port is the IPIP outer source
};

struct BackendConfig {
  IpAddress address;
  std::uint32_t weight = 1;
  BackendState state = BackendState::active;
};

struct ServiceConfig {
  VipKey vip;
  ForwardingMode mode = ForwardingMode::ipip;
  std::uint32_t maglev_table_size = default_maglev_table_size;
  std::vector<BackendConfig> backends;  // any order
};

struct NeighbourConfig {
  IpAddress address;
  MacAddress mac;
};

struct SnapshotConfig {
  std::uint64_t version = 0;  // from the control side, reported back, never interpreted
  std::vector<PortConfig> ports;
  std::vector<ServiceConfig> services;
  std::vector<IpAddress> owned_vips;       // VIPs this node answers ARP and echo for
  std::vector<NeighbourConfig> neighbours;  // on the service port
  std::optional<IpAddress> gateway;  // service port next hop for backends without a neighbour entry
  std::uint8_t outer_ttl = default_outer_ttl;
};

// ---- What the fast path reads ----

struct Port {
  MacAddress mac;
  std::uint16_t mtu = default_port_mtu;
  std::uint16_t vlan_id = 0;
  bool front = false;
  bool service = false;
  std::uint8_t address_count = 0;
  std::array<IpAddress, max_addresses_per_port> addresses{};

  bool owns(const IpAddress& address) const {
    for (std::size_t index = 0; index < address_count; ++index) {
      if (addresses[index] == address) return true;
    }
    return false;
  }
};

struct Backend {
  IpAddress address;
  std::uint32_t weight = 1;
  BackendState state = BackendState::active;
  bool mac_known = false;
  MacAddress mac;  // where frames to this backend go on the service port (invariant 3)
  // IPIP: the sum of the outer header's words fixed by the snapshot and this backend (version,
  // TTL, protocol, outer source, this address); see wire.hpp, ipip_fixed_header_sum.
  std::uint32_t ipip_header_sum = 0;
};

struct Service {
  VipKey vip;
  ForwardingMode mode = ForwardingMode::ipip;
  std::uint32_t first_backend = 0;   // into Snapshot::backends()
  std::uint32_t backend_count = 0;
  std::uint32_t active_backends = 0;
  std::uint32_t first_entry = 0;     // into Snapshot::maglev_entries()
  std::uint32_t table_size = 0;
};

struct SnapshotBuildResult;
SnapshotBuildResult build_snapshot(const SnapshotConfig& config);

class Snapshot {
 public:
  static constexpr std::uint32_t no_service = 0xffffffff;

  std::uint64_t version() const { return version_; }
  std::span<const Port> ports() const { return {ports_.data(), port_count_}; }
  std::uint16_t service_port() const { return service_port_; }
  const IpAddress& outer_source() const { return outer_source_; }
  std::uint8_t outer_ttl() const { return outer_ttl_; }
  std::span<const Service> services() const { return services_; }
  std::span<const Backend> backends() const { return backends_; }
  std::span<const Backend> backends_of(const Service& service) const {
    return {backends_.data() + service.first_backend, service.backend_count};
  }
  std::span<const std::uint16_t> maglev_entries(const Service& service) const {
    return {maglev_entries_.data() + service.first_entry, service.table_size};
  }
  std::span<const IpAddress> owned_vips() const { return owned_vips_; }  // sorted

  // The service at `key`, or nullptr. Linear probing in a power-of-two table (invariant 5).
  const Service* find_service(const VipKey& key) const { return find_service(key, vip_key_hash(key)); }
  // The same with vip_key_hash(key) already known (the packet path computes it from values).
  const Service* find_service(const VipKey& key, std::uint64_t key_hash) const {
    std::uint64_t slot = key_hash & vip_index_mask_;
    for (;;) {
      const std::uint32_t index = vip_index_[slot];
      if (index == no_service) return nullptr;
      if (services_[index].vip == key) return &services_[index];
      slot = (slot + 1) & vip_index_mask_;
    }
  }
  // find_service of the IPv4 VIP key (four bytes in network order at `address`, port, protocol)
  // with `key_hash` = vip_hash_ipv4(address, port, protocol): compares the packet's values with
  // each candidate, without building a key (an IPv4 address's bytes 4..15 are zero).
  const Service* find_service_ipv4(const std::uint8_t* address, std::uint16_t port, IpProtocol protocol,
                                   std::uint64_t key_hash) const {
    std::uint32_t wanted;
    std::memcpy(&wanted, address, sizeof wanted);
    std::uint64_t slot = key_hash & vip_index_mask_;
    for (;;) {
      const std::uint32_t index = vip_index_[slot];
      if (index == no_service) return nullptr;
      const VipKey& vip = services_[index].vip;
      std::uint32_t value;
      std::memcpy(&value, vip.address.bytes.data(), sizeof value);
      if (value == wanted && vip.port == port && vip.protocol == protocol && vip.address.is_ipv4()) {
        return &services_[index];
      }
      slot = (slot + 1) & vip_index_mask_;
    }
  }
  bool owns_vip(const IpAddress& address) const;
  // The service-local index of the backend with this address, or -1 (binary search).
  int find_backend(const Service& service, const IpAddress& address) const;

  // The same snapshot with the backends' MACs resolved again from `neighbours` (static entries and
  // ARP-learned ones, by the rules of invariant 3), without rebuilding any Maglev table: what the
  // control thread publishes when ARP resolution learns or forgets a neighbour. Refused (error
  // naming the entry) for a bad or duplicated entry.
  SnapshotBuildResult with_neighbours(std::vector<NeighbourConfig> neighbours) const;
  const std::optional<IpAddress>& gateway() const { return gateway_; }

  // The VIP index's hash. It never leaves this process (unlike flow_hash, it is no contract
  // between nodes) and only spreads a few VIPs over the index, so it is one multiply: the address's
  // two 8-byte words (an IPv4 address: its four bytes, then zero) and the port, protocol and family
  // above an IPv4 address's bits, folded so the low bits the index uses depend on every input bit.
  static std::uint64_t vip_key_hash(const VipKey& key) {
    return vip_hash_words(hash_detail::load_little_endian_64(key.address.bytes.data()),
                          hash_detail::load_little_endian_64(key.address.bytes.data() + 8), key.port,
                          key.protocol, key.address.family);
  }
  // vip_key_hash of the IPv4 VIP whose four bytes (network order) are at `address`.
  static std::uint64_t vip_hash_ipv4(const std::uint8_t* address, std::uint16_t port, IpProtocol protocol) {
    std::uint32_t value;
    std::memcpy(&value, address, sizeof value);
    if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap32(value);
    return vip_hash_words(value, 0, port, protocol, AddressFamily::ipv4);
  }

 private:
  static std::uint64_t vip_hash_words(std::uint64_t low, std::uint64_t high, std::uint16_t port, IpProtocol protocol,
                                      AddressFamily family) {
    const std::uint64_t tail = (std::uint64_t{port} | (std::uint64_t{static_cast<std::uint8_t>(protocol)} << 16) |
                                (std::uint64_t{static_cast<std::uint8_t>(family)} << 24))
                               << 32;
    const std::uint64_t hash = (low ^ tail ^ std::rotl(high, 16)) * hash_step_multiplier;
    return hash ^ (hash >> 32);
  }
  friend SnapshotBuildResult build_snapshot(const SnapshotConfig& config);
  Snapshot() = default;
  Snapshot(const Snapshot&) = default;
  void resolve_neighbours(const std::vector<NeighbourConfig>& sorted);

  std::uint64_t version_ = 0;
  std::array<Port, max_ports> ports_{};
  std::size_t port_count_ = 0;
  std::uint16_t service_port_ = 0;
  IpAddress outer_source_;
  std::uint8_t outer_ttl_ = default_outer_ttl;
  std::vector<Service> services_;
  std::vector<Backend> backends_;
  std::vector<std::uint16_t> maglev_entries_;
  std::vector<std::uint32_t> vip_index_;
  std::uint64_t vip_index_mask_ = 0;
  std::vector<IpAddress> owned_vips_;
  std::optional<IpAddress> gateway_;
};

struct SnapshotBuildResult {
  std::unique_ptr<const Snapshot> snapshot;  // null when the config was refused
  std::string error;  // one line naming the field, e.g. "services[2] (198.18.0.100 tcp 80): ..."
};

// Validates the whole config and builds every Maglev table; refuses the config whole on the
// first problem. Control side only: allocates, may take milliseconds per service.
SnapshotBuildResult build_snapshot(const SnapshotConfig& config);

}  // namespace stacknode::dataplane
