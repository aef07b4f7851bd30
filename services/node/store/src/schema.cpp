// The control-plane schema and its migration runner; see schema.hpp.
#include "stacknode/node/schema.hpp"

#include <optional>

namespace stacknode::node {
namespace {

using db::Error;
using db::ErrorKind;
using db::Outcome;

constexpr std::string_view create_migrations_table =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "applied_at INTEGER NOT NULL)";

// Version 1: what issue 5's control plane keeps. Times are Unix seconds. Secrets are stored only
// as hashes (join tokens, API tokens, passwords); the CA's private key is stored so that any
// member can sign a joining node's certificate (it lives where the cluster's data lives: on the
// members' disks and in their memory).
const std::vector<Migration> migrations_list = {
    {1,
     "cluster identity, nodes, join tokens, revoked certificates, users, API tokens, settings, audit log",
     {
         "CREATE TABLE cluster (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), cluster_id TEXT NOT NULL, "
         "name TEXT NOT NULL, ca_certificate TEXT NOT NULL, ca_private_key TEXT NOT NULL, created_at INTEGER NOT NULL)",
         "CREATE TABLE nodes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, api_address TEXT NOT NULL UNIQUE, "
         "db_address TEXT NOT NULL UNIQUE, certificate_serial INTEGER NOT NULL UNIQUE, joined_at INTEGER NOT NULL, "
         "last_seen INTEGER)",
         "CREATE TABLE join_tokens (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL UNIQUE, created_by TEXT NOT NULL, "
         "created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER, used_by_node INTEGER, "
         "revoked_at INTEGER)",
         "CREATE TABLE revoked_certificates (serial INTEGER PRIMARY KEY, node_name TEXT NOT NULL, "
         "revoked_at INTEGER NOT NULL)",
         "CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL)",
         "CREATE TABLE api_tokens (id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, "
         "user_name TEXT NOT NULL REFERENCES users (name), description TEXT NOT NULL DEFAULT '', "
         "created_at INTEGER NOT NULL, revoked_at INTEGER)",
         "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
         "CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, "
         "action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '')",
         "CREATE INDEX audit_log_at ON audit_log (at)",
     }},
    // Version 2: a login gives the user an API token that expires (a session); tokens made for
    // scripts have no expiry (NULL).
    {2, "API tokens may expire (sessions from login)", {"ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER"}},
    // Version 3: the pin (SHA-256 of the public key) of each node's certificate. Every member
    // holds the CA key, so a certificate alone does not prove which box presents it; the key
    // pair the node joined with does.
    {3, "nodes are bound to their key pair", {"ALTER TABLE nodes ADD COLUMN public_key_pin TEXT"}},
    // Version 4: load balancing as cluster state (issue 6). A pool's members are every node's
    // service on `port` unless pool_members says otherwise for a node (by its dqlite id, which a
    // rename keeps); a VIP sends to a pool; a VIP address's lease names the one node that answers
    // for it (ARP is per address, whatever the ports) until expires_at_ms (Unix milliseconds),
    // renewed through Raft, so only a node that reaches the majority can hold one.
    // backend_health holds every node's view of every member; a member is down when most fresh
    // views say so.
    {4,
     "pools, pool members, VIPs, VIP leases and health views",
     {
         "CREATE TABLE pools (name TEXT PRIMARY KEY, port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535), "
         "health_path TEXT NOT NULL, health_interval_ms INTEGER NOT NULL, health_timeout_ms INTEGER NOT NULL, "
         "rise INTEGER NOT NULL, fall INTEGER NOT NULL, created_at INTEGER NOT NULL)",
         "CREATE TABLE pool_members (pool TEXT NOT NULL, node_id INTEGER NOT NULL, "
         "weight INTEGER NOT NULL CHECK (weight BETWEEN 1 AND 65535), "
         "state TEXT NOT NULL CHECK (state IN ('active', 'draining', 'maintenance')), PRIMARY KEY (pool, node_id))",
         "CREATE TABLE vips (name TEXT PRIMARY KEY, address TEXT NOT NULL, port INTEGER NOT NULL "
         "CHECK (port BETWEEN 1 AND 65535), protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')), "
         "pool TEXT NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('ipip', 'l2_dsr')), created_at INTEGER NOT NULL, "
         "UNIQUE (address, port, protocol))",
         "CREATE TABLE vip_leases (address TEXT PRIMARY KEY, node_id INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL)",
         // Each node's view of each pool member (checker_id's health checks of node_id's service).
         "CREATE TABLE backend_health (pool TEXT NOT NULL, node_id INTEGER NOT NULL, checker_id INTEGER NOT NULL, "
         "up INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (pool, node_id, checker_id))",
     }},
    // Content bundles (content.hpp): uploads in progress, their chunks (kept by the versions made
    // from them), the versions, each site's current version, and what each node serves.
    {5,
     "content: uploads, chunks, versions, sites, what each node serves",
     {
         "CREATE TABLE content_uploads (id TEXT PRIMARY KEY, site TEXT NOT NULL, created_at INTEGER NOT NULL, "
         "created_by TEXT NOT NULL)",
         "CREATE TABLE content_chunks (upload TEXT NOT NULL, seq INTEGER NOT NULL CHECK (seq >= 0), "
         "data BLOB NOT NULL, PRIMARY KEY (upload, seq))",
         "CREATE TABLE content_versions (site TEXT NOT NULL, version INTEGER NOT NULL CHECK (version >= 1), "
         "upload TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, files INTEGER NOT NULL, "
         "chunks INTEGER NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL, PRIMARY KEY (site, version))",
         "CREATE TABLE content_sites (site TEXT PRIMARY KEY, current INTEGER NOT NULL)",
         "CREATE TABLE content_nodes (site TEXT NOT NULL, node_id INTEGER NOT NULL, version INTEGER NOT NULL, "
         "at INTEGER NOT NULL, PRIMARY KEY (site, node_id))",
     }},
    // The cache tier (cache.hpp): the primary, its epoch and the cache password; each node's report.
    {6,
     "cache: the primary and its epoch, the password, each node's report",
     {
         "CREATE TABLE cache_cluster (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), primary_node INTEGER, "
         "epoch INTEGER NOT NULL, password TEXT NOT NULL)",
         "CREATE TABLE cache_nodes (node_id INTEGER PRIMARY KEY, role TEXT NOT NULL, repl_offset INTEGER NOT NULL, "
         "epoch INTEGER NOT NULL, at_ms INTEGER NOT NULL)",
     }},
};

std::optional<std::int64_t> integer_of(const db::wire::RowSet& rows) {
  if (rows.rows.size() != 1 || rows.rows[0].size() != 1) return std::nullopt;
  const auto* value = std::get_if<std::int64_t>(&rows.rows[0][0]);
  if (value == nullptr) return std::nullopt;
  return *value;
}

// One migration in one transaction, with its schema_migrations row. True if it was applied, false
// if another node had applied it already.
Outcome<bool> apply(db::Client& client, const std::string& database, const Migration& migration, std::int64_t now) {
  bool applied = false;
  Outcome<db::wire::Empty> done = client.transaction(database, [&](db::Client::Transaction& transaction) -> std::optional<Error> {
    applied = false;
    Outcome<db::wire::RowSet> recorded =
        transaction.query("SELECT count(*) FROM schema_migrations WHERE version = ?", {migration.version});
    if (!recorded) return recorded.error();
    if (integer_of(*recorded) == 1) return std::nullopt;  // another node was first: commit nothing
    for (const std::string_view statement : migration.statements) {
      Outcome<db::wire::Result> ran = transaction.exec(std::string(statement));
      if (!ran) {
        Error error = ran.error();
        if (error.kind == ErrorKind::sqlite && !db::refused_busy(error)) {
          error.message = "migration " + std::to_string(migration.version) + " (" + std::string(migration.name) +
                          ") failed: " + error.message + " in: " + std::string(statement);
        }
        return error;
      }
    }
    Outcome<db::wire::Result> noted = transaction.exec(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        {migration.version, std::string(migration.name), now});
    if (!noted) return noted.error();
    applied = true;
    return std::nullopt;
  });
  if (!done) return done.error();
  return applied;
}

}  // namespace

std::span<const Migration> control_schema() { return migrations_list; }

Outcome<std::int64_t> schema_version(db::Client& client, const std::string& database) {
  Outcome<db::wire::RowSet> exists = client.query(
      database, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
  if (!exists) return exists.error();
  if (integer_of(*exists) != 1) return std::int64_t{0};
  Outcome<db::wire::RowSet> version = client.query(database, "SELECT coalesce(max(version), 0) FROM schema_migrations");
  if (!version) return version.error();
  const std::optional<std::int64_t> value = integer_of(*version);
  if (!value) return Error{ErrorKind::protocol, 0, "schema_migrations answered something that is not a version"};
  return *value;
}

Outcome<std::int64_t> migrate(db::Client& client, const std::string& database, std::span<const Migration> migrations,
                              std::int64_t now_unix_seconds) {
  for (std::size_t index = 0; index < migrations.size(); ++index) {
    if (migrations[index].version != static_cast<std::int64_t>(index) + 1) {
      return Error{ErrorKind::invalid_request, 0, "migrations must be numbered 1, 2, 3, ... in order"};
    }
  }
  const auto last = static_cast<std::int64_t>(migrations.size());
  if (Outcome<db::wire::Result> table = client.exec(database, std::string(create_migrations_table)); !table) {
    return table.error();
  }
  for (;;) {
    Outcome<std::int64_t> current = schema_version(client, database);
    if (!current) return current.error();
    if (*current > last) {
      return Error{ErrorKind::invalid_request, 0,
                   "the control database is at schema version " + std::to_string(*current) +
                       " and this stacknoded knows versions up to " + std::to_string(last) +
                       ": update this node's firmware to the cluster's version"};
    }
    if (*current == last) return last;
    // Locked by other writers for longer than the client's budget: the error says so (rule 7).
    Outcome<bool> step = apply(client, database, migrations[static_cast<std::size_t>(*current)], now_unix_seconds);
    if (!step) return step.error();
  }
}

}  // namespace stacknode::node
