// stacknode-db: runs this node's dqlite node (bootstrapping or joining its cluster) and serves the
// HTTP SQL API (api.hpp) on 7001. Requests are parsed on the HTTP thread; the database calls run
// on a WorkQueue through the leader-following Client, and the answer is posted back to the
// connection's thread. SIGTERM stops the HTTP server gracefully, then the node.
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <csignal>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

extern "C" {
#include <sqlite3.h>
}

#include "api.hpp"
#include "db_config.hpp"
#include "group_commit.hpp"
#include "node.hpp"
#include "stacknode/common/daemon.hpp"
#include "stacknode/common/log.hpp"
#include "stacknode/common/metrics.hpp"
#include "stacknode/db/client.hpp"
#include "stacknode/common/work_queue.hpp"

namespace stacknode::db {
namespace {

namespace bhttp = boost::beast::http;
namespace fs = std::filesystem;

// Database calls waiting for a worker beyond which new requests get 503 (back-pressure).
constexpr std::size_t max_pending_jobs = 4096;
// Name of the file in runtime_dir that lists the HTTP address, written once serving.
constexpr std::string_view listen_file_name = "db.listen";
constexpr std::string_view json_type = "application/json";
// How often the node's role and the cluster's leader are looked up for /metrics (a CLUSTER and a
// LEADER round trip on a worker, never on the HTTP thread that serves /metrics).
constexpr auto cluster_view_interval = std::chrono::seconds(2);
constexpr double role_unknown = -1;
// How often a node without an identity looks for its identity file (stackctl writes it). Cheap
// (one stat); short enough that init and join do not wait on it.
constexpr auto identity_poll_interval = std::chrono::milliseconds(200);

// This node's place in the cluster as last seen, for /metrics. dqlite 1.11's client protocol
// does not expose the Raft term or the applied index, so those are not reported.
struct ClusterView {
  std::atomic<double> role{role_unknown};  // 0 voter, 1 standby, 2 spare, -1 unknown / not a member
  std::atomic<double> leader_id{0};        // 0 when no leader is known
  std::atomic<double> members{0};
};

// What the handler's routes answer, as (status, content type, body).
struct Answer {
  unsigned status = 200;
  std::string body;
  std::string content_type = std::string(json_type);
};

Answer from_error(const api::ErrorAnswer& error) { return {error.status, error.body}; }

class Metrics {
 public:
  explicit Metrics(metrics::Registry& registry) : registry_(registry) {}
  void observe(std::string_view route, double seconds) {
    registry_.histogram("stacknode_db_request_duration_seconds", "API request latency by route",
                        metrics::default_latency_buckets(), {{"route", std::string(route)}})
        .observe(seconds);
  }
  void error(std::string_view kind) {
    registry_.counter("stacknode_db_errors_total", "API errors by kind", {{"kind", std::string(kind)}}).inc();
  }

