// The JSON-lines access log of stacknode-web: one object per answered request with time, client,
// method, target, status, bytes, request time, upstream and upstream time, cache status.
// Lines are gathered in a buffer and written when it fills or on flush() (a timer calls it every
// second), so a request never waits for the disk; reopen() follows log rotation (SIGHUP).
#pragma once

#include <cstdio>
#include <mutex>
#include <string>

#include "stacknode/common/http_server.hpp"

namespace stacknode::web {

class AccessLog {
 public:
  // `path`: a file (appended to, created 0640), "-" for stderr. Throws std::runtime_error if the
  // file cannot be opened.
  explicit AccessLog(std::string path);
  ~AccessLog();

  void record(const http::CompletedRequest& done);
  void flush();
  // Reopens the file (after rotation); keeps the old one if the new open fails and says why.
  bool reopen(std::string& error);

  // One JSON line (with trailing newline) for a request; public for tests.
  static std::string format(const http::CompletedRequest& done, std::time_t now);

 private:
  void write_out();  // holds mutex_

  std::string path_;
  std::FILE* file_ = nullptr;
  std::mutex mutex_;
  std::string buffer_;
};

}  // namespace stacknode::web
