// Byte-level helpers of the packet path (private to the library): big-endian loads and stores,
// the Internet checksum (RFC 1071) and its incremental update (RFC 1624), and the header field
// offsets and constants used by packet.cpp. All loads go through memcpy or single bytes, so
// unaligned frames are fine and the code has no undefined behaviour on any alignment.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace stacknode::dataplane::wire {

inline constexpr std::uint16_t ethertype_ipv4 = 0x0800;
inline constexpr std::uint16_t ethertype_arp = 0x0806;
inline constexpr std::uint16_t ethertype_vlan = 0x8100;
inline constexpr std::uint16_t ethertype_qinq = 0x88a8;
inline constexpr std::uint16_t ethertype_ipv6 = 0x86dd;
inline constexpr std::uint16_t vlan_id_mask = 0x0fff;

inline constexpr std::size_t ethernet_destination = 0;
inline constexpr std::size_t ethernet_source = 6;
inline constexpr std::size_t ethernet_type = 12;

// ARP for IPv4 over Ethernet (RFC 826).
inline constexpr std::size_t arp_message_bytes = 28;
inline constexpr std::uint16_t arp_hardware_ethernet = 1;
inline constexpr std::uint8_t arp_hardware_length = 6;
inline constexpr std::uint8_t arp_protocol_length = 4;
inline constexpr std::uint16_t arp_op_request = 1;
inline constexpr std::uint16_t arp_op_reply = 2;
inline constexpr std::size_t arp_sender_mac = 8;
inline constexpr std::size_t arp_sender_ip = 14;
inline constexpr std::size_t arp_target_mac = 18;
inline constexpr std::size_t arp_target_ip = 24;

// IPv4 header (RFC 791).
inline constexpr std::uint8_t ipv4_version_ihl_no_options = 0x45;
inline constexpr std::size_t ipv4_tos = 1;
inline constexpr std::size_t ipv4_total_length = 2;
inline constexpr std::size_t ipv4_identification = 4;
inline constexpr std::size_t ipv4_flags_fragment = 6;
inline constexpr std::size_t ipv4_ttl = 8;
inline constexpr std::size_t ipv4_protocol = 9;
inline constexpr std::size_t ipv4_checksum = 10;
inline constexpr std::size_t ipv4_source = 12;
inline constexpr std::size_t ipv4_destination = 16;
inline constexpr std::uint16_t ipv4_flag_reserved = 0x8000;
inline constexpr std::uint16_t ipv4_flag_dont_fragment = 0x4000;
inline constexpr std::uint16_t ipv4_flag_more_fragments = 0x2000;
inline constexpr std::uint16_t ipv4_fragment_offset_mask = 0x1fff;

// ICMP (RFC 792) and the PMTU field of RFC 1191.
inline constexpr std::uint8_t icmp_echo_reply = 0;
inline constexpr std::uint8_t icmp_destination_unreachable = 3;
inline constexpr std::uint8_t icmp_fragmentation_needed = 4;  // code of type 3
inline constexpr std::uint8_t icmp_echo_request = 8;
inline constexpr std::size_t icmp_checksum = 2;
inline constexpr std::size_t icmp_next_hop_mtu = 6;

inline constexpr std::size_t tcp_min_header_bytes = 20;
inline constexpr std::size_t tcp_flags = 13;
inline constexpr std::size_t tcp_data_offset = 12;
inline constexpr std::size_t udp_header_bytes = 8;
inline constexpr std::size_t udp_length = 4;

// Big-endian 16-bit loads and stores: one 2-byte access and a byte swap on little-endian hosts.
// (GCC 12 merges the byte-by-byte load into that, but not the byte-by-byte store: two shifts and
// two stores each, 24 instructions per forwarded packet.)
inline std::uint16_t load16(const std::uint8_t* bytes) {
  std::uint16_t value;
  std::memcpy(&value, bytes, sizeof value);
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap16(value);
  return value;
}
inline void store16(std::uint8_t* bytes, std::uint16_t value) {
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap16(value);
  std::memcpy(bytes, &value, sizeof value);
}
inline void store32(std::uint8_t* bytes, std::uint32_t value) {
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap32(value);
  std::memcpy(bytes, &value, sizeof value);
}
// The same for 8 bytes: writes a header's fields composed as one big-endian number in one store.
inline void store64(std::uint8_t* bytes, std::uint64_t value) {
  if constexpr (std::endian::native == std::endian::little) value = __builtin_bswap64(value);
  std::memcpy(bytes, &value, sizeof value);
}

