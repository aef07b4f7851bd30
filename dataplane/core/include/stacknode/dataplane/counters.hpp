// Per-lcore counters of the packet path: what was forwarded and answered, and every drop by its
// reason. Each lcore owns one LcoreCounters (cache-aligned, so lcores never share a line) and
// increments it with plain adds; the control side sums them across lcores when it reads, accepting
// a slightly stale view. Reason names are stable: they become Prometheus label values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "stacknode/dataplane/conn_table.hpp"

namespace stacknode::dataplane {

// Why a frame was dropped. Append only; the names in drop_reason_name() are part of the metrics.
enum class DropReason : std::uint8_t {
  none,                  // not dropped (the value carried by forward and reply verdicts)
  bad_rx_port,           // the shell passed a port the snapshot does not have
  frame_too_short,       // shorter than an Ethernet (or 802.1Q) header
  not_our_mac,           // unicast to another MAC, or multicast other than broadcast
  vlan_mismatch,         // tag absent/present/different from the port's vlan_id
  vlan_stacked,          // QinQ or a second tag: not supported
  unknown_ethertype,
  ipv6_unsupported,      // IPv6 comes later (issue 3 covers IPv4)
  arp_malformed,         // not Ethernet/IPv4 ARP, or truncated
  arp_not_request,       // replies and other operations are ignored here
  arp_not_owned,         // a request for an address this node does not own
  ipv4_truncated,        // frame shorter than the IPv4 header or its total length
  ipv4_bad_version,
  ipv4_bad_ihl,          // header length below 20 bytes
  ipv4_bad_total_length, // total length below the header length
  ipv4_bad_checksum,
  ipv4_options,          // header longer than 20 bytes: options are not forwarded (README)
  ipv4_fragment,         // MF set or a non-zero offset: fragments are not load balanced
  ipv4_reserved_flag,    // the reserved ("evil") flag bit set
  ipv4_bad_source,       // source 0/8, 127/8, multicast, class E or broadcast
  ipv4_ttl_expired,      // TTL <= 1 on a packet that would be forwarded
  icmp_truncated,
  icmp_bad_checksum,
  icmp_unhandled,        // ICMP to an owned address other than an echo request
  unknown_destination,   // ICMP or other traffic to an address this node does not own
  unsupported_protocol,  // neither ICMP, TCP nor UDP
  l4_truncated,          // TCP/UDP header missing or its length field impossible
  no_service,            // TCP/UDP to an (address, protocol, port) with no service
  no_backend,            // the service has no active backend
  no_neighbour,          // the picked backend's MAC is not resolved yet
  too_big_no_df,         // would exceed the service port MTU, DF clear: we do not fragment
};
inline constexpr std::size_t drop_reason_count = static_cast<std::size_t>(DropReason::too_big_no_df) + 1;
std::string_view drop_reason_name(DropReason reason);

struct alignas(cache_line_bytes) LcoreCounters {
  std::uint64_t forwarded_packets = 0;  // sent out of the service port (IPIP or L2 DSR)
  std::uint64_t forwarded_bytes = 0;    // frame bytes as sent
  std::uint64_t arp_replies = 0;
  std::uint64_t arp_punted = 0;  // ARP replies on the service port handed to the control thread
  std::uint64_t echo_replies = 0;
  std::uint64_t frag_needed_sent = 0;   // ICMP "fragmentation needed" answered to a client
  std::uint64_t new_flows = 0;          // flows that got a connection-table entry
  std::uint64_t flows_repicked = 0;     // known flows whose backend was removed/down, or reused tuples
  std::array<std::uint64_t, drop_reason_count> drops{};

  std::uint64_t dropped(DropReason reason) const { return drops[static_cast<std::size_t>(reason)]; }
  std::uint64_t total_drops() const {
    std::uint64_t total = 0;
    for (std::uint64_t count : drops) total += count;
    return total;
  }
};

}  // namespace stacknode::dataplane
