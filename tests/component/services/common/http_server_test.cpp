// Component tests of the HTTP server base and client in services/common (http_server.hpp,
// http_client.hpp, tls.hpp): a real Server on 127.0.0.1:0 in this process, driven over real
// sockets with exact bytes (RawConnection), BlockingClient, curl, openssl and promtool.
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/status.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "held_requests.hpp"
#include "http_text.hpp"
#include "net.hpp"
#include "process.hpp"
#include "stacknode/common/http_client.hpp"
#include "stacknode/common/http_server.hpp"
#include "stacknode/common/metrics.hpp"
#include "stacknode/common/tls.hpp"

#include <CppUTest/TestHarness.h>

namespace http = stacknode::http;
namespace metrics = stacknode::metrics;
namespace test = stacknode::test;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
namespace fs = std::filesystem;

namespace {

// Upper bound for anything that should happen "soon" (an answer, a close). Tests never assert how
// long something took; this only keeps a broken server from hanging the suite.
constexpr std::chrono::milliseconds eventually{5'000};
// Timeouts under test: short so the suite is quick, and far below `eventually` while every other
// limit keeps its default (10 s or more), so a close seen within `eventually` was caused by the
// timeout under test.
constexpr std::chrono::milliseconds short_timeout{200};
// Limits under test, small so a test crosses them with a few KiB.
constexpr std::uint32_t small_header_limit = 1024;
constexpr std::uint64_t small_body_limit = 1024;
// Many times the socket buffers, so the answer takes many partial writes and reads.
constexpr std::size_t large_body_bytes = 8 * 1024 * 1024;
// One read of the fake upstream; request heads in these tests are far smaller.
constexpr std::size_t upstream_read_bytes = 4096;
constexpr std::string_view metrics_prefix = "test";

// ---- Raw HTTP on the wire ----

// The one whole response in `raw`; fails the test when there is not exactly one.
test::RawResponse only_response(const std::string& raw) {
  const auto responses = test::parse_responses(raw);
  LONGS_EQUAL_TEXT(1, static_cast<long>(responses.size()),
                   ("expected exactly one whole response in:\n" + raw).c_str());
  return responses.front();
}

std::string get_request(std::string_view target, std::string_view extra_fields = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_fields) +
         "\r\n";
}

// What the test handler answers to anything it has no route for.
std::string echo_of(std::string_view method, std::string_view target, std::string_view body = "") {
  return std::string(method) + " " + std::string(target) + " [" + std::string(body) + "]\n";
}

const std::string& large_body() {
  static const std::string body = [] {
    std::string text(large_body_bytes, '\0');
    for (std::size_t index = 0; index < text.size(); ++index) {
      text[index] = static_cast<char>('a' + index % 26);
    }
    return text;
  }();
  return body;
}

// ---- The handler under the server ----

// Routes: /throw throws; /hold parks the request until release_all(); /large answers
// large_body(); /status/N answers status N; anything else echoes method, target and body.
class TestHandler final : public http::Handler {
 public:
  void handle(const http::RequestContext& context, http::Request& request,
              http::Respond respond) override {
    const std::string target(request.target());
    const unsigned version = request.version();
    calls_.fetch_add(1);
    if (target == "/throw") throw std::runtime_error("the test handler fails on purpose");
    if (target == "/hold") {
      held_.hold(*context.io, std::move(respond), version);
      holds_started_.fetch_add(1);
      return;
    }
    if (target == "/large") {
      respond(http::text_response(bhttp::status::ok, version, large_body(),
                                  "application/octet-stream"));
      return;
    }
    if (target.starts_with("/status/")) {
      auto response = http::text_response(bhttp::status::ok, version, "status\n");
      response.result(static_cast<unsigned>(std::stoul(target.substr(8))));
      respond(std::move(response));
      return;
    }
    respond(http::text_response(bhttp::status::ok, version,
                                echo_of(request.method_string(), target, request.body())));
  }

  int calls() const { return calls_.load(); }
  int holds_started() const { return holds_started_.load(); }

  // Answers every parked request with "released\n", each on its connection's thread.
  void release_all() { held_.release_all(); }

  // Parked requests keep their sessions alive; they must go before the server does.
  void drop_held() { held_.drop_all(); }

 private:
  test::HeldRequests held_;
  std::atomic<int> calls_{0};
  std::atomic<int> holds_started_{0};
};

// ---- A fake upstream for the client ----

// A listening socket on 127.0.0.1:0 whose connections are served one at a time, on its own
// thread, by a script the test supplies. Connections the script leaves open stay open until the
// FakeUpstream goes; its destructor wakes a script blocked in read_head().
class FakeUpstream {
 public:
  class Connection {
   public:
    Connection(int fd, const test::LoopbackListener& listener, int index,
               std::atomic<int>& requests)
        : fd_(fd), listener_(listener), index_(index), requests_(requests) {}
    int index() const { return index_; }
    bool open() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }

    // Reads up to the end of one request head; false if the client closed or the test is over.
    bool read_head() {
      while (true) {
        const auto end = buffer_.find("\r\n\r\n");
        if (end != std::string::npos) {
          buffer_.erase(0, end + 4);
          requests_.fetch_add(1);
          return true;
        }
        if (!listener_.wait_readable(fd_)) return false;
        char chunk[upstream_read_bytes];
        const ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
        if (got <= 0) return false;
        buffer_.append(chunk, static_cast<std::size_t>(got));
      }
    }

