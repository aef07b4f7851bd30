// The load-balancing loop; see load_balancer.hpp.
#include "load_balancer.hpp"

#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "stacknode/common/log.hpp"

extern char** environ;

namespace stacknode::node {
namespace {

namespace json = boost::json;

// Runs `ip ARGS...` (iproute2, found on PATH) and waits for it; its exit status.
int run_ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv_text = {"ip"};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& argument : argv_text) argv.push_back(argument.data());
  argv.push_back(nullptr);
  pid_t child = 0;
  if (posix_spawnp(&child, "ip", nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = -1;
  if (waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool write_sysctl(const std::string& name, const std::string& value) {
  std::ofstream file("/proc/sys/" + name);
  file << value << "\n";
  return static_cast<bool>(file);
}

}  // namespace

std::optional<json::object> dataplane_request(const std::string& socket_path, const json::object& request,
                                              std::string& error) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof address.sun_path) {
    error = "the control socket path is too long: " + socket_path;
    return std::nullopt;
  }
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return std::nullopt;
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    error = socket_path + ": " + std::strerror(errno) + " (is stacknode-dataplane running?)";
    return std::nullopt;
  }
  const std::string line = json::serialize(request) + "\n";
  const auto deadline = std::chrono::steady_clock::now() + dataplane_reply_timeout;
  const auto wait_for = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd waiting{fd, events, 0};
    return poll(&waiting, 1, static_cast<int>(left.count())) == 1;
  };
  for (std::size_t sent = 0; sent < line.size();) {
    if (!wait_for(POLLOUT)) {
      error = "the dataplane did not take the request within " + std::to_string(dataplane_reply_timeout.count()) + " ms";
      return std::nullopt;
    }
    const ssize_t wrote = send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (wrote <= 0) {
      error = std::string("send: ") + std::strerror(errno);
      return std::nullopt;
    }
    sent += static_cast<std::size_t>(wrote);
  }
  std::string reply;
  while (reply.find('\n') == std::string::npos) {
    if (reply.size() > max_dataplane_reply_bytes) {
      error = "the dataplane's reply is longer than " + std::to_string(max_dataplane_reply_bytes) + " bytes";
      return std::nullopt;
    }
    if (!wait_for(POLLIN)) {
      error = "no reply from the dataplane within " + std::to_string(dataplane_reply_timeout.count()) + " ms";
      return std::nullopt;
    }
    char buffer[4096];
    const ssize_t got = recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0) {
      error = "the dataplane closed the connection without a reply";
      return std::nullopt;
    }
    reply.append(buffer, static_cast<std::size_t>(got));
  }
  boost::system::error_code parse_error;
  json::value value = json::parse(reply.substr(0, reply.find('\n')), parse_error);
  if (parse_error || !value.is_object()) {
    error = "the dataplane's reply is not a JSON object";
    return std::nullopt;
  }
  return std::move(value.as_object());
}

LoadBalancer::LoadBalancer(ControlStore& store, std::int64_t self_id, LoadBalancerOptions options,
                           metrics::Registry& registry)
    : lb_(store),
      self_id_(self_id),
      options_(std::move(options)),
      next_version_(static_cast<std::uint64_t>(unix_now_ms())),
      registry_(registry) {
  registry_.gauge_callback("stacknode_vip_answered_count", "VIP addresses this node answers for now",
                           [this] { return static_cast<double>(owned().size()); });
}

