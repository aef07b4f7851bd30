// Maglev lookup-table construction (maglev.hpp): validation, canonical ordering, and the filling
// loop, which is the part that must be fast (<= 2 ms for 1000 backends at 65537 entries).
#include "stacknode/dataplane/maglev.hpp"

#include <algorithm>
#include <bit>
#include <utility>

#include "stacknode/dataplane/flow_hash.hpp"

namespace stacknode::dataplane {

namespace {

constexpr std::size_t bits_per_word = 64;

// The filling loop has two phases (see fill_maglev_table). The second starts when this many slots
// are left free: there a take scans every free slot (one multiplication modulo the size each),
// where the probing of the first phase would need about size / free probes; a scan step costs
// about two probes (measured), so the two meet near sqrt(size / 2) free slots (181 at 65537).
std::uint32_t tail_slots_for(std::uint32_t size) {
  std::uint32_t slots = 1;
  while (std::uint64_t{slots} * slots * 2 < size) ++slots;
  return slots;
}

// Exact remainders modulo a fixed size without a division (Barrett reduction). The quotient
// estimate from reciprocal = floor((2^64 - 1) / size) is never too large and at most two too small
// for any 64-bit x, and at most one too small for x < 2^44 (a product of two values below
// max_maglev_table_size < 2^22), so a correction or two gives the exact x % size.
struct Modulus {
  explicit Modulus(std::uint32_t value) : size(value), reciprocal(~std::uint64_t{0} / value) {}

  std::uint64_t quotient_estimate(std::uint64_t x) const {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(x) * reciprocal) >> 64);
  }
  std::uint32_t reduce(std::uint64_t x) const {  // any x
    std::uint64_t remainder = x - quotient_estimate(x) * size;
    while (remainder >= size) remainder -= size;
    return static_cast<std::uint32_t>(remainder);
  }
  std::uint32_t reduce_product(std::uint32_t a, std::uint32_t b) const {  // a, b < size
    const std::uint64_t x = std::uint64_t{a} * b;
    std::uint64_t remainder = x - quotient_estimate(x) * size;
    if (remainder >= size) remainder -= size;
    return static_cast<std::uint32_t>(remainder);
  }

  std::uint32_t size;
  std::uint64_t reciprocal;
};

// value^-1 modulo a prime (0 < value < prime), by the extended Euclidean algorithm.
std::uint32_t modular_inverse(std::uint32_t value, std::uint32_t prime) {
  std::int64_t coefficient = 0, next_coefficient = 1;
  std::int64_t remainder = prime, next_remainder = value;
  while (next_remainder != 0) {
    const std::int64_t quotient = remainder / next_remainder;
    coefficient = std::exchange(next_coefficient, coefficient - quotient * next_coefficient);
    remainder = std::exchange(next_remainder, remainder - quotient * next_remainder);
  }
  return static_cast<std::uint32_t>(coefficient < 0 ? coefficient + prime : coefficient);
}

// One active backend's walk through its permutation of the slots.
struct Cursor {
  std::uint32_t position;     // next slot of the permutation to try
  std::uint32_t skip;
  std::uint32_t double_skip;  // 2 * skip mod size: the probe loop looks at two slots per step
  std::uint32_t weight;
  std::uint32_t credit;
  std::uint32_t inverse;      // skip^-1 mod size, computed on the first take of the tail phase
  std::uint16_t index;        // canonical index, what the table stores
};

inline std::uint32_t wrap(std::uint32_t position, std::uint32_t size) {  // position < 2 * size
  return position >= size ? position - size : position;
}

inline bool is_taken(const std::uint64_t* bitmap, std::uint32_t slot) {
  return (bitmap[slot / bits_per_word] >> (slot % bits_per_word)) & 1;
}

// A visit adds the backend's weight to its credit; the backend takes a slot when the credit
// reaches the largest weight, and pays for it. Credit stays below max_weight between visits and a
// visit adds at most max_weight, so a visit takes at most one slot.
inline bool takes_turn(Cursor& cursor, std::uint32_t max_weight) {
  const std::uint32_t credit = cursor.credit + cursor.weight;
  if (credit < max_weight) {
    cursor.credit = credit;
    return false;
  }
  cursor.credit = credit - max_weight;
  return true;
}

// An address as an integer key with the order of IpAddress's operator<=> (family, then the bytes
// as memcmp orders them): two big-endian words compare like the sixteen bytes.
struct CanonicalKey {
  std::uint8_t family;
  std::uint64_t high;
  std::uint64_t low;
  std::uint32_t index;  // into the list being sorted

