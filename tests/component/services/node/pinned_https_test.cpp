// Component test of the pinned HTTPS request (services/node/net/pinned_https.hpp), join step 3:
// a real TLS server (services/common's http::Server) on 127.0.0.1 with certificates made by our
// PKI, and the request made against a pin. The request must reach the member only when the
// chain carries the pinned CA and the member's certificate was issued by it: the server's own
// request count shows that nothing was sent otherwise.
#include <CppUTest/TestHarness.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "net.hpp"
#include "process.hpp"
#include "stacknode/common/http_server.hpp"
#include "stacknode/common/metrics.hpp"
#include "stacknode/common/tls.hpp"
#include "stacknode/node/pinned_https.hpp"
#include "stacknode/node/pki.hpp"

using namespace stacknode;
using namespace stacknode::node;
namespace fs = std::filesystem;

namespace {

constexpr std::chrono::milliseconds request_timeout{10'000};
constexpr std::chrono::seconds validity{std::chrono::hours(24)};
const auto now = std::chrono::system_clock::now();

class CountingHandler : public http::Handler {
 public:
  std::atomic<int> requests{0};
  void handle(const http::RequestContext&, http::Request& request, http::Respond respond) override {
    ++requests;
    respond(http::text_response(bhttp::status::ok, request.version(), "member says hello"));
  }
};

pki::Credentials make_ca(const std::string& name) {
  pki::Made<pki::Credentials> ca = pki::create_cluster_ca(name, validity, now);
  if (!ca.ok()) FAIL(ca.error.c_str());
  return *ca.value;
}

// A node certificate for 127.0.0.1 signed by `ca`, and its key.
pki::Credentials make_member(const pki::Credentials& ca, std::uint64_t serial) {
  pki::Made<std::string> key = pki::generate_private_key();
  if (!key.ok()) FAIL(key.error.c_str());
  pki::Made<std::string> csr = pki::create_csr(*key.value, "member");
  if (!csr.ok()) FAIL(csr.error.c_str());
  pki::Made<std::string> certificate =
      pki::sign_node_certificate(ca, *csr.value, {"member", {"127.0.0.1"}, serial, validity}, now);
  if (!certificate.ok()) FAIL(certificate.error.c_str());
  return {*certificate.value, *key.value};
}

pki::Pin pin_of(const pki::Credentials& ca) { return *pki::public_key_pin(ca.certificate_pem).value; }

bhttp::request<bhttp::string_body> join_request() {
  bhttp::request<bhttp::string_body> request{bhttp::verb::post, "/api/v1/join/prepare", 11};
  request.set(bhttp::field::host, "member");
  request.body() = R"({"secret":"would be secret"})";
  return request;
}

}  // namespace

TEST_GROUP(PinnedHttps) {
  test::TempDir dir;
  CountingHandler handler;
  metrics::Registry registry;
  std::unique_ptr<http::Server> server;
  std::thread runner;
  pki::Credentials cluster_ca;
  pki::Credentials other_ca;

  void setup() override {
    cluster_ca = make_ca("rack-a");
    other_ca = make_ca("rack-b");
  }
  void teardown() override {
    if (server) {
      server->stop();
      if (runner.joinable()) runner.join();
      server.reset();
    }
  }

  // Serves TLS with `leaf` and the chain file holding `leaf` then `chain_extra` (PEM, may be "").
  void serve(const pki::Credentials& leaf, const std::string& chain_extra) {
    const fs::path chain_file = dir.path() / "chain.pem";
    const fs::path key_file = dir.path() / "key.pem";
    std::ofstream(chain_file) << leaf.certificate_pem << chain_extra;
    std::ofstream(key_file) << leaf.private_key_pem;
    auto tls = std::make_shared<http::TlsContext>(chain_file.string(), key_file.string());
    http::ServerOptions options;
    options.listeners.push_back(http::Listener{test::loopback_address(0), true});
    server = std::make_unique<http::Server>(std::move(options), handler, registry, tls);
    server->bind();
    runner = std::thread([this] { server->run(false); });
  }
  std::string address() const { return test::loopback_address(server->bound_endpoints().at(0).port()); }
  // The join request against the cluster's pin, as a joiner at time `at` makes it.
  PinnedAnswer ask(std::chrono::system_clock::time_point at = now) {
    return pinned_https_request(address(), pin_of(cluster_ca), join_request(), at, request_timeout);
  }
  // Refused at `step`, with `fragment` in the message, and nothing reached the server.
  void check_refused(const PinnedAnswer& answer, PinnedStep step, const std::string& fragment) {
    STRCMP_EQUAL(std::string(to_string(step)).c_str(), std::string(to_string(answer.failed)).c_str());
    if (answer.error.find(fragment) == std::string::npos) FAIL(answer.error.c_str());
    CHECK_EQUAL(0, handler.requests.load());
  }
};

TEST(PinnedHttps, AMemberOfThePinnedClusterGetsTheRequest) {
  serve(make_member(cluster_ca, 7), cluster_ca.certificate_pem);
  const PinnedAnswer answer = ask();
  if (!answer.ok()) FAIL(answer.error.c_str());
  CHECK_EQUAL(200, answer.response.result_int());
  STRCMP_EQUAL("member says hello", answer.response.body().c_str());
  CHECK_EQUAL(pki::to_hex(pin_of(cluster_ca)), pki::to_hex(*pki::public_key_pin(answer.ca_certificate_pem).value));
  STRCMP_EQUAL("member", answer.member.node_name.c_str());
  CHECK_EQUAL(7u, answer.member.serial);
  CHECK_EQUAL(1, handler.requests.load());
}

TEST(PinnedHttps, AnotherClusterGetsNothing) {
  serve(make_member(other_ca, 7), other_ca.certificate_pem);
  check_refused(ask(), PinnedStep::pin, "not the cluster the token is for");
}

TEST(PinnedHttps, AStrangerShowingTheClusterCaGetsNothing) {
  // Its own certificate is from another CA; it copies the pinned CA's certificate into its chain.
  serve(make_member(other_ca, 7), cluster_ca.certificate_pem);
  check_refused(ask(), PinnedStep::chain, "not one the pinned CA issued");
}

TEST(PinnedHttps, AMemberThatShowsNoCaGetsNothing) {
  serve(make_member(cluster_ca, 7), "");
  check_refused(ask(), PinnedStep::pin, "no CA certificate it presented");
}

TEST(PinnedHttps, AnExpiredMemberCertificateGetsNothing) {
  serve(make_member(cluster_ca, 7), cluster_ca.certificate_pem);
  check_refused(ask(now + validity + std::chrono::hours(1)), PinnedStep::chain, "expired");
}

TEST(PinnedHttps, NothingListeningAndBadAddressesAreTheirOwnSteps) {
  const PinnedAnswer refused = pinned_https_request(test::loopback_address(test::unused_port()), pin_of(cluster_ca),
                                                    join_request(), now, request_timeout);
  CHECK(refused.failed == PinnedStep::connect);
  const PinnedAnswer bad = pinned_https_request("member-1:8443", pin_of(cluster_ca), join_request(), now, request_timeout);
  CHECK(bad.failed == PinnedStep::address);
}
