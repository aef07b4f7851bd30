// The pure half of load balancing (load_balancing.hpp): a pool's backends from the cluster's rows,
// the preferred owner of a VIP address, and the dataplane config every node computes, which the
// dataplane's own parser (dataplane/control) must accept as it is.
#include "stacknode/node/load_balancing.hpp"

#include <map>

#include "stacknode/dataplane/control_protocol.hpp"

#include <CppUTest/TestHarness.h>

using namespace stacknode::node;
namespace json = boost::json;

namespace {

constexpr std::int64_t now = 1'800'000'000;

NodeRow node(std::int64_t id, const std::string& name, const std::string& api_address, bool is_online = true) {
  NodeRow row;
  row.id = id;
  row.name = name;
  row.api_address = api_address;
  if (is_online) row.last_seen = now - 1;
  return row;
}

LbState rack_state() {
  LbState state;
  state.nodes = {node(1, "sn1", "198.18.1.11:8443"), node(2, "sn2", "198.18.1.12:8443"),
                 node(3, "sn3", "198.18.1.13:8443")};
  PoolRow web;
  web.name = "web";
  web.created_at = now;
  state.pools = {web};
  state.vips = {{"www", "198.18.0.100", 80, "tcp", "web", "l2_dsr", now},
                {"dns", "198.18.0.100", 53, "udp", "web", "ipip", now}};
  return state;
}

const LbBackend& backend_at(const std::vector<LbBackend>& backends, const std::string& address) {
  for (const LbBackend& backend : backends) {
    if (backend.address == address) return backend;
  }
  FAIL(("no backend " + address).c_str());
  return backends.front();
}

}  // namespace

TEST_GROUP(LoadBalancing){};

TEST(LoadBalancing, EveryNodeIsAnActiveBackendUnlessTheOperatorOrItsHeartbeatSaysOtherwise) {
  LbState state = rack_state();
  std::vector<LbBackend> backends = pool_backends(state, "web", now);
  LONGS_EQUAL(3, backends.size());
  for (const LbBackend& backend : backends) {
    STRCMP_EQUAL("active", backend.state.c_str());
    LONGS_EQUAL(1, backend.weight);
  }
  state.members = {{"web", 2, 5, MemberState::draining}, {"web", 3, 1, MemberState::maintenance},
                   {"other", 1, 9, MemberState::maintenance}};  // another pool's row changes nothing here
  state.nodes[0].last_seen = now - offline_after.count() - 1;
  backends = pool_backends(state, "web", now);
  STRCMP_EQUAL("down", backend_at(backends, "198.18.1.11").state.c_str());  // offline
  STRCMP_EQUAL("draining", backend_at(backends, "198.18.1.12").state.c_str());
  LONGS_EQUAL(5, backend_at(backends, "198.18.1.12").weight);
  STRCMP_EQUAL("down", backend_at(backends, "198.18.1.13").state.c_str());  // maintenance
}

TEST(LoadBalancing, AMemberIsDownOnlyWhenMostFreshViewsSaySo) {
  LbState state = rack_state();
  const PoolRow& pool = state.pools[0];
  const std::int64_t now_ms = now * 1000;
  CHECK(member_healthy(state, pool, 2, now_ms));  // no view yet: up (checks have not run)
  // One node's broken link: one of three says down.
  state.health = {{"web", 2, 1, false, now_ms - 100}, {"web", 2, 2, true, now_ms - 100}, {"web", 2, 3, true, now_ms}};
  CHECK(member_healthy(state, pool, 2, now_ms));
  STRCMP_EQUAL("active", backend_at(pool_backends(state, "web", now), "198.18.1.12").state.c_str());
  // Two of three: down, in the dataplane's backends too.
  state.health[1].up = false;
  CHECK_FALSE(member_healthy(state, pool, 2, now_ms));
  STRCMP_EQUAL("down", backend_at(pool_backends(state, "web", now), "198.18.1.12").state.c_str());
  STRCMP_EQUAL("active", backend_at(pool_backends(state, "web", now), "198.18.1.11").state.c_str());
  // A view older than health_view_max_intervals intervals no longer votes: one down, one up.
  state.health[0].at_ms = now_ms - health_view_max_intervals * pool.health_interval_ms - 1;
  CHECK(member_healthy(state, pool, 2, now_ms));
  // Views of another pool or member count for nothing here.
  state.health = {{"other", 2, 1, false, now_ms}, {"web", 3, 1, false, now_ms}};
  CHECK(member_healthy(state, pool, 2, now_ms));
  CHECK_FALSE(member_healthy(state, pool, 3, now_ms));
}

