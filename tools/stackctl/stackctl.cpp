// stackctl: the command line of a stacknode rack. Commands that make or unmake a member (cluster
// init, later join, node reset, cluster recover) run as root on the box itself and act directly
// on its state dir and database (services/node/README.md, "Design of init and join"); the rest
// will call the REST API. Human-readable output by default, `--json` for scripts; exit status 0
// done, 1 failed, 2 bad command line or node.cfg; `--help` on every command.
//
// Built so far: `cluster init` (on the box), and the REST API's operations (status, nodes, join
// tokens, users, API tokens, settings, audit log, remove), which go to this box's stacknoded over
// mutual TLS with this box's node certificate (so root on a member needs no password).
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include <spawn.h>
#include <sys/wait.h>

#include <charconv>
#include <functional>
#include <thread>

#include <fstream>
#include <sstream>

#include "db_config.hpp"
#include "stacknode/common/config.hpp"
#include "stacknode/node/content.hpp"
#include "stacknode/node/firmware.hpp"
#include "stacknode/node/control.hpp"
#include "stacknode/node/init.hpp"
#include "stacknode/node/join.hpp"
#include "stacknode/node/update.hpp"
#include "stacknode/node/join_token.hpp"
#include "stacknode/node/node_config.hpp"
#include "stacknode/node/pinned_https.hpp"
#include "stacknode/node/state_files.hpp"

namespace {

namespace json = boost::json;
namespace bhttp = boost::beast::http;
using namespace stacknode;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr std::string_view default_config = "/etc/stacknode/node.cfg";
constexpr long max_token_validity_s = node::max_join_token_validity.count();
// One API call: the local stacknoded answers in milliseconds; a password check takes ~0.1 s.
constexpr std::chrono::milliseconds api_timeout{30'000};

constexpr std::string_view main_usage = R"(usage: stackctl [--config FILE] [--json] COMMAND ...

Commands (run as root on a member; API commands use this box's node certificate):
  cluster init --name NAME [--admin-password PASSWORD] [--token-validity SECONDS]
      Make this box the first member of a new cluster.
  cluster join TOKEN                   make this box a member of the token's cluster
  node reset [--force]                 leave: forget this box's membership and database (after
                                       'cluster remove' on another member), so it can join again
  node update [--name N] [--api-address A] [--db-address A]
                                       a new name or addresses for this box (a new certificate;
                                       the old one is revoked); alone: renew the certificate
  cluster recover [--yes]              quorum lost for good: make this box a cluster of one
                                       (console use; stacknode-db stopped; backs up first)
  cluster status                       the cluster, its nodes, roles, who is online
  cluster token create [--validity S]  a join token for the next box (shown once)
  cluster token list | revoke ID       join tokens and their state
  cluster remove NODE                  take NODE out (works when it is dead; revokes it)
  node list                            the nodes
  user list | create NAME --password P | delete NAME | password NAME --password P
  api-token list | create [--user U] [--description D] | revoke ID
  setting list | set NAME VALUE | delete NAME
  pool list | create NAME [--port P] [--health-path PATH] [--interval MS] [--timeout MS]
            [--rise N] [--fall N] | delete NAME
  pool member POOL NODE [--weight W] [--state active|draining|maintenance]
  vip list | add NAME ADDR:PORT/PROTO --pool POOL [--mode ipip|l2_dsr] | remove NAME
  content push DIR [--site NAME] [--wait SECONDS]
                                       DIR's files as the site's next version (default site:
                                       default), rolled out to every node; --wait: until every
                                       online node serves it
  content list                         sites, their versions, and what each node serves
  content rollback [--site NAME] [--to VERSION] [--wait SECONDS]
                                       back to the previous (or the given) kept version
  audit [--limit N] [--after ID]       who changed what, newest first
  firmware status | update BUNDLE [--reboot] | rollback [--reboot] | mark-good
                                       the box's A/B firmware slots (on the box; no cluster needed)

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

constexpr std::string_view join_usage = R"(usage: stackctl [--config FILE] [--json] cluster join TOKEN

Makes this box a member of the cluster the token is for (run as root on the box, with
stacknode-db and stacknoded running and not yet members). The token comes from
'stackctl cluster init' or 'stackctl cluster token create' on a member. Nothing secret is sent to
a member before its certificate chain matches the token's CA pin. If any step fails, the token
stays unused, the cluster's member list is unchanged, and this box keeps no cluster files; the
error names the step. Reads node.cfg: node.name, node.api_address, db.address, db.identity_file,
db.data_dir, paths.state_dir.
)";

constexpr std::string_view reset_usage = R"(usage: stackctl [--config FILE] [--json] node reset [--force]

Makes this box a non-member again, so that it can join a cluster (the same one after
'stackctl cluster remove NODE' on another member, or another). Removes pki/, db-tls/, cache/, the sites and the db identity
file; stacknoded stops serving and stacknode-db leaves and clears its data dir, and both wait
for a new init or join. Refused while the cluster still lists this box (remove it first), unless
--force (the cluster is gone for good, or this box cannot reach it).
)";
constexpr std::string_view update_usage = R"(usage: stackctl [--config FILE] [--json] node update [--name NAME] [--api-address IP:PORT]
                [--db-address IP:PORT]

On a member box: gives it a new name and/or addresses, or with none renews its certificate.
The box makes a new key, a member signs a certificate for the new name and addresses, records the
change (audit: node.update) and revokes the old certificate; the new files take the place of
pki/ and db-tls/, and stacknoded and stacknode-db start again with them (the database keeps its
data). A new database address moves this box's database member: out of the cluster's
configuration, back under the same id at the new address as a standby (it catches up from its own
data; the cluster makes it a voter again if it needs one); it is kept in the db identity file.
Afterwards set node.api_address (and db.address) in node.cfg to the new addresses: stackctl finds
this box's API there. node.name in node.cfg is only the name init and join ask for.
)";
constexpr std::string_view recover_usage = R"(usage: stackctl [--config FILE] [--json] cluster recover [--yes]

For a cluster that lost quorum for good (a majority of voters will not come back), at the console
of a survivor: rebuilds the cluster as this box alone, from this box's copy of the database.
Pick the survivor whose copy is the most recent: without --yes, this prints the last Raft index
in this box's log files, for comparing survivors. Stop stacknode-db on every survivor first.
With --yes: copies the data dir aside (<data_dir>.before-recover-<unix time>), rewrites the Raft
configuration to this node alone (stacknode-db-recover), and says what to do next: start
stacknode-db here, then 'stackctl cluster remove' each lost node, and on every other survivor
'stackctl node reset --force' and join again.
)";

// How long reset waits for stacknode-db to clear its data dir before clearing it itself (the
// daemon looks for its identity every 2 s; a stopped daemon never will).
constexpr std::chrono::seconds reset_wait{10};
constexpr std::chrono::milliseconds reset_poll_interval{100};

struct Global {
  std::string config = std::string(default_config);
  bool json = false;
};

// This box's node.cfg; nullopt (and the message on stderr) when it does not load.
std::optional<node::NodeConfig> load_config(const Global& global) {
  try {
    const auto document = config::Document::load_file(global.config);
    return node::load_node_config(document->root());
  } catch (const config::ConfigError& error) {
    std::cerr << "stackctl: " << error.what() << "\n";
    return std::nullopt;
  }
}

// An on-box operation (init, join, update) that failed at `step`: the error on stderr (and as
// JSON with --json); exit status 1.
int step_failed(const Global& global, std::string_view command, const std::string& step, const std::string& error) {
  if (global.json) std::cout << json::serialize(json::object{{"error", error}, {"step", step}}) << "\n";
  std::cerr << "stackctl: " << command << " failed at step '" << step << "': " << error << "\n";
  return exit_failed;
}

