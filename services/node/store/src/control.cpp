// The control store's queries and changes; see control.hpp.
#include "stacknode/node/control.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>

#include "stacknode/node/credentials.hpp"
#include "stacknode/node/hex.hpp"
#include "stacknode/node/pki.hpp"
#include "rows.hpp"

namespace stacknode::node {
namespace {

using db::wire::Value;
using rows::conflict;
using rows::expect_one;
using rows::integer;
using rows::invalid;
using rows::not_found;
using rows::optional_integer;
using rows::text;
using rows::valid_name;

Value optional_value(const std::optional<std::int64_t>& value) {
  if (value) return *value;
  return db::wire::Null{};
}

constexpr std::string_view node_columns =
    "id, name, api_address, db_address, certificate_serial, joined_at, last_seen, coalesce(public_key_pin, '')";
NodeRow node_row(const db::wire::Row& row) {
  return {integer(row[0]), text(row[1]), text(row[2]), text(row[3]), integer(row[4]), integer(row[5]),
          optional_integer(row[6]), text(row[7])};
}
constexpr std::string_view join_token_columns =
    "id, created_by, created_at, expires_at, used_at, used_by_node, revoked_at";
JoinTokenRow join_token_row(const db::wire::Row& row) {
  return {text(row[0]),           text(row[1]),           integer(row[2]),         integer(row[3]),
          optional_integer(row[4]), optional_integer(row[5]), optional_integer(row[6])};
}
constexpr std::string_view api_token_columns = "id, user_name, description, created_at, expires_at, revoked_at";
ApiTokenRow api_token_row(const db::wire::Row& row) {
  return {text(row[0]), text(row[1]), text(row[2]), integer(row[3]), optional_integer(row[4]), optional_integer(row[5])};
}

// A page of `columns` from `table` ordered by the text key `key`: one row more than asked tells
// whether another page follows.
template <typename Row, typename Convert>
Checked<Page<Row>> keyed_page(db::Client& client, const std::string& database, std::string_view columns,
                              std::string_view table, std::string_view key, const PageRequest& page, Convert convert) {
  const std::string sql = "SELECT " + std::string(columns) + " FROM " + std::string(table) + " WHERE " +
                          std::string(key) + " > ? ORDER BY " + std::string(key) + " LIMIT ?";
  db::Outcome<db::wire::RowSet> rows =
      client.query(database, sql, {page.after, static_cast<std::int64_t>(page.limit + 1)});
  if (!rows) return problem_from(rows.error());
  Page<Row> result;
  for (const db::wire::Row& row : rows->rows) {
    if (result.items.size() == page.limit) {
      result.next = text(rows->rows[page.limit - 1][0]);  // the last item's key (the first column)
      break;
    }
    result.items.push_back(convert(row));
  }
  return result;
}

}  // namespace

Problem problem_from(const db::Error& error) {
  switch (error.kind) {
    case db::ErrorKind::no_leader:
    case db::ErrorKind::not_leader:
    case db::ErrorKind::timeout:
    case db::ErrorKind::connection_lost:
      return {ProblemKind::unavailable, "the control database is unavailable: " + error.message, error};
    case db::ErrorKind::sqlite:
      if (db::refused_busy(error)) {
        return {ProblemKind::unavailable, "the control database is busy with other writers: try again", error};
      }
      break;
    case db::ErrorKind::protocol:
    case db::ErrorKind::invalid_request:
      break;
  }
  return {ProblemKind::failed, "the control database refused: " + error.message, error};
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool online(const NodeRow& node, std::int64_t now) {
  return node.last_seen && now - *node.last_seen <= offline_after.count();
}

Checked<Done> remove_db_member(db::Client& client, db::wire::NodeId id) {
  db::Outcome<db::wire::Empty> removed = client.remove(id);
  if (removed) return Done{};
  db::Outcome<db::wire::Nodes> members = client.cluster();
  if (!members) return problem_from(members.error());
  for (const db::wire::NodeInfo& member : members->nodes) {
    if (member.id == id) {
      return Problem{ProblemKind::unavailable,
                     "dqlite member " + std::to_string(id) + " could not be removed: " + removed.error().message};
    }
  }
  return Done{};
}

namespace {

// Why node `moving` cannot have its dqlite member moved to `address` now, or nullopt: another Raft
// member (a box mid-join, say) is at `address`; it is the only voter; or the voters left while it
// is out are not a majority that is online (the remove and the add could not commit).
std::optional<Problem> cannot_move_db_member(db::Client& client, const std::vector<NodeRow>& rows, const NodeRow& moving,
                                             const std::string& address, std::int64_t now) {
  db::Outcome<db::wire::Nodes> members = client.cluster();
  if (!members) return problem_from(members.error());
  std::size_t voters_left = 0, online_left = 0;
  bool moving_votes = false;
  for (const db::wire::NodeInfo& member : members->nodes) {
    if (member.address == address && static_cast<std::int64_t>(member.id) != moving.id) {
      return conflict("database member " + std::to_string(member.id) + " is at " + address + " already");
    }
    if (member.role != db::wire::Role::voter) continue;
    if (static_cast<std::int64_t>(member.id) == moving.id) {
      moving_votes = true;
      continue;
    }
    ++voters_left;
    for (const NodeRow& row : rows) {
      if (row.id == static_cast<std::int64_t>(member.id) && online(row, now)) ++online_left;
    }
  }
  if (!moving_votes) return std::nullopt;
  if (voters_left == 0) {
    return conflict("this node is the cluster's only database voter: its database cannot move until "
                    "another member joins");
  }
  if (online_left < voters_left / 2 + 1) {
    return conflict("only " + std::to_string(online_left) + " of the other " + std::to_string(voters_left) +
                    " voters are online: moving this node's database now would lose the quorum");
  }
  return std::nullopt;
}

}  // namespace

Checked<Done> move_db_member(db::Client& client, db::wire::NodeId id, const std::string& address) {
  db::Outcome<db::wire::Node> leader = client.find_leader();
  if (!leader) return problem_from(leader.error());
  db::Outcome<db::wire::Nodes> members = client.cluster();
  if (!members) return problem_from(members.error());
  const db::wire::NodeInfo* current = nullptr;
  for (const db::wire::NodeInfo& member : members->nodes) {
    if (member.id == id) current = &member;
  }
  if (current != nullptr && current->address == address) return Done{};  // moved already: a repeat
  if (current != nullptr) {
    if (leader->id == id) {  // a leader does not take itself out: another voter leads first
      bool handed_over = false;
      for (const db::wire::NodeInfo& member : members->nodes) {
        if (member.id != id && member.role == db::wire::Role::voter && client.transfer(member.id)) {
          handed_over = true;
          break;
        }
      }
      db::Outcome<db::wire::Node> next_leader = client.find_leader();
      if (!handed_over || !next_leader || next_leader->id == id) {
        return Problem{ProblemKind::unavailable, "node " + std::to_string(id) + " leads the database and no other "
                                                 "voter took over: try again"};
      }
    }
    if (Checked<Done> removed = remove_db_member(client, id); !removed) return removed;
  }
  // Back under the same id at the new address, as a standby (no catch-up needed to be one); the
  // balancing loop makes it a voter again when the cluster needs one.
  db::Outcome<db::wire::Empty> added = client.add(id, address);
  if (!added) {
    return Problem{ProblemKind::unavailable, "dqlite member " + std::to_string(id) + " is out of the cluster and "
                                             "could not be added at " + address + ": " + added.error().message +
                                             "; run the update again"};
  }
  db::Outcome<db::wire::Empty> assigned = client.assign(id, db::wire::Role::standby);
  if (!assigned) {
    return Problem{ProblemKind::unavailable, "dqlite member " + std::to_string(id) + " at " + address +
                                             " could not be made a standby: " + assigned.error().message};
  }
  return Done{};
}

std::optional<std::size_t> page_limit(std::string_view text) {
  if (text.empty()) return default_page_items;
  std::size_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0) return std::nullopt;
  return std::min(value, max_page_items);
}

Checked<Done> ControlStore::change(const AuditNote& note, std::int64_t now, const Body& body) {
  std::optional<Problem> refused;
  db::Outcome<db::wire::Empty> done =
      client_.transaction(database_, [&](db::Client::Transaction& transaction) -> std::optional<db::Error> {
        refused.reset();
        if ((refused = body(transaction))) {
          // The database's own errors go back as they are, so that BUSY is retried (rule 7).
          if (refused->database_error) return refused->database_error;
          return db::Error{db::ErrorKind::invalid_request, 0, refused->message};
        }
        db::Outcome<db::wire::Result> noted = transaction.exec(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            {now, note.actor, note.action, note.target, note.detail});
        if (!noted) return noted.error();
        return std::nullopt;
      });
  if (!done) {
    if (refused && !refused->database_error) return *refused;  // the body's own refusal
    return problem_from(done.error());
  }
  return Done{};
}

Checked<Done> ControlStore::record(const AuditNote& note, std::int64_t now) {
  return change(note, now, [](db::Client::Transaction&) { return std::nullopt; });
}

Checked<ClusterRow> ControlStore::cluster() {
  db::Outcome<db::wire::RowSet> rows =
      client_.query(database_, "SELECT cluster_id, name, ca_certificate, created_at FROM cluster");
  if (!rows) return problem_from(rows.error());
  if (rows->rows.size() != 1) return not_found("this cluster has no identity row: was 'stackctl cluster init' run?");
  const db::wire::Row& row = rows->rows[0];
  return ClusterRow{text(row[0]), text(row[1]), text(row[2]), integer(row[3])};
}

Checked<std::pair<std::string, std::string>> ControlStore::ca_credentials() {
  db::Outcome<db::wire::RowSet> rows = client_.query(database_, "SELECT ca_certificate, ca_private_key FROM cluster");
  if (!rows) return problem_from(rows.error());
  if (rows->rows.size() != 1) return not_found("this cluster has no CA: was 'stackctl cluster init' run?");
  return std::pair{text(rows->rows[0][0]), text(rows->rows[0][1])};
}

Checked<std::vector<NodeRow>> ControlStore::nodes() {
  db::Outcome<db::wire::RowSet> rows =
      client_.query(database_, "SELECT " + std::string(node_columns) + " FROM nodes ORDER BY name");
  if (!rows) return problem_from(rows.error());
  std::vector<NodeRow> nodes;
  for (const db::wire::Row& row : rows->rows) nodes.push_back(node_row(row));
  return nodes;
}

Checked<std::vector<std::int64_t>> ControlStore::revoked_serials() {
  db::Outcome<db::wire::RowSet> rows =
      client_.query(database_, "SELECT serial FROM revoked_certificates ORDER BY serial");
  if (!rows) return problem_from(rows.error());
  std::vector<std::int64_t> serials;
  for (const db::wire::Row& row : rows->rows) serials.push_back(integer(row[0]));
  return serials;
}

Checked<NodeRow> ControlStore::node_named(const std::string& name) {
  db::Outcome<db::wire::RowSet> rows =
      client_.query(database_, "SELECT " + std::string(node_columns) + " FROM nodes WHERE name = ?", {name});
  if (!rows) return problem_from(rows.error());
  if (rows->rows.empty()) return not_found("no node named '" + name + "' in this cluster");
  return node_row(rows->rows[0]);
}

Checked<NodeRow> ControlStore::node_with_serial(std::int64_t serial) {
  db::Outcome<db::wire::RowSet> rows = client_.query(
      database_, "SELECT " + std::string(node_columns) + " FROM nodes WHERE certificate_serial = ?", {serial});
  if (!rows) return problem_from(rows.error());
  if (rows->rows.empty()) {
    return not_found("no member holds certificate " + std::to_string(serial) + " (its node was removed, or never joined)");
  }
  return node_row(rows->rows[0]);
}

Checked<Done> ControlStore::heartbeat(std::int64_t node_id, std::int64_t now) {
  db::Outcome<db::wire::Result> done = client_.exec(database_, "UPDATE nodes SET last_seen = ? WHERE id = ?", {now, node_id});
  if (std::optional<Problem> problem = expect_one(done, "this node is not in the cluster's node list")) return *problem;
  return Done{};
}

Checked<CreatedJoinToken> ControlStore::create_join_token(const std::string& actor, std::chrono::seconds validity,
                                                         std::int64_t now) {
  Checked<ClusterRow> cluster_row = cluster();
  if (!cluster_row) return cluster_row.problem();
  Checked<std::vector<NodeRow>> members = nodes();
  if (!members) return members.problem();
  std::vector<std::string> addresses;
  for (const NodeRow& member : *members) {
    if (addresses.size() < max_token_addresses) addresses.push_back(member.api_address);
  }
  pki::Made<pki::Pin> pin = pki::public_key_pin(cluster_row->ca_certificate_pem);
  if (!pin.ok()) return Problem{ProblemKind::failed, "the cluster's CA certificate does not read: " + pin.error};
  ClusterId cluster_id{};
  if (!from_hex(cluster_row->id, cluster_id)) return Problem{ProblemKind::failed, "the cluster id is not 32 hex digits"};
  const std::optional<JoinToken> token =
      generate_join_token(cluster_id, *pin.value, static_cast<std::uint64_t>(now + validity.count()), addresses);
  if (!token) return Problem{ProblemKind::failed, "cannot make a join token (no randomness, or a bad member address)"};
  CreatedJoinToken created;
  created.text = *encode_join_token(*token);
  created.row = {token_id(token->secret), actor, now, static_cast<std::int64_t>(token->expires_at), {}, {}, {}};
  Checked<Done> done = change({actor, "token.create", created.row.id, ""}, now, [&](db::Client::Transaction& transaction) {
    db::Outcome<db::wire::Result> inserted = transaction.exec(
        "INSERT INTO join_tokens (id, secret_hash, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        {created.row.id, secret_hash(token->secret), actor, now, created.row.expires_at});
    return inserted ? std::nullopt : std::optional<Problem>(problem_from(inserted.error()));
  });
  if (!done) return done.problem();
  return created;
}

Checked<Page<JoinTokenRow>> ControlStore::join_tokens(const PageRequest& page) {
  return keyed_page<JoinTokenRow>(client_, database_, join_token_columns, "join_tokens", "id", page, join_token_row);
}

Checked<Done> ControlStore::revoke_join_token(const std::string& actor, const std::string& id, std::int64_t now) {
  return change({actor, "token.revoke", id, ""}, now, [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
    db::Outcome<db::wire::RowSet> rows =
        transaction.query("SELECT used_at, revoked_at FROM join_tokens WHERE id = ?", {id});
    if (!rows) return problem_from(rows.error());
    if (rows->rows.empty()) return not_found("no join token '" + id + "'");
    if (optional_integer(rows->rows[0][0])) return conflict("join token '" + id + "' was used already");
    if (optional_integer(rows->rows[0][1])) return conflict("join token '" + id + "' is revoked already");
    db::Outcome<db::wire::Result> done = transaction.exec("UPDATE join_tokens SET revoked_at = ? WHERE id = ?", {now, id});
    return expect_one(done, "no join token '" + id + "'");
  });
}

Checked<Page<UserRow>> ControlStore::users(const PageRequest& page) {
  return keyed_page<UserRow>(client_, database_, "name, created_at", "users", "name", page,
                             [](const db::wire::Row& row) { return UserRow{text(row[0]), integer(row[1])}; });
}

Checked<std::string> ControlStore::password_hash(const std::string& name) {
  db::Outcome<db::wire::RowSet> rows = client_.query(database_, "SELECT password_hash FROM users WHERE name = ?", {name});
  if (!rows) return problem_from(rows.error());
  if (rows->rows.empty()) return not_found("no user '" + name + "'");
  return text(rows->rows[0][0]);
}

Checked<Done> ControlStore::create_user(const std::string& actor, const std::string& name, const std::string& hash,
                                        std::int64_t now) {
  if (!valid_name(name, max_user_name_chars)) {
    return invalid("a user name has 1 to " + std::to_string(max_user_name_chars) +
                   " characters from a-z A-Z 0-9 - _ .");
  }
  return change({actor, "user.create", name, ""}, now, [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
    db::Outcome<db::wire::RowSet> rows = transaction.query("SELECT count(*) FROM users WHERE name = ?", {name});
    if (!rows) return problem_from(rows.error());
    if (integer(rows->rows[0][0]) > 0) return conflict("user '" + name + "' exists already");
    db::Outcome<db::wire::Result> done = transaction.exec("INSERT INTO users VALUES (?, ?, ?)", {name, hash, now});
    return done ? std::nullopt : std::optional<Problem>(problem_from(done.error()));
  });
}

Checked<Done> ControlStore::set_password(const std::string& actor, const std::string& name, const std::string& hash,
                                         std::int64_t now) {
  return change({actor, "user.password", name, ""}, now, [&](db::Client::Transaction& transaction) {
    return expect_one(transaction.exec("UPDATE users SET password_hash = ? WHERE name = ?", {hash, name}),
                      "no user '" + name + "'");
  });
}

Checked<Done> ControlStore::delete_user(const std::string& actor, const std::string& name, std::int64_t now) {
  return change({actor, "user.delete", name, ""}, now, [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
    db::Outcome<db::wire::RowSet> rows =
        transaction.query("SELECT count(*), sum(name = ?) FROM users", {name});
    if (!rows) return problem_from(rows.error());
    if (integer(rows->rows[0][1]) == 0) return not_found("no user '" + name + "'");
    if (integer(rows->rows[0][0]) <= 1) return conflict("'" + name + "' is the last user: nobody could log in");
    // The user's API tokens (sessions included) go with it: they reference the user, and a
    // deleted user's token must not work. The audit log keeps what they did.
    db::Outcome<db::wire::Result> tokens = transaction.exec("DELETE FROM api_tokens WHERE user_name = ?", {name});
    if (!tokens) return problem_from(tokens.error());
    return expect_one(transaction.exec("DELETE FROM users WHERE name = ?", {name}), "no user '" + name + "'");
  });
}

Checked<CreatedApiToken> ControlStore::create_api_token(const AuditNote& note, const std::string& user,
                                                       const std::string& description,
                                                       std::optional<std::int64_t> expires_at, std::int64_t now) {
  if (description.size() > max_description_chars) {
    return invalid("a description has at most " + std::to_string(max_description_chars) + " characters");
  }
  const ApiToken token = generate_api_token();
  if (token.text.empty()) return Problem{ProblemKind::failed, "cannot make an API token (no randomness)"};
  CreatedApiToken created{token.text, {token.id, user, description, now, expires_at, {}}};
  AuditNote audited = note;
  audited.target = token.id;
  Checked<Done> done = change(audited, now, [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
    db::Outcome<db::wire::RowSet> rows = transaction.query("SELECT count(*) FROM users WHERE name = ?", {user});
    if (!rows) return problem_from(rows.error());
    if (integer(rows->rows[0][0]) == 0) return not_found("no user '" + user + "'");
    db::Outcome<db::wire::Result> inserted = transaction.exec(
        "INSERT INTO api_tokens (id, token_hash, user_name, description, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        {token.id, token.stored_hash, user, description, now, optional_value(expires_at)});
    return inserted ? std::nullopt : std::optional<Problem>(problem_from(inserted.error()));
  });
  if (!done) return done.problem();
  return created;
}

Checked<Page<ApiTokenRow>> ControlStore::api_tokens(const PageRequest& page) {
  return keyed_page<ApiTokenRow>(client_, database_, api_token_columns, "api_tokens", "id", page, api_token_row);
}

Checked<Done> ControlStore::revoke_api_token(const std::string& actor, const std::string& id, std::int64_t now) {
  return change({actor, "api-token.revoke", id, ""}, now, [&](db::Client::Transaction& transaction) {
    return expect_one(transaction.exec("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                       {now, id}),
                      "no API token '" + id + "' that is not revoked already");
  });
}

Checked<TokenOwner> ControlStore::authenticate(const std::string& token_text, std::int64_t now) {
  const std::optional<std::string> hash = api_token_hash(token_text);
  if (!hash) return not_found("not an API token");
  db::Outcome<db::wire::RowSet> rows = client_.query(
      database_,
      "SELECT user_name, id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL "
      "AND (expires_at IS NULL OR expires_at > ?)",
      {*hash, now});
  if (!rows) return problem_from(rows.error());
  if (rows->rows.empty()) return not_found("unknown, revoked or expired API token");
  return TokenOwner{text(rows->rows[0][0]), text(rows->rows[0][1])};
}

Checked<std::vector<std::pair<std::string, std::string>>> ControlStore::settings() {
  db::Outcome<db::wire::RowSet> rows = client_.query(database_, "SELECT key, value FROM settings ORDER BY key");
  if (!rows) return problem_from(rows.error());
  std::vector<std::pair<std::string, std::string>> settings;
  for (const db::wire::Row& row : rows->rows) settings.emplace_back(text(row[0]), text(row[1]));
  return settings;
}

Checked<Done> ControlStore::put_setting(const std::string& actor, const std::string& name, const std::string& value,
                                        std::int64_t now) {
  if (!valid_name(name, max_setting_name_chars)) {
    return invalid("a setting name has 1 to " + std::to_string(max_setting_name_chars) +
                   " characters from a-z A-Z 0-9 - _ .");
  }
  if (value.size() > max_setting_value_chars) {
    return invalid("a setting's value has at most " + std::to_string(max_setting_value_chars) + " characters");
  }
  return change({actor, "setting.put", name, value}, now, [&](db::Client::Transaction& transaction) {
    db::Outcome<db::wire::Result> done = transaction.exec(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        {name, value});
    return done ? std::nullopt : std::optional<Problem>(problem_from(done.error()));
  });
}

Checked<Done> ControlStore::delete_setting(const std::string& actor, const std::string& name, std::int64_t now) {
  return change({actor, "setting.delete", name, ""}, now, [&](db::Client::Transaction& transaction) {
    return expect_one(transaction.exec("DELETE FROM settings WHERE key = ?", {name}), "no setting '" + name + "'");
  });
}

Checked<Page<AuditRow>> ControlStore::audit(const PageRequest& page) {
  std::int64_t before = INT64_MAX;
  if (!page.after.empty()) {
    const auto [end, error] = std::from_chars(page.after.data(), page.after.data() + page.after.size(), before);
    if (error != std::errc() || end != page.after.data() + page.after.size()) {
      return invalid("the audit log's page cursor is an entry id");
    }
  }
  db::Outcome<db::wire::RowSet> rows = client_.query(
      database_,
      "SELECT id, at, actor, action, target, detail FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
      {before, static_cast<std::int64_t>(page.limit + 1)});
  if (!rows) return problem_from(rows.error());
  Page<AuditRow> result;
  for (const db::wire::Row& row : rows->rows) {
    if (result.items.size() == page.limit) {
      result.next = std::to_string(result.items.back().id);
      break;
    }
    result.items.push_back({integer(row[0]), integer(row[1]), text(row[2]), text(row[3]), text(row[4]), text(row[5])});
  }
  return result;
}

Checked<NodeRow> ControlStore::forget_node(const std::string& actor, const std::string& name, std::int64_t now) {
  Checked<NodeRow> node = node_named(name);
  if (!node) return node.problem();
  Checked<Done> done = change({actor, "node.remove", name, ""}, now, [&](db::Client::Transaction& transaction) {
    db::Outcome<db::wire::Result> revoked = transaction.exec(
        "INSERT OR IGNORE INTO revoked_certificates (serial, node_name, revoked_at) VALUES (?, ?, ?)",
        {node->certificate_serial, name, now});
    if (!revoked) return std::optional<Problem>(problem_from(revoked.error()));
    return expect_one(transaction.exec("DELETE FROM nodes WHERE id = ?", {node->id}), "no node named '" + name + "'");
  });
  if (!done) return done.problem();
  return node;
}


namespace {

Problem forbidden(std::string message) { return {ProblemKind::forbidden, std::move(message)}; }

// The stored hash of a token secret given in hex; nullopt if it is not 64 hex digits.
std::optional<std::string> hash_of_secret(const std::string& secret_hex) {
  TokenSecret secret{};
  if (!from_hex(secret_hex, secret)) return std::nullopt;
  return secret_hash(secret);
}

// Why a token row cannot be used for a join at `now`, or nullopt if it can.
std::optional<Problem> token_unusable(const db::wire::RowSet& rows, std::int64_t now) {
  if (rows.rows.empty()) {
    return forbidden("the cluster does not know this token (another cluster's, or never issued): "
                     "ask for a new one with 'stackctl cluster token create' on a member");
  }
  const db::wire::Row& row = rows.rows[0];  // used_at, revoked_at, expires_at
  if (optional_integer(row[0])) return forbidden("this token was used already: a token joins one box; ask for a new one");
  if (optional_integer(row[1])) return forbidden("this token was revoked: ask for a new one");
  if (integer(row[2]) <= now) return forbidden("this token expired: ask for a new one");
  return std::nullopt;
}

constexpr std::string_view token_state_query =
    "SELECT used_at, revoked_at, expires_at FROM join_tokens WHERE secret_hash = ?";

// A random number in 1..limit-1 (limit a power of two), 0 if the random source fails. Serials and
// node ids are random: unique without coordination between members or joins in flight.
std::int64_t random_below(std::uint64_t limit) {
  std::uint64_t value = 0;
  while (value == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof value) != 1) return 0;
    value &= limit - 1;
  }
  return static_cast<std::int64_t>(value);
}
// Node ids stay below 2^31: they are written into the identity file as plain libconfig integers
// (32 bits without an L suffix; the config reader refuses wider ones), and are short to read.
// Serials use 63 bits.
constexpr std::uint64_t max_joined_node_id = std::uint64_t{1} << 31;
constexpr std::uint64_t max_serial = std::uint64_t{1} << 63;

// A member's certificate: `csr_pem` signed by the cluster CA for `name` and both addresses, with a
// new random serial (given in `serial_out`). The CA certificate goes to `ca_pem`.
Checked<std::string> sign_member(ControlStore& store, const std::string& csr_pem, const std::string& name,
                                 const std::string& api_address, const std::string& db_address, std::int64_t now,
                                 std::string& ca_pem, std::int64_t& serial_out) {
  Checked<std::pair<std::string, std::string>> ca = store.ca_credentials();
  if (!ca) return ca.problem();
  const std::int64_t serial = random_below(max_serial);
  if (serial == 0) return Problem{ProblemKind::failed, "no randomness for a certificate serial"};
  pki::Made<std::string> certificate = pki::sign_node_certificate(
      {ca->first, ca->second}, csr_pem,
      {name, node_certificate_hosts(api_address, db_address), static_cast<std::uint64_t>(serial),
       joined_certificate_validity},
      std::chrono::system_clock::time_point(std::chrono::seconds(now)));
  if (!certificate.ok()) return invalid("cannot sign this box's certificate: " + certificate.error);
  ca_pem = ca->first;
  serial_out = serial;
  return *certificate.value;
}

}  // namespace

Checked<std::string> ControlStore::reidentify_node(const std::string& actor, const NodeRow& node,
                                                   const std::string& name, const std::string& api_address,
                                                   const std::string& db_address, const std::string& csr_pem,
                                                   std::int64_t now) {
  if (!valid_member_address(api_address)) return invalid("'api_address' must be IP:port");
  if (!valid_member_address(db_address)) return invalid("'db_address' must be IP:port");
  Checked<std::vector<NodeRow>> members = nodes();
  if (!members) return members.problem();
  for (const NodeRow& member : *members) {
    if (member.id == node.id) continue;
    if (member.name == name) return conflict("a node named '" + name + "' is a member already: pick another name");
    if (member.api_address == api_address) return conflict("node '" + member.name + "' already uses " + api_address);
    if (member.db_address == db_address) return conflict("node '" + member.name + "' already uses " + db_address);
  }
  std::string ca_pem;
  std::int64_t serial = 0;
  Checked<std::string> certificate = sign_member(*this, csr_pem, name, api_address, db_address, now, ca_pem, serial);
  if (!certificate) return certificate;
  pki::Made<pki::Pin> pin = pki::public_key_pin(*certificate);
  if (!pin.ok()) return Problem{ProblemKind::failed, "the certificate just signed does not read back"};
  // The dqlite member first: the row must not name an address Raft does not have.
  if (db_address != node.db_address) {
    if (std::optional<Problem> refused = cannot_move_db_member(client_, *members, node, db_address, now)) {
      return *refused;
    }
    if (Checked<Done> moved = move_db_member(client_, static_cast<db::wire::NodeId>(node.id), db_address); !moved) {
      return moved.problem();
    }
  }
  const std::string detail = "was " + node.name + " at " + node.api_address + " and " + node.db_address;
  Checked<Done> done = change({actor, "node.update", name, detail}, now, [&](db::Client::Transaction& transaction) {
    // Only while the row still holds the certificate the request was authenticated with: two
    // updates at once cannot both win.
    std::optional<Problem> updated = expect_one(
        transaction.exec("UPDATE nodes SET name = ?, api_address = ?, db_address = ?, certificate_serial = ?, "
                         "public_key_pin = ? WHERE id = ? AND certificate_serial = ?",
                         {name, api_address, db_address, serial,
                          pki::to_hex(*pin.value), node.id, node.certificate_serial}),
        "");
    if (updated && !updated->database_error) {
      return std::optional<Problem>(conflict("node '" + node.name + "' changed meanwhile (another update won): "
                                             "its certificate is no longer the one presented"));
    }
    if (updated) return updated;
    db::Outcome<db::wire::Result> revoked = transaction.exec(
        "INSERT OR IGNORE INTO revoked_certificates (serial, node_name, revoked_at) VALUES (?, ?, ?)",
        {node.certificate_serial, node.name, now});
    if (!revoked) return std::optional<Problem>(problem_from(revoked.error()));
    return std::optional<Problem>();
  });
  if (!done) return done.problem();
  return certificate;
}

Checked<JoinOffer> JoinDesk::prepare(const JoinRequest& request, std::int64_t now) {
  const std::optional<std::string> hash = hash_of_secret(request.secret_hex);
  if (!hash) return invalid("'secret' must be the token's secret: 64 hex digits");
  if (!valid_member_address(request.api_address) || !valid_member_address(request.db_address)) {
    return invalid("'api_address' and 'db_address' must be IP:port");
  }
  db::Client& client = store_.client();
  db::Outcome<db::wire::RowSet> state = client.query(store_.database(), std::string(token_state_query), {*hash});
  if (!state) return problem_from(state.error());
  if (std::optional<Problem> refused = token_unusable(*state, now)) return *refused;

  Checked<std::vector<NodeRow>> members = store_.nodes();
  if (!members) return members.problem();
  JoinOffer offer;
  for (const NodeRow& member : *members) {
    if (member.name == request.name) {
      return conflict("a node named '" + request.name + "' is a member already: pick another name, or "
                      "'stackctl cluster remove " + request.name + "' first");
    }
    if (member.api_address == request.api_address || member.db_address == request.db_address) {
      return conflict("node '" + member.name + "' already uses " + member.api_address + " / " + member.db_address);
    }
    offer.db_members.push_back(member.db_address);
  }
  // A random id, not the highest + 1: two joins at once never get the same one, and a removed
  // node's id never comes back (a removed box with its old data cannot pass for a new member).
  db::Outcome<db::wire::Nodes> raft = client.cluster();
  if (!raft) return problem_from(raft.error());
  const auto taken = [&](std::int64_t id) {
    for (const db::wire::NodeInfo& info : raft->nodes) {
      if (static_cast<std::int64_t>(info.id) == id) return true;
    }
    for (const NodeRow& member : *members) {
      if (member.id == id) return true;
    }
    return false;
  };
  do {
    offer.node_id = random_below(max_joined_node_id);
    if (offer.node_id == 0) return Problem{ProblemKind::failed, "no randomness for a node id"};
  } while (offer.node_id == 1 || taken(offer.node_id));
  Checked<ClusterRow> cluster = store_.cluster();
  if (!cluster) return cluster.problem();
  std::int64_t serial = 0;  // the commit reads it back from the certificate the joiner returns
  Checked<std::string> certificate = sign_member(store_, request.csr_pem, request.name, request.api_address,
                                                 request.db_address, now, offer.ca_certificate_pem, serial);
  if (!certificate) return certificate.problem();
  offer.certificate_pem = *certificate;
  offer.cluster_id = cluster->id;
  offer.cluster_name = cluster->name;
  return offer;
}

Checked<Done> JoinDesk::commit(const std::string& secret_hex, std::int64_t node_id, const std::string& certificate_pem,
                               const std::string& api_address, const std::string& db_address, std::int64_t now) {
  const std::optional<std::string> hash = hash_of_secret(secret_hex);
  if (!hash) return invalid("'secret' must be the token's secret: 64 hex digits");
  if (!valid_member_address(api_address) || !valid_member_address(db_address)) {
    return invalid("'api_address' and 'db_address' must be IP:port");
  }
  Checked<std::pair<std::string, std::string>> ca = store_.ca_credentials();
  if (!ca) return ca.problem();
  pki::Made<pki::CertificateInfo> info = pki::verify_node_certificate(
      ca->first, certificate_pem, std::chrono::system_clock::time_point(std::chrono::seconds(now)));
  if (!info.ok()) return invalid("the certificate is not one this cluster issued: " + info.error);
  const std::vector<std::string>& certified = info.value->ip_addresses;
  for (const std::string& host : node_certificate_hosts(api_address, db_address)) {
    if (std::find(certified.begin(), certified.end(), host) == certified.end()) {
      return invalid("the certificate was not issued for " + host);
    }
  }
  const std::string name = info.value->node_name;
  const auto serial = static_cast<std::int64_t>(info.value->serial);
  pki::Made<pki::Pin> pin = pki::public_key_pin(certificate_pem);
  if (!pin.ok()) return invalid("the certificate's public key does not read: " + pin.error);
  const std::string key_pin = pki::to_hex(*pin.value);
  // Exactly this box must be in Raft under that id: the join's database step happened.
  db::Outcome<db::wire::Nodes> raft = store_.client().cluster();
  if (!raft) return problem_from(raft.error());
  const bool in_raft = std::any_of(raft->nodes.begin(), raft->nodes.end(), [&](const db::wire::NodeInfo& member) {
    return static_cast<std::int64_t>(member.id) == node_id && member.address == db_address;
  });
  if (!in_raft) return conflict("database node " + std::to_string(node_id) + " at " + db_address + " is not in the cluster");
  // A commit sent again after a lost answer: done already if this node holds the token.
  db::Outcome<db::wire::RowSet> earlier = store_.client().query(
      store_.database(),
      "SELECT count(*) FROM join_tokens t JOIN nodes n ON n.id = t.used_by_node "
      "WHERE t.secret_hash = ? AND n.id = ? AND n.certificate_serial = ?",
      {*hash, node_id, serial});
  if (!earlier) return problem_from(earlier.error());
  if (integer(earlier->rows[0][0]) == 1) return Done{};
  return store_.change({"node:" + name, "node.join", name, api_address}, now,
                       [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
    db::Outcome<db::wire::RowSet> state = transaction.query(std::string(token_state_query), {*hash});
    if (!state) return problem_from(state.error());
    if (std::optional<Problem> refused = token_unusable(*state, now)) return refused;
    db::Outcome<db::wire::Result> used = transaction.exec(
        "UPDATE join_tokens SET used_at = ?, used_by_node = ? WHERE secret_hash = ? AND used_at IS NULL "
        "AND revoked_at IS NULL",
        {now, node_id, *hash});
    if (!used) return problem_from(used.error());
    if (used->rows_affected != 1) return forbidden("this token was used already: another box joined with it");
    db::Outcome<db::wire::Result> inserted = transaction.exec(
        "INSERT INTO nodes (id, name, api_address, db_address, certificate_serial, joined_at, last_seen, "
        "public_key_pin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {node_id, name, api_address, db_address, serial, now, now, key_pin});
    if (!inserted) {
      if (inserted.error().kind == db::ErrorKind::sqlite && !db::refused_busy(inserted.error())) {
        return conflict("node id " + std::to_string(node_id) + ", name '" + name + "' or its addresses are taken: " +
                        inserted.error().message);
      }
      return problem_from(inserted.error());
    }
    return std::nullopt;
  });
}

Checked<Done> JoinDesk::abandon(const std::string& secret_hex, std::int64_t node_id, const std::string& db_address,
                                std::int64_t now) {
  const std::optional<std::string> hash = hash_of_secret(secret_hex);
  if (!hash) return invalid("'secret' must be the token's secret: 64 hex digits");
  db::Client& client = store_.client();
  // Only the holder of a token that can still join may undo a join, and only of a member that
  // has no node row (a committed node is removed with 'cluster remove') at the address it names.
  db::Outcome<db::wire::RowSet> state = client.query(store_.database(), std::string(token_state_query), {*hash});
  if (!state) return problem_from(state.error());
  if (std::optional<Problem> refused = token_unusable(*state, now)) return *refused;
  db::Outcome<db::wire::RowSet> row = client.query(store_.database(), "SELECT count(*) FROM nodes WHERE id = ?", {node_id});
  if (!row) return problem_from(row.error());
  if (integer(row->rows[0][0]) != 0) {
    return conflict("node " + std::to_string(node_id) + " is a committed member: use 'stackctl cluster remove'");
  }
  db::Outcome<db::wire::Nodes> raft = client.cluster();
  if (!raft) return problem_from(raft.error());
  for (const db::wire::NodeInfo& member : raft->nodes) {
    if (static_cast<std::int64_t>(member.id) != node_id) continue;
    if (member.address != db_address) {
      return conflict("database node " + std::to_string(node_id) + " is at " + member.address + ", not " + db_address);
    }
    Checked<Done> removed = remove_db_member(client, member.id);
    if (!removed) return removed.problem();
    store_.record({"join", "node.join-abandoned", std::to_string(node_id), db_address}, now);
  }
  return Done{};
}

}  // namespace stacknode::node
