// Per-lcore connection table: remembers which backend each flow went to, so that a flow keeps its
// backend when the backend list changes. One table per lcore, owned by that lcore only (no locks,
// no atomics). All memory is taken at setup; the fast path never allocates.
//
// Design: a set-associative hash table (a "bucketized" open-addressing table without cuckoo
// moves). The flow hash's low bits pick one bucket of conn_table_ways ways; a lookup compares the
// bucket's 32-bit signatures (one cache line) and then the full key of a matching way (a second
// line). Insertion takes a free way, else an expired one, else evicts the way that would expire
// soonest (counted in stats().evictions): bounded work per packet, never a rehash or a chain.
//
// Invariants:
//  1. A way is empty iff its signature is 0; live signatures have their lowest bit set.
//  2. A way is live iff it is non-empty and its expiry lies in the future: expires_ms is the last
//     time seen plus the timeout of the entry's state, as 32-bit milliseconds compared modulo
//     2^32, so timeouts are capped at max_flow_timeout_ms (a quarter of the wrap).
//  3. A key is live in at most one way: insert() is called only after find() missed.
//  4. Transitions: insert() claims a way (state and last-seen set); touch() sets the state and
//     last-seen and moves the expiry; erase() empties the way; an expired way is reclaimed by
//     insert() (stats().expired_reclaimed) or treated as absent by find().
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

#include "stacknode/dataplane/addresses.hpp"

namespace stacknode::dataplane {

inline constexpr std::size_t cache_line_bytes = 64;

// States of a flow as seen from the client side only (with direct server return the dataplane
// never sees the backend's packets). TCP transitions are in next_tcp_state().
enum class FlowState : std::uint8_t {
  tcp_syn_seen,     // SYN seen, no ACK yet: a handshake in progress (or a SYN flood)
  tcp_established,  // an ACK without SYN seen
  tcp_fin,          // the client sent FIN: closing
  tcp_rst,          // the client sent RST: closed
  udp,
};
inline constexpr std::size_t flow_state_count = 5;
std::string_view to_string(FlowState state);

// Timeouts by state, in milliseconds. Defaults follow Linux IPVS's (net/netfilter/ipvs/
// ip_vs_proto_tcp.c) shortened where one direction is all we see: a half-open handshake or a
// closing flow frees its entry quickly, an idle established flow is kept 15 minutes.
inline constexpr std::uint32_t default_tcp_syn_timeout_ms = 30 * 1000;
inline constexpr std::uint32_t default_tcp_established_timeout_ms = 900 * 1000;
inline constexpr std::uint32_t default_tcp_fin_timeout_ms = 60 * 1000;
inline constexpr std::uint32_t default_tcp_rst_timeout_ms = 10 * 1000;
inline constexpr std::uint32_t default_udp_timeout_ms = 120 * 1000;
// Expiry times are 32-bit milliseconds compared modulo 2^32 (invariant 2): a timeout must stay
// well under 2^31 ms so that "later" and "earlier" are never confused. 2^30 ms is 12.4 days.
inline constexpr std::uint32_t max_flow_timeout_ms = 1u << 30;

struct FlowTimeouts {
  std::array<std::uint32_t, flow_state_count> ms = {
      default_tcp_syn_timeout_ms, default_tcp_established_timeout_ms, default_tcp_fin_timeout_ms,
      default_tcp_rst_timeout_ms, default_udp_timeout_ms};
  std::uint32_t of(FlowState state) const { return ms[static_cast<std::size_t>(state)]; }
};

inline constexpr std::size_t conn_table_ways = 8;  // 8 x 32-bit signatures fill half a line
inline constexpr std::uint32_t default_conn_table_capacity = 1u << 20;  // flows per lcore
inline constexpr std::uint32_t min_conn_table_capacity = conn_table_ways;
inline constexpr std::uint32_t max_conn_table_capacity = 1u << 28;

struct ConnTableConfig {
  // Flows the table holds; rounded up to a power-of-two number of buckets of conn_table_ways.
  std::uint32_t capacity = default_conn_table_capacity;
  FlowTimeouts timeouts;
};

// One flow: 64 bytes, one cache line. The backend is remembered by address as well as by index:
// an index is only meaningful within one snapshot, the address identifies the backend across
// snapshots (the packet path re-resolves the index when they disagree).
struct alignas(cache_line_bytes) ConnEntry {
  FlowKey key;
  std::array<std::uint8_t, ip_address_bytes> backend_address{};
  std::uint32_t last_seen_ms = 0;  // low 32 bits of the time the flow was last seen
  std::uint16_t backend_index = 0;  // index within the service's backends, in the snapshot last used
  AddressFamily backend_family = AddressFamily::none;
  FlowState state = FlowState::tcp_syn_seen;

