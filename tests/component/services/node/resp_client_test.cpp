// Component test of the RESP2 client (services/node/cache/include/stacknode/node/resp.hpp) against a
// real redis-server on 127.0.0.1 in a temporary directory: PING, SET/GET of binary and large values,
// a missing key as null, arrays, error replies returned as values, AUTH, INFO; and the failures: a
// peer that accepts but never answers (timeout, connection closed) and a port where nothing listens.
// Skipped, with the reason printed, where /usr/bin/redis-server is not installed.
#include <CppUTest/TestHarness.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "net.hpp"
#include "process.hpp"
#include "skip.hpp"
#include "stacknode/node/resp.hpp"

namespace support = stacknode::test;
namespace resp = stacknode::node::resp;
using namespace std::chrono_literals;
using namespace std::string_literals;
using Words = std::vector<std::string>;

namespace {

const std::filesystem::path redis_server_binary = "/usr/bin/redis-server";
// Generous bounds for one call against a local redis-server on a loaded CI machine.
constexpr std::chrono::milliseconds call_timeout = 5s;
// How long a freshly started redis-server may take to answer PING.
constexpr std::chrono::milliseconds start_timeout = 20s;
// The deadline of the call that is meant to time out, and how late its failure may come.
constexpr std::chrono::milliseconds short_timeout = 200ms;
constexpr std::chrono::milliseconds short_timeout_slack = 2s;
constexpr std::string_view password = "cache-secret";

void require_redis_server() {
  if (!std::filesystem::exists(redis_server_binary)) {
    support::skip_all(redis_server_binary.string() + " is missing (Debian package redis-server)");
  }
}

std::string describe(const resp::Value& value) {
  switch (value.kind) {
    case resp::Value::Kind::simple: return "simple \"" + value.text + "\"";
    case resp::Value::Kind::error: return "error \"" + value.text + "\"";
    case resp::Value::Kind::integer: return "integer " + std::to_string(value.integer);
    case resp::Value::Kind::bulk: return "bulk of " + std::to_string(value.text.size()) + " bytes";
    case resp::Value::Kind::null: return "null";
    case resp::Value::Kind::array: return "array of " + std::to_string(value.items.size());
  }
  return "?";
}

// The reply to `words`, failing the test when the call failed.
resp::Value call(resp::Client& client, const Words& words) {
  std::variant<resp::Value, std::string> reply = client.call(words, call_timeout);
  if (const std::string* failure = std::get_if<std::string>(&reply)) FAIL((words.front() + " failed: " + *failure).c_str());
  return std::get<resp::Value>(std::move(reply));
}

void check_reply(const resp::Value& value, resp::Value::Kind kind, const std::string& text) {
  if (value.kind != kind || value.text != text) {
    FAIL(("reply is " + describe(value) + " (" + value.text.substr(0, 200) + "), expected " +
          describe(resp::Value{kind, text, 0, {}}))
             .c_str());
  }
}

// One redis-server on 127.0.0.1 with nothing persisted, in a directory of its own; killed with it.
class RedisServer {
 public:
  explicit RedisServer(std::optional<std::string> requirepass = std::nullopt) : port_(support::unused_port()) {
    std::vector<std::string> argv = {redis_server_binary.string(), "--port", std::to_string(port_), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir_.path().string()};
    if (requirepass) argv.insert(argv.end(), {"--requirepass", *requirepass});
    process_ = std::make_unique<support::Process>(argv, dir_.path() / "redis.log");
    // Serving once PING gets a reply: PONG, or NOAUTH when a password is required.
    const bool answers = support::poll_until(
        [&] {
          resp::Client probe;
          if (!probe.connect("127.0.0.1", port_, call_timeout).empty()) return false;
          const auto reply = probe.call(Words{"PING"}, call_timeout);
          return std::holds_alternative<resp::Value>(reply);
        },
        start_timeout);
    if (!answers) FAIL(("redis-server never answered PING; its log:\n" + process_->output()).c_str());
  }

  std::uint16_t port() const { return port_; }

  // A client connected to this server.
  std::unique_ptr<resp::Client> client() const {
    auto client = std::make_unique<resp::Client>();
    const std::string failure = client->connect("127.0.0.1", port_, call_timeout);
    if (!failure.empty()) FAIL(failure.c_str());
    CHECK(client->connected());
    return client;
  }

