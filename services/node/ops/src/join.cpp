// `stackctl cluster join`; the steps and what a failure leaves are at the top of join.hpp.
#include "stacknode/node/join.hpp"

#include <boost/json.hpp>

#include <thread>
#include <vector>

#include "stacknode/db/client.hpp"
#include "stacknode/node/hex.hpp"
#include "stacknode/node/join_token.hpp"
#include "stacknode/node/pinned_https.hpp"
#include "stacknode/node/pki.hpp"
#include "stacknode/node/state_files.hpp"
#include "member_request.hpp"

namespace stacknode::node {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using member_request::answer_object;
using member_request::member_message;
using member_request::post;
using member_request::string_of;

// How often the database step looks at the cluster's configuration for this box.
constexpr std::chrono::milliseconds join_poll_interval{200};

JoinResult fail(std::string step, std::string error) {
  JoinResult result;
  result.failed_step = std::move(step);
  result.error = std::move(error);
  return result;
}

// True once node `id` at `address` is in the cluster's configuration as a standby or voter (it
// caught up), as the members answer.
bool joined(db::Client& cluster, db::wire::NodeId id, const std::string& address) {
  db::Outcome<db::wire::Nodes> nodes = cluster.cluster();
  if (!nodes) return false;
  for (const db::wire::NodeInfo& node : nodes->nodes) {
    if (node.id == id && node.address == address && node.role != db::wire::Role::spare) return true;
  }
  return false;
}

}  // namespace

