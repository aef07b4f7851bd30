// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4): builds a service's lookup table, which maps a flow hash to
// one of the service's backends. Runs on the control thread; the fast path only reads the table.
//
// Invariants:
//  1. The table depends only on the backend list's contents: backends are put in canonical order
//     (by address, see IpAddress's ordering) before anything else, and the permutation of each
//     backend comes from stacknode flow hash v1 of its address (flow_hash.hpp). Same list in, same
//     bytes out, on every node and in every build; never arrival order or memory addresses.
//  2. Only active backends get entries; draining and down backends get none (draining ones keep
//     their established flows through the connection table, not through this table).
//  3. Every entry is filled when at least one backend is active; otherwise every entry is
//     maglev_no_backend.
//  4. Backend i's share of entries is weight_i / sum(weights) of the table, within one entry per
//     round of the algorithm (see build_maglev_table), so within 1% when size > 100 * backends.
//  5. An entry holds an index into the canonically ordered backend list (all states included),
//     which is the order in which the snapshot stores a service's backends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "stacknode/dataplane/addresses.hpp"

namespace stacknode::dataplane {

// The paper's default: a prime a little above 2^16 keeps M > 100 N for up to 655 backends.
inline constexpr std::uint32_t default_maglev_table_size = 65537;
// Smallest and largest accepted sizes. The largest prime below 2^22 bounds one service's table
// at 8 MiB of uint16 entries, so a snapshot of many services stays in memory.
inline constexpr std::uint32_t min_maglev_table_size = 3;
inline constexpr std::uint32_t max_maglev_table_size = 4194301;
// Entries are 16-bit backend indexes; one value is reserved for "no backend".
inline constexpr std::uint16_t maglev_no_backend = 0xffff;
inline constexpr std::size_t max_backends_per_service = 4096;
// Weights are relative; the range keeps the credit arithmetic far from overflow.
inline constexpr std::uint32_t min_backend_weight = 1;
inline constexpr std::uint32_t max_backend_weight = 65535;

enum class BackendState : std::uint8_t { active, draining, down };
std::string_view to_string(BackendState state);

struct MaglevBackend {
  IpAddress address;
  std::uint32_t weight = 1;
  BackendState state = BackendState::active;
};

struct MaglevTable {
  std::vector<MaglevBackend> backends;   // canonical order; entries index into this
  std::vector<std::uint16_t> entries;    // table_size entries
};

struct MaglevBuildResult {
  bool ok = false;
  std::string error;  // why the list or size was refused, naming the backend; empty when ok
  MaglevTable table;
};

bool is_prime(std::uint32_t number);

// Orders backends canonically (by address). Shared with the snapshot builder so that snapshot
// backend indexes and Maglev entries agree.
void sort_backends_canonically(std::vector<MaglevBackend>& backends);

// Validates (size prime and in range, weights in range, no duplicate address, at most
// max_backends_per_service backends, IPv4/IPv6 addresses only), sorts, and fills the table.
MaglevBuildResult build_maglev_table(std::vector<MaglevBackend> backends, std::uint32_t table_size);

// The filling step alone, for callers that validated and sorted already (the snapshot builder):
// `backends` in canonical order, `entries.size()` the prime table size. Never fails.
//
// Algorithm: each active backend i has offset_i = h1(address) mod M and skip_i = h2(address)
// mod (M - 1) + 1, which make (offset_i + j * skip_i) mod M a permutation of the slots because M is
// prime. Rounds visit active backends in canonical order; each visit adds weight_i to the
// backend's credit, and while the credit reaches the largest weight the backend takes the next
// free slot of its permutation and pays the largest weight. With equal weights this is the
// paper's algorithm exactly. A bitmap of taken slots (8 KiB at 65537) keeps the "is it free?"
// probes in L1 cache; positions advance by addition, never by division.
void fill_maglev_table(std::span<const MaglevBackend> backends, std::span<std::uint16_t> entries);

}  // namespace stacknode::dataplane