  IpAddress backend() const { return IpAddress{backend_family, backend_address}; }
  void set_backend(const IpAddress& address, std::uint16_t index) {
    backend_family = address.family;
    backend_address = address.bytes;
    backend_index = index;
  }
};
static_assert(sizeof(ConnEntry) == cache_line_bytes);

struct alignas(cache_line_bytes) ConnBucket {
  std::array<std::uint32_t, conn_table_ways> signature{};   // 0 = empty way
  std::array<std::uint32_t, conn_table_ways> expires_ms{};  // see invariant 2
};
static_assert(sizeof(ConnBucket) == cache_line_bytes);

struct ConnTableStats {
  std::uint64_t inserts = 0;
  std::uint64_t evictions = 0;          // live flows pushed out because their bucket was full
  std::uint64_t expired_reclaimed = 0;  // expired flows whose way was reused
};

// The next state of a TCP flow after a client packet with these flags (TCP header byte 13).
// From a new flow (`existing` false): RST -> rst, FIN -> fin, SYN without ACK -> syn_seen,
// anything else -> established (a mid-flow packet after a failover from another node).
// From an existing flow: RST -> rst; FIN -> fin; a bare SYN after fin/rst -> syn_seen (a new
// connection on a reused tuple: the caller re-picks the backend); an ACK moves syn_seen ->
// established; anything else keeps the state.
inline constexpr std::uint8_t tcp_flag_fin = 0x01;
inline constexpr std::uint8_t tcp_flag_syn = 0x02;
inline constexpr std::uint8_t tcp_flag_rst = 0x04;
inline constexpr std::uint8_t tcp_flag_ack = 0x10;
constexpr FlowState next_tcp_state(bool existing, FlowState current, std::uint8_t flags) {
  if (flags & tcp_flag_rst) return FlowState::tcp_rst;
  if (flags & tcp_flag_fin) return FlowState::tcp_fin;
  const bool bare_syn = (flags & (tcp_flag_syn | tcp_flag_ack)) == tcp_flag_syn;
  if (!existing) return bare_syn ? FlowState::tcp_syn_seen : FlowState::tcp_established;
  if (bare_syn && (current == FlowState::tcp_fin || current == FlowState::tcp_rst)) {
    return FlowState::tcp_syn_seen;
  }
  if (current == FlowState::tcp_syn_seen && (flags & tcp_flag_ack) && !(flags & tcp_flag_syn)) {
    return FlowState::tcp_established;
  }
  return current;
}
// True when a bare SYN arrives on a flow that had closed (fin or rst): a new connection.
constexpr bool is_new_connection_on_closed_flow(FlowState current, std::uint8_t flags) {
  return (flags & (tcp_flag_syn | tcp_flag_ack | tcp_flag_rst | tcp_flag_fin)) == tcp_flag_syn &&
         (current == FlowState::tcp_fin || current == FlowState::tcp_rst);
}

// Both of the above for a packet of an existing TCP flow, from one table indexed by the state and
// the four flags they read (the other flag bits change nothing): one load instead of a dozen
// branches on every TCP packet. The unit tests check it against the functions for every input.
struct TcpTransition {
  FlowState next;
  bool new_connection;  // is_new_connection_on_closed_flow: re-pick the backend
};
inline constexpr std::uint8_t tcp_transition_flags = tcp_flag_fin | tcp_flag_syn | tcp_flag_rst | tcp_flag_ack;
inline constexpr std::uint8_t tcp_transition_new_connection = 0x80;  // marks it in a table byte
inline constexpr auto tcp_transition_table = [] {
  std::array<std::array<std::uint8_t, tcp_transition_flags + 1>, flow_state_count> table{};
  for (std::size_t state = 0; state < flow_state_count; ++state) {
    for (std::size_t flags = 0; flags <= tcp_transition_flags; ++flags) {
      const auto current = static_cast<FlowState>(state);
      const auto byte = static_cast<std::uint8_t>(flags);
      table[state][flags] = static_cast<std::uint8_t>(
          static_cast<std::uint8_t>(next_tcp_state(true, current, byte)) |
          (is_new_connection_on_closed_flow(current, byte) ? tcp_transition_new_connection : 0));
    }
  }
  return table;
}();
inline TcpTransition existing_tcp_transition(FlowState current, std::uint8_t flags) {
  const std::uint8_t packed = tcp_transition_table[static_cast<std::size_t>(current)][flags & tcp_transition_flags];
  return {static_cast<FlowState>(packed & ~tcp_transition_new_connection),
          (packed & tcp_transition_new_connection) != 0};
}

// Requests the cache line at `address` (a hint: no fault, no effect on the program's results).
// Not __builtin_prefetch where the address was read from memory: GCC 12's dead-code elimination
// deletes such a prefetch entirely (prefetch_entry compiled to nothing), so on x86 it is an asm
// prefetcht0 the compiler must keep.
inline void prefetch_line(const void* address) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(address)));
#else
  __builtin_prefetch(address);
