// Unit tests of ARP resolution on the control side: the frames the dataplane originates (requests,
// gratuitous ARP) against frame_builder's independent bytes, reading replies the packet path
// punted, and NeighbourResolver's timing rules on a fake millisecond clock (ask, back off,
// refresh, forget; static entries win).
#include <CppUTest/TestHarness.h>

#include <algorithm>

#include "packet_cases.hpp"
#include "stacknode/dataplane/arp.hpp"
#include "stacknode/dataplane/neighbours.hpp"

using namespace stacknode::dataplane;
using namespace stacknode::dataplane::test;

namespace {

Port service_port_of(std::uint16_t vlan = 0) {
  Port port;
  port.mac = mac(service_mac);
  port.service = true;
  port.vlan_id = vlan;
  return port;
}

Bytes written(std::size_t length, const std::uint8_t* frame) {
  return Bytes(frame, frame + length);
}

void check_bytes(const char* what, const Bytes& expected, const Bytes& actual) {
  const std::string difference = describe_difference(expected, actual.data(), actual.size());
  if (!difference.empty()) FAIL((std::string(what) + ": " + difference).c_str());
}

bool contains(const std::vector<IpAddress>& list, const Ip4& ip) {
  return std::find(list.begin(), list.end(), address(ip)) != list.end();
}

}  // namespace

TEST_GROUP(ArpFrames){};

TEST(ArpFrames, RequestAndGratuitousArpAreExactBytes) {
  std::uint8_t out[arp_frame_bytes];
  const std::size_t length =
      write_arp_request(out, service_port_of(), address(outer_source_ip), address(backend1_ip));
  check_bytes(
      "request",
      padded(ethernet(broadcast_mac, service_mac, ethertype_arp,
                      arp(arp_request, service_mac, outer_source_ip, zero_mac, backend1_ip))),
      written(length, out));
  const std::size_t tagged =
      write_arp_request(out, service_port_of(12), address(outer_source_ip), address(backend1_ip));
  check_bytes(
      "tagged request",
      padded(ethernet(broadcast_mac, service_mac, ethertype_arp,
                      arp(arp_request, service_mac, outer_source_ip, zero_mac, backend1_ip), 12)),
      written(tagged, out));
  Port front;
  front.mac = mac(front_mac);
  front.front = true;
  const std::size_t announce = write_gratuitous_arp(out, front, address(vip_ip));
  check_bytes("gratuitous",
              padded(ethernet(broadcast_mac, front_mac, ethertype_arp,
                              arp(arp_request, front_mac, vip_ip, zero_mac, vip_ip))),
              written(announce, out));
}

TEST(ArpFrames, ReadingRepliesTakesOnlyUsableSenders) {
  const Mac backend_mac = backend1_mac;
  const auto reply = [&](const Mac& sender_mac, const Ip4& sender_ip,
                         std::uint16_t operation = arp_reply,
                         std::optional<std::uint16_t> vlan = std::nullopt) {
    return padded(ethernet(service_mac, backend_mac, ethertype_arp,
                           arp(operation, sender_mac, sender_ip, service_mac, outer_source_ip),
                           vlan));
  };
  const Bytes good = reply(backend_mac, backend1_ip);
  const auto sender = read_arp_reply(good.data(), good.size());
  CHECK_TRUE(sender.has_value());
  CHECK(sender->address == address(backend1_ip));
  CHECK(sender->mac == mac(backend_mac));
  const Bytes tagged = reply(backend_mac, backend1_ip, arp_reply, 12);
  CHECK_TRUE(read_arp_reply(tagged.data(), tagged.size()).has_value());

  const Bytes request = reply(backend_mac, backend1_ip, arp_request);
  CHECK_FALSE(read_arp_reply(request.data(), request.size()).has_value());
  const Bytes multicast = reply(broadcast_mac, backend1_ip);
  CHECK_FALSE(read_arp_reply(multicast.data(), multicast.size()).has_value());
  const Bytes zero = reply(zero_mac, backend1_ip);
  CHECK_FALSE(read_arp_reply(zero.data(), zero.size()).has_value());
  const Bytes unspecified = reply(backend_mac, {0, 0, 0, 0});
  CHECK_FALSE(read_arp_reply(unspecified.data(), unspecified.size()).has_value());
  for (std::size_t cut = 0; cut < 14 + 28; ++cut) {
    CHECK_FALSE(read_arp_reply(good.data(), cut).has_value());  // truncated: never read beyond
  }
  const Bytes ip_frame = from_client(tcp_packet(1, 2, flag_syn));
  CHECK_FALSE(read_arp_reply(ip_frame.data(), ip_frame.size()).has_value());
}

TEST_GROUP(NeighbourResolution){};

