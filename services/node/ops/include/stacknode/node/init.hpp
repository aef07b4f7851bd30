// `stackctl cluster init`: makes this box the first member of a new cluster. Run as root on the
// box, beside a stacknode-db that waits for its identity (no db.node_id in node.cfg); stacknoded
// waits for the certificate this writes. Steps, each named in an error:
//   check      not a member already (no pki/ in the state dir), names, addresses and password valid
//   pki        the cluster CA, this node's key and certificate, written to pki.staging/
//   database   the db identity file (node 1, bootstrap), then a leader within db_timeout
//   schema     the control database migrated (schema.hpp)
//   records    one transaction: the cluster row, this node, the admin user, the first join token,
//              two audit entries
//   commit     pki.staging/ renamed to pki/: from here on this box is a member
// A failure before `database` leaves nothing behind. A failure from `database` on removes what
// init wrote (pki.staging/, the identity file); if stacknode-db had already bootstrapped, its
// data dir holds an empty cluster, and the error says to stop it and clear that dir first.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

namespace stacknode::node {

// What an answer from stacknode-db may take while it bootstraps (an election on one node).
inline constexpr std::chrono::milliseconds default_init_db_timeout{60'000};
inline constexpr std::chrono::seconds default_token_validity{3600};
inline constexpr std::chrono::seconds ca_validity{std::chrono::hours(24 * 365 * 20)};
inline constexpr std::chrono::seconds node_certificate_validity{std::chrono::hours(24 * 365 * 2)};
inline constexpr std::string_view admin_user = "admin";

struct InitOptions {
  std::string cluster_name;
  std::string node_name;
  std::string api_address;  // how members and stackctl reach this node's API: "198.18.1.11:8443"
  std::string db_address;   // this node's stacknode-db (dqlite) address: "198.18.1.11:7000"
  std::filesystem::path state_dir;         // pki/ goes here
  std::filesystem::path db_identity_file;  // stacknode-db's db.identity_file
  std::string admin_password;              // empty: one is generated and returned
  std::chrono::seconds token_validity = default_token_validity;
  std::chrono::milliseconds db_timeout = default_init_db_timeout;
};

struct InitResult {
  std::string failed_step;  // empty on success
  std::string error;        // for a person: what failed and what to do
  std::string cluster_id;   // 32 hex characters
  std::string join_token;   // snj1....
  std::string admin_password;  // the generated one, shown once; empty if it was given
  bool ok() const { return failed_step.empty(); }
};

InitResult init_cluster(const InitOptions& options, std::chrono::system_clock::time_point now);

}  // namespace stacknode::node
