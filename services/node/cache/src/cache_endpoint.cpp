// The node-local cache endpoint (cache_endpoint.hpp): the listener (Endpoint) and, per client, a
// Relay that connects to the upstream current at accept time, authenticates, and copies bytes both
// ways. Everything runs on one io_context on the endpoint's own thread; the only state other
// threads touch is the upstream (Endpoint::upstream_mutex_) and the stats (Endpoint::stats_mutex_).
//
// A Relay's life (Relay::phase_), each transition made by the function named:
//  1. connecting: begin() -> connect_upstream(), bounded by upstream_connect_timeout. No upstream,
//     an address that is not IPv4, or a failed connect -> 4 (refuse()).
//  2. authenticating: on_connected() writes AUTH and read_auth_reply() reads until the first line
//     ends, bounded by upstream_auth_timeout; anything but exactly "+OK\r\n" -> 4. With an empty
//     password this phase is skipped. The client is not read before 3: its first commands wait
//     in the kernel's buffer, so they can never reach the upstream before (or amid) AUTH.
//  3. relaying: start_relaying() pumps each direction read -> write -> read through its own fixed
//     buffer (pump()). A direction that ends cleanly half-closes the other socket so the peer
//     sees the end after every byte before it (end_direction()); when both have ended, after
//     half_closed_timeout, or on any error -> 5.
//  4. refusing: refuse() writes one "-ERR ..." line, shuts down sending, and drains the client
//     until it closes or refusal_close_timeout passes -> 5. (Closing with unread input would
//     reset the connection and could destroy the line before the client reads it.)
//  5. closed: close() closes both sockets, cancels the deadline and leaves Endpoint::relays_.
//     Every completion handler first checks the phase it expects, so one that arrives late
//     does nothing.
// Invariants:
//  (a) Endpoint::relays_.size() == stats.active, both changed only by Endpoint::on_accept() and
//      Endpoint::forget().
//  (b) A Relay remembers the upstream generation it was accepted under. set_upstream() with a
//      different value bumps the generation, and Endpoint::close_relays_before() then closes every
//      relay of an older generation in phases 1-3, counting each in closed_on_switch. (A relay in
//      phase 4 is already on its way out and is left to finish its error line.)
//  (c) stats.accepted counts every connection taken off the listener; stats.refused counts those
//      that got an error line or, over cache_endpoint_max_connections, were closed at once.
#include "stacknode/node/cache_endpoint.hpp"

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace stacknode::node {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

// A primary on the node network answers a connect in well under a millisecond; one that has not
// after this long is down or unreachable, and the client is better told so than left hanging.
constexpr auto upstream_connect_timeout = std::chrono::seconds(2);
// AUTH is answered from memory at once; a primary that does not answer in this time is refused.
constexpr auto upstream_auth_timeout = std::chrono::seconds(2);
// A refused client gets this long to read its error line and close its end before we close ours.
constexpr auto refusal_close_timeout = std::chrono::seconds(2);
// After one side ended cleanly, the other gets this long to finish (a client that sent its
// commands and half-closed still receives the replies) before both sockets are closed.
constexpr auto half_closed_timeout = std::chrono::seconds(5);
// Pause before accepting again after the process ran out of file descriptors.
constexpr auto accept_retry_delay = std::chrono::milliseconds(100);
// The AUTH reply is "+OK\r\n" or one error line ("-WRONGPASS invalid username-password pair or
// user is disabled.\r\n" is the longest redis-server sends); more than this is not an AUTH reply.
constexpr std::size_t auth_reply_limit = 512;
static_assert(auth_reply_limit <= cache_endpoint_buffer_bytes, "the AUTH reply is read into a relay buffer");
// What refused clients read (RESP error lines, so a Redis client shows them as the command's error).
constexpr std::string_view auth_ok_reply = "+OK\r\n";
constexpr std::string_view no_primary_line = "-ERR no cache primary yet\r\n";
constexpr std::string_view auth_refused_line = "-ERR cache endpoint: upstream refused AUTH\r\n";
constexpr std::string_view not_ipv4_line = "-ERR cache endpoint: the primary's address is not an IPv4 literal\r\n";

// Concrete executor types, as in services/common: the type-erased default costs a polymorphic copy
// on every operation.
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, Executor>;

// "*2\r\n$4\r\nAUTH\r\n$<n>\r\n<password>\r\n": a bulk string carries any byte of the password.
std::string auth_command(const std::string& password) {
  return "*2\r\n$4\r\nAUTH\r\n$" + std::to_string(password.size()) + "\r\n" + password + "\r\n";
}

// "IPv4:port" -> endpoint; std::nullopt when it is not exactly that.
std::optional<tcp::endpoint> parse_listen_address(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  error_code error;
  const auto address = asio::ip::make_address_v4(std::string(text.substr(0, colon)), error);
  if (error) return std::nullopt;
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, parse_error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || parse_error != std::errc{} || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return std::nullopt;
  }
  return tcp::endpoint(address, static_cast<unsigned short>(port));
}

