// The dqlite node this process runs (libdqlite 1.11): created from DbConfig, started, joined to
// its cluster on first start, stopped on destruction. Invariants:
//  1. Node 1 bootstraps a new cluster (dqlite does that for id 1 on an empty data dir), so a
//     node 1 with an empty data dir and a join list is refused: it would start a second cluster.
//  2. Any other node joins on first start: ADD through the leader, then ASSIGN its role
//     (join()). The step is idempotent (a node already listed is only assigned), and its end is
//     recorded in the data dir (join_marker_name), so a restart never joins again.
//  3. With config.tls_dir, the node itself listens only on an abstract socket of this process
//     and every byte on the wire port goes through the TLS gateway (tls_gateway.hpp), both ways.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "db_config.hpp"
#include "tls_gateway.hpp"

struct dqlite_node;

namespace stacknode::db {

// How long a first start keeps trying to reach the cluster it joins before giving up.
inline constexpr std::chrono::milliseconds join_timeout{60'000};
// File in the data dir that says this node has joined (invariant 2).
inline constexpr std::string_view join_marker_name = "stacknode-joined";

class NodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DbNode {
 public:
  // Creates, configures and starts the node. Throws NodeError with a message a person can act on.
  explicit DbNode(const DbConfig& config);
  ~DbNode();
  DbNode(const DbNode&) = delete;
  DbNode& operator=(const DbNode&) = delete;

  // True when this start has to join a cluster (invariant 2); call join() then.
  bool needs_join() const { return needs_join_; }
  // ADD then ASSIGN through the leader found from config.join, retried until join_timeout.
  // Throws NodeError naming what every member answered. Between attempts it asks `go_on`; when
  // that says no (the identity file was removed: the join was undone), it stops and throws.
  void join(const std::function<bool()>& go_on = [] { return true; });
  // The client TLS context this process's own clients use (invariant 3); null without TLS.
  std::shared_ptr<const TlsContext> client_tls() const { return gateway_ ? gateway_->client_context() : nullptr; }

 private:
  const DbConfig& config_;
  std::unique_ptr<TlsGateway> gateway_;  // outlives the node's connections (stopped after it)
  dqlite_node* node_ = nullptr;
  bool needs_join_ = false;
};

}  // namespace stacknode::db
