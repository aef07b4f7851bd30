// Maglev lookup-table construction (maglev.hpp): validation, canonical ordering, and the filling
// loop, which is the part that must be fast (<= 2 ms for 1000 backends at 65537 entries).
#include "stacknode/dataplane/maglev.hpp"

#include <algorithm>

#include "stacknode/dataplane/flow_hash.hpp"

namespace stacknode::dataplane {

namespace {

constexpr std::size_t bits_per_word = 64;

// One active backend's walk through its permutation of the slots.
struct Cursor {
  std::uint32_t position;  // next slot of the permutation to try
  std::uint32_t skip;
  std::uint32_t weight;
  std::uint32_t credit;
  std::uint16_t index;     // canonical index, what the table stores
};

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

void sort_backends_canonically(std::vector<MaglevBackend>& backends) {
  std::sort(backends.begin(), backends.end(),
            [](const MaglevBackend& left, const MaglevBackend& right) { return left.address < right.address; });
}

void fill_maglev_table(std::span<const MaglevBackend> backends, std::span<std::uint16_t> entries) {
  const auto size = static_cast<std::uint32_t>(entries.size());
  std::fill(entries.begin(), entries.end(), maglev_no_backend);

  std::vector<Cursor> cursors;
  cursors.reserve(backends.size());
  std::uint32_t max_weight = 0;
  for (std::size_t index = 0; index < backends.size(); ++index) {
    const MaglevBackend& backend = backends[index];
    if (backend.state != BackendState::active) continue;  // invariant 2
    const std::uint64_t offset = address_hash(backend.address, maglev_offset_seed) % size;
    const std::uint64_t skip = address_hash(backend.address, maglev_skip_seed) % (size - 1) + 1;
    cursors.push_back({static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(skip),
                       backend.weight, 0, static_cast<std::uint16_t>(index)});
    max_weight = std::max(max_weight, backend.weight);
  }
  if (cursors.empty()) return;  // invariant 3: all maglev_no_backend

  // Credit stays below max_weight between visits and a visit adds at most max_weight, so a visit
  // takes at most one slot: an `if`, not a loop.
  std::vector<std::uint64_t> taken((size + bits_per_word - 1) / bits_per_word, 0);
  std::uint64_t* const bitmap = taken.data();
  std::uint16_t* const table = entries.data();
  std::uint32_t filled = 0;
  for (;;) {
    for (Cursor& cursor : cursors) {
      const std::uint32_t credit = cursor.credit + cursor.weight;
      if (credit < max_weight) {
        cursor.credit = credit;
        continue;
      }
      cursor.credit = credit - max_weight;
      const std::uint32_t skip = cursor.skip;
      std::uint32_t position = cursor.position;
      // Terminates: fewer than `size` slots are taken, and the permutation visits them all.
      while ((bitmap[position / bits_per_word] >> (position % bits_per_word)) & 1) {
        position += skip;
        if (position >= size) position -= size;
      }
      bitmap[position / bits_per_word] |= std::uint64_t{1} << (position % bits_per_word);
      table[position] = cursor.index;
      position += skip;
      if (position >= size) position -= size;
      cursor.position = position;
      if (++filled == size) return;
    }
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
