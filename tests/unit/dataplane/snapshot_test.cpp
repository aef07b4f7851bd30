// Unit tests of the dataplane's value types and config snapshot: address parsing and formatting,
// the pinned values of stacknode flow hash v1 (computed by an independent implementation of the
// definition in flow_hash.hpp, so code and documentation agree), and build_snapshot(): what it
// builds (service index, canonical backends, MAC resolution) and every refusal's message.
#include <CppUTest/TestHarness.h>

#include <string>

#include "rack_fixture.hpp"
#include "stacknode/dataplane/flow_hash.hpp"

using namespace stacknode::dataplane;
using namespace stacknode::dataplane::test;

namespace {

FlowKey flow_of(const Ip4& source, const Ip4& destination, std::uint16_t source_port, std::uint16_t destination_port,
                IpProtocol protocol) {
  FlowKey flow;
  flow.family = AddressFamily::ipv4;
  flow.protocol = protocol;
  flow.source = address(source).bytes;
  flow.destination = address(destination).bytes;
  flow.source_port = source_port;
  flow.destination_port = destination_port;
  return flow;
}

std::string refusal(const SnapshotConfig& config) {
  const SnapshotBuildResult result = build_snapshot(config);
  CHECK(result.snapshot == nullptr);
  return result.error;
}

}  // namespace

TEST_GROUP(Addresses){};

TEST(Addresses, ParseAndFormat) {
  const auto parsed = parse_ip_address("198.18.0.100");
  CHECK(parsed.has_value());
  CHECK(*parsed == IpAddress::ipv4(198, 18, 0, 100));
  STRCMP_EQUAL("198.18.0.100", to_string(*parsed).c_str());
  LONGS_EQUAL(0xc6120064, parsed->ipv4_value());
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "1.2.3.4 ", "::1", "a.b.c.d"}) {
    CHECK_FALSE(parse_ip_address(bad).has_value());
  }
  const auto mac_address = parse_mac_address("02:00:0A:ff:00:01");
  CHECK(mac_address.has_value());
  STRCMP_EQUAL("02:00:0a:ff:00:01", to_string(*mac_address).c_str());
  CHECK_FALSE(parse_mac_address("02:00:0a:ff:00").has_value());
  CHECK_FALSE(parse_mac_address("02-00-0a-ff-00-01").has_value());
  CHECK_FALSE(parse_mac_address("02:00:0g:ff:00:01").has_value());
  STRCMP_EQUAL("198.18.0.100 udp 53", to_string(VipKey{address(vip_ip), IpProtocol::udp, 53}).c_str());
}

TEST(Addresses, CanonicalOrderIsByFamilyThenBytes) {
  CHECK(IpAddress::ipv4(10, 0, 0, 2) < IpAddress::ipv4(10, 0, 0, 10));
  CHECK(IpAddress::ipv4(9, 255, 255, 255) < IpAddress::ipv4(10, 0, 0, 0));
  IpAddress v6;
  v6.family = AddressFamily::ipv6;
  CHECK(IpAddress::ipv4(255, 255, 255, 255) < v6);
}

// A pseudo-random IPv4 5-tuple per call (a linear congruential step of `state`), TCP and UDP in turn.
struct Tuple {
  Ip4 source;
  Ip4 destination;
  std::uint16_t source_port;
  std::uint16_t destination_port;
  IpProtocol protocol;
};
Tuple next_tuple(std::uint64_t& state) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return {{static_cast<std::uint8_t>(state >> 56), static_cast<std::uint8_t>(state >> 48),
           static_cast<std::uint8_t>(state >> 40), static_cast<std::uint8_t>(state >> 32)},
          {static_cast<std::uint8_t>(state >> 24), static_cast<std::uint8_t>(state >> 16),
           static_cast<std::uint8_t>(state >> 8), static_cast<std::uint8_t>(state)},
          static_cast<std::uint16_t>(state >> 13),
          static_cast<std::uint16_t>(state >> 29),
          (state >> 7) % 2 ? IpProtocol::tcp : IpProtocol::udp};
}

