// Unit tests of stacknoded's cluster PKI (services/node/core/include/stacknode/node/pki.hpp): what
// the CA and node certificates hold, read back with OpenSSL directly (not the code under test);
// pins against SHA-256 of i2d_PUBKEY computed here; and every refusal with its message: another
// CA, expired, not yet valid, tampered CSRs, bad names and addresses, garbage PEM, a CA key that
// is not the CA's, a certificate issued by a node certificate.
#include <CppUTest/TestHarness.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "stacknode/node/openssl_ptr.hpp"
#include "stacknode/node/pki.hpp"

using namespace stacknode::node::pki;
using std::chrono::seconds;

namespace {

using namespace stacknode::node::openssl;

// A fixed clock: 2025-06-01T00:00:00Z.
constexpr std::time_t now_seconds = 1748736000;
const auto now = std::chrono::system_clock::from_time_t(now_seconds);
constexpr seconds ca_validity{std::chrono::hours(24 * 365 * 10)};
constexpr seconds node_validity{std::chrono::hours(24 * 90)};

template <typename T>
T take(Made<T> made) {
  if (!made.ok()) FAIL(("expected success, got: " + made.error).c_str());
  return std::move(*made.value);
}

// The call was refused and its message names the cause.
template <typename T>
void check_refused(const Made<T>& made, const std::string& cause) {
  if (made.ok()) FAIL(("expected a refusal naming '" + cause + "', but it succeeded").c_str());
  if (made.error.find(cause) == std::string::npos) {
    FAIL(("expected a refusal naming '" + cause + "', got: " + made.error).c_str());
  }
  if (made.error.find('\n') != std::string::npos) FAIL(("error is not one line: " + made.error).c_str());
}

CertificatePtr parse_certificate(const std::string& pem) {
  BioPtr source(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  CertificatePtr certificate(PEM_read_bio_X509(source.get(), nullptr, nullptr, nullptr));
  if (!certificate) FAIL("OpenSSL cannot read the certificate");
  return certificate;
}

KeyPtr parse_key(const std::string& pem) {
  BioPtr source(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr key(PEM_read_bio_PrivateKey(source.get(), nullptr, nullptr, nullptr));
  if (!key) FAIL("OpenSSL cannot read the private key");
  return key;
}

std::string write_certificate(X509* certificate) {
  BioPtr sink(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(sink.get(), certificate);
  char* data = nullptr;
  const long length = BIO_get_mem_data(sink.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

std::string common_name_of(X509* certificate) {
  char name[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, name, sizeof name);
  return name;
}

bool extension_is_critical(X509* certificate, int nid) {
  const int index = X509_get_ext_by_NID(certificate, nid, -1);
  return index >= 0 && X509_EXTENSION_get_critical(X509_get_ext(certificate, index)) == 1;
}

// SHA-256 of the DER SubjectPublicKeyInfo, computed here rather than by public_key_pin.
Pin reference_pin(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  CHECK(length > 0);
  Pin pin{};
  SHA256(der, static_cast<std::size_t>(length), pin.data());
  OPENSSL_free(der);
  return pin;
}

// A PEM block's name and DER bytes, changed by `edit`, written back as PEM.
template <typename Edit>
std::string edit_pem(const std::string& pem, Edit edit) {
  BioPtr source(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long length = 0;
  CHECK_EQUAL(1, PEM_read_bio(source.get(), &name, &header, &data, &length));
  std::vector<unsigned char> der(data, data + length);
  edit(der);
  BioPtr sink(BIO_new(BIO_s_mem()));
  PEM_write_bio(sink.get(), name, header, der.data(), static_cast<long>(der.size()));
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(data);
  char* text = nullptr;
  const long text_length = BIO_get_mem_data(sink.get(), &text);
  return std::string(text, static_cast<std::size_t>(text_length));
}

NodeIdentity identity_of(const std::string& name) {
  return NodeIdentity{name, {"10.0.0.5", "fd00::1"}, 0xfedcba9876543210u, node_validity};
}

}  // namespace

// ---- The cluster CA ----

TEST_GROUP(PkiCa){};

TEST(PkiCa, IsASelfSignedCaWithItsKey) {
  const Credentials ca = take(create_cluster_ca("rack-a", ca_validity, now));
  CertificatePtr certificate = parse_certificate(ca.certificate_pem);
  KeyPtr key = parse_key(ca.private_key_pem);

  CHECK_EQUAL(X509_V_OK, X509_check_issued(certificate.get(), certificate.get()));
  CHECK_EQUAL(1, X509_verify(certificate.get(), X509_get0_pubkey(certificate.get())));
  CHECK_EQUAL(1, X509_check_private_key(certificate.get(), key.get()));
  CHECK_EQUAL(1, X509_check_ca(certificate.get()));
  CHECK(extension_is_critical(certificate.get(), NID_basic_constraints));
  CHECK_EQUAL(0L, X509_get_pathlen(certificate.get()));
  CHECK(extension_is_critical(certificate.get(), NID_key_usage));
  CHECK_EQUAL(static_cast<std::uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN), X509_get_key_usage(certificate.get()));
  STRCMP_EQUAL("stacknode cluster CA rack-a", common_name_of(certificate.get()).c_str());
  CHECK_EQUAL(NID_ecdsa_with_SHA256, X509_get_signature_nid(certificate.get()));
  CHECK(EVP_PKEY_is_a(key.get(), "EC"));
  CHECK_EQUAL(256, EVP_PKEY_get_bits(key.get()));

  // notBefore = now - skew allowance, notAfter = now + validity, to the second.
  const std::time_t skew = clock_skew_allowance.count();
  CHECK_EQUAL(0, ASN1_TIME_cmp_time_t(X509_get0_notBefore(certificate.get()), now_seconds - skew));
  CHECK_EQUAL(0, ASN1_TIME_cmp_time_t(X509_get0_notAfter(certificate.get()), now_seconds + ca_validity.count()));

  // A random 128-bit serial: more than 64 bits but for a 2^-64 chance.
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate.get()), nullptr));
  CHECK(BN_num_bits(serial.get()) > 64);
  CHECK(BN_num_bits(serial.get()) <= 128);
  CHECK(!BN_is_negative(serial.get()));
}

TEST(PkiCa, PinIsSha256OfTheSubjectPublicKeyInfo) {
  const Credentials ca = take(create_cluster_ca("rack-a", ca_validity, now));
  CertificatePtr certificate = parse_certificate(ca.certificate_pem);
  const Pin pin = take(public_key_pin(ca.certificate_pem));
  CHECK(reference_pin(X509_get0_pubkey(certificate.get())) == pin);
  // The private key's public half gives the same pin.
  KeyPtr key = parse_key(ca.private_key_pem);
  CHECK(reference_pin(key.get()) == pin);
}

TEST(PkiCa, TwoCasDiffer) {
  const Credentials first = take(create_cluster_ca("rack-a", ca_validity, now));
  const Credentials second = take(create_cluster_ca("rack-a", ca_validity, now));
  CHECK(take(public_key_pin(first.certificate_pem)) != take(public_key_pin(second.certificate_pem)));
  CertificatePtr first_certificate = parse_certificate(first.certificate_pem);
  CertificatePtr second_certificate = parse_certificate(second.certificate_pem);
  CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(first_certificate.get()),
                         X509_get0_serialNumber(second_certificate.get())) != 0);
}

