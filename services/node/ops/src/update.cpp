// `stackctl node update`; the steps and what a failure leaves are at the top of update.hpp.
#include "stacknode/node/update.hpp"

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <system_error>
#include <vector>

#include "member_request.hpp"
#include "stacknode/node/join_token.hpp"
#include "stacknode/node/membership.hpp"
#include "stacknode/node/pinned_https.hpp"
#include "stacknode/node/pki.hpp"
#include "stacknode/node/state_files.hpp"

namespace stacknode::node {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

UpdateResult fail(std::string step, std::string error) {
  UpdateResult result;
  result.failed_step = std::move(step);
  result.error = std::move(error);
  return result;
}

// `next` takes the place of `dir`, with `kept` (a file the daemons maintain) carried over.
bool swap_in(const fs::path& dir, const fs::path& next, const std::string& kept, std::string& problem) {
  std::error_code error;
  if (fs::exists(dir / kept)) fs::copy_file(dir / kept, next / kept, fs::copy_options::overwrite_existing, error);
  if (error) {
    problem = "cannot copy " + (dir / kept).string() + ": " + error.message();
    return false;
  }
  const fs::path previous = dir.string() + ".previous";
  fs::remove_all(previous, error);
  fs::rename(dir, previous, error);
  if (!error) fs::rename(next, dir, error);
  if (error) {
    problem = "cannot move " + next.string() + " to " + dir.string() + ": " + error.message();
    return false;
  }
  fs::remove_all(previous, error);
  return true;
}

// Holds an exclusive lock on `path` while it lives: one update at a time on a box.
class BoxLock {
 public:
  explicit BoxLock(const fs::path& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    held_ = fd_ >= 0 && ::flock(fd_, LOCK_EX | LOCK_NB) == 0;
  }
  ~BoxLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  BoxLock(const BoxLock&) = delete;
  BoxLock& operator=(const BoxLock&) = delete;
  bool held() const { return held_; }

 private:
  int fd_;
  bool held_ = false;
};

}  // namespace

