// Requests that a handler of stacknode's http::Server parks unanswered (a stalled application)
// until the test releases them. Header-only: the support library does not link stacknode_common;
// the component tests that include this do.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/status.hpp>

#include <mutex>
#include <utility>
#include <vector>

#include "stacknode/common/http_server.hpp"

namespace stacknode::test {

class HeldRequests {
 public:
  // Parks `respond`, the answer to an HTTP/`version` request on a connection served by `io`.
  void hold(boost::asio::io_context& io, http::Respond respond, unsigned version) {
    std::lock_guard lock(mutex_);
    held_.push_back(Held{&io, std::move(respond), version});
  }

  // Answers every parked request with "released\n", each on its connection's thread.
  void release_all() {
    std::vector<Held> taken;
    {
      std::lock_guard lock(mutex_);
      taken.swap(held_);
    }
    for (auto& held : taken) {
      boost::asio::post(*held.io, [respond = std::move(held.respond), version = held.version]() {
        respond(http::text_response(boost::beast::http::status::ok, version, "released\n"));
      });
    }
  }

  // Forgets every parked request unanswered. Parked requests keep their sessions alive; they must
  // go before the server does.
  void drop_all() {
    std::lock_guard lock(mutex_);
    held_.clear();
  }

 private:
  struct Held {
    boost::asio::io_context* io;
    http::Respond respond;
    unsigned version;
  };
  std::mutex mutex_;
  std::vector<Held> held_;
};

}  // namespace stacknode::test