void set_no_delay(Socket& socket) {
  error_code ignored;  // a socket that cannot take the option still relays, a little later
  socket.set_option(tcp::no_delay(true), ignored);
}

class Relay;

// The listener, the relays, the current upstream and the counters.
class Endpoint {
 public:
  explicit Endpoint(std::string listen) : listen_(std::move(listen)) {}

  const std::string& listen() const { return listen_; }
  // Opens, binds and listens; throws std::runtime_error naming the address.
  void bind();
  void start_accepting() { accept(); }
  void run() { io_.run(); }
  // From any thread: closes the listener and every relay; run() then returns once the last
  // aborted operation has completed.
  void request_stop() {
    asio::post(io_, [this]() { shut_down(); });
  }
  std::uint16_t bound_port() const { return bound_port_.load(); }
  void set_upstream(std::optional<CacheUpstream> upstream);
  CacheEndpointStats stats() const {
    std::lock_guard lock(stats_mutex_);
    return stats_;
  }

  // For relays, on the io thread.
  Executor executor() { return io_.get_executor(); }
  void count_refused() {
    std::lock_guard lock(stats_mutex_);
    ++stats_.refused;
  }
  void forget(Relay* relay);

 private:
  void accept();
  void on_accept(const error_code& error, Socket socket);
  void close_relays_before(std::uint64_t generation);
  void shut_down();
  std::pair<std::optional<CacheUpstream>, std::uint64_t> current_upstream() const {
    std::lock_guard lock(upstream_mutex_);
    return {upstream_, generation_};
  }

  // The io_context goes first so that it is destroyed last, after every object using it.
  asio::io_context io_{1};
  Acceptor acceptor_{io_.get_executor()};
  Timer accept_retry_{io_.get_executor()};
  std::unordered_map<Relay*, std::shared_ptr<Relay>> relays_;  // io thread only
  bool shutting_down_ = false;                                 // io thread only
  std::string listen_;
  std::atomic<std::uint16_t> bound_port_{0};

  mutable std::mutex upstream_mutex_;
  std::optional<CacheUpstream> upstream_;
  std::uint64_t generation_ = 0;  // bumped by every change of upstream_

  mutable std::mutex stats_mutex_;
  CacheEndpointStats stats_;
};

