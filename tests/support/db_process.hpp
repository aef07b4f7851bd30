// A stacknode-db process for component tests: its node.cfg on loopback (an unused dqlite port and
// HTTP port), start, kill -9 and restart, its identity file, and curl requests to its HTTP API.
// Shared by the db tests (plain TCP and TLS on the wire port).
#pragma once

#include <signal.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "net.hpp"
#include "process.hpp"

#include <CppUTest/TestHarness.h>

namespace stacknode::test {

namespace fs = std::filesystem;
namespace json = boost::json;

// Start-up, joining and each request; only keeps a broken daemon from hanging the suite.
inline constexpr std::chrono::milliseconds db_eventually{60'000};
inline constexpr const char* curl_max_seconds = "20";

struct HttpAnswer {
  int status = 0;
  std::string body;
  json::value json() const { return json::parse(body); }
};

class DbNodeProcess {
 public:
  // With `from_identity`, node.cfg has no node_id and join: the node waits for write_identity().
  // `extra` goes into node.cfg's db section as it is (e.g. tls_dir = "...";).
  DbNodeProcess(const fs::path& dir, int id, const std::string& join, bool from_identity = false,
                const std::string& extra = "")
      : id_(id), dir_(dir / ("n" + std::to_string(id))) {
    fs::create_directories(dir_);
    dqlite_address_ = loopback_address(unused_port());
    http_port_ = unused_port();
    std::string cfg = "paths: { runtime_dir = \"" + (dir_ / "run").string() + "\"; };\n";
    cfg += "db: {\n  address = \"" + dqlite_address_ + "\";\n";
    cfg += from_identity ? "  identity_file = \"" + identity_path().string() + "\";\n"
                         : "  node_id = " + std::to_string(id) + ";\n";
    cfg += "  data_dir = \"" + (dir_ / "data").string() + "\";\n";
    cfg += "  listen_http = \"127.0.0.1:" + std::to_string(http_port_) + "\";\n";
    if (!join.empty()) cfg += "  join = [\"" + join + "\"];\n";
    cfg += "  limits: { body_bytes = 65536; statements = 100; };\n" + extra + "};\n";
    write_file(dir_ / "node.cfg", cfg);
    start();
  }

  void start() {
    process_ = std::make_unique<Process>(
        std::vector<std::string>{(binary_dir() / "stacknode-db").string(), "--config",
                                 (dir_ / "node.cfg").string()},
        dir_ / "db.log");
  }

  void kill9() {
    process_->signal(SIGKILL);
    process_->wait(db_eventually);
  }
  // Starts the process again on the same config (after kill9), data dir as it is.
  void restart() {
    std::error_code ignored;
    fs::remove(dir_ / "run" / "db.listen", ignored);  // a killed process leaves it behind
    start();
  }
  void wipe_data() { fs::remove_all(dir_ / "data"); }
  fs::path identity_path() const { return dir_ / "db-identity.cfg"; }
  fs::path data_dir() const { return dir_ / "data"; }
  // As stacknoded does: the whole file appears at once (written aside, then renamed).
  void write_identity(const std::string& text) {
    write_file(dir_ / "db-identity.cfg.tmp", text);
    fs::rename(dir_ / "db-identity.cfg.tmp", identity_path());
  }
  bool serving() const { return fs::exists(dir_ / "run" / "db.listen"); }
  fs::path config_path() const { return dir_ / "node.cfg"; }

  // Serving: its listen file is written once the node has joined and the API listens.
  void wait_until_serving() {
    const bool serving = poll_until(
        [&] { return fs::exists(dir_ / "run" / "db.listen") || !process_->running(); }, db_eventually);
    if (!serving || !process_->running()) {
      FAIL(("stacknode-db " + std::to_string(id_) + " did not come up:\n" + process_->output()).c_str());
    }
  }

  // One request; status 0 when curl itself failed (refused, timed out). Safe on any thread.
  HttpAnswer try_http(const std::string& method, const std::string& path, const std::string& body = "") const {
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", curl_max_seconds, "-X", method,
                                     "-w", "\n%{http_code}", "http://127.0.0.1:" + std::to_string(http_port_) + path};
    if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    const CommandResult result = run_command(argv);
    HttpAnswer answer;
    const std::size_t last_line = result.output.rfind('\n');
    if (result.status != 0 || last_line == std::string::npos) return answer;
    answer.status = std::atoi(result.output.c_str() + last_line + 1);
    answer.body = result.output.substr(0, last_line);
    return answer;
  }

  HttpAnswer http(const std::string& method, const std::string& path, const std::string& body = "") const {
    const HttpAnswer answer = try_http(method, path, body);
    if (answer.status == 0) FAIL(("curl " + method + " " + path + " failed\n" + process_->output()).c_str());
    return answer;
  }

  std::string output() const { return process_->output(); }
  const std::string& dqlite_address() const { return dqlite_address_; }
  std::uint16_t http_port() const { return http_port_; }
  Process& process() { return *process_; }

 private:
  int id_;
  fs::path dir_;
  std::string dqlite_address_;
  std::uint16_t http_port_ = 0;
  std::unique_ptr<Process> process_;
};

// 200 and its JSON, or the test fails with what came back.
inline json::value ok_json(const HttpAnswer& answer, const std::string& what) {
  if (answer.status != 200) FAIL((what + ": " + std::to_string(answer.status) + " " + answer.body).c_str());
  return answer.json();
}

}  // namespace stacknode::test
