// node.cfg for stacknoded and stackctl; see node_config.hpp.
#include "stacknode/node/node_config.hpp"

#include "stacknode/node/join_token.hpp"
#include "stacknode/node/pki.hpp"

namespace stacknode::node {

NodeConfig load_node_config(const config::Section& root) {
  NodeConfig config;
  config.db = db::load_db_config(root);
  const config::Section paths = root.section("paths");
  config.state_dir = paths.get_string("state_dir", "/var/lib/stacknode");
  config.runtime_dir = paths.get_string("runtime_dir", "/run/stacknode");
  config.content_dir = paths.get_string("content_dir", (config.state_dir / "content").string());

  const config::Section node = root.section("node");
  if (!node.has("name")) node.fail("name", "required: this box's name in the cluster");
  config.name = node.get_string("name", "");
  if (config.name.empty() || config.name.size() > pki::node_name_max_length) {
    node.fail("name", "1 to " + std::to_string(pki::node_name_max_length) + " characters");
  }
  if (!node.has("api_address")) node.fail("api_address", "required: IP:port of this box's API");
  config.api_address = node.get_string("api_address", "");
  if (!valid_member_address(config.api_address)) node.fail("api_address", "not IP:port (no DNS in a rack)");

  const config::Section api = root.section("api");
  config.api_listen = api.get_string("listen", config.api_address);
  try {
    http::parse_endpoint(config.api_listen);
  } catch (const std::exception& error) {
    api.fail("listen", error.what());
  }
  config.api_threads = static_cast<unsigned>(api.get_int("threads", 1, 1, max_api_threads));
  config.api_workers = static_cast<unsigned>(api.get_int("workers", default_api_workers, 1, max_api_workers));

  if (root.has("dataplane")) {
    config.dataplane_socket =
        root.section("dataplane").get_string("control_socket", (config.runtime_dir / "dataplane.sock").string());
  }
  config.manage_kernel = root.section("lb").get_bool("manage_kernel", true);
  const config::Section cache = root.section("cache");
  config.cache_enabled = cache.get_bool("enabled", config.cache_enabled);
  config.cache_port = static_cast<std::uint16_t>(cache.get_int("port", config.cache_port, 1, 65535));
  config.cache_endpoint = cache.get_string("endpoint", config.cache_endpoint);
  try {
    http::parse_endpoint(config.cache_endpoint);
  } catch (const std::exception& error) {
    cache.fail("endpoint", error.what());
  }
  config.cache_max_memory_mb =
      static_cast<std::uint32_t>(cache.get_int("max_memory_mb", config.cache_max_memory_mb, 1, max_cache_memory_mb));
  config.redis_server = cache.get_string("redis_server", config.redis_server);
  return config;
}

}  // namespace stacknode::node
