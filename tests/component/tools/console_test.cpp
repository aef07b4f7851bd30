// Component test of stacknode-console, the serial console menu: the real binary on a
// pseudo-terminal (forkpty), typed at as a person would, with the programs it runs replaced by
// scripts that record their arguments. Unknown input runs nothing and shows the menu again;
// confirmations must be typed exactly; checked fields refuse bad values; an idle console shows
// the menu again by itself; each item runs its program with the arguments expected.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CppUTest/TestHarness.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "process.hpp"

using namespace stacknode::test;

namespace {

constexpr auto screen_timeout = std::chrono::seconds(20);

// A fake program: appends "NAME ARG ARG..." to the calls file and exits 0.
void write_fake(const std::filesystem::path& path, const std::filesystem::path& calls, const std::string& name) {
  write_file(path, "#!/bin/sh\necho \"" + name + " $*\" >> '" + calls.string() + "'\n");
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
}

class ConsoleOnPty {
 public:
  ConsoleOnPty(const std::vector<std::string>& argv) {
    pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    CHECK(pid_ > 0);
  }
  ~ConsoleOnPty() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  ConsoleOnPty(const ConsoleOnPty&) = delete;
  ConsoleOnPty& operator=(const ConsoleOnPty&) = delete;

  void type(const std::string& keys) { CHECK_EQUAL(static_cast<ssize_t>(keys.size()), ::write(master_, keys.data(), keys.size())); }

  // Reads the screen until `text` appears after what was already consumed; then consumes it.
  bool wait_for(const std::string& text) {
    const auto deadline = std::chrono::steady_clock::now() + screen_timeout;
    for (;;) {
      const std::size_t found = screen_.find(text, consumed_);
      if (found != std::string::npos) {
        consumed_ = found + text.size();
        return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd ready{master_, POLLIN, 0};
      if (::poll(&ready, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[4096];
      const ssize_t got = ::read(master_, chunk, sizeof chunk);
      if (got <= 0) return false;
      screen_.append(chunk, static_cast<std::size_t>(got));
    }
  }
  const std::string& screen() const { return screen_; }

 private:
  pid_t pid_ = -1;
  int master_ = -1;
  std::string screen_;
  std::size_t consumed_ = 0;
};

constexpr const char* menu_prompt = "Choose 1-13: ";

}  // namespace

TEST_GROUP(Console) {
  TempDir dir;
  std::filesystem::path calls, data;
  std::vector<std::string> argv;
  void setup() override {
    calls = dir.path() / "calls";
    data = dir.path() / "data";
    for (const std::string name : {"stackctl", "systemctl", "ping", "ip"}) write_fake(dir.path() / name, calls, name);
    write_file(dir.path() / "release", "VERSION=1.2.3\nBOARD=test\n");
    write_file(dir.path() / "node.cfg", "node: { name = \"sn-test\"; api_address = \"198.18.1.11:8443\"; };\n");
    write_file(dir.path() / "cmdline", "ro quiet stacknode.slot=b\n");
    std::filesystem::create_directories(data / "overlay" / "etc" / "upper" / "stacknode");
    write_file(data / "overlay" / "etc" / "upper" / "stacknode" / "node.cfg", "kept?");
    std::filesystem::create_directories(data / "stacknode" / "pki");
    write_file(data / "stacknode" / "pki" / "node.crt", "kept?");
    argv = {(binary_dir() / "stacknode-console").string(), "--stackctl", (dir.path() / "stackctl").string(),
            "--systemctl", (dir.path() / "systemctl").string(), "--ping", (dir.path() / "ping").string(),
            "--ip", (dir.path() / "ip").string(), "--data-dir", data.string(),
            "--release", (dir.path() / "release").string(), "--node-config", (dir.path() / "node.cfg").string(),
            "--cmdline", (dir.path() / "cmdline").string(), "--shadow-user", "stacknode-test-nobody"};
  }
  std::string recorded() { return std::filesystem::exists(calls) ? read_file(calls) : std::string(); }
};

TEST(Console, ShowsTheBoxAndTheMenu) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for("stacknode 1.2.3 (slot b)  node sn-test  address 198.18.1.11"));
  CHECK(console.wait_for(" 1) Status"));
  CHECK(console.wait_for("10) Factory reset"));
  CHECK(console.wait_for(menu_prompt));
}

TEST(Console, UnknownInputRunsNothingAndShowsTheMenuAgain) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for(menu_prompt));
  for (const std::string line : {"rm -rf /", "99", "0", "1;reboot", "$(reboot)", "01", " 1 2", "-1", "reboot"}) {
    console.type(line + "\r");
    CHECK_TEXT(console.wait_for("Not a menu number; nothing was run."), line.c_str());
    CHECK(console.wait_for(menu_prompt));
  }
  // Arrow keys and other escape sequences are swallowed, not typed.
  console.type("\x1b[A\x1b[B\x1bOP\r");
  CHECK(console.wait_for(menu_prompt));
  CHECK_EQUAL(std::string(), recorded());
}

TEST(Console, StatusRunsItsProgramsWithFixedArguments) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for(menu_prompt));
  console.type("1\r");
  CHECK(console.wait_for(menu_prompt));
  CHECK_EQUAL(std::string("stackctl firmware status\nsystemctl --no-pager --plain list-units stacknode*\n"
                          "ip -brief address\nstackctl cluster status\n"),
              recorded());
}

