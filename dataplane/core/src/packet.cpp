// The packet path (packet.hpp): Ethernet/VLAN demultiplexing, ARP and ICMP echo answers, IPv4
// validation, the load-balancing decision (connection table, else Maglev), and the in-place
// rewrites: IPIP encapsulation, L2 DSR MAC rewrite, ICMP "fragmentation needed". Every exit is a
// Verdict; every drop increments exactly one DropReason counter. process_burst is the same path
// over a burst, with each frame's connection-table bucket and entry prefetched ahead of it.
#include "stacknode/dataplane/packet.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>

#include "stacknode/dataplane/flow_hash.hpp"
#include "wire.hpp"

namespace stacknode::dataplane {

namespace {

using namespace wire;

constexpr std::uint8_t reply_ttl = 64;  // TTL of packets we originate (echo replies, ICMP errors)
constexpr std::size_t ipip_overhead_bytes = ipv4_header_bytes;

// process_burst: frames peeked (and their buckets requested) before the first of them is
// processed. A receive burst (32 in the shell) fits in one window; the peeks are on the stack.
constexpr std::size_t burst_window_frames = 32;
// process_burst: how many frames ahead of the one being processed its entry is requested. Enough
// for the entry's line to arrive while those frames are processed; not so many that the bucket
// it reads has not arrived yet (it was requested in the window's peek pass).
constexpr std::size_t entry_prefetch_distance = 4;
static_assert(entry_prefetch_distance < burst_window_frames);

// A frame's flow hash, when the frame looks like TCP or UDP over IPv4 without options.
struct FlowPeek {
  bool has_hash = false;
  std::uint64_t hash = 0;
};

// The flow hash process_frame will compute for this frame, if it gets that far: reads only the
// bytes it needs, validates nothing else, changes nothing and counts nothing (process_frame does
// all of that). Parses exactly as process_frame does: one optional 802.1Q tag, IPv4 with a 20-byte
// header, TCP or UDP ports right after it; anything else gets no hash and process_frame computes
// its own if it needs one.
inline FlowPeek peek_flow(const std::uint8_t* data, std::uint32_t length) {
  constexpr std::size_t port_bytes = 4;  // source and destination port
  if (length < ethernet_header_bytes + vlan_tag_bytes) return {};
  std::size_t l3_offset = ethernet_header_bytes;
  std::uint16_t ethertype = load16(data + ethernet_type);
  if (ethertype == ethertype_vlan) {
    ethertype = load16(data + ethernet_type + vlan_tag_bytes);
    l3_offset += vlan_tag_bytes;
  }
  if (ethertype != ethertype_ipv4 || length < l3_offset + ipv4_header_bytes + port_bytes) return {};
  const std::uint8_t* ip = data + l3_offset;
  const auto protocol = static_cast<IpProtocol>(ip[ipv4_protocol]);
  if (ip[0] != ipv4_version_ihl_no_options || (protocol != IpProtocol::tcp && protocol != IpProtocol::udp)) return {};
  return {true, flow_hash_ipv4(ip + ipv4_source, ip + ipv4_destination, load16(ip + ipv4_header_bytes),
                              load16(ip + ipv4_header_bytes + 2), protocol)};
}

struct Frame {
  std::uint8_t* data;
  std::uint32_t length;
  std::size_t l3_offset;  // 14, or 18 with an 802.1Q tag
  bool to_our_mac;
};

inline Verdict drop(LcoreCounters& counters, const Frame& frame, DropReason reason) {
  ++counters.drops[static_cast<std::size_t>(reason)];
  return Verdict{Action::drop, reason, frame.data, frame.length, Verdict::no_backend_index};
}

inline bool owns(const Snapshot& snapshot, const Port& port, const IpAddress& address) {
  return (port.front && snapshot.owns_vip(address)) || port.owns(address);
}

// 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 (multicast), 240.0.0.0/4 (class E, with the broadcast
// address): never a client we may answer or balance.
inline bool is_martian_source(const std::uint8_t* address) {
  return address[0] == 0 || address[0] == 127 || address[0] >= 224;
}

// Writes an Ethernet header (and the tag when vlan_tci is set) at `at`; returns the bytes written.
inline std::size_t write_ethernet(std::uint8_t* at, const MacAddress& destination, const MacAddress& source,
                                  bool tagged, std::uint16_t vlan_tci) {
  std::memcpy(at + ethernet_destination, destination.bytes.data(), mac_address_bytes);
  std::memcpy(at + ethernet_source, source.bytes.data(), mac_address_bytes);
  if (tagged) {
    store16(at + ethernet_type, ethertype_vlan);
    store16(at + ethernet_type + 2, vlan_tci);
    store16(at + ethernet_type + vlan_tag_bytes, ethertype_ipv4);
    return ethernet_header_bytes + vlan_tag_bytes;
  }
  store16(at + ethernet_type, ethertype_ipv4);
  return ethernet_header_bytes;
}

Verdict handle_arp(const Snapshot& snapshot, const Port& port, LcoreCounters& counters, const Frame& frame) {
  if (frame.length < frame.l3_offset + arp_message_bytes) return drop(counters, frame, DropReason::arp_malformed);
  std::uint8_t* arp = frame.data + frame.l3_offset;
  if (load16(arp) != arp_hardware_ethernet || load16(arp + 2) != ethertype_ipv4 ||
      arp[4] != arp_hardware_length || arp[5] != arp_protocol_length) {
    return drop(counters, frame, DropReason::arp_malformed);
  }
  // A reply on the service port may answer our resolution of a backend or the gateway: the
  // control thread reads it (arp.hpp, read_arp_reply) and decides whether it was wanted.
  if (load16(arp + 6) == arp_op_reply && port.service) {
    ++counters.arp_punted;
    return Verdict{Action::punt, DropReason::none, frame.data, frame.length, Verdict::no_backend_index};
  }
  // Gratuitous ARP (sender = target) announces, it does not ask: not answered.
  if (load16(arp + 6) != arp_op_request ||
      std::memcmp(arp + arp_sender_ip, arp + arp_target_ip, ipv4_address_bytes) == 0) {
    return drop(counters, frame, DropReason::arp_not_request);
  }
  const IpAddress target = IpAddress::ipv4_from_wire(arp + arp_target_ip);
  if (!owns(snapshot, port, target)) return drop(counters, frame, DropReason::arp_not_owned);

  std::uint8_t requester_mac[mac_address_bytes];
  std::uint8_t requester_ip[ipv4_address_bytes];
  std::memcpy(requester_mac, arp + arp_sender_mac, mac_address_bytes);
  std::memcpy(requester_ip, arp + arp_sender_ip, ipv4_address_bytes);
  store16(arp + 6, arp_op_reply);
  std::memcpy(arp + arp_target_mac, requester_mac, mac_address_bytes);
  std::memcpy(arp + arp_target_ip, requester_ip, ipv4_address_bytes);
  std::memcpy(arp + arp_sender_mac, port.mac.bytes.data(), mac_address_bytes);
  std::memcpy(arp + arp_sender_ip, target.bytes.data(), ipv4_address_bytes);
  std::memcpy(frame.data + ethernet_destination, requester_mac, mac_address_bytes);
  std::memcpy(frame.data + ethernet_source, port.mac.bytes.data(), mac_address_bytes);
  ++counters.arp_replies;
  return Verdict{Action::reply, DropReason::none, frame.data,
                 static_cast<std::uint32_t>(frame.l3_offset + arp_message_bytes), Verdict::no_backend_index};
}

Verdict handle_icmp(const Snapshot& snapshot, const Port& port, LcoreCounters& counters, const Frame& frame,
                    std::uint8_t* ip, std::uint16_t total_length) {
  if (!owns(snapshot, port, IpAddress::ipv4_from_wire(ip + ipv4_destination))) {
    return drop(counters, frame, DropReason::unknown_destination);
  }
  std::uint8_t* icmp = ip + ipv4_header_bytes;
  const std::size_t icmp_length = total_length - ipv4_header_bytes;
  if (icmp_length < icmp_header_bytes) return drop(counters, frame, DropReason::icmp_truncated);
  if (icmp[0] != icmp_echo_request || icmp[1] != 0) return drop(counters, frame, DropReason::icmp_unhandled);
  if (!checksum_valid(icmp, icmp_length)) return drop(counters, frame, DropReason::icmp_bad_checksum);

  // Echo reply: same identifier, sequence and data; only the type changes, so the ICMP checksum
  // is updated incrementally rather than summed over the payload again.
  icmp[0] = icmp_echo_reply;
  checksum_update16(icmp + icmp_checksum, static_cast<std::uint16_t>(icmp_echo_request << 8),
                    static_cast<std::uint16_t>(icmp_echo_reply << 8));
  std::uint8_t client[ipv4_address_bytes];
  std::memcpy(client, ip + ipv4_source, ipv4_address_bytes);
  std::memcpy(ip + ipv4_source, ip + ipv4_destination, ipv4_address_bytes);
  std::memcpy(ip + ipv4_destination, client, ipv4_address_bytes);
  ip[ipv4_ttl] = reply_ttl;
  store16(ip + ipv4_checksum, 0);
  checksum_store(ip, ipv4_header_bytes, ipv4_checksum);
  std::memcpy(frame.data + ethernet_destination, frame.data + ethernet_source, mac_address_bytes);
  std::memcpy(frame.data + ethernet_source, port.mac.bytes.data(), mac_address_bytes);
  ++counters.echo_replies;
  return Verdict{Action::reply, DropReason::none, frame.data,
                 static_cast<std::uint32_t>(frame.l3_offset + total_length), Verdict::no_backend_index};
}

// ICMP type 3 code 4 back to the client, built in place in front of the offending datagram, which
// it quotes (as much as fits in icmp_error_max_bytes). Source: the VIP the client was talking to.
Verdict reply_fragmentation_needed(const Port& port, LcoreCounters& counters, const Frame& frame, std::uint8_t* ip,
                                   std::uint16_t total_length, std::uint16_t next_hop_mtu) {
  constexpr std::size_t error_headers = ipv4_header_bytes + icmp_header_bytes;
  const std::size_t quoted = std::min<std::size_t>(total_length, icmp_error_max_bytes - error_headers);
  const bool tagged = frame.l3_offset > ethernet_header_bytes;
  const std::uint16_t vlan_tci = tagged ? load16(frame.data + ethernet_type + 2) : 0;
  MacAddress client_mac;
  std::memcpy(client_mac.bytes.data(), frame.data + ethernet_source, mac_address_bytes);
  std::uint8_t client[ipv4_address_bytes];
  std::uint8_t vip[ipv4_address_bytes];
  std::memcpy(client, ip + ipv4_source, ipv4_address_bytes);
  std::memcpy(vip, ip + ipv4_destination, ipv4_address_bytes);

  std::uint8_t* error_ip = ip - error_headers;
  std::uint8_t* start = error_ip - frame.l3_offset;
  write_ethernet(start, client_mac, port.mac, tagged, vlan_tci);
  error_ip[0] = ipv4_version_ihl_no_options;
  error_ip[ipv4_tos] = 0;
  store16(error_ip + ipv4_total_length, static_cast<std::uint16_t>(error_headers + quoted));
  store16(error_ip + ipv4_identification, 0);
  store16(error_ip + ipv4_flags_fragment, 0);
  error_ip[ipv4_ttl] = reply_ttl;
  error_ip[ipv4_protocol] = static_cast<std::uint8_t>(IpProtocol::icmp);
  store16(error_ip + ipv4_checksum, 0);
  std::memcpy(error_ip + ipv4_source, vip, ipv4_address_bytes);
  std::memcpy(error_ip + ipv4_destination, client, ipv4_address_bytes);
  checksum_store(error_ip, ipv4_header_bytes, ipv4_checksum);
  std::uint8_t* icmp = error_ip + ipv4_header_bytes;
  icmp[0] = icmp_destination_unreachable;
  icmp[1] = icmp_fragmentation_needed;
  store16(icmp + icmp_checksum, 0);
  store16(icmp + 4, 0);  // unused
  store16(icmp + icmp_next_hop_mtu, next_hop_mtu);
  checksum_store(icmp, icmp_header_bytes + quoted, icmp_checksum);
  ++counters.frag_needed_sent;
  return Verdict{Action::reply, DropReason::none, start,
                 static_cast<std::uint32_t>(frame.l3_offset + error_headers + quoted), Verdict::no_backend_index};
}

// The backend of a new flow (or of a flow being re-picked): the Maglev entry of its hash.
inline std::uint16_t maglev_pick(const Snapshot& snapshot, const Service& service, std::uint64_t hash) {
  return snapshot.maglev_entries(service)[hash_to_range(hash, service.table_size)];
}

// `peeked` is the flow hash when peek_flow() computed it for this frame already (process_burst).
Verdict handle_load_balanced(const Snapshot& snapshot, const Port& port, LcoreState& lcore, const Frame& frame,
                             std::uint8_t* ip, std::uint16_t total_length, IpProtocol protocol,
                             std::uint64_t now_ms, const FlowPeek& peeked) {
  LcoreCounters& counters = lcore.counters;
  const std::uint8_t* l4 = ip + ipv4_header_bytes;
  const std::size_t l4_length = total_length - ipv4_header_bytes;
  std::uint8_t tcp_flags_byte = 0;
  if (protocol == IpProtocol::tcp) {
    if (l4_length < tcp_min_header_bytes) return drop(counters, frame, DropReason::l4_truncated);
    const std::size_t data_offset = static_cast<std::size_t>(l4[tcp_data_offset] >> 4) * 4;
    if (data_offset < tcp_min_header_bytes || data_offset > l4_length) {
      return drop(counters, frame, DropReason::l4_truncated);
    }
    tcp_flags_byte = l4[tcp_flags];
  } else {
    if (l4_length < udp_header_bytes) return drop(counters, frame, DropReason::l4_truncated);
    const std::uint16_t udp_length_field = load16(l4 + udp_length);
    if (udp_length_field < udp_header_bytes || udp_length_field > l4_length) {
      return drop(counters, frame, DropReason::l4_truncated);
    }
  }

  // The flow's key and its VIP's, compared and hashed from the packet's values (no key is stored
  // on the stack and read back: wide loads of narrow stores wait for store forwarding to fail).
  const std::uint16_t source_port = load16(l4);
  const std::uint16_t destination_port = load16(l4 + 2);
  const FlowKeyWords flow = flow_key_words_ipv4(ip + ipv4_source, ip + ipv4_destination, source_port,
                                                destination_port, protocol);
  const std::uint64_t vip_hash = Snapshot::vip_hash_ipv4(ip + ipv4_destination, destination_port, protocol);
  assert(vip_hash == Snapshot::vip_key_hash(VipKey{IpAddress::ipv4_from_wire(ip + ipv4_destination), protocol,
                                                   destination_port}));
  const Service* service = snapshot.find_service_ipv4(ip + ipv4_destination, destination_port, protocol, vip_hash);
  if (service == nullptr) return drop(counters, frame, DropReason::no_service);
  if (ip[ipv4_ttl] <= 1) return drop(counters, frame, DropReason::ipv4_ttl_expired);

  // Size first: a packet that cannot leave gets its ICMP error and creates no flow state.
  const Port& service_port = snapshot.ports()[snapshot.service_port()];
  const std::size_t overhead = service->mode == ForwardingMode::ipip ? ipip_overhead_bytes : 0;
  const std::uint16_t flags_fragment = load16(ip + ipv4_flags_fragment);
  if (total_length + overhead > service_port.mtu) {
    if (flags_fragment & ipv4_flag_dont_fragment) {
      return reply_fragmentation_needed(port, counters, frame, ip, total_length,
                                        static_cast<std::uint16_t>(service_port.mtu - overhead));
    }
    return drop(counters, frame, DropReason::too_big_no_df);
  }

  // Connection table, else Maglev.
  const std::uint64_t hash = peeked.has_hash ? peeked.hash
                                             : flow_hash_ipv4(ip + ipv4_source, ip + ipv4_destination,
                                                              source_port, destination_port, protocol);
  assert(hash == flow_hash(flow.key()) && "peek_flow and flow_hash_ipv4 hash the key built here");
  const std::span<const Backend> backends = snapshot.backends_of(*service);
  ConnEntry* entry = lcore.flows.find(flow, hash, now_ms);
  int backend_index = -1;
  bool new_flow = false;
  FlowState state = FlowState::udp;
  if (entry != nullptr) {
    bool repick = false;
    if (protocol == IpProtocol::tcp) {
      const TcpTransition transition = existing_tcp_transition(entry->state, tcp_flags_byte);
      state = transition.next;
      repick = transition.new_connection;
    }
    if (!repick) {
      // The remembered index is checked against the address: indexes shift between snapshots.
      // (Compared field by field: a whole IpAddress built from the entry would be read back.)
      backend_index = entry->backend_index;
      if (backend_index >= static_cast<int>(backends.size()) ||
          backends[backend_index].address.family != entry->backend_family ||
          __builtin_memcmp(backends[backend_index].address.bytes.data(), entry->backend_address.data(),
                           ip_address_bytes) != 0) {
        backend_index = snapshot.find_backend(*service, entry->backend());
      }
      // Draining keeps its flows; removed or down backends lose them.
      repick = backend_index < 0 || backends[backend_index].state == BackendState::down;
    }
    if (repick) {
      const std::uint16_t picked = maglev_pick(snapshot, *service, hash);
      if (picked == maglev_no_backend) return drop(counters, frame, DropReason::no_backend);
      backend_index = picked;
      entry->set_backend(backends[picked].address, picked);
      ++counters.flows_repicked;
    } else if (entry->backend_index != backend_index) {
      entry->backend_index = static_cast<std::uint16_t>(backend_index);
    }
    lcore.flows.touch(*entry, state, now_ms);
  } else {
    const std::uint16_t picked = maglev_pick(snapshot, *service, hash);
    if (picked == maglev_no_backend) return drop(counters, frame, DropReason::no_backend);
    backend_index = picked;
    if (protocol == IpProtocol::tcp) state = next_tcp_state(false, FlowState::tcp_syn_seen, tcp_flags_byte);
    entry = lcore.flows.insert(flow, hash, state, now_ms);
    entry->set_backend(backends[picked].address, picked);
    ++counters.new_flows;
    new_flow = true;
  }
  const Backend& backend = backends[backend_index];
  if (!backend.mac_known) return drop(counters, frame, DropReason::no_neighbour);

  // We forward like a router (RFC 2003 section 3.1): the inner TTL goes down by one (it is > 1
  // here). The checksum's update needs neither the old nor the new TTL (wire.hpp), so nothing
  // reads back the byte just stored (a 2-byte load of it would wait for store forwarding to fail).
  ip[ipv4_ttl] = static_cast<std::uint8_t>(ip[ipv4_ttl] - 1);
  checksum_ttl_decremented(ip + ipv4_checksum);

  const bool tagged = service_port.vlan_id != 0;
  const std::size_t ethernet_bytes = ethernet_header_bytes + (tagged ? vlan_tag_bytes : 0);
  std::uint8_t* start = ip - overhead - ethernet_bytes;
  if (service->mode == ForwardingMode::ipip) {
    // The outer header's words, summed as values (RFC 1071) rather than read back from the bytes
    // just written, which would stall on store forwarding; the checksum is the same.
    const std::uint8_t* source = snapshot.outer_source().bytes.data();
    const std::uint8_t* destination = backend.address.bytes.data();
    const std::uint8_t tos = ip[ipv4_tos];
    const auto version_tos = static_cast<std::uint16_t>((ipv4_version_ihl_no_options << 8) | tos);
    const auto outer_length = static_cast<std::uint16_t>(total_length + ipip_overhead_bytes);
    const std::uint16_t identification = load16(ip + ipv4_identification);  // see README: outer ID
    const auto outer_flags = static_cast<std::uint16_t>(flags_fragment & ipv4_flag_dont_fragment);
    const auto ttl_protocol =
        static_cast<std::uint16_t>((snapshot.outer_ttl() << 8) | static_cast<std::uint8_t>(IpProtocol::ipip));
    // The backend's precomputed part (version, TTL, protocol, addresses) plus the packet's words.
    const std::uint32_t sum = backend.ipip_header_sum + tos + outer_length + identification + outer_flags;
    assert(sum == std::uint32_t{version_tos} + outer_length + identification + outer_flags + ttl_protocol +
                      load16(source) + load16(source + 2) + load16(destination) + load16(destination + 2));
    std::uint8_t* outer = ip - ipip_overhead_bytes;
    // Version/TOS (DSCP and ECN copied: RFC 6040 normal mode), total length, identification and
    // flags in one store; TTL/protocol and the checksum in another.
    static_assert(ipv4_total_length == 2 && ipv4_identification == 4 && ipv4_flags_fragment == 6 &&
                  ipv4_ttl == 8 && ipv4_checksum == 10 && ipv4_source == 12);
    store64(outer, (std::uint64_t{version_tos} << 48) | (std::uint64_t{outer_length} << 32) |
                       (std::uint64_t{identification} << 16) | outer_flags);
    store32(outer + ipv4_ttl, (std::uint32_t{ttl_protocol} << 16) | static_cast<std::uint16_t>(~checksum_fold32(sum)));
    std::memcpy(outer + ipv4_source, source, ipv4_address_bytes);
    std::memcpy(outer + ipv4_destination, destination, ipv4_address_bytes);
  }
  write_ethernet(start, backend.mac, service_port.mac, tagged, service_port.vlan_id);
  const auto length = static_cast<std::uint32_t>(ethernet_bytes + overhead + total_length);
  ++counters.forwarded_packets;
  counters.forwarded_bytes += length;
  return Verdict{Action::forward, DropReason::none, start, length,
                 service->first_backend + static_cast<std::uint32_t>(backend_index), new_flow};
}

// process_packet's body; process_burst passes the hash peek_flow() found, process_packet none.
[[gnu::always_inline]] inline Verdict process_frame(const Snapshot& snapshot, LcoreState& lcore,
                                                    std::uint16_t rx_port, std::uint8_t* data, std::uint32_t length,
                                                    std::uint64_t now_ms, const FlowPeek& peeked) {
  LcoreCounters& counters = lcore.counters;
  Frame frame{data, length, ethernet_header_bytes, false};
  if (rx_port >= snapshot.ports().size()) return drop(counters, frame, DropReason::bad_rx_port);
  const Port& port = snapshot.ports()[rx_port];
  if (length < ethernet_header_bytes) return drop(counters, frame, DropReason::frame_too_short);

  // ---- Ethernet and 802.1Q ----
  frame.to_our_mac = mac_equal(data + ethernet_destination, port.mac.bytes.data());
  if (!frame.to_our_mac) {
    static constexpr std::uint8_t broadcast[mac_address_bytes] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (!mac_equal(data + ethernet_destination, broadcast)) {
      return drop(counters, frame, DropReason::not_our_mac);
    }
  }
  std::uint16_t ethertype = load16(data + ethernet_type);
  std::uint16_t vlan_id = 0;
  if (ethertype == ethertype_vlan) {
    if (length < ethernet_header_bytes + vlan_tag_bytes) return drop(counters, frame, DropReason::frame_too_short);
    vlan_id = load16(data + ethernet_type + 2) & vlan_id_mask;  // VID 0: priority tag, untagged
    ethertype = load16(data + ethernet_type + vlan_tag_bytes);
    frame.l3_offset = ethernet_header_bytes + vlan_tag_bytes;
  }
  if (ethertype == ethertype_vlan || ethertype == ethertype_qinq) {
    return drop(counters, frame, DropReason::vlan_stacked);
  }
  if (vlan_id != port.vlan_id) return drop(counters, frame, DropReason::vlan_mismatch);
  if (ethertype == ethertype_arp) return handle_arp(snapshot, port, counters, frame);
  if (ethertype == ethertype_ipv6) return drop(counters, frame, DropReason::ipv6_unsupported);
  if (ethertype != ethertype_ipv4) return drop(counters, frame, DropReason::unknown_ethertype);
  if (!frame.to_our_mac) return drop(counters, frame, DropReason::not_our_mac);  // IP to broadcast MAC

  // ---- IPv4 validation (RFC 791, RFC 1812 section 5.2.2) ----
  std::uint8_t* ip = data + frame.l3_offset;
  const std::size_t available = length - frame.l3_offset;
  if (available < ipv4_header_bytes) return drop(counters, frame, DropReason::ipv4_truncated);
  if ((ip[0] >> 4) != 4) return drop(counters, frame, DropReason::ipv4_bad_version);
  const std::size_t header_length = static_cast<std::size_t>(ip[0] & 0x0f) * 4;
  if (header_length < ipv4_header_bytes) return drop(counters, frame, DropReason::ipv4_bad_ihl);
  const std::uint16_t total_length = load16(ip + ipv4_total_length);
  if (total_length < header_length) return drop(counters, frame, DropReason::ipv4_bad_total_length);
  if (total_length > available) return drop(counters, frame, DropReason::ipv4_truncated);
  if (!(header_length == ipv4_header_bytes ? ipv4_header_checksum_valid(ip) : checksum_valid(ip, header_length))) {
    return drop(counters, frame, DropReason::ipv4_bad_checksum);
  }
  if (header_length != ipv4_header_bytes) return drop(counters, frame, DropReason::ipv4_options);
  const std::uint16_t flags_fragment = load16(ip + ipv4_flags_fragment);
  if (flags_fragment & ipv4_flag_reserved) return drop(counters, frame, DropReason::ipv4_reserved_flag);
  if (flags_fragment & (ipv4_flag_more_fragments | ipv4_fragment_offset_mask)) {
    return drop(counters, frame, DropReason::ipv4_fragment);
  }
  if (is_martian_source(ip + ipv4_source)) return drop(counters, frame, DropReason::ipv4_bad_source);

  switch (static_cast<IpProtocol>(ip[ipv4_protocol])) {
    case IpProtocol::tcp:
    case IpProtocol::udp:
      return handle_load_balanced(snapshot, port, lcore, frame, ip, total_length,
                                  static_cast<IpProtocol>(ip[ipv4_protocol]), now_ms, peeked);
    case IpProtocol::icmp:
      return handle_icmp(snapshot, port, counters, frame, ip, total_length);
    default:
      return drop(counters, frame, DropReason::unsupported_protocol);
  }
}

}  // namespace

Verdict process_packet(const Snapshot& snapshot, LcoreState& lcore, std::uint16_t rx_port, std::uint8_t* data,
                       std::uint32_t length, std::uint64_t now_ms) {
  return process_frame(snapshot, lcore, rx_port, data, length, now_ms, FlowPeek{});
}

void process_burst(const Snapshot& snapshot, LcoreState& lcore, std::uint16_t rx_port, std::uint8_t* const* frames,
                   const std::uint32_t* lengths, std::size_t count, std::uint64_t now_ms, Verdict* verdicts) {
  // In windows of burst_window_frames: first every frame's flow is peeked and its bucket
  // requested, so the buckets' cache misses overlap; then each frame is processed in order, with
  // the entry of the frame entry_prefetch_distance ahead requested (its bucket has arrived by then).
  FlowPeek peeks[burst_window_frames];
  for (std::size_t first = 0; first < count; first += burst_window_frames) {
    const std::size_t window = std::min(burst_window_frames, count - first);
    for (std::size_t index = 0; index < window; ++index) {
      peeks[index] = peek_flow(frames[first + index], lengths[first + index]);
      if (peeks[index].has_hash) lcore.flows.prefetch(peeks[index].hash);
    }
    for (std::size_t index = 0; index < window; ++index) {
      const std::size_t ahead = index + entry_prefetch_distance;
      if (ahead < window && peeks[ahead].has_hash) lcore.flows.prefetch_entry(peeks[ahead].hash, now_ms);
      // Constructed in place (guaranteed copy elision): assigning the returned Verdict instead
      // copies it through the stack with wide loads of narrow stores, which stall.
      ::new (&verdicts[first + index])
          Verdict(process_frame(snapshot, lcore, rx_port, frames[first + index], lengths[first + index], now_ms,
                                peeks[index]));
    }
  }
}

}  // namespace stacknode::dataplane
