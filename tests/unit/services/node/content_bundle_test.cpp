// Unit tests of content bundles (services/node/core/include/stacknode/node/content_bundle.hpp):
// the byte form against bytes built here by hand (with OpenSSL's one-shot SHA256(), not the code
// under test), round trips, every refusal with its message (each cut, each flipped byte, order,
// modes, the path rules, trailing bytes, the limits), and directories read and written in a
// temporary directory (nested files and modes, symlinks, FIFOs, an existing target).
#include <CppUTest/TestHarness.h>

#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "process.hpp"
#include "stacknode/node/content_bundle.hpp"

using namespace stacknode::node;
namespace fs = std::filesystem;
namespace support = stacknode::test;

namespace {

using Bytes = std::vector<std::uint8_t>;

// Field values of the byte form, spelled out here rather than taken from the code under test.
constexpr std::uint8_t plain = 0;
constexpr std::uint8_t executable = 1;
constexpr std::size_t check_bytes = 32;

// Builds the byte form by hand, field by field.
struct Builder {
  Bytes bytes;

  Builder& text(std::string_view value) {
    bytes.insert(bytes.end(), value.begin(), value.end());
    return *this;
  }
  Builder& u8(std::uint8_t value) {
    bytes.push_back(value);
    return *this;
  }
  Builder& u16(std::uint16_t value) {
    bytes.push_back(static_cast<std::uint8_t>(value >> 8));
    bytes.push_back(static_cast<std::uint8_t>(value));
    return *this;
  }
  Builder& u32(std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8)
      bytes.push_back(static_cast<std::uint8_t>(value >> shift));
    return *this;
  }
  Builder& u64(std::uint64_t value) {
    for (int shift = 56; shift >= 0; shift -= 8)
      bytes.push_back(static_cast<std::uint8_t>(value >> shift));
    return *this;
  }
  // One file's record: path length, path, mode, size, data.
  Builder& file(std::string_view path, std::uint8_t mode, std::string_view data) {
    return u16(static_cast<std::uint16_t>(path.size()))
        .text(path)
        .u8(mode)
        .u64(data.size())
        .text(data);
  }
  // The bytes so far with their SHA-256 appended.
  Bytes checked() const {
    Bytes out = bytes;
    std::uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(out.data(), out.size(), digest);
    out.insert(out.end(), digest, digest + SHA256_DIGEST_LENGTH);
    return out;
  }
};

struct RawFile {
  std::string path;
  std::uint8_t mode;
  std::string data;
};

// A well-checked bundle of `files` in the order given (which may be wrong on purpose).
Bytes craft(const std::vector<RawFile>& files) {
  Builder builder;
  builder.text("SNB1").u32(static_cast<std::uint32_t>(files.size()));
  for (const RawFile& file : files) builder.file(file.path, file.mode, file.data);
  return builder.checked();
}

std::string hex(const std::uint8_t* bytes, std::size_t size) {
  static const char digits[] = "0123456789abcdef";
  std::string text;
  for (std::size_t index = 0; index < size; ++index) {
    text += digits[bytes[index] >> 4];
    text += digits[bytes[index] & 0xf];
  }
  return text;
}

// index.html and bin/run, given out of order; the encoder sorts them.
Bundle sample_bundle() {
  Bundle bundle;
  bundle.files.push_back({"index.html", false, "<h1>hi</h1>\n"});
  bundle.files.push_back({"bin/run", true, "#!/bin/sh\n"});
  return bundle;
}

bool same_files(const Bundle& left, const Bundle& right) {
  if (left.files.size() != right.files.size()) return false;
  for (std::size_t index = 0; index < left.files.size(); ++index) {
    const BundleFile& a = left.files[index];
    const BundleFile& b = right.files[index];
    if (a.path != b.path || a.executable != b.executable || a.data != b.data) return false;
  }
  return true;
}

void check_contains(const std::string& message, const std::string& fragment) {
  if (message.find(fragment) == std::string::npos) {
    FAIL(("message \"" + message + "\" lacks \"" + fragment + "\"").c_str());
  }
  if (message.find('\n') != std::string::npos)
    FAIL(("message \"" + message + "\" is more than one line").c_str());
}

