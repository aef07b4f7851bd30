// Component test of the node-local cache endpoint (services/node/cache/.../cache_endpoint.hpp):
// real redis-server processes on loopback that require a password stand for the old and the new
// primary; clients are raw TCP sockets writing RESP by hand, and each server is also asked
// directly (authenticating itself) to see where a write really landed.
#include <CppUTest/TestHarness.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "net.hpp"
#include "process.hpp"
#include "skip.hpp"
#include "stacknode/node/cache_endpoint.hpp"

using namespace stacknode::node;
namespace support = stacknode::test;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view redis_server_path = "/usr/bin/redis-server";
constexpr std::string_view cluster_password = "secret";
// A reply over loopback takes well under a millisecond; this only bounds a failing test.
constexpr std::chrono::milliseconds reply_timeout{5000};
// redis-server starts in tens of milliseconds; a loaded CI machine may take longer.
constexpr std::chrono::milliseconds redis_start_timeout{15000};
constexpr std::uint64_t first_epoch = 1;
constexpr std::uint64_t failover_epoch = 2;
// Bigger than cache_endpoint_buffer_bytes several times over, so a value crosses many reads.
constexpr std::size_t large_value_bytes = 5 * cache_endpoint_buffer_bytes + 123;
// Connections that each pipeline commands right after connecting: enough that a relay forwarding
// the client before AUTH completed would be caught by at least one of them.
constexpr int pipelining_clients = 20;

// A RESP2 command: an array of bulk strings.
std::string command(std::initializer_list<std::string_view> words) {
  std::string out = "*" + std::to_string(words.size()) + "\r\n";
  for (const auto word : words) {
    out += "$" + std::to_string(word.size()) + "\r\n";
    out += word;
    out += "\r\n";
  }
  return out;
}

// Length of the first complete reply in `text` (simple string, error, integer, bulk string or
// null), 0 while it has not all arrived. Arrays are not needed here.
std::size_t reply_length(std::string_view text) {
  const auto line_end = text.find("\r\n");
  if (line_end == std::string_view::npos) return 0;
  if (text.front() != '$') return line_end + 2;
  const long length = std::stol(std::string(text.substr(1, line_end - 1)));
  if (length < 0) return line_end + 2;
  const std::size_t total = line_end + 2 + static_cast<std::size_t>(length) + 2;
  return text.size() >= total ? total : 0;
}

// Reads until `count` complete replies have arrived (or the connection closes, or reply_timeout);
// everything read.
std::string read_replies(support::RawConnection& connection, std::size_t count) {
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + reply_timeout;
  while (true) {
    std::size_t offset = 0;
    std::size_t complete = 0;
    while (complete < count) {
      const std::size_t length = reply_length(std::string_view(received).substr(offset));
      if (length == 0) break;
      offset += length;
      ++complete;
    }
    if (complete == count) return received;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return received;
    const std::string more = connection.read_until("\n", left);
    if (more.empty()) return received;
    received += more;
  }
}

// Sends one command and returns its reply.
std::string exchange(support::RawConnection& connection, std::initializer_list<std::string_view> words) {
  if (!connection.send(command(words))) return "<connection gone>";
  return read_replies(connection, 1);
}

// Everything the peer sent before closing the connection; a marker if it stayed open.
std::string everything_until_close(support::RawConnection& connection) {
  if (!connection.closed_within(reply_timeout)) return "<still open after the reply timeout>";
  return connection.read_until_close(std::chrono::milliseconds(0));
}

// A redis-server on 127.0.0.1 at an unused port, in a temporary directory, persisting nothing.
class RedisServer {
 public:
  explicit RedisServer(std::string password)
      : port_(support::unused_port()),
        password_(std::move(password)),
        process_(arguments(), dir_.path() / "redis.log") {}

  // True once it answers PING (polled, not slept for).
  bool wait_ready() {
    return support::poll_until([this]() { return ask({"PING"}) == "+PONG\r\n"; }, redis_start_timeout);
  }
  std::uint16_t port() const { return port_; }
  std::string log() const { return process_.output(); }

