// Raw TCP client for component tests; see net.hpp.
#include "net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace stacknode::test {
namespace {

// Binds `fd` to 127.0.0.1 at a port the kernel picks; that port, or 0 on failure.
std::uint16_t bind_loopback(int fd) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return 0;
  }
  return ntohs(address.sin_port);
}

}  // namespace

std::string loopback_address(std::uint16_t port) {
  return std::string(loopback) + ":" + std::to_string(port);
}

std::uint16_t unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const std::uint16_t port = bind_loopback(fd);
  if (fd >= 0) ::close(fd);  // nothing listens there now: connecting is refused
  if (port == 0) throw std::runtime_error("cannot bind a socket on 127.0.0.1");
  return port;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

RawConnection::RawConnection(std::string_view host, std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  ::inet_pton(AF_INET, std::string(host).c_str(), &address.sin_addr);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
  int one = 1;
  if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::send(std::string_view bytes) {
  return send_all(fd_, bytes);
}

std::string RawConnection::read_until(std::string_view marker, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out = std::move(pending_);
  pending_.clear();
  std::array<char, 16384> chunk;
  while (marker.empty() || out.find(marker) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd waiting{fd_, POLLIN, 0};
    if (::poll(&waiting, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t got = ::recv(fd_, chunk.data(), chunk.size(), 0);
    if (got <= 0) break;
    out.append(chunk.data(), static_cast<std::size_t>(got));
  }
  return out;
}

std::string RawConnection::read_until_close(std::chrono::milliseconds timeout) {
  return read_until({}, timeout);
}

bool RawConnection::closed_within(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<char, 16384> chunk;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd waiting{fd_, POLLIN, 0};
    if (::poll(&waiting, 1, static_cast<int>(left.count())) <= 0) return false;
    const ssize_t got = ::recv(fd_, chunk.data(), chunk.size(), 0);
    if (got == 0 || (got < 0 && errno == ECONNRESET)) return true;
    if (got > 0) pending_.append(chunk.data(), static_cast<std::size_t>(got));
  }
}

LoopbackListener::LoopbackListener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  port_ = bind_loopback(fd_);
  if (port_ == 0 || ::pipe2(wake_, O_CLOEXEC) != 0 || ::listen(fd_, SOMAXCONN) != 0) {
    for (const int fd : {fd_, wake_[0], wake_[1]}) {
      if (fd >= 0) ::close(fd);
    }
    throw std::runtime_error("cannot listen on 127.0.0.1");
  }
}

LoopbackListener::~LoopbackListener() {
  ::close(fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

bool LoopbackListener::wait_readable(int fd) const {
  while (true) {
    pollfd waiting[2] = {{fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(waiting, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    return waiting[1].revents == 0;
  }
}

int LoopbackListener::accept() const {
  return ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
}

void LoopbackListener::wake() {
  const char wake = 1;
  [[maybe_unused]] const auto written = ::write(wake_[1], &wake, 1);
}

std::optional<std::string> unix_line_request(const std::string& socket_path, std::string_view line,
                                             std::chrono::milliseconds timeout) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof address.sun_path) return std::nullopt;
  socket_path.copy(address.sun_path, socket_path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> answer;
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      send_all(fd, std::string(line) + "\n")) {
    std::array<char, 65536> chunk;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd waiting{fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&waiting, 1, static_cast<int>(left.count())) <= 0) break;
      const ssize_t got = ::recv(fd, chunk.data(), chunk.size(), 0);
      if (got <= 0) break;
      received.append(chunk.data(), static_cast<std::size_t>(got));
      if (const auto end = received.find('\n'); end != std::string::npos) {
        answer = received.substr(0, end);
        break;
      }
    }
  }
  ::close(fd);
  return answer;
}

int status_of(std::string_view raw) {
  if (raw.size() < 12 || raw.substr(0, 5) != "HTTP/") return 0;
  const auto space = raw.find(' ');
  if (space == std::string_view::npos || space + 4 > raw.size()) return 0;
  return std::atoi(std::string(raw.substr(space + 1, 3)).c_str());
}

}  // namespace stacknode::test