// One client connection and its upstream connection; see the phases at the top of the file.
class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(Endpoint& endpoint, Socket client, std::optional<CacheUpstream> upstream, std::uint64_t generation)
      : endpoint_(endpoint),
        client_(std::move(client)),
        upstream_socket_(endpoint.executor()),
        deadline_(endpoint.executor()),
        upstream_(std::move(upstream)),
        generation_(generation) {}

  void begin();
  void close();
  // Whether a change of upstream to `generation` ends this relay (invariant b).
  bool ends_on_switch_to(std::uint64_t generation) const {
    return generation_ < generation &&
           (phase_ == Phase::connecting || phase_ == Phase::authenticating || phase_ == Phase::relaying);
  }

 private:
  enum class Phase : std::uint8_t { connecting, authenticating, relaying, refusing, closed };
  // One direction of the relay: bytes read from `from` are written to `to` before the next read.
  struct Direction {
    Socket& from;
    Socket& to;
    std::array<char, cache_endpoint_buffer_bytes> buffer{};
    bool ended = false;
  };

  void connect_upstream(const tcp::endpoint& to);
  void on_connected(const error_code& error);
  void read_auth_reply();
  void on_auth_reply(const error_code& error, std::size_t bytes);
  void start_relaying();
  void pump(Direction& direction);
  void end_direction(Direction& direction);
  void refuse(std::string line);
  void drain_client();
  // Arms the one deadline of this relay; when it passes while still in `phase`, on_deadline runs.
  void arm_deadline(Clock::duration after);
  void on_deadline(Phase armed_in);

  Endpoint& endpoint_;
  Socket client_;
  Socket upstream_socket_;
  Timer deadline_;
  std::optional<CacheUpstream> upstream_;
  std::uint64_t generation_;
  Phase phase_ = Phase::connecting;
  std::string pending_write_;  // AUTH, or the error line of phase 4
  std::string auth_reply_;
  Direction client_to_upstream_{client_, upstream_socket_};
  Direction upstream_to_client_{upstream_socket_, client_};
};

void Relay::begin() {
  set_no_delay(client_);
  if (!upstream_) {
    refuse(std::string(no_primary_line));
    return;
  }
  error_code error;
  const auto address = asio::ip::make_address_v4(upstream_->host, error);
  if (error) {
    refuse(std::string(not_ipv4_line));
    return;
  }
  connect_upstream(tcp::endpoint(address, upstream_->port));
}

void Relay::connect_upstream(const tcp::endpoint& to) {
  arm_deadline(upstream_connect_timeout);
  upstream_socket_.async_connect(to, [self = shared_from_this()](const error_code& error) {
    self->on_connected(error);
  });
}

void Relay::on_connected(const error_code& error) {
  if (phase_ != Phase::connecting) return;
  if (error) {  // refused, unreachable, or closed by the deadline
    refuse("-ERR cache endpoint: primary " + upstream_->host + ":" + std::to_string(upstream_->port) +
           " unreachable\r\n");
    return;
  }
  set_no_delay(upstream_socket_);
  if (upstream_->password.empty()) {
    start_relaying();
    return;
  }
  phase_ = Phase::authenticating;
  arm_deadline(upstream_auth_timeout);
  pending_write_ = auth_command(upstream_->password);
  asio::async_write(upstream_socket_, asio::buffer(pending_write_),
                    [self = shared_from_this()](const error_code& write_error, std::size_t) {
                      if (self->phase_ != Phase::authenticating) return;
                      if (write_error) {
                        self->refuse(std::string(auth_refused_line));
                        return;
                      }
                      self->read_auth_reply();
                    });
}

void Relay::read_auth_reply() {
  auto& buffer = upstream_to_client_.buffer;
  upstream_socket_.async_read_some(asio::buffer(buffer.data(), auth_reply_limit - auth_reply_.size()),
                                   [self = shared_from_this()](const error_code& error, std::size_t bytes) {
                                     self->on_auth_reply(error, bytes);
                                   });
}

void Relay::on_auth_reply(const error_code& error, std::size_t bytes) {
  if (phase_ != Phase::authenticating) return;
  if (error) {  // the primary closed, or the deadline closed it
    refuse(std::string(auth_refused_line));
    return;
  }
  auth_reply_.append(upstream_to_client_.buffer.data(), bytes);
  if (auth_reply_.find('\n') != std::string::npos) {
    // Nothing else may follow: no command of the client has been sent yet.
    if (auth_reply_ == auth_ok_reply) {
      start_relaying();
    } else {
      refuse(std::string(auth_refused_line));
    }
    return;
  }
  if (auth_reply_.size() >= auth_reply_limit) {
    refuse(std::string(auth_refused_line));
    return;
  }
  read_auth_reply();
}

void Relay::start_relaying() {
  phase_ = Phase::relaying;
  deadline_.cancel();
  pending_write_.clear();
  auth_reply_.clear();
  pump(client_to_upstream_);
  pump(upstream_to_client_);
}