  // One command on a fresh connection that authenticates first; the command's reply ("" when
  // the server cannot be reached).
  std::string ask(std::initializer_list<std::string_view> words) const {
    support::RawConnection connection(support::loopback, port_);
    if (!connection.connected()) return "";
    const bool authenticate = !password_.empty();
    const std::string auth = authenticate ? command({"AUTH", password_}) : "";
    if (!connection.send(auth + command(words))) return "";
    std::string replies = read_replies(connection, authenticate ? 2 : 1);
    if (!authenticate) return replies;
    if (!replies.starts_with("+OK\r\n")) return "<AUTH failed: " + replies + ">";
    return replies.substr(5);
  }

  CacheUpstream as_upstream(std::uint64_t epoch) const {
    return {std::string(support::loopback), port_, password_, epoch};
  }

 private:
  std::vector<std::string> arguments() const {
    std::vector<std::string> argv{std::string(redis_server_path), "--port", std::to_string(port_),
                                  "--bind", std::string(support::loopback), "--save", "",
                                  "--appendonly", "no", "--dir", dir_.path().string()};
    if (!password_.empty()) {
      argv.push_back("--requirepass");
      argv.push_back(password_);
    }
    return argv;
  }

  support::TempDir dir_;  // before process_: the server goes first
  std::uint16_t port_;
  std::string password_;
  support::Process process_;
};

}  // namespace

TEST_GROUP(CacheEndpoint) {
  std::unique_ptr<RedisServer> primary_a;
  std::unique_ptr<RedisServer> primary_b;
  std::unique_ptr<CacheEndpoint> endpoint;

  void setup() override {
    if (!fs::exists(redis_server_path)) {
      support::skip_all("/usr/bin/redis-server is missing (Debian package redis-server); the cache "
                        "endpoint is only tested against real primaries");
    }
    primary_a = start_redis(std::string(cluster_password));
    primary_b = start_redis(std::string(cluster_password));
    endpoint = std::make_unique<CacheEndpoint>(support::loopback_address(0));
    endpoint->start();
  }

  void teardown() override {
    endpoint.reset();
    primary_b.reset();
    primary_a.reset();
  }

  static std::unique_ptr<RedisServer> start_redis(std::string password) {
    auto server = std::make_unique<RedisServer>(std::move(password));
    if (!server->wait_ready()) FAIL(("redis-server did not answer: " + server->log()).c_str());
    return server;
  }

  std::unique_ptr<support::RawConnection> connect() {
    auto client = std::make_unique<support::RawConnection>(support::loopback, endpoint->bound_port());
    CHECK_TRUE(client->connected());
    return client;
  }

  // Waits until the stats satisfy `holds`: counters change on the endpoint's thread.
  template <typename Predicate>
  void wait_for_stats(Predicate holds) {
    CHECK_TRUE(support::poll_until([&]() { return holds(endpoint->stats()); }, reply_timeout));
  }
};

TEST(CacheEndpoint, WithoutAnUpstreamAClientGetsAnErrorLineAndEof) {
  auto client = connect();
  STRCMP_EQUAL("-ERR no cache primary yet\r\n", everything_until_close(*client).c_str());
  client.reset();  // the endpoint waits for the client's close before closing its end
  wait_for_stats([](const CacheEndpointStats& stats) { return stats.active == 0; });
  UNSIGNED_LONGS_EQUAL(1, endpoint->stats().accepted);
  UNSIGNED_LONGS_EQUAL(1, endpoint->stats().refused);
}

