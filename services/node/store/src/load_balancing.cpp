// Pools, VIPs and VIP leases in the control database, and the pure functions every node computes
// from them; see load_balancing.hpp.
#include "stacknode/node/load_balancing.hpp"

#include <arpa/inet.h>

#include <algorithm>

#include "rows.hpp"

namespace stacknode::node {
namespace {

namespace json = boost::json;
using db::wire::Value;
using rows::all_rows;
using rows::conflict;
using rows::database_problem;
using rows::integer;
using rows::invalid;
using rows::not_found;
using rows::text;
using rows::valid_name;

bool is_ipv4(const std::string& text) {
  in_addr address{};
  return inet_pton(AF_INET, text.c_str(), &address) == 1;
}

// A unicast address a VIP can have: not 0/8, 127/8, multicast or class E (the dataplane drops
// clients from those and would never see traffic to them).
bool usable_vip_address(const std::string& text) {
  in_addr address{};
  if (inet_pton(AF_INET, text.c_str(), &address) != 1) return false;
  const std::uint32_t value = ntohl(address.s_addr);
  const std::uint32_t first = value >> 24;
  return first != 0 && first != 127 && first < 224;
}

constexpr std::string_view pool_columns =
    "name, port, health_path, health_interval_ms, health_timeout_ms, rise, fall, created_at";
PoolRow pool_row(const db::wire::Row& row) {
  return {text(row[0]),
          static_cast<std::uint16_t>(integer(row[1])),
          text(row[2]),
          static_cast<std::uint32_t>(integer(row[3])),
          static_cast<std::uint32_t>(integer(row[4])),
          static_cast<std::uint32_t>(integer(row[5])),
          static_cast<std::uint32_t>(integer(row[6])),
          integer(row[7])};
}
constexpr std::string_view vip_columns = "name, address, port, protocol, pool, mode, created_at";
VipRow vip_row(const db::wire::Row& row) {
  return {text(row[0]), text(row[1]), static_cast<std::uint16_t>(integer(row[2])), text(row[3]), text(row[4]),
          text(row[5]), integer(row[6])};
}

// A 64-bit mix (splitmix64's finaliser): the rendezvous score's spreading step.
std::uint64_t mix(std::uint64_t value) {
  value ^= value >> 30;
  value *= 0xbf58476d1ce4e5b9ull;
  value ^= value >> 27;
  value *= 0x94d049bb133111ebull;
  return value ^ (value >> 31);
}

}  // namespace

std::string_view to_string(MemberState state) {
  switch (state) {
    case MemberState::active: return "active";
    case MemberState::draining: return "draining";
    case MemberState::maintenance: return "maintenance";
  }
  return "active";
}

std::optional<MemberState> parse_member_state(std::string_view text) {
  if (text == "active") return MemberState::active;
  if (text == "draining" || text == "drain") return MemberState::draining;
  if (text == "maintenance") return MemberState::maintenance;
  return std::nullopt;
}

Checked<std::vector<PoolRow>> LbStore::pools() {
  return all_rows<PoolRow>(store_, "SELECT " + std::string(pool_columns) + " FROM pools ORDER BY name", pool_row);
}

Checked<Done> LbStore::create_pool(const std::string& actor, const PoolRow& pool, std::int64_t now) {
  if (!valid_name(pool.name, max_lb_name_chars)) {
    return invalid("a pool name has 1 to " + std::to_string(max_lb_name_chars) + " characters from a-z A-Z 0-9 - _ .");
  }
  if (pool.port == 0) return invalid("a pool's port is from 1 to 65535");
  if (pool.health_path.empty() || pool.health_path[0] != '/' || pool.health_path.size() > max_health_path_chars ||
      pool.health_path.find_first_of(" \r\n\t") != std::string::npos) {
    return invalid("a pool's health path starts with / and has at most " + std::to_string(max_health_path_chars) +
                   " characters, no spaces");
  }
  if (pool.health_interval_ms < min_health_interval_ms || pool.health_interval_ms > max_health_interval_ms) {
    return invalid("a pool's health interval is " + std::to_string(min_health_interval_ms) + " to " +
                   std::to_string(max_health_interval_ms) + " ms");
  }
  if (pool.health_timeout_ms < 1 || pool.health_timeout_ms > pool.health_interval_ms) {
    return invalid("a pool's health timeout is 1 ms to its interval");
  }
  if (pool.rise < 1 || pool.rise > max_rise_fall || pool.fall < 1 || pool.fall > max_rise_fall) {
    return invalid("rise and fall are 1 to " + std::to_string(max_rise_fall) + " checks");
  }
  const std::string detail = "port " + std::to_string(pool.port) + " health " + pool.health_path + " every " +
                             std::to_string(pool.health_interval_ms) + " ms, rise " + std::to_string(pool.rise) +
                             " fall " + std::to_string(pool.fall);
  return store_.change({actor, "pool.create", pool.name, detail}, now, [&](db::Client::Transaction& transaction) {
    db::Outcome<db::wire::RowSet> count = transaction.query("SELECT count(*), sum(name = ?) FROM pools", {pool.name});
    if (auto problem = database_problem(count)) return problem;
    if (integer(count->rows[0][1]) != 0) return std::optional<Problem>(conflict("a pool named '" + pool.name + "' exists"));
    if (static_cast<std::size_t>(integer(count->rows[0][0])) >= max_pools) {
      return std::optional<Problem>(conflict("a cluster has at most " + std::to_string(max_pools) + " pools"));
    }
    db::Outcome<db::wire::Result> done =
        transaction.exec("INSERT INTO pools (name, port, health_path, health_interval_ms, health_timeout_ms, rise, fall, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         {pool.name, std::int64_t{pool.port}, pool.health_path, std::int64_t{pool.health_interval_ms},
                          std::int64_t{pool.health_timeout_ms}, std::int64_t{pool.rise}, std::int64_t{pool.fall}, now});
    return done ? std::nullopt : std::optional<Problem>(problem_from(done.error()));
  });
}

