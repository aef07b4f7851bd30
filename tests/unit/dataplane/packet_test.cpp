// Unit tests of the dataplane packet path (packet.hpp), as tables of {description, input frame,
// expected verdict and drop reason, expected output frame} replayed through process_packet():
// ARP, ICMP echo, load-balanced TCP/UDP with IPIP and L2 DSR, ICMP "fragmentation needed", every
// validation drop, VLAN ports; then stateful sequences (follow-up packets of a flow), and
// process_burst() against process_packet() over a mixed stream.
#include <CppUTest/TestHarness.h>

#include <functional>
#include <map>
#include <set>

#include "packet_cases.hpp"

using namespace stacknode::dataplane;
using namespace stacknode::dataplane::test;

namespace {

constexpr Mac other_mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x77};
constexpr std::uint16_t service_mtu = 1500;
constexpr std::size_t ipip_overhead = 20;
constexpr std::uint16_t client_port = 40000;

Bytes with_header(Ipv4Header header, std::uint8_t protocol = proto_tcp) {
  header.protocol = protocol;
  return header.protocol == proto_tcp ? tcp_packet(client_port, http_port, flag_syn, {}, header)
                                      : ipv4(header, payload_of(8));
}

IpAddress backend_for(const Snapshot& snapshot, IpProtocol protocol, std::uint16_t port, std::uint16_t source_port) {
  return maglev_backend_of(snapshot, {address(vip_ip), protocol, port}, client_ip, source_port);
}

}  // namespace

TEST_GROUP(PacketArp) {
  std::unique_ptr<const Snapshot> snapshot = build_or_fail(rack_config());
};

TEST(PacketArp, Table) {
  run_cases(*snapshot, {
      {"request for an owned VIP -> reply with the front port's MAC", arp_frame(arp_request, client_ip, vip_ip),
       front_port, Action::reply, DropReason::none, arp_answer(front_mac, vip_ip)},
      {"request for the front port's own address -> reply", arp_frame(arp_request, client_ip, front_ip), front_port,
       Action::reply, DropReason::none, arp_answer(front_mac, front_ip)},
      {"request for the service port's address on the service port -> reply with its MAC",
       arp_frame(arp_request, client_ip, outer_source_ip), service_port, Action::reply, DropReason::none,
       arp_answer(service_mac, outer_source_ip)},
      {"unpadded request (42 bytes) -> reply", ethernet(broadcast_mac, client_mac, ethertype_arp,
                                                         arp(arp_request, client_mac, client_ip, zero_mac, vip_ip)),
       front_port, Action::reply, DropReason::none, arp_answer(front_mac, vip_ip)},
      {"request unicast to our MAC -> reply", ethernet(front_mac, client_mac, ethertype_arp,
                                                       arp(arp_request, client_mac, client_ip, zero_mac, vip_ip)),
       front_port, Action::reply, DropReason::none, arp_answer(front_mac, vip_ip)},
      {"VIPs are answered on front ports only", arp_frame(arp_request, client_ip, vip_ip), service_port, Action::drop,
       DropReason::arp_not_owned},
      {"the service port's address is not answered on the front port",
       arp_frame(arp_request, client_ip, outer_source_ip), front_port, Action::drop, DropReason::arp_not_owned},
      {"request for a VIP we do not own", arp_frame(arp_request, client_ip, other_vip_ip), front_port, Action::drop,
       DropReason::arp_not_owned},
      {"an ARP reply on the front port is ignored", arp_frame(arp_reply, client_ip, vip_ip), front_port,
       Action::drop, DropReason::arp_not_request},
      {"an ARP reply on the service port goes unchanged to the control thread",
       arp_frame(arp_reply, backend1_ip, outer_source_ip), service_port, Action::punt, DropReason::none,
       arp_frame(arp_reply, backend1_ip, outer_source_ip)},
      {"gratuitous ARP is not answered", arp_frame(arp_request, vip_ip, vip_ip), front_port, Action::drop,
       DropReason::arp_not_request},
      {"truncated ARP", [] {
         Bytes frame = arp_frame(arp_request, client_ip, vip_ip);
         frame.resize(14 + 27);
         return frame;
       }(),
       front_port, Action::drop, DropReason::arp_malformed},
      {"ARP for another protocol", [] {
         Bytes frame = arp_frame(arp_request, client_ip, vip_ip);
         frame[16] = 0x86;  // protocol type 0x86dd
         frame[17] = 0xdd;
         return frame;
       }(),
       front_port, Action::drop, DropReason::arp_malformed},
  });
}

TEST(PacketArp, PuntsAreCounted) {
  LcoreState lcore(small_table());
  const PacketCase reply{"reply from a backend", arp_frame(arp_reply, backend2_ip, outer_source_ip), service_port,
                         Action::punt, DropReason::none, arp_frame(arp_reply, backend2_ip, outer_source_ip)};
  run_case(*snapshot, lcore, reply);
  run_case(*snapshot, lcore, reply);
  LONGS_EQUAL(2, lcore.counters.arp_punted);
  LONGS_EQUAL(0, lcore.counters.arp_replies);
}

