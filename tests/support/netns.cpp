// Network namespaces for tests; see netns.hpp.
#include "netns.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "process.hpp"

namespace stacknode::test {
namespace {

// Where iproute2 keeps a bind mount of each named namespace.
constexpr const char* named_namespaces_dir = "/run/netns";

std::string full_name(std::string_view name) {
  return std::string(namespace_prefix) + std::to_string(::getpid()) + "-" + std::string(name);
}

// iproute2's `ip` by its full path (Process runs argv[0] without a PATH search).
const std::string& ip_program() {
  static const std::string path = [] {
    const CommandResult found = run_command({"sh", "-c", "command -v ip"});
    std::string text = found.output;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return found.status == 0 && !text.empty() ? text : std::string("/usr/sbin/ip");
  }();
  return path;
}

std::string joined(const std::vector<std::string>& argv) {
  std::string text;
  for (const auto& argument : argv) text += (text.empty() ? "" : " ") + argument;
  return text;
}

}  // namespace

void run_or_throw(const std::vector<std::string>& argv) {
  const CommandResult result = run_command(argv);
  if (result.status != 0) {
    throw std::runtime_error("`" + joined(argv) + "` exited " + std::to_string(result.status) +
                             ": " + result.output);
  }
}

std::string namespaces_unavailable() {
  if (::geteuid() != 0) return "network namespaces need root";
  if (!have_program("ip")) return "iproute2's `ip` is not installed";
  try {
    Netns probe("probe");
  } catch (const std::exception& error) {
    return std::string("the kernel refuses a network namespace: ") + error.what();
  }
  return {};
}

void remove_stale_namespaces() {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(named_namespaces_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(namespace_prefix, 0) != 0) continue;
    const pid_t owner = std::atoi(name.c_str() + namespace_prefix.size());
    if (owner <= 0 || owner == ::getpid() || ::kill(owner, 0) == 0 || errno != ESRCH) continue;
    run_command({"sh", "-c", "ip netns pids " + name + " | xargs -r kill -9"});
    run_command({"ip", "netns", "del", name});
  }
}

Netns::Netns(std::string_view name) : name_(full_name(name)) {
  run_or_throw({"ip", "netns", "add", name_});
  try {
    run_or_throw({"ip", "-n", name_, "link", "set", "lo", "up"});
  } catch (...) {
    run_command({"ip", "netns", "del", name_});
    throw;
  }
}

Netns::~Netns() {
  kill_everything_inside();
  run_command({"ip", "netns", "del", name_});
}

void Netns::kill_everything_inside() const {
  // Twice: a process may fork between the listing and the kill.
  for (int pass = 0; pass < 2; ++pass) {
    const CommandResult pids = run_command({"ip", "netns", "pids", name_});
    std::istringstream lines(pids.output);
    for (pid_t pid; lines >> pid;) ::kill(pid, SIGKILL);
  }
}

std::vector<std::string> Netns::exec(std::vector<std::string> argv) const {
  std::vector<std::string> full = {ip_program(), "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

void Netns::run(std::vector<std::string> argv) const { run_or_throw(exec(std::move(argv))); }

void Netns::sysctl(const std::string& key, const std::string& value) const {
  run({"sysctl", "-qw", key + "=" + value});
}

InNetns::InNetns(const Netns& netns) {
  original_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) throw std::runtime_error("cannot open this thread's network namespace");
  const std::string path = std::string(named_namespaces_dir) + "/" + netns.name();
  const int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const int entered = target < 0 ? -1 : ::setns(target, CLONE_NEWNET);
  const int saved_errno = errno;
  if (target >= 0) ::close(target);
  if (entered != 0) {
    ::close(original_);
    throw std::runtime_error("cannot enter " + path + ": " + std::strerror(saved_errno));
  }
}

InNetns::~InNetns() {
  ::setns(original_, CLONE_NEWNET);
  ::close(original_);
}

}  // namespace stacknode::test
