// stackctl: the command line of a stacknode rack. Commands that make or unmake a member (cluster
// init, later join, node reset, cluster recover) run as root on the box itself and act directly
// on its state dir and database (services/node/README.md, "Design of init and join"); the rest
// will call the REST API. Human-readable output by default, `--json` for scripts; exit status 0
// done, 1 failed, 2 bad command line or node.cfg; `--help` on every command.
//
// Built so far: `cluster init`. Every other command is refused as unknown (exit 2).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "db_config.hpp"
#include "stacknode/common/config.hpp"
#include "stacknode/node/init.hpp"
#include "stacknode/node/join_token.hpp"

namespace {

namespace json = boost::json;
using namespace stacknode;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr std::string_view default_config = "/etc/stacknode/node.cfg";
constexpr long max_token_validity_s = 7L * 24 * 3600;  // a week: tokens are for joining now

constexpr std::string_view main_usage = R"(usage: stackctl [--config FILE] [--json] COMMAND ...

Commands:
  cluster init --name NAME [--admin-password PASSWORD] [--token-validity SECONDS]
      Make this box the first member of a new cluster (run as root on the box).

Options:
  --config FILE   this box's node.cfg (default /etc/stacknode/node.cfg)
  --json          print one JSON object instead of text
  --help          this text; after a command, that command's help
)";

constexpr std::string_view init_usage = R"(usage: stackctl [--config FILE] [--json] cluster init --name NAME
                [--admin-password PASSWORD] [--token-validity SECONDS]

Makes this box the first member of a new cluster: creates the cluster CA and this node's
certificate, starts the control database (stacknode-db must run without db.node_id), creates the
admin user and prints a join token for the next box. Without --admin-password one is generated
and shown once. The token is valid for --token-validity seconds (default 3600, at most 604800).
Reads node.cfg: node.name, node.api_address, db.address, db.identity_file, paths.state_dir.
)";

struct Global {
  std::string config = std::string(default_config);
  bool json = false;
};

int usage_error(std::string_view message, std::string_view usage) {
  std::cerr << "stackctl: " << message << "\n\n" << usage;
  return exit_usage;
}

// `--flag VALUE` pairs after the command words; nullopt (and a message) on anything else.
std::optional<std::map<std::string, std::string>> flags(const std::vector<std::string>& args, std::size_t first,
                                                         const std::vector<std::string>& known, std::string& problem) {
  std::map<std::string, std::string> values;
  for (std::size_t index = first; index < args.size(); index += 2) {
    const std::string& flag = args[index];
    if (std::find(known.begin(), known.end(), flag) == known.end()) {
      problem = "unknown option " + flag;
      return std::nullopt;
    }
    if (index + 1 >= args.size()) {
      problem = flag + " needs a value";
      return std::nullopt;
    }
    values[flag] = args[index + 1];
  }
  return values;
}

std::string utc_time(std::uint64_t unix_seconds) {
  const std::time_t time = static_cast<std::time_t>(unix_seconds);
  std::tm parts{};
  gmtime_r(&time, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &parts);
  return text;
}

int cluster_init(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  if (std::find(args.begin() + static_cast<std::ptrdiff_t>(first), args.end(), "--help") != args.end()) {
    std::cout << init_usage;
    return exit_ok;
  }
  std::string problem;
  const auto values = flags(args, first, {"--name", "--admin-password", "--token-validity"}, problem);
  if (!values) return usage_error(problem, init_usage);
  if (!values->contains("--name")) return usage_error("--name is required", init_usage);
  node::InitOptions options;
  options.cluster_name = values->at("--name");
  if (values->contains("--admin-password")) options.admin_password = values->at("--admin-password");
  if (values->contains("--token-validity")) {
    const std::string& text = values->at("--token-validity");
    char* end = nullptr;
    const long seconds = std::strtol(text.c_str(), &end, 10);
    if (end == text.c_str() || *end != '\0' || seconds < 1 || seconds > max_token_validity_s) {
      return usage_error("--token-validity must be 1 to " + std::to_string(max_token_validity_s) + " seconds", init_usage);
    }
    options.token_validity = std::chrono::seconds(seconds);
  }
  try {
    const auto document = config::Document::load_file(global.config);
    const config::Section root = document->root();
    const db::DbConfig db = db::load_db_config(root);
    const config::Section node_section = root.section("node");
    if (!node_section.has("name")) node_section.fail("name", "required: this box's name in the cluster");
    options.node_name = node_section.get_string("name", "");
    if (!node_section.has("api_address")) node_section.fail("api_address", "required: IP:port of this box's API");
    options.api_address = node_section.get_string("api_address", "");
    if (!node::valid_member_address(options.api_address)) node_section.fail("api_address", "not IP:port");
    options.state_dir = root.section("paths").get_string("state_dir", "/var/lib/stacknode");
    options.db_address = db.address;
    options.db_identity_file = db.identity_file;
  } catch (const config::ConfigError& error) {
    std::cerr << "stackctl: " << error.what() << "\n";
    return exit_usage;
  }

  const auto now = std::chrono::system_clock::now();
  const node::InitResult result = node::init_cluster(options, now);
  if (!result.ok()) {
    if (global.json) {
      std::cout << json::serialize(json::object{{"error", result.error}, {"step", result.failed_step}}) << "\n";
    }
    std::cerr << "stackctl: cluster init failed at step '" << result.failed_step << "': " << result.error << "\n";
    return exit_failed;
  }
  const node::TokenParse token = node::parse_join_token(result.join_token);
  const std::uint64_t expires_at = token.ok() ? token.token->expires_at : 0;
  if (global.json) {
    json::object out{{"cluster_id", result.cluster_id},
                     {"cluster_name", options.cluster_name},
                     {"node", options.node_name},
                     {"join_token", result.join_token},
                     {"token_expires_at", expires_at}};
    if (!result.admin_password.empty()) out["admin_password"] = result.admin_password;
    std::cout << json::serialize(out) << "\n";
    return exit_ok;
  }
  std::cout << "Cluster " << options.cluster_name << " initialised (id " << result.cluster_id << ").\n"
            << "This box is member " << options.node_name << " at " << options.api_address << ".\n";
  if (!result.admin_password.empty()) {
    std::cout << "Admin user 'admin', password (shown once, keep it): " << result.admin_password << "\n";
  }
  std::cout << "Join another box with:\n\n  stackctl cluster join " << result.join_token << "\n\n"
            << "The token works once and expires at " << utc_time(expires_at) << ".\n";
  return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  Global global;
  std::size_t index = 0;
  for (; index < args.size(); ++index) {
    const std::string& arg = args[index];
    if (arg == "--json") {
      global.json = true;
    } else if (arg == "--config" && index + 1 < args.size()) {
      global.config = args[++index];
    } else if (arg == "--help") {
      std::cout << main_usage;
      return exit_ok;
    } else if (arg.starts_with("--")) {
      return usage_error("unknown option " + arg, main_usage);
    } else {
      break;
    }
  }
  if (index >= args.size()) return usage_error("a command is needed", main_usage);
  if (args[index] == "cluster" && index + 1 < args.size() && args[index + 1] == "init") {
    return cluster_init(global, args, index + 2);
  }
  std::string command;
  for (std::size_t word = index; word < args.size() && !args[word].starts_with("--"); ++word) {
    command += (command.empty() ? "" : " ") + args[word];
  }
  return usage_error("unknown command '" + command + "'", main_usage);
}
