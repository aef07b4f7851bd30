// Component test of stacknode-dataplane with real Linux peers: the virtual rack of DESIGN.md cut
// down to one node. Namespaces (made by the test, removed by it, even on failure):
//   fabric   bridges br-front (198.18.0.1/24) and br-svc (198.18.1.1/24), routing between them
//   client   198.18.0.2 on br-front; curl and a held keep-alive connection to the VIP
//   node     the dataplane on DPDK net_af_packet over two veths: dpf0 (front, on br-front) and
//            dps0 (service, on br-svc, outer source 198.18.1.101)
//   beN      backend N: 198.18.1.(10+N) on br-svc, the VIP on lo, an IPIP decapsulation device,
//            nginx answering "backend beN end"
// A client's packets to the VIP go through the dataplane, which encapsulates them to a backend
// picked by Maglev (resolved by its own ARP); the backend answers the client directly (direct
// server return) through the fabric's routing.
//
// IPIP decapsulation: the kernel's ipip device where the kernel has one. Where it does not (this
// CI machine's kernel is built without CONFIG_NET_IPIP and cannot load modules), the test stands
// in for it with a user-space decapsulator: a raw IPPROTO_IPIP socket in the backend's namespace
// whose packets, outer header stripped, are written to a TUN device named like the kernel's, so
// the backend's kernel receives the inner packet exactly as from ipip0. The test prints which.
//
// What it asserts: curl gets answers from both backends; new flows per backend in the
// dataplane's counters equal the connections each backend answered; an established keep-alive
// connection keeps its backend across a config that adds a backend, and across draining that
// backend, while new connections avoid the drained backend.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "skip.hpp"

#include <CppUTest/TestHarness.h>

namespace json = boost::json;
namespace fs = std::filesystem;
namespace support = stacknode::test;

