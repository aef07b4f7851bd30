// Address and key types of the dataplane: IP addresses (IPv4 now, IPv6-sized storage so the types
// do not change when IPv6 arrives), MAC addresses, the service key (VIP, protocol, port) and the
// 5-tuple flow key. Plain values with a canonical layout: no padding is left uninitialised, so
// keys can be compared and hashed byte for byte. Parsing and formatting helpers are for the
// control side and tests; the fast path never formats.
#pragma once

#include <array>
#include <bit>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace stacknode::dataplane {

enum class AddressFamily : std::uint8_t { none = 0, ipv4 = 4, ipv6 = 6 };

inline constexpr std::size_t ip_address_bytes = 16;  // room for IPv6; IPv4 uses the first four
inline constexpr std::size_t ipv4_address_bytes = 4;
inline constexpr std::size_t mac_address_bytes = 6;

// An IPv4 or IPv6 address in network byte order. IPv4 fills bytes[0..3] and leaves the rest zero,
// so two equal addresses are equal byte for byte. Ordered by family, then bytes: this order is the
// canonical order of backends (see maglev.hpp) and must never change.
struct IpAddress {
  AddressFamily family = AddressFamily::none;
  std::array<std::uint8_t, ip_address_bytes> bytes{};

  static constexpr IpAddress ipv4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    IpAddress address;
    address.family = AddressFamily::ipv4;
    address.bytes[0] = a;
    address.bytes[1] = b;
    address.bytes[2] = c;
    address.bytes[3] = d;
    return address;
  }
  // From four bytes in network order (as found in a packet).
  static IpAddress ipv4_from_wire(const std::uint8_t* wire) {
    IpAddress address;
    address.family = AddressFamily::ipv4;
    std::memcpy(address.bytes.data(), wire, ipv4_address_bytes);
    return address;
  }
  bool is_ipv4() const { return family == AddressFamily::ipv4; }
  // The IPv4 address as a host-order number (only meaningful for IPv4).
  std::uint32_t ipv4_value() const {
    return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
           (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
  }

  friend constexpr auto operator<=>(const IpAddress&, const IpAddress&) = default;
  // Equality as the defaulted one would be, written out: GCC 12 turns the defaulted std::array
  // comparison into a call to libc memcmp, which cost the packet path about 5% (VIP and backend
  // lookups); __builtin_memcmp of a constant 16 bytes compared with 0 is inlined.
  friend constexpr bool operator==(const IpAddress& left, const IpAddress& right) {
    if (std::is_constant_evaluated()) return left.family == right.family && left.bytes == right.bytes;
    return left.family == right.family && __builtin_memcmp(left.bytes.data(), right.bytes.data(), ip_address_bytes) == 0;
  }
};

struct MacAddress {
  std::array<std::uint8_t, mac_address_bytes> bytes{};

  bool is_zero() const { return *this == MacAddress{}; }
  bool is_multicast() const { return (bytes[0] & 0x01) != 0; }  // includes broadcast
  bool is_broadcast() const {
    for (std::uint8_t byte : bytes) {
      if (byte != 0xff) return false;
    }
    return true;
  }
  friend constexpr auto operator<=>(const MacAddress&, const MacAddress&) = default;
};

enum class IpProtocol : std::uint8_t { icmp = 1, ipip = 4, tcp = 6, udp = 17 };

// A service is reached at (VIP, protocol, port). Protocol is TCP or UDP.
struct VipKey {
  IpAddress address;
  IpProtocol protocol = IpProtocol::tcp;
  std::uint16_t port = 0;  // host byte order

  friend constexpr auto operator<=>(const VipKey&, const VipKey&) = default;
};

// The 5-tuple of one flow as the client sent it. 40 bytes, every byte defined (the constructor
// zeroes padding), ports in host byte order. Two packets of one flow give equal keys.
struct FlowKey {
  std::array<std::uint8_t, ip_address_bytes> source{};
  std::array<std::uint8_t, ip_address_bytes> destination{};
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  IpProtocol protocol = IpProtocol::tcp;
  AddressFamily family = AddressFamily::none;
  std::uint16_t reserved = 0;  // always zero; keeps the size a multiple of eight