TEST(PkiCa, RefusesBadClusterNamesAndValidity) {
  check_refused(create_cluster_ca("", ca_validity, now), "cluster name must be 1 to 43 characters");
  check_refused(create_cluster_ca(std::string(cluster_name_max_length + 1, 'a'), ca_validity, now),
                "cluster name must be 1 to 43 characters, it has 44");
  check_refused(create_cluster_ca("rack\na", ca_validity, now), "printable ASCII");
  check_refused(create_cluster_ca("rack-a", seconds(0), now), "validity must be between");
  check_refused(create_cluster_ca("rack-a", max_validity + seconds(1), now), "validity must be between");
  // The longest name fits a 64-character CN.
  const Credentials ca = take(create_cluster_ca(std::string(cluster_name_max_length, 'a'), ca_validity, now));
  CHECK_EQUAL(common_name_max_length, common_name_of(parse_certificate(ca.certificate_pem).get()).size());
}

// ---- Pins in hex ----

TEST_GROUP(PkiPinHex){};

TEST(PkiPinHex, KnownValueAndRoundTrip) {
  Pin pin{};
  for (std::size_t index = 0; index < pin.size(); ++index) pin[index] = static_cast<std::uint8_t>(index * 8 + 1);
  const std::string hex = to_hex(pin);
  STRCMP_EQUAL("0109111921293139414951596169717981899199a1a9b1b9c1c9d1d9e1e9f1f9", hex.c_str());
  CHECK(take(pin_from_hex(hex)) == pin);
  std::string upper = hex;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
  CHECK(take(pin_from_hex(upper)) == pin);
}

