// The control-plane database as the control plane uses it: reading and changing the cluster's
// nodes, join tokens, users, API tokens, settings and audit log (schema.hpp has the tables).
// Every change is one transaction together with its audit entry (who, what, on what, when), so
// the log never misses a change that happened and never records one that did not.
//
// Each call is blocking (it goes through stacknode-db's wire protocol to the leader); the REST API
// calls it from its worker threads. Errors come back as a Problem a person can read, with a kind
// the API maps to an HTTP status.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "stacknode/db/client.hpp"
#include "stacknode/node/join_token.hpp"

namespace stacknode::node {

// A node that has not written its heartbeat for longer than this is shown offline (issue 5).
inline constexpr std::chrono::seconds offline_after{20};
// How often stacknoded writes its heartbeat: four chances within offline_after.
inline constexpr std::chrono::seconds heartbeat_interval{5};
// Join tokens are for joining now: at most a week.
inline constexpr std::chrono::seconds max_join_token_validity{std::chrono::hours(24 * 7)};
// A login's API token (a session) lasts this long.
inline constexpr std::chrono::seconds session_validity{std::chrono::hours(12)};
// Lists come in pages: at most this many items, this many when the caller does not say.
inline constexpr std::size_t max_page_items = 500;
inline constexpr std::size_t default_page_items = 100;
// Settings are small facts (a syslog address, an NTP server): names and values this long at most.
inline constexpr std::size_t max_setting_name_chars = 64;
inline constexpr std::size_t max_setting_value_chars = 4096;
inline constexpr std::size_t max_description_chars = 200;
inline constexpr std::size_t max_user_name_chars = 32;

enum class ProblemKind : std::uint8_t {
  invalid,      // the request is wrong (400)
  not_found,    // 404
  conflict,     // the state forbids it: exists already, last admin, token used (409)
  forbidden,    // the credential (a join token) does not allow it: unknown, used, revoked, expired (403)
  unavailable,  // the database cannot be reached or has no leader (503)
  failed,       // the database refused or broke in a way that is ours to fix (500)
};

struct Problem {
  Problem(ProblemKind kind_, std::string message_, std::optional<db::Error> database_error_ = std::nullopt)
      : kind(kind_), message(std::move(message_)), database_error(std::move(database_error_)) {}
  ProblemKind kind = ProblemKind::failed;
  std::string message;
  // The database's own error, when that is what this is: ControlStore::change hands it back to
  // the client's transaction(), so that SQLITE_BUSY and not-leader are retried (rule 7).
  std::optional<db::Error> database_error;
};

// A value or the Problem that kept it from being made.
template <typename T>
class Checked {
 public:
  Checked(T value) : state_(std::move(value)) {}          // NOLINT: implicit by design
  Checked(Problem problem) : state_(std::move(problem)) {}  // NOLINT
  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() { return std::get<0>(state_); }
  const T& operator*() const { return std::get<0>(state_); }
  T* operator->() { return &std::get<0>(state_); }
  const T* operator->() const { return &std::get<0>(state_); }
  const Problem& problem() const { return std::get<1>(state_); }

 private:
  std::variant<T, Problem> state_;
};
struct Done {};

// A page of a list ordered by its key: `next` is the cursor of the following page, if any.
struct PageRequest {
  std::string after;  // list keys after this one ("" from the start); for the audit log: ids below it
  std::size_t limit = default_page_items;
};
template <typename Row>
struct Page {
  std::vector<Row> items;
  std::optional<std::string> next;
};

struct ClusterRow {
  std::string id;  // 32 hex characters
  std::string name;
  std::string ca_certificate_pem;
  std::int64_t created_at = 0;
};

struct NodeRow {
  std::int64_t id = 0;  // its dqlite node id
  std::string name;
  std::string api_address;
  std::string db_address;
  std::int64_t certificate_serial = 0;
  std::int64_t joined_at = 0;
  std::optional<std::int64_t> last_seen;
  std::string public_key_pin;  // 64 hex of its certificate's public key; "" for rows before v3
};

struct JoinTokenRow {
  std::string id;
  std::string created_by;
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;
  std::optional<std::int64_t> used_at;
  std::optional<std::int64_t> used_by_node;
  std::optional<std::int64_t> revoked_at;
};

struct UserRow {
  std::string name;
  std::int64_t created_at = 0;
};

struct ApiTokenRow {
  std::string id;
  std::string user;
  std::string description;
  std::int64_t created_at = 0;
  std::optional<std::int64_t> expires_at;
  std::optional<std::int64_t> revoked_at;
};

struct AuditRow {
  std::int64_t id = 0;
  std::int64_t at = 0;
  std::string actor;
  std::string action;
  std::string target;
  std::string detail;
};

struct CreatedJoinToken {
  std::string text;  // snj1....: shown once
  JoinTokenRow row;
};

struct CreatedApiToken {
  std::string text;  // snt1....: shown once
  ApiTokenRow row;
};

// Who an API token belongs to.
struct TokenOwner {
  std::string user;
  std::string token_id;
};

// One audit entry to write with a change.
struct AuditNote {
  std::string actor;
  std::string action;  // "token.create", "user.delete", ...
  std::string target;
  std::string detail;
};

class ControlStore {
 public:
  ControlStore(db::Client& client, std::string database) : client_(client), database_(std::move(database)) {}

