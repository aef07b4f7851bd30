// The cache tier's cluster state; see cache.hpp.
#include "stacknode/node/cache.hpp"

#include <sodium.h>

#include "rows.hpp"
#include "stacknode/node/hex.hpp"

namespace stacknode::node {

namespace {

using rows::all_rows;
using rows::database_problem;
using rows::integer;
using rows::optional_integer;
using rows::text;

}  // namespace

Checked<CacheState> CacheStore::state() {
  CacheState state;
  db::Outcome<db::wire::RowSet> cluster = store_.client().query(
      store_.database(), "SELECT primary_node, epoch, password FROM cache_cluster WHERE singleton = 1");
  if (!cluster) return problem_from(cluster.error());
  if (cluster->rows.empty()) {
    // The first reader makes the password; if two do at once, the one written first stays.
    std::uint8_t random[cache_password_bytes];
    randombytes_buf(random, sizeof random);
    db::Outcome<db::wire::Result> made = store_.client().exec(
        store_.database(), "INSERT OR IGNORE INTO cache_cluster (singleton, primary_node, epoch, password) VALUES (1, NULL, 0, ?)",
        {to_hex(random)});
    if (!made) return problem_from(made.error());
    cluster = store_.client().query(store_.database(),
                                    "SELECT primary_node, epoch, password FROM cache_cluster WHERE singleton = 1");
    if (!cluster) return problem_from(cluster.error());
    if (cluster->rows.empty()) return rows::not_found("the cache's cluster row is missing after it was made");
  }
  const db::wire::Row& row = cluster->rows[0];
  state.cluster = {optional_integer(row[0]), integer(row[1]), text(row[2])};
  Checked<std::vector<CacheNodeRow>> nodes = all_rows<CacheNodeRow>(
      store_, "SELECT node_id, role, repl_offset, epoch, at_ms FROM cache_nodes ORDER BY node_id",
      [](const db::wire::Row& node) {
        return CacheNodeRow{integer(node[0]), text(node[1]), integer(node[2]), integer(node[3]), integer(node[4])};
      });
  if (!nodes) return nodes.problem();
  state.nodes = std::move(*nodes);
  return state;
}

Checked<Done> CacheStore::report(const CacheNodeRow& row) {
  db::Outcome<db::wire::Result> done = store_.client().exec(
      store_.database(),
      "INSERT INTO cache_nodes (node_id, role, repl_offset, epoch, at_ms) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT (node_id) DO UPDATE SET role = excluded.role, repl_offset = excluded.repl_offset, epoch = excluded.epoch, "
      "at_ms = excluded.at_ms",
      {row.node_id, row.role, row.offset, row.epoch, row.at_ms});
  if (!done) return problem_from(done.error());
  return Done{};
}

Checked<bool> CacheStore::set_primary(const std::string& actor, std::int64_t node_id, std::int64_t expected_epoch,
                                      const std::string& reason, std::int64_t now) {
  bool moved = false;
  if (expected_epoch == 0) {  // the first election
    db::Outcome<db::wire::Result> updated = store_.client().exec(
        store_.database(), "UPDATE cache_cluster SET primary_node = ?, epoch = 1 WHERE singleton = 1 AND epoch = 0",
        {node_id});
    if (!updated) return problem_from(updated.error());
    return updated->rows_affected == 1;
  }
  Checked<Done> done = store_.change(
      {actor, "cache.primary", std::to_string(node_id), reason + " (epoch " + std::to_string(expected_epoch + 1) + ")"},
      now, [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
        db::Outcome<db::wire::Result> updated = transaction.exec(
            "UPDATE cache_cluster SET primary_node = ?, epoch = epoch + 1 WHERE singleton = 1 AND epoch = ?",
            {node_id, expected_epoch});
        if (!updated) return problem_from(updated.error());
        moved = updated->rows_affected == 1;
        // Someone else moved it first: nothing to record.
        if (!moved) return rows::conflict("the cache's epoch is no longer " + std::to_string(expected_epoch));
        return std::nullopt;
      });
  if (!done) {
    if (done.problem().kind == ProblemKind::conflict) return false;
    return done.problem();
  }
  return moved;
}

std::optional<std::int64_t> cache_promotion(const CacheState& state, const std::set<std::int64_t>& alive) {
  std::optional<std::int64_t> best;
  std::int64_t best_offset = -1;
  for (const CacheNodeRow& node : state.nodes) {
    if (!alive.contains(node.node_id)) continue;
    if (node.offset > best_offset || (node.offset == best_offset && best && node.node_id < *best)) {
      best = node.node_id;
      best_offset = node.offset;
    }
  }
  if (!best) return std::nullopt;  // nobody alive to promote
  if (state.cluster.primary && alive.contains(*state.cluster.primary)) return std::nullopt;  // it stays
  if (state.cluster.primary == best) return std::nullopt;
  return best;
}

}  // namespace stacknode::node
