// Throughput benchmark of the dataplane's fast path on one lcore (issue 3), with its ceiling
// measured side by side in the same run (DESIGN.md, benchmarks). Not a test: it prints figures,
// it asserts only that the packets went where they should.
//
// Method:
//  - EAL on one lcore (the first CPU the process may run on: pin it with taskset), --no-pci,
//    --no-shconf, its own --file-prefix, --no-telemetry; its runtime dir is removed at exit.
//    Memory: --no-huge (4 KiB pages), or with --huge-dir DIR 2 MiB pages from that hugetlbfs
//    mount, as the daemon takes them where they are mounted (tools/bench/dataplane mounts and
//    reserves them when it runs as root).
//  - Two real DPDK ports from the ring PMD (rte_eth_from_rings): "front", whose receive ring the
//    benchmark fills, and "service", whose transmit ring collects what the worker sends. Every
//    chunk of chunk_packets prebuilt 64-byte frames (60 bytes + the FCS a NIC would add) is put on
//    the front receive ring, the worker loop runs until both receive rings are empty, and the
//    time of that loop is measured (TSC). Between chunks, untimed, the frames that came out of
//    the service port go back to the front receive ring, each rewritten to a fresh frame of the
//    next flow: the same refill for every case, so it is outside the figures and the ratios.
//  - Baseline (the ceiling): rte_eth_rx_burst -> rte_eth_tx_burst over both ports, burst_size as
//    the runtime, nothing else.
//  - LB: the runtime's worker loop (src/runtime.cpp, Runtime::worker) re-stated around the
//    runtime's own per-burst path (src/worker_path.hpp: process_packet, the verdict applied to
//    the mbuf, per-backend traffic counters, transmit buffers per port) on a real Snapshot from
//    build_snapshot (16 backends, IPIP, 65537 entries): per pass an rte_rcu quiescent state, the
//    published snapshot read with acquire, the clock from the TSC, the flow-scan request check,
//    worker 0's (empty) control ring. Cases:
//      established: 1000 TCP flows, ACKs, the connection table (the daemon's default 2^20 flows)
//                   warmed first, so every packet finds its flow;
//      syn:         every packet a SYN of a new flow (client address and port never repeat), on
//                   the daemon's default table warmed with as many SYNs as it holds, so it is the
//                   steady state of a SYN flood: the table is full and every insert evicts (the
//                   evictions are counted and reported);
//      1m_flows:    2^20 established flows, in a table of twice that (README: size capacity at
//                   about twice the flows), warmed with every flow first.
//  - Rounds: each round runs baseline, established, syn, 1m_flows for case_seconds of timed
//    loop each; figures are the medians over rounds. The Maglev build (maglev_workload.hpp) is
//    timed after the rounds.
//
// Prints one JSON line (stdout); progress and per-round figures go to stderr.
// Usage: lb_bench [--quick] [--rounds N] [--seconds S] [--only CASE] [--huge-dir DIR]
//   --quick: 3 rounds of 0.1 s per case; --only baseline|established|syn|1m_flows|maglev runs one
//   case (for profiling: perf record -e cpu-clock lb_bench --only established).
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "maglev_workload.hpp"
#include "runtime.hpp"  // burst_size, mbuf_cache_size, BackendTraffic, Published: the runtime's own
#include "worker_path.hpp"  // the worker's per-burst path, the same code the daemon runs
#include "stacknode/dataplane/flow_hash.hpp"
#include "stacknode/dataplane/packet.hpp"
#include "stacknode/dataplane/snapshot.hpp"

