// `stackctl cluster join TOKEN`: makes this box a member of the token's cluster. Run as root on
// the box, beside a stacknode-db waiting for its identity and a stacknoded waiting for its
// certificate. Steps, each named in an error (services/node/README.md, "Design of init and join"):
//   token     the token parses and has not expired; this box is not a member (no pki/, no db
//             identity); its node.cfg names and addresses are valid
//   reach     each member address of the token in turn, until one passes `pin` and answers
//   pin       the member's TLS chain has the token's CA pin and its certificate verifies against
//             that CA; nothing secret is sent before this
//   prepare   the member checks the token without using it, signs this box's certificate and
//             names the dqlite id and the members to join through
//   database  key, certificate and CA to pki.staging/, the db identity (that id, standby); the
//             local stacknode-db joins; waited for until it is in the cluster's configuration
//   commit    the member marks the token used (only if still unused) and records this node
//   finish    pki.staging/ renamed to pki/: stacknoded starts serving
// A failure up to `prepare` changes nothing anywhere. From `database` on, join undoes itself: it
// asks the member to remove its dqlite id, and removes pki.staging/ and the identity file; the
// token stays unused and the member list unchanged. A commit without an answer is sent again
// (the member treats a repeat as done); if none comes, nothing is undone and the error says how
// to finish or reset by hand. A stacknode-db that had joined meanwhile keeps
// that data dir until stopped and cleared (the error says so).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

namespace stacknode::node {

inline constexpr std::chrono::milliseconds default_join_db_timeout{60'000};
// Each HTTPS exchange with a member (prepare signs a certificate; commit is one transaction).
inline constexpr std::chrono::milliseconds join_request_timeout{15'000};
// A commit whose answer is lost is sent this many times in all before its outcome is "unknown".
inline constexpr int join_commit_attempts = 3;

struct JoinOptions {
  std::string node_name;
  std::string api_address;
  std::string db_address;
  std::filesystem::path state_dir;
  std::filesystem::path db_identity_file;
  std::string db_data_dir;  // named in the error when stacknode-db must be cleared
  std::chrono::milliseconds db_timeout = default_join_db_timeout;
};

struct JoinResult {
  std::string failed_step;  // empty on success
  std::string error;
  std::string cluster_id;
  std::string cluster_name;
  std::string member;  // the member that let this box in
  std::int64_t node_id = 0;
  bool ok() const { return failed_step.empty(); }
};

JoinResult join_cluster(const JoinOptions& options, const std::string& token_text,
                        std::chrono::system_clock::time_point now);

}  // namespace stacknode::node
