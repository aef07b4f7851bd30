// Child processes for component tests: start a real daemon or tool, signal it, wait for it, read
// what it printed. A Process that goes out of scope kills and reaps its child, so a failing test
// leaves nothing running. Also: polling helpers, temporary directories, running a command, and
// requiring a program a test cannot do without.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <source_location>
#include <string>
#include <vector>

namespace stacknode::test {

// Where the build put the binaries (<build>/bin), baked in by tests/CMakeLists.txt.
std::filesystem::path binary_dir();
// The source tree, for test data.
std::filesystem::path source_dir();

class Process {
 public:
  // Starts `argv[0]` (a path) with stdout and stderr both appended to `log_file`.
  Process(std::vector<std::string> argv, std::filesystem::path log_file);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int signal_number);
  // Waits up to `timeout` for the child to exit; its exit status (or 128 + signal) if it did.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string output() const;  // everything the child wrote so far

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_file_;
};

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// A fresh directory under $TMPDIR, removed with everything in it when this goes out of scope.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, std::string_view content);
std::string read_file(const std::filesystem::path& path);

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr together
};
// Runs a command to completion (argv[0] is looked up in PATH).
CommandResult run_command(const std::vector<std::string>& argv);
bool have_program(const std::string& name);
// Fails the current test unless program `name` is installed, naming the Debian `package` that has
// it: a test that needs it as an independent peer must not pass without it. The failure is
// reported where require_program was called.
void require_program(const std::string& name, const std::string& package,
                     std::source_location caller = std::source_location::current());

}  // namespace stacknode::test