    void send(std::string_view bytes) { test::send_all(fd_, bytes); }

    void close() {
      ::close(fd_);
      fd_ = -1;
    }

   private:
    int fd_;
    const test::LoopbackListener& listener_;
    int index_;
    std::atomic<int>& requests_;
    std::string buffer_;
  };
  using Script = std::function<void(Connection&)>;

  explicit FakeUpstream(Script script) : script_(std::move(script)) {
    thread_ = std::thread([this] { serve(); });
  }

  ~FakeUpstream() {
    listener_.wake();
    thread_.join();
    for (const int fd : kept_) ::close(fd);
  }

  http::tcp::endpoint endpoint() const {
    return {asio::ip::make_address(test::loopback), listener_.port()};
  }
  int accepted() const { return accepted_.load(); }
  int requests() const { return requests_.load(); }
  int closed() const { return closed_.load(); }

 private:
  void serve() {
    while (listener_.wait_for_connection()) {
      const int fd = listener_.accept();
      if (fd < 0) continue;
      Connection connection(fd, listener_, accepted_.fetch_add(1) + 1, requests_);
      script_(connection);
      if (connection.open()) {
        kept_.push_back(connection.release());
      } else {
        closed_.fetch_add(1);
      }
    }
  }

  Script script_;
  test::LoopbackListener listener_;
  std::thread thread_;
  std::vector<int> kept_;  // touched by thread_ only, then by the destructor after the join
  std::atomic<int> accepted_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> closed_{0};
};

std::string upstream_answer(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

std::string connection_label(const FakeUpstream::Connection& connection) {
  return "connection " + std::to_string(connection.index());
}

// Answers the first request on each connection, then closes it when the second one arrives,
// without answering: a keep-alive connection the upstream drops just as it is reused.
void answer_once_then_drop(FakeUpstream::Connection& connection) {
  if (!connection.read_head()) return;
  connection.send(upstream_answer(connection_label(connection)));
  if (!connection.read_head()) return;
  connection.close();
}

// ---- The fixture: one server per test, run on its own thread ----

struct Observed {
  unsigned status;
  std::uint64_t bytes_sent;
  std::uint64_t body_bytes;
  std::string target;
};

class ServerFixture : public Utest {
 public:
  void teardown() override {
    upstream.reset();
    if (server) {
      server->stop();
      if (runner.joinable()) runner.join();
      handler.drop_held();
      server.reset();
    }
  }

 protected:
  // Builds and binds the server; hooks (on_request, on_health) go on before launch().
  void create(http::ServerLimits limits = {}, std::shared_ptr<http::TlsContext> tls = nullptr,
              unsigned threads = 1) {
    http::ServerOptions options;
    options.listeners.push_back(http::Listener{test::loopback_address(0), tls != nullptr});
    options.threads = threads;
    options.limits = limits;
    options.metrics_prefix = std::string(metrics_prefix);
    server = std::make_unique<http::Server>(std::move(options), handler, registry, std::move(tls));
    server->bind();
  }

  void launch() {
    runner = std::thread([this] {
      server->run(false);
      run_returned.store(true);
    });
  }

  void start(http::ServerLimits limits = {}) {
    create(limits);
    launch();
  }

  std::uint16_t port() const { return server->bound_endpoints().at(0).port(); }
  std::string address() const { return test::loopback_address(port()); }
  std::string url(std::string_view scheme, std::string_view target) const {
    return std::string(scheme) + "://" + address() + std::string(target);
  }

  // Value of one series of the registry ("name" or "name{labels}"), -1 when it is not exposed.
  double metric(std::string_view series) const {
    return test::metric_value(registry.expose(), series).value_or(-1);
  }
  std::string rejected(std::string_view reason) const {
    return std::string(metrics_prefix) + "_http_rejected_total{reason=\"" + std::string(reason) +
           "\"}";
  }
  bool metric_reaches(std::string_view series, double value) const {
    return test::poll_until([&] { return metric(series) == value; }, eventually);
  }

  void observe_requests() {
    server->on_request([this](const http::CompletedRequest& done) {
      std::lock_guard lock(observed_mutex);
      observed.push_back(Observed{done.reply.status(), done.bytes_sent, done.reply.body_bytes(),
                                  std::string(done.request.target())});
    });
  }
  std::vector<Observed> observed_so_far() {
    std::lock_guard lock(observed_mutex);
    return observed;
  }

  fs::path temp_path(std::string_view name) {
    if (!temp) temp.emplace();
    return temp->path() / name;
  }

  metrics::Registry registry;
  TestHandler handler;
  std::atomic<bool> healthy{true};
  std::mutex observed_mutex;
  std::vector<Observed> observed;
  std::optional<test::TempDir> temp;
  std::unique_ptr<http::Server> server;
  std::thread runner;
  std::atomic<bool> run_returned{false};
  std::unique_ptr<FakeUpstream> upstream;
};

std::string accepted_series() { return std::string(metrics_prefix) + "_http_connections_accepted_total"; }

}  // namespace

// ============================== Server: framing and keep-alive ==============================

TEST_GROUP_BASE(HttpServer, ServerFixture){};

