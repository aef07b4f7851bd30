// stacknoded's health checks (issue 6): this node checks every pool member (every node's service
// on the pool's port) with an HTTP GET of the pool's health path, turns the answers into a
// verdict with the pool's rise and fall thresholds, and writes its view to the control database
// (backend_health). The load balancer takes a member down when most fresh views say so
// (member_healthy), so one node's broken link does not drain the rack.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "stacknode/common/http_client.hpp"
#include "stacknode/node/load_balancing.hpp"

namespace stacknode::node {

// How often the checker looks for checks that are due (the smallest pool interval allowed).
inline constexpr std::chrono::milliseconds health_tick{min_health_interval_ms};

class HealthChecker {
 public:
  HealthChecker(ControlStore& store, std::int64_t self_id) : store_(store), lb_(store), self_id_(self_id) {}
  void step();

 private:
  using Clock = std::chrono::steady_clock;
  struct Track {
    std::uint32_t good = 0;  // consecutive
    std::uint32_t bad = 0;
    std::optional<bool> verdict;
    Clock::time_point due{};
    Clock::time_point written{};  // when the verdict was last written
    bool write_failed = false;
  };
  ControlStore& store_;
  LbStore lb_;
  std::int64_t self_id_;
  std::map<std::pair<std::string, std::int64_t>, Track> tracks_;  // (pool, node id)
  http::BlockingClient client_;
  std::string last_problem_;
};

}  // namespace stacknode::node
