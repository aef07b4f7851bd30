// The control socket server: accept, read a line, answer it, repeat. See control_server.hpp.
#include "control_server.hpp"

#include <sys/stat.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>

#include "runtime.hpp"
#include "stacknode/common/log.hpp"
#include "stacknode/dataplane/control_protocol.hpp"

namespace stacknode::dataplane {
namespace {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

// One client connection: requests in order, one reply line each.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(local::socket socket, Runtime& runtime, std::shared_ptr<std::size_t> open)
      : socket_(std::move(socket)),
        runtime_(runtime),
        open_(std::move(open)),
        input_(max_control_request_bytes + 1) {
    ++*open_;
  }
  ~Connection() { --*open_; }

  void read() {
    asio::async_read_until(
        socket_, input_, '\n',
        [self = shared_from_this()](boost::system::error_code error, std::size_t bytes) {
          self->on_line(error, bytes);
        });
  }

 private:
  void on_line(boost::system::error_code error, std::size_t bytes) {
    if (error == asio::error::not_found) {
      reply_ = control_error_reply("request line over " +
                                   std::to_string(max_control_request_bytes) + " bytes") +
               "\n";
      return write(true);
    }
    if (error) return;  // the client went away
    std::string line(asio::buffers_begin(input_.data()),
                     asio::buffers_begin(input_.data()) + static_cast<std::ptrdiff_t>(bytes - 1));
    input_.consume(bytes);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    reply_ = ControlServer::answer(runtime_, line) + "\n";
    write(false);
  }

  void write(bool close_after) {
    asio::async_write(
        socket_, asio::buffer(reply_),
        [self = shared_from_this(), close_after](boost::system::error_code error, std::size_t) {
          if (!error && !close_after) self->read();
        });
  }

  local::socket socket_;
  Runtime& runtime_;
  std::shared_ptr<std::size_t> open_;
  asio::streambuf input_;
  std::string reply_;
};

}  // namespace

ControlServer::ControlServer(asio::io_context& io, Runtime& runtime, std::filesystem::path path)
    : io_(io),
      runtime_(runtime),
      path_(std::move(path)),
      acceptor_(io),
      open_connections_(std::make_shared<std::size_t>(0)) {
  std::error_code ignored;
  std::filesystem::create_directories(path_.parent_path(), ignored);
  if (std::filesystem::exists(std::filesystem::symlink_status(path_))) {
    local::socket probe(io_);
    boost::system::error_code error;
    probe.connect(local::endpoint(path_.string()), error);
    if (!error) {
      throw std::runtime_error("control socket " + path_.string() +
                               " answers: another stacknode-dataplane is running on it");
    }
    std::filesystem::remove(path_, ignored);  // left by a run that crashed
  }
  const mode_t old_mask = ::umask(0117);  // the socket is created 0660: root and its group only
  boost::system::error_code error;
  acceptor_.open(local(), error);
  if (!error) acceptor_.bind(local::endpoint(path_.string()), error);
  ::umask(old_mask);
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) throw std::runtime_error("control socket " + path_.string() + ": " + error.message());
  accept();
}

ControlServer::~ControlServer() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  std::error_code also_ignored;
  std::filesystem::remove(path_, also_ignored);
}

void ControlServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code error, local::socket socket) {
    if (error == asio::error::operation_aborted) return;
    if (!error) {
      if (*open_connections_ >= max_control_connections) {
        const std::string busy = control_error_reply("too many control connections") + "\n";
        boost::system::error_code ignored;
        asio::write(socket, asio::buffer(busy), ignored);
      } else {
        std::make_shared<Connection>(std::move(socket), runtime_, open_connections_)->read();
      }
    }
    accept();
  });
}

std::string ControlServer::answer(Runtime& runtime, std::string_view line) {
  ControlParseResult parsed = parse_control_request(line);
  if (!parsed.request) return control_error_reply(parsed.error);
  const ControlRequest& request = *parsed.request;
  switch (request.op) {
    case ControlOp::apply: {
      const std::string error = runtime.apply(request.config);
      if (!error.empty()) {
        log::warn("dataplane: config version ", request.config.version, " refused: ", error);
        return control_error_reply(error);
      }
      log::info("dataplane: config version ", request.config.version,
                " applied: ", request.config.services.size(), " service(s), ",
                request.config.owned_vips.size(), " owned VIP(s)");
      boost::json::object reply;
      reply["ok"] = true;
      reply["version"] = request.config.version;
      return boost::json::serialize(reply);
    }
    case ControlOp::status:
      return boost::json::serialize(runtime.status());
    case ControlOp::counters:
      return boost::json::serialize(runtime.counters());
    case ControlOp::flows:
      return boost::json::serialize(runtime.flows(request.flow_limit));
    case ControlOp::renew: {
      const std::string error = runtime.renew(request.renew_version, request.renew_for_ms);
      if (!error.empty()) return control_error_reply(error);
      boost::json::object reply;
      reply["ok"] = true;
      reply["version"] = request.renew_version;
      return boost::json::serialize(reply);
    }
  }
  return control_error_reply("unknown op");
}

}  // namespace stacknode::dataplane
