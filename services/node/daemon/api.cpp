// stacknoded's REST API: authentication, routing and the JSON of each endpoint; see api.hpp.
#include "api.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <limits>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "stacknode/node/api_target.hpp"
#include "stacknode/node/content.hpp"
#include "stacknode/node/credentials.hpp"
#include "stacknode/node/load_balancing.hpp"
#include "stacknode/node/membership.hpp"
#include "stacknode/node/pki.hpp"

namespace stacknode::node {
namespace {

namespace json = boost::json;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::system_clock;

constexpr std::string_view bearer_prefix = "Bearer ";

struct Answer {
  unsigned status = 200;
  json::value body;
  std::vector<std::pair<bhttp::field, std::string>> headers;
};

Answer error_answer(unsigned status, std::string_view kind, std::string message) {
  return {status, json::object{{"error", json::object{{"kind", kind}, {"message", std::move(message)}}}}, {}};
}

Answer problem_answer(const Problem& problem) {
  switch (problem.kind) {
    case ProblemKind::invalid: return error_answer(400, "invalid", problem.message);
    case ProblemKind::not_found: return error_answer(404, "not_found", problem.message);
    case ProblemKind::conflict: return error_answer(409, "conflict", problem.message);
    case ProblemKind::forbidden: return error_answer(403, "forbidden", problem.message);
    case ProblemKind::unavailable: return error_answer(503, "unavailable", problem.message);
    case ProblemKind::failed: break;
  }
  return error_answer(500, "failed", problem.message);
}

// `kind` tells a removed node ("not_a_member": its certificate is revoked or no member holds it)
// from any other failed authentication ("unauthenticated"); `stackctl node reset` relies on it.
Answer unauthenticated(std::string message, std::string_view kind = "unauthenticated") {
  Answer answer = error_answer(401, kind, std::move(message));
  answer.headers.emplace_back(bhttp::field::www_authenticate, "Bearer");
  return answer;
}

json::value optional_json(const std::optional<std::int64_t>& value) {
  if (value) return *value;
  return nullptr;
}

template <typename Row, typename Convert>
json::object page_json(const Page<Row>& page, Convert convert) {
  json::array items;
  for (const Row& row : page.items) items.push_back(convert(row));
  json::value next = nullptr;
  if (page.next) next = *page.next;
  return {{"items", std::move(items)}, {"next", std::move(next)}};
}

json::object join_token_json(const JoinTokenRow& row) {
  const std::int64_t now = unix_now();
  std::string_view state = "usable";
  if (row.used_at) state = "used";
  else if (row.revoked_at) state = "revoked";
  else if (row.expires_at <= now) state = "expired";
  return {{"id", row.id},
          {"state", state},
          {"created_by", row.created_by},
          {"created_at", row.created_at},
          {"expires_at", row.expires_at},
          {"used_at", optional_json(row.used_at)},
          {"used_by_node", optional_json(row.used_by_node)},
          {"revoked_at", optional_json(row.revoked_at)}};
}

json::object api_token_json(const ApiTokenRow& row) {
  return {{"id", row.id},
          {"user", row.user},
          {"description", row.description},
          {"created_at", row.created_at},
          {"expires_at", optional_json(row.expires_at)},
          {"revoked_at", optional_json(row.revoked_at)}};
}

// The request as the routes see it.
struct Call {
  bhttp::verb method = bhttp::verb::get;
  std::vector<std::string> path;  // the segments after /api/v1/
  std::map<std::string, std::string> query;
  std::string body;
  std::string remote;
  std::string principal;   // "admin", "node:sn2"; empty before authentication
  std::chrono::steady_clock::time_point admitted;  // a login's place in the LoginLimiter
  std::string token_id;    // the API token the principal used, if any
  std::optional<NodeRow> node;  // the member row a node certificate authenticated as (else a user)
};

// The request body as a JSON object (an empty body is an empty object); an Answer if it is not.
std::variant<json::object, Answer> body_object(const std::string& body) {
  if (body.empty()) return json::object{};
  boost::system::error_code error;
  json::value value = json::parse(body, error);
  if (error) return error_answer(400, "invalid", "the body is not JSON: " + error.message());
  if (!value.is_object()) return error_answer(400, "invalid", "the body must be a JSON object");
  return std::move(value.as_object());
}

// A string member, or nullopt if absent; an Answer if it has another type.
std::variant<std::optional<std::string>, Answer> string_member(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return error_answer(400, "invalid", "'" + std::string(key) + "' must be a string");
  return std::optional<std::string>(std::string(value->as_string()));
}

// An integer member within [low, high], or nullopt if absent; an Answer if it is not one.
std::variant<std::optional<std::int64_t>, Answer> integer_member(const json::object& object, std::string_view key,
                                                                 std::int64_t low, std::int64_t high) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) return std::optional<std::int64_t>();
  if (!value->is_int64() || value->as_int64() < low || value->as_int64() > high) {
    return error_answer(400, "invalid",
                        "'" + std::string(key) + "' must be an integer from " + std::to_string(low) + " to " +
                            std::to_string(high));
  }
  return std::optional<std::int64_t>(value->as_int64());
}

// An Answer naming the first member of `object` that is not one of `known`.
std::optional<Answer> unknown_member(const json::object& object, std::initializer_list<std::string_view> known) {
  for (const auto& member : object) {
    if (std::find(known.begin(), known.end(), member.key()) == known.end()) {
      return error_answer(400, "invalid", "unknown member '" + std::string(member.key()) + "'");
    }
  }
  return std::nullopt;
}

