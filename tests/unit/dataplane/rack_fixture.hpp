// The one small "rack" every dataplane packet test uses, in the addresses of DESIGN.md's virtual
// rack: a front port (dpf0) facing the client network 198.18.0.0/24 and a service port (dps0) on
// 198.18.1.0/24 with outer source 198.18.1.101, three backends 198.18.1.11-13 with known MACs, and
// services on VIP 198.18.0.100 (TCP 80 IPIP, UDP 53 IPIP, TCP 8080 L2 DSR).
#pragma once

#include <memory>
#include <string>

#include <CppUTest/TestHarness.h>

#include "frame_builder.hpp"
#include "stacknode/dataplane/packet.hpp"
#include "stacknode/dataplane/snapshot.hpp"

namespace stacknode::dataplane::test {

inline constexpr Mac front_mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
inline constexpr Mac service_mac = {0x02, 0x00, 0x00, 0x00, 0x01, 0x01};
inline constexpr Mac router_mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0xfe};  // fabric, client side
inline constexpr Mac gateway_mac = {0x02, 0x00, 0x00, 0x00, 0x01, 0xfe};
inline constexpr Mac backend1_mac = {0x02, 0x00, 0x00, 0x00, 0x01, 0x11};
inline constexpr Mac backend2_mac = {0x02, 0x00, 0x00, 0x00, 0x01, 0x12};
inline constexpr Mac backend3_mac = {0x02, 0x00, 0x00, 0x00, 0x01, 0x13};
inline constexpr Mac broadcast_mac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr Ip4 client_ip = {198, 18, 0, 2};
inline constexpr Ip4 front_ip = {198, 18, 0, 3};
inline constexpr Ip4 vip_ip = {198, 18, 0, 100};
inline constexpr Ip4 other_vip_ip = {198, 18, 0, 101};  // not owned, no service
inline constexpr Ip4 outer_source_ip = {198, 18, 1, 101};
inline constexpr Ip4 gateway_ip = {198, 18, 1, 1};
inline constexpr Ip4 backend1_ip = {198, 18, 1, 11};
inline constexpr Ip4 backend2_ip = {198, 18, 1, 12};
inline constexpr Ip4 backend3_ip = {198, 18, 1, 13};
inline constexpr std::uint16_t front_port = 0;
inline constexpr std::uint16_t service_port = 1;
inline constexpr std::uint16_t http_port = 80;
inline constexpr std::uint16_t dns_port = 53;
inline constexpr std::uint16_t dsr_port = 8080;

inline IpAddress address(const Ip4& ip) { return IpAddress::ipv4(ip[0], ip[1], ip[2], ip[3]); }
inline MacAddress mac(const Mac& bytes) {
  MacAddress result;
  result.bytes = bytes;
  return result;
}

inline SnapshotConfig rack_config() {
  SnapshotConfig config;
  config.version = 1;
  PortConfig front;
  front.name = "dpf0";
  front.mac = mac(front_mac);
  front.front = true;
  front.addresses = {address(front_ip)};
  PortConfig service;
  service.name = "dps0";
  service.mac = mac(service_mac);
  service.service = true;
  service.addresses = {address(outer_source_ip)};
  config.ports = {front, service};
  const std::vector<BackendConfig> backends = {
      {address(backend1_ip), 1, BackendState::active},
      {address(backend2_ip), 1, BackendState::active},
      {address(backend3_ip), 1, BackendState::active},
  };
  ServiceConfig http;
  http.vip = {address(vip_ip), IpProtocol::tcp, http_port};
  http.backends = backends;
  ServiceConfig dns;
  dns.vip = {address(vip_ip), IpProtocol::udp, dns_port};
  dns.backends = backends;
  ServiceConfig dsr;
  dsr.vip = {address(vip_ip), IpProtocol::tcp, dsr_port};
  dsr.mode = ForwardingMode::l2_dsr;
  dsr.backends = backends;
  config.services = {http, dns, dsr};
  config.owned_vips = {address(vip_ip)};
  config.neighbours = {{address(backend1_ip), mac(backend1_mac)},
                       {address(backend2_ip), mac(backend2_mac)},
                       {address(backend3_ip), mac(backend3_mac)},
                       {address(gateway_ip), mac(gateway_mac)}};
  config.gateway = address(gateway_ip);
  return config;
}

// Builds or fails the test with the builder's message.
inline std::unique_ptr<const Snapshot> build_or_fail(const SnapshotConfig& config) {
  SnapshotBuildResult result = build_snapshot(config);
  if (!result.snapshot) FAIL(("snapshot refused: " + result.error).c_str());
  return std::move(result.snapshot);
}

inline ConnTableConfig small_table() {
  ConnTableConfig config;
  config.capacity = 1024;
  return config;
}

// The backend a new flow to `service` gets, from the snapshot's Maglev table (public API).
inline IpAddress maglev_backend_of(const Snapshot& snapshot, const VipKey& vip, const Ip4& source,
                                   std::uint16_t source_port) {
  const Service* service = snapshot.find_service(vip);
  FlowKey flow;
  flow.family = AddressFamily::ipv4;
  flow.protocol = vip.protocol;
  flow.source = address(source).bytes;
  flow.destination = vip.address.bytes;
  flow.source_port = source_port;
  flow.destination_port = vip.port;
  const std::uint16_t entry = snapshot.maglev_entries(*service)[hash_to_range(flow_hash(flow), service->table_size)];
  return snapshot.backends_of(*service)[entry].address;
}

}  // namespace stacknode::dataplane::test