  friend bool operator==(const FlowKey& left, const FlowKey& right) {
    return std::memcmp(&left, &right, sizeof(FlowKey)) == 0;
  }
};
static_assert(sizeof(FlowKey) == 40, "FlowKey layout is part of the connection table entry");
static_assert(offsetof(FlowKey, destination) == 16 && offsetof(FlowKey, source_port) == 32 &&
              offsetof(FlowKey, destination_port) == 34 && offsetof(FlowKey, protocol) == 36 &&
              offsetof(FlowKey, family) == 37 && offsetof(FlowKey, reserved) == 38,
              "flow_key_words_ipv4 builds these bytes");

// A FlowKey's bytes as five native 8-byte words: what the connection table compares. The packet
// path builds them in registers from the packet (flow_key_words_ipv4), so a lookup compares values
// with the stored key; a FlowKey stored on the stack and read back at once in wide loads waits for
// store forwarding to fail on each of them.
struct FlowKeyWords {
  static constexpr std::size_t count = sizeof(FlowKey) / sizeof(std::uint64_t);
  std::array<std::uint64_t, count> word{};

  static FlowKeyWords of(const FlowKey& key) {
    return FlowKeyWords{std::bit_cast<std::array<std::uint64_t, count>>(key)};
  }
  FlowKey key() const {
    return std::bit_cast<FlowKey>(word);
  }
  // True when `stored` has exactly these bytes.
  // (Written out word by word: GCC 12 at -O2 keeps a loop here a loop.)
  bool matches(const FlowKey& stored) const {
    const auto value = std::bit_cast<std::array<std::uint64_t, count>>(stored);
    static_assert(count == 5);
    return ((value[0] ^ word[0]) | (value[1] ^ word[1]) | (value[2] ^ word[2]) | (value[3] ^ word[3]) |
            (value[4] ^ word[4])) == 0;
  }
};

// The words of the IPv4 FlowKey of these fields (addresses as four bytes in network order, ports
// in host order), equal to FlowKeyWords::of() of that key (the unit tests check it).
inline FlowKeyWords flow_key_words_ipv4(const std::uint8_t* source, const std::uint8_t* destination,
                                        std::uint16_t source_port, std::uint16_t destination_port,
                                        IpProtocol protocol) {
  if constexpr (std::endian::native == std::endian::little) {
    std::uint32_t source_value, destination_value;
    std::memcpy(&source_value, source, sizeof source_value);
    std::memcpy(&destination_value, destination, sizeof destination_value);
    FlowKeyWords words;  // an IPv4 address's bytes 4..15 are zero: words 1 and 3 stay zero
    words.word[0] = source_value;
    words.word[2] = destination_value;
    words.word[4] = std::uint64_t{source_port} | (std::uint64_t{destination_port} << 16) |
                    (std::uint64_t{static_cast<std::uint8_t>(protocol)} << 32) |
                    (std::uint64_t{static_cast<std::uint8_t>(AddressFamily::ipv4)} << 40);
    return words;
  } else {
    FlowKey key;
    key.family = AddressFamily::ipv4;
    key.protocol = protocol;
    std::memcpy(key.source.data(), source, ipv4_address_bytes);
    std::memcpy(key.destination.data(), destination, ipv4_address_bytes);
    key.source_port = source_port;
    key.destination_port = destination_port;
    return FlowKeyWords::of(key);
  }
}

// ---- Control-side helpers (allocate; never called on the fast path) ----

// "198.18.0.100" -> IPv4 address; anything else (including IPv6 text, for now) -> nullopt.
std::optional<IpAddress> parse_ip_address(std::string_view text);
// "02:00:00:00:00:01" -> MAC; case-insensitive, exactly six two-digit groups.
std::optional<MacAddress> parse_mac_address(std::string_view text);
std::string to_string(const IpAddress& address);
std::string to_string(const MacAddress& address);
std::string_view to_string(IpProtocol protocol);
std::string to_string(const VipKey& key);  // "198.18.0.100 tcp 80"

}  // namespace stacknode::dataplane
