// `stackctl cluster init`; the steps and what a failure leaves are at the top of init.hpp.
#include "stacknode/node/init.hpp"

#include <openssl/rand.h>

#include <system_error>
#include <vector>

#include "stacknode/db/client.hpp"
#include "stacknode/node/credentials.hpp"
#include "stacknode/node/join_token.hpp"
#include "stacknode/node/pki.hpp"
#include "stacknode/node/schema.hpp"
#include "stacknode/node/state_files.hpp"

namespace stacknode::node {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t first_node_id = 1;  // the dqlite node that bootstraps
constexpr std::uint64_t first_certificate_serial = 1;
InitResult fail(std::string step, std::string error) {
  InitResult result;
  result.failed_step = std::move(step);
  result.error = std::move(error);
  return result;
}

std::unique_ptr<db::Client> database_client(const InitOptions& options, std::shared_ptr<const db::TlsContext> tls) {
  db::ClientOptions client_options;
  client_options.addresses = {options.db_address};
  client_options.leader_timeout = options.db_timeout;
  client_options.tls = std::move(tls);
  return std::make_unique<db::Client>(client_options);
}

// The rows of a new cluster, in one transaction. Empty on success, else the reason.
std::string write_records(db::Client& client, const InitOptions& options, const std::string& cluster_id,
                          const pki::Credentials& ca, const std::string& password_hash, const JoinToken& token,
                          const std::string& node_pin, std::int64_t now) {
  const std::string token_name = token_id(token.secret);
  const std::vector<std::pair<std::string, std::vector<db::wire::Value>>> statements = {
      {"INSERT INTO cluster VALUES (1, ?, ?, ?, ?, ?)",
       {cluster_id, options.cluster_name, ca.certificate_pem, ca.private_key_pem, now}},
      {"INSERT INTO nodes (id, name, api_address, db_address, certificate_serial, joined_at, last_seen, "
       "public_key_pin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
       {static_cast<std::int64_t>(first_node_id), options.node_name, options.api_address, options.db_address,
        static_cast<std::int64_t>(first_certificate_serial), now, now, node_pin}},
      {"INSERT INTO users VALUES (?, ?, ?)", {std::string(admin_user), password_hash, now}},
      {"INSERT INTO join_tokens (id, secret_hash, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
       {token_name, secret_hash(token.secret), std::string(admin_user), now, static_cast<std::int64_t>(token.expires_at)}},
      {"INSERT INTO audit_log (at, actor, action, target) VALUES (?, ?, 'cluster.init', ?)",
       {now, std::string(admin_user), options.cluster_name}},
      {"INSERT INTO audit_log (at, actor, action, target) VALUES (?, ?, 'token.create', ?)",
       {now, std::string(admin_user), token_name}},
  };
  db::Outcome<db::wire::Empty> done =
      client.transaction(std::string(control_database), [&](db::Client::Transaction& transaction) -> std::optional<db::Error> {
        for (const auto& [sql, parameters] : statements) {
          if (db::Outcome<db::wire::Result> ran = transaction.exec(sql, parameters); !ran) return ran.error();
        }
        return std::nullopt;
      });
  if (!done) return done.error().message;
  return {};
}

}  // namespace

