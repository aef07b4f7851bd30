// Test helper for dataplane packet tests: builds Ethernet/802.1Q/ARP/IPv4/ICMP/TCP/UDP frames byte
// by byte with their checksums, and checks checksums, with its own plain RFC 1071 code (big-endian
// word sums) so that the library's checksum code is never used to judge itself. Also a frame
// buffer with the headroom the packet path may use, sized exactly so ASan sees any overrun.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace stacknode::dataplane::test {

using Bytes = std::vector<std::uint8_t>;
using Mac = std::array<std::uint8_t, 6>;
using Ip4 = std::array<std::uint8_t, 4>;

inline constexpr std::uint16_t ethertype_ipv4 = 0x0800;
inline constexpr std::uint16_t ethertype_arp = 0x0806;
inline constexpr std::uint16_t ethertype_ipv6 = 0x86dd;
inline constexpr std::uint16_t ethertype_vlan = 0x8100;
inline constexpr std::uint8_t proto_icmp = 1;
inline constexpr std::uint8_t proto_ipip = 4;
inline constexpr std::uint8_t proto_tcp = 6;
inline constexpr std::uint8_t proto_udp = 17;
inline constexpr std::uint8_t flag_fin = 0x01;
inline constexpr std::uint8_t flag_syn = 0x02;
inline constexpr std::uint8_t flag_rst = 0x04;
inline constexpr std::uint8_t flag_psh = 0x08;
inline constexpr std::uint8_t flag_ack = 0x10;

// RFC 1071 checksum of `bytes` (the ones' complement of the ones' complement sum of big-endian
// 16-bit words, an odd last byte padded with zero).
std::uint16_t internet_checksum(const std::uint8_t* bytes, std::size_t size, std::uint32_t initial = 0);
// True when the checksum field inside the bytes makes them sum to all ones.
bool checksum_ok(const std::uint8_t* bytes, std::size_t size);

void put16(Bytes& bytes, std::uint16_t value);
std::uint16_t get16(const std::uint8_t* bytes);
Bytes concat(const Bytes& first, const Bytes& second);

// Ethernet header (with an 802.1Q tag when vlan is set) followed by payload.
Bytes ethernet(const Mac& destination, const Mac& source, std::uint16_t ethertype, const Bytes& payload,
               std::optional<std::uint16_t> vlan = std::nullopt);

struct Ipv4Header {
  Ip4 source{};
  Ip4 destination{};
  std::uint8_t protocol = proto_tcp;
  std::uint8_t ttl = 64;
  std::uint8_t tos = 0;
  std::uint16_t identification = 0x1234;
  bool dont_fragment = true;
  bool more_fragments = false;
  std::uint16_t fragment_offset = 0;  // in 8-byte units
  Bytes options;                      // appended to the 20 bytes; IHL follows
  // Overrides to make broken headers (applied before the checksum unless noted).
  std::optional<std::uint8_t> version_ihl;
  std::optional<std::uint16_t> total_length;
  bool corrupt_checksum = false;      // applied after the checksum
};
Bytes ipv4(const Ipv4Header& header, const Bytes& payload);

// TCP (20-byte header, window 65535) and UDP with correct checksums over the pseudo-header.
Bytes tcp(const Ip4& source, const Ip4& destination, std::uint16_t source_port, std::uint16_t destination_port,
          std::uint8_t flags, const Bytes& payload = {}, std::uint32_t sequence = 1000);
Bytes udp(const Ip4& source, const Ip4& destination, std::uint16_t source_port, std::uint16_t destination_port,
          const Bytes& payload);
Bytes icmp(std::uint8_t type, std::uint8_t code, std::uint16_t identifier, std::uint16_t sequence,
           const Bytes& payload);
Bytes arp(std::uint16_t operation, const Mac& sender_mac, const Ip4& sender_ip, const Mac& target_mac,
          const Ip4& target_ip);
Bytes payload_of(std::size_t size);  // 0, 1, 2, ... 255, 0, ...

// A received frame in a buffer with exactly `headroom` bytes before it and none after.
class FrameBuffer {
 public:
  FrameBuffer(const Bytes& frame, std::size_t headroom);
  std::uint8_t* data() { return buffer_.data() + headroom_; }
  std::uint32_t length() const { return static_cast<std::uint32_t>(buffer_.size() - headroom_); }
  const std::uint8_t* begin() const { return buffer_.data(); }
  const std::uint8_t* end() const { return buffer_.data() + buffer_.size(); }

 private:
  std::vector<std::uint8_t> buffer_;
  std::size_t headroom_;
};

std::string hex(const std::uint8_t* bytes, std::size_t size);
// The first differing offset of two byte strings, described, or "" when equal.
std::string describe_difference(const Bytes& expected, const std::uint8_t* actual, std::size_t actual_size);

}  // namespace stacknode::dataplane::test