TEST_GROUP(FlowHash){};

TEST(FlowHash, PinnedValuesMatchTheDocumentedDefinition) {
  // Values from an independent implementation of the definition in flow_hash.hpp. Every node of
  // every version must agree on these, or flows change backends across a failover.
  UNSIGNED_LONGLONGS_EQUAL(0x05dc134dabb3f04eull, flow_hash(flow_of(client_ip, vip_ip, 40000, 80, IpProtocol::tcp)));
  UNSIGNED_LONGLONGS_EQUAL(0xa8a2ae34f7b4e1c6ull, flow_hash(flow_of(client_ip, vip_ip, 40001, 80, IpProtocol::tcp)));
  UNSIGNED_LONGLONGS_EQUAL(0x88447c61f382be10ull,
                           flow_hash(flow_of({10, 0, 0, 1}, {10, 0, 0, 2}, 53, 53, IpProtocol::udp)));
  FlowKey empty;
  empty.protocol = static_cast<IpProtocol>(0);
  UNSIGNED_LONGLONGS_EQUAL(0x5071b89a54aad81dull, flow_hash(empty));
  const IpAddress backend = IpAddress::ipv4(10, 1, 0, 0);
  UNSIGNED_LONGLONGS_EQUAL(0x69b15cf2809af427ull, address_hash(backend, maglev_offset_seed));
  UNSIGNED_LONGLONGS_EQUAL(0x4287065aaa1fa9c4ull, address_hash(backend, maglev_skip_seed));
}

TEST(FlowHash, Ipv4FromValuesEqualsTheKeyHash) {
  // flow_hash_ipv4 is the packet path's shortcut for flow_hash of an IPv4 key: it must agree
  // everywhere, the pinned values first.
  UNSIGNED_LONGLONGS_EQUAL(0x05dc134dabb3f04eull,
                           flow_hash_ipv4(client_ip.data(), vip_ip.data(), 40000, 80, IpProtocol::tcp));
  UNSIGNED_LONGLONGS_EQUAL(0x88447c61f382be10ull, flow_hash_ipv4(Ip4{10, 0, 0, 1}.data(), Ip4{10, 0, 0, 2}.data(),
                                                                 53, 53, IpProtocol::udp));
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int round = 0; round < 1000; ++round) {
    const auto [source, destination, source_port, destination_port, protocol] = next_tuple(state);
    UNSIGNED_LONGLONGS_EQUAL(flow_hash(flow_of(source, destination, source_port, destination_port, protocol)),
                             flow_hash_ipv4(source.data(), destination.data(), source_port, destination_port, protocol));
  }
}

TEST(FlowHash, KeyWordsFromValuesEqualTheKeysBytes) {
  // flow_key_words_ipv4 is what the packet path compares with stored keys: the bytes of the FlowKey
  // the control side would build, or a lookup misses (or, worse, matches another flow).
  std::uint64_t state = 0x2545f4914f6cdd1dull;
  for (int round = 0; round < 1000; ++round) {
    const auto [source, destination, source_port, destination_port, protocol] = next_tuple(state);
    const FlowKey key = flow_of(source, destination, source_port, destination_port, protocol);
    const FlowKeyWords words =
        flow_key_words_ipv4(source.data(), destination.data(), source_port, destination_port, protocol);
    CHECK(words.word == FlowKeyWords::of(key).word);
    CHECK(words.key() == key);
    CHECK(words.matches(key));
    FlowKey other = key;
    other.reserved = 1;  // one byte anywhere in the key makes it another key
    CHECK_FALSE(words.matches(other));
    other = key;
    other.source[15] = 1;
    CHECK_FALSE(words.matches(other));
  }
}