  static std::uint64_t big_endian(const std::uint8_t* bytes) {
    std::uint64_t value = 0;
    for (std::size_t index = 0; index < 8; ++index) value = (value << 8) | bytes[index];
    return value;
  }
  bool operator<(const CanonicalKey& other) const {
    if (family != other.family) return family < other.family;
    if (high != other.high) return high < other.high;
    return low < other.low;
  }
};
static_assert(ip_address_bytes == 16, "CanonicalKey holds an address in two 64-bit words");

}  // namespace

std::string_view to_string(BackendState state) {
  switch (state) {
    case BackendState::active: return "active";
    case BackendState::draining: return "draining";
    case BackendState::down: return "down";
  }
  return "unknown";
}

bool is_prime(std::uint32_t number) {
  if (number < 2) return false;
  if (number % 2 == 0) return number == 2;
  for (std::uint32_t divisor = 3; std::uint64_t{divisor} * divisor <= number; divisor += 2) {
    if (number % divisor == 0) return false;
  }
  return true;
}

// Sorting integer keys and then moving the backends once is several times cheaper than sorting
// the backends with memcmp comparisons (a tenth of a millisecond at 1000 backends).
void sort_backends_canonically(std::vector<MaglevBackend>& backends) {
  std::vector<CanonicalKey> keys;
  keys.reserve(backends.size());
  for (std::size_t index = 0; index < backends.size(); ++index) {
    const IpAddress& address = backends[index].address;
    keys.push_back({static_cast<std::uint8_t>(address.family), CanonicalKey::big_endian(address.bytes.data()),
                    CanonicalKey::big_endian(address.bytes.data() + 8), static_cast<std::uint32_t>(index)});
  }
  std::sort(keys.begin(), keys.end());
  std::vector<MaglevBackend> sorted;
  sorted.reserve(backends.size());
  for (const CanonicalKey& key : keys) sorted.push_back(backends[key.index]);
  backends = std::move(sorted);
}