Checked<Done> LbStore::delete_pool(const std::string& actor, const std::string& name, std::int64_t now) {
  return store_.change({actor, "pool.delete", name, ""}, now, [&](db::Client::Transaction& transaction) {
    db::Outcome<db::wire::RowSet> users =
        transaction.query("SELECT name FROM vips WHERE pool = ? ORDER BY name LIMIT 1", {name});
    if (auto problem = database_problem(users)) return problem;
    if (!users->rows.empty()) {
      return std::optional<Problem>(
          conflict("VIP '" + text(users->rows[0][0]) + "' sends to pool '" + name + "': remove it first"));
    }
    if (auto problem = rows::expect_one(transaction.exec("DELETE FROM pools WHERE name = ?", {name}),
                                        "no pool named '" + name + "'")) {
      return problem;
    }
    for (const char* table : {"pool_members", "backend_health"}) {
      db::Outcome<db::wire::Result> done =
          transaction.exec("DELETE FROM " + std::string(table) + " WHERE pool = ?", {name});
      if (!done) return std::optional<Problem>(problem_from(done.error()));
    }
    return std::optional<Problem>();
  });
}

Checked<std::vector<PoolMemberRow>> LbStore::members() {
  return all_rows<PoolMemberRow>(store_, "SELECT pool, node_id, weight, state FROM pool_members ORDER BY pool, node_id",
                                 [](const db::wire::Row& row) {
                                   return PoolMemberRow{text(row[0]), integer(row[1]),
                                                        static_cast<std::uint32_t>(integer(row[2])),
                                                        parse_member_state(text(row[3])).value_or(MemberState::active)};
                                 });
}

