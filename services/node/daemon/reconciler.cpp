// The reconciler's thread; see reconciler.hpp.
#include "reconciler.hpp"

#include <algorithm>

namespace stacknode::node {

void Reconciler::add(std::string name, std::chrono::milliseconds interval, std::function<void()> step) {
  loops_.push_back({std::move(name), interval, std::move(step), {}});
}

void Reconciler::start() {
  thread_ = std::thread([this] { run(); });
}

void Reconciler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reconciler::run() {
  for (;;) {
    Clock::time_point next = Clock::time_point::max();
    for (Loop& loop : loops_) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
      }
      if (Clock::now() >= loop.due) {
        loop.step();
        loop.due = Clock::now() + loop.interval;
      }
      next = std::min(next, loop.due);
    }
    std::unique_lock lock(mutex_);
    if (wake_.wait_until(lock, next, [this] { return stopping_; })) return;
  }
}

}  // namespace stacknode::node
