// The shared start-up of every stacknode daemon: command line (--config FILE, --check-config,
// --version, --help), node.cfg loading, log level, and the exit status contract:
//   0 clean stop, 1 runtime failure, 2 bad command line or configuration (the message names
//   file:line and key), so that systemd and operators can tell "fix the config" from "crashed".
#pragma once

#include <functional>
#include <string>
#include <initializer_list>
#include <string_view>

#include "stacknode/common/config.hpp"

namespace stacknode::daemon {

inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_bad_config = 2;

struct Invocation {
  std::string config_path;
  bool check_only = false;  // --check-config: load, validate, report, exit
};

// Body of a daemon: reads its settings from `config` (throwing config::ConfigError for bad
// values), then, unless invocation.check_only, serves until stopped. Returns the exit status.
using Body = std::function<int(const config::Document& config, const Invocation& invocation)>;

// Parses the command line, loads the config, sets up logging from `log.level`, runs `body`, and
// maps errors to the exit statuses above. Settings nobody read are reported as warnings.
int run(int argc, char** argv, std::string_view program, std::string_view summary, const Body& body);

}  // namespace stacknode::daemon

namespace stacknode::daemon {
// Logs one warning per setting in `config` that nothing has read. `owned_sections` are the top
// level groups this daemon owns; settings under other daemons' sections are theirs to check.
void report_unread(const config::Document& config, std::initializer_list<std::string_view> owned_sections);
}  // namespace stacknode::daemon

namespace stacknode::daemon {
// Tells systemd (Type=notify units) that the daemon serves: sd_notify READY=1, with `status` as
// the unit's status line when given. Does nothing when the daemon was not started by systemd (no
// NOTIFY_SOCKET). The HTTP daemons call it through http::Server::run once they accept
// connections; the dataplane once it forwards; a daemon that waits for its box to join a cluster
// is doing its job too, and says so in its status.
void notify_ready(std::string_view status = {});
// Tells systemd the daemon is stopping (STOPPING=1), so that a slow shutdown is not taken for a
// hang. Does nothing outside systemd.
void notify_stopping();
}  // namespace stacknode::daemon
