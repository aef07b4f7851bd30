// Unit tests of stacknode-dataplane's node.cfg section and the EAL command line built from it:
// what is accepted (ports, the poll mode and its limits), what each mistake says (file:line and
// key), and the arguments EAL gets with and without hugepages, for virtual and PCI devices.
#include <CppUTest/TestHarness.h>

#include <algorithm>
#include <string>

#include "settings.hpp"

using namespace stacknode::dataplane;
using stacknode::config::ConfigError;
using stacknode::config::Document;

namespace {

const std::string two_ports =
    "ports = ( { name = \"front\"; device = \"net_af_packet0,iface=dpf0\"; roles = [\"front\"];\n"
    "            addresses = [\"198.18.0.201\"]; mac = \"02:00:00:00:00:01\"; },\n"
    "          { name = \"service\"; device = \"0000:03:00.0\"; roles = [\"service\"];\n"
    "            addresses = [\"198.18.1.101\"]; mtu = 9000; vlan = 12; } );\n";

DataplaneSettings load(const std::string& dataplane_body, const std::string& extra = "") {
  auto document = Document::load_string(extra + "dataplane: {\n" + dataplane_body + "};\n", "node.cfg");
  return load_settings(document->root());
}

std::string error_of(const std::string& dataplane_body) {
  try {
    load(dataplane_body);
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}

bool has(const std::vector<std::string>& arguments, const std::string& argument) {
  return std::find(arguments.begin(), arguments.end(), argument) != arguments.end();
}

HostFacts host(bool hugepages, unsigned cpus = 2) { return HostFacts{hugepages, cpus, "stacknode-dataplane-42"}; }

}  // namespace

TEST_GROUP(DataplaneSettings){};

TEST(DataplaneSettings, DefaultsAndPorts) {
  const DataplaneSettings settings = load(two_ports, "paths: { runtime_dir = \"/tmp/x\"; };\n");
  LONGS_EQUAL(1, settings.lcores);
  LONGS_EQUAL(default_memory_mb, settings.memory_mb);
  CHECK(settings.hugepages == HugepageMode::automatic);
  STRCMP_EQUAL("/tmp/x/dataplane.sock", settings.control_socket.c_str());
  LONGS_EQUAL(2, settings.ports.size());
  const PortSettings& front = settings.ports[0];
  CHECK_TRUE(front.front);
  CHECK_FALSE(front.service);
  CHECK_TRUE(front.is_virtual());
  STRCMP_EQUAL("net_af_packet0", front.dpdk_name().c_str());
  LONGS_EQUAL(1500, front.mtu);
  CHECK_TRUE(front.mac.has_value());
  STRCMP_EQUAL("02:00:00:00:00:01", to_string(*front.mac).c_str());
  const PortSettings& service = settings.ports[1];
  CHECK_FALSE(service.is_virtual());
  STRCMP_EQUAL("0000:03:00.0", service.dpdk_name().c_str());
  LONGS_EQUAL(9000, service.mtu);
  LONGS_EQUAL(12, service.vlan);
  STRCMP_EQUAL("198.18.1.101", to_string(service.addresses[0]).c_str());
  CHECK_FALSE(service.mac.has_value());
}

TEST(DataplaneSettings, MistakesNameTheKey) {
  STRCMP_EQUAL("node.cfg: dataplane.ports: no ports: give at least one port with the front and service roles",
               error_of("").c_str());
  STRCMP_CONTAINS("dataplane.hugepages: must be \"auto\", \"required\" or \"off\", not \"maybe\"",
                  error_of("hugepages = \"maybe\";\n" + two_ports).c_str());
  STRCMP_CONTAINS("dataplane.ports[0].device: 'eth0' is neither a PCI address",
                  error_of("ports = ( { name = \"a\"; device = \"eth0\"; roles = [\"front\", \"service\"]; } );").c_str());
  STRCMP_CONTAINS("roles: unknown role 'backend'",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"backend\"]; } );").c_str());
  STRCMP_CONTAINS("addresses: '198.18.0.300' is not an IPv4 address",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"front\", \"service\"];"
                           " addresses = [\"198.18.0.300\"]; } );")
                      .c_str());
  STRCMP_CONTAINS("dataplane.ports: no port has the front role",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"service\"]; } );").c_str());
  STRCMP_CONTAINS("dataplane.ports: exactly one port must have the service role",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"front\", \"service\"]; },"
                           " { name = \"b\"; device = \"net_null1\"; roles = [\"service\"]; } );")
                      .c_str());
  STRCMP_CONTAINS("two ports use device 'net_null0'",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"front\"]; },"
                           " { name = \"b\"; device = \"net_null0,x=1\"; roles = [\"service\"]; } );")
                      .c_str());
  STRCMP_CONTAINS("mtu",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"front\", \"service\"];"
                           " mtu = 100; } );")
                      .c_str());
  STRCMP_CONTAINS("dataplane.lcores", error_of("lcores = 0;\n" + two_ports).c_str());
  STRCMP_CONTAINS("dataplane.ports[0].mac: '02:00:00:00:01' is not a MAC address",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"front\", \"service\"];"
                           " mac = \"02:00:00:00:01\"; } );")
                      .c_str());
  STRCMP_CONTAINS("dataplane.ports[0].mac: '01:00:5e:00:00:01' is a multicast address",
                  error_of("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"front\", \"service\"];"
                           " mac = \"01:00:5e:00:00:01\"; } );")
                      .c_str());
}

