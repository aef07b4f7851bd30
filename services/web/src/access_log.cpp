// JSON-lines access log; see access_log.hpp.
#include "access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace stacknode::web {
namespace {

// Written out once this much has gathered; bounds memory and the size of one write.
constexpr std::size_t flush_threshold_bytes = 64 * 1024;

// JSON string escaping; bytes >= 0x80 pass through when they form valid UTF-8 sequences is more
// than a log needs: any byte outside printable ASCII is written as \u00XX, so every line is valid
// JSON whatever a client put in its request target.
void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const unsigned char c : text) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
    else {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  out += '"';
}

std::FILE* open_log(const std::string& path) {
  if (path == "-") return stderr;
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return nullptr;
  return ::fdopen(fd, "a");
}

}  // namespace

AccessLog::AccessLog(std::string path) : path_(std::move(path)) {
  file_ = open_log(path_);
  if (file_ == nullptr) {
    throw std::runtime_error("access log " + path_ + ": " + std::strerror(errno));
  }
}

AccessLog::~AccessLog() {
  flush();
  if (file_ != nullptr && file_ != stderr) std::fclose(file_);
}

std::string AccessLog::format(const http::CompletedRequest& done, std::time_t now) {
  std::string line;
  line.reserve(256);
  char stamp[32];
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
  line += "{\"time\":\"";
  line += stamp;
  line += "\",\"remote\":";
  append_json_string(line, http::format_address(done.context.remote.address()));
  line += ",\"tls\":";
  line += done.context.tls ? "true" : "false";
  line += ",\"method\":";
  append_json_string(line, done.request.method_string());
  line += ",\"target\":";
  append_json_string(line, done.request.target());
  line += ",\"status\":" + std::to_string(done.reply.status());
  line += ",\"bytes\":" + std::to_string(done.bytes_sent);
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.6f", done.seconds);
  line += ",\"request_time\":";
  line += seconds;
  if (!done.reply.upstream.empty()) {
    line += ",\"upstream\":";
    append_json_string(line, done.reply.upstream);
  }
  if (done.reply.upstream_seconds >= 0) {
    std::snprintf(seconds, sizeof seconds, "%.6f", done.reply.upstream_seconds);
    line += ",\"upstream_time\":";
    line += seconds;
  }
  if (!done.reply.cache_status.empty()) {
    line += ",\"cache\":";
    append_json_string(line, done.reply.cache_status);
  }
  const auto agent = done.request[boost::beast::http::field::user_agent];
  if (!agent.empty()) {
    line += ",\"user_agent\":";
    append_json_string(line, agent);
  }
  line += "}\n";
  return line;
}

void AccessLog::record(const http::CompletedRequest& done) {
  std::string line = format(done, std::time(nullptr));
  std::lock_guard lock(mutex_);
  buffer_ += line;
  if (buffer_.size() >= flush_threshold_bytes) write_out();
}

void AccessLog::flush() {
  std::lock_guard lock(mutex_);
  write_out();
}

void AccessLog::write_out() {
  if (buffer_.empty() || file_ == nullptr) return;
  std::fwrite(buffer_.data(), 1, buffer_.size(), file_);
  std::fflush(file_);
  buffer_.clear();
}

bool AccessLog::reopen(std::string& error) {
  if (path_ == "-") return true;
  std::FILE* fresh = open_log(path_);
  if (fresh == nullptr) {
    error = "access log " + path_ + ": " + std::strerror(errno);
    return false;
  }
  std::lock_guard lock(mutex_);
  write_out();
  std::fclose(file_);
  file_ = fresh;
  return true;
}

}  // namespace stacknode::web