  Checked<ClusterRow> cluster();
  // The CA's certificate and private key, for signing a joining node's certificate.
  Checked<std::pair<std::string, std::string>> ca_credentials();

  Checked<std::vector<NodeRow>> nodes();
  // Serial numbers of the certificates of removed nodes, ascending.
  Checked<std::vector<std::int64_t>> revoked_serials();
  Checked<NodeRow> node_named(const std::string& name);
  // The node whose certificate has this serial; not_found if none (never issued, or the node was
  // removed: forget_node deletes the row and records the serial in revoked_certificates together).
  Checked<NodeRow> node_with_serial(std::int64_t serial);
  // This node is alive at `now` (Unix seconds); not audited (it is not a change anyone made).
  Checked<Done> heartbeat(std::int64_t node_id, std::int64_t now);

  // A token for the next box: carries every member's API address and the CA's pin.
  Checked<CreatedJoinToken> create_join_token(const std::string& actor, std::chrono::seconds validity, std::int64_t now);
  Checked<Page<JoinTokenRow>> join_tokens(const PageRequest& page);
  Checked<Done> revoke_join_token(const std::string& actor, const std::string& id, std::int64_t now);

  Checked<Page<UserRow>> users(const PageRequest& page);
  // The argon2id string of `name`, for a login (not_found if there is no such user).
  Checked<std::string> password_hash(const std::string& name);
  Checked<Done> create_user(const std::string& actor, const std::string& name, const std::string& hash, std::int64_t now);
  Checked<Done> set_password(const std::string& actor, const std::string& name, const std::string& hash, std::int64_t now);
  // Refuses to delete the last user (nobody could log in any more); deletes the user's tokens.
  Checked<Done> delete_user(const std::string& actor, const std::string& name, std::int64_t now);

  // expires_at: nullopt for a token without expiry (scripts), a time for a login session.
  Checked<CreatedApiToken> create_api_token(const AuditNote& note, const std::string& user, const std::string& description,
                                            std::optional<std::int64_t> expires_at, std::int64_t now);
  Checked<Page<ApiTokenRow>> api_tokens(const PageRequest& page);
  Checked<Done> revoke_api_token(const std::string& actor, const std::string& id, std::int64_t now);
  // The owner of a presented "snt1." token that is known, not revoked and not expired at `now`;
  // not_found for anything else (the caller answers 401 without saying which).
  Checked<TokenOwner> authenticate(const std::string& token_text, std::int64_t now);

  Checked<std::vector<std::pair<std::string, std::string>>> settings();
  Checked<Done> put_setting(const std::string& actor, const std::string& name, const std::string& value, std::int64_t now);
  Checked<Done> delete_setting(const std::string& actor, const std::string& name, std::int64_t now);

  // Newest first; page.after is an entry id: the page holds older entries.
  Checked<Page<AuditRow>> audit(const PageRequest& page);
  // An entry for a change made outside a transaction of this class (e.g. a dqlite membership change).
  Checked<Done> record(const AuditNote& note, std::int64_t now);

  // Removes `name` from the cluster's records and revokes its certificate (the dqlite member is
  // removed by the caller first). not_found if there is no such node.
  Checked<NodeRow> forget_node(const std::string& actor, const std::string& name, std::int64_t now);
  // A member's new name and/or addresses (`stackctl node update` on that box): each must be free;
  // `csr_pem` (the box's new key) is signed for them with a new serial. A new db address moves
  // the dqlite member first (move_db_member). Then, in one change, the row takes name, addresses,
  // serial and key pin only while it still holds `node`'s serial, the old serial is revoked, and
  // the change is audited (node.update). Returns the new certificate.
  Checked<std::string> reidentify_node(const std::string& actor, const NodeRow& node, const std::string& name,
                                       const std::string& api_address, const std::string& db_address,
                                       const std::string& csr_pem, std::int64_t now);

