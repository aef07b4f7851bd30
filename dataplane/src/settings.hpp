// stacknode-dataplane's node.cfg section and the EAL command line built from it. Pure code (no
// DPDK calls), so that tests check the arguments and the start-up errors without a NIC.
//
//   dataplane: {
//     lcores = 1;                      # worker lcores; the first is the main lcore
//     first_lcore = 0;                 # CPU of the first worker
//     memory_mb = 256;
//     hugepages = "auto";              # "auto" (use them when mounted and free), "required", "off"
//     control_socket = "/run/stacknode/dataplane.sock";
//     flows_per_lcore = 1048576;
//     outer_ttl = 64;
//     config_file = "";                # optional: a JSON config (the control protocol's "config")
//                                      # applied before the first packet; stacknoded replaces it
//     poll = "busy";                   # "busy" (poll forever) or "adaptive" (sleep when idle)
//     idle_polls = 256;                # adaptive: empty passes over all ports before sleeping
//     idle_sleep_us = 200;             # adaptive: sleep per empty pass once idle
//     ports = (
//       { name = "front";   device = "net_af_packet0,iface=dpf0"; roles = ["front"];
//         addresses = ["198.18.0.201"]; mtu = 1500; vlan = 0;
//         mac = "";  },                 # optional: set the port's MAC (default: the device's own)
//       { name = "service"; device = "0000:03:00.0"; roles = ["service"];
//         addresses = ["198.18.1.101"]; }
//     );
//   };
//
// A device is a PCI address (DDDD:BB:DD.F, bound to vfio-pci or uio) or a DPDK virtual device
// string ("net_af_packet0,iface=dpf0", "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap", "net_tap0",
// "net_ring0", "net_null0").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "stacknode/common/config.hpp"
#include "stacknode/dataplane/addresses.hpp"

namespace stacknode::dataplane {

inline constexpr unsigned max_worker_lcores = 64;
inline constexpr std::int64_t min_memory_mb = 64;  // below this the mbuf pool does not fit
inline constexpr std::int64_t max_memory_mb = 1 << 20;
inline constexpr std::int64_t default_memory_mb = 256;

enum class HugepageMode { automatic, required, off };

// How a worker waits for packets. `busy` polls without pause: the lowest latency, one CPU per
// worker at 100 % (what a box with its own cores wants). `adaptive`, after `idle_polls` passes
// over all ports in a row that received nothing, sleeps `idle_sleep_us` per empty pass until a
// frame arrives again: for hosts that share their CPUs (the virtual rack runs several dataplanes
// on two vCPUs). The cost is up to idle_sleep_us more latency on the first frame after idleness.
enum class PollMode { busy, adaptive };
// Enough empty passes that a short gap between bursts does not put the worker to sleep.
inline constexpr std::int64_t default_idle_polls = 256;
inline constexpr std::int64_t min_idle_polls = 1;
inline constexpr std::int64_t max_idle_polls = 1'000'000;
// An idle worker wakes at most 5000 times a second (nanosleep overshoots, so fewer), and a
// first packet waits at most about this long.
inline constexpr std::int64_t default_idle_sleep_us = 200;
inline constexpr std::int64_t min_idle_sleep_us = 1;
// Above 100 ms a pending snapshot swap or stop would wait noticeably for a sleeping worker.
inline constexpr std::int64_t max_idle_sleep_us = 100'000;

struct PortSettings {
  std::string name;    // for people: logs, counters, errors
  std::string device;  // PCI address or virtual device string
  bool front = false;
  bool service = false;
  std::vector<IpAddress> addresses;
  std::uint16_t mtu = 1500;
  std::uint16_t vlan = 0;
  std::optional<MacAddress> mac;  // set on the device at start; empty: keep the device's own

  bool is_virtual() const { return device.rfind("net_", 0) == 0; }
  // The name DPDK knows the port by: the virtual device's name ("net_af_packet0") or the PCI
  // address.
  std::string dpdk_name() const { return device.substr(0, device.find(',')); }
};

struct DataplaneSettings {
  unsigned lcores = 1;
  unsigned first_lcore = 0;
  std::int64_t memory_mb = default_memory_mb;
  HugepageMode hugepages = HugepageMode::automatic;
  std::string control_socket;
  std::uint32_t flows_per_lcore = 0;
  std::uint8_t outer_ttl = 64;
  std::string config_file;  // empty: start with no services
  PollMode poll = PollMode::busy;
  std::uint32_t idle_polls = default_idle_polls;        // read in both modes, used by adaptive
  std::uint32_t idle_sleep_us = default_idle_sleep_us;  // read in both modes, used by adaptive
  std::vector<PortSettings> ports;
};

// Reads and validates node.cfg's `dataplane` section and `paths.runtime_dir`. Throws
// config::ConfigError naming file:line and key: no ports, no front or no service role, two
// service ports, duplicate names or devices, bad addresses, MTU or VLAN out of range, an unknown
// poll mode, idle_polls or idle_sleep_us out of range.
DataplaneSettings load_settings(const config::Section& root);

// What the machine offers, found by the caller (hugepages_available(): /proc/meminfo and a
// hugetlbfs mount).
struct HostFacts {
  bool hugepages = false;
  unsigned cpus = 1;  // CPUs this process may run on
  std::string file_prefix;  // unique per instance, so that several dataplanes can share a host
};

struct EalArguments {
  std::vector<std::string> arguments;  // argv for rte_eal_init, program name first
  bool huge = false;                   // whether hugepages are used
  std::string error;                   // one line a person can act on, when not startable
};

EalArguments build_eal_arguments(const DataplaneSettings& settings, const HostFacts& host);

// Free 2 MiB or 1 GiB pages and a mounted hugetlbfs.
bool hugepages_available();

}  // namespace stacknode::dataplane