#endif
}

class ConnTable {
 public:
  // An empty string when the config is usable, else the reason (naming the field).
  static std::string validate(const ConnTableConfig& config);
  // Bytes of memory a table of this config needs (for a caller that provides its own memory,
  // such as rte_zmalloc_socket on the lcore's NUMA node), aligned to cache_line_bytes.
  static std::size_t required_bytes(const ConnTableConfig& config);

  // Allocates its own memory, advised onto transparent huge pages when it is at least one (2 MiB):
  // random lookups in a large table then miss the TLB far less. The config must be valid
  // (validate()): a bad one is a programming error and aborts.
  explicit ConnTable(const ConnTableConfig& config);
  // Uses `memory` (at least required_bytes(config), aligned to cache_line_bytes, owned by the
  // caller and outliving the table).
  ConnTable(const ConnTableConfig& config, void* memory, std::size_t memory_bytes);
  ~ConnTable();
  ConnTable(const ConnTable&) = delete;
  ConnTable& operator=(const ConnTable&) = delete;

  // The live entry of `key` (hash = flow_hash(key)), or nullptr.
  //
  // Way by way with an early exit, on purpose: the branch on the first signature is predicted, so
  // the CPU loads the predicted way's entry while the bucket's line is still on its way; a
  // branch-free mask of matches (tried) makes the entry's address wait for the bucket instead,
  // and was slower by a whole cache miss on the established-flow path.
  ConnEntry* find(const FlowKey& key, std::uint64_t hash, std::uint64_t now_ms) {
    return find(FlowKeyWords::of(key), hash, now_ms);
  }
  // The same with the key as words (the packet path builds them from the packet's fields).
  ConnEntry* find(const FlowKeyWords& key, std::uint64_t hash, std::uint64_t now_ms) {
    ConnBucket& bucket = buckets_[hash & bucket_mask_];
    const std::uint32_t signature = signature_of(hash);
    const std::uint32_t now = static_cast<std::uint32_t>(now_ms);
    ConnEntry* ways = &entries_[(hash & bucket_mask_) * conn_table_ways];
    for (std::size_t way = 0; way < conn_table_ways; ++way) {
      if (bucket.signature[way] == signature && is_alive(bucket.expires_ms[way], now) &&
          key.matches(ways[way].key)) {
        return &ways[way];
      }
    }
    return nullptr;
  }

  // Claims a way for `key`, which find() just missed, and sets its state and last-seen time. The
  // caller then sets the backend. May evict (stats().evictions) or reclaim an expired way.
  ConnEntry* insert(const FlowKey& key, std::uint64_t hash, FlowState state, std::uint64_t now_ms) {
    return insert(FlowKeyWords::of(key), hash, state, now_ms);
  }
  ConnEntry* insert(const FlowKeyWords& key, std::uint64_t hash, FlowState state, std::uint64_t now_ms);

  // Records a packet of the flow: new state, last seen now, expiry moved.
  void touch(ConnEntry& entry, FlowState state, std::uint64_t now_ms) {
    const std::size_t index = static_cast<std::size_t>(&entry - entries_);
    const std::uint32_t now = static_cast<std::uint32_t>(now_ms);
    entry.state = state;
    entry.last_seen_ms = now;
    buckets_[index / conn_table_ways].expires_ms[index % conn_table_ways] = now + timeouts_.of(state);
  }