// Parses into a bundle that already holds a file: a refusal must leave it empty.
void check_refused(const Bytes& bytes, const std::string& fragment) {
  Bundle bundle;
  bundle.files.push_back({"left/over", false, "x"});
  const BundleError error = parse_bundle(bytes, bundle);
  if (error.ok()) FAIL(("accepted; expected a refusal with \"" + fragment + "\"").c_str());
  CHECK(bundle.files.empty());
  check_contains(error.message, fragment);
}

void check_encode_refused(const Bundle& bundle, const std::string& fragment) {
  try {
    encode_bundle(bundle);
  } catch (const std::invalid_argument& error) {
    check_contains(error.what(), fragment);
    return;
  }
  FAIL(
      ("encode_bundle accepted; expected std::invalid_argument with \"" + fragment + "\"").c_str());
}

std::string nested_path(std::size_t components) {
  std::string path = "d";
  for (std::size_t index = 1; index < components; ++index) path += "/d";
  return path;
}

}  // namespace

TEST_GROUP(ContentBundleBytes){};

TEST(ContentBundleBytes, TwoFilesEncodeToTheDocumentedBytes) {
  Bytes expected = {'S', 'N', 'B', '1', 0, 0, 0, 2,
                    // bin/run, executable, 10 bytes
                    0, 7, 'b', 'i', 'n', '/', 'r', 'u', 'n', 1, 0, 0, 0, 0, 0, 0, 0, 10};
  const std::string script = "#!/bin/sh\n";
  expected.insert(expected.end(), script.begin(), script.end());
  // index.html, plain, 12 bytes
  const Bytes index_header = {0,   10, 'i', 'n', 'd', 'e', 'x', '.', 'h', 't', 'm',
                              'l', 0,  0,   0,   0,   0,   0,   0,   0,   12};
  expected.insert(expected.end(), index_header.begin(), index_header.end());
  const std::string page = "<h1>hi</h1>\n";
  expected.insert(expected.end(), page.begin(), page.end());
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(expected.data(), expected.size(), digest);
  expected.insert(expected.end(), digest, digest + SHA256_DIGEST_LENGTH);

  const Bytes encoded = encode_bundle(sample_bundle());
  CHECK_EQUAL(expected.size(), encoded.size());
  CHECK(expected == encoded);
  // The builder the other tests use agrees with the literal bytes.
  CHECK(craft({{"bin/run", executable, script}, {"index.html", plain, page}}) == encoded);
}

TEST(ContentBundleBytes, Sha256HexIsLowercaseSha256) {
  const std::string abc = "abc";
  STRCMP_EQUAL("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
               sha256_hex(Bytes(abc.begin(), abc.end())).c_str());
  STRCMP_EQUAL("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
               sha256_hex({}).c_str());
  const Bytes encoded = encode_bundle(sample_bundle());
  std::uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(encoded.data(), encoded.size(), digest);
  STRCMP_EQUAL(hex(digest, SHA256_DIGEST_LENGTH).c_str(), sha256_hex(encoded).c_str());
}

TEST(ContentBundleBytes, RoundTripsSortedAndKeepsEveryByte) {
  Bundle bundle = sample_bundle();
  std::string binary;
  for (int value = 0; value < 256; ++value) binary += static_cast<char>(value);
  bundle.files.push_back({"data.bin", false, binary});
  bundle.files.push_back({"empty", true, ""});
  bundle.files.push_back({"a-b/c", false, "dash sorts before slash"});
  bundle.files.push_back({"a/b", false, "slash"});
  bundle.files.push_back({"caf\xc3\xa9.html", false, "utf-8 name"});
  const Bytes encoded = encode_bundle(bundle);
  Bundle parsed;
  const BundleError error = parse_bundle(encoded, parsed);
  if (!error.ok()) FAIL(error.message.c_str());
  const std::vector<std::string> order = {"a-b/c",    "a/b",   "bin/run",   "caf\xc3\xa9.html",
                                          "data.bin", "empty", "index.html"};
  CHECK_EQUAL(order.size(), parsed.files.size());
  for (std::size_t index = 0; index < order.size(); ++index)
    STRCMP_EQUAL(order[index].c_str(), parsed.files[index].path.c_str());
  CHECK(parsed.files[2].executable);
  CHECK(parsed.files[5].executable);
  CHECK_FALSE(parsed.files[6].executable);
  CHECK(parsed.files[4].data == binary);
  CHECK(encode_bundle(parsed) == encoded);
}

