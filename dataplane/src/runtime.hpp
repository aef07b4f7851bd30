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
#include "stacknode/dataplane/neighbours.hpp"
#include "stacknode/dataplane/packet.hpp"

struct rte_mempool;
struct rte_rcu_qsbr;
struct rte_mbuf;
struct rte_ring;

namespace stacknode::dataplane {

// Packets taken from a receive queue at once, and the most a transmit buffer holds.
inline constexpr std::uint16_t burst_size = 32;
// Descriptors per queue: enough to ride out a few bursts of control-thread latency.
inline constexpr std::uint16_t rx_descriptors = 1024;
inline constexpr std::uint16_t tx_descriptors = 1024;
inline constexpr unsigned mbuf_cache_size = 256;
// Frames between the workers and the control thread: ARP replies punted up, frames the control
// thread originates (ARP requests, gratuitous ARP) going down to worker 0. Powers of two; a full
// ring drops and counts.
inline constexpr unsigned punt_ring_size = 1024;
inline constexpr unsigned control_tx_ring_size = 1024;
// Announcements of a VIP this node takes: one now and again each second (the repeats cover a
// lost frame and a switch port still learning), as keepalived and the kernel's arp_notify do.
inline constexpr unsigned gratuitous_arp_count = 3;
inline constexpr std::uint64_t gratuitous_arp_interval_ms = 1'000;

class StartupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A counter written by one worker with plain adds, read by the control thread while it runs: a
// relaxed load of an aligned 64-bit word, exact but possibly a little stale.
inline std::uint64_t read_counter(const std::uint64_t& value) {
  return __atomic_load_n(&value, __ATOMIC_RELAXED);
}

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
  std::uint64_t tx_dropped = 0;    // frames the transmit queue did not take (full ring)
  std::uint64_t punt_dropped = 0;  // punted frames the control thread's ring did not take
};

// Flow-table ways a worker walks per pass while a flow scan is pending: small enough that a pass
// stays a few microseconds longer, so a 1M-flow table is walked in a few hundred passes.
inline constexpr std::size_t flow_scan_ways_per_pass = 4096;
// How long the control thread waits for every worker to finish a scan before it answers without
// the flow figures (a worker stuck in a long pass, or not running).
inline constexpr std::uint64_t flow_scan_timeout_ms = 3'000;

struct FlowSample {
  FlowKey key;
  IpAddress backend;
  FlowState state = FlowState::udp;
  std::uint32_t idle_ms = 0;
};

// A request to one worker to walk its own connection table (the tables are the workers' alone),
// and what it found. The control thread fills the request fields, then bumps `requested`
// (release); the worker walks flow_scan_ways_per_pass ways per pass and stores `requested` into
// `finished` (release) when done; the control thread reads the results after seeing that
// (acquire), and touches nothing while requested != finished.
struct alignas(cache_line_bytes) FlowScan {
  std::atomic<std::uint64_t> requested{0};
  std::atomic<std::uint64_t> finished{0};
  // Request: (service, backend address) pairs to count active flows for, sorted; sample size.
  std::vector<std::pair<VipKey, IpAddress>> backends;
  std::size_t sample_limit = 0;
  // Progress and results, written by the worker.
  std::size_t cursor = 0;
  std::uint64_t live = 0;
  std::vector<std::uint64_t> active;  // per backends[]
  std::vector<FlowSample> sample;     // capacity reserved up front: the worker never allocates
};

// Active flows as of one scan of every worker's table.
struct FlowCensus {
  bool complete = false;  // false: a worker did not finish in time; the figures below are empty
  std::vector<std::uint64_t> live_per_lcore;
  std::map<std::pair<VipKey, IpAddress>, std::uint64_t> active;  // by (service, backend)
  std::vector<std::pair<unsigned, FlowSample>> sample;           // (worker index, flow)
};

