// stacknode-console: the numbered menu on the serial console (ttyS0) for first setup and
// recovery, for any dumb terminal. What is typed is never run: a line chooses a menu number
// (menu.hpp), and each item runs fixed programs (stackctl, systemctl, ping, ip) with checked
// arguments, never a shell, except the root shell of its own item, which asks for the root
// password first. After idle_seconds without a key the menu is shown again from the top.
//
// Options (for the image's unit the defaults; tests point them at fakes and temp dirs):
//   --idle-seconds N   back to the menu after N seconds without a key (default 300)
//   --stackctl PATH, --systemctl PATH, --ping PATH, --ip PATH   the programs it runs
//   --data-dir DIR     the data partition (factory reset empties overlay/etc/upper and stacknode/)
//   --release FILE, --node-config FILE, --cmdline FILE, --shadow-user NAME
#include <poll.h>
#include <shadow.h>
#include <crypt.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "line_editor.hpp"
#include "menu.hpp"

namespace stacknode::console {
namespace {

namespace fs = std::filesystem;

constexpr int default_idle_seconds = 300;
constexpr int max_idle_seconds = 86400;
constexpr int poll_interval_ms = 250;
constexpr std::size_t read_chunk_bytes = 256;

struct Options {
  int idle_seconds = default_idle_seconds;
  std::string stackctl = "/usr/bin/stackctl";
  std::string systemctl = "/usr/bin/systemctl";
  std::string ping = "/usr/bin/ping";
  std::string ip = "/usr/sbin/ip";
  fs::path data_dir = "/data";
  fs::path release = "/etc/stacknode-release";
  fs::path node_config = "/etc/stacknode/node.cfg";
  fs::path cmdline = "/proc/cmdline";
  std::string shadow_user = "root";
};

// ---- The terminal ---------------------------------------------------------------------------

void put(std::string_view text) {
  while (!text.empty()) {
    const ssize_t written = ::write(STDOUT_FILENO, text.data(), text.size());
    if (written <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(written));
  }
}

// Keys one at a time, no echo by the terminal (the console echoes, or not for a secret), Ctrl-C
// a key like any other; put back as it was on exit.
class RawTerminal {
 public:
  RawTerminal() {
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    active_ = make_raw();
  }
  ~RawTerminal() { restore(); }
  void restore() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  void resume() {
    if (active_) make_raw();
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  // The saved settings without canonical input, echo, signals and flow control.
  bool make_raw() {
    termios raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
    raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    return ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }

  termios saved_{};
  bool active_ = false;
};

struct Input {
  enum class Kind { line, idle, cancelled, closed } kind;
  std::string text;
};

class Keyboard {
 public:
  explicit Keyboard(int idle_seconds) : idle_(std::chrono::seconds(idle_seconds)) {}

  // One line, echoed (or, when secret, not), until Enter; idle after the idle time without a key.
  Input read_line(bool secret = false) {
    auto last_key = std::chrono::steady_clock::now();
    for (;;) {
      while (pending_ < buffered_.size()) {
        const char byte = buffered_[pending_++];
        switch (editor_.feed(byte)) {
          case LineEditor::Event::echo:
            if (!secret) put(std::string(1, byte));
            break;
          case LineEditor::Event::erase:
            if (!secret) put("\b \b");
            break;
          case LineEditor::Event::clear:
            if (!secret) {
              for (std::size_t index = 0; index < editor_.size_before_clear(); ++index) put("\b \b");
            }
            break;
          case LineEditor::Event::bell:
            put("\a");
            break;
          case LineEditor::Event::line:
            put("\r\n");
            return {Input::Kind::line, editor_.take_line()};
          case LineEditor::Event::cancelled:
            put("^C\r\n");
            return {Input::Kind::cancelled, {}};
          case LineEditor::Event::none:
            break;
        }
      }
      buffered_.clear();
      pending_ = 0;
      pollfd ready{STDIN_FILENO, POLLIN, 0};
      const int polled = ::poll(&ready, 1, poll_interval_ms);
      if (polled < 0 && errno != EINTR) return {Input::Kind::closed, {}};
      if (polled <= 0) {
        if (std::chrono::steady_clock::now() - last_key >= idle_) {
          editor_.take_line();
          return {Input::Kind::idle, {}};
        }
        continue;
      }
      char chunk[read_chunk_bytes];
      const ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (got <= 0) return {Input::Kind::closed, {}};
      buffered_.assign(chunk, static_cast<std::size_t>(got));
      last_key = std::chrono::steady_clock::now();
    }
  }

