// The reconciler: stacknoded's loops that make this node match the control database. Each loop
// is "read the desired state, compare with what is, do the one thing that closes the gap", run
// every `interval` on the reconciler's thread, one loop at a time, so loops never race each
// other. Adding one (the load balancer's, the services') is one add() call in main.cpp.
//
// This loops (membership.cpp): the heartbeat (this node's last_seen), and membership
// (the database client follows every member; on the node whose stacknode-db leads, the dqlite
// roles are balanced, one change per round, see membership.hpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace stacknode::node {

class Reconciler {
 public:
  using Clock = std::chrono::steady_clock;
  struct Loop {
    std::string name;
    std::chrono::milliseconds interval;
    std::function<void()> step;  // may block on the database; must not throw
    Clock::time_point due{};
  };

  ~Reconciler() { stop(); }
  void add(std::string name, std::chrono::milliseconds interval, std::function<void()> step);
  void start();  // runs every loop once now, then each on its interval, on its own thread
  void stop();   // waits for the step in progress

 private:
  void run();
  std::vector<Loop> loops_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace stacknode::node
