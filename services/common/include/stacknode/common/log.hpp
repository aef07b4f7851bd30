// Logging for every stacknode daemon: levelled lines on stderr, one write(2) per line so that
// lines from different threads never interleave. Under systemd (JOURNAL_STREAM set) each line
// carries a <N> syslog priority prefix that journald turns into the entry's priority; on a
// terminal it carries a UTC timestamp and the level instead. Not for hot paths: the dataplane's
// fast path and the web tier's per-request path count, they do not log.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace stacknode::log {

enum class Level { debug = 0, info = 1, warning = 2, error = 3 };

// Process-wide settings, normally set once at start-up from node.cfg (`log.level`).
void set_level(Level level);
Level level();
// "debug", "info", "warning" (or "warn"), "error"; false for anything else.
bool parse_level(std::string_view text, Level& out);
// The program name shown on every line, e.g. "stacknode-web".
void set_program(std::string_view name);

// Writes one finished line; callers use the helpers below.
void write_line(Level level, std::string_view message);

template <typename... Parts>
void write(Level at, const Parts&... parts) {
  if (at < level()) return;
  std::ostringstream line;
  (line << ... << parts);
  write_line(at, line.str());
}

template <typename... Parts>
void debug(const Parts&... parts) { write(Level::debug, parts...); }
template <typename... Parts>
void info(const Parts&... parts) { write(Level::info, parts...); }
template <typename... Parts>
void warn(const Parts&... parts) { write(Level::warning, parts...); }
template <typename... Parts>
void error(const Parts&... parts) { write(Level::error, parts...); }

}  // namespace stacknode::log