 private:
  std::chrono::steady_clock::duration idle_;
  LineEditor editor_;
  std::string buffered_;
  std::size_t pending_ = 0;
};

// ---- Running programs (never a shell) -------------------------------------------------------

int run(const std::vector<std::string>& argv, RawTerminal& terminal) {
  terminal.restore();  // the program sees an ordinary terminal
  const pid_t child = ::fork();
  if (child == 0) {
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "console: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  int status = -1;
  if (child > 0) {
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
  }
  terminal.resume();
  put("\r\n");
  return child > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// ---- What the screen shows ------------------------------------------------------------------

std::string file_value(const fs::path& path, const std::regex& pattern, std::string fallback) {
  std::ifstream in(path);
  std::string line;
  std::smatch match;
  while (std::getline(in, line)) {
    if (std::regex_search(line, match, pattern)) return match[1];
  }
  return fallback;
}

Summary summary_of(const Options& options) {
  Summary summary;
  summary.version = file_value(options.release, std::regex("^VERSION=(.*)$"), "?");
  summary.node_name = file_value(options.node_config, std::regex(R"re(name\s*=\s*"([^"]*)")re"), "not configured");
  summary.address = file_value(options.node_config, std::regex(R"re(api_address\s*=\s*"([^":]*))re"), "none");
  summary.slot = file_value(options.cmdline, std::regex(R"re(stacknode\.slot=([ab]))re"), "?");
  return summary;
}

// ---- The items ------------------------------------------------------------------------------

class Console {
 public:
  Console(Options options, RawTerminal& terminal)
      : options_(std::move(options)), terminal_(terminal), keyboard_(options_.idle_seconds) {}

  // The menu, until the terminal closes.
  int loop() {
    for (;;) {
      put(menu_text(summary_of(options_)));
      const Input input = keyboard_.read_line();
      if (input.kind == Input::Kind::closed) return 0;
      if (input.kind == Input::Kind::idle) {
        put("\r\n(idle: the menu again)\r\n");
        continue;
      }
      if (input.kind != Input::Kind::line) continue;
      const std::optional<Item> item = parse_choice(input.text);
      if (!item) {
        if (!input.text.empty()) put("Not a menu number; nothing was run.\r\n");
        continue;
      }
      perform(*item);
    }
  }

 private:
  // A prompt and its answer; nullopt when the person went idle, cancelled, or the line closed.
  std::optional<std::string> ask(std::string_view prompt, bool secret = false) {
    put(prompt);
    Input input = keyboard_.read_line(secret);
    if (secret) put("\r\n");
    if (input.kind != Input::Kind::line) {
      put("(cancelled)\r\n");
      return std::nullopt;
    }
    return std::move(input.text);
  }

  bool ask_phrase(std::string_view what, std::string_view phrase) {
    const std::optional<std::string> answer =
        ask(std::string(what) + "\r\nType '" + std::string(phrase) + "' to go on, anything else to go back: ");
    if (answer && confirmed(*answer, phrase)) return true;
    put("Not confirmed; nothing was done.\r\n");
    return false;
  }

  void stackctl(std::vector<std::string> args) {
    args.insert(args.begin(), options_.stackctl);
    run(args, terminal_);
  }

  void perform(Item item) {
    switch (item) {
      case Item::status:
        stackctl({"firmware", "status"});
        run({options_.systemctl, "--no-pager", "--plain", "list-units", "stacknode*"}, terminal_);
        run({options_.ip, "-brief", "address"}, terminal_);
        if (fs::exists(options_.node_config)) stackctl({"cluster", "status"});
        return;
      case Item::cluster_init: {
        const std::optional<std::string> name = ask("Name of the new cluster: ");
        if (!name) return;
        if (!valid_name(*name)) {
          put("A name is 1-63 letters, digits, '-' or '_'; nothing was done.\r\n");
          return;
        }
        stackctl({"cluster", "init", "--name", *name});
        return;
      }
      case Item::join_token:
        stackctl({"cluster", "token", "create"});
        return;
      case Item::cluster_join: {
        const std::optional<std::string> token = ask("Paste the join token: ");
        if (!token || token->empty()) return;
        stackctl({"cluster", "join", *token});  // stackctl checks the token (its format is fuzzed)
        return;
      }
      case Item::leave:
        if (ask_phrase("Leaving forgets this box's membership and its copy of the database.", leave_phrase)) {
          stackctl({"node", "reset"});
        }
        return;
      case Item::recover:
        if (ask_phrase("Recovery makes this box a cluster of one (when a majority is gone for good).",
                       recover_phrase)) {
          stackctl({"cluster", "recover", "--yes"});
        }
        return;
      case Item::admin_password: {
        const std::optional<std::string> first = ask("New admin password: ", true);
        if (!first) return;
        const std::optional<std::string> second = ask("Again: ", true);
        if (!second) return;
        if (*first != *second) {
          put("The two differ; nothing was changed.\r\n");
          return;
        }
        stackctl({"user", "password", "admin", "--password", *first});
        return;
      }
      case Item::ping: {
        const std::optional<std::string> target = ask("IPv4 address to ping: ");
        if (!target) return;
        if (!valid_ipv4(*target)) {
          put("Not an IPv4 address (a.b.c.d); nothing was run.\r\n");
          return;
        }
        run({options_.ping, "-c", "3", "-W", "2", *target}, terminal_);
        return;
      }
      case Item::switch_slot: {
        stackctl({"firmware", "status"});
        const std::optional<std::string> answer = ask("Make the other slot the one that boots next? [y/N] ");
        if (answer && said_yes(*answer)) stackctl({"firmware", "rollback"});
        return;
      }
      case Item::factory_reset:
        if (ask_phrase("Factory reset erases this box's settings, identity and data, then reboots.",
                       factory_reset_phrase)) {
          factory_reset();
        }
        return;
      case Item::shell:
        shell();
        return;
      case Item::reboot:
      case Item::power_off: {
        const bool reboot = item == Item::reboot;
        const std::optional<std::string> answer = ask(reboot ? "Reboot now? [y/N] " : "Power off now? [y/N] ");
        if (answer && said_yes(*answer)) run({options_.systemctl, reboot ? "reboot" : "poweroff"}, terminal_);
        return;
      }
    }
  }

  void factory_reset() {
    run({options_.systemctl, "stop", "stacknoded.service", "stacknode-web.service", "stacknode-dataplane.service",
         "stacknode-db.service"},
        terminal_);
    std::error_code error;
    for (const fs::path& dir : {options_.data_dir / "overlay" / "etc" / "upper", options_.data_dir / "stacknode"}) {
      for (const auto& entry : fs::directory_iterator(dir, error)) fs::remove_all(entry.path(), error);
    }
    put(error ? "Factory reset: some files could not be removed (" + error.message() + ")\r\n"
              : "Factory reset: settings and data erased.\r\n");
    run({options_.systemctl, "reboot"}, terminal_);
  }

  void shell() {
    const spwd* entry = ::getspnam(options_.shadow_user.c_str());
    if (entry == nullptr || entry->sp_pwdp == nullptr || entry->sp_pwdp[0] == '!' || entry->sp_pwdp[0] == '*' ||
        entry->sp_pwdp[0] == '\0') {
      put("The root password is not set (or locked): no shell. Set it from a running system first.\r\n");
      return;
    }
    const std::string stored = entry->sp_pwdp;
    const std::optional<std::string> password = ask("Root password: ", true);
    if (!password) return;
    const char* hashed = ::crypt(password->c_str(), stored.c_str());
    if (hashed == nullptr || stored != hashed) {
      put("Wrong password.\r\n");
      return;
    }
    run({"/bin/bash", "--login"}, terminal_);
  }

  Options options_;
  RawTerminal& terminal_;
  Keyboard keyboard_;
};

std::optional<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int index = 1; index < argc; ++index) {
    const std::string name = argv[index];
    if (index + 1 >= argc) {
      std::fprintf(stderr, "stacknode-console: %s needs a value\n", name.c_str());
      return std::nullopt;
    }
    const std::string value = argv[++index];
    if (name == "--idle-seconds") {
      try {
        options.idle_seconds = std::stoi(value);
      } catch (...) {
        options.idle_seconds = 0;
      }
      if (options.idle_seconds < 1 || options.idle_seconds > max_idle_seconds) {
        std::fprintf(stderr, "stacknode-console: --idle-seconds is 1 to %d\n", max_idle_seconds);
        return std::nullopt;
      }
    } else if (name == "--stackctl") options.stackctl = value;
    else if (name == "--systemctl") options.systemctl = value;
    else if (name == "--ping") options.ping = value;
    else if (name == "--ip") options.ip = value;
    else if (name == "--data-dir") options.data_dir = value;
    else if (name == "--release") options.release = value;
    else if (name == "--node-config") options.node_config = value;
    else if (name == "--cmdline") options.cmdline = value;
    else if (name == "--shadow-user") options.shadow_user = value;
    else {
      std::fprintf(stderr, "stacknode-console: unknown option %s\n", name.c_str());
      return std::nullopt;
    }
  }
  return options;
}

}  // namespace
}  // namespace stacknode::console

int main(int argc, char** argv) {
  using namespace stacknode::console;
  std::optional<Options> options = parse_options(argc, argv);
  if (!options) return 2;
  RawTerminal terminal;
  Console console(std::move(*options), terminal);
  return console.loop();
}
