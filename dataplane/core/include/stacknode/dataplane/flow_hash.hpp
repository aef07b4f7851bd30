// The dataplane's stable hash ("stacknode flow hash v1"): the flow hash that picks a Maglev entry
// and a connection-table bucket, and the backend hashes that build Maglev permutations.
//
// Every node of a rack must send a flow to the same backend, so this hash is part of the wire
// contract between nodes, like a protocol: it has no random seed, never hashes pointers, and is
// defined on values, not on the host's memory layout, so it gives the same answer on every node,
// build, compiler and byte order. Changing it moves flows between backends in a mixed-version rack:
// give the new one a new version name and roll it out like a protocol change.
//
// Definition (all arithmetic modulo 2^64):
//   word(bytes, i) = the eight bytes bytes[8i..8i+7] read as a little-endian integer
//   step(h, w)     = h' = (h XOR w) * 0x9E3779B97F4A7C15;  h' XOR= h' >> 32
//   finish(h)      = MurmurHash3's fmix64: h ^= h>>33; h *= 0xFF51AFD7ED558CCD; h ^= h>>33;
//                    h *= 0xC4CEB9FE1A85EC53; h ^= h>>33
//   flow_hash(key) = finish(step(step(step(step(step(seed, s0), s1), d0), d1), tail))
//     with seed = flow_hash_seed, s0/s1 = words 0 and 1 of the source address bytes, d0/d1 of the
//     destination, tail = source_port | destination_port << 16 | protocol << 32 | family << 40.
//   stable_hash_bytes(bytes, n, seed) = finish(step(... step(seed ^ n, word 0) ..., last word)),
//     the last word zero-padded.
// Use: the Maglev entry of a flow is (flow_hash >> 32) * table_size >> 32 (a multiply, not a
// division); the connection-table bucket uses the low bits and the signature the high 32 bits.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "stacknode/dataplane/addresses.hpp"

namespace stacknode::dataplane {

inline constexpr std::uint64_t flow_hash_seed = 0x5374616b6e6f6465;         // "Stacknode"
inline constexpr std::uint64_t maglev_offset_seed = 0x4d61676c65764f66;     // "MaglevOf"
inline constexpr std::uint64_t maglev_skip_seed = 0x4d61676c65765370;       // "MaglevSp"
inline constexpr std::uint64_t hash_step_multiplier = 0x9E3779B97F4A7C15;  // 2^64 / golden ratio

namespace hash_detail {

// One 8-byte load, plus a byte swap on big-endian hosts. (A loop assembling the value byte by byte
// means the same, but GCC 12 at -O2 keeps it a loop: about 50 instructions per word, 40% of the
// packet path's instructions when it was written that way.)
inline std::uint64_t load_little_endian_64(const std::uint8_t* bytes) {
  std::uint64_t value;
  std::memcpy(&value, bytes, sizeof value);
  if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap64(value);
  return value;
}

inline std::uint64_t step(std::uint64_t hash, std::uint64_t word) {
  hash = (hash ^ word) * hash_step_multiplier;
  return hash ^ (hash >> 32);
}

inline std::uint64_t finish(std::uint64_t hash) {
  hash ^= hash >> 33;
  hash *= 0xFF51AFD7ED558CCDull;
  hash ^= hash >> 33;
  hash *= 0xC4CEB9FE1A85EC53ull;
  hash ^= hash >> 33;
  return hash;
}

}  // namespace hash_detail

inline std::uint64_t flow_hash(const FlowKey& key) {
  using namespace hash_detail;
  std::uint64_t hash = flow_hash_seed;
  hash = step(hash, load_little_endian_64(key.source.data()));
  hash = step(hash, load_little_endian_64(key.source.data() + 8));
  hash = step(hash, load_little_endian_64(key.destination.data()));
  hash = step(hash, load_little_endian_64(key.destination.data() + 8));
  const std::uint64_t tail = std::uint64_t{key.source_port} |
                             (std::uint64_t{key.destination_port} << 16) |
                             (std::uint64_t{static_cast<std::uint8_t>(key.protocol)} << 32) |
                             (std::uint64_t{static_cast<std::uint8_t>(key.family)} << 40);
  return finish(step(hash, tail));
}

// flow_hash of the IPv4 FlowKey of these fields (addresses as four bytes in network order, ports
// in host order), computed from the values: an IPv4 address's second word is zero. The packet path
// uses it so the hash does not wait on a FlowKey just stored on the stack (a wide load of narrow
// stores cannot be forwarded from the store buffer). Equal to flow_hash(key) by definition; the
// unit tests check it.
inline std::uint64_t flow_hash_ipv4(const std::uint8_t* source, const std::uint8_t* destination,
                                    std::uint16_t source_port, std::uint16_t destination_port, IpProtocol protocol) {
  using namespace hash_detail;
  const auto load_little_endian_32 = [](const std::uint8_t* bytes) {
    return std::uint64_t{bytes[0]} | (std::uint64_t{bytes[1]} << 8) | (std::uint64_t{bytes[2]} << 16) |
           (std::uint64_t{bytes[3]} << 24);
  };
  std::uint64_t hash = flow_hash_seed;
  hash = step(hash, load_little_endian_32(source));
  hash = step(hash, 0);
  hash = step(hash, load_little_endian_32(destination));
  hash = step(hash, 0);
  const std::uint64_t tail = std::uint64_t{source_port} | (std::uint64_t{destination_port} << 16) |
                             (std::uint64_t{static_cast<std::uint8_t>(protocol)} << 32) |
                             (std::uint64_t{static_cast<std::uint8_t>(AddressFamily::ipv4)} << 40);
  return finish(step(hash, tail));
}

inline std::uint64_t stable_hash_bytes(const std::uint8_t* bytes, std::size_t size, std::uint64_t seed) {
  using namespace hash_detail;
  std::uint64_t hash = seed ^ size;
  std::size_t offset = 0;
  for (; offset + 8 <= size; offset += 8) hash = step(hash, load_little_endian_64(bytes + offset));
  if (offset < size) {
    std::uint8_t last[8] = {};
    for (std::size_t index = 0; offset + index < size; ++index) last[index] = bytes[offset + index];
    hash = step(hash, load_little_endian_64(last));
  }
  return finish(hash);
}

// The address's family byte followed by its sixteen bytes: what Maglev hashes for a backend.
inline std::uint64_t address_hash(const IpAddress& address, std::uint64_t seed) {
  std::uint8_t bytes[1 + ip_address_bytes];
  bytes[0] = static_cast<std::uint8_t>(address.family);
  for (std::size_t index = 0; index < ip_address_bytes; ++index) bytes[1 + index] = address.bytes[index];
  return stable_hash_bytes(bytes, sizeof bytes, seed);
}

// Which of `size` slots the hash selects: Lemire's multiply-shift range reduction on the high
// 32 bits; uniform enough for size < 2^32, and no division on the fast path.
inline std::uint32_t hash_to_range(std::uint64_t hash, std::uint32_t size) {
  return static_cast<std::uint32_t>(((hash >> 32) * std::uint64_t{size}) >> 32);
}

}  // namespace stacknode::dataplane