std::variant<PageRequest, Answer> page_request(const Call& call) {
  PageRequest page;
  const auto limit = call.query.find("limit");
  const std::optional<std::size_t> items = page_limit(limit == call.query.end() ? "" : limit->second);
  if (!items) return error_answer(400, "invalid", "limit must be a number from 1 to " + std::to_string(max_page_items));
  page.limit = *items;
  if (const auto after = call.query.find("after"); after != call.query.end()) page.after = after->second;
  return page;
}

// The route table's shape: method, the path with "*" for one free segment, and what to do.
using Route = std::function<Answer(Call&)>;

}  // namespace

std::chrono::seconds LoginLimiter::admit(const std::string& address, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (!failures_.contains(address) && failures_.size() >= login_tracked_addresses) {
    // Forget the address whose last attempt is oldest.
    auto oldest = failures_.begin();
    for (auto entry = failures_.begin(); entry != failures_.end(); ++entry) {
      if (entry->second.empty() || (!oldest->second.empty() && entry->second.back() < oldest->second.back())) {
        oldest = entry;
      }
    }
    failures_.erase(oldest);
  }
  std::deque<Clock::time_point>& failures = failures_[address];
  forget_old(failures, now);
  if (failures.size() >= login_failures_allowed) {
    return std::chrono::ceil<std::chrono::seconds>(failures.front() + login_window - now);
  }
  failures.push_back(now);  // counted as a failure until it succeeds
  return std::chrono::seconds(0);
}

void LoginLimiter::release(const std::string& address, Clock::time_point admitted) {
  std::lock_guard lock(mutex_);
  const auto found = failures_.find(address);
  if (found == failures_.end()) return;
  std::deque<Clock::time_point>& failures = found->second;
  if (const auto entry = std::find(failures.begin(), failures.end(), admitted); entry != failures.end()) {
    failures.erase(entry);
  }
}

void LoginLimiter::forget_old(std::deque<Clock::time_point>& failures, Clock::time_point now) const {
  while (!failures.empty() && failures.front() + login_window <= now) failures.pop_front();
}

namespace {

// The argon2id string a login is checked against when the user does not exist (made once).
const std::string& unknown_user_hash() {
  static const std::string hash = hash_password("no user has this password!").value_or("");
  return hash;
}

// Everything that needs the store: runs on a worker.
class Routes {
 public:
  Routes(ControlStore& store, LoginLimiter& limiter, const Self& self) : store_(store), limiter_(limiter), self_(self) {}

  Answer login(Call& call) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    const auto user = string_member(body, "user");
    const auto password = string_member(body, "password");
    if (const Answer* bad = std::get_if<Answer>(&user)) return *bad;
    if (const Answer* bad = std::get_if<Answer>(&password)) return *bad;
    const auto& user_name = std::get<0>(user);
    const auto& password_text = std::get<0>(password);
    if (!user_name || !password_text) return error_answer(400, "invalid", "a login needs 'user' and 'password'");
    Checked<std::string> stored = store_.password_hash(*user_name);
    if (!stored && stored.problem().kind != ProblemKind::not_found) {
      limiter_.release(call.remote, call.admitted);  // not a guess: the database did not answer
      return problem_answer(stored.problem());
    }
    // An unknown user costs the same argon2id check as a wrong password: the time of the answer
    // does not tell which user names exist.
    const bool verified = verify_password(*password_text, stored ? *stored : unknown_user_hash());
    if (!stored || !verified) return unauthenticated("wrong user name or password");  // the attempt stays counted
    limiter_.release(call.remote, call.admitted);
    const std::int64_t now = unix_now();
    Checked<CreatedApiToken> token = store_.create_api_token({*user_name, "user.login", "", "from " + call.remote},
                                                             *user_name, "login from " + call.remote,
                                                             now + session_validity.count(), now);
    if (!token) return problem_answer(token.problem());
    return {201,
            json::object{{"token", token->text}, {"id", token->row.id}, {"user", *user_name},
                         {"expires_at", optional_json(token->row.expires_at)}},
            {}};
  }