TEST_GROUP(PacketIcmp) {
  std::unique_ptr<const Snapshot> snapshot = build_or_fail(rack_config());
};

TEST(PacketIcmp, Table) {
  Bytes bad_checksum = echo_request(vip_ip);
  bad_checksum[20 + 2] ^= 0x10;
  run_cases(*snapshot, {
      {"echo request to the VIP -> echo reply", from_client(echo_request(vip_ip)), front_port, Action::reply,
       DropReason::none, to_client(echo_reply_from(vip_ip))},
      {"echo to the front address -> reply", from_client(echo_request(front_ip)), front_port, Action::reply,
       DropReason::none, to_client(echo_reply_from(front_ip))},
      {"echo with an odd-length payload", from_client(echo_request(vip_ip, payload_of(33))), front_port, Action::reply,
       DropReason::none, to_client(echo_reply_from(vip_ip, payload_of(33)))},
      {"echo with TTL 1 to us is answered (we are its destination)", [] {
         Ipv4Header header = client_header(proto_icmp);
         header.ttl = 1;
         return from_client(ipv4(header, icmp(8, 0, 0x4242, 7, payload_of(56))));
       }(),
       front_port, Action::reply, DropReason::none, to_client(echo_reply_from(vip_ip))},
      {"padded small echo: reply without the padding", padded(from_client(echo_request(vip_ip, {}))), front_port,
       Action::reply, DropReason::none, to_client(echo_reply_from(vip_ip, {}))},
      {"echo to an address we do not own", from_client(echo_request(other_vip_ip)), front_port, Action::drop,
       DropReason::unknown_destination},
      {"echo with a wrong ICMP checksum", from_client(bad_checksum), front_port, Action::drop,
       DropReason::icmp_bad_checksum},
      {"timestamp request is not handled",
       from_client(ipv4(client_header(proto_icmp), icmp(13, 0, 1, 1, payload_of(12)))), front_port, Action::drop,
       DropReason::icmp_unhandled},
      {"echo reply to us is not handled", from_client(ipv4(client_header(proto_icmp), icmp(0, 0, 1, 1, {}))),
       front_port, Action::drop, DropReason::icmp_unhandled},
      {"ICMP shorter than its header", from_client(ipv4(client_header(proto_icmp), Bytes{8, 0, 0xf7, 0xff})),
       front_port, Action::drop, DropReason::icmp_truncated},
  });
}

TEST_GROUP(PacketLoadBalancing) {
  std::unique_ptr<const Snapshot> snapshot = build_or_fail(rack_config());
};

TEST(PacketLoadBalancing, Table) {
  const Bytes syn = tcp_packet(client_port, http_port, flag_syn);
  const Bytes data = tcp_packet(client_port + 1, http_port, flag_ack | flag_psh, payload_of(100));
  const Bytes dns = udp_packet(client_port, dns_port, payload_of(40));
  const Bytes dsr = tcp_packet(client_port, dsr_port, flag_syn);
  Ipv4Header marked = client_header(proto_tcp);
  marked.tos = 0xb9;  // DSCP 46 (EF) with ECN 01: copied to the outer header
  marked.dont_fragment = false;
  const Bytes marked_syn = tcp_packet(client_port, http_port, flag_syn, {}, marked);
  run_cases(*snapshot, {
      {"TCP SYN to the VIP -> IPIP to its Maglev backend", from_client(syn), front_port, Action::forward,
       DropReason::none, expected_ipip(syn, backend_for(*snapshot, IpProtocol::tcp, http_port, client_port))},
      {"mid-flow TCP data (no SYN) -> IPIP to its Maglev backend", from_client(data), front_port, Action::forward,
       DropReason::none, expected_ipip(data, backend_for(*snapshot, IpProtocol::tcp, http_port, client_port + 1))},
      {"UDP to the VIP -> IPIP", from_client(dns), front_port, Action::forward, DropReason::none,
       expected_ipip(dns, backend_for(*snapshot, IpProtocol::udp, dns_port, client_port))},
      {"TOS copied, DF clear copied", from_client(marked_syn), front_port, Action::forward, DropReason::none,
       expected_ipip(marked_syn, backend_for(*snapshot, IpProtocol::tcp, http_port, client_port))},
      {"L2 DSR service -> MAC rewrite only", from_client(dsr), front_port, Action::forward, DropReason::none,
       expected_l2_dsr(dsr, backend_for(*snapshot, IpProtocol::tcp, dsr_port, client_port))},
      {"Ethernet padding is not forwarded", padded(from_client(syn)), front_port, Action::forward, DropReason::none,
       expected_ipip(syn, backend_for(*snapshot, IpProtocol::tcp, http_port, client_port))},
      {"TCP to a VIP without a service", from_client(tcp_packet(client_port, http_port, flag_syn, {},
                                                                client_header(proto_tcp, other_vip_ip))),
       front_port, Action::drop, DropReason::no_service},
      {"TCP to the VIP on a port without a service", from_client(tcp_packet(client_port, 81, flag_syn)), front_port,
       Action::drop, DropReason::no_service},
      {"UDP to the TCP service's port", from_client(udp_packet(client_port, http_port, payload_of(4))), front_port,
       Action::drop, DropReason::no_service},
      {"TCP to our own front address", from_client(tcp_packet(client_port, 22, flag_syn, {},
                                                              client_header(proto_tcp, front_ip))),
       front_port, Action::drop, DropReason::no_service},
      {"GRE to the VIP", from_client(with_header(client_header(proto_tcp), 47)), front_port, Action::drop,
       DropReason::unsupported_protocol},
  });
}

