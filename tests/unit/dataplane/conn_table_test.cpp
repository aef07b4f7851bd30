// Unit tests of the dataplane connection table (conn_table.hpp): insert and lookup, timeouts by
// state with a fake clock (including 32-bit wrap), eviction when a bucket is full, caller-provided
// memory, TCP state transitions; and, through the packet path, the rule that a known flow keeps
// its backend when backends are added or drained and is re-picked when its backend is removed or
// down.
#include <CppUTest/TestHarness.h>

#include <set>

#include <cstdlib>
#include <vector>

#include "packet_cases.hpp"
#include "stacknode/dataplane/flow_hash.hpp"

using namespace stacknode::dataplane;
using namespace stacknode::dataplane::test;

namespace {

FlowKey flow_number(std::uint32_t number, IpProtocol protocol = IpProtocol::tcp) {
  FlowKey flow;
  flow.family = AddressFamily::ipv4;
  flow.protocol = protocol;
  flow.source = IpAddress::ipv4(10, static_cast<std::uint8_t>(number >> 16), static_cast<std::uint8_t>(number >> 8),
                                static_cast<std::uint8_t>(number)).bytes;
  flow.destination = address(vip_ip).bytes;
  flow.source_port = static_cast<std::uint16_t>(1024 + number % 50000);
  flow.destination_port = 80;
  return flow;
}

ConnTableConfig one_bucket() {
  ConnTableConfig config;
  config.capacity = conn_table_ways;
  return config;
}

// Flows that all land in bucket 0 of a table with `buckets` buckets.
std::vector<FlowKey> colliding_flows(std::size_t count, std::uint64_t buckets) {
  std::vector<FlowKey> flows;
  for (std::uint32_t number = 0; flows.size() < count; ++number) {
    const FlowKey flow = flow_number(number);
    if ((flow_hash(flow) & (buckets - 1)) == 0) flows.push_back(flow);
  }
  return flows;
}

ConnEntry* insert(ConnTable& table, const FlowKey& flow, FlowState state, std::uint64_t now, std::uint8_t backend) {
  ConnEntry* entry = table.insert(flow, flow_hash(flow), state, now);
  entry->set_backend(IpAddress::ipv4(198, 18, 1, backend), backend);
  return entry;
}

}  // namespace

TEST_GROUP(ConnTable){};

TEST(ConnTable, InsertThenFind) {
  ConnTable table(small_table());
  LONGS_EQUAL(1024, table.capacity());
  const FlowKey flow = flow_number(1);
  POINTERS_EQUAL(nullptr, table.find(flow, flow_hash(flow), 0));
  insert(table, flow, FlowState::tcp_syn_seen, 0, 12);
  const ConnEntry* found = table.find(flow, flow_hash(flow), 5);
  CHECK(found != nullptr);
  CHECK(found->key == flow);
  CHECK(found->backend() == IpAddress::ipv4(198, 18, 1, 12));
  LONGS_EQUAL(12, found->backend_index);
  LONGS_EQUAL(0, found->last_seen_ms);
  POINTERS_EQUAL(nullptr, table.find(flow_number(2), flow_hash(flow_number(2)), 5));
  // Same hash, different key (forced): not confused.
  POINTERS_EQUAL(nullptr, table.find(flow_number(2), flow_hash(flow), 5));
  LONGS_EQUAL(1, table.count_live(5));
  LONGS_EQUAL(1, table.stats().inserts);
}

TEST(ConnTable, QuarterLoadFitsWithoutEvictions) {
  ConnTable table(small_table());
  for (std::uint32_t number = 0; number < 256; ++number) insert(table, flow_number(number), FlowState::udp, 0, 1);
  for (std::uint32_t number = 0; number < 256; ++number) {
    CHECK(table.find(flow_number(number), flow_hash(flow_number(number)), 1) != nullptr);
  }
  LONGS_EQUAL(256, table.count_live(1));
  LONGS_EQUAL(0, table.stats().evictions);
}

TEST(ConnTable, FillingToCapacityCountsEveryEviction) {
  // A set-associative table evicts before it is full (a bucket fills first): every flow is
  // either still there or counted as evicted.
  ConnTable table(small_table());
  for (std::uint32_t number = 0; number < 1024; ++number) insert(table, flow_number(number), FlowState::udp, 0, 1);
  std::size_t present = 0;
  for (std::uint32_t number = 0; number < 1024; ++number) {
    present += table.find(flow_number(number), flow_hash(flow_number(number)), 1) != nullptr;
  }
  CHECK(table.stats().evictions > 0);
  LONGS_EQUAL(1024, present + table.stats().evictions);
  LONGS_EQUAL(present, table.count_live(1));
}