void LoadBalancer::export_counters() {
  if (options_.dataplane_socket.empty()) return;
  std::string error;
  std::optional<json::object> reply = dataplane_request(options_.dataplane_socket, {{"op", "counters"}}, error);
  registry_.gauge("stacknode_dataplane_up", "1 when the local dataplane answered its last counters request")
      .set(reply ? 1.0 : 0.0);
  if (!reply) return;
  // A counter child fed from the dataplane's running total.
  const auto add = [&](std::string_view name, std::string_view help, const metrics::Labels& labels,
                       const json::value* total) {
    if (total == nullptr || !total->is_number()) return;
    const double value = total->to_number<double>();
    std::string key(name);
    for (const auto& [label, text] : labels) key += "|" + label + "=" + text;
    const auto last = exported_.find(key);
    const double previous = last == exported_.end() ? 0.0 : last->second;
    // Lower than before: the dataplane restarted and counts from zero again.
    const double delta = value >= previous ? value - previous : value;
    registry_.counter(name, help, labels).inc(delta);
    exported_[key] = value;
  };
  const auto field = [](const json::value& object, std::string_view key) -> const json::value* {
    return object.is_object() ? object.as_object().if_contains(key) : nullptr;
  };
  const auto text = [](const json::value* value) {
    return value != nullptr && value->is_string() ? std::string(value->as_string())
                                                  : value != nullptr ? json::serialize(*value) : std::string();
  };
  if (const json::value* services = reply->if_contains("services"); services && services->is_array()) {
    for (const json::value& service : services->as_array()) {
      const metrics::Labels vip_labels = {{"vip", text(field(service, "vip"))},
                                          {"protocol", text(field(service, "protocol"))},
                                          {"port", text(field(service, "port"))}};
      add("stacknode_dataplane_vip_packets_total", "packets the local dataplane forwarded for a VIP", vip_labels,
          field(service, "packets"));
      add("stacknode_dataplane_vip_bytes_total", "bytes the local dataplane forwarded for a VIP", vip_labels,
          field(service, "bytes"));
      add("stacknode_dataplane_vip_new_flows_total", "flows the local dataplane started for a VIP", vip_labels,
          field(service, "new_flows"));
      if (const json::value* backends = field(service, "backends"); backends && backends->is_array()) {
        for (const json::value& backend : backends->as_array()) {
          metrics::Labels labels = vip_labels;
          labels.push_back({"backend", text(field(backend, "address"))});
          add("stacknode_dataplane_backend_packets_total", "packets the local dataplane sent a backend of a VIP",
              labels, field(backend, "packets"));
          add("stacknode_dataplane_backend_new_flows_total", "flows the local dataplane started to a backend of a VIP",
              labels, field(backend, "new_flows"));
        }
      }
    }
  }
  if (const json::value* drops = reply->if_contains("drops"); drops && drops->is_object()) {
    for (const auto& [reason, count] : drops->as_object()) {
      add("stacknode_dataplane_drops_total", "frames the local dataplane dropped, by reason",
          {{"reason", std::string(reason)}}, &count);
    }
  }
}

std::set<std::string> LoadBalancer::owned_locked(Clock::time_point now) const {
  std::set<std::string> names;
  for (const auto& [vip, until] : held_until_) {
    if (until > now) names.insert(vip);
  }
  return names;
}

std::set<std::string> LoadBalancer::owned() const {
  std::lock_guard lock(mutex_);
  return owned_locked(Clock::now());
}

void LoadBalancer::step() {
  Checked<LbState> read = lb_.state();
  if (!read) {
    if (read.problem().message != last_step_problem_) log::warn("load balancing: ", read.problem().message);
    last_step_problem_ = read.problem().message;
    enforce();
    return;
  }
  const LbState& state = *read;
  const std::int64_t now_s = unix_now();
  std::vector<std::int64_t> candidates;
  for (const NodeRow& node : state.nodes) {
    if (online(node, now_s) && service_address(node)) candidates.push_back(node.id);
  }
  std::set<std::string> addresses;
  for (const VipRow& vip : state.vips) addresses.insert(vip.address);
  std::map<std::string, Clock::time_point> before;
  {
    std::lock_guard lock(mutex_);
    before = held_until_;
  }
  std::erase_if(observed_, [&](const auto& entry) { return !addresses.contains(entry.first); });
  std::erase_if(free_since_, [&](const auto& entry) { return !addresses.contains(entry.first); });
  bool can_answer = false;
  {
    std::lock_guard io(io_mutex_);
    can_answer = dataplane_answers_;
  }
  if (!can_answer && !said_cannot_answer_) {
    log::warn("load balancing: ", options_.dataplane_socket.empty() ? "this node runs no dataplane"
                                                                     : "the dataplane does not answer",
              ": this node takes and renews no VIP leases");
  }
  said_cannot_answer_ = !can_answer;
  std::map<std::string, Clock::time_point> held;
  for (const std::string& address : addresses) {
    const auto lease = std::find_if(state.leases.begin(), state.leases.end(),
                                    [&](const VipLease& row) { return row.address == address; });
    const std::int64_t now_ms = unix_now_ms();
    const bool mine = lease != state.leases.end() && lease->node_id == self_id_;
    // Another node's lease is stale when this node has seen the very same row (holder and
    // expiry: a renewal changes the expiry) for a whole lease on its own steady clock. No wall
    // clock is compared across nodes; the holder stopped answering lease_margin before.
    bool stale = false;
    if (lease != state.leases.end() && !mine) {
      const auto seen = observed_.find(address);
      if (seen == observed_.end() || seen->second.row.node_id != lease->node_id ||
          seen->second.row.expires_at_ms != lease->expires_at_ms) {
        observed_[address] = {*lease, Clock::now()};
      } else {
        stale = Clock::now() - seen->second.since >= vip_lease;
      }
    }
    const bool free = lease == state.leases.end() || stale;
    // A lease that went stale was not renewed: its holder is dead or cut off even while its
    // heartbeat still looks recent (offline_after is 20 s), so it is no candidate for it.
    std::vector<std::int64_t> takers = candidates;
    if (stale) std::erase(takers, lease->node_id);
    // An address nobody took for a whole lease: its preferred node cannot answer (no dataplane,
    // or a dead one), so the next in the order may take it, one more each lease.
    if (lease == state.leases.end()) {
      const Clock::time_point since = free_since_.try_emplace(address, Clock::now()).first->second;
      for (auto passed = (Clock::now() - since) / vip_lease; passed > 0 && takers.size() > 1; --passed) {
        std::erase(takers, *preferred_owner(address, takers));
      }
    } else {
      free_since_.erase(address);
    }
    if (!can_answer) continue;  // (what it held runs out on its own: the enforcer drops it)
    if (!mine && !(free && preferred_owner(address, takers) == self_id_)) continue;
    const Clock::time_point sent = Clock::now();
    const std::optional<VipLease> replacing = stale ? std::optional<VipLease>(*lease) : std::nullopt;
    Checked<bool> claimed = lb_.claim_lease(address, self_id_, now_ms, vip_lease.count(), replacing);
    if (!claimed) {
      // Unknown outcome (the database did not answer): what this node held runs out on its own.
      if (const auto kept = before.find(address); kept != before.end()) held.insert(*kept);
      if (claimed.problem().message != last_step_problem_) log::warn("VIP ", address, ": ", claimed.problem().message);
      last_step_problem_ = claimed.problem().message;
      continue;
    }
    if (*claimed) held[address] = sent + vip_lease - lease_margin;
  }
  keep_kernel(state);
  {
    std::lock_guard lock(mutex_);
    for (const auto& [vip, until] : held) {
      if (!held_until_.contains(vip) || held_until_[vip] <= Clock::now()) {
        log::info("VIP address ", vip, ": this node answers for it");
      }
    }
    for (const auto& [vip, until] : held_until_) {
      if (!held.contains(vip) && until > Clock::now()) log::info("VIP address ", vip, ": no longer answered here");
    }
    held_until_ = std::move(held);
    state_ = std::move(*read);
  }
  push(true);
}