namespace stacknode::dataplane::bench {
namespace {

// ---- Limits and sizes ----------------------------------------------------------------------
// A minimum Ethernet frame is 64 bytes on the wire, of which the NIC adds the 4-byte FCS: the
// mbuf holds 60 (14 Ethernet + 20 IPv4 + 20 TCP + 6 padding).
constexpr std::uint32_t frame_bytes = 60;
constexpr std::uint32_t wire_frame_bytes = 64;
// Frames per timed chunk: one receive ring's worth, like the runtime's rx_descriptors.
constexpr std::uint32_t chunk_packets = rx_descriptors;
constexpr unsigned ring_size = 2 * chunk_packets;  // power of two, holds a chunk (capacity - 1)
// Enough for a chunk in flight plus the pool's per-lcore cache and a burst per port.
constexpr unsigned mbuf_count = 2 * chunk_packets + mbuf_cache_size + 2 * burst_size - 1;
constexpr unsigned eal_memory_mb = 128;
constexpr std::size_t port_count = 2;
constexpr std::uint16_t front = 0;    // snapshot port indexes
constexpr std::uint16_t service = 1;
constexpr std::uint32_t backend_count = 16;
constexpr std::uint32_t few_flows = 1000;
constexpr std::uint32_t many_flows = 1u << 20;
constexpr std::uint32_t many_flows_capacity = 2 * many_flows;
constexpr std::uint32_t default_capacity = default_conn_table_capacity;  // the daemon's flows_per_lcore
constexpr int default_rounds = 7;
constexpr double default_case_seconds = 0.5;
constexpr int quick_rounds = 3;
constexpr double quick_case_seconds = 0.1;
constexpr int quick_maglev_runs = 7;
// Client flows: address 198.19.x.y (the benchmarking range, RFC 2544) from the low 16 bits of the
// flow number, source port client_port_base + the rest: 2^16 * 64512 distinct flows.
constexpr std::uint16_t client_port_base = 1024;
constexpr std::uint64_t distinct_flows = (std::uint64_t{1} << 16) * (65536 - client_port_base);
// Anchors (issue 3).
constexpr double line_rate_10g_mpps = 14.88;  // 10 GbE, 64-byte frames
constexpr double dpvs_worker_mpps = 2.9;      // DPVS, per worker
constexpr double maglev_thread_mpps = 3.0;    // Maglev paper, per thread (about)
constexpr double goal_established_mpps = 10.0;
constexpr double goal_syn_mpps = 5.0;

constexpr std::uint8_t tcp_ack = 0x10;
constexpr std::uint8_t tcp_syn = 0x02;
constexpr std::uint16_t vip_port = 80;
constexpr std::array<std::uint8_t, 6> front_mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr std::array<std::uint8_t, 6> service_mac = {0x02, 0x00, 0x00, 0x00, 0x01, 0x01};
constexpr std::array<std::uint8_t, 6> router_mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0xfe};
constexpr std::array<std::uint8_t, 4> vip = {198, 18, 0, 100};
constexpr std::array<std::uint8_t, 4> outer_source = {198, 18, 1, 101};
constexpr std::uint8_t first_backend_host = 11;  // backends 198.18.1.11 .. 198.18.1.26

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string dpdk_error(int error) { return rte_strerror(error < 0 ? -error : error); }

// ---- Frames ------------------------------------------------------------------------------------

std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}
std::uint32_t sum_words(const std::uint8_t* bytes, std::size_t size) {  // big-endian 16-bit words
  std::uint32_t sum = 0;
  for (std::size_t index = 0; index + 1 < size; index += 2) sum += (bytes[index] << 8) | bytes[index + 1];
  return sum;
}
void put16(std::uint8_t* at, std::uint16_t value) {
  at[0] = static_cast<std::uint8_t>(value >> 8);
  at[1] = static_cast<std::uint8_t>(value);
}
std::uint16_t get16(const std::uint8_t* at) { return static_cast<std::uint16_t>((at[0] << 8) | at[1]); }

constexpr std::size_t ip_offset = 14;
constexpr std::size_t tcp_offset = ip_offset + 20;
constexpr std::size_t ip_checksum_at = ip_offset + 10;
constexpr std::size_t ip_source_low_at = ip_offset + 14;  // the last two bytes of the source
constexpr std::size_t tcp_source_port_at = tcp_offset;
constexpr std::size_t tcp_checksum_at = tcp_offset + 16;

// A client's TCP segment to the VIP with the flow-specific fields (the low 16 bits of the source
// address, the source port) zero and both checksums computed over it, so a flow's frame is the
// template plus those fields added into the checksums (ones' complement sums commute).
struct FrameTemplate {
  std::array<std::uint8_t, frame_bytes> bytes{};

  explicit FrameTemplate(std::uint8_t tcp_flags) {
    std::uint8_t* frame = bytes.data();
    std::memcpy(frame, front_mac.data(), 6);
    std::memcpy(frame + 6, router_mac.data(), 6);
    put16(frame + 12, 0x0800);
    std::uint8_t* ip = frame + ip_offset;
    ip[0] = 0x45;
    put16(ip + 2, 40);      // total length: headers only
    put16(ip + 4, 0x1234);  // identification
    put16(ip + 6, 0x4000);  // DF
    ip[8] = 64;             // TTL
    ip[9] = 6;              // TCP
    ip[12] = 198;           // source 198.19.0.0 (+ the flow's low 16 bits)
    ip[13] = 19;
    std::memcpy(ip + 16, vip.data(), 4);
    put16(ip + 10, static_cast<std::uint16_t>(~fold(sum_words(ip, 20))));
    std::uint8_t* tcp = frame + tcp_offset;
    put16(tcp + 2, vip_port);
    tcp[4] = 0x00, tcp[5] = 0x01, tcp[6] = 0x00, tcp[7] = 0x00;  // sequence
    tcp[12] = 5 << 4;                                           // data offset: 20 bytes
    tcp[13] = tcp_flags;
    put16(tcp + 14, 65535);  // window
    std::uint32_t pseudo = sum_words(ip + 12, 8) + 6 + 20;  // addresses, protocol, TCP length
    put16(tcp + 16, static_cast<std::uint16_t>(~fold(pseudo + sum_words(tcp, 20))));
  }

  // Writes flow `flow`'s frame at `at`.
  void write(std::uint8_t* at, std::uint64_t flow) const {
    std::memcpy(at, bytes.data(), frame_bytes);
    const auto address_low = static_cast<std::uint16_t>(flow);
    const auto port = static_cast<std::uint16_t>(client_port_base + (flow >> 16));
    put16(at + ip_source_low_at, address_low);
    put16(at + tcp_source_port_at, port);
    put16(at + ip_checksum_at,
          static_cast<std::uint16_t>(~fold(std::uint32_t{static_cast<std::uint16_t>(~get16(at + ip_checksum_at))} + address_low)));
    put16(at + tcp_checksum_at,
          static_cast<std::uint16_t>(~fold(std::uint32_t{static_cast<std::uint16_t>(~get16(at + tcp_checksum_at))} +
                                           address_low + port)));
  }
};