UpdateResult update_node(const UpdateOptions& options, std::chrono::system_clock::time_point now) {
  const fs::path pki_dir = options.state_dir / "pki";
  const fs::path next = options.state_dir / "pki.next";
  const fs::path tls_dir = db_tls_dir(options.state_dir);
  const fs::path tls_next = tls_dir.string() + ".next";

  // check
  const BoxLock lock(options.state_dir / "update.lock");
  if (!lock.held()) return fail("check", "another 'stackctl node update' runs on this box");
  const std::string ca_pem = read_whole(pki_dir / "ca.crt");
  const std::string certificate_pem = read_whole(pki_dir / "node.crt");
  const std::string key_pem = read_whole(pki_dir / "node.key");
  if (ca_pem.empty() || certificate_pem.empty() || key_pem.empty()) {
    return fail("check", "this box is not a cluster member (no " + pki_dir.string() + "): nothing to update");
  }
  const pki::Made<pki::CertificateInfo> mine = pki::verify_node_certificate(ca_pem, certificate_pem, now);
  if (!mine.ok()) return fail("check", pki_dir.string() + "/node.crt: " + mine.error);
  for (const std::optional<std::string>* address : {&options.api_address, &options.db_address}) {
    if (*address && !valid_member_address(**address)) {
      return fail("check", "'" + **address + "' is not IP:port (no DNS in a rack)");
    }
  }
  if (options.db_address && (options.db.node_id == 0 || !fs::exists(tls_dir))) {
    return fail("check", "this box's database takes a new address from its identity file and restarts when " +
                             tls_dir.string() + " changes; without them (" + options.db.identity_file +
                             ", db-tls/) it cannot move: remove this node, reset and join again instead");
  }
  const pki::Made<pki::Pin> pin = pki::public_key_pin(ca_pem);
  if (!pin.ok()) return fail("check", pki_dir.string() + "/ca.crt: " + pin.error);
  const std::string name = options.name.value_or(mine.value->node_name);

  // key
  const pki::Made<std::string> key = pki::generate_private_key();
  if (!key.ok()) return fail("key", key.error);
  const pki::Made<std::string> csr = pki::create_csr(*key.value, name);
  if (!csr.ok()) return fail("key", csr.error);
  std::error_code error;
  fs::remove_all(next, error);
  fs::create_directories(next, error);
  if (!error) fs::permissions(next, fs::perms::owner_all, fs::perm_options::replace, error);
  if (error || !write_whole(next / "node.key", *key.value, private_file)) {
    fs::remove_all(next, error);
    return fail("key", "cannot write " + next.string());
  }

  // ask: this box's stacknoded first, then the members it last listed
  std::vector<std::string> members = {options.own_api_address};
  std::ifstream listed(pki_dir / "members");
  for (std::string line; std::getline(listed, line);) {
    if (!line.empty() && line != options.own_api_address) members.push_back(line);
  }
  json::object body{{"csr", *csr.value}};
  if (options.name) body["name"] = *options.name;
  if (options.api_address) body["api_address"] = *options.api_address;
  if (options.db_address) body["db_address"] = *options.db_address;
  const std::string target = "/api/v1/nodes/" + mine.value->node_name + "/certificate";
  const pki::Credentials identity{certificate_pem, key_pem};
  UpdateResult result;
  std::string unreachable;
  std::string certificate;
  // From the moment a member may have run the request, this box's key in pki.next/ is kept: the
  // cluster may hold a certificate for it and have revoked the old one.
  const std::string outcome_unknown =
      "; the cluster may have made the change and revoked this box's certificate: on another member, "
      "'stackctl node list' shows whether it did. If it did, this box cannot finish (" + next.string() +
      " holds its new key but not the certificate): remove it there, 'stackctl node reset --force' here, and "
      "join again. If not, run the update again";
  for (const std::string& member : members) {
    const PinnedAnswer answer = pinned_https_request(member, *pin.value, member_request::post(member, target, body),
                                                     now, update_request_timeout, &identity);
    if (!answer.ok() && answer.failed != PinnedStep::exchange) {  // nothing was sent: the next member
      unreachable += "\n  " + answer.error;
      continue;
    }
    if (!answer.ok()) return fail("ask", answer.error + outcome_unknown);
    const unsigned status = answer.response.result_int();
    if (status == 503) {
      fs::remove_all(next, error);
      return fail("ask", member + " could not finish: " + member_request::member_message(answer) +
                             "; this box's certificate is unchanged: run the update again (a database move already "
                             "made is kept)");
    }
    if (status != 200) {
      fs::remove_all(next, error);
      return fail("ask", member + " refused: " + member_request::member_message(answer) +
                             (options.db_address ? "" : "; nothing changed"));
    }
    const std::optional<json::object> answered = member_request::answer_object(answer);
    certificate = answered ? member_request::string_of(*answered, "certificate") : std::string();
    const pki::Made<pki::CertificateInfo> issued = pki::verify_node_certificate(ca_pem, certificate, now);
    if (!issued.ok() || issued.value->node_name != name) {
      return fail("ask", member + " answered a certificate that is not for " + name + " or does not verify (" +
                             (issued.ok() ? "wrong name" : issued.error) + ")" + outcome_unknown);
    }
    result.member = member;
    result.serial = issued.value->serial;
    result.api_address = answered ? member_request::string_of(*answered, "api_address") : std::string();
    result.db_address = answered ? member_request::string_of(*answered, "db_address") : std::string();
    break;
  }
  if (result.member.empty()) {
    fs::remove_all(next, error);
    return fail("ask", "no member could be reached; nothing changed:" + unreachable);
  }

  // install
  const std::string by_hand = "; the cluster holds this box's new certificate and revoked the old one: move " +
                              next.string() + " to " + pki_dir.string() + " and " + tls_next.string() + " to " +
                              tls_dir.string() + " by hand";
  // The key written at `key` stays where it is; the certificate and the CA go beside it.
  if (!write_whole(next / "ca.crt", ca_pem, public_file) ||
      !write_whole(next / "node.crt", certificate + ca_pem, public_file)) {
    return fail("install", "cannot write " + next.string() + by_hand);
  }
  const bool has_tls = fs::exists(tls_dir);
  if (has_tls && !write_pki(tls_next, ca_pem, certificate, *key.value)) {
    return fail("install", "cannot write " + tls_next.string() + by_hand);
  }
  // The new db address before the new certificate: stacknode-db reads its identity again when it
  // starts again with that certificate.
  if (options.db_address) {
    const std::string role(role_name(options.db.role));
    const std::string identity = db_identity_text(static_cast<std::int64_t>(options.db.node_id), tls_dir,
                                                  options.db.join, role, *options.db_address);
    if (!write_whole(options.db.identity_file, identity, private_file)) {
      return fail("install", "cannot write " + options.db.identity_file + by_hand +
                                 ", and put address = \"" + *options.db_address + "\"; in " + options.db.identity_file);
    }
  }
  std::string problem;
  // db-tls first: stacknode-db starts again with it while stacknoded still serves.
  if (has_tls && !swap_in(tls_dir, tls_next, "revoked", problem)) return fail("install", problem + by_hand);
  if (!swap_in(pki_dir, next, "members", problem)) return fail("install", problem + by_hand);
  result.previous_name = mine.value->node_name;
  result.name = name;
  return result;
}

}  // namespace stacknode::node