TEST(HttpServer, KeepAliveServesTwoRequestsOnOneConnection) {
  start();
  test::RawConnection connection(test::loopback, port());
  CHECK_TRUE(connection.send(get_request("/one")));
  const auto first = only_response(connection.read_until(echo_of("GET", "/one"), eventually));
  CHECK_TRUE(connection.send(get_request("/two")));
  const auto second = only_response(connection.read_until(echo_of("GET", "/two"), eventually));
  LONGS_EQUAL(200, first.status);
  STRCMP_EQUAL(echo_of("GET", "/one").c_str(), first.body.c_str());
  CHECK_FALSE(test::lower(test::header_value(first.head, "connection")) == "close");
  STRCMP_EQUAL("stacknode", test::header_value(first.head, "server").c_str());
  LONGS_EQUAL(200, second.status);
  STRCMP_EQUAL(echo_of("GET", "/two").c_str(), second.body.c_str());
  DOUBLES_EQUAL(1, metric(accepted_series()), 0);
}

TEST(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  start();
  test::RawConnection connection(test::loopback, port());
  CHECK_TRUE(connection.send(get_request("/one") + get_request("/two")));
  const std::string raw = connection.read_until(echo_of("GET", "/two"), eventually);
  const auto responses = test::parse_responses(raw);
  LONGS_EQUAL_TEXT(2, static_cast<long>(responses.size()), raw.c_str());
  LONGS_EQUAL(200, responses[0].status);
  STRCMP_EQUAL(echo_of("GET", "/one").c_str(), responses[0].body.c_str());
  LONGS_EQUAL(200, responses[1].status);
  STRCMP_EQUAL(echo_of("GET", "/two").c_str(), responses[1].body.c_str());
}

TEST(HttpServer, Http10WithoutKeepAliveIsClosedAfterTheAnswer) {
  start();
  test::RawConnection once(test::loopback, port());
  CHECK_TRUE(once.send("GET /old HTTP/1.0\r\n\r\n"));
  const auto answer = only_response(once.read_until(echo_of("GET", "/old"), eventually));
  LONGS_EQUAL(200, answer.status);
  STRCMP_CONTAINS("HTTP/1.0 200", answer.head.c_str());
  CHECK_TEXT(once.closed_within(eventually), "HTTP/1.0 connection without keep-alive left open");

  // An HTTP/1.0 client that asks for keep-alive gets it.
  test::RawConnection kept(test::loopback, port());
  CHECK_TRUE(kept.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  const auto first = only_response(kept.read_until(echo_of("GET", "/a"), eventually));
  STRCMP_EQUAL("keep-alive", test::lower(test::header_value(first.head, "connection")).c_str());
  CHECK_TRUE(kept.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  const auto second = only_response(kept.read_until(echo_of("GET", "/b"), eventually));
  LONGS_EQUAL(200, second.status);
}

// ============================== Server: bad input and limits ==============================

TEST(HttpServer, MalformedRequestLineGets400AndOthersAreStillServed) {
  start();
  test::RawConnection bad(test::loopback, port());
  CHECK_TRUE(bad.send("this is not http\r\n\r\n"));
  const std::string raw = bad.read_until_close(eventually);
  LONGS_EQUAL_TEXT(400, test::status_of(raw), raw.c_str());
  STRCMP_EQUAL("close",
               test::lower(test::header_value(raw.substr(0, raw.find("\r\n\r\n")), "connection"))
                   .c_str());
  CHECK_TEXT(bad.closed_within(eventually), "connection left open after a 400");

  test::RawConnection good(test::loopback, port());
  CHECK_TRUE(good.send(get_request("/after")));
  LONGS_EQUAL(200, only_response(good.read_until(echo_of("GET", "/after"), eventually)).status);
  DOUBLES_EQUAL(1, metric(rejected("malformed")), 0);
  LONGS_EQUAL(1, handler.calls());
}

TEST(HttpServer, BadHeaderGets400AndOthersAreStillServed) {
  start();
  for (const char* field : {"No colon in this line", "Content-Length: twelve"}) {
    test::RawConnection bad(test::loopback, port());
    CHECK_TRUE(bad.send(get_request("/bad", std::string(field) + "\r\n")));
    const std::string raw = bad.read_until_close(eventually);
    LONGS_EQUAL_TEXT(400, test::status_of(raw), (std::string(field) + ":\n" + raw).c_str());
    CHECK_TEXT(bad.closed_within(eventually), field);
  }
  test::RawConnection good(test::loopback, port());
  CHECK_TRUE(good.send(get_request("/after")));
  LONGS_EQUAL(200, only_response(good.read_until(echo_of("GET", "/after"), eventually)).status);
  DOUBLES_EQUAL(2, metric(rejected("malformed")), 0);
}

TEST(HttpServer, HeadOverHeaderLimitGets431) {
  http::ServerLimits limits;
  limits.header_bytes = small_header_limit;
  start(limits);

  test::RawConnection fits(test::loopback, port());
  const std::string half_filler(small_header_limit / 2, 'a');
  CHECK_TRUE(fits.send(get_request("/fits", "X-Filler: " + half_filler + "\r\n")));
  LONGS_EQUAL(200, only_response(fits.read_until(echo_of("GET", "/fits"), eventually)).status);

  test::RawConnection big(test::loopback, port());
  const std::string double_filler(2 * small_header_limit, 'a');
  CHECK_TRUE(big.send(get_request("/big", "X-Filler: " + double_filler + "\r\n")));
  const std::string raw = big.read_until_close(eventually);
  LONGS_EQUAL_TEXT(431, test::status_of(raw), raw.c_str());
  CHECK_TRUE(big.closed_within(eventually));
  DOUBLES_EQUAL(1, metric(rejected("header_too_large")), 0);
  LONGS_EQUAL(1, handler.calls());
}

TEST(HttpServer, DeclaredBodyOverLimitGets413BeforeTheBodyIsSent) {
  http::ServerLimits limits;
  limits.body_bytes = small_body_limit;
  start(limits);

  // Exactly at the limit is fine.
  const std::string at_limit(small_body_limit, 'b');
  test::RawConnection fits(test::loopback, port());
  CHECK_TRUE(fits.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: " +
                       std::to_string(at_limit.size()) + "\r\n\r\n" + at_limit));
  const auto accepted = only_response(fits.read_until(echo_of("POST", "/upload", at_limit), eventually));
  LONGS_EQUAL(200, accepted.status);

  // One byte over: the head alone gets the answer; the body is never sent.
  test::RawConnection over(test::loopback, port());
  CHECK_TRUE(over.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: " +
                       std::to_string(small_body_limit + 1) + "\r\n\r\n"));
  const std::string raw = over.read_until_close(eventually);
  LONGS_EQUAL_TEXT(413, test::status_of(raw), raw.c_str());
  CHECK_TRUE(over.closed_within(eventually));
  DOUBLES_EQUAL(1, metric(rejected("body_too_large")), 0);
  LONGS_EQUAL(1, handler.calls());
}

