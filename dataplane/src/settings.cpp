// node.cfg `dataplane` section -> DataplaneSettings, and DataplaneSettings -> EAL arguments.
// See settings.hpp.
#include "settings.hpp"

#include <fstream>
#include <set>
#include <sstream>

#include "stacknode/dataplane/conn_table.hpp"
#include "stacknode/dataplane/snapshot.hpp"

namespace stacknode::dataplane {
namespace {

bool looks_like_pci_address(std::string_view text) {
  // DDDD:BB:DD.F, hexadecimal.
  if (text.size() != 12) return false;
  for (std::size_t index = 0; index < text.size(); ++index) {
    const char c = text[index];
    if (index == 4 || index == 7) {
      if (c != ':') return false;
    } else if (index == 10) {
      if (c != '.') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

PortSettings load_port(const config::Section& section) {
  PortSettings port;
  port.name = section.get_string("name", "");
  if (port.name.empty()) section.fail("name", "every port needs a name");
  port.device = section.get_string("device", "");
  if (port.device.empty())
    section.fail("device", "every port needs a device (PCI address or virtual device)");
  if (!port.is_virtual() && !looks_like_pci_address(port.device)) {
    section.fail(
        "device",
        "'" + port.device +
            "' is neither a PCI address (0000:03:00.0) nor a DPDK virtual device (net_...)");
  }
  for (const auto& role : section.get_strings("roles")) {
    if (role == "front") {
      port.front = true;
    } else if (role == "service") {
      port.service = true;
    } else {
      section.fail("roles", "unknown role '" + role + "' (front, service)");
    }
  }
  if (!port.front && !port.service)
    section.fail("roles", "give the port a role: front, service or both");
  for (const auto& text : section.get_strings("addresses")) {
    const auto address = parse_ip_address(text);
    if (!address) section.fail("addresses", "'" + text + "' is not an IPv4 address");
    port.addresses.push_back(*address);
  }
  if (port.addresses.size() > max_addresses_per_port) {
    section.fail("addresses",
                 "at most " + std::to_string(max_addresses_per_port) + " addresses per port");
  }
  port.mtu = static_cast<std::uint16_t>(
      section.get_int("mtu", default_port_mtu, min_port_mtu, max_port_mtu));
  port.vlan = static_cast<std::uint16_t>(section.get_int("vlan", 0, 0, max_vlan_id));
  if (const std::string text = section.get_string("mac", ""); !text.empty()) {
    port.mac = parse_mac_address(text);
    if (!port.mac)
      section.fail("mac", "'" + text + "' is not a MAC address (like 02:00:00:00:00:01)");
    if ((port.mac->bytes[0] & 0x01) != 0)
      section.fail("mac", "'" + text + "' is a multicast address");
  }
  return port;
}

}  // namespace

DataplaneSettings load_settings(const config::Section& root) {
  const config::Section section = root.section("dataplane");
  const config::Section paths = root.section("paths");
  DataplaneSettings settings;
  settings.lcores = static_cast<unsigned>(section.get_int("lcores", 1, 1, max_worker_lcores));
  settings.first_lcore = static_cast<unsigned>(section.get_int("first_lcore", 0, 0, 1023));
  settings.memory_mb =
      section.get_int("memory_mb", default_memory_mb, min_memory_mb, max_memory_mb);
  const std::string hugepages = section.get_string("hugepages", "auto");
  if (hugepages == "auto") {
    settings.hugepages = HugepageMode::automatic;
  } else if (hugepages == "required") {
    settings.hugepages = HugepageMode::required;
  } else if (hugepages == "off") {
    settings.hugepages = HugepageMode::off;
  } else {
    section.fail("hugepages",
                 "must be \"auto\", \"required\" or \"off\", not \"" + hugepages + "\"");
  }
  const std::string runtime_dir = paths.get_string("runtime_dir", "/run/stacknode");
  settings.control_socket = section.get_string("control_socket", runtime_dir + "/dataplane.sock");
  settings.flows_per_lcore =
      static_cast<std::uint32_t>(section.get_int("flows_per_lcore", default_conn_table_capacity,
                                                 min_conn_table_capacity, max_conn_table_capacity));
  settings.outer_ttl =
      static_cast<std::uint8_t>(section.get_int("outer_ttl", default_outer_ttl, 1, 255));
  settings.config_file = section.get_string("config_file", "");
  const std::string poll = section.get_string("poll", "busy");
  if (poll == "busy") {
    settings.poll = PollMode::busy;
  } else if (poll == "adaptive") {
    settings.poll = PollMode::adaptive;
  } else {
    section.fail("poll", "must be \"busy\" or \"adaptive\", not \"" + poll + "\"");
  }
  settings.idle_polls = static_cast<std::uint32_t>(
      section.get_int("idle_polls", default_idle_polls, min_idle_polls, max_idle_polls));
  settings.idle_sleep_us = static_cast<std::uint32_t>(section.get_int(
      "idle_sleep_us", default_idle_sleep_us, min_idle_sleep_us, max_idle_sleep_us));

  const auto ports = section.sections("ports");
  if (ports.empty())
    section.fail("ports", "no ports: give at least one port with the front and service roles");
  if (ports.size() > max_ports)
    section.fail("ports", "at most " + std::to_string(max_ports) + " ports");
  std::set<std::string> names, devices;
  unsigned service_ports = 0;
  bool front = false;
  for (const auto& port_section : ports) {
    PortSettings port = load_port(port_section);
    if (!names.insert(port.name).second)
      port_section.fail("name", "two ports are named '" + port.name + "'");
    if (!devices.insert(port.dpdk_name()).second) {
      port_section.fail("device", "two ports use device '" + port.dpdk_name() + "'");
    }
    service_ports += port.service ? 1 : 0;
    front = front || port.front;
    settings.ports.push_back(std::move(port));
  }
  if (!front) section.fail("ports", "no port has the front role");
  if (service_ports != 1) section.fail("ports", "exactly one port must have the service role");
  return settings;
}

EalArguments build_eal_arguments(const DataplaneSettings& settings, const HostFacts& host) {
  EalArguments eal;
  const unsigned last_lcore = settings.first_lcore + settings.lcores - 1;
  if (last_lcore >= host.cpus) {
    eal.error = "dataplane.lcores = " + std::to_string(settings.lcores) + " from CPU " +
                std::to_string(settings.first_lcore) + " needs CPUs up to " +
                std::to_string(last_lcore) + ", but this process may use " +
                std::to_string(host.cpus) + "; lower dataplane.lcores or dataplane.first_lcore";
    return eal;
  }
  switch (settings.hugepages) {
    case HugepageMode::required:
      if (!host.hugepages) {
        eal.error =
            "dataplane.hugepages = \"required\" but no free hugepages are mounted; reserve some "
            "(echo 512 > /proc/sys/vm/nr_hugepages) and mount hugetlbfs, or set hugepages = "
            "\"auto\"";
        return eal;
      }
      eal.huge = true;
      break;
    case HugepageMode::automatic:
      eal.huge = host.hugepages;
      break;
    case HugepageMode::off:
      eal.huge = false;
      break;
  }

  auto& args = eal.arguments;
  args.push_back("stacknode-dataplane");
  args.push_back("-l");
  args.push_back(std::to_string(settings.first_lcore) + "-" + std::to_string(last_lcore));
  // No shared config files under /var/run/dpdk and no secondary processes: nothing is left
  // behind. (--in-memory says the same for hugepage memory; EAL refuses it with --no-huge.)
  if (eal.huge) {
    args.push_back("--in-memory");
  } else {
    args.push_back("--no-huge");
    args.push_back("--no-shconf");
  }
  args.push_back("--file-prefix=" + host.file_prefix);
  args.push_back("--no-telemetry");  // its socket would be a second control interface
  args.push_back("-m");
  args.push_back(std::to_string(settings.memory_mb));
  bool any_pci = false;
  for (const auto& port : settings.ports) {
    if (port.is_virtual()) {
      args.push_back("--vdev=" + port.device);
    } else {
      args.push_back("--allow=" + port.device);
      any_pci = true;
    }
  }
  // Without PCI ports, do not scan (and perhaps grab) the machine's PCI devices at all.
  if (!any_pci) args.push_back("--no-pci");
  // EAL's own chatter only from warnings up; our log says what matters.
  args.push_back("--log-level=lib.*:warning");
  return eal;
}

bool hugepages_available() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  long free_pages = 0;
  while (std::getline(meminfo, line)) {
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "HugePages_Free:") fields >> free_pages;
  }
  if (free_pages <= 0) return false;
  std::ifstream mounts("/proc/mounts");
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string device, mount_point, type;
    fields >> device >> mount_point >> type;
    if (type == "hugetlbfs") return true;
  }
  return false;
}

}  // namespace stacknode::dataplane
