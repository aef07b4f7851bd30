// ARP frames the dataplane originates or reads on the control side (not the fast path): requests
// that resolve backends and the gateway on the service port, gratuitous ARP announcing a VIP on
// the front ports when this node takes it, and reading the sender of an ARP reply that the
// packet path punted to the control thread. Pure code over byte buffers, so unit tests check the
// exact bytes; the DPDK shell copies them into mbufs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "stacknode/dataplane/addresses.hpp"
#include "stacknode/dataplane/snapshot.hpp"

namespace stacknode::dataplane {

// Every frame written here: an Ethernet (and 802.1Q) header and a 28-byte ARP message, padded
// with zeros to the 60-byte Ethernet minimum (64 with the FCS the NIC adds), tagged or not.
inline constexpr std::size_t arp_frame_bytes = 60;

// A broadcast ARP request from `port` (its MAC and VLAN) asking who has `target`, with `sender`
// (one of the port's addresses) as the sender address. Writes arp_frame_bytes bytes
// into `out`; returns the frame length.
std::size_t write_arp_request(std::uint8_t* out, const Port& port, const IpAddress& sender,
                              const IpAddress& target);

// A gratuitous ARP request for `address` (sender and target address both `address`, target MAC
// zero, broadcast), the form RFC 5227 section 3 recommends for announcing: neighbours that cache
// `address` move it to this port's MAC.
std::size_t write_gratuitous_arp(std::uint8_t* out, const Port& port, const IpAddress& address);

struct ArpSender {
  IpAddress address;
  MacAddress mac;
};

// The sender of a well-formed Ethernet/IPv4 ARP reply (untagged or with one 802.1Q tag), if its
// MAC is a usable unicast address and its IPv4 address is not 0.0.0.0; else nothing.
std::optional<ArpSender> read_arp_reply(const std::uint8_t* frame, std::size_t length);

}  // namespace stacknode::dataplane
