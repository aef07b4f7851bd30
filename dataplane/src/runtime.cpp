// The DPDK shell: EAL and port setup, the worker loop, snapshot publication and counters. See
// runtime.hpp; the packet logic itself is process_packet() in the core library.
#include "runtime.hpp"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "stacknode/common/log.hpp"
#include "stacknode/dataplane/arp.hpp"
#include "worker_path.hpp"

namespace stacknode::dataplane {
namespace {

namespace json = boost::json;

// Bytes an mbuf holds beyond its headroom: the largest frame of the largest MTU, tagged.
constexpr std::uint32_t frame_overhead_bytes = ethernet_header_bytes + vlan_tag_bytes + 4;  // + FCS
static_assert(RTE_PKTMBUF_HEADROOM >= encap_headroom_bytes, "process_packet needs its headroom");

std::string dpdk_error(int error) {
  return rte_strerror(error < 0 ? -error : error);
}

// EAL leaves its per-instance runtime directory behind, also when its start failed half-way;
// nothing of ours may stay. Only a directory with our file prefix is touched.
void remove_runtime_dir() {
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  std::error_code ignored;
  if (runtime_dir.find("stacknode-dataplane-") != std::string::npos)
    std::filesystem::remove_all(runtime_dir, ignored);
}

json::string_view role_name(bool front, bool service) {
  if (front && service) return "front+service";
  return front ? "front" : "service";
}

}  // namespace

Runtime::Runtime(const DataplaneSettings& settings, const EalArguments& eal)
    : settings_(settings), huge_(eal.huge) {
  std::vector<char*> argv;
  std::vector<std::string> arguments = eal.arguments;
  for (auto& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(argv.size() - 1), argv.data()) < 0) {
    remove_runtime_dir();
    throw StartupError(
        "DPDK EAL initialisation failed: " + dpdk_error(rte_errno) +
        " (EAL's own lines above say more; check dataplane.lcores, memory_mb and hugepages)");
  }
  eal_ready_ = true;
  // A failure from here on must not leave ports running or EAL files behind: the destructor does
  // not run for a constructor that throws.
  try {
    setup();
  } catch (...) {
    release();
    throw;
  }
}