void Relay::pump(Direction& direction) {
  direction.from.async_read_some(
      asio::buffer(direction.buffer),
      [self = shared_from_this(), &direction](const error_code& error, std::size_t bytes) {
        if (self->phase_ != Phase::relaying) return;
        if (error == asio::error::eof) {
          self->end_direction(direction);
          return;
        }
        if (error) {
          self->close();
          return;
        }
        asio::async_write(direction.to, asio::buffer(direction.buffer.data(), bytes),
                          [self, &direction](const error_code& write_error, std::size_t) {
                            if (self->phase_ != Phase::relaying) return;
                            if (write_error) {
                              self->close();
                              return;
                            }
                            self->pump(direction);
                          });
      });
}

void Relay::end_direction(Direction& direction) {
  direction.ended = true;
  error_code ignored;  // the peer may be gone already; close() follows either way
  direction.to.shutdown(tcp::socket::shutdown_send, ignored);
  if (client_to_upstream_.ended && upstream_to_client_.ended) {
    close();
    return;
  }
  arm_deadline(half_closed_timeout);
}

void Relay::refuse(std::string line) {
  phase_ = Phase::refusing;
  endpoint_.count_refused();
  error_code ignored;
  upstream_socket_.close(ignored);
  arm_deadline(refusal_close_timeout);
  pending_write_ = std::move(line);
  asio::async_write(client_, asio::buffer(pending_write_),
                    [self = shared_from_this()](const error_code& error, std::size_t) {
                      if (self->phase_ != Phase::refusing) return;
                      if (error) {
                        self->close();
                        return;
                      }
                      error_code shutdown_ignored;
                      self->client_.shutdown(tcp::socket::shutdown_send, shutdown_ignored);
                      self->drain_client();
                    });
}

void Relay::drain_client() {
  // Whatever the client sent is dropped; reading it only keeps the close clean.
  client_.async_read_some(asio::buffer(client_to_upstream_.buffer),
                          [self = shared_from_this()](const error_code& error, std::size_t) {
                            if (self->phase_ != Phase::refusing) return;
                            if (error) {
                              self->close();
                              return;
                            }
                            self->drain_client();
                          });
}

void Relay::arm_deadline(Clock::duration after) {
  deadline_.expires_after(after);  // cancels the wait armed before, whose handler then does nothing
  deadline_.async_wait([self = shared_from_this(), armed_in = phase_](const error_code& error) {
    if (error || self->phase_ != armed_in) return;
    self->on_deadline(armed_in);
  });
}

void Relay::on_deadline(Phase armed_in) {
  error_code ignored;
  switch (armed_in) {
    case Phase::connecting:
      upstream_socket_.close(ignored);  // on_connected() sees the aborted connect and refuses
      return;
    case Phase::authenticating:
      refuse(std::string(auth_refused_line));
      return;
    case Phase::relaying:
    case Phase::refusing:
      close();
      return;
    case Phase::closed:
      return;
  }
}

void Relay::close() {
  if (phase_ == Phase::closed) return;
  const auto keep_alive = shared_from_this();  // forget() may drop the registry's reference
  phase_ = Phase::closed;
  error_code ignored;
  client_.close(ignored);
  upstream_socket_.close(ignored);
  deadline_.cancel();
  endpoint_.forget(this);
}

void Endpoint::bind() {
  const auto endpoint = parse_listen_address(listen_);
  if (!endpoint) {
    throw std::runtime_error("cache endpoint: listen address '" + listen_ + "' is not IPv4:port");
  }
  error_code error;
  acceptor_.open(endpoint->protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(*endpoint, error);
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    error_code ignored;
    acceptor_.close(ignored);
    throw std::runtime_error("cache endpoint: cannot listen on " + listen_ + ": " + error.message());
  }
  bound_port_ = acceptor_.local_endpoint().port();
}

void Endpoint::accept() {
  acceptor_.async_accept([this](const error_code& error, Socket socket) { on_accept(error, std::move(socket)); });
}

