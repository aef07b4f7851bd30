// Mutual TLS on dqlite's port (7000): the contexts and sessions that both ends use. A cluster's
// stacknode-db processes and their clients authenticate each other with node certificates signed
// by the cluster CA, and trust that CA alone (services/db/README.md, "TLS on the wire port").
//
// Sessions run on non-blocking sockets: every call either makes progress or says which readiness
// (readable or writable) it waits for, so the caller keeps its own deadlines with poll().
// Invariants:
//  1. A client checks that the node's certificate chains to the cluster CA and names the IP
//     address it dialled; a server requires a client certificate that chains to the same CA.
//  2. TLS 1.3 only; the server sends no session tickets (nothing arrives on an idle client
//     connection, which the pool's idle check relies on), and no session is resumed.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stacknode::db {

// The PEM texts a node's TLS is made from (pki/ca.crt, pki/node.crt with the CA after the leaf,
// pki/node.key in a stacknode cluster).
struct TlsCredentials {
  std::string ca_pem;
  std::string certificate_pem;  // leaf first, then the chain
  std::string key_pem;
};

// In a TLS dir beside ca.crt, node.crt and node.key: serial numbers (decimal, one per line) of
// revoked node certificates, which stacknode-db refuses; kept up to date by stacknoded from the
// cluster's revoked_certificates table.
inline constexpr std::string_view revoked_file_name = "revoked";

// Reads ca.crt, node.crt and node.key from `dir`; nullopt and `error` set when one is missing.
std::optional<TlsCredentials> read_tls_credentials(const std::string& dir, std::string& error);

class TlsContext {
 public:
  enum class Side : std::uint8_t { client, server };
  // A context for `side` from `credentials`; null with `error` set when they do not load or the
  // key does not belong to the certificate.
  static std::shared_ptr<const TlsContext> make(Side side, const TlsCredentials& credentials, std::string& error);
  // The same from the files in `dir` (read_tls_credentials).
  static std::shared_ptr<const TlsContext> from_dir(Side side, const std::string& dir, std::string& error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* native() const { return context_; }
  Side side() const { return side_; }

 private:
  TlsContext(SSL_CTX* context, Side side) : context_(context), side_(side) {}
  SSL_CTX* context_;
  Side side_;
};

// One TLS session over a connected non-blocking socket it does not own.
class TlsSession {
 public:
  // What a call did: moved `bytes` (> 0), or waits for the socket to be readable or writable,
  // or the peer closed the session, or it failed (`error()` says why).
  enum class Status : std::uint8_t { done, want_read, want_write, closed, failed };
  struct Io {
    Status status = Status::failed;
    std::size_t bytes = 0;
  };

  // Runs the handshake on `fd` until it completes or `deadline` passes. A client names the IPv4
  // address it dialled (`peer_ip`, invariant 1). Null with `error` set on failure.
  static std::unique_ptr<TlsSession> handshake(int fd, const TlsContext& context, const std::string& peer_ip,
                                               std::chrono::steady_clock::time_point deadline, std::string& error);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  Io read(void* bytes, std::size_t size);
  Io write(const void* bytes, std::size_t size);
  // Sends close_notify (once, without waiting for the peer's): the peer reads a clean end.
  void shutdown();
  // Decrypted bytes already buffered (poll() does not see them).
  std::size_t pending() const;
  // The peer certificate's serial number (0 if it has none that fits 64 bits).
  std::uint64_t peer_serial() const;
  const std::string& error() const { return error_; }

 private:
  explicit TlsSession(SSL* ssl) : ssl_(ssl) {}
  Io result_of(int returned, std::size_t bytes);
  SSL* ssl_;
  std::string error_;
};

// Waits on `fd` for what `status` (want_read or want_write) asks, until `deadline`: 1 ready,
// 0 deadline passed, -1 error (errno).
int wait_for_tls(int fd, TlsSession::Status status, std::chrono::steady_clock::time_point deadline);

}  // namespace stacknode::db
