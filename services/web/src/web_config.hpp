// stacknode-web's settings: the `web` section of node.cfg (and `paths`, and `node.name` as the
// default of web.served_by), read once at start and again on SIGHUP. Every value is checked
// here, so the rest of the daemon can trust it; a bad value throws config::ConfigError naming
// file:line and key (exit status 2 at start; at reload the old configuration stays).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "response_cache.hpp"
#include "stacknode/common/config.hpp"
#include "stacknode/common/http_server.hpp"

namespace stacknode::web {

struct PoolConfig {
  std::string name;
  std::vector<std::string> upstreams;  // "host:port", IP addresses only (no DNS on a node)
  std::string health_path = "/healthz";
  std::chrono::milliseconds health_interval{2'000};
  std::chrono::milliseconds health_timeout{1'000};
  int rise = 2;  // consecutive good checks before a down upstream is used again
  int fall = 3;  // consecutive bad checks before an up upstream is taken out
  // Passive ejection: this many consecutive failed proxy attempts take an upstream out for
  // eject_duration, without waiting for the next health check.
  int max_fails = 3;
  std::chrono::milliseconds eject_duration{10'000};
  std::chrono::milliseconds connect_timeout{1'000};
  std::chrono::milliseconds response_timeout{30'000};
  int retries = 1;  // further upstreams tried after a failure, when safe (see proxy.hpp)
};

struct RouteConfig {
  std::string prefix;  // path prefix, matched against the normalised path; longest wins
  std::string pool;
  bool cache = true;          // responses may be cached (subject to Cache-Control)
  bool strip_prefix = false;  // "/api/x" goes upstream as "/x"
};

struct WebConfig {
  std::vector<http::Listener> listeners;
  unsigned threads = 1;
  http::ServerLimits limits;
  std::string content_dir;
  // True when content_dir is the default, stacknoded's site (paths.content_dir/default/current):
  // it may appear after stacknode-web starts (answers are 503 until then). A content_dir set in
  // node.cfg must exist at start-up.
  bool content_dir_managed = false;
  std::vector<std::string> index_files{"index.html"};
  std::string access_log;  // file path; "-" for stderr; "" for none
  std::string tls_certificate;
  std::string tls_key;
  bool cache_enabled = true;
  CacheLimits cache;
  std::vector<RouteConfig> routes;
  std::vector<PoolConfig> pools;
  std::string runtime_dir;  // where web.listen (the bound addresses) is written
  // X-Served-By on every answer (served_by.hpp); "" sends none. Defaults to node.name.
  std::string served_by;
};

// Reads and validates `web`, `paths` and (for served_by's default) `node.name` from the root of
// node.cfg.
WebConfig load_web_config(const config::Section& root);

}  // namespace stacknode::web