namespace {

// Upper bound for start-up, ARP resolution and each request; only keeps a broken dataplane from
// hanging the suite: nothing is timed.
constexpr std::chrono::milliseconds eventually{30'000};
constexpr std::chrono::milliseconds control_timeout{5'000};
constexpr std::chrono::milliseconds request_timeout{10'000};
constexpr const char* curl_max_seconds = "10";
constexpr unsigned test_flows_per_lcore = 4096;
constexpr unsigned test_memory_mb = 128;
// Connections per phase: with two or three backends picked by hash, the chance that one of them
// gets none of 30 connections is below 1e-5.
constexpr int connections_per_phase = 30;
constexpr std::size_t max_ip_packet = 65535;
constexpr std::uint8_t ipip_protocol = 4;

constexpr const char* vip = "198.18.0.100";
constexpr std::uint16_t http_port = 80;
constexpr const char* fabric_front_address = "198.18.0.1/24";
constexpr const char* fabric_service_address = "198.18.1.1";
constexpr const char* client_address = "198.18.0.2/24";
constexpr const char* node_front_address = "198.18.0.3";
constexpr const char* node_outer_source = "198.18.1.101";
constexpr int backend_count = 3;

std::string backend_address(int number) { return "198.18.1." + std::to_string(10 + number); }
std::string backend_name(int number) { return "be" + std::to_string(number); }

std::string body_of(const std::string& name) { return "backend " + name + " end\n"; }
constexpr std::string_view body_marker = " end\n";

// Which backend answered, from a response whose body is body_of(name); empty if none did.
std::string answered_by(const std::string& response) {
  const std::size_t end = response.rfind(body_marker);
  const std::size_t start = response.rfind("backend ", end);
  if (end == std::string::npos || start == std::string::npos) return {};
  return response.substr(start + 8, end - start - 8);
}

// ---- IPIP decapsulation in the backends' namespaces ----

class IpipDecapsulation {
 public:
  IpipDecapsulation() {
    if (::pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  }
  ~IpipDecapsulation() {
    if (thread_.joinable()) {
      const char byte = 0;
      [[maybe_unused]] const ssize_t written = ::write(wake_[1], &byte, 1);
      thread_.join();
    }
    for (const Tunnel& tunnel : tunnels_) {
      ::close(tunnel.raw);
      ::close(tunnel.tun);
    }
    ::close(wake_[0]);
    ::close(wake_[1]);
  }
  IpipDecapsulation(const IpipDecapsulation&) = delete;
  IpipDecapsulation& operator=(const IpipDecapsulation&) = delete;

  // Gives `backend` a device `ipip0` that delivers IPIP packets sent to `local` as their inner
  // packet: the kernel's own if it can make one, else the user-space stand-in. Returns which.
  std::string add(const support::Netns& backend, const std::string& local) {
    const support::CommandResult kernel = support::run_command(
        {"ip", "-n", backend.name(), "link", "add", "ipip0", "type", "ipip", "local", local});
    if (kernel.status == 0) return "kernel ipip device";
    Tunnel tunnel;
    {
      support::InNetns inside(backend);
      tunnel.raw = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, ipip_protocol);
      tunnel.tun = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
      ifreq request{};
      std::strncpy(request.ifr_name, "ipip0", IFNAMSIZ - 1);
      request.ifr_flags = IFF_TUN | IFF_NO_PI;
      if (tunnel.raw < 0 || tunnel.tun < 0 || ::ioctl(tunnel.tun, TUNSETIFF, &request) != 0) {
        const std::string reason = std::strerror(errno);
        if (tunnel.raw >= 0) ::close(tunnel.raw);
        if (tunnel.tun >= 0) ::close(tunnel.tun);
        throw std::runtime_error("no kernel ipip (" + kernel.output +
                                 ") and no user-space stand-in: " + reason);
      }
    }
    tunnels_.push_back(tunnel);
    return "user-space stand-in (raw IPPROTO_IPIP socket -> TUN), the kernel has no ipip";
  }

  // Starts forwarding for every tunnel added.
  void start() {
    if (!tunnels_.empty()) thread_ = std::thread([this] { run(); });
  }

 private:
  struct Tunnel {
    int raw = -1;
    int tun = -1;
  };

  void run() {
    std::vector<pollfd> waiting;
    for (const Tunnel& tunnel : tunnels_) waiting.push_back({tunnel.raw, POLLIN, 0});
    waiting.push_back({wake_[0], POLLIN, 0});
    std::vector<std::uint8_t> packet(max_ip_packet);
    for (;;) {
      if (::poll(waiting.data(), waiting.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (waiting.back().revents != 0) return;
      for (std::size_t index = 0; index < tunnels_.size(); ++index) {
        if ((waiting[index].revents & POLLIN) == 0) continue;
        const ssize_t got = ::recv(tunnels_[index].raw, packet.data(), packet.size(), 0);
        if (got <= 0) continue;
        const std::size_t header = (packet[0] & 0x0f) * 4u;  // a raw socket gets the outer header
        if (static_cast<std::size_t>(got) <= header) continue;
        [[maybe_unused]] const ssize_t written =
            ::write(tunnels_[index].tun, packet.data() + header, got - header);
      }
    }
  }

  std::vector<Tunnel> tunnels_;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

// ---- The rack ----

// The fabric end of a veth is named "<namespace short name>-<interface>" (under IFNAMSIZ).
void link_to_fabric(const support::Netns& fabric, const support::Netns& netns,
                    const std::string& short_name, const std::string& interface,
                    const std::string& bridge) {
  const std::string peer = short_name + "-" + interface;
  support::run_or_throw({"ip", "link", "add", interface, "netns", netns.name(), "type", "veth",
                         "peer", "name", peer, "netns", fabric.name()});
  support::run_or_throw({"ip", "-n", fabric.name(), "link", "set", peer, "master", bridge, "up"});
  support::run_or_throw({"ip", "-n", netns.name(), "link", "set", interface, "up"});
  // af_packet hands the dataplane whatever the kernel built: whole frames with full checksums
  // only (DESIGN.md), on both ends.
  for (const auto& [where, name] : {std::pair{&netns, interface}, std::pair{&fabric, peer}}) {
    where->run({"ethtool", "-K", name, "tx", "off", "tso", "off", "gso", "off", "gro", "off"});
  }
}

void quiet_ipv6(const support::Netns& netns) {  // no router solicitations or DAD in the captures
  netns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
  netns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
}

std::string nginx_conf(const fs::path& dir, const std::string& name) {
  const std::string d = dir.string();
  return "daemon off; worker_processes 1; pid " + d + "/nginx.pid; error_log " + d +
         "/error.log;\n"
         "events { worker_connections 64; }\n"
         "http { access_log off; client_body_temp_path " + d + "; proxy_temp_path " + d +
         "; fastcgi_temp_path " + d + "; uwsgi_temp_path " + d + "; scgi_temp_path " + d + ";\n"
         "  keepalive_timeout 300s; keepalive_requests 1000;\n"
         "  server { listen " + std::to_string(http_port) + "; location / { default_type text/plain;"
         " return 200 \"" + body_of(name).substr(0, body_of(name).size() - 1) + "\\n\"; } } }\n";
}

struct BackendState {
  int number;
  std::string state;  // active / draining / down
};

std::string config_json(int version, const std::vector<BackendState>& backends) {
  json::array list;
  for (const auto& backend : backends) {
    list.push_back(json::object{{"address", backend_address(backend.number)},
                                {"state", backend.state}});
  }
  json::object config{{"version", version},
                      {"services", json::array{json::object{{"vip", vip},
                                                            {"protocol", "tcp"},
                                                            {"port", http_port},
                                                            {"backends", list}}}},
                      {"owned_vips", json::array{vip}},
                      {"gateway", fabric_service_address}};
  return json::serialize(config);
}

std::string node_cfg(const fs::path& dir) {
  std::string text = "paths: { runtime_dir = \"" + dir.string() + "\"; };\n";
  text += "dataplane: {\n";
  text += "  lcores = 1;\n";
  text += "  memory_mb = " + std::to_string(test_memory_mb) + ";\n";
  text += "  hugepages = \"off\";\n";
  text += "  flows_per_lcore = " + std::to_string(test_flows_per_lcore) + ";\n";
  text += "  config_file = \"" + (dir / "config.json").string() + "\";\n";
  text += "  ports = ( { name = \"front\"; device = \"net_af_packet0,iface=dpf0\";"
          " roles = [\"front\"]; addresses = [\"" + std::string(node_front_address) + "\"]; },\n";
  text += "            { name = \"service\"; device = \"net_af_packet1,iface=dps0\";"
          " roles = [\"service\"]; addresses = [\"" + std::string(node_outer_source) + "\"]; } );\n";
  text += "};\n";
  return text;
}

std::uint64_t number(const json::value& value) {
  return value.is_uint64() ? value.get_uint64() : value.to_number<std::uint64_t>();
}

class Rack {
 public:
  explicit Rack(const fs::path& dir) : dir_(dir) {
    fabric_ = std::make_unique<support::Netns>("fabric");
    client_ = std::make_unique<support::Netns>("client");
    node_ = std::make_unique<support::Netns>("node");
    for (const auto& netns : {fabric_.get(), client_.get(), node_.get()}) quiet_ipv6(*netns);

    const std::string& fabric = fabric_->name();
    for (const char* bridge : {"br-front", "br-svc"}) {
      support::run_or_throw({"ip", "-n", fabric, "link", "add", bridge, "type", "bridge"});
      support::run_or_throw({"ip", "-n", fabric, "link", "set", bridge, "up"});
    }
    support::run_or_throw({"ip", "-n", fabric, "addr", "add", fabric_front_address, "dev", "br-front"});
    support::run_or_throw({"ip", "-n", fabric, "addr", "add", std::string(fabric_service_address) + "/24",
                           "dev", "br-svc"});
    fabric_->sysctl("net.ipv4.ip_forward", "1");
    // Backends answer from the VIP (a br-front address) on br-svc: no reverse-path filter.
    for (const char* scope : {"all", "default", "br-front", "br-svc"}) {
      fabric_->sysctl(std::string("net.ipv4.conf.") + scope + ".rp_filter", "0");
    }

    link_to_fabric(*fabric_, *client_, "client", "eth0", "br-front");
    client_->run({"ip", "addr", "add", client_address, "dev", "eth0"});
    client_->run({"ip", "route", "add", "default", "via", "198.18.0.1"});
    link_to_fabric(*fabric_, *node_, "node", "dpf0", "br-front");
    link_to_fabric(*fabric_, *node_, "node", "dps0", "br-svc");

    for (int number = 1; number <= backend_count; ++number) add_backend(number);
    decapsulation_.start();

    support::write_file(dir_ / "config.json",
                        config_json(1, {{1, "active"}, {2, "active"}}));
    support::write_file(dir_ / "node.cfg", node_cfg(dir_));
    dataplane_ = std::make_unique<support::Process>(
        node_->exec({(support::binary_dir() / "stacknode-dataplane").string(), "--config",
                     (dir_ / "node.cfg").string()}),
        dir_ / "dataplane.log");
  }

  ~Rack() {
    // Processes first (their namespaces go with the Netns objects), the fabric last.
    dataplane_.reset();
    nginx_.clear();
    for (auto& backend : backends_) backend->kill_everything_inside();
  }

  const std::string& decapsulation() const { return decapsulation_kind_; }
  const support::Netns& client() const { return *client_; }
  std::string socket() const { return (dir_ / "dataplane.sock").string(); }
  std::string dataplane_output() const { return dataplane_->output(); }

  // One control request; fails the test unless the dataplane answers ok.
  json::value control(const std::string& request) {
    const auto answer = support::unix_line_request(socket(), request, control_timeout);
    if (!answer) FAIL(("no answer to " + request + "\n" + dataplane_output()).c_str());
    json::value parsed = json::parse(*answer);
    if (!parsed.at("ok").as_bool()) FAIL(("refused: " + request + " -> " + *answer).c_str());
    return parsed;
  }

  // Waits until the dataplane answers and has learned every given backend's MAC by ARP.
  void wait_for_neighbours(const std::vector<int>& numbers) {
    const bool resolved = support::poll_until(
        [&] {
          const auto answer =
              support::unix_line_request(socket(), R"({"op":"status"})", control_timeout);
          if (!answer) return !dataplane_->running();
          const json::value status = json::parse(*answer);
          for (int number : numbers) {
            bool known = false;
            for (const auto& entry : status.at("resolving").as_array()) {
              known = known || (entry.at("address").as_string() == backend_address(number) &&
                                !entry.at("mac").is_null());
            }
            if (!known) return false;
          }
          return true;
        },
        eventually);
    if (!resolved || !dataplane_->running()) {
      FAIL(("the dataplane did not come up or did not resolve the backends:\n" +
            dataplane_output())
               .c_str());
    }
  }

  // One curl from the client namespace to the VIP (a new connection); the backend that answered.
  std::string curl() const {
    const support::CommandResult result = support::run_command(client_->exec(
        {"curl", "-sS", "--max-time", curl_max_seconds, "http://" + std::string(vip) + "/"}));
    const std::string backend = answered_by(result.output);
    if (result.status != 0 || backend.empty()) {
      FAIL(("curl to the VIP failed (exit " + std::to_string(result.status) + "): " +
            result.output + "\n" + dataplane_output())
               .c_str());
    }
    return backend;
  }

  // SIGTERM; the dataplane must stop cleanly and remove its socket.
  void stop() {
    dataplane_->signal(SIGTERM);
    if (dataplane_->wait(eventually) != 0) {
      FAIL(("stacknode-dataplane did not stop cleanly:\n" + dataplane_output()).c_str());
    }
    CHECK_FALSE(fs::exists(socket()));
  }

 private:
  void add_backend(int number) {
    const std::string name = backend_name(number);
    auto backend = std::make_unique<support::Netns>(name);
    quiet_ipv6(*backend);
    link_to_fabric(*fabric_, *backend, name, "svc0", "br-svc");
    backend->run({"ip", "addr", "add", backend_address(number) + "/24", "dev", "svc0"});
    backend->run({"ip", "route", "add", "default", "via", fabric_service_address});
    // Direct server return: the VIP is local (on lo) but only the dataplane answers ARP for it,
    // and the inner packets arrive on ipip0 from a source routed elsewhere.
    backend->run({"ip", "addr", "add", std::string(vip) + "/32", "dev", "lo"});
    decapsulation_kind_ = decapsulation_.add(*backend, backend_address(number));
    backend->run({"ip", "link", "set", "ipip0", "up"});
    for (const char* scope : {"all", "default", "svc0", "ipip0"}) {
      backend->sysctl(std::string("net.ipv4.conf.") + scope + ".rp_filter", "0");
    }
    backend->sysctl("net.ipv4.conf.all.arp_ignore", "1");
    backend->sysctl("net.ipv4.conf.all.arp_announce", "2");

    const fs::path nginx_dir = dir_ / name;
    fs::create_directories(nginx_dir);
    support::write_file(nginx_dir / "nginx.conf", nginx_conf(nginx_dir, name));
    nginx_.push_back(std::make_unique<support::Process>(
        backend->exec({"nginx", "-c", (nginx_dir / "nginx.conf").string()}), nginx_dir / "nginx.log"));
    backends_.push_back(std::move(backend));
  }

  fs::path dir_;
  // Declared in teardown order reversed: the namespaces outlive what runs in them.
  std::unique_ptr<support::Netns> fabric_, client_, node_;
  std::vector<std::unique_ptr<support::Netns>> backends_;
  IpipDecapsulation decapsulation_;
  std::string decapsulation_kind_;
  std::vector<std::unique_ptr<support::Process>> nginx_;
  std::unique_ptr<support::Process> dataplane_;
};

// A keep-alive HTTP connection from the client namespace to the VIP.
class HeldConnection {
 public:
  explicit HeldConnection(const support::Netns& client) {
    support::InNetns inside(client);  // the socket is the client's for good
    connection_ = std::make_unique<support::RawConnection>(vip, http_port);
  }
  bool connected() const { return connection_->connected(); }

  // One request on the connection; the backend that answered (empty if none did).
  std::string request() {
    if (!connection_->send("GET / HTTP/1.1\r\nHost: vip\r\n\r\n")) return {};
    return answered_by(connection_->read_until(body_marker, request_timeout));
  }

 private:
  std::unique_ptr<support::RawConnection> connection_;
};

// New flows per backend address for the VIP's service, from a counters answer.
std::map<std::string, std::uint64_t> new_flows_by_backend(const json::value& counters) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& service : counters.at("services").as_array()) {
    if (service.at("vip").as_string() != vip) continue;
    for (const auto& backend : service.at("backends").as_array()) {
      out[json::value_to<std::string>(backend.at("address"))] = number(backend.at("new_flows"));
    }
  }
  return out;
}

}  // namespace

TEST_GROUP(DataplaneNetns){};

TEST(DataplaneNetns, ClientsReachEveryBackendAndFlowsKeepTheirBackend) {
  if (const std::string why = support::namespaces_unavailable(); !why.empty()) {
    support::skip_all(why);
  }
  if (!fs::exists("/dev/net/tun")) support::skip_all("no /dev/net/tun (needed where the kernel has no ipip)");
  support::remove_stale_namespaces();
  support::require_program("nginx", "nginx-light");
  support::require_program("curl", "curl");
  support::require_program("ethtool", "ethtool");
  support::TempDir dir;
  Rack rack(dir.path());
  std::printf("\n  IPIP decapsulation on the backends: %s\n", rack.decapsulation().c_str());
  std::map<std::string, std::uint64_t> answered;  // connections answered, by backend address
  const auto address_of = [](const std::string& name) {
    return backend_address(std::stoi(name.substr(2)));
  };

  // Two active backends: both answer.
  rack.wait_for_neighbours({1, 2});
  std::map<std::string, int> phase;
  for (int connection = 0; connection < connections_per_phase; ++connection) ++phase[rack.curl()];
  CHECK_EQUAL(2u, phase.size());
  CHECK(phase.count("be1") == 1 && phase.count("be2") == 1);
  for (const auto& [name, count] : phase) answered[address_of(name)] += count;

  // A held connection, and the only established flow in the dataplane is its own.
  HeldConnection held(rack.client());
  CHECK(held.connected());
  const std::string kept = held.request();
  CHECK(kept == "be1" || kept == "be2");
  answered[address_of(kept)] += 1;
  {
    const json::value flows = rack.control(R"({"op":"flows","limit":1000})");
    int established = 0;
    for (const auto& flow : flows.at("flows").as_array()) {
      if (flow.at("state").as_string() != "tcp_established") continue;
      ++established;
      STRCMP_EQUAL(address_of(kept).c_str(), json::value_to<std::string>(flow.at("backend")).c_str());
    }
    CHECK_EQUAL(1, established);
  }

  // A third backend joins: the held connection keeps its backend; new ones reach all three.
  rack.control(R"({"op":"apply","config":)" +
               config_json(2, {{1, "active"}, {2, "active"}, {3, "active"}}) + "}");
  rack.wait_for_neighbours({1, 2, 3});
  STRCMP_EQUAL(kept.c_str(), held.request().c_str());
  phase.clear();
  for (int connection = 0; connection < connections_per_phase; ++connection) ++phase[rack.curl()];
  CHECK_EQUAL(3u, phase.size());
  for (const auto& [name, count] : phase) answered[address_of(name)] += count;

  // Its backend drained: the held connection still goes there, new connections never do.
  std::vector<BackendState> drained = {{1, "active"}, {2, "active"}, {3, "active"}};
  drained[std::stoi(kept.substr(2)) - 1].state = "draining";
  rack.control(R"({"op":"apply","config":)" + config_json(3, drained) + "}");
  STRCMP_EQUAL(kept.c_str(), held.request().c_str());
  phase.clear();
  for (int connection = 0; connection < connections_per_phase; ++connection) ++phase[rack.curl()];
  CHECK_EQUAL(0u, phase.count(kept));
  CHECK_EQUAL(2u, phase.size());
  for (const auto& [name, count] : phase) answered[address_of(name)] += count;

  // The dataplane counted one new flow per connection, for the backend that answered it.
  const std::map<std::string, std::uint64_t> counted =
      new_flows_by_backend(rack.control(R"({"op":"counters"})"));
  for (int number = 1; number <= backend_count; ++number) {
    const std::string address = backend_address(number);
    const std::uint64_t expected = answered.count(address) ? answered.at(address) : 0;
    const std::uint64_t actual = counted.count(address) ? counted.at(address) : 0;
    if (expected != actual) {
      FAIL((address + ": " + std::to_string(expected) + " connections answered, the dataplane counted " +
            std::to_string(actual) + " new flows")
               .c_str());
    }
  }
  rack.stop();
}