  // Join steps 4 and 6 and the undo: the token's secret is the credential (the joining box has
  // no other yet).
  Answer join(Call& call) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    std::map<std::string, std::string> fields;
    for (const char* key : {"secret", "name", "api_address", "db_address", "csr", "certificate"}) {
      const auto value = string_member(body, key);
      if (const Answer* bad = std::get_if<Answer>(&value)) return *bad;
      if (std::get<0>(value)) fields[key] = *std::get<0>(value);
    }
    std::int64_t node_id = 0;
    if (const json::value* id = body.if_contains("node_id")) {
      if (!id->is_int64() || id->as_int64() < 1) return error_answer(400, "invalid", "'node_id' must be a positive integer");
      node_id = id->as_int64();
    }
    const auto need = [&](std::initializer_list<const char*> keys) -> std::optional<Answer> {
      for (const char* key : keys) {
        if (!fields.contains(key)) return error_answer(400, "invalid", std::string("'") + key + "' is required");
      }
      return std::nullopt;
    };
    const std::string& step = call.path[1];
    JoinDesk desk(store_);
    const std::int64_t now = unix_now();
    if (step == "prepare") {
      if (auto missing = need({"secret", "name", "api_address", "db_address", "csr"})) return *missing;
      Checked<JoinOffer> offer =
          desk.prepare({fields["secret"], fields["name"], fields["api_address"], fields["db_address"], fields["csr"]}, now);
      if (!offer) return problem_answer(offer.problem());
      json::array members;
      for (const std::string& member : offer->db_members) members.push_back(json::value(member));
      return {200,
              json::object{{"node_id", offer->node_id},
                           {"certificate", offer->certificate_pem},
                           {"ca_certificate", offer->ca_certificate_pem},
                           {"db_members", std::move(members)},
                           {"cluster_id", offer->cluster_id},
                           {"cluster_name", offer->cluster_name}},
              {}};
    }
    if (node_id == 0) return error_answer(400, "invalid", "'node_id' is required");
    if (step == "commit") {
      if (auto missing = need({"secret", "certificate", "api_address", "db_address"})) return *missing;
      return done(desk.commit(fields["secret"], node_id, fields["certificate"], fields["api_address"],
                              fields["db_address"], now));
    }
    if (auto missing = need({"secret", "db_address"})) return *missing;
    return done(desk.abandon(fields["secret"], node_id, fields["db_address"], now));
  }

  // Fills call.principal from the bearer token or the node certificate; an Answer if neither.
  std::optional<Answer> authenticate(Call& call, const std::string& bearer, const std::string& peer_pem) {
    const std::int64_t now = unix_now();
    if (!peer_pem.empty()) {
      pki::Made<pki::CertificateInfo> info = pki::verify_node_certificate(self_.ca_certificate_pem, peer_pem, Clock::now());
      if (!info.ok()) return unauthenticated("client certificate refused: " + info.error);
      const auto serial = static_cast<std::int64_t>(info.value->serial);
      // A removed node's row goes in the transaction that revokes its serial (forget_node), so
      // "no node holds this serial" covers revoked certificates: one query per request.
      Checked<NodeRow> node = store_.node_with_serial(serial);
      if (!node) {
        if (node.problem().kind == ProblemKind::not_found) return unauthenticated(node.problem().message, "not_a_member");
        return problem_answer(node.problem());
      }
      if (node->name != info.value->node_name) {
        return unauthenticated("client certificate names '" + info.value->node_name + "', not the node holding it");
      }
      // Any member holds the CA key and could sign a certificate with this serial and name; only
      // the node itself holds the key pair it joined with.
      pki::Made<pki::Pin> presented = pki::public_key_pin(peer_pem);
      if (!node->public_key_pin.empty() && (!presented.ok() || pki::to_hex(*presented.value) != node->public_key_pin)) {
        return unauthenticated("client certificate for " + node->name + " has another key than the node joined with");
      }
      call.principal = "node:" + node->name;
      call.node = *node;
      return std::nullopt;
    }
    if (bearer.empty()) {
      return unauthenticated("authentication required: log in (POST /api/v1/login) and send "
                             "'Authorization: Bearer <token>', or present this cluster's node certificate");
    }
    Checked<TokenOwner> owner = store_.authenticate(bearer, now);
    if (!owner) {
      if (owner.problem().kind == ProblemKind::not_found) return unauthenticated(owner.problem().message);
      return problem_answer(owner.problem());
    }
    call.principal = owner->user;
    call.token_id = owner->token_id;
    return std::nullopt;
  }

  Answer dispatch(Call& call) {
    const std::vector<std::string>& path = call.path;
    const bhttp::verb method = call.method;
    const auto is = [&](bhttp::verb wanted, std::initializer_list<std::string_view> shape) {
      if (method != wanted || path.size() != shape.size()) return false;
      std::size_t index = 0;
      for (const std::string_view part : shape) {
        if (part != "*" && part != path[index]) return false;
        ++index;
      }
      return true;
    };
    using bhttp::verb;
    if (is(verb::get, {"whoami"})) {
      return {200, json::object{{"principal", call.principal}, {"kind", call.node ? "node" : "user"}}, {}};
    }
    if (is(verb::post, {"logout"})) return logout(call);
    if (is(verb::get, {"cluster"})) return cluster();
    if (is(verb::get, {"nodes"})) return nodes();
    if (is(verb::delete_, {"nodes", "*"})) return remove_node(call, path[1]);
    if (is(verb::post, {"nodes", "*", "certificate"})) return reidentify_node(call, path[1]);
    if (is(verb::get, {"join-tokens"})) {
      return paged<JoinTokenRow>(call, [&](const PageRequest& page) { return store_.join_tokens(page); }, join_token_json);
    }
    if (is(verb::post, {"join-tokens"})) return create_join_token(call);
    if (is(verb::delete_, {"join-tokens", "*"})) return done(store_.revoke_join_token(call.principal, path[1], unix_now()));
    if (is(verb::get, {"users"})) {
      return paged<UserRow>(call, [&](const PageRequest& page) { return store_.users(page); }, user_json);
    }
    if (is(verb::post, {"users"})) return create_user(call);
    if (is(verb::delete_, {"users", "*"})) return done(store_.delete_user(call.principal, path[1], unix_now()));
    if (is(verb::put, {"users", "*", "password"})) return set_password(call, path[1]);
    if (is(verb::get, {"api-tokens"})) {
      return paged<ApiTokenRow>(call, [&](const PageRequest& page) { return store_.api_tokens(page); }, api_token_json);
    }
    if (is(verb::post, {"api-tokens"})) return create_api_token(call);
    if (is(verb::delete_, {"api-tokens", "*"})) return done(store_.revoke_api_token(call.principal, path[1], unix_now()));
    if (is(verb::get, {"settings"})) return settings();
    if (is(verb::put, {"settings", "*"})) return put_setting(call, path[1]);
    if (is(verb::delete_, {"settings", "*"})) return done(store_.delete_setting(call.principal, path[1], unix_now()));
    if (is(verb::get, {"pools"})) return pools();
    if (is(verb::post, {"pools"})) return create_pool(call);
    if (is(verb::delete_, {"pools", "*"})) return done(LbStore(store_).delete_pool(call.principal, path[1], unix_now()));
    if (is(verb::put, {"pools", "*", "members", "*"})) return set_member(call, path[1], path[3]);
    if (is(verb::get, {"vips"})) return vips();
    if (is(verb::post, {"vips"})) return create_vip(call);
    if (is(verb::delete_, {"vips", "*"})) return done(LbStore(store_).delete_vip(call.principal, path[1], unix_now()));
    if (is(verb::get, {"content"})) return content();
    if (is(verb::post, {"content", "*", "uploads"})) return begin_upload(call, path[1]);
    if (is(verb::put, {"content", "uploads", "*", "chunks", "*"})) return put_chunk(call, path[2], path[4]);
    if (is(verb::post, {"content", "uploads", "*", "commit"})) return commit_upload(call, path[2]);
    if (is(verb::post, {"content", "*", "rollback"})) return rollback_content(call, path[1]);
    if (is(verb::get, {"audit"})) {
      return paged<AuditRow>(call, [&](const PageRequest& page) { return store_.audit(page); }, audit_json);
    }
    return error_answer(404, "not_found", "no such endpoint: see services/node/README.md for the API");
  }

 private:
  static Answer done(const Checked<Done>& result) {
    if (!result) return problem_answer(result.problem());
    return {200, json::object{{"ok", true}}, {}};
  }

  Answer logout(Call& call) {
    if (call.token_id.empty()) return error_answer(400, "invalid", "logout ends an API token session; none was used");
    return done(store_.revoke_api_token(call.principal, call.token_id, unix_now()));
  }

  Answer cluster() {
    Checked<ClusterRow> row = store_.cluster();
    if (!row) return problem_answer(row.problem());
    Checked<std::vector<NodeRow>> members = store_.nodes();
    if (!members) return problem_answer(members.problem());
    pki::Made<pki::Pin> pin = pki::public_key_pin(row->ca_certificate_pem);
    json::object out{{"id", row->id},
                     {"name", row->name},
                     {"created_at", row->created_at},
                     {"ca_pin", pin.ok() ? pki::to_hex(*pin.value) : std::string()},
                     {"served_by", self_.name}};
    json::array listed = node_list(*members);
    std::size_t online = 0, voters = 0;
    json::value leader = nullptr;
    for (const json::value& node : listed) {
      const json::object& entry = node.as_object();
      if (entry.at("online").as_bool()) ++online;
      if (entry.at("role").as_string() == "voter") ++voters;
      if (entry.at("leader").as_bool()) leader = entry.at("name");
    }
    out["leader"] = leader;
    out["summary"] = json::object{{"nodes", members->size()}, {"online", online}, {"voters", voters}};
    out["nodes"] = std::move(listed);
    return {200, std::move(out), {}};
  }

  // The node rows joined with dqlite's view of roles and the leader.
  json::array node_list(const std::vector<NodeRow>& members) {
    db::Outcome<db::wire::Nodes> raft = store_.client().cluster();
    const db::wire::NodeId leader = store_.client().leader().id;
    const std::int64_t now = unix_now();
    json::array items;
    for (const NodeRow& node : members) {
      std::string_view role = raft ? "none" : "unknown";
      if (raft) {
        for (const db::wire::NodeInfo& info : raft->nodes) {
          if (static_cast<std::int64_t>(info.id) == node.id) role = role_name(info.role);
        }
      }
      items.push_back(json::object{{"name", node.name},
                                   {"id", node.id},
                                   {"api_address", node.api_address},
                                   {"db_address", node.db_address},
                                   {"role", role},
                                   {"leader", static_cast<std::int64_t>(leader) == node.id},
                                   {"online", online(node, now)},
                                   {"last_seen", optional_json(node.last_seen)},
                                   {"joined_at", node.joined_at},
                                   {"certificate_serial", node.certificate_serial}});
    }
    return items;
  }

  Answer nodes() {
    Checked<std::vector<NodeRow>> members = store_.nodes();
    if (!members) return problem_answer(members.problem());
    return {200, json::object{{"items", node_list(*members)}, {"next", nullptr}}, {}};
  }

  Answer remove_node(Call& call, const std::string& name) {
    if (name == self_.name) {
      return error_answer(409, "conflict", "a node does not remove itself: run 'stackctl cluster remove " + name +
                                               "' on another member");
    }
    Checked<NodeRow> node = store_.node_named(name);
    if (!node) return problem_answer(node.problem());
    // Out of Raft first, so that a node that is removed cannot vote; a node that was already
    // gone from Raft (an earlier attempt) is fine.
    Checked<Done> removed = remove_db_member(store_.client(), static_cast<db::wire::NodeId>(node->id));
    if (!removed) return problem_answer(removed.problem());
    Checked<NodeRow> forgotten = store_.forget_node(call.principal, name, unix_now());
    if (!forgotten) return problem_answer(forgotten.problem());
    return {200,
            json::object{{"removed", name},
                         {"revoked_certificate", forgotten->certificate_serial},
                         {"next", "on that box, 'stackctl node reset' before it joins again"}},
            {}};
  }

  // A paged list: the page asked for in the query, `fetch` from the store, each row as JSON.
  template <typename Row, typename Fetch, typename Convert>
  Answer paged(const Call& call, Fetch fetch, Convert convert) {
    const auto page = page_request(call);
    if (const Answer* bad = std::get_if<Answer>(&page)) return *bad;
    Checked<Page<Row>> rows = fetch(std::get<PageRequest>(page));
    if (!rows) return problem_answer(rows.problem());
    return {200, page_json(*rows, convert), {}};
  }

  static json::object user_json(const UserRow& row) {
    return {{"name", row.name}, {"created_at", row.created_at}};
  }

  static json::object audit_json(const AuditRow& row) {
    return {{"id", row.id},         {"at", row.at},         {"actor", row.actor},
            {"action", row.action}, {"target", row.target}, {"detail", row.detail}};
  }

  Answer create_join_token(Call& call) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    std::chrono::seconds validity = std::chrono::seconds(3600);
    if (const json::value* asked = body.if_contains("validity_seconds")) {
      if (!asked->is_int64() || asked->as_int64() < 1 || asked->as_int64() > max_join_token_validity.count()) {
        return error_answer(400, "invalid", "validity_seconds must be 1 to " +
                                                std::to_string(max_join_token_validity.count()));
      }
      validity = std::chrono::seconds(asked->as_int64());
    }
    Checked<CreatedJoinToken> token = store_.create_join_token(call.principal, validity, unix_now());
    if (!token) return problem_answer(token.problem());
    json::object out = join_token_json(token->row);
    out["token"] = token->text;
    return {201, std::move(out), {}};
  }

  // The argon2id string of a new password from the body's "password"; an Answer if unusable.
  std::variant<std::string, Answer> new_password_hash(const json::object& body) {
    const auto password = string_member(body, "password");
    if (const Answer* bad = std::get_if<Answer>(&password)) return *bad;
    const auto& text = std::get<0>(password);
    if (!text) return error_answer(400, "invalid", "'password' is required");
    if (const std::string problem = password_problem(*text); !problem.empty()) {
      return error_answer(400, "invalid", problem);
    }
    const std::optional<std::string> hash = hash_password(*text);
    if (!hash) return error_answer(500, "failed", "cannot hash the password (out of memory?)");
    return *hash;
  }

  Answer create_user(Call& call) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    const auto name = string_member(body, "name");
    if (const Answer* bad = std::get_if<Answer>(&name)) return *bad;
    if (!std::get<0>(name)) return error_answer(400, "invalid", "'name' is required");
    const auto hash = new_password_hash(body);
    if (const Answer* bad = std::get_if<Answer>(&hash)) return *bad;
    Checked<Done> created = store_.create_user(call.principal, *std::get<0>(name), std::get<std::string>(hash), unix_now());
    if (!created) return problem_answer(created.problem());
    return {201, json::object{{"name", *std::get<0>(name)}}, {}};
  }

  Answer set_password(Call& call, const std::string& name) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const auto hash = new_password_hash(std::get<json::object>(parsed));
    if (const Answer* bad = std::get_if<Answer>(&hash)) return *bad;
    return done(store_.set_password(call.principal, name, std::get<std::string>(hash), unix_now()));
  }

  Answer create_api_token(Call& call) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    const auto user = string_member(body, "user");
    const auto description = string_member(body, "description");
    if (const Answer* bad = std::get_if<Answer>(&user)) return *bad;
    if (const Answer* bad = std::get_if<Answer>(&description)) return *bad;
    std::string owner = std::get<0>(user).value_or(call.node ? "" : call.principal);
    if (owner.empty()) return error_answer(400, "invalid", "'user' is required: a node holds no API tokens of its own");
    const std::int64_t now = unix_now();
    Checked<CreatedApiToken> token = store_.create_api_token({call.principal, "api-token.create", "", "for " + owner},
                                                             owner, std::get<0>(description).value_or(""), std::nullopt, now);
    if (!token) return problem_answer(token.problem());
    json::object out = api_token_json(token->row);
    out["token"] = token->text;
    return {201, std::move(out), {}};
  }

  Answer settings() {
    Checked<std::vector<std::pair<std::string, std::string>>> rows = store_.settings();
    if (!rows) return problem_answer(rows.problem());
    json::object items;
    for (const auto& [name, value] : *rows) items[name] = value;
    return {200, json::object{{"items", std::move(items)}}, {}};
  }

  // A node's new certificate, for a new name and/or API address or just a renewal: asked by the
  // node itself (its current certificate), with a CSR of its new key.
  Answer reidentify_node(Call& call, const std::string& name) {
    if (!call.node || call.node->name != name) {
      return error_answer(403, "forbidden", "only node '" + name + "' itself, with its certificate, renews it or "
                                            "changes its name and address: run 'stackctl node update' on that box");
    }
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    const auto csr = string_member(body, "csr");
    const auto new_name = string_member(body, "name");
    const auto api_address = string_member(body, "api_address");
    const auto db_address = string_member(body, "db_address");
    for (const auto* field : {&csr, &new_name, &api_address, &db_address}) {
      if (const Answer* bad = std::get_if<Answer>(field)) return *bad;
    }
    if (!std::get<0>(csr)) return error_answer(400, "invalid", "'csr' is required (a PEM certificate request)");
    // The row as authenticated: its serial guards the change (two updates at once: one wins).
    const std::optional<NodeRow>& node = call.node;
    const std::string next_name = std::get<0>(new_name).value_or(node->name);
    const std::string next_api = std::get<0>(api_address).value_or(node->api_address);
    const std::string next_db = std::get<0>(db_address).value_or(node->db_address);
    Checked<std::string> certificate =
        store_.reidentify_node(call.principal, *node, next_name, next_api, next_db, *std::get<0>(csr), unix_now());
    if (!certificate) return problem_answer(certificate.problem());
    return {200, json::object{{"name", next_name}, {"api_address", next_api}, {"db_address", next_db},
                              {"certificate", *certificate}, {"ca_certificate", self_.ca_certificate_pem}},
            {}};
  }

  // ---- Load balancing: pools and VIPs ----

  Answer pools() {
    LbStore lb(store_);
    Checked<LbState> state = lb.state();
    if (!state) return problem_answer(state.problem());
    json::array items;
    for (const PoolRow& pool : state->pools) {
      json::array members;
      for (const NodeRow& node : state->nodes) {
        const std::int64_t now_ms = unix_now_ms();
        json::object member{{"node", node.name},
                            {"address", service_address(node).value_or("")},
                            {"weight", 1},
                            {"state", "active"},
                            {"online", online(node, unix_now())},
                            {"healthy", member_healthy(*state, pool, node.id, now_ms)}};
        json::object views;  // each checker's verdict, by checker name
        for (const HealthView& view : state->health) {
          if (view.pool != pool.name || view.node_id != node.id) continue;
          for (const NodeRow& checker : state->nodes) {
            if (checker.id == view.checker_id) views[checker.name] = view.up ? "up" : "down";
          }
        }
        member["views"] = std::move(views);
        for (const PoolMemberRow& row : state->members) {
          if (row.pool != pool.name || row.node_id != node.id) continue;
          member["weight"] = row.weight;
          member["state"] = std::string(to_string(row.state));
        }
        members.push_back(std::move(member));
      }
      items.push_back(json::object{{"name", pool.name},
                                   {"port", pool.port},
                                   {"health_path", pool.health_path},
                                   {"health_interval_ms", pool.health_interval_ms},
                                   {"health_timeout_ms", pool.health_timeout_ms},
                                   {"rise", pool.rise},
                                   {"fall", pool.fall},
                                   {"created_at", pool.created_at},
                                   {"members", std::move(members)}});
    }
    return {200, json::object{{"items", std::move(items)}}, {}};
  }

  Answer create_pool(Call& call) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    if (auto bad = unknown_member(
            body, {"name", "port", "health_path", "health_interval_ms", "health_timeout_ms", "rise", "fall"})) {
      return *bad;
    }
    const auto name = string_member(body, "name");
    const auto port = integer_member(body, "port", 1, 65535);
    const auto health_path = string_member(body, "health_path");
    const auto interval = integer_member(body, "health_interval_ms", min_health_interval_ms, max_health_interval_ms);
    const auto timeout = integer_member(body, "health_timeout_ms", 1, max_health_interval_ms);
    const auto rise = integer_member(body, "rise", 1, max_rise_fall);
    const auto fall = integer_member(body, "fall", 1, max_rise_fall);
    if (const Answer* bad = std::get_if<Answer>(&name)) return *bad;
    if (const Answer* bad = std::get_if<Answer>(&health_path)) return *bad;
    for (const auto* field : {&port, &interval, &timeout, &rise, &fall}) {
      if (const Answer* bad = std::get_if<Answer>(field)) return *bad;
    }
    if (!std::get<0>(name)) return error_answer(400, "invalid", "'name' is required");
    PoolRow pool;
    pool.name = *std::get<0>(name);
    pool.port = static_cast<std::uint16_t>(std::get<0>(port).value_or(default_pool_port));
    pool.health_path = std::get<0>(health_path).value_or(std::string(default_health_path));
    pool.health_interval_ms = static_cast<std::uint32_t>(std::get<0>(interval).value_or(default_health_interval_ms));
    pool.health_timeout_ms = static_cast<std::uint32_t>(
        std::get<0>(timeout).value_or(std::min<std::int64_t>(default_health_timeout_ms, pool.health_interval_ms)));
    pool.rise = static_cast<std::uint32_t>(std::get<0>(rise).value_or(default_rise));
    pool.fall = static_cast<std::uint32_t>(std::get<0>(fall).value_or(default_fall));
    Checked<Done> created = LbStore(store_).create_pool(call.principal, pool, unix_now());
    if (!created) return problem_answer(created.problem());
    return {201, json::object{{"name", pool.name}, {"port", pool.port}, {"health_path", pool.health_path}}, {}};
  }

  Answer set_member(Call& call, const std::string& pool, const std::string& node) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    if (auto bad = unknown_member(body, {"weight", "state"})) return *bad;
    const auto weight = integer_member(body, "weight", 1, max_member_weight);
    const auto state_text = string_member(body, "state");
    if (const Answer* bad = std::get_if<Answer>(&weight)) return *bad;
    if (const Answer* bad = std::get_if<Answer>(&state_text)) return *bad;
    std::optional<MemberState> state;
    if (std::get<0>(state_text)) {
      state = parse_member_state(*std::get<0>(state_text));
      if (!state) return error_answer(400, "invalid", "'state' is active, draining or maintenance");
    }
    std::optional<std::uint32_t> weight_value;
    if (std::get<0>(weight)) weight_value = static_cast<std::uint32_t>(*std::get<0>(weight));
    if (!state && !weight_value) return error_answer(400, "invalid", "give 'weight', 'state' or both");
    return done(LbStore(store_).set_member(call.principal, pool, node, weight_value, state, unix_now()));
  }

  static json::object content_version_json(const ContentVersionRow& version) {
    return json::object{{"site", version.site},       {"version", version.version},
                        {"sha256", version.sha256},   {"bytes", version.bytes},
                        {"files", version.files},     {"created_at", version.created_at},
                        {"created_by", version.created_by}};
  }

  // Every site: the version the cluster serves, the versions kept, and what each node serves.
  Answer content() {
    Checked<ContentState> state = ContentStore(store_).state();
    if (!state) return problem_answer(state.problem());
    Checked<std::vector<NodeRow>> nodes = store_.nodes();
    if (!nodes) return problem_answer(nodes.problem());
    json::array sites;
    for (const ContentSiteRow& site : state->sites) {
      json::array versions;
      for (const ContentVersionRow& version : state->versions) {
        if (version.site == site.site) versions.push_back(content_version_json(version));
      }
      json::array serving;
      for (const ContentNodeRow& row : state->nodes) {
        if (row.site != site.site) continue;
        for (const NodeRow& node : *nodes) {
          if (node.id == row.node_id) {
            serving.push_back(json::object{{"node", node.name}, {"version", row.version}, {"at", row.at}});
          }
        }
      }
      sites.push_back(json::object{{"site", site.site},
                                   {"current", site.current},
                                   {"versions", std::move(versions)},
                                   {"nodes", std::move(serving)}});
    }
    return {200, json::object{{"sites", std::move(sites)}}, {}};
  }

  Answer begin_upload(Call& call, const std::string& site) {
    Checked<std::string> upload = ContentStore(store_).begin_upload(call.principal, site, unix_now());
    if (!upload) return problem_answer(upload.problem());
    return {201,
            json::object{{"upload", *upload},
                         {"site", site},
                         {"chunk_bytes", content_chunk_bytes},
                         {"max_bytes", max_bundle_bytes}},
            {}};
  }

  // The body is the chunk's bytes as they are (application/octet-stream), not JSON.
  Answer put_chunk(Call& call, const std::string& upload, const std::string& sequence_text) {
    std::int64_t sequence = -1;
    const char* end = sequence_text.data() + sequence_text.size();
    if (const auto parsed = std::from_chars(sequence_text.data(), end, sequence);
        parsed.ec != std::errc() || parsed.ptr != end) {
      return error_answer(400, "invalid", "a chunk's number is a whole number, not '" + sequence_text + "'");
    }
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(call.body.data());
    return done(ContentStore(store_).put_chunk(upload, sequence, std::span(bytes, call.body.size())));
  }

  Answer commit_upload(Call& call, const std::string& upload) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    if (auto bad = unknown_member(body, {"sha256"})) return *bad;
    const auto sha256 = string_member(body, "sha256");
    if (const Answer* bad = std::get_if<Answer>(&sha256)) return *bad;
    if (!std::get<0>(sha256)) return error_answer(400, "invalid", "'sha256' (of the whole bundle) is required");
    Checked<CommittedContent> committed =
        ContentStore(store_).commit_upload(call.principal, upload, *std::get<0>(sha256), unix_now());
    if (!committed) return problem_answer(committed.problem());
    json::object answer = content_version_json(committed->version);
    answer["unchanged"] = committed->unchanged;
    return {200, std::move(answer), {}};
  }

  Answer rollback_content(Call& call, const std::string& site) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    if (auto bad = unknown_member(body, {"version"})) return *bad;
    const auto version = integer_member(body, "version", 1, std::numeric_limits<std::int64_t>::max());
    if (const Answer* bad = std::get_if<Answer>(&version)) return *bad;
    Checked<ContentVersionRow> chosen =
        ContentStore(store_).rollback(call.principal, site, std::get<0>(version), unix_now());
    if (!chosen) return problem_answer(chosen.problem());
    return {200, content_version_json(*chosen), {}};
  }

  Answer vips() {
    LbStore lb(store_);
    Checked<LbState> state = lb.state();
    if (!state) return problem_answer(state.problem());
    const std::int64_t now_ms = unix_now_ms();
    json::array items;
    for (const VipRow& vip : state->vips) {
      json::value owner = nullptr;
      for (const VipLease& lease : state->leases) {
        if (lease.address != vip.address || lease.expires_at_ms < now_ms) continue;
        for (const NodeRow& node : state->nodes) {
          if (node.id == lease.node_id) owner = json::string(node.name);
        }
      }
      items.push_back(json::object{{"name", vip.name},
                                   {"address", vip.address},
                                   {"port", vip.port},
                                   {"protocol", vip.protocol},
                                   {"pool", vip.pool},
                                   {"mode", vip.mode},
                                   {"created_at", vip.created_at},
                                   {"owner", std::move(owner)}});
    }
    return {200, json::object{{"items", std::move(items)}}, {}};
  }

  Answer create_vip(Call& call) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const json::object& body = std::get<json::object>(parsed);
    if (auto bad = unknown_member(body, {"name", "address", "port", "protocol", "pool", "mode"})) return *bad;
    const auto name = string_member(body, "name");
    const auto address = string_member(body, "address");
    const auto port = integer_member(body, "port", 1, 65535);
    const auto protocol = string_member(body, "protocol");
    const auto pool = string_member(body, "pool");
    const auto mode = string_member(body, "mode");
    for (const auto* field : {&name, &address, &protocol, &pool, &mode}) {
      if (const Answer* bad = std::get_if<Answer>(field)) return *bad;
    }
    if (const Answer* bad = std::get_if<Answer>(&port)) return *bad;
    for (const auto& [field, key] : {std::pair{&name, "name"}, std::pair{&address, "address"}, std::pair{&pool, "pool"}}) {
      if (!std::get<0>(*field)) return error_answer(400, "invalid", "'" + std::string(key) + "' is required");
    }
    if (!std::get<0>(port)) return error_answer(400, "invalid", "'port' is required");
    VipRow vip;
    vip.name = *std::get<0>(name);
    vip.address = *std::get<0>(address);
    vip.port = static_cast<std::uint16_t>(*std::get<0>(port));
    vip.protocol = std::get<0>(protocol).value_or("tcp");
    vip.pool = *std::get<0>(pool);
    vip.mode = std::get<0>(mode).value_or("ipip");
    Checked<Done> created = LbStore(store_).create_vip(call.principal, vip, unix_now());
    if (!created) return problem_answer(created.problem());
    return {201,
            json::object{{"name", vip.name}, {"address", vip.address}, {"port", vip.port}, {"protocol", vip.protocol},
                         {"pool", vip.pool}, {"mode", vip.mode}},
            {}};
  }

  Answer put_setting(Call& call, const std::string& name) {
    const auto parsed = body_object(call.body);
    if (const Answer* bad = std::get_if<Answer>(&parsed)) return *bad;
    const auto value = string_member(std::get<json::object>(parsed), "value");
    if (const Answer* bad = std::get_if<Answer>(&value)) return *bad;
    if (!std::get<0>(value)) return error_answer(400, "invalid", "'value' is required (a string)");
    return done(store_.put_setting(call.principal, name, *std::get<0>(value), unix_now()));
  }

  ControlStore& store_;
  LoginLimiter& limiter_;
  const Self& self_;
};