// Which flow the next frame belongs to: 0, 1, ... cycle - 1, 0, ... (cycle 0: never repeats).
struct FlowSequence {
  std::uint64_t next = 0;
  std::uint64_t cycle = 0;
  std::uint64_t take() {
    const std::uint64_t flow = next;
    next = (cycle != 0 && next + 1 == cycle) ? 0 : (next + 1) % distinct_flows;
    return flow;
  }
};

// ---- The configuration -------------------------------------------------------------------------

IpAddress ipv4(const std::array<std::uint8_t, 4>& bytes) {
  return IpAddress::ipv4(bytes[0], bytes[1], bytes[2], bytes[3]);
}
MacAddress mac_of(const std::array<std::uint8_t, 6>& bytes) {
  MacAddress mac;
  mac.bytes = bytes;
  return mac;
}

SnapshotConfig bench_config() {
  SnapshotConfig config;
  config.version = 1;
  PortConfig front_port;
  front_port.name = "front";
  front_port.mac = mac_of(front_mac);
  front_port.front = true;
  front_port.addresses = {IpAddress::ipv4(198, 18, 0, 3)};
  PortConfig service_port;
  service_port.name = "service";
  service_port.mac = mac_of(service_mac);
  service_port.service = true;
  service_port.addresses = {ipv4(outer_source)};
  config.ports = {front_port, service_port};
  ServiceConfig http;
  http.vip = {ipv4(vip), IpProtocol::tcp, vip_port};
  http.mode = ForwardingMode::ipip;
  for (std::uint32_t index = 0; index < backend_count; ++index) {
    const auto host = static_cast<std::uint8_t>(first_backend_host + index);
    http.backends.push_back({IpAddress::ipv4(198, 18, 1, host), 1, BackendState::active});
    config.neighbours.push_back(
        {IpAddress::ipv4(198, 18, 1, host), mac_of({0x02, 0x00, 0x00, 0x00, 0x01, host})});
  }
  config.services = {http};
  config.owned_vips = {ipv4(vip)};
  config.gateway = IpAddress::ipv4(198, 18, 1, 1);
  config.neighbours.push_back({IpAddress::ipv4(198, 18, 1, 1), mac_of({0x02, 0x00, 0x00, 0x00, 0x01, 0xfe})});
  return config;
}

// ---- DPDK: EAL, ports, pool --------------------------------------------------------------------

// The first CPU this process may run on (taskset picks it), as EAL's only lcore.
unsigned pinned_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) return cpu;
  }
  return 0;
}

// Ticks of one CPU from /proc/stat: all, and stolen by the hypervisor.
struct CpuTicks {
  std::uint64_t total = 0;
  std::uint64_t steal = 0;
};
CpuTicks read_cpu_ticks(unsigned cpu) {
  std::ifstream stat("/proc/stat");
  std::string line;
  const std::string name = "cpu" + std::to_string(cpu);
  CpuTicks ticks;
  while (std::getline(stat, line)) {
    std::istringstream fields(line);
    std::string label;
    fields >> label;
    if (label != name) continue;
    std::uint64_t value = 0;
    for (int field = 0; fields >> value && field < 8; ++field) {  // user .. steal
      ticks.total += value;
      if (field == 7) ticks.steal = value;
    }
  }
  return ticks;
}

struct Dpdk {
  std::string runtime_dir;
  rte_mempool* pool = nullptr;
  rte_ring* rx_rings[port_count] = {};
  rte_ring* tx_rings[port_count] = {};
  std::uint16_t port_ids[port_count] = {};
  bool ports_started[port_count] = {};
  rte_rcu_qsbr* rcu = nullptr;
  rte_ring* control_tx = nullptr;  // worker 0's ring of control-thread frames, empty here
  bool eal_up = false;

  Dpdk(unsigned lcore, const std::string& huge_dir) {
    const std::string prefix = "stacknode-lb-bench-" + std::to_string(getpid());
    std::vector<std::string> arguments = {"lb_bench", "-l", std::to_string(lcore), "--no-pci",
                                          "--no-shconf", "--file-prefix=" + prefix, "--no-telemetry",
                                          "-m", std::to_string(eal_memory_mb), "--log-level=lib.*:warning"};
    if (huge_dir.empty()) {
      arguments.push_back("--no-huge");
    } else {
      arguments.push_back("--huge-dir=" + huge_dir);
      arguments.push_back("--in-memory");  // no files left in the mount
    }
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    if (rte_eal_init(static_cast<int>(argv.size() - 1), argv.data()) < 0) {
      runtime_dir = rte_eal_get_runtime_dir();
      remove_runtime_dir();
      throw Failure("EAL initialisation failed: " + dpdk_error(rte_errno));
    }
    eal_up = true;
    runtime_dir = rte_eal_get_runtime_dir();
    // The destructor does not run for a constructor that throws: release here what was set up.
    try {
      set_up();
    } catch (...) {
      release();
      throw;
    }
  }

