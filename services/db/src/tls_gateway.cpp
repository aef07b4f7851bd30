// stacknode-db's mutual-TLS front for its dqlite node; see tls_gateway.hpp.
#include "tls_gateway.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern "C" {  // dqlite.h has no C++ guards
#include <dqlite.h>
}

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <functional>
#include <vector>

#include "stacknode/common/log.hpp"
#include "stacknode/db/connection.hpp"

namespace stacknode::db {
namespace {

using Clock = std::chrono::steady_clock;

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void set_nodelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A TCP connection to `endpoint` within `timeout`; -1 with `error` set on failure.
int connect_tcp(const Endpoint& endpoint, std::chrono::milliseconds timeout, std::string& error) {
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(endpoint.port);
  ::inet_pton(AF_INET, endpoint.host.c_str(), &target.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0 && errno != EINPROGRESS) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  pollfd waiting{fd, POLLOUT, 0};
  int ready = 0;
  do {
    ready = ::poll(&waiting, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  int socket_error = 0;
  socklen_t length = sizeof socket_error;
  if (ready == 1) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &socket_error, &length);
  if (ready != 1 || socket_error != 0) {
    error = ready == 0 ? "timed out" : std::strerror(ready < 0 ? errno : socket_error);
    ::close(fd);
    return -1;
  }
  set_nodelay(fd);
  return fd;
}

// A connection to the abstract Unix socket "@name" of this process's dqlite node.
int connect_local(const std::string& local) {
  sockaddr_un target{};
  target.sun_family = AF_UNIX;
  const std::string name = local.substr(1);  // without the '@'
  if (name.size() + 1 > sizeof target.sun_path) return -1;
  std::memcpy(target.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), length) != 0) {
    ::close(fd);
    return -1;
  }
  set_nonblocking(fd);
  return fd;
}

}  // namespace

TlsGateway::TlsGateway(std::string tls_dir) : tls_dir_(std::move(tls_dir)) {
  std::string error;
  const std::optional<TlsCredentials> credentials = read_tls_credentials(tls_dir_, error);
  if (!credentials) throw GatewayError("db TLS: " + error);
  server_ = TlsContext::make(TlsContext::Side::server, *credentials, error);
  if (server_) client_ = TlsContext::make(TlsContext::Side::client, *credentials, error);
  if (!server_ || !client_) throw GatewayError("db TLS (" + tls_dir_ + "): " + error);
  if (::pipe2(stop_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) throw GatewayError("db TLS: pipe: " + std::string(std::strerror(errno)));
  reload_revoked();
}

TlsGateway::~TlsGateway() {
  const char stop = 's';
  if (::write(stop_pipe_[1], &stop, 1) != 1) log::warn("db TLS: cannot signal the relays to stop");
  if (acceptor_.joinable()) acceptor_.join();
  std::list<Relay> relays;
  {
    const std::lock_guard lock(mutex_);
    relays.swap(relays_);
  }
  for (Relay& relay : relays) relay.thread.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

void TlsGateway::start(const std::string& bind, const std::string& local) {
  const std::optional<Endpoint> endpoint = parse_endpoint(bind);
  if (!endpoint) throw GatewayError("db TLS: '" + bind + "' is not IPv4 host:port");
  if (local.size() < 2 || local[0] != '@') throw GatewayError("db TLS: the node's socket '" + local + "' is not abstract");
  local_ = local;
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(endpoint->port);
  ::inet_pton(AF_INET, endpoint->host.c_str(), &address.sin_addr);
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listen_fd_, gateway_listen_backlog) != 0) {
    throw GatewayError("db TLS: cannot listen on " + bind + ": " + std::strerror(errno));
  }
  acceptor_ = std::thread([this] { accept_loop(); });
  log::info("db: wire port ", bind, " runs mutual TLS (", tls_dir_, "); the node listens on ", local);
}

std::size_t TlsGateway::relays() const {
  const std::lock_guard lock(mutex_);
  std::size_t running = 0;
  for (const Relay& relay : relays_) running += relay.finished ? 0 : 1;
  return running;
}