TEST(ConnTable, VisitingInSlicesSeesEveryLiveFlowOnceWithItsIdleTime) {
  ConnTable table(small_table());
  for (std::uint32_t number = 0; number < 200; ++number) insert(table, flow_number(number), FlowState::udp, 0, 7);
  // A SYN-seen flow from the start is expired by now (30 s) and must not be visited.
  insert(table, flow_number(1000), FlowState::tcp_syn_seen, 0, 7);
  const std::uint64_t now = default_tcp_syn_timeout_ms + 5;
  table.touch(*table.find(flow_number(3), flow_hash(flow_number(3)), now), FlowState::udp, now - 40);
  std::set<std::uint32_t> seen;
  std::size_t visits = 0;
  std::size_t next = 0;
  std::size_t slices = 0;
  constexpr std::size_t slice = 100;
  while (next < table.capacity()) {
    const std::size_t after = table.visit_live(next, slice, now, [&](const ConnEntry& entry, std::uint32_t idle_ms) {
      ++visits;
      const std::uint32_t number = entry.key.source[3] | entry.key.source[2] << 8;
      seen.insert(number);
      LONGS_EQUAL(number == 3 ? 40 : now, idle_ms);
      CHECK(entry.backend() == IpAddress::ipv4(198, 18, 1, 7));
    });
    LONGS_EQUAL(std::min(next + slice, table.capacity()), after);
    next = after;
    ++slices;
  }
  LONGS_EQUAL(200, visits);
  LONGS_EQUAL(200, seen.size());
  LONGS_EQUAL(table.count_live(now), visits);
  LONGS_EQUAL((table.capacity() + slice - 1) / slice, slices);
  LONGS_EQUAL(table.capacity(), table.visit_live(table.capacity(), slice, now, [](const ConnEntry&, std::uint32_t) {}));
}

TEST(ConnTable, EachStateExpiresAfterItsTimeout) {
  ConnTableConfig config = small_table();
  config.timeouts.ms = {1000, 2000, 3000, 4000, 5000};
  ConnTable table(config);
  const std::uint64_t start = 10'000;
  for (std::size_t state = 0; state < flow_state_count; ++state) {
    insert(table, flow_number(static_cast<std::uint32_t>(state)), static_cast<FlowState>(state), start, 1);
  }
  for (std::size_t state = 0; state < flow_state_count; ++state) {
    const FlowKey flow = flow_number(static_cast<std::uint32_t>(state));
    const std::uint64_t timeout = config.timeouts.ms[state];
    CHECK(table.find(flow, flow_hash(flow), start + timeout - 1) != nullptr);
    POINTERS_EQUAL(nullptr, table.find(flow, flow_hash(flow), start + timeout));
  }
  // Defaults are the documented constants.
  const FlowTimeouts defaults;
  LONGS_EQUAL(default_tcp_syn_timeout_ms, defaults.of(FlowState::tcp_syn_seen));
  LONGS_EQUAL(default_tcp_established_timeout_ms, defaults.of(FlowState::tcp_established));
  LONGS_EQUAL(default_udp_timeout_ms, defaults.of(FlowState::udp));
}

TEST(ConnTable, TouchMovesTheExpiryAndTheState) {
  ConnTable table(small_table());
  const FlowKey flow = flow_number(7);
  ConnEntry* entry = insert(table, flow, FlowState::tcp_syn_seen, 0, 1);
  table.touch(*entry, FlowState::tcp_established, default_tcp_syn_timeout_ms - 1);
  const std::uint64_t later = default_tcp_syn_timeout_ms + 60'000;  // past the SYN timeout
  ConnEntry* found = table.find(flow, flow_hash(flow), later);
  CHECK(found == entry);
  CHECK(found->state == FlowState::tcp_established);
  LONGS_EQUAL(default_tcp_syn_timeout_ms - 1, found->last_seen_ms);
}

TEST(ConnTable, TimeWrapsAt32BitsWithoutLosingFlows) {
  ConnTable table(small_table());
  const std::uint64_t near_wrap = (std::uint64_t{1} << 32) - 500;
  const FlowKey flow = flow_number(3);
  insert(table, flow, FlowState::tcp_rst, near_wrap, 1);
  CHECK(table.find(flow, flow_hash(flow), near_wrap + 1000) != nullptr);  // after the wrap
  POINTERS_EQUAL(nullptr, table.find(flow, flow_hash(flow), near_wrap + default_tcp_rst_timeout_ms));
}

