// The node-local cache endpoint (issue 6, "Cache tier"): a TCP listener on a fixed address of
// every node (default 127.0.0.1:6380) that relays each client connection to the cache's current
// primary, so an application uses one address on every node and always writes to the primary.
//
// Per accepted connection: connect to the upstream current at that moment, send AUTH with the
// cluster's cache password (so local clients need none, while redis-server on the network does),
// require +OK, then relay bytes both ways until either side closes. When the upstream changes
// (failover: another primary, a higher epoch), every relayed connection is closed, so a client
// reconnects and reaches the new primary instead of writing on to a demoted one. Without an
// upstream, a new connection gets "-ERR no cache primary yet\r\n" and is closed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace stacknode::node {

inline constexpr std::size_t cache_endpoint_max_connections = 1024;
inline constexpr std::size_t cache_endpoint_buffer_bytes = 16 * 1024;  // per direction per connection

struct CacheUpstream {
  std::string host;  // IPv4 literal
  std::uint16_t port = 0;
  std::string password;    // "" sends no AUTH
  std::uint64_t epoch = 0;  // changes with every failover

  friend bool operator==(const CacheUpstream&, const CacheUpstream&) = default;
};

struct CacheEndpointStats {
  std::uint64_t accepted = 0;
  std::uint64_t refused = 0;           // no upstream, upstream unreachable, AUTH refused, over the limit
  std::uint64_t closed_on_switch = 0;  // relays closed because the upstream changed
  std::uint64_t active = 0;
};

class CacheEndpoint {
 public:
  // `listen`: "IPv4:port" (port 0 picks one: bound_port()).
  explicit CacheEndpoint(std::string listen);
  ~CacheEndpoint();  // stop()
  CacheEndpoint(const CacheEndpoint&) = delete;
  CacheEndpoint& operator=(const CacheEndpoint&) = delete;

  // Binds and starts serving on a thread of its own; throws std::runtime_error naming the address.
  void start();
  // Closes the listener and every connection, and joins the thread. Idempotent.
  void stop();
  std::uint16_t bound_port() const;

  // Thread-safe. The same upstream again changes nothing; another one closes every relay.
  void set_upstream(std::optional<CacheUpstream> upstream);
  CacheEndpointStats stats() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace stacknode::node