TEST(CacheEndpoint, RelaysToThePrimaryAuthenticatingForTheClient) {
  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  auto client = connect();
  // The client never sends AUTH; the primary requires it (below), so the endpoint sent it.
  STRCMP_EQUAL("+OK\r\n", exchange(*client, {"SET", "k", "v"}).c_str());
  STRCMP_EQUAL("$1\r\nv\r\n", exchange(*client, {"GET", "k"}).c_str());
  STRCMP_EQUAL("$1\r\nv\r\n", primary_a->ask({"GET", "k"}).c_str());
  support::RawConnection unauthenticated(support::loopback, primary_a->port());
  STRCMP_CONTAINS("-NOAUTH", exchange(unauthenticated, {"GET", "k"}).c_str());

  const CacheEndpointStats stats = endpoint->stats();
  UNSIGNED_LONGS_EQUAL(1, stats.accepted);
  UNSIGNED_LONGS_EQUAL(0, stats.refused);
  UNSIGNED_LONGS_EQUAL(1, stats.active);
}

TEST(CacheEndpoint, LargeValuesCrossTheFixedBuffersBothWays) {
  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  auto client = connect();
  std::string value(large_value_bytes, '\0');
  for (std::size_t index = 0; index < value.size(); ++index) value[index] = static_cast<char>('a' + index % 26);
  STRCMP_EQUAL("+OK\r\n", exchange(*client, {"SET", "big", value}).c_str());
  const std::string expected = "$" + std::to_string(value.size()) + "\r\n" + value + "\r\n";
  CHECK_TRUE(exchange(*client, {"GET", "big"}) == expected);
  CHECK_TRUE(primary_a->ask({"GET", "big"}) == expected);
}

TEST(CacheEndpoint, CommandsPipelinedRightAfterConnectingWaitForAuth) {
  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  for (int round = 0; round < pipelining_clients; ++round) {
    const std::string key = "counter" + std::to_string(round);
    support::RawConnection client(support::loopback, endpoint->bound_port());
    CHECK_TRUE(client.connected());
    // Sent at once, before the endpoint can have connected upstream: forwarded before AUTH they
    // would be answered -NOAUTH; AUTH's own +OK passed on would shift every reply.
    CHECK_TRUE(client.send(command({"SET", key, "1"}) + command({"INCR", key}) + command({"GET", key}) +
                           command({"PING"})));
    STRCMP_EQUAL("+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n", read_replies(client, 4).c_str());
  }
}

TEST(CacheEndpoint, AnotherPrimaryClosesRelaysAndNewConnectionsReachIt) {
  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  auto old_client = connect();
  STRCMP_EQUAL("+OK\r\n", exchange(*old_client, {"SET", "before", "a"}).c_str());

  endpoint->set_upstream(primary_b->as_upstream(failover_epoch));
  STRCMP_EQUAL("", everything_until_close(*old_client).c_str());
  UNSIGNED_LONGS_EQUAL(1, endpoint->stats().closed_on_switch);

  auto new_client = connect();
  STRCMP_EQUAL("+OK\r\n", exchange(*new_client, {"SET", "after", "b"}).c_str());
  STRCMP_EQUAL("$1\r\nb\r\n", primary_b->ask({"GET", "after"}).c_str());
  STRCMP_EQUAL("$-1\r\n", primary_a->ask({"GET", "after"}).c_str());
  STRCMP_EQUAL("$1\r\na\r\n", primary_a->ask({"GET", "before"}).c_str());
  STRCMP_EQUAL("$-1\r\n", primary_b->ask({"GET", "before"}).c_str());
  wait_for_stats([](const CacheEndpointStats& stats) { return stats.active == 1; });
}

TEST(CacheEndpoint, ANewEpochOfTheSamePrimaryClosesRelaysToo) {
  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  auto client = connect();
  STRCMP_EQUAL("+PONG\r\n", exchange(*client, {"PING"}).c_str());
  endpoint->set_upstream(primary_a->as_upstream(failover_epoch));
  STRCMP_EQUAL("", everything_until_close(*client).c_str());
  UNSIGNED_LONGS_EQUAL(1, endpoint->stats().closed_on_switch);
}

