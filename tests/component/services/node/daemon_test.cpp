// Component test of stacknoded (services/node/daemon) and the stackctl commands that call it: each
// test gets a fresh box (a real stacknode-db waiting for its identity, `stackctl cluster init`, a
// real stacknoded serving its API over TLS on loopback) and talks to it the way its clients do:
// stackctl with the box's node certificate, and HTTPS requests made here with pinned_https_request
// (no credentials, a bearer token from a login, the node's certificate, another CA's certificate,
// certificates of this CA that no member holds). Covered: authentication and its refusals, the
// login rate limit, sessions and API tokens, cluster status, join tokens, users (the last one
// stays; deleting one ends its sessions), settings, bad request bodies, the audit log and its
// pages, a node refusing to remove itself, the heartbeat, and a clean stop on SIGTERM.
#include <CppUTest/TestHarness.h>

#include <sys/stat.h>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "net.hpp"
#include "process.hpp"
#include "stacknode/db/client.hpp"
#include "stacknode/node/content_bundle.hpp"
#include "stacknode/node/join_token.hpp"
#include "stacknode/node/pinned_https.hpp"
#include "stacknode/node/pki.hpp"
#include "stacknode/node/state_files.hpp"

using namespace stacknode;
using namespace stacknode::node;
namespace fs = std::filesystem;
namespace json = boost::json;
namespace support = stacknode::test;