TEST(NeighbourResolution, WhatNeedsResolvingAndStaticEntriesWin) {
  ControlConfig config;
  ServiceConfig service;
  service.backends = {{address(backend1_ip), 1, BackendState::active},
                      {address(backend2_ip), 1, BackendState::down}};
  config.services = {service, service};
  config.gateway = address(gateway_ip);
  config.neighbours = {{address(backend2_ip), mac(backend2_mac)}};
  const std::vector<IpAddress> wanted = addresses_to_resolve(config);
  LONGS_EQUAL(2, wanted.size());  // backend 1 (once) and the gateway; backend 2 is static
  CHECK_TRUE(contains(wanted, backend1_ip));
  CHECK_TRUE(contains(wanted, gateway_ip));

  const MacAddress learned = mac({0x02, 0, 0, 0, 0x01, 0x77});
  const auto merged = merge_neighbours(
      config.neighbours, {{address(backend2_ip), learned}, {address(backend1_ip), learned}});
  LONGS_EQUAL(2, merged.size());
  CHECK(merged[0].address == address(backend2_ip) && merged[0].mac == mac(backend2_mac));
  CHECK(merged[1].address == address(backend1_ip) && merged[1].mac == learned);
}

TEST(NeighbourResolution, AsksThenBacksOffForSilentAddresses) {
  NeighbourResolver resolver;
  CHECK_FALSE(resolver.set_wanted({address(backend1_ip)}, 0));
  std::uint64_t now = 0;
  unsigned asked = 0;
  for (; now < neighbour_backoff_ms; now += 100)
    asked += static_cast<unsigned>(resolver.tick(now).ask.size());
  LONGS_EQUAL(neighbour_quick_tries, asked);  // 0, 1 s, 2 s: then quiet
  // The next request comes one back-off after the last quick try.
  const std::uint64_t next =
      (neighbour_quick_tries - 1) * neighbour_retry_ms + neighbour_backoff_ms;
  CHECK_TRUE(resolver.tick(next - 1).ask.empty());
  LONGS_EQUAL(1, resolver.tick(next).ask.size());
  CHECK_TRUE(resolver.learned().empty());
}

TEST(NeighbourResolution, LearnsRefreshesAndForgets) {
  NeighbourResolver resolver;
  resolver.set_wanted({address(backend1_ip), address(gateway_ip)}, 0);
  LONGS_EQUAL(2, resolver.tick(0).ask.size());
  // A reply from an address nobody asked about teaches nothing.
  CHECK_FALSE(resolver.learn(address(backend3_ip), mac(backend3_mac), 10));
  CHECK_TRUE(resolver.learn(address(backend1_ip), mac(backend1_mac), 10));
  CHECK_FALSE(
      resolver.learn(address(backend1_ip), mac(backend1_mac), 20));  // same answer: no change
  LONGS_EQUAL(1, resolver.learned().size());
  CHECK(resolver.learned()[0].mac == mac(backend1_mac));
  // Known and fresh: not asked until the refresh is due; then asked every retry.
  const auto asks_for_backend = [&](std::uint64_t at) {
    return contains(resolver.tick(at).ask, backend1_ip);
  };
  CHECK_FALSE(asks_for_backend(20 + neighbour_refresh_after_ms - 100));
  CHECK_TRUE(asks_for_backend(20 + neighbour_refresh_after_ms));
  // A new MAC (a replaced backend) is a change.
  CHECK_TRUE(resolver.learn(address(backend1_ip), mac(backend2_mac), 30'000));
  // Silence for the forget time: forgotten, reported as a change, and asked for again at once.
  const NeighbourResolver::Tick forgotten = resolver.tick(30'000 + neighbour_forget_after_ms);
  CHECK_TRUE(forgotten.changed);
  CHECK_TRUE(contains(forgotten.ask, backend1_ip));
  CHECK_TRUE(resolver.learned().empty());
}

TEST(NeighbourResolution, UnwantedEntriesAreDroppedAndRequestsAreCappedPerTick) {
  NeighbourResolver resolver;
  resolver.set_wanted({address(backend1_ip)}, 0);
  resolver.learn(address(backend1_ip), mac(backend1_mac), 0);
  CHECK_TRUE(resolver.set_wanted({address(backend2_ip)}, 5));  // backend 1 gone: its entry with it
  CHECK_TRUE(resolver.learned().empty());
  LONGS_EQUAL(1, resolver.wanted());

  std::vector<IpAddress> many;
  for (unsigned index = 0; index < 2 * max_arp_requests_per_tick; ++index) {
    many.push_back(IpAddress::ipv4(198, 18, 1, static_cast<std::uint8_t>(index)));
  }
  resolver.set_wanted(many, 100);
  LONGS_EQUAL(max_arp_requests_per_tick, resolver.tick(100).ask.size());
  LONGS_EQUAL(max_arp_requests_per_tick,
              resolver.tick(200).ask.size());  // the rest, one tick later
  CHECK_TRUE(resolver.tick(300).ask.empty());
}
