// stacknode-web: the node's web tier. Wires node.cfg's `web` section to the HTTP server base:
// requests whose path matches a route go to the reverse proxy (with the response cache), the rest
// to static content. SIGHUP re-reads node.cfg (routes, pools, content, X-Served-By, certificate,
// access log) without dropping connections; SIGTERM stops gracefully. Every answer of the handler
// carries X-Served-By (served_by.hpp): set by StaticFiles, by the proxy, and here for bad paths.
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "access_log.hpp"
#include "proxy.hpp"
#include "response_cache.hpp"
#include "semantics.hpp"
#include "served_by.hpp"
#include "stacknode/common/daemon.hpp"
#include "stacknode/common/log.hpp"
#include "static_files.hpp"
#include "web_config.hpp"

namespace stacknode::web {
namespace {

namespace bhttp = boost::beast::http;

// The access log is written out at least this often.
constexpr auto access_log_flush_interval = std::chrono::seconds(1);
// Name of the file in runtime_dir that lists the bound addresses, one "scheme address" a line.
constexpr std::string_view listen_file_name = "web.listen";

// One configuration's content and routes; swapped whole on reload.
struct Site {
  std::shared_ptr<StaticFiles> files;
  std::shared_ptr<ProxySite> proxy;
  std::string served_by;  // X-Served-By for the answers made here (bad paths); "" for none
};

std::shared_ptr<const Site> build_site(const WebConfig& config, const Site* previous,
                                       metrics::Registry& registry) {
  auto site = std::make_shared<Site>();
  site->served_by = config.served_by;
  site->files =
      std::make_shared<StaticFiles>(config.content_dir, config.index_files, config.served_by,
                                    !config.content_dir_managed);
  site->proxy = build_proxy_site(config, previous != nullptr ? previous->proxy.get() : nullptr, registry);
  return site;
}

class WebHandler final : public http::Handler {
 public:
  WebHandler(std::shared_ptr<const Site> site, unsigned threads) : per_thread_(threads) {
    publish(std::move(site));
  }

  void attach(Proxy& proxy) { proxy_ = &proxy; }

  // Thread-safe; requests already running keep the site they started with.
  void publish(std::shared_ptr<const Site> site) {
    std::lock_guard lock(mutex_);
    current_ = std::move(site);
    generation_.fetch_add(1, std::memory_order_release);
  }

  std::shared_ptr<const Site> current() {
    std::lock_guard lock(mutex_);
    return current_;
  }

  void handle(const http::RequestContext& context, http::Request& request,
              http::Respond respond) override {
    const Site& site = site_for(context.thread_index);
    const PathResult path = normalize_request_path(request.target());
    if (!path.ok) {
      auto refusal = http::text_response(bhttp::status::bad_request, request.version(),
                                         "bad request path: " + path.error + "\n");
      set_served_by(refusal, site.served_by);
      return respond(std::move(refusal));
    }
    if (const RouteConfig* route = site.proxy->match(path.path)) {
      return proxy_->handle(context, request, path.path, site.proxy, *route, std::move(respond));
    }
    respond(site.files->serve(request, path.path));
  }

 private:
  // Each thread keeps its own reference to the current site and refreshes it only when a reload
  // published a new one, so the request path takes no lock.
  struct alignas(64) ThreadSite {
    std::uint64_t generation = 0;
    std::shared_ptr<const Site> site;
  };
  const Site& site_for(unsigned thread_index) {
    ThreadSite& local = per_thread_[thread_index];
    const auto generation = generation_.load(std::memory_order_acquire);
    if (local.generation != generation || !local.site) {
      local.site = current();
      local.generation = generation;
    }
    return *local.site;
  }