TEST(PkiPinHex, RefusesBadHex) {
  const std::string good(pin_hex_length, 'a');
  check_refused(pin_from_hex(good.substr(1)), "64 hex digits, this one has 63");
  check_refused(pin_from_hex(good + "a"), "this one has 65");
  check_refused(pin_from_hex(""), "this one has 0");
  std::string bad = good;
  bad[10] = 'g';
  check_refused(pin_from_hex(bad), "character 11 ('g') is not a hex digit");
}

// ---- Node certificates ----

TEST_GROUP(PkiNode) {
  Credentials ca;
  std::string node_key;
  std::string csr;

  void setup() override {
    ca = take(create_cluster_ca("rack-a", ca_validity, now));
    node_key = take(generate_private_key());
    csr = take(create_csr(node_key, "node-1"));
  }
};

TEST(PkiNode, KeyIsPkcs8P256) {
  CHECK(node_key.find("-----BEGIN PRIVATE KEY-----") == 0);
  KeyPtr key = parse_key(node_key);
  CHECK(EVP_PKEY_is_a(key.get(), "EC"));
  char group[64] = {};
  CHECK_EQUAL(1, EVP_PKEY_get_group_name(key.get(), group, sizeof group, nullptr));
  STRCMP_EQUAL("prime256v1", group);
}

TEST(PkiNode, SignedCertificateVerifiesWithItsIdentity) {
  const std::string certificate_pem = take(sign_node_certificate(ca, csr, identity_of("node-1"), now));
  const CertificateInfo info = take(verify_node_certificate(ca.certificate_pem, certificate_pem, now));
  STRCMP_EQUAL("node-1", info.node_name.c_str());
  CHECK(info.serial == 0xfedcba9876543210u);
  CHECK_EQUAL(2u, info.ip_addresses.size());
  STRCMP_EQUAL("10.0.0.5", info.ip_addresses[0].c_str());
  STRCMP_EQUAL("fd00::1", info.ip_addresses[1].c_str());
  CHECK(info.not_after == now + node_validity);

  // What OpenSSL itself reads: the CSR's key, a leaf that cannot sign, for TLS both ways.
  CertificatePtr certificate = parse_certificate(certificate_pem);
  KeyPtr key = parse_key(node_key);
  CHECK_EQUAL(1, X509_check_private_key(certificate.get(), key.get()));
  CHECK(take(public_key_pin(certificate_pem)) == reference_pin(key.get()));
  CHECK_EQUAL(0, X509_check_ca(certificate.get()));
  CHECK(extension_is_critical(certificate.get(), NID_basic_constraints));
  CHECK(extension_is_critical(certificate.get(), NID_key_usage));
  CHECK_EQUAL(static_cast<std::uint32_t>(KU_DIGITAL_SIGNATURE), X509_get_key_usage(certificate.get()));
  CHECK_EQUAL(static_cast<std::uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT), X509_get_extended_key_usage(certificate.get()));
  CHECK_EQUAL(1, X509_check_ip_asc(certificate.get(), "10.0.0.5", 0));
  CHECK_EQUAL(1, X509_check_ip_asc(certificate.get(), "fd00::1", 0));
  CHECK_EQUAL(0, X509_check_ip_asc(certificate.get(), "10.0.0.6", 0));
  CertificatePtr issuer = parse_certificate(ca.certificate_pem);
  CHECK_EQUAL(X509_V_OK, X509_check_issued(issuer.get(), certificate.get()));
  const std::time_t skew = clock_skew_allowance.count();
  CHECK_EQUAL(0, ASN1_TIME_cmp_time_t(X509_get0_notBefore(certificate.get()), now_seconds - skew));
}

