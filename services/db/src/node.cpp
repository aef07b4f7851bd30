// The dqlite node of stacknode-db; see node.hpp for the invariants.
#include "node.hpp"

extern "C" {  // dqlite.h has no C++ guards
#include <dqlite.h>
}

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "stacknode/common/log.hpp"
#include "stacknode/db/connection.hpp"

namespace stacknode::db {
namespace {

namespace fs = std::filesystem;

// Between rounds over the join list while the cluster has no leader or cannot be reached.
constexpr std::chrono::milliseconds join_retry_interval{500};
// Per request while joining: a leader answers ADD/ASSIGN after one Raft round.
constexpr std::chrono::milliseconds join_request_timeout{5'000};

// dqlite's node-to-node connections (Raft), made by us so that they run with TCP_NODELAY. The
// library's default connector leaves Nagle's algorithm on, and a 1 KiB write then waits for the
// peer's delayed ACK: measured with 1 KiB values on a 3-node loopback cluster, 60 commits/s with
// 40 ms stalls, against about 3 ms per commit with small rows. Blocking connect, as dqlite
// expects (it calls this from a thread of its own). Addresses are IPv4 host:port (db_config).
int connect_without_delay(void* /*unused*/, const char* address, int* fd) {
  const std::optional<Endpoint> endpoint = parse_endpoint(address);
  if (!endpoint) return DQLITE_ERROR;
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(endpoint->port);
  if (::inet_pton(AF_INET, endpoint->host.c_str(), &target.sin_addr) != 1) return DQLITE_ERROR;
  const int socket_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (socket_fd < 0) return DQLITE_ERROR;
  if (::connect(socket_fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
    ::close(socket_fd);
    return DQLITE_ERROR;
  }
  const int one = 1;
  ::setsockopt(socket_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  *fd = socket_fd;
  return 0;
}

bool directory_is_empty(const fs::path& path) {
  std::error_code error;
  return !fs::exists(path, error) || fs::is_empty(path, error);
}

// One attempt through `member`: its leader adds and assigns this node. Empty on success, else
// what went wrong, for the final message.
std::string try_join(const DbConfig& config, const TlsContext* tls, const std::string& member) {
  Outcome<Connection> first = Connection::open(member, join_request_timeout, tls);
  if (!first) return first.error().message;
  Outcome<wire::Node> leader = first->leader();
  if (!leader) return leader.error().message;
  if (leader->id == 0) return member + ": no leader known";
  Outcome<Connection> connection = Connection::open(leader->address, join_request_timeout, tls);
  if (!connection) return connection.error().message;
  Outcome<wire::Nodes> nodes = connection->cluster();
  if (!nodes) return nodes.error().message;
  bool listed = false;
  for (const wire::NodeInfo& node : nodes->nodes) {
    if (node.id == config.node_id && node.address != config.address) {
      return "the cluster already has node " + std::to_string(node.id) + " at " + node.address +
             ": remove it first (or give this node another db.node_id)";
    }
    listed = listed || node.id == config.node_id;
  }
  if (!listed) {
    Outcome<wire::Empty> added = connection->add(config.node_id, config.address);
    if (!added) return "ADD at " + leader->address + ": " + added.error().message;
  }
  if (config.role != wire::Role::spare) {  // ADD makes a spare
    Outcome<wire::Empty> assigned = connection->assign(config.node_id, config.role);
    if (!assigned) return "ASSIGN at " + leader->address + ": " + assigned.error().message;
  }
  return {};
}

}  // namespace

DbNode::DbNode(const DbConfig& config) : config_(config) {
  const fs::path data_dir = config.data_dir;
  const bool fresh = directory_is_empty(data_dir);
  if (config.node_id == 1 && fresh && !config.join.empty()) {
    throw NodeError("db.node_id 1 with an empty data dir bootstraps a new cluster, but db.join names "
                    "an existing one: give this node an unused db.node_id to join it");
  }
  if (config.node_id != 1 && fresh && config.join.empty()) {
    throw NodeError("db.node_id " + std::to_string(config.node_id) +
                    " has no data yet and db.join is empty: list members of the cluster to join "
                    "(only node 1 bootstraps a new one)");
  }
  std::error_code error;
  fs::create_directories(data_dir, error);
  if (error) throw NodeError("cannot create db.data_dir " + config.data_dir + ": " + error.message());
  fs::permissions(data_dir, fs::perms::owner_all, fs::perm_options::replace, error);
  needs_join_ = config.node_id != 1 && !fs::exists(data_dir / join_marker_name);
  if (!config.tls_dir.empty()) {
    try {
      gateway_ = std::make_unique<TlsGateway>(config.tls_dir);
    } catch (const GatewayError& failure) {
      throw NodeError(failure.what());
    }
  }

  if (dqlite_node_create(config.node_id, config.address.c_str(), config.data_dir.c_str(), &node_) != 0) {
    const std::string reason = node_ != nullptr ? dqlite_node_errmsg(node_) : "out of memory";
    if (node_ != nullptr) dqlite_node_destroy(node_);
    node_ = nullptr;
    throw NodeError("cannot create the dqlite node: " + reason);
  }
  const auto check = [&](int status, const std::string& what) {
    if (status == 0) return;
    const std::string reason = dqlite_node_errmsg(node_);
    dqlite_node_destroy(node_);
    node_ = nullptr;
    throw NodeError(what + ": " + (reason.empty() ? "dqlite error " + std::to_string(status) : reason));
  };
  if (gateway_) {  // invariant 3: "@" lets dqlite pick an unused abstract name
    check(dqlite_node_set_bind_address(node_, "@"), "cannot bind an abstract socket");
    check(dqlite_node_set_connect_func(node_, TlsGateway::connect_function, gateway_.get()), "dqlite connect function");
  } else {
    check(dqlite_node_set_bind_address(node_, config.bind.c_str()), "cannot bind " + config.bind);
    check(dqlite_node_set_connect_func(node_, connect_without_delay, nullptr), "dqlite connect function");
  }
  check(dqlite_node_set_network_latency_ms(node_, config.network_latency_ms), "db.network_latency_ms");
  check(dqlite_node_set_failure_domain(node_, config.failure_domain), "db.failure_domain");
  check(dqlite_node_set_snapshot_params(node_, config.snapshot_threshold, config.snapshot_trailing),
        "db.snapshot_threshold/snapshot_trailing");
  check(dqlite_node_start(node_), "cannot start the dqlite node at " + config.bind);
  if (gateway_) {
    try {
      gateway_->start(config.bind, dqlite_node_get_bind_address(node_));
    } catch (const GatewayError& failure) {
      dqlite_node_stop(node_);
      dqlite_node_destroy(node_);
      node_ = nullptr;
      throw NodeError(failure.what());
    }
  }
  log::info("db: dqlite node ", config.node_id, " at ", config.address, " (data ", config.data_dir,
            fresh ? ", new" : "", ")");
}

DbNode::~DbNode() {
  if (node_ == nullptr) return;
  dqlite_node_stop(node_);
  dqlite_node_destroy(node_);
}

void DbNode::join(const std::function<bool()>& go_on) {
  const auto deadline = std::chrono::steady_clock::now() + join_timeout;
  std::string answers;
  for (;;) {
    answers.clear();
    for (const std::string& member : config_.join) {
      if (!go_on()) throw NodeError("the join was called off (identity removed) before it succeeded");
      const std::string problem = try_join(config_, client_tls().get(), member);
      if (problem.empty()) {
        std::ofstream marker(fs::path(config_.data_dir) / join_marker_name);
        marker << "joined through " << member << "\n";
        if (!marker.flush()) throw NodeError("joined, but cannot record it in " + config_.data_dir);
        log::info("db: joined the cluster through ", member);
        needs_join_ = false;
        return;
      }
      answers += "\n  " + member + ": " + problem;
    }
    if (std::chrono::steady_clock::now() + join_retry_interval > deadline) break;
    std::this_thread::sleep_for(join_retry_interval);  // a paced retry, not synchronisation
  }
  throw NodeError("could not join the cluster within " + std::to_string(join_timeout.count() / 1000) +
                  " s; what each member answered:" + answers);
}

}  // namespace stacknode::db