TEST(FlowHash, EveryFieldMatters) {
  const FlowKey base = flow_of(client_ip, vip_ip, 40000, 80, IpProtocol::tcp);
  const std::uint64_t hash = flow_hash(base);
  FlowKey changed = base;
  changed.source_port = 40002;
  CHECK(flow_hash(changed) != hash);
  changed = base;
  changed.destination_port = 81;
  CHECK(flow_hash(changed) != hash);
  changed = base;
  changed.protocol = IpProtocol::udp;
  CHECK(flow_hash(changed) != hash);
  changed = base;
  changed.source[3] = 3;
  CHECK(flow_hash(changed) != hash);
  changed = base;
  changed.destination[0] = 199;
  CHECK(flow_hash(changed) != hash);
  // Swapping source and destination is another flow (no symmetry is promised or wanted).
  CHECK(flow_hash(flow_of(vip_ip, client_ip, 80, 40000, IpProtocol::tcp)) != hash);
}

TEST(FlowHash, RangeReductionStaysInRange) {
  for (std::uint64_t hash : {0ull, 1ull, 0xffffffffffffffffull, 0x8000000000000000ull, 0x123456789abcdef0ull}) {
    CHECK(hash_to_range(hash, 65537) < 65537);
    CHECK(hash_to_range(hash, 1) == 0);
  }
  LONGS_EQUAL(65536, hash_to_range(0xffffffff00000000ull, 65537));
}

TEST_GROUP(SnapshotBuild){};

TEST(SnapshotBuild, RackConfigBuildsWithServicesBackendsAndMacs) {
  const auto snapshot = build_or_fail(rack_config());
  UNSIGNED_LONGLONGS_EQUAL(1, snapshot->version());
  LONGS_EQUAL(2, snapshot->ports().size());
  LONGS_EQUAL(service_port, snapshot->service_port());
  CHECK(snapshot->outer_source() == address(outer_source_ip));
  LONGS_EQUAL(3, snapshot->services().size());
  const Service* http = snapshot->find_service({address(vip_ip), IpProtocol::tcp, http_port});
  CHECK(http != nullptr);
  LONGS_EQUAL(3, http->backend_count);
  LONGS_EQUAL(3, http->active_backends);
  LONGS_EQUAL(default_maglev_table_size, snapshot->maglev_entries(*http).size());
  const auto backends = snapshot->backends_of(*http);
  CHECK(backends[0].address == address(backend1_ip));
  CHECK(backends[0].mac_known && backends[0].mac == mac(backend1_mac));
  CHECK(backends[2].mac == mac(backend3_mac));
  LONGS_EQUAL(1, snapshot->find_backend(*http, address(backend2_ip)));
  LONGS_EQUAL(-1, snapshot->find_backend(*http, address(gateway_ip)));
  CHECK(snapshot->find_service({address(vip_ip), IpProtocol::udp, dns_port}) != nullptr);
  CHECK(snapshot->find_service({address(vip_ip), IpProtocol::udp, http_port}) == nullptr);
  CHECK(snapshot->find_service({address(other_vip_ip), IpProtocol::tcp, http_port}) == nullptr);
  CHECK(snapshot->owns_vip(address(vip_ip)));
  CHECK_FALSE(snapshot->owns_vip(address(other_vip_ip)));
}

TEST(SnapshotBuild, ManyServicesAreAllFound) {
  SnapshotConfig config = rack_config();
  config.services.clear();
  for (std::uint16_t port = 1; port <= 300; ++port) {
    ServiceConfig service;
    service.vip = {address(vip_ip), port % 2 ? IpProtocol::tcp : IpProtocol::udp, port};
    service.maglev_table_size = 251;
    service.backends = {{address(backend1_ip), 1, BackendState::active}};
    config.services.push_back(service);
  }
  const auto snapshot = build_or_fail(config);
  for (std::uint16_t port = 1; port <= 300; ++port) {
    const VipKey key{address(vip_ip), port % 2 ? IpProtocol::tcp : IpProtocol::udp, port};
    const Service* service = snapshot->find_service(key);
    CHECK(service != nullptr && service->vip == key);
    const VipKey other{address(vip_ip), port % 2 ? IpProtocol::udp : IpProtocol::tcp, port};
    CHECK(snapshot->find_service(other) == nullptr);
  }
}