TEST(PkiNode, NameComesFromTheIdentityNotTheCsr) {
  const std::string impostor_csr = take(create_csr(node_key, "node-9"));
  const std::string certificate_pem = take(sign_node_certificate(ca, impostor_csr, identity_of("node-1"), now));
  STRCMP_EQUAL("node-1", take(verify_node_certificate(ca.certificate_pem, certificate_pem, now)).node_name.c_str());
}

TEST(PkiNode, NoAddressesGivesNoSubjectAltName) {
  NodeIdentity identity = identity_of("node-1");
  identity.ip_addresses.clear();
  const std::string certificate_pem = take(sign_node_certificate(ca, csr, identity, now));
  CHECK(take(verify_node_certificate(ca.certificate_pem, certificate_pem, now)).ip_addresses.empty());
  CHECK_EQUAL(-1, X509_get_ext_by_NID(parse_certificate(certificate_pem).get(), NID_subject_alt_name, -1));
}

TEST(PkiNode, ValidFromSkewBeforeNowUntilValidityAfterNow) {
  const std::string certificate_pem = take(sign_node_certificate(ca, csr, identity_of("node-1"), now));
  take(verify_node_certificate(ca.certificate_pem, certificate_pem, now - clock_skew_allowance));
  take(verify_node_certificate(ca.certificate_pem, certificate_pem, now + node_validity - seconds(1)));
  check_refused(verify_node_certificate(ca.certificate_pem, certificate_pem, now + node_validity + seconds(1)),
                "does not verify against the cluster CA: certificate has expired");
  check_refused(verify_node_certificate(ca.certificate_pem, certificate_pem, now - clock_skew_allowance - seconds(1)),
                "does not verify against the cluster CA: certificate is not yet valid");
}

TEST(PkiNode, RefusesACertificateFromAnotherCa) {
  const Credentials other_ca = take(create_cluster_ca("rack-a", ca_validity, now));
  const std::string certificate_pem = take(sign_node_certificate(other_ca, csr, identity_of("node-1"), now));
  check_refused(verify_node_certificate(ca.certificate_pem, certificate_pem, now),
                "does not verify against the cluster CA: unable to get local issuer certificate");
}

TEST(PkiNode, RefusesTheCaCertificateAsANodeCertificate) {
  check_refused(verify_node_certificate(ca.certificate_pem, ca.certificate_pem, now),
                "does not verify against the cluster CA: unsuitable certificate purpose");
}

TEST(PkiNode, RefusesATamperedCsr) {
  // A byte of the subject: "node-1" becomes "node-2"; the CSR still parses.
  const std::string subject_changed = edit_pem(csr, [](std::vector<unsigned char>& der) {
    const std::string name = "node-1";
    auto found = std::search(der.begin(), der.end(), name.begin(), name.end());
    CHECK(found != der.end());
    found[5] = '2';
  });
  CHECK(subject_changed != csr);
  check_refused(sign_node_certificate(ca, subject_changed, identity_of("node-1"), now),
                "the CSR's signature does not verify");
  // The last byte of the DER is the last byte of the signature's s value.
  const std::string signature_changed = edit_pem(csr, [](std::vector<unsigned char>& der) { der.back() ^= 0x01; });
  check_refused(sign_node_certificate(ca, signature_changed, identity_of("node-1"), now),
                "the CSR's signature does not verify");
}

TEST(PkiNode, RefusesBadNodeNames) {
  for (const std::string name : {"", "Node-1", "node_1", "node.1", "node 1", "nöde"}) {
    check_refused(sign_node_certificate(ca, csr, identity_of(name), now), "node name '" + name + "'");
  }
  check_refused(sign_node_certificate(ca, csr, identity_of(std::string(node_name_max_length + 1, 'n')), now),
                "must be 1 to 63 characters, it has 64");
  take(sign_node_certificate(ca, csr, identity_of(std::string(node_name_max_length, 'n')), now));
  check_refused(create_csr(node_key, "Node-1"), "may only hold a-z, 0-9 and '-'");
}

TEST(PkiNode, RefusesBadAddresses) {
  for (const std::string address : {"10.0.0.256", "10.0.0", "010.0.0.5", "fd00:::1", "node-1", "", " 10.0.0.5"}) {
    NodeIdentity identity = identity_of("node-1");
    identity.ip_addresses.push_back(address);
    check_refused(sign_node_certificate(ca, csr, identity, now), "'" + address + "' is not an IPv4 or IPv6 address");
  }
  NodeIdentity crowded = identity_of("node-1");
  crowded.ip_addresses.assign(node_max_ip_addresses + 1, "10.0.0.1");
  check_refused(sign_node_certificate(ca, csr, crowded, now), "at most 16 IP addresses, 17 were given");
}

