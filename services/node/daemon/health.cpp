// Health checks of pool members; see health.hpp.
#include "health.hpp"

#include "stacknode/common/log.hpp"

namespace stacknode::node {

void HealthChecker::step() {
  Checked<std::vector<PoolRow>> pools = lb_.pools();
  Checked<std::vector<NodeRow>> nodes = pools ? store_.nodes() : Checked<std::vector<NodeRow>>(pools.problem());
  if (!pools || !nodes) {
    const std::string& problem = (!pools ? pools.problem() : nodes.problem()).message;
    if (problem != last_problem_) log::warn("health checks: ", problem);
    last_problem_ = problem;
    return;
  }
  std::map<std::pair<std::string, std::int64_t>, Track> kept;
  for (const PoolRow& pool : *pools) {
    const auto interval = std::chrono::milliseconds(pool.health_interval_ms);
    for (const NodeRow& node : *nodes) {
      const std::optional<std::string> address = service_address(node);
      if (!address) continue;
      const std::pair<std::string, std::int64_t> key{pool.name, node.id};
      Track track = tracks_.contains(key) ? tracks_[key] : Track{};
      if (Clock::now() >= track.due) {
        track.due = Clock::now() + interval;
        const auto timeout = std::chrono::milliseconds(pool.health_timeout_ms);
        const http::ClientResult result =
            client_.get(*address + ":" + std::to_string(pool.port), pool.health_path, {timeout, timeout});
        const bool good = result.ok() && result.response.result_int() < 400;
        track.good = good ? track.good + 1 : 0;
        track.bad = good ? 0 : track.bad + 1;
        std::optional<bool> verdict = track.verdict;
        if (track.good >= pool.rise) verdict = true;
        if (track.bad >= pool.fall) verdict = false;
        if (verdict != track.verdict && verdict) {
          log::info("health: ", pool.name, " member ", node.name, " is ", *verdict ? "up" : "down",
                    good ? "" : " (" + std::string(result.ok() ? "status " + std::to_string(result.response.result_int())
                                                                : std::string(http::failure_name(result.failure))) + ")");
        }
        // Written when it changes, and again every other interval so the view stays fresh.
        const bool changed = verdict != track.verdict;
        track.verdict = verdict;
        if (track.verdict && (changed || track.write_failed || Clock::now() - track.written >= 2 * interval)) {
          const std::int64_t now_ms = unix_now_ms();
          Checked<Done> written = lb_.record_health({pool.name, node.id, self_id_, *track.verdict, now_ms});
          track.write_failed = !written;
          if (written) {
            track.written = Clock::now();
          } else if (written.problem().message != last_problem_) {
            log::warn("health checks: ", written.problem().message);
            last_problem_ = written.problem().message;
          }
        }
      }
      kept[key] = track;
    }
  }
  tracks_ = std::move(kept);  // members and pools that are gone are forgotten
}

}  // namespace stacknode::node
