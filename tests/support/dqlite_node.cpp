// A libdqlite node inside the test process; see dqlite_node.hpp.
#include "dqlite_node.hpp"

extern "C" {
#include <dqlite.h>
}

#include <CppUTest/TestHarness.h>

#include "net.hpp"

namespace stacknode::test {

DqliteNode::DqliteNode(std::uint64_t id, unsigned network_latency_ms)
    : id_(id), address_(loopback_address(unused_port())) {
  if (dqlite_node_create(id, address_.c_str(), dir_.path().c_str(), &node_) != 0) {
    node_ = nullptr;
    FAIL("dqlite_node_create failed");
  }
  if (dqlite_node_set_bind_address(node_, address_.c_str()) != 0 ||
      dqlite_node_set_network_latency_ms(node_, network_latency_ms) != 0 || dqlite_node_start(node_) != 0) {
    const std::string reason = dqlite_node_errmsg(node_);
    dqlite_node_destroy(node_);
    node_ = nullptr;
    FAIL(("dqlite node did not start: " + reason).c_str());
  }
  running_ = true;
}

DqliteNode::~DqliteNode() {
  stop();
  if (node_ != nullptr) dqlite_node_destroy(node_);
}

void DqliteNode::stop() {
  if (running_) dqlite_node_stop(node_);
  running_ = false;
}

}  // namespace stacknode::test
