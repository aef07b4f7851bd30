// Stable names of the drop reasons (counters.hpp): the label values of the dataplane's drop metric.
#include "stacknode/dataplane/counters.hpp"

namespace stacknode::dataplane {

std::string_view drop_reason_name(DropReason reason) {
  switch (reason) {
    case DropReason::none: return "none";
    case DropReason::bad_rx_port: return "bad_rx_port";
    case DropReason::frame_too_short: return "frame_too_short";
    case DropReason::not_our_mac: return "not_our_mac";
    case DropReason::vlan_mismatch: return "vlan_mismatch";
    case DropReason::vlan_stacked: return "vlan_stacked";
    case DropReason::unknown_ethertype: return "unknown_ethertype";
    case DropReason::ipv6_unsupported: return "ipv6_unsupported";
    case DropReason::arp_malformed: return "arp_malformed";
    case DropReason::arp_not_request: return "arp_not_request";
    case DropReason::arp_not_owned: return "arp_not_owned";
    case DropReason::ipv4_truncated: return "ipv4_truncated";
    case DropReason::ipv4_bad_version: return "ipv4_bad_version";
    case DropReason::ipv4_bad_ihl: return "ipv4_bad_ihl";
    case DropReason::ipv4_bad_total_length: return "ipv4_bad_total_length";
    case DropReason::ipv4_bad_checksum: return "ipv4_bad_checksum";
    case DropReason::ipv4_options: return "ipv4_options";
    case DropReason::ipv4_fragment: return "ipv4_fragment";
    case DropReason::ipv4_reserved_flag: return "ipv4_reserved_flag";
    case DropReason::ipv4_bad_source: return "ipv4_bad_source";
    case DropReason::ipv4_ttl_expired: return "ipv4_ttl_expired";
    case DropReason::icmp_truncated: return "icmp_truncated";
    case DropReason::icmp_bad_checksum: return "icmp_bad_checksum";
    case DropReason::icmp_unhandled: return "icmp_unhandled";
    case DropReason::unknown_destination: return "unknown_destination";
    case DropReason::unsupported_protocol: return "unsupported_protocol";
    case DropReason::l4_truncated: return "l4_truncated";
    case DropReason::no_service: return "no_service";
    case DropReason::no_backend: return "no_backend";
    case DropReason::no_neighbour: return "no_neighbour";
    case DropReason::too_big_no_df: return "too_big_no_df";
  }
  return "unknown";
}

}  // namespace stacknode::dataplane