  db::Client& client() { return client_; }
  const std::string& database() const { return database_; }

  // Runs `body` in one transaction followed by `note`'s audit entry; a Problem from the body
  // rolls everything back.
  using Body = std::function<std::optional<Problem>(db::Client::Transaction&)>;
  Checked<Done> change(const AuditNote& note, std::int64_t now, const Body& body);

 private:
  db::Client& client_;
  std::string database_;
};

// ---- Joining (services/node/README.md, "Design of init and join", steps 4 and 6) ----

// What a joining box sends: the token's secret (hex), its name and addresses, and its CSR.
struct JoinRequest {
  std::string secret_hex;
  std::string name;
  std::string api_address;
  std::string db_address;
  std::string csr_pem;
};

// What a member answers to a prepared join: the dqlite id to join as, the signed certificate, the
// CA, and the members' db addresses to join through.
struct JoinOffer {
  std::int64_t node_id = 0;
  std::string certificate_pem;
  std::string ca_certificate_pem;
  std::vector<std::string> db_members;
  std::string cluster_id;
  std::string cluster_name;
};

// The validity of certificates the cluster signs for nodes.
inline constexpr std::chrono::seconds joined_certificate_validity{std::chrono::hours(24 * 365 * 2)};

class JoinDesk {
 public:
  explicit JoinDesk(ControlStore& store) : store_(store) {}
  // Step 4: checks the token (known, unused, not revoked, not expired at `now`) WITHOUT using it,
  // checks that the name and addresses are free, picks a dqlite id, signs the CSR.
  Checked<JoinOffer> prepare(const JoinRequest& request, std::int64_t now);
  // Step 6: the certificate must be this cluster's and name both addresses, and Raft must hold
  // `node_id` at `db_address`; then, in one transaction, the token is marked used only if it
  // still is unused (exactly one row, else forbidden: another join won), the node row is
  // inserted (name and serial from the certificate), and the join is audited. Sent again after
  // a lost answer, a commit that happened is done (idempotent).
  Checked<Done> commit(const std::string& secret_hex, std::int64_t node_id, const std::string& certificate_pem,
                       const std::string& api_address, const std::string& db_address, std::int64_t now);
  // Undo of a failed join: removes dqlite member `node_id` at `db_address`, if the secret is a
  // token that can still join and no node row holds that id (a committed node is removed with
  // 'cluster remove'). Done also when that member is not in Raft (the join never got there).
  Checked<Done> abandon(const std::string& secret_hex, std::int64_t node_id, const std::string& db_address,
                        std::int64_t now);

 private:
  ControlStore& store_;
};

std::int64_t unix_now();  // the wall clock in Unix seconds, as the tables keep time
std::int64_t unix_now_ms();  // the same in milliseconds (health views, VIP lease rows)
// Whether `node` wrote its heartbeat within offline_after of `now`.
bool online(const NodeRow& node, std::int64_t now);

// A database error as a Problem: no leader / timeout / lost connection / SQLITE_BUSY are
// `unavailable` (try again), the rest `failed`.
Problem problem_from(const db::Error& error);

// Takes dqlite member `id` out of the cluster's configuration. Done also when it was not in it;
// a refusal is checked against the configuration read back (dqlite answers every refusal as a
// SQLite-kind error, "no such node" and "configuration change in progress" alike).
Checked<Done> remove_db_member(db::Client& client, db::wire::NodeId id);
// Puts dqlite member `id` at `address` under the same id: out of the configuration (after handing
// leadership to another voter if it leads), then added back at `address` as a standby. Its data
// stays: once its stacknode-db listens at `address` it catches up (tried with libdqlite 1.11: a
// node removed, restarted at a new address and added back under its id replicates and can lead).
// Done at once when it is there already.
Checked<Done> move_db_member(db::Client& client, db::wire::NodeId id, const std::string& address);

// The page size a caller asked for, within 1..max_page_items; nullopt if it is not a number.
std::optional<std::size_t> page_limit(std::string_view text);

}  // namespace stacknode::node