TEST(ConnTable, FullBucketEvictsTheFlowClosestToExpiryAndCountsIt) {
  ConnTable table(one_bucket());
  const std::vector<FlowKey> flows = colliding_flows(conn_table_ways + 1, 1);
  // Seven established flows and one half-open SYN: the SYN expires soonest.
  for (std::size_t index = 0; index < conn_table_ways; ++index) {
    insert(table, flows[index], index == 3 ? FlowState::tcp_syn_seen : FlowState::tcp_established, 100, 1);
  }
  LONGS_EQUAL(0, table.stats().evictions);
  insert(table, flows[conn_table_ways], FlowState::tcp_syn_seen, 200, 2);
  LONGS_EQUAL(1, table.stats().evictions);
  LONGS_EQUAL(0, table.stats().expired_reclaimed);
  POINTERS_EQUAL(nullptr, table.find(flows[3], flow_hash(flows[3]), 200));
  for (std::size_t index = 0; index <= conn_table_ways; ++index) {
    if (index != 3) CHECK(table.find(flows[index], flow_hash(flows[index]), 200) != nullptr);
  }
  LONGS_EQUAL(conn_table_ways, table.count_live(200));
}

TEST(ConnTable, ExpiredWaysAreReusedWithoutCountingAnEviction) {
  ConnTable table(one_bucket());
  const std::vector<FlowKey> flows = colliding_flows(conn_table_ways + 1, 1);
  for (std::size_t index = 0; index < conn_table_ways; ++index) insert(table, flows[index], FlowState::tcp_rst, 0, 1);
  insert(table, flows[conn_table_ways], FlowState::udp, default_tcp_rst_timeout_ms + 1, 2);
  LONGS_EQUAL(0, table.stats().evictions);
  LONGS_EQUAL(1, table.stats().expired_reclaimed);
  CHECK(table.find(flows[conn_table_ways], flow_hash(flows[conn_table_ways]), default_tcp_rst_timeout_ms + 2) != nullptr);
}

TEST(ConnTable, EraseFreesTheWay) {
  ConnTable table(one_bucket());
  const FlowKey flow = flow_number(9);
  ConnEntry* entry = insert(table, flow, FlowState::udp, 0, 1);
  table.erase(*entry);
  POINTERS_EQUAL(nullptr, table.find(flow, flow_hash(flow), 1));
  LONGS_EQUAL(0, table.count_live(1));
}

TEST(ConnTable, CallerProvidedMemory) {
  const ConnTableConfig config = small_table();
  const std::size_t bytes = ConnTable::required_bytes(config);
  LONGS_EQUAL((1024 / conn_table_ways) * (64 + conn_table_ways * 64), bytes);
  void* memory = std::aligned_alloc(cache_line_bytes, bytes);
  {
    ConnTable table(config, memory, bytes);
    insert(table, flow_number(1), FlowState::udp, 0, 1);
    CHECK(table.find(flow_number(1), flow_hash(flow_number(1)), 1) != nullptr);
  }
  std::free(memory);
}

TEST(ConnTable, ConfigValidation) {
  ConnTableConfig config;
  STRCMP_EQUAL("", ConnTable::validate(config).c_str());
  config.capacity = 4;
  STRCMP_CONTAINS("capacity 4 is outside", ConnTable::validate(config).c_str());
  config = ConnTableConfig{};
  config.timeouts.ms[1] = 0;
  STRCMP_CONTAINS("timeout of tcp_established is 0 ms", ConnTable::validate(config).c_str());
  config.timeouts.ms[1] = max_flow_timeout_ms + 1;
  STRCMP_CONTAINS("timeout of tcp_established", ConnTable::validate(config).c_str());
}

