// The DPDK shell around the core library: EAL, ports, the mbuf pool, one worker per lcore, and
// the publication of snapshots to the workers (atomic pointer swap, rte_rcu quiescent-state
// reclamation). Setup runs on the main thread before the workers start and fails with one line a
// person can act on (StartupError). The control side (apply, status, counters) is called from
// the control thread only; the workers never lock, allocate or log.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "settings.hpp"
#include "stacknode/dataplane/control_protocol.hpp"
#include "stacknode/dataplane/packet.hpp"

struct rte_mempool;
struct rte_rcu_qsbr;
struct rte_mbuf;

namespace stacknode::dataplane {

// Packets taken from a receive queue at once, and the most a transmit buffer holds.
inline constexpr std::uint16_t burst_size = 32;
// Descriptors per queue: enough to ride out a few bursts of control-thread latency.
inline constexpr std::uint16_t rx_descriptors = 1024;
inline constexpr std::uint16_t tx_descriptors = 1024;
inline constexpr unsigned mbuf_cache_size = 256;

class StartupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A counter written by one worker with plain adds, read by the control thread while it runs: a
// relaxed load of an aligned 64-bit word, exact but possibly a little stale.
inline std::uint64_t read_counter(const std::uint64_t& value) { return __atomic_load_n(&value, __ATOMIC_RELAXED); }

// Traffic of one backend as seen by one lcore. One cache line, so lcores never share one.
struct alignas(cache_line_bytes) BackendTraffic {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t new_flows = 0;

  BackendTraffic& operator+=(const BackendTraffic& other) {
    packets += other.packets;
    bytes += other.bytes;
    new_flows += other.new_flows;
    return *this;
  }
  // A copy taken while its worker may be adding to it (read_counter per field).
  BackendTraffic read() const {
    BackendTraffic copy;
    copy.packets = read_counter(packets);
    copy.bytes = read_counter(bytes);
    copy.new_flows = read_counter(new_flows);
    return copy;
  }
};

// A snapshot as the workers see it, with the traffic counters of its backends ([lcore][backend]).
struct Published {
  std::unique_ptr<const Snapshot> snapshot;
  std::size_t backend_count = 0;
  std::unique_ptr<BackendTraffic[]> traffic;
  BackendTraffic* traffic_of(unsigned lcore) const { return traffic.get() + lcore * backend_count; }
};

// What one worker owns besides its LcoreState.
struct alignas(cache_line_bytes) WorkerExtra {
  std::uint64_t tx_dropped = 0;  // frames the transmit queue did not take (full ring)
};

class Runtime {
 public:
  // Initialises EAL with `eal`, finds and starts the ports, allocates per-lcore state, and
  // publishes an empty config. Throws StartupError.
  Runtime(const DataplaneSettings& settings, const EalArguments& eal);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Runs the workers (the main lcore is worker 0) until stop(). Call from the main thread.
  void run();
  // From any thread: the workers finish their burst and return.
  void stop() { stopping_.store(true, std::memory_order_relaxed); }

  // Control thread only. Builds and publishes `config`; on a refusal returns the one-line error
  // and the running config stays.
  std::string apply(const ControlConfig& config);
  boost::json::object status() const;
  boost::json::object counters() const;

 private:
  struct PortRuntime {
    std::uint16_t port_id = 0;
    PortSettings settings;
    MacAddress mac;
  };

  void setup();
  void setup_ports();
  void set_port_mac(PortRuntime& port, const MacAddress& wanted);
  // Stops the ports and gives back what setup took, EAL last; safe on a half-done setup.
  void release();
  void worker(unsigned worker_index);
  static int launch(void* self_and_index);
  void publish(std::unique_ptr<Published> next);
  void fold_traffic(const Published& retired);

  DataplaneSettings settings_;
  bool huge_ = false;
  std::vector<PortRuntime> ports_;
  rte_mempool* pool_ = nullptr;
  rte_rcu_qsbr* rcu_ = nullptr;
  std::vector<unsigned> worker_lcores_;
  std::vector<std::unique_ptr<LcoreState>> lcore_states_;
  std::unique_ptr<WorkerExtra[]> extras_;
  std::atomic<const Published*> current_{nullptr};
  std::unique_ptr<Published> owned_current_;  // control thread's handle on current_
  // Traffic of backends in retired snapshots, by (service, backend address).
  std::map<std::pair<VipKey, IpAddress>, BackendTraffic> retired_traffic_;
  std::atomic<bool> stopping_{false};
  bool eal_ready_ = false;
};

}  // namespace stacknode::dataplane