TEST(PkiNode, RefusesBadSerialAndValidity) {
  NodeIdentity identity = identity_of("node-1");
  identity.serial = 0;
  check_refused(sign_node_certificate(ca, csr, identity, now), "serial must not be 0");
  identity = identity_of("node-1");
  identity.validity = seconds(0);
  check_refused(sign_node_certificate(ca, csr, identity, now), "node certificate validity must be between");
}

TEST(PkiNode, RefusesGarbagePem) {
  const std::string garbage = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
  check_refused(sign_node_certificate(ca, "garbage", identity_of("node-1"), now),
                "the CSR is not a PEM certificate request: no start line");
  check_refused(sign_node_certificate(Credentials{"garbage", ca.private_key_pem}, csr, identity_of("node-1"), now),
                "the CA certificate is not a PEM certificate: no start line");
  check_refused(sign_node_certificate(Credentials{ca.certificate_pem, "garbage"}, csr, identity_of("node-1"), now),
                "the CA private key is not an unencrypted PEM private key");
  check_refused(verify_node_certificate(ca.certificate_pem, garbage, now), "the node certificate is not a PEM certificate");
  check_refused(verify_node_certificate("", ca.certificate_pem, now), "the CA certificate is not a PEM certificate");
  check_refused(public_key_pin(garbage), "the certificate is not a PEM certificate");
  check_refused(create_csr("garbage", "node-1"), "the node key is not an unencrypted PEM private key");
  check_refused(public_key_pin(std::string(pem_max_bytes + 1, 'A')), "is 16385 bytes, more than the 16384 allowed");
}

TEST(PkiNode, RefusesACaKeyThatIsNotTheCas) {
  const Credentials other_ca = take(create_cluster_ca("rack-a", ca_validity, now));
  check_refused(sign_node_certificate(Credentials{ca.certificate_pem, other_ca.private_key_pem}, csr,
                                      identity_of("node-1"), now),
                "the CA private key does not match the CA certificate");
}

TEST(PkiNode, RefusesToSignWithANodeCertificate) {
  const Credentials node{take(sign_node_certificate(ca, csr, identity_of("node-1"), now)), node_key};
  const std::string other_csr = take(create_csr(take(generate_private_key()), "node-2"));
  check_refused(sign_node_certificate(node, other_csr, identity_of("node-2"), now), "the CA certificate is not a CA");
}

TEST(PkiNode, ACertificateIssuedByANodeCertificateDoesNotVerify) {
  // node-1 holds a genuine certificate and mints one for node-2 with its own key (built here
  // with OpenSSL, since sign_node_certificate refuses a non-CA issuer).
  const std::string node1_pem = take(sign_node_certificate(ca, csr, identity_of("node-1"), now));
  const std::string other_csr = take(create_csr(take(generate_private_key()), "node-2"));
  CertificatePtr forged = parse_certificate(take(sign_node_certificate(ca, other_csr, identity_of("node-2"), now)));
  CertificatePtr node1 = parse_certificate(node1_pem);
  KeyPtr node1_key = parse_key(node_key);
  CHECK_EQUAL(1, X509_set_issuer_name(forged.get(), X509_get_subject_name(node1.get())));
  ExtensionPtr authority_key_id(X509_delete_ext(forged.get(), X509_get_ext_by_NID(forged.get(), NID_authority_key_identifier, -1)));
  CHECK(authority_key_id != nullptr);
  CHECK(X509_sign(forged.get(), node1_key.get(), EVP_sha256()) > 0);
  CHECK_EQUAL(1, X509_verify(forged.get(), X509_get0_pubkey(node1.get())));  // node-1's signature is good
  const std::string forged_pem = write_certificate(forged.get());

  check_refused(verify_node_certificate(ca.certificate_pem, forged_pem, now),
                "does not verify against the cluster CA: unable to get local issuer certificate");
  // Even when node-1's certificate is offered as the CA.
  check_refused(verify_node_certificate(node1_pem, forged_pem, now), "does not verify against the cluster CA");
}