Checked<Done> LbStore::set_member(const std::string& actor, const std::string& pool, const std::string& node_name,
                                  std::optional<std::uint32_t> weight, std::optional<MemberState> state,
                                  std::int64_t now) {
  if (weight && (*weight < 1 || *weight > max_member_weight)) {
    return invalid("a member's weight is from 1 to " + std::to_string(max_member_weight));
  }
  const Value weight_value = weight ? Value(std::int64_t{*weight}) : Value(db::wire::Null{});
  const Value state_value = state ? Value(std::string(to_string(*state))) : Value(db::wire::Null{});
  std::string detail = state ? std::string(to_string(*state)) : "";
  if (weight) detail += (detail.empty() ? "" : " ") + std::string("weight ") + std::to_string(*weight);
  return store_.change({actor, "pool.member", pool + "/" + node_name, detail}, now,
                       [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
                         db::Outcome<db::wire::RowSet> found = transaction.query(
                             "SELECT (SELECT count(*) FROM pools WHERE name = ?), (SELECT id FROM nodes WHERE name = ?)",
                             {pool, node_name});
                         if (auto problem = database_problem(found)) return problem;
                         if (integer(found->rows[0][0]) != 1) return not_found("no pool named '" + pool + "'");
                         const auto node_id = rows::optional_integer(found->rows[0][1]);
                         if (!node_id) return not_found("no node named '" + node_name + "' in this cluster");
                         db::Outcome<db::wire::Result> done = transaction.exec(
                             "INSERT INTO pool_members (pool, node_id, weight, state) "
                             "VALUES (?, ?, coalesce(?, 1), coalesce(?, 'active')) ON CONFLICT (pool, node_id) DO "
                             "UPDATE SET weight = coalesce(?, weight), state = coalesce(?, state)",
                             {pool, *node_id, weight_value, state_value, weight_value, state_value});
                         return done ? std::nullopt : std::optional<Problem>(problem_from(done.error()));
                       });
}

Checked<std::vector<VipRow>> LbStore::vips() {
  return all_rows<VipRow>(store_, "SELECT " + std::string(vip_columns) + " FROM vips ORDER BY name", vip_row);
}