// Two phases, both giving exactly the paper's assignment (each take is the first free slot of the
// taker's permutation from its cursor):
//  1. Probing, while more than tail_slots_for(size) slots are free: walk the permutation through
//     the bitmap of taken slots, two slots per step (the second from the first by skip, the next
//     step's first by 2 * skip, so both come from one position).
//  2. The tail: the few free slots in a list; the taker's next free slot is the one with the
//     fewest steps from its cursor, steps = (slot - cursor) * skip^-1 mod size (size is prime).
//     Every slot of the permutation before the cursor is taken already (slots are never freed),
//     so the nearest free slot is the first free one the probing would have found. Without this
//     phase the last few hundred slots cost about half of all probes (size * ln(tail) of them).
void fill_maglev_table(std::span<const MaglevBackend> backends, std::span<std::uint16_t> entries) {
  const auto size = static_cast<std::uint32_t>(entries.size());
  const Modulus modulus(size);
  const Modulus skip_modulus(size - 1);

  std::vector<Cursor> cursors;
  cursors.reserve(backends.size());
  std::uint32_t max_weight = 0;
  for (std::size_t index = 0; index < backends.size(); ++index) {
    const MaglevBackend& backend = backends[index];
    if (backend.state != BackendState::active) continue;  // invariant 2
    const std::uint32_t offset = modulus.reduce(address_hash(backend.address, maglev_offset_seed));
    const std::uint32_t skip = skip_modulus.reduce(address_hash(backend.address, maglev_skip_seed)) + 1;
    cursors.push_back({offset, skip, wrap(skip + skip, size), backend.weight, 0, 0,
                       static_cast<std::uint16_t>(index)});
    max_weight = std::max(max_weight, backend.weight);
  }
  if (cursors.empty()) {  // invariant 3: all maglev_no_backend
    std::fill(entries.begin(), entries.end(), maglev_no_backend);
    return;
  }
  // From here every entry is written exactly once (invariant 3), so no initial fill is needed.

  // Bits past the last slot are set, so the last word needs no special case.
  const std::size_t words = (size + bits_per_word - 1) / bits_per_word;
  std::vector<std::uint64_t> taken(words, 0);
  if (size % bits_per_word != 0) taken.back() = ~std::uint64_t{0} << (size % bits_per_word);
  std::uint64_t* const bitmap = taken.data();
  std::uint16_t* const table = entries.data();
  const std::size_t cursor_count = cursors.size();
  std::size_t visit = 0;  // rounds visit the active backends in canonical order
  std::uint32_t filled = 0;

  const std::uint32_t tail_slots = tail_slots_for(size);
  const std::uint32_t probe_until = size > tail_slots ? size - tail_slots : 0;
  while (filled < probe_until) {
    Cursor& cursor = cursors[visit];
    if (++visit == cursor_count) visit = 0;
    if (!takes_turn(cursor, max_weight)) continue;
    // Terminates: fewer than `size` slots are taken, and the permutation visits them all.
    std::uint32_t position = cursor.position;
    while (is_taken(bitmap, position)) {
      const std::uint32_t next = wrap(position + cursor.skip, size);
      if (!is_taken(bitmap, next)) {
        position = next;
        break;
      }
      position = wrap(position + cursor.double_skip, size);
    }
    bitmap[position / bits_per_word] |= std::uint64_t{1} << (position % bits_per_word);
    table[position] = cursor.index;
    cursor.position = wrap(position + cursor.skip, size);
    ++filled;
  }
  if (filled == size) return;

  std::vector<std::uint32_t> free_slots;
  free_slots.reserve(size - filled);
  for (std::size_t word = 0; word < words; ++word) {
    for (std::uint64_t bits = ~bitmap[word]; bits != 0; bits &= bits - 1) {
      free_slots.push_back(static_cast<std::uint32_t>(word * bits_per_word) +
                           static_cast<std::uint32_t>(std::countr_zero(bits)));
    }
  }
  while (filled < size) {
    Cursor& cursor = cursors[visit];
    if (++visit == cursor_count) visit = 0;
    if (!takes_turn(cursor, max_weight)) continue;
    if (cursor.inverse == 0) cursor.inverse = modular_inverse(cursor.skip, size);
    const std::uint32_t from = cursor.position;
    std::uint32_t nearest_steps = size;
    std::size_t nearest = 0;
    for (std::size_t index = 0; index < free_slots.size(); ++index) {
      const std::uint32_t slot = free_slots[index];
      const std::uint32_t distance = slot >= from ? slot - from : slot + size - from;
      const std::uint32_t steps = modulus.reduce_product(distance, cursor.inverse);
      if (steps < nearest_steps) {
        nearest_steps = steps;
        nearest = index;
      }
    }
    const std::uint32_t position = free_slots[nearest];
    free_slots[nearest] = free_slots.back();
    free_slots.pop_back();
    table[position] = cursor.index;
    cursor.position = wrap(position + cursor.skip, size);
    ++filled;
  }
}

MaglevBuildResult build_maglev_table(std::vector<MaglevBackend> backends, std::uint32_t table_size) {
  MaglevBuildResult result;
  if (table_size < min_maglev_table_size || table_size > max_maglev_table_size) {
    result.error = "Maglev table size " + std::to_string(table_size) + " is out of range [" +
                   std::to_string(min_maglev_table_size) + ", " + std::to_string(max_maglev_table_size) + "]";
    return result;
  }
  if (!is_prime(table_size)) {
    result.error = "Maglev table size " + std::to_string(table_size) +
                   " is not a prime (use a prime such as 65537, 131071 or 262139)";
    return result;
  }
  if (backends.size() > max_backends_per_service) {
    result.error = std::to_string(backends.size()) + " backends, more than the limit of " +
                   std::to_string(max_backends_per_service);
    return result;
  }
  for (const MaglevBackend& backend : backends) {
    if (backend.address.family != AddressFamily::ipv4 && backend.address.family != AddressFamily::ipv6) {
      result.error = "a backend has no address";
      return result;
    }
    if (backend.weight < min_backend_weight || backend.weight > max_backend_weight) {
      result.error = "backend " + to_string(backend.address) + " has weight " + std::to_string(backend.weight) +
                     ", outside [" + std::to_string(min_backend_weight) + ", " +
                     std::to_string(max_backend_weight) + "]";
      return result;
    }
  }
  sort_backends_canonically(backends);
  for (std::size_t index = 1; index < backends.size(); ++index) {
    if (backends[index].address == backends[index - 1].address) {
      result.error = "backend " + to_string(backends[index].address) + " is listed twice";
      return result;
    }
  }
  result.table.entries.resize(table_size);
  fill_maglev_table(backends, result.table.entries);
  result.table.backends = std::move(backends);
  result.ok = true;
  return result;
}

}  // namespace stacknode::dataplane