namespace {

constexpr std::string_view admin_password = "a long enough password";
// From starting stacknoded to its API answering stackctl: migrate, find its record, bind.
constexpr std::chrono::milliseconds daemon_ready_timeout{30'000};
// One HTTPS request to the local daemon; a login's argon2id check is the slowest part.
constexpr std::chrono::milliseconds request_timeout{20'000};
// The heartbeat is written every 5 s (control.hpp heartbeat_interval): three chances.
constexpr std::chrono::milliseconds heartbeat_wait{15'000};
// The first heartbeat is written when the reconciler starts, just after the API binds.
constexpr std::chrono::milliseconds first_heartbeat_wait{10'000};
constexpr std::chrono::milliseconds stop_timeout{10'000};
// As the API's LoginLimiter allows (api.hpp login_failures_allowed, login_window).
constexpr int login_failures_allowed = 5;
constexpr int login_window_seconds = 60;

// What the daemon answered; `reached` is false when no HTTP answer came (TLS refused, ...).
struct Reply {
  bool reached = false;
  std::string error;
  unsigned status = 0;
  json::value body;  // null when the body is not JSON
  bhttp::response<bhttp::string_body> raw;

  std::string header(bhttp::field field) const {
    const auto found = raw.find(field);
    return found == raw.end() ? std::string() : std::string(found->value());
  }
  // body.error.kind and body.error.message, or "" when the body has none.
  std::string error_kind() const { return error_field("kind"); }
  std::string error_message() const { return error_field("message"); }
  std::string error_field(std::string_view name) const {
    if (!body.is_object()) return {};
    const json::value* error = body.as_object().if_contains("error");
    if (error == nullptr || !error->is_object()) return {};
    const json::value* field = error->as_object().if_contains(name);
    return field != nullptr && field->is_string() ? std::string(field->as_string()) : std::string();
  }
};

std::string text_of(const json::value& value) {
  return value.is_string() ? std::string(value.as_string()) : json::serialize(value);
}

// The names of a list's items (`items[].name`), in the order given.
std::vector<std::string> names_in(const json::value& list) {
  std::vector<std::string> names;
  for (const json::value& item : list.at("items").as_array())
    names.push_back(text_of(item.at("name")));
  return names;
}

}  // namespace

TEST_GROUP(NodeDaemon) {
  std::unique_ptr<support::TempDir> dir;
  std::unique_ptr<support::Process> db;
  std::unique_ptr<support::Process> daemon;
  std::string db_address;
  std::string api_address;
  fs::path state_dir;
  fs::path config;
  pki::Pin pin{};
  pki::Credentials node_credentials;
  std::string ca_pem;
  std::uint16_t cache_port_ = 0;
  std::uint16_t endpoint_port_ = 0;

  // redis-cli ARGS against 127.0.0.1:PORT; its output, trimmed of the last newline.
  std::string redis_cli(std::uint16_t port, std::vector<std::string> args) {
    args.insert(args.begin(), {"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(port)});
    std::string output = support::run_command(args).output;
    while (!output.empty() && output.back() == '\n') output.pop_back();
    return output;
  }

  void setup() override {
    std::signal(SIGPIPE, SIG_IGN);
    dir = std::make_unique<support::TempDir>();
    const fs::path base = dir->path();
    state_dir = base / "state";
    fs::create_directories(state_dir);
    db_address = support::loopback_address(support::unused_port());
    cache_port_ = support::unused_port();
    endpoint_port_ = support::unused_port();
    api_address = support::loopback_address(support::unused_port());
    const fs::path identity = base / "db-identity.cfg";

    // stacknode-db without node_id: it waits for the identity file cluster init writes.
    support::write_file(base / "db.cfg", "paths: { runtime_dir = \"" + (base / "run-db").string() +
                                             "\"; };\n"
                                             "db: { address = \"" +
                                             db_address + "\"; data_dir = \"" +
                                             (base / "data").string() + "\"; identity_file = \"" +
                                             identity.string() + "\"; listen_http = \"127.0.0.1:" +
                                             std::to_string(support::unused_port()) + "\"; };\n");
    db = std::make_unique<support::Process>(
        std::vector<std::string>{(support::binary_dir() / "stacknode-db").string(), "--config",
                                 (base / "db.cfg").string()},
        base / "db.log");

    config = base / "node.cfg";
    support::write_file(config, "paths: { state_dir = \"" + state_dir.string() +
                                    "\"; runtime_dir = \"" + (base / "run").string() +
                                    "\"; };\n"
                                    "node: { name = \"sn1\"; api_address = \"" +
                                    api_address +
                                    "\"; };\n"
                                    "db: { address = \"" +
                                    db_address + "\"; identity_file = \"" + identity.string() +
                                    "\"; };\n"
                                    // VIPs must not land on this machine's own lo.
                                    "lb: { manage_kernel = false; };\n"
                                    // The cache's server and endpoint on ports of this test's own.
                                    "cache: { port = " + std::to_string(cache_port_) +
                                    "; endpoint = \"127.0.0.1:" + std::to_string(endpoint_port_) + "\"; };\n");
    const support::CommandResult init = stackctl({"--json", "cluster", "init", "--name", "rack-a",
                                                  "--admin-password", std::string(admin_password)});
    if (init.status != 0)
      FAIL(("cluster init: " + init.output + "\nstacknode-db:\n" + db->output()).c_str());

    daemon = std::make_unique<support::Process>(
        std::vector<std::string>{(support::binary_dir() / "stacknoded").string(), "--config",
                                 config.string()},
        base / "stacknoded.log");
    const bool ready = support::poll_until(
        [&] {
          return stackctl({"cluster", "status"}).status == 0;
        },
        daemon_ready_timeout);
    if (!ready)
      FAIL(("stacknoded did not answer 'stackctl cluster status':\n" + daemon->output()).c_str());

    ca_pem = support::read_file(state_dir / "pki" / "ca.crt");
    pki::Made<pki::Pin> made = pki::public_key_pin(ca_pem);
    if (!made.ok()) FAIL(made.error.c_str());
    pin = *made.value;
    node_credentials = {support::read_file(state_dir / "pki" / "node.crt"),
                        support::read_file(state_dir / "pki" / "node.key")};
  }

  void teardown() override {
    daemon.reset();  // kills and reaps
    db.reset();
    dir.reset();
  }

  support::CommandResult stackctl(std::vector<std::string> args) {
    args.insert(args.begin(),
                {(support::binary_dir() / "stackctl").string(), "--config", config.string()});
    return support::run_command(args);
  }

  // `stackctl --json ARGS` that must succeed; its JSON.
  json::value stackctl_json(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    const support::CommandResult result = stackctl(args);
    if (result.status != 0)
      FAIL(("stackctl failed (" + std::to_string(result.status) + "): " + result.output).c_str());
    boost::system::error_code error;
    json::value value = json::parse(result.output, error);
    if (error) FAIL(("stackctl printed no JSON: " + result.output).c_str());
    return value;
  }

  Reply request(bhttp::verb method, const std::string& target, const std::string& body,
                const std::string& bearer, const pki::Credentials* client) {
    bhttp::request<bhttp::string_body> message{method, target, 11};
    message.set(bhttp::field::host, api_address);
    if (!bearer.empty()) message.set(bhttp::field::authorization, "Bearer " + bearer);
    if (!body.empty()) {
      message.set(bhttp::field::content_type, "application/json");
      message.body() = body;
    }
    message.prepare_payload();
    PinnedAnswer answer =
        pinned_https_request(api_address, pin, std::move(message), std::chrono::system_clock::now(),
                             request_timeout, client);
    Reply reply;
    if (!answer.ok()) {
      reply.error = answer.error;
      return reply;
    }
    reply.reached = true;
    reply.status = answer.response.result_int();
    boost::system::error_code error;
    reply.body = json::parse(answer.response.body(), error);
    if (error) reply.body = nullptr;
    reply.raw = std::move(answer.response);
    return reply;
  }
  Reply anonymous(bhttp::verb method, const std::string& target, const std::string& body = "") {
    return request(method, target, body, "", nullptr);
  }
  Reply as_node(bhttp::verb method, const std::string& target, const std::string& body = "") {
    return request(method, target, body, "", &node_credentials);
  }
  Reply with_bearer(const std::string& token, bhttp::verb method, const std::string& target,
                    const std::string& body = "") {
    return request(method, target, body, token, nullptr);
  }

  // A reply that must have come, with this status; the reply for further checks.
  Reply expect(unsigned status, Reply reply, const char* what) {
    if (!reply.reached) FAIL((std::string(what) + ": no answer: " + reply.error).c_str());
    if (reply.status != status) {
      FAIL((std::string(what) + ": expected " + std::to_string(status) + ", got " +
            std::to_string(reply.status) + ": " + reply.raw.body())
               .c_str());
    }
    return reply;
  }

  Reply login(const std::string& user, const std::string& password) {
    return anonymous(bhttp::verb::post, "/api/v1/login",
                     json::serialize(json::object{{"user", user}, {"password", password}}));
  }
  // A session token of `user` (the login must succeed).
  std::string session(const std::string& user, const std::string& password) {
    const Reply reply = expect(201, login(user, password), "login");
    return text_of(reply.body.at("token"));
  }

  std::vector<std::string> user_names() {
    return names_in(expect(200, as_node(bhttp::verb::get, "/api/v1/users"), "users").body);
  }
  json::object settings() {
    return expect(200, as_node(bhttp::verb::get, "/api/v1/settings"), "settings")
        .body.at("items")
        .as_object();
  }
};

TEST(NodeDaemon, WithoutCredentialsOnlyHealthAndLoginAnswer) {
  const Reply refused = anonymous(bhttp::verb::get, "/api/v1/cluster");
  CHECK(refused.reached);
  CHECK_EQUAL(401u, refused.status);
  STRCMP_EQUAL("unauthenticated", refused.error_kind().c_str());
  STRCMP_EQUAL("Bearer", refused.header(bhttp::field::www_authenticate).c_str());
  STRCMP_EQUAL("application/json", refused.header(bhttp::field::content_type).c_str());
  CHECK_FALSE(refused.body.as_object().contains("name"));  // an error, not the cluster

  // A bearer that is no token of this cluster is refused the same way.
  const Reply forged =
      with_bearer("snt1." + std::string(64, 'a'), bhttp::verb::get, "/api/v1/cluster");
  CHECK_EQUAL(401u, forged.status);
  STRCMP_EQUAL("unauthenticated", forged.error_kind().c_str());

  const Reply health = anonymous(bhttp::verb::get, "/healthz");
  CHECK(health.reached);
  CHECK_EQUAL(200u, health.status);

  const Reply unknown = expect(404, as_node(bhttp::verb::get, "/api/v1/x"), "unknown endpoint");
  STRCMP_EQUAL("not_found", unknown.error_kind().c_str());
  // Without credentials an unknown endpoint says nothing about what exists: 401 first.
  CHECK_EQUAL(401u, anonymous(bhttp::verb::get, "/api/v1/x").status);
}

TEST(NodeDaemon, TheSixthFailedLoginWithinAMinuteIsRateLimited) {
  for (int attempt = 1; attempt <= login_failures_allowed; ++attempt) {
    const Reply wrong = login("admin", "not the password at all");
    if (wrong.status != 401)
      FAIL(("attempt " + std::to_string(attempt) + ": " + wrong.raw.body()).c_str());
    STRCMP_EQUAL("unauthenticated", wrong.error_kind().c_str());
  }
  const Reply limited = expect(429, login("admin", "not the password at all"), "sixth failure");
  STRCMP_EQUAL("rate_limited", limited.error_kind().c_str());
  const std::string retry_after = limited.header(bhttp::field::retry_after);
  CHECK_FALSE(retry_after.empty());
  const int seconds = std::stoi(retry_after);
  CHECK(seconds >= 1 && seconds <= login_window_seconds);
  // While limited, even the right password is not checked.
  CHECK_EQUAL(429u, login("admin", std::string(admin_password)).status);
  // Other callers are not affected: the node certificate still works.
  CHECK_EQUAL(200u, as_node(bhttp::verb::get, "/api/v1/whoami").status);
}

TEST(NodeDaemon, ALoginGivesASessionThatLogoutEnds) {
  const Reply wrong = expect(401, login("admin", "not the password at all"), "wrong password");
  STRCMP_EQUAL("unauthenticated", wrong.error_kind().c_str());
  // An unknown user gets the same answer as a wrong password: names are not disclosed.
  const Reply nobody = expect(401, login("nobody", "not the password at all"), "unknown user");
  CHECK(wrong.body == nobody.body);
  CHECK_EQUAL(400u, anonymous(bhttp::verb::post, "/api/v1/login", "{\"user\":\"admin\"}").status);

  const Reply made = expect(201, login("admin", std::string(admin_password)), "login");
  const std::string token = text_of(made.body.at("token"));
  CHECK(token.starts_with("snt1."));
  STRCMP_EQUAL("admin", text_of(made.body.at("user")).c_str());
  CHECK(made.body.at("expires_at").is_int64());  // a session expires

  const Reply who = expect(200, with_bearer(token, bhttp::verb::get, "/api/v1/whoami"), "whoami");
  STRCMP_EQUAL("admin", text_of(who.body.at("principal")).c_str());
  STRCMP_EQUAL("user", text_of(who.body.at("kind")).c_str());

  expect(200, with_bearer(token, bhttp::verb::post, "/api/v1/logout"), "logout");
  const Reply after = with_bearer(token, bhttp::verb::get, "/api/v1/whoami");
  CHECK_EQUAL(401u, after.status);
  STRCMP_EQUAL("unauthenticated", after.error_kind().c_str());
  // A node has no session to end.
  CHECK_EQUAL(400u, as_node(bhttp::verb::post, "/api/v1/logout").status);
}

TEST(NodeDaemon, TheNodeCertificateAuthenticatesAndAnotherCAsDoesNot) {
  const Reply who = expect(200, as_node(bhttp::verb::get, "/api/v1/whoami"), "whoami as node");
  STRCMP_EQUAL("node:sn1", text_of(who.body.at("principal")).c_str());
  STRCMP_EQUAL("node", text_of(who.body.at("kind")).c_str());

  // A certificate for "sn1" with sn1's own serial and address, issued by another CA: if the
  // daemon trusted the name or the serial without the chain, this would pass as node:sn1.
  const json::value nodes = expect(200, as_node(bhttp::verb::get, "/api/v1/nodes"), "nodes").body;
  const auto serial =
      static_cast<std::uint64_t>(nodes.at("items").at(0).at("certificate_serial").as_int64());
  const auto now = std::chrono::system_clock::now();
  const pki::Made<pki::Credentials> other_ca =
      pki::create_cluster_ca("rack-b", std::chrono::hours(24), now);
  if (!other_ca.ok()) FAIL(other_ca.error.c_str());
  const pki::Made<std::string> key = pki::generate_private_key();
  const pki::Made<std::string> csr = pki::create_csr(*key.value, "sn1");
  const pki::Made<std::string> certificate = pki::sign_node_certificate(
      *other_ca.value, *csr.value, {"sn1", {"127.0.0.1"}, serial, std::chrono::hours(24)}, now);
  if (!certificate.ok()) FAIL(certificate.error.c_str());
  const pki::Credentials stranger{*certificate.value + other_ca.value->certificate_pem, *key.value};
  const Reply refused = request(bhttp::verb::get, "/api/v1/whoami", "", "", &stranger);
  if (refused.reached && refused.status == 200)
    FAIL(("another CA's certificate was accepted: " + refused.raw.body()).c_str());
  if (refused.reached) CHECK_EQUAL(401u, refused.status);

  // The daemon keeps serving after refusing it.
  CHECK_EQUAL(200u, as_node(bhttp::verb::get, "/api/v1/whoami").status);
}

// Certificates the cluster's CA really signed, but that no member holds, are refused with 401:
// one naming sn1 with a serial no node has, one naming another node with sn1's serial, and one
// with sn1's name and serial on another key pair (what a member holding the CA key could make).
TEST(NodeDaemon, AClusterCertificateThatNoMemberHoldsIsRefused) {
  db::ClientOptions client_options;
  client_options.addresses = {db_address};
  std::string tls_problem;
  client_options.tls = db::TlsContext::from_dir(db::TlsContext::Side::client, db_tls_dir(state_dir).string(), tls_problem);
  if (!client_options.tls) FAIL(tls_problem.c_str());
  db::Client client(client_options);
  db::Outcome<db::wire::RowSet> rows =
      client.query("cluster", "SELECT ca_certificate, ca_private_key FROM cluster");
  if (!rows) FAIL(rows.error().message.c_str());
  const pki::Credentials cluster_ca{std::get<std::string>(rows->rows.at(0).at(0)),
                                    std::get<std::string>(rows->rows.at(0).at(1))};
  const json::value nodes = expect(200, as_node(bhttp::verb::get, "/api/v1/nodes"), "nodes").body;
  const auto serial =
      static_cast<std::uint64_t>(nodes.at("items").at(0).at("certificate_serial").as_int64());

  const auto present = [&](const std::string& name, std::uint64_t certificate_serial) {
    const auto now = std::chrono::system_clock::now();
    const pki::Made<std::string> key = pki::generate_private_key();
    const pki::Made<std::string> csr = pki::create_csr(*key.value, name);
    const pki::Made<std::string> certificate = pki::sign_node_certificate(
        cluster_ca, *csr.value, {name, {"127.0.0.1"}, certificate_serial, std::chrono::hours(1)},
        now);
    if (!certificate.ok()) FAIL(certificate.error.c_str());
    const pki::Credentials holder{*certificate.value + cluster_ca.certificate_pem, *key.value};
    return request(bhttp::verb::get, "/api/v1/whoami", "", "", &holder);
  };
  const Reply unknown_serial = present("sn1", serial + 1);
  CHECK_EQUAL(401u, unknown_serial.status);
  // No member holds it: what a removed node hears (stackctl node reset relies on the kind).
  STRCMP_EQUAL("not_a_member", unknown_serial.error_kind().c_str());
  const Reply other_name = present("sn2", serial);
  CHECK_EQUAL(401u, other_name.status);
  STRCMP_EQUAL("unauthenticated", other_name.error_kind().c_str());
  // sn1's very name and serial, signed by the cluster CA, on another key pair: a member (which
  // holds the CA key) passing for sn1.
  const Reply impostor = present("sn1", serial);
  CHECK_EQUAL(401u, impostor.status);
  STRCMP_EQUAL("unauthenticated", impostor.error_kind().c_str());
}

TEST(NodeDaemon, ClusterStatusShowsTheOneOnlineVoterThatLeads) {
  json::value status;
  // The first heartbeat may land just after the API starts answering.
  const bool online = support::poll_until(
      [&] {
        status = stackctl_json({"cluster", "status"});
        return status.at("nodes").at(0).at("online").as_bool();
      },
      first_heartbeat_wait);
  if (!online) FAIL(("sn1 never shown online: " + json::serialize(status)).c_str());
  STRCMP_EQUAL("rack-a", text_of(status.at("name")).c_str());
  STRCMP_EQUAL("sn1", text_of(status.at("served_by")).c_str());
  STRCMP_EQUAL("sn1", text_of(status.at("leader")).c_str());
  STRCMP_EQUAL(pki::to_hex(pin).c_str(), text_of(status.at("ca_pin")).c_str());
  const json::array& nodes = status.at("nodes").as_array();
  CHECK_EQUAL(1u, nodes.size());
  const json::value& sn1 = nodes.at(0);
  STRCMP_EQUAL("sn1", text_of(sn1.at("name")).c_str());
  STRCMP_EQUAL("voter", text_of(sn1.at("role")).c_str());
  CHECK(sn1.at("leader").as_bool());
  STRCMP_EQUAL(api_address.c_str(), text_of(sn1.at("api_address")).c_str());
  STRCMP_EQUAL(db_address.c_str(), text_of(sn1.at("db_address")).c_str());
  CHECK(status.at("summary") == (json::object{{"nodes", 1}, {"online", 1}, {"voters", 1}}));

  // The text form names the cluster and the node.
  const support::CommandResult text = stackctl({"cluster", "status"});
  CHECK_EQUAL(0, text.status);
  CHECK(text.output.find("Cluster rack-a") != std::string::npos);
  CHECK(text.output.find("sn1") != std::string::npos);
}

TEST(NodeDaemon, JoinTokensAreMadeListedAndRevokedOnce) {
  const json::value made = stackctl_json({"cluster", "token", "create", "--validity", "120"});
  const TokenParse parsed = parse_join_token(text_of(made.at("token")));
  if (!parsed.ok()) FAIL(parsed.message.c_str());
  CHECK(parsed.token->ca_pin == pin);
  CHECK(parsed.token->addresses == std::vector<std::string>{api_address});
  const std::string id = text_of(made.at("id"));
  STRCMP_EQUAL(token_id(parsed.token->secret).c_str(), id.c_str());
  STRCMP_EQUAL("usable", text_of(made.at("state")).c_str());
  STRCMP_EQUAL("node:sn1", text_of(made.at("created_by")).c_str());
  CHECK_EQUAL(120, made.at("expires_at").as_int64() - made.at("created_at").as_int64());
  CHECK_EQUAL(static_cast<std::uint64_t>(made.at("expires_at").as_int64()),
              parsed.token->expires_at);

  const auto state_of = [&](const std::string& wanted) {
    const json::value list = stackctl_json({"cluster", "token", "list"});
    for (const json::value& item : list.at("items").as_array()) {
      if (text_of(item.at("id")) == wanted) return text_of(item.at("state"));
    }
    return std::string("(not listed)");
  };
  STRCMP_EQUAL("usable", state_of(id).c_str());
  // The list holds the init token too, and never a token's text.
  const json::value list = stackctl_json({"cluster", "token", "list"});
  CHECK_EQUAL(2u, list.at("items").as_array().size());
  CHECK(json::serialize(list).find("snj1.") == std::string::npos);

  const support::CommandResult revoked = stackctl({"cluster", "token", "revoke", id});
  LONGS_EQUAL_TEXT(0, revoked.status, revoked.output.c_str());
  STRCMP_EQUAL("revoked", state_of(id).c_str());

  const support::CommandResult again = stackctl({"cluster", "token", "revoke", id});
  CHECK_EQUAL(1, again.status);
  if (again.output.find("revoked already") == std::string::npos) FAIL(again.output.c_str());
  const support::CommandResult unknown = stackctl({"cluster", "token", "revoke", "000000000000"});
  CHECK_EQUAL(1, unknown.status);
  if (unknown.output.find("no join token") == std::string::npos) FAIL(unknown.output.c_str());
}

TEST(NodeDaemon, UsersAreCreatedAndTheLastOneIsKept) {
  const std::vector<std::string> before = user_names();
  CHECK(before == std::vector<std::string>{"admin"});

  const support::CommandResult weak = stackctl({"user", "create", "ops", "--password", "short"});
  CHECK_EQUAL(1, weak.status);
  if (weak.output.find("too short") == std::string::npos) FAIL(weak.output.c_str());
  CHECK(user_names() == before);

  const support::CommandResult created =
      stackctl({"user", "create", "ops", "--password", "ops password long"});
  LONGS_EQUAL_TEXT(0, created.status, created.output.c_str());
  CHECK((user_names() == std::vector<std::string>{"admin", "ops"}));
  CHECK_EQUAL(
      1, stackctl({"user", "create", "ops", "--password", "ops password long"}).status);  // exists

  const support::CommandResult deleted = stackctl({"user", "delete", "admin"});
  LONGS_EQUAL_TEXT(0, deleted.status, deleted.output.c_str());
  CHECK(user_names() == std::vector<std::string>{"ops"});
  CHECK_EQUAL(401u, login("admin", std::string(admin_password)).status);

  // The last user stays: nobody could log in any more.
  const Reply refused =
      expect(409, as_node(bhttp::verb::delete_, "/api/v1/users/ops"), "delete the last user");
  STRCMP_EQUAL("conflict", refused.error_kind().c_str());
  const support::CommandResult last = stackctl({"user", "delete", "ops"});
  CHECK_EQUAL(1, last.status);
  if (last.output.find("last user") == std::string::npos) FAIL(last.output.c_str());
  CHECK(user_names() == std::vector<std::string>{"ops"});
  // Untouched by the refusals, with the password it was given.
  expect(201, login("ops", "ops password long"), "login as ops");
}

// delete_user revokes the user's API tokens (control.hpp): a user who has logged in can be
// deleted, and the session ends with it.
TEST(NodeDaemon, DeletingAUserWhoLoggedInEndsItsSessions) {
  LONGS_EQUAL(0, stackctl({"user", "create", "ops", "--password", "ops password long"}).status);
  const std::string ops_session = session("ops", "ops password long");
  CHECK_EQUAL(200u, with_bearer(ops_session, bhttp::verb::get, "/api/v1/whoami").status);

  const Reply deleted = as_node(bhttp::verb::delete_, "/api/v1/users/ops");
  if (deleted.status != 200) {
    FAIL(("DELETE /api/v1/users/ops: " + std::to_string(deleted.status) + " " + deleted.raw.body())
             .c_str());
  }
  CHECK(user_names() == std::vector<std::string>{"admin"});
  CHECK_EQUAL(401u, with_bearer(ops_session, bhttp::verb::get, "/api/v1/whoami").status);
}

TEST(NodeDaemon, SettingsAreSetListedAndDeletedAndBadNamesStoreNothing) {
  CHECK(settings().empty());
  LONGS_EQUAL(0, stackctl({"setting", "set", "ntp.server", "198.18.0.1"}).status);
  LONGS_EQUAL(0, stackctl({"setting", "set", "syslog_address", "198.18.0.2:514"}).status);
  LONGS_EQUAL(0, stackctl({"setting", "set", "ntp.server", "198.18.0.3"}).status);  // replaces
  const json::value listed = stackctl_json({"setting", "list"});
  CHECK(listed.at("items") ==
        (json::object{{"ntp.server", "198.18.0.3"}, {"syslog_address", "198.18.0.2:514"}}));

  LONGS_EQUAL(0, stackctl({"setting", "delete", "ntp.server"}).status);
  CHECK(settings() == (json::object{{"syslog_address", "198.18.0.2:514"}}));
  CHECK_EQUAL(1, stackctl({"setting", "delete", "ntp.server"}).status);  // gone already

  // Names outside a-z A-Z 0-9 - _ . are refused, however they arrive.
  const Reply bang = expect(
      400, as_node(bhttp::verb::put, "/api/v1/settings/bad!name", "{\"value\":\"x\"}"), "bad!name");
  STRCMP_EQUAL("invalid", bang.error_kind().c_str());
  CHECK_EQUAL(1, stackctl({"setting", "set", "bad name", "x"}).status);
  CHECK_EQUAL(1, stackctl({"setting", "set", "bad/name", "x"}).status);
  CHECK_EQUAL(400u, as_node(bhttp::verb::put, "/api/v1/settings/" + std::string(65, 'a'),
                            "{\"value\":\"x\"}")
                        .status);
  CHECK_EQUAL(400u, as_node(bhttp::verb::put, "/api/v1/settings/ok", "{\"value\":5}").status);
  CHECK(settings() == (json::object{{"syslog_address", "198.18.0.2:514"}}));
}

TEST(NodeDaemon, PoolsAndVipsAreClusterStateAndANodeWithoutADataplaneTakesNoLease) {
  // A pool of every node's web service and a VIP sending to it, through stackctl.
  LONGS_EQUAL(0, stackctl({"pool", "create", "web"}).status);
  LONGS_EQUAL(0, stackctl({"vip", "add", "www", "198.18.0.100:80/tcp", "--pool", "web", "--mode", "l2_dsr"}).status);
  const json::value pools = stackctl_json({"pool", "list"});
  const json::array& pool_items = pools.at("items").as_array();
  LONGS_EQUAL(1, pool_items.size());
  LONGS_EQUAL(80, pool_items[0].at("port").as_int64());
  const json::array& members = pool_items[0].at("members").as_array();
  LONGS_EQUAL(1, members.size());  // every node: this one
  STRCMP_EQUAL("sn1", text_of(members[0].at("node")).c_str());
  STRCMP_EQUAL("127.0.0.1", text_of(members[0].at("address")).c_str());

  // The only node runs no dataplane (node.cfg has none): it could not answer for the VIP, so it
  // takes no lease; the VIP stays unowned (the rack tier shows nodes with dataplanes taking them).
  const bool said = support::poll_until(
      [&] { return daemon->output().find("this node runs no dataplane: this node takes and renews no VIP leases") !=
                   std::string::npos; },
      std::chrono::seconds(10));
  if (!said) FAIL(("stacknoded never said it takes no leases:\n" + daemon->output()).c_str());
  // An absence has no moment to wait for: watch a window in which a node that could answer takes
  // the lease (within one or two 300 ms rounds), ten rounds long.
  const bool taken = support::poll_until(
      [&] { return !stackctl_json({"vip", "list"}).at("items").as_array().at(0).at("owner").is_null(); },
      std::chrono::seconds(3));
  CHECK_FALSE(taken);

  // Weights and states per node; the member must exist.
  LONGS_EQUAL(0, stackctl({"pool", "member", "web", "sn1", "--weight", "3", "--state", "draining"}).status);
  const json::value after = stackctl_json({"pool", "list"});
  const json::value& member = after.at("items").as_array()[0].at("members").as_array()[0];
  LONGS_EQUAL(3, member.at("weight").as_int64());
  STRCMP_EQUAL("draining", text_of(member.at("state")).c_str());
  // What is not given stays: a new weight keeps the node draining.
  LONGS_EQUAL(0, stackctl({"pool", "member", "web", "sn1", "--weight", "5"}).status);
  const json::value kept = stackctl_json({"pool", "list"}).at("items").as_array()[0].at("members").as_array()[0];
  LONGS_EQUAL(5, kept.at("weight").as_int64());
  STRCMP_EQUAL("draining", text_of(kept.at("state")).c_str());
  CHECK_EQUAL(1, stackctl({"pool", "member", "web", "sn9", "--weight", "2"}).status);      // no such node
  CHECK_EQUAL(1, stackctl({"pool", "member", "web", "sn1"}).status);                       // nothing to set
  CHECK_EQUAL(1, stackctl({"pool", "member", "web", "sn1", "--state", "asleep"}).status);  // no such state

  // Bad VIPs and pools are refused with the reason, and change nothing.
  const auto refused = [&](unsigned status, const std::string& target, const std::string& body, const char* what) {
    const Reply reply = expect(status, as_node(bhttp::verb::post, target, body), what);
    CHECK(!reply.error_message().empty());
  };
  refused(409, "/api/v1/vips", R"({"name":"www2","address":"198.18.0.100","port":80,"pool":"web","protocol":"tcp"})",
          "the same address, port and protocol");
  refused(409, "/api/v1/vips", R"({"name":"www","address":"198.18.0.101","port":80,"pool":"web"})", "a taken name");
  refused(404, "/api/v1/vips", R"({"name":"x","address":"198.18.0.101","port":80,"pool":"nope"})", "no such pool");
  refused(400, "/api/v1/vips", R"({"name":"x","address":"224.0.0.1","port":80,"pool":"web"})", "multicast");
  refused(400, "/api/v1/vips", R"({"name":"x","address":"198.18.0.101","port":0,"pool":"web"})", "port 0");
  refused(400, "/api/v1/vips", R"({"name":"x","address":"198.18.0.101","port":80,"pool":"web","mode":"nat"})", "mode");
  refused(400, "/api/v1/vips", R"({"name":"x","address":"198.18.0.101","port":80,"pool":"web","extra":1})",
          "an unknown member");
  refused(400, "/api/v1/vips", R"({"name":"x","address":"127.0.0.1","port":80,"pool":"web"})", "loopback");
  refused(409, "/api/v1/pools", R"({"name":"web"})", "a pool that exists");
  refused(400, "/api/v1/pools", R"({"name":"p2","health_path":"no-slash"})", "a health path");
  CHECK_EQUAL(2, stackctl({"vip", "add", "x", "198.18.0.101", "--pool", "web"}).status);  // no :PORT
  LONGS_EQUAL(1, stackctl_json({"vip", "list"}).at("items").as_array().size());

  // A pool in use stays; removing the VIP frees it.
  CHECK_EQUAL(1, stackctl({"pool", "delete", "web"}).status);
  LONGS_EQUAL(0, stackctl({"vip", "remove", "www"}).status);
  LONGS_EQUAL(0, stackctl({"pool", "delete", "web"}).status);
  CHECK(stackctl_json({"pool", "list"}).at("items").as_array().empty());
}

// The version directory `site`'s current link names, relative to the site ("versions/2").
std::string current_link(const fs::path& state_dir, const std::string& site = "default") {
  std::error_code error;
  return fs::read_symlink(state_dir / "content" / site / "current", error).string();
}

TEST(NodeDaemon, ContentIsPushedInVersionsRolledOutToTheNodeAndRolledBack) {
  // Before anything is pushed the node serves the factory page.
  STRCMP_EQUAL("versions/0", current_link(state_dir).c_str());
  CHECK(support::read_file(state_dir / "content/default/current/index.html").find("stackctl content push") !=
        std::string::npos);

  const fs::path v1 = dir->path() / "site-v1";
  fs::create_directories(v1 / "css");
  support::write_file(v1 / "index.html", "<p>version one</p>\n");
  support::write_file(v1 / "css/site.css", "body { color: black; }\n");
  const json::value first = stackctl_json({"content", "push", v1.string(), "--wait", "20"});
  LONGS_EQUAL(1, first.at("version").as_int64());
  LONGS_EQUAL(2, first.at("files").as_int64());
  CHECK(first.at("all_nodes_serve").as_bool());
  STRCMP_EQUAL("versions/1", current_link(state_dir).c_str());
  STRCMP_EQUAL("<p>version one</p>\n", support::read_file(state_dir / "content/default/current/index.html").c_str());
  STRCMP_EQUAL("body { color: black; }\n", support::read_file(state_dir / "content/default/current/css/site.css").c_str());
  // Every node stamps the files with the push time, so ETags agree across nodes.
  struct stat stamped {};
  LONGS_EQUAL(0, ::stat((state_dir / "content/default/current/index.html").c_str(), &stamped));
  LONGS_EQUAL(first.at("created_at").as_int64(), stamped.st_mtim.tv_sec);

  const fs::path v2 = dir->path() / "site-v2";
  fs::create_directories(v2);
  support::write_file(v2 / "index.html", "<p>version two</p>\n");
  const json::value second = stackctl_json({"content", "push", v2.string(), "--wait", "20"});
  LONGS_EQUAL(2, second.at("version").as_int64());
  CHECK(!second.at("unchanged").as_bool());
  STRCMP_EQUAL("versions/2", current_link(state_dir).c_str());
  STRCMP_EQUAL("<p>version two</p>\n", support::read_file(state_dir / "content/default/current/index.html").c_str());
  CHECK(!fs::exists(state_dir / "content/default/current/css"));  // a version is whole, not merged
  CHECK(!fs::exists(state_dir / "content/default/versions/0"));   // the factory page is not kept

  // The same files again: nothing new.
  const json::value again = stackctl_json({"content", "push", v2.string()});
  LONGS_EQUAL(2, again.at("version").as_int64());
  CHECK(again.at("unchanged").as_bool());

  // Rollback: the previous version, on the node too.
  const json::value back = stackctl_json({"content", "rollback", "--wait", "20"});
  LONGS_EQUAL(1, back.at("version").as_int64());
  STRCMP_EQUAL("versions/1", current_link(state_dir).c_str());
  STRCMP_EQUAL("<p>version one</p>\n", support::read_file(state_dir / "content/default/current/index.html").c_str());
  const json::value listed = stackctl_json({"content", "list"});
  const json::value& site = listed.at("sites").as_array().at(0);
  STRCMP_EQUAL("default", text_of(site.at("site")).c_str());
  LONGS_EQUAL(1, site.at("current").as_int64());
  LONGS_EQUAL(2, site.at("versions").as_array().size());
  const bool recorded = support::poll_until(
      [&] {
        const json::value answer = stackctl_json({"content", "list"});
        const json::value& nodes = answer.at("sites").as_array().at(0).at("nodes");
        return nodes.as_array().size() == 1 && text_of(nodes.as_array()[0].at("node")) == "sn1" &&
               nodes.as_array()[0].at("version").as_int64() == 1;
      },
      std::chrono::seconds(10));
  CHECK(recorded);

  // Bad pushes are refused with the reason and change nothing.
  const auto error_of = [&](unsigned status, bhttp::verb method, const std::string& target, const std::string& body,
                            const char* what) { return expect(status, as_node(method, target, body), what).error_message(); };
  CHECK(error_of(400, bhttp::verb::post, "/api/v1/content/a*b/uploads", "", "a bad site name").find("site name") !=
        std::string::npos);
  error_of(400, bhttp::verb::post, "/api/v1/content/.hidden/uploads", "", "a site name that is a hidden directory");
  error_of(404, bhttp::verb::put, "/api/v1/content/uploads/feedfeed/chunks/0", "bytes", "an unknown upload");
  const std::string upload =
      text_of(expect(201, as_node(bhttp::verb::post, "/api/v1/content/default/uploads"), "upload").body.at("upload"));
  const std::string chunks = "/api/v1/content/uploads/" + upload + "/chunks/";
  error_of(400, bhttp::verb::put, chunks + "x", "bytes", "a chunk number that is not a number");
  error_of(400, bhttp::verb::put, chunks + "100000", "bytes", "a chunk number over the limit");
  error_of(400, bhttp::verb::put, chunks + "0", "", "an empty chunk");
  const std::string garbage = "SNB1 but nothing after it is right";
  const std::string garbage_sha = sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(garbage.data()), garbage.size()));
  expect(200, as_node(bhttp::verb::put, chunks + "1", garbage), "chunk 1 alone");
  const std::string commit = "/api/v1/content/uploads/" + upload + "/commit";
  CHECK(error_of(400, bhttp::verb::post, commit, R"({"sha256":")" + garbage_sha + R"("})", "a missing chunk 0")
            .find("lacks chunk 0") != std::string::npos);
  expect(200, as_node(bhttp::verb::put, chunks + "0", garbage), "chunk 0");
  CHECK(error_of(400, bhttp::verb::post, commit, R"({"sha256":")" + std::string(64, '0') + R"("})", "a wrong sha256")
            .find("SHA-256") != std::string::npos);
  const std::string both = garbage + garbage;  // chunks 0 and 1 as the commit reads them
  const std::string both_sha = sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(both.data()), both.size()));
  CHECK(error_of(400, bhttp::verb::post, commit, R"({"sha256":")" + both_sha + R"("})", "bytes that are no bundle")
            .find("bundle") != std::string::npos);
  error_of(400, bhttp::verb::post, commit, R"({"sha256":"abc"})", "a sha256 that is not one");
  error_of(404, bhttp::verb::post, "/api/v1/content/default/rollback", R"({"version":9})", "a version not kept");
  error_of(404, bhttp::verb::post, "/api/v1/content/nosite/rollback", "", "a site never pushed");
  const fs::path linked = dir->path() / "site-link";
  fs::create_directories(linked);
  fs::create_symlink("/etc/passwd", linked / "passwd");
  const support::CommandResult refused = stackctl({"content", "push", linked.string()});
  LONGS_EQUAL(1, refused.status);
  CHECK(refused.output.find("passwd") != std::string::npos);
  // Nothing changed: version 1 is still served and the cluster keeps versions 1 and 2.
  const json::value after = stackctl_json({"content", "list"});
  const json::value& still = after.at("sites").as_array().at(0);
  LONGS_EQUAL(1, still.at("current").as_int64());
  LONGS_EQUAL(2, still.at("versions").as_array().size());
  STRCMP_EQUAL("versions/1", current_link(state_dir).c_str());
}

TEST(NodeDaemon, TheCacheServerRunsAsThePrimaryBehindTheEndpoint) {
  // The only node's server is elected primary; the endpoint relays to it with the password.
  const bool answering = support::poll_until(
      [&] { return redis_cli(endpoint_port_, {"SET", "greeting", "hello"}) == "OK"; }, std::chrono::seconds(20));
  if (!answering) FAIL(("the cache endpoint never took a write:\n" + daemon->output()).c_str());
  STRCMP_EQUAL("hello", redis_cli(endpoint_port_, {"GET", "greeting"}).c_str());
  // The server itself wants the cluster's password; its config (which holds it) is root's only.
  CHECK(redis_cli(cache_port_, {"GET", "greeting"}).find("NOAUTH") != std::string::npos);
  struct stat config {};
  LONGS_EQUAL(0, ::stat((state_dir / "cache/redis.conf").c_str(), &config));
  LONGS_EQUAL(0600, config.st_mode & 0777);
  // /metrics: this node's server is the primary and answers.
  const bool reported = support::poll_until(
      [&] {
        const Reply metrics = anonymous(bhttp::verb::get, "/metrics");
        const std::string text = metrics.raw.body();
        return text.find("\nstacknode_cache_role 1") != std::string::npos &&
               text.find("\nstacknode_cache_up 1") != std::string::npos;
      },
      std::chrono::seconds(10));
  CHECK(reported);

  // Supervised: a server that stops is started again, its config written again and 0600 even
  // where the old file had looser bits (O_CREAT keeps an existing file's mode).
  const std::string config_text = support::read_file(state_dir / "cache/redis.conf");
  const std::size_t at = config_text.find("\nrequirepass ");
  CHECK(at != std::string::npos);
  const std::size_t start = at + std::string_view("\nrequirepass ").size();
  const std::string password = config_text.substr(start, config_text.find('\n', start) - start);
  LONGS_EQUAL(0, ::chmod((state_dir / "cache/redis.conf").c_str(), 0644));
  redis_cli(cache_port_, {"-a", password, "--no-auth-warning", "SHUTDOWN", "NOSAVE"});
  const bool restarted = support::poll_until(
      [&] {
        struct stat now {};
        return ::stat((state_dir / "cache/redis.conf").c_str(), &now) == 0 && (now.st_mode & 0777) == 0600 &&
               redis_cli(endpoint_port_, {"PING"}) == "PONG";
      },
      std::chrono::seconds(20));
  if (!restarted) FAIL(("redis-server was not started again with a 0600 config:\n" + daemon->output()).c_str());
  CHECK(daemon->output().find("starting it again") != std::string::npos);
}

TEST(NodeDaemon, AnApiTokenWorksUntilRevoked) {
  const std::string admin_session = session("admin", std::string(admin_password));
  const Reply made = expect(201,
                            with_bearer(admin_session, bhttp::verb::post, "/api/v1/api-tokens",
                                        "{\"description\":\"ci pipeline\"}"),
                            "create API token");
  const std::string token = text_of(made.body.at("token"));
  const std::string id = text_of(made.body.at("id"));
  CHECK(token.starts_with("snt1."));
  STRCMP_EQUAL("admin", text_of(made.body.at("user")).c_str());
  CHECK(made.body.at("expires_at").is_null());  // a script's token does not expire

  const Reply who =
      expect(200, with_bearer(token, bhttp::verb::get, "/api/v1/whoami"), "whoami with API token");
  STRCMP_EQUAL("admin", text_of(who.body.at("principal")).c_str());
  // Listed by id and description, never by its text.
  const Reply list =
      expect(200, with_bearer(token, bhttp::verb::get, "/api/v1/api-tokens"), "list API tokens");
  CHECK(list.raw.body().find(id) != std::string::npos);
  CHECK(list.raw.body().find("ci pipeline") != std::string::npos);
  CHECK(list.raw.body().find(token) == std::string::npos);

  expect(200, with_bearer(admin_session, bhttp::verb::delete_, "/api/v1/api-tokens/" + id),
         "revoke");
  const Reply after = with_bearer(token, bhttp::verb::get, "/api/v1/whoami");
  CHECK_EQUAL(401u, after.status);
  STRCMP_EQUAL("unauthenticated", after.error_kind().c_str());
  // Revoking one token leaves the session that did it working; revoking twice is refused.
  CHECK_EQUAL(200u, with_bearer(admin_session, bhttp::verb::get, "/api/v1/whoami").status);
  CHECK_EQUAL(404u,
              with_bearer(admin_session, bhttp::verb::delete_, "/api/v1/api-tokens/" + id).status);

  // A node holds no tokens of its own: stackctl must name the user.
  CHECK_EQUAL(1, stackctl({"api-token", "create"}).status);
  const json::value for_admin =
      stackctl_json({"api-token", "create", "--user", "admin", "--description", "backup"});
  const Reply scripted =
      expect(200, with_bearer(text_of(for_admin.at("token")), bhttp::verb::get, "/api/v1/whoami"),
             "whoami with stackctl's token");
  STRCMP_EQUAL("admin", text_of(scripted.body.at("principal")).c_str());
}

TEST(NodeDaemon, ABodyThatIsNotTheRightJsonIsRefusedAndChangesNothing) {
  const std::vector<std::string> before = user_names();
  const Reply not_json =
      expect(400, as_node(bhttp::verb::post, "/api/v1/users", "name=ops&password=x"), "not JSON");
  STRCMP_EQUAL("invalid", not_json.error_kind().c_str());
  const Reply number =
      expect(400, as_node(bhttp::verb::post, "/api/v1/users", "{\"name\":5}"), "name a number");
  STRCMP_EQUAL("invalid", number.error_kind().c_str());
  CHECK_EQUAL(400u, as_node(bhttp::verb::post, "/api/v1/users", "[\"ops\"]").status);
  CHECK_EQUAL(
      400u,
      as_node(bhttp::verb::post, "/api/v1/users", "{\"name\":\"ops\"}").status);  // no password
  CHECK_EQUAL(400u, as_node(bhttp::verb::post, "/api/v1/users",
                            "{\"name\":\"ops team\",\"password\":\"a long enough password\"}")
                        .status);  // a space in the name
  CHECK_EQUAL(400u, as_node(bhttp::verb::post, "/api/v1/users",
                            "{\"name\":\"ops\",\"password\":\"a long enough password\"")
                        .status);  // cut short
  CHECK_EQUAL(400u, as_node(bhttp::verb::get, "/api/v1/users?limit=0").status);
  CHECK_EQUAL(400u, as_node(bhttp::verb::get, "/api/v1/users?limit=x").status);
  CHECK(user_names() == before);
}

TEST(NodeDaemon, TheAuditLogPagesNewestFirstAndNamesTheActor) {
  const std::string admin_session =
      session("admin", std::string(admin_password));  // audited: user.login
  LONGS_EQUAL(0, stackctl({"setting", "set", "by_node", "1"}).status);
  expect(200,
         with_bearer(admin_session, bhttp::verb::put, "/api/v1/settings/by_admin",
                     "{\"value\":\"2\"}"),
         "setting by admin");

  const Reply first =
      expect(200, as_node(bhttp::verb::get, "/api/v1/audit?limit=2"), "audit page 1");
  const json::array& newest = first.body.at("items").as_array();
  CHECK_EQUAL(2u, newest.size());
  STRCMP_EQUAL("admin", text_of(newest.at(0).at("actor")).c_str());
  STRCMP_EQUAL("setting.put", text_of(newest.at(0).at("action")).c_str());
  STRCMP_EQUAL("by_admin", text_of(newest.at(0).at("target")).c_str());
  STRCMP_EQUAL("node:sn1", text_of(newest.at(1).at("actor")).c_str());
  STRCMP_EQUAL("by_node", text_of(newest.at(1).at("target")).c_str());
  CHECK(newest.at(0).at("id").as_int64() > newest.at(1).at("id").as_int64());
  const json::value& next = first.body.at("next");
  CHECK(next.is_string());

  const Reply second = expect(
      200, as_node(bhttp::verb::get, "/api/v1/audit?limit=2&after=" + text_of(next)), "page 2");
  const json::array& older = second.body.at("items").as_array();
  CHECK(!older.empty());
  CHECK(older.at(0).at("id").as_int64() < newest.at(1).at("id").as_int64());
  STRCMP_EQUAL("user.login", text_of(older.at(0).at("action")).c_str());
  STRCMP_EQUAL("admin", text_of(older.at(0).at("actor")).c_str());

  // Following `next` to the end visits every entry once, newest first: init's two, the login,
  // the two settings.
  std::vector<std::int64_t> ids;
  std::string after;
  for (int page = 0; page < 10; ++page) {
    const Reply reply =
        expect(200,
               as_node(bhttp::verb::get,
                       "/api/v1/audit?limit=2" + (after.empty() ? "" : "&after=" + after)),
               "audit page");
    for (const json::value& item : reply.body.at("items").as_array())
      ids.push_back(item.at("id").as_int64());
    if (reply.body.at("next").is_null()) break;
    after = text_of(reply.body.at("next"));
  }
  CHECK_EQUAL(5u, ids.size());
  CHECK(std::is_sorted(ids.rbegin(), ids.rend()));
  CHECK_EQUAL(ids.size(), std::set<std::int64_t>(ids.begin(), ids.end()).size());

  // stackctl shows the same log.
  const json::value shown = stackctl_json({"audit", "--limit", "1"});
  CHECK_EQUAL(ids.front(), shown.at("items").at(0).at("id").as_int64());
}

// stackctl node update: a new name and API address, through the box's own stacknoded. The row
// and the audit log say so; the old certificate is refused from then on; the new one (in pki/,
// where the restarted daemon serves with it) is accepted. Only the node itself may ask.
TEST(NodeDaemon, NodeUpdateGivesANewCertificateAndRevokesTheOldOne) {
  const std::string admin_session = session("admin", std::string(admin_password));
  const json::object csr_body{{"csr", "not a CSR"}, {"name", "box1"}};
  expect(403, with_bearer(admin_session, bhttp::verb::post, "/api/v1/nodes/sn1/certificate", json::serialize(csr_body)),
         "a user asking for a node's certificate");
  CHECK_EQUAL(400u, as_node(bhttp::verb::post, "/api/v1/nodes/sn1/certificate", json::serialize(csr_body)).status);
  CHECK_EQUAL(1, stackctl({"node", "update", "--api-address", "not-an-address"}).status);
  // The only database voter cannot move its database: refused before anything changed.
  const support::CommandResult alone = stackctl({"node", "update", "--db-address", "127.0.0.1:9"});
  CHECK_EQUAL(1, alone.status);
  CHECK_TEXT(alone.output.find("only database voter") != std::string::npos, alone.output.c_str());
  CHECK_EQUAL(200u, as_node(bhttp::verb::get, "/api/v1/whoami").status);  // the old certificate still works

  const std::string new_api = "127.0.0.1:9";  // advertised only; stacknoded listens where node.cfg says
  const json::value updated = stackctl_json({"node", "update", "--name", "box1", "--api-address", new_api});
  STRCMP_EQUAL("box1", text_of(updated.at("name")).c_str());
  STRCMP_EQUAL("sn1", text_of(updated.at("previous_name")).c_str());
  STRCMP_EQUAL(new_api.c_str(), text_of(updated.at("api_address")).c_str());

  // stacknoded starts its run again with the new certificate. Until the old run notices (within
  // 0.5 s) it still serves, and the new certificate already authenticates there; so first wait
  // for the new run's start line, then for it to answer.
  const bool restarted = support::poll_until(
      [&] { return daemon->output().find("node box1 (id ") != std::string::npos; }, daemon_ready_timeout);
  CHECK_TEXT(restarted, ("stacknoded did not start again as box1:\n" + daemon->output()).c_str());
  Reply old_answer;
  support::poll_until(
      [&] {
        old_answer = as_node(bhttp::verb::get, "/api/v1/nodes");
        return old_answer.reached && old_answer.status != 503;  // 503: its database restarting
      },
      daemon_ready_timeout);
  const Reply old_refused = expect(401, old_answer, "the old certificate");
  STRCMP_EQUAL("not_a_member", old_refused.error_kind().c_str());
  const pki::Credentials fresh{support::read_file(state_dir / "pki" / "node.crt"),
                               support::read_file(state_dir / "pki" / "node.key")};
  CHECK(fresh.certificate_pem != node_credentials.certificate_pem);
  // The box's stacknode-db starts again too (db-tls/ changed): a request may meet it restarting.
  const auto served = [&](const std::string& target) {
    Reply reply;
    const bool answered = support::poll_until(
        [&] {
          reply = request(bhttp::verb::get, target, "", "", &fresh);
          return reply.reached && reply.status == 200;
        },
        daemon_ready_timeout);
    CHECK_TEXT(answered, ("the new certificate is not served: " + reply.error + reply.raw.body()).c_str());
    return reply;
  };
  const Reply nodes = served("/api/v1/nodes");
  const json::value& row = nodes.body.at("items").at(0);
  STRCMP_EQUAL("box1", text_of(row.at("name")).c_str());
  STRCMP_EQUAL(new_api.c_str(), text_of(row.at("api_address")).c_str());
  const Reply whoami = served("/api/v1/whoami");
  STRCMP_EQUAL("node:box1", text_of(whoami.body.at("principal")).c_str());

  const Reply audit = served("/api/v1/audit?limit=1");
  const json::value& entry = audit.body.at("items").at(0);
  STRCMP_EQUAL("node:sn1", text_of(entry.at("actor")).c_str());
  STRCMP_EQUAL("node.update", text_of(entry.at("action")).c_str());
  STRCMP_EQUAL("box1", text_of(entry.at("target")).c_str());
}

TEST(NodeDaemon, ANodeDoesNotRemoveItself) {
  const Reply refused =
      expect(409, as_node(bhttp::verb::delete_, "/api/v1/nodes/sn1"), "remove itself");
  STRCMP_EQUAL("conflict", refused.error_kind().c_str());
  CHECK_EQUAL(1, stackctl({"cluster", "remove", "sn1"}).status);
  CHECK_EQUAL(404u, as_node(bhttp::verb::delete_, "/api/v1/nodes/sn9").status);
  const Reply nodes = expect(200, as_node(bhttp::verb::get, "/api/v1/nodes"), "nodes");
  CHECK(names_in(nodes.body) == std::vector<std::string>{"sn1"});
  // Still a member: its certificate still authenticates.
  CHECK_EQUAL(200u, as_node(bhttp::verb::get, "/api/v1/whoami").status);
}

TEST(NodeDaemon, TheHeartbeatAdvancesLastSeen) {
  const auto last_seen = [&]() -> std::optional<std::int64_t> {
    const Reply reply = as_node(bhttp::verb::get, "/api/v1/nodes");
    if (!reply.reached || reply.status != 200) return std::nullopt;
    const json::value& seen = reply.body.at("items").at(0).at("last_seen");
    if (!seen.is_int64()) return std::nullopt;
    return seen.as_int64();
  };
  std::optional<std::int64_t> first;
  if (!support::poll_until([&] { return (first = last_seen()).has_value(); },
                           first_heartbeat_wait)) {
    FAIL(("no heartbeat written:\n" + daemon->output()).c_str());
  }
  std::optional<std::int64_t> later;
  const bool advanced = support::poll_until(
      [&] {
        later = last_seen();
        return later && *later > *first;
      },
      heartbeat_wait);
  if (!advanced)
    FAIL(("last_seen stayed at " + std::to_string(*first) + ":\n" + daemon->output()).c_str());
}

TEST(NodeDaemon, SigtermStopsTheDaemonCleanly) {
  daemon->signal(SIGTERM);
  const std::optional<int> status = daemon->wait(stop_timeout);
  CHECK(status.has_value());
  CHECK_EQUAL(0, *status);
  CHECK_FALSE(anonymous(bhttp::verb::get, "/healthz").reached);
}
