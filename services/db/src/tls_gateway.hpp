// stacknode-db's mutual-TLS front for its dqlite node: libdqlite 1.11 speaks plain TCP only, so
// when db.tls_dir is set the node listens on an abstract Unix socket of this process and the
// gateway owns the node's address (services/db/README.md, "TLS on the wire port"):
//  - incoming: TLS on db.bind; the peer must show a certificate of the cluster CA whose serial is
//    not in tls_dir/revoked; then bytes are relayed to and from the node's socket;
//  - outgoing (Raft to other nodes, through dqlite's connect function): TLS to the peer's
//    gateway, checking that its certificate names the address dialled; dqlite gets one end of a
//    socket pair, and the gateway relays the other end.
// One thread per relayed connection (a cluster has few: a Raft link per peer and the clients'
// pools), polling its two sockets and the gateway's stop pipe. A relay whose peer's serial is
// revoked later is cut within revocation_check_interval.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "stacknode/db/tls.hpp"

namespace stacknode::db {

inline constexpr std::chrono::milliseconds gateway_handshake_timeout{5'000};
inline constexpr std::chrono::milliseconds gateway_connect_timeout{5'000};
inline constexpr std::chrono::milliseconds revocation_check_interval{1'000};
inline constexpr std::size_t relay_buffer_bytes = 64 * 1024;
inline constexpr int gateway_listen_backlog = 64;
// Relayed connections at once (each a thread): a cluster needs tens; more are refused.
inline constexpr std::size_t max_gateway_connections = 256;
// After accept() fails for want of descriptors, before trying again.
inline constexpr std::chrono::milliseconds accept_backoff{100};

class GatewayError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class TlsGateway {
 public:
  // Loads ca.crt, node.crt and node.key from `tls_dir`; throws GatewayError naming what is wrong.
  explicit TlsGateway(std::string tls_dir);
  // Stops accepting, cuts every relay and waits for their threads.
  ~TlsGateway();
  TlsGateway(const TlsGateway&) = delete;
  TlsGateway& operator=(const TlsGateway&) = delete;

  // Listens on `bind` ("198.18.1.11:7000") and relays accepted sessions to `local` (the node's
  // abstract socket, "@name"). Throws GatewayError when it cannot listen.
  void start(const std::string& bind, const std::string& local);

  // dqlite's connect function (dqlite_node_set_connect_func, `arg` = the gateway): blocks until
  // a TLS session with the node at `address` is up, then gives dqlite its end of the relay.
  static int connect_function(void* gateway, const char* address, int* fd);

  // A client context made from the same credentials, for this process's own clients.
  std::shared_ptr<const TlsContext> client_context() const { return client_; }
  // Relays running now (tests and metrics).
  std::size_t relays() const;

 private:
  struct Relay {
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  int connect_to(const std::string& address);
  void accept_loop();
  void serve_incoming(int fd);
  void relay(int tls_fd, TlsSession& session, int plain_fd);
  // Runs `work` on a relay thread; false (nothing started) at max_gateway_connections.
  bool spawn(std::function<void()> work);
  bool revoked(std::uint64_t serial);
  void reload_revoked();

  std::string tls_dir_;
  std::shared_ptr<const TlsContext> server_;
  std::shared_ptr<const TlsContext> client_;
  std::string local_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};  // written once at destruction: every poll wakes up
  std::thread acceptor_;
  mutable std::mutex mutex_;  // guards relays_, revoked_ and revoked_stamp_
  std::list<Relay> relays_;
  std::set<std::uint64_t> revoked_;
  std::int64_t revoked_stamp_ = -1;  // mtime (ns) of the revoked file last read; -1: none
};

}  // namespace stacknode::db
