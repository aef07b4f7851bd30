// Child processes, polling and temporary files for component tests; see process.hpp.
#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <CppUTest/TestHarness.h>

namespace stacknode::test {
namespace {

// How often poll_until looks again: short enough for fast tests, long enough not to spin.
constexpr auto poll_interval = std::chrono::milliseconds(10);
// After the test is done with a child, how long it may take to exit after SIGKILL.
constexpr auto kill_wait = std::chrono::seconds(5);

int decode_status(int raw) {
  if (WIFEXITED(raw)) return WEXITSTATUS(raw);
  if (WIFSIGNALED(raw)) return 128 + WTERMSIG(raw);
  return -1;
}

}  // namespace

std::filesystem::path binary_dir() { return STACKNODE_TEST_BINARY_DIR; }
std::filesystem::path source_dir() { return STACKNODE_TEST_SOURCE_DIR; }

Process::Process(std::vector<std::string> argv, std::filesystem::path log_file)
    : log_file_(std::move(log_file)) {
  const int log_fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot open " + log_file_.string());
  std::vector<char*> raw;
  for (auto& argument : argv) raw.push_back(argument.data());
  raw.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::setpgid(0, 0);
    // Dies with the test: a test killed by a signal runs no destructor to stop it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execv(raw[0], raw.data());
    std::fprintf(stderr, "exec %s failed\n", raw[0]);
    std::_Exit(127);
  }
  ::close(log_fd);
  if (pid_ < 0) throw std::runtime_error("fork failed");
}

Process::~Process() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    wait(kill_wait);
  }
}

void Process::signal(int signal_number) {
  if (pid_ > 0 && !status_) ::kill(pid_, signal_number);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  poll_until(
      [this]() {
        int raw = 0;
        const pid_t done = ::waitpid(pid_, &raw, WNOHANG);
        if (done == pid_) status_ = decode_status(raw);
        return status_.has_value();
      },
      timeout);
  return status_;
}

bool Process::running() { return !wait(std::chrono::milliseconds(0)).has_value(); }

std::string Process::output() const { return read_file(log_file_); }

bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll_interval);
  }
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/stacknode-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void write_file(const std::filesystem::path& path, std::string_view content) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

CommandResult run_command(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<char*> raw;
  std::vector<std::string> copy = argv;
  for (auto& argument : copy) raw.push_back(argument.data());
  raw.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::execvp(raw[0], raw.data());
    std::_Exit(127);
  }
  ::close(pipe_fds[1]);
  CommandResult result;
  std::array<char, 4096> chunk;
  ssize_t got;
  while ((got = ::read(pipe_fds[0], chunk.data(), chunk.size())) > 0) {
    result.output.append(chunk.data(), static_cast<std::size_t>(got));
  }
  ::close(pipe_fds[0]);
  int raw_status = 0;
  ::waitpid(pid, &raw_status, 0);
  result.status = decode_status(raw_status);
  return result;
}

bool have_program(const std::string& name) {
  return run_command({"sh", "-c", "command -v " + name}).status == 0;
}

void require_program(const std::string& name, const std::string& package,
                     std::source_location caller) {
  if (!have_program(name)) {
    FAIL_LOCATION(("'" + name + "' is not installed (Debian package " + package +
                   "; tools/bootstrap installs it): this test needs it as an independent peer")
                      .c_str(),
                  caller.file_name(), static_cast<int>(caller.line()));
  }
}

}  // namespace stacknode::test