bool TlsGateway::spawn(std::function<void()> work) {
  const std::lock_guard lock(mutex_);
  for (auto relay = relays_.begin(); relay != relays_.end();) {  // reap the finished ones
    if (relay->finished) {
      relay->thread.join();
      relay = relays_.erase(relay);
    } else {
      ++relay;
    }
  }
  if (relays_.size() >= max_gateway_connections) {
    log::warn("db TLS: ", max_gateway_connections, " connections already: refusing another");
    return false;
  }
  Relay& relay = relays_.emplace_back();
  try {
    relay.thread = std::thread([work = std::move(work), &relay] {
      work();
      relay.finished = true;
    });
  } catch (const std::system_error& error) {
    log::warn("db TLS: cannot start a relay thread: ", error.what());
    relays_.pop_back();
    return false;
  }
  return true;
}

void TlsGateway::reload_revoked() {
  struct stat status {};
  const std::string path = tls_dir_ + "/" + std::string(revoked_file_name);
  const std::int64_t stamp =
      ::stat(path.c_str(), &status) == 0 ? std::int64_t{status.st_mtim.tv_sec} * 1'000'000'000 + status.st_mtim.tv_nsec : -1;
  {
    const std::lock_guard lock(mutex_);
    if (stamp == revoked_stamp_) return;
  }
  std::set<std::uint64_t> serials;
  std::ifstream in(path);
  std::uint64_t serial = 0;
  while (in >> serial) serials.insert(serial);
  const std::lock_guard lock(mutex_);
  revoked_.swap(serials);
  revoked_stamp_ = stamp;
}

bool TlsGateway::revoked(std::uint64_t serial) {
  const std::lock_guard lock(mutex_);
  return revoked_.count(serial) != 0;
}