TEST(PacketLoadBalancing, SynIsEncapsulatedExactlyAsExpectedByteForByte) {
  // Every outer byte written out by hand, with the checksum computed by hand too (RFC 1071):
  //   4500 003c 1234 4000 4004 0000 c612 0165 c612 010d
  //   sum = 4500+003c+1234+4000+4004+c612+0165+c612+010d = 0x2660a -> 0x660c -> ~ = 0x99f3
  // The inner packet is the SYN with TTL 63 and its checksum adjusted by +0x0100 (RFC 1624).
  const Bytes syn = tcp_packet(client_port, http_port, flag_syn);
  CHECK(backend_for(*snapshot, IpProtocol::tcp, http_port, client_port) == address(backend3_ip));  // Maglev entry 1500
  const Bytes outer_headers = {
      0x02, 0x00, 0x00, 0x00, 0x01, 0x13,  // destination: backend 198.18.1.13's MAC
      0x02, 0x00, 0x00, 0x00, 0x01, 0x01,  // source: the service port's MAC
      0x08, 0x00,                          // IPv4
      0x45, 0x00, 0x00, 0x3c,              // version 4, IHL 5, TOS 0, total 60 = 20 + 40
      0x12, 0x34, 0x40, 0x00,              // identification copied, DF copied
      0x40, 0x04, 0x99, 0xf3,              // TTL 64, protocol 4 (IPIP), checksum
      0xc6, 0x12, 0x01, 0x65,              // source 198.18.1.101
      0xc6, 0x12, 0x01, 0x0d,              // destination 198.18.1.13
  };
  Bytes inner = syn;
  inner[8] = 63;
  const std::uint16_t checksum = static_cast<std::uint16_t>(get16(syn.data() + 10) + 0x0100);
  inner[10] = static_cast<std::uint8_t>(checksum >> 8);
  inner[11] = static_cast<std::uint8_t>(checksum);
  LcoreState lcore(small_table());
  const Verdict verdict =
      run_case(*snapshot, lcore, {"SYN", from_client(syn), front_port, Action::forward, DropReason::none,
                                  concat(outer_headers, inner)});
  LONGS_EQUAL(34 + 40, verdict.length);
  LONGS_EQUAL(1, lcore.counters.forwarded_packets);
  LONGS_EQUAL(34 + 40, lcore.counters.forwarded_bytes);
  // Zero copy: the outer headers went into the headroom; the frame now starts 20 bytes earlier.
  FrameBuffer buffer(from_client(syn), encap_headroom_bytes);
  const Verdict again = process_packet(*snapshot, lcore, front_port, buffer.data(), buffer.length(), 1001);
  CHECK(again.data == buffer.data() - 20);
  LONGS_EQUAL(1, lcore.counters.new_flows);
  // The shell counts new flows per backend from the verdict: only the first packet is one.
  CHECK_TRUE(verdict.new_flow);
  CHECK_FALSE(again.new_flow);
  const Service* http = snapshot->find_service({address(vip_ip), IpProtocol::tcp, http_port});
  LONGS_EQUAL(http->first_backend + 2, verdict.backend);
}