TEST(Console, FactoryResetNeedsThePhraseTypedExactly) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for(menu_prompt));
  for (const std::string answer : {"yes", "Factory reset", "factory", "factory  reset", ""}) {
    console.type("10\r");
    CHECK(console.wait_for("Type 'factory reset' to go on"));
    console.type(answer + "\r");
    CHECK_TEXT(console.wait_for("Not confirmed; nothing was done."), answer.c_str());
    CHECK(console.wait_for(menu_prompt));
  }
  CHECK(std::filesystem::exists(data / "stacknode" / "pki" / "node.crt"));
  CHECK(std::filesystem::exists(data / "overlay" / "etc" / "upper" / "stacknode" / "node.cfg"));
  CHECK_EQUAL(std::string(), recorded());

  console.type("10\r");
  CHECK(console.wait_for("Type 'factory reset' to go on"));
  console.type("factory reset\r");
  CHECK(console.wait_for("settings and data erased"));
  CHECK(poll_until([&] { return recorded().find("systemctl reboot") != std::string::npos; }, screen_timeout));
  CHECK(std::filesystem::is_empty(data / "stacknode"));
  CHECK(std::filesystem::is_empty(data / "overlay" / "etc" / "upper"));
  CHECK(recorded().starts_with("systemctl stop stacknoded.service"));
}

TEST(Console, PingTakesOnlyAnIpv4Address) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for(menu_prompt));
  for (const std::string target : {"198.18.0.1; reboot", "example.com", "198.18.0.256", "198.18.0", "-f 198.18.0.1"}) {
    console.type("8\r");
    CHECK(console.wait_for("IPv4 address to ping: "));
    console.type(target + "\r");
    CHECK_TEXT(console.wait_for("nothing was run"), target.c_str());
  }
  CHECK_EQUAL(std::string(), recorded());
  console.type("8\r");
  CHECK(console.wait_for("IPv4 address to ping: "));
  console.type("198.18.0.1\r");
  CHECK(console.wait_for(menu_prompt));
  CHECK_EQUAL(std::string("ping -c 3 -W 2 198.18.0.1\n"), recorded());
}

TEST(Console, ClusterItemsPassWhatWasTypedAsOneArgument) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for(menu_prompt));
  console.type("2\r");
  CHECK(console.wait_for("Name of the new cluster: "));
  console.type("bad name; reboot\r");
  CHECK(console.wait_for("nothing was done"));
  console.type("2\r");
  CHECK(console.wait_for("Name of the new cluster: "));
  console.type("rack-1\r");
  CHECK(console.wait_for(menu_prompt));
  console.type("4\r");
  CHECK(console.wait_for("Paste the join token: "));
  console.type("snj1.abc def\r");
  CHECK(console.wait_for(menu_prompt));
  console.type("5\r");
  CHECK(console.wait_for("Type 'leave' to go on"));
  console.type("no\r");
  CHECK(console.wait_for("Not confirmed"));
  CHECK(poll_until([&] { return recorded().find("snj1") != std::string::npos; }, screen_timeout));
  CHECK_EQUAL(std::string("stackctl cluster init --name rack-1\nstackctl cluster join snj1.abc def\n"), recorded());
}

TEST(Console, ThePasswordIsNotEchoedAndMustBeTypedTwice) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for(menu_prompt));
  console.type("7\r");
  CHECK(console.wait_for("New admin password: "));
  console.type("s3cret-one\r");
  CHECK(console.wait_for("Again: "));
  console.type("s3cret-two\r");
  CHECK(console.wait_for("The two differ; nothing was changed."));
  CHECK(console.screen().find("s3cret") == std::string::npos);
  console.type("7\r");
  CHECK(console.wait_for("New admin password: "));
  console.type("s3cret-one\r");
  CHECK(console.wait_for("Again: "));
  console.type("s3cret-one\r");
  CHECK(console.wait_for(menu_prompt));
  CHECK(console.screen().find("s3cret") == std::string::npos);
  CHECK_EQUAL(std::string("stackctl user password admin --password s3cret-one\n"), recorded());
}

TEST(Console, NoShellWithoutARootPassword) {
  ConsoleOnPty console(argv);  // --shadow-user names a user with no shadow entry
  CHECK(console.wait_for(menu_prompt));
  console.type("11\r");
  CHECK(console.wait_for("no shell"));
  CHECK(console.wait_for(menu_prompt));
}

TEST(Console, RebootAndPowerOffAskFirst) {
  ConsoleOnPty console(argv);
  CHECK(console.wait_for(menu_prompt));
  console.type("12\r");
  CHECK(console.wait_for("Reboot now? [y/N] "));
  console.type("\r");
  CHECK(console.wait_for(menu_prompt));
  console.type("13\r");
  CHECK(console.wait_for("Power off now? [y/N] "));
  console.type("n\r");
  CHECK(console.wait_for(menu_prompt));
  CHECK_EQUAL(std::string(), recorded());
  console.type("12\r");
  CHECK(console.wait_for("Reboot now? [y/N] "));
  console.type("y\r");
  CHECK(console.wait_for(menu_prompt));
  CHECK_EQUAL(std::string("systemctl reboot\n"), recorded());
}

TEST(Console, AnIdleConsoleShowsTheMenuAgainAndDropsWhatWasHalfTyped) {
  std::vector<std::string> idle = argv;
  idle.insert(idle.end(), {"--idle-seconds", "1"});
  ConsoleOnPty console(idle);
  CHECK(console.wait_for(menu_prompt));
  console.type("1");  // no Enter
  CHECK(console.wait_for("(idle: the menu again)"));
  CHECK(console.wait_for(menu_prompt));
  console.type("\r");  // the dropped "1" is not run
  CHECK(console.wait_for(menu_prompt));
  CHECK_EQUAL(std::string(), recorded());
}