bhttp::response<bhttp::string_body> to_response(Answer answer, unsigned version) {
  bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(answer.status), version};
  response.set(bhttp::field::content_type, "application/json");
  response.set(bhttp::field::cache_control, "no-store");
  for (auto& [field, value] : answer.headers) response.set(field, value);
  response.body() = json::serialize(answer.body) + "\n";
  response.prepare_payload();
  return response;
}

// The peer's certificate in PEM if it presented one that the handshake verified; else empty.
std::string peer_certificate(const http::RequestContext& context) {
  if (context.tls_session == nullptr) return {};
  X509* peer = SSL_get0_peer_certificate(context.tls_session);
  if (peer == nullptr || SSL_get_verify_result(context.tls_session) != X509_V_OK) return {};
  pki::Made<std::string> pem = pki::certificate_pem(peer);
  return pem.ok() ? *pem.value : std::string();
}

}  // namespace

void ApiHandler::handle(const http::RequestContext& context, http::Request& request, http::Respond respond) {
  const unsigned version = request.version();
  Call call;
  call.method = request.method();
  call.remote = http::format_address(context.remote.address());
  if (!request.target().starts_with(api_prefix)) {
    return respond(to_response(error_answer(404, "not_found", "the API is under /api/v1/"), version));
  }
  std::optional<ApiTarget> target = parse_api_target(request.target());
  if (!target) return respond(to_response(error_answer(400, "invalid", "a path or query this API cannot read"), version));
  call.path = std::move(target->segments);
  call.query = std::move(target->query);
  call.body = std::move(request.body());
  const bool is_login = call.method == bhttp::verb::post && call.path == std::vector<std::string>{"login"};
  const bool is_join = call.method == bhttp::verb::post && call.path.size() == 2 && call.path[0] == "join" &&
                       (call.path[1] == "prepare" || call.path[1] == "commit" || call.path[1] == "abort");
  if (is_login) {
    call.admitted = std::chrono::steady_clock::now();
    if (const std::chrono::seconds wait = limiter_.admit(call.remote, call.admitted); wait.count() > 0) {
      Answer answer = error_answer(429, "rate_limited", "too many failed logins from " + call.remote + ": try again in " +
                                                            std::to_string(wait.count()) + " s");
      answer.headers.emplace_back(bhttp::field::retry_after, std::to_string(wait.count()));
      return respond(to_response(std::move(answer), version));
    }
  }
  std::string bearer;
  if (const auto header = request.find(bhttp::field::authorization); header != request.end()) {
    const std::string_view value = header->value();
    if (value.starts_with(bearer_prefix)) bearer = std::string(value.substr(bearer_prefix.size()));
  }
  std::string peer_pem = peer_certificate(context);

  auto shared_respond = std::make_shared<http::Respond>(std::move(respond));
  const bool taken = queue_.submit([this, io = context.io, version, shared_respond, is_login, is_join, call = std::move(call),
                                    bearer = std::move(bearer), peer_pem = std::move(peer_pem)]() mutable {
    Routes routes(store_, limiter_, self_);
    Answer answer;
    if (is_login) {
      answer = routes.login(call);
    } else if (is_join) {
      answer = routes.join(call);
    } else if (std::optional<Answer> refused = routes.authenticate(call, bearer, peer_pem)) {
      answer = std::move(*refused);
    } else {
      answer = routes.dispatch(call);
    }
    boost::asio::post(*io, [shared_respond, response = to_response(std::move(answer), version)]() mutable {
      (*shared_respond)(std::move(response));
    });
  });
  if (!taken) {
    (*shared_respond)(to_response(error_answer(503, "overloaded", "too many requests waiting: try again"), version));
  }
}

}  // namespace stacknode::node
