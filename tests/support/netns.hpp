// Network namespaces for component and rack tests: create named namespaces with iproute2, run
// commands inside them, join the calling thread to one for a while (sockets created meanwhile
// stay in it), and remove them with everything running inside, even when a test fails. Every
// namespace a test process makes is named `<namespace_prefix><pid>-<name>`, so namespaces left
// by a test process that died without cleaning up are found and removed by the next one.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace stacknode::test {

inline constexpr std::string_view namespace_prefix = "sntest-";

// Why namespaces cannot be used here (not root, no `ip`, the kernel refuses), or empty if they
// can: for skip_all.
std::string namespaces_unavailable();

// Removes namespaces named by namespace_prefix whose creating process is gone.
void remove_stale_namespaces();

class Netns {
 public:
  // Creates `<namespace_prefix><pid>-<name>` with its loopback up; throws std::runtime_error
  // with iproute2's message if it cannot.
  explicit Netns(std::string_view name);
  // Kills every process inside, then deletes the namespace (and with it its interfaces).
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  const std::string& name() const { return name_; }
  // `argv` run inside: {"ip", "netns", "exec", name, argv...}, for Process or run_command.
  std::vector<std::string> exec(std::vector<std::string> argv) const;
  // Runs `argv` inside and throws std::runtime_error with its output unless it exits 0.
  void run(std::vector<std::string> argv) const;
  // Sets one sysctl inside (e.g. "net.ipv4.ip_forward", "1"); throws like run().
  void sysctl(const std::string& key, const std::string& value) const;
  void kill_everything_inside() const;

 private:
  std::string name_;
};

// Moves the calling thread into namespace `netns` until this goes out of scope. Sockets and
// devices (TUN) created meanwhile belong to that namespace for their whole life.
class InNetns {
 public:
  explicit InNetns(const Netns& netns);  // throws std::runtime_error if setns fails
  ~InNetns();
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;

 private:
  int original_ = -1;
};

// Runs `argv`; throws std::runtime_error naming the command and its output unless it exits 0.
void run_or_throw(const std::vector<std::string>& argv);

}  // namespace stacknode::test