 private:
  metrics::Registry& registry_;
};

// A consistent SQLite file from DUMP's database and WAL: both written to a scratch dir, the WAL
// checkpointed into the database by SQLite itself, the result read back.
std::optional<std::string> backup_file(const wire::Files& files, std::string& problem) {
  char scratch_template[] = "/tmp/stacknode-db-backup.XXXXXX";
  const char* scratch = ::mkdtemp(scratch_template);
  if (scratch == nullptr) {
    problem = "cannot make a scratch directory";
    return std::nullopt;
  }
  const fs::path dir = scratch;
  const fs::path database = dir / "backup.db";
  std::optional<std::string> result;
  for (const wire::File& file : files.files) {
    const bool is_wal = file.name.size() > 4 && file.name.ends_with("-wal");
    std::ofstream out(is_wal ? fs::path(database.string() + "-wal") : database, std::ios::binary);
    out.write(reinterpret_cast<const char*>(file.content.data()), static_cast<std::streamsize>(file.content.size()));
  }
  sqlite3* handle = nullptr;
  if (sqlite3_open_v2(database.c_str(), &handle, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK &&
      sqlite3_exec(handle, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;", nullptr, nullptr,
                   nullptr) == SQLITE_OK) {
    sqlite3_close(handle);
    handle = nullptr;
    std::ifstream in(database, std::ios::binary);
    result = std::string(std::istreambuf_iterator<char>(in), {});
  } else {
    problem = std::string("SQLite could not checkpoint the dump: ") + (handle ? sqlite3_errmsg(handle) : "open failed");
  }
  if (handle != nullptr) sqlite3_close(handle);
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  return result;
}

class DbHandler final : public http::Handler {
 public:
  DbHandler(const DbConfig& config, Client& client, GroupCommit& group_commit, WorkQueue& queue, Metrics& metrics)
      : config_(config), client_(client), group_commit_(group_commit), queue_(queue), metrics_(metrics) {}

  void handle(const http::RequestContext& context, http::Request& request, http::Respond respond) override {
    const std::string_view target = request.target();
    const std::string_view path = target.substr(0, target.find('?'));
    const std::string_view query = target.size() > path.size() ? target.substr(path.size() + 1) : "";
    const bhttp::verb method = request.method();
    const unsigned version = request.version();
    const auto reply = [version](Answer answer) {
      bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(answer.status), version};
      response.set(bhttp::field::content_type, answer.content_type);
      response.body() = std::move(answer.body);
      response.prepare_payload();
      return response;
    };
    // Runs `work` on the queue and answers from the connection's thread.
    const auto later = [&, io = context.io, reply](std::string route, std::function<Answer()> work) {
      const auto started = std::chrono::steady_clock::now();
      auto shared_respond = std::make_shared<http::Respond>(std::move(respond));
      const bool taken = queue_.submit([this, io, reply, work = std::move(work), shared_respond, route, started] {
        Answer answer = work();
        metrics_.observe(route, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        boost::asio::post(*io, [shared_respond, reply, answer = std::move(answer)]() mutable {
          (*shared_respond)(reply(std::move(answer)));
        });
      });
      if (!taken) {
        metrics_.error("overloaded");
        (*shared_respond)(reply({503, R"({"error":{"kind":"overloaded","message":"too many requests waiting"}})"}));
      }
    };
    const std::string body = request.body();

    if (path == "/readyz" && method == bhttp::verb::get) {
      return later("readyz", [this] {
        Outcome<wire::Node> leader = client_.find_leader();
        if (!leader) return Answer{503, R"({"ready":false})"};
        return Answer{200, R"({"ready":true,"leader":)" + std::to_string(leader->id) + "}"};
      });
    }
    if (path == "/db/execute" && method == bhttp::verb::post) {
      api::Parsed<api::ExecuteRequest> parsed = api::parse_execute(body, config_.limits);
      if (!parsed.ok()) return respond(reply(bad(parsed.error)));
      return later("execute", [this, execute = std::move(*parsed.value)] { return run_execute(execute); });
    }
    if (path == "/db/query" && method == bhttp::verb::post) {
      api::Parsed<api::QueryRequest> parsed = api::parse_query(body, config_.limits);
      if (!parsed.ok()) return respond(reply(bad(parsed.error)));
      return later("query", [this, query_request = std::move(*parsed.value)] { return run_query(query_request); });
    }
    if (path == "/db/nodes" && method == bhttp::verb::get) {
      return later("nodes", [this] { return list_nodes(); });
    }
    if (path == "/db/nodes" && method == bhttp::verb::post) {
      api::Parsed<api::NodeRequest> parsed = api::parse_node(body);
      if (!parsed.ok()) return respond(reply(bad(parsed.error)));
      return later("nodes", [this, node = *parsed.value] { return add_node(node); });
    }
    if (path.starts_with("/db/nodes/")) {
      std::string_view rest = path.substr(std::string_view("/db/nodes/").size());
      const bool role = rest.ends_with("/role");
      if (role) rest.remove_suffix(std::string_view("/role").size());
      const std::optional<wire::NodeId> id = api::parse_node_id(rest);
      if (!id) return respond(reply(bad({404, "no such node path: " + std::string(path)})));
      if (!role && method == bhttp::verb::delete_) {
        return later("nodes", [this, id = *id] { return done(client_.remove(id)); });
      }
      if (role && method == bhttp::verb::post) {
        api::Parsed<wire::Role> parsed = api::parse_role_body(body);
        if (!parsed.ok()) return respond(reply(bad(parsed.error)));
        return later("nodes", [this, id = *id, role_value = *parsed.value] { return done(client_.assign(id, role_value)); });
      }
      return respond(reply(bad({405, "use DELETE /db/nodes/ID or POST /db/nodes/ID/role"})));
    }
    if (path == "/db/leader" && method == bhttp::verb::post) {
      api::Parsed<wire::NodeId> parsed = api::parse_transfer(body);
      if (!parsed.ok()) return respond(reply(bad(parsed.error)));
      return later("leader", [this, id = *parsed.value] { return done(client_.transfer(id)); });
    }
    if (path == "/db/backup" && method == bhttp::verb::get) {
      const std::string prefix = "database=";
      const std::string name = query.starts_with(prefix) ? std::string(query.substr(prefix.size())) : "";
      if (!api::valid_database_name(name)) {
        return respond(reply(bad({400, "name the database: /db/backup?database=NAME"})));
      }
      return later("backup", [this, name] { return backup(name); });
    }
    respond(reply(bad({404, "no such endpoint: " + std::string(method_string(method)) + " " + std::string(path)})));
  }

 private:
  static std::string_view method_string(bhttp::verb method) { return bhttp::to_string(method); }

  Answer bad(const api::BadRequest& request) {
    metrics_.error("bad_request");
    return from_error(api::render_bad_request(request));
  }
  Answer failed(const Error& error, std::optional<std::size_t> statement = std::nullopt) {
    metrics_.error(to_string(error.kind));
    return from_error(api::render_error(error, statement));
  }
  template <typename T>
  Answer done(const Outcome<T>& outcome) {
    if (!outcome) return failed(outcome.error());
    return {200, "{}"};
  }

  Answer run_execute(const api::ExecuteRequest& request) {
    std::vector<wire::Result> results;
    if (!request.transaction) {
      for (std::size_t index = 0; index < request.statements.size(); ++index) {
        const api::Statement& statement = request.statements[index];
        Outcome<wire::Result> result = group_commit_.exec(request.database, statement);
        if (!result) return failed(result.error(), index);
        results.push_back(result.value());
      }
      return {200, api::render_results(results)};
    }
    // One transaction on one leader connection: all statements or none. Refused BUSY by another
    // node's writer before COMMIT, it runs again from BEGIN (client rule 7).
    std::optional<std::size_t> failed_at;
    Outcome<wire::Empty> done =
        client_.transaction(request.database, [&](Client::Transaction& transaction) -> std::optional<Error> {
          results.clear();
          failed_at.reset();
          for (std::size_t index = 0; index < request.statements.size(); ++index) {
            const api::Statement& statement = request.statements[index];
            Outcome<wire::Result> result = transaction.exec(statement.sql, statement.parameters);
            if (!result) {
              failed_at = index;
              return result.error();
            }
            results.push_back(result.value());
          }
          return std::nullopt;
        });
    if (!done) return failed(done.error(), failed_at);
    return {200, api::render_results(results)};
  }

  Answer run_query(const api::QueryRequest& request) {
    Outcome<wire::RowSet> rows =
        client_.query(request.database, request.statement.sql, request.statement.parameters);
    if (!rows) return failed(rows.error(), 0);
    if (rows->rows.size() > config_.limits.rows) {
      return bad({413, "the query returned " + std::to_string(rows->rows.size()) + " rows, more than the limit of " +
                           std::to_string(config_.limits.rows) + ": add a LIMIT"});
    }
    return {200, api::render_rows(rows.value())};
  }

  Answer list_nodes() {
    Outcome<wire::Nodes> nodes = client_.cluster();
    if (!nodes) return failed(nodes.error());
    Outcome<wire::Node> leader = client_.find_leader();
    return {200, api::render_nodes(nodes.value(), leader ? leader->id : 0)};
  }

  Answer add_node(const api::NodeRequest& node) {
    if (Outcome<wire::Empty> added = client_.add(node.id, node.address); !added) return failed(added.error());
    if (node.role == wire::Role::spare) return {200, "{}"};
    return done(client_.assign(node.id, node.role));
  }

  Answer backup(const std::string& name) {
    Outcome<wire::Files> files = client_.dump(name);
    if (!files) return failed(files.error());
    std::string problem;
    std::optional<std::string> file = backup_file(files.value(), problem);
    if (!file) return failed(Error{ErrorKind::protocol, 0, problem});
    return {200, std::move(*file), "application/vnd.sqlite3"};
  }

  const DbConfig& config_;
  Client& client_;
  GroupCommit& group_commit_;
  WorkQueue& queue_;
  Metrics& metrics_;
};

void write_listen_file(const DbConfig& config, const http::tcp::endpoint& bound) {
  const fs::path dir = config.runtime_dir;
  fs::create_directories(dir);
  const fs::path final_path = dir / listen_file_name;
  const fs::path temporary = final_path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << "http " << bound.address().to_string() << ":" << bound.port() << "\n";
    out << "dqlite " << config.address << "\n";
  }
  fs::rename(temporary, final_path);
}

// Without db.node_id in node.cfg this box is not in a cluster yet: wait for the identity file
// stackctl writes at cluster init or join (SIGTERM's default action ends the wait; nothing runs yet).
// False, logged, if the file is there but wrong.
bool wait_for_identity(DbConfig& config) {
  log::info("db: no db.node_id; waiting for ", config.identity_file,
            " ('stackctl cluster init' or 'join' writes it)");
  daemon::notify_ready("not in a cluster: waiting for 'stackctl cluster init' or 'join'");
  while (!fs::exists(config.identity_file)) std::this_thread::sleep_for(identity_poll_interval);
  try {
    read_identity(config);
  } catch (const config::ConfigError& error) {
    log::error("db: identity file: ", error.what());
    return false;
  }
  log::info("db: identity from ", config.identity_file, ": node ", config.node_id);
  return true;
}

enum class MemberEnd { stopped, left, renewed, failed };

// The whole text of `path` ("" if it cannot be read).
std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs this box's dqlite node and the HTTP API until SIGTERM (stopped), a failure, in identity
// mode until the identity file is removed (left: `stackctl node reset`), or until the TLS
// certificate in tls_dir is replaced (renewed: `stackctl node update`; the old one is revoked, so
// the node starts again, data kept, with the new one).
MemberEnd run_member(DbConfig& config, bool identity_mode) {
  metrics::Registry registry;
  metrics::register_build_info(registry, "stacknode_db");

  const auto still_member = [&] { return !identity_mode || fs::exists(config.identity_file); };
  const fs::path certificate = fs::path(config.tls_dir) / "node.crt";
  const std::string certificate_pem = config.tls_dir.empty() ? std::string() : read_text(certificate);
  std::unique_ptr<DbNode> node;
  try {
    node = std::make_unique<DbNode>(config);
    if (node->needs_join()) node->join(still_member);
  } catch (const NodeError& error) {
    log::error("db: ", error.what());
    // A join undone by stackctl while this node was still trying: leave, like after a reset.
    return still_member() ? MemberEnd::failed : MemberEnd::left;
  }

  ClientOptions client_options;
  client_options.addresses = {config.address};
  for (const std::string& member : config.join) client_options.addresses.push_back(member);
  client_options.tls = node->client_tls();
  Client client(client_options);
  Metrics metrics(registry);
  registry.gauge_callback("stacknode_db_node_id", "This node's dqlite id",
                          [&config] { return static_cast<double>(config.node_id); });

  ClusterView view;
  registry.gauge_callback("stacknode_db_role", "This node's role: 0 voter, 1 standby, 2 spare, -1 unknown",
                          [&view] { return view.role.load(); });
  registry.gauge_callback("stacknode_db_leader_id", "The cluster's leader as last seen, 0 if none",
                          [&view] { return view.leader_id.load(); });
  registry.gauge_callback("stacknode_db_is_leader", "1 if this node is the leader",
                          [&view, &config] { return view.leader_id.load() == static_cast<double>(config.node_id) ? 1.0 : 0.0; });
  registry.gauge_callback("stacknode_db_members", "Cluster members as last seen",
                          [&view] { return view.members.load(); });
  const auto refresh_view = [&client, &view, &config] {
    Outcome<wire::Nodes> nodes = client.cluster();
    if (nodes) {
      double role = role_unknown;
      for (const wire::NodeInfo& node : nodes->nodes) {
        if (node.id == config.node_id) role = static_cast<double>(node.role);
      }
      view.role = role;
      view.members = static_cast<double>(nodes->nodes.size());
    }
    view.leader_id = static_cast<double>(client.leader().id);
  };

  GroupCommit group_commit(client);
  registry.gauge_callback("stacknode_db_group_commit_statements", "Statements committed in batches of 2 or more",
                          [&group_commit] { return static_cast<double>(group_commit.stats().statements); });
  registry.gauge_callback("stacknode_db_group_commit_batches", "Batches committed (one Raft round each)",
                          [&group_commit] { return static_cast<double>(group_commit.stats().batches); });
  registry.gauge_callback("stacknode_db_group_commit_replayed", "Statements run again alone after a broken batch",
                          [&group_commit] { return static_cast<double>(group_commit.stats().replayed); });
  WorkQueue queue(config.workers, max_pending_jobs);
  registry.gauge_callback("stacknode_db_pending_requests", "Database calls waiting for a worker",
                          [&queue] { return static_cast<double>(queue.pending()); });
  DbHandler handler(config, client, group_commit, queue, metrics);
  http::ServerOptions options;
  options.listeners = config.listeners;
  options.threads = config.http_threads;
  options.limits = config.http_limits;
  options.metrics_prefix = "stacknode_db";
  options.server_header = "stacknode-db";
  http::Server server(options, handler, registry);
  try {
    server.bind();
  } catch (const std::exception& error) {
    log::error("db: ", error.what());
    return MemberEnd::failed;
  }
  const auto bound = server.bound_endpoints();
  log::info("db: HTTP API on ", bound[0], ", dqlite on ", config.address);
  boost::asio::post(server.io(0), [&config, &bound] {
    try {
      write_listen_file(config, bound[0]);
    } catch (const std::exception& failure) {
      log::warn("cannot write ", config.runtime_dir, "/", listen_file_name, ": ", failure.what());
    }
  });
  boost::asio::steady_timer view_timer(server.io(0));
  std::atomic<bool> view_pending{false};
  bool left = false;
  bool renewed = false;
  std::function<void()> schedule_view = [&] {
    view_timer.expires_after(cluster_view_interval);
    view_timer.async_wait([&](boost::system::error_code error) {
      if (error) return;
      if (identity_mode && !fs::exists(config.identity_file)) {
        log::info("db: ", config.identity_file, " was removed (node reset): leaving");
        left = true;
        server.stop();
        return;
      }
      if (const std::string now_pem = config.tls_dir.empty() ? std::string() : read_text(certificate);
          !now_pem.empty() && now_pem != certificate_pem) {  // empty: being replaced right now
        log::info("db: ", certificate.string(), " was replaced: starting again with it");
        renewed = true;
        server.stop();
        return;
      }
      // One lookup at a time: a slow cluster must not pile them up in the queue.
      if (!view_pending.exchange(true) && !queue.submit([&] {
            refresh_view();
            view_pending = false;
          })) {
        view_pending = false;
      }
      schedule_view();
    });
  };
  boost::asio::post(server.io(0), [&] { schedule_view(); });
  server.run();
  queue.stop();
  std::error_code ignored;
  fs::remove(fs::path(config.runtime_dir) / listen_file_name, ignored);
  node.reset();
  if (left) return MemberEnd::left;
  if (renewed) return MemberEnd::renewed;
  log::info("stopped");
  return MemberEnd::stopped;
}

int serve(const config::Document& document, const daemon::Invocation& invocation) {
  // libdqlite's and our sockets may be written after a peer closed them: an error, not a death.
  std::signal(SIGPIPE, SIG_IGN);
  DbConfig config = load_db_config(document.root());
  daemon::report_unread(document, {"db", "paths", "log"});
  if (invocation.check_only) {
    log::info("configuration ", document.file_name(), " is valid");
    return daemon::exit_ok;
  }
  const bool identity_mode = config.node_id == 0;
  for (;;) {
    if (identity_mode && !wait_for_identity(config)) return daemon::exit_failure;
    const MemberEnd outcome = run_member(config, identity_mode);
    if (outcome == MemberEnd::renewed) continue;
    if (outcome != MemberEnd::left) return outcome == MemberEnd::stopped ? daemon::exit_ok : daemon::exit_failure;
    // `stackctl node reset` removed the identity: this box is no member any more. Its data
    // belongs to a cluster it left, so it goes; then the wait for a new identity begins.
    std::error_code error;
    for (const fs::directory_entry& entry : fs::directory_iterator(config.data_dir, error)) fs::remove_all(entry.path(), error);
    if (error) {
      log::error("db: cannot clear ", config.data_dir, " after leaving: ", error.message());
      return daemon::exit_failure;
    }
    log::info("db: left the cluster and cleared ", config.data_dir);
  }
}

}  // namespace
}  // namespace stacknode::db

int main(int argc, char** argv) {
  return stacknode::daemon::run(argc, argv, "stacknode-db",
                                "The stacknode database: a dqlite node and its HTTP SQL API.",
                                stacknode::db::serve);
}
