// Mutual TLS on dqlite's port; see tls.hpp for the invariants.
#include "stacknode/db/tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>

namespace stacknode::db {
namespace {

using Clock = std::chrono::steady_clock;

// OpenSSL's queued errors as one line (and the queue emptied), after `what`.
std::string openssl_error(const std::string& what) {
  std::string text = what;
  while (const unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    text += text == what ? ": " : "; ";
    text += buffer;
  }
  return text;
}

bool read_file(const std::string& path, std::string& text) {
  std::ifstream in(path);
  if (!in) return false;
  text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !text.empty();
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
BioPtr memory_bio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Loads the leaf and its chain, the key, and the CA as the only trust anchor.
bool load_credentials(SSL_CTX* context, const TlsCredentials& credentials, std::string& error) {
  BioPtr chain = memory_bio(credentials.certificate_pem);
  X509* leaf = chain ? PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr) : nullptr;
  if (leaf == nullptr || SSL_CTX_use_certificate(context, leaf) != 1) {
    X509_free(leaf);
    error = openssl_error("the node certificate does not load");
    return false;
  }
  X509_free(leaf);
  while (X509* link = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(context, link) != 1) {
      X509_free(link);
      error = openssl_error("the certificate chain does not load");
      return false;
    }
  }
  ERR_clear_error();  // the end of the chain reads as a "no start line" error
  BioPtr key_bio = memory_bio(credentials.key_pem);
  EVP_PKEY* key = key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr;
  const bool key_used = key != nullptr && SSL_CTX_use_PrivateKey(context, key) == 1;
  EVP_PKEY_free(key);
  if (!key_used || SSL_CTX_check_private_key(context) != 1) {
    error = openssl_error("the node key does not load or does not belong to the certificate");
    return false;
  }
  BioPtr ca_bio = memory_bio(credentials.ca_pem);
  X509* ca = ca_bio ? PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr) : nullptr;
  X509_STORE* store = SSL_CTX_get_cert_store(context);
  const bool ca_added = ca != nullptr && X509_STORE_add_cert(store, ca) == 1;
  X509_free(ca);
  if (!ca_added) {
    error = openssl_error("the cluster CA does not load");
    return false;
  }
  return true;
}

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE when the peer has closed: that
// would kill a client program (stackctl, a test) that does not ignore the signal. This BIO is the
// same over send(MSG_NOSIGNAL) and recv(2); the socket stays the caller's (never closed here).
int socket_bio_write(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  const auto fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
  const ssize_t sent = ::send(fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
  if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(bio);
  return static_cast<int>(sent);
}

int socket_bio_read(BIO* bio, char* data, int size) {
  BIO_clear_retry_flags(bio);
  const auto fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
  const ssize_t got = ::recv(fd, data, static_cast<std::size_t>(size), 0);
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(bio);
  return static_cast<int>(got);
}

long socket_bio_control(BIO* /*bio*/, int command, long /*number*/, void* /*pointer*/) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;  // writes go straight to the socket
}

int socket_bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* made = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                    "socket without SIGPIPE");
    BIO_meth_set_write(made, socket_bio_write);
    BIO_meth_set_read(made, socket_bio_read);
    BIO_meth_set_ctrl(made, socket_bio_control);
    BIO_meth_set_create(made, socket_bio_create);
    return made;
  }();
  return method;
}

}  // namespace

std::optional<TlsCredentials> read_tls_credentials(const std::string& dir, std::string& error) {
  TlsCredentials credentials;
  const std::pair<const char*, std::string*> files[] = {
      {"ca.crt", &credentials.ca_pem}, {"node.crt", &credentials.certificate_pem}, {"node.key", &credentials.key_pem}};
  for (const auto& [name, text] : files) {
    if (!read_file(dir + "/" + name, *text)) {
      error = "cannot read " + dir + "/" + name;
      return std::nullopt;
    }
  }
  return credentials;
}

