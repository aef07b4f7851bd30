// Raw TCP for component tests: send exact bytes (malformed requests, slow clients) and read what
// the server answers, without any HTTP library smoothing things over; and the listening side of
// fake upstreams that answer what no proper server would.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stacknode::test {

inline constexpr std::string_view loopback = "127.0.0.1";
// "127.0.0.1:<port>"; port 0 asks for one the kernel picks.
std::string loopback_address(std::uint16_t port);
// A port on 127.0.0.1 where nothing listens: connecting to it is refused.
std::uint16_t unused_port();

// Sends all of `bytes` on socket `fd`; false if the peer is gone.
bool send_all(int fd, std::string_view bytes);

class RawConnection {
 public:
  RawConnection(std::string_view host, std::uint16_t port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool send(std::string_view bytes);  // false if the peer is gone
  // Reads until the peer closes or `timeout` passes; returns what arrived.
  std::string read_until_close(std::chrono::milliseconds timeout);
  // Reads until `marker` has arrived (or close/timeout); returns everything read.
  std::string read_until(std::string_view marker, std::chrono::milliseconds timeout);
  // True if the peer closed (read returned 0 or reset) within `timeout`.
  bool closed_within(std::chrono::milliseconds timeout);
  bool connected() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  std::string pending_;
};

// A socket listening on 127.0.0.1 at a port the kernel picks, for a fake upstream that serves it
// on a thread of its own, with a way to end that thread: after wake(), every wait returns false.
class LoopbackListener {
 public:
  LoopbackListener();  // throws std::runtime_error when it cannot listen
  ~LoopbackListener();
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;

  std::uint16_t port() const { return port_; }
  // Waits until `fd` is readable (true) or wake() was called (false).
  bool wait_readable(int fd) const;
  // Waits until a connection can be accepted (true) or wake() was called (false).
  bool wait_for_connection() const { return wait_readable(fd_); }
  // The socket of the next connection, -1 if accepting failed.
  int accept() const;
  // Ends every wait, now and later; call it before joining the thread that waits.
  void wake();

 private:
  int fd_ = -1;
  int wake_[2] = {-1, -1};
  std::uint16_t port_ = 0;
};

// One request line to a Unix stream socket that answers each line with one line (the dataplane's
// control socket): connects, sends `line` plus a newline, reads up to the first newline. The
// answer without its newline, or std::nullopt when the socket is absent, closes early or stays
// silent for `timeout`.
std::optional<std::string> unix_line_request(const std::string& socket_path, std::string_view line,
                                             std::chrono::milliseconds timeout);

// Status code of the first response in `raw` ("HTTP/1.1 404 ..." gives 404), 0 if none.
int status_of(std::string_view raw);

}  // namespace stacknode::test
