// The cluster PKI of stacknoded, on OpenSSL 3: the cluster CA (self-signed, ECDSA P-256), node
// keys and CSRs, node certificates signed by the CA, their verification against that CA alone,
// and public-key pins (SHA-256 of the DER SubjectPublicKeyInfo) that a joining node checks.
// Pure functions: no files, no clock (the caller passes `now`), every input treated as untrusted.
//
// Invariants of what this file issues:
//   1. The CA is the only CA: CA:TRUE pathlen:0, keyCertSign+cRLSign; a chain is node -> CA.
//   2. A node certificate's subject CN is the name the CA was told (NodeIdentity), never the one
//      the CSR asks for; its addresses are exactly the IP SANs given; it can never sign.
//   3. Nothing is signed from a CSR whose own signature does not verify, nor with a CA key that
//      does not belong to the CA certificate.
#pragma once

#include <openssl/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stacknode::node::pki {

// ---- Limits ----

// A node name becomes a DNS label and a certificate CN: 1-63 characters of [a-z0-9-] (RFC 1035).
inline constexpr std::size_t node_name_max_length = 63;
// The CA's subject CN is this prefix + the cluster name; a CN is at most 64 characters
// (RFC 5280 ub-common-name), which leaves the rest for the cluster name.
inline constexpr std::string_view ca_common_name_prefix = "stacknode cluster CA ";
inline constexpr std::size_t common_name_max_length = 64;
inline constexpr std::size_t cluster_name_max_length = common_name_max_length - ca_common_name_prefix.size();
// A P-256 certificate or CSR in PEM is about 1 KiB; anything much larger is not ours.
inline constexpr std::size_t pem_max_bytes = 16 * 1024;
// A node has a few interfaces (management, data, IPv4 and IPv6 of each).
inline constexpr std::size_t node_max_ip_addresses = 16;
// notBefore is set this far before `now`, so that a node whose clock is a little behind the
// signer's accepts a certificate issued a moment ago.
inline constexpr std::chrono::seconds clock_skew_allowance{5 * 60};
// Longer than the hardware lives; it also keeps notAfter far inside time_t and ASN.1 time.
inline constexpr std::chrono::seconds max_validity{std::chrono::hours(24 * 365 * 30)};
// RFC 5280 allows up to 20 octets; 128 random bits make a collision between CAs negligible.
inline constexpr std::size_t ca_serial_bytes = 16;
// Every key is on this curve (OpenSSL's group name for NIST P-256).
inline constexpr std::string_view key_curve = "prime256v1";
// The chain is node certificate -> CA, with nothing in between.
inline constexpr int max_intermediate_certificates = 0;

// ---- Types ----

// A result or a one-line error a person can act on.
template <typename T>
struct Made {
  std::optional<T> value;
  std::string error;
  bool ok() const { return value.has_value(); }
};

struct Credentials {
  std::string certificate_pem;
  std::string private_key_pem;  // PKCS#8, unencrypted
};

// SHA-256 of a certificate's DER SubjectPublicKeyInfo.
using Pin = std::array<std::uint8_t, 32>;
inline constexpr std::size_t pin_hex_length = 2 * std::tuple_size_v<Pin>;

// What the CA decides about a node; the CSR only contributes the public key.
struct NodeIdentity {
  std::string node_name;
  std::vector<std::string> ip_addresses;  // IPv4 dotted quads or IPv6 text
  std::uint64_t serial = 0;               // unique per CA, not 0
  std::chrono::seconds validity{0};
};

// What a verified node certificate says. IPv6 addresses are in inet_ntop's form ("fd00::1").
struct CertificateInfo {
  std::string node_name;
  std::uint64_t serial = 0;
  std::vector<std::string> ip_addresses;
  std::chrono::system_clock::time_point not_after;
};

// ---- Issuing ----

// A self-signed cluster CA, subject CN "stacknode cluster CA <cluster_name>", a random 128-bit
// serial, valid from now - clock_skew_allowance to now + validity. cluster_name: 1 to
// cluster_name_max_length printable ASCII characters.
Made<Credentials> create_cluster_ca(const std::string& cluster_name, std::chrono::seconds validity,
                                    std::chrono::system_clock::time_point now);

// A new ECDSA P-256 private key in PKCS#8 PEM.
Made<std::string> generate_private_key();

// A CSR for `node_name` signed with the (P-256, PKCS#8 PEM) private key.
Made<std::string> create_csr(const std::string& private_key_pem, const std::string& node_name);

// A node certificate for the CSR's public key, with identity's name, addresses and serial,
// valid from now - clock_skew_allowance to now + identity.validity: CA:FALSE, digitalSignature,
// serverAuth+clientAuth. Refuses a CSR whose signature does not verify or whose key is not
// P-256, a CA key that does not match the CA certificate, a CA certificate that is not a CA, a
// bad node name, an address that does not parse.
Made<std::string> sign_node_certificate(const Credentials& ca, const std::string& csr_pem, const NodeIdentity& identity,
                                        std::chrono::system_clock::time_point now);

// ---- Checking ----

Made<Pin> public_key_pin(const std::string& certificate_pem);
// A certificate OpenSSL holds (one a TLS peer presented), in PEM.
Made<std::string> certificate_pem(X509* certificate);
std::string to_hex(const Pin& pin);  // 64 lowercase hex digits
Made<Pin> pin_from_hex(std::string_view hex);  // 64 hex digits, either case

// Verifies `certificate_pem` against that CA alone at time `now` (OpenSSL's X509_verify_cert,
// strict RFC 5280 checks, usable for both TLS client and server), then reads what it says.
// The error carries OpenSSL's reason ("certificate has expired", ...).
Made<CertificateInfo> verify_node_certificate(const std::string& ca_certificate_pem, const std::string& certificate_pem,
                                              std::chrono::system_clock::time_point now);

}  // namespace stacknode::node::pki