std::shared_ptr<const TlsContext> TlsContext::make(Side side, const TlsCredentials& credentials, std::string& error) {
  SSL_CTX* context = SSL_CTX_new(side == Side::client ? TLS_client_method() : TLS_server_method());
  if (context == nullptr) {
    error = openssl_error("cannot create a TLS context");
    return nullptr;
  }
  std::shared_ptr<const TlsContext> made(new TlsContext(context, side));
  SSL_CTX_set_min_proto_version(context, TLS1_3_VERSION);  // invariant 2
  SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
  // An end of file without close_notify reads as a clean end (the relay's peer may just close).
  SSL_CTX_set_options(context, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (side == Side::server) {
    SSL_CTX_set_num_tickets(context, 0);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  }
  if (!load_credentials(context, credentials, error)) return nullptr;
  return made;
}

std::shared_ptr<const TlsContext> TlsContext::from_dir(Side side, const std::string& dir, std::string& error) {
  const std::optional<TlsCredentials> credentials = read_tls_credentials(dir, error);
  return credentials ? make(side, *credentials, error) : nullptr;
}

TlsContext::~TlsContext() { SSL_CTX_free(context_); }

std::unique_ptr<TlsSession> TlsSession::handshake(int fd, const TlsContext& context, const std::string& peer_ip,
                                                  Clock::time_point deadline, std::string& error) {
  SSL* ssl = SSL_new(context.native());
  if (ssl == nullptr) {
    error = openssl_error("cannot create a TLS session");
    return nullptr;
  }
  std::unique_ptr<TlsSession> session(new TlsSession(ssl));
  BIO* bio = BIO_new(socket_bio_method());
  if (bio == nullptr) {
    error = openssl_error("cannot create a TLS session");
    return nullptr;
  }
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
  SSL_set_bio(ssl, bio, bio);  // the session owns the BIO now
  const bool client = context.side() == TlsContext::Side::client;
  if (client) {
    // Invariant 1: the certificate must name the address dialled (an IP SAN).
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), peer_ip.c_str()) != 1) {
      error = "'" + peer_ip + "' is not an IP address to check the node's certificate against";
      return nullptr;
    }
    SSL_set_connect_state(ssl);
  } else {
    SSL_set_accept_state(ssl);
  }
  for (;;) {
    ERR_clear_error();  // SSL_get_error reads the queue: nothing older may be on it
    errno = 0;
    const int returned = SSL_do_handshake(ssl);
    if (returned == 1) return session;
    const Io io = session->result_of(returned, 0);
    if (io.status != Status::want_read && io.status != Status::want_write) {
      const long verify = SSL_get_verify_result(ssl);
      error = verify != X509_V_OK ? std::string("TLS handshake: certificate refused: ") +
                                        X509_verify_cert_error_string(verify)
                                  : "TLS handshake: " + (session->error_.empty() ? "the peer closed the connection"
                                                                                  : session->error_);
      return nullptr;
    }
    const int ready = wait_for_tls(fd, io.status, deadline);
    if (ready == 0) {
      error = "TLS handshake: timed out";
      return nullptr;
    }
    if (ready < 0) {
      error = std::string("TLS handshake: ") + std::strerror(errno);
      return nullptr;
    }
  }
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

TlsSession::Io TlsSession::result_of(int returned, std::size_t bytes) {
  if (returned > 0) return {Status::done, bytes};
  switch (SSL_get_error(ssl_, returned)) {
    case SSL_ERROR_WANT_READ: return {Status::want_read, 0};
    case SSL_ERROR_WANT_WRITE: return {Status::want_write, 0};
    case SSL_ERROR_ZERO_RETURN: return {Status::closed, 0};
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {  // an end of file or a reset without close_notify
        error_ = errno != 0 ? std::strerror(errno) : "the peer closed the connection";
        return {errno != 0 ? Status::failed : Status::closed, 0};
      }
      [[fallthrough]];
    default:
      error_ = openssl_error("TLS");
      return {Status::failed, 0};
  }
}

TlsSession::Io TlsSession::read(void* bytes, std::size_t size) {
  std::size_t got = 0;
  ERR_clear_error();
  errno = 0;
  const int returned = SSL_read_ex(ssl_, bytes, size, &got);
  return result_of(returned, got);
}

TlsSession::Io TlsSession::write(const void* bytes, std::size_t size) {
  std::size_t sent = 0;
  ERR_clear_error();
  errno = 0;
  const int returned = SSL_write_ex(ssl_, bytes, size, &sent);
  return result_of(returned, sent);
}

void TlsSession::shutdown() {
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::size_t TlsSession::pending() const { return static_cast<std::size_t>(SSL_pending(ssl_)); }

std::uint64_t TlsSession::peer_serial() const {
  X509* peer = SSL_get0_peer_certificate(ssl_);
  if (peer == nullptr) return 0;
  std::uint64_t serial = 0;
  if (ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(peer)) != 1) {
    ERR_clear_error();
    return 0;
  }
  return serial;
}

int wait_for_tls(int fd, TlsSession::Status status, Clock::time_point deadline) {
  const short events = status == TlsSession::Status::want_write ? POLLOUT : POLLIN;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd waiting{fd, events, 0};
    const int ready = ::poll(&waiting, 1, left < 0 ? 0 : static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    return ready < 0 ? -1 : (ready == 0 ? 0 : 1);
  }
}

}  // namespace stacknode::db