TEST(HttpServer, ChunkedBodyGrowingOverLimitGets413) {
  http::ServerLimits limits;
  limits.body_bytes = small_body_limit;
  start(limits);
  const std::string half(small_body_limit / 2, 'c');
  const std::string half_chunk = "200\r\n" + half + "\r\n";  // 0x200 = 512 = small_body_limit / 2
  static_assert(small_body_limit == 2 * 0x200);
  const std::string chunked_head =
      "POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";

  test::RawConnection fits(test::loopback, port());
  CHECK_TRUE(fits.send(chunked_head + half_chunk + half_chunk + "0\r\n\r\n"));
  const auto accepted =
      only_response(fits.read_until(echo_of("POST", "/upload", half + half), eventually));
  LONGS_EQUAL(200, accepted.status);

  test::RawConnection over(test::loopback, port());
  CHECK_TRUE(over.send(chunked_head + half_chunk + half_chunk + "1\r\nc\r\n0\r\n\r\n"));
  const std::string raw = over.read_until_close(eventually);
  LONGS_EQUAL_TEXT(413, test::status_of(raw), raw.c_str());
  CHECK_TRUE(over.closed_within(eventually));
  DOUBLES_EQUAL(1, metric(rejected("body_too_large")), 0);
  LONGS_EQUAL(1, handler.calls());
}

