// Levelled stderr logging; see log.hpp.
#include "stacknode/common/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace stacknode::log {
namespace {

std::atomic<Level> current_level{Level::info};
std::mutex program_mutex;
std::string program_name = "stacknode";

// journald reads "<N>" at the start of a stderr line as the syslog priority (sd-daemon.h).
const char* syslog_prefix(Level level) {
  switch (level) {
    case Level::debug: return "<7>";
    case Level::info: return "<6>";
    case Level::warning: return "<4>";
    case Level::error: return "<3>";
  }
  return "<6>";
}

const char* level_name(Level level) {
  switch (level) {
    case Level::debug: return "DEBUG";
    case Level::info: return "INFO";
    case Level::warning: return "WARN";
    case Level::error: return "ERROR";
  }
  return "INFO";
}

bool under_journald() {
  static const bool journald = std::getenv("JOURNAL_STREAM") != nullptr;
  return journald;
}

}  // namespace

void set_level(Level level) { current_level.store(level, std::memory_order_relaxed); }
Level level() { return current_level.load(std::memory_order_relaxed); }

bool parse_level(std::string_view text, Level& out) {
  if (text == "debug") out = Level::debug;
  else if (text == "info") out = Level::info;
  else if (text == "warning" || text == "warn") out = Level::warning;
  else if (text == "error") out = Level::error;
  else return false;
  return true;
}

void set_program(std::string_view name) {
  std::lock_guard lock(program_mutex);
  program_name = std::string(name);
}

void write_line(Level level, std::string_view message) {
  std::string line;
  line.reserve(message.size() + 64);
  if (under_journald()) {
    line += syslog_prefix(level);
  } else {
    char stamp[32];
    std::timespec now{};
    std::timespec_get(&now, TIME_UTC);
    std::tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", &utc);
    line += stamp;
    line += level_name(level);
    line += ' ';
  }
  {
    std::lock_guard lock(program_mutex);
    line += program_name;
  }
  line += ": ";
  line += message;
  line += '\n';
  // One write per line: POSIX keeps writes to a pipe of up to PIPE_BUF bytes whole, and for longer
  // lines the kernel still does not interleave a single write with another thread's.
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t written = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (written <= 0) break;
    rest.remove_prefix(static_cast<size_t>(written));
  }
}

}  // namespace stacknode::log