TEST(LoadBalancing, ANodeWithoutAnIpv4ServiceAddressIsNoBackend) {
  LbState state = rack_state();
  state.nodes.push_back(node(4, "odd", "box4.example:8443"));
  LONGS_EQUAL(3, pool_backends(state, "web", now).size());
  CHECK_FALSE(service_address(state.nodes.back()).has_value());
  STRCMP_EQUAL("198.18.1.12", service_address(state.nodes[1]).value().c_str());
}

TEST(LoadBalancing, PreferredOwnersAreStableSpreadAndMoveOnlyTheLostNodesAddresses) {
  const std::vector<std::int64_t> three = {1, 2, 3};
  const std::vector<std::int64_t> without_two = {1, 3};
  std::map<std::int64_t, int> owned;
  int moved = 0;
  for (int last = 100; last < 200; ++last) {
    const std::string address = "198.18.0." + std::to_string(last);
    const std::int64_t owner = preferred_owner(address, three).value();
    // The same answer whatever the candidates' order (every node computes it from its own list).
    const std::vector<std::int64_t> reversed = {3, 2, 1};
    LONGS_EQUAL(owner, preferred_owner(address, reversed).value());
    ++owned[owner];
    const std::int64_t after = preferred_owner(address, without_two).value();
    if (owner != 2) {
      LONGS_EQUAL(owner, after);  // an address node 2 did not own stays where it was
    } else {
      ++moved;
      CHECK(after == 1 || after == 3);
    }
  }
  for (const std::int64_t id : three) CHECK(owned[id] >= 20);  // 100 addresses over 3 nodes
  LONGS_EQUAL(owned[2], moved);
  CHECK_FALSE(preferred_owner("198.18.0.100", std::vector<std::int64_t>{}).has_value());
}

TEST(LoadBalancing, TheDataplaneConfigIsWhatTheDataplaneAccepts) {
  LbState state = rack_state();
  state.members = {{"web", 3, 2, MemberState::draining}};
  const json::object config = dataplane_config(state, {"198.18.0.100"}, 42, now);
  const stacknode::dataplane::ControlConfigResult parsed =
      stacknode::dataplane::parse_control_config(json::serialize(config));
  if (!parsed.config) FAIL(parsed.error.c_str());
  UNSIGNED_LONGLONGS_EQUAL(42, parsed.config->version);
  LONGS_EQUAL(2, parsed.config->services.size());
  LONGS_EQUAL(1, parsed.config->owned_vips.size());  // two VIPs, one address: answered once
  const stacknode::dataplane::ServiceConfig* www = nullptr;
  for (const auto& service : parsed.config->services) {
    if (service.vip.port == 80) www = &service;
  }
  CHECK(www != nullptr);
  CHECK(www->mode == stacknode::dataplane::ForwardingMode::l2_dsr);
  LONGS_EQUAL(vip_table_size, www->maglev_table_size);
  LONGS_EQUAL(3, www->backends.size());
  bool saw_draining = false;
  for (const auto& backend : www->backends) {
    if (backend.state == stacknode::dataplane::BackendState::draining) {
      saw_draining = true;
      LONGS_EQUAL(2, backend.weight);
    }
  }
  CHECK(saw_draining);
  // Not owned here: the services stay (every node builds the same tables), no address is answered.
  const json::object elsewhere = dataplane_config(state, {}, 43, now);
  CHECK(elsewhere.at("owned_vips").as_array().empty());
  LONGS_EQUAL(2, elsewhere.at("services").as_array().size());
}

TEST(LoadBalancing, MemberStatesReadAndPrint) {
  CHECK(parse_member_state("drain") == MemberState::draining);
  CHECK(parse_member_state("draining") == MemberState::draining);
  CHECK(parse_member_state("maintenance") == MemberState::maintenance);
  CHECK_FALSE(parse_member_state("Active").has_value());
  STRCMP_EQUAL("maintenance", std::string(to_string(MemberState::maintenance)).c_str());
}