TEST(HttpServer, ExpectContinueGets100ThenTheAnswer) {
  start();
  test::RawConnection connection(test::loopback, port());
  CHECK_TRUE(connection.send(
      "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  const std::string interim = connection.read_until("\r\n\r\n", eventually);
  STRCMP_EQUAL("HTTP/1.1 100 Continue\r\n\r\n", interim.c_str());
  CHECK_TRUE(connection.send("hello"));
  const auto final_answer =
      only_response(connection.read_until(echo_of("POST", "/upload", "hello"), eventually));
  LONGS_EQUAL(200, final_answer.status);
}

TEST(HttpServer, ExpectContinueWithBodyOverLimitGets413Instead) {
  http::ServerLimits limits;
  limits.body_bytes = small_body_limit;
  start(limits);
  test::RawConnection connection(test::loopback, port());
  CHECK_TRUE(connection.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: " +
                             std::to_string(small_body_limit + 1) +
                             "\r\nExpect: 100-continue\r\n\r\n"));
  const std::string raw = connection.read_until_close(eventually);
  LONGS_EQUAL_TEXT(413, test::status_of(raw), raw.c_str());
  CHECK_FALSE_TEXT(test::contains(raw, "100 Continue"), raw.c_str());
}

// ============================== Server: timeouts ==============================

TEST(HttpServer, SlowlorisHeadIsClosedAfterHeaderTimeout) {
  http::ServerLimits limits;
  limits.header_timeout = short_timeout;
  start(limits);
  test::RawConnection slow(test::loopback, port());
  CHECK_TRUE(slow.send("GET /slow HTTP/1.1\r\nHost: te"));
  CHECK_TEXT(slow.closed_within(eventually), "half a request head held the connection open");
  CHECK_TEXT(metric_reaches(rejected("header_timeout"), 1), "header timeout not counted");
  STRCMP_EQUAL("", slow.read_until_close(eventually).c_str());
  LONGS_EQUAL(0, handler.calls());
}

TEST(HttpServer, BodyThatStopsArrivingGets408AfterBodyTimeout) {
  http::ServerLimits limits;
  limits.body_timeout = short_timeout;
  start(limits);
  test::RawConnection slow(test::loopback, port());
  CHECK_TRUE(slow.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc"));
  const std::string raw = slow.read_until_close(eventually);
  LONGS_EQUAL_TEXT(408, test::status_of(raw), raw.c_str());
  CHECK_TRUE(slow.closed_within(eventually));
  CHECK_TEXT(metric_reaches(rejected("body_timeout"), 1), "body timeout not counted");
  LONGS_EQUAL(0, handler.calls());
}

TEST(HttpServer, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  http::ServerLimits limits;
  limits.idle_timeout = short_timeout;
  start(limits);
  test::RawConnection used(test::loopback, port());
  CHECK_TRUE(used.send(get_request("/once")));
  LONGS_EQUAL(200, only_response(used.read_until(echo_of("GET", "/once"), eventually)).status);
  CHECK_TEXT(used.closed_within(eventually), "idle keep-alive connection left open");

  test::RawConnection silent(test::loopback, port());
  CHECK_TEXT(silent.closed_within(eventually), "connection that never sent a byte left open");
  // Going idle is normal, not a rejected request.
  DOUBLES_EQUAL(0, metric(rejected("header_timeout")), 0);
}

// ============================== Server: built-ins, observer, errors ==============================

TEST(HttpServer, HealthzFollowsOnHealth) {
  create();
  server->on_health([this] { return healthy.load(); });
  launch();
  http::BlockingClient client;
  const auto up = client.get(address(), "/healthz");
  CHECK_TEXT(up.ok(), up.detail.c_str());
  LONGS_EQUAL(200, up.response.result_int());
  STRCMP_EQUAL("ok\n", up.response.body().c_str());
  STRCMP_EQUAL("no-store", std::string(up.response[bhttp::field::cache_control]).c_str());

  healthy.store(false);
  const auto down = client.get(address(), "/healthz");
  CHECK_TEXT(down.ok(), down.detail.c_str());
  LONGS_EQUAL(503, down.response.result_int());
  LONGS_EQUAL(0, handler.calls());
}

TEST(HttpServer, HeadOfHealthzHasNoBody) {
  start();
  test::RawConnection connection(test::loopback, port());
  CHECK_TRUE(connection.send("HEAD /healthz HTTP/1.1\r\nHost: test\r\n\r\n" + get_request("/after")));
  const std::string raw = connection.read_until(echo_of("GET", "/after"), eventually);
  const auto head_end = raw.find("\r\n\r\n");
  CHECK_TEXT(head_end != std::string::npos, raw.c_str());
  LONGS_EQUAL_TEXT(200, test::status_of(raw), raw.c_str());
  // The head is the one GET would get, and the next response follows it at once.
  STRCMP_EQUAL("3", test::header_value(raw.substr(0, head_end), "content-length").c_str());
  CHECK_TEXT(raw.substr(head_end + 4).starts_with("HTTP/1.1 200"), raw.c_str());
}

TEST(HttpServer, MetricsExpositionPassesPromtool) {
  start();
  http::BlockingClient client;
  CHECK_TRUE(client.get(address(), "/warm-up").ok());
  const auto result = client.get(address(), "/metrics");
  CHECK_TEXT(result.ok(), result.detail.c_str());
  LONGS_EQUAL(200, result.response.result_int());
  STRCMP_EQUAL(std::string(metrics::Registry::content_type).c_str(),
               std::string(result.response[bhttp::field::content_type]).c_str());
  const std::string& body = result.response.body();
  // The warm-up was counted before /metrics was read from the same connection.
  STRCMP_CONTAINS("test_http_responses_total{code=\"2xx\"} 1\n", body.c_str());
  STRCMP_CONTAINS("test_http_connections_accepted_total 1\n", body.c_str());
  STRCMP_CONTAINS("test_http_connections_open 1\n", body.c_str());
  STRCMP_CONTAINS("# TYPE test_http_request_duration_seconds histogram\n", body.c_str());
  STRCMP_CONTAINS("test_http_request_duration_seconds_count 1\n", body.c_str());

  test::require_program("promtool", "prometheus");
  const fs::path exposition = temp_path("metrics.txt");
  test::write_file(exposition, body);
  const auto check = test::run_command({"sh", "-c", "promtool check metrics < '" + exposition.string() + "'"});
  LONGS_EQUAL_TEXT(0, check.status, ("promtool check metrics:\n" + check.output + "\non:\n" + body).c_str());
  STRCMP_EQUAL_TEXT("", check.output.c_str(), body.c_str());
}

TEST(HttpServer, RequestObserverSeesStatusAndBytes) {
  create();
  observe_requests();
  launch();
  test::RawConnection connection(test::loopback, port());
  CHECK_TRUE(connection.send(get_request("/status/404", "Connection: close\r\n")));
  const std::string raw = connection.read_until_close(eventually);
  const auto answer = only_response(raw);
  LONGS_EQUAL(404, answer.status);
  CHECK_TRUE(test::poll_until([&] { return observed_so_far().size() == 1; }, eventually));

  test::RawConnection bad(test::loopback, port());
  CHECK_TRUE(bad.send("this is not http\r\n\r\n"));
  const std::string rejected_raw = bad.read_until_close(eventually);
  LONGS_EQUAL(400, test::status_of(rejected_raw));
  CHECK_TRUE(test::poll_until([&] { return observed_so_far().size() == 2; }, eventually));

  const auto seen = observed_so_far();
  LONGS_EQUAL(404, seen[0].status);
  UNSIGNED_LONGS_EQUAL(raw.size(), seen[0].bytes_sent);
  UNSIGNED_LONGS_EQUAL(answer.body.size(), seen[0].body_bytes);
  STRCMP_EQUAL("/status/404", seen[0].target.c_str());
  LONGS_EQUAL(400, seen[1].status);
  UNSIGNED_LONGS_EQUAL(rejected_raw.size(), seen[1].bytes_sent);
  DOUBLES_EQUAL(2, metric("test_http_responses_total{code=\"4xx\"}"), 0);
}

TEST(HttpServer, HandlerThatThrowsGets500AndTheServerGoesOn) {
  start();
  test::RawConnection connection(test::loopback, port());
  CHECK_TRUE(connection.send(get_request("/throw")));
  const auto failed = only_response(connection.read_until("internal error\n", eventually));
  LONGS_EQUAL(500, failed.status);
  // The same connection and new ones are still served.
  CHECK_TRUE(connection.send(get_request("/after")));
  LONGS_EQUAL(200, only_response(connection.read_until(echo_of("GET", "/after"), eventually)).status);
  test::RawConnection other(test::loopback, port());
  CHECK_TRUE(other.send(get_request("/other")));
  LONGS_EQUAL(200, only_response(other.read_until(echo_of("GET", "/other"), eventually)).status);
}

TEST(HttpServer, LargeBodyArrivesWholeToBlockingClientAndCurl) {
  start();
  http::BlockingClient client;
  const auto result = client.get(address(), "/large");
  CHECK_TEXT(result.ok(), result.detail.c_str());
  UNSIGNED_LONGS_EQUAL(large_body_bytes, result.response.body().size());
  CHECK_TRUE(result.response.body() == large_body());

  test::require_program("curl", "curl");
  const fs::path download = temp_path("large.bin");
  const auto fetched = test::run_command({"curl", "-sS", "--noproxy", "*", "-o", download.string(),
                                          "-w", "%{http_code} %{size_download}", url("http", "/large")});
  LONGS_EQUAL_TEXT(0, fetched.status, fetched.output.c_str());
  STRCMP_EQUAL(("200 " + std::to_string(large_body_bytes)).c_str(), fetched.output.c_str());
  CHECK_TRUE(test::read_file(download) == large_body());
}

TEST(HttpServer, CurlFetchesTwoUrlsOverOneConnection) {
  start();
  test::require_program("curl", "curl");
  const auto fetched = test::run_command(
      {"curl", "-sS", "--noproxy", "*", url("http", "/first"), url("http", "/second")});
  LONGS_EQUAL_TEXT(0, fetched.status, fetched.output.c_str());
  STRCMP_EQUAL((echo_of("GET", "/first") + echo_of("GET", "/second")).c_str(), fetched.output.c_str());
  DOUBLES_EQUAL(1, metric(accepted_series()), 0);
}

// ============================== Server: graceful stop ==============================

TEST(HttpServer, StopFinishesTheRequestInFlightAndClosesTheRest) {
  start();
  test::RawConnection idle(test::loopback, port());
  CHECK_TRUE(idle.send(get_request("/first")));
  LONGS_EQUAL(200, only_response(idle.read_until(echo_of("GET", "/first"), eventually)).status);
  test::RawConnection busy(test::loopback, port());
  CHECK_TRUE(busy.send(get_request("/hold")));
  CHECK_TRUE(test::poll_until([&] { return handler.holds_started() == 1; }, eventually));

  server->stop();
  CHECK_TEXT(idle.closed_within(eventually), "idle keep-alive connection left open by stop()");
  test::RawConnection late(test::loopback, port());
  CHECK_FALSE_TEXT(late.connected(), "a new connection was accepted after stop()");
  CHECK_FALSE(run_returned.load());  // the request in flight holds it

  handler.release_all();
  const auto answer = only_response(busy.read_until("released\n", eventually));
  LONGS_EQUAL(200, answer.status);
  STRCMP_EQUAL("released\n", answer.body.c_str());
  STRCMP_EQUAL("close", test::lower(test::header_value(answer.head, "connection")).c_str());
  CHECK_TEXT(busy.closed_within(eventually), "connection left open after its last answer");
  CHECK_TEXT(test::poll_until([&] { return run_returned.load(); }, eventually),
             "run() did not return after the last connection closed");
}

TEST(HttpServer, StopClosesWhatIsLeftAfterShutdownGrace) {
  http::ServerLimits limits;
  limits.shutdown_grace = short_timeout;
  start(limits);
  test::RawConnection busy(test::loopback, port());
  CHECK_TRUE(busy.send(get_request("/hold")));
  CHECK_TRUE(test::poll_until([&] { return handler.holds_started() == 1; }, eventually));
  server->stop();
  CHECK_TEXT(busy.closed_within(eventually), "a request that never finished outlived shutdown_grace");
  STRCMP_EQUAL("", busy.read_until_close(eventually).c_str());
  CHECK_TEXT(test::poll_until([&] { return run_returned.load(); }, eventually),
             "run() did not return after shutdown_grace");
}

TEST(HttpServer, StopWithSeveralThreadsClosesEveryConnectionAndReturns) {
  constexpr unsigned threads = 2;
  constexpr int connection_count = 8;
  create({}, nullptr, threads);
  launch();
  LONGS_EQUAL(threads, server->thread_count());
  std::vector<std::unique_ptr<test::RawConnection>> connections;
  for (int index = 0; index < connection_count; ++index) {
    const std::string target = "/c" + std::to_string(index);
    auto& connection =
        connections.emplace_back(std::make_unique<test::RawConnection>(test::loopback, port()));
    CHECK_TRUE(connection->send(get_request(target)));
    LONGS_EQUAL(200, only_response(connection->read_until(echo_of("GET", target), eventually)).status);
  }
  server->stop();
  for (auto& connection : connections) CHECK_TRUE(connection->closed_within(eventually));
  CHECK_TEXT(test::poll_until([&] { return run_returned.load(); }, eventually),
             "run() did not return after stop()");
}

// ============================== Server: TLS ==============================

namespace {

void make_certificate(const fs::path& certificate, const fs::path& key, std::string_view common_name) {
  const auto made = test::run_command(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-days", "1", "-subj", "/CN=" + std::string(common_name), "-keyout", key.string(),
       "-out", certificate.string()});
  LONGS_EQUAL_TEXT(0, made.status, made.output.c_str());
}

// The subject of the certificate a new TLS connection to `port` is shown.
std::string served_subject(std::uint16_t port) {
  return test::run_command({"sh", "-c",
                            "openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                                " </dev/null 2>/dev/null | openssl x509 -noout -subject"})
      .output;
}

}  // namespace

TEST_GROUP_BASE(HttpTls, ServerFixture) {
  fs::path certificate;
  fs::path key;
  std::shared_ptr<http::TlsContext> tls;

  // A TLS server whose certificate says CN=`common_name`.
  void start_tls(std::string_view common_name, http::ServerLimits limits = {}) {
    test::require_program("openssl", "openssl");
    certificate = temp_path("server.crt");
    key = temp_path("server.key");
    make_certificate(certificate, key, common_name);
    tls = std::make_shared<http::TlsContext>(certificate.string(), key.string());
    create(limits, tls);
    launch();
  }

  std::string fetch(std::string_view target) {
    test::require_program("curl", "curl");
    const auto fetched =
        test::run_command({"curl", "-sS", "-k", "--noproxy", "*", url("https", target)});
    LONGS_EQUAL_TEXT(0, fetched.status, fetched.output.c_str());
    return fetched.output;
  }
};

TEST(HttpTls, ReloadShowsTheNewCertificateToNewConnections) {
  start_tls("first-certificate");
  STRCMP_EQUAL(echo_of("GET", "/over-tls").c_str(), fetch("/over-tls").c_str());
  const std::string before = served_subject(port());
  STRCMP_CONTAINS("first-certificate", before.c_str());

  make_certificate(certificate, key, "second-certificate");
  std::string error;
  CHECK_TEXT(tls->reload(error), error.c_str());
  const std::string after = served_subject(port());
  STRCMP_CONTAINS("second-certificate", after.c_str());
  STRCMP_EQUAL(echo_of("GET", "/after-reload").c_str(), fetch("/after-reload").c_str());
}

TEST(HttpTls, ReloadOfABrokenCertificateFailsAndKeepsTheOldOne) {
  start_tls("kept-certificate");
  test::write_file(certificate, "this is not a certificate\n");
  std::string error;
  CHECK_FALSE(tls->reload(error));
  STRCMP_CONTAINS(certificate.string().c_str(), error.c_str());
  STRCMP_CONTAINS("kept-certificate", served_subject(port()).c_str());
  STRCMP_EQUAL(echo_of("GET", "/still").c_str(), fetch("/still").c_str());

  // A valid certificate that does not belong to the key is refused too.
  make_certificate(temp_path("other.crt"), temp_path("other.key"), "other-certificate");
  fs::copy_file(temp_path("other.crt"), certificate, fs::copy_options::overwrite_existing);
  error.clear();
  CHECK_FALSE(tls->reload(error));
  CHECK_FALSE(error.empty());
  STRCMP_CONTAINS("kept-certificate", served_subject(port()).c_str());
}

TEST(HttpTls, SilentClientIsClosedAfterHandshakeTimeout) {
  http::ServerLimits limits;
  limits.tls_handshake_timeout = short_timeout;
  start_tls("handshake", limits);
  test::RawConnection silent(test::loopback, port());
  CHECK_TEXT(silent.closed_within(eventually), "a client that never said hello held the connection");
  CHECK_TEXT(metric_reaches(rejected("tls_handshake"), 1), "handshake timeout not counted");
}

// ============================== Client ==============================

TEST_GROUP_BASE(HttpClient, ServerFixture){};

TEST(HttpClient, SecondRequestReusesTheConnection) {
  start();
  http::BlockingClient client;
  const auto first = client.get(address(), "/one");
  CHECK_TEXT(first.ok(), first.detail.c_str());
  CHECK_FALSE(first.reused_connection);
  STRCMP_EQUAL(echo_of("GET", "/one").c_str(), first.response.body().c_str());
  const auto second = client.get(address(), "/two");
  CHECK_TEXT(second.ok(), second.detail.c_str());
  CHECK_TRUE(second.reused_connection);
  STRCMP_EQUAL(echo_of("GET", "/two").c_str(), second.response.body().c_str());
  DOUBLES_EQUAL(1, metric(accepted_series()), 0);
}

TEST(HttpClient, ClosedPortIsConnectRefused) {
  // A bound socket that does not listen: its port refuses connections, and nothing else can take
  // the port while the test runs.
  asio::io_context io;
  http::tcp::socket bound(io, http::tcp::endpoint(asio::ip::make_address(test::loopback), 0));
  const auto target = bound.local_endpoint();
  http::BlockingClient client;
  const auto result = client.get(test::loopback_address(target.port()), "/");
  STRCMP_EQUAL("connect_refused", std::string(http::failure_name(result.failure)).c_str());
}

TEST(HttpClient, GarbageAnswerIsMalformedResponse) {
  upstream = std::make_unique<FakeUpstream>([](FakeUpstream::Connection& connection) {
    if (connection.read_head()) connection.send("NOT HTTP\r\n\r\n");
  });
  http::BlockingClient client;
  http::ClientRequest request{bhttp::verb::get, "/", 11};
  const auto result = client.request(upstream->endpoint(), request);
  STRCMP_EQUAL_TEXT("malformed_response", std::string(http::failure_name(result.failure)).c_str(),
                    result.detail.c_str());
}

TEST(HttpClient, UpstreamThatNeverAnswersIsTimeout) {
  upstream = std::make_unique<FakeUpstream>(
      [](FakeUpstream::Connection& connection) { connection.read_head(); });
  http::BlockingClient client;
  http::ClientTimeouts timeouts;
  timeouts.response = short_timeout;
  http::ClientRequest request{bhttp::verb::get, "/", 11};
  const auto result = client.request(upstream->endpoint(), request, timeouts);
  STRCMP_EQUAL_TEXT("timeout", std::string(http::failure_name(result.failure)).c_str(),
                    result.detail.c_str());
  // The request did go out (the upstream's thread may read it after the client gave up).
  CHECK_TRUE(test::poll_until([&] { return upstream->requests() == 1; }, eventually));
}

TEST(HttpClient, IdleConnectionClosedByUpstreamIsNotReused) {
  upstream = std::make_unique<FakeUpstream>([](FakeUpstream::Connection& connection) {
    if (!connection.read_head()) return;
    connection.send(upstream_answer(connection_label(connection)));
    connection.close();
  });
  http::BlockingClient client;
  http::ClientRequest request{bhttp::verb::get, "/", 11};
  const auto first = client.request(upstream->endpoint(), request);
  CHECK_TEXT(first.ok(), first.detail.c_str());
  STRCMP_EQUAL("connection 1", first.response.body().c_str());
  CHECK_TRUE(test::poll_until([&] { return upstream->closed() == 1; }, eventually));

  // Either the pool sees the close and connects afresh, or the request fails on the dead
  // connection and is retried on a new one; both end on connection 2.
  const auto second = client.request(upstream->endpoint(), request);
  CHECK_TEXT(second.ok(), second.detail.c_str());
  STRCMP_EQUAL("connection 2", second.response.body().c_str());
  CHECK_FALSE(second.reused_connection);
  LONGS_EQUAL(2, upstream->accepted());
}

TEST(HttpClient, PostAfterUpstreamClosedAnIdleConnectionGoesOnANewOne) {
  upstream = std::make_unique<FakeUpstream>([](FakeUpstream::Connection& connection) {
    if (!connection.read_head()) return;
    connection.send(upstream_answer(connection_label(connection)));
    connection.close();
  });
  http::PoolLimits limits;
  limits.probe_after_idle = std::chrono::milliseconds(0);  // every reuse is probed
  http::BlockingClient client(limits);
  http::ClientRequest request{bhttp::verb::post, "/", 11};
  request.body() = "not idempotent";
  CHECK_TRUE(client.request(upstream->endpoint(), request).ok());
  CHECK_TRUE(test::poll_until([&] { return upstream->closed() == 1; }, eventually));

  // A POST is never retried, so only the probe can keep it off the dead connection.
  const auto second = client.request(upstream->endpoint(), request);
  CHECK_TEXT(second.ok(), second.detail.c_str());
  STRCMP_EQUAL("connection 2", second.response.body().c_str());
  CHECK_FALSE(second.reused_connection);
}

TEST(HttpClient, GetOnAConnectionDroppedAsItIsReusedIsRetriedOnce) {
  upstream = std::make_unique<FakeUpstream>(answer_once_then_drop);
  http::BlockingClient client;
  http::ClientRequest request{bhttp::verb::get, "/", 11};
  const auto first = client.request(upstream->endpoint(), request);
  CHECK_TEXT(first.ok(), first.detail.c_str());
  STRCMP_EQUAL("connection 1", first.response.body().c_str());

  const auto second = client.request(upstream->endpoint(), request);
  CHECK_TEXT(second.ok(), second.detail.c_str());
  STRCMP_EQUAL("connection 2", second.response.body().c_str());
  CHECK_FALSE(second.reused_connection);
  LONGS_EQUAL(2, upstream->accepted());
  LONGS_EQUAL(3, upstream->requests());  // two on connection 1, the retry on connection 2
}

TEST(HttpClient, PostOnAConnectionDroppedAsItIsReusedIsNotRetried) {
  upstream = std::make_unique<FakeUpstream>(answer_once_then_drop);
  http::BlockingClient client;
  http::ClientRequest request{bhttp::verb::post, "/", 11};
  request.body() = "not idempotent";
  const auto first = client.request(upstream->endpoint(), request);
  CHECK_TEXT(first.ok(), first.detail.c_str());

  const auto second = client.request(upstream->endpoint(), request);
  STRCMP_EQUAL_TEXT("closed", std::string(http::failure_name(second.failure)).c_str(),
                    second.detail.c_str());
  CHECK_TRUE(second.reused_connection);
  LONGS_EQUAL(1, upstream->accepted());
}

TEST(HttpClient, AnswerOverPoolLimitIsResponseTooLarge) {
  start();
  http::PoolLimits limits;
  limits.body_bytes = small_body_limit;
  http::BlockingClient client(limits);
  const auto result = client.get(address(), "/large");
  STRCMP_EQUAL_TEXT("response_too_large", std::string(http::failure_name(result.failure)).c_str(),
                    result.detail.c_str());
}
