// Component test of `stackctl cluster init` (services/node/ops/init.hpp, and the stackctl binary
// around it) against a real stacknode-db process that waits for its identity file: init writes
// the PKI and the identity, the database bootstraps, and the control database holds the cluster,
// the node, the admin and the join token's hash; the token carries the CA's pin. A second init, a
// bad password and an unreachable database each fail at their step and leave nothing behind; the
// command line prints the token (text and --json) and keeps its exit statuses (0, 1, 2).
#include <CppUTest/TestHarness.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <boost/json.hpp>

#include <memory>
#include <sstream>
#include <string>

#include "net.hpp"
#include "process.hpp"
#include "stacknode/db/client.hpp"
#include "stacknode/node/credentials.hpp"
#include "stacknode/node/init.hpp"
#include "stacknode/node/join_token.hpp"
#include "stacknode/node/pki.hpp"
#include "stacknode/node/state_files.hpp"

using namespace stacknode;
using namespace stacknode::node;
namespace fs = std::filesystem;
namespace support = stacknode::test;

namespace {

constexpr std::chrono::milliseconds unreachable_db_timeout{2'000};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The value of `outcome` (taken by value: never a reference into a temporary), or the test fails.
template <typename T>
T ok(db::Outcome<T> outcome, const char* what) {
  if (!outcome) FAIL((std::string(what) + ": " + outcome.error().message).c_str());
  return std::move(outcome.value());
}

}  // namespace

TEST_GROUP(ClusterInit) {
  std::unique_ptr<support::TempDir> dir;
  std::unique_ptr<support::Process> db;
  InitOptions options;

  void setup() override {
    std::signal(SIGPIPE, SIG_IGN);
    dir = std::make_unique<support::TempDir>();
    options.cluster_name = "rack-a";
    options.node_name = "sn1";
    options.api_address = "127.0.0.1:8443";
    options.db_address = support::loopback_address(support::unused_port());
    options.state_dir = dir->path() / "state";
    options.db_identity_file = dir->path() / "db-identity.cfg";
    fs::create_directories(options.state_dir);
  }
  void teardown() override {
    db.reset();
    dir.reset();
  }
  // A stacknode-db without node_id: it waits for the identity file init writes.
  void start_db() {
    const fs::path base = dir->path();
    support::write_file(base / "db.cfg",
                        "paths: { runtime_dir = \"" + (base / "run").string() + "\"; };\n"
                        "db: { address = \"" + options.db_address + "\"; data_dir = \"" + (base / "data").string() +
                            "\"; identity_file = \"" + options.db_identity_file.string() +
                            "\"; listen_http = \"127.0.0.1:" + std::to_string(support::unused_port()) + "\"; };\n");
    db = std::make_unique<support::Process>(
        std::vector<std::string>{(support::binary_dir() / "stacknode-db").string(), "--config", (base / "db.cfg").string()},
        base / "db.log");
  }
  // node.cfg for stackctl: this box's node section, the db section stacknode-db reads too.
  fs::path write_node_cfg(const std::string& node_section) {
    const fs::path cfg = dir->path() / "node.cfg";
    support::write_file(cfg, "paths: { state_dir = \"" + options.state_dir.string() + "\"; };\n" + node_section +
                                 "db: { address = \"" + options.db_address + "\"; identity_file = \"" +
                                 options.db_identity_file.string() + "\"; };\n");
    return cfg;
  }
  support::CommandResult stackctl(std::vector<std::string> args) {
    args.insert(args.begin(), (support::binary_dir() / "stackctl").string());
    return support::run_command(args);
  }
  // Nothing of init is left: no pki/, no staging, no identity file, no db TLS files.
  void check_nothing_left() {
    CHECK_FALSE(fs::exists(db_tls_dir(options.state_dir)));
    CHECK_FALSE(fs::exists(options.state_dir / "pki"));
    CHECK_FALSE(fs::exists(options.state_dir / "pki.staging"));
    CHECK_FALSE(fs::exists(options.db_identity_file));
  }
};

TEST(ClusterInit, MakesTheFirstMemberAndAJoinTokenForTheNext) {
  start_db();
  const auto now = std::chrono::system_clock::now();
  const InitResult result = init_cluster(options, now);
  if (!result.ok()) FAIL((result.failed_step + ": " + result.error + "\n" + db->output()).c_str());
  CHECK_EQUAL(20u, result.admin_password.size());  // generated, shown once

  // The PKI: node.crt is the node's certificate then the CA's; it verifies against ca.crt.
  const std::string ca_pem = read_text(options.state_dir / "pki" / "ca.crt");
  const std::string node_pem = read_text(options.state_dir / "pki" / "node.crt");
  CHECK(node_pem.ends_with(ca_pem));
  pki::Made<pki::CertificateInfo> node = pki::verify_node_certificate(ca_pem, node_pem, now);
  if (!node.ok()) FAIL(node.error.c_str());
  STRCMP_EQUAL("sn1", node.value->node_name.c_str());
  CHECK(node.value->ip_addresses == std::vector<std::string>{"127.0.0.1"});
  CHECK((fs::status(options.state_dir / "pki" / "node.key").permissions() & fs::perms::others_read) == fs::perms::none);

  // The token: this cluster's pin and id, this node's API address, an hour to live.
  const TokenParse parsed = parse_join_token(result.join_token);
  if (!parsed.ok()) FAIL(parsed.message.c_str());
  const JoinToken& token = *parsed.token;
  CHECK(token.ca_pin == *pki::public_key_pin(ca_pem).value);
  STRCMP_EQUAL(result.cluster_id.c_str(), to_hex(token.cluster_id).c_str());
  CHECK(token.addresses == std::vector<std::string>{"127.0.0.1:8443"});
  const auto now_seconds = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  CHECK_EQUAL(static_cast<std::uint64_t>(now_seconds + 3600), token.expires_at);

  // The control database, read back through the db client.
  db::ClientOptions client_options;
  client_options.addresses = {options.db_address};
  std::string tls_problem;
  client_options.tls = db::TlsContext::from_dir(db::TlsContext::Side::client,
                                                db_tls_dir(options.state_dir).string(), tls_problem);
  if (!client_options.tls) FAIL(tls_problem.c_str());
  db::Client client(client_options);
  const auto one = [&](const std::string& sql) {
    const db::wire::RowSet rows = ok(client.query("cluster", sql), sql.c_str());
    CHECK_EQUAL(1u, rows.rows.size());
    return rows.rows.at(0);
  };
  CHECK(one("SELECT cluster_id, name, ca_certificate FROM cluster") ==
        (db::wire::Row{result.cluster_id, std::string("rack-a"), ca_pem}));
  CHECK(one("SELECT id, name, api_address, db_address FROM nodes") ==
        (db::wire::Row{std::int64_t{1}, std::string("sn1"), std::string("127.0.0.1:8443"), options.db_address}));
  CHECK(init_credentials());
  const std::string password_hash = std::get<std::string>(one("SELECT password_hash FROM users WHERE name = 'admin'").at(0));
  CHECK(verify_password(result.admin_password, password_hash));
  CHECK(one("SELECT id, secret_hash, used_at FROM join_tokens") ==
        (db::wire::Row{token_id(token.secret), secret_hash(token.secret), db::wire::Null{}}));
  CHECK(one("SELECT count(*) FROM audit_log WHERE action IN ('cluster.init', 'token.create')") ==
        (db::wire::Row{std::int64_t{2}}));

  // A second init on this box is refused at the check, and changes nothing.
  const InitResult again = init_cluster(options, now);
  STRCMP_EQUAL("check", again.failed_step.c_str());
  if (again.error.find("already a cluster member") == std::string::npos) FAIL(again.error.c_str());
  CHECK(read_text(options.state_dir / "pki" / "ca.crt") == ca_pem);
  CHECK(one("SELECT count(*) FROM nodes") == (db::wire::Row{std::int64_t{1}}));
}

TEST(ClusterInit, ABadPasswordOrAddressIsRefusedBeforeAnythingIsWritten) {
  options.admin_password = "short";
  const InitResult weak = init_cluster(options, std::chrono::system_clock::now());
  STRCMP_EQUAL("check", weak.failed_step.c_str());
  if (weak.error.find("too short") == std::string::npos) FAIL(weak.error.c_str());
  check_nothing_left();
  options.admin_password = "a long enough password";
  options.api_address = "sn1.example:8443";
  const InitResult named = init_cluster(options, std::chrono::system_clock::now());
  STRCMP_EQUAL("check", named.failed_step.c_str());
  check_nothing_left();
}

TEST(ClusterInit, AnUnreachableDatabaseUndoesWhatInitWrote) {
  options.db_timeout = unreachable_db_timeout;  // no stacknode-db runs
  const InitResult result = init_cluster(options, std::chrono::system_clock::now());
  STRCMP_EQUAL("database", result.failed_step.c_str());
  if (result.error.find("did not elect itself") == std::string::npos) FAIL(result.error.c_str());
  check_nothing_left();
}

TEST(ClusterInit, TheCommandLinePrintsTheTokenAndKeepsItsExitStatuses) {
  start_db();
  const fs::path cfg = write_node_cfg("node: { name = \"sn1\"; api_address = \"127.0.0.1:8443\"; };\n");
  const support::CommandResult made = stackctl({"--config", cfg.string(), "--json", "cluster", "init", "--name", "rack-a",
                                                "--admin-password", "a long enough password"});
  LONGS_EQUAL_TEXT(0, made.status, made.output.c_str());
  const boost::json::value printed = boost::json::parse(made.output);
  STRCMP_EQUAL("rack-a", printed.at("cluster_name").as_string().c_str());
  CHECK_FALSE(printed.as_object().contains("admin_password"));  // it was given, so not shown
  const TokenParse token = parse_join_token(std::string(printed.at("join_token").as_string()));
  if (!token.ok()) FAIL(token.message.c_str());
  CHECK(fs::exists(options.state_dir / "pki" / "node.crt"));

  const support::CommandResult again = stackctl({"--config", cfg.string(), "cluster", "init", "--name", "rack-a"});
  CHECK_EQUAL(1, again.status);
  if (again.output.find("failed at step 'check'") == std::string::npos) FAIL(again.output.c_str());

  const support::CommandResult unnamed = stackctl({"--config", cfg.string(), "cluster", "init"});
  CHECK_EQUAL(2, unnamed.status);
  if (unnamed.output.find("--name is required") == std::string::npos) FAIL(unnamed.output.c_str());
  CHECK_EQUAL(2, stackctl({"cluster", "frobnicate"}).status);
  CHECK_EQUAL(0, stackctl({"cluster", "init", "--help"}).status);
}

TEST(ClusterInit, ANodeCfgWithoutTheNodeSectionIsAUsageErrorNamingTheKey) {
  const fs::path cfg = write_node_cfg("");
  const support::CommandResult refused = stackctl({"--config", cfg.string(), "cluster", "init", "--name", "rack-a"});
  CHECK_EQUAL(2, refused.status);
  if (refused.output.find("node.name") == std::string::npos) FAIL(refused.output.c_str());
  check_nothing_left();
}
