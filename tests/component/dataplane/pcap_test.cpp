// Golden-pcap component test of stacknode-dataplane: the real binary on two DPDK net_pcap ports
// (rx_pcap in, tx_pcap out). The test writes the input capture with frame_builder (ARP, echo,
// load-balanced TCP and UDP, L2 DSR, a too-big packet, and frames to drop), runs the dataplane
// with the unit tests' rack config (tests/unit/dataplane/rack_fixture.hpp) given as its
// config_file, waits until the front port has read every frame, stops it with SIGTERM and compares
// both output captures frame by frame with the frames frame_builder expects. The packet logic is
// unit-tested frame by frame; this proves the shell around it (EAL, ports, mbuf headroom and
// lengths, the worker's transmit path per port, config_file, counters, a clean stop) does what
// the core decided, byte for byte.
#include <signal.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net.hpp"
#include "packet_cases.hpp"
#include "process.hpp"
#include "skip.hpp"

#include <CppUTest/TestHarness.h>

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace stacknode::dataplane;
using namespace stacknode::dataplane::test;
namespace support = stacknode::test;

namespace {

// Upper bound for start-up, reading the capture and stopping; generous for the sanitizer build.
// Only keeps a broken dataplane from hanging the suite: nothing is timed.
constexpr std::chrono::milliseconds eventually{30'000};
constexpr std::chrono::milliseconds control_timeout{5'000};
// Flow table of the test's dataplane: small, the capture holds a dozen flows.
constexpr unsigned test_flows_per_lcore = 4096;
constexpr unsigned test_memory_mb = 128;

// ---- pcap files (the classic libpcap format: a 24-byte file header, then a 16-byte record header
// before each frame; microsecond or nanosecond timestamps, either byte order on reading) ----

constexpr std::uint32_t pcap_magic_micro = 0xa1b2c3d4;
constexpr std::uint32_t pcap_magic_nano = 0xa1b23c4d;
constexpr std::uint32_t pcap_linktype_ethernet = 1;
constexpr std::uint32_t pcap_snaplen = 65535;
constexpr std::size_t pcap_file_header_bytes = 24;
constexpr std::size_t pcap_record_header_bytes = 16;

void put32le(std::string& out, std::uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>(value >> shift));
}
void put16le(std::string& out, std::uint16_t value) {
  out.push_back(static_cast<char>(value));
  out.push_back(static_cast<char>(value >> 8));
}

void write_pcap(const fs::path& path, const std::vector<Bytes>& frames) {
  std::string out;
  put32le(out, pcap_magic_micro);
  put16le(out, 2);  // format version 2.4
  put16le(out, 4);
  put32le(out, 0);  // GMT offset
  put32le(out, 0);  // timestamp accuracy
  put32le(out, pcap_snaplen);
  put32le(out, pcap_linktype_ethernet);
  std::uint32_t microseconds = 0;
  for (const Bytes& frame : frames) {
    put32le(out, 0);
    put32le(out, microseconds++);
    put32le(out, static_cast<std::uint32_t>(frame.size()));
    put32le(out, static_cast<std::uint32_t>(frame.size()));
    out.append(reinterpret_cast<const char*>(frame.data()), frame.size());
  }
  support::write_file(path, out);
}

std::vector<Bytes> read_pcap(const fs::path& path) {
  const std::string text = support::read_file(path);
  if (text.size() < pcap_file_header_bytes)
    FAIL(("capture too short for its header: " + path.string()).c_str());
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(text.data());
  const auto read32 = [&](std::size_t at, bool swapped) {
    std::uint32_t value = 0;
    for (int index = 3; index >= 0; --index)
      value = value << 8 | bytes[at + (swapped ? 3 - index : index)];
    return value;
  };
  const std::uint32_t magic = read32(0, false);
  bool swapped = false;
  if (magic != pcap_magic_micro && magic != pcap_magic_nano) {
    swapped = true;
    const std::uint32_t other = read32(0, true);
    if (other != pcap_magic_micro && other != pcap_magic_nano)
      FAIL(("not a pcap file: " + path.string()).c_str());
  }
  if (read32(20, swapped) != pcap_linktype_ethernet)
    FAIL(("not an Ethernet capture: " + path.string()).c_str());
  std::vector<Bytes> frames;
  std::size_t at = pcap_file_header_bytes;
  while (at + pcap_record_header_bytes <= text.size()) {
    const std::uint32_t captured = read32(at + 8, swapped);
    const std::uint32_t original = read32(at + 12, swapped);
    at += pcap_record_header_bytes;
    if (captured != original || at + captured > text.size()) {
      FAIL(("truncated or snapped frame in " + path.string()).c_str());
    }
    frames.emplace_back(bytes + at, bytes + at + captured);
    at += captured;
  }
  if (at != text.size()) FAIL(("trailing bytes in " + path.string()).c_str());
  return frames;
}

// ---- The dataplane's inputs ----

// The control protocol's "config" object for the rack fixture's services, VIPs and neighbours
// (the ports come from node.cfg).
std::string config_json(const SnapshotConfig& config) {
  json::object out;
  out["version"] = config.version;
  json::array services;
  for (const auto& service : config.services) {
    json::object entry;
    entry["vip"] = to_string(service.vip.address);
    entry["protocol"] = to_string(service.vip.protocol);
    entry["port"] = service.vip.port;
    entry["mode"] = to_string(service.mode);
    json::array backends;
    for (const auto& backend : service.backends) {
      backends.push_back(json::object{{"address", to_string(backend.address)},
                                      {"weight", backend.weight},
                                      {"state", to_string(backend.state)}});
    }
    entry["backends"] = std::move(backends);
    services.push_back(std::move(entry));
  }
  out["services"] = std::move(services);
  json::array vips;
  for (const auto& vip : config.owned_vips) vips.push_back(json::string(to_string(vip)));
  out["owned_vips"] = std::move(vips);
  json::array neighbours;
  for (const auto& neighbour : config.neighbours) {
    neighbours.push_back(
        json::object{{"address", to_string(neighbour.address)}, {"mac", to_string(neighbour.mac)}});
  }
  out["neighbours"] = std::move(neighbours);
  if (config.gateway) out["gateway"] = to_string(*config.gateway);
  return json::serialize(out);
}

// Capture files of port `name`, queue `queue` (one queue, and one worker lcore, per file).
fs::path capture(const fs::path& dir, const std::string& name, const char* direction,
                 unsigned queue) {
  return dir / (name + "-" + direction + "-" + std::to_string(queue) + ".pcap");
}

// node.cfg for two net_pcap ports with `lcores` queue pairs each (net_pcap makes one queue per
// rx_pcap/tx_pcap argument); `config_file` empty: none.
std::string node_cfg(const fs::path& dir, unsigned lcores, const std::string& config_file) {
  const auto port = [&](const std::string& name, int index, const char* role, const Ip4& ip,
                        const Mac& mac_bytes) {
    std::string device = "net_pcap" + std::to_string(index);
    for (unsigned queue = 0; queue < lcores; ++queue) {
      device += ",rx_pcap=" + capture(dir, name, "in", queue).string();
      device += ",tx_pcap=" + capture(dir, name, "out", queue).string();
    }
    return "{ name = \"" + name + "\"; device = \"" + device + "\"; roles = [\"" + role +
           "\"]; addresses = [\"" + to_string(address(ip)) + "\"]; mac = \"" +
           to_string(mac(mac_bytes)) + "\"; }";
  };
  std::string text = "paths: { runtime_dir = \"" + dir.string() + "\"; };\n";
  text += "dataplane: {\n";
  text += "  lcores = " + std::to_string(lcores) + ";\n";
  text += "  memory_mb = " + std::to_string(test_memory_mb) + ";\n";
  text += "  hugepages = \"off\";\n";
  text += "  flows_per_lcore = " + std::to_string(test_flows_per_lcore) + ";\n";
  if (!config_file.empty()) text += "  config_file = \"" + config_file + "\";\n";
  text += "  ports = ( " + port("front", 0, "front", front_ip, front_mac) + ",\n";
  text += "            " + port("service", 1, "service", outer_source_ip, service_mac) + " );\n";
  text += "};\n";
  return text;
}

std::uint64_t number(const json::value& value) {
  return value.is_uint64() ? value.get_uint64() : value.to_number<std::uint64_t>();
}

void check_frames(const char* port, const std::vector<Bytes>& expected,
                  const std::vector<Bytes>& actual) {
  for (std::size_t index = 0; index < std::min(expected.size(), actual.size()); ++index) {
    const std::string difference =
        describe_difference(expected[index], actual[index].data(), actual[index].size());
    if (!difference.empty()) {
      FAIL((std::string(port) + " frame " + std::to_string(index) + ": " + difference).c_str());
    }
  }
  if (expected.size() != actual.size()) {
    FAIL((std::string(port) + ": expected " + std::to_string(expected.size()) +
          " frames, the dataplane sent " + std::to_string(actual.size()))
             .c_str());
  }
}

Bytes gratuitous_arp(const Mac& port_mac, const Ip4& vip) {
  return padded(ethernet(broadcast_mac, port_mac, ethertype_arp,
                         arp(arp_request, port_mac, vip, zero_mac, vip)));
}

// Frames the lcore has decided on: forwarded, answered or dropped.
std::uint64_t decided(const json::value& lcore) {
  std::uint64_t total = number(lcore.at("forwarded_packets")) + number(lcore.at("arp_replies")) +
                        number(lcore.at("echo_replies")) + number(lcore.at("frag_needed_sent")) +
                        number(lcore.at("arp_punted"));
  for (const auto& reason : lcore.at("drops").as_object()) total += number(reason.value());
  return total;
}

// One run of the real binary on two net_pcap ports over the given input captures, with `config`
// as its config_file. Killed by Process if a test fails before stop().
class GoldenRun {
 public:
  // Inputs per worker lcore: front_in[q] and service_in[q] are queue q's captures.
  GoldenRun(const fs::path& dir, const SnapshotConfig& config,
            const std::vector<std::vector<Bytes>>& front_in,
            const std::vector<std::vector<Bytes>>& service_in)
      : dir_(dir) {
    const auto lcores = static_cast<unsigned>(front_in.size());
    for (unsigned queue = 0; queue < lcores; ++queue) {
      write_pcap(capture(dir, "front", "in", queue), front_in[queue]);
      write_pcap(capture(dir, "service", "in", queue), service_in[queue]);
    }
    support::write_file(dir / "config.json", config_json(config));
    support::write_file(dir / "node.cfg", node_cfg(dir, lcores, (dir / "config.json").string()));
    process_ = std::make_unique<support::Process>(
        std::vector<std::string>{(support::binary_dir() / "stacknode-dataplane").string(),
                                 "--config", (dir / "node.cfg").string()},
        dir / "dataplane.log");
  }

  std::string socket() const { return (dir_ / "dataplane.sock").string(); }
  std::string output() const { return process_->output(); }

  // The first counters reply for which `done` holds, or the last one read when time ran out.
  json::value counters_when(const std::function<bool(const json::value&)>& done) {
    json::value counters;
    support::poll_until(
        [&] {
          const auto answer =
              support::unix_line_request(socket(), R"({"op":"counters"})", control_timeout);
          if (!answer) return !process_->running();
          counters = json::parse(*answer);
          return done(counters);
        },
        eventually);
    if (counters.is_null())
      FAIL(("the dataplane never answered on its control socket:\n" + output()).c_str());
    return counters;
  }

  // SIGTERM; the run must end cleanly (exit 0), with its socket removed and the captures closed.
  void stop() {
    process_->signal(SIGTERM);
    if (process_->wait(eventually) != 0)
      FAIL(("stacknode-dataplane did not stop cleanly:\n" + output()).c_str());
    CHECK_FALSE(fs::exists(socket()));
  }

 private:
  fs::path dir_;
  std::unique_ptr<support::Process> process_;
};

}  // namespace

TEST_GROUP(DataplaneGoldenPcap){};

TEST(DataplaneGoldenPcap, FramesInFramesOut) {
  if (::geteuid() != 0) support::skip_all("stacknode-dataplane (DPDK EAL) needs root");
  support::TempDir dir;
  const SnapshotConfig config = rack_config();
  const auto snapshot = build_or_fail(config);  // only to predict Maglev picks
  const auto backend = [&](IpProtocol protocol, std::uint16_t port, std::uint16_t source_port) {
    return maglev_backend_of(*snapshot, {address(vip_ip), protocol, port}, client_ip, source_port);
  };
  constexpr std::uint16_t client_port = 40000;
  constexpr std::uint16_t spread_flows = 12;
  constexpr std::uint16_t service_mtu = default_port_mtu;
  constexpr std::uint16_t ipip_overhead = 20;

  std::vector<Bytes> in;
  std::vector<Bytes> front_expected;
  std::vector<Bytes> service_expected;
  std::map<std::string, std::uint64_t> http_new_flows;  // by backend address

  in.push_back(arp_frame(arp_request, client_ip, vip_ip));
  front_expected.push_back(arp_answer(front_mac, vip_ip));
  in.push_back(arp_frame(arp_request, client_ip, front_ip));
  front_expected.push_back(arp_answer(front_mac, front_ip));
  in.push_back(from_client(echo_request(vip_ip)));
  front_expected.push_back(to_client(echo_reply_from(vip_ip)));

  // A connection's SYN and a data segment go to the same backend.
  const Bytes syn = tcp_packet(client_port, http_port, flag_syn);
  const Bytes data = tcp_packet(client_port, http_port, flag_ack | flag_psh, payload_of(300));
  const IpAddress first_backend = backend(IpProtocol::tcp, http_port, client_port);
  in.push_back(from_client(syn));
  service_expected.push_back(expected_ipip(syn, first_backend));
  in.push_back(from_client(data));
  service_expected.push_back(expected_ipip(data, first_backend));
  ++http_new_flows[to_string(first_backend)];
  // More connections spread over the backends as Maglev says.
  for (std::uint16_t flow = 1; flow <= spread_flows; ++flow) {
    const auto source_port = static_cast<std::uint16_t>(client_port + flow);
    const Bytes flow_syn = tcp_packet(source_port, http_port, flag_syn);
    const IpAddress picked = backend(IpProtocol::tcp, http_port, source_port);
    in.push_back(from_client(flow_syn));
    service_expected.push_back(expected_ipip(flow_syn, picked));
    ++http_new_flows[to_string(picked)];
  }
  const Bytes query = udp_packet(5353, dns_port, payload_of(40));
  in.push_back(from_client(query));
  service_expected.push_back(expected_ipip(query, backend(IpProtocol::udp, dns_port, 5353)));
  const Bytes dsr = tcp_packet(client_port, dsr_port, flag_syn);
  in.push_back(from_client(dsr));
  service_expected.push_back(expected_l2_dsr(dsr, backend(IpProtocol::tcp, dsr_port, client_port)));
  // One byte more than fits the service port after encapsulation, DF set: ICMP back to the client.
  const Bytes too_big = tcp_packet(client_port, http_port, flag_ack,
                                   payload_of(service_mtu - ipip_overhead - 40 + 1));
  in.push_back(from_client(too_big));
  front_expected.push_back(fragmentation_needed(too_big, service_mtu - ipip_overhead));
  // Dropped, each by its reason.
  in.push_back(from_client(
      tcp_packet(client_port, http_port, flag_syn, {}, client_header(proto_tcp, other_vip_ip))));
  in.push_back(Bytes(syn.begin(), syn.begin() + 13));
  Ipv4Header corrupt = client_header(proto_icmp);
  corrupt.corrupt_checksum = true;
  in.push_back(from_client(ipv4(corrupt, icmp(8, 0, 1, 1, payload_of(8)))));

  GoldenRun run(dir.path(), config, {in}, {{}});
  // Done when every frame read has been decided: forwarded, answered or dropped.
  const json::value all_decided = run.counters_when(
      [&](const json::value& now) { return decided(now.at("lcores").at(0)) == in.size(); });
  if (number(all_decided.at("ports").at(0).at("rx_packets")) != in.size() ||
      decided(all_decided.at("lcores").at(0)) != in.size()) {
    FAIL(("the dataplane did not read and decide all " + std::to_string(in.size()) + " frames:\n" +
          json::serialize(all_decided) + "\n" + run.output())
             .c_str());
  }
  // The flow sample: every flow the capture started, each with its backend and state.
  const auto flows_answer =
      support::unix_line_request(run.socket(), R"({"op":"flows","limit":100})", control_timeout);
  CHECK_TRUE(flows_answer.has_value());
  const json::value flows = json::parse(*flows_answer);
  const std::size_t flow_count =
      1 + spread_flows + 2;  // the connection, the spread, UDP and L2 DSR
  LONGS_EQUAL(flow_count, number(flows.at("active_flows")));
  LONGS_EQUAL(flow_count, flows.at("flows").as_array().size());
  bool found_connection = false;
  for (const auto& flow : flows.at("flows").as_array()) {
    if (number(flow.at("client_port")) != client_port || number(flow.at("port")) != http_port)
      continue;
    found_connection = true;
    STRCMP_EQUAL(to_string(address(client_ip)).c_str(), flow.at("client").as_string().c_str());
    STRCMP_EQUAL(to_string(first_backend).c_str(), flow.at("backend").as_string().c_str());
    STRCMP_EQUAL("tcp_established", flow.at("state").as_string().c_str());  // SYN, then an ACK
  }
  CHECK_TRUE(found_connection);
  const auto limited =
      support::unix_line_request(run.socket(), R"({"op":"flows","limit":3})", control_timeout);
  CHECK_TRUE(limited.has_value());
  LONGS_EQUAL(3, json::parse(*limited).at("flows").as_array().size());
  // Read again now that every frame is decided: a reply's flow scan runs before its counters.
  const json::value counters = run.counters_when([](const json::value&) { return true; });
  run.stop();

  // The VIP was announced when the config made this node its owner, before anything else left
  // the front port (repeats may follow, each second, while the test runs).
  std::vector<Bytes> front_out = read_pcap(capture(dir.path(), "front", "out", 0));
  const Bytes announcement = gratuitous_arp(front_mac, vip_ip);
  CHECK_TRUE(!front_out.empty() && front_out.front() == announcement);
  std::erase(front_out, announcement);
  check_frames("front", front_expected, front_out);
  check_frames("service", service_expected, read_pcap(capture(dir.path(), "service", "out", 0)));

  // The counters tell the same story as the captures.
  const json::value& lcore = counters.at("lcores").at(0);
  LONGS_EQUAL(2, number(lcore.at("arp_replies")));
  LONGS_EQUAL(1, number(lcore.at("echo_replies")));
  LONGS_EQUAL(1, number(lcore.at("frag_needed_sent")));
  LONGS_EQUAL(service_expected.size(), number(lcore.at("forwarded_packets")));
  const json::value& drops = counters.at("drops");
  LONGS_EQUAL(1, number(drops.at("no_service")));
  LONGS_EQUAL(1, number(drops.at("frame_too_short")));
  LONGS_EQUAL(1, number(drops.at("ipv4_bad_checksum")));
  std::uint64_t dropped = 0;
  for (const auto& reason : drops.as_object()) dropped += number(reason.value());
  LONGS_EQUAL(3, dropped);
  for (const auto& service : counters.at("services").as_array()) {
    if (number(service.at("port")) != http_port || service.at("protocol").as_string() != "tcp")
      continue;
    for (const auto& item : service.at("backends").as_array()) {
      const std::string backend_address(item.at("address").as_string());
      LONGS_EQUAL(http_new_flows[backend_address], number(item.at("new_flows")));
      LONGS_EQUAL(http_new_flows[backend_address], number(item.at("active_flows")));
    }
  }
  CHECK_TRUE(http_new_flows.size() > 1);  // the capture really spreads over several backends
  LONGS_EQUAL(0, number(counters.at("control").at("arp_requests_sent")));  // every neighbour static
  CHECK_TRUE(number(counters.at("control").at("gratuitous_arp_sent")) >= 1);
}

// Backends without a static neighbour entry are resolved by ARP on the service port: requests go
// out for them, a reply (read from the service port's capture) is punted to the control thread,
// learned, and shows in status and counters; a backend that never answers stays unresolved.
TEST(DataplaneGoldenPcap, BackendsAreResolvedByArp) {
  if (::geteuid() != 0) support::skip_all("stacknode-dataplane (DPDK EAL) needs root");
  support::TempDir dir;
  SnapshotConfig config = rack_config();
  config.neighbours = {{address(backend2_ip), mac(backend2_mac)}};  // 1 answers, 3 stays silent
  config.gateway.reset();
  const Bytes reply =
      padded(ethernet(service_mac, backend1_mac, ethertype_arp,
                      arp(arp_reply, backend1_mac, backend1_ip, service_mac, outer_source_ip)));
  GoldenRun run(dir.path(), config, {{}}, {{reply}});
  const auto learned = [&] {
    const auto answer =
        support::unix_line_request(run.socket(), R"({"op":"status"})", control_timeout);
    if (!answer) return false;
    const json::value status = json::parse(*answer);
    for (const auto& entry : status.at("resolving").as_array()) {
      if (entry.at("address").as_string() == to_string(address(backend1_ip)) &&
          entry.at("mac").is_string()) {
        return entry.at("mac").as_string() == to_string(mac(backend1_mac));
      }
    }
    return false;
  };
  CHECK_TRUE(support::poll_until(learned, eventually));
  const json::value counters = run.counters_when([](const json::value& now) {
    // Sent, not only queued for worker 0: only ARP requests leave the service port here.
    return number(now.at("ports").at(1).at("tx_packets")) >= 1;
  });
  run.stop();
  LONGS_EQUAL(1, number(counters.at("lcores").at(0).at("arp_punted")));
  LONGS_EQUAL(1, number(counters.at("control").at("neighbours_learned")));
  for (const auto& service : counters.at("services").as_array()) {
    for (const auto& backend : service.at("backends").as_array()) {
      const bool silent = backend.at("address").as_string() == to_string(address(backend3_ip));
      CHECK_EQUAL(!silent, backend.at("neighbour_known").as_bool());
    }
  }
  // What left the service port: ARP requests from the outer source address, for the unresolved
  // backends (backend 1 too if a request went out before its reply was read), some for backend 3.
  const auto request_for = [](const Ip4& target) {
    return padded(ethernet(broadcast_mac, service_mac, ethertype_arp,
                           arp(arp_request, service_mac, outer_source_ip, zero_mac, target)));
  };
  std::vector<Bytes> service_out = read_pcap(capture(dir.path(), "service", "out", 0));
  const auto for_silent = std::erase(service_out, request_for(backend3_ip));
  CHECK_TRUE(for_silent >= 1);
  std::erase(service_out, request_for(backend1_ip));
  check_frames("service (other than ARP requests for backends 1 and 3)", {}, service_out);
}

// Owned VIPs with a deadline (config.owned_for_ms): answered while renewed, dropped by the
// dataplane itself when the renewals stop, and a renew that cannot apply is refused with why.
TEST(DataplaneGoldenPcap, OwnedVipsLapseWhenNoLongerRenewed) {
  if (::geteuid() != 0) support::skip_all("stacknode-dataplane (DPDK EAL) needs root");
  support::TempDir dir;
  const SnapshotConfig config = rack_config();
  GoldenRun run(dir.path(), config, {{}}, {{}});
  json::value reply;
  const auto ask = [&](const json::value& request) {
    const auto answer = support::unix_line_request(run.socket(), json::serialize(request), control_timeout);
    reply = answer ? json::parse(*answer) : json::value(nullptr);
    return answer.has_value();
  };
  const auto status = [&] {
    ask(json::object{{"op", "status"}});
    return reply;
  };
  CHECK_TRUE(support::poll_until([&] { return ask(json::object{{"op", "status"}}); }, eventually));
  CHECK(status().at("owned_for_ms_left").is_null());  // the start-up config has no deadline

  json::value held = json::parse(config_json(config));
  held.as_object()["version"] = 5;
  held.as_object()["owned_for_ms"] = 60'000;
  CHECK(ask(json::object{{"op", "apply"}, {"config", held}}) && reply.at("ok").as_bool());
  LONGS_EQUAL(1, status().at("owned_vips").as_array().size());
  CHECK(number(status().at("owned_for_ms_left")) > 0);

  CHECK(ask(json::object{{"op", "renew"}, {"version", 4}, {"for_ms", 60'000}}));
  CHECK_FALSE(reply.at("ok").as_bool());
  CHECK(std::string(reply.at("error").as_string()).find("version 5 is applied") != std::string::npos);

  // A short renewal, then none: the VIPs lapse by themselves.
  CHECK(ask(json::object{{"op", "renew"}, {"version", 5}, {"for_ms", 300}}) && reply.at("ok").as_bool());
  const bool lapsed = support::poll_until(
      [&] {
        const json::value now = status();
        return now.at("owned_vips").as_array().empty() && number(now.at("ownership_lapses")) == 1;
      },
      eventually);
  CHECK_TRUE(lapsed);
  LONGS_EQUAL(5, number(status().at("version")));  // the services stay: only the VIPs went
  LONGS_EQUAL(0, number(status().at("owned_for_ms_left")));
  CHECK(ask(json::object{{"op", "renew"}, {"version", 5}, {"for_ms", 60'000}}));
  CHECK_FALSE(reply.at("ok").as_bool());
  CHECK(std::string(reply.at("error").as_string()).find("lapsed") != std::string::npos);

  // Applied again, they are answered again.
  held.as_object()["version"] = 6;
  CHECK(ask(json::object{{"op", "apply"}, {"config", held}}) && reply.at("ok").as_bool());
  LONGS_EQUAL(1, status().at("owned_vips").as_array().size());
  CHECK(run.output().find("lapsed (not renewed in time)") != std::string::npos);
  run.stop();
}

// Two worker lcores, each with its own queue of each port (net_pcap: one capture per queue): each
// worker forwards and answers what its queue received out of its own transmit queues, keeps its
// own flows and counters, and worker 0 alone sends what the control thread originates.
TEST(DataplaneGoldenPcap, TwoWorkersEachServeTheirQueue) {
  if (::geteuid() != 0) support::skip_all("stacknode-dataplane (DPDK EAL) needs root");
  if (std::thread::hardware_concurrency() < 2) support::skip_all("two worker lcores need two CPUs");
  support::TempDir dir;
  const SnapshotConfig config = rack_config();
  const auto snapshot = build_or_fail(config);
  constexpr unsigned workers = 2;
  constexpr std::uint16_t flows_per_worker = 6;
  constexpr std::uint16_t first_client_port = 41000;
  std::vector<std::vector<Bytes>> in(workers);
  std::vector<std::vector<Bytes>> service_expected(workers);
  std::vector<std::vector<Bytes>> front_expected(workers);
  for (unsigned worker = 0; worker < workers; ++worker) {
    for (std::uint16_t flow = 0; flow < flows_per_worker; ++flow) {
      const auto source_port =
          static_cast<std::uint16_t>(first_client_port + worker * flows_per_worker + flow);
      const Bytes syn = tcp_packet(source_port, http_port, flag_syn);
      in[worker].push_back(from_client(syn));
      service_expected[worker].push_back(expected_ipip(
          syn, maglev_backend_of(*snapshot, {address(vip_ip), IpProtocol::tcp, http_port},
                                 client_ip, source_port)));
    }
  }
  in[0].push_back(from_client(echo_request(vip_ip)));
  front_expected[0] = {gratuitous_arp(front_mac, vip_ip), to_client(echo_reply_from(vip_ip))};
  in[1].push_back(arp_frame(arp_request, client_ip, vip_ip));
  front_expected[1] = {arp_answer(front_mac, vip_ip)};

  GoldenRun run(dir.path(), config, in, {{}, {}});
  run.counters_when([&](const json::value& now) {
    for (unsigned worker = 0; worker < workers; ++worker) {
      if (decided(now.at("lcores").at(worker)) != in[worker].size()) return false;
    }
    return true;
  });
  const json::value counters = run.counters_when([](const json::value&) { return true; });
  run.stop();

  for (unsigned worker = 0; worker < workers; ++worker) {
    const json::value& lcore = counters.at("lcores").at(worker);
    LONGS_EQUAL(flows_per_worker, number(lcore.at("new_flows")));
    LONGS_EQUAL(flows_per_worker, number(lcore.at("active_flows")));
    const std::string name = "worker " + std::to_string(worker);
    check_frames((name + " service").c_str(), service_expected[worker],
                 read_pcap(capture(dir.path(), "service", "out", worker)));
    std::vector<Bytes> front_out = read_pcap(capture(dir.path(), "front", "out", worker));
    // Repeated announcements (one a second) may follow the first on worker 0's queue.
    if (worker == 0 && !front_out.empty()) {
      std::erase(front_out, gratuitous_arp(front_mac, vip_ip));
      front_out.insert(front_out.begin(), gratuitous_arp(front_mac, vip_ip));
    }
    check_frames((name + " front").c_str(), front_expected[worker], front_out);
  }
}

// Start-up failures: one line a person can act on, exit status 2, nothing left behind.
TEST(DataplaneGoldenPcap, StartupFailuresAreOneLineAndStatus2) {
  if (::geteuid() != 0) support::skip_all("stacknode-dataplane (DPDK EAL) needs root");
  struct Case {
    const char* what;
    std::function<std::string(const fs::path&)> node_cfg;
    std::string expected;
  };
  const auto with_config = [](const std::string& json_text) {
    return [json_text](const fs::path& dir) {
      support::write_file(dir / "config.json", json_text);
      write_pcap(capture(dir, "front", "in", 0), {});
      write_pcap(capture(dir, "service", "in", 0), {});
      return node_cfg(dir, 1, (dir / "config.json").string());
    };
  };
  const unsigned too_many = std::thread::hardware_concurrency() + 1;
  const std::vector<Case> cases = {
      {"a device DPDK cannot open",
       [](const fs::path& dir) { return node_cfg(dir, 1, ""); },  // its input captures do not exist
       "dataplane: port 'front': DPDK has no device 'net_pcap0'"},
      {"more lcores than CPUs",
       [too_many](const fs::path& dir) {
         std::string text = node_cfg(dir, 1, "");
         text.replace(text.find("lcores = 1;"), 11, "lcores = " + std::to_string(too_many) + ";");
         return text;
       },
       "dataplane: dataplane.lcores = " + std::to_string(too_many) +
           " from CPU 0 needs CPUs up to"},
      {"a config_file the snapshot build refuses",
       with_config(R"({"version":1,"services":[{"vip":"198.18.0.100","protocol":"tcp","port":80,)"
                   R"("table_size":100,"backends":[]}]})"),
       "services[0] (198.18.0.100 tcp 80): Maglev table size 100 is not a prime"},
      {"a config_file with a field the protocol does not know",
       with_config(R"({"version":1,"vips":[]})"), "config_file"},
  };
  for (const Case& test_case : cases) {
    support::TempDir dir;
    support::write_file(dir.path() / "node.cfg", test_case.node_cfg(dir.path()));
    support::Process dataplane({(support::binary_dir() / "stacknode-dataplane").string(),
                                "--config", (dir.path() / "node.cfg").string()},
                               dir.path() / "dataplane.log");
    const auto status = dataplane.wait(eventually);
    const std::string output = dataplane.output();
    if (status != 2)
      FAIL((std::string(test_case.what) + ": expected exit status 2:\n" + output).c_str());
    STRCMP_CONTAINS(test_case.expected.c_str(), output.c_str());
    std::size_t errors = 0;
    for (std::size_t at = output.find(" ERROR "); at != std::string::npos;
         at = output.find(" ERROR ", at + 1)) {
      ++errors;
    }
    if (errors != 1)
      FAIL((std::string(test_case.what) + ": expected one ERROR line:\n" + output).c_str());
    CHECK_FALSE(fs::exists(dir.path() / "dataplane.sock"));
    CHECK_FALSE(fs::exists("/var/run/dpdk/stacknode-dataplane-" + std::to_string(dataplane.pid())));
  }
}
