// A pinned HTTPS request to a cluster member; see pinned_https.hpp for what is checked and when.
#include "stacknode/node/pinned_https.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <optional>

#include "stacknode/node/join_token.hpp"
#include "stacknode/node/openssl_ptr.hpp"

namespace stacknode::node {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

PinnedAnswer failure(PinnedStep step, const std::string& address, const std::string& reason) {
  PinnedAnswer answer;
  answer.failed = step;
  answer.error = address + ": " + std::string(to_string(step)) + ": " + reason;
  return answer;
}

}  // namespace

std::string_view to_string(PinnedStep step) {
  switch (step) {
    case PinnedStep::none: return "none";
    case PinnedStep::address: return "address";
    case PinnedStep::connect: return "connect";
    case PinnedStep::handshake: return "TLS handshake";
    case PinnedStep::pin: return "cluster pin";
    case PinnedStep::chain: return "member certificate";
    case PinnedStep::exchange: return "request";
  }
  return "unknown";
}

PinnedAnswer pinned_https_request(const std::string& address, const pki::Pin& pin,
                                  bhttp::request<bhttp::string_body> request,
                                  std::chrono::system_clock::time_point now, std::chrono::milliseconds timeout,
                                  const pki::Credentials* client) {
  const std::optional<MemberAddress> member_address = parse_member_address(address);
  if (!member_address) return failure(PinnedStep::address, address, "not IP:port");
  boost::system::error_code error;
  const asio::ip::address ip = asio::ip::make_address(member_address->host, error);
  if (error) return failure(PinnedStep::address, address, error.message());
  const tcp::endpoint endpoint(ip, member_address->port);

  asio::io_context io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  context.set_verify_mode(asio::ssl::verify_none);  // checked below, against the pin
  if (client != nullptr) {
    context.use_certificate_chain(asio::buffer(client->certificate_pem), error);
    if (!error) context.use_private_key(asio::buffer(client->private_key_pem), asio::ssl::context::pem, error);
    if (error) return failure(PinnedStep::handshake, address, "this box's certificate or key: " + error.message());
  }
  beast::ssl_stream<beast::tcp_stream> stream(io, context);
  beast::get_lowest_layer(stream).expires_after(timeout);
  beast::get_lowest_layer(stream).connect(endpoint, error);
  if (error) return failure(PinnedStep::connect, address, error.message());
  stream.handshake(asio::ssl::stream_base::client, error);
  if (error) return failure(PinnedStep::handshake, address, error.message());

  // 1. A CA with the pin in the presented chain (on the client side the chain includes the leaf).
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(stream.native_handle());
  std::optional<std::string> ca_pem;
  for (int index = 0; chain != nullptr && index < sk_X509_num(chain); ++index) {
    X509* certificate = sk_X509_value(chain, index);
    if (X509_check_ca(certificate) == 0) continue;
    pki::Made<std::string> pem = pki::certificate_pem(certificate);
    if (!pem.ok()) continue;
    const pki::Made<pki::Pin> presented = pki::public_key_pin(*pem.value);
    if (presented.ok() && *presented.value == pin) {
      ca_pem = std::move(pem.value);
      break;
    }
  }
  if (!ca_pem) {
    return failure(PinnedStep::pin, address,
                   "no CA certificate it presented has the token's pin: this is not the cluster the token is for");
  }
  // 2. The member's own certificate, against that CA alone.
  openssl::CertificatePtr leaf(SSL_get1_peer_certificate(stream.native_handle()));
  if (!leaf) return failure(PinnedStep::chain, address, "it presented no certificate of its own");
  const pki::Made<std::string> leaf_pem = pki::certificate_pem(leaf.get());
  if (!leaf_pem.ok()) return failure(PinnedStep::chain, address, leaf_pem.error);
  pki::Made<pki::CertificateInfo> member = pki::verify_node_certificate(*ca_pem, *leaf_pem.value, now);
  if (!member.ok()) {
    return failure(PinnedStep::chain, address, "its certificate is not one the pinned CA issued: " + member.error);
  }

  // Only now: the request.
  request.prepare_payload();
  bhttp::write(stream, request, error);
  if (error) return failure(PinnedStep::exchange, address, "sending: " + error.message());
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(max_pinned_response_bytes);
  bhttp::read(stream, buffer, parser, error);
  if (error) return failure(PinnedStep::exchange, address, "reading the answer: " + error.message());
  // A courtesy, one way: our close_notify, without waiting for the member's (a blocking wait that
  // no deadline bounds: a peer whose socket stays open would hold the caller forever).
  SSL_shutdown(stream.native_handle());

  PinnedAnswer answer;
  answer.response = parser.release();
  answer.ca_certificate_pem = std::move(*ca_pem);
  answer.member = std::move(*member.value);
  return answer;
}

}  // namespace stacknode::node
