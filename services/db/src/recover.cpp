// stacknode-db-recover: rebuilds a dqlite cluster that lost quorum, on the surviving node with
// the most up-to-date Raft log, by rewriting its Raft configuration to the given members
// (dqlite_node_recover_ext). The whole procedure is in services/db/README.md ("Recovering a
// cluster that lost quorum"); in short: stop every node, run this once on the chosen node, copy
// its data dir to the other survivors, start them.
//
//   stacknode-db-recover --config node.cfg --member 1=198.18.1.11:7000 [--member ID=ADDR[:ROLE]]...
//
// Refuses, changing nothing, when the node's own address is in use (its stacknode-db still runs),
// when its data dir is empty, or when this node is not among the members. Exit status 0 done,
// 1 dqlite refused, 2 bad command line or config.
extern "C" {  // dqlite.h has no C++ guards
#include <dqlite.h>
}

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "db_config.hpp"
#include "stacknode/common/config.hpp"
#include "stacknode/db/connection.hpp"

namespace {

using namespace stacknode;

constexpr int exit_done = 0;
constexpr int exit_refused = 1;
constexpr int exit_usage = 2;

struct Member {
  std::uint64_t id = 0;
  std::string address;
  std::uint64_t role = static_cast<std::uint64_t>(db::wire::Role::voter);  // dqlite's role codes
};

int usage(const std::string& problem) {
  std::fprintf(stderr,
               "stacknode-db-recover: %s\n"
               "usage: stacknode-db-recover --config node.cfg --member ID=HOST:PORT[:voter|standby|spare]...\n",
               problem.c_str());
  return exit_usage;
}

// "2=198.18.1.12:7000" or "2=198.18.1.12:7000:standby".
bool parse_member(std::string_view text, Member& member) {
  const std::size_t equals = text.find('=');
  if (equals == std::string_view::npos) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + equals, member.id);
  if (error != std::errc() || end != text.data() + equals || member.id == 0) return false;
  std::string_view rest = text.substr(equals + 1);
  const std::size_t first_colon = rest.find(':');
  const std::size_t last_colon = rest.rfind(':');
  if (first_colon != last_colon) {
    const std::string_view role = rest.substr(last_colon + 1);
    if (role == "voter") member.role = static_cast<std::uint64_t>(db::wire::Role::voter);
    else if (role == "standby") member.role = static_cast<std::uint64_t>(db::wire::Role::standby);
    else if (role == "spare") member.role = static_cast<std::uint64_t>(db::wire::Role::spare);
    else return false;
    rest = rest.substr(0, last_colon);
  }
  if (!db::parse_endpoint(rest)) return false;
  member.address = std::string(rest);
  return true;
}

// True if something accepts connections at `address` (the node's stacknode-db is running).
bool address_in_use(const std::string& address) {
  const auto endpoint = db::parse_endpoint(address);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!endpoint || fd < 0) return false;
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(endpoint->port);
  ::inet_pton(AF_INET, endpoint->host.c_str(), &target.sin_addr);
  const bool connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) == 0;
  ::close(fd);
  return connected;
}

}  // namespace

// Under LeakSanitizer (the asan build), libraft and libuv allocations that dqlite_node_destroy
// does not free after a recover are theirs, not ours, and must not turn this one-shot tool's exit
// status into a failure. Ignored by builds without the sanitizer.
extern "C" const char* __lsan_default_suppressions() { return "leak:libraft.so\nleak:libuv.so\n"; }

int main(int argc, char** argv) {
  std::string config_path;
  std::vector<Member> members;
  for (int index = 1; index < argc; ++index) {
    const std::string_view argument = argv[index];
    if (argument == "--config" && index + 1 < argc) {
      config_path = argv[++index];
    } else if (argument == "--member" && index + 1 < argc) {
      Member member;
      if (!parse_member(argv[++index], member)) return usage(std::string("bad --member ") + argv[index]);
      members.push_back(member);
    } else {
      return usage("unknown argument " + std::string(argument));
    }
  }
  if (config_path.empty() || members.empty()) return usage("--config and at least one --member are required");

  db::DbConfig config;
  try {
    const auto document = config::Document::load_file(config_path);
    config = db::load_db_config(document->root());
    if (config.node_id == 0) db::read_identity(config);  // a box that joined through stackctl
  } catch (const std::exception& error) {
    return usage(error.what());
  }
  bool listed = false;
  for (const Member& member : members) listed = listed || (member.id == config.node_id && member.address == config.address);
  if (!listed) return usage("this node (" + std::to_string(config.node_id) + "=" + config.address + ") must be a member");
  std::error_code ignored;
  if (!std::filesystem::exists(config.data_dir, ignored) || std::filesystem::is_empty(config.data_dir, ignored)) {
    std::fprintf(stderr, "stacknode-db-recover: %s is empty: nothing to recover\n", config.data_dir.c_str());
    return exit_refused;
  }
  if (address_in_use(config.bind)) {
    std::fprintf(stderr, "stacknode-db-recover: %s answers: stop this node's stacknode-db first (and every other node)\n",
                 config.bind.c_str());
    return exit_refused;
  }

  dqlite_node* node = nullptr;
  if (dqlite_node_create(config.node_id, config.address.c_str(), config.data_dir.c_str(), &node) != 0) {
    std::fprintf(stderr, "stacknode-db-recover: cannot open the node: %s\n", node ? dqlite_node_errmsg(node) : "no memory");
    if (node != nullptr) dqlite_node_destroy(node);
    return exit_refused;
  }
  std::vector<dqlite_node_info_ext> infos;
  for (const Member& member : members) {
    dqlite_node_info_ext info{};
    info.size = sizeof info;
    info.id = member.id;
    info.address = reinterpret_cast<std::uint64_t>(member.address.c_str());
    info.dqlite_role = member.role;
    infos.push_back(info);
  }
  const int status = dqlite_node_recover_ext(node, infos.data(), static_cast<int>(infos.size()));
  const std::string message = status == 0 ? "" : dqlite_node_errmsg(node);
  dqlite_node_destroy(node);
  if (status != 0) {
    std::fprintf(stderr, "stacknode-db-recover: dqlite refused: %s (status %d)\n", message.c_str(), status);
    return exit_refused;
  }
  std::printf("recovered: %s now holds a configuration of %zu member(s); copy it to the other survivors, then start them\n",
              config.data_dir.c_str(), members.size());
  return exit_done;
}