TEST(SnapshotBuild, PacketValueLookupsAgreeWithKeyLookups) {
  // The packet path hashes and finds a VIP from the packet's bytes (vip_hash_ipv4,
  // find_service_ipv4); the control side and the index use VipKeys. They must agree for every
  // service, and find nothing for keys that differ in any one field.
  SnapshotConfig config = rack_config();
  config.services.clear();
  for (std::uint16_t port = 1; port <= 300; ++port) {
    ServiceConfig service;
    const Ip4 vip = {198, 19, static_cast<std::uint8_t>(port % 7), static_cast<std::uint8_t>(port % 11)};
    service.vip = {address(vip), port % 2 ? IpProtocol::tcp : IpProtocol::udp, port};
    service.maglev_table_size = 251;
    service.backends = {{address(backend1_ip), 1, BackendState::active}};
    config.services.push_back(service);
  }
  const auto snapshot = build_or_fail(config);
  for (const ServiceConfig& service : config.services) {
    const std::uint8_t* bytes = service.vip.address.bytes.data();
    const std::uint16_t port = service.vip.port;
    const IpProtocol protocol = service.vip.protocol;
    const std::uint64_t hash = Snapshot::vip_hash_ipv4(bytes, port, protocol);
    UNSIGNED_LONGLONGS_EQUAL(Snapshot::vip_key_hash(service.vip), hash);
    const Service* found = snapshot->find_service_ipv4(bytes, port, protocol, hash);
    CHECK(found != nullptr && found == snapshot->find_service(service.vip));
    const IpProtocol other_protocol = protocol == IpProtocol::tcp ? IpProtocol::udp : IpProtocol::tcp;
    CHECK(snapshot->find_service_ipv4(bytes, port, other_protocol,
                                      Snapshot::vip_hash_ipv4(bytes, port, other_protocol)) == nullptr);
    const Ip4 other_vip = {bytes[0], bytes[1], bytes[2], static_cast<std::uint8_t>(bytes[3] + 100)};
    CHECK(snapshot->find_service_ipv4(other_vip.data(), port, protocol,
                                      Snapshot::vip_hash_ipv4(other_vip.data(), port, protocol)) == nullptr);
  }
}

TEST(SnapshotBuild, BackendMacsComeFromNeighboursThenTheGateway) {
  SnapshotConfig config = rack_config();
  const Ip4 remote = {198, 18, 2, 50};
  for (ServiceConfig& service : config.services) service.backends.push_back({address(remote), 1, BackendState::active});
  auto snapshot = build_or_fail(config);
  const Service* http = snapshot->find_service({address(vip_ip), IpProtocol::tcp, http_port});
  const Backend& through_gateway = snapshot->backends_of(*http)[3];
  CHECK(through_gateway.mac_known && through_gateway.mac == mac(gateway_mac));
  // L2 DSR needs the backend itself on the segment: no gateway fallback.
  const Service* dsr = snapshot->find_service({address(vip_ip), IpProtocol::tcp, dsr_port});
  CHECK_FALSE(snapshot->backends_of(*dsr)[3].mac_known);
  // Without the gateway's neighbour entry, IPIP is unresolved too (not a config error).
  config.neighbours.pop_back();
  snapshot = build_or_fail(config);
  http = snapshot->find_service({address(vip_ip), IpProtocol::tcp, http_port});
  CHECK_FALSE(snapshot->backends_of(*http)[3].mac_known);
  CHECK(snapshot->backends_of(*http)[0].mac_known);
}