int usage_error(std::string_view message, std::string_view usage) {
  std::cerr << "stackctl: " << message << "\n\n" << usage;
  return exit_usage;
}

// The arguments of a command whose only option is the switch `name`: --help prints `usage`
// (exit 0), anything else is a usage error (exit 2); the exit status to end with, or nullopt to
// go on with `given` telling whether the switch came.
std::optional<int> only_switch(const std::vector<std::string>& args, std::size_t first, std::string_view name,
                               std::string_view usage, bool& given) {
  for (std::size_t index = first; index < args.size(); ++index) {
    if (args[index] == "--help") {
      std::cout << usage;
      return exit_ok;
    }
  }
  for (std::size_t index = first; index < args.size(); ++index) {
    if (args[index] != name) return usage_error("unknown option " + args[index], usage);
    given = true;
  }
  return std::nullopt;
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
  const std::optional<node::NodeConfig> config = load_config(global);
  if (!config) return exit_usage;
  options.node_name = config->name;
  options.api_address = config->api_address;
  options.state_dir = config->state_dir;
  options.db_address = config->db.address;
  options.db_identity_file = config->db.identity_file;

  const auto now = std::chrono::system_clock::now();
  const node::InitResult result = node::init_cluster(options, now);
  if (!result.ok()) return step_failed(global, "cluster init", result.failed_step, result.error);
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


int cluster_join(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  if (std::find(args.begin() + static_cast<std::ptrdiff_t>(first), args.end(), "--help") != args.end()) {
    std::cout << join_usage;
    return exit_ok;
  }
  if (args.size() != first + 1) return usage_error("cluster join takes one argument: the token", join_usage);
  node::JoinOptions options;
  const std::optional<node::NodeConfig> config = load_config(global);
  if (!config) return exit_usage;
  options.node_name = config->name;
  options.api_address = config->api_address;
  options.db_address = config->db.address;
  options.state_dir = config->state_dir;
  options.db_identity_file = config->db.identity_file;
  options.db_data_dir = config->db.data_dir;
  const node::JoinResult result = node::join_cluster(options, args[first], std::chrono::system_clock::now());
  if (!result.ok()) return step_failed(global, "cluster join", result.failed_step, result.error);
  if (global.json) {
    std::cout << json::serialize(json::object{{"cluster_id", result.cluster_id},
                                              {"cluster_name", result.cluster_name},
                                              {"node", options.node_name},
                                              {"node_id", result.node_id},
                                              {"member", result.member}})
              << "\n";
    return exit_ok;
  }
  std::cout << "This box (" << options.node_name << ") joined cluster " << result.cluster_name << " (id "
            << result.cluster_id << ") through " << result.member << " as database node " << result.node_id
            << ".\nIt starts as a standby; the cluster makes it a voter when it needs one. See 'stackctl cluster status'.\n";
  return exit_ok;
}

int node_reset(const Global& global, const std::vector<std::string>& args, std::size_t first);

int node_update(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  node::UpdateOptions options;
  for (std::size_t index = first; index < args.size(); ++index) {
    const std::string& arg = args[index];
    if (arg == "--help") {
      std::cout << update_usage;
      return exit_ok;
    }
    std::optional<std::string>* value = arg == "--name"          ? &options.name
                                        : arg == "--api-address" ? &options.api_address
                                        : arg == "--db-address"  ? &options.db_address
                                                                 : nullptr;
    if (value == nullptr) return usage_error("unknown argument '" + arg + "'", update_usage);
    if (index + 1 >= args.size()) return usage_error(arg + " needs a value", update_usage);
    *value = args[++index];
  }
  const std::optional<node::NodeConfig> config = load_config(global);
  if (!config) return exit_usage;
  options.state_dir = config->state_dir;
  options.own_api_address = config->api_address;
  options.db = config->db;
  if (options.db_address && config->db.node_id != 0) {
    return usage_error("--db-address: node.cfg sets db.node_id, so stacknode-db never reads the identity file "
                       "that would carry the new address; edit db.address there instead",
                       update_usage);
  }
  try {
    if (options.db.node_id == 0 && std::filesystem::exists(options.db.identity_file)) db::read_identity(options.db);
  } catch (const config::ConfigError& error) {
    std::cerr << "stackctl: " << error.what() << "\n";
    return exit_failed;
  }
  const node::UpdateResult result = node::update_node(options, std::chrono::system_clock::now());
  if (!result.ok()) return step_failed(global, "node update", result.failed_step, result.error);
  if (global.json) {
    std::cout << json::serialize(json::object{{"previous_name", result.previous_name},
                                              {"name", result.name},
                                              {"api_address", result.api_address},
                                              {"db_address", result.db_address},
                                              {"certificate_serial", result.serial},
                                              {"member", result.member}})
              << "\n";
    return exit_ok;
  }
  std::cout << "This box is now " << result.name << " at " << result.api_address << ", database at "
            << result.db_address << " (was " << result.previous_name
            << "), certificate " << result.serial << ", signed through " << result.member
            << ".\nThe old certificate is revoked; stacknoded and stacknode-db restart with the new one.\n";
  if (result.api_address != config->api_address) {
    std::cout << "Set node.api_address = \"" << result.api_address << "\" in " << global.config
              << ": stackctl finds this box's API there.\n";
  }
  if (options.db_address && *options.db_address != config->db.address) {
    std::cout << "The database moved to " << *options.db_address << " (kept in " << options.db.identity_file
              << "); set db.address in " << global.config << " to match.\n";
  }
  return exit_ok;
}
int cluster_recover(const Global& global, const std::vector<std::string>& args, std::size_t first);

// ---- Commands that call this box's REST API ----


struct ApiReply {
  unsigned status = 0;
  json::value body;
};

// One call to this box's stacknoded, authenticated with this box's node certificate and checked
// against this cluster's CA. Throws std::runtime_error for a person when it cannot be made.
// A request body as bytes with its media type.
struct RawBody {
  std::string_view bytes;
  std::string_view content_type;
};

ApiReply call_api_raw(const Global& global, bhttp::verb method, const std::string& target, const RawBody* body,
                      std::string address = {}) {
  node::NodeConfig config;
  try {
    const auto document = config::Document::load_file(global.config);
    config = node::load_node_config(document->root());
  } catch (const config::ConfigError& error) {
    throw std::invalid_argument(error.what());
  }
  const std::filesystem::path pki = config.pki_dir();
  if (!std::filesystem::exists(pki / "node.crt")) {
    throw std::runtime_error("this box is not a cluster member (no " + (pki / "node.crt").string() +
                             "): 'stackctl cluster init' or 'stackctl cluster join' first");
  }
  node::pki::Credentials identity{node::read_whole(pki / "node.crt"), node::read_whole(pki / "node.key")};
  const node::pki::Made<node::pki::Pin> pin = node::pki::public_key_pin(node::read_whole(pki / "ca.crt"));
  if (!pin.ok()) throw std::runtime_error((pki / "ca.crt").string() + ": " + pin.error);
  bhttp::request<bhttp::string_body> request{method, target, 11};
  if (address.empty()) address = config.api_address;
  request.set(bhttp::field::host, address);
  request.set(bhttp::field::user_agent, "stackctl");
  if (body != nullptr) {
    request.set(bhttp::field::content_type, body->content_type);
    request.body() = std::string(body->bytes);
  }
  node::PinnedAnswer answer = node::pinned_https_request(address, *pin.value, std::move(request),
                                                         std::chrono::system_clock::now(), api_timeout, &identity);
  if (!answer.ok()) throw std::runtime_error("cannot reach this box's stacknoded at " + answer.error);
  ApiReply reply;
  reply.status = answer.response.result_int();
  boost::system::error_code error;
  reply.body = json::parse(answer.response.body(), error);
  if (error) throw std::runtime_error("stacknoded answered " + std::to_string(reply.status) + " with a body that is not JSON");
  return reply;
}

ApiReply call_api(const Global& global, bhttp::verb method, const std::string& target, const json::object* body,
                  std::string address = {}) {
  if (body == nullptr) return call_api_raw(global, method, target, nullptr, std::move(address));
  const std::string text = json::serialize(*body);
  const RawBody raw{text, "application/json"};
  return call_api_raw(global, method, target, &raw, std::move(address));
}

// Runs `calls` (API calls; returns an exit status): a bad node.cfg (std::invalid_argument) exits
// 2, any other failure to reach or understand stacknoded 1, each with its message.
template <typename Calls>
int with_api_errors(Calls calls) {
  try {
    return calls();
  } catch (const std::invalid_argument& error) {
    std::cerr << "stackctl: " << error.what() << "\n";
    return exit_usage;
  } catch (const std::exception& error) {
    std::cerr << "stackctl: " << error.what() << "\n";
    return exit_failed;
  }
}

std::string scalar_text(const json::value& value) {
  if (value.is_string()) return std::string(value.as_string());
  if (value.is_null()) return "-";
  return json::serialize(value);
}

// The message of an API error answer.
std::string api_error(const ApiReply& reply) {
  const json::value* error = reply.body.is_object() ? reply.body.as_object().if_contains("error") : nullptr;
  if (error && error->is_object()) return scalar_text(error->as_object().at("message"));
  return "stacknoded answered " + std::to_string(reply.status);
}

// A list as a table with these columns (the JSON names).
void print_table(const json::array& items, const std::vector<std::string>& columns) {
  std::vector<std::size_t> widths;
  for (const std::string& column : columns) widths.push_back(column.size());
  std::vector<std::vector<std::string>> rows;
  for (const json::value& item : items) {
    std::vector<std::string> row;
    for (std::size_t index = 0; index < columns.size(); ++index) {
      const json::value* cell = item.is_object() ? item.as_object().if_contains(columns[index]) : nullptr;
      const bool is_time = columns[index] == "at" || columns[index] == "last_seen" || columns[index].ends_with("_at");
      if (cell != nullptr && is_time && cell->is_int64()) {
        row.push_back(utc_time(static_cast<std::uint64_t>(cell->as_int64())));
      } else {
        row.push_back(cell ? scalar_text(*cell) : "-");
      }
      widths[index] = std::max(widths[index], row.back().size());
    }
    rows.push_back(std::move(row));
  }
  const auto print_row = [&](const std::vector<std::string>& cells) {
    for (std::size_t index = 0; index < cells.size(); ++index) {
      std::cout << cells[index];
      if (index + 1 < cells.size()) std::cout << std::string(widths[index] - cells[index].size() + 2, ' ');
    }
    std::cout << "\n";
  };
  std::vector<std::string> header;
  for (const std::string& column : columns) {
    std::string title = column;
    std::transform(title.begin(), title.end(), title.begin(), [](unsigned char c) { return std::toupper(c); });
    header.push_back(title);
  }
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

// One API command: its words, the call it makes and how it reads its arguments and shows the answer.
struct ApiCommand {
  std::vector<std::string> words;       // "cluster", "token", "create"
  std::vector<std::string> positionals;  // names of the arguments after the words
  std::vector<std::string> options;      // --flags it accepts
  std::string_view help;
  bhttp::verb method;
  // The target and body from the arguments (positionals by name, then options).
  std::function<std::string(const std::map<std::string, std::string>&)> target;
  std::function<std::optional<json::object>(const std::map<std::string, std::string>&, std::string&)> body;
  std::vector<std::string> columns;  // for a list answer; empty: key: value lines
};

// `text` as a whole number within [low, high]; nullopt if it is not one.
std::optional<long> whole_number(const std::string& text, long low, long high) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (*end != '\0' || value < low || value > high) return std::nullopt;
  return value;
}

std::string page_query(const std::map<std::string, std::string>& args) {
  std::string query;
  for (const auto& [flag, name] : {std::pair<std::string, std::string>{"--limit", "limit"}, {"--after", "after"}}) {
    if (args.contains(flag)) query += (query.empty() ? "?" : "&") + name + "=" + args.at(flag);
  }
  return query;
}

const std::vector<ApiCommand>& api_commands() {
  using Args = std::map<std::string, std::string>;
  const auto fixed = [](std::string target) { return [target](const Args&) { return target; }; };
  const auto none = [](const Args&, std::string&) { return std::optional<json::object>(); };
  const auto password_body = [](const Args& args, std::string& problem) -> std::optional<json::object> {
    if (!args.contains("--password")) {
      problem = "--password is required";
      return std::nullopt;
    }
    json::object body{{"password", args.at("--password")}};
    if (args.contains("NAME")) body["name"] = args.at("NAME");
    return body;
  };
  static const std::vector<ApiCommand> commands = {
      {{"cluster", "status"}, {}, {}, "the cluster, its nodes, their roles and who is online", bhttp::verb::get,
       fixed("/api/v1/cluster"), none, {}},
      {{"cluster", "token", "create"}, {}, {"--validity"}, "a join token for the next box (shown once)",
       bhttp::verb::post, fixed("/api/v1/join-tokens"),
       [](const Args& args, std::string& problem) -> std::optional<json::object> {
         json::object body;
         if (args.contains("--validity")) {
           char* end = nullptr;
           const long seconds = std::strtol(args.at("--validity").c_str(), &end, 10);
           if (*end != '\0' || seconds < 1 || seconds > max_token_validity_s) {
             problem = "--validity must be 1 to " + std::to_string(max_token_validity_s) + " seconds";
             return std::nullopt;
           }
           body["validity_seconds"] = seconds;
         }
         return body;
       },
       {}},
      {{"cluster", "token", "list"}, {}, {"--limit", "--after"}, "join tokens and their state", bhttp::verb::get,
       [](const Args& args) { return "/api/v1/join-tokens" + page_query(args); }, none,
       {"id", "state", "created_by", "expires_at", "used_by_node"}},
      {{"cluster", "token", "revoke"}, {"ID"}, {}, "revoke an unused join token", bhttp::verb::delete_,
       [](const Args& args) { return "/api/v1/join-tokens/" + args.at("ID"); }, none, {}},
      {{"cluster", "remove"}, {"NODE"}, {}, "take NODE out of the cluster (also when it is dead) and revoke it",
       bhttp::verb::delete_, [](const Args& args) { return "/api/v1/nodes/" + args.at("NODE"); }, none, {}},
      {{"node", "list"}, {}, {}, "the nodes, their roles and who is online", bhttp::verb::get, fixed("/api/v1/nodes"),
       none, {"name", "role", "online", "leader", "api_address", "db_address"}},
      {{"user", "list"}, {}, {"--limit", "--after"}, "admin users", bhttp::verb::get,
       [](const Args& args) { return "/api/v1/users" + page_query(args); }, none, {"name", "created_at"}},
      {{"user", "create"}, {"NAME"}, {"--password"}, "a new admin user", bhttp::verb::post, fixed("/api/v1/users"),
       password_body, {}},
      {{"user", "delete"}, {"NAME"}, {}, "delete a user (not the last one)", bhttp::verb::delete_,
       [](const Args& args) { return "/api/v1/users/" + args.at("NAME"); }, none, {}},
      {{"user", "password"}, {"NAME"}, {"--password"}, "set a user's password", bhttp::verb::put,
       [](const Args& args) { return "/api/v1/users/" + args.at("NAME") + "/password"; },
       [password_body](const Args& args, std::string& problem) {
         std::optional<json::object> body = password_body(args, problem);
         if (body) body->erase("name");
         return body;
       },
       {}},
      {{"api-token", "list"}, {}, {"--limit", "--after"}, "API tokens (never their secrets)", bhttp::verb::get,
       [](const Args& args) { return "/api/v1/api-tokens" + page_query(args); }, none,
       {"id", "user", "description", "expires_at", "revoked_at"}},
      {{"api-token", "create"}, {}, {"--user", "--description"}, "an API token for scripts (shown once)",
       bhttp::verb::post, fixed("/api/v1/api-tokens"),
       [](const Args& args, std::string&) -> std::optional<json::object> {
         json::object body;
         if (args.contains("--user")) body["user"] = args.at("--user");
         if (args.contains("--description")) body["description"] = args.at("--description");
         return body;
       },
       {}},
      {{"api-token", "revoke"}, {"ID"}, {}, "revoke an API token", bhttp::verb::delete_,
       [](const Args& args) { return "/api/v1/api-tokens/" + args.at("ID"); }, none, {}},
      {{"setting", "list"}, {}, {}, "cluster-wide settings", bhttp::verb::get, fixed("/api/v1/settings"), none, {}},
      {{"setting", "set"}, {"NAME", "VALUE"}, {}, "set a cluster-wide setting", bhttp::verb::put,
       [](const Args& args) { return "/api/v1/settings/" + args.at("NAME"); },
       [](const Args& args, std::string&) { return std::optional<json::object>(json::object{{"value", args.at("VALUE")}}); },
       {}},
      {{"setting", "delete"}, {"NAME"}, {}, "delete a setting", bhttp::verb::delete_,
       [](const Args& args) { return "/api/v1/settings/" + args.at("NAME"); }, none, {}},
      {{"pool", "list"}, {}, {}, "load-balancing pools (members: every node, see --json)", bhttp::verb::get,
       fixed("/api/v1/pools"), none, {"name", "port", "health_path", "created_at"}},
      {{"pool", "create"}, {"NAME"}, {"--port", "--health-path", "--interval", "--timeout", "--rise", "--fall"},
       "a pool of every node's service on --port (default 80, the web service), checked at --health-path "
       "(default /healthz) every --interval ms (default 1000) within --timeout ms; --rise/--fall good/bad checks "
       "in a row (default 2/2) turn a member up/down",
       bhttp::verb::post, fixed("/api/v1/pools"),
       [](const Args& args, std::string& problem) -> std::optional<json::object> {
         json::object body{{"name", args.at("NAME")}};
         for (const auto& [flag, key, high] : {std::tuple{"--port", "port", 65535L},
                                               std::tuple{"--interval", "health_interval_ms", 60'000L},
                                               std::tuple{"--timeout", "health_timeout_ms", 60'000L},
                                               std::tuple{"--rise", "rise", 10L}, std::tuple{"--fall", "fall", 10L}}) {
           if (!args.contains(flag)) continue;
           const std::optional<long> value = whole_number(args.at(flag), 1, high);
           if (!value) {
             problem = std::string(flag) + " must be 1 to " + std::to_string(high);
             return std::nullopt;
           }
           body[key] = *value;
         }
         if (args.contains("--health-path")) body["health_path"] = args.at("--health-path");
         return body;
       },
       {}},
      {{"pool", "delete"}, {"NAME"}, {}, "delete a pool no VIP sends to", bhttp::verb::delete_,
       [](const Args& args) { return "/api/v1/pools/" + args.at("NAME"); }, none, {}},
      {{"pool", "member"}, {"POOL", "NODE"}, {"--weight", "--state"},
       "set NODE's weight (1-65535, default 1) and state (active, draining, maintenance) in POOL",
       bhttp::verb::put, [](const Args& args) { return "/api/v1/pools/" + args.at("POOL") + "/members/" + args.at("NODE"); },
       [](const Args& args, std::string& problem) -> std::optional<json::object> {
         json::object body;
         if (args.contains("--weight")) {
           const std::optional<long> weight = whole_number(args.at("--weight"), 1, 65535);
           if (!weight) {
             problem = "--weight must be 1 to 65535";
             return std::nullopt;
           }
           body["weight"] = *weight;
         }
         if (args.contains("--state")) body["state"] = args.at("--state");
         return body;
       },
       {}},
      {{"vip", "list"}, {}, {}, "VIPs, their pools and the node answering for each", bhttp::verb::get,
       fixed("/api/v1/vips"), none, {"name", "address", "port", "protocol", "pool", "mode", "owner"}},
      {{"vip", "add"}, {"NAME", "ADDR:PORT/PROTO"}, {"--pool", "--mode"},
       "a VIP (protocol tcp or udp) sending to --pool; --mode ipip (default) or l2_dsr (backends on the same L2 "
       "segment as the dataplane's service port)",
       bhttp::verb::post, fixed("/api/v1/vips"),
       [](const Args& args, std::string& problem) -> std::optional<json::object> {
         const std::string& spec = args.at("ADDR:PORT/PROTO");
         const std::size_t colon = spec.rfind(':');
         const std::size_t slash = spec.find('/', colon == std::string::npos ? 0 : colon);
         const std::optional<long> port =
             colon == std::string::npos ? std::nullopt
                                        : whole_number(spec.substr(colon + 1, slash == std::string::npos
                                                                                  ? std::string::npos
                                                                                  : slash - colon - 1),
                                                       1, 65535);
         if (!port) {
           problem = "the VIP is ADDRESS:PORT/PROTOCOL, e.g. 198.18.0.100:80/tcp";
           return std::nullopt;
         }
         if (!args.contains("--pool")) {
           problem = "--pool is required";
           return std::nullopt;
         }
         json::object body{{"name", args.at("NAME")},
                           {"address", spec.substr(0, colon)},
                           {"port", *port},
                           {"protocol", slash == std::string::npos ? "tcp" : spec.substr(slash + 1)},
                           {"pool", args.at("--pool")}};
         if (args.contains("--mode")) body["mode"] = args.at("--mode");
         return body;
       },
       {}},
      {{"vip", "remove"}, {"NAME"}, {}, "remove a VIP", bhttp::verb::delete_,
       [](const Args& args) { return "/api/v1/vips/" + args.at("NAME"); }, none, {}},
      {{"audit"}, {}, {"--limit", "--after"}, "who changed what, newest first", bhttp::verb::get,
       [](const Args& args) { return "/api/v1/audit" + page_query(args); }, none,
       {"id", "at", "actor", "action", "target", "detail"}},
  };
  return commands;
}

std::string command_usage(const ApiCommand& command) {
  std::string text = "usage: stackctl [--config FILE] [--json]";
  for (const std::string& word : command.words) text += " " + word;
  for (const std::string& positional : command.positionals) text += " " + positional;
  for (const std::string& option : command.options) text += " [" + option + " VALUE]";
  return text + "\n\n" + std::string(command.help) + ".\n";
}

void print_answer(const ApiCommand& command, const json::value& body) {
  if (!body.is_object()) {
    std::cout << json::serialize(body) << "\n";
    return;
  }
  const json::object& object = body.as_object();
  if (const json::value* items = object.if_contains("items"); items && items->is_array() && !command.columns.empty()) {
    print_table(items->as_array(), command.columns);
    if (const json::value* next = object.if_contains("next"); next && !next->is_null()) {
      std::cout << "(more: --after " << scalar_text(*next) << ")\n";
    }
    return;
  }
  if (const json::value* nodes = object.if_contains("nodes"); nodes && nodes->is_array()) {  // cluster status
    std::cout << "Cluster " << scalar_text(object.at("name")) << " (id " << scalar_text(object.at("id"))
              << "), leader " << scalar_text(object.at("leader")) << ", answered by "
              << scalar_text(object.at("served_by")) << "\n\n";
    print_table(nodes->as_array(), {"name", "role", "online", "leader", "api_address", "last_seen"});
    return;
  }
  const json::value* items = object.if_contains("items");
  const json::object& shown = items && items->is_object() ? items->as_object() : object;
  for (const auto& [key, value] : shown) std::cout << std::string(key) << ": " << scalar_text(value) << "\n";
}

// Runs the API command whose words start at args[first]; nullopt if no command has these words.
std::optional<int> run_api_command(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  const ApiCommand* found = nullptr;
  for (const ApiCommand& command : api_commands()) {
    if (args.size() - first < command.words.size()) continue;
    if (std::equal(command.words.begin(), command.words.end(), args.begin() + static_cast<std::ptrdiff_t>(first))) {
      found = &command;
    }
  }
  if (found == nullptr) return std::nullopt;
  const ApiCommand& command = *found;
  const std::string usage = command_usage(command);
  std::size_t index = first + command.words.size();
  if (std::find(args.begin() + static_cast<std::ptrdiff_t>(index), args.end(), "--help") != args.end()) {
    std::cout << usage;
    return exit_ok;
  }
  std::map<std::string, std::string> values;
  for (const std::string& positional : command.positionals) {
    if (index >= args.size() || args[index].starts_with("--")) return usage_error(positional + " is required", usage);
    values[positional] = args[index++];
  }
  std::string problem;
  const auto options = flags(args, index, command.options, problem);
  if (!options) return usage_error(problem, usage);
  values.insert(options->begin(), options->end());
  const std::optional<json::object> body = command.body(values, problem);
  if (!problem.empty()) return usage_error(problem, usage);
  ApiReply reply;
  if (const int status = with_api_errors([&] {
        reply = call_api(global, command.method, command.target(values), body ? &*body : nullptr);
        return exit_ok;
      });
      status != exit_ok) {
    return status;
  }
  if (global.json) std::cout << json::serialize(reply.body) << "\n";
  if (reply.status >= 300) {
    std::cerr << "stackctl: " << api_error(reply) << "\n";
    return exit_failed;
  }
  if (!global.json) print_answer(command, reply.body);
  return exit_ok;
}

int node_reset(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  namespace fs = std::filesystem;
  bool force = false;
  if (const std::optional<int> done = only_switch(args, first, "--force", reset_usage, force)) return *done;
  const std::optional<node::NodeConfig> loaded = load_config(global);
  if (!loaded) return exit_usage;
  const node::NodeConfig& config = *loaded;
  const fs::path pki = config.pki_dir();
  if (!fs::exists(pki) && !fs::exists(config.db.identity_file)) {
    std::cout << (global.json ? R"({"reset":false,"reason":"not a member"})" : "This box is not a cluster member: nothing to reset.")
              << "\n";
    return exit_ok;
  }
  if (!force && fs::exists(pki / "node.crt")) {
    // Ask the members (as stacknoded last listed them in pki/members, then this box's own API)
    // whether they still list this box. A removed node's certificate is refused (401): go on.
    std::vector<std::string> members;
    std::ifstream listed(pki / "members");
    for (std::string line; std::getline(listed, line);) {
      if (!line.empty() && line != config.api_address) members.push_back(line);
    }
    members.push_back(config.api_address);
    std::string refusal;
    std::string unreachable;
    bool answered = false;
    for (const std::string& member : members) {
      try {
        const ApiReply reply = call_api(global, bhttp::verb::get, "/api/v1/nodes", nullptr, member);
        // 401 "not_a_member": this box's certificate is revoked or held by no member. Any other
        // refusal (an expired certificate, say) says nothing about membership.
        const json::value* error = reply.body.is_object() ? reply.body.as_object().if_contains("error") : nullptr;
        if (reply.status == 401 && error && error->is_object() &&
            scalar_text(error->as_object().at("kind")) == "not_a_member") {
          answered = true;
          break;
        }
        if (reply.status != 200) {
          unreachable += "\n  " + member + ": answered " + std::to_string(reply.status);
          continue;
        }
        // Served: this box's certificate is still a member's (the API checks that on every call).
        answered = true;
        const node::pki::Made<node::pki::CertificateInfo> mine = node::pki::verify_node_certificate(
            node::read_whole(pki / "ca.crt"), node::read_whole(pki / "node.crt"), std::chrono::system_clock::now());
        const std::string name = mine.ok() ? mine.value->node_name : config.name;
        refusal = "the cluster (" + member + ") still lists this box as " + name + ": run 'stackctl cluster remove " +
                  name + "' on another member first";
        break;
      } catch (const std::exception& error) {
        unreachable += "\n  " + std::string(error.what());
      }
    }
    if (!answered) refusal = "no member could be asked whether it still lists this box:" + unreachable;
    if (!refusal.empty()) {
      std::cerr << "stackctl: node reset refused: " << refusal << "\n(--force if the cluster is gone for good)\n";
      return exit_failed;
    }
  }
  std::error_code error;
  // cache/: the cluster's cache password is in its redis.conf; content_dir: the cluster's sites
  // (stacknoded puts the factory page back).
  for (const fs::path& path : {config.state_dir / "pki.staging", pki, config.state_dir / "cache", config.content_dir}) {
    fs::remove_all(path, error);
    if (error) break;
  }
  if (!error) node::remove_db_identity(config.state_dir, config.db.identity_file, error);
  if (error) {
    std::cerr << "stackctl: cannot remove " << pki.string() << ", " << config.db.identity_file << " or "
              << node::db_tls_dir(config.state_dir).string() << ": " << error.message() << "\n";
    return exit_failed;
  }
  const auto data_empty = [&] {
    std::error_code ignored;
    return !fs::exists(config.db.data_dir) || fs::is_empty(config.db.data_dir, ignored);
  };
  const auto deadline = std::chrono::steady_clock::now() + reset_wait;
  while (!data_empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(reset_poll_interval);
  bool cleared_here = false;
  if (!data_empty()) {  // stacknode-db is not running: clear for it
    for (const fs::directory_entry& entry : fs::directory_iterator(config.db.data_dir, error)) {
      fs::remove_all(entry.path(), error);
    }
    cleared_here = true;
  }
  if (global.json) {
    std::cout << json::serialize(json::object{{"reset", true}, {"database_cleared_by_stackctl", cleared_here}}) << "\n";
  } else {
    std::cout << "This box is no longer a member; its database copy is cleared" << (cleared_here ? " (by stackctl)" : "")
              << ".\nJoin it again with 'stackctl cluster join TOKEN'.\n";
  }
  return exit_ok;
}

// The entries in one of libraft's open segments: an 8-byte format version (1), then batches of
// [2 x 4-byte checksums][8-byte entry count][16-byte header per entry: term, type, length]
// [each entry's data, padded to 8 bytes], until a batch with no entries (the preallocated rest).
// Little-endian, as libraft writes it on x86 and ARM.
std::uint64_t open_segment_entries(const std::filesystem::path& path) {
  constexpr std::uint64_t format_version = 1;
  constexpr std::uint64_t max_batch_entries = 1 << 20;  // far above any batch libraft writes
  std::ifstream in(path, std::ios::binary);
  const auto read_u64 = [&](std::uint64_t& value) {
    unsigned char bytes[8];
    if (!in.read(reinterpret_cast<char*>(bytes), sizeof bytes)) return false;
    value = 0;
    for (int index = 7; index >= 0; --index) value = value << 8 | bytes[index];
    return true;
  };
  std::uint64_t version = 0, entries = 0, checksums = 0, count = 0;
  if (!read_u64(version) || version != format_version) return 0;
  while (read_u64(checksums) && read_u64(count) && count > 0 && count <= max_batch_entries) {
    std::uint64_t data_bytes = 0;
    for (std::uint64_t entry = 0; entry < count; ++entry) {
      std::uint64_t term = 0, type_and_length = 0;
      if (!read_u64(term) || !read_u64(type_and_length)) return entries;
      const std::uint64_t length = type_and_length >> 32;
      data_bytes += (length + 7) / 8 * 8;
    }
    if (!in.seekg(static_cast<std::streamoff>(data_bytes), std::ios::cur)) return entries;
    entries += count;
  }
  return entries;
}

// The last Raft index in this data dir, as its log files tell: the highest end of a closed
// segment ("FIRST-LAST") or snapshot ("snapshot-TERM-INDEX-TIME"), plus the entries in the open
// segments, which follow them.
std::uint64_t last_log_index(const std::filesystem::path& data_dir) {
  std::uint64_t last = 0, open = 0;
  std::error_code error;
  for (const std::filesystem::directory_entry& entry : std::filesystem::directory_iterator(data_dir, error)) {
    const std::string name = entry.path().filename().string();
    std::uint64_t value = 0;
    if (name.starts_with("open-")) {
      open += open_segment_entries(entry.path());
    } else if (name.starts_with("snapshot-") && !name.ends_with(".meta")) {
      const std::size_t second = name.find('-', std::string("snapshot-").size());
      if (second != std::string::npos) std::from_chars(name.data() + second + 1, name.data() + name.size(), value);
    } else if (const std::size_t dash = name.find('-'); dash == 16 && name.size() == 33) {
      std::from_chars(name.data() + dash + 1, name.data() + name.size(), value);
    }
    last = std::max(last, value);
  }
  return last + open;
}

int cluster_recover(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  namespace fs = std::filesystem;
  bool yes = false;
  if (const std::optional<int> done = only_switch(args, first, "--yes", recover_usage, yes)) return *done;
  const std::optional<node::NodeConfig> loaded = load_config(global);
  if (!loaded) return exit_usage;
  node::NodeConfig config = *loaded;
  if (!fs::exists(config.pki_dir() / "node.crt")) {
    std::cerr << "stackctl: this box is not a cluster member: there is nothing to recover here\n";
    return exit_failed;
  }
  if (config.db.node_id == 0) {
    try {
      db::read_identity(config.db);
    } catch (const config::ConfigError& error) {
      std::cerr << "stackctl: " << error.what() << "\n";
      return exit_failed;
    }
  }
  const std::uint64_t last = last_log_index(config.db.data_dir);
  const std::string member = std::to_string(config.db.node_id) + "=" + config.db.address;
  if (!yes) {
    if (global.json) {
      std::cout << json::serialize(json::object{
                       {"node", config.name}, {"node_id", config.db.node_id}, {"last_log_index", last}})
                << "\n";
    } else {
      std::cout << "This box (" << config.name << ", database node " << config.db.node_id
                << ") holds the Raft log up to index " << last
                << ".\nCompare with the other survivors; on the one with the highest index, with every "
                   "stacknode-db stopped:\n\n  stackctl cluster recover --yes\n";
    }
    return exit_ok;
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const fs::path backup =
      config.db.data_dir + ".before-recover-" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now).count());
  std::error_code error;
  fs::copy(config.db.data_dir, backup, fs::copy_options::recursive, error);
  if (error) {
    std::cerr << "stackctl: cluster recover: cannot copy " << config.db.data_dir << " to " << backup.string() << ": "
              << error.message() << "; nothing changed\n";
    return exit_failed;
  }
  // stacknode-db-recover beside this binary, run without a shell: the paths are passed as they are.
  std::error_code self_error;
  const fs::path tool = fs::read_symlink("/proc/self/exe", self_error).parent_path() / "stacknode-db-recover";
  std::vector<std::string> argv_text = {tool.string(), "--config", global.config, "--member", member};
  std::vector<char*> argv_pointers;
  for (std::string& argument : argv_text) argv_pointers.push_back(argument.data());
  argv_pointers.push_back(nullptr);
  pid_t child = 0;
  int status = -1;
  if (posix_spawn(&child, argv_pointers[0], nullptr, nullptr, argv_pointers.data(), environ) == 0) {
    waitpid(child, &status, 0);
  }
  if (status != 0) {
    std::cerr << "stackctl: cluster recover: stacknode-db-recover refused (above); the data dir is unchanged, a copy is in "
              << backup.string() << "\n";
    return exit_failed;
  }
  if (global.json) {
    std::cout << json::serialize(json::object{{"recovered", true}, {"backup", backup.string()}, {"member", member}}) << "\n";
  } else {
    std::cout << "The cluster is now " << config.name << " alone (database node " << member << "); the data dir before "
              << "this is in " << backup.string() << ".\nNext: start stacknode-db here; then 'stackctl cluster remove "
              << "NODE' for each lost node, and on every other survivor 'stackctl node reset --force' and join again.\n";
  }
  return exit_ok;
}

constexpr std::string_view content_usage = R"(usage: stackctl [--config FILE] [--json] content push DIR [--site NAME] [--wait SECONDS]
       stackctl [--config FILE] [--json] content list
       stackctl [--config FILE] [--json] content rollback [--site NAME] [--to VERSION] [--wait SECONDS]

push: DIR's regular files (recursively; symlinks and special files are refused) become one
checksummed bundle, uploaded in chunks and stored once in the cluster as the site's next version;
every node unpacks it and switches to it atomically. Pushing the version a site serves already
changes nothing. The cluster keeps the newest 3 versions of a site.
rollback: the site serves its previous kept version again (or --to VERSION).
--wait SECONDS: after the change, wait until every online node serves the version (exit 1 if
that does not happen in time). The site stacknode-web serves is "default".
)";
// How often `content ... --wait` asks which version each node serves.
constexpr std::chrono::milliseconds content_wait_poll{250};
constexpr long max_content_wait_s = 3600;

// The site's entry in GET /api/v1/content, or null.
const json::object* content_site(const json::value& answer, const std::string& site) {
  const json::value* sites = answer.is_object() ? answer.as_object().if_contains("sites") : nullptr;
  if (sites == nullptr || !sites->is_array()) return nullptr;
  for (const json::value& entry : sites->as_array()) {
    if (entry.is_object() && scalar_text(entry.as_object().at("site")) == site) return &entry.as_object();
  }
  return nullptr;
}

// Waits until every online node serves `version` of `site`; the empty string, else why not.
std::string wait_for_content(const Global& global, const std::string& site, std::int64_t version, long seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::string lagging;
  for (;;) {
    const ApiReply nodes = call_api(global, bhttp::verb::get, "/api/v1/nodes", nullptr);
    const ApiReply content = call_api(global, bhttp::verb::get, "/api/v1/content", nullptr);
    if (nodes.status != 200) return api_error(nodes);
    if (content.status != 200) return api_error(content);
    std::map<std::string, std::int64_t> serving;
    if (const json::object* entry = content_site(content.body, site)) {
      for (const json::value& node : entry->at("nodes").as_array()) {
        serving[scalar_text(node.as_object().at("node"))] = node.as_object().at("version").to_number<std::int64_t>();
      }
    }
    lagging.clear();
    const json::value* items = nodes.body.as_object().if_contains("items");
    for (const json::value& node : items && items->is_array() ? items->as_array() : json::array{}) {
      const json::object& row = node.as_object();
      const json::value* online = row.if_contains("online");
      if (online && online->is_bool() && !online->as_bool()) continue;
      const std::string name = scalar_text(row.at("name"));
      if (const auto found = serving.find(name); found == serving.end() || found->second != version) {
        lagging += " " + name;
      }
    }
    if (lagging.empty()) return {};
    if (std::chrono::steady_clock::now() >= deadline) {
      return "not every online node serves version " + std::to_string(version) + " after " + std::to_string(seconds) +
             " s:" + lagging;
    }
    std::this_thread::sleep_for(content_wait_poll);
  }
}

// Prints a version answer (push, rollback) and waits if asked.
int finish_content_change(const Global& global, const json::object& version, const std::string& what,
                          std::optional<long> wait_seconds) {
  const std::string site = scalar_text(version.at("site"));
  const std::int64_t number = version.at("version").to_number<std::int64_t>();
  std::string waited;
  if (wait_seconds) waited = wait_for_content(global, site, number, *wait_seconds);
  if (global.json) {
    json::object shown = version;
    if (wait_seconds) shown["all_nodes_serve"] = waited.empty();
    std::cout << json::serialize(shown) << "\n";
  } else {
    std::cout << "Site " << site << ": " << what << " version " << number << " (sha256 "
              << scalar_text(version.at("sha256")) << ", " << scalar_text(version.at("files")) << " files, "
              << scalar_text(version.at("bytes")) << " bytes).\n"
              << (wait_seconds ? (waited.empty() ? "Every online node serves it.\n" : "")
                               : "Nodes switch to it within seconds: 'stackctl content list' shows each node.\n");
  }
  if (!waited.empty()) {
    std::cerr << "stackctl: " << waited << "\n";
    return exit_failed;
  }
  return exit_ok;
}

int content_push(const Global& global, const std::map<std::string, std::string>& values, std::optional<long> wait) {
  const std::string site = values.contains("--site") ? values.at("--site") : std::string(node::default_site);
  node::Bundle bundle;
  if (const node::BundleError read = node::read_bundle_directory(values.at("DIR"), bundle); !read.ok()) {
    std::cerr << "stackctl: " << read.message << "\n";
    return exit_failed;
  }
  if (bundle.files.empty()) {
    std::cerr << "stackctl: " << values.at("DIR") << " holds no files: nothing to push\n";
    return exit_failed;
  }
  const std::vector<std::uint8_t> bytes = node::encode_bundle(bundle);
  const std::string sha256 = node::sha256_hex(bytes);
  const ApiReply begun = call_api(global, bhttp::verb::post, "/api/v1/content/" + site + "/uploads", nullptr);
  if (begun.status != 201) {
    std::cerr << "stackctl: " << api_error(begun) << "\n";
    return exit_failed;
  }
  const std::string upload = scalar_text(begun.body.as_object().at("upload"));
  const auto chunk_bytes = begun.body.as_object().at("chunk_bytes").to_number<std::size_t>();
  for (std::size_t offset = 0, sequence = 0; offset < bytes.size(); offset += chunk_bytes, ++sequence) {
    const std::size_t length = std::min(chunk_bytes, bytes.size() - offset);
    const RawBody chunk{std::string_view(reinterpret_cast<const char*>(bytes.data()) + offset, length),
                        "application/octet-stream"};
    const ApiReply stored = call_api_raw(
        global, bhttp::verb::put, "/api/v1/content/uploads/" + upload + "/chunks/" + std::to_string(sequence), &chunk);
    if (stored.status != 200) {
      std::cerr << "stackctl: chunk " << sequence << ": " << api_error(stored) << "\n";
      return exit_failed;
    }
  }
  const json::object commit{{"sha256", sha256}};
  const ApiReply committed =
      call_api(global, bhttp::verb::post, "/api/v1/content/uploads/" + upload + "/commit", &commit);
  if (committed.status != 200) {
    std::cerr << "stackctl: " << api_error(committed) << "\n";
    return exit_failed;
  }
  const bool unchanged = committed.body.as_object().at("unchanged").as_bool();
  return finish_content_change(global, committed.body.as_object(), unchanged ? "unchanged, serves" : "pushed", wait);
}

int content_list(const Global& global) {
  const ApiReply answer = call_api(global, bhttp::verb::get, "/api/v1/content", nullptr);
  if (answer.status != 200) {
    std::cerr << "stackctl: " << api_error(answer) << "\n";
    return exit_failed;
  }
  if (global.json) {
    std::cout << json::serialize(answer.body) << "\n";
    return exit_ok;
  }
  json::array rows;
  for (const json::value& entry : answer.body.as_object().at("sites").as_array()) {
    const json::object& site = entry.as_object();
    std::string kept;
    for (const json::value& version : site.at("versions").as_array()) {
      kept += (kept.empty() ? "" : " ") + scalar_text(version.as_object().at("version"));
    }
    std::string serving;
    for (const json::value& node : site.at("nodes").as_array()) {
      serving += (serving.empty() ? "" : " ") + scalar_text(node.as_object().at("node")) + "=" +
                 scalar_text(node.as_object().at("version"));
    }
    rows.push_back(json::object{{"site", site.at("site")}, {"current", site.at("current")}, {"kept", kept},
                                {"nodes", serving}});
  }
  print_table(rows, {"site", "current", "kept", "nodes"});
  return exit_ok;
}

int content_rollback(const Global& global, const std::map<std::string, std::string>& values, std::optional<long> wait) {
  const std::string site = values.contains("--site") ? values.at("--site") : std::string(node::default_site);
  json::object body;
  if (values.contains("--to")) {
    const std::optional<long> to = whole_number(values.at("--to"), 1, std::numeric_limits<long>::max());
    if (!to) return usage_error("--to is a version number", content_usage);
    body["version"] = *to;
  }
  const ApiReply answer = call_api(global, bhttp::verb::post, "/api/v1/content/" + site + "/rollback", &body);
  if (answer.status != 200) {
    std::cerr << "stackctl: " << api_error(answer) << "\n";
    return exit_failed;
  }
  return finish_content_change(global, answer.body.as_object(), "rolled back to", wait);
}

int content_command(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  if (first >= args.size() || args[first] == "--help") {
    std::cout << content_usage;
    return first >= args.size() ? exit_usage : exit_ok;
  }
  const std::string verb = args[first];
  std::size_t index = first + 1;
  if (std::find(args.begin() + static_cast<std::ptrdiff_t>(index), args.end(), "--help") != args.end()) {
    std::cout << content_usage;
    return exit_ok;
  }
  std::map<std::string, std::string> values;
  if (verb == "push") {
    if (index >= args.size() || args[index].starts_with("--")) return usage_error("DIR is required", content_usage);
    values["DIR"] = args[index++];
  }
  std::vector<std::string> accepted;
  if (verb == "push") accepted = {"--site", "--wait"};
  else if (verb == "rollback") accepted = {"--site", "--to", "--wait"};
  else if (verb != "list") return usage_error("unknown command 'content " + verb + "'", content_usage);
  std::string problem;
  const auto options = flags(args, index, accepted, problem);
  if (!options) return usage_error(problem, content_usage);
  values.insert(options->begin(), options->end());
  std::optional<long> wait;
  if (values.contains("--wait")) {
    wait = whole_number(values.at("--wait"), 1, max_content_wait_s);
    if (!wait) return usage_error("--wait is 1 to " + std::to_string(max_content_wait_s) + " seconds", content_usage);
  }
  return with_api_errors([&] {
    if (verb == "push") return content_push(global, values, wait);
    if (verb == "rollback") return content_rollback(global, values, wait);
    return content_list(global);
  });
}


// ---- firmware: the box's A/B slots (services/node/ops firmware.hpp) ---------------------------

constexpr std::string_view firmware_usage = R"(usage: stackctl [--json] firmware status
       stackctl [--json] firmware update BUNDLE [--reboot]
       stackctl [--json] firmware rollback [--reboot]
       stackctl [--json] firmware mark-good

  status     both root slots: versions, which is active, a pending trial, the last rollback
  update     check BUNDLE (its board, its root file system's SHA-256), write it into the slot
             that is not running, read it back, and boot it once on the next restart; it becomes
             the active slot when the box is healthy again (stacknode-firmware-check), else the
             boot after falls back to the current slot by itself. --reboot: restart now.
  rollback   make the other slot active again (checked against its SHA-256 first), or cancel an
             update that has not booted yet. --reboot: restart now.
  mark-good  the booted trial slot becomes the active one (what the health check runs)
Works without node.cfg and without the cluster (recovery). The paths can be moved for tests with
STACKNODE_FIRMWARE_GRUBENV, _SLOT_A, _SLOT_B, _RELEASE and _CMDLINE.
)";
// How often `firmware update` reports progress on a terminal-less stderr: every this many percent.
constexpr int firmware_progress_step_percent = 10;

node::FirmwareLayout firmware_layout() {
  node::FirmwareLayout layout;
  const auto from_environment = [](const char* name, std::filesystem::path& path) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') path = value;
  };
  from_environment("STACKNODE_FIRMWARE_GRUBENV", layout.grubenv);
  from_environment("STACKNODE_FIRMWARE_SLOT_A", layout.slot_a);
  from_environment("STACKNODE_FIRMWARE_SLOT_B", layout.slot_b);
  from_environment("STACKNODE_FIRMWARE_RELEASE", layout.release);
  from_environment("STACKNODE_FIRMWARE_CMDLINE", layout.cmdline);
  return layout;
}

boost::json::object firmware_status_json(const node::FirmwareStatus& status) {
  const auto slot_json = [&](char name) {
    const node::SlotInfo& info = status.slot(name);
    return boost::json::object{{"version", info.version},
                               {"bytes", info.bytes},
                               {"sha256", info.sha256},
                               {"active", status.active == name},
                               {"booted", status.booted == name},
                               {"trial", status.trial == name}};
  };
  return {{"board", status.board},
          {"running_version", status.running_version},
          {"booted", std::string(1, status.booted)},
          {"active", std::string(1, status.active)},
          {"trial", status.trial == 0 ? boost::json::value(nullptr) : boost::json::value(std::string(1, status.trial))},
          {"trial_left", status.trial_left},
          {"rolled_back", status.rolled_back},
          {"slots", boost::json::object{{"a", slot_json('a')}, {"b", slot_json('b')}}}};
}

int firmware_failed(const Global& global, const std::string& step, const std::string& error) {
  if (global.json) {
    std::cout << boost::json::serialize(boost::json::object{{"ok", false}, {"step", step}, {"error", error}}) << "\n";
  } else {
    std::cerr << "stackctl: firmware " << step << ": " << error << "\n";
  }
  return exit_failed;
}

int firmware_reboot() {
  std::cerr << "stackctl: restarting the box (systemctl reboot)\n";
  return std::system("systemctl reboot") == 0 ? exit_ok : exit_failed;
}

int firmware_command(const Global& global, const std::vector<std::string>& args, std::size_t first) {
  if (first >= args.size() || args[first] == "--help") {
    std::cout << firmware_usage;
    return first >= args.size() ? exit_usage : exit_ok;
  }
  const std::string verb = args[first];
  std::vector<std::string> operands;
  bool reboot = false;
  for (std::size_t index = first + 1; index < args.size(); ++index) {
    if (args[index] == "--help") {
      std::cout << firmware_usage;
      return exit_ok;
    }
    if (args[index] == "--reboot" && (verb == "update" || verb == "rollback")) {
      reboot = true;
    } else if (args[index].starts_with("--")) {
      return usage_error("unknown option " + args[index], firmware_usage);
    } else {
      operands.push_back(args[index]);
    }
  }
  const std::size_t wanted = verb == "update" ? 1 : 0;
  if (verb != "status" && verb != "update" && verb != "rollback" && verb != "mark-good") {
    return usage_error("unknown firmware command '" + verb + "'", firmware_usage);
  }
  if (operands.size() != wanted) {
    return usage_error("firmware " + verb + (wanted ? " takes one argument: the bundle" : " takes no arguments"),
                       firmware_usage);
  }
  const node::FirmwareLayout layout = firmware_layout();
  std::string error;
  if (verb == "status") {
    const std::optional<node::FirmwareStatus> status = node::read_firmware_status(layout, error);
    if (!status) return firmware_failed(global, verb, error);
    if (global.json) {
      std::cout << boost::json::serialize(firmware_status_json(*status)) << "\n";
      return exit_ok;
    }
    std::cout << "board " << (status->board.empty() ? "?" : status->board) << ", running "
              << (status->running_version.empty() ? "?" : status->running_version) << " from slot " << status->booted
              << "\n";
    for (const char name : {'a', 'b'}) {
      const node::SlotInfo& info = status->slot(name);
      std::string state = status->active == name ? "active" : "standby";
      if (status->trial == name) state = std::string("trial (") + (status->trial_left ? "one boot left" : "booting") + ")";
      if (status->booted == name) state += ", booted";
      std::cout << "slot " << name << ": " << (info.version.empty() ? "(empty)" : info.version) << "  " << state
                << (info.sha256.empty() ? "" : "  sha256 " + info.sha256.substr(0, 16) + "...") << "\n";
    }
    if (status->rolled_back) std::cout << "the last update did not become healthy: GRUB went back to slot "
                                       << status->active << "\n";
    return exit_ok;
  }
  if (verb == "update") {
    int next_percent = firmware_progress_step_percent;
    const auto progress = [&](std::uint64_t done, std::uint64_t total) {
      const int percent = total == 0 ? 100 : static_cast<int>(done * 100 / total);
      while (next_percent <= percent) {
        std::cerr << "stackctl: firmware update " << next_percent << "% (checked, written, read back)\n";
        next_percent += firmware_progress_step_percent;
      }
    };
    const std::optional<node::UpdateOutcome> outcome =
        node::apply_firmware_update(layout, operands[0], error, progress);
    if (!outcome) return firmware_failed(global, verb, error);
    if (global.json) {
      std::cout << boost::json::serialize(boost::json::object{{"ok", true},
                                                              {"slot", std::string(1, outcome->slot)},
                                                              {"version", outcome->version},
                                                              {"bytes", outcome->bytes},
                                                              {"sha256", outcome->sha256}})
                << "\n";
    } else {
      std::cout << "slot " << outcome->slot << " now holds " << outcome->version
                << "; the next boot tries it once, and it becomes the active slot when the box is healthy\n";
    }
    return reboot ? firmware_reboot() : exit_ok;
  }
  if (verb == "rollback") {
    const std::optional<char> active = node::roll_back_firmware(layout, error);
    if (!active) return firmware_failed(global, verb, error);
    if (global.json) {
      std::cout << boost::json::serialize(boost::json::object{{"ok", true}, {"active", std::string(1, *active)}}) << "\n";
    } else {
      std::cout << "slot " << *active << " is the active slot; it runs from the next boot\n";
    }
    return reboot ? firmware_reboot() : exit_ok;
  }
  bool changed = false;
  if (!node::mark_firmware_good(layout, error, changed)) return firmware_failed(global, verb, error);
  if (global.json) {
    std::cout << boost::json::serialize(boost::json::object{{"ok", true}, {"changed", changed}}) << "\n";
  } else {
    std::cout << (changed ? "the booted slot is now the active one\n" : "the active slot runs: nothing to mark\n");
  }
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
  if (args[index] == "cluster" && index + 1 < args.size() && args[index + 1] == "recover") {
    return cluster_recover(global, args, index + 2);
  }
  if (args[index] == "node" && index + 1 < args.size() && args[index + 1] == "reset") {
    return node_reset(global, args, index + 2);
  }
  if (args[index] == "node" && index + 1 < args.size() && args[index + 1] == "update") {
    return node_update(global, args, index + 2);
  }
  if (args[index] == "cluster" && index + 1 < args.size() && args[index + 1] == "join") {
    return cluster_join(global, args, index + 2);
  }
  if (args[index] == "content") return content_command(global, args, index + 1);
  if (args[index] == "firmware") return firmware_command(global, args, index + 1);
  if (const std::optional<int> status = run_api_command(global, args, index)) return *status;
  std::string command;
  for (std::size_t word = index; word < args.size() && !args[word].starts_with("--"); ++word) {
    command += (command.empty() ? "" : " ") + args[word];
  }
  return usage_error("unknown command '" + command + "'", main_usage);
}