TEST(PacketLoadBalancing, TooBigForTheServicePort) {
  // 1480 bytes of IP + 20 of IPIP = 1500 fits; one more byte does not.
  const Bytes fits = tcp_packet(client_port, http_port, flag_ack, payload_of(service_mtu - ipip_overhead - 40));
  const Bytes too_big = tcp_packet(client_port, http_port, flag_ack, payload_of(service_mtu - ipip_overhead - 40 + 1));
  Ipv4Header no_df = client_header(proto_tcp);
  no_df.dont_fragment = false;
  const Bytes too_big_no_df = tcp_packet(client_port, http_port, flag_ack, payload_of(1441), no_df);
  const Bytes dsr_fits = tcp_packet(client_port, dsr_port, flag_ack, payload_of(service_mtu - 40));
  const Bytes dsr_too_big = tcp_packet(client_port, dsr_port, flag_ack, payload_of(service_mtu - 40 + 1));
  run_cases(*snapshot, {
      {"exactly the MTU after encapsulation -> forwarded", from_client(fits), front_port, Action::forward,
       DropReason::none, expected_ipip(fits, backend_for(*snapshot, IpProtocol::tcp, http_port, client_port))},
      {"one byte over with DF -> ICMP fragmentation needed, next-hop MTU 1480", from_client(too_big), front_port,
       Action::reply, DropReason::none, fragmentation_needed(too_big, service_mtu - ipip_overhead)},
      {"one byte over without DF -> dropped (we do not fragment)", from_client(too_big_no_df), front_port,
       Action::drop, DropReason::too_big_no_df},
      {"L2 DSR adds no header: 1500 fits", from_client(dsr_fits), front_port, Action::forward, DropReason::none,
       expected_l2_dsr(dsr_fits, backend_for(*snapshot, IpProtocol::tcp, dsr_port, client_port))},
      {"L2 DSR over 1500 with DF -> ICMP with next-hop MTU 1500", from_client(dsr_too_big), front_port, Action::reply,
       DropReason::none, fragmentation_needed(dsr_too_big, service_mtu)},
  });
  // The event is counted, and no flow is created for a packet that could not leave.
  LcoreState lcore(small_table());
  run_case(*snapshot, lcore, {"too big", from_client(too_big), front_port, Action::reply, DropReason::none,
                              fragmentation_needed(too_big, service_mtu - ipip_overhead)});
  LONGS_EQUAL(1, lcore.counters.frag_needed_sent);
  LONGS_EQUAL(0, lcore.counters.new_flows);
  LONGS_EQUAL(0, lcore.flows.count_live(1000));
}

TEST_GROUP(PacketValidation) {
  std::unique_ptr<const Snapshot> snapshot = build_or_fail(rack_config());
};