void Endpoint::on_accept(const error_code& error, Socket socket) {
  if (shutting_down_) return;  // the socket closes as it goes out of scope
  if (error) {
    if (error == asio::error::operation_aborted) return;
    if (error == asio::error::no_descriptors || error == asio::error::no_buffer_space ||
        error == asio::error::no_memory) {
      accept_retry_.expires_after(accept_retry_delay);
      accept_retry_.async_wait([this](const error_code& wait_error) {
        if (!wait_error && !shutting_down_) accept();
      });
      return;
    }
    accept();  // the client gave up before we took it (ECONNABORTED and the like)
    return;
  }
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.accepted;
    if (relays_.size() >= cache_endpoint_max_connections) {
      ++stats_.refused;
      error_code ignored;
      socket.close(ignored);
    }
  }
  if (socket.is_open()) {
    auto [upstream, generation] = current_upstream();
    auto relay = std::make_shared<Relay>(*this, std::move(socket), std::move(upstream), generation);
    {
      std::lock_guard lock(stats_mutex_);
      relays_.emplace(relay.get(), relay);
      stats_.active = relays_.size();
    }
    relay->begin();
  }
  accept();
}

void Endpoint::forget(Relay* relay) {
  std::lock_guard lock(stats_mutex_);
  relays_.erase(relay);
  stats_.active = relays_.size();
}

void Endpoint::set_upstream(std::optional<CacheUpstream> upstream) {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(upstream_mutex_);
    if (upstream_ == upstream) return;
    upstream_ = std::move(upstream);
    generation = ++generation_;
  }
  // Connections accepted from now on see the new upstream; those before it are closed on the io
  // thread. If the loop is not running (before start(), after stop()), there is nothing to close.
  asio::post(io_, [this, generation]() { close_relays_before(generation); });
}

void Endpoint::close_relays_before(std::uint64_t generation) {
  std::vector<std::shared_ptr<Relay>> ending;  // close() changes relays_; collect first
  for (const auto& [key, relay] : relays_) {
    if (relay->ends_on_switch_to(generation)) ending.push_back(relay);
  }
  {
    std::lock_guard lock(stats_mutex_);
    stats_.closed_on_switch += ending.size();
  }
  for (const auto& relay : ending) relay->close();
}

void Endpoint::shut_down() {
  shutting_down_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  std::vector<std::shared_ptr<Relay>> all;
  for (const auto& [key, relay] : relays_) all.push_back(relay);
  for (const auto& relay : all) relay->close();
}

}  // namespace

struct CacheEndpoint::State {
  explicit State(std::string listen) : endpoint(std::move(listen)) {}

  enum class Lifecycle : std::uint8_t { created, running, stopped };
  Endpoint endpoint;
  std::mutex lifecycle_mutex;  // start() and stop() from different threads
  Lifecycle lifecycle = Lifecycle::created;
  std::thread loop;
};

CacheEndpoint::CacheEndpoint(std::string listen) : state_(std::make_shared<State>(std::move(listen))) {}

CacheEndpoint::~CacheEndpoint() { stop(); }

void CacheEndpoint::start() {
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->lifecycle != State::Lifecycle::created) {
    throw std::runtime_error("cache endpoint on " + state_->endpoint.listen() +
                             ": start() after start() or stop()");
  }
  state_->endpoint.bind();
  state_->endpoint.start_accepting();
  state_->loop = std::thread([&endpoint = state_->endpoint]() { endpoint.run(); });
  state_->lifecycle = State::Lifecycle::running;
}

void CacheEndpoint::stop() {
  std::lock_guard lock(state_->lifecycle_mutex);
  if (state_->lifecycle == State::Lifecycle::running) {
    state_->endpoint.request_stop();
    state_->loop.join();
  }
  state_->lifecycle = State::Lifecycle::stopped;
}

std::uint16_t CacheEndpoint::bound_port() const { return state_->endpoint.bound_port(); }

void CacheEndpoint::set_upstream(std::optional<CacheUpstream> upstream) {
  state_->endpoint.set_upstream(std::move(upstream));
}

CacheEndpointStats CacheEndpoint::stats() const { return state_->endpoint.stats(); }

}  // namespace stacknode::node