void LoadBalancer::enforce() { push(false); }

void LoadBalancer::release() {
  if (options_.dataplane_socket.empty()) return;
  std::lock_guard io(io_mutex_);
  json::object empty{{"version", 0}, {"services", json::array()}, {"owned_vips", json::array()}};
  const std::string problem = apply(empty, json::serialize(empty));
  if (!problem.empty()) log::warn("dataplane: could not clear its VIPs: ", problem);
}

void LoadBalancer::push(bool check_restart) {
  if (options_.dataplane_socket.empty()) return;
  json::object config;
  std::size_t vips = 0;
  std::size_t answered = 0;
  {
    std::lock_guard lock(mutex_);
    if (!state_) return;
    const std::set<std::string> owned = owned_locked(Clock::now());
    config = dataplane_config(*state_, owned, 0, unix_now());
    vips = state_->vips.size();
    answered = owned.size();
  }
  const std::string text = json::serialize(config);
  std::lock_guard io(io_mutex_);
  std::string error;
  if (text == pushed_) {
    if (!check_restart) return;
    // Unchanged: renew the dataplane's hold on the owned VIPs. A dataplane that restarted (it
    // has another version) or whose hold lapsed refuses, and gets the whole config again.
    std::optional<json::object> renewed = dataplane_request(
        options_.dataplane_socket,
        {{"op", "renew"}, {"version", pushed_version_}, {"for_ms", dataplane_ownership.count()}}, error);
    if (!renewed) {
      if (error != last_push_problem_) log::warn("dataplane: ", error);
      last_push_problem_ = error;
      dataplane_answers_ = false;
      return;
    }
    const json::value* ok = renewed->if_contains("ok");
    if (ok != nullptr && ok->is_bool() && ok->as_bool()) {
      dataplane_answers_ = true;
      return;
    }
  }
  const std::string problem = apply(std::move(config), text);
  dataplane_answers_ = problem.empty();
  if (!problem.empty()) {
    if (problem != last_push_problem_) log::warn("dataplane: ", problem);
    last_push_problem_ = problem;
    return;
  }
  log::info("dataplane: config ", pushed_version_, " applied (", vips, " VIPs, ", answered, " answered here)");
}