TEST(ContentBundleBytes, EmptyBundleIsMagicZeroAndCheck) {
  const Bytes encoded = encode_bundle(Bundle{});
  CHECK(Builder{}.text("SNB1").u32(0).checked() == encoded);
  Bundle parsed;
  parsed.files.push_back({"stale", false, ""});
  CHECK(parse_bundle(encoded, parsed).ok());
  CHECK(parsed.files.empty());
}

TEST(ContentBundleBytes, BadMagicIsRefused) {
  Bytes encoded = encode_bundle(sample_bundle());
  check_refused({}, "does not start with \"SNB1\"");
  check_refused({'S', 'N', 'B'}, "does not start with \"SNB1\"");
  encoded[3] = '2';
  check_refused(encoded, "does not start with \"SNB1\"");
  check_refused(Builder{}.text("PK\x03\x04").u32(0).checked(), "not a content bundle");
}

TEST(ContentBundleBytes, EveryCutIsRefused) {
  const Bytes encoded = encode_bundle(sample_bundle());
  for (std::size_t length = 0; length < encoded.size(); ++length) {
    Bundle bundle;
    bundle.files.push_back({"left/over", false, "x"});
    const BundleError error =
        parse_bundle(std::span<const std::uint8_t>(encoded.data(), length), bundle);
    if (error.ok()) FAIL(("accepted cut to " + std::to_string(length) + " bytes").c_str());
    CHECK(bundle.files.empty());
    CHECK(error.message.rfind("bundle: ", 0) == 0);
  }
  check_refused(Bytes(encoded.begin(), encoded.end() - 1), "cut short: 31 of the 32 check bytes");
  check_refused(Bytes(encoded.begin(), encoded.begin() + 6), "cut short in the file count");
  check_refused(Bytes(encoded.begin(), encoded.begin() + 9),
                "file 1: cut short in the path length");
  check_refused(Bytes(encoded.begin(), encoded.begin() + 30),
                "file 1 (\"bin/run\"): size 10 is more than the 4 bytes left");
}

TEST(ContentBundleBytes, EveryFlippedByteIsRefused) {
  const Bytes encoded = encode_bundle(sample_bundle());
  for (std::size_t index = 0; index < encoded.size(); ++index) {
    for (const std::uint8_t mask : {0x01, 0x80, 0xff}) {
      Bytes changed = encoded;
      changed[index] ^= mask;
      Bundle bundle;
      const BundleError error = parse_bundle(changed, bundle);
      if (error.ok()) FAIL(("accepted with byte " + std::to_string(index) + " flipped").c_str());
      CHECK(bundle.files.empty());
    }
  }
  // A changed data byte is found by the check alone, with exactly this message.
  Bytes changed = encoded;
  changed[30] ^= 0x01;  // inside "#!/bin/sh\n"
  Bundle bundle;
  STRCMP_EQUAL("bundle: check does not match (damaged)",
               parse_bundle(changed, bundle).message.c_str());
}

TEST(ContentBundleBytes, PathsMustBeStrictlyIncreasing) {
  check_refused(craft({{"b", plain, ""}, {"a", plain, ""}}), "file 2 (\"a\"): comes after \"b\"");
  check_refused(craft({{"a", plain, "1"}, {"a", plain, "2"}}), "file 2 (\"a\"): appears twice");
  // Byte order, not locale order: "Z" (0x5a) comes before "a" (0x61), "a/b" after "a-b".
  Bundle parsed;
  CHECK(parse_bundle(craft({{"Z", plain, ""}, {"a", plain, ""}}), parsed).ok());
  CHECK(parse_bundle(craft({{"a-b", plain, ""}, {"a/b", plain, ""}}), parsed).ok());
  check_refused(craft({{"a/b", plain, ""}, {"a-b", plain, ""}}), "comes after \"a/b\"");
  check_refused(craft({{"\xc3\xa9", plain, ""}, {"z", plain, ""}}), "comes after \"\\xc3\\xa9\"");
}