TEST(DataplaneSettings, EalArgumentsWithoutHugepages) {
  const DataplaneSettings settings = load("lcores = 2; memory_mb = 128;\n" + two_ports);
  const EalArguments eal = build_eal_arguments(settings, host(false));
  STRCMP_EQUAL("", eal.error.c_str());
  CHECK_FALSE(eal.huge);
  STRCMP_EQUAL("stacknode-dataplane", eal.arguments[0].c_str());
  CHECK_TRUE(has(eal.arguments, "0-1"));
  CHECK_TRUE(has(eal.arguments, "--no-huge"));
  CHECK_TRUE(has(eal.arguments, "--no-shconf"));
  CHECK_FALSE(has(eal.arguments, "--in-memory"));  // EAL refuses it with --no-huge
  CHECK_TRUE(has(eal.arguments, "128"));
  CHECK_TRUE(has(eal.arguments, "--vdev=net_af_packet0,iface=dpf0"));
  CHECK_TRUE(has(eal.arguments, "--allow=0000:03:00.0"));
  CHECK_FALSE(has(eal.arguments, "--no-pci"));  // a PCI port is wanted
  CHECK_TRUE(has(eal.arguments, "--file-prefix=stacknode-dataplane-42"));
}

TEST(DataplaneSettings, EalArgumentsWithHugepagesAndOnlyVirtualPorts) {
  const DataplaneSettings settings =
      load("ports = ( { name = \"a\"; device = \"net_null0\"; roles = [\"front\", \"service\"]; } );");
  const EalArguments eal = build_eal_arguments(settings, host(true));
  CHECK_TRUE(eal.huge);
  CHECK_TRUE(has(eal.arguments, "--in-memory"));
  CHECK_FALSE(has(eal.arguments, "--no-huge"));
  CHECK_TRUE(has(eal.arguments, "--no-pci"));  // nothing of the machine's PCI devices is touched
}

TEST(DataplaneSettings, HugepagesRequiredButMissingIsOneClearLine) {
  const DataplaneSettings settings = load("hugepages = \"required\";\n" + two_ports);
  const EalArguments eal = build_eal_arguments(settings, host(false));
  STRCMP_CONTAINS("no free hugepages", eal.error.c_str());
  CHECK_TRUE(eal.arguments.empty());
  CHECK_FALSE(build_eal_arguments(load("hugepages = \"off\";\n" + two_ports), host(true)).huge);
}

TEST(DataplaneSettings, TooFewCpusIsOneClearLine) {
  const DataplaneSettings settings = load("lcores = 3;\n" + two_ports);
  const EalArguments eal = build_eal_arguments(settings, host(false, 2));
  STRCMP_CONTAINS("needs CPUs up to 2, but this process may use 2", eal.error.c_str());
  STRCMP_EQUAL("", build_eal_arguments(load("lcores = 2;\n" + two_ports), host(false, 2)).error.c_str());
}

TEST(DataplaneSettings, PollDefaultsToBusy) {
  const DataplaneSettings settings = load(two_ports);
  CHECK(settings.poll == PollMode::busy);
  LONGS_EQUAL(default_idle_polls, settings.idle_polls);
  LONGS_EQUAL(default_idle_sleep_us, settings.idle_sleep_us);
}

TEST(DataplaneSettings, AdaptivePollWithItsLimits) {
  const DataplaneSettings settings =
      load("poll = \"adaptive\"; idle_polls = 1000000; idle_sleep_us = 1;\n" + two_ports);
  CHECK(settings.poll == PollMode::adaptive);
  LONGS_EQUAL(max_idle_polls, settings.idle_polls);
  LONGS_EQUAL(min_idle_sleep_us, settings.idle_sleep_us);
  const DataplaneSettings other = load("poll = \"adaptive\"; idle_polls = 1; idle_sleep_us = 100000;\n" + two_ports);
  LONGS_EQUAL(min_idle_polls, other.idle_polls);
  LONGS_EQUAL(max_idle_sleep_us, other.idle_sleep_us);
  CHECK(load("poll = \"busy\";\n" + two_ports).poll == PollMode::busy);
}

TEST(DataplaneSettings, PollMistakesNameTheKey) {
  STRCMP_EQUAL("node.cfg:2: dataplane.poll: must be \"busy\" or \"adaptive\", not \"lazy\"",
               error_of("poll = \"lazy\";\n" + two_ports).c_str());
  STRCMP_CONTAINS("dataplane.poll: expected a string", error_of("poll = 1;\n" + two_ports).c_str());
  STRCMP_CONTAINS("node.cfg:2: dataplane.idle_polls: value 0 is out of range [1, 1000000]",
                  error_of("idle_polls = 0;\n" + two_ports).c_str());
  STRCMP_CONTAINS("dataplane.idle_polls: value 1000001 is out of range [1, 1000000]",
                  error_of("idle_polls = 1000001;\n" + two_ports).c_str());
  STRCMP_CONTAINS("node.cfg:2: dataplane.idle_sleep_us: value 0 is out of range [1, 100000]",
                  error_of("idle_sleep_us = 0;\n" + two_ports).c_str());
  STRCMP_CONTAINS("dataplane.idle_sleep_us: value 100001 is out of range [1, 100000]",
                  error_of("poll = \"adaptive\"; idle_sleep_us = 100001;\n" + two_ports).c_str());
  STRCMP_CONTAINS("dataplane.idle_sleep_us: expected an integer",
                  error_of("idle_sleep_us = \"200\";\n" + two_ports).c_str());
}
