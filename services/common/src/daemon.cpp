// Shared daemon start-up and exit statuses; see daemon.hpp.
#include "stacknode/common/daemon.hpp"

#include <systemd/sd-daemon.h>

#include <iostream>
#include <string>

#include "stacknode/common/log.hpp"
#include "stacknode/common/metrics.hpp"

namespace stacknode::daemon {

int run(int argc, char** argv, std::string_view program, std::string_view summary, const Body& body) {
  log::set_program(program);
  Invocation invocation{std::string(config::default_config_path), false};
  for (int index = 1; index < argc; ++index) {
    const std::string_view argument = argv[index];
    if (argument == "--config" && index + 1 < argc) {
      invocation.config_path = argv[++index];
    } else if (argument.starts_with("--config=")) {
      invocation.config_path = std::string(argument.substr(9));
    } else if (argument == "--check-config") {
      invocation.check_only = true;
    } else if (argument == "--version") {
      std::cout << program << ' ' << metrics::build_version() << " (" << metrics::build_commit()
                << ")\n";
      return exit_ok;
    } else if (argument == "--help" || argument == "-h") {
      std::cout << "usage: " << program << " [--config FILE] [--check-config] [--version]\n"
                << summary << "\n  --config FILE    node.cfg to read (default "
                << config::default_config_path << ")\n"
                << "  --check-config   validate the configuration and exit (status 2 if bad)\n";
      return exit_ok;
    } else {
      log::error("unknown argument '", argument, "' (see --help)");
      return exit_bad_config;
    }
  }
  try {
    const auto document = config::Document::load_file(invocation.config_path);
    const auto level_text = document->root().section("log").get_string("level", "info");
    log::Level level;
    if (!log::parse_level(level_text, level)) {
      document->root().section("log").fail("level", "expected debug, info, warning or error");
    }
    log::set_level(level);
    // The body reads its settings first; what is left unread afterwards is a typo or stale key.
    // Daemons call report_unread themselves once all their settings are read (see below).
    const int status = body(*document, invocation);
    return status;
  } catch (const config::ConfigError& error) {
    log::error("configuration: ", error.what());
    return exit_bad_config;
  } catch (const std::exception& error) {
    log::error(error.what());
    return exit_failure;
  }
}

}  // namespace stacknode::daemon

namespace stacknode::daemon {
namespace {
// Top-level sections of node.cfg (DESIGN.md: per-node facts); each belongs to one part.
constexpr std::string_view known_sections[] = {"node", "api", "paths", "log", "lb", "dataplane", "web", "app",
                                               "cache", "db", "cluster", "console"};
}  // namespace

void report_unread(const config::Document& config,
                   std::initializer_list<std::string_view> owned_sections) {
  for (const std::string& unread : config.unread_settings()) {
    // "file:line: path"; the path's first component is the top-level section.
    const auto path_start = unread.rfind(": ");
    const std::string_view path = std::string_view(unread).substr(path_start + 2);
    const std::string_view top = path.substr(0, path.find('.'));
    bool known = false;
    for (const auto section : known_sections) known = known || section == top;
    if (!known) {
      log::warn("configuration: unknown section ", unread, " (ignored)");
      continue;
    }
    for (const auto owned : owned_sections) {
      if (top == owned) {
        log::warn("configuration: unknown setting ", unread, " (ignored)");
        break;
      }
    }
  }
}
}  // namespace stacknode::daemon

namespace stacknode::daemon {
void notify_ready(std::string_view status) {
  const std::string message = status.empty() ? "READY=1" : "READY=1\nSTATUS=" + std::string(status);
  sd_notify(0, message.c_str());
}
void notify_stopping() { sd_notify(0, "STOPPING=1"); }
}  // namespace stacknode::daemon
