// Reading and writing the files of a box's membership (pki/, the db identity, pki/members)
// safely: whole or not at all, with the permissions a key or a certificate needs. Shared by
// init, join, stacknoded and stackctl.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

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

// Writes `text` to `path` whole or not at all (written aside, then renamed), with `perms`.
inline bool write_whole(const std::filesystem::path& path, const std::string& text, std::filesystem::perms perms) {
  const std::filesystem::path aside = path.string() + ".tmp";
  {
    std::ofstream out(aside, std::ios::trunc);
    out << text;
    if (!out.flush()) return false;
  }
  std::error_code error;
  std::filesystem::permissions(aside, perms, error);
  if (error) return false;
  std::filesystem::rename(aside, path, error);
  return !error;
}

// A member's PKI files in `dir`: the CA, this node's certificate followed by the CA's (the chain
// it serves, which a joiner checks against its token's pin), and its private key.
inline bool write_pki(const std::filesystem::path& dir, const std::string& ca_pem, const std::string& certificate_pem,
                      const std::string& key_pem) {
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  std::filesystem::create_directories(dir, error);
  if (error || !write_whole(dir / "ca.crt", ca_pem, public_file) ||
      !write_whole(dir / "node.crt", certificate_pem + ca_pem, public_file) ||
      !write_whole(dir / "node.key", key_pem, private_file)) {
    std::filesystem::remove_all(dir, error);
    return false;
  }
  return true;
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