// Ones' complement sum of `size` bytes in the host's native 16-bit order, not yet folded. The sum
// is byte-order independent (RFC 1071 section 2(B)): folding and storing it back with memcpy gives
// the right bytes on either endianness, and we avoid a swap per word.
inline std::uint64_t checksum_accumulate(const std::uint8_t* bytes, std::size_t size, std::uint64_t sum = 0) {
  while (size >= 4) {
    std::uint32_t word;
    std::memcpy(&word, bytes, sizeof word);
    sum += word;
    bytes += 4;
    size -= 4;
  }
  if (size >= 2) {
    std::uint16_t half;
    std::memcpy(&half, bytes, sizeof half);
    sum += half;
    bytes += 2;
    size -= 2;
  }
  if (size == 1) {
    std::uint8_t last[2] = {bytes[0], 0};  // odd length: pad with a zero byte
    std::uint16_t half;
    std::memcpy(&half, last, sizeof half);
    sum += half;
  }
  return sum;
}

inline std::uint16_t checksum_fold(std::uint64_t sum) {
  sum = (sum & 0xffffffff) + (sum >> 32);
  sum = (sum & 0xffffffff) + (sum >> 32);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

// checksum_fold of a sum known to fit in 32 bits (a few 16-bit words): two folds fewer.
inline std::uint16_t checksum_fold32(std::uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

// True when the bytes, checksum field included, sum to all ones: the check of a received header.
inline bool checksum_valid(const std::uint8_t* bytes, std::size_t size) {
  return checksum_fold(checksum_accumulate(bytes, size)) == 0xffff;
}

// checksum_valid(header, ipv4_header_bytes) for the usual option-less header: five 32-bit words
// summed straight. (GCC 12 keeps checksum_accumulate's loop a loop even for a constant 20 bytes.)
inline bool ipv4_header_checksum_valid(const std::uint8_t* header) {
  std::uint32_t words[5];
  static_assert(sizeof words == 20, "an IPv4 header without options");
  std::memcpy(words, header, sizeof words);
  return checksum_fold(std::uint64_t{words[0]} + words[1] + words[2] + words[3] + words[4]) == 0xffff;
}

// The sum (RFC 1071, not folded) of the IPIP outer header's words that depend only on the snapshot
// and the backend: version and IHL, TTL and protocol, source and destination. The packet path adds
// the words it takes from the packet (TOS, length, identification, flags), so each backend's part
// is summed once when the snapshot is built. Values are 16-bit words in network order, as load16
// reads them.
inline std::uint32_t ipip_fixed_header_sum(const std::uint8_t* source, const std::uint8_t* destination,
                                           std::uint8_t ttl, std::uint8_t protocol) {
  return (std::uint32_t{ipv4_version_ihl_no_options} << 8) + ((std::uint32_t{ttl} << 8) | protocol) +
         load16(source) + load16(source + 2) + load16(destination) + load16(destination + 2);
}

// True when the six bytes at `left` and `right` are the same MAC address: one 4-byte and one
// 2-byte comparison (memcmp of six bytes compiles to more).
inline bool mac_equal(const std::uint8_t* left, const std::uint8_t* right) {
  std::uint32_t left_head, right_head;
  std::uint16_t left_tail, right_tail;
  std::memcpy(&left_head, left, sizeof left_head);
  std::memcpy(&right_head, right, sizeof right_head);
  std::memcpy(&left_tail, left + 4, sizeof left_tail);
  std::memcpy(&right_tail, right + 4, sizeof right_tail);
  return ((left_head ^ right_head) | static_cast<std::uint32_t>(left_tail ^ right_tail)) == 0;
}

// Computes and stores the checksum of `size` bytes whose checksum field (at `field`) is zero.
inline void checksum_store(std::uint8_t* bytes, std::size_t size, std::size_t field) {
  const std::uint16_t checksum = static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(bytes, size)));
  std::memcpy(bytes + field, &checksum, sizeof checksum);
}

// RFC 1624 equation 3: the checksum at `field` after one 16-bit word (big-endian values) changed.
inline void checksum_update16(std::uint8_t* field, std::uint16_t old_word, std::uint16_t new_word) {
  std::uint32_t sum = static_cast<std::uint16_t>(~load16(field));
  sum += static_cast<std::uint16_t>(~old_word);
  sum += new_word;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  store16(field, static_cast<std::uint16_t>(~sum));
}

// checksum_update16 for a TTL decremented by one (the TTL/protocol word goes down by 0x100; the
// TTL was at least 1): ~m + m' is then the constant 0xfeff, so nothing needs the old word.
inline void checksum_ttl_decremented(std::uint8_t* field) {
  constexpr std::uint32_t old_word_complement_plus_new = 0xfeff;
  std::uint32_t sum = static_cast<std::uint16_t>(~load16(field)) + old_word_complement_plus_new;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  store16(field, static_cast<std::uint16_t>(~sum));
}

}  // namespace stacknode::dataplane::wire
