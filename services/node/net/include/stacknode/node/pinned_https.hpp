// One HTTPS request to a cluster member this box does not trust yet (join step 3 of the README's
// design): the TLS chain the member presents is checked against a CA pin, the pin a join token
// carries, before a single byte of the request is written. Nothing secret leaves the box for a
// member that cannot prove it belongs to the pinned cluster.
//
// Checked after the handshake, in this order (the handshake itself verifies nothing: this box has
// no CA yet, which is the point of the pin):
//   1. some certificate of the presented chain has the pin (SHA-256 of its public key) and is a CA;
//   2. the member's own certificate verifies against that CA alone (pki::verify_node_certificate:
//      signature, validity at `now`, usage), so a stranger who copies the CA certificate into its
//      chain is still refused.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "stacknode/node/pki.hpp"

namespace stacknode::node {

namespace bhttp = boost::beast::http;

// A join answer is a certificate and a few addresses; a bigger one is not a member's.
inline constexpr std::uint64_t max_pinned_response_bytes = 1024 * 1024;

enum class PinnedStep : std::uint8_t {
  none,       // success
  address,    // the address is not IP:port
  connect,    // nothing answered there, or not in time
  handshake,  // TLS failed
  pin,        // no CA in the chain has the pin: not this cluster, or a stranger
  chain,      // the member's certificate does not verify against the pinned CA
  exchange,   // the request or the answer failed (timeout, closed, not HTTP)
};
std::string_view to_string(PinnedStep step);

struct PinnedAnswer {
  PinnedStep failed = PinnedStep::none;
  std::string error;  // for a person: the address, the step, the reason
  bhttp::response<bhttp::string_body> response;
  std::string ca_certificate_pem;   // the pinned CA as the member presented it
  pki::CertificateInfo member;      // what the member's verified certificate says
  bool ok() const { return failed == PinnedStep::none; }
};

// Connects to `address` ("198.18.1.11:8443"), checks the chain against `pin` at `now`, and only
// then sends `request` and reads the answer, all within `timeout`. With `client`, this box
// presents that certificate (a member's node certificate: mutual TLS, as stackctl on a member
// and node-to-node calls do); a member uses its own CA's pin, so the check above is the full
// server verification.
PinnedAnswer pinned_https_request(const std::string& address, const pki::Pin& pin,
                                  bhttp::request<bhttp::string_body> request,
                                  std::chrono::system_clock::time_point now, std::chrono::milliseconds timeout,
                                  const pki::Credentials* client = nullptr);

}  // namespace stacknode::node