// Everything after EAL: ports, RCU, per-lcore state, the first snapshot.
void Runtime::setup() {
  log::info("dataplane: EAL up with ",
            huge_ ? "hugepages" : "--no-huge (no hugepages: fine for tests, slower)", ", ",
            settings_.lcores, " worker lcore(s)");

  unsigned lcore_id = 0;
  RTE_LCORE_FOREACH(lcore_id) worker_lcores_.push_back(lcore_id);

  setup_ports();

  punt_ring_ = rte_ring_create("stacknode_punt", punt_ring_size, static_cast<int>(rte_socket_id()),
                               RING_F_SC_DEQ);
  control_tx_ring_ =
      rte_ring_create("stacknode_control_tx", control_tx_ring_size,
                      static_cast<int>(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (punt_ring_ == nullptr || control_tx_ring_ == nullptr) {
    throw StartupError("cannot create the control thread's packet rings: " + dpdk_error(rte_errno) +
                       "; raise dataplane.memory_mb");
  }

  const std::size_t rcu_bytes =
      rte_rcu_qsbr_get_memsize(static_cast<std::uint32_t>(worker_lcores_.size()));
  rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("stacknode_rcu", rcu_bytes, RTE_CACHE_LINE_SIZE));
  if (rcu_ == nullptr ||
      rte_rcu_qsbr_init(rcu_, static_cast<std::uint32_t>(worker_lcores_.size())) != 0) {
    throw StartupError("cannot set up RCU for " + std::to_string(worker_lcores_.size()) +
                       " lcores: raise dataplane.memory_mb");
  }

  ConnTableConfig table;
  table.capacity = settings_.flows_per_lcore;
  for (std::size_t index = 0; index < worker_lcores_.size(); ++index) {
    lcore_states_.push_back(std::make_unique<LcoreState>(table));
  }
  extras_ = std::make_unique<WorkerExtra[]>(worker_lcores_.size());
  scans_ = std::make_unique<FlowScan[]>(worker_lcores_.size());
  for (std::size_t index = 0; index < worker_lcores_.size(); ++index)
    scans_[index].sample.reserve(max_flow_sample);

  ControlConfig initial;
  if (!settings_.config_file.empty()) {
    std::ifstream file(settings_.config_file, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
    if (!file)
      throw StartupError("dataplane.config_file " + settings_.config_file + ": cannot read it");
    ControlConfigResult parsed = parse_control_config(text);
    if (!parsed.config)
      throw StartupError("dataplane.config_file " + settings_.config_file + ": " + parsed.error);
    initial = std::move(*parsed.config);
  }
  const std::string error = apply(initial);
  if (!error.empty()) {
    throw StartupError(settings_.config_file.empty()
                           ? "the ports' configuration is refused: " + error
                           : "dataplane.config_file " + settings_.config_file + ": " + error);
  }
}

Runtime::~Runtime() {
  release();
}

void Runtime::release() {
  for (const auto& port : ports_) {
    rte_eth_dev_stop(port.port_id);
    rte_eth_dev_close(port.port_id);
  }
  ports_.clear();
  owned_current_.reset();
  for (rte_ring* ring : {punt_ring_, control_tx_ring_}) {
    if (ring == nullptr) continue;
    void* left = nullptr;
    while (rte_ring_dequeue(ring, &left) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(left));
    rte_ring_free(ring);
  }
  punt_ring_ = control_tx_ring_ = nullptr;
  rte_free(rcu_);
  rcu_ = nullptr;
  if (pool_ != nullptr) rte_mempool_free(pool_);
  pool_ = nullptr;
  if (!eal_ready_) return;
  rte_eal_cleanup();
  eal_ready_ = false;
  remove_runtime_dir();
}

void Runtime::setup_ports() {
  const auto queues = static_cast<std::uint16_t>(worker_lcores_.size());
  std::uint16_t largest_mtu = default_port_mtu;
  for (const auto& port : settings_.ports) largest_mtu = std::max(largest_mtu, port.mtu);
  const std::uint32_t data_room = RTE_PKTMBUF_HEADROOM + largest_mtu + frame_overhead_bytes;
  const std::uint32_t buffer_size = std::max<std::uint32_t>(RTE_MBUF_DEFAULT_BUF_SIZE, data_room);
  // Every descriptor of every queue may hold an mbuf, plus each lcore's cache and bursts in hand.
  const std::uint32_t mbufs =
      static_cast<std::uint32_t>(settings_.ports.size()) * queues *
          (rx_descriptors + tx_descriptors) +
      static_cast<std::uint32_t>(worker_lcores_.size()) * (mbuf_cache_size + 4 * burst_size);
  pool_ = rte_pktmbuf_pool_create("stacknode_mbufs", mbufs, mbuf_cache_size, 0,
                                  static_cast<std::uint16_t>(buffer_size),
                                  static_cast<int>(rte_socket_id()));
  if (pool_ == nullptr) {
    throw StartupError("cannot allocate " + std::to_string(mbufs) +
                       " packet buffers: " + dpdk_error(rte_errno) + "; raise dataplane.memory_mb");
  }

  for (const auto& port : settings_.ports) {
    PortRuntime runtime;
    runtime.settings = port;
    const std::string name = port.dpdk_name();
    if (rte_eth_dev_get_port_by_name(name.c_str(), &runtime.port_id) != 0) {
      throw StartupError("port '" + port.name + "': DPDK has no device '" + name + "'" +
                         (port.is_virtual()
                              ? " (check the virtual device string and, for net_af_packet, "
                                "that the interface exists)"
                              : " (bind it first: dpdk-devbind.py --bind=vfio-pci " + name + ")"));
    }
    rte_eth_dev_info info{};
    if (const int error = rte_eth_dev_info_get(runtime.port_id, &info); error != 0) {
      throw StartupError("port '" + port.name + "': cannot read device info: " + dpdk_error(error));
    }
    if (info.max_rx_queues < queues || info.max_tx_queues < queues) {
      throw StartupError("port '" + port.name + "' offers " + std::to_string(info.max_rx_queues) +
                         " rx and " + std::to_string(info.max_tx_queues) + " tx queues, and " +
                         std::to_string(queues) +
                         " worker lcores need one each: lower dataplane.lcores" +
                         (port.is_virtual() ? " (or raise the device's qpairs=)" : ""));
    }
    rte_eth_conf conf{};
    if (queues > 1) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf =
          (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    if (const int error = rte_eth_dev_configure(runtime.port_id, queues, queues, &conf);
        error != 0) {
      throw StartupError("port '" + port.name + "': configure failed: " + dpdk_error(error));
    }
    std::uint16_t rx_ring = rx_descriptors, tx_ring = tx_descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(runtime.port_id, &rx_ring, &tx_ring);
    const int socket = rte_eth_dev_socket_id(runtime.port_id);
    for (std::uint16_t queue = 0; queue < queues; ++queue) {
      if (const int error = rte_eth_rx_queue_setup(runtime.port_id, queue, rx_ring,
                                                   static_cast<unsigned>(socket < 0 ? 0 : socket),
                                                   nullptr, pool_);
          error != 0) {
        throw StartupError("port '" + port.name + "': rx queue " + std::to_string(queue) + ": " +
                           dpdk_error(error));
      }
      if (const int error =
              rte_eth_tx_queue_setup(runtime.port_id, queue, tx_ring,
                                     static_cast<unsigned>(socket < 0 ? 0 : socket), nullptr);
          error != 0) {
        throw StartupError("port '" + port.name + "': tx queue " + std::to_string(queue) + ": " +
                           dpdk_error(error));
      }
    }
    // Some virtual devices cannot change their MTU; the snapshot's MTU still governs what we send.
    if (const int error = rte_eth_dev_set_mtu(runtime.port_id, port.mtu);
        error != 0 && error != -ENOTSUP) {
      log::warn("dataplane: port '", port.name, "': MTU ", port.mtu,
                " not set: ", dpdk_error(error));
    }
    if (const int error = rte_eth_dev_start(runtime.port_id); error != 0) {
      throw StartupError("port '" + port.name + "': start failed: " + dpdk_error(error));
    }
    rte_ether_addr mac{};
    rte_eth_macaddr_get(runtime.port_id, &mac);
    std::memcpy(runtime.mac.bytes.data(), mac.addr_bytes, mac_address_bytes);
    if (port.mac) set_port_mac(runtime, *port.mac);
    log::info("dataplane: port '", port.name, "' (", port.device, ") up as DPDK port ",
              runtime.port_id, ", MAC ", to_string(runtime.mac), ", ", queues, " queue pair(s)");
    ports_.push_back(std::move(runtime));
  }
}

// The packet path filters on the port's MAC itself, so a device that cannot take a new address
// (net_pcap, some virtual devices) still works with it in promiscuous mode.
void Runtime::set_port_mac(PortRuntime& port, const MacAddress& wanted) {
  rte_ether_addr address{};
  std::memcpy(address.addr_bytes, wanted.bytes.data(), mac_address_bytes);
  const int error = rte_eth_dev_default_mac_addr_set(port.port_id, &address);
  if (error == -ENOTSUP) {
    const int promiscuous = rte_eth_promiscuous_enable(port.port_id);
    if (promiscuous != 0 && promiscuous != -ENOTSUP) {
      throw StartupError("port '" + port.settings.name + "': the device can neither take MAC " +
                         to_string(wanted) + " nor go promiscuous: " + dpdk_error(promiscuous) +
                         " (leave dataplane.ports.mac out to keep the device's own)");
    }
    log::warn("dataplane: port '", port.settings.name,
              "': the device cannot change its MAC; it runs promiscuous and ",
              "the dataplane answers for ", to_string(wanted), " itself");
  } else if (error != 0) {
    throw StartupError("port '" + port.settings.name + "': the device refuses MAC " +
                       to_string(wanted) + ": " + dpdk_error(error) +
                       " (leave dataplane.ports.mac out to keep the device's own)");
  }
  port.mac = wanted;
}

int Runtime::launch(void* argument) {
  auto* pair = static_cast<std::pair<Runtime*, unsigned>*>(argument);
  pair->first->worker(pair->second);
  return 0;
}

void Runtime::run() {
  std::vector<std::pair<Runtime*, unsigned>> arguments;
  arguments.reserve(worker_lcores_.size());
  for (unsigned index = 0; index < worker_lcores_.size(); ++index)
    arguments.emplace_back(this, index);
  for (unsigned index = 1; index < worker_lcores_.size(); ++index) {
    rte_eal_remote_launch(&Runtime::launch, &arguments[index], worker_lcores_[index]);
  }
  worker(0);
  rte_eal_mp_wait_lcore();
}

// The fast path. Per pass: note a quiescent state, read the current snapshot, then for every port
// receive a burst, process each frame, and transmit what is to be sent, port by port.
// With dataplane.poll = "adaptive", the idle_polls-th pass in a row that received nothing, and
// every empty pass after it, ends with a sleep of idle_sleep_us (never while a flow scan is
// pending: the control thread waits for it); the first frame received puts the worker back to
// busy polling. A sleeping worker stays online for rte_rcu, so a snapshot swap (and a stop) waits
// for its next pass: idle_sleep_us at most.
void Runtime::worker(unsigned worker_index) {
  LcoreState& state = *lcore_states_[worker_index];
  WorkerExtra& extra = extras_[worker_index];
  const auto queue = static_cast<std::uint16_t>(worker_index);
  const std::size_t port_count = ports_.size();
  std::uint16_t port_ids[max_ports];
  for (std::size_t index = 0; index < port_count; ++index) port_ids[index] = ports_[index].port_id;
  const std::uint64_t cycles_per_ms = std::max<std::uint64_t>(rte_get_tsc_hz() / 1000, 1);
  const bool adaptive = settings_.poll == PollMode::adaptive;
  const std::uint32_t idle_polls = settings_.idle_polls;
  const std::uint32_t idle_sleep_us = settings_.idle_sleep_us;
  std::uint32_t empty_passes = 0;  // passes in a row that received nothing (adaptive only)

  rte_mbuf* received[burst_size];
  TransmitBuffers transmit(port_ids, port_count, queue, extra);

  rte_rcu_qsbr_thread_register(rcu_, worker_index);
  rte_rcu_qsbr_thread_online(rcu_, worker_index);
  while (!stopping_.load(std::memory_order_relaxed)) {
    rte_rcu_qsbr_quiescent(rcu_, worker_index);
    const Published& published = *current_.load(std::memory_order_acquire);
    const Snapshot& snapshot = *published.snapshot;
    BackendTraffic* traffic = published.traffic_of(worker_index);
    const std::uint64_t now_ms = rte_get_tsc_cycles() / cycles_per_ms;
    const bool scanning = scans_[worker_index].requested.load(std::memory_order_acquire) !=
                          scans_[worker_index].finished.load(std::memory_order_relaxed);
    if (scanning) walk_flows(worker_index, state, now_ms);
    if (worker_index == 0) send_control_frames(control_tx_ring_, received, transmit);
    bool received_any = false;
    for (std::size_t port = 0; port < port_count; ++port) {
      const std::uint16_t count = rte_eth_rx_burst(port_ids[port], queue, received, burst_size);
      if (count == 0) continue;
      received_any = true;
      handle_burst(snapshot, state, extra, traffic, port, received, count, now_ms, punt_ring_,
                   transmit);
    }
    if (!adaptive) continue;
    if (received_any || scanning) {
      empty_passes = 0;
    } else if (empty_passes + 1 < idle_polls) {
      ++empty_passes;
    } else {
      empty_passes = idle_polls;          // stays there (no overflow) until a frame arrives
      rte_delay_us_sleep(idle_sleep_us);  // nanosleep: the CPU is free for others meanwhile
    }
  }
  rte_rcu_qsbr_thread_offline(rcu_, worker_index);
  rte_rcu_qsbr_thread_unregister(rcu_, worker_index);
}

// One slice of a pending flow scan, on the worker that owns the table.
void Runtime::walk_flows(unsigned worker_index, const LcoreState& state, std::uint64_t now_ms) {
  FlowScan& scan = scans_[worker_index];
  const std::uint64_t wanted = scan.requested.load(std::memory_order_acquire);
  scan.cursor = state.flows.visit_live(
      scan.cursor, flow_scan_ways_per_pass, now_ms,
      [&scan](const ConnEntry& entry, std::uint32_t idle_ms) {
        ++scan.live;
        VipKey vip;
        vip.address = IpAddress{entry.key.family, entry.key.destination};
        vip.protocol = entry.key.protocol;
        vip.port = entry.key.destination_port;
        const std::pair<VipKey, IpAddress> key{vip, entry.backend()};
        const auto found = std::lower_bound(scan.backends.begin(), scan.backends.end(), key);
        if (found != scan.backends.end() && *found == key)
          ++scan.active[found - scan.backends.begin()];
        if (scan.sample.size() < scan.sample_limit)
          scan.sample.push_back({entry.key, entry.backend(), entry.state, idle_ms});
      });
  if (scan.cursor >= state.flows.capacity()) scan.finished.store(wanted, std::memory_order_release);
}

FlowCensus Runtime::scan_flows(std::size_t sample_limit) {
  FlowCensus census;
  const Snapshot& snapshot = *owned_current_->snapshot;
  std::vector<std::pair<VipKey, IpAddress>> backends;
  for (const Service& service : snapshot.services()) {
    for (const Backend& backend : snapshot.backends_of(service))
      backends.emplace_back(service.vip, backend.address);
  }
  std::sort(backends.begin(), backends.end());
  const std::size_t workers = worker_lcores_.size();
  const auto all_finished = [&] {
    for (std::size_t index = 0; index < workers; ++index) {
      if (scans_[index].finished.load(std::memory_order_acquire) !=
          scans_[index].requested.load(std::memory_order_relaxed)) {
        return false;
      }
    }
    return true;
  };
  const auto wait_all = [&] {
    const std::uint64_t deadline = control_clock_ms() + flow_scan_timeout_ms;
    constexpr auto poll_interval = std::chrono::microseconds(200);
    while (!all_finished()) {
      if (control_clock_ms() >= deadline) return false;
      std::this_thread::sleep_for(poll_interval);
    }
    return true;
  };
  // A scan that timed out earlier may still run: its buffers are the worker's until it ends.
  if (!wait_all()) return census;
  ++scan_sequence_;
  for (std::size_t index = 0; index < workers; ++index) {
    FlowScan& scan = scans_[index];
    scan.backends = backends;
    scan.sample_limit = std::min(sample_limit, max_flow_sample);
    scan.cursor = 0;
    scan.live = 0;
    scan.active.assign(backends.size(), 0);
    scan.sample.clear();
    scan.requested.store(scan_sequence_, std::memory_order_release);
  }
  if (!wait_all()) return census;
  census.complete = true;
  for (std::size_t index = 0; index < workers; ++index) {
    const FlowScan& scan = scans_[index];
    census.live_per_lcore.push_back(scan.live);
    for (std::size_t backend = 0; backend < backends.size(); ++backend)
      census.active[backends[backend]] += scan.active[backend];
    for (const FlowSample& flow : scan.sample) {
      if (census.sample.size() < sample_limit)
        census.sample.emplace_back(static_cast<unsigned>(index), flow);
    }
  }
  return census;
}

json::object Runtime::flows(std::size_t limit) {
  const FlowCensus census = scan_flows(limit);
  json::object reply;
  if (!census.complete) {
    reply["ok"] = false;
    reply["error"] = "flows: the workers did not finish walking their flow tables within " +
                     std::to_string(flow_scan_timeout_ms) + " ms";
    return reply;
  }
  reply["ok"] = true;
  reply["version"] = owned_current_->snapshot->version();
  std::uint64_t total = 0;
  for (const std::uint64_t live : census.live_per_lcore) total += live;
  reply["active_flows"] = total;
  json::array flows;
  for (const auto& [worker, flow] : census.sample) {
    json::object entry;
    entry["lcore"] = worker_lcores_[worker];
    entry["protocol"] = to_string(flow.key.protocol);
    entry["client"] = to_string(IpAddress{flow.key.family, flow.key.source});
    entry["client_port"] = flow.key.source_port;
    entry["vip"] = to_string(IpAddress{flow.key.family, flow.key.destination});
    entry["port"] = flow.key.destination_port;
    entry["backend"] = to_string(flow.backend);
    entry["state"] = to_string(flow.state);
    entry["idle_ms"] = flow.idle_ms;
    flows.emplace_back(std::move(entry));
  }
  reply["flows"] = std::move(flows);
  return reply;
}

SnapshotBuildResult Runtime::build_from(const ControlConfig& config) {
  std::vector<PortConfig> ports;
  for (const auto& port : ports_) {
    PortConfig entry;
    entry.name = port.settings.name;
    entry.mac = port.mac;
    entry.mtu = port.settings.mtu;
    entry.vlan_id = port.settings.vlan;
    entry.front = port.settings.front;
    entry.service = port.settings.service;
    entry.addresses = port.settings.addresses;
    ports.push_back(std::move(entry));
  }
  // Neighbours already learned stay in use: a config change does not make backends unreachable
  // until ARP answers again.
  SnapshotConfig snapshot_config = make_snapshot_config(ports, config, settings_.outer_ttl);
  snapshot_config.neighbours = merge_neighbours(config.neighbours, resolver_.learned());
  return build_snapshot(snapshot_config);
}

std::string Runtime::apply(const ControlConfig& config) {
  SnapshotBuildResult built = build_from(config);
  if (!built.snapshot) return built.error;

  const std::uint64_t now_ms = control_clock_ms();
  owned_until_ms_.reset();
  if (config.owned_for_ms) owned_until_ms_ = now_ms + *config.owned_for_ms;
  ownership_lapsed_ = false;
  std::vector<IpAddress> taken;
  for (const auto& vip : built.snapshot->owned_vips()) {
    if (owned_current_ == nullptr || !owned_current_->snapshot->owns_vip(vip)) taken.push_back(vip);
  }
  publish(std::move(built.snapshot));
  applied_ = config;
  if (resolver_.set_wanted(addresses_to_resolve(config), now_ms)) republish_neighbours();
  announce(taken, now_ms);
  return {};
}

std::string Runtime::renew(std::uint64_t version, std::uint32_t for_ms) {
  if (version != applied_.version) {
    return "renew of config version " + std::to_string(version) + ", but version " +
           std::to_string(applied_.version) + " is applied";
  }
  if (!owned_until_ms_) return "the applied config has no owned_for_ms: its owned VIPs need no renewal";
  if (ownership_lapsed_) return "the owned VIPs of version " + std::to_string(version) + " lapsed: apply the config again";
  owned_until_ms_ = control_clock_ms() + for_ms;
  return {};
}

void Runtime::republish_neighbours() {
  SnapshotBuildResult next = owned_current_->snapshot->with_neighbours(
      merge_neighbours(applied_.neighbours, resolver_.learned()));
  if (!next.snapshot) {  // learned entries are checked when read, so this is not expected
    log::error("dataplane: learned neighbours refused: ", next.error);
    return;
  }
  publish(std::move(next.snapshot));
}

void Runtime::publish(std::unique_ptr<const Snapshot> snapshot) {
  auto next = std::make_unique<Published>();
  next->backend_count = snapshot->backends().size();
  next->snapshot = std::move(snapshot);
  next->traffic = std::make_unique<BackendTraffic[]>(std::max<std::size_t>(next->backend_count, 1) *
                                                     worker_lcores_.size());
  current_.store(next.get(), std::memory_order_release);
  std::unique_ptr<Published> retired = std::move(owned_current_);
  owned_current_ = std::move(next);
  if (!retired) return;
  // Every online worker passes a quiescent state (the top of its loop) before this returns; after
  // that none can still hold the retired snapshot. Workers that are not running are offline.
  rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);
  fold_traffic(*retired);
}

std::uint64_t Runtime::control_clock_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

bool Runtime::send_from_control(std::size_t port, const std::uint8_t* frame, std::size_t length) {
  rte_mbuf* mbuf = rte_pktmbuf_alloc(pool_);
  char* data =
      mbuf != nullptr ? rte_pktmbuf_append(mbuf, static_cast<std::uint16_t>(length)) : nullptr;
  if (data == nullptr) {
    rte_pktmbuf_free(mbuf);
    ++control_traffic_.control_tx_dropped;
    return false;
  }
  std::memcpy(data, frame, length);
  mbuf->port = static_cast<std::uint16_t>(port);  // our port index, read by worker 0
  if (rte_ring_sp_enqueue(control_tx_ring_, mbuf) != 0) {
    rte_pktmbuf_free(mbuf);
    ++control_traffic_.control_tx_dropped;
    return false;
  }
  return true;
}

void Runtime::send_arp_requests(const std::vector<IpAddress>& targets) {
  const Snapshot& snapshot = *owned_current_->snapshot;
  const std::size_t port = snapshot.service_port();
  const IpAddress& sender = snapshot.outer_source();
  if (targets.empty() || !sender.is_ipv4())
    return;  // without an address on the service port we cannot ask
  std::uint8_t frame[arp_frame_bytes];
  for (const auto& target : targets) {
    const std::size_t length = write_arp_request(frame, snapshot.ports()[port], sender, target);
    control_traffic_.arp_requests_sent += send_from_control(port, frame, length) ? 1 : 0;
  }
}

void Runtime::announce(const std::vector<IpAddress>& vips, std::uint64_t now_ms) {
  for (const auto& vip : vips) announcements_.push_back({vip, now_ms, gratuitous_arp_count});
  // A VIP no longer owned is not announced again.
  std::erase_if(announcements_, [&](const Announcement& entry) {
    return entry.left == 0 || !owned_current_->snapshot->owns_vip(entry.vip);
  });
  const Snapshot& snapshot = *owned_current_->snapshot;
  std::uint8_t frame[arp_frame_bytes];
  for (auto& entry : announcements_) {
    if (now_ms < entry.due_ms) continue;
    for (std::size_t port = 0; port < snapshot.ports().size(); ++port) {
      if (!snapshot.ports()[port].front) continue;
      const std::size_t length = write_gratuitous_arp(frame, snapshot.ports()[port], entry.vip);
      control_traffic_.gratuitous_arp_sent += send_from_control(port, frame, length) ? 1 : 0;
    }
    --entry.left;
    entry.due_ms = now_ms + gratuitous_arp_interval_ms;
  }
}

void Runtime::housekeeping() {
  const std::uint64_t now_ms = control_clock_ms();
  if (owned_until_ms_ && !ownership_lapsed_ && now_ms >= *owned_until_ms_) {
    // The controller stopped renewing (dead, or cut off from its cluster): stop answering for
    // the VIPs; the services stay, so packets already sent here still reach their backends.
    ControlConfig without = applied_;
    without.owned_vips.clear();
    SnapshotBuildResult built = build_from(without);
    if (built.snapshot) {
      publish(std::move(built.snapshot));
      ownership_lapsed_ = true;
      ++ownership_lapses_;
      log::warn("dataplane: ownership of ", applied_.owned_vips.size(), " VIP(s) of config version ",
                applied_.version, " lapsed (not renewed in time): no longer answering for them");
    } else {
      log::error("dataplane: could not drop the lapsed VIPs: ", built.error);
    }
  }
  bool changed = false;
  void* punted[burst_size];
  for (;;) {
    const unsigned count = rte_ring_sc_dequeue_burst(punt_ring_, punted, burst_size, nullptr);
    for (unsigned index = 0; index < count; ++index) {
      auto* mbuf = static_cast<rte_mbuf*>(punted[index]);
      if (const auto sender = read_arp_reply(rte_pktmbuf_mtod(mbuf, const std::uint8_t*),
                                             rte_pktmbuf_data_len(mbuf))) {
        ++control_traffic_.arp_replies_read;
        if (resolver_.learn(sender->address, sender->mac, now_ms)) {
          ++control_traffic_.neighbours_learned;
          changed = true;
        }
      }
      rte_pktmbuf_free(mbuf);
    }
    if (count < burst_size) break;
  }
  const NeighbourResolver::Tick tick = resolver_.tick(now_ms);
  if (changed || tick.changed) republish_neighbours();
  send_arp_requests(tick.ask);
  announce({}, now_ms);
}

void Runtime::fold_traffic(const Published& retired) {
  const Snapshot& snapshot = *retired.snapshot;
  for (const Service& service : snapshot.services()) {
    for (std::uint32_t index = 0; index < service.backend_count; ++index) {
      const std::uint32_t backend = service.first_backend + index;
      BackendTraffic& total = retired_traffic_[{service.vip, snapshot.backends()[backend].address}];
      for (unsigned lcore = 0; lcore < worker_lcores_.size(); ++lcore)
        total += retired.traffic_of(lcore)[backend];
    }
  }
}

json::object Runtime::status() const {
  const Snapshot& snapshot = *owned_current_->snapshot;
  json::object reply;
  reply["ok"] = true;
  reply["state"] = "running";
  reply["version"] = snapshot.version();
  reply["lcores"] = worker_lcores_.size();
  reply["hugepages"] = huge_;
  reply["poll"] = settings_.poll == PollMode::adaptive ? "adaptive" : "busy";
  // Owned VIPs with a deadline: how long they are still answered (0 once lapsed), and lapses.
  if (owned_until_ms_) {
    const std::uint64_t now_ms = control_clock_ms();
    reply["owned_for_ms_left"] = ownership_lapsed_ || now_ms >= *owned_until_ms_ ? 0 : *owned_until_ms_ - now_ms;
  } else {
    reply["owned_for_ms_left"] = nullptr;
  }
  reply["ownership_lapses"] = ownership_lapses_;
  json::array ports;
  for (const auto& port : ports_) {
    rte_eth_link link{};
    rte_eth_link_get_nowait(port.port_id, &link);
    json::object entry;
    entry["name"] = port.settings.name;
    entry["device"] = port.settings.device;
    entry["mac"] = to_string(port.mac);
    entry["role"] = role_name(port.settings.front, port.settings.service);
    entry["link_up"] = link.link_status == RTE_ETH_LINK_UP;
    entry["speed_mbps"] = link.link_speed;
    entry["mtu"] = port.settings.mtu;
    json::array addresses;
    for (const auto& address : port.settings.addresses) addresses.emplace_back(to_string(address));
    entry["addresses"] = std::move(addresses);
    ports.emplace_back(std::move(entry));
  }
  reply["ports"] = std::move(ports);
  reply["services"] = snapshot.services().size();
  json::array vips;
  for (const auto& vip : snapshot.owned_vips()) vips.emplace_back(to_string(vip));
  reply["owned_vips"] = std::move(vips);
  // Next hops being resolved by ARP, with what was learned (static entries are in the config).
  json::array resolving;
  const std::vector<NeighbourConfig> learned = resolver_.learned();
  for (const auto& address : addresses_to_resolve(applied_)) {
    json::object entry;
    entry["address"] = to_string(address);
    const auto found =
        std::find_if(learned.begin(), learned.end(),
                     [&](const NeighbourConfig& known) { return known.address == address; });
    if (found != learned.end()) {
      entry["mac"] = to_string(found->mac);
    } else {
      entry["mac"] = nullptr;
    }
    resolving.push_back(std::move(entry));
  }
  reply["resolving"] = std::move(resolving);
  return reply;
}

json::object Runtime::counters() {
  const FlowCensus census = scan_flows(0);
  const auto active_or_null = [&](std::uint64_t value) -> json::value {
    return census.complete ? json::value(value) : json::value(nullptr);
  };
  const Published& published = *owned_current_;
  const Snapshot& snapshot = *published.snapshot;
  json::object reply;
  reply["ok"] = true;
  reply["version"] = snapshot.version();

  json::array ports;
  for (const auto& port : ports_) {
    rte_eth_stats stats{};
    rte_eth_stats_get(port.port_id, &stats);
    json::object entry;
    entry["name"] = port.settings.name;
    entry["rx_packets"] = stats.ipackets;
    entry["rx_bytes"] = stats.ibytes;
    entry["rx_missed"] = stats.imissed;
    entry["rx_errors"] = stats.ierrors;
    entry["rx_no_mbuf"] = stats.rx_nombuf;
    entry["tx_packets"] = stats.opackets;
    entry["tx_bytes"] = stats.obytes;
    entry["tx_errors"] = stats.oerrors;
    ports.emplace_back(std::move(entry));
  }
  reply["ports"] = std::move(ports);

  json::array lcores;
  json::object drop_totals;
  for (std::size_t index = 0; index < worker_lcores_.size(); ++index) {
    const LcoreCounters& counters = lcore_states_[index]->counters;
    json::object entry;
    entry["lcore"] = worker_lcores_[index];
    entry["forwarded_packets"] = read_counter(counters.forwarded_packets);
    entry["forwarded_bytes"] = read_counter(counters.forwarded_bytes);
    entry["arp_replies"] = read_counter(counters.arp_replies);
    entry["arp_punted"] = read_counter(counters.arp_punted);
    entry["punt_dropped"] = read_counter(extras_[index].punt_dropped);
    entry["echo_replies"] = read_counter(counters.echo_replies);
    entry["frag_needed_sent"] = read_counter(counters.frag_needed_sent);
    entry["new_flows"] = read_counter(counters.new_flows);
    entry["flows_repicked"] = read_counter(counters.flows_repicked);
    entry["flows_evicted"] = read_counter(lcore_states_[index]->flows.stats().evictions);
    entry["active_flows"] = active_or_null(census.complete ? census.live_per_lcore[index] : 0);
    entry["tx_dropped"] = read_counter(extras_[index].tx_dropped);
    json::object drops;
    for (std::size_t reason = 1; reason < drop_reason_count; ++reason) {
      const std::uint64_t count = read_counter(counters.drops[reason]);
      const auto name = drop_reason_name(static_cast<DropReason>(reason));
      drops[name] = count;
      auto& total = drop_totals[name];
      total = (total.is_uint64() ? total.get_uint64() : 0) + count;
    }
    entry["drops"] = std::move(drops);
    lcores.emplace_back(std::move(entry));
  }
  reply["lcores"] = std::move(lcores);
  reply["drops"] = std::move(drop_totals);

  json::array services;
  for (const Service& service : snapshot.services()) {
    json::object entry;
    entry["vip"] = to_string(service.vip.address);
    entry["protocol"] = to_string(service.vip.protocol);
    entry["port"] = service.vip.port;
    BackendTraffic service_total;
    std::uint64_t service_active = 0;
    json::array backends;
    for (std::uint32_t index = 0; index < service.backend_count; ++index) {
      const std::uint32_t backend_index = service.first_backend + index;
      const Backend& backend = snapshot.backends()[backend_index];
      BackendTraffic total;
      if (auto found = retired_traffic_.find({service.vip, backend.address});
          found != retired_traffic_.end()) {
        total = found->second;
      }
      for (unsigned lcore = 0; lcore < worker_lcores_.size(); ++lcore) {
        total += published.traffic_of(lcore)[backend_index].read();
      }
      service_total += total;
      std::uint64_t active = 0;
      if (const auto found = census.active.find({service.vip, backend.address});
          found != census.active.end()) {
        active = found->second;
      }
      service_active += active;
      json::object item;
      item["address"] = to_string(backend.address);
      item["state"] = to_string(backend.state);
      item["weight"] = backend.weight;
      item["neighbour_known"] = backend.mac_known;
      item["packets"] = total.packets;
      item["bytes"] = total.bytes;
      item["new_flows"] = total.new_flows;
      item["active_flows"] = active_or_null(active);
      backends.emplace_back(std::move(item));
    }
    entry["packets"] = service_total.packets;
    entry["bytes"] = service_total.bytes;
    entry["new_flows"] = service_total.new_flows;
    entry["active_flows"] = active_or_null(service_active);
    entry["backends"] = std::move(backends);
    services.emplace_back(std::move(entry));
  }
  reply["services"] = std::move(services);

  json::object control;
  control["arp_requests_sent"] = control_traffic_.arp_requests_sent;
  control["gratuitous_arp_sent"] = control_traffic_.gratuitous_arp_sent;
  control["arp_replies_read"] = control_traffic_.arp_replies_read;
  control["neighbours_learned"] = control_traffic_.neighbours_learned;
  control["control_tx_dropped"] = control_traffic_.control_tx_dropped;
  reply["control"] = std::move(control);
  return reply;
}

}  // namespace stacknode::dataplane