// What the control thread itself sent and learned (read and written on the control thread only).
struct ControlTraffic {
  std::uint64_t arp_requests_sent = 0;
  std::uint64_t gratuitous_arp_sent = 0;
  std::uint64_t arp_replies_read = 0;    // punted replies that were well-formed
  std::uint64_t neighbours_learned = 0;  // replies that taught a new entry or a new MAC
  std::uint64_t control_tx_dropped = 0;  // frames not sent: no mbuf or the ring to worker 0 full
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
  // Control thread only. Owned VIPs of config `version` are answered `for_ms` from now; refused
  // (with the reason) when another version is applied, the applied config has no owned_for_ms,
  // or its ownership lapsed already (the controller then applies its config again).
  std::string renew(std::uint64_t version, std::uint32_t for_ms);
  boost::json::object status() const;
  // Counters, with the active flows per lcore and per service/backend from a flow scan.
  boost::json::object counters();
  // Up to `limit` flows (the first found on each lcore, in table order) and the active counts.
  boost::json::object flows(std::size_t limit);
  // Control thread, every few hundred milliseconds: reads punted ARP replies, sends the ARP
  // requests and gratuitous ARP that are due, republishes the snapshot when a neighbour was
  // learned or forgotten, and drops the owned VIPs whose deadline passed without a renew.
  void housekeeping();

 private:
  struct PortRuntime {
    std::uint16_t port_id = 0;
    PortSettings settings;
    MacAddress mac;
  };

  void setup();
  void setup_ports();
  void set_port_mac(PortRuntime& port, const MacAddress& wanted);
  // The snapshot of `config` on this node's ports (neighbours learned so far kept).
  SnapshotBuildResult build_from(const ControlConfig& config);
  // Stops the ports and gives back what setup took, EAL last; safe on a half-done setup.
  void release();
  void worker(unsigned worker_index);
  static int launch(void* self_and_index);
  void publish(std::unique_ptr<const Snapshot> snapshot);
  void fold_traffic(const Published& retired);
  // Publishes the current snapshot again with the static and learned neighbours.
  void republish_neighbours();
  // Queues `frame` for worker 0 to send out of port `port` (an index into ports_).
  bool send_from_control(std::size_t port, const std::uint8_t* frame, std::size_t length);
  void send_arp_requests(const std::vector<IpAddress>& targets);
  void announce(const std::vector<IpAddress>& vips, std::uint64_t now_ms);
  static std::uint64_t control_clock_ms();
  // Asks every worker to walk its table and waits for them (flow_scan_timeout_ms at most).
  FlowCensus scan_flows(std::size_t sample_limit);
  void walk_flows(unsigned worker_index, const LcoreState& state, std::uint64_t now_ms);

  struct Announcement {
    IpAddress vip;
    std::uint64_t due_ms = 0;
    unsigned left = 0;
  };

  DataplaneSettings settings_;
  bool huge_ = false;
  std::vector<PortRuntime> ports_;
  rte_mempool* pool_ = nullptr;
  rte_rcu_qsbr* rcu_ = nullptr;
  std::vector<unsigned> worker_lcores_;
  std::vector<std::unique_ptr<LcoreState>> lcore_states_;
  std::unique_ptr<WorkerExtra[]> extras_;
  std::unique_ptr<FlowScan[]> scans_;
  std::uint64_t scan_sequence_ = 0;
  std::atomic<const Published*> current_{nullptr};
  std::unique_ptr<Published> owned_current_;  // control thread's handle on current_
  // Traffic of backends in retired snapshots, by (service, backend address).
  std::map<std::pair<VipKey, IpAddress>, BackendTraffic> retired_traffic_;
  rte_ring* punt_ring_ = nullptr;        // workers (many) -> control thread
  rte_ring* control_tx_ring_ = nullptr;  // control thread -> worker 0
  ControlConfig applied_;                // the control side's config as last applied
  // When the applied config has owned_for_ms: until when (control clock) its owned VIPs are
  // answered; lapsed once that passed and they were dropped (until the next apply).
  std::optional<std::uint64_t> owned_until_ms_;
  bool ownership_lapsed_ = false;
  std::uint64_t ownership_lapses_ = 0;
  NeighbourResolver resolver_;
  std::vector<Announcement> announcements_;
  ControlTraffic control_traffic_;
  std::atomic<bool> stopping_{false};
  bool eal_ready_ = false;
};

}  // namespace stacknode::dataplane
