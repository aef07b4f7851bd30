// TLS server context loading and reload; see tls.hpp.
#include "stacknode/common/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>

namespace stacknode::http {
namespace ssl = boost::asio::ssl;

TlsContext::TlsContext(std::string certificate_file, std::string key_file, std::string client_ca_file)
    : certificate_file_(std::move(certificate_file)),
      key_file_(std::move(key_file)),
      client_ca_file_(std::move(client_ca_file)) {
  current_.store(build());
}

std::shared_ptr<ssl::context> TlsContext::build() const {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  // TLS 1.2 is the oldest version any browser we support needs; older ones are broken.
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                       ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  boost::system::error_code error;
  context->use_certificate_chain_file(certificate_file_, error);
  if (error) {
    throw std::runtime_error("TLS certificate " + certificate_file_ + ": " + error.message());
  }
  context->use_private_key_file(key_file_, ssl::context::pem, error);
  if (error) throw std::runtime_error("TLS key " + key_file_ + ": " + error.message());
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    throw std::runtime_error("TLS key " + key_file_ + " does not match certificate " +
                             certificate_file_);
  }
  if (!client_ca_file_.empty()) {
    context->load_verify_file(client_ca_file_, error);
    if (error) throw std::runtime_error("TLS client CA " + client_ca_file_ + ": " + error.message());
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(client_ca_file_.c_str());
    if (names == nullptr) throw std::runtime_error("TLS client CA " + client_ca_file_ + ": no certificate in it");
    SSL_CTX_set_client_CA_list(context->native_handle(), names);
    // Ask for a certificate, verify one that comes, accept a client that sends none.
    context->set_verify_mode(ssl::verify_peer);
    // With peer verification on, OpenSSL refuses to resume a session that has no session id
    // context: a returning browser or client would fail its handshake.
    static constexpr unsigned char session_context[] = "stacknode";
    SSL_CTX_set_session_id_context(context->native_handle(), session_context, sizeof session_context - 1);
  }
  return context;
}

bool TlsContext::reload(std::string& error) {
  try {
    current_.store(build());
    return true;
  } catch (const std::exception& failure) {
    error = failure.what();
    return false;
  }
}

}  // namespace stacknode::http
