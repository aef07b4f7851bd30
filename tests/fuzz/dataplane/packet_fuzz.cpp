// libFuzzer target over the dataplane's packet entry point, process_packet(): the input's first
// byte picks the receiving port and the snapshot (untagged or VLAN ports), the rest is the frame,
// which is processed twice in one lcore state (a new flow, then a known one). Sanitizers catch
// memory errors; the invariants below catch wrong answers and stop with __builtin_trap() so
// libFuzzer saves the input.
//
// Invariants checked:
//  1. A drop leaves the frame untouched, carries a reason, and increments exactly that counter.
//  2. A forward or reply lies within the buffer (headroom plus the received bytes), carries no
//     reason, and every IPv4 header, IPIP inner header and ICMP message in it has a valid
//     checksum (checked here with separate code), with a total length matching the frame.
//  3. A forward leaves from the service port's MAC towards a backend of the snapshot.
//  4. A punt (ARP reply on the service port) hands the frame on unchanged and counts it; the
//     control thread's reader (read_arp_reply) takes it without reading beyond it and never
//     yields an unusable MAC.
//  5. process_burst() decides as process_packet() does frame by frame: the input several times
//     in one burst (a new flow, then known ones) gives, in a fresh lcore state, the same
//     verdicts, output bytes and counters as one frame at a time in another.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <vector>

#include "stacknode/dataplane/arp.hpp"
#include "stacknode/dataplane/packet.hpp"
#include "stacknode/dataplane/snapshot.hpp"

