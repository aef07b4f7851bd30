// stacknode-db's settings; see db_config.hpp.
#include "db_config.hpp"

#include <memory>

#include "stacknode/db/connection.hpp"

namespace stacknode::db {
namespace {

constexpr std::int64_t max_node_id = INT64_MAX;  // dqlite ids are unsigned 64-bit; 0 is no node
constexpr std::int64_t max_statement_bytes = 16 * 1024 * 1024;
constexpr std::int64_t max_statements = 100'000;
constexpr std::int64_t max_rows = 10'000'000;
constexpr std::int64_t max_body_bytes = 256 * 1024 * 1024;

std::string checked_endpoint(const config::Section& section, std::string_view key, std::string value) {
  if (!parse_endpoint(value)) {
    section.fail(key, "'" + value + "' is not an IPv4 host:port (no DNS on a node)");
  }
  return value;
}

wire::Role parse_role(const config::Section& section, std::string_view key, const std::string& text) {
  if (text == "voter") return wire::Role::voter;
  if (text == "standby") return wire::Role::standby;
  if (text == "spare") return wire::Role::spare;
  section.fail(key, "'" + text + "' is not a role (voter, standby or spare)");
}

// join and role, from node.cfg's db section or from the identity file.
void read_membership(const config::Section& section, DbConfig& db) {
  db.join.clear();
  for (const std::string& member : section.get_strings("join")) {
    db.join.push_back(checked_endpoint(section, "join", member));
  }
  db.role = parse_role(section, "role", section.get_string("role", "voter"));
}

}  // namespace

void read_identity(DbConfig& config) {
  const std::unique_ptr<config::Document> document = config::Document::load_file(config.identity_file);
  const config::Section root = document->root();
  if (!root.has("node_id")) root.fail("node_id", "required: this node's dqlite id");
  config.node_id = static_cast<wire::NodeId>(root.get_int("node_id", 0, 1, max_node_id));
  read_membership(root, config);
  config.tls_dir = root.get_string("tls_dir", config.tls_dir);
  if (root.has("address")) {  // `stackctl node update --db-address` moved this node
    config.address = checked_endpoint(root, "address", root.get_string("address", ""));
    config.bind = config.address;
  }
  const std::vector<std::string> unread = document->unread_settings();
  if (!unread.empty()) throw config::ConfigError(unread.front() + ": not a setting of an identity file");
}

DbConfig load_db_config(const config::Section& root) {
  DbConfig db;
  const auto paths = root.section("paths");
  const std::string state_dir = paths.get_string("state_dir", "/var/lib/stacknode");
  db.runtime_dir = paths.get_string("runtime_dir", "/run/stacknode");

  const auto section = root.section("db");
  // Without node_id, the node waits for the identity file stackctl writes (init or join).
  db.node_id = static_cast<wire::NodeId>(section.get_int("node_id", 0, 1, max_node_id));
  db.identity_file = section.get_string("identity_file", state_dir + "/db-identity.cfg");
  if (db.identity_file.empty()) section.fail("identity_file", "must not be empty");
  if (!section.has("address")) section.fail("address", "required: host:port other nodes reach this node at");
  db.address = checked_endpoint(section, "address", section.get_string("address", ""));
  db.bind = checked_endpoint(section, "bind", section.get_string("bind", db.address));
  db.data_dir = section.get_string("data_dir", state_dir + "/db");
  if (db.data_dir.empty()) section.fail("data_dir", "must not be empty");
  read_membership(section, db);
  db.tls_dir = section.get_string("tls_dir", "");
  db.failure_domain = static_cast<std::uint64_t>(section.get_int("failure_domain", 0, 0, INT64_MAX));
  db.network_latency_ms = static_cast<unsigned>(
      section.get_int("network_latency_ms", default_network_latency_ms, 1, max_network_latency_ms));
  db.snapshot_threshold = static_cast<unsigned>(
      section.get_int("snapshot_threshold", default_snapshot_threshold, 1, UINT32_MAX));
  db.snapshot_trailing = static_cast<unsigned>(
      section.get_int("snapshot_trailing", default_snapshot_trailing, 1, UINT32_MAX));

  const std::string listen = section.get_string("listen_http", default_http_listen);
  try {
    http::parse_endpoint(listen);
  } catch (const std::exception& error) {
    section.fail("listen_http", error.what());
  }
  db.listeners.push_back({listen, false});
  db.http_threads = static_cast<unsigned>(section.get_int("http_threads", 1, 1, max_http_threads));
  db.workers = static_cast<unsigned>(section.get_int("workers", default_db_workers, 1, max_db_workers));

  const auto limits = section.section("limits");
  db.limits.statement_bytes = static_cast<std::size_t>(limits.get_int(
      "statement_bytes", static_cast<std::int64_t>(db.limits.statement_bytes), 1, max_statement_bytes));
  db.limits.statements = static_cast<std::size_t>(
      limits.get_int("statements", static_cast<std::int64_t>(db.limits.statements), 1, max_statements));
  db.limits.parameters = static_cast<std::size_t>(limits.get_int(
      "parameters", static_cast<std::int64_t>(db.limits.parameters), 0, wire::max_parameters));
  db.limits.rows = static_cast<std::size_t>(
      limits.get_int("rows", static_cast<std::int64_t>(db.limits.rows), 1, max_rows));
  db.limits.body_bytes = static_cast<std::uint64_t>(limits.get_int(
      "body_bytes", static_cast<std::int64_t>(db.limits.body_bytes), 1, max_body_bytes));
  db.http_limits.body_bytes = db.limits.body_bytes;
  return db;
}

}  // namespace stacknode::db