 private:
  support::TempDir dir_;
  std::uint16_t port_;
  std::unique_ptr<support::Process> process_;
};

}  // namespace

TEST_GROUP(RespClientRedis) {
  std::unique_ptr<RedisServer> redis;
  std::unique_ptr<resp::Client> client;

  void setup() override {
    require_redis_server();
    redis = std::make_unique<RedisServer>();
    client = redis->client();
  }
  void teardown() override {
    client.reset();
    redis.reset();
  }
};

TEST(RespClientRedis, PingIsPong) { check_reply(call(*client, {"PING"}), resp::Value::Kind::simple, "PONG"); }

TEST(RespClientRedis, SetThenGetIsTheSameBulk) {
  const std::string value = "line one\r\nline two\0\xff"s;
  check_reply(call(*client, {"SET", "greeting", value}), resp::Value::Kind::simple, "OK");
  check_reply(call(*client, {"GET", "greeting"}), resp::Value::Kind::bulk, value);
  check_reply(call(*client, {"SET", "empty", ""}), resp::Value::Kind::simple, "OK");
  check_reply(call(*client, {"GET", "empty"}), resp::Value::Kind::bulk, "");
}

TEST(RespClientRedis, LargeValueArrivesInManyReads) {
  std::string value(3 << 20, '\0');
  for (std::size_t index = 0; index < value.size(); ++index) value[index] = static_cast<char>(index * 7 % 251);
  check_reply(call(*client, {"SET", "large", value}), resp::Value::Kind::simple, "OK");
  check_reply(call(*client, {"GET", "large"}), resp::Value::Kind::bulk, value);
}

TEST(RespClientRedis, GetOfAMissingKeyIsNull) {
  check_reply(call(*client, {"GET", "no-such-key"}), resp::Value::Kind::null, "");
}

TEST(RespClientRedis, IntegersAndArrays) {
  const resp::Value pushed = call(*client, {"RPUSH", "list", "a", "", "c"});
  CHECK(pushed.kind == resp::Value::Kind::integer);
  CHECK_EQUAL(3, pushed.integer);
  const resp::Value decremented = call(*client, {"DECRBY", "counter", "9223372036854775807"});
  CHECK(decremented.kind == resp::Value::Kind::integer);
  CHECK_EQUAL(-9223372036854775807LL, decremented.integer);
  const resp::Value listed = call(*client, {"LRANGE", "list", "0", "-1"});
  CHECK(listed.kind == resp::Value::Kind::array);
  CHECK_EQUAL(3u, listed.items.size());
  check_reply(listed.items[0], resp::Value::Kind::bulk, "a");
  check_reply(listed.items[1], resp::Value::Kind::bulk, "");
  check_reply(listed.items[2], resp::Value::Kind::bulk, "c");
  const resp::Value none = call(*client, {"LRANGE", "no-such-list", "0", "-1"});
  CHECK(none.kind == resp::Value::Kind::array);
  CHECK_EQUAL(0u, none.items.size());
  // Nested: MULTI/EXEC answers with an array holding each command's reply.
  check_reply(call(*client, {"MULTI"}), resp::Value::Kind::simple, "OK");
  check_reply(call(*client, {"LRANGE", "list", "0", "0"}), resp::Value::Kind::simple, "QUEUED");
  check_reply(call(*client, {"GET", "no-such-key"}), resp::Value::Kind::simple, "QUEUED");
  const resp::Value executed = call(*client, {"EXEC"});
  CHECK(executed.kind == resp::Value::Kind::array);
  CHECK_EQUAL(2u, executed.items.size());
  CHECK(executed.items[0].kind == resp::Value::Kind::array);
  CHECK_EQUAL(1u, executed.items[0].items.size());
  check_reply(executed.items[0].items[0], resp::Value::Kind::bulk, "a");
  CHECK(executed.items[1].kind == resp::Value::Kind::null);
}

TEST(RespClientRedis, AnErrorReplyIsAValueAndTheConnectionStays) {
  const resp::Value refused = call(*client, {"GET"});
  CHECK(refused.kind == resp::Value::Kind::error);
  STRCMP_CONTAINS("wrong number of arguments", refused.text.c_str());
  CHECK(client->connected());
  check_reply(call(*client, {"PING"}), resp::Value::Kind::simple, "PONG");
}

