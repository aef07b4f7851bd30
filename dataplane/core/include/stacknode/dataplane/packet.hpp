// The packet-processing entry point of the dataplane: one received Ethernet frame in, one verdict
// out. Works on the frame's bytes in place (zero copies): the DPDK shell passes an rte_mbuf's data
// pointer and length and applies the verdict's new start and length with rte_pktmbuf_prepend/adj.
// process_burst() does the same for a received burst, prefetching connection-table lines ahead.
//
// What a frame becomes:
//  - ARP request for an owned VIP (on a front port) or one of the receiving port's addresses ->
//    ARP reply, out of the receiving port. ARP reply on the service port -> punted to the control
//    thread, which resolves backends and the gateway from it.
//  - ICMP echo request to an owned VIP or one of the receiving port's addresses -> echo reply.
//  - TCP/UDP to a service -> connection table, else Maglev pick -> IPIP or L2 DSR frame out of the
//    service port; or, when it would exceed the service port's MTU with DF set, an ICMP
//    "fragmentation needed" (type 3 code 4) to the client out of the receiving port.
//  - Anything else -> dropped, counted by DropReason.
// No exceptions, no allocation, no logging, no virtual calls: counters are the only trace.
#pragma once

#include <cstddef>
#include <cstdint>

#include "stacknode/dataplane/conn_table.hpp"
#include "stacknode/dataplane/counters.hpp"
#include "stacknode/dataplane/snapshot.hpp"

namespace stacknode::dataplane {

inline constexpr std::size_t ethernet_header_bytes = 14;
inline constexpr std::size_t vlan_tag_bytes = 4;
inline constexpr std::size_t ipv4_header_bytes = 20;     // without options
inline constexpr std::size_t ipv6_header_bytes = 40;     // for when IPv6 encapsulation arrives
inline constexpr std::size_t icmp_header_bytes = 8;
// The caller guarantees at least this many writable bytes before `data` (an rte_mbuf has
// RTE_PKTMBUF_HEADROOM, 128 by default). Encapsulation grows the frame at the front by up to an
// outer IPv6 header plus a VLAN tag; an ICMP error needs an IPv4 + ICMP header plus a tag.
inline constexpr std::size_t encap_headroom_bytes = 64;
static_assert(encap_headroom_bytes >= vlan_tag_bytes + ipv6_header_bytes);
static_assert(encap_headroom_bytes >= vlan_tag_bytes + ipv4_header_bytes + icmp_header_bytes);
// ICMP errors quote as much of the offending datagram as fits in a 576-byte reply (RFC 1812
// section 4.3.2.3).
inline constexpr std::size_t icmp_error_max_bytes = 576;

enum class Action : std::uint8_t {
  drop,          // free the mbuf; drop_reason says why (already counted)
  forward,       // transmit out of the snapshot's service port
  reply,         // transmit out of the port it arrived on
  punt,          // hand the frame, unchanged, to the control thread (ARP replies on the service port)
};

struct Verdict {
  Action action = Action::drop;
  DropReason drop_reason = DropReason::none;
  std::uint8_t* data = nullptr;  // the frame to send: may start before the input (headroom used)
  std::uint32_t length = 0;      // its length in bytes
  std::uint32_t backend = no_backend_index;  // index into Snapshot::backends() when forwarded
  bool new_flow = false;  // forwarded as the first packet of a flow (counted per backend by the shell)

  static constexpr std::uint32_t no_backend_index = 0xffffffff;
};

// Everything one lcore owns. Cache-aligned so that lcores' state never shares a line; the shell
// keeps one per lcore in an array indexed by lcore id.
struct alignas(cache_line_bytes) LcoreState {
  explicit LcoreState(const ConnTableConfig& config) : flows(config) {}
  LcoreState(const ConnTableConfig& config, void* memory, std::size_t memory_bytes)
      : flows(config, memory, memory_bytes) {}
  ConnTable flows;
  LcoreCounters counters;
};

// Processes one frame received on `rx_port` (an index into snapshot.ports()). `data` points at the
// Ethernet header with encap_headroom_bytes writable before it; the frame is modified in place.
// `now_ms` is a monotonic millisecond clock (the shell derives it from the TSC once per burst).
Verdict process_packet(const Snapshot& snapshot, LcoreState& lcore, std::uint16_t rx_port,
                       std::uint8_t* data, std::uint32_t length, std::uint64_t now_ms);

// process_packet for each of `count` frames received on `rx_port`, in order: verdicts[i] is what
// process_packet(snapshot, lcore, rx_port, frames[i], lengths[i], now_ms) would have returned,
// frame i and every counter end the same, byte for byte. Faster on a burst: each frame's flow is
// hashed before the first is processed and its connection-table bucket and entry prefetched, so
// the cache misses of a burst overlap instead of coming one after another. Frames (with their
// encap_headroom_bytes) must not overlap one another, as separate mbufs never do.
void process_burst(const Snapshot& snapshot, LcoreState& lcore, std::uint16_t rx_port,
                   std::uint8_t* const* frames, const std::uint32_t* lengths, std::size_t count,
                   std::uint64_t now_ms, Verdict* verdicts);

}  // namespace stacknode::dataplane
