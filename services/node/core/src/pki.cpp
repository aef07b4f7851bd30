// The cluster PKI of stacknoded on OpenSSL 3 (see pki.hpp for the invariants): every OpenSSL
// object lives in a std::unique_ptr with its free function, every failure becomes one line that
// names the input and OpenSSL's reason, and OpenSSL's error queue is left empty on return.
#include "stacknode/node/pki.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <iterator>
#include <memory>
#include <utility>

#include "stacknode/node/hex.hpp"
#include "stacknode/node/openssl_ptr.hpp"

namespace stacknode::node::pki {
namespace {

using namespace openssl;

// ---- Errors ----

// Converts to any Made<T> without a value: `return Refusal{"..."};`.
struct Refusal {
  std::string error;
  template <typename T>
  operator Made<T>() const { return Made<T>{std::nullopt, error}; }
};

template <typename T>
Made<T> made(T value) { return Made<T>{std::move(value), {}}; }

// "<what>: <OpenSSL's reason for the oldest queued error>", and empties the queue.
std::string openssl_failure(std::string_view what) {
  const unsigned long code = ERR_get_error();
  std::string line(what);
  if (code != 0) {
    const char* reason = ERR_reason_error_string(code);
    if (reason != nullptr) {
      line += ": ";
      line += reason;
    } else {
      char buffer[256];
      ERR_error_string_n(code, buffer, sizeof buffer);
      line += ": ";
      line += buffer;
    }
  }
  ERR_clear_error();
  return line;
}

// Empties OpenSSL's error queue when a public function returns, whatever the path.
struct ErrorQueueGuard {
  ErrorQueueGuard() { ERR_clear_error(); }
  ~ErrorQueueGuard() { ERR_clear_error(); }
  ErrorQueueGuard(const ErrorQueueGuard&) = delete;
  ErrorQueueGuard& operator=(const ErrorQueueGuard&) = delete;
};

// ---- Input checks ----

std::optional<std::string> node_name_problem(const std::string& name) {
  if (name.empty() || name.size() > node_name_max_length) {
    return "node name '" + name + "' must be 1 to " + std::to_string(node_name_max_length) + " characters, it has " +
           std::to_string(name.size());
  }
  for (const char character : name) {
    const bool allowed = (character >= 'a' && character <= 'z') || (character >= '0' && character <= '9') ||
                         character == '-';
    if (!allowed) return "node name '" + name + "' may only hold a-z, 0-9 and '-'";
  }
  return std::nullopt;
}

std::optional<std::string> cluster_name_problem(const std::string& name) {
  if (name.empty() || name.size() > cluster_name_max_length) {
    return "cluster name must be 1 to " + std::to_string(cluster_name_max_length) + " characters, it has " +
           std::to_string(name.size());
  }
  for (const char character : name) {
    if (character < 0x20 || character > 0x7e) return "cluster name may only hold printable ASCII characters";
  }
  return std::nullopt;
}

std::optional<std::string> validity_problem(std::chrono::seconds validity) {
  if (validity <= std::chrono::seconds::zero() || validity > max_validity) {
    return "validity must be between 1 second and " + std::to_string(max_validity.count()) + " seconds, it is " +
           std::to_string(validity.count());
  }
  return std::nullopt;
}

// The 4 or 16 bytes of an IPv4 or IPv6 address in text, or nothing when it does not parse.
std::optional<std::vector<unsigned char>> parse_ip_address(const std::string& text) {
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(&v4);
    return std::vector<unsigned char>(bytes, bytes + sizeof v4);
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(&v6);
    return std::vector<unsigned char>(bytes, bytes + sizeof v6);
  }
  return std::nullopt;
}

// ---- PEM in and out ----

// A read-only BIO over `pem`, or nothing when the input is over the limit.
BioPtr pem_source(const std::string& pem) {
  if (pem.size() > pem_max_bytes) return nullptr;
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::string too_large(std::string_view what, const std::string& pem) {
  return std::string(what) + " is " + std::to_string(pem.size()) + " bytes, more than the " +
         std::to_string(pem_max_bytes) + " allowed";
}

// Refuses to ask for a passphrase: our keys are never encrypted, and OpenSSL's default callback
// would prompt on the terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

Made<CertificatePtr> read_certificate(const std::string& pem, std::string_view what) {
  BioPtr source = pem_source(pem);
  if (!source) return Refusal{too_large(what, pem)};
  CertificatePtr certificate(PEM_read_bio_X509(source.get(), nullptr, no_passphrase, nullptr));
  if (!certificate) return Refusal{openssl_failure(std::string(what) + " is not a PEM certificate")};
  return made(std::move(certificate));
}

Made<KeyPtr> read_private_key(const std::string& pem, std::string_view what) {
  BioPtr source = pem_source(pem);
  if (!source) return Refusal{too_large(what, pem)};
  KeyPtr key(PEM_read_bio_PrivateKey(source.get(), nullptr, no_passphrase, nullptr));
  if (!key) return Refusal{openssl_failure(std::string(what) + " is not an unencrypted PEM private key")};
  return made(std::move(key));
}

Made<RequestPtr> read_request(const std::string& pem) {
  BioPtr source = pem_source(pem);
  if (!source) return Refusal{too_large("the CSR", pem)};
  RequestPtr request(PEM_read_bio_X509_REQ(source.get(), nullptr, no_passphrase, nullptr));
  if (!request) return Refusal{openssl_failure("the CSR is not a PEM certificate request")};
  return made(std::move(request));
}

// Everything written to a memory BIO, as a string.
std::string drain(BIO* sink) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(sink, &data);
  return std::string(data, static_cast<std::size_t>(length));
}

// ---- Building certificates ----

std::optional<std::string> key_curve_problem(EVP_PKEY* key, std::string_view what) {
  char group[64] = {};
  std::size_t group_length = 0;
  if (!EVP_PKEY_is_a(key, "EC") ||
      EVP_PKEY_get_group_name(key, group, sizeof group, &group_length) != 1 || key_curve != group) {
    ERR_clear_error();
    return std::string(what) + " is not an ECDSA " + std::string(key_curve) + " (P-256) key";
  }
  return std::nullopt;
}

NamePtr common_name(const std::string& text) {
  NamePtr name(X509_NAME_new());
  if (!name ||
      X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()),
                                 -1, 0) != 1) {
    return nullptr;
  }
  return name;
}

