// stacknoded: the control plane of one box. It waits until the box is a member (pki/node.crt,
// written by `stackctl cluster init` or `join`), brings the control database's schema to its
// build (migrate), serves the REST API on api.listen over TLS with this node's certificate
// (clients may present a node certificate: mutual TLS), and runs the reconciler (heartbeat,
// membership). Exit statuses as every daemon: 0 stopped, 1 failed, 2 bad node.cfg.
#include <csignal>
#include <filesystem>
#include <functional>
#include <optional>
#include <fstream>
#include <sstream>
#include <thread>

#include "api.hpp"
#include "health.hpp"
#include "load_balancer.hpp"
#include "reconciler.hpp"
#include "stacknode/common/daemon.hpp"
#include "stacknode/common/log.hpp"
#include "stacknode/common/metrics.hpp"
#include "stacknode/db/client.hpp"
#include "stacknode/db/tls.hpp"
#include "stacknode/node/control.hpp"
#include "stacknode/node/membership.hpp"
#include "cache.hpp"
#include "content_sync.hpp"
#include "stacknode/node/node_config.hpp"
#include "stacknode/node/pki.hpp"
#include "stacknode/node/schema.hpp"
#include "stacknode/node/state_files.hpp"

namespace stacknode::node {
namespace {

namespace fs = std::filesystem;

// How often to look for the certificate of a box that is not a member yet.
constexpr std::chrono::milliseconds membership_poll_interval{500};
// Between attempts at a start-up step that needs the database (migrate, finding this node).
constexpr std::chrono::milliseconds startup_retry_interval{1'000};
// The file in pki/ listing the members' API addresses (write_members_file).
constexpr std::string_view members_file_name = "members";
// How often the membership loop looks at roles and member addresses.
constexpr std::chrono::milliseconds membership_interval{2'000};
// How often the content loop compares this node's sites with the cluster's current versions.
constexpr std::chrono::milliseconds content_interval{1'000};

// Retries `step` until it gives a value, logging each failure once per distinct message; nullopt
// as soon as `go_on` says no (this box's membership changed meanwhile).
template <typename T, typename Step>
std::optional<T> until_done(std::string_view what, const std::function<bool()>& go_on, Step step) {
  std::string last;
  while (go_on()) {
    Checked<T> result = step();
    if (result) return std::move(*result);
    if (result.problem().message != last) {
      last = result.problem().message;
      log::warn(what, ": ", last, " (retrying)");
    }
    std::this_thread::sleep_for(startup_retry_interval);
  }
  return std::nullopt;
}

// Keeps `<pki>/members` (one API address per line) equal to the cluster's members, for
// `stackctl node reset`, which asks them whether they still list this box even when this box's
// own database copy is gone.
void write_members_file(const fs::path& pki_dir, const std::vector<NodeRow>& nodes) {
  std::string text;
  for (const NodeRow& node : nodes) text += node.api_address + "\n";
  const fs::path path = pki_dir / members_file_name;
  if (read_whole(path) == text) return;
  if (!write_whole(path, text, public_file)) log::warn("cannot write ", path.string());
}

// Keeps `<db tls dir>/revoked` equal to the serials of removed nodes' certificates, which this
// box's stacknode-db refuses on its wire port (services/db/src/tls_gateway.hpp).
void write_revoked_file(ControlStore& store, const std::string& tls_dir) {
  if (tls_dir.empty()) return;
  Checked<std::vector<std::int64_t>> serials = store.revoked_serials();
  if (!serials) {
    log::warn("revocations: ", serials.problem().message);
    return;
  }
  std::string text;
  for (const std::int64_t serial : *serials) text += std::to_string(serial) + "\n";
  const fs::path path = fs::path(tls_dir) / db::revoked_file_name;
  if (read_whole(path) == text) return;
  if (!write_whole(path, text, public_file)) log::warn("cannot write ", path.string());
}

// The membership loop: follow every member's stacknode-db; where this node's leads, balance roles.
void balance_members(ControlStore& store, const Self& self, const fs::path& pki_dir) {
  Checked<std::vector<NodeRow>> nodes = store.nodes();
  if (!nodes) {
    log::warn("membership: ", nodes.problem().message);
    return;
  }
  std::vector<std::string> addresses;
  for (const NodeRow& node : *nodes) addresses.push_back(node.db_address);
  store.client().set_addresses(addresses);
  write_members_file(pki_dir, *nodes);

  db::Outcome<db::wire::Nodes> raft = store.client().cluster();
  if (!raft) return;
  const db::wire::NodeId leader = store.client().leader().id;
  if (static_cast<std::int64_t>(leader) != self.node_id) return;
  const std::int64_t now = unix_now();
  std::vector<Member> members;
  for (const db::wire::NodeInfo& info : raft->nodes) {
    Member member{info.id, info.role, false, info.id == leader};
    for (const NodeRow& node : *nodes) {
      if (node.id == static_cast<std::int64_t>(info.id)) {
        member.online = online(node, now);
      }
    }
    if (member.leader) member.online = true;  // it is answering this
    members.push_back(member);
  }
  const std::optional<RoleChange> change = next_role_change(members);
  if (!change) return;
  const std::string role(role_name(change->role));
  db::Outcome<db::wire::Empty> assigned = store.client().assign(change->id, change->role);
  if (!assigned) {
    log::warn("membership: cannot make node ", change->id, " a ", role, ": ", assigned.error().message);
    return;
  }
  log::info("membership: node ", change->id, " is now a ", role);
  std::string name = std::to_string(change->id);
  for (const NodeRow& node : *nodes) {
    if (node.id == static_cast<std::int64_t>(change->id)) name = node.name;
  }
  store.record({"node:" + self.name, "node.role", name, role}, now);
}

enum class MemberEnd { stopped, left, failed };

// Serves as a member from the moment pki/node.crt exists until SIGTERM (stopped), a failure, or
// the certificate's removal (left: `stackctl node reset`).
MemberEnd run_member(const NodeConfig& config) {
  const fs::path certificate = config.pki_dir() / "node.crt";
  if (!fs::exists(certificate)) {
    // SIGTERM's default action ends this wait: nothing runs yet.
    log::info("not a cluster member: waiting for ", certificate.string(),
              " ('stackctl cluster init' or 'stackctl cluster join' writes it)");
    daemon::notify_ready("not a cluster member: waiting for 'stackctl cluster init' or 'join'");
    while (!fs::exists(certificate)) std::this_thread::sleep_for(membership_poll_interval);
  }
  // The membership this run serves: it ends when node.crt is removed (node reset) or replaced
  // (reset and joined again: new credentials, which the next run loads).
  const std::string certificate_pem = read_whole(certificate);
  const std::function<bool()> same_membership = [&] { return read_whole(certificate) == certificate_pem; };
  Self self;
  self.ca_certificate_pem = read_whole(config.pki_dir() / "ca.crt");
  // Who this box is comes from its certificate (the cluster names nodes; node.name in node.cfg is
  // only the name asked for at init or join, and `stackctl node update` may have changed it).
  // Checked until it verifies (a clock not yet set at boot makes a good certificate look not
  // yet valid), or until it is replaced.
  pki::Made<pki::CertificateInfo> mine;
  for (std::string last;;) {
    mine = pki::verify_node_certificate(self.ca_certificate_pem, certificate_pem, std::chrono::system_clock::now());
    if (mine.ok()) break;
    if (mine.error != last) log::error(certificate.string(), " does not verify against pki/ca.crt: ", mine.error, " (retrying)");
    last = mine.error;
    std::this_thread::sleep_for(startup_retry_interval);
    if (!same_membership()) return MemberEnd::left;
  }

  // This box's stacknode-db first, then the members it joined through: a fresh standby's own
  // dqlite node may not know the leader yet (observed on libdqlite 1.11 right after a join).
  db::ClientOptions client_options;
  db::DbConfig identity = config.db;
  try {
    if (identity.node_id == 0) db::read_identity(identity);
  } catch (const config::ConfigError& error) {
    log::warn("db identity: ", error.what());
  }
  client_options.addresses = {identity.address};  // the identity's when node update moved it
  for (const std::string& member : identity.join) client_options.addresses.push_back(member);
  if (!identity.tls_dir.empty()) {  // the wire port runs TLS: speak it with this box's certificate
    std::string problem;
    client_options.tls = db::TlsContext::from_dir(db::TlsContext::Side::client, identity.tls_dir, problem);
    if (!client_options.tls) {
      log::error("db TLS: ", problem);
      return MemberEnd::failed;
    }
  }
  db::Client client(client_options);
  ControlStore store(client, std::string(control_database));
  const std::optional<std::int64_t> version =
      until_done<std::int64_t>("control database schema", same_membership, [&]() -> Checked<std::int64_t> {
        db::Outcome<std::int64_t> migrated = migrate(client, std::string(control_database), control_schema(), unix_now());
        if (!migrated) return problem_from(migrated.error());
        return *migrated;
      });
  const std::optional<NodeRow> own_row =
      version ? until_done<NodeRow>("this node's record (if this box was removed from the cluster: "
                                    "'stackctl node reset', then join again)",
                                    same_membership,
                                    [&] { return store.node_with_serial(static_cast<std::int64_t>(mine.value->serial)); })
              : std::nullopt;
  if (!own_row) {
    log::info(certificate.string(), " was removed or replaced before this node started serving: starting over");
    return MemberEnd::left;
  }
  log::info("control database at schema version ", *version);
  self.node_id = own_row->id;
  self.name = own_row->name;

  std::shared_ptr<http::TlsContext> tls;
  try {
    tls = std::make_shared<http::TlsContext>(certificate.string(), (config.pki_dir() / "node.key").string(),
                                             (config.pki_dir() / "ca.crt").string());
  } catch (const std::exception& error) {
    log::error(error.what());
    return MemberEnd::failed;
  }
  metrics::Registry registry;
  metrics::register_build_info(registry, "stacknode_node");
  WorkQueue queue(config.api_workers, max_pending_api_jobs);
  ApiHandler handler(store, queue, self);
  http::ServerOptions options;
  options.listeners = {{config.api_listen, true}};
  options.threads = config.api_threads;
  options.limits = config.api_limits;
  options.metrics_prefix = "stacknode_node";
  options.server_header = "stacknoded";
  http::Server server(options, handler, registry, tls);
  try {
    server.bind();
  } catch (const std::exception& error) {
    log::error("api: ", error.what());
    return MemberEnd::failed;
  }
  log::info("node ", self.name, " (id ", self.node_id, "): API on https://", server.bound_endpoints()[0]);

  Reconciler reconciler;
  reconciler.add("heartbeat", heartbeat_interval, [&] {
    if (Checked<Done> done = store.heartbeat(self.node_id, unix_now()); !done) {
      log::warn("heartbeat: ", done.problem().message);
    }
  });
  reconciler.add("membership", membership_interval, [&] {
    balance_members(store, self, config.pki_dir());
    write_revoked_file(store, identity.tls_dir);
  });
  bool left = false;
  reconciler.add("still a member", membership_poll_interval, [&] {
    if (same_membership()) return;
    log::info(certificate.string(), " was removed or replaced (node reset): leaving");
    left = true;
    server.stop();
  });
  // Load balancing on threads of its own: a lease must be renewed (or given up) on time even
  // while the other loops wait on the database.
  LoadBalancer balancer(store, self.node_id, {config.dataplane_socket, config.manage_kernel}, registry);
  Reconciler lb_loop;
  lb_loop.add("load balancing", lb_interval, [&] { balancer.step(); });

  Reconciler lb_enforcer;
  lb_enforcer.add("VIP lease enforcer", lease_enforce_interval, [&] { balancer.enforce(); });
  HealthChecker checker(store, self.node_id);
  Reconciler health_loop;  // checks that time out must not hold up the leases
  health_loop.add("health checks", health_tick, [&] { checker.step(); });
  Reconciler counters_loop;  // a counters read walks the flow tables: not on the lease thread
  counters_loop.add("dataplane counters", dataplane_counters_interval, [&] { balancer.export_counters(); });
  // The cache tier on a thread of its own: its server's answers have deadlines of their own.
  CacheSettings cache_settings{config.cache_enabled, config.cache_port, "", config.cache_endpoint,
                               config.cache_max_memory_mb, config.redis_server, config.state_dir / "cache"};
  const std::optional<std::string> service = service_address(*own_row);
  cache_settings.bind = service && *service != "127.0.0.1" ? *service + " 127.0.0.1" : "127.0.0.1";
  CacheManager cache(store, self.node_id, self.name, cache_settings, registry);
  try {
    cache.start();
  } catch (const std::exception& error) {
    log::error("cache: ", error.what());
    return MemberEnd::failed;
  }
  Reconciler cache_loop;
  cache_loop.add("cache", cache_interval, [&] { cache.step(); });
  // Content on a thread of its own: unpacking a large site must not delay the other loops.
  ContentSync content(store, self.node_id, config.content_dir);
  Reconciler content_loop;
  content_loop.add("content", content_interval, [&] { content.step(); });
  balancer.release();  // what a previous run left in the dataplane is answered only with a lease
  reconciler.start();
  lb_loop.start();
  lb_enforcer.start();
  health_loop.start();
  counters_loop.start();
  content_loop.start();
  cache_loop.start();
  server.run();
  cache_loop.stop();
  cache.stop();
  content_loop.stop();
  counters_loop.stop();
  health_loop.stop();
  lb_enforcer.stop();
  lb_loop.stop();
  balancer.release();  // no lease is renewed from here on: stop answering now
  reconciler.stop();
  queue.stop();
  if (left) return MemberEnd::left;
  log::info("stopped");
  return MemberEnd::stopped;
}

int serve(const config::Document& document, const daemon::Invocation& invocation) {
  std::signal(SIGPIPE, SIG_IGN);
  const NodeConfig config = load_node_config(document.root());
  daemon::report_unread(document, {"node", "api", "paths", "log", "lb", "cache"});
  if (invocation.check_only) {
    log::info("configuration ", document.file_name(), " is valid");
    return daemon::exit_ok;
  }
  for (;;) {
    // Before any membership (and again after a reset, which removes the sites): a box not in a
    // cluster serves the factory page.
    ContentSync::prepare_factory_site(config.content_dir);
    const MemberEnd end = run_member(config);
    if (end == MemberEnd::stopped) return daemon::exit_ok;
    if (end == MemberEnd::failed) return daemon::exit_failure;
  }
}

}  // namespace
}  // namespace stacknode::node

int main(int argc, char** argv) {
  return stacknode::daemon::run(argc, argv, "stacknoded",
                                "The stacknode control plane: cluster membership, the REST API, the reconciler.",
                                stacknode::node::serve);
}