TEST(RespClientRedis, InfoReplicationIsABulkNamingTheRole) {
  const resp::Value info = call(*client, {"INFO", "replication"});
  CHECK(info.kind == resp::Value::Kind::bulk);
  STRCMP_CONTAINS("role:master", info.text.c_str());
}

TEST(RespClientRedis, CallAfterCloseFails) {
  client->close();
  CHECK_FALSE(client->connected());
  const auto reply = client->call(Words{"PING"}, call_timeout);
  CHECK(std::holds_alternative<std::string>(reply));
  STRCMP_CONTAINS("not connected", std::get<std::string>(reply).c_str());
}

TEST_GROUP(RespClientAuth){};

TEST(RespClientAuth, NoAuthUntilAuthThenOk) {
  require_redis_server();
  const RedisServer redis{std::string(password)};
  const std::unique_ptr<resp::Client> client = redis.client();
  const resp::Value refused = call(*client, {"GET", "key"});
  CHECK(refused.kind == resp::Value::Kind::error);
  STRCMP_CONTAINS("NOAUTH", refused.text.c_str());
  const resp::Value wrong = call(*client, {"AUTH", "not-the-password"});
  CHECK(wrong.kind == resp::Value::Kind::error);
  STRCMP_CONTAINS("WRONGPASS", wrong.text.c_str());
  check_reply(call(*client, {"AUTH", std::string(password)}), resp::Value::Kind::simple, "OK");
  check_reply(call(*client, {"GET", "key"}), resp::Value::Kind::null, "");
}

TEST_GROUP(RespClientFailures){};

TEST(RespClientFailures, SilentPeerTimesOutAndTheClientCloses) {
  support::LoopbackListener silent;
  resp::Client client;
  STRCMP_EQUAL("", client.connect("127.0.0.1", silent.port(), call_timeout).c_str());
  const int accepted = silent.accept();  // accepted, and never written to
  CHECK(accepted >= 0);
  const auto started = std::chrono::steady_clock::now();
  const auto reply = client.call(Words{"PING"}, short_timeout);
  const auto took = std::chrono::steady_clock::now() - started;
  ::close(accepted);
  CHECK(std::holds_alternative<std::string>(reply));
  STRCMP_CONTAINS("timeout", std::get<std::string>(reply).c_str());
  STRCMP_CONTAINS(std::to_string(short_timeout.count()).c_str(), std::get<std::string>(reply).c_str());
  CHECK(took >= short_timeout);
  CHECK(took < short_timeout + short_timeout_slack);
  CHECK_FALSE(client.connected());
}

TEST(RespClientFailures, PeerThatClosesIsAFailure) {
  support::LoopbackListener closing;
  resp::Client client;
  STRCMP_EQUAL("", client.connect("127.0.0.1", closing.port(), call_timeout).c_str());
  ::close(closing.accept());
  const auto reply = client.call(Words{"PING"}, call_timeout);
  CHECK(std::holds_alternative<std::string>(reply));
  CHECK_FALSE(client.connected());
}

TEST(RespClientFailures, PeerThatSendsGarbageIsAFailure) {
  support::LoopbackListener garbage;
  resp::Client client;
  STRCMP_EQUAL("", client.connect("127.0.0.1", garbage.port(), call_timeout).c_str());
  const int accepted = garbage.accept();
  CHECK(support::send_all(accepted, "HTTP/1.1 400 Bad Request\r\n\r\n"));
  const auto reply = client.call(Words{"PING"}, call_timeout);
  ::close(accepted);
  CHECK(std::holds_alternative<std::string>(reply));
  STRCMP_CONTAINS("invalid reply", std::get<std::string>(reply).c_str());
  CHECK_FALSE(client.connected());
}

TEST(RespClientFailures, ConnectToAnUnusedPortFails) {
  const std::uint16_t port = support::unused_port();
  resp::Client client;
  const std::string failure = client.connect("127.0.0.1", port, call_timeout);
  STRCMP_CONTAINS(("connect to 127.0.0.1:" + std::to_string(port)).c_str(), failure.c_str());
  STRCMP_CONTAINS("refused", failure.c_str());
  CHECK_FALSE(client.connected());
}

TEST(RespClientFailures, ConnectToANonAddressFails) {
  resp::Client client;
  STRCMP_CONTAINS("not an IPv4 address", client.connect("localhost", 6379, call_timeout).c_str());
  CHECK_FALSE(client.connected());
}
