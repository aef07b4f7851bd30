// stacknoded's cache loop; see cache.hpp.
#include "cache.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "stacknode/common/log.hpp"
#include "stacknode/node/load_balancing.hpp"

namespace stacknode::node {

namespace {

constexpr std::string_view config_file_name = "redis.conf";
constexpr std::string_view log_file_name = "redis.log";
constexpr std::chrono::milliseconds stop_poll{50};

// The value of `key` in an INFO answer ("key:value" lines), or "".
std::string info_field(const std::string& info, std::string_view key) {
  const std::string wanted = "\n" + std::string(key) + ":";
  std::size_t at = ("\n" + info).find(wanted);
  if (at == std::string::npos) return {};
  at += wanted.size() - 1;  // in `info`, past "key:"
  const std::size_t end = info.find_first_of("\r\n", at);
  return info.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

std::int64_t info_number(const std::string& info, std::string_view key) {
  const std::string text = info_field(info, key);
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

bool same_report(const CacheNodeRow& left, const CacheNodeRow& right) {
  return left.role == right.role && left.offset == right.offset && left.epoch == right.epoch &&
         left.at_ms == right.at_ms;
}

// After a gap this long in this loop's own reads, nothing it saw before says anything about who
// is alive now: every node starts a fresh window.
constexpr std::chrono::milliseconds observation_gap = 2 * cache_interval;

}  // namespace

CacheManager::CacheManager(ControlStore& store, std::int64_t self_id, std::string self_name, CacheSettings settings,
                           metrics::Registry& registry)
    : store_(store),
      self_id_(self_id),
      self_name_(std::move(self_name)),
      settings_(std::move(settings)),
      registry_(registry),
      endpoint_(settings_.endpoint) {}

CacheManager::~CacheManager() { stop(); }

void CacheManager::start() {
  if (!settings_.enabled) return;
  endpoint_.start();
  log::info("cache: endpoint on ", settings_.endpoint, " (relays to the primary's redis-server)");
}

void CacheManager::warn_once(const std::string& problem) {
  if (problem != last_problem_) log::warn("cache: ", problem);
  last_problem_ = problem;
}

std::optional<std::string> CacheManager::address_of(std::int64_t node_id, const std::vector<NodeRow>& nodes) const {
  for (const NodeRow& node : nodes) {
    if (node.id == node_id) return service_address(node);
  }
  return std::nullopt;
}

std::optional<resp::Value> CacheManager::call(std::initializer_list<std::string> words) {
  if (!client_.connected()) {
    if (const std::string failed = client_.connect("127.0.0.1", settings_.port, cache_call_timeout); !failed.empty()) {
      return std::nullopt;
    }
    const std::vector<std::string> auth = {"AUTH", password_};
    const auto answered = client_.call(auth, cache_call_timeout);
    const resp::Value* value = std::get_if<resp::Value>(&answered);
    if (value == nullptr || value->kind == resp::Value::Kind::error) {
      warn_once("redis-server refused this cluster's cache password");
      client_.close();
      return std::nullopt;
    }
  }
  const std::vector<std::string> command(words);
  auto answered = client_.call(command, cache_call_timeout);
  if (resp::Value* value = std::get_if<resp::Value>(&answered)) return std::move(*value);
  return std::nullopt;
}

void CacheManager::reap() {
  if (server_pid_ <= 0) return;
  int status = 0;
  if (::waitpid(server_pid_, &status, WNOHANG) != server_pid_) return;
  log::warn("cache: redis-server (pid ", server_pid_, ") exited ",
            WIFEXITED(status) ? "with status " + std::to_string(WEXITSTATUS(status))
                              : "on signal " + std::to_string(WTERMSIG(status)),
            "; see ", (settings_.dir / log_file_name).string(), "; starting it again");
  server_pid_ = -1;
  client_.close();
}

bool CacheManager::spawn(const std::string& replica_of) {
  std::error_code error;
  std::filesystem::create_directories(settings_.dir, error);
  const std::filesystem::path config = settings_.dir / config_file_name;
  {
    // The password is in it: readable by root only.
    const int fd = ::open(config.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::fchmod(fd, 0600) != 0) {  // (an older file keeps its mode through O_CREAT)
      if (fd >= 0) ::close(fd);
      warn_once("cannot write " + config.string());
      return false;
    }
    ::close(fd);
    std::ofstream out(config, std::ios::trunc);
    out << "# written by stacknoded (services/node/daemon/cache.cpp) at every start of redis-server\n"
        << "bind " << settings_.bind << "\nport " << settings_.port << "\nprotected-mode no\n"
        << "requirepass " << password_ << "\nmasterauth " << password_ << "\n"
        << "dir " << settings_.dir.string() << "\nlogfile " << (settings_.dir / log_file_name).string() << "\n"
        << "daemonize no\nsave \"\"\nappendonly no\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\nreplica-read-only yes\n"
        << "maxmemory " << settings_.max_memory_mb << "mb\nmaxmemory-policy allkeys-lru\n";
    if (!replica_of.empty()) out << "replicaof " << replica_of << " " << settings_.port << "\n";
    if (!out) {
      warn_once("cannot write " + config.string());
      return false;
    }
  }
  const std::string program = settings_.redis_server;
  const std::string config_text = config.string();
  std::vector<char*> argv = {const_cast<char*>(program.c_str()), const_cast<char*>(config_text.c_str()), nullptr};
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child < 0) {
    warn_once("cannot start redis-server: fork failed");
    return false;
  }
  if (child == 0) {
    // Only async-signal-safe calls here. The server dies with the thread that started it.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    // (In stacknoded's process group: whatever kills the group, a crash as tools/rack kill makes
    // it, takes the server along.)
    // None of stacknoded's descriptors (API connections, the database's) may live on in the
    // server: a connection it held would never close for the peer.
    ::close_range(3, ~0U, 0);
    ::execv(program.c_str(), argv.data());
    ::_exit(127);
  }
  server_pid_ = child;
  next_start_ = std::chrono::steady_clock::now() + cache_restart_backoff;
  client_.close();
  log::info("cache: redis-server started (pid ", child, ") as ",
            replica_of.empty() ? "a primary" : "a replica of " + replica_of, ", port ", settings_.port);
  return true;
}

bool CacheManager::ensure_server(const CacheState& state, const std::vector<NodeRow>& nodes) {
  if (server_pid_ > 0) return true;
  if (std::chrono::steady_clock::now() < next_start_) return false;
  const std::optional<std::int64_t> primary = state.cluster.primary;
  if (!primary) return spawn("");  // a new cluster: everybody starts empty, the election follows
  if (*primary != self_id_) {
    const std::optional<std::string> address = address_of(*primary, nodes);
    if (!address) {
      warn_once("the cache primary (node " + std::to_string(*primary) + ") has no service address");
      return false;
    }
    return spawn(*address);
  }
  // The cluster still names this node primary, but its server is starting empty: hand the role to
  // the live replica that holds the most, if any (reports newer than the failover window, by the
  // wall clock: a start-up decision, before this node has watched anything change).
  const std::int64_t now_ms = unix_now_ms();
  std::optional<CacheNodeRow> best;
  for (const CacheNodeRow& row : state.nodes) {
    if (row.node_id == self_id_ || row.role == "down" || row.offset <= 0) continue;
    if (now_ms - row.at_ms > 2 * cache_failover_after.count()) continue;
    if (!best || row.offset > best->offset) best = row;
  }
  if (best) {
    Checked<bool> moved = CacheStore(store_).set_primary("node:" + self_name_, best->node_id, state.cluster.epoch,
                                                         "the primary restarted empty", unix_now());
    if (!moved || !*moved) {  // failed, or the epoch moved meanwhile: look again next round
      if (!moved) warn_once(moved.problem().message);
      return false;
    }
    const std::optional<std::string> address = address_of(best->node_id, nodes);
    if (!address) return false;
    log::info("cache: this node restarted as the cache primary with no data: node ", best->node_id,
              " (offset ", best->offset, ") takes over");
    return spawn(*address);
  }
  return spawn("");
}

void CacheManager::step() {
  if (!settings_.enabled) return;
  reap();
  CacheStore caches(store_);
  Checked<CacheState> state = caches.state();
  if (!state) {
    warn_once(state.problem().message);
    return;
  }
  Checked<std::vector<NodeRow>> nodes = store_.nodes();
  if (!nodes) {
    warn_once(nodes.problem().message);
    return;
  }
  password_ = state->cluster.password;
  const auto now = std::chrono::steady_clock::now();
  // A node is alive while reports of a live server keep arriving: one slow INFO ("down") or one
  // slow read here is not a death; cache_failover_after without a good report is.
  const bool watched = now - last_read_ <= observation_gap;
  last_read_ = now;
  for (const CacheNodeRow& row : state->nodes) {
    auto [entry, added] = observed_.try_emplace(row.node_id, Observed{row, now});
    if (!watched) entry->second.good = now;
    if (!added && !same_report(entry->second.row, row)) {
      entry->second.row = row;
      if (row.role != "down") entry->second.good = now;
    }
  }
  // The endpoint follows the cluster even while this node's own server is down.
  const std::optional<std::int64_t> primary = state->cluster.primary;
  const std::optional<std::string> primary_address = primary ? address_of(*primary, *nodes) : std::nullopt;
  if (primary_address) {
    endpoint_.set_upstream(CacheUpstream{*primary_address, settings_.port, password_,
                                         static_cast<std::uint64_t>(state->cluster.epoch)});
  } else {
    endpoint_.set_upstream(std::nullopt);
  }

  CacheNodeRow mine{self_id_, "down", 0, state->cluster.epoch, unix_now_ms()};
  std::string info;
  if (ensure_server(*state, *nodes)) {
    if (const std::optional<resp::Value> answer = call({"INFO"}); answer && answer->kind == resp::Value::Kind::bulk) {
      info = answer->text;
      mine.role = info_field(info, "role") == "master" ? "primary" : "replica";
      mine.offset = info_number(info, "master_repl_offset");
    }
  }
  if (Checked<Done> reported = caches.report(mine); !reported) warn_once(reported.problem().message);
  registry_.gauge("stacknode_cache_up", "1 when this node's redis-server answered its last INFO")
      .set(info.empty() ? 0 : 1);
  if (info.empty()) return;

  // Failover: every node may propose; the conditional write lets one proposal per epoch win.
  std::set<std::int64_t> alive = {self_id_};
  for (const auto& [node_id, seen] : observed_) {
    if (node_id != self_id_ && now - seen.good < cache_failover_after) alive.insert(node_id);
  }
  CacheState current = *state;
  for (CacheNodeRow& row : current.nodes) {
    if (row.node_id == self_id_) row = mine;
  }
  if (std::none_of(current.nodes.begin(), current.nodes.end(), [&](const CacheNodeRow& row) { return row.node_id == self_id_; })) {
    current.nodes.push_back(mine);
  }
  if (const std::optional<std::int64_t> target = cache_promotion(current, alive);
      target && proposed_epoch_ != state->cluster.epoch) {
    const std::string reason = state->cluster.primary
                                   ? "node " + std::to_string(*state->cluster.primary) + " stopped reporting"
                                   : "the first primary";
    Checked<bool> moved =
        caches.set_primary("node:" + self_name_, *target, state->cluster.epoch, reason, unix_now());
    // Decided (here, or by another node first): not again for this epoch. A failed write is
    // tried again next round.
    if (moved) proposed_epoch_ = state->cluster.epoch;
    if (!moved) warn_once(moved.problem().message);
    if (moved && *moved) log::info("cache: node ", *target, " is the cache primary now (", reason, ")");
    return;  // the next round applies it
  }

  // This server's role, as the cluster says.
  if (primary == self_id_) {
    if (mine.role != "primary") {
      call({"REPLICAOF", "NO", "ONE"});
      log::info("cache: this node's redis-server is the primary (epoch ", state->cluster.epoch, ")");
      mine.role = "primary";  // for /metrics below: what it is now
    }
    // Bound what a primary cut off from every replica accepts (nothing on a one-node cluster).
    // Only while another live node's server is there to replicate: a lone survivor keeps writing.
    call({"CONFIG", "SET", "min-replicas-to-write", alive.size() > 1 ? "1" : "0"});
    call({"CONFIG", "SET", "min-replicas-max-lag", std::to_string(cache_min_replica_lag_s)});
  } else if (primary_address) {
    if (mine.role != "replica" || info_field(info, "master_host") != *primary_address ||
        info_number(info, "master_port") != settings_.port) {
      call({"REPLICAOF", *primary_address, std::to_string(settings_.port)});
      log::info("cache: this node's redis-server replicates ", *primary_address, " (epoch ", state->cluster.epoch,
                ")");
      mine.role = "replica";
    }
  }
  // Counters for /metrics.
  registry_.gauge("stacknode_cache_role", "1 when this node's redis-server is the primary, 0 a replica")
      .set(mine.role == "primary" ? 1 : 0);
  registry_.gauge("stacknode_cache_epoch", "the cache's failover epoch as this node last read it")
      .set(static_cast<double>(state->cluster.epoch));
  registry_.gauge("stacknode_cache_connected_replicas", "replicas connected to this node's server")
      .set(static_cast<double>(info_number(info, "connected_slaves")));
  registry_.gauge("stacknode_cache_used_memory_bytes", "memory this node's redis-server uses")
      .set(static_cast<double>(info_number(info, "used_memory")));
  std::int64_t lag = 0;
  for (const CacheNodeRow& row : state->nodes) {
    if (primary && row.node_id == *primary && row.node_id != self_id_) lag = std::max<std::int64_t>(0, row.offset - mine.offset);
  }
  registry_.gauge("stacknode_cache_replication_lag_bytes",
                  "how far this replica's offset is behind the primary's last report (0 on the primary)")
      .set(static_cast<double>(lag));
  for (auto& [key, seen, name, help] :
       {std::tuple{"keyspace_hits", &hits_seen_, "stacknode_cache_hits_total", "lookups that found their key"},
        std::tuple{"keyspace_misses", &misses_seen_, "stacknode_cache_misses_total", "lookups that found nothing"}}) {
    const auto value = static_cast<double>(info_number(info, key));
    // A restarted server counts from 0 again: what it counted since is new.
    registry_.counter(name, help).inc(value >= *seen ? value - *seen : value);
    *seen = value;
  }
  last_problem_.clear();
}

void CacheManager::stop() {
  endpoint_.stop();
  client_.close();
  if (server_pid_ <= 0) return;
  ::kill(server_pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + cache_stop_wait;
  while (::waitpid(server_pid_, nullptr, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(server_pid_, SIGKILL);
      ::waitpid(server_pid_, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(stop_poll);
  }
  server_pid_ = -1;
}

}  // namespace stacknode::node
