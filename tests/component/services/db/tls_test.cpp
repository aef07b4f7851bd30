// Component test of mutual TLS on stacknode-db's wire port (services/db/src/tls_gateway.hpp),
// with real processes on loopback and certificates from the cluster PKI (stacknode_node_core):
// three nodes with db.tls_dir form one cluster and replicate (Raft runs through the gateways);
// our client with a cluster certificate is served; a plain-TCP client, a client with another
// CA's certificate, and a client whose serial is in the nodes' revoked file get nothing (and a
// revoked client's open connection is cut); a client refuses a node whose certificate does not
// name the address it dialled; connections beyond the gateway's cap are refused without harm.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "db_process.hpp"
#include "net.hpp"
#include "process.hpp"
#include "stacknode/db/connection.hpp"
#include "stacknode/db/tls.hpp"
#include "stacknode/node/pki.hpp"
#include "tls_gateway.hpp"

#include <CppUTest/TestHarness.h>

namespace fs = std::filesystem;
namespace support = stacknode::test;
namespace db = stacknode::db;
namespace pki = stacknode::node::pki;

namespace {

constexpr std::chrono::seconds certificate_validity{std::chrono::hours(24)};
constexpr std::chrono::milliseconds request_timeout{5'000};
constexpr std::uint64_t client_serial = 900;  // the test's own client certificate
constexpr int node_count = 3;

template <typename T>
T made(pki::Made<T> result, const char* what) {
  if (!result.ok()) FAIL((std::string(what) + ": " + result.error).c_str());
  return *result.value;
}

// A CA and certificates it signs for `ip` (the IP SAN a client checks).
struct Authority {
  pki::Credentials ca;
  explicit Authority(const std::string& name)
      : ca(made(pki::create_cluster_ca(name, certificate_validity, std::chrono::system_clock::now()), "CA")) {}

  db::TlsCredentials issue(const std::string& node, const std::string& ip, std::uint64_t serial) const {
    const std::string key = made(pki::generate_private_key(), "key");
    const std::string csr = made(pki::create_csr(key, node), "csr");
    const std::string certificate = made(
        pki::sign_node_certificate(ca, csr, {node, {ip}, serial, certificate_validity}, std::chrono::system_clock::now()),
        "certificate");
    return {ca.certificate_pem, certificate + ca.certificate_pem, key};
  }

  // ca.crt, node.crt and node.key in `dir`, as stackctl writes db-tls/.
  void write_dir(const fs::path& dir, const db::TlsCredentials& credentials) const {
    fs::create_directories(dir);
    support::write_file(dir / "ca.crt", credentials.ca_pem);
    support::write_file(dir / "node.crt", credentials.certificate_pem);
    support::write_file(dir / "node.key", credentials.key_pem);
  }
};

std::shared_ptr<const db::TlsContext> client_context(const db::TlsCredentials& credentials) {
  std::string error;
  std::shared_ptr<const db::TlsContext> context =
      db::TlsContext::make(db::TlsContext::Side::client, credentials, error);
  if (!context) FAIL(error.c_str());
  return context;
}

// One LEADER request on a new connection: the leader's address, or the error's message.
std::string ask_leader(const std::string& address, const db::TlsContext* tls) {
  db::Outcome<db::Connection> connection = db::Connection::open(address, request_timeout, tls);
  if (!connection) return "error: " + connection.error().message;
  db::Outcome<db::wire::Node> leader = connection->leader();
  if (!leader) return "error: " + leader.error().message;
  return leader->address;
}

}  // namespace

TEST_GROUP(StacknodeDbTls) {
  std::unique_ptr<support::TempDir> dir;
  std::unique_ptr<Authority> authority;
  std::vector<std::unique_ptr<support::DbNodeProcess>> nodes;
  std::shared_ptr<const db::TlsContext> client;

  fs::path tls_dir(int id) const { return dir->path() / ("tls" + std::to_string(id)); }

  void setup() override {
    dir = std::make_unique<support::TempDir>();
    authority = std::make_unique<Authority>("tls-test");
    for (int id = 1; id <= node_count; ++id) {
      authority->write_dir(tls_dir(id), authority->issue("db" + std::to_string(id), "127.0.0.1", id));
      const std::string join = id == 1 ? "" : nodes[0]->dqlite_address();
      nodes.push_back(std::make_unique<support::DbNodeProcess>(dir->path(), id, join, false,
                                                               "  tls_dir = \"" + tls_dir(id).string() + "\";\n"));
      nodes.back()->wait_until_serving();
    }
    client = client_context(authority->issue("tester", "127.0.0.1", client_serial));
  }
  void teardown() override {
    nodes.clear();
    dir.reset();
  }
};

// Raft between the nodes runs through their gateways: a row written through one node's API is
// read through every other's, and all three are voters of one cluster.
TEST(StacknodeDbTls, ThreeNodesFormOneClusterAndReplicateOverTls) {
  const support::json::value listed = support::ok_json(nodes[2]->http("GET", "/db/nodes"), "nodes");
  CHECK_EQUAL(3u, listed.at("nodes").as_array().size());
  support::ok_json(nodes[1]->http("POST", "/db/execute",
                                  R"J({"database":"app","statements":[{"sql":"CREATE TABLE t (v TEXT)"},)J"
                                  R"J({"sql":"INSERT INTO t VALUES ('over tls')"}]})J"),
                   "write");
  for (const auto& node : nodes) {
    const support::json::value rows = support::ok_json(
        node->http("POST", "/db/query", R"({"database":"app","sql":"SELECT v FROM t"})"), "query");
    CHECK(rows.at("rows") == support::json::parse(R"([["over tls"]])"));
  }
  // Our client with a cluster certificate is served by every node.
  for (const auto& node : nodes) {
    const std::string leader = ask_leader(node->dqlite_address(), client.get());
    CHECK_TEXT(leader.rfind("error", 0) != 0, leader.c_str());
  }
}

TEST(StacknodeDbTls, APlainTcpClientGetsNothing) {
  const std::string answer = ask_leader(nodes[0]->dqlite_address(), nullptr);
  CHECK_TEXT(answer.rfind("error: ", 0) == 0, ("a plain client was answered: " + answer).c_str());
}

TEST(StacknodeDbTls, ACertificateOfAnotherCaIsRefused) {
  const Authority stranger("stranger");
  db::TlsCredentials foreign = stranger.issue("intruder", "127.0.0.1", 1);
  foreign.ca_pem = authority->ca.certificate_pem;  // it trusts the cluster; the cluster does not trust it
  const std::string answer = ask_leader(nodes[0]->dqlite_address(), client_context(foreign).get());
  CHECK_TEXT(answer.rfind("error: ", 0) == 0, ("another CA's certificate was served: " + answer).c_str());
}

// The nodes re-read tls_dir/revoked: a revoked client is refused, and its open connection is cut.
TEST(StacknodeDbTls, ARevokedCertificateIsRefusedAndItsOpenConnectionCut) {
  db::Outcome<db::Connection> open = db::Connection::open(nodes[0]->dqlite_address(), request_timeout, client.get());
  if (!open) FAIL(open.error().message.c_str());
  if (db::Outcome<db::wire::Node> leader = open->leader(); !leader) FAIL(leader.error().message.c_str());

  for (int id = 1; id <= node_count; ++id) {
    support::write_file(tls_dir(id) / "revoked.tmp", "17\n" + std::to_string(client_serial) + "\n");
    fs::rename(tls_dir(id) / "revoked.tmp", tls_dir(id) / std::string(db::revoked_file_name));
  }
  const bool cut = support::poll_until([&] { return !open->leader(); }, support::db_eventually);
  CHECK_TEXT(cut, "the revoked client's open connection still answers");
  for (const auto& node : nodes) {
    const std::string answer = ask_leader(node->dqlite_address(), client.get());
    CHECK_TEXT(answer.rfind("error: ", 0) == 0, ("a revoked certificate was served: " + answer).c_str());
  }
  // The nodes' own certificates are not revoked: the cluster still replicates.
  support::ok_json(nodes[2]->http("POST", "/db/execute",
                                  R"J({"database":"app","statements":[{"sql":"CREATE TABLE after (v)"}]})J"),
                   "write after a revocation");
}

// A node whose certificate names another address: our client refuses it in the handshake.
TEST(StacknodeDbTls, AClientRefusesANodeWhoseCertificateNamesAnotherAddress) {
  const fs::path wrong_dir = dir->path() / "tls-wrong";
  authority->write_dir(wrong_dir, authority->issue("db9", "127.0.0.9", 9));
  support::DbNodeProcess wrong(dir->path() / "wrong", 1, "", false, "  tls_dir = \"" + wrong_dir.string() + "\";\n");
  std::string answer;
  const bool listening = support::poll_until(
      [&] {
        answer = ask_leader(wrong.dqlite_address(), client.get());
        return answer.find("refused") == std::string::npos || answer.find("certificate refused") != std::string::npos;
      },
      support::db_eventually);
  CHECK_TEXT(listening, answer.c_str());
  CHECK_TEXT(answer.find("certificate refused") != std::string::npos, ("not refused for its name: " + answer).c_str());
}

// Silent connections that never finish a handshake fill the gateway up to its cap: the next
// connection is refused (not a crash), and the node serves again once they are gone.
TEST(StacknodeDbTls, ConnectionsBeyondTheCapAreRefusedAndTheNodeServesAgainAfter) {
  const db::Endpoint endpoint = *db::parse_endpoint(nodes[0]->dqlite_address());
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(endpoint.port);
  ::inet_pton(AF_INET, endpoint.host.c_str(), &target.sin_addr);
  std::vector<int> silent;
  for (std::size_t index = 0; index < db::max_gateway_connections; ++index) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
      if (fd >= 0) ::close(fd);
      break;
    }
    silent.push_back(fd);
  }
  CHECK_EQUAL(db::max_gateway_connections, silent.size());
  std::string answer;
  const bool refused = support::poll_until(
      [&] {
        answer = ask_leader(nodes[0]->dqlite_address(), client.get());
        return answer.rfind("error: ", 0) == 0;
      },
      support::db_eventually);
  CHECK_TEXT(refused, ("served beyond the cap: " + answer).c_str());
  for (const int fd : silent) ::close(fd);
  const bool served = support::poll_until(
      [&] {
        answer = ask_leader(nodes[0]->dqlite_address(), client.get());
        return answer.rfind("error: ", 0) != 0;
      },
      support::db_eventually);
  CHECK_TEXT(served, ("not served again after the silent connections went: " + answer).c_str());
  CHECK(nodes[0]->process().running());
}
