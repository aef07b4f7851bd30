// libFuzzer target over the content bundle parser (services/node/core: parse_bundle), which reads
// bundles pushed through the API and read back from the control database: the input is the
// bundle's bytes. Sanitizers catch memory errors; the invariants below catch wrong answers and
// stop with __builtin_trap().
//
// Invariants checked:
//  1. A refusal has a one-line message and leaves the bundle empty, even one that held a file
//     before the call.
//  2. An accepted bundle keeps the limits, every path passes check_bundle_path, the paths are in
//     strictly increasing byte order, and no path is the directory of another.
//  3. Re-encoding an accepted bundle gives exactly the input: a set of files has one spelling.
// Each input is parsed twice: as it is, and with its last 32 bytes replaced by the SHA-256 of the
// rest (OpenSSL's, not the code under test's), so that mutations reach past the check and the
// invariants on accepted bundles are exercised too.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <openssl/evp.h>

#include "stacknode/node/content_bundle.hpp"

using namespace stacknode::node;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

void check_parse(std::span<const std::uint8_t> bytes) {
  Bundle bundle;
  bundle.files.push_back({"stale/file", true, "from before the call"});
  const BundleError error = parse_bundle(bytes, bundle);
  if (!error.ok()) {
    check(!error.message.empty() && error.message.find('\n') == std::string::npos);
    check(bundle.files.empty());
    return;
  }
  check(bundle.files.size() <= max_bundle_files);
  std::unordered_set<std::string_view> paths;
  for (std::size_t index = 0; index < bundle.files.size(); ++index) {
    const std::string& path = bundle.files[index].path;
    check(check_bundle_path(path).empty());
    if (index > 0) check(bundle.files[index - 1].path < path);
    // Every directory of this path that could be a file sorts before it, so is in `paths`.
    for (std::size_t slash = path.find('/'); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      check(!paths.contains(std::string_view(path).substr(0, slash)));
    }
    paths.insert(path);
  }
  const std::vector<std::uint8_t> again = encode_bundle(bundle);
  check(again.size() == bytes.size() && std::equal(again.begin(), again.end(), bytes.begin()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  check_parse(bytes);
  if (size < bundle_check_bytes) return 0;
  std::vector<std::uint8_t> rechecked(data, data + size);
  const std::size_t body = size - bundle_check_bytes;
  unsigned int length = 0;
  if (EVP_Digest(rechecked.data(), body, rechecked.data() + body, &length, EVP_sha256(), nullptr) !=
      1)
    return 0;
  check_parse(rechecked);
  return 0;
}