TEST(ContentBundleBytes, OnlyModesZeroAndOne) {
  check_refused(craft({{"a", 2, ""}}), "file 1 (\"a\"): mode 2");
  check_refused(craft({{"a", plain, ""}, {"b", 0xff, ""}}), "file 2 (\"b\"): mode 255");
  Bundle parsed;
  CHECK(parse_bundle(craft({{"a", executable, ""}}), parsed).ok());
  CHECK(parsed.files.at(0).executable);
}

TEST(ContentBundleBytes, PathRules) {
  struct Case {
    std::string path;
    const char* fragment;  // nullptr: accepted
  };
  const std::vector<Case> cases = {
      {"a", nullptr},
      {"index.html", nullptr},
      {"css/site.css", nullptr},
      {".well-known/security.txt", nullptr},
      {"...", nullptr},
      {"a..b/..c/d..", nullptr},
      {"with space/~tilde", nullptr},
      {"caf\xc3\xa9", nullptr},
      {std::string(max_bundle_path_bytes, 'x'), nullptr},
      {nested_path(max_bundle_path_depth), nullptr},
      {"", "path is empty"},
      {"/etc/passwd", "starts with '/'"},
      {"a/", "ends with '/'"},
      {"a//b", "an empty component"},
      {".", "a \".\" component"},
      {"a/./b", "a \".\" component"},
      {"..", "a \"..\" component"},
      {"a/../b", "path \"a/../b\": a \"..\" component"},
      {"a/..", "a \"..\" component"},
      {std::string("a\0b", 3), "path \"a\\x00b\": a NUL byte at byte 2"},
      {"a\\b", "path \"a\\\\b\": a backslash at byte 2"},
      {"a\nb", "path \"a\\x0ab\": a control character at byte 2"},
      {"\t", "a control character at byte 1"},
      {"a\x7f", "a control character at byte 2"},
      {std::string(max_bundle_path_bytes + 1, 'x'), "is 1025 bytes, more than 1024"},
      {nested_path(max_bundle_path_depth + 1), "33 components, more than 32"},
  };
  for (const Case& test : cases) {
    const std::string reason = check_bundle_path(test.path);
    if (test.fragment == nullptr) {
      if (!reason.empty()) FAIL(("refused a good path: " + reason).c_str());
      continue;
    }
    if (reason.empty()) FAIL(("accepted the bad path \"" + test.path + "\"").c_str());
    check_contains(reason, test.fragment);
    // The same path inside a well-checked bundle, and given to the encoder.
    if (!test.path.empty() && test.path.size() <= max_bundle_path_bytes) {
      check_refused(craft({{test.path, plain, "x"}}), test.fragment);
    }
    check_encode_refused(Bundle{{{test.path, false, "x"}}}, test.fragment);
  }
  Bundle parsed;
  STRCMP_EQUAL("bundle: path \"a/../b\": a \"..\" component",
               parse_bundle(craft({{"a/../b", plain, ""}}), parsed).message.c_str());
}

TEST(ContentBundleBytes, PathLengthFieldIsChecked) {
  check_refused(Builder{}.text("SNB1").u32(1).u16(0).u8(plain).u64(0).u64(0).checked(),
                "file 1: path length 0");
  check_refused(Builder{}
                    .text("SNB1")
                    .u32(1)
                    .u16(1025)
                    .text(std::string(1025, 'x'))
                    .u8(plain)
                    .u64(0)
                    .checked(),
                "file 1: path length 1025 is more than 1024");
  check_refused(Builder{}.text("SNB1").u32(1).u16(900).text(std::string(20, 'x')).checked(),
                "file 1: path length 900 is more than the 52 bytes left");
}

TEST(ContentBundleBytes, AFileCannotAlsoBeADirectory) {
  check_refused(craft({{"a", plain, ""}, {"a/b", plain, ""}}),
                "file 2 (\"a/b\"): \"a\" is a file, so it cannot be a directory");
  // Not neighbours in byte order: "a" < "a-b" < "a/b".
  check_refused(craft({{"a", plain, ""}, {"a-b", plain, ""}, {"a/b", plain, ""}}),
                "\"a\" is a file");
  check_refused(craft({{"x/y", plain, ""}, {"x/y/z/w", plain, ""}}), "\"x/y\" is a file");
  check_encode_refused(Bundle{{{"a/b", false, ""}, {"a", false, ""}}},
                       "\"a\" is a file, so it cannot be a directory");
  check_encode_refused(Bundle{{{"a", false, "1"}, {"a", false, "2"}}}, "\"a\" appears twice");
  Bundle parsed;
  CHECK(parse_bundle(craft({{"a/b", plain, ""}, {"ab", plain, ""}}), parsed).ok());
}