TEST(SnapshotBuild, WithNeighboursResolvesMacsAgainAndKeepsTheRest) {
  SnapshotConfig config = rack_config();
  config.neighbours = {{address(backend2_ip), mac(backend2_mac)}};  // backend 1, 3 and the gateway unknown
  const auto snapshot = build_or_fail(config);
  const Service* http = snapshot->find_service({address(vip_ip), IpProtocol::tcp, http_port});
  CHECK_FALSE(snapshot->backends_of(*http)[0].mac_known);
  CHECK_TRUE(snapshot->backends_of(*http)[1].mac_known);

  // Learned: backend 1 and the gateway (which then carries backend 3's IPIP traffic).
  const MacAddress learned = mac({0x02, 0x00, 0x00, 0x00, 0x01, 0x99});
  SnapshotBuildResult next = snapshot->with_neighbours(
      {{address(gateway_ip), mac(gateway_mac)}, {address(backend2_ip), mac(backend2_mac)}, {address(backend1_ip), learned}});
  CHECK_TRUE(next.snapshot != nullptr);
  const Snapshot& updated = *next.snapshot;
  const Service* updated_http = updated.find_service({address(vip_ip), IpProtocol::tcp, http_port});
  CHECK(updated.backends_of(*updated_http)[0].mac_known && updated.backends_of(*updated_http)[0].mac == learned);
  CHECK(updated.backends_of(*updated_http)[2].mac == mac(gateway_mac));
  const Service* updated_dsr = updated.find_service({address(vip_ip), IpProtocol::tcp, dsr_port});
  CHECK_FALSE(updated.backends_of(*updated_dsr)[2].mac_known);  // L2 DSR never goes through the gateway
  // Everything else is the same: services, Maglev tables, VIPs, version; the original is untouched.
  LONGS_EQUAL(snapshot->version(), updated.version());
  LONGS_EQUAL(snapshot->services().size(), updated.services().size());
  CHECK(std::equal(snapshot->maglev_entries(*http).begin(), snapshot->maglev_entries(*http).end(),
                   updated.maglev_entries(*updated_http).begin(), updated.maglev_entries(*updated_http).end()));
  CHECK_TRUE(updated.owns_vip(address(vip_ip)));
  CHECK_FALSE(snapshot->backends_of(*http)[0].mac_known);
  // A forgotten neighbour is unresolved again.
  CHECK_FALSE(updated.with_neighbours({}).snapshot->backends().front().mac_known);
  // Bad entries are refused, naming them.
  STRCMP_CONTAINS("listed twice", snapshot->with_neighbours({{address(backend1_ip), learned}, {address(backend1_ip), learned}})
                                      .error.c_str());
  STRCMP_CONTAINS("multicast", snapshot->with_neighbours({{address(backend1_ip), mac(broadcast_mac)}}).error.c_str());
}