// Adds one extension written in OpenSSL's config syntax ("critical,CA:TRUE,pathlen:0").
bool add_extension(X509* certificate, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  ExtensionPtr extension(X509V3_EXT_nconf_nid(nullptr, &context, nid, value));
  return extension && X509_add_ext(certificate, extension.get(), -1) == 1;
}

bool add_ip_addresses(X509* certificate, const std::vector<std::vector<unsigned char>>& addresses) {
  if (addresses.empty()) return true;
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return false;
  for (const auto& address : addresses) {
    OctetStringPtr octets(ASN1_OCTET_STRING_new());
    GeneralNamePtr name(GENERAL_NAME_new());
    if (!octets || !name || ASN1_OCTET_STRING_set(octets.get(), address.data(), static_cast<int>(address.size())) != 1) {
      return false;
    }
    GENERAL_NAME_set0_value(name.get(), GEN_IPADD, octets.release());
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) return false;
    name.release();  // the stack owns it now
  }
  // Not critical: the subject (CN) is not empty (RFC 5280 4.2.1.6).
  return X509_add1_ext_i2d(certificate, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

std::time_t to_time(std::chrono::system_clock::time_point when) { return std::chrono::system_clock::to_time_t(when); }

// Version 3, the given names and public key, valid from now - skew to now + validity.
bool fill_basics(X509* certificate, X509_NAME* subject, X509_NAME* issuer, EVP_PKEY* public_key,
                 std::chrono::system_clock::time_point now, std::chrono::seconds validity) {
  return X509_set_version(certificate, X509_VERSION_3) == 1 && X509_set_subject_name(certificate, subject) == 1 &&
         X509_set_issuer_name(certificate, issuer) == 1 && X509_set_pubkey(certificate, public_key) == 1 &&
         ASN1_TIME_set(X509_getm_notBefore(certificate), to_time(now - clock_skew_allowance)) != nullptr &&
         ASN1_TIME_set(X509_getm_notAfter(certificate), to_time(now + validity)) != nullptr;
}

bool set_random_serial(X509* certificate) {
  unsigned char bytes[ca_serial_bytes];
  do {
    if (RAND_bytes(bytes, sizeof bytes) != 1) return false;
  } while (std::all_of(std::begin(bytes), std::end(bytes), [](unsigned char byte) { return byte == 0; }));
  BignumPtr number(BN_bin2bn(bytes, sizeof bytes, nullptr));  // unsigned, so positive
  return number && BN_to_ASN1_INTEGER(number.get(), X509_get_serialNumber(certificate)) != nullptr;
}

// ---- Reading certificates ----

std::optional<std::string> text_of(const ASN1_STRING* value) {
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, value);
  if (length < 0) return std::nullopt;
  std::string text(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return text;
}

std::optional<std::string> subject_common_name(X509* certificate) {
  const X509_NAME* subject = X509_get_subject_name(certificate);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) return std::nullopt;
  return text_of(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
}

// The IP SANs in inet_ntop's form; nothing when one has a length that is neither 4 nor 16.
std::optional<std::vector<std::string>> ip_addresses_of(X509* certificate) {
  std::vector<std::string> addresses;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return addresses;
  for (int index = 0; index < sk_GENERAL_NAME_num(names.get()); ++index) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), index);
    if (name->type != GEN_IPADD) continue;
    const int length = ASN1_STRING_length(name->d.iPAddress);
    const unsigned char* bytes = ASN1_STRING_get0_data(name->d.iPAddress);
    char text[INET6_ADDRSTRLEN] = {};
    const int family = length == 4 ? AF_INET : length == 16 ? AF_INET6 : AF_UNSPEC;
    if (family == AF_UNSPEC || inet_ntop(family, bytes, text, sizeof text) == nullptr) return std::nullopt;
    addresses.emplace_back(text);
  }
  return addresses;
}

