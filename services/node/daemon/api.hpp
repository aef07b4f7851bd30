// stacknoded's REST API on 8443 (HTTPS): /api/v1/... for the web console, stackctl and scripts.
// services/node/README.md lists every endpoint with an example; this is the code.
//
// Who may call: everything but /healthz, /metrics, POST /api/v1/login and the join steps
// (POST /api/v1/join/{prepare,commit,abort}, whose credential is the join token's secret) needs
// a principal:
//  - a user's API token, `Authorization: Bearer snt1.<hex>` (from login, or made for a script);
//  - or a node certificate of this cluster presented in the TLS handshake (mutual TLS: other
//    members, and stackctl as root on a box, which uses that box's certificate); a removed
//    node's certificate is revoked and refused.
// Logins are rate limited per client address (LoginLimiter). Every change is audited with the
// principal as actor ("admin", "node:sn2").
//
// Threading: handle() runs on an HTTP thread and only parses; database calls and password checks
// run on the WorkQueue, and the answer is posted back to the connection's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "stacknode/common/http_server.hpp"
#include "stacknode/common/work_queue.hpp"
#include "stacknode/node/control.hpp"

namespace stacknode::node {

// Failed logins from one address within login_window: after login_failures_allowed of them,
// logins from it are refused (429) until the oldest leaves the window. Tracks at most
// login_tracked_addresses addresses (the oldest are forgotten first).
inline constexpr std::size_t login_failures_allowed = 5;
inline constexpr std::chrono::seconds login_window{60};
inline constexpr std::size_t login_tracked_addresses = 4096;
// Jobs waiting for a worker before the API answers 503.
inline constexpr std::size_t max_pending_api_jobs = 256;

class LoginLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // Admits a login attempt from `address` at `now`, counting it as a failure until release():
  // attempts in flight count too, so concurrent guesses cannot slip past the limit. Returns how
  // long the address must wait instead (and counts nothing) when it is over the limit.
  std::chrono::seconds admit(const std::string& address, Clock::time_point now);
  // The attempt admitted at `admitted` succeeded (or was not a guess): it no longer counts.
  void release(const std::string& address, Clock::time_point admitted);

 private:
  void forget_old(std::deque<Clock::time_point>& failures, Clock::time_point now) const;
  std::mutex mutex_;
  std::map<std::string, std::deque<Clock::time_point>> failures_;
};

// This box, as the API needs to know it.
struct Self {
  std::int64_t node_id = 0;
  std::string name;
  std::string ca_certificate_pem;
};

class ApiHandler final : public http::Handler {
 public:
  ApiHandler(ControlStore& store, WorkQueue& queue, Self self) : store_(store), queue_(queue), self_(std::move(self)) {}

  void handle(const http::RequestContext& context, http::Request& request, http::Respond respond) override;

 private:
  ControlStore& store_;
  WorkQueue& queue_;
  const Self self_;
  LoginLimiter limiter_;
};

}  // namespace stacknode::node