TEST(SnapshotBuild, RefusalsNameTheField) {
  struct Case {
    const char* description;
    void (*change)(SnapshotConfig&);
    const char* expected;
  };
  const Case cases[] = {
      {"non-prime table", [](SnapshotConfig& c) { c.services[1].maglev_table_size = 65536; },
       "services[1] (198.18.0.100 udp 53): Maglev table size 65536 is not a prime (use a prime such as 65537, 131071 or 262139)"},
      {"duplicate service", [](SnapshotConfig& c) { c.services.push_back(c.services[0]); },
       "services[3] (198.18.0.100 tcp 80): configured twice"},
      {"duplicate backend", [](SnapshotConfig& c) { c.services[0].backends.push_back(c.services[0].backends[0]); },
       "services[0] (198.18.0.100 tcp 80): backend 198.18.1.11 is listed twice"},
      {"zero weight", [](SnapshotConfig& c) { c.services[2].backends[1].weight = 0; },
       "services[2] (198.18.0.100 tcp 8080): backend 198.18.1.12 has weight 0, outside [1, 65535]"},
      {"port 0", [](SnapshotConfig& c) { c.services[0].vip.port = 0; },
       "services[0] (198.18.0.100 tcp 0): port 0 is not a service port"},
      {"icmp service", [](SnapshotConfig& c) { c.services[0].vip.protocol = IpProtocol::icmp; },
       "services[0] (198.18.0.100 icmp 80): protocol must be tcp or udp"},
      {"IPv6 VIP", [](SnapshotConfig& c) { c.services[0].vip.address.family = AddressFamily::ipv6; },
       "services[0] (c612:64:0:0:0:0:0:0 tcp 80): vip: IPv6 is not supported yet"},
      {"VIP is a port address", [](SnapshotConfig& c) { c.services[0].vip.address = address(front_ip); },
       "services[0] (198.18.0.3 tcp 80): the VIP is also a port's own address"},
      {"no service port", [](SnapshotConfig& c) { c.ports[1].service = false; c.ports[1].front = true; },
       "ports: no port has the service role"},
      {"two service ports", [](SnapshotConfig& c) { c.ports[0].service = true; },
       "ports[1] (dps0): a second port with the service role (ports[0] (dpf0) has it); one service port is supported"},
      {"role-less port", [](SnapshotConfig& c) { c.ports[0].front = false; },
       "ports[0] (dpf0): has neither the front nor the service role"},
      {"no outer source for IPIP", [](SnapshotConfig& c) { c.ports[1].addresses.clear(); },
       "services[0] (198.18.0.100 tcp 80): IPIP forwarding needs an IPv4 address on the service port ports[1] (dps0) (the outer source)"},
      {"MTU too small", [](SnapshotConfig& c) { c.ports[1].mtu = 100; }, "ports[1] (dps0): mtu 100 is outside [576, 9216]"},
      {"bad VLAN", [](SnapshotConfig& c) { c.ports[0].vlan_id = 4095; },
       "ports[0] (dpf0): vlan_id 4095 is outside [0, 4094] (0 means untagged)"},
      {"multicast port MAC", [](SnapshotConfig& c) { c.ports[0].mac.bytes[0] = 0x01; },
       "ports[0] (dpf0): MAC address 01:00:00:00:00:01 is multicast"},
      {"zero port MAC", [](SnapshotConfig& c) { c.ports[0].mac = MacAddress{}; },
       "ports[0] (dpf0): MAC address missing (00:00:00:00:00:00)"},
      {"duplicate port address", [](SnapshotConfig& c) { c.ports[1].addresses.push_back(address(front_ip)); },
       "ports[1] (dps0): addresses[1]: 198.18.0.3 is listed twice"},
      {"duplicate neighbour", [](SnapshotConfig& c) { c.neighbours.push_back(c.neighbours[0]); },
       "neighbours: 198.18.1.11 is listed twice"},
      {"neighbour without MAC", [](SnapshotConfig& c) { c.neighbours[2].mac = MacAddress{}; },
       "neighbours[2] (198.18.1.13): MAC address missing (00:00:00:00:00:00)"},
      {"duplicate owned VIP", [](SnapshotConfig& c) { c.owned_vips.push_back(c.owned_vips[0]); },
       "owned_vips: 198.18.0.100 is listed twice"},
      {"outer TTL 0", [](SnapshotConfig& c) { c.outer_ttl = 0; }, "outer_ttl: 0 is not a usable TTL"},
      {"no ports", [](SnapshotConfig& c) { c.ports.clear(); }, "ports: none configured"},
  };
  for (const Case& test_case : cases) {
    SnapshotConfig config = rack_config();
    test_case.change(config);
    const std::string error = refusal(config);
    if (error != test_case.expected) {
      FAIL((std::string(test_case.description) + ": expected \"" + test_case.expected + "\", got \"" + error + "\"").c_str());
    }
  }
}
