// Reading and writing the files of a box's membership (pki/, the db identity, pki/members)
// safely: whole or not at all, with the permissions a key or a certificate needs. Shared by
// init, join, stacknoded and stackctl.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "stacknode/node/join_token.hpp"

namespace stacknode::node {

inline constexpr std::filesystem::perms private_file =
    std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
inline constexpr std::filesystem::perms public_file =
    private_file | std::filesystem::perms::group_read | std::filesystem::perms::others_read;

// The whole text of `path` ("" if it cannot be read).
inline std::string read_whole(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Makes a rename or a new entry in `directory` durable (fsync of the directory itself).
inline bool sync_directory_entries(const std::filesystem::path& directory) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  return synced;
}

// Writes `text` to `path` whole or not at all, with `perms`, and durably: written aside and
// synced, renamed over `path`, and the directory synced. (Without the syncs a power cut soon
// after could leave an empty file under the new name: ext4 delays the allocation of a new file's
// data. The image tier's abrupt power-off after `cluster init` found exactly that, an empty db
// identity.)
inline bool write_whole(const std::filesystem::path& path, const std::string& text, std::filesystem::perms perms) {
  const std::filesystem::path aside = path.string() + ".tmp";
  const int fd = ::open(aside.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::size_t written = 0;
  while (written < text.size()) {
    const ssize_t count = ::write(fd, text.data() + written, text.size() - written);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) break;
    written += static_cast<std::size_t>(count);
  }
  const bool synced = written == text.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) return false;
  std::error_code error;
  std::filesystem::permissions(aside, perms, error);
  if (error) return false;
  std::filesystem::rename(aside, path, error);
  return !error && sync_directory_entries(path.parent_path().empty() ? "." : path.parent_path());
}

// A member's PKI files in `dir`: the CA, this node's certificate followed by the CA's (the chain
// it serves, which a joiner checks against its token's pin), and its private key.
inline bool write_pki(const std::filesystem::path& dir, const std::string& ca_pem, const std::string& certificate_pem,
                      const std::string& key_pem) {
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  std::filesystem::create_directories(dir, error);
  // Owner only, before the key is written (write_whole creates it first, then sets its mode).
  if (!error) std::filesystem::permissions(dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, error);
  if (error || !write_whole(dir / "ca.crt", ca_pem, public_file) ||
      !write_whole(dir / "node.crt", certificate_pem + ca_pem, public_file) ||
      !write_whole(dir / "node.key", key_pem, private_file)) {
    std::filesystem::remove_all(dir, error);
    return false;
  }
  return sync_directory_entries(dir.parent_path());  // the directory itself survives a power cut
}

// stacknode-db's copy of the PKI files, for mutual TLS on its wire port (services/db README,
// "TLS on the wire port"). A copy, not pki/ itself: a joining box's database starts before its
// pki/ exists (join moves pki.staging into place at its last step).
inline std::filesystem::path db_tls_dir(const std::filesystem::path& state_dir) { return state_dir / "db-tls"; }

// The text of a db identity file (db_config.hpp, read_identity): join and role only when `join`
// is not empty, `address` only when not empty (a db address changed after the join).
inline std::string db_identity_text(std::int64_t node_id, const std::filesystem::path& tls_dir,
                                    const std::vector<std::string>& join, const std::string& role,
                                    const std::string& address) {
  std::string identity = "node_id = " + std::to_string(node_id) + ";\ntls_dir = \"" + tls_dir.string() + "\";\n";
  if (!join.empty()) {
    identity += "join = [";
    for (std::size_t index = 0; index < join.size(); ++index) identity += (index ? ", \"" : "\"") + join[index] + "\"";
    identity += "];\nrole = \"" + role + "\";\n";
  }
  if (!address.empty()) identity += "address = \"" + address + "\";\n";
  return identity;
}

// Makes this box's stacknode-db member `node_id` (db_config.hpp, read_identity): its TLS files
// first, then the identity file that names them and, when joining, the members to join through
// and the role to ask for. False, with nothing left behind, when either cannot be written.
inline bool write_db_identity(const std::filesystem::path& state_dir, const std::filesystem::path& identity_file,
                              std::int64_t node_id, const std::vector<std::string>& join, const std::string& role,
                              const std::string& ca_pem, const std::string& certificate_pem,
                              const std::string& key_pem) {
  const std::filesystem::path tls_dir = db_tls_dir(state_dir);
  if (!write_pki(tls_dir, ca_pem, certificate_pem, key_pem)) return false;
  if (write_whole(identity_file, db_identity_text(node_id, tls_dir, join, role, {}), private_file)) return true;
  std::error_code ignored;
  std::filesystem::remove_all(tls_dir, ignored);
  return false;
}

// Undoes write_db_identity (the identity file first: stacknode-db leaves when it goes).
inline void remove_db_identity(const std::filesystem::path& state_dir, const std::filesystem::path& identity_file,
                               std::error_code& error) {
  std::filesystem::remove(identity_file, error);
  if (!error) std::filesystem::remove_all(db_tls_dir(state_dir), error);
}

// Why this box cannot become a member now (it is one already: pki/ or the db identity exists;
// an address is not IP:port), or empty if it can. `then` ends the "already" messages.
inline std::string not_ready_to_become_member(const std::filesystem::path& state_dir,
                                              const std::filesystem::path& db_identity_file,
                                              const std::string& api_address, const std::string& db_address,
                                              const std::string& then) {
  const std::filesystem::path pki_dir = state_dir / "pki";
  if (std::filesystem::exists(pki_dir)) {
    return "this box is already a cluster member (" + pki_dir.string() + " exists): 'stackctl node reset' first " + then;
  }
  if (std::filesystem::exists(db_identity_file)) {
    return "stacknode-db already has an identity (" + db_identity_file.string() + "): 'stackctl node reset' first";
  }
  for (const std::string* address : {&api_address, &db_address}) {
    if (!valid_member_address(*address)) return "'" + *address + "' is not IP:port (no DNS in a rack)";
  }
  return {};
}

}  // namespace stacknode::node