  void erase(ConnEntry& entry);

  // Brings the bucket of `hash` towards the cache: called a few packets ahead of find().
  void prefetch(std::uint64_t hash) const { __builtin_prefetch(&buckets_[hash & bucket_mask_]); }
  // Brings towards the cache the entry that find() will compare for `hash` (the first way whose
  // signature matches), else the way insert() would claim. Reads the bucket, so call it once
  // prefetch(hash) has had time to bring it. Only a hint: the table is unchanged. A read
  // prefetch, though the entry is then written: x86-64 has no write prefetch without PRFCHW, and
  // a line no other core holds arrives writable anyway.
  void prefetch_entry(std::uint64_t hash, std::uint64_t now_ms) const {
    const std::uint64_t bucket_index = hash & bucket_mask_;
    const ConnBucket& bucket = buckets_[bucket_index];
    const std::uint32_t signature = signature_of(hash);
    std::size_t way = 0;
    while (way < conn_table_ways && bucket.signature[way] != signature) ++way;
    if (way == conn_table_ways) way = way_to_claim(bucket, static_cast<std::uint32_t>(now_ms)).way;
    prefetch_line(&entries_[bucket_index * conn_table_ways + way]);
  }

  std::size_t capacity() const { return (bucket_mask_ + 1) * conn_table_ways; }
  const FlowTimeouts& timeouts() const { return timeouts_; }
  const ConnTableStats& stats() const { return stats_; }
  // Live flows now; walks the whole table (control side and tests, not the fast path).
  std::size_t count_live(std::uint64_t now_ms) const;

  // Calls visit(entry, idle_ms) for each live entry among the ways [first, first + count) (ways
  // numbered bucket by bucket, clamped to capacity()); returns the next way to visit, capacity()
  // when the walk is complete. Lets the owning lcore walk its table in small slices between
  // bursts (the flow sample and the active-flow counts), so no other thread reads it.
  template <typename Visit>
  std::size_t visit_live(std::size_t first, std::size_t count, std::uint64_t now_ms, Visit&& visit) const {
    const std::uint32_t now = static_cast<std::uint32_t>(now_ms);
    const std::size_t end = std::min(capacity(), first + count);
    for (std::size_t index = first; index < end; ++index) {
      const ConnBucket& bucket = buckets_[index / conn_table_ways];
      const std::size_t way = index % conn_table_ways;
      if (bucket.signature[way] == 0 || !is_alive(bucket.expires_ms[way], now)) continue;
      visit(entries_[index], now - entries_[index].last_seen_ms);
    }
    return end;
  }

 private:
  static std::uint32_t signature_of(std::uint64_t hash) {
    return static_cast<std::uint32_t>(hash >> 32) | 1u;  // invariant 1: never 0
  }
  static bool is_alive(std::uint32_t expires_ms, std::uint32_t now) {
    return static_cast<std::int32_t>(expires_ms - now) > 0;
  }
  // The way insert() claims: the first free way, else the way closest to (or furthest past) its
  // expiry, the first of equals. `remaining` is that way's time to expiry (INT32_MIN when free).
  struct ClaimedWay {
    std::size_t way;
    std::int32_t remaining;
  };
  static ClaimedWay way_to_claim(const ConnBucket& bucket, std::uint32_t now) {
    ClaimedWay chosen{0, INT32_MAX};
    for (std::size_t way = 0; way < conn_table_ways; ++way) {
      if (bucket.signature[way] == 0) return {way, INT32_MIN};
      const auto remaining = static_cast<std::int32_t>(bucket.expires_ms[way] - now);
      if (remaining < chosen.remaining) chosen = {way, remaining};
    }
    return chosen;
  }
  void attach(const ConnTableConfig& config, void* memory);

  ConnBucket* buckets_ = nullptr;
  ConnEntry* entries_ = nullptr;
  std::uint64_t bucket_mask_ = 0;
  FlowTimeouts timeouts_;
  ConnTableStats stats_;
  void* owned_memory_ = nullptr;  // set when the table allocated its own memory
  std::size_t owned_memory_bytes_ = 0;
};

}  // namespace stacknode::dataplane
