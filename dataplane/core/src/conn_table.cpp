// Connection table (conn_table.hpp): sizing, memory (its own, on huge pages where the kernel
// gives them), insertion with eviction, and the TCP state transitions of client packets.
#include "stacknode/dataplane/conn_table.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace stacknode::dataplane {

namespace {

// A table the size of the default (72 MiB) on 4 KiB pages costs a TLB miss on nearly every lookup
// of a random flow: the ways of one packet's bucket and entry lie on two pages of tens of
// thousands. Memory the table allocates itself is aligned to the 2 MiB of an x86-64 or arm64
// transparent huge page and advised as such (MADV_HUGEPAGE, which works in the kernel's default
// "madvise" mode); tables at least this big only. Advice only: where it is refused the table
// works the same on small pages.
constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

void* allocate_table_memory(std::size_t bytes) {
  if (bytes < huge_page_bytes) return ::operator new(bytes, std::align_val_t{cache_line_bytes});
  const std::size_t rounded = (bytes + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
  void* memory = ::operator new(rounded, std::align_val_t{huge_page_bytes});
#if defined(MADV_HUGEPAGE)
  madvise(memory, rounded, MADV_HUGEPAGE);  // advice: failure leaves small pages, which work
#endif
  return memory;
}

void free_table_memory(void* memory, std::size_t bytes) {
  ::operator delete(memory, bytes < huge_page_bytes ? std::align_val_t{cache_line_bytes}
                                                    : std::align_val_t{huge_page_bytes});
}

std::uint64_t bucket_count_for(std::uint32_t capacity) {
  std::uint64_t buckets = 1;
  while (buckets * conn_table_ways < capacity) buckets *= 2;
  return buckets;
}

}  // namespace

std::string_view to_string(FlowState state) {
  switch (state) {
    case FlowState::tcp_syn_seen: return "tcp_syn_seen";
    case FlowState::tcp_established: return "tcp_established";
    case FlowState::tcp_fin: return "tcp_fin";
    case FlowState::tcp_rst: return "tcp_rst";
    case FlowState::udp: return "udp";
  }
  return "unknown";
}

std::string ConnTable::validate(const ConnTableConfig& config) {
  if (config.capacity < min_conn_table_capacity || config.capacity > max_conn_table_capacity) {
    return "connection table capacity " + std::to_string(config.capacity) + " is outside [" +
           std::to_string(min_conn_table_capacity) + ", " + std::to_string(max_conn_table_capacity) + "]";
  }
  for (std::size_t index = 0; index < flow_state_count; ++index) {
    const std::uint32_t timeout = config.timeouts.ms[index];
    if (timeout == 0 || timeout > max_flow_timeout_ms) {
      return "timeout of " + std::string(to_string(static_cast<FlowState>(index))) + " is " +
             std::to_string(timeout) + " ms, outside [1, " + std::to_string(max_flow_timeout_ms) + "]";
    }
  }
  return {};
}

std::size_t ConnTable::required_bytes(const ConnTableConfig& config) {
  const std::uint64_t buckets = bucket_count_for(config.capacity);
  return buckets * sizeof(ConnBucket) + buckets * conn_table_ways * sizeof(ConnEntry);
}

ConnTable::ConnTable(const ConnTableConfig& config) {
  const std::string problem = validate(config);
  if (!problem.empty()) {
    std::fprintf(stderr, "ConnTable: invalid config: %s\n", problem.c_str());
    std::abort();  // a programming error: setup validates first
  }
  owned_memory_bytes_ = required_bytes(config);
  owned_memory_ = allocate_table_memory(owned_memory_bytes_);
  attach(config, owned_memory_);
}

ConnTable::ConnTable(const ConnTableConfig& config, void* memory, std::size_t memory_bytes) {
  const std::string problem = validate(config);
  if (!problem.empty() || memory_bytes < required_bytes(config) ||
      reinterpret_cast<std::uintptr_t>(memory) % cache_line_bytes != 0) {
    std::fprintf(stderr, "ConnTable: invalid config or memory: %s\n",
                 problem.empty() ? "memory too small or misaligned" : problem.c_str());
    std::abort();
  }
  attach(config, memory);
}

ConnTable::~ConnTable() {
  if (owned_memory_ != nullptr) free_table_memory(owned_memory_, owned_memory_bytes_);
}

void ConnTable::attach(const ConnTableConfig& config, void* memory) {
  const std::uint64_t buckets = bucket_count_for(config.capacity);
  bucket_mask_ = buckets - 1;
  timeouts_ = config.timeouts;
  buckets_ = static_cast<ConnBucket*>(memory);
  entries_ = reinterpret_cast<ConnEntry*>(static_cast<std::uint8_t*>(memory) + buckets * sizeof(ConnBucket));
  std::uninitialized_default_construct_n(buckets_, buckets);
  std::uninitialized_default_construct_n(entries_, buckets * conn_table_ways);
}

ConnEntry* ConnTable::insert(const FlowKeyWords& key, std::uint64_t hash, FlowState state, std::uint64_t now_ms) {
  const std::uint64_t bucket_index = hash & bucket_mask_;
  ConnBucket& bucket = buckets_[bucket_index];
  const std::uint32_t now = static_cast<std::uint32_t>(now_ms);
  // A free way if there is one, else the way closest to (or furthest past) its expiry.
  const ClaimedWay claimed = way_to_claim(bucket, now);
  const std::size_t chosen = claimed.way;
  if (bucket.signature[chosen] != 0) {
    if (claimed.remaining > 0) {
      ++stats_.evictions;
    } else {
      ++stats_.expired_reclaimed;
    }
  }
  ++stats_.inserts;
  bucket.signature[chosen] = signature_of(hash);
  ConnEntry& entry = entries_[bucket_index * conn_table_ways + chosen];
  entry = ConnEntry{};
  entry.key = key.key();
  touch(entry, state, now_ms);
  return &entry;
}

void ConnTable::erase(ConnEntry& entry) {
  const std::size_t index = static_cast<std::size_t>(&entry - entries_);
  buckets_[index / conn_table_ways].signature[index % conn_table_ways] = 0;
}

std::size_t ConnTable::count_live(std::uint64_t now_ms) const {
  const std::uint32_t now = static_cast<std::uint32_t>(now_ms);
  std::size_t live = 0;
  for (std::uint64_t bucket = 0; bucket <= bucket_mask_; ++bucket) {
    for (std::size_t way = 0; way < conn_table_ways; ++way) {
      if (buckets_[bucket].signature[way] != 0 && is_alive(buckets_[bucket].expires_ms[way], now)) ++live;
    }
  }
  return live;
}

}  // namespace stacknode::dataplane
