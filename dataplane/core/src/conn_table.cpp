// Connection table (conn_table.hpp): sizing, memory, insertion with eviction, and the TCP state
// transitions of client packets.
#include "stacknode/dataplane/conn_table.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>

namespace stacknode::dataplane {

namespace {

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

FlowState next_tcp_state(bool existing, FlowState current, std::uint8_t flags) {
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
  owned_memory_ = ::operator new(required_bytes(config), std::align_val_t{cache_line_bytes});
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
  if (owned_memory_ != nullptr) ::operator delete(owned_memory_, std::align_val_t{cache_line_bytes});
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

ConnEntry* ConnTable::insert(const FlowKey& key, std::uint64_t hash, FlowState state, std::uint64_t now_ms) {
  const std::uint64_t bucket_index = hash & bucket_mask_;
  ConnBucket& bucket = buckets_[bucket_index];
  const std::uint32_t now = static_cast<std::uint32_t>(now_ms);
  // A free way if there is one, else the way closest to (or furthest past) its expiry.
  std::size_t chosen = 0;
  std::int32_t chosen_remaining = INT32_MAX;
  for (std::size_t way = 0; way < conn_table_ways; ++way) {
    if (bucket.signature[way] == 0) {
      chosen = way;
      chosen_remaining = INT32_MIN;
      break;
    }
    const auto remaining = static_cast<std::int32_t>(bucket.expires_ms[way] - now);
    if (remaining < chosen_remaining) {
      chosen = way;
      chosen_remaining = remaining;
    }
  }
  if (bucket.signature[chosen] != 0) {
    if (chosen_remaining > 0) {
      ++stats_.evictions;
    } else {
      ++stats_.expired_reclaimed;
    }
  }
  ++stats_.inserts;
  bucket.signature[chosen] = signature_of(hash);
  ConnEntry& entry = entries_[bucket_index * conn_table_ways + chosen];
  entry = ConnEntry{};
  entry.key = key;
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
