// `stackctl node update [--name NAME] [--api-address IP:PORT] [--db-address IP:PORT]`: a member
// box takes a new name and/or addresses, or (with none) renews its certificate. Run as root on the box. The
// cluster names nodes and their certificates say who they are, so a change is a new certificate
// for a new key (services/node/README.md, "Changing a node's name or addresses later"). Steps, each
// named in an error:
//   check    this box is a member (pki/ with a certificate of its CA); the new values are valid
//   key      a new private key and a CSR, the key kept in pki.next/ before anything is sent
//   ask      POST /api/v1/nodes/{name}/certificate to this box's stacknoded, then to the other
//            members in pki/members, with the current certificate: the member checks the name
//            and addresses are free; for a new db address it moves the dqlite member (out, then
//            back under the same id at the new address, a standby); then, in one transaction,
//            it updates the node row, revokes the old serial and audits the change; it answers
//            the new certificate
//   install  a new db address goes into the db identity file; pki.next/ and db-tls.next/ (with
//            pki/members and db-tls/revoked carried over) take the place of pki/ and db-tls/;
//            stacknoded and stacknode-db notice the new certificate and start again with it
//            (stacknode-db keeps its data, listens at the new address and catches up)
// A failure before `ask` succeeds changes nothing (pki.next/ is removed). Once a member has
// answered, the old certificate is revoked: a failure at `install` leaves the new files in
// pki.next/ and db-tls.next/ and the error says how to finish by hand.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "db_config.hpp"

namespace stacknode::node {

// One HTTPS exchange with a member (it signs a certificate and runs one transaction).
inline constexpr std::chrono::milliseconds update_request_timeout{15'000};

struct UpdateOptions {
  std::filesystem::path state_dir;
  std::string own_api_address;             // where this box's stacknoded is asked first (node.cfg)
  std::optional<std::string> name;         // the new name; nullopt keeps it
  std::optional<std::string> api_address;  // the new API address; nullopt keeps it
  std::optional<std::string> db_address;   // the new db address; nullopt keeps it
  db::DbConfig db;  // node.cfg's db section with the identity read (node id, join, role, tls_dir)
};

struct UpdateResult {
  std::string failed_step;  // empty on success
  std::string error;
  std::string previous_name;
  std::string name;
  std::string api_address;
  std::string db_address;
  std::uint64_t serial = 0;  // of the new certificate
  std::string member;        // the member that answered
  bool ok() const { return failed_step.empty(); }
};

UpdateResult update_node(const UpdateOptions& options, std::chrono::system_clock::time_point now);

}  // namespace stacknode::node
