// Frame construction and independent checksum code for the dataplane tests (frame_builder.hpp).
#include "frame_builder.hpp"

#include <algorithm>
#include <cstdio>

namespace stacknode::dataplane::test {

std::uint16_t internet_checksum(const std::uint8_t* bytes, std::size_t size, std::uint32_t initial) {
  std::uint32_t sum = initial;
  for (std::size_t index = 0; index + 1 < size; index += 2) sum += (bytes[index] << 8) | bytes[index + 1];
  if (size % 2 == 1) sum += bytes[size - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

bool checksum_ok(const std::uint8_t* bytes, std::size_t size) { return internet_checksum(bytes, size) == 0; }

void put16(Bytes& bytes, std::uint16_t value) {
  bytes.push_back(static_cast<std::uint8_t>(value >> 8));
  bytes.push_back(static_cast<std::uint8_t>(value));
}

std::uint16_t get16(const std::uint8_t* bytes) { return static_cast<std::uint16_t>((bytes[0] << 8) | bytes[1]); }

Bytes concat(const Bytes& first, const Bytes& second) {
  Bytes result = first;
  result.insert(result.end(), second.begin(), second.end());
  return result;
}

Bytes ethernet(const Mac& destination, const Mac& source, std::uint16_t ethertype, const Bytes& payload,
               std::optional<std::uint16_t> vlan) {
  Bytes frame(destination.begin(), destination.end());
  frame.insert(frame.end(), source.begin(), source.end());
  if (vlan) {
    put16(frame, ethertype_vlan);
    put16(frame, *vlan);
  }
  put16(frame, ethertype);
  frame.insert(frame.end(), payload.begin(), payload.end());
  return frame;
}

Bytes ipv4(const Ipv4Header& header, const Bytes& payload) {
  const std::size_t header_length = 20 + header.options.size();
  Bytes packet;
  packet.push_back(header.version_ihl.value_or(static_cast<std::uint8_t>(0x40 | (header_length / 4))));
  packet.push_back(header.tos);
  put16(packet, header.total_length.value_or(static_cast<std::uint16_t>(header_length + payload.size())));
  put16(packet, header.identification);
  put16(packet, static_cast<std::uint16_t>((header.dont_fragment ? 0x4000 : 0) | (header.more_fragments ? 0x2000 : 0) |
                                           header.fragment_offset));
  packet.push_back(header.ttl);
  packet.push_back(header.protocol);
  put16(packet, 0);
  packet.insert(packet.end(), header.source.begin(), header.source.end());
  packet.insert(packet.end(), header.destination.begin(), header.destination.end());
  packet.insert(packet.end(), header.options.begin(), header.options.end());
  std::uint16_t checksum = internet_checksum(packet.data(), packet.size());
  if (header.corrupt_checksum) checksum ^= 0x0101;
  packet[10] = static_cast<std::uint8_t>(checksum >> 8);
  packet[11] = static_cast<std::uint8_t>(checksum);
  packet.insert(packet.end(), payload.begin(), payload.end());
  return packet;
}

namespace {

std::uint32_t pseudo_header_sum(const Ip4& source, const Ip4& destination, std::uint8_t protocol, std::size_t length) {
  std::uint32_t sum = 0;
  sum += (source[0] << 8) | source[1];
  sum += (source[2] << 8) | source[3];
  sum += (destination[0] << 8) | destination[1];
  sum += (destination[2] << 8) | destination[3];
  sum += protocol;
  sum += static_cast<std::uint32_t>(length);
  return sum;
}

void set_checksum(Bytes& segment, std::size_t field, std::uint32_t initial) {
  const std::uint16_t checksum = internet_checksum(segment.data(), segment.size(), initial);
  segment[field] = static_cast<std::uint8_t>(checksum >> 8);
  segment[field + 1] = static_cast<std::uint8_t>(checksum);
}

}  // namespace

Bytes tcp(const Ip4& source, const Ip4& destination, std::uint16_t source_port, std::uint16_t destination_port,
          std::uint8_t flags, const Bytes& payload, std::uint32_t sequence) {
  Bytes segment;
  put16(segment, source_port);
  put16(segment, destination_port);
  put16(segment, static_cast<std::uint16_t>(sequence >> 16));
  put16(segment, static_cast<std::uint16_t>(sequence));
  put16(segment, 0);  // acknowledgement number
  put16(segment, (flags & flag_ack) ? 1 : 0);
  segment.push_back(0x50);  // data offset 5
  segment.push_back(flags);
  put16(segment, 65535);  // window
  put16(segment, 0);      // checksum
  put16(segment, 0);      // urgent pointer
  segment.insert(segment.end(), payload.begin(), payload.end());
  set_checksum(segment, 16, pseudo_header_sum(source, destination, proto_tcp, segment.size()));
  return segment;
}

Bytes udp(const Ip4& source, const Ip4& destination, std::uint16_t source_port, std::uint16_t destination_port,
          const Bytes& payload) {
  Bytes datagram;
  put16(datagram, source_port);
  put16(datagram, destination_port);
  put16(datagram, static_cast<std::uint16_t>(8 + payload.size()));
  put16(datagram, 0);
  datagram.insert(datagram.end(), payload.begin(), payload.end());
  set_checksum(datagram, 6, pseudo_header_sum(source, destination, proto_udp, datagram.size()));
  return datagram;
}

Bytes icmp(std::uint8_t type, std::uint8_t code, std::uint16_t identifier, std::uint16_t sequence,
           const Bytes& payload) {
  Bytes message = {type, code, 0, 0};
  put16(message, identifier);
  put16(message, sequence);
  message.insert(message.end(), payload.begin(), payload.end());
  set_checksum(message, 2, 0);
  return message;
}

Bytes arp(std::uint16_t operation, const Mac& sender_mac, const Ip4& sender_ip, const Mac& target_mac,
          const Ip4& target_ip) {
  Bytes message;
  put16(message, 1);       // Ethernet
  put16(message, 0x0800);  // IPv4
  message.push_back(6);
  message.push_back(4);
  put16(message, operation);
  message.insert(message.end(), sender_mac.begin(), sender_mac.end());
  message.insert(message.end(), sender_ip.begin(), sender_ip.end());
  message.insert(message.end(), target_mac.begin(), target_mac.end());
  message.insert(message.end(), target_ip.begin(), target_ip.end());
  return message;
}

Bytes payload_of(std::size_t size) {
  Bytes bytes(size);
  for (std::size_t index = 0; index < size; ++index) bytes[index] = static_cast<std::uint8_t>(index);
  return bytes;
}

FrameBuffer::FrameBuffer(const Bytes& frame, std::size_t headroom) : buffer_(headroom + frame.size(), 0xee), headroom_(headroom) {
  std::copy(frame.begin(), frame.end(), buffer_.begin() + static_cast<std::ptrdiff_t>(headroom));
}

std::string hex(const std::uint8_t* bytes, std::size_t size) {
  std::string text;
  char pair[4];
  for (std::size_t index = 0; index < size; ++index) {
    std::snprintf(pair, sizeof pair, "%02x", bytes[index]);
    text += pair;
    if (index + 1 < size) text += (index % 16 == 15) ? "\n" : " ";
  }
  return text;
}

std::string describe_difference(const Bytes& expected, const std::uint8_t* actual, std::size_t actual_size) {
  const std::size_t common = std::min(expected.size(), actual_size);
  for (std::size_t index = 0; index < common; ++index) {
    if (expected[index] != actual[index]) {
      char text[96];
      std::snprintf(text, sizeof text, "byte %zu: expected %02x, got %02x", index, expected[index], actual[index]);
      return std::string(text) + "\nexpected:\n" + hex(expected.data(), expected.size()) + "\nactual:\n" +
             hex(actual, actual_size);
    }
  }
  if (expected.size() != actual_size) {
    return "length: expected " + std::to_string(expected.size()) + ", got " + std::to_string(actual_size) +
           "\nexpected:\n" + hex(expected.data(), expected.size()) + "\nactual:\n" + hex(actual, actual_size);
  }
  return {};
}

}  // namespace stacknode::dataplane::test