  std::mutex mutex_;
  std::shared_ptr<const Site> current_;
  std::atomic<std::uint64_t> generation_{0};
  std::vector<ThreadSite> per_thread_;
  Proxy* proxy_ = nullptr;
};

void write_listen_file(const std::filesystem::path& runtime_dir, const WebConfig& config,
                       const std::vector<http::tcp::endpoint>& bound) {
  std::filesystem::create_directories(runtime_dir);
  const auto final_path = runtime_dir / listen_file_name;
  const auto temporary = final_path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    for (std::size_t index = 0; index < bound.size(); ++index) {
      const auto& endpoint = bound[index];
      out << (config.listeners[index].tls ? "https " : "http ")
          << (endpoint.address().is_v6() ? "[" + endpoint.address().to_string() + "]"
                                         : endpoint.address().to_string())
          << ':' << endpoint.port() << '\n';
    }
  }
  std::filesystem::rename(temporary, final_path);
}

bool same_listeners(const WebConfig& a, const WebConfig& b) {
  if (a.threads != b.threads || a.listeners.size() != b.listeners.size()) return false;
  for (std::size_t index = 0; index < a.listeners.size(); ++index) {
    if (a.listeners[index].address != b.listeners[index].address ||
        a.listeners[index].tls != b.listeners[index].tls) {
      return false;
    }
  }
  return true;
}

// Turns a start-up failure of a configured path into a configuration error that names the key.
template <typename Action>
auto as_config_error(const config::Section& section, std::string_view key, Action action) {
  try {
    return action();
  } catch (const std::runtime_error& failure) {
    if (dynamic_cast<const config::ConfigError*>(&failure) != nullptr) throw;
    section.fail(key, failure.what());
  }
}

int serve(const config::Document& document, const daemon::Invocation& invocation) {
  WebConfig config = load_web_config(document.root());
  const auto web_section = document.root().section("web");
  metrics::Registry registry;
  metrics::register_build_info(registry, "stacknode_web");

  auto site = as_config_error(web_section, "content_dir",
                              [&] { return build_site(config, nullptr, registry); });
  std::shared_ptr<http::TlsContext> tls;
  if (!config.tls_certificate.empty()) {
    tls = as_config_error(web_section.section("tls"), "certificate", [&] {
      return std::make_shared<http::TlsContext>(config.tls_certificate, config.tls_key);
    });
  }
  daemon::report_unread(document, {"web", "paths", "log"});
  if (invocation.check_only) {
    log::info("configuration ", document.file_name(), " is valid");
    return daemon::exit_ok;
  }

  std::unique_ptr<ResponseCache> cache;
  if (config.cache_enabled) cache = std::make_unique<ResponseCache>(config.cache, registry, "stacknode_web");

  http::ServerOptions options;
  options.listeners = config.listeners;
  options.threads = config.threads;
  options.limits = config.limits;
  options.metrics_prefix = "stacknode_web";
  options.server_header = "stacknode-web";

  WebHandler handler(site, config.threads);
  http::Server server(options, handler, registry, tls);
  server.bind();
  Proxy proxy(server, registry, cache.get());
  handler.attach(proxy);
  proxy.check_health_of(site->proxy);

  std::unique_ptr<AccessLog> access_log;
  if (!config.access_log.empty()) {
    access_log = as_config_error(web_section, "access_log",
                                 [&] { return std::make_unique<AccessLog>(config.access_log); });
    server.on_request([&access_log](const http::CompletedRequest& done) { access_log->record(done); });
  }
  boost::asio::steady_timer flush_timer(server.io(0));
  std::function<void()> schedule_flush = [&]() {
    flush_timer.expires_after(access_log_flush_interval);
    flush_timer.async_wait([&](boost::system::error_code error) {
      if (error) return;
      if (access_log) access_log->flush();
      schedule_flush();
    });
  };
  if (access_log) schedule_flush();

  server.on_reload([&]() {
    // Runs on thread 0. Anything wrong in the new configuration leaves the running one in place.
    try {
      const auto fresh_document = config::Document::load_file(invocation.config_path);
      WebConfig fresh = load_web_config(fresh_document->root());
      if (!same_listeners(config, fresh)) {
        log::warn("reload: listeners or threads changed; that takes a restart, keeping the old ones");
      }
      auto fresh_site = build_site(fresh, handler.current().get(), registry);
      handler.publish(fresh_site);
      proxy.check_health_of(fresh_site->proxy);
      if (tls) {
        std::string error;
        if (!tls->reload(error)) log::error("reload: TLS certificate kept: ", error);
      }
      if (access_log) {
        std::string error;
        if (!access_log->reopen(error)) log::error("reload: ", error);
      }
      fresh.listeners = config.listeners;  // what actually runs
      fresh.threads = config.threads;
      config = std::move(fresh);
      log::info("reload: configuration applied (", config.routes.size(), " routes, ",
                config.pools.size(), " pools)");
    } catch (const std::exception& failure) {
      log::error("reload failed, keeping the running configuration: ", failure.what());
    }
  });

  const auto bound = server.bound_endpoints();
  for (std::size_t index = 0; index < bound.size(); ++index) {
    log::info("listening on ", bound[index], config.listeners[index].tls ? " (https)" : " (http)",
              " with ", config.threads, " threads; content ", config.content_dir);
  }
  if (std::error_code missing; config.content_dir_managed && !std::filesystem::is_directory(config.content_dir, missing)) {
    log::warn("content ", config.content_dir, " does not exist yet (stacknoded creates it): answering 503 until then");
  }
  // web.listen tells whoever started us that we serve, so it is written from inside run(), on
  // thread 0: by then SIGTERM and SIGHUP have their handlers, and a signal sent the moment the
  // file appears stops or reloads the daemon instead of killing it.
  boost::asio::post(server.io(0), [&config, &bound]() {
    try {
      write_listen_file(config.runtime_dir, config, bound);
    } catch (const std::exception& failure) {
      log::warn("cannot write ", config.runtime_dir, "/", listen_file_name, ": ", failure.what());
    }
  });

  server.run();

  proxy.stop_health_checks();
  if (access_log) access_log->flush();
  std::error_code ignored;
  std::filesystem::remove(std::filesystem::path(config.runtime_dir) / listen_file_name, ignored);
  log::info("stopped");
  return daemon::exit_ok;
}

}  // namespace
}  // namespace stacknode::web

int main(int argc, char** argv) {
  return stacknode::daemon::run(argc, argv, "stacknode-web",
                                "The stacknode web tier: static content, reverse proxy, response "
                                "cache, TLS.",
                                stacknode::web::serve);
}