TEST(ConnTable, TcpStateTransitions) {
  struct Case {
    bool existing;
    FlowState current;
    std::uint8_t flags;
    FlowState expected;
  };
  const Case cases[] = {
      {false, FlowState::tcp_syn_seen, tcp_flag_syn, FlowState::tcp_syn_seen},
      {false, FlowState::tcp_syn_seen, tcp_flag_ack, FlowState::tcp_established},  // picked up mid-flow
      {false, FlowState::tcp_syn_seen, tcp_flag_syn | tcp_flag_ack, FlowState::tcp_established},
      {false, FlowState::tcp_syn_seen, tcp_flag_rst, FlowState::tcp_rst},
      {false, FlowState::tcp_syn_seen, tcp_flag_fin | tcp_flag_ack, FlowState::tcp_fin},
      {true, FlowState::tcp_syn_seen, tcp_flag_syn, FlowState::tcp_syn_seen},
      {true, FlowState::tcp_syn_seen, tcp_flag_ack, FlowState::tcp_established},
      {true, FlowState::tcp_established, tcp_flag_ack, FlowState::tcp_established},
      {true, FlowState::tcp_established, tcp_flag_syn, FlowState::tcp_established},
      {true, FlowState::tcp_established, tcp_flag_fin | tcp_flag_ack, FlowState::tcp_fin},
      {true, FlowState::tcp_established, tcp_flag_rst | tcp_flag_ack, FlowState::tcp_rst},
      {true, FlowState::tcp_fin, tcp_flag_ack, FlowState::tcp_fin},
      {true, FlowState::tcp_fin, tcp_flag_syn, FlowState::tcp_syn_seen},  // reused tuple
      {true, FlowState::tcp_rst, tcp_flag_syn, FlowState::tcp_syn_seen},
      {true, FlowState::tcp_rst, tcp_flag_ack, FlowState::tcp_rst},
  };
  for (const Case& test_case : cases) {
    const FlowState got = next_tcp_state(test_case.existing, test_case.current, test_case.flags);
    if (got != test_case.expected) {
      FAIL(("from " + std::string(to_string(test_case.current)) + (test_case.existing ? "" : " (new)") + " flags " +
            std::to_string(test_case.flags) + ": expected " + std::string(to_string(test_case.expected)) + ", got " +
            std::string(to_string(got))).c_str());
    }
  }
  CHECK(is_new_connection_on_closed_flow(FlowState::tcp_fin, tcp_flag_syn));
  CHECK_FALSE(is_new_connection_on_closed_flow(FlowState::tcp_fin, tcp_flag_syn | tcp_flag_ack));
  CHECK_FALSE(is_new_connection_on_closed_flow(FlowState::tcp_established, tcp_flag_syn));
}

TEST(ConnTable, TransitionTableAgreesWithTheFunctionsForEveryInput) {
  // The packet path reads existing_tcp_transition's table; the rules are the two functions above.
  for (std::size_t state = 0; state < flow_state_count; ++state) {
    for (unsigned flags = 0; flags <= 0xff; ++flags) {
      const auto current = static_cast<FlowState>(state);
      const auto byte = static_cast<std::uint8_t>(flags);
      const TcpTransition transition = existing_tcp_transition(current, byte);
      if (transition.next != next_tcp_state(true, current, byte) ||
          transition.new_connection != is_new_connection_on_closed_flow(current, byte)) {
        FAIL(("from " + std::string(to_string(current)) + " flags " + std::to_string(flags)).c_str());
      }
    }
  }
}

// ---- Flows across config changes (through the packet path) ----

TEST_GROUP(FlowsAcrossSnapshots) {
  // Sends one packet of the flow from client_ip:source_port and returns the backend's address.
  IpAddress send(const Snapshot& snapshot, LcoreState& lcore, std::uint16_t source_port, std::uint8_t flags,
                 std::uint64_t now) {
    FrameBuffer buffer(from_client(tcp_packet(source_port, http_port, flags)), encap_headroom_bytes);
    const Verdict verdict = process_packet(snapshot, lcore, front_port, buffer.data(), buffer.length(), now);
    CHECK(verdict.action == Action::forward);
    return snapshot.backends()[verdict.backend].address;
  }

  SnapshotConfig with_backends(const std::vector<BackendConfig>& backends) {
    SnapshotConfig config = rack_config();
    config.services[0].backends = backends;
    config.neighbours.push_back({IpAddress::ipv4(198, 18, 1, 14), mac({0x02, 0, 0, 0, 0x01, 0x14})});
    return config;
  }

  const BackendConfig one{address(backend1_ip), 1, BackendState::active};
  const BackendConfig two{address(backend2_ip), 1, BackendState::active};
  const BackendConfig three{address(backend3_ip), 1, BackendState::active};
  const BackendConfig four{IpAddress::ipv4(198, 18, 1, 14), 1, BackendState::active};
  const VipKey http{address(vip_ip), IpProtocol::tcp, http_port};
};

