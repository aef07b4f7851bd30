// stacknode-dataplane: the node's DPDK load balancer. Reads node.cfg's `dataplane` section, builds
// the EAL command line, brings the ports up, serves the control socket on a control thread, and
// runs the workers on the lcores (worker 0 on the main lcore) until SIGTERM/SIGINT.
// Start-up problems are one line a person can act on and exit status 2.
#include <sched.h>
#include <unistd.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <csignal>
#include <functional>
#include <thread>

#include "control_server.hpp"
#include "runtime.hpp"
#include "settings.hpp"
#include "stacknode/common/daemon.hpp"
#include "stacknode/common/log.hpp"

namespace stacknode::dataplane {
namespace {

// How often the control thread reads punted ARP replies and sends due ARP requests and
// announcements: a backend is resolved within about this long after its reply arrives.
constexpr std::chrono::milliseconds housekeeping_interval{100};

HostFacts host_facts() {
  HostFacts host;
  host.hugepages = hugepages_available();
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  host.cpus = sched_getaffinity(0, sizeof cpus, &cpus) == 0
                  ? static_cast<unsigned>(CPU_COUNT(&cpus))
                  : std::max(1u, std::thread::hardware_concurrency());
  host.file_prefix = "stacknode-dataplane-" + std::to_string(::getpid());
  return host;
}

int serve(const config::Document& document, const daemon::Invocation& invocation) {
  const DataplaneSettings settings = load_settings(document.root());
  daemon::report_unread(document, {"dataplane", "paths", "log"});
  if (invocation.check_only) return daemon::exit_ok;

  const EalArguments eal = build_eal_arguments(settings, host_facts());
  if (!eal.error.empty()) {
    log::error("dataplane: ", eal.error);
    return daemon::exit_bad_config;
  }
  std::unique_ptr<Runtime> runtime;
  try {
    runtime = std::make_unique<Runtime>(settings, eal);
  } catch (const StartupError& error) {
    log::error("dataplane: ", error.what());
    return daemon::exit_bad_config;
  }

  boost::asio::io_context control_io(1);
  std::unique_ptr<ControlServer> control;
  try {
    control = std::make_unique<ControlServer>(control_io, *runtime, settings.control_socket);
  } catch (const std::exception& error) {
    log::error("dataplane: ", error.what());
    return daemon::exit_bad_config;
  }
  boost::asio::signal_set signals(control_io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code error, int signal_number) {
    if (error) return;
    log::info("dataplane: signal ", signal_number, ", stopping");
    runtime->stop();
    control_io.stop();
  });
  // ARP resolution and announcements run on the control thread between requests.
  boost::asio::steady_timer housekeeping(control_io);
  std::function<void()> schedule = [&] {
    housekeeping.expires_after(housekeeping_interval);
    housekeeping.async_wait([&](boost::system::error_code error) {
      if (error) return;
      runtime->housekeeping();
      schedule();
    });
  };
  schedule();
  std::thread control_thread([&control_io] { control_io.run(); });
  log::info("dataplane: control socket ", settings.control_socket, "; forwarding");
  daemon::notify_ready();
  runtime->run();  // returns after stop()
  daemon::notify_stopping();
  control_io.stop();
  control_thread.join();
  control.reset();
  runtime.reset();
  log::info("dataplane: stopped");
  return daemon::exit_ok;
}

}  // namespace
}  // namespace stacknode::dataplane

int main(int argc, char** argv) {
  return stacknode::daemon::run(
      argc, argv, "stacknode-dataplane",
      "DPDK L4 load balancer: Maglev, connection tracking, direct server return",
      stacknode::dataplane::serve);
}
