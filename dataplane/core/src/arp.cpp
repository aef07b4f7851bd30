// ARP frames written and read by the control side (arp.hpp).
#include "stacknode/dataplane/arp.hpp"

#include <cstring>

#include "stacknode/dataplane/packet.hpp"
#include "wire.hpp"

namespace stacknode::dataplane {
namespace {

using namespace wire;

std::size_t write_arp(std::uint8_t* out, const Port& port, const IpAddress& sender,
                      const IpAddress& target) {
  std::memset(out, 0, arp_frame_bytes);
  static constexpr std::uint8_t broadcast[mac_address_bytes] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  std::memcpy(out + ethernet_destination, broadcast, mac_address_bytes);
  std::memcpy(out + ethernet_source, port.mac.bytes.data(), mac_address_bytes);
  std::size_t at = ethernet_type;
  if (port.vlan_id != 0) {
    store16(out + at, ethertype_vlan);
    store16(out + at + 2, port.vlan_id);
    at += vlan_tag_bytes;
  }
  store16(out + at, ethertype_arp);
  std::uint8_t* arp = out + at + 2;
  store16(arp, arp_hardware_ethernet);
  store16(arp + 2, ethertype_ipv4);
  arp[4] = arp_hardware_length;
  arp[5] = arp_protocol_length;
  store16(arp + 6, arp_op_request);
  std::memcpy(arp + arp_sender_mac, port.mac.bytes.data(), mac_address_bytes);
  std::memcpy(arp + arp_sender_ip, sender.bytes.data(), ipv4_address_bytes);
  std::memcpy(arp + arp_target_ip, target.bytes.data(),
              ipv4_address_bytes);  // target MAC stays zero
  return arp_frame_bytes;           // a tagged ARP message (46 bytes) is padded to the same minimum
}

}  // namespace

std::size_t write_arp_request(std::uint8_t* out, const Port& port, const IpAddress& sender,
                              const IpAddress& target) {
  return write_arp(out, port, sender, target);
}

std::size_t write_gratuitous_arp(std::uint8_t* out, const Port& port, const IpAddress& address) {
  return write_arp(out, port, address, address);
}

std::optional<ArpSender> read_arp_reply(const std::uint8_t* frame, std::size_t length) {
  std::size_t at = ethernet_type;
  if (length < ethernet_header_bytes) return std::nullopt;
  if (load16(frame + at) == ethertype_vlan) at += vlan_tag_bytes;
  if (length < at + 2 + arp_message_bytes || load16(frame + at) != ethertype_arp)
    return std::nullopt;
  const std::uint8_t* arp = frame + at + 2;
  if (load16(arp) != arp_hardware_ethernet || load16(arp + 2) != ethertype_ipv4 ||
      arp[4] != arp_hardware_length || arp[5] != arp_protocol_length ||
      load16(arp + 6) != arp_op_reply) {
    return std::nullopt;
  }
  ArpSender sender;
  std::memcpy(sender.mac.bytes.data(), arp + arp_sender_mac, mac_address_bytes);
  sender.address = IpAddress::ipv4_from_wire(arp + arp_sender_ip);
  if (sender.mac.is_zero() || sender.mac.is_multicast() ||
      sender.address == IpAddress::ipv4(0, 0, 0, 0)) {
    return std::nullopt;
  }
  return sender;
}

}  // namespace stacknode::dataplane
