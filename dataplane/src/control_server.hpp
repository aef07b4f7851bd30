// The control socket: a Unix stream socket (mode 0660) where each line is one JSON request and
// gets one JSON line back (control_protocol.hpp; messages in dataplane/README.md). Requests are
// served one at a time on the control thread, so an apply never races another.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace stacknode::dataplane {

class Runtime;

// Clients served at once; more are told so and closed. The socket is root-only, so this guards
// against a runaway script, not an attacker.
inline constexpr std::size_t max_control_connections = 16;

class ControlServer {
 public:
  // Binds `path` (a stale socket file from a crashed run is replaced; a live one is an error:
  // another dataplane is running). Throws std::runtime_error with a message naming the path.
  ControlServer(boost::asio::io_context& io, Runtime& runtime, std::filesystem::path path);
  ~ControlServer();

  // The reply line (without newline) to one request line.
  static std::string answer(Runtime& runtime, std::string_view line);

 private:
  void accept();

  boost::asio::io_context& io_;
  Runtime& runtime_;
  std::filesystem::path path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<std::size_t> open_connections_;
};

}  // namespace stacknode::dataplane