TEST(ContentBundleBytes, NothingMayFollowTheCheck) {
  Bytes encoded = encode_bundle(sample_bundle());
  encoded.push_back(0);
  check_refused(encoded, "bundle: 1 bytes after the check");
  encoded.insert(encoded.end(), check_bytes, 0);
  check_refused(encoded, "33 bytes after the check");
}

TEST(ContentBundleBytes, SizesAreCheckedAgainstTheBytesLeft) {
  Builder builder;
  builder.text("SNB1").u32(3).file("a", plain, "1").file("css/a.css", plain, "2");
  builder.u16(12).text("css/site.css").u8(plain).u64(900).text(std::string(120 - check_bytes, 'z'));
  Bundle parsed;
  STRCMP_EQUAL("bundle: file 3 (\"css/site.css\"): size 900 is more than the 120 bytes left",
               parse_bundle(builder.checked(), parsed).message.c_str());
  check_refused(Builder{}.text("SNB1").u32(1).file("a", plain, "").bytes,
                "cut short: 0 of the 32 check bytes");
  check_refused(
      Builder{}.text("SNB1").u32(1).u16(1).text("a").u8(plain).u64(~std::uint64_t{0}).checked(),
      "size 18446744073709551615 is more than the 32 bytes left");
}

TEST(ContentBundleBytes, FileCountIsChecked) {
  check_refused(Builder{}.text("SNB1").u32(max_bundle_files + 1).checked(),
                "bundle: 20001 files, more than the 20000 allowed");
  check_refused(Builder{}.text("SNB1").u32(0xffffffff).checked(),
                "4294967295 files, more than the 20000 allowed");
  // Allowed as a count, but the bytes left run out at the second file.
  check_refused(Builder{}.text("SNB1").u32(max_bundle_files).file("a", plain, "").bytes,
                "file 2: cut short in the path length");
  // Fewer files than there are: the check is looked for where the files go.
  check_refused(Builder{}.text("SNB1").u32(0).file("a", plain, "").checked(),
                "check does not match");
  // Exactly the limit is fine.
  Bundle bundle;
  for (std::uint32_t index = 0; index < max_bundle_files; ++index) {
    bundle.files.push_back({"f" + std::to_string(100000 + index), false, ""});
  }
  Bundle parsed;
  const BundleError error = parse_bundle(encode_bundle(bundle), parsed);
  if (!error.ok()) FAIL(error.message.c_str());
  CHECK_EQUAL(max_bundle_files, parsed.files.size());
  bundle.files.push_back({"one-too-many", false, ""});
  check_encode_refused(bundle, "20001 files, more than the 20000 allowed");
}

TEST(ContentBundleBytes, TheWholeBundleIsCapped) {
  Bytes huge(max_bundle_bytes + 1, 0);
  huge[0] = 'S';
  huge[1] = 'N';
  huge[2] = 'B';
  huge[3] = '1';
  check_refused(huge, "67108865 bytes, more than the 67108864 allowed");
  huge.clear();
  huge.shrink_to_fit();
  // The largest single file that fits: the frame (4 + 4 + 32), its record's header (2 + 1 + 8)
  // and a one-byte path.
  Bundle bundle{{{"a", false, std::string(max_bundle_bytes - 40 - 12, 'x')}}};
  const Bytes largest = encode_bundle(bundle);
  CHECK_EQUAL(max_bundle_bytes, largest.size());
  Bundle parsed;
  CHECK(parse_bundle(largest, parsed).ok());
  bundle.files[0].data.push_back('x');
  check_encode_refused(bundle, "more than the 67108864 bytes a bundle may hold (at \"a\")");
}

