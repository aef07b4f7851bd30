// TLS server context with certificate reload, for the HTTP server base.
// It owns the current OpenSSL context (via Asio); reload() builds a new one from the files and
// swaps it in only when the certificate and key load and match, so a bad file on disk never takes
// HTTPS down. Connections keep the context they started with; new ones get the current one.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <memory>
#include <string>

namespace stacknode::http {

class TlsContext {
 public:
  // Throws std::runtime_error naming the file and OpenSSL's reason.
  TlsContext(std::string certificate_file, std::string key_file, std::string client_ca_file = {});

  // Rebuilds from the same files. Returns false and fills `error` (the old context stays) when
  // the new files do not load.
  bool reload(std::string& error);
  std::shared_ptr<boost::asio::ssl::context> current() const { return current_.load(); }

  const std::string& certificate_file() const { return certificate_file_; }

 private:
  std::shared_ptr<boost::asio::ssl::context> build() const;

  std::string certificate_file_;
  std::string key_file_;
  std::string client_ca_file_;
  std::atomic<std::shared_ptr<boost::asio::ssl::context>> current_;
};

}  // namespace stacknode::http