TEST(PacketValidation, Table) {
  const Bytes syn = tcp_packet(client_port, http_port, flag_syn);
  const Bytes frame = from_client(syn);
  std::vector<PacketCase> cases;
  auto header_case = [&](const std::string& description, const std::function<void(Ipv4Header&)>& change,
                         DropReason reason) {
    Ipv4Header header = client_header(proto_tcp);
    change(header);
    cases.push_back({description, from_client(tcp_packet(client_port, http_port, flag_syn, {}, header)), front_port,
                     Action::drop, reason});
  };
  header_case("IHL 4 (header shorter than 20 bytes)", [](Ipv4Header& h) { h.version_ihl = 0x44; },
              DropReason::ipv4_bad_ihl);
  header_case("IHL 0", [](Ipv4Header& h) { h.version_ihl = 0x40; }, DropReason::ipv4_bad_ihl);
  header_case("version 6 in an IPv4 frame", [](Ipv4Header& h) { h.version_ihl = 0x65; },
              DropReason::ipv4_bad_version);
  header_case("IP options (record route)", [](Ipv4Header& h) { h.options = {7, 3, 4, 0}; },
              DropReason::ipv4_options);
  header_case("IP options (NOPs)", [](Ipv4Header& h) { h.options = {1, 1, 1, 1, 1, 1, 1, 0}; },
              DropReason::ipv4_options);
  header_case("first fragment (MF)", [](Ipv4Header& h) { h.more_fragments = true; h.dont_fragment = false; },
              DropReason::ipv4_fragment);
  header_case("later fragment (offset)", [](Ipv4Header& h) { h.fragment_offset = 185; h.dont_fragment = false; },
              DropReason::ipv4_fragment);
  header_case("TTL 1", [](Ipv4Header& h) { h.ttl = 1; }, DropReason::ipv4_ttl_expired);
  header_case("TTL 0", [](Ipv4Header& h) { h.ttl = 0; }, DropReason::ipv4_ttl_expired);
  header_case("wrong header checksum", [](Ipv4Header& h) { h.corrupt_checksum = true; },
              DropReason::ipv4_bad_checksum);
  header_case("total length below the header length", [](Ipv4Header& h) { h.total_length = 19; },
              DropReason::ipv4_bad_total_length);
  header_case("total length beyond the frame", [](Ipv4Header& h) { h.total_length = 41; },
              DropReason::ipv4_truncated);
  header_case("loopback source", [](Ipv4Header& h) { h.source = {127, 0, 0, 1}; }, DropReason::ipv4_bad_source);
  header_case("zero source", [](Ipv4Header& h) { h.source = {0, 0, 0, 0}; }, DropReason::ipv4_bad_source);
  header_case("multicast source", [](Ipv4Header& h) { h.source = {224, 0, 0, 5}; }, DropReason::ipv4_bad_source);
  header_case("broadcast source", [](Ipv4Header& h) { h.source = {255, 255, 255, 255}; },
              DropReason::ipv4_bad_source);
  {
    Ipv4Header evil = client_header(proto_tcp);
    Bytes packet = tcp_packet(client_port, http_port, flag_syn, {}, evil);
    packet[6] |= 0x80;  // reserved flag, checksum fixed by hand below
    packet[10] = packet[11] = 0;
    const std::uint16_t checksum = internet_checksum(packet.data(), 20);
    packet[10] = static_cast<std::uint8_t>(checksum >> 8);
    packet[11] = static_cast<std::uint8_t>(checksum);
    cases.push_back({"reserved flag set", from_client(packet), front_port, Action::drop, DropReason::ipv4_reserved_flag});
  }
  Bytes short_segment = tcp(client_ip, vip_ip, 1, http_port, flag_syn);
  short_segment.resize(12);
  const Bytes truncated_tcp = ipv4(client_header(proto_tcp), short_segment);
  Bytes tag_cut_short = from_client(syn, 0);
  tag_cut_short.resize(16);
  Bytes long_offset = tcp_packet(client_port, http_port, flag_syn);
  long_offset[20 + 12] = 0xf0;  // data offset 60 bytes in a 20-byte segment
  Bytes short_offset = tcp_packet(client_port, http_port, flag_syn);
  short_offset[20 + 12] = 0x40;  // data offset 16 bytes
  Bytes udp_length_long = udp_packet(client_port, dns_port, payload_of(8));
  udp_length_long[20 + 5] = 17;  // UDP length 17 in a 16-byte datagram
  const Bytes udp_short = ipv4(client_header(proto_udp), Bytes{0x9c, 0x40, 0x00, 0x35, 0x00, 0x08});
  const std::vector<PacketCase> more = {
      {"empty frame", {}, front_port, Action::drop, DropReason::frame_too_short},
      {"13 bytes", Bytes(frame.begin(), frame.begin() + 13), front_port, Action::drop, DropReason::frame_too_short},
      {"Ethernet header only", Bytes(frame.begin(), frame.begin() + 14), front_port, Action::drop,
       DropReason::ipv4_truncated},
      {"IPv4 header cut at 19 bytes", Bytes(frame.begin(), frame.begin() + 14 + 19), front_port, Action::drop,
       DropReason::ipv4_truncated},
      {"frame shorter than the IPv4 total length", Bytes(frame.begin(), frame.end() - 1), front_port, Action::drop,
       DropReason::ipv4_truncated},
      {"TCP header cut short", from_client(truncated_tcp), front_port, Action::drop, DropReason::l4_truncated},
      {"TCP data offset beyond the segment", from_client(long_offset), front_port, Action::drop,
       DropReason::l4_truncated},
      {"TCP data offset below 20", from_client(short_offset), front_port, Action::drop, DropReason::l4_truncated},
      {"UDP length beyond the datagram", from_client(udp_length_long), front_port, Action::drop,
       DropReason::l4_truncated},
      {"UDP header cut short", from_client(udp_short), front_port, Action::drop, DropReason::l4_truncated},
      {"IPv6", ethernet(front_mac, router_mac, ethertype_ipv6, payload_of(60)), front_port, Action::drop,
       DropReason::ipv6_unsupported},
      {"unknown ethertype (LLDP)", ethernet(front_mac, router_mac, 0x88cc, payload_of(46)), front_port, Action::drop,
       DropReason::unknown_ethertype},
      {"unicast to another MAC", from_client(syn, std::nullopt, other_mac), front_port, Action::drop,
       DropReason::not_our_mac},
      {"IPv4 to the broadcast MAC", from_client(syn, std::nullopt, broadcast_mac), front_port, Action::drop,
       DropReason::not_our_mac},
      {"multicast MAC", from_client(syn, std::nullopt, {0x01, 0x00, 0x5e, 0x00, 0x00, 0x05}), front_port,
       Action::drop, DropReason::not_our_mac},
      {"tagged frame on an untagged port", from_client(syn, 100), front_port, Action::drop, DropReason::vlan_mismatch},
      {"priority-tagged frame (VID 0) on an untagged port is accepted", from_client(syn, 0x6000), front_port,
       Action::forward, DropReason::none,
       expected_ipip(syn, backend_for(*snapshot, IpProtocol::tcp, http_port, client_port))},
      {"QinQ (a second 802.1Q tag)", ethernet(front_mac, router_mac, ethertype_vlan, concat(Bytes{0x00, 0x05}, concat(Bytes{0x08, 0x00}, syn)), 0),
       front_port, Action::drop, DropReason::vlan_stacked},
      {"802.1ad outer tag", ethernet(front_mac, router_mac, 0x88a8, payload_of(46)), front_port, Action::drop,
       DropReason::vlan_stacked},
      {"tag cut short", tag_cut_short, front_port,
       Action::drop, DropReason::frame_too_short},
      {"a port the snapshot does not have", frame, 7, Action::drop, DropReason::bad_rx_port},
  };
  cases.insert(cases.end(), more.begin(), more.end());
  run_cases(*snapshot, cases);
}

