// The control-plane database's schema (database "cluster" in the stacknode-db cluster) and the
// numbered migrations that build it. `stackctl cluster init` runs migrate() (stacknoded will run it
// at start-up too, so that an updated node brings the schema up to its build); migrations
// are applied in order, each in one transaction together with its row in schema_migrations, so a
// database is always exactly at one version: a migration that fails leaves nothing behind, and two
// nodes migrating at once apply each migration once (the second finds it recorded).
//
// Rules for adding a migration: append it with the next version; never edit or reorder one that
// has shipped (a cluster may be at any version); a node whose build knows fewer migrations than
// the database has refuses to start (it would misread tables it does not know).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/db/client.hpp"

namespace stacknode::node {

inline constexpr std::string_view control_database = "cluster";

struct Migration {
  std::int64_t version;                         // 1, 2, 3, ... with no gaps
  std::string_view name;                        // what it does, for the log and the table
  std::vector<std::string_view> statements;     // one SQL statement each
};

// The control plane's migrations, oldest first.
std::span<const Migration> control_schema();

// Brings `database` to the last version of `migrations` and returns that version, or an error
// that says what to do: the database is newer than this build, a migration failed (its SQLite
// message), or the cluster cannot be reached. `now_unix_seconds` is recorded as applied_at.
db::Outcome<std::int64_t> migrate(db::Client& client, const std::string& database,
                                  std::span<const Migration> migrations, std::int64_t now_unix_seconds);

// The version `database` is at (0 when it has no schema_migrations table yet).
db::Outcome<std::int64_t> schema_version(db::Client& client, const std::string& database);

}  // namespace stacknode::node