std::string LoadBalancer::apply(json::object config, const std::string& text) {
  const std::uint64_t version = ++next_version_;
  config["version"] = version;
  config["owned_for_ms"] = dataplane_ownership.count();
  std::string error;
  std::optional<json::object> reply =
      dataplane_request(options_.dataplane_socket, {{"op", "apply"}, {"config", std::move(config)}}, error);
  pushed_.clear();
  if (!reply) return error;
  const json::value* ok = reply->if_contains("ok");
  if (ok == nullptr || !ok->is_bool() || !ok->as_bool()) {
    const json::value* message = reply->if_contains("error");
    return "refused the config: " +
           (message && message->is_string() ? std::string(message->as_string()) : std::string("no reason given"));
  }
  pushed_ = text;
  pushed_version_ = version;
  return "";
}

void LoadBalancer::keep_kernel(const LbState& state) {
  if (!options_.manage_kernel) return;
  if (!kernel_prepared_) {
    // Only the dataplane answers ARP for a VIP: the kernel answers only for addresses on the
    // interface asked (arp_ignore 1) and never announces a VIP as a source (arp_announce 2).
    bool ok = write_sysctl("net/ipv4/conf/all/arp_ignore", "1") && write_sysctl("net/ipv4/conf/all/arp_announce", "2");
    if (!ok) log::warn("load balancing: cannot set arp_ignore/arp_announce (not root?): VIP traffic may not arrive");
    // A tunl0 an earlier run left up is taken down below unless an ipip VIP still needs it.
    ipip_ready_ = std::filesystem::exists("/sys/class/net/tunl0");
    kernel_prepared_ = true;
  }
  // IPIP decapsulation for VIPs in ipip mode: the kernel's catch-all IPIP device tunl0 takes
  // packets encapsulated to this node's address and delivers the inner packet (to a VIP on lo).
  // Their source is the client, which this node reaches through svc0, not tunl0: strict reverse-
  // path filtering would drop them, so tunl0 gets rp_filter 0. Put down again when no ipip VIP is left.
  const bool want_ipip = std::any_of(state.vips.begin(), state.vips.end(), [](const VipRow& vip) { return vip.mode == "ipip"; });
  // (A kernel found without IPIP is not asked again every round: it does not grow one.)
  if (want_ipip && !ipip_ready_ && !ipip_missing_) {
    run_ip({"link", "add", "name", "tunl0", "type", "ipip"});  // fails harmlessly where it exists
    if (!std::filesystem::exists("/sys/class/net/tunl0")) {
      log::error("load balancing: this kernel has no IPIP device (CONFIG_NET_IPIP): VIPs in mode ipip cannot "
                 "reach this node's services; use mode l2_dsr, or a kernel with IPIP");
      ipip_missing_ = true;
    } else if (run_ip({"link", "set", "tunl0", "up"}) == 0 && write_sysctl("net/ipv4/conf/tunl0/rp_filter", "0")) {
      ipip_ready_ = true;
      log::info("load balancing: tunl0 up (IPIP decapsulation for VIPs in ipip mode)");
      // The kernel filters by the larger of `all` and the device's setting.
      std::ifstream all("/proc/sys/net/ipv4/conf/all/rp_filter");
      int strict = 0;
      if (all >> strict && strict == 1) {
        log::warn("load balancing: net.ipv4.conf.all.rp_filter is 1 (strict): decapsulated VIP traffic will be "
                  "dropped; set it to 0 or 2");
      }
    } else {
      log::warn("load balancing: cannot put tunl0 up or set its rp_filter (not root?)");
    }
  } else if (!want_ipip && ipip_ready_) {
    run_ip({"link", "set", "tunl0", "down"});
    ipip_ready_ = false;
    log::info("load balancing: tunl0 down (no VIP in ipip mode)");
  }

  std::set<std::string> wanted;
  for (const VipRow& vip : state.vips) wanted.insert(vip.address);
  for (const std::string& address : wanted) {
    if (kernel_vips_.contains(address)) continue;
    // 0 added, 2 "exists" (a restart of stacknoded finds its own addresses there).
    const int status = run_ip({"addr", "add", address + "/32", "dev", "lo"});
    if (status == 0 || status == 2) {
      kernel_vips_.insert(address);
    } else if (address + ":" + std::to_string(status) != last_step_problem_) {
      log::warn("load balancing: 'ip addr add ", address, "/32 dev lo' failed (status ", status, ")");
      last_step_problem_ = address + ":" + std::to_string(status);
    }
  }
  for (auto address = kernel_vips_.begin(); address != kernel_vips_.end();) {
    if (wanted.contains(*address)) {
      ++address;
      continue;
    }
    run_ip({"addr", "del", *address + "/32", "dev", "lo"});
    address = kernel_vips_.erase(address);
  }
}

}  // namespace stacknode::node