using namespace stacknode::dataplane;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool checksum_ok(const std::uint8_t* bytes, std::size_t size) {
  std::uint32_t sum = 0;
  for (std::size_t index = 0; index + 1 < size; index += 2) sum += (bytes[index] << 8) | bytes[index + 1];
  if (size % 2 == 1) sum += bytes[size - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

std::uint16_t get16(const std::uint8_t* bytes) { return static_cast<std::uint16_t>((bytes[0] << 8) | bytes[1]); }

MacAddress mac(std::uint8_t last) { return MacAddress{{0x02, 0, 0, 0, 0x01, last}}; }

std::unique_ptr<const Snapshot> make_snapshot(bool vlans) {
  SnapshotConfig config;
  PortConfig front;
  front.name = "front";
  front.mac = mac(0x01);
  front.front = true;
  front.vlan_id = vlans ? 100 : 0;
  front.addresses = {IpAddress::ipv4(198, 18, 0, 3)};
  PortConfig service;
  service.name = "service";
  service.mac = mac(0x02);
  service.service = true;
  service.vlan_id = vlans ? 200 : 0;
  service.mtu = 1000;  // small, so that "fragmentation needed" is reachable
  service.addresses = {IpAddress::ipv4(198, 18, 1, 101)};
  config.ports = {front, service};
  std::vector<BackendConfig> backends;
  for (std::uint8_t last = 11; last <= 14; ++last) {
    backends.push_back({IpAddress::ipv4(198, 18, 1, last), last, last == 13 ? BackendState::draining : BackendState::active});
    if (last != 14) config.neighbours.push_back({IpAddress::ipv4(198, 18, 1, last), mac(last)});  // .14 unresolved
  }
  for (const auto& [protocol, port, mode] : {std::tuple{IpProtocol::tcp, 80, ForwardingMode::ipip},
                                             std::tuple{IpProtocol::udp, 53, ForwardingMode::ipip},
                                             std::tuple{IpProtocol::tcp, 8080, ForwardingMode::l2_dsr}}) {
    ServiceConfig entry;
    entry.vip = {IpAddress::ipv4(198, 18, 0, 100), protocol, static_cast<std::uint16_t>(port)};
    entry.mode = mode;
    entry.maglev_table_size = 251;
    entry.backends = backends;
    config.services.push_back(entry);
  }
  config.owned_vips = {IpAddress::ipv4(198, 18, 0, 100)};
  SnapshotBuildResult result = build_snapshot(config);
  check(result.snapshot != nullptr);
  return std::move(result.snapshot);
}

void check_frame(const std::uint8_t* frame, std::size_t length) {
  check(length >= ethernet_header_bytes);
  std::size_t l3 = ethernet_header_bytes;
  std::uint16_t ethertype = get16(frame + 12);
  if (ethertype == 0x8100) {
    check(length >= l3 + vlan_tag_bytes);
    l3 += vlan_tag_bytes;
    ethertype = get16(frame + 16);
  }
  if (ethertype != 0x0800) return;  // ARP replies have no checksum
  check(length >= l3 + ipv4_header_bytes);
  const std::uint8_t* ip = frame + l3;
  const std::size_t header_length = (ip[0] & 0x0f) * 4u;
  check(header_length >= ipv4_header_bytes && length >= l3 + header_length);
  check(checksum_ok(ip, header_length));
  check(get16(ip + 2) == length - l3);
  if (ip[9] == 4) check(length >= l3 + header_length + ipv4_header_bytes && checksum_ok(ip + header_length, ipv4_header_bytes));
  if (ip[9] == 1) check(checksum_ok(ip + header_length, length - l3 - header_length));
}

void run(const Snapshot& snapshot, LcoreState& lcore, std::uint16_t port, const std::uint8_t* data, std::size_t size,
         std::uint64_t now) {
  std::vector<std::uint8_t> buffer(encap_headroom_bytes + size);
  std::memcpy(buffer.data() + encap_headroom_bytes, data, size);
  std::uint8_t* frame = buffer.data() + encap_headroom_bytes;
  const LcoreCounters before = lcore.counters;
  const Verdict verdict = process_packet(snapshot, lcore, port, frame, static_cast<std::uint32_t>(size), now);
  if (verdict.action == Action::drop) {
    check(verdict.drop_reason != DropReason::none);
    check(verdict.data == frame && verdict.length == size);
    check(size == 0 || std::memcmp(frame, data, size) == 0);
    check(lcore.counters.dropped(verdict.drop_reason) == before.dropped(verdict.drop_reason) + 1);
    check(lcore.counters.total_drops() == before.total_drops() + 1);
    return;
  }
  check(verdict.drop_reason == DropReason::none);
  check(lcore.counters.total_drops() == before.total_drops());
  if (verdict.action == Action::punt) {  // handed on unchanged, to the control thread's reader
    check(verdict.data == frame && verdict.length == size && std::memcmp(frame, data, size) == 0);
    check(lcore.counters.arp_punted == before.arp_punted + 1);
    if (const auto sender = read_arp_reply(frame, size)) check(!sender->mac.is_multicast() && !sender->mac.is_zero());
    return;
  }
  check(verdict.data >= buffer.data() && verdict.data + verdict.length <= buffer.data() + buffer.size());
  check_frame(verdict.data, verdict.length);
  if (verdict.action == Action::forward) {
    check(verdict.backend < snapshot.backends().size());
    check(std::memcmp(verdict.data + 6, snapshot.ports()[snapshot.service_port()].mac.bytes.data(), 6) == 0);
  }
}

// Frames of one burst in check_burst_matches: the first makes a flow, the rest find it.
constexpr std::size_t burst_copies = 3;
constexpr std::size_t fuzz_table_capacity = 64;

void check_burst_matches(const Snapshot& snapshot, std::uint16_t port, const std::uint8_t* data, std::size_t size) {
  ConnTableConfig table;
  table.capacity = fuzz_table_capacity;
  LcoreState one_by_one(table);
  LcoreState burst(table);
  std::vector<std::vector<std::uint8_t>> singles(burst_copies), bursts(burst_copies);
  std::uint8_t* frames[burst_copies];
  std::uint32_t lengths[burst_copies];
  Verdict verdicts[burst_copies];
  for (std::size_t index = 0; index < burst_copies; ++index) {
    for (auto* buffer : {&singles[index], &bursts[index]}) {
      buffer->assign(encap_headroom_bytes + size, 0);
      if (size > 0) std::memcpy(buffer->data() + encap_headroom_bytes, data, size);
    }
    frames[index] = bursts[index].data() + encap_headroom_bytes;
    lengths[index] = static_cast<std::uint32_t>(size);
  }
  process_burst(snapshot, burst, port, frames, lengths, burst_copies, 1000, verdicts);
  for (std::size_t index = 0; index < burst_copies; ++index) {
    const Verdict single = process_packet(snapshot, one_by_one, port, singles[index].data() + encap_headroom_bytes,
                                          static_cast<std::uint32_t>(size), 1000);
    const Verdict& batched = verdicts[index];
    check(single.action == batched.action && single.drop_reason == batched.drop_reason);
    check(single.length == batched.length && single.backend == batched.backend && single.new_flow == batched.new_flow);
    check(single.data - singles[index].data() == batched.data - bursts[index].data());
    check(singles[index] == bursts[index]);
  }
  check(one_by_one.counters.drops == burst.counters.drops);
  check(one_by_one.counters.forwarded_packets == burst.counters.forwarded_packets &&
        one_by_one.counters.forwarded_bytes == burst.counters.forwarded_bytes &&
        one_by_one.counters.new_flows == burst.counters.new_flows &&
        one_by_one.counters.flows_repicked == burst.counters.flows_repicked &&
        one_by_one.counters.arp_replies == burst.counters.arp_replies &&
        one_by_one.counters.echo_replies == burst.counters.echo_replies &&
        one_by_one.counters.frag_needed_sent == burst.counters.frag_needed_sent &&
        one_by_one.counters.arp_punted == burst.counters.arp_punted);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::unique_ptr<const Snapshot> untagged = make_snapshot(false);
  static const std::unique_ptr<const Snapshot> tagged = make_snapshot(true);
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  const Snapshot& snapshot = (selector & 0x02) ? *tagged : *untagged;
  const std::uint16_t port = selector & 0x01;
  ConnTableConfig table;
  table.capacity = fuzz_table_capacity;
  LcoreState lcore(table);
  run(snapshot, lcore, port, data + 1, size - 1, 1000);
  run(snapshot, lcore, port, data + 1, size - 1, 2000);
  // A port the snapshot does not have is refused, never read.
  run(snapshot, lcore, 5, data + 1, size - 1, 3000);
  check_burst_matches(snapshot, port, data + 1, size - 1);
  return 0;
}