Checked<Done> LbStore::create_vip(const std::string& actor, const VipRow& vip, std::int64_t now) {
  if (!valid_name(vip.name, max_lb_name_chars)) {
    return invalid("a VIP name has 1 to " + std::to_string(max_lb_name_chars) + " characters from a-z A-Z 0-9 - _ .");
  }
  if (!usable_vip_address(vip.address)) {
    return invalid("'" + vip.address + "' is not a unicast IPv4 address a VIP can have");
  }
  if (vip.port == 0) return invalid("a VIP's port is from 1 to 65535");
  if (vip.protocol != "tcp" && vip.protocol != "udp") return invalid("a VIP's protocol is tcp or udp");
  if (vip.mode != "ipip" && vip.mode != "l2_dsr") return invalid("a VIP's mode is ipip or l2_dsr");
  const std::string detail = vip.address + ":" + std::to_string(vip.port) + "/" + vip.protocol + " pool " + vip.pool +
                             " mode " + vip.mode;
  return store_.change({actor, "vip.create", vip.name, detail}, now,
                       [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
                         db::Outcome<db::wire::RowSet> found = transaction.query(
                             "SELECT (SELECT count(*) FROM pools WHERE name = ?), "
                             "(SELECT count(*) FROM vips), (SELECT count(*) FROM vips WHERE name = ?), "
                             "(SELECT name FROM vips WHERE address = ? AND port = ? AND protocol = ?)",
                             {vip.pool, vip.name, vip.address, std::int64_t{vip.port}, vip.protocol});
                         if (auto problem = database_problem(found)) return problem;
                         const db::wire::Row& row = found->rows[0];
                         if (integer(row[0]) != 1) return not_found("no pool named '" + vip.pool + "'");
                         if (integer(row[2]) != 0) return conflict("a VIP named '" + vip.name + "' exists");
                         if (const std::string taken = text(row[3]); !taken.empty()) {
                           return conflict("VIP '" + taken + "' has " + vip.address + ":" +
                                           std::to_string(vip.port) + "/" + vip.protocol + " already");
                         }
                         if (static_cast<std::size_t>(integer(row[1])) >= max_vips) {
                           return conflict("a cluster has at most " + std::to_string(max_vips) + " VIPs");
                         }
                         db::Outcome<db::wire::RowSet> nodes = transaction.query("SELECT api_address FROM nodes");
                         if (auto problem = database_problem(nodes)) return problem;
                         for (const db::wire::Row& node : nodes->rows) {
                           NodeRow member;
                           member.api_address = text(node[0]);
                           if (service_address(member) == vip.address) {
                             return conflict(vip.address + " is a node's own address, not free for a VIP");
                           }
                         }
                         db::Outcome<db::wire::Result> done = transaction.exec(
                             "INSERT INTO vips (name, address, port, protocol, pool, mode, created_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             {vip.name, vip.address, std::int64_t{vip.port}, vip.protocol, vip.pool, vip.mode, now});
                         return done ? std::nullopt : std::optional<Problem>(problem_from(done.error()));
                       });
}

Checked<Done> LbStore::delete_vip(const std::string& actor, const std::string& name, std::int64_t now) {
  return store_.change({actor, "vip.delete", name, ""}, now, [&](db::Client::Transaction& transaction) {
    if (auto problem =
            rows::expect_one(transaction.exec("DELETE FROM vips WHERE name = ?", {name}), "no VIP named '" + name + "'")) {
      return problem;
    }
    // A lease of an address no VIP has any more ends with it.
    db::Outcome<db::wire::Result> done =
        transaction.exec("DELETE FROM vip_leases WHERE address NOT IN (SELECT address FROM vips)");
    return done ? std::nullopt : std::optional<Problem>(problem_from(done.error()));
  });
}

Checked<std::vector<VipLease>> LbStore::leases() {
  return all_rows<VipLease>(store_, "SELECT address, node_id, expires_at_ms FROM vip_leases ORDER BY address",
                            [](const db::wire::Row& row) { return VipLease{text(row[0]), integer(row[1]), integer(row[2])}; });
}

Checked<LbState> LbStore::state() {
  LbState state;
  Checked<std::vector<NodeRow>> nodes = store_.nodes();
  if (!nodes) return nodes.problem();
  state.nodes = std::move(*nodes);
  Checked<std::vector<PoolRow>> pool_rows = pools();
  if (!pool_rows) return pool_rows.problem();
  state.pools = std::move(*pool_rows);
  Checked<std::vector<PoolMemberRow>> member_rows = members();
  if (!member_rows) return member_rows.problem();
  state.members = std::move(*member_rows);
  Checked<std::vector<VipRow>> vip_rows = vips();
  if (!vip_rows) return vip_rows.problem();
  state.vips = std::move(*vip_rows);
  Checked<std::vector<VipLease>> lease_rows = leases();
  if (!lease_rows) return lease_rows.problem();
  state.leases = std::move(*lease_rows);
  Checked<std::vector<HealthView>> views = all_rows<HealthView>(
      store_, "SELECT pool, node_id, checker_id, up, at_ms FROM backend_health", [](const db::wire::Row& row) {
        return HealthView{text(row[0]), integer(row[1]), integer(row[2]), integer(row[3]) != 0, integer(row[4])};
      });
  if (!views) return views.problem();
  state.health = std::move(*views);
  return state;
}

Checked<Done> LbStore::record_health(const HealthView& view) {
  db::Outcome<db::wire::Result> done = store_.client().exec(
      store_.database(),
      "INSERT INTO backend_health (pool, node_id, checker_id, up, at_ms) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT (pool, node_id, checker_id) DO UPDATE SET up = excluded.up, at_ms = excluded.at_ms",
      {view.pool, view.node_id, view.checker_id, std::int64_t{view.up ? 1 : 0}, view.at_ms});
  if (!done) return problem_from(done.error());
  return Done{};
}

Checked<bool> LbStore::claim_lease(const std::string& address, std::int64_t node_id, std::int64_t now_ms,
                                   std::int64_t lease_ms, const std::optional<VipLease>& replacing) {
  // One statement: the row is taken only when there is none, when it is ours, or when it is
  // still exactly the row the caller saw go stale; an address no VIP has any more (removed
  // meanwhile) gets no lease: the SELECT finds no row.
  db::Outcome<db::wire::Result> done = store_.client().exec(
      store_.database(),
      "INSERT INTO vip_leases (address, node_id, expires_at_ms) SELECT DISTINCT address, ?, ? FROM vips "
      "WHERE address = ? ON CONFLICT (address) DO UPDATE SET node_id = excluded.node_id, "
      "expires_at_ms = excluded.expires_at_ms WHERE vip_leases.node_id = excluded.node_id "
      "OR (vip_leases.node_id = ? AND vip_leases.expires_at_ms = ?)",
      {node_id, now_ms + lease_ms, address, replacing ? replacing->node_id : std::int64_t{-1},
       replacing ? replacing->expires_at_ms : std::int64_t{-1}});
  if (!done) return problem_from(done.error());
  return done->rows_affected == 1;
}

std::optional<std::string> service_address(const NodeRow& node) {
  const std::size_t colon = node.api_address.rfind(':');
  std::string host = node.api_address.substr(0, colon);
  if (!is_ipv4(host)) return std::nullopt;
  return host;
}

bool member_healthy(const LbState& state, const PoolRow& pool, std::int64_t node_id, std::int64_t now_ms) {
  const std::int64_t oldest = now_ms - health_view_max_intervals * std::int64_t{pool.health_interval_ms};
  std::size_t fresh = 0;
  std::size_t down = 0;
  for (const HealthView& view : state.health) {
    if (view.pool != pool.name || view.node_id != node_id || view.at_ms < oldest) continue;
    ++fresh;
    if (!view.up) ++down;
  }
  return down * 2 <= fresh;
}

std::vector<LbBackend> pool_backends(const LbState& state, const std::string& pool, std::int64_t now) {
  const auto row = std::find_if(state.pools.begin(), state.pools.end(), [&](const PoolRow& p) { return p.name == pool; });
  std::vector<LbBackend> backends;
  for (const NodeRow& node : state.nodes) {
    const std::optional<std::string> address = service_address(node);
    if (!address) continue;
    LbBackend backend{*address, 1, "active"};
    for (const PoolMemberRow& member : state.members) {
      if (member.pool != pool || member.node_id != node.id) continue;
      backend.weight = member.weight;
      if (member.state == MemberState::draining) backend.state = "draining";
      if (member.state == MemberState::maintenance) backend.state = "down";
    }
    if (!online(node, now)) backend.state = "down";
    if (row != state.pools.end() && !member_healthy(state, *row, node.id, now * 1000)) backend.state = "down";
    backends.push_back(std::move(backend));
  }
  return backends;
}

std::optional<std::int64_t> preferred_owner(std::string_view address, std::span<const std::int64_t> candidates) {
  // FNV-1a of the address, then one mix per candidate with its id: the highest score wins, ties
  // (never in practice) to the lower id.
  std::uint64_t name_hash = 0xcbf29ce484222325ull;
  for (const char c : address) name_hash = (name_hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  std::optional<std::int64_t> best;
  std::uint64_t best_score = 0;
  for (const std::int64_t candidate : candidates) {
    const std::uint64_t score = mix(name_hash ^ mix(static_cast<std::uint64_t>(candidate)));
    if (!best || score > best_score || (score == best_score && candidate < *best)) {
      best = candidate;
      best_score = score;
    }
  }
  return best;
}

json::object dataplane_config(const LbState& state, const std::set<std::string>& owned, std::uint64_t version,
                              std::int64_t now) {
  json::array services;
  json::array owned_vips;
  for (const VipRow& vip : state.vips) {
    json::array backends;
    for (const LbBackend& backend : pool_backends(state, vip.pool, now)) {
      backends.push_back(json::object{{"address", backend.address}, {"weight", backend.weight}, {"state", backend.state}});
    }
    services.push_back(json::object{{"vip", vip.address},
                                    {"protocol", vip.protocol},
                                    {"port", vip.port},
                                    {"mode", vip.mode},
                                    {"table_size", vip_table_size},
                                    {"backends", std::move(backends)}});
    if (owned.contains(vip.address) &&
        std::none_of(owned_vips.begin(), owned_vips.end(), [&](const json::value& v) { return v.as_string() == vip.address; })) {
      owned_vips.push_back(json::string(vip.address));
    }
  }
  return json::object{{"version", version}, {"services", std::move(services)}, {"owned_vips", std::move(owned_vips)}};
}

}  // namespace stacknode::node