TEST(CacheEndpoint, TheSameUpstreamAgainKeepsRelays) {
  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  auto client = connect();
  STRCMP_EQUAL("+PONG\r\n", exchange(*client, {"PING"}).c_str());

  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  // A barrier: whatever set_upstream left for the endpoint's thread runs before that thread
  // serves a connection made afterwards.
  auto probe = connect();
  STRCMP_EQUAL("+PONG\r\n", exchange(*probe, {"PING"}).c_str());

  STRCMP_EQUAL("+PONG\r\n", exchange(*client, {"PING"}).c_str());
  UNSIGNED_LONGS_EQUAL(0, endpoint->stats().closed_on_switch);
  UNSIGNED_LONGS_EQUAL(2, endpoint->stats().active);
}

TEST(CacheEndpoint, AWrongPasswordIsReportedAndTheClientClosed) {
  CacheUpstream upstream = primary_a->as_upstream(first_epoch);
  upstream.password = "not the password";
  endpoint->set_upstream(upstream);
  auto client = connect();
  STRCMP_EQUAL("-ERR cache endpoint: upstream refused AUTH\r\n", everything_until_close(*client).c_str());
  UNSIGNED_LONGS_EQUAL(1, endpoint->stats().refused);
  client.reset();
  wait_for_stats([](const CacheEndpointStats& stats) { return stats.active == 0; });
}

TEST(CacheEndpoint, AnEmptyPasswordSendsNoAuth) {
  // A server without a password answers AUTH with an error, which the endpoint would pass on
  // as "refused AUTH".
  auto open_server = start_redis("");
  endpoint->set_upstream(open_server->as_upstream(first_epoch));
  auto client = connect();
  STRCMP_EQUAL("+OK\r\n", exchange(*client, {"SET", "k", "open"}).c_str());
  STRCMP_EQUAL("$4\r\nopen\r\n", open_server->ask({"GET", "k"}).c_str());
  UNSIGNED_LONGS_EQUAL(0, endpoint->stats().refused);
}

TEST(CacheEndpoint, AnUnreachablePrimaryIsReportedAndTheClientClosed) {
  const std::uint16_t nothing_there = support::unused_port();
  endpoint->set_upstream(CacheUpstream{std::string(support::loopback), nothing_there,
                                       std::string(cluster_password), first_epoch});
  auto client = connect();
  const std::string expected =
      "-ERR cache endpoint: primary 127.0.0.1:" + std::to_string(nothing_there) + " unreachable\r\n";
  STRCMP_EQUAL(expected.c_str(), everything_until_close(*client).c_str());
  UNSIGNED_LONGS_EQUAL(1, endpoint->stats().refused);
}

TEST(CacheEndpoint, StopClosesLiveConnectionsAndTheListener) {
  endpoint->set_upstream(primary_a->as_upstream(first_epoch));
  auto relayed = connect();
  STRCMP_EQUAL("+PONG\r\n", exchange(*relayed, {"PING"}).c_str());
  auto mid_command = connect();
  CHECK_TRUE(mid_command->send("*3\r\n$3\r\nSET\r\n"));  // half a command, waiting for the rest
  const std::uint16_t port = endpoint->bound_port();

  endpoint->stop();
  CHECK_TRUE(relayed->closed_within(reply_timeout));
  CHECK_TRUE(mid_command->closed_within(reply_timeout));
  support::RawConnection late(support::loopback, port);
  CHECK_FALSE(late.connected());
  UNSIGNED_LONGS_EQUAL(0, endpoint->stats().active);
  endpoint->stop();  // again: nothing left to do
}

TEST(CacheEndpoint, StartOnATakenPortThrowsNamingTheAddress) {
  const std::string taken = support::loopback_address(endpoint->bound_port());
  CacheEndpoint second(taken);
  std::string error;
  try {
    second.start();
  } catch (const std::runtime_error& failure) {
    error = failure.what();
  }
  STRCMP_CONTAINS(taken.c_str(), error.c_str());
}

TEST(CacheEndpoint, StartOnAnAddressThatIsNotIpv4AndPortThrowsNamingIt) {
  CacheEndpoint named("localhost:6380");
  std::string error;
  try {
    named.start();
  } catch (const std::runtime_error& failure) {
    error = failure.what();
  }
  STRCMP_CONTAINS("localhost:6380", error.c_str());
}