TEST_GROUP(PacketSnapshots){};

TEST(PacketSnapshots, NoActiveBackendAndUnresolvedNeighbour) {
  SnapshotConfig config = rack_config();
  for (BackendConfig& backend : config.services[0].backends) backend.state = BackendState::draining;
  config.neighbours.clear();  // nothing resolved: every backend of every service lacks a MAC
  const auto snapshot = build_or_fail(config);
  run_cases(*snapshot, {
      {"every backend draining, new flow", from_client(tcp_packet(client_port, http_port, flag_syn)), front_port,
       Action::drop, DropReason::no_backend},
      {"backend MAC unknown", from_client(udp_packet(client_port, dns_port, payload_of(4))), front_port, Action::drop,
       DropReason::no_neighbour},
  });
}

TEST(PacketSnapshots, VlanPorts) {
  SnapshotConfig config = rack_config();
  constexpr std::uint16_t front_vlan = 100;
  constexpr std::uint16_t service_vlan = 200;
  config.ports[0].vlan_id = front_vlan;
  config.ports[1].vlan_id = service_vlan;
  const auto snapshot = build_or_fail(config);
  const Bytes syn = tcp_packet(client_port, http_port, flag_syn);
  const Bytes too_big = tcp_packet(client_port, http_port, flag_ack, payload_of(1441));
  run_cases(*snapshot, {
      {"tagged SYN -> IPIP tagged for the service VLAN", from_client(syn, front_vlan), front_port, Action::forward,
       DropReason::none, expected_ipip(syn, backend_for(*snapshot, IpProtocol::tcp, http_port, client_port), service_vlan)},
      {"tagged ARP request -> tagged reply", arp_frame(arp_request, client_ip, vip_ip, front_vlan), front_port,
       Action::reply, DropReason::none, arp_answer(front_mac, vip_ip, front_vlan)},
      {"tagged echo -> tagged reply", from_client(echo_request(vip_ip), front_vlan), front_port, Action::reply,
       DropReason::none, to_client(echo_reply_from(vip_ip), front_vlan)},
      {"tagged too big -> tagged ICMP", from_client(too_big, front_vlan), front_port, Action::reply, DropReason::none,
       fragmentation_needed(too_big, service_mtu - ipip_overhead, front_vlan)},
      {"untagged on a tagged port", from_client(syn), front_port, Action::drop, DropReason::vlan_mismatch},
      {"another VLAN", from_client(syn, front_vlan + 1), front_port, Action::drop, DropReason::vlan_mismatch},
  });
}

TEST(PacketSnapshots, LargeIcmpErrorQuotesOnly576Bytes) {
  SnapshotConfig config = rack_config();
  config.ports[1].mtu = 1000;
  const auto snapshot = build_or_fail(config);
  const Bytes big = tcp_packet(client_port, http_port, flag_ack, payload_of(1200));
  run_cases(*snapshot, {
      {"too big for a 1000-byte service MTU", from_client(big), front_port, Action::reply, DropReason::none,
       fragmentation_needed(big, 1000 - ipip_overhead)},
  });
}

TEST_GROUP(PacketFlows) {
  std::unique_ptr<const Snapshot> snapshot = build_or_fail(rack_config());
};

TEST(PacketFlows, FollowUpPacketsGoToTheSameBackend) {
  LcoreState lcore(small_table());
  const IpAddress backend = backend_for(*snapshot, IpProtocol::tcp, http_port, client_port);
  const std::vector<std::pair<std::uint8_t, FlowState>> sequence = {
      {flag_syn, FlowState::tcp_syn_seen},         {flag_syn, FlowState::tcp_syn_seen},  // retransmitted
      {flag_ack, FlowState::tcp_established},      {flag_ack | flag_psh, FlowState::tcp_established},
      {flag_fin | flag_ack, FlowState::tcp_fin},   {flag_ack, FlowState::tcp_fin},
  };
  std::uint64_t now = 1000;
  for (const auto& [flags, state] : sequence) {
    const Bytes packet = tcp_packet(client_port, http_port, flags, flags & flag_psh ? payload_of(300) : Bytes{});
    run_case(*snapshot, lcore, {"follow-up", from_client(packet), front_port, Action::forward, DropReason::none,
                                expected_ipip(packet, backend)},
             now);
    FlowKey flow;
    flow.family = AddressFamily::ipv4;
    flow.protocol = IpProtocol::tcp;
    flow.source = address(client_ip).bytes;
    flow.destination = address(vip_ip).bytes;
    flow.source_port = client_port;
    flow.destination_port = http_port;
    const ConnEntry* entry = lcore.flows.find(flow, flow_hash(flow), now);
    CHECK(entry != nullptr);
    CHECK(entry->backend() == backend);
    STRCMP_EQUAL(std::string(to_string(state)).c_str(), std::string(to_string(entry->state)).c_str());
    now += 10;
  }
  LONGS_EQUAL(1, lcore.counters.new_flows);
  LONGS_EQUAL(sequence.size(), lcore.counters.forwarded_packets);
}

