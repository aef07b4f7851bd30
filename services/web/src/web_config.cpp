// Reads and validates stacknode-web's node.cfg settings; see web_config.hpp and the table of keys
// in services/web/README.md.
#include "web_config.hpp"

#include <set>
#include <thread>

#include "served_by.hpp"

namespace stacknode::web {
namespace {

// Ranges for settings: wide enough for any sane deployment, narrow enough to catch unit mistakes
// (seconds written as milliseconds and the like).
constexpr std::int64_t max_threads = 256;
constexpr std::int64_t min_timeout_ms = 10;
constexpr std::int64_t max_timeout_ms = 24 * 3600 * 1000;
constexpr std::int64_t min_header_bytes = 1024;
constexpr std::int64_t max_header_bytes = 1024 * 1024;
constexpr std::int64_t max_body_bytes = 1024ll * 1024 * 1024;
constexpr std::int64_t max_cache_bytes = 64ll * 1024 * 1024 * 1024;
constexpr std::int64_t max_retries = 10;
constexpr std::int64_t max_threshold = 100;

std::chrono::milliseconds milliseconds(const config::Section& section, std::string_view key,
                                       std::chrono::milliseconds fallback) {
  return std::chrono::milliseconds(
      section.get_int(key, fallback.count(), min_timeout_ms, max_timeout_ms));
}

void check_address(const config::Section& section, std::string_view key, const std::string& value) {
  try {
    http::parse_endpoint(value);
  } catch (const std::invalid_argument& bad) {
    section.fail(key, bad.what());
  }
}

PoolConfig load_pool(const config::Section& section) {
  PoolConfig pool;
  pool.name = section.get_string("name", "");
  if (pool.name.empty()) section.fail("name", "every pool needs a name");
  pool.upstreams = section.get_strings("upstreams");
  if (pool.upstreams.empty()) section.fail("upstreams", "a pool needs at least one upstream");
  for (const auto& upstream : pool.upstreams) {
    check_address(section, "upstreams", upstream);
    if (http::parse_endpoint(upstream).port() == 0) section.fail("upstreams", "port 0 is not an upstream");
  }
  pool.health_path = section.get_string("health_path", pool.health_path);
  if (pool.health_path.empty() || pool.health_path.front() != '/') {
    section.fail("health_path", "must start with '/'");
  }
  pool.health_interval = milliseconds(section, "health_interval_ms", pool.health_interval);
  pool.health_timeout = milliseconds(section, "health_timeout_ms", pool.health_timeout);
  pool.rise = static_cast<int>(section.get_int("rise", pool.rise, 1, max_threshold));
  pool.fall = static_cast<int>(section.get_int("fall", pool.fall, 1, max_threshold));
  pool.max_fails = static_cast<int>(section.get_int("max_fails", pool.max_fails, 1, max_threshold));
  pool.eject_duration = milliseconds(section, "eject_ms", pool.eject_duration);
  pool.connect_timeout = milliseconds(section, "connect_timeout_ms", pool.connect_timeout);
  pool.response_timeout = milliseconds(section, "response_timeout_ms", pool.response_timeout);
  pool.retries = static_cast<int>(section.get_int("retries", pool.retries, 0, max_retries));
  return pool;
}

}  // namespace

WebConfig load_web_config(const config::Section& root) {
  WebConfig web;
  const auto paths = root.section("paths");
  const std::string state_dir = paths.get_string("state_dir", "/var/lib/stacknode");
  web.runtime_dir = paths.get_string("runtime_dir", "/run/stacknode");

  const auto section = root.section("web");
  const std::string listen_http = section.get_string("listen_http", "0.0.0.0:80");
  const std::string listen_https = section.get_string("listen_https", "0.0.0.0:443");
  const auto tls = section.section("tls");
  web.tls_certificate = tls.get_string("certificate", "");
  web.tls_key = tls.get_string("key", "");
  if (web.tls_certificate.empty() != web.tls_key.empty()) {
    tls.fail(web.tls_certificate.empty() ? "certificate" : "key",
             "certificate and key go together: set both or neither");
  }
  if (!listen_http.empty()) {
    check_address(section, "listen_http", listen_http);
    web.listeners.push_back({listen_http, false});
  }
  // HTTPS listens only when a certificate is configured.
  if (!listen_https.empty() && !web.tls_certificate.empty()) {
    check_address(section, "listen_https", listen_https);
    web.listeners.push_back({listen_https, true});
  }
  if (web.listeners.empty()) section.fail("listen_http", "no listener: set listen_http or TLS");

  const auto cores = std::max(1u, std::thread::hardware_concurrency());
  const auto threads = section.get_int("threads", 0, 0, max_threads);
  web.threads = threads == 0 ? cores : static_cast<unsigned>(threads);

  // stacknoded's sites live under paths.content_dir; its `default` site is what a node serves.
  const std::string sites_dir = paths.get_string("content_dir", state_dir + "/content");
  web.content_dir_managed = !section.has("content_dir");
  web.content_dir = section.get_string("content_dir", sites_dir + "/default/current");
  web.index_files = section.get_strings("index_files", web.index_files);
  for (const auto& index : web.index_files) {
    if (index.empty() || index.find('/') != std::string::npos || index == "." || index == "..") {
      section.fail("index_files", "an index file is a plain file name");
    }
  }
  web.access_log = section.get_string("access_log", "");

  // X-Served-By: web.served_by when set ("" turns it off), else this node's node.name. node.name
  // is checked by stacknoded only for its length, so a name that cannot go in a header is an
  // error here too, naming both keys.
  const std::string served_by_rule = "1 to " + std::to_string(served_by_max_length) +
                                     " characters of A-Z a-z 0-9 . _ -, or \"\" for no header";
  if (section.has("served_by")) {
    web.served_by = section.get_string("served_by", "");
    if (!web.served_by.empty() && !valid_served_by(web.served_by)) {
      section.fail("served_by", "\"" + web.served_by + "\" is not valid: " + served_by_rule);
    }
  } else {
    const auto node = root.section("node");
    web.served_by = node.get_string("name", "");
    if (!web.served_by.empty() && !valid_served_by(web.served_by)) {
      node.fail("name", "\"" + web.served_by + "\" cannot be the default of web.served_by (" +
                            served_by_rule + "); set web.served_by");
    }
  }

  const auto limits = section.section("limits");
  web.limits.header_bytes = static_cast<std::uint32_t>(
      limits.get_int("header_bytes", web.limits.header_bytes, min_header_bytes, max_header_bytes));
  web.limits.body_bytes = static_cast<std::uint64_t>(
      limits.get_int("body_bytes", static_cast<std::int64_t>(web.limits.body_bytes), 0, max_body_bytes));
  web.limits.header_timeout = milliseconds(limits, "header_timeout_ms", web.limits.header_timeout);
  web.limits.body_timeout = milliseconds(limits, "body_timeout_ms", web.limits.body_timeout);
  web.limits.idle_timeout = milliseconds(limits, "idle_timeout_ms", web.limits.idle_timeout);
  web.limits.write_timeout = milliseconds(limits, "write_timeout_ms", web.limits.write_timeout);
  web.limits.shutdown_grace = milliseconds(limits, "shutdown_grace_ms", web.limits.shutdown_grace);

  const auto cache = section.section("cache");
  web.cache_enabled = cache.get_bool("enabled", true);
  web.cache.max_bytes = static_cast<std::size_t>(
      cache.get_int("max_bytes", static_cast<std::int64_t>(web.cache.max_bytes), 0, max_cache_bytes));
  web.cache.max_object_bytes = static_cast<std::size_t>(cache.get_int(
      "max_object_bytes", static_cast<std::int64_t>(web.cache.max_object_bytes), 0, max_cache_bytes));

  std::set<std::string> pool_names;
  for (const auto& pool_section : section.sections("pools")) {
    PoolConfig pool = load_pool(pool_section);
    if (!pool_names.insert(pool.name).second) pool_section.fail("name", "duplicate pool name");
    web.pools.push_back(std::move(pool));
  }
  std::set<std::string> prefixes;
  for (const auto& route_section : section.sections("routes")) {
    RouteConfig route;
    route.prefix = route_section.get_string("prefix", "");
    if (route.prefix.empty() || route.prefix.front() != '/') {
      route_section.fail("prefix", "a route prefix starts with '/'");
    }
    if (!prefixes.insert(route.prefix).second) route_section.fail("prefix", "duplicate route prefix");
    route.pool = route_section.get_string("pool", "");
    if (pool_names.count(route.pool) == 0) {
      route_section.fail("pool", "no pool named '" + route.pool + "' in web.pools");
    }
    route.cache = route_section.get_bool("cache", true);
    route.strip_prefix = route_section.get_bool("strip_prefix", false);
    web.routes.push_back(std::move(route));
  }
  return web;
}

}  // namespace stacknode::web