void TlsGateway::accept_loop() {
  for (;;) {
    pollfd waiting[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    const int ready = ::poll(waiting, 2, static_cast<int>(revocation_check_interval.count()));
    if (waiting[1].revents != 0) return;
    reload_revoked();
    if (ready <= 0 || (waiting[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      // Out of descriptors: the connection stays queued and poll() would return at once.
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(accept_backoff);
      continue;  // else the peer gave up already
    }
    set_nodelay(fd);
    if (!spawn([this, fd] { serve_incoming(fd); })) ::close(fd);
  }
}

void TlsGateway::serve_incoming(int fd) {
  std::string error;
  const std::unique_ptr<TlsSession> session =
      TlsSession::handshake(fd, *server_, {}, Clock::now() + gateway_handshake_timeout, error);
  if (!session) {
    log::warn("db TLS: refused a connection: ", error);
  } else if (const std::uint64_t serial = session->peer_serial(); revoked(serial)) {
    log::warn("db TLS: refused node certificate ", serial, ": it is revoked");
  } else if (const int local = connect_local(local_); local < 0) {
    log::warn("db TLS: cannot reach the dqlite node at ", local_, ": ", std::strerror(errno));
  } else {
    relay(fd, *session, local);
    ::close(local);
  }
  ::close(fd);
}

int TlsGateway::connect_function(void* gateway, const char* address, int* fd) {
  const int connected = static_cast<TlsGateway*>(gateway)->connect_to(address);
  if (connected < 0) return DQLITE_ERROR;
  *fd = connected;
  return 0;
}

int TlsGateway::connect_to(const std::string& address) {
  const std::optional<Endpoint> endpoint = parse_endpoint(address);
  if (!endpoint) return -1;
  std::string error;
  const int fd = connect_tcp(*endpoint, gateway_connect_timeout, error);
  if (fd < 0) return -1;  // dqlite retries; a peer that is down is not worth a log line each time
  std::shared_ptr<TlsSession> session =
      TlsSession::handshake(fd, *client_, endpoint->host, Clock::now() + gateway_handshake_timeout, error);
  if (session && revoked(session->peer_serial())) {
    error = "its certificate " + std::to_string(session->peer_serial()) + " is revoked";
    session.reset();
  }
  int pair[2] = {-1, -1};
  if (!session || ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    if (!session) log::warn("db TLS: cannot reach ", address, ": ", error);
    ::close(fd);
    return -1;
  }
  set_nonblocking(pair[1]);
  if (!spawn([this, fd, session, plain = pair[1]] {
        relay(fd, *session, plain);
        ::close(plain);
        ::close(fd);
      })) {
    ::close(pair[0]);
    ::close(pair[1]);
    ::close(fd);
    return -1;
  }
  return pair[0];
}

void TlsGateway::relay(int tls_fd, TlsSession& session, int plain_fd) {
  const std::uint64_t serial = session.peer_serial();
  std::vector<std::uint8_t> to_plain(relay_buffer_bytes), to_tls(relay_buffer_bytes);
  std::size_t plain_start = 0, plain_end = 0;  // to_plain[plain_start, plain_end) waits for plain_fd
  std::size_t tls_size = 0;                    // to_tls[0, tls_size) waits for the session (rewritten whole)
  // A side that ended (end of file) is read no more; what was read from it is still delivered,
  // then the relay ends: half a conversation is never cut short of its last bytes.
  bool tls_open = true, plain_open = true;
  auto next_check = Clock::now();
  for (;;) {
    if (Clock::now() >= next_check) {
      if (revoked(serial)) {
        log::warn("db TLS: cut a connection of node certificate ", serial, ": it was revoked");
        return;
      }
      next_check = Clock::now() + revocation_check_interval;
    }
    bool moved = false;
    short tls_events = 0, plain_events = 0;
    if (tls_open && plain_start == plain_end) {
      const TlsSession::Io io = session.read(to_plain.data(), to_plain.size());
      if (io.status == TlsSession::Status::failed) return;
      if (io.status == TlsSession::Status::closed) tls_open = false, moved = true;
      if (io.status == TlsSession::Status::done) plain_start = 0, plain_end = io.bytes, moved = true;
      if (io.status == TlsSession::Status::want_read) tls_events |= POLLIN;
      if (io.status == TlsSession::Status::want_write) tls_events |= POLLOUT;
    }
    if (plain_start != plain_end) {
      const ssize_t sent = ::send(plain_fd, to_plain.data() + plain_start, plain_end - plain_start, MSG_NOSIGNAL);
      if (sent > 0) plain_start += static_cast<std::size_t>(sent), moved = true;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) plain_events |= POLLOUT;
      else if (errno != EINTR) return;
    }
    if (plain_open && tls_size == 0) {
      const ssize_t got = ::recv(plain_fd, to_tls.data(), to_tls.size(), 0);
      if (got == 0) plain_open = false, moved = true;
      else if (got > 0) tls_size = static_cast<std::size_t>(got), moved = true;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) plain_events |= POLLIN;
      else if (errno != EINTR) return;
    }
    if (tls_size != 0) {
      const TlsSession::Io io = session.write(to_tls.data(), tls_size);  // all or nothing (no partial writes)
      if (io.status == TlsSession::Status::closed || io.status == TlsSession::Status::failed) return;
      if (io.status == TlsSession::Status::done) tls_size = 0, moved = true;
      if (io.status == TlsSession::Status::want_read) tls_events |= POLLIN;
      if (io.status == TlsSession::Status::want_write) tls_events |= POLLOUT;
    }
    const bool drained = plain_start == plain_end && tls_size == 0;
    if ((!tls_open || !plain_open) && drained) {
      if (!plain_open) session.shutdown();  // our side ended: say so (close_notify)
      return;
    }
    if (moved) continue;
    // A socket nothing waits on is left out (fd -1): its hang-up would wake every poll.
    pollfd waiting[3] = {{tls_events != 0 ? tls_fd : -1, tls_events, 0},
                         {plain_events != 0 ? plain_fd : -1, plain_events, 0},
                         {stop_pipe_[0], POLLIN, 0}};
    const int ready = ::poll(waiting, 3, static_cast<int>(revocation_check_interval.count()));
    if (ready < 0 && errno != EINTR) return;
    if (waiting[2].revents != 0) return;
    // An error or a hang-up that poll() reports without the events asked for: the next pass's
    // read or write sees it (end of file, or the error that ends the relay).
    if ((waiting[0].revents | waiting[1].revents) & POLLNVAL) return;
  }
}

}  // namespace stacknode::db