TEST(PacketFlows, ManyFlowsReachEveryBackendAndEachStaysPut) {
  LcoreState lcore(small_table());
  std::map<std::uint16_t, std::uint32_t> first_backend;
  std::set<std::uint32_t> used;
  for (int round = 0; round < 2; ++round) {
    for (std::uint16_t port = 30000; port < 30300; ++port) {
      FrameBuffer buffer(from_client(tcp_packet(port, http_port, round == 0 ? flag_syn : flag_ack)), encap_headroom_bytes);
      const Verdict verdict = process_packet(*snapshot, lcore, front_port, buffer.data(), buffer.length(), 2000);
      CHECK(verdict.action == Action::forward);
      if (round == 0) {
        first_backend[port] = verdict.backend;
        used.insert(verdict.backend);
      } else {
        LONGS_EQUAL(first_backend[port], verdict.backend);
      }
    }
  }
  LONGS_EQUAL(3, used.size());
  LONGS_EQUAL(300, lcore.counters.new_flows);
  LONGS_EQUAL(300, lcore.flows.count_live(2000));
}

// process_burst must be process_packet frame after frame: same verdicts, same output bytes (the
// headroom included), same counters and table, over a stream that mixes every kind of frame,
// repeats flows inside a burst (SYN then ACK, FIN, RST, a SYN reusing a closed tuple), evicts
// and reclaims (a 16-flow table, the clock moving past the SYN timeout) and uses bursts shorter
// and longer than the prefetch window.
TEST_GROUP(PacketBurst) {
  std::unique_ptr<const Snapshot> snapshot = build_or_fail(rack_config());
};

namespace {

Bytes mixed_frame(std::uint64_t random) {
  const auto pick = static_cast<unsigned>(random % 23);
  const auto source_port = static_cast<std::uint16_t>(41000 + (random >> 8) % 24);  // flows repeat
  static constexpr std::uint8_t tcp_flags[] = {flag_syn, flag_ack, flag_ack | flag_psh, flag_fin | flag_ack,
                                               flag_rst, flag_syn | flag_ack};
  const std::uint8_t flags = tcp_flags[(random >> 16) % 6];
  Ipv4Header header = client_header(proto_tcp);
  header.source[3] = static_cast<std::uint8_t>(2 + (random >> 24) % 3);
  switch (pick) {
    case 0: return from_client(udp_packet(source_port, dns_port, payload_of(12), client_header(proto_udp)));
    case 1: return from_client(tcp_packet(source_port, dsr_port, flags, {}, header));
    case 2: return from_client(tcp_packet(source_port, http_port, flags, {}, header), 5);  // tagged: mismatch
    case 3: return from_client(tcp_packet(source_port, http_port, flags, {}, header), std::nullopt, other_mac);
    case 4: {
      header.options = {1, 1, 1, 0};
      return from_client(tcp_packet(source_port, http_port, flags, {}, header));
    }
    case 5: {
      header.corrupt_checksum = true;
      return from_client(tcp_packet(source_port, http_port, flags, {}, header));
    }
    case 6: {
      header.ttl = 1;
      return from_client(tcp_packet(source_port, http_port, flags, {}, header));
    }
    case 7: return from_client(tcp_packet(source_port, http_port, flags, payload_of(1500), header));  // too big
    case 8: return from_client(tcp_packet(source_port, 81, flags, {}, header));                        // no service
    case 9: return from_client(ipv4(client_header(proto_icmp), icmp(8, 0, 7, 9, payload_of(16))));  // echo
    case 10: return ethernet(broadcast_mac, router_mac, ethertype_arp,
                             arp(arp_request, router_mac, client_ip, Mac{}, vip_ip));
    case 11: {
      Bytes frame = from_client(tcp_packet(source_port, http_port, flags, {}, header));
      frame.resize(14 + 20 + 2);  // truncated inside the ports
      return frame;
    }
    default: return from_client(tcp_packet(source_port, http_port, flags, payload_of((random >> 32) % 3), header));
  }
}

void check_same_counters(const LcoreState& expected, const LcoreState& actual) {
  const LcoreCounters& left = expected.counters;
  const LcoreCounters& right = actual.counters;
  UNSIGNED_LONGLONGS_EQUAL(left.forwarded_packets, right.forwarded_packets);
  UNSIGNED_LONGLONGS_EQUAL(left.forwarded_bytes, right.forwarded_bytes);
  UNSIGNED_LONGLONGS_EQUAL(left.arp_replies, right.arp_replies);
  UNSIGNED_LONGLONGS_EQUAL(left.arp_punted, right.arp_punted);
  UNSIGNED_LONGLONGS_EQUAL(left.echo_replies, right.echo_replies);
  UNSIGNED_LONGLONGS_EQUAL(left.frag_needed_sent, right.frag_needed_sent);
  UNSIGNED_LONGLONGS_EQUAL(left.new_flows, right.new_flows);
  UNSIGNED_LONGLONGS_EQUAL(left.flows_repicked, right.flows_repicked);
  for (std::size_t reason = 0; reason < drop_reason_count; ++reason) {
    UNSIGNED_LONGLONGS_EQUAL(left.drops[reason], right.drops[reason]);
  }
  UNSIGNED_LONGLONGS_EQUAL(expected.flows.stats().inserts, actual.flows.stats().inserts);
  UNSIGNED_LONGLONGS_EQUAL(expected.flows.stats().evictions, actual.flows.stats().evictions);
  UNSIGNED_LONGLONGS_EQUAL(expected.flows.stats().expired_reclaimed, actual.flows.stats().expired_reclaimed);
}

}  // namespace