TEST_GROUP(ContentBundleDirectory) {
  std::unique_ptr<support::TempDir> dir;

  void setup() override {
    dir = std::make_unique<support::TempDir>();
  }
  void teardown() override {
    dir.reset();
  }

  fs::path put(const std::string& relative, const std::string& content, mode_t mode = 0644) {
    const fs::path path = dir->path() / relative;
    support::write_file(path, content);
    if (::chmod(path.c_str(), mode) != 0) FAIL(("chmod " + path.string()).c_str());
    return path;
  }
};

namespace {

mode_t permissions(const fs::path& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) != 0) return 0;
  return status.st_mode & 07777;
}

}  // namespace

TEST(ContentBundleDirectory, ReadsATreeAndWritesItBackWithItsModes) {
  std::string binary;
  for (int value = 0; value < 256; ++value) binary += static_cast<char>(value);
  put("src/index.html", "<h1>hi</h1>\n");
  put("src/css/site.css", "body { color: black; }\n", 0600);
  put("src/js/app/main.js", "console.log(1);\n");
  put("src/bin/run", "#!/bin/sh\necho hi\n", 0755);
  put("src/bin/owner-only", "#!/bin/sh\n", 0700);
  put("src/data.bin", binary);
  put("src/empty-file", "");
  fs::create_directories(dir->path() / "src/empty/nested");

  Bundle bundle;
  bundle.files.push_back({"stale", false, ""});
  const BundleError read = read_bundle_directory(dir->path() / "src", bundle);
  if (!read.ok()) FAIL(read.message.c_str());
  const std::vector<std::string> order = {"bin/owner-only", "bin/run",    "css/site.css",
                                          "data.bin",       "empty-file", "index.html",
                                          "js/app/main.js"};
  CHECK_EQUAL(order.size(), bundle.files.size());
  for (std::size_t index = 0; index < order.size(); ++index) {
    STRCMP_EQUAL(order[index].c_str(), bundle.files[index].path.c_str());
    CHECK_EQUAL(bundle.files[index].path.starts_with("bin/"), bundle.files[index].executable);
  }
  CHECK(bundle.files[3].data == binary);

  // Written under a umask that would strip every bit, and still gets exactly 0644/0755.
  const mode_t saved_umask = ::umask(0777);
  const BundleError wrote = write_bundle_directory(bundle, dir->path() / "out");
  ::umask(saved_umask);
  if (!wrote.ok()) FAIL(wrote.message.c_str());
  const fs::path out = dir->path() / "out";
  CHECK_EQUAL(0755u, permissions(out));
  for (const char* directory : {"bin", "css", "js", "js/app"})
    CHECK_EQUAL(0755u, permissions(out / directory));
  CHECK_FALSE(fs::exists(out / "empty"));
  for (const BundleFile& file : bundle.files) {
    STRCMP_EQUAL(file.data.c_str(), support::read_file(out / file.path).c_str());
    CHECK_EQUAL(file.data.size(), fs::file_size(out / file.path));
    CHECK_EQUAL(file.executable ? 0755u : 0644u, permissions(out / file.path));
  }
  CHECK(support::read_file(out / "data.bin") == binary);
  // A trailing '/' on the target names the same new directory.
  const BundleError slash = write_bundle_directory(bundle, dir->path().string() + "/out2/");
  if (!slash.ok()) FAIL(slash.message.c_str());
  CHECK(fs::is_regular_file(dir->path() / "out2/js/app/main.js"));

  Bundle again;
  const BundleError reread = read_bundle_directory(out, again);
  if (!reread.ok()) FAIL(reread.message.c_str());
  CHECK(same_files(bundle, again));
  CHECK(encode_bundle(bundle) == encode_bundle(again));
}