  void set_up() {
    pool = rte_pktmbuf_pool_create("lb_bench_mbufs", mbuf_count, mbuf_cache_size, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   static_cast<int>(rte_socket_id()));
    if (pool == nullptr) throw Failure("cannot create the mbuf pool: " + dpdk_error(rte_errno));
    static constexpr const char* names[port_count] = {"front", "service"};
    for (std::size_t port = 0; port < port_count; ++port) {
      const std::string name(names[port]);
      rx_rings[port] = rte_ring_create(("lb_rx_" + name).c_str(), ring_size, static_cast<int>(rte_socket_id()),
                                       RING_F_SP_ENQ | RING_F_SC_DEQ);
      tx_rings[port] = rte_ring_create(("lb_tx_" + name).c_str(), ring_size, static_cast<int>(rte_socket_id()),
                                       RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (rx_rings[port] == nullptr || tx_rings[port] == nullptr) {
        throw Failure("cannot create the rings of port " + name + ": " + dpdk_error(rte_errno));
      }
      const int id = rte_eth_from_rings(("net_ring_lb_" + name).c_str(), &rx_rings[port], 1, &tx_rings[port], 1,
                                        rte_socket_id());
      if (id < 0) throw Failure("cannot create ring port " + name + ": " + dpdk_error(rte_errno));
      port_ids[port] = static_cast<std::uint16_t>(id);
      start_port(port, name);
    }
    const std::size_t rcu_bytes = rte_rcu_qsbr_get_memsize(1);
    rcu = static_cast<rte_rcu_qsbr*>(rte_zmalloc("lb_bench_rcu", rcu_bytes, RTE_CACHE_LINE_SIZE));
    if (rcu == nullptr || rte_rcu_qsbr_init(rcu, 1) != 0) throw Failure("cannot set up RCU");
    control_tx = rte_ring_create("lb_control_tx", 1024, static_cast<int>(rte_socket_id()),
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (control_tx == nullptr) throw Failure("cannot create the control ring: " + dpdk_error(rte_errno));
  }

  void start_port(std::size_t port, const std::string& name) {
    const std::uint16_t id = port_ids[port];
    rte_eth_conf conf{};
    if (const int error = rte_eth_dev_configure(id, 1, 1, &conf); error != 0) {
      throw Failure("port " + name + ": configure: " + dpdk_error(error));
    }
    if (const int error = rte_eth_rx_queue_setup(id, 0, chunk_packets, rte_socket_id(), nullptr, pool); error != 0) {
      throw Failure("port " + name + ": rx queue: " + dpdk_error(error));
    }
    if (const int error = rte_eth_tx_queue_setup(id, 0, chunk_packets, rte_socket_id(), nullptr); error != 0) {
      throw Failure("port " + name + ": tx queue: " + dpdk_error(error));
    }
    if (const int error = rte_eth_dev_start(id); error != 0) {
      throw Failure("port " + name + ": start: " + dpdk_error(error));
    }
    ports_started[port] = true;
  }

  void remove_runtime_dir() const {
    std::error_code ignored;
    if (runtime_dir.find("stacknode-lb-bench-") != std::string::npos) std::filesystem::remove_all(runtime_dir, ignored);
  }

  ~Dpdk() { release(); }
  Dpdk(const Dpdk&) = delete;
  Dpdk& operator=(const Dpdk&) = delete;

  void release() {
    for (std::size_t port = 0; port < port_count; ++port) {
      if (ports_started[port]) {
        rte_eth_dev_stop(port_ids[port]);
        rte_eth_dev_close(port_ids[port]);
      }
    }
    for (rte_ring* ring : {rx_rings[0], rx_rings[1], tx_rings[0], tx_rings[1], control_tx}) {
      if (ring == nullptr) continue;
      void* left = nullptr;
      while (rte_ring_dequeue(ring, &left) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(left));
      rte_ring_free(ring);
    }
    rte_free(rcu);
    if (pool != nullptr) rte_mempool_free(pool);
    std::fill(std::begin(ports_started), std::end(ports_started), false);
    std::fill(std::begin(rx_rings), std::end(rx_rings), nullptr);
    std::fill(std::begin(tx_rings), std::end(tx_rings), nullptr);
    control_tx = nullptr;
    rcu = nullptr;
    pool = nullptr;
    if (!eal_up) return;
    rte_eal_cleanup();
    eal_up = false;
    remove_runtime_dir();
  }
};

// ---- The cases -----------------------------------------------------------------------------------

// One load-balancing case: its own snapshot (as the runtime publishes it), lcore state and flows.
struct LbCase {
  std::string name;
  Published published;
  std::atomic<const Published*> current{nullptr};
  std::unique_ptr<LcoreState> state;
  WorkerExtra extra;
  FlowScan scan;  // the runtime's flow-scan request, checked every pass; never raised here
  FrameTemplate frame;
  FlowSequence flows;

  LbCase(std::string case_name, std::uint32_t capacity, std::uint8_t tcp_flags, std::uint64_t cycle)
      : name(std::move(case_name)), frame(tcp_flags) {
    SnapshotBuildResult built = build_snapshot(bench_config());
    if (!built.snapshot) throw Failure("the benchmark's config is refused: " + built.error);
    published.backend_count = built.snapshot->backends().size();
    published.snapshot = std::move(built.snapshot);
    published.traffic = std::make_unique<BackendTraffic[]>(published.backend_count);
    current.store(&published, std::memory_order_release);
    ConnTableConfig table;
    table.capacity = capacity;
    state = std::make_unique<LcoreState>(table);
    flows.cycle = cycle;
  }
};

// Puts chunk_packets fresh frames on the front port's receive ring: the mbufs the last chunk sent
// (found on the transmit rings), topped up from the pool, each reset to the next flow's frame.
// Not timed; the same for every case.
void refill(Dpdk& dpdk, const FrameTemplate& frame, FlowSequence& flows) {
  rte_mbuf* mbufs[chunk_packets];
  unsigned count = 0;
  for (rte_ring* ring : dpdk.tx_rings) {
    count += rte_ring_dequeue_burst(ring, reinterpret_cast<void**>(mbufs + count), chunk_packets - count, nullptr);
  }
  if (count < chunk_packets &&
      rte_pktmbuf_alloc_bulk(dpdk.pool, mbufs + count, chunk_packets - count) != 0) {
    throw Failure("the mbuf pool ran dry: frames are being lost");
  }
  for (rte_mbuf* mbuf : mbufs) {
    mbuf->data_off = RTE_PKTMBUF_HEADROOM;
    mbuf->data_len = static_cast<std::uint16_t>(frame_bytes);
    mbuf->pkt_len = frame_bytes;
    frame.write(rte_pktmbuf_mtod(mbuf, std::uint8_t*), flows.take());
  }
  if (rte_ring_enqueue_bulk(dpdk.rx_rings[front], reinterpret_cast<void**>(mbufs), chunk_packets, nullptr) !=
      chunk_packets) {
    throw Failure("the front receive ring cannot take a chunk");
  }
}

// The ceiling: receive -> transmit over the same ports, nothing else. Returns TSC cycles. (Not
// inlined, here and in lb_chunk: the timed loops stay functions of their own in a profile.)
[[gnu::noinline]] std::uint64_t baseline_chunk(Dpdk& dpdk) {
  rte_mbuf* received[burst_size];
  const std::uint64_t start = rte_rdtsc();
  for (;;) {
    unsigned total = 0;
    for (std::size_t port = 0; port < port_count; ++port) {
      const std::uint16_t count = rte_eth_rx_burst(dpdk.port_ids[port], 0, received, burst_size);
      if (count == 0) continue;
      total += count;
      const std::uint16_t out = dpdk.port_ids[port_count - 1 - port];
      const std::uint16_t sent = rte_eth_tx_burst(out, 0, received, count);
      if (sent < count) rte_pktmbuf_free_bulk(received + sent, count - sent);
    }
    if (total == 0) break;
  }
  return rte_rdtsc() - start;
}

// Runtime::worker's loop for one lcore (src/runtime.cpp), with its per-burst path
// (worker_path.hpp) itself, until the receive rings are empty. Punted frames have no control
// thread to go to: handle_burst frees and counts them. Returns TSC cycles.
[[gnu::noinline]] std::uint64_t lb_chunk(Dpdk& dpdk, LbCase& lb, std::uint64_t cycles_per_ms) {
  constexpr unsigned worker_index = 0;
  constexpr std::uint16_t queue = 0;
  rte_mbuf* received[burst_size];
  TransmitBuffers transmit(dpdk.port_ids, port_count, queue, lb.extra);

  const std::uint64_t start = rte_rdtsc();
  for (;;) {
    rte_rcu_qsbr_quiescent(dpdk.rcu, worker_index);
    const Published& published = *lb.current.load(std::memory_order_acquire);
    const Snapshot& snapshot = *published.snapshot;
    BackendTraffic* traffic = published.traffic_of(worker_index);
    const std::uint64_t now_ms = rte_get_tsc_cycles() / cycles_per_ms;
    if (lb.scan.requested.load(std::memory_order_acquire) !=
        lb.scan.finished.load(std::memory_order_relaxed)) {
      throw Failure("a flow scan was requested");  // never: nothing here asks for one
    }
    send_control_frames(dpdk.control_tx, received, transmit);  // empty here; worker 0 looks
    unsigned total = 0;
    for (std::size_t port = 0; port < port_count; ++port) {
      const std::uint16_t count = rte_eth_rx_burst(dpdk.port_ids[port], queue, received, burst_size);
      if (count == 0) continue;
      total += count;
      handle_burst(snapshot, *lb.state, lb.extra, traffic, port, received, count, now_ms, nullptr,
                   transmit);
    }
    if (total == 0) break;
  }
  return rte_rdtsc() - start;
}

// What a case's counters say about a stretch of its packets.
struct LbCounts {
  std::uint64_t forwarded = 0, drops = 0, new_flows = 0, evictions = 0, tx_dropped = 0, punted = 0;
  static LbCounts of(const LbCase& lb) {
    return {lb.state->counters.forwarded_packets, lb.state->counters.total_drops(), lb.state->counters.new_flows,
            lb.state->flows.stats().evictions, lb.extra.tx_dropped, lb.extra.punt_dropped};
  }
};

struct Measurement {
  double mpps = 0;
  std::uint64_t packets = 0;
};

class Bench {
 public:
  Bench(Dpdk& dpdk, double case_seconds) : dpdk_(dpdk), case_seconds_(case_seconds) {
    tsc_hz_ = rte_get_tsc_hz();
    cycles_per_ms_ = std::max<std::uint64_t>(tsc_hz_ / 1000, 1);
    baseline_frame_ = std::make_unique<FrameTemplate>(tcp_ack);
    baseline_flows_.cycle = few_flows;
  }

  std::uint64_t tsc_hz() const { return tsc_hz_; }

  Measurement baseline() {
    return measure([&] {
      refill(dpdk_, *baseline_frame_, baseline_flows_);
      const std::uint64_t cycles = baseline_chunk(dpdk_);
      if (rte_ring_count(dpdk_.tx_rings[service]) != chunk_packets) {
        throw Failure("baseline: frames did not all come out of the service port");
      }
      return cycles;
    });
  }

  Measurement lb(LbCase& lb) {
    const LbCounts before = LbCounts::of(lb);
    const Measurement result = measure([&] {
      refill(dpdk_, lb.frame, lb.flows);
      return lb_chunk(dpdk_, lb, cycles_per_ms_);
    });
    check_all_forwarded(lb, before, result.packets);
    return result;
  }

  // Sends `packets` (whole chunks) through a case, untimed: fills its connection table.
  void warm(LbCase& lb, std::uint64_t packets) {
    const LbCounts before = LbCounts::of(lb);
    std::uint64_t sent = 0;
    for (; sent < packets; sent += chunk_packets) {
      refill(dpdk_, lb.frame, lb.flows);
      lb_chunk(dpdk_, lb, cycles_per_ms_);
    }
    check_all_forwarded(lb, before, sent);
  }

  // One forwarded frame, checked: IPIP from the service port's address to a backend, the inner
  // packet intact but for its TTL. Catches a benchmark that measures drops.
  void check_one_frame(LbCase& lb) {
    refill(dpdk_, lb.frame, lb.flows);
    lb_chunk(dpdk_, lb, cycles_per_ms_);
    rte_mbuf* mbuf = nullptr;
    if (rte_ring_dequeue(dpdk_.tx_rings[service], reinterpret_cast<void**>(&mbuf)) != 0) {
      throw Failure(lb.name + ": nothing came out of the service port");
    }
    const std::uint8_t* bytes = rte_pktmbuf_mtod(mbuf, const std::uint8_t*);
    const std::uint8_t* outer = bytes + ip_offset;
    const std::uint8_t* inner = outer + 20;
    const bool ok = rte_pktmbuf_data_len(mbuf) == frame_bytes - 6 + 20 && get16(bytes + 12) == 0x0800 &&
                    std::memcmp(bytes + 6, service_mac.data(), 6) == 0 && outer[9] == 4 &&
                    std::memcmp(outer + 12, outer_source.data(), 4) == 0 && outer[16] == 198 && outer[17] == 18 &&
                    outer[18] == 1 && outer[19] >= first_backend_host &&
                    outer[19] < first_backend_host + backend_count && fold(sum_words(outer, 20)) == 0xffff &&
                    inner[8] == 63 && fold(sum_words(inner, 20)) == 0xffff &&
                    std::memcmp(inner + 16, vip.data(), 4) == 0;
    rte_pktmbuf_free(mbuf);  // refill takes a fresh one from the pool
    if (!ok) throw Failure(lb.name + ": the forwarded frame is not the expected IPIP frame");
  }

 private:
  template <typename Chunk>
  Measurement measure(Chunk&& chunk) {
    const auto budget = static_cast<std::uint64_t>(case_seconds_ * static_cast<double>(tsc_hz_));
    std::uint64_t cycles = 0, packets = 0;
    while (cycles < budget) {
      cycles += chunk();
      packets += chunk_packets;
    }
    return {static_cast<double>(packets) * static_cast<double>(tsc_hz_) / static_cast<double>(cycles) / 1e6,
            packets};
  }

  void check_all_forwarded(const LbCase& lb, const LbCounts& before, std::uint64_t packets) const {
    const LbCounts after = LbCounts::of(lb);
    if (after.forwarded - before.forwarded != packets || after.drops != before.drops ||
        after.tx_dropped != before.tx_dropped || after.punted != before.punted) {
      throw Failure(lb.name + ": " + std::to_string(packets) + " frames in, " +
                    std::to_string(after.forwarded - before.forwarded) + " forwarded, " +
                    std::to_string(after.drops - before.drops) + " dropped, " +
                    std::to_string(after.tx_dropped - before.tx_dropped) + " not transmitted");
    }
  }

  Dpdk& dpdk_;
  double case_seconds_;
  std::uint64_t tsc_hz_ = 0;
  std::uint64_t cycles_per_ms_ = 1;
  std::unique_ptr<FrameTemplate> baseline_frame_;
  FlowSequence baseline_flows_;
};

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

std::string list(const std::vector<double>& values) {
  std::string text;
  char number[32];
  for (double value : values) {
    std::snprintf(number, sizeof number, "%s%.2f", text.empty() ? "" : " ", value);
    text += number;
  }
  return text;
}

struct Options {
  int rounds = default_rounds;
  double case_seconds = default_case_seconds;
  int maglev_runs = maglev_default_runs;
  std::string only;      // empty: every case
  std::string huge_dir;  // empty: --no-huge
  bool wants(const char* name) const { return only.empty() || only == name; }
};

Options parse(int argc, char** argv) {
  Options options;
  const std::string usage =
      "usage: lb_bench [--quick] [--rounds N] [--seconds S] [--only baseline|established|syn|1m_flows|maglev] "
      "[--huge-dir DIR]";
  for (int index = 1; index < argc; ++index) {
    const std::string argument = argv[index];
    const bool has_value = index + 1 < argc;
    if (argument == "--quick") {
      options.rounds = quick_rounds;
      options.case_seconds = quick_case_seconds;
      options.maglev_runs = quick_maglev_runs;
    } else if (argument == "--rounds" && has_value) {
      options.rounds = std::max(1, std::atoi(argv[++index]));
    } else if (argument == "--seconds" && has_value) {
      options.case_seconds = std::max(0.001, std::atof(argv[++index]));
    } else if (argument == "--huge-dir" && has_value) {
      options.huge_dir = argv[++index];
    } else if (argument == "--only" && has_value) {
      options.only = argv[++index];
      if (options.only != "baseline" && options.only != "established" && options.only != "syn" &&
          options.only != "1m_flows" && options.only != "maglev") {
        throw Failure(usage);
      }
    } else {
      throw Failure(usage);
    }
  }
  return options;
}

int run(int argc, char** argv) {
  const Options options = parse(argc, argv);
  const unsigned cpu = pinned_cpu();
  Dpdk dpdk(cpu, options.huge_dir);
  Bench bench(dpdk, options.case_seconds);
  rte_rcu_qsbr_thread_register(dpdk.rcu, 0);
  rte_rcu_qsbr_thread_online(dpdk.rcu, 0);
  std::fprintf(stderr, "lb_bench: lcore %u, TSC %.3f GHz, %u-frame chunks of %u-byte frames, burst %u, %d rounds x %.2f s per case\n",
               cpu, static_cast<double>(bench.tsc_hz()) / 1e9, chunk_packets, wire_frame_bytes, burst_size,
               options.rounds, options.case_seconds);

  // Setup and warm-up of the load-balancing cases (not timed).
  std::unique_ptr<LbCase> established, syn, large;
  if (options.wants("established")) {
    established = std::make_unique<LbCase>("established", default_capacity, tcp_ack, few_flows);
    bench.check_one_frame(*established);
    bench.warm(*established, few_flows);
  }
  if (options.wants("syn")) {
    syn = std::make_unique<LbCase>("syn", default_capacity, tcp_syn, 0);
    bench.check_one_frame(*syn);
    bench.warm(*syn, default_capacity);
  }
  if (options.wants("1m_flows")) {
    std::fprintf(stderr, "lb_bench: warming %u flows\n", many_flows);
    large = std::make_unique<LbCase>("1m_flows", many_flows_capacity, tcp_ack, many_flows);
    bench.check_one_frame(*large);
    bench.warm(*large, many_flows);
  }
  const std::uint64_t warm_evictions = large ? large->state->flows.stats().evictions : 0;

  std::vector<double> baseline_runs, established_runs, syn_runs, large_runs;
  LbCounts syn_before, large_before, established_before;
  if (syn) syn_before = LbCounts::of(*syn);
  if (large) large_before = LbCounts::of(*large);
  if (established) established_before = LbCounts::of(*established);
  std::uint64_t syn_packets = 0, large_packets = 0, established_packets = 0;
  const CpuTicks ticks_before = read_cpu_ticks(cpu);
  for (int round = 1; round <= options.rounds; ++round) {
    std::string line;
    char figure[64];
    if (options.wants("baseline")) {
      baseline_runs.push_back(bench.baseline().mpps);
      std::snprintf(figure, sizeof figure, " baseline %.2f", baseline_runs.back());
      line += figure;
    }
    const auto run_case = [&](LbCase* lb, std::vector<double>& runs, std::uint64_t& packets) {
      if (lb == nullptr) return;
      const Measurement measured = bench.lb(*lb);
      runs.push_back(measured.mpps);
      packets += measured.packets;
      std::snprintf(figure, sizeof figure, " %s %.2f", lb->name.c_str(), measured.mpps);
      line += figure;
    };
    run_case(established.get(), established_runs, established_packets);
    run_case(syn.get(), syn_runs, syn_packets);
    run_case(large.get(), large_runs, large_packets);
    if (!line.empty()) std::fprintf(stderr, "lb_bench: round %d/%d (Mpps):%s\n", round, options.rounds, line.c_str());
  }
  const CpuTicks ticks_after = read_cpu_ticks(cpu);
  rte_rcu_qsbr_thread_offline(dpdk.rcu, 0);
  rte_rcu_qsbr_thread_unregister(dpdk.rcu, 0);

  MaglevTiming maglev;
  if (options.wants("maglev")) {
    maglev = time_maglev_builds(options.maglev_runs);
    if (!maglev.error.empty()) throw Failure("Maglev build failed: " + maglev.error);
    std::fprintf(stderr, "lb_bench: Maglev build (65537 entries, 1000 backends): median %.3f ms, min %.3f, max %.3f over %d\n",
                 maglev.median_ms, maglev.min_ms, maglev.max_ms, maglev.runs);
  }

  const double baseline_mpps = median(baseline_runs);
  const double established_mpps = median(established_runs);
  const double syn_mpps = median(syn_runs);
  const double large_mpps = median(large_runs);
  const auto ratio = [&](double value) { return baseline_mpps > 0 ? value / baseline_mpps : 0.0; };
  const auto per_packet = [](std::uint64_t count, std::uint64_t packets) {
    return packets > 0 ? static_cast<double>(count) / static_cast<double>(packets) : 0.0;
  };
  const LbCounts syn_after = syn ? LbCounts::of(*syn) : LbCounts{};
  const LbCounts large_after = large ? LbCounts::of(*large) : LbCounts{};
  const LbCounts established_after = established ? LbCounts::of(*established) : LbCounts{};
  const std::uint64_t tick_total = ticks_after.total - ticks_before.total;
  const double steal_percent =
      tick_total > 0 ? 100.0 * static_cast<double>(ticks_after.steal - ticks_before.steal) / static_cast<double>(tick_total) : 0.0;
  if (!baseline_runs.empty()) std::fprintf(stderr, "lb_bench: baseline runs [%s]\n", list(baseline_runs).c_str());
  if (established) std::fprintf(stderr, "lb_bench: established runs [%s]\n", list(established_runs).c_str());
  if (syn) std::fprintf(stderr, "lb_bench: syn runs [%s]\n", list(syn_runs).c_str());
  if (large) std::fprintf(stderr, "lb_bench: 1m_flows runs [%s] (warm-up evicted %llu of %u flows)\n",
                          list(large_runs).c_str(), static_cast<unsigned long long>(warm_evictions), many_flows);
  std::fprintf(stderr, "lb_bench: hypervisor steal on cpu %u during the rounds: %.1f%%\n", cpu, steal_percent);

  std::printf(
      "{\"baseline_mpps\":%.2f,\"lb_established_mpps\":%.2f,\"lb_syn_mpps\":%.2f,\"lb_1m_flows_mpps\":%.2f,"
      "\"maglev_build_ms_65537_1000\":%.3f,"
      "\"ratio_established\":%.3f,\"ratio_syn\":%.3f,\"ratio_1m_flows\":%.3f,"
      "\"established_vs_line_rate\":%.2f,\"established_vs_dpvs\":%.2f,\"established_vs_maglev\":%.2f,"
      "\"established_new_flows_per_packet\":%.4f,\"syn_new_flows_per_packet\":%.4f,"
      "\"syn_evictions_per_packet\":%.4f,\"1m_flows_new_flows_per_packet\":%.4f,"
      "\"maglev_build_min_ms\":%.3f,\"maglev_runs\":%d,"
      "\"rounds\":%d,\"case_seconds\":%.2f,\"frame_bytes\":%u,\"burst\":%u,\"backends\":%u,\"lcore\":%u,"
      "\"hugepages\":%s,\"steal_percent\":%.1f,"
      "\"anchors\":{\"line_rate_10g_mpps\":%.2f,\"dpvs_worker_mpps\":%.1f,\"maglev_thread_mpps\":%.1f,"
      "\"maglev_paper_build_ms\":%.1f},"
      "\"goals\":{\"established_mpps\":%.1f,\"syn_mpps\":%.1f,\"maglev_build_ms\":%.1f}}\n",
      baseline_mpps, established_mpps, syn_mpps, large_mpps, maglev.median_ms, ratio(established_mpps), ratio(syn_mpps),
      ratio(large_mpps), established_mpps / line_rate_10g_mpps, established_mpps / dpvs_worker_mpps,
      established_mpps / maglev_thread_mpps,
      per_packet(established_after.new_flows - established_before.new_flows, established_packets),
      per_packet(syn_after.new_flows - syn_before.new_flows, syn_packets),
      per_packet(syn_after.evictions - syn_before.evictions, syn_packets),
      per_packet(large_after.new_flows - large_before.new_flows, large_packets), maglev.min_ms, maglev.runs,
      options.rounds, options.case_seconds, wire_frame_bytes, burst_size, backend_count, cpu,
      options.huge_dir.empty() ? "false" : "true", steal_percent,
      line_rate_10g_mpps, dpvs_worker_mpps, maglev_thread_mpps, maglev_paper_build_ms, goal_established_mpps,
      goal_syn_mpps, maglev_goal_build_ms);
  return 0;
}

}  // namespace
}  // namespace stacknode::dataplane::bench

int main(int argc, char** argv) {
  try {
    return stacknode::dataplane::bench::run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "lb_bench: FAILED: %s\n", error.what());
    return 1;
  }
}
