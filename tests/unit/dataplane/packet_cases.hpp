// Table-driven packet tests for the dataplane (Katran's KatranBaseTestFixtures style): each case
// is {description, input frame, receiving port, expected action and drop reason, expected output
// frame}, replayed through the real process_packet() in a buffer with exactly the promised
// headroom. Shared by the packet tests; the expected frames are built with frame_builder.hpp.
#pragma once

#include <string>
#include <vector>

#include <CppUTest/TestHarness.h>

#include "frame_builder.hpp"
#include "rack_fixture.hpp"
#include "stacknode/dataplane/packet.hpp"

namespace stacknode::dataplane::test {

struct PacketCase {
  std::string description;
  Bytes input;
  std::uint16_t rx_port = front_port;
  Action action = Action::drop;
  DropReason reason = DropReason::none;
  Bytes expected;  // the frame sent (forward/reply); unused for drops
};

inline const char* action_name(Action action) {
  switch (action) {
    case Action::drop:
      return "drop";
    case Action::forward:
      return "forward";
    case Action::reply:
      return "reply";
    case Action::punt:
      return "punt";
  }
  return "?";
}

// Independent checks of every checksum in an IPv4 frame we send: the outer (or only) IPv4 header,
// an inner IPv4 header for IPIP, and ICMP.
inline void check_output_checksums(const std::string& description, const std::uint8_t* frame,
                                   std::size_t length) {
  std::size_t l3 = 14;
  std::uint16_t ethertype = get16(frame + 12);
  if (ethertype == ethertype_vlan) {
    l3 = 18;
    ethertype = get16(frame + 16);
  }
  if (ethertype != ethertype_ipv4) return;
  const std::uint8_t* ip = frame + l3;
  const std::size_t header_length = (ip[0] & 0x0f) * 4u;
  if (!checksum_ok(ip, header_length)) FAIL((description + ": IPv4 header checksum wrong").c_str());
  if (get16(ip + 2) != length - l3)
    FAIL((description + ": IPv4 total length does not match the frame").c_str());
  if (ip[9] == proto_ipip && !checksum_ok(ip + header_length, 20)) {
    FAIL((description + ": inner IPv4 header checksum wrong").c_str());
  }
  if (ip[9] == proto_icmp && !checksum_ok(ip + header_length, get16(ip + 2) - header_length)) {
    FAIL((description + ": ICMP checksum wrong").c_str());
  }
}

// Runs one case in a fresh lcore state (or the given one) and checks verdict, counters and bytes.
inline Verdict run_case(const Snapshot& snapshot, LcoreState& lcore, const PacketCase& test_case,
                        std::uint64_t now_ms = 1000) {
  FrameBuffer buffer(test_case.input, encap_headroom_bytes);
  const LcoreCounters before = lcore.counters;
  const Verdict verdict =
      process_packet(snapshot, lcore, test_case.rx_port, buffer.data(), buffer.length(), now_ms);
  const std::string& name = test_case.description;
  if (verdict.action != test_case.action || verdict.drop_reason != test_case.reason) {
    FAIL((name + ": expected " + action_name(test_case.action) + "/" +
          std::string(drop_reason_name(test_case.reason)) + ", got " + action_name(verdict.action) +
          "/" + std::string(drop_reason_name(verdict.drop_reason)))
             .c_str());
  }
  if (verdict.action == Action::drop) {
    // Counted once under its reason, and the frame left alone.
    if (lcore.counters.dropped(test_case.reason) != before.dropped(test_case.reason) + 1 ||
        lcore.counters.total_drops() != before.total_drops() + 1) {
      FAIL((name + ": drop not counted exactly once under its reason").c_str());
    }
    if (verdict.data != buffer.data() || verdict.length != buffer.length() ||
        !std::equal(test_case.input.begin(), test_case.input.end(), buffer.data())) {
      FAIL((name + ": a dropped frame was changed").c_str());
    }
    return verdict;
  }
  if (lcore.counters.total_drops() != before.total_drops())
    FAIL((name + ": counted as a drop").c_str());
  // The output lies within the buffer: the headroom and the received bytes, nothing beyond.
  if (verdict.data < buffer.begin() || verdict.data + verdict.length > buffer.end()) {
    FAIL((name + ": output outside the buffer").c_str());
  }
  const std::string difference =
      describe_difference(test_case.expected, verdict.data, verdict.length);
  if (!difference.empty()) FAIL((name + ": " + difference).c_str());
  check_output_checksums(name, verdict.data, verdict.length);
  return verdict;
}

inline void run_cases(const Snapshot& snapshot, const std::vector<PacketCase>& cases) {
  for (const PacketCase& test_case : cases) {
    LcoreState lcore(small_table());
    run_case(snapshot, lcore, test_case);
  }
}

// ---- Frames of the rack ----

inline Ipv4Header client_header(std::uint8_t protocol, const Ip4& destination = vip_ip) {
  Ipv4Header header;
  header.source = client_ip;
  header.destination = destination;
  header.protocol = protocol;
  return header;
}

inline Bytes from_client(const Bytes& ip_packet, std::optional<std::uint16_t> vlan = std::nullopt,
                         const Mac& destination = front_mac) {
  return ethernet(destination, router_mac, ethertype_ipv4, ip_packet, vlan);
}

inline Bytes tcp_packet(std::uint16_t source_port, std::uint16_t destination_port,
                        std::uint8_t flags, const Bytes& payload = {},
                        const Ipv4Header& header = client_header(proto_tcp)) {
  return ipv4(header, tcp(header.source, header.destination, source_port, destination_port, flags,
                          payload));
}

inline Bytes udp_packet(std::uint16_t source_port, std::uint16_t destination_port,
                        const Bytes& payload, const Ipv4Header& header = client_header(proto_udp)) {
  return ipv4(header,
              udp(header.source, header.destination, source_port, destination_port, payload));
}

// The inner packet as forwarded: TTL one lower, header checksum recomputed (by the test's code).
inline Bytes forwarded_inner(Bytes ip_packet) {
  ip_packet[8] = static_cast<std::uint8_t>(ip_packet[8] - 1);
  ip_packet[10] = ip_packet[11] = 0;
  const std::uint16_t checksum = internet_checksum(ip_packet.data(), 20);
  ip_packet[10] = static_cast<std::uint8_t>(checksum >> 8);
  ip_packet[11] = static_cast<std::uint8_t>(checksum);
  return ip_packet;
}

// ARP, echo and ICMP errors between the client and the front port.
inline constexpr Mac client_mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
inline constexpr Mac zero_mac = {};
inline constexpr std::uint16_t arp_request = 1;
inline constexpr std::uint16_t arp_reply = 2;
inline constexpr std::size_t minimum_frame_bytes = 60;  // Ethernet minimum without FCS
inline constexpr std::size_t icmp_quote_limit = 576 - 28;

inline Bytes padded(Bytes frame) {
  if (frame.size() < minimum_frame_bytes) frame.resize(minimum_frame_bytes, 0);
  return frame;
}

inline Bytes arp_frame(std::uint16_t operation, const Ip4& sender, const Ip4& target,
                       std::optional<std::uint16_t> vlan = std::nullopt) {
  return padded(ethernet(
      broadcast_mac, client_mac, ethertype_arp,
      arp(operation, client_mac, sender, operation == arp_request ? zero_mac : front_mac, target),
      vlan));
}

inline Bytes arp_answer(const Mac& port_mac, const Ip4& owned,
                        std::optional<std::uint16_t> vlan = std::nullopt) {
  return ethernet(client_mac, port_mac, ethertype_arp,
                  arp(arp_reply, port_mac, owned, client_mac, client_ip), vlan);
}

inline Bytes to_client(const Bytes& ip_packet, std::optional<std::uint16_t> vlan = std::nullopt) {
  return ethernet(router_mac, front_mac, ethertype_ipv4, ip_packet, vlan);
}

inline Bytes echo_request(const Ip4& destination, const Bytes& payload = payload_of(56)) {
  return ipv4(client_header(proto_icmp, destination), icmp(8, 0, 0x4242, 7, payload));
}

inline Bytes echo_reply_from(const Ip4& source, const Bytes& payload = payload_of(56)) {
  Ipv4Header header;
  header.source = source;
  header.destination = client_ip;
  header.protocol = proto_icmp;
  return ipv4(header, icmp(0, 0, 0x4242, 7, payload));
}

// ICMP type 3 code 4 from the VIP quoting the start of `ip_packet` (RFC 792 layout: unused 16
// bits, then the RFC 1191 next-hop MTU, which is where icmp()'s identifier and sequence go).
inline Bytes fragmentation_needed(const Bytes& ip_packet, std::uint16_t next_hop_mtu,
                                  std::optional<std::uint16_t> vlan = std::nullopt) {
  const Bytes quoted(ip_packet.begin(),
                     ip_packet.begin() +
                         static_cast<std::ptrdiff_t>(std::min(ip_packet.size(), icmp_quote_limit)));
  Ipv4Header header;
  header.source = vip_ip;
  header.destination = client_ip;
  header.protocol = proto_icmp;
  header.identification = 0;
  header.dont_fragment = false;
  return to_client(ipv4(header, icmp(3, 4, 0, next_hop_mtu, quoted)), vlan);
}

inline Mac mac_of_backend(const IpAddress& backend) {
  if (backend == address(backend1_ip)) return backend1_mac;
  if (backend == address(backend2_ip)) return backend2_mac;
  if (backend == address(backend3_ip)) return backend3_mac;
  return gateway_mac;
}

inline Ip4 ip4_of(const IpAddress& address) {
  return {address.bytes[0], address.bytes[1], address.bytes[2], address.bytes[3]};
}

// What leaves the service port for `ip_packet` sent to `backend` with IPIP.
inline Bytes expected_ipip(const Bytes& ip_packet, const IpAddress& backend,
                           std::optional<std::uint16_t> service_vlan = std::nullopt) {
  Ipv4Header outer;
  outer.source = outer_source_ip;
  outer.destination = ip4_of(backend);
  outer.protocol = proto_ipip;
  outer.ttl = 64;
  outer.tos = ip_packet[1];
  outer.identification = get16(ip_packet.data() + 4);
  outer.dont_fragment = (ip_packet[6] & 0x40) != 0;
  return ethernet(mac_of_backend(backend), service_mac, ethertype_ipv4,
                  ipv4(outer, forwarded_inner(ip_packet)), service_vlan);
}

inline Bytes expected_l2_dsr(const Bytes& ip_packet, const IpAddress& backend) {
  return ethernet(mac_of_backend(backend), service_mac, ethertype_ipv4, forwarded_inner(ip_packet));
}

}  // namespace stacknode::dataplane::test