std::optional<std::chrono::system_clock::time_point> time_of(const ASN1_TIME* time) {
  std::tm broken_down{};
  if (ASN1_TIME_to_tm(time, &broken_down) != 1) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&broken_down));
}

}  // namespace

// ---- Issuing ----

Made<Credentials> create_cluster_ca(const std::string& cluster_name, std::chrono::seconds validity,
                                    std::chrono::system_clock::time_point now) {
  ErrorQueueGuard guard;
  if (auto problem = cluster_name_problem(cluster_name)) return Refusal{*problem};
  if (auto problem = validity_problem(validity)) return Refusal{"CA " + *problem};

  Made<std::string> key_pem = generate_private_key();
  if (!key_pem.ok()) return Refusal{key_pem.error};
  Made<KeyPtr> key = read_private_key(*key_pem.value, "the new CA key");
  if (!key.ok()) return Refusal{key.error};

  CertificatePtr certificate(X509_new());
  NamePtr subject = common_name(std::string(ca_common_name_prefix) + cluster_name);
  X509* self = certificate.get();
  if (!certificate || !subject ||
      !fill_basics(self, subject.get(), subject.get(), key.value->get(), now, validity) || !set_random_serial(self) ||
      !add_extension(self, self, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_extension(self, self, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_extension(self, self, NID_subject_key_identifier, "hash")) {
    return Refusal{openssl_failure("cannot build the CA certificate")};
  }
  if (X509_sign(self, key.value->get(), EVP_sha256()) <= 0) {
    return Refusal{openssl_failure("cannot sign the CA certificate")};
  }
  Made<std::string> written = certificate_pem(self);
  if (!written.ok()) return Refusal{written.error};
  return made(Credentials{std::move(*written.value), std::move(*key_pem.value)});
}

Made<std::string> generate_private_key() {
  ErrorQueueGuard guard;
  KeyPtr key(EVP_EC_gen(key_curve.data()));
  if (!key) return Refusal{openssl_failure("cannot generate an ECDSA P-256 key")};
  BioPtr sink(BIO_new(BIO_s_mem()));
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY").
  if (!sink || PEM_write_bio_PrivateKey(sink.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Refusal{openssl_failure("cannot write the private key as PEM")};
  }
  return made(drain(sink.get()));
}

Made<std::string> create_csr(const std::string& private_key_pem, const std::string& node_name) {
  ErrorQueueGuard guard;
  if (auto problem = node_name_problem(node_name)) return Refusal{*problem};
  Made<KeyPtr> key = read_private_key(private_key_pem, "the node key");
  if (!key.ok()) return Refusal{key.error};
  if (auto problem = key_curve_problem(key.value->get(), "the node key")) return Refusal{*problem};

  RequestPtr request(X509_REQ_new());
  NamePtr subject = common_name(node_name);
  if (!request || !subject || X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(request.get(), subject.get()) != 1 ||
      X509_REQ_set_pubkey(request.get(), key.value->get()) != 1 ||
      X509_REQ_sign(request.get(), key.value->get(), EVP_sha256()) <= 0) {
    return Refusal{openssl_failure("cannot build the CSR")};
  }
  BioPtr sink(BIO_new(BIO_s_mem()));
  if (!sink || PEM_write_bio_X509_REQ(sink.get(), request.get()) != 1) {
    return Refusal{openssl_failure("cannot write the CSR as PEM")};
  }
  return made(drain(sink.get()));
}

Made<std::string> sign_node_certificate(const Credentials& ca, const std::string& csr_pem, const NodeIdentity& identity,
                                        std::chrono::system_clock::time_point now) {
  ErrorQueueGuard guard;
  // What the CA decides, checked before anything is parsed.
  if (auto problem = node_name_problem(identity.node_name)) return Refusal{*problem};
  if (identity.serial == 0) return Refusal{"node certificate serial must not be 0 (RFC 5280 wants a positive one)"};
  if (auto problem = validity_problem(identity.validity)) return Refusal{"node certificate " + *problem};
  if (identity.ip_addresses.size() > node_max_ip_addresses) {
    return Refusal{"a node certificate holds at most " + std::to_string(node_max_ip_addresses) +
                   " IP addresses, " + std::to_string(identity.ip_addresses.size()) + " were given"};
  }
  std::vector<std::vector<unsigned char>> addresses;
  for (const std::string& text : identity.ip_addresses) {
    auto address = parse_ip_address(text);
    if (!address) return Refusal{"'" + text + "' is not an IPv4 or IPv6 address"};
    addresses.push_back(std::move(*address));
  }

  // The CA: a CA certificate and the key that belongs to it.
  Made<CertificatePtr> ca_certificate = read_certificate(ca.certificate_pem, "the CA certificate");
  if (!ca_certificate.ok()) return Refusal{ca_certificate.error};
  X509* issuer = ca_certificate.value->get();
  if (X509_check_ca(issuer) == 0) return Refusal{"the CA certificate is not a CA (basicConstraints CA:TRUE missing)"};
  Made<KeyPtr> ca_key = read_private_key(ca.private_key_pem, "the CA private key");
  if (!ca_key.ok()) return Refusal{ca_key.error};
  if (X509_check_private_key(issuer, ca_key.value->get()) != 1) {
    return Refusal{openssl_failure("the CA private key does not match the CA certificate")};
  }

  // The CSR: its own signature must verify, with a P-256 key.
  Made<RequestPtr> request = read_request(csr_pem);
  if (!request.ok()) return Refusal{request.error};
  EVP_PKEY* node_key = X509_REQ_get0_pubkey(request.value->get());
  if (node_key == nullptr) return Refusal{openssl_failure("the CSR's public key cannot be read")};
  if (X509_REQ_verify(request.value->get(), node_key) != 1) {
    return Refusal{openssl_failure("the CSR's signature does not verify (corrupt or tampered CSR)")};
  }
  if (auto problem = key_curve_problem(node_key, "the CSR's key")) return Refusal{*problem};

  CertificatePtr certificate(X509_new());
  NamePtr subject = common_name(identity.node_name);
  X509* leaf = certificate.get();
  if (!certificate || !subject ||
      !fill_basics(leaf, subject.get(), X509_get_subject_name(issuer), node_key, now, identity.validity) ||
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(leaf), identity.serial) != 1 ||
      !add_extension(leaf, issuer, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_extension(leaf, issuer, NID_key_usage, "critical,digitalSignature") ||
      !add_extension(leaf, issuer, NID_ext_key_usage, "serverAuth,clientAuth") ||
      !add_extension(leaf, issuer, NID_subject_key_identifier, "hash") ||
      !add_extension(leaf, issuer, NID_authority_key_identifier, "keyid:always") ||
      !add_ip_addresses(leaf, addresses)) {
    return Refusal{openssl_failure("cannot build the node certificate")};
  }
  if (X509_sign(leaf, ca_key.value->get(), EVP_sha256()) <= 0) {
    return Refusal{openssl_failure("cannot sign the node certificate")};
  }
  return certificate_pem(leaf);
}

// ---- Checking ----

Made<std::string> certificate_pem(X509* certificate) {
  ErrorQueueGuard guard;
  BioPtr sink(BIO_new(BIO_s_mem()));
  if (!sink || PEM_write_bio_X509(sink.get(), certificate) != 1) {
    return Refusal{openssl_failure("cannot write the certificate as PEM")};
  }
  return made(drain(sink.get()));
}

Made<Pin> public_key_pin(const std::string& certificate_pem) {
  ErrorQueueGuard guard;
  Made<CertificatePtr> certificate = read_certificate(certificate_pem, "the certificate");
  if (!certificate.ok()) return Refusal{certificate.error};
  EVP_PKEY* key = X509_get0_pubkey(certificate.value->get());
  unsigned char* der = nullptr;
  const int length = key == nullptr ? -1 : i2d_PUBKEY(key, &der);
  if (length <= 0) return Refusal{openssl_failure("cannot encode the certificate's public key")};
  Pin pin{};
  unsigned int pin_length = 0;
  const int digested = EVP_Digest(der, static_cast<std::size_t>(length), pin.data(), &pin_length, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (digested != 1 || pin_length != pin.size()) return Refusal{openssl_failure("cannot hash the public key")};
  return made(pin);
}

std::string to_hex(const Pin& pin) { return node::to_hex(pin); }

Made<Pin> pin_from_hex(std::string_view hex) {
  if (hex.size() != pin_hex_length) {
    return Refusal{"a public-key pin is " + std::to_string(pin_hex_length) + " hex digits, this one has " +
                   std::to_string(hex.size()) + " characters"};
  }
  for (std::size_t index = 0; index < hex.size(); ++index) {
    if (hex_digit_value(hex[index]) < 0) {
      return Refusal{"public-key pin character " + std::to_string(index + 1) + " ('" + std::string(1, hex[index]) +
                     "') is not a hex digit"};
    }
  }
  Pin pin{};
  from_hex(hex, pin);
  return made(pin);
}

Made<CertificateInfo> verify_node_certificate(const std::string& ca_certificate_pem, const std::string& certificate_pem,
                                              std::chrono::system_clock::time_point now) {
  ErrorQueueGuard guard;
  Made<CertificatePtr> ca_certificate = read_certificate(ca_certificate_pem, "the CA certificate");
  if (!ca_certificate.ok()) return Refusal{ca_certificate.error};
  Made<CertificatePtr> certificate = read_certificate(certificate_pem, "the node certificate");
  if (!certificate.ok()) return Refusal{certificate.error};
  X509* leaf = certificate.value->get();

  StorePtr store(X509_STORE_new());
  StoreContextPtr context(X509_STORE_CTX_new());
  if (!store || !context || X509_STORE_add_cert(store.get(), ca_certificate.value->get()) != 1 ||
      X509_STORE_CTX_init(context.get(), store.get(), leaf, nullptr) != 1) {
    return Refusal{openssl_failure("cannot set up certificate verification")};
  }
  X509_VERIFY_PARAM* parameters = X509_STORE_CTX_get0_param(context.get());
  X509_VERIFY_PARAM_set_flags(parameters, X509_V_FLAG_X509_STRICT);
  X509_VERIFY_PARAM_set_time(parameters, to_time(now));
  X509_VERIFY_PARAM_set_depth(parameters, max_intermediate_certificates);
  // Every node is both a TLS client and a TLS server of its peers: the chain is verified for
  // clientAuth here and the leaf checked for serverAuth below.
  X509_STORE_CTX_set_purpose(context.get(), X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(context.get()) != 1) {
    const int error = X509_STORE_CTX_get_error(context.get());
    return Refusal{std::string("the node certificate does not verify against the cluster CA: ") +
                   X509_verify_cert_error_string(error)};
  }
  if (X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) != 1) {
    return Refusal{"the node certificate is not valid for TLS servers (extendedKeyUsage serverAuth missing)"};
  }
  if (X509_check_ca(leaf) != 0) return Refusal{"the certificate is a CA certificate, not a node certificate"};

  CertificateInfo info;
  const auto name = subject_common_name(leaf);
  if (!name) return Refusal{"the node certificate's subject has no single common name"};
  if (auto problem = node_name_problem(*name)) return Refusal{"the node certificate's " + *problem};
  info.node_name = *name;
  if (ASN1_INTEGER_get_uint64(&info.serial, X509_get0_serialNumber(leaf)) != 1) {
    return Refusal{openssl_failure("the node certificate's serial is not a 64-bit unsigned number")};
  }
  auto addresses = ip_addresses_of(leaf);
  if (!addresses) return Refusal{"the node certificate holds an IP address that is neither 4 nor 16 bytes"};
  info.ip_addresses = std::move(*addresses);
  const auto not_after = time_of(X509_get0_notAfter(leaf));
  if (!not_after) return Refusal{"the node certificate's notAfter cannot be read"};
  info.not_after = *not_after;
  return made(std::move(info));
}

}  // namespace stacknode::node::pki