TEST(FlowsAcrossSnapshots, KnownFlowKeepsItsBackendWhenABackendIsAdded) {
  const auto before = build_or_fail(with_backends({one, two, three}));
  // A fourth backend sorts last and shifts nothing, so also test one that sorts first and shifts
  // every index (198.18.1.10).
  const BackendConfig first{IpAddress::ipv4(198, 18, 1, 10), 1, BackendState::active};
  SnapshotConfig shifted = with_backends({first, one, two, three, four});
  shifted.neighbours.push_back({first.address, mac({0x02, 0, 0, 0, 0x01, 0x10})});
  for (const auto& after : {build_or_fail(with_backends({one, two, three, four})), build_or_fail(shifted)}) {
    // Flows whose Maglev pick changes with the new list: they must not follow it.
    std::size_t moved_picks = 0;
    LcoreState lcore(small_table());
    for (std::uint16_t port = 20000; port < 20400; ++port) {
      const IpAddress original = send(*before, lcore, port, flag_syn, 1000);
      const IpAddress new_pick = maglev_backend_of(*after, http, client_ip, port);
      if (new_pick == original) continue;
      ++moved_picks;
      CHECK(send(*after, lcore, port, flag_ack, 1001) == original);
    }
    CHECK(moved_picks > 50);  // about a quarter (or a fifth) of 400
    LONGS_EQUAL(0, lcore.counters.flows_repicked);
  }
}

TEST(FlowsAcrossSnapshots, DrainingKeepsItsFlowsAndGetsNoNewOnes) {
  const auto before = build_or_fail(with_backends({one, two, three}));
  BackendConfig draining_two = two;
  draining_two.state = BackendState::draining;
  const auto after = build_or_fail(with_backends({one, draining_two, three}));
  LcoreState lcore(small_table());
  std::size_t kept = 0;
  for (std::uint16_t port = 20000; port < 20300; ++port) {
    if (send(*before, lcore, port, flag_syn, 1000) == two.address) {
      CHECK(send(*after, lcore, port, flag_ack, 1001) == two.address);
      ++kept;
    }
  }
  CHECK(kept > 50);
  for (std::uint16_t port = 30000; port < 30300; ++port) CHECK(send(*after, lcore, port, flag_syn, 1002) != two.address);
  LONGS_EQUAL(0, lcore.counters.flows_repicked);
}

TEST(FlowsAcrossSnapshots, RemovedOrDownBackendsFlowsArePickedAgain) {
  const auto before = build_or_fail(with_backends({one, two, three}));
  BackendConfig down_two = two;
  down_two.state = BackendState::down;
  for (const auto& after : {build_or_fail(with_backends({one, three})), build_or_fail(with_backends({one, down_two, three}))}) {
    LcoreState lcore(small_table());
    std::size_t repicked = 0, others = 0;
    for (std::uint16_t port = 20000; port < 20300; ++port) {
      const IpAddress original = send(*before, lcore, port, flag_syn, 1000);
      const IpAddress now = send(*after, lcore, port, flag_ack, 1001);
      if (original == two.address) {
        CHECK(now != two.address);
        CHECK(now == maglev_backend_of(*after, http, client_ip, port));
        ++repicked;
      } else {
        CHECK(now == original);  // everyone else stays
        ++others;
      }
      // And the new choice sticks.
      CHECK(send(*after, lcore, port, flag_ack, 1002) == now);
    }
    CHECK(repicked > 50);
    LONGS_EQUAL(repicked, lcore.counters.flows_repicked);
    LONGS_EQUAL(300, lcore.counters.new_flows);
  }
}

TEST(FlowsAcrossSnapshots, ANewConnectionOnAClosedTupleIsPickedAgain) {
  const auto before = build_or_fail(with_backends({one, two, three}));
  const auto after = build_or_fail(with_backends({one, two, three, four}));
  LcoreState lcore(small_table());
  for (std::uint16_t port = 20000; port < 20400; ++port) {
    const IpAddress original = send(*before, lcore, port, flag_syn, 1000);
    const IpAddress new_pick = maglev_backend_of(*after, http, client_ip, port);
    if (new_pick == original) continue;
    CHECK(send(*after, lcore, port, flag_fin | flag_ack, 1001) == original);  // closing: same backend
    CHECK(send(*after, lcore, port, flag_syn, 1002) == new_pick);             // new connection: current table
    return;
  }
  FAIL("no flow changed its pick");
}
