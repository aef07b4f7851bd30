// Component tests of stacknode-web: the built daemon on 127.0.0.1:0 with a temporary node.cfg,
// driven by curl, openssl and raw sockets, in front of upstreams run in this process. Every test
// ends with SIGTERM and requires exit status 0, so a crash or sanitizer report fails that test.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "held_requests.hpp"
#include "http_text.hpp"
#include "net.hpp"
#include "process.hpp"
#include "stacknode/common/http_server.hpp"
#include "stacknode/common/metrics.hpp"

#include <CppUTest/TestHarness.h>

namespace http = stacknode::http;
namespace metrics = stacknode::metrics;
namespace test = stacknode::test;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
namespace fs = std::filesystem;

namespace {

// ---- Limits of the tests themselves ----

// Upper bound for anything that should happen "soon" (start-up, an answer, a health state
// change, a log flush). Tests never assert how long something took; this only keeps a broken
// daemon from hanging the suite. Generous because the sanitizer build is several times slower.
constexpr std::chrono::milliseconds eventually{15'000};
// curl gives up after this many seconds (exit status 28), so a hang fails instead of blocking.
constexpr std::string_view curl_max_seconds = "10";
// Server threads of the daemon under test: more than one, so connections and upstream state
// cross threads as in production, few enough for a small CI machine.
constexpr std::string_view daemon_threads = "2";
// The daemon's graceful stop deadline (shutdown_grace_ms) in every test config; well under
// `eventually`, so a stop that needed the whole grace still ends within the wait for exit.
constexpr int daemon_shutdown_grace_ms = 3'000;
// Timeouts under test (header_timeout_ms, response_timeout_ms): short so the suite is quick,
// far below every other limit (10 s and more), so an outcome seen within `eventually` was caused
// by the timeout under test.
constexpr int short_timeout_ms = 200;
// Limits under test; web_config.cpp allows header_bytes down to 1024.
constexpr int small_header_limit = 1024;
constexpr int small_body_limit = 1024;
// Several times the daemon's 64 KiB one-read limit and its stream buffer, so the file streams in
// many chunks and partial writes.
constexpr std::size_t large_file_bytes = 5 * 1024 * 1024;
// How long the slow upstream of the graceful-shutdown test takes to answer: long enough that
// SIGTERM surely arrives while the request is in flight, short against daemon_shutdown_grace_ms.
constexpr std::chrono::milliseconds slow_upstream_delay{1'000};
// An in-process upstream's graceful stop deadline: requests still parked by the test are cut off
// after this instead of the server default of 10 s.
constexpr std::chrono::milliseconds upstream_shutdown_grace{500};
// Requests sent where a test needs several to see round robin, retries or ejection at work.
constexpr int request_batch = 6;
// Start-ups per signal in the test of signals sent the moment web.listen appears. The window it
// guards (the file written before the signal handlers existed) was microseconds wide and was hit
// in about 1 of 100 start-ups; 2 x 40 start-ups catch a regression most of the time, not always.
constexpr int start_up_signal_rounds = 40;
// One read of a raw upstream; request heads in these tests are far smaller.
constexpr std::size_t raw_read_bytes = 4096;

// Active health checks every 100 ms (the checker's tick), two answers in a row to change state:
// tests see a change within a few ticks, and one stray answer does not flip it.
constexpr std::string_view fast_health =
    "health_interval_ms = 100; health_timeout_ms = 500; rise = 2; fall = 2;";
// One active check at start and none for a minute: tests of passive behaviour (retries,
// ejection) are not disturbed by the active checker; fall = 3 (default) needs three checks.
constexpr std::string_view quiet_health = "health_interval_ms = 60000;";

// ---- HTTP through curl ----

struct HttpResult {
  int status = 0;        // 0 when no answer arrived
  int curl_status = -1;  // curl's exit status: 0 answered, 7 refused, 28 timed out, ...
  std::string head;      // the final response head (curl --dump-header), no blank line
  std::string body;      // exact bytes
  std::string header(std::string_view name) const { return test::header_value(head, name); }
};

// One request with curl; head and body pass through files in `scratch`. `options` go before the
// URL (-H, -X, --data, --compressed, -k, --path-as-is, ...).
HttpResult curl(const fs::path& scratch, const std::string& url,
                const std::vector<std::string>& options = {}) {
  static std::atomic<int> serial{0};
  const std::string name = "curl-" + std::to_string(serial.fetch_add(1));
  const fs::path head_file = scratch / (name + ".head");
  const fs::path body_file = scratch / (name + ".body");
  std::vector<std::string> argv{"curl",          "--silent",          "--max-time",
                                std::string(curl_max_seconds),       "--dump-header",
                                head_file.string(), "--output",      body_file.string(),
                                "--write-out",   "%{http_code}"};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back(url);
  const auto ran = test::run_command(argv);
  HttpResult result;
  result.curl_status = ran.status;
  result.status = std::atoi(ran.output.c_str());
  // The dump holds every head curl saw (a 100 Continue, say); the last one is the answer.
  const std::string heads = test::read_file(head_file);
  const auto last = heads.rfind("HTTP/");
  if (last != std::string::npos) {
    result.head = heads.substr(last);
    const auto end = result.head.find("\r\n\r\n");
    if (end != std::string::npos) result.head.resize(end);
  }
  result.body = test::read_file(body_file);
  std::error_code ignored;
  fs::remove(head_file, ignored);
  fs::remove(body_file, ignored);
  return result;
}

// ---- HTTP as exact bytes ----

// Sends `bytes` on a new connection and reads until the daemon closes it.
test::RawResponse exchange(std::uint16_t port, std::string_view bytes) {
  test::RawConnection connection(test::loopback, port);
  CHECK_TEXT(connection.connected(), "cannot connect to stacknode-web");
  connection.send(bytes);
  return test::split_response(connection.read_until_close(eventually));
}

std::string request_closing(std::string_view method, std::string_view target,
                            std::string_view extra_fields = "") {
  return std::string(method) + " " + std::string(target) +
         " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + std::string(extra_fields) + "\r\n";
}

// ---- Metrics ----

std::string upstream_series(std::string_view name, std::string_view pool, std::string_view upstream) {
  return std::string(name) + "{pool=\"" + std::string(pool) + "\",upstream=\"" +
         std::string(upstream) + "\"}";
}

// ---- Upstreams ----

// An upstream for the proxy: stacknode's own http::Server on 127.0.0.1:0 in this process, on its
// own thread, answering through the Answer the test gives. It counts requests by target and by
// method, and answers the built-in /healthz 200 or 503 as set_healthy says (health checks never
// reach the Answer and are not counted).
class UpstreamServer {
 public:
  using Answer = std::function<void(UpstreamServer&, const http::RequestContext&, http::Request&,
                                    http::Respond)>;

  explicit UpstreamServer(Answer answer) : recorder_(*this, std::move(answer)) {
    http::ServerOptions options;
    options.listeners.push_back(http::Listener{test::loopback_address(0), false});
    options.threads = 1;
    options.limits.shutdown_grace = upstream_shutdown_grace;
    options.metrics_prefix = "upstream";
    server_ = std::make_unique<http::Server>(std::move(options), recorder_, registry_);
    server_->on_health([this] { return healthy_.load(); });
    server_->bind();
    runner_ = std::thread([this] { server_->run(false); });
  }

  ~UpstreamServer() {
    held_.release_all();
    server_->stop();
    runner_.join();
  }

  UpstreamServer(const UpstreamServer&) = delete;
  UpstreamServer& operator=(const UpstreamServer&) = delete;

  std::string address() const { return test::loopback_address(server_->bound_endpoints().at(0).port()); }
  void set_healthy(bool healthy) { healthy_.store(healthy); }

  int requests(const std::string& target) const {
    std::lock_guard lock(mutex_);
    const auto found = by_target_.find(target);
    return found == by_target_.end() ? 0 : found->second;
  }
  int requests_by_method(const std::string& method) const {
    std::lock_guard lock(mutex_);
    const auto found = by_method_.find(method);
    return found == by_method_.end() ? 0 : found->second;
  }
  int requests_total() const {
    std::lock_guard lock(mutex_);
    int total = 0;
    for (const auto& [method, count] : by_method_) total += count;
    return total;
  }
  std::vector<std::string> bodies() const {
    std::lock_guard lock(mutex_);
    return bodies_;
  }

  // Parks a request unanswered until this upstream goes (a stalled application).
  void hold(const http::RequestContext& context, http::Request& request, http::Respond respond) {
    held_.hold(*context.io, std::move(respond), request.version());
  }

 private:
  class Recorder final : public http::Handler {
   public:
    Recorder(UpstreamServer& owner, Answer answer) : owner_(owner), answer_(std::move(answer)) {}
    void handle(const http::RequestContext& context, http::Request& request,
                http::Respond respond) override {
      {
        std::lock_guard lock(owner_.mutex_);
        ++owner_.by_target_[std::string(request.target())];
        ++owner_.by_method_[std::string(request.method_string())];
        owner_.bodies_.push_back(request.body());
      }
      answer_(owner_, context, request, std::move(respond));
    }

   private:
    UpstreamServer& owner_;
    Answer answer_;
  };

  Recorder recorder_;
  metrics::Registry registry_;
  std::unique_ptr<http::Server> server_;
  std::thread runner_;
  std::atomic<bool> healthy_{true};
  mutable std::mutex mutex_;
  std::map<std::string, int> by_target_;
  std::map<std::string, int> by_method_;
  std::vector<std::string> bodies_;
  test::HeldRequests held_;
};

// The end of every echo answer: a raw reader waits for it.
constexpr std::string_view echo_end = "end of echo\n";

// Answers "<METHOD> <target>", the request's fields as "lowercase-name: value" lines, the body,
// then echo_end: the test sees exactly what the proxy sent.
void echo_answer(UpstreamServer&, const http::RequestContext&, http::Request& request,
                 http::Respond respond) {
  std::string text = std::string(request.method_string()) + " " + std::string(request.target()) + "\n";
  for (const auto& field : request) {
    text += test::lower(field.name_string()) + ": " + std::string(field.value()) + "\n";
  }
  text += "body: " + request.body() + "\n";
  text += echo_end;
  respond(http::text_response(bhttp::status::ok, request.version(), std::move(text)));
}

void stall_answer(UpstreamServer& self, const http::RequestContext& context, http::Request& request,
                  http::Respond respond) {
  self.hold(context, request, std::move(respond));
}

// Answers `body` after `delay`, from an Asio timer on the connection's thread.
UpstreamServer::Answer delayed_answer(std::chrono::milliseconds delay, std::string body) {
  return [delay, body](UpstreamServer&, const http::RequestContext& context, http::Request& request,
                       http::Respond respond) {
    auto timer = std::make_shared<asio::steady_timer>(*context.io, delay);
    timer->async_wait([timer, respond = std::move(respond), version = request.version(),
                       body](boost::system::error_code) {
      respond(http::text_response(bhttp::status::ok, version, body));
    });
  };
}

// A raw TCP upstream for answers no proper server gives. One thread accepts connections one at
// a time, reads one request (head, and a body by Content-Length), records its request line, then
// either writes garbage or writes nothing, and closes.
class RawUpstream {
 public:
  enum class Behaviour { answer_garbage, close_without_answer };

  explicit RawUpstream(Behaviour behaviour) : behaviour_(behaviour) {
    runner_ = std::thread([this] { serve(); });
  }

  ~RawUpstream() {
    listener_.wake();
    runner_.join();
  }

  RawUpstream(const RawUpstream&) = delete;
  RawUpstream& operator=(const RawUpstream&) = delete;

  std::string address() const { return test::loopback_address(listener_.port()); }

  // Requests whose request line starts with "<method> ".
  int requests(std::string_view method) const {
    std::lock_guard lock(mutex_);
    int count = 0;
    for (const auto& line : request_lines_) count += line.starts_with(std::string(method) + " ");
    return count;
  }

 private:
  void serve() {
    while (listener_.wait_for_connection()) {
      const int fd = listener_.accept();
      if (fd < 0) continue;
      std::string received;
      std::size_t wanted = std::string::npos;  // head + body bytes, once the head is in
      while (received.size() < wanted && listener_.wait_readable(fd)) {
        char chunk[raw_read_bytes];
        const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
        if (got <= 0) break;
        received.append(chunk, static_cast<std::size_t>(got));
        const auto head_end = received.find("\r\n\r\n");
        if (wanted == std::string::npos && head_end != std::string::npos) {
          const std::string length = test::header_value(received.substr(0, head_end), "content-length");
          wanted = head_end + 4 + (length.empty() ? 0 : std::stoul(length));
        }
      }
      {
        std::lock_guard lock(mutex_);
        request_lines_.push_back(received.substr(0, received.find("\r\n")));
      }
      if (behaviour_ == Behaviour::answer_garbage) {
        constexpr std::string_view garbage = "garbage\r\n\r\n";
        [[maybe_unused]] const auto sent = ::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL);
      }
      ::close(fd);
    }
  }

  Behaviour behaviour_;
  test::LoopbackListener listener_;
  std::thread runner_;
  mutable std::mutex mutex_;
  std::vector<std::string> request_lines_;
};

// ---- Proxy configuration ----

struct PoolSpec {
  std::string name;
  std::vector<std::string> upstreams;  // "127.0.0.1:port"
  std::string settings;                // further `key = value;` settings of the pool
};

struct RouteSpec {
  std::string prefix;
  std::string pool;
  std::string settings;  // e.g. "strip_prefix = true; cache = false;"
};

// The `pools` and `routes` settings of the web section.
std::string proxy_settings(const std::vector<PoolSpec>& pools, const std::vector<RouteSpec>& routes) {
  std::string text = "pools = (";
  for (std::size_t index = 0; index < pools.size(); ++index) {
    const auto& pool = pools[index];
    text += index == 0 ? "\n    { " : ",\n    { ";
    text += "name = \"" + pool.name + "\"; upstreams = [";
    for (std::size_t at = 0; at < pool.upstreams.size(); ++at) {
      text += (at == 0 ? "\"" : ", \"") + pool.upstreams[at] + "\"";
    }
    text += "]; " + pool.settings + " }";
  }
  text += " );\n  routes = (";
  for (std::size_t index = 0; index < routes.size(); ++index) {
    const auto& route = routes[index];
    text += index == 0 ? "\n    { " : ",\n    { ";
    text += "prefix = \"" + route.prefix + "\"; pool = \"" + route.pool + "\"; " + route.settings + " }";
  }
  text += " );\n";
  return text;
}

// ---- The daemon under test ----

// One stacknode-web in its own temporary directory: content/, node.cfg, run/web.listen, the
// daemon's log, and scratch space for curl. start() writes node.cfg and waits until the daemon
// has written web.listen; finish() (called from every group's teardown) stops it with SIGTERM
// and requires exit status 0. A WebNode that goes out of scope kills its daemon.
class WebNode {
 public:
  WebNode() {
    fs::create_directories(content());
    fs::create_directories(scratch());
  }

  fs::path dir() const { return temp_.path(); }
  fs::path content() const { return dir() / "content"; }
  fs::path config_file() const { return dir() / "node.cfg"; }
  fs::path listen_file() const { return dir() / "run" / "web.listen"; }
  fs::path log_file() const { return dir() / "daemon.log"; }
  fs::path scratch() const { return dir() / "scratch"; }

  void write_content(const std::string& relative, std::string_view bytes) const {
    test::write_file(content() / relative, bytes);
  }

  // web.content_dir for the next config written: `root` instead of content() (a symlink, say).
  void serve_from(fs::path root) { content_dir_ = std::move(root); }
  // No web.content_dir in the next config: the default, stacknoded's site under paths.state_dir.
  void serve_default_site() { default_content_dir_ = true; }
  fs::path default_site_current() const { return dir() / "state" / "content" / "default" / "current"; }
  // Settings outside `web` and `paths` (e.g. `node = { name = "sn1"; };`) in the next config.
  void set_other_sections(std::string text) { other_sections_ = std::move(text); }

  // node.cfg text: `web_settings` inside `web { }`, `limits` inside `web.limits { }`,
  // `threads` the literal value of web.threads.
  std::string config_text(std::string_view web_settings, std::string_view limits = "",
                          std::string_view threads = daemon_threads) const {
    const fs::path content_dir = content_dir_.empty() ? content() : content_dir_;
    return (other_sections_.empty() ? std::string() : other_sections_ + "\n") +
           "paths = {\n"
           "  runtime_dir = \"" + (dir() / "run").string() + "\";\n"
           "  state_dir = \"" + (dir() / "state").string() + "\";\n"
           "};\n"
           "web = {\n"
           "  listen_http = \"" + test::loopback_address(0) + "\";\n"
           "  threads = " + std::string(threads) + ";\n"
           + (default_content_dir_ ? std::string() : "  content_dir = \"" + content_dir.string() + "\";\n") +
           "  limits = { shutdown_grace_ms = " + std::to_string(daemon_shutdown_grace_ms) + "; " +
           std::string(limits) + " };\n"
           "  " + std::string(web_settings) + "\n"
           "};\n";
  }

  void write_config(std::string_view web_settings = "", std::string_view limits = "") const {
    test::write_file(config_file(), config_text(web_settings, limits));
  }

  void start(std::string_view web_settings = "", std::string_view limits = "") {
    write_config(web_settings, limits);
    launch();
  }

  // Starts the daemon on the node.cfg already written; fails the test with the daemon's output
  // if it exits or does not write web.listen.
  void launch() {
    std::error_code ignored;
    fs::remove(listen_file(), ignored);
    process_ = std::make_unique<test::Process>(
        std::vector<std::string>{(test::binary_dir() / "stacknode-web").string(), "--config",
                                 config_file().string()},
        log_file());
    test::poll_until([&] { return fs::exists(listen_file()) || !process_->running(); }, eventually);
    if (!fs::exists(listen_file())) {
      FAIL(("stacknode-web did not start listening; its output:\n" + output()).c_str());
    }
    // web.listen is renamed into place whole: once it exists, every line is in it.
    const std::string listening = test::read_file(listen_file());
    for (const auto& [scheme, port] : {std::pair<std::string, std::uint16_t*>{"http ", &http_port_},
                                       std::pair<std::string, std::uint16_t*>{"https ", &https_port_}}) {
      const auto line = listening.find(scheme);
      if (line == std::string::npos) continue;
      const auto colon = listening.find(':', line);
      *port = static_cast<std::uint16_t>(std::stoul(listening.substr(colon + 1)));
    }
    CHECK_TEXT(http_port_ != 0, ("no http line in web.listen:\n" + listening).c_str());
  }

  std::uint16_t http_port() const { return http_port_; }
  std::uint16_t https_port() const { return https_port_; }
  std::string url(std::string_view target) const {
    return "http://" + test::loopback_address(http_port_) + std::string(target);
  }
  HttpResult fetch(std::string_view target, const std::vector<std::string>& options = {}) const {
    return curl(scratch(), url(target), options);
  }
  std::string metrics() const { return fetch("/metrics").body; }
  std::optional<double> metric(const std::string& series) const {
    return test::metric_value(metrics(), series);
  }

  test::Process& process() { return *process_; }
  std::string output() const { return test::read_file(log_file()); }
  void reload() { process_->signal(SIGHUP); }

  // SIGTERM and the exit status (nullopt if it did not exit within `eventually`).
  std::optional<int> stop() {
    process_->signal(SIGTERM);
    auto status = process_->wait(eventually);
    stopped_ = true;
    return status;
  }

  // For teardown: a daemon this test started and did not stop must stop cleanly now.
  void finish() {
    if (!process_ || stopped_) return;
    const auto status = stop();
    CHECK_TEXT(status.has_value(), ("stacknode-web did not exit after SIGTERM; output:\n" + output()).c_str());
    LONGS_EQUAL_TEXT(0, *status, ("stacknode-web exit status after SIGTERM; output:\n" + output()).c_str());
    CHECK_TEXT(!test::contains(output(), "Sanitizer") && !test::contains(output(), "runtime error:"),
               ("sanitizer report from stacknode-web:\n" + output()).c_str());
  }

 private:
  test::TempDir temp_;
  fs::path content_dir_;        // empty: content()
  bool default_content_dir_ = false;
  std::string other_sections_;  // written before `paths`
  std::unique_ptr<test::Process> process_;
  std::uint16_t http_port_ = 0;
  std::uint16_t https_port_ = 0;
  bool stopped_ = false;
};

// A route and pool for one in-process upstream, caching off: the common proxy set-up.
std::string single_upstream(const std::string& upstream, std::string_view route_settings = "cache = false;",
                            std::string_view pool_settings = quiet_health) {
  return proxy_settings({{"app", {upstream}, std::string(pool_settings)}},
                        {{"/api/", "app", std::string(route_settings)}});
}

// ---- Content ----

// Deterministic pseudo-random bytes: incompressible, and any misplaced chunk shows.
std::string random_bytes(std::size_t count) {
  constexpr std::uint64_t seed = 20240611;  // any fixed value: the same bytes on every run
  std::mt19937_64 generator(seed);
  std::string bytes(count, '\0');
  for (std::size_t index = 0; index < count; index += sizeof(std::uint64_t)) {
    const std::uint64_t word = generator();
    for (std::size_t part = 0; part < sizeof word && index + part < count; ++part) {
      bytes[index + part] = static_cast<char>((word >> (8 * part)) & 0xff);
    }
  }
  return bytes;
}

constexpr std::string_view alphabet_text = "abcdefghijklmnopqrstuvwxyz";  // 26 bytes, a.txt

}  // namespace

// ============================================================================================
// Static content: types, validators, ranges, precompressed variants, index files, large files.
// ============================================================================================

TEST_GROUP(WebStatic) {
  WebNode node;
  void setup() override {
    node.write_content("a.txt", alphabet_text);
    node.start();
  }
  void teardown() override { node.finish(); }
};

TEST(WebStatic, ContentTypeFollowsTheFileExtension) {
  struct Case {
    const char* file;
    const char* content_type;
  };
  const Case cases[] = {
      {"page.html", "text/html; charset=utf-8"},
      {"style.css", "text/css; charset=utf-8"},
      {"app.js", "text/javascript; charset=utf-8"},
      {"data.json", "application/json; charset=utf-8"},
      {"logo.png", "image/png"},
  };
  for (const auto& one : cases) {
    const std::string body = std::string("content of ") + one.file;
    node.write_content(one.file, body);
    const auto answer = node.fetch(std::string("/") + one.file);
    LONGS_EQUAL_TEXT(200, answer.status, one.file);
    STRCMP_EQUAL_TEXT(one.content_type, answer.header("Content-Type").c_str(), one.file);
    STRCMP_EQUAL_TEXT(body.c_str(), answer.body.c_str(), one.file);
  }
}

TEST(WebStatic, ValidatorsAnswerConditionalRequestsWith304) {
  const auto first = node.fetch("/a.txt");
  LONGS_EQUAL(200, first.status);
  const std::string etag = first.header("ETag");
  const std::string last_modified = first.header("Last-Modified");
  CHECK_TEXT(etag.size() > 2 && etag.front() == '"' && etag.back() == '"', first.head.c_str());
  CHECK_TEXT(test::contains(last_modified, " GMT"), first.head.c_str());

  const auto by_etag = node.fetch("/a.txt", {"-H", "If-None-Match: " + etag});
  LONGS_EQUAL(304, by_etag.status);
  STRCMP_EQUAL("", by_etag.body.c_str());
  STRCMP_EQUAL(etag.c_str(), by_etag.header("ETag").c_str());

  const auto by_date = node.fetch("/a.txt", {"-H", "If-Modified-Since: " + last_modified});
  LONGS_EQUAL(304, by_date.status);
  STRCMP_EQUAL("", by_date.body.c_str());

  // A validator of some other version does not match: the whole file comes.
  const auto other = node.fetch("/a.txt", {"-H", "If-None-Match: \"not-the-etag\""});
  LONGS_EQUAL(200, other.status);
  STRCMP_EQUAL(std::string(alphabet_text).c_str(), other.body.c_str());
}

TEST(WebStatic, ByteRangesAreServedExactly) {
  const std::string size = std::to_string(alphabet_text.size());

  const auto middle = node.fetch("/a.txt", {"-H", "Range: bytes=2-5"});
  LONGS_EQUAL(206, middle.status);
  STRCMP_EQUAL(("bytes 2-5/" + size).c_str(), middle.header("Content-Range").c_str());
  STRCMP_EQUAL("cdef", middle.body.c_str());
  STRCMP_EQUAL("4", middle.header("Content-Length").c_str());

  const auto suffix = node.fetch("/a.txt", {"-H", "Range: bytes=-4"});
  LONGS_EQUAL(206, suffix.status);
  STRCMP_EQUAL(("bytes 22-25/" + size).c_str(), suffix.header("Content-Range").c_str());
  STRCMP_EQUAL("wxyz", suffix.body.c_str());

  const auto past_the_end = node.fetch("/a.txt", {"-H", "Range: bytes=" + size + "-"});
  LONGS_EQUAL(416, past_the_end.status);
  STRCMP_EQUAL(("bytes */" + size).c_str(), past_the_end.header("Content-Range").c_str());
  CHECK(!test::contains(past_the_end.body, alphabet_text));

  // Several ranges: the whole file with 200 (RFC 9110 allows ignoring the Range).
  const auto several = node.fetch("/a.txt", {"-H", "Range: bytes=0-1,4-5"});
  LONGS_EQUAL(200, several.status);
  STRCMP_EQUAL(std::string(alphabet_text).c_str(), several.body.c_str());
}

TEST(WebStatic, IfRangeHonoursTheRangeOnlyForTheCurrentValidator) {
  const std::string etag = node.fetch("/a.txt").header("ETag");

  const auto current = node.fetch("/a.txt", {"-H", "Range: bytes=0-2", "-H", "If-Range: " + etag});
  LONGS_EQUAL(206, current.status);
  STRCMP_EQUAL("abc", current.body.c_str());

  const auto stale = node.fetch("/a.txt", {"-H", "Range: bytes=0-2", "-H", "If-Range: \"stale-etag\""});
  LONGS_EQUAL(200, stale.status);
  STRCMP_EQUAL("", stale.header("Content-Range").c_str());
  STRCMP_EQUAL(std::string(alphabet_text).c_str(), stale.body.c_str());
}

TEST(WebStatic, PrecompressedVariantGoesToGzipClientsOnly) {
  test::require_program("gzip", "gzip");
  const std::string css = "body { color: #123456; margin: 0 auto; }\n";
  node.write_content("a.css", css);
  const fs::path plain = node.content() / "a.css";
  const auto zipped = test::run_command(
      {"sh", "-c", "gzip -9 -n -c '" + plain.string() + "' > '" + plain.string() + ".gz'"});
  LONGS_EQUAL_TEXT(0, zipped.status, zipped.output.c_str());
  const std::string gzip_bytes = test::read_file(node.content() / "a.css.gz");

  const auto to_gzip_client = node.fetch("/a.css", {"-H", "Accept-Encoding: gzip"});
  LONGS_EQUAL(200, to_gzip_client.status);
  STRCMP_EQUAL("gzip", to_gzip_client.header("Content-Encoding").c_str());
  STRCMP_EQUAL("Accept-Encoding", to_gzip_client.header("Vary").c_str());
  STRCMP_EQUAL("text/css; charset=utf-8", to_gzip_client.header("Content-Type").c_str());
  CHECK_TEXT(to_gzip_client.body == gzip_bytes, "the gzip client did not get the .gz file's bytes");

  const auto to_plain_client = node.fetch("/a.css");
  LONGS_EQUAL(200, to_plain_client.status);
  STRCMP_EQUAL("", to_plain_client.header("Content-Encoding").c_str());
  STRCMP_EQUAL("Accept-Encoding", to_plain_client.header("Vary").c_str());
  STRCMP_EQUAL(css.c_str(), to_plain_client.body.c_str());
  // The two representations must not share a validator.
  CHECK(to_gzip_client.header("ETag") != to_plain_client.header("ETag"));

  // And curl, decoding, sees the original text.
  const auto decoded = node.fetch("/a.css", {"--compressed"});
  LONGS_EQUAL(200, decoded.status);
  STRCMP_EQUAL(css.c_str(), decoded.body.c_str());
}

TEST(WebStatic, DirectoriesServeIndexFilesAndRedirectWithoutSlash) {
  node.write_content("index.html", "root index\n");
  node.write_content("dir/index.html", "dir index\n");

  const auto root = node.fetch("/");
  LONGS_EQUAL(200, root.status);
  STRCMP_EQUAL("root index\n", root.body.c_str());
  STRCMP_EQUAL("text/html; charset=utf-8", root.header("Content-Type").c_str());

  const auto dir = node.fetch("/dir/");
  LONGS_EQUAL(200, dir.status);
  STRCMP_EQUAL("dir index\n", dir.body.c_str());

  const auto without_slash = node.fetch("/dir");
  LONGS_EQUAL(301, without_slash.status);
  STRCMP_EQUAL("/dir/", without_slash.header("Location").c_str());

  const auto with_query = node.fetch("/dir?page=2");
  LONGS_EQUAL(301, with_query.status);
  STRCMP_EQUAL("/dir/?page=2", with_query.header("Location").c_str());

  // A directory without an index file is not listed.
  fs::create_directories(node.content() / "empty");
  LONGS_EQUAL(404, node.fetch("/empty/").status);
}

TEST(WebStatic, LargeFileAndARangeInItsMiddleArriveByteExact) {
  const std::string large = random_bytes(large_file_bytes);
  node.write_content("large.bin", large);

  const auto whole = node.fetch("/large.bin");
  LONGS_EQUAL(200, whole.status);
  STRCMP_EQUAL(std::to_string(large.size()).c_str(), whole.header("Content-Length").c_str());
  STRCMP_EQUAL("application/octet-stream", whole.header("Content-Type").c_str());
  LONGS_EQUAL(large.size(), whole.body.size());
  CHECK_TEXT(whole.body == large, "the large file arrived with different bytes");

  // A range that starts and ends inside stream chunks, longer than one chunk.
  constexpr std::size_t first = 2'000'003;
  constexpr std::size_t length = 1'000'007;
  const auto middle = node.fetch("/large.bin", {"-H", "Range: bytes=" + std::to_string(first) + "-" +
                                                        std::to_string(first + length - 1)});
  LONGS_EQUAL(206, middle.status);
  STRCMP_EQUAL(("bytes " + std::to_string(first) + "-" + std::to_string(first + length - 1) + "/" +
                std::to_string(large.size()))
                   .c_str(),
               middle.header("Content-Range").c_str());
  LONGS_EQUAL(length, middle.body.size());
  CHECK_TEXT(middle.body == large.substr(first, length), "the range arrived with different bytes");
}

TEST(WebStatic, HeadGivesTheHeadWithLengthAndNoBody) {
  const auto head = exchange(node.http_port(), request_closing("HEAD", "/a.txt"));
  LONGS_EQUAL(200, head.status);
  STRCMP_EQUAL(std::to_string(alphabet_text.size()).c_str(),
               test::header_value(head.head, "Content-Length").c_str());
  CHECK(!test::header_value(head.head, "ETag").empty());
  // Nothing follows the head before the daemon closes the connection.
  STRCMP_EQUAL("", head.body.c_str());
}

TEST(WebStatic, HeadAnswersWithoutBodiesKeepAKeepAliveConnectionInStep) {
  node.write_content("dir/index.html", "dir index\n");
  // Error and redirect answers carry a text body for GET; for HEAD it must not be sent, or the
  // client would read it as the start of the next answer.
  test::RawConnection connection(test::loopback, node.http_port());
  CHECK(connection.connected());
  connection.send(
      "HEAD /dir HTTP/1.1\r\nHost: test\r\n\r\n"
      "HEAD /a.txt HTTP/1.1\r\nHost: test\r\nRange: bytes=999-\r\n\r\n"
      "HEAD /%2e%2e/secret HTTP/1.1\r\nHost: test\r\n\r\n"
      "HEAD /missing HTTP/1.1\r\nHost: test\r\n\r\n"
      "GET /a.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
  const std::string raw = connection.read_until_close(eventually);
  struct Expected {
    int status;
    bool body;
  };
  const Expected answers[] = {{301, false}, {416, false}, {400, false}, {404, false}, {200, true}};
  std::size_t at = 0;
  for (const auto& expected : answers) {
    const std::string rest = raw.substr(std::min(at, raw.size()));
    LONGS_EQUAL_TEXT(expected.status, test::status_of(rest), ("answers so far:\n" + raw).c_str());
    const auto head_end = raw.find("\r\n\r\n", at);
    CHECK_TEXT(head_end != std::string::npos, raw.c_str());
    const std::string head = raw.substr(at, head_end - at);
    at = head_end + 4;
    if (expected.body) at += std::stoul(test::header_value(head, "Content-Length"));
  }
  LONGS_EQUAL_TEXT(raw.size(), at, ("bytes beyond the expected answers:\n" + raw).c_str());
  CHECK(raw.ends_with(alphabet_text));
}

TEST(WebStatic, PostToStaticContentIs405WithAllow) {
  const auto answer = node.fetch("/a.txt", {"-X", "POST", "--data", "x=1"});
  LONGS_EQUAL(405, answer.status);
  STRCMP_EQUAL("GET, HEAD", answer.header("Allow").c_str());
  CHECK(!test::contains(answer.body, alphabet_text));
}

// ============================================================================================
// Confinement: no path and no symlink leaves the content directory.
// ============================================================================================

// A file beside the content directory that no request may reach.
constexpr std::string_view secret_text = "TOP-SECRET-7d1f0c";

TEST_GROUP(WebConfinement) {
  WebNode node;
  void setup() override {
    test::write_file(node.dir() / "secret.txt", secret_text);
    test::write_file(node.dir() / "outside" / "secret.txt", secret_text);
    node.write_content("real.txt", "real content\n");
    node.write_content("a/inner.txt", "inner\n");
    node.write_content("docs/page.txt", "page\n");
    node.start();
  }
  void teardown() override { node.finish(); }

  void check_refused(const test::RawResponse& answer, const std::string& target) {
    CHECK_TEXT(answer.status != 0, ("no answer for " + target).c_str());
    CHECK_TEXT(answer.status != 200, ("200 for " + target).c_str());
    CHECK_TEXT(!test::contains(answer.body, secret_text), ("the secret leaked for " + target).c_str());
  }
};

TEST(WebConfinement, TraversalTargetsAreRefusedWith400) {
  // Each names ../secret.txt from the content root in some spelling; all are refused before any
  // file is opened.
  const char* targets[] = {
      "/../secret.txt",
      "/%2e%2e/secret.txt",
      "/%2E%2E/secret.txt",
      "/a/%2e%2e/%2e%2e/secret.txt",
      "/a/../../secret.txt",
      "/./../secret.txt",
      "/..%2fsecret.txt",
      "/%2e%2e%2fsecret.txt",
      "/real.txt%00",
      "/real.txt%00.html",
      "/%00",
  };
  for (const char* target : targets) {
    const auto answer = exchange(node.http_port(), request_closing("GET", target));
    check_refused(answer, target);
    LONGS_EQUAL_TEXT(400, answer.status, target);
  }
  // curl with --path-as-is sends the dots unchanged too.
  const auto by_curl = node.fetch("/../secret.txt", {"--path-as-is"});
  LONGS_EQUAL(400, by_curl.status);
  CHECK(!test::contains(by_curl.body, secret_text));
}

TEST(WebConfinement, SymlinksLeadingOutsideAreNotFollowed) {
  fs::create_symlink("../secret.txt", node.content() / "relative-escape.txt");
  fs::create_symlink(node.dir() / "secret.txt", node.content() / "absolute-escape.txt");
  fs::create_symlink(node.dir() / "outside", node.content() / "outside-dir");
  fs::create_symlink("../../secret.txt", node.content() / "a" / "deep-escape.txt");
  const char* targets[] = {"/relative-escape.txt", "/absolute-escape.txt", "/outside-dir/secret.txt",
                           "/a/deep-escape.txt"};
  for (const char* target : targets) {
    const auto answer = exchange(node.http_port(), request_closing("GET", target));
    check_refused(answer, target);
    LONGS_EQUAL_TEXT(404, answer.status, target);
  }
}

TEST(WebConfinement, SymlinksStayingInsideAreServed) {
  fs::create_symlink("real.txt", node.content() / "alias.txt");
  fs::create_symlink("../real.txt", node.content() / "a" / "up-alias.txt");
  fs::create_symlink("docs", node.content() / "docs-link");
  struct Case {
    const char* target;
    const char* body;
  };
  const Case cases[] = {{"/alias.txt", "real content\n"},
                        {"/a/up-alias.txt", "real content\n"},
                        {"/docs-link/page.txt", "page\n"}};
  for (const auto& one : cases) {
    const auto answer = node.fetch(one.target);
    LONGS_EQUAL_TEXT(200, answer.status, one.target);
    STRCMP_EQUAL_TEXT(one.body, answer.body.c_str(), one.target);
  }
}

// ============================================================================================
// Content root per request: web.content_dir as a symlink that stacknoded swaps with rename(2)
// when it rolls out a content bundle; the next request serves the new version, no reload.
// ============================================================================================

// Bodies of the two versions of the site: distinct, and not found in any response head.
constexpr std::string_view version_a_text = "page of version one\n";
constexpr std::string_view version_b_text = "page of version two\n";

TEST_GROUP(WebContentRoot) {
  WebNode node;
  // <dir>/site/current -> versions/<name>, laid out as stacknoded lays out a site.
  fs::path site() const { return node.dir() / "site"; }
  fs::path current() const { return site() / "current"; }
  fs::path version(std::string_view name) const { return site() / "versions" / name; }

  void setup() override {
    test::write_file(version("a") / "page.txt", version_a_text);
    test::write_file(version("b") / "page.txt", version_b_text);
    fs::create_symlink(fs::path("versions") / "a", current());
    node.serve_from(current());
  }
  void teardown() override { node.finish(); }

  // Points `current` at versions/<name> the way a rollout does: a new link renamed over the old
  // one (rename(2) replaces it atomically; there is never a moment without a link).
  void swap_to(std::string_view name) {
    const fs::path staged = site() / "current.staged";
    fs::create_symlink(fs::path("versions") / name, staged);
    fs::rename(staged, current());
  }
};

TEST(WebContentRoot, SwappedSymlinkIsServedFromTheNextRequestWithoutReload) {
  node.start();
  const auto before = node.fetch("/page.txt");
  LONGS_EQUAL(200, before.status);
  STRCMP_EQUAL(std::string(version_a_text).c_str(), before.body.c_str());
  // A keep-alive connection opened before the swap.
  test::RawConnection kept(test::loopback, node.http_port());
  CHECK(kept.connected());
  kept.send("GET /page.txt HTTP/1.1\r\nHost: test\r\n\r\n");
  STRCMP_EQUAL(std::string(version_a_text).c_str(),
               test::split_response(kept.read_until(version_a_text, eventually)).body.c_str());

  swap_to("b");
  // No signal, no wait: the first request that starts after the rename sees version b, on a new
  // connection and on the one opened before.
  const auto after = node.fetch("/page.txt");
  LONGS_EQUAL(200, after.status);
  STRCMP_EQUAL(std::string(version_b_text).c_str(), after.body.c_str());
  CHECK(kept.send("GET /page.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"));
  const auto on_kept = test::split_response(kept.read_until_close(eventually));
  LONGS_EQUAL(200, on_kept.status);
  STRCMP_EQUAL(std::string(version_b_text).c_str(), on_kept.body.c_str());

  swap_to("a");  // a rollback is the same swap
  STRCMP_EQUAL(std::string(version_a_text).c_str(), node.fetch("/page.txt").body.c_str());
  CHECK_TEXT(!test::contains(node.output(), "reload"), node.output().c_str());
}

TEST(WebContentRoot, MissingRootAtRequestTimeIs503UntilItIsBack) {
  node.start();
  LONGS_EQUAL(200, node.fetch("/page.txt").status);
  const std::string log_before = node.output();

  fs::remove(current());
  const auto removed = node.fetch("/page.txt");
  LONGS_EQUAL(503, removed.status);
  STRCMP_EQUAL("content unavailable\n", removed.body.c_str());
  LONGS_EQUAL(503, node.fetch("/").status);
  const auto head = exchange(node.http_port(), request_closing("HEAD", "/page.txt"));
  LONGS_EQUAL(503, head.status);
  STRCMP_EQUAL("", head.body.c_str());

  // A link to a version not unpacked (yet) is the same.
  fs::create_symlink(fs::path("versions") / "not-there", current());
  const auto dangling = node.fetch("/page.txt");
  LONGS_EQUAL(503, dangling.status);
  STRCMP_EQUAL("content unavailable\n", dangling.body.c_str());

  swap_to("b");
  const auto back = node.fetch("/page.txt");
  LONGS_EQUAL(200, back.status);
  STRCMP_EQUAL(std::string(version_b_text).c_str(), back.body.c_str());
  // Nothing was logged per request (the access log is off in this config).
  STRCMP_EQUAL(log_before.c_str(), node.output().c_str());
}

TEST(WebContentRoot, TheDefaultSiteMayAppearAfterStartAndAnExplicitRootMustExist) {
  // The default root is stacknoded's default site; before stacknoded makes it, 503 (and a warning).
  WebNode fresh;
  fresh.serve_default_site();
  fresh.start();
  CHECK_TEXT(test::contains(fresh.output(), "does not exist yet"), fresh.output().c_str());
  LONGS_EQUAL(503, fresh.fetch("/page.txt").status);
  const fs::path site = fresh.default_site_current().parent_path();
  test::write_file(site / "versions" / "1" / "page.txt", version_a_text);
  fs::create_symlink(fs::path("versions") / "1", fresh.default_site_current());
  const auto served = fresh.fetch("/page.txt");
  LONGS_EQUAL(200, served.status);
  STRCMP_EQUAL(std::string(version_a_text).c_str(), served.body.c_str());
  fresh.finish();

  // A content_dir set in node.cfg is a promise: missing, it is a configuration error (exit 2).
  node.serve_from(node.dir() / "no-such-dir");
  node.write_config();
  const test::CommandResult refused = test::run_command(
      {(test::binary_dir() / "stacknode-web").string(), "--config", node.config_file().string()});
  LONGS_EQUAL(2, refused.status);
  CHECK_TEXT(test::contains(refused.output, "no-such-dir"), refused.output.c_str());
  node.serve_from(current());
  node.start();  // for teardown's finish()
}

TEST(WebContentRoot, ConfinementIsToTheVersionTheLinkNames) {
  // Links from version b into version a leave the directory the root resolved to: refused like
  // any other escape, although both lie under the same site directory. A link within b is served.
  fs::create_symlink(fs::path("..") / "a" / "page.txt", version("b") / "from-a.txt");
  fs::create_symlink(fs::path("..") / "a", version("b") / "a-dir");
  fs::create_symlink("page.txt", version("b") / "alias.txt");
  node.start();
  swap_to("b");
  for (const char* target : {"/from-a.txt", "/a-dir/page.txt"}) {
    const auto answer = node.fetch(target);
    LONGS_EQUAL_TEXT(404, answer.status, target);
    CHECK_TEXT(!test::contains(answer.body, version_a_text), target);
  }
  const auto alias = node.fetch("/alias.txt");
  LONGS_EQUAL(200, alias.status);
  STRCMP_EQUAL(std::string(version_b_text).c_str(), alias.body.c_str());
}

// ============================================================================================
// Reverse proxy: routes, forwarding fields, balancing, health, retries and failures.
// ============================================================================================

TEST_GROUP(WebProxy) {
  WebNode node;
  void teardown() override { node.finish(); }

  // Waits until /metrics shows `upstream` of pool "app" up (1) or down (0).
  void wait_for_up_gauge(const std::string& upstream, int expected) {
    const std::string series = upstream_series("stacknode_web_upstream_up", "app", upstream);
    std::optional<double> seen;
    const bool reached = test::poll_until(
        [&] {
          seen = node.metric(series);
          return seen && *seen == expected;
        },
        eventually);
    CHECK_TEXT(reached, (series + " never became " + std::to_string(expected) + "; last seen " +
                         (seen ? std::to_string(*seen) : "nothing") + "\n" + node.output())
                            .c_str());
  }
  double failures_of(const std::string& upstream) {
    return node.metric(upstream_series("stacknode_web_upstream_failures_total", "app", upstream))
        .value_or(-1);
  }
};

TEST(WebProxy, RoutesReachTheUpstreamWithForwardingFields) {
  UpstreamServer upstream(echo_answer);
  node.start(proxy_settings({{"app", {upstream.address()}, std::string(quiet_health)}},
                            {{"/api/", "app", "strip_prefix = true; cache = false;"},
                             {"/raw/", "app", "cache = false;"}}));

  const auto stripped = node.fetch("/api/items?id=7");
  LONGS_EQUAL(200, stripped.status);
  CHECK_TEXT(stripped.body.starts_with("GET /items?id=7\n"), stripped.body.c_str());
  CHECK_TEXT(test::contains(stripped.body, "x-forwarded-for: 127.0.0.1\n"), stripped.body.c_str());
  CHECK_TEXT(test::contains(stripped.body, "x-forwarded-proto: http\n"), stripped.body.c_str());
  // The client's Host reaches the application unchanged, and is also named in X-Forwarded-Host.
  const std::string host = test::loopback_address(node.http_port());
  CHECK_TEXT(test::contains(stripped.body, "host: " + host + "\n"), stripped.body.c_str());
  CHECK_TEXT(test::contains(stripped.body, "x-forwarded-host: " + host + "\n"), stripped.body.c_str());
  LONGS_EQUAL(1, upstream.requests("/items?id=7"));

  const auto kept = node.fetch("/raw/thing");
  LONGS_EQUAL(200, kept.status);
  CHECK_TEXT(kept.body.starts_with("GET /raw/thing\n"), kept.body.c_str());

  // A client that already came through a proxy: our hop is appended.
  const auto chained = node.fetch("/raw/chain", {"-H", "X-Forwarded-For: 203.0.113.9"});
  CHECK_TEXT(test::contains(chained.body, "x-forwarded-for: 203.0.113.9, 127.0.0.1\n"), chained.body.c_str());

  // Hop-by-hop fields stay on our hop.
  const auto hop = node.fetch("/raw/hop", {"-H", "Connection: keep-alive, X-Secret-Hop", "-H",
                                         "X-Secret-Hop: 1", "-H", "Keep-Alive: timeout=5"});
  CHECK_TEXT(!test::contains(hop.body, "x-secret-hop"), hop.body.c_str());
  CHECK_TEXT(!test::contains(hop.body, "keep-alive: timeout"), hop.body.c_str());

  // A path outside every route is static content, not proxied.
  const int before = upstream.requests_total();
  LONGS_EQUAL(404, node.fetch("/elsewhere").status);
  LONGS_EQUAL(before, upstream.requests_total());
}

TEST(WebProxy, StripPrefixCutsTheNormalisedPath) {
  UpstreamServer upstream(echo_answer);
  node.start(single_upstream(upstream.address(), "strip_prefix = true; cache = false;"));
  // Every spelling that routes to /api/ reaches the upstream as the same stripped path; what the
  // path decodes to is sent encoded again, and the query is kept as the client wrote it.
  struct Case {
    const char* target;   // as the client sends it
    const char* upstream; // as the upstream must see it
  };
  const Case cases[] = {
      {"/api/x", "/x"},
      {"/./api/x", "/x"},
      {"/%61pi/x?q=%2F1", "/x?q=%2F1"},
      {"/static/../api/x", "/x"},
      {"/api//x/./y/../z", "/x/z"},
      {"/api/a%20b", "/a%20b"},
      {"/api/%3F%23%25", "/%3F%23%25"},
      {"/api", "/"},
  };
  for (const auto& one : cases) {
    const auto answer = exchange(node.http_port(), request_closing("GET", one.target));
    LONGS_EQUAL_TEXT(200, answer.status, one.target);
    const std::string first_line = answer.body.substr(0, answer.body.find('\n'));
    STRCMP_EQUAL_TEXT((std::string("GET ") + one.upstream).c_str(), first_line.c_str(), one.target);
  }
}

TEST(WebProxy, RoundRobinSpreadsRequestsOverUpstreams) {
  UpstreamServer first(echo_answer);
  UpstreamServer second(echo_answer);
  node.start(proxy_settings({{"app", {first.address(), second.address()}, std::string(quiet_health)}},
                            {{"/api/", "app", "cache = false;"}}));
  for (int index = 0; index < request_batch; ++index) {
    LONGS_EQUAL(200, node.fetch("/api/rr").status);
  }
  CHECK_TEXT(first.requests("/api/rr") > 0, "the first upstream got no request");
  CHECK_TEXT(second.requests("/api/rr") > 0, "the second upstream got no request");
  LONGS_EQUAL(request_batch, first.requests("/api/rr") + second.requests("/api/rr"));
}

TEST(WebProxy, DownUpstreamIsRetriedAroundThenEjected) {
  UpstreamServer good(echo_answer);
  const std::string down = test::loopback_address(test::unused_port());
  // Ejection lasts longer than the test; the active checker stays quiet (quiet_health), so only
  // passive ejection can stop requests from trying the down upstream.
  node.start(proxy_settings(
      {{"app", {down, good.address()}, std::string(quiet_health) + " retries = 1; max_fails = 2; eject_ms = 60000;"}},
      {{"/api/", "app", "cache = false;"}}));

  for (int index = 0; index < request_batch; ++index) {
    const auto answer = node.fetch("/api/retry");
    LONGS_EQUAL_TEXT(200, answer.status, answer.body.c_str());
  }
  LONGS_EQUAL(request_batch, good.requests("/api/retry"));
  const double failures = failures_of(down);
  CHECK_TEXT(failures >= 2, ("failures of the down upstream: " + std::to_string(failures)).c_str());

  // Ejected: further requests no longer try it.
  for (int index = 0; index < request_batch; ++index) {
    LONGS_EQUAL(200, node.fetch("/api/retry").status);
  }
  DOUBLES_EQUAL(failures, failures_of(down), 0);
  LONGS_EQUAL(2 * request_batch, good.requests("/api/retry"));
}

TEST(WebProxy, ActiveHealthCheckTakesAnUpstreamOutAndBack) {
  UpstreamServer flaky(echo_answer);
  UpstreamServer steady(echo_answer);
  node.start(proxy_settings({{"app", {flaky.address(), steady.address()}, std::string(fast_health)}},
                            {{"/api/", "app", "cache = false;"}}));

  flaky.set_healthy(false);
  wait_for_up_gauge(flaky.address(), 0);
  const int flaky_before = flaky.requests("/api/hc");
  for (int index = 0; index < request_batch; ++index) {
    LONGS_EQUAL(200, node.fetch("/api/hc").status);
  }
  LONGS_EQUAL(flaky_before, flaky.requests("/api/hc"));

  flaky.set_healthy(true);
  wait_for_up_gauge(flaky.address(), 1);
  for (int index = 0; index < request_batch; ++index) {
    LONGS_EQUAL(200, node.fetch("/api/hc").status);
  }
  CHECK_TEXT(flaky.requests("/api/hc") > flaky_before, "the recovered upstream got no traffic");
}

TEST(WebProxy, AllUpstreamsDownAnswersAtOnce) {
  const std::string first = test::loopback_address(test::unused_port());
  const std::string second = test::loopback_address(test::unused_port());
  node.start(proxy_settings({{"app", {first, second}, std::string(fast_health) + " retries = 1;"}},
                            {{"/api/", "app", "cache = false;"}}));

  // Whether the checker has already marked them down (503) or the attempts are refused (502),
  // the answer comes; curl's own deadline turns a hang into a failure (status 0, exit 28).
  const auto early = node.fetch("/api/none");
  LONGS_EQUAL_TEXT(0, early.curl_status, "curl did not get an answer");
  CHECK_TEXT(early.status == 502 || early.status == 503, std::to_string(early.status).c_str());

  wait_for_up_gauge(first, 0);
  wait_for_up_gauge(second, 0);
  const auto late = node.fetch("/api/none");
  LONGS_EQUAL(0, late.curl_status);
  LONGS_EQUAL(503, late.status);
  CHECK_TEXT(test::contains(late.body, "no healthy upstream"), late.body.c_str());
  CHECK(*node.metric("stacknode_web_proxy_no_upstream_total") >= 1);
}

TEST(WebProxy, SlowUpstreamTimesOutWith504) {
  UpstreamServer stalled(stall_answer);
  node.start(single_upstream(stalled.address(), "cache = false;",
                             std::string(quiet_health) + " retries = 0; response_timeout_ms = " +
                                 std::to_string(short_timeout_ms) + ";"));
  const auto answer = node.fetch("/api/stall");
  LONGS_EQUAL(0, answer.curl_status);
  LONGS_EQUAL(504, answer.status);
  LONGS_EQUAL(1, stalled.requests("/api/stall"));
}

TEST(WebProxy, GarbageFromTheUpstreamIs502) {
  RawUpstream garbage(RawUpstream::Behaviour::answer_garbage);
  node.start(single_upstream(garbage.address()));
  const auto answer = node.fetch("/api/junk");
  LONGS_EQUAL(0, answer.curl_status);
  LONGS_EQUAL(502, answer.status);
  CHECK(!test::contains(answer.body, "garbage"));
  CHECK(garbage.requests("GET") >= 1);
}

TEST(WebProxy, PostIsNotSentAgainAfterAnUpstreamReceivedIt) {
  RawUpstream swallower(RawUpstream::Behaviour::close_without_answer);
  UpstreamServer good(echo_answer);
  node.start(proxy_settings(
      {{"app", {swallower.address(), good.address()}, std::string(quiet_health) + " retries = 1; max_fails = 100;"}},
      {{"/api/", "app", "cache = false;"}}));

  // Round robin sends some POSTs to each upstream. The one that swallows a POST must cost the
  // client a 502, never a second delivery to the other upstream.
  int bad_gateway = 0;
  int ok = 0;
  for (int index = 0; index < request_batch; ++index) {
    const auto answer = node.fetch("/api/order", {"--data", "order=" + std::to_string(index)});
    if (answer.status == 502) ++bad_gateway;
    if (answer.status == 200) ++ok;
  }
  CHECK_TEXT(swallower.requests("POST") >= 1, "round robin never chose the swallowing upstream");
  LONGS_EQUAL(swallower.requests("POST"), bad_gateway);
  LONGS_EQUAL(good.requests_by_method("POST"), ok);
  LONGS_EQUAL(request_batch, bad_gateway + ok);
}

TEST(WebProxy, PostIsRetriedWhenTheConnectionWasRefused) {
  UpstreamServer good(echo_answer);
  const std::string down = test::loopback_address(test::unused_port());
  node.start(proxy_settings(
      {{"app", {down, good.address()}, std::string(quiet_health) + " retries = 1; max_fails = 100;"}},
      {{"/api/", "app", "cache = false;"}}));

  for (int index = 0; index < request_batch; ++index) {
    const auto answer = node.fetch("/api/order", {"--data", "order=" + std::to_string(index)});
    LONGS_EQUAL_TEXT(200, answer.status, answer.body.c_str());
  }
  // Every POST arrived exactly once, and the refused upstream was really tried on the way.
  LONGS_EQUAL(request_batch, good.requests_by_method("POST"));
  const auto bodies = good.bodies();
  for (int index = 0; index < request_batch; ++index) {
    LONGS_EQUAL(1, std::count(bodies.begin(), bodies.end(), "order=" + std::to_string(index)));
  }
  CHECK(failures_of(down) >= 1);
  CHECK(*node.metric("stacknode_web_proxy_retries_total") >= 1);
}

// ============================================================================================
// Response cache in front of the proxy.
// ============================================================================================

// Cache-Control the cache upstream sends, by target.
const std::map<std::string, std::string>& cache_control_by_target() {
  static const std::map<std::string, std::string> table = {
      {"/api/max-age", "max-age=60"},
      {"/api/no-store", "no-store"},
      {"/api/private", "private, max-age=60"},
      {"/api/s-maxage-zero", "s-maxage=0, max-age=60"},
      {"/api/vary", "max-age=60"},
  };
  return table;
}

// Answers "<target> #<n>" (n counts requests for the target at this upstream, so a body served
// from the cache is told from a fresh one) with the Cache-Control of cache_control_by_target();
// /api/vary varies on Accept-Encoding and names the variant it chose.
void cache_answer(UpstreamServer& self, const http::RequestContext&, http::Request& request,
                  http::Respond respond) {
  const std::string target(request.target());
  std::string body = target + " #" + std::to_string(self.requests(target)) + "\n";
  const bool vary = target == "/api/vary";
  if (vary) {
    const bool gzip = test::contains(request[bhttp::field::accept_encoding], "gzip");
    body = std::string(gzip ? "variant=gzip " : "variant=identity ") + body;
  }
  auto response = http::text_response(bhttp::status::ok, request.version(), std::move(body));
  const auto found = cache_control_by_target().find(target);
  if (found != cache_control_by_target().end()) response.set(bhttp::field::cache_control, found->second);
  if (vary) response.set(bhttp::field::vary, "Accept-Encoding");
  respond(std::move(response));
}

TEST_GROUP(WebCache) {
  WebNode node;
  std::unique_ptr<UpstreamServer> upstream;
  void setup() override {
    upstream = std::make_unique<UpstreamServer>(cache_answer);
    node.start(single_upstream(upstream->address(), "cache = true;"));
  }
  void teardown() override {
    node.finish();
    upstream.reset();
  }
};

TEST(WebCache, MaxAgeResponseIsServedFromTheCache) {
  const double hits_before = node.metric("stacknode_web_cache_hits_total").value_or(-1);
  CHECK(hits_before >= 0);

  const auto first = node.fetch("/api/max-age");
  LONGS_EQUAL(200, first.status);
  STRCMP_EQUAL("MISS", first.header("X-Cache").c_str());
  STRCMP_EQUAL("/api/max-age #1\n", first.body.c_str());

  const auto second = node.fetch("/api/max-age");
  LONGS_EQUAL(200, second.status);
  STRCMP_EQUAL("HIT", second.header("X-Cache").c_str());
  STRCMP_EQUAL(first.body.c_str(), second.body.c_str());
  CHECK(!second.header("Age").empty());
  STRCMP_EQUAL("max-age=60", second.header("Cache-Control").c_str());
  LONGS_EQUAL(1, upstream->requests("/api/max-age"));

  DOUBLES_EQUAL(hits_before + 1, node.metric("stacknode_web_cache_hits_total").value_or(-1), 0);
}

TEST(WebCache, NoStoreAndPrivateAreNeverServedFromTheCache) {
  const double stores_before = node.metric("stacknode_web_cache_stores_total").value_or(-1);
  for (const char* target : {"/api/no-store", "/api/private"}) {
    for (int round = 1; round <= 3; ++round) {
      const auto answer = node.fetch(target);
      LONGS_EQUAL_TEXT(200, answer.status, target);
      STRCMP_EQUAL_TEXT("MISS", answer.header("X-Cache").c_str(), target);
      STRCMP_EQUAL_TEXT((std::string(target) + " #" + std::to_string(round) + "\n").c_str(),
                        answer.body.c_str(), target);
    }
    LONGS_EQUAL_TEXT(3, upstream->requests(target), target);
  }
  DOUBLES_EQUAL(stores_before, node.metric("stacknode_web_cache_stores_total").value_or(-1), 0);
}

TEST(WebCache, SharedMaxAgeZeroOverridesMaxAge) {
  const double stores_before = node.metric("stacknode_web_cache_stores_total").value_or(-1);
  CHECK(stores_before >= 0);
  LONGS_EQUAL(200, node.fetch("/api/s-maxage-zero").status);
  const auto second = node.fetch("/api/s-maxage-zero");
  STRCMP_EQUAL("MISS", second.header("X-Cache").c_str());
  STRCMP_EQUAL("/api/s-maxage-zero #2\n", second.body.c_str());
  LONGS_EQUAL(2, upstream->requests("/api/s-maxage-zero"));
  // Not stored at all (rather than stored already stale): s-maxage wins for a shared cache.
  DOUBLES_EQUAL(stores_before, node.metric("stacknode_web_cache_stores_total").value_or(-1), 0);
}

TEST(WebCache, VaryAcceptEncodingKeepsAnEntryPerVariant) {
  const std::vector<std::string> gzip{"-H", "Accept-Encoding: gzip"};

  const auto gzip_first = node.fetch("/api/vary", gzip);
  STRCMP_EQUAL("MISS", gzip_first.header("X-Cache").c_str());
  STRCMP_EQUAL("variant=gzip /api/vary #1\n", gzip_first.body.c_str());

  // The identity client must not be given the gzip client's entry.
  const auto identity_first = node.fetch("/api/vary");
  STRCMP_EQUAL("MISS", identity_first.header("X-Cache").c_str());
  STRCMP_EQUAL("variant=identity /api/vary #2\n", identity_first.body.c_str());

  const auto gzip_again = node.fetch("/api/vary", gzip);
  STRCMP_EQUAL("HIT", gzip_again.header("X-Cache").c_str());
  STRCMP_EQUAL(gzip_first.body.c_str(), gzip_again.body.c_str());
  STRCMP_EQUAL("Accept-Encoding", gzip_again.header("Vary").c_str());

  const auto identity_again = node.fetch("/api/vary");
  STRCMP_EQUAL("HIT", identity_again.header("X-Cache").c_str());
  STRCMP_EQUAL(identity_first.body.c_str(), identity_again.body.c_str());

  LONGS_EQUAL(2, upstream->requests("/api/vary"));
}

TEST(WebCache, RequestNoCacheBypassesTheCache) {
  STRCMP_EQUAL("MISS", node.fetch("/api/max-age").header("X-Cache").c_str());
  STRCMP_EQUAL("HIT", node.fetch("/api/max-age").header("X-Cache").c_str());

  const auto bypass = node.fetch("/api/max-age", {"-H", "Cache-Control: no-cache"});
  LONGS_EQUAL(200, bypass.status);
  STRCMP_EQUAL("BYPASS", bypass.header("X-Cache").c_str());
  STRCMP_EQUAL("/api/max-age #2\n", bypass.body.c_str());
  LONGS_EQUAL(2, upstream->requests("/api/max-age"));
}

TEST(WebCache, SuccessfulPostMakesTheCachedAnswerStale) {
  STRCMP_EQUAL("MISS", node.fetch("/api/max-age").header("X-Cache").c_str());
  STRCMP_EQUAL("HIT", node.fetch("/api/max-age").header("X-Cache").c_str());

  // RFC 9111 section 4.4: a 2xx to an unsafe method drops what is stored for its target.
  const auto posted = node.fetch("/api/max-age", {"--data", "change=1"});
  LONGS_EQUAL(200, posted.status);
  STRCMP_EQUAL("/api/max-age #2\n", posted.body.c_str());

  const auto after = node.fetch("/api/max-age");
  STRCMP_EQUAL("MISS", after.header("X-Cache").c_str());
  STRCMP_EQUAL("/api/max-age #3\n", after.body.c_str());
  LONGS_EQUAL(3, upstream->requests("/api/max-age"));
}

// ============================================================================================
// X-Served-By: names the node on every answer of the handler; web.served_by, else node.name.
// ============================================================================================

// A web.served_by value using every kind of character allowed.
constexpr std::string_view configured_served_by = "web-7.rack_A";
// What the upstream below claims; the node's own name must replace it.
constexpr std::string_view upstream_served_by = "the-upstream";

// Answers with its own X-Served-By, cacheable for a while.
void foreign_served_by_answer(UpstreamServer&, const http::RequestContext&, http::Request& request,
                              http::Respond respond) {
  auto response = http::text_response(bhttp::status::ok, request.version(), "from the upstream\n");
  response.set("X-Served-By", upstream_served_by);
  response.set(bhttp::field::cache_control, "max-age=600");
  respond(std::move(response));
}

// How many fields named `name` (case-insensitive) a response head has.
int field_count(std::string_view head, std::string_view name) {
  const std::string lowered = test::lower(head);
  const std::string wanted = "\r\n" + test::lower(name) + ":";
  int count = 0;
  for (auto at = lowered.find(wanted); at != std::string::npos; at = lowered.find(wanted, at + 1)) {
    ++count;
  }
  return count;
}

TEST_GROUP(WebServedBy) {
  WebNode node;
  void setup() override { node.write_content("a.txt", alphabet_text); }
  void teardown() override { node.finish(); }
};

TEST(WebServedBy, ConfiguredNameIsOnEveryKindOfAnswer) {
  UpstreamServer upstream(foreign_served_by_answer);
  const std::string dead = test::loopback_address(test::unused_port());
  node.start("served_by = \"" + std::string(configured_served_by) + "\";\n  " +
             proxy_settings({{"app", {upstream.address()}, std::string(quiet_health)},
                             {"dead", {dead}, std::string(quiet_health) + " retries = 0;"}},
                            {{"/api/", "app", "cache = false;"},
                             {"/cached/", "app", "cache = true;"},
                             {"/dead/", "dead", "cache = false;"}}));

  struct Seen {
    std::string what;
    int expected_status;  // 0: 502 or 503 (whether the checker already marked the pool down)
    int status;
    std::string head;
  };
  std::vector<Seen> seen;
  auto add = [&](std::string what, int expected_status, const HttpResult& answer) {
    seen.push_back({std::move(what), expected_status, answer.status, answer.head});
  };
  const auto plain = node.fetch("/a.txt");
  add("static", 200, plain);
  add("static, If-None-Match", 304,
      node.fetch("/a.txt", {"-H", "If-None-Match: " + plain.header("ETag")}));
  add("static, Range", 206, node.fetch("/a.txt", {"-H", "Range: bytes=0-1"}));
  add("static, Range beyond the end", 416, node.fetch("/a.txt", {"-H", "Range: bytes=100-"}));
  add("missing file", 404, node.fetch("/missing.txt"));
  add("POST to static", 405, node.fetch("/a.txt", {"--data", "x"}));
  add("bad path", 400, node.fetch("/../a.txt", {"--path-as-is"}));
  add("proxied", 200, node.fetch("/api/x"));
  add("proxied, to be cached", 200, node.fetch("/cached/x"));
  const auto hit = node.fetch("/cached/x");
  STRCMP_EQUAL("HIT", hit.header("X-Cache").c_str());
  add("proxied, cache hit", 200, hit);
  add("proxied, upstream down", 0, node.fetch("/dead/x"));
  const auto head = exchange(node.http_port(), request_closing("HEAD", "/a.txt"));
  seen.push_back({"HEAD", 200, head.status, head.head});

  for (const auto& one : seen) {
    const std::string context = one.what + ":\n" + one.head;
    if (one.expected_status != 0) {
      LONGS_EQUAL_TEXT(one.expected_status, one.status, context.c_str());
    } else {
      CHECK_TEXT(one.status == 502 || one.status == 503, context.c_str());
    }
    STRCMP_EQUAL_TEXT(std::string(configured_served_by).c_str(),
                      test::header_value(one.head, "X-Served-By").c_str(), context.c_str());
    // Replaced, never added beside the upstream's.
    LONGS_EQUAL_TEXT(1, field_count(one.head, "X-Served-By"), context.c_str());
  }
}

TEST(WebServedBy, DefaultsToNodeName) {
  node.set_other_sections("node = { name = \"sn3\"; };");
  node.start();
  const auto answer = node.fetch("/a.txt");
  LONGS_EQUAL(200, answer.status);
  STRCMP_EQUAL("sn3", answer.header("X-Served-By").c_str());
  STRCMP_EQUAL("sn3", node.fetch("/missing.txt").header("X-Served-By").c_str());
}

TEST(WebServedBy, ExplicitValueWinsOverNodeNameAndEmptyTurnsItOff) {
  node.set_other_sections("node = { name = \"sn3\"; };");
  node.start("served_by = \"front-1\";");
  STRCMP_EQUAL("front-1", node.fetch("/a.txt").header("X-Served-By").c_str());

  // Changed by a reload like the rest of the web section.
  node.write_config("served_by = \"\";");
  node.reload();
  const bool off = test::poll_until(
      [&] {
        const auto answer = node.fetch("/a.txt");
        return answer.status == 200 && field_count(answer.head, "X-Served-By") == 0;
      },
      eventually);
  CHECK_TEXT(off, ("X-Served-By stayed after served_by = \"\"; output:\n" + node.output()).c_str());
}

TEST(WebServedBy, AbsentWhenNeitherServedByNorNodeNameIsSet) {
  UpstreamServer upstream(echo_answer);
  node.start(single_upstream(upstream.address()));
  const auto file = node.fetch("/a.txt");
  LONGS_EQUAL(200, file.status);
  LONGS_EQUAL_TEXT(0, field_count(file.head, "X-Served-By"), file.head.c_str());
  const auto missing = node.fetch("/missing.txt");
  LONGS_EQUAL(404, missing.status);
  LONGS_EQUAL_TEXT(0, field_count(missing.head, "X-Served-By"), missing.head.c_str());
  const auto proxied = node.fetch("/api/x");
  LONGS_EQUAL(200, proxied.status);
  LONGS_EQUAL_TEXT(0, field_count(proxied.head, "X-Served-By"), proxied.head.c_str());
}

// ============================================================================================
// Bad input from clients: answered, counted, and nothing else is affected.
// ============================================================================================

TEST_GROUP(WebBadInput) {
  WebNode node;
  void setup() override {
    node.write_content("a.txt", alphabet_text);
    node.start("", "header_bytes = " + std::to_string(small_header_limit) + "; body_bytes = " +
                       std::to_string(small_body_limit) + "; header_timeout_ms = " +
                       std::to_string(short_timeout_ms) + ";");
  }
  void teardown() override { node.finish(); }

  void check_still_serving() {
    const auto answer = exchange(node.http_port(), request_closing("GET", "/a.txt"));
    LONGS_EQUAL(200, answer.status);
    STRCMP_EQUAL(std::string(alphabet_text).c_str(), answer.body.c_str());
  }
};

TEST(WebBadInput, MalformedRequestsGet400AndTheServerKeepsServing) {
  const char* requests[] = {
      "this is not http\r\n\r\n",
      "GET /a.txt\r\n\r\n",
      "GET /a.txt HTTP/1.1\r\nHost test\r\n\r\n",
      "GET /a.txt HTTP/9.9\r\nHost: test\r\n\r\n",
      // Both framings at once: the classic request-smuggling shape.
      "POST /a.txt HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  };
  for (const char* request : requests) {
    const auto answer = exchange(node.http_port(), request);
    LONGS_EQUAL_TEXT(400, answer.status, request);
    CHECK_TEXT(!test::contains(answer.body, alphabet_text), request);
    check_still_serving();
  }
}

TEST(WebBadInput, OversizedHeadIs431) {
  const std::string big_field = "X-Big: " + std::string(2 * small_header_limit, 'a') + "\r\n";
  const auto answer = exchange(node.http_port(), request_closing("GET", "/a.txt", big_field));
  LONGS_EQUAL(431, answer.status);
  check_still_serving();
}

TEST(WebBadInput, OversizedBodyIs413) {
  // Declared: refused before the body is read.
  const auto declared = exchange(
      node.http_port(),
      request_closing("POST", "/a.txt", "Content-Length: " + std::to_string(4 * small_body_limit) + "\r\n"));
  LONGS_EQUAL(413, declared.status);

  // Chunked: refused once the limit is crossed.
  const std::string chunk(2 * small_body_limit, 'b');
  std::string chunked = request_closing("POST", "/a.txt", "Transfer-Encoding: chunked\r\n");
  std::ostringstream size_line;
  size_line << std::hex << chunk.size() << "\r\n";
  chunked += size_line.str() + chunk + "\r\n0\r\n\r\n";
  const auto streamed = exchange(node.http_port(), chunked);
  LONGS_EQUAL(413, streamed.status);
  check_still_serving();
}

TEST(WebBadInput, ClientSendingHalfAHeadIsDisconnected) {
  test::RawConnection slow(test::loopback, node.http_port());
  CHECK(slow.connected());
  slow.send("GET /a.txt HTTP/1.1\r\nHost: te");
  CHECK_TEXT(slow.closed_within(eventually), "the half-sent head kept its connection open");
  // The close was the header timeout (every other limit is 10 s or more), and it was counted.
  CHECK(*node.metric("stacknode_web_http_rejected_total{reason=\"header_timeout\"}") >= 1);
  check_still_serving();
}

// ============================================================================================
// Configuration: exit status 2 naming file:line and key for bad configs; warnings for unknowns.
// ============================================================================================

TEST_GROUP(WebConfig) {
  WebNode node;
  void teardown() override { node.finish(); }

  struct Ran {
    int status = -1;
    std::string output;
  };
  // Runs stacknode-web to completion with `arguments`.
  Ran run_daemon(const std::vector<std::string>& arguments) {
    std::vector<std::string> argv{(test::binary_dir() / "stacknode-web").string()};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    const fs::path log = node.scratch() / "run.log";
    std::error_code ignored;
    fs::remove(log, ignored);
    test::Process process(argv, log);
    const auto status = process.wait(eventually);
    CHECK_TEXT(status.has_value(), "stacknode-web kept running with a bad configuration");
    return Ran{*status, test::read_file(log)};
  }
  Ran run_with_config(const std::string& text) {
    test::write_file(node.config_file(), text);
    return run_daemon({"--config", node.config_file().string()});
  }
  // "node.cfg:<line>" for the line of `text` holding `marker`.
  static std::string location_of(const std::string& text, std::string_view marker) {
    const auto at = text.find(marker);
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
    return "node.cfg:" + std::to_string(line);
  }
};

TEST(WebConfig, MissingConfigFileExits2) {
  const std::string missing = (node.dir() / "no-such.cfg").string();
  const auto ran = run_daemon({"--config", missing});
  LONGS_EQUAL_TEXT(2, ran.status, ran.output.c_str());
  CHECK_TEXT(test::contains(ran.output, missing), ran.output.c_str());
}

TEST(WebConfig, SyntaxErrorExits2NamingTheLine) {
  const std::string text = node.config_text("index_files = [\"index.html\"];\n  broken_here = ;");
  const auto ran = run_with_config(text);
  LONGS_EQUAL_TEXT(2, ran.status, ran.output.c_str());
  const std::string where = location_of(text, "broken_here");
  CHECK_TEXT(test::contains(ran.output, where + ":"), ("expected " + where + " in:\n" + ran.output).c_str());
}

TEST(WebConfig, WrongTypeExits2NamingTheKey) {
  const std::string text = node.config_text("", "", "\"x\"");
  const auto ran = run_with_config(text);
  LONGS_EQUAL_TEXT(2, ran.status, ran.output.c_str());
  CHECK_TEXT(test::contains(ran.output, location_of(text, "threads") + ": web.threads:"), ran.output.c_str());
}

TEST(WebConfig, RouteToAnUnknownPoolExits2) {
  const std::string text = node.config_text(
      proxy_settings({{"app", {test::loopback_address(test::unused_port())}, ""}}, {{"/api/", "nosuch", ""}}));
  const auto ran = run_with_config(text);
  LONGS_EQUAL_TEXT(2, ran.status, ran.output.c_str());
  CHECK_TEXT(test::contains(ran.output, "web.routes[0].pool"), ran.output.c_str());
  CHECK_TEXT(test::contains(ran.output, "nosuch"), ran.output.c_str());
}

TEST(WebConfig, UnknownKeyIsWarnedAboutAndTheDaemonRuns) {
  node.write_content("a.txt", alphabet_text);
  node.start("colour = \"blue\";");
  const std::string where = location_of(test::read_file(node.config_file()), "colour");
  CHECK_TEXT(test::contains(node.output(), where + ": web.colour"), node.output().c_str());
  LONGS_EQUAL(200, node.fetch("/a.txt").status);
}

TEST(WebConfig, BadServedByExits2NamingTheKey) {
  const std::string too_long(65, 'n');  // one above the 64 allowed
  // As written between the quotes in node.cfg (libconfig escapes: \\ is a backslash, \n a newline).
  const char* bad_values[] = {"two words", "a/b",         "back\\\\slash",
                              "x:y",       "caf\xc3\xa9", "line\\nbreak"};
  std::vector<std::string> values(std::begin(bad_values), std::end(bad_values));
  values.push_back(too_long);
  for (const auto& value : values) {
    const std::string text = node.config_text("served_by = \"" + value + "\";");
    const auto ran = run_with_config(text);
    LONGS_EQUAL_TEXT(2, ran.status, (value + ":\n" + ran.output).c_str());
    CHECK_TEXT(test::contains(ran.output, location_of(text, "served_by") + ": web.served_by:"),
               (value + ":\n" + ran.output).c_str());
  }
  // A string of the wrong type is refused the same way.
  const std::string number = node.config_text("served_by = 7;");
  const auto ran = run_with_config(number);
  LONGS_EQUAL_TEXT(2, ran.status, ran.output.c_str());
  CHECK_TEXT(test::contains(ran.output, location_of(number, "served_by") + ": web.served_by:"),
             ran.output.c_str());
}

TEST(WebConfig, ServedByAtTheLimitsIsAccepted) {
  for (const std::string& value : {std::string(64, 'n'), std::string("a"), std::string("")}) {
    test::write_file(node.config_file(), node.config_text("served_by = \"" + value + "\";"));
    const auto ran = run_daemon({"--config", node.config_file().string(), "--check-config"});
    LONGS_EQUAL_TEXT(0, ran.status, ("\"" + value + "\":\n" + ran.output).c_str());
  }
}

TEST(WebConfig, NodeNameUnfitForServedByExits2NamingBothKeys) {
  node.set_other_sections("node = { name = \"rack one\"; };");
  const std::string text = node.config_text("");
  const auto ran = run_with_config(text);
  LONGS_EQUAL_TEXT(2, ran.status, ran.output.c_str());
  CHECK_TEXT(test::contains(ran.output, location_of(text, "rack one") + ": node.name:"),
             ran.output.c_str());
  CHECK_TEXT(test::contains(ran.output, "web.served_by"), ran.output.c_str());

  // Setting web.served_by makes node.name irrelevant to stacknode-web.
  test::write_file(node.config_file(), node.config_text("served_by = \"rack-one\";"));
  const auto fixed = run_daemon({"--config", node.config_file().string(), "--check-config"});
  LONGS_EQUAL_TEXT(0, fixed.status, fixed.output.c_str());
}

TEST(WebConfig, CheckConfigValidatesWithoutServing) {
  test::write_file(node.config_file(), node.config_text(""));
  const auto good = run_daemon({"--config", node.config_file().string(), "--check-config"});
  LONGS_EQUAL_TEXT(0, good.status, good.output.c_str());
  CHECK_TEXT(test::contains(good.output, "is valid"), good.output.c_str());
  CHECK(!fs::exists(node.listen_file()));

  test::write_file(node.config_file(), node.config_text("", "", "\"x\""));
  const auto bad = run_daemon({"--config", node.config_file().string(), "--check-config"});
  LONGS_EQUAL_TEXT(2, bad.status, bad.output.c_str());
}

// ============================================================================================
// Reload (SIGHUP): new routes without dropping connections; a broken file changes nothing.
// ============================================================================================

TEST_GROUP(WebReload) {
  WebNode node;
  void setup() override { node.write_content("a.txt", alphabet_text); }
  void teardown() override { node.finish(); }
};

TEST(WebReload, NewRouteTakesEffectAndKeepAliveConnectionSurvives) {
  UpstreamServer upstream(echo_answer);
  node.start();

  test::RawConnection kept(test::loopback, node.http_port());
  CHECK(kept.connected());
  kept.send("GET /a.txt HTTP/1.1\r\nHost: test\r\n\r\n");
  const auto before = test::split_response(kept.read_until(alphabet_text, eventually));
  LONGS_EQUAL(200, before.status);
  LONGS_EQUAL(404, node.fetch("/new/x").status);

  node.write_config(proxy_settings({{"app", {upstream.address()}, std::string(quiet_health)}},
                                   {{"/new/", "app", "cache = false;"}}));
  node.reload();
  const bool routed = test::poll_until([&] { return node.fetch("/new/x").status == 200; }, eventually);
  CHECK_TEXT(routed, ("the new route never answered; output:\n" + node.output()).c_str());

  // The connection opened before the reload still works, and sees the new routes.
  CHECK(kept.send("GET /new/on-kept HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto proxied = test::split_response(kept.read_until(echo_end, eventually));
  LONGS_EQUAL(200, proxied.status);
  CHECK_TEXT(proxied.body.starts_with("GET /new/on-kept\n"), proxied.body.c_str());
  CHECK(kept.send("GET /a.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"));
  const auto after = test::split_response(kept.read_until_close(eventually));
  LONGS_EQUAL(200, after.status);
  STRCMP_EQUAL(std::string(alphabet_text).c_str(), after.body.c_str());
}

TEST(WebReload, BrokenConfigOnSighupKeepsTheRunningOne) {
  UpstreamServer upstream(echo_answer);
  node.start(single_upstream(upstream.address()));
  LONGS_EQUAL(200, node.fetch("/api/x").status);

  test::write_file(node.config_file(), "web = { this is not a config\n");
  node.reload();
  const bool refused = test::poll_until([&] { return test::contains(node.output(), "reload failed"); }, eventually);
  CHECK_TEXT(refused, node.output().c_str());
  CHECK_TEXT(test::contains(node.output(), "node.cfg:"), node.output().c_str());

  const auto proxied = node.fetch("/api/still");
  LONGS_EQUAL(200, proxied.status);
  CHECK(proxied.body.starts_with("GET /api/still\n"));
  LONGS_EQUAL(200, node.fetch("/a.txt").status);
}

// ============================================================================================
// TLS: the https listener and certificate reload.
// ============================================================================================

TEST_GROUP(WebTls) {
  WebNode node;
  void setup() override {
    test::require_program("openssl", "openssl");
    node.write_content("a.txt", alphabet_text);
  }
  void teardown() override { node.finish(); }

  fs::path certificate() const { return node.dir() / "tls" / "cert.pem"; }
  fs::path key() const { return node.dir() / "tls" / "key.pem"; }

  // A self-signed certificate for CN=`common_name`, moved into place whole.
  void make_certificate(const std::string& common_name) {
    fs::create_directories(certificate().parent_path());
    const std::string new_certificate = certificate().string() + ".new";
    const std::string new_key = key().string() + ".new";
    const auto made = test::run_command(
        {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=" + common_name, "-keyout", new_key, "-out", new_certificate});
    LONGS_EQUAL_TEXT(0, made.status, made.output.c_str());
    fs::rename(new_key, key());
    fs::rename(new_certificate, certificate());
  }

  // The subject of the certificate a new connection is shown.
  std::string served_subject() {
    return test::run_command({"sh", "-c",
                              "openssl s_client -connect " + test::loopback_address(node.https_port()) +
                                  " </dev/null 2>/dev/null | openssl x509 -noout -subject"})
        .output;
  }
};

TEST(WebTls, HttpsServesAndTheCertificateReloadsOnSighup) {
  make_certificate("one");
  node.start("listen_https = \"" + test::loopback_address(0) + "\";\n  tls = { certificate = \"" +
             certificate().string() + "\"; key = \"" + key().string() + "\"; };");
  CHECK(node.https_port() != 0);

  const auto secure = curl(node.scratch(), "https://" + test::loopback_address(node.https_port()) + "/a.txt", {"-k"});
  LONGS_EQUAL_TEXT(200, secure.status, ("curl exit " + std::to_string(secure.curl_status)).c_str());
  STRCMP_EQUAL(std::string(alphabet_text).c_str(), secure.body.c_str());
  CHECK_TEXT(test::contains(served_subject(), "CN = one"), served_subject().c_str());

  make_certificate("two");
  node.reload();
  std::string subject;
  const bool renewed = test::poll_until(
      [&] {
        subject = served_subject();
        return test::contains(subject, "CN = two");
      },
      eventually);
  CHECK_TEXT(renewed, ("still served: " + subject + "\n" + node.output()).c_str());

  // A certificate file that does not load leaves the working one in place.
  test::write_file(certificate(), "not a certificate\n");
  node.reload();
  const bool kept = test::poll_until([&] { return test::contains(node.output(), "TLS certificate kept"); }, eventually);
  CHECK_TEXT(kept, node.output().c_str());
  CHECK_TEXT(test::contains(served_subject(), "CN = two"), served_subject().c_str());
  LONGS_EQUAL(200, curl(node.scratch(), "https://" + test::loopback_address(node.https_port()) + "/a.txt", {"-k"}).status);
}

// ============================================================================================
// Access log: one JSON object per answered request.
// ============================================================================================

TEST_GROUP(WebAccessLog) {
  WebNode node;
  void teardown() override { node.finish(); }
};

TEST(WebAccessLog, LinesAreJsonWithStatusBytesTimesAndUpstream) {
  UpstreamServer upstream(echo_answer);
  node.write_content("a.txt", alphabet_text);
  const fs::path log = node.dir() / "access.log";
  node.start("access_log = \"" + log.string() + "\";\n  " + single_upstream(upstream.address()));

  LONGS_EQUAL(200, node.fetch("/a.txt").status);
  LONGS_EQUAL(404, node.fetch("/missing").status);
  LONGS_EQUAL(200, node.fetch("/api/logged").status);

  // Lines are flushed within about a second; wait for all three.
  std::map<std::string, boost::json::object> by_target;
  const bool complete = test::poll_until(
      [&] {
        by_target.clear();
        const std::string text = test::read_file(log);
        std::size_t start = 0;
        for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
          boost::system::error_code error;
          auto value = boost::json::parse(text.substr(start, end - start), error);
          if (error || !value.is_object()) continue;
          auto& object = value.as_object();
          if (const auto* target = object.if_contains("target"); target && target->is_string()) {
            by_target[std::string(target->as_string())] = object;
          }
        }
        return by_target.size() >= 3;
      },
      eventually);
  CHECK_TEXT(complete, ("access log:\n" + test::read_file(log)).c_str());
  // Every line must be JSON: none may have been skipped above.
  const std::string text = test::read_file(log);
  LONGS_EQUAL(by_target.size(), std::count(text.begin(), text.end(), '\n'));

  const auto& file = by_target.at("/a.txt");
  LONGS_EQUAL(200, file.at("status").to_number<int>());
  CHECK(file.at("bytes").to_number<double>() > alphabet_text.size());  // head included
  CHECK(file.at("request_time").to_number<double>() >= 0);
  STRCMP_EQUAL("GET", std::string(file.at("method").as_string()).c_str());
  CHECK(file.if_contains("upstream") == nullptr);

  LONGS_EQUAL(404, by_target.at("/missing").at("status").to_number<int>());

  const auto& proxied = by_target.at("/api/logged");
  LONGS_EQUAL(200, proxied.at("status").to_number<int>());
  STRCMP_EQUAL(upstream.address().c_str(), std::string(proxied.at("upstream").as_string()).c_str());
  CHECK(proxied.at("upstream_time").to_number<double>() >= 0);
  CHECK(proxied.at("request_time").to_number<double>() >= 0);
}

// ============================================================================================
// Graceful shutdown: SIGTERM lets the request in flight finish.
// ============================================================================================

TEST_GROUP(WebShutdown) {
  WebNode node;
  void teardown() override { node.finish(); }
};

TEST(WebShutdown, SigtermFinishesTheRequestInFlightAndExits0) {
  UpstreamServer slow(delayed_answer(slow_upstream_delay, "slow answer\n"));
  node.start(single_upstream(slow.address()));

  test::RawConnection client(test::loopback, node.http_port());
  CHECK(client.connected());
  client.send("GET /api/slow HTTP/1.1\r\nHost: test\r\n\r\n");
  const bool in_flight = test::poll_until([&] { return slow.requests("/api/slow") == 1; }, eventually);
  CHECK_TEXT(in_flight, "the request never reached the upstream");

  node.process().signal(SIGTERM);
  const auto answer = test::split_response(client.read_until_close(eventually));
  LONGS_EQUAL(200, answer.status);
  STRCMP_EQUAL("slow answer\n", answer.body.c_str());
  // The client asked for keep-alive; a stopping server says it closes.
  STRCMP_EQUAL("close", test::lower(test::header_value(answer.head, "Connection")).c_str());

  const auto status = node.stop();
  CHECK_TEXT(status.has_value(), node.output().c_str());
  LONGS_EQUAL_TEXT(0, *status, node.output().c_str());
  CHECK_TEXT(!fs::exists(node.listen_file()), "web.listen was left behind");
}

TEST(WebShutdown, SignalsSentTheMomentWebListenAppearsAreHandled) {
  node.write_content("a.txt", alphabet_text);
  node.write_config();
  for (int round = 0; round < start_up_signal_rounds; ++round) {
    for (const int signal_number : {SIGHUP, SIGTERM}) {
      std::error_code ignored;
      fs::remove(node.listen_file(), ignored);
      test::Process daemon({(test::binary_dir() / "stacknode-web").string(), "--config",
                            node.config_file().string()},
                           node.log_file());
      // Busy-wait without sleeping: a polling interval would step over the moment under test.
      const auto deadline = std::chrono::steady_clock::now() + eventually;
      while (!fs::exists(node.listen_file()) && daemon.running() &&
             std::chrono::steady_clock::now() < deadline) {
      }
      CHECK_TEXT(fs::exists(node.listen_file()), node.output().c_str());
      daemon.signal(signal_number);
      // After SIGHUP the daemon must still be there (reloaded, not killed) to stop cleanly now.
      if (signal_number == SIGHUP) daemon.signal(SIGTERM);
      const auto status = daemon.wait(eventually);
      CHECK_TEXT(status.has_value(), node.output().c_str());
      LONGS_EQUAL_TEXT(0, *status,
                       (std::string(signal_number == SIGHUP ? "SIGHUP" : "SIGTERM") +
                        " at start-up; output:\n" + node.output())
                           .c_str());
    }
  }
}