TEST(ContentBundleDirectory, AGivenTimeStampsEveryFileAndDirectory) {
  // The push time every node gives a version (so ETag and Last-Modified agree across nodes).
  constexpr std::int64_t pushed_at = 1795000000;
  const Bundle bundle{{{"css/site.css", false, "body {}"}, {"index.html", false, "<p>hi</p>"}, {"js/app/main.js", true, ""}}};
  const fs::path out = dir->path() / "stamped";
  const BundleError wrote = write_bundle_directory(bundle, out, pushed_at);
  if (!wrote.ok()) FAIL(wrote.message.c_str());
  for (const char* path : {"", "css", "css/site.css", "index.html", "js", "js/app", "js/app/main.js"}) {
    struct stat info {};
    LONGS_EQUAL_TEXT(0, ::stat((out / path).c_str(), &info), path);
    LONGS_EQUAL_TEXT(pushed_at, info.st_mtim.tv_sec, path);
  }
  // Without one, the time of writing.
  const BundleError unstamped = write_bundle_directory(bundle, dir->path() / "now");
  if (!unstamped.ok()) FAIL(unstamped.message.c_str());
  struct stat info {};
  LONGS_EQUAL(0, ::stat((dir->path() / "now/index.html").c_str(), &info));
  CHECK(info.st_mtim.tv_sec > pushed_at);
  CHECK(sync_directory(out).ok());
  CHECK(sync_directory(dir->path() / "nothing-here").message.find("nothing-here") != std::string::npos);
}

TEST(ContentBundleDirectory, WritesOnlyIntoANewDirectoryUnderAnExistingParent) {
  fs::create_directories(dir->path() / "out");
  BundleError error = write_bundle_directory(sample_bundle(), dir->path() / "out");
  CHECK_FALSE(error.ok());
  check_contains(error.message, "\"" + (dir->path() / "out").string() + "\" already exists");
  CHECK(fs::is_empty(dir->path() / "out"));

  error = write_bundle_directory(sample_bundle(), dir->path() / "missing/out");
  CHECK_FALSE(error.ok());
  check_contains(error.message,
                 "cannot open the parent directory \"" + (dir->path() / "missing").string() + "\"");
  CHECK_FALSE(fs::exists(dir->path() / "missing"));

  // A bundle the byte form would refuse is refused before anything is created.
  error = write_bundle_directory(Bundle{{{"a/../../escape", false, "x"}}}, dir->path() / "bad");
  CHECK_FALSE(error.ok());
  check_contains(error.message, "a \"..\" component");
  CHECK_FALSE(fs::exists(dir->path() / "bad"));
  error =
      write_bundle_directory(Bundle{{{"a", false, ""}, {"a/b", false, ""}}}, dir->path() / "bad");
  check_contains(error.message, "\"a\" is a file");
  CHECK_FALSE(fs::exists(dir->path() / "bad"));
}

TEST(ContentBundleDirectory, ASymlinkInTheSourceIsRefusedByName) {
  put("src/index.html", "hi");
  put("outside", "secret");
  const fs::path link = dir->path() / "src/sub/link";
  fs::create_directories(link.parent_path());
  fs::create_symlink(dir->path() / "outside", link);
  Bundle bundle;
  bundle.files.push_back({"stale", false, ""});
  const BundleError error = read_bundle_directory(dir->path() / "src", bundle);
  CHECK_FALSE(error.ok());
  check_contains(error.message, "\"" + link.string() + "\" is a symbolic link");
  CHECK(bundle.files.empty());

  fs::remove(link);
  fs::create_directory_symlink(dir->path(), link);
  check_contains(read_bundle_directory(dir->path() / "src", bundle).message,
                 "\"" + link.string() + "\" is a symbolic link");
}

TEST(ContentBundleDirectory, AFifoInTheSourceIsRefusedByName) {
  put("src/index.html", "hi");
  const fs::path fifo = dir->path() / "src/pipe";
  if (::mkfifo(fifo.c_str(), 0644) != 0) FAIL("mkfifo");
  Bundle bundle;
  const BundleError error = read_bundle_directory(dir->path() / "src", bundle);
  CHECK_FALSE(error.ok());
  check_contains(error.message, "\"" + fifo.string() + "\" is a FIFO");
  CHECK(bundle.files.empty());
}

TEST(ContentBundleDirectory, NamesThePathRulesRefuse) {
  put("src/back\\slash", "x");
  Bundle bundle;
  BundleError error = read_bundle_directory(dir->path() / "src", bundle);
  check_contains(error.message, "a backslash at byte 5");
  fs::remove_all(dir->path() / "src");
  put("src/" + nested_path(max_bundle_path_depth) + "/too-deep", "x");
  error = read_bundle_directory(dir->path() / "src", bundle);
  check_contains(error.message, "33 components, more than 32");
  error = read_bundle_directory(dir->path() / "no-such-directory", bundle);
  check_contains(error.message, "cannot open the directory");
}