JoinResult join_cluster(const JoinOptions& options, const std::string& token_text,
                        std::chrono::system_clock::time_point now) {
  const auto now_seconds =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
  const fs::path pki_dir = options.state_dir / "pki";
  const fs::path staging = options.state_dir / "pki.staging";

  // token
  const TokenParse parsed = parse_join_token(token_text);
  if (!parsed.ok()) return fail("token", parsed.message);
  const JoinToken& token = *parsed.token;
  if (token.expired(now_seconds)) {
    return fail("token", "this token has expired: ask for a new one with 'stackctl cluster token create' on a member");
  }
  if (const std::string problem = not_ready_to_become_member(options.state_dir, options.db_identity_file,
                                                             options.api_address, options.db_address,
                                                             "to join another cluster");
      !problem.empty()) {
    return fail("token", problem);
  }
  pki::Made<std::string> key = pki::generate_private_key();
  if (!key.ok()) return fail("token", key.error);
  pki::Made<std::string> csr = pki::create_csr(*key.value, options.node_name);
  if (!csr.ok()) return fail("token", csr.error);
  const std::string secret = to_hex(token.secret);

  // reach, pin, prepare: the token's members in turn.
  std::string member;
  json::object offer;
  std::string failures;
  bool pin_failed = false;
  for (const std::string& address : token.addresses) {
    const json::object body{{"secret", secret},
                            {"name", options.node_name},
                            {"api_address", options.api_address},
                            {"db_address", options.db_address},
                            {"csr", *csr.value}};
    PinnedAnswer answer = pinned_https_request(address, token.ca_pin, post(address, "/api/v1/join/prepare", body), now,
                                               join_request_timeout);
    if (!answer.ok()) {
      pin_failed = pin_failed || answer.failed == PinnedStep::pin || answer.failed == PinnedStep::chain;
      failures += "\n  " + answer.error;
      continue;
    }
    const unsigned status = answer.response.result_int();
    if (status >= 400 && status < 500) {
      // The cluster refused this token or this box: asking another member gives the same answer.
      return fail("prepare", address + " refused: " + member_message(answer));
    }
    const std::optional<json::object> body_answer = answer_object(answer);
    if (status != 200 || !body_answer) {
      failures += "\n  " + address + ": prepare: " + member_message(answer);
      continue;
    }
    member = address;
    offer = *body_answer;
    break;
  }
  if (member.empty()) {
    return fail(pin_failed ? "pin" : "reach",
                "no member of the token could be used (nothing secret was sent to one that failed its pin):" + failures);
  }
  const json::value* offered_id = offer.if_contains("node_id");
  const std::string certificate = string_of(offer, "certificate");
  const std::string ca_certificate = string_of(offer, "ca_certificate");
  std::vector<std::string> db_members;
  if (const json::value* members = offer.if_contains("db_members"); members && members->is_array()) {
    for (const json::value& entry : members->as_array()) {
      if (entry.is_string()) db_members.emplace_back(entry.as_string());
    }
  }
  if (offered_id == nullptr || !offered_id->is_int64() || offered_id->as_int64() < 1 || db_members.empty()) {
    return fail("prepare", member + " answered an offer without a node id or members");
  }
  const std::int64_t node_id = offered_id->as_int64();
  // The offer must come from the pinned cluster and be for this box.
  pki::Made<pki::Pin> offered_pin = pki::public_key_pin(ca_certificate);
  if (!offered_pin.ok() || *offered_pin.value != token.ca_pin) {
    return fail("prepare", member + " offered a CA certificate without the token's pin");
  }
  pki::Made<pki::CertificateInfo> mine = pki::verify_node_certificate(ca_certificate, certificate, now);
  if (!mine.ok() || mine.value->node_name != options.node_name) {
    return fail("prepare", member + " offered a certificate that is not this box's: " + (mine.ok() ? "wrong name" : mine.error));
  }

  // From here on, a failure undoes the join on both sides.
  const auto undo = [&](std::string step, std::string reason) {
    const json::object body{{"secret", secret}, {"node_id", node_id}, {"db_address", options.db_address}};
    PinnedAnswer answer = pinned_https_request(member, token.ca_pin, post(member, "/api/v1/join/abort", body),
                                               std::chrono::system_clock::now(), join_request_timeout);
    const std::string forgotten = answer.ok() && answer.response.result_int() == 200
                                      ? "the cluster forgot this box's database member"
                                      : "the cluster could not be asked to forget database member " +
                                            std::to_string(node_id) + " (" +
                                            (answer.ok() ? member_message(answer) : answer.error) + ")";
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    remove_db_identity(options.state_dir, options.db_identity_file, ignored);
    return fail(std::move(step), std::move(reason) + "; " + forgotten + "; the token is still unused. If stacknode-db " +
                                     "joined meanwhile, stop it and clear " + options.db_data_dir +
                                     " before trying again");
  };

  // database
  if (!write_pki(staging, ca_certificate, certificate, *key.value)) {
    return undo("database", "cannot write " + staging.string());
  }
  // The credentials must load before stacknode-db is told to use them.
  std::string tls_problem;
  db::ClientOptions cluster_options;
  cluster_options.addresses = db_members;
  cluster_options.leader_timeout = std::chrono::milliseconds(2'000);
  cluster_options.tls = db::TlsContext::make(db::TlsContext::Side::client,
                                             {ca_certificate, certificate + ca_certificate, *key.value}, tls_problem);
  if (!cluster_options.tls) return undo("database", tls_problem);
  if (!write_db_identity(options.state_dir, options.db_identity_file, node_id, db_members, "standby", ca_certificate,
                         certificate, *key.value)) {
    return undo("database", "cannot write " + options.db_identity_file.string() + " or " +
                                db_tls_dir(options.state_dir).string());
  }
  db::Client cluster(cluster_options);
  const auto deadline = std::chrono::steady_clock::now() + options.db_timeout;
  while (!joined(cluster, static_cast<db::wire::NodeId>(node_id), options.db_address)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return undo("database", "this box's stacknode-db (" + options.db_address + ") did not join as node " +
                                  std::to_string(node_id) + " within " +
                                  std::to_string(options.db_timeout.count() / 1000) +
                                  " s: is it running, can it reach " + db_members.front() +
                                  ", and what does its log say?");
    }
    std::this_thread::sleep_for(join_poll_interval);
  }

  // commit
  const json::object commit_body{{"secret", secret},
                                 {"node_id", node_id},
                                 {"certificate", certificate},
                                 {"api_address", options.api_address},
                                 {"db_address", options.db_address}};
  // A commit whose answer is lost is sent again: the member treats a repeat of a commit that
  // happened as done. Only a refusal undoes the join; an outcome still unknown leaves it be.
  PinnedAnswer committed;
  for (int attempt = 0; attempt < join_commit_attempts; ++attempt) {
    committed = pinned_https_request(member, token.ca_pin, post(member, "/api/v1/join/commit", commit_body),
                                     std::chrono::system_clock::now(), join_request_timeout);
    if (committed.ok() && committed.response.result_int() < 500) break;
  }
  if (!committed.ok() || committed.response.result_int() >= 500) {
    return fail("commit", "no answer from " + member + " to the commit (" +
                              (committed.ok() ? member_message(committed) : committed.error) +
                              "): whether this box was let in is not known. Nothing was undone: if 'stackctl cluster "
                              "status' on a member lists " + options.node_name + ", rename " + staging.string() +
                              " to " + pki_dir.string() + "; if not, 'stackctl node reset --force' and join again");
  }
  if (committed.response.result_int() != 200) return undo("commit", member + " refused: " + member_message(committed));

  // finish
  std::error_code error;
  fs::rename(staging, pki_dir, error);
  if (error) {
    return fail("finish", "this box is in the cluster but cannot rename " + staging.string() + " to " + pki_dir.string() +
                              ": " + error.message() + "; rename it by hand, then stacknoded starts");
  }
  sync_directory_entries(pki_dir.parent_path());  // the rename survives a power cut
  JoinResult result;
  result.cluster_id = string_of(offer, "cluster_id");
  result.cluster_name = string_of(offer, "cluster_name");
  result.member = member;
  result.node_id = node_id;
  return result;
}

}  // namespace stacknode::node