TEST(PacketBurst, SameAsOneFrameAtATime) {
  ConnTableConfig table;
  table.capacity = 16;  // two buckets: inserts evict
  LcoreState one_at_a_time(table);
  LcoreState in_bursts(table);
  static constexpr std::size_t burst_sizes[] = {1, 5, 32, 33, 70, 2};
  std::uint64_t random = 12345;
  std::uint64_t now = 1000;
  std::size_t frames_seen = 0;
  for (int round = 0; round < 60; ++round) {
    const std::size_t size = burst_sizes[round % std::size(burst_sizes)];
    std::vector<Bytes> inputs;
    for (std::size_t index = 0; index < size; ++index) {
      random = random * 6364136223846793005ull + 1442695040888963407ull;
      inputs.push_back(mixed_frame(random >> 11));
    }
    std::vector<FrameBuffer> expected_buffers, actual_buffers;
    for (const Bytes& input : inputs) {
      expected_buffers.emplace_back(input, encap_headroom_bytes);
      actual_buffers.emplace_back(input, encap_headroom_bytes);
    }
    std::vector<Verdict> expected;
    for (FrameBuffer& buffer : expected_buffers) {
      expected.push_back(process_packet(*snapshot, one_at_a_time, front_port, buffer.data(), buffer.length(), now));
    }
    std::vector<std::uint8_t*> frames;
    std::vector<std::uint32_t> lengths;
    for (FrameBuffer& buffer : actual_buffers) {
      frames.push_back(buffer.data());
      lengths.push_back(buffer.length());
    }
    std::vector<Verdict> actual(size);
    process_burst(*snapshot, in_bursts, front_port, frames.data(), lengths.data(), size, now, actual.data());
    for (std::size_t index = 0; index < size; ++index) {
      const std::string name = "round " + std::to_string(round) + " frame " + std::to_string(index);
      const Verdict& left = expected[index];
      const Verdict& right = actual[index];
      CHECK_TEXT(left.action == right.action, name.c_str());
      CHECK_TEXT(left.drop_reason == right.drop_reason, name.c_str());
      LONGS_EQUAL_TEXT(left.data - expected_buffers[index].data(), right.data - actual_buffers[index].data(),
                       name.c_str());
      LONGS_EQUAL_TEXT(left.length, right.length, name.c_str());
      LONGS_EQUAL_TEXT(left.backend, right.backend, name.c_str());
      CHECK_TEXT(left.new_flow == right.new_flow, name.c_str());
      const std::vector<std::uint8_t> left_bytes(expected_buffers[index].begin(), expected_buffers[index].end());
      const std::vector<std::uint8_t> right_bytes(actual_buffers[index].begin(), actual_buffers[index].end());
      CHECK_TEXT(left_bytes == right_bytes, name.c_str());
    }
    check_same_counters(one_at_a_time, in_bursts);
    frames_seen += size;
    now += 7000;  // past the SYN timeout every few rounds: expired ways are reclaimed
  }
  UNSIGNED_LONGLONGS_EQUAL(one_at_a_time.flows.count_live(now), in_bursts.flows.count_live(now));
  // The stream did exercise what it is meant to.
  CHECK(one_at_a_time.counters.forwarded_packets > frames_seen / 3);
  CHECK(one_at_a_time.flows.stats().evictions > 0);
  CHECK(one_at_a_time.flows.stats().expired_reclaimed > 0);
  CHECK(one_at_a_time.counters.flows_repicked > 0);
  CHECK(one_at_a_time.counters.total_drops() > 0);
  CHECK(one_at_a_time.counters.echo_replies > 0);
  CHECK(one_at_a_time.counters.arp_replies > 0);
  CHECK(one_at_a_time.counters.frag_needed_sent > 0);
}