InitResult init_cluster(const InitOptions& options, std::chrono::system_clock::time_point now) {
  const fs::path pki_dir = options.state_dir / "pki";
  const fs::path staging = options.state_dir / "pki.staging";
  const std::int64_t now_seconds = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();

  // check
  if (const std::string problem = not_ready_to_become_member(options.state_dir, options.db_identity_file,
                                                             options.api_address, options.db_address,
                                                             "to start a new cluster here");
      !problem.empty()) {
    return fail("check", problem);
  }
  if (!init_credentials()) return fail("check", "libsodium cannot start (no entropy source?)");
  InitResult result;
  result.admin_password = options.admin_password.empty() ? generate_password() : "";
  const std::string password = options.admin_password.empty() ? result.admin_password : options.admin_password;
  if (const std::string problem = password_problem(password); !problem.empty()) return fail("check", problem);

  // pki
  pki::Made<pki::Credentials> ca = pki::create_cluster_ca(options.cluster_name, ca_validity, now);
  if (!ca.ok()) return fail("pki", ca.error);
  pki::Made<std::string> key = pki::generate_private_key();
  if (!key.ok()) return fail("pki", key.error);
  pki::Made<std::string> csr = pki::create_csr(*key.value, options.node_name);
  if (!csr.ok()) return fail("pki", csr.error);
  const std::vector<std::string> addresses = node_certificate_hosts(options.api_address, options.db_address);
  pki::Made<std::string> certificate = pki::sign_node_certificate(
      *ca.value, *csr.value, {options.node_name, addresses, first_certificate_serial, node_certificate_validity}, now);
  if (!certificate.ok()) return fail("pki", certificate.error);
  pki::Made<pki::Pin> pin = pki::public_key_pin(ca.value->certificate_pem);
  if (!pin.ok()) return fail("pki", pin.error);
  pki::Made<pki::Pin> node_pin = pki::public_key_pin(*certificate.value);
  if (!node_pin.ok()) return fail("pki", node_pin.error);
  const std::optional<std::string> password_hash = hash_password(password);
  if (!password_hash) return fail("pki", "cannot hash the admin password (out of memory?)");
  ClusterId cluster_id{};
  if (RAND_bytes(cluster_id.data(), static_cast<int>(cluster_id.size())) != 1) return fail("pki", "no randomness");
  const std::optional<JoinToken> token =
      generate_join_token(cluster_id, *pin.value, static_cast<std::uint64_t>(now_seconds + options.token_validity.count()),
                          {options.api_address});
  if (!token) return fail("pki", "cannot make a join token");
  if (!write_pki(staging, ca.value->certificate_pem, *certificate.value, *key.value)) {
    return fail("pki", "cannot write " + staging.string());
  }
  std::error_code error;

  // From here on, a failure undoes what init wrote.
  const auto undo = [&](std::string step, std::string reason) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    remove_db_identity(options.state_dir, options.db_identity_file, ignored);
    return fail(std::move(step), std::move(reason) +
                                     "; if stacknode-db started a cluster meanwhile, stop it and clear its data dir "
                                     "before trying again");
  };

  // database
  // The credentials must load before stacknode-db is told to use them.
  std::string tls_problem;
  std::shared_ptr<const db::TlsContext> tls = db::TlsContext::make(
      db::TlsContext::Side::client,
      {ca.value->certificate_pem, *certificate.value + ca.value->certificate_pem, *key.value}, tls_problem);
  if (!tls) return undo("database", tls_problem);
  if (!write_db_identity(options.state_dir, options.db_identity_file, first_node_id, {}, {},
                         ca.value->certificate_pem, *certificate.value, *key.value)) {
    return undo("database", "cannot write " + options.db_identity_file.string() + " or " +
                                db_tls_dir(options.state_dir).string());
  }
  std::unique_ptr<db::Client> client = database_client(options, tls);
  if (db::Outcome<db::wire::Node> leader = client->find_leader(); !leader) {
    return undo("database", "stacknode-db at " + options.db_address + " did not elect itself within " +
                                std::to_string(options.db_timeout.count() / 1000) + " s: " + leader.error().message);
  }
  // schema
  if (db::Outcome<std::int64_t> version = migrate(*client, std::string(control_database), control_schema(), now_seconds);
      !version) {
    return undo("schema", version.error().message);
  }
  // records
  if (const std::string problem = write_records(*client, options, to_hex(cluster_id), *ca.value, *password_hash,
                                                *token, pki::to_hex(*node_pin.value), now_seconds);
      !problem.empty()) {
    return undo("records", problem);
  }
  // commit
  fs::rename(staging, pki_dir, error);
  if (error) return undo("commit", "cannot rename " + staging.string() + " to " + pki_dir.string() + ": " + error.message());
  sync_directory_entries(pki_dir.parent_path());  // the rename survives a power cut

  result.cluster_id = to_hex(cluster_id);
  result.join_token = *encode_join_token(*token);
  return result;
}

}  // namespace stacknode::node
