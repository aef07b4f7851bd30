// Parsing and formatting of addresses and keys for the control side and tests (addresses.hpp).
#include "stacknode/dataplane/addresses.hpp"

#include <cstdio>

namespace stacknode::dataplane {

namespace {

constexpr int max_octet = 255;
constexpr std::size_t max_octet_digits = 3;
constexpr std::size_t ipv4_octets = 4;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<IpAddress> parse_ip_address(std::string_view text) {
  IpAddress address;
  address.family = AddressFamily::ipv4;
  std::size_t position = 0;
  for (std::size_t octet = 0; octet < ipv4_octets; ++octet) {
    if (octet > 0) {
      if (position >= text.size() || text[position] != '.') return std::nullopt;
      ++position;
    }
    const std::size_t start = position;
    int value = 0;
    while (position < text.size() && text[position] >= '0' && text[position] <= '9') {
      value = value * 10 + (text[position] - '0');
      ++position;
      if (position - start > max_octet_digits) return std::nullopt;
    }
    const std::size_t digits = position - start;
    // No empty octets, no leading zeros (some parsers read them as octal).
    if (digits == 0 || (digits > 1 && text[start] == '0') || value > max_octet) return std::nullopt;
    address.bytes[octet] = static_cast<std::uint8_t>(value);
  }
  if (position != text.size()) return std::nullopt;
  return address;
}

std::optional<MacAddress> parse_mac_address(std::string_view text) {
  constexpr std::size_t text_length = mac_address_bytes * 3 - 1;  // "xx:" * 6 without the last ':'
  if (text.size() != text_length) return std::nullopt;
  MacAddress mac;
  for (std::size_t index = 0; index < mac_address_bytes; ++index) {
    const std::size_t at = index * 3;
    const int high = hex_value(text[at]);
    const int low = hex_value(text[at + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    if (index + 1 < mac_address_bytes && text[at + 2] != ':') return std::nullopt;
    mac.bytes[index] = static_cast<std::uint8_t>(high * 16 + low);
  }
  return mac;
}

std::string to_string(const IpAddress& address) {
  if (address.family == AddressFamily::ipv4) {
    char buffer[sizeof "255.255.255.255"];
    std::snprintf(buffer, sizeof buffer, "%u.%u.%u.%u", address.bytes[0], address.bytes[1],
                  address.bytes[2], address.bytes[3]);
    return buffer;
  }
  if (address.family == AddressFamily::ipv6) {
    std::string text;
    for (std::size_t index = 0; index < ip_address_bytes; index += 2) {
      char group[sizeof "ffff:"];
      std::snprintf(group, sizeof group, index == 0 ? "%x" : ":%x",
                    (address.bytes[index] << 8) | address.bytes[index + 1]);
      text += group;
    }
    return text;
  }
  return "(none)";
}

std::string to_string(const MacAddress& address) {
  char buffer[sizeof "ff:ff:ff:ff:ff:ff"];
  std::snprintf(buffer, sizeof buffer, "%02x:%02x:%02x:%02x:%02x:%02x", address.bytes[0],
                address.bytes[1], address.bytes[2], address.bytes[3], address.bytes[4], address.bytes[5]);
  return buffer;
}

std::string_view to_string(IpProtocol protocol) {
  switch (protocol) {
    case IpProtocol::icmp: return "icmp";
    case IpProtocol::ipip: return "ipip";
    case IpProtocol::tcp: return "tcp";
    case IpProtocol::udp: return "udp";
  }
  return "unknown";
}

std::string to_string(const VipKey& key) {
  return to_string(key.address) + " " + std::string(to_string(key.protocol)) + " " +
         std::to_string(key.port);
}

}  // namespace stacknode::dataplane
