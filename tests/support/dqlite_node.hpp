// A libdqlite node run inside the test process, on 127.0.0.1 with its own temporary data
// directory, for component tests of code that talks to dqlite (services/db's client,
// services/node's store). Node id 1 bootstraps a cluster of its own; others are added to it
// through a client (ADD, ASSIGN). Stopped and destroyed with the object.
#pragma once

#include <cstdint>
#include <string>

#include "process.hpp"

struct dqlite_node;

namespace stacknode::test {

// dqlite derives its Raft timeouts from this (1.11 server.c: election timeout 15x, heartbeat
// 1.5x), so 20 ms gives an election timeout of 300 ms instead of the default 3 s: quick tests,
// with enough margin that a loaded machine (ctest -j, builds) does not miss heartbeats and depose
// a leader in the middle of a test (5 ms, a 75 ms election timeout, passed under load too).
inline constexpr unsigned test_network_latency_ms = 20;

class DqliteNode {
 public:
  // Starts the node; a failure fails the current test (CppUTest FAIL).
  explicit DqliteNode(std::uint64_t id = 1, unsigned network_latency_ms = test_network_latency_ms);
  ~DqliteNode();
  DqliteNode(const DqliteNode&) = delete;
  DqliteNode& operator=(const DqliteNode&) = delete;

  void stop();  // idempotent; the destructor stops a running node
  std::uint64_t id() const { return id_; }
  const std::string& address() const { return address_; }

 private:
  TempDir dir_;
  std::uint64_t id_;
  std::string address_;
  dqlite_node* node_ = nullptr;
  bool running_ = false;
};

}  // namespace stacknode::test
