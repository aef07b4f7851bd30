// Unit tests of the bmap parser of stacknode-flash (tools/stacknode-flash/bmap.hpp): a real bmap
// written by `bmaptool create` (bmap-tools 3.6), with and without range checksums, read field by
// field; every refusal with its message; and the block map found from a real sparse file's holes.
#include <CppUTest/TestHarness.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include "bmap.hpp"
#include "process.hpp"

using namespace stacknode::flash;

namespace {

// `bmaptool create img` (bmap-tools 3.6) of a 263144-byte image (65 blocks of 4096, the last one
// 1000 bytes long) holding 'A' x 4096 in block 0, 'B' x 12288 in blocks 16-18 and 'C' x 1000 in
// block 64, made on ext4 with truncate and pwrite. Byte for byte: its BmapFileChecksum covers it.
constexpr std::string_view bmaptool_bmap = R"bmap(<?xml version="1.0" ?>
<!-- This file contains the block map for an image file, which is basically
     a list of useful (mapped) block numbers in the image file. In other words,
     it lists only those blocks which contain data (boot sector, partition
     table, file-system metadata, files, directories, extents, etc). These
     blocks have to be copied to the target device. The other blocks do not
     contain any useful data and do not have to be copied to the target
     device.

     The block map an optimization which allows to copy or flash the image to
     the image quicker than copying of flashing the entire image. This is
     because with bmap less data is copied: <MappedBlocksCount> blocks instead
     of <BlocksCount> blocks.

     Besides the machine-readable data, this file contains useful commentaries
     which contain human-readable information like image size, percentage of
     mapped data, etc.

     The 'version' attribute is the block map file format version in the
     'major.minor' format. The version major number is increased whenever an
     incompatible block map format change is made. The minor number changes
     in case of minor backward-compatible changes. -->

<bmap version="2.0">
    <!-- Image size in bytes: 257.0 KiB -->
    <ImageSize> 263144 </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> 4096 </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> 65 </BlocksCount>

    <!-- Count of mapped blocks: 20.0 KiB or 7.7%      -->
    <MappedBlocksCount> 5  </MappedBlocksCount>

    <!-- Type of checksum used in this file -->
    <ChecksumType> sha256 </ChecksumType>

    <!-- The checksum of this bmap file. When it is calculated, the value of
         the checksum has be zero (all ASCII "0" symbols).  -->
    <BmapFileChecksum> ddb06f3ada1e02a95567b8a4e9422a993634bca1d6789c300c743e216de886bb </BmapFileChecksum>

    <!-- The block map which consists of elements which may either be a
         range of blocks or a single block. The 'chksum' attribute
         (if present) is the checksum of this blocks range. -->
    <BlockMap>
        <Range chksum="6896d9ea3f73a4434f5832bc65714e7d066f177373f36f34dc8a6f735daa41b1"> 0 </Range>
        <Range chksum="8b8bfd921af94e59fea99f1bc74d2fcda20c9a7f1a5fc73dc033dddcba04da98"> 16-18 </Range>
        <Range chksum="703bf812e665f36bd2670b9aa054d906a2fc8782e157f00aa9c589dda1f4cb3e"> 64 </Range>
    </BlockMap>
</bmap>
)bmap";

// `bmaptool create --no-checksum img` of the same image: the same prolog comment, then this. It
// still has a ChecksumType and the file's own checksum, only no chksum on the ranges.
constexpr std::string_view bmaptool_body_without_checksums = R"bmap(<bmap version="2.0">
    <!-- Image size in bytes: 257.0 KiB -->
    <ImageSize> 263144 </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> 4096 </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> 65 </BlocksCount>

    <!-- Count of mapped blocks: 20.0 KiB or 7.7%      -->
    <MappedBlocksCount> 5  </MappedBlocksCount>

    <!-- Type of checksum used in this file -->
    <ChecksumType> sha256 </ChecksumType>

    <!-- The checksum of this bmap file. When it is calculated, the value of
         the checksum has be zero (all ASCII "0" symbols).  -->
    <BmapFileChecksum> 0618a31a0c251a7020ba656b221a314409054d77a5ba885ae0d74933e56b67b6 </BmapFileChecksum>

    <!-- The block map which consists of elements which may either be a
         range of blocks or a single block. The 'chksum' attribute
         (if present) is the checksum of this blocks range. -->
    <BlockMap>
        <Range> 0 </Range>
        <Range> 16-18 </Range>
        <Range> 64 </Range>
    </BlockMap>
</bmap>
)bmap";

// The image both bmaps describe.
constexpr std::uint64_t image_block_size = 4096;
constexpr std::uint64_t image_blocks = 65;
constexpr std::uint64_t image_last_block_bytes = 1000;
constexpr std::uint64_t image_bytes =
    (image_blocks - 1) * image_block_size + image_last_block_bytes;
static_assert(image_bytes == 263144);
constexpr std::size_t sha256_hex_digits = 64;

// bmaptool's prolog (the XML declaration and its long comment) with the --no-checksum body.
std::string bmaptool_bmap_without_checksums() {
  const std::string_view prolog = bmaptool_bmap.substr(0, bmaptool_bmap.find("<bmap version"));
  return std::string(prolog) + std::string(bmaptool_body_without_checksums);
}

// The fields of a small bmap without checksums, written in bmaptool's layout by bmap_of(). By
// default 3 blocks of 4096 (the last one 1808 bytes), blocks 0 and 2 mapped.
struct PlainBmap {
  std::string version = "2.0";
  std::string image_size = "10000";
  std::string block_size = "4096";
  std::string blocks_count = "3";
  std::string mapped_blocks = "2";
  std::vector<std::string> ranges{"0", "2"};
};

std::string bmap_of(const PlainBmap& fields) {
  std::string text = "<?xml version=\"1.0\" ?>\n<bmap version=\"" + fields.version + "\">\n";
  text += "    <ImageSize> " + fields.image_size + " </ImageSize>\n";
  text += "    <BlockSize> " + fields.block_size + " </BlockSize>\n";
  text += "    <BlocksCount> " + fields.blocks_count + " </BlocksCount>\n";
  text += "    <MappedBlocksCount> " + fields.mapped_blocks + " </MappedBlocksCount>\n";
  text += "    <BlockMap>\n";
  for (const std::string& range : fields.ranges) text += "        <Range> " + range + " </Range>\n";
  text += "    </BlockMap>\n</bmap>\n";
  return text;
}

Sha256 reference_sha256(std::string_view bytes) {
  Sha256 digest{};
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

std::string hex_of(const Sha256& digest) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string text;
  for (const std::uint8_t byte : digest) {
    text += digits[byte >> 4];
    text += digits[byte & 0x0f];
  }
  return text;
}

// Fails the current test, reported at `caller`: the test's line rather than the helper's.
void fail_at(const std::string& message, const std::source_location& caller) {
  FAIL_LOCATION(message.c_str(), caller.file_name(), static_cast<int>(caller.line()));
}

// `text` with its one occurrence of `from` replaced by `to`: an edit that hits no place or two
// would test something else than it says.
std::string replaced(std::string_view text, std::string_view from, std::string_view to,
                     std::source_location caller = std::source_location::current()) {
  const std::size_t at = text.find(from);
  if (at == std::string_view::npos || text.find(from, at + 1) != std::string_view::npos) {
    fail_at("\"" + std::string(from) + "\" is not in the text exactly once", caller);
  }
  std::string result(text);
  result.replace(at, from.size(), to);
  return result;
}

// `text` with its BmapFileChecksum made again as bmaptool makes it (the SHA-256 of the file with
// the value written as 64 '0'), so that an edit reaches the check it is meant for.
std::string with_file_checksum_again(std::string text) {
  constexpr std::string_view tag = "<BmapFileChecksum> ";
  const std::size_t at = text.find(tag);
  if (at == std::string::npos) FAIL("no <BmapFileChecksum> in the text");
  const std::size_t value = at + tag.size();
  text.replace(value, sha256_hex_digits, std::string(sha256_hex_digits, '0'));
  text.replace(value, sha256_hex_digits, hex_of(reference_sha256(text)));
  return text;
}

// What breaks the BlockMap invariants listed in bmap.hpp, or "" when they all hold.
std::string broken_invariant(const BlockMap& map) {
  if (map.block_size < min_block_size || map.block_size > max_block_size ||
      (map.block_size & (map.block_size - 1)) != 0) {
    return "1: block size " + std::to_string(map.block_size);
  }
  if (map.blocks_count != (map.image_size + map.block_size - 1) / map.block_size)
    return "1: blocks_count";
  std::uint64_t mapped = 0;
  for (std::size_t index = 0; index < map.ranges.size(); ++index) {
    const BlockRange& range = map.ranges[index];
    if (range.first > range.last || range.last >= map.blocks_count) {
      return "2: range " + std::to_string(index) + " is not inside the image";
    }
    if (index > 0 && range.first <= map.ranges[index - 1].last) {
      return "2: range " + std::to_string(index) + " overlaps the one before";
    }
    if (range.sha256.has_value() != map.ranges.front().sha256.has_value()) {
      return "3: range " + std::to_string(index) + " differs from the first in having a checksum";
    }
    mapped += range.blocks();
  }
  if (mapped != map.mapped_blocks) return "2: mapped_blocks is not the sum of the ranges";
  return "";
}

// The map parse_bmap returns for `text`; fails the test (at the caller) if it is refused or
// breaks an invariant.
BlockMap parsed(std::string_view text,
                std::source_location caller = std::source_location::current()) {
  BmapParseResult result = parse_bmap(text);
  if (!result.map) fail_at("refused: " + result.error, caller);
  if (!result.error.empty()) fail_at("an error with a map", caller);
  const std::string broken = broken_invariant(*result.map);
  if (!broken.empty()) fail_at("invariant " + broken, caller);
  return std::move(*result.map);
}

// parse_bmap refuses `text` with one line that starts "bmap: ", has no control characters and
// holds every one of `fragments`.
void check_refused(std::string_view text, std::initializer_list<std::string_view> fragments,
                   std::source_location caller = std::source_location::current()) {
  const BmapParseResult result = parse_bmap(text);
  if (result.map) fail_at("accepted", caller);
  if (!result.error.starts_with("bmap: "))
    fail_at("not \"bmap: \": \"" + result.error + "\"", caller);
  for (const char c : result.error) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      fail_at("a control character in the message", caller);
  }
  for (const std::string_view fragment : fragments) {
    if (result.error.find(fragment) == std::string::npos) {
      fail_at("message \"" + result.error + "\" lacks \"" + std::string(fragment) + "\"", caller);
    }
  }
}

void check_range(const BlockRange& range, std::uint64_t first, std::uint64_t last,
                 std::source_location caller = std::source_location::current()) {
  if (range.first != first || range.last != last) {
    fail_at("range " + std::to_string(range.first) + "-" + std::to_string(range.last) +
                ", expected " + std::to_string(first) + "-" + std::to_string(last),
            caller);
  }
}

}  // namespace

TEST_GROUP(Bmap){};

TEST(Bmap, ReadsEveryFieldOfTheBmapThatBmaptoolWrites) {
  const BlockMap map = parsed(bmaptool_bmap);
  STRCMP_EQUAL("2.0", map.version.c_str());
  UNSIGNED_LONGLONGS_EQUAL(image_bytes, map.image_size);
  UNSIGNED_LONGLONGS_EQUAL(image_block_size, map.block_size);
  UNSIGNED_LONGLONGS_EQUAL(image_blocks, map.blocks_count);
  UNSIGNED_LONGLONGS_EQUAL(5, map.mapped_blocks);
  LONGS_EQUAL(3, map.ranges.size());
  check_range(map.ranges[0], 0, 0);
  check_range(map.ranges[1], 16, 18);
  check_range(map.ranges[2], 64, 64);
  // Each checksum is of the range's bytes in the image, the last one only up to the image's end.
  const std::string contents[] = {std::string(4096, 'A'), std::string(3 * 4096, 'B'),
                                  std::string(image_last_block_bytes, 'C')};
  for (std::size_t index = 0; index < 3; ++index) {
    CHECK(map.ranges[index].sha256.has_value());
    STRCMP_EQUAL(hex_of(reference_sha256(contents[index])).c_str(),
                 hex_of(*map.ranges[index].sha256).c_str());
  }
}

TEST(Bmap, RangeBytesStopAtTheEndOfTheImage) {
  const BlockMap map = parsed(bmaptool_bmap);
  UNSIGNED_LONGLONGS_EQUAL(0, map.offset_of(map.ranges[0]));
  UNSIGNED_LONGLONGS_EQUAL(4096, map.length_of(map.ranges[0]));
  UNSIGNED_LONGLONGS_EQUAL(16 * 4096, map.offset_of(map.ranges[1]));
  UNSIGNED_LONGLONGS_EQUAL(3 * 4096, map.length_of(map.ranges[1]));
  UNSIGNED_LONGLONGS_EQUAL(64 * 4096, map.offset_of(map.ranges[2]));
  UNSIGNED_LONGLONGS_EQUAL(image_last_block_bytes, map.length_of(map.ranges[2]));
  UNSIGNED_LONGLONGS_EQUAL(4 * 4096 + image_last_block_bytes, map.mapped_bytes());

  const BlockMap plain = parsed(bmap_of({}));
  UNSIGNED_LONGLONGS_EQUAL(1808, plain.length_of(plain.ranges[1]));
  UNSIGNED_LONGLONGS_EQUAL(4096 + 1808, plain.mapped_bytes());
  PlainBmap whole_blocks;
  whole_blocks.image_size = "12288";
  const BlockMap full = parsed(bmap_of(whole_blocks));
  UNSIGNED_LONGLONGS_EQUAL(4096, full.length_of(full.ranges[1]));
  UNSIGNED_LONGLONGS_EQUAL(2 * 4096, full.mapped_bytes());
}

TEST(Bmap, ReadsTheBmapOfBmaptoolNoChecksum) {
  // --no-checksum keeps ChecksumType and the file's own checksum but puts no chksum on a range.
  const BlockMap map = parsed(bmaptool_bmap_without_checksums());
  UNSIGNED_LONGLONGS_EQUAL(image_bytes, map.image_size);
  UNSIGNED_LONGLONGS_EQUAL(5, map.mapped_blocks);
  LONGS_EQUAL(3, map.ranges.size());
  check_range(map.ranges[1], 16, 18);
  for (const BlockRange& range : map.ranges) CHECK_FALSE(range.sha256.has_value());
  UNSIGNED_LONGLONGS_EQUAL(4 * 4096 + image_last_block_bytes, map.mapped_bytes());
}

TEST(Bmap, ReadsABmapWithoutAnyChecksumAndOlderVersions) {
  const BlockMap map = parsed(bmap_of({}));
  STRCMP_EQUAL("2.0", map.version.c_str());
  LONGS_EQUAL(2, map.ranges.size());
  check_range(map.ranges[1], 2, 2);
  CHECK_FALSE(map.ranges[0].sha256.has_value());
  for (const char* version : {"1.2", "1.4", "2.1"}) {
    PlainBmap fields;
    fields.version = version;
    STRCMP_EQUAL(version, parsed(bmap_of(fields)).version.c_str());
  }
  // Ranges that touch, in order, and a map of no ranges at all.
  PlainBmap touching;
  touching.ranges = {"0", "1-2"};
  touching.mapped_blocks = "3";
  LONGS_EQUAL(2, parsed(bmap_of(touching)).ranges.size());
  PlainBmap empty;
  empty.ranges = {};
  empty.mapped_blocks = "0";
  LONGS_EQUAL(0, parsed(bmap_of(empty)).ranges.size());
}

TEST(Bmap, TheFileChecksumIsComputedAsBmaptoolComputesIt) {
  STRCMP_EQUAL(std::string(bmaptool_bmap).c_str(),
               with_file_checksum_again(std::string(bmaptool_bmap)).c_str());
  const std::string without = bmaptool_bmap_without_checksums();
  STRCMP_EQUAL(without.c_str(), with_file_checksum_again(without).c_str());
}

TEST(Bmap, AChangedRangeIsCaughtByTheFileChecksum) {
  // One digit of a block number: refused as it stands, read once the file checksum is made again.
  const std::string moved = replaced(bmaptool_bmap, "> 64 <", "> 63 <");
  check_refused(moved, {"does not match its own BmapFileChecksum", "changed or cut short"});
  check_range(parsed(with_file_checksum_again(moved)).ranges[2], 63, 63);
  // One digit of a range's chksum, the same.
  const std::string digest = replaced(bmaptool_bmap, "6896d9ea3f", "6896d9ea3e");
  check_refused(digest, {"does not match its own BmapFileChecksum"});
  CHECK(parsed(with_file_checksum_again(digest)).ranges[0].sha256 !=
        reference_sha256(std::string(4096, 'A')));
  // The --no-checksum bmap is guarded by its file checksum just the same.
  check_refused(replaced(bmaptool_bmap_without_checksums(), "> 64 <", "> 63 <"),
                {"BmapFileChecksum"});
}

TEST(Bmap, EveryChangedDigitIsRefused) {
  const std::string text(bmaptool_bmap);
  std::size_t digits = 0;
  for (std::size_t index = 0; index < text.size(); ++index) {
    if (text[index] < '0' || text[index] > '9') continue;
    ++digits;
    std::string changed = text;
    changed[index] = static_cast<char>('0' + (text[index] - '0' + 1) % 10);
    if (parse_bmap(changed).map)
      FAIL(("accepted with the digit at byte " + std::to_string(index) + " changed").c_str());
  }
  CHECK(digits > 4 * sha256_hex_digits / 2);  // the loop did look at the checksums' digits
}

TEST(Bmap, EveryCutIsRefused) {
  for (std::size_t length = 0; length < bmaptool_bmap.size(); ++length) {
    if (parse_bmap(bmaptool_bmap.substr(0, length)).map) {
      FAIL(("accepted cut to " + std::to_string(length) + " bytes").c_str());
    }
  }
  // Only the final newline missing: well-formed, and caught by the file checksum.
  check_refused(bmaptool_bmap.substr(0, bmaptool_bmap.size() - 1), {"cut short"});
  check_refused(bmaptool_bmap.substr(0, bmaptool_bmap.find("</BlockMap>")),
                {"<BlockMap> never ends"});
}

TEST(Bmap, TextThatIsNotXmlIsRefusedWithWhereItWentWrong) {
  check_refused("", {"expected an element (at byte 0)"});
  check_refused("hello", {"expected an element (at byte 0)"});
  check_refused("{\"ImageSize\": 10000}", {"expected an element"});
  check_refused(std::string_view("\0\1\2", 3), {"expected an element"});
  check_refused("<!-- a comment", {"a comment that never ends"});
  check_refused("<?xml version=\"1.0\"", {"an XML declaration that never ends"});
  check_refused("<bmap version=\"2.0\"", {"<bmap never closes"});
  check_refused("<bmap version=\"2.0\">", {"<bmap> never ends"});
  check_refused("<bmap version=2.0>", {"a malformed attribute in <bmap>"});
  check_refused("<bmap version=\"2.0>", {"an attribute value that never ends"});
  check_refused("< bmap>", {"an element without a name (at byte 1)"});
  check_refused(replaced(bmap_of({}), "</BlockSize>", "</ImageSize>"),
                {"</ImageSize> does not close <BlockSize>"});
  check_refused(bmap_of({}) + "<bmap/>", {"text after the </bmap>"});
  check_refused(bmap_of({}) + "trailing", {"text after the </bmap>"});
  check_refused(replaced(bmap_of({}), "> 10000 <", ">100<!-- here -->00<"),
                {"text in two places inside <ImageSize>"});
}

TEST(Bmap, WhatAMessageQuotesOfTheFileStaysOnOneLine) {
  // Line breaks and terminal escapes in the file are shown as '?' (check_refused checks none is
  // left).
  PlainBmap broken_line;
  broken_line.image_size = "10\n000";
  check_refused(bmap_of(broken_line), {"<ImageSize> '10?000' is not a number"});
  PlainBmap escape;
  escape.version = "\x1b]0;owned\x07";
  check_refused(bmap_of(escape), {"format version '?]0;owned?' is not 1.x or 2.x"});
  check_refused(replaced(bmaptool_bmap, "> sha256 <", "> sha\r\t1 <"), {"checksum type 'sha??1'"});
  PlainBmap range;
  range.ranges = {"0", "1\x7f"};
  check_refused(bmap_of(range), {"<Range> '1?' is not FIRST-LAST"});
}

TEST(Bmap, OnlyABmapRootOfVersion1Or2IsRead) {
  check_refused("<?xml version=\"1.0\" ?>\n<image><ImageSize> 1 </ImageSize></image>\n",
                {"the root element is <image>, not <bmap>"});
  for (const char* version : {"3.0", "0.9", "20", "2", ""}) {
    PlainBmap fields;
    fields.version = version;
    check_refused(bmap_of(fields),
                  {"format version '" + std::string(version) + "' is not 1.x or 2.x"});
  }
  check_refused(replaced(bmap_of({}), "<bmap version=\"2.0\">", "<bmap>"),
                {"format version '' is not 1.x or 2.x"});
}

TEST(Bmap, UnknownElementsAndAttributesAreRefusedByName) {
  check_refused(replaced(bmaptool_bmap, "<BlockMap>", "<Comment> x </Comment><BlockMap>"),
                {"unknown element <Comment>"});
  check_refused(replaced(bmap_of({}), "<Range> 2 </Range>", "<Block> 2 </Block>"),
                {"unknown element <Block> in <BlockMap>"});
  check_refused(replaced(bmaptool_bmap, "<bmap version=\"2.0\">",
                         "<bmap version=\"2.0\" encoding=\"utf-8\">"),
                {"unknown attribute encoding on <bmap>"});
  check_refused(replaced(bmaptool_bmap, "<Range chksum=\"6896", "<Range sha1=\"6896"),
                {"unknown attribute sha1 on <Range>"});
  check_refused(replaced(bmap_of({}), "<ImageSize>", "<ImageSize chksum=\"00\">"),
                {"unknown attribute chksum on <ImageSize>"});
  check_refused(replaced(bmap_of({}), "<Range> 0", "<Range version=\"2.0\"> 0"),
                {"unknown attribute version on <Range>"});
}

TEST(Bmap, StrayTextNestedFieldsAndDoubledAttributesAreRefused) {
  check_refused(replaced(bmap_of({}), "<BlockMap>", "stray <BlockMap>"), {"text directly inside <bmap>"});
  check_refused(replaced(bmap_of({}), "<Range> 0 </Range>", "<Range> 0 </Range> stray"),
                {"text directly inside <BlockMap>"});
  check_refused(replaced(bmap_of({}), "<ImageSize> 10000 </ImageSize>",
                         "<ImageSize> 10000 <Range> 1 </Range></ImageSize>"),
                {"an element inside <ImageSize>"});
  check_refused(replaced(bmaptool_bmap, "<bmap version=\"2.0\">", "<bmap version=\"2.0\" version=\"9.9\">"),
                {"attribute version twice on <bmap>"});
  check_refused(replaced(bmap_of({}), "<Range> 0 </Range>", "<Range chksum=\"00\" chksum=\"11\"> 0 </Range>"),
                {"attribute chksum twice on <Range>"});
}

TEST(Bmap, ARefusalQuotesAtMostALineOfTheFile) {
  PlainBmap fields;
  fields.image_size = std::string(100000, '7') + "x";
  const BmapParseResult parsed = parse_bmap(bmap_of(fields));
  CHECK(!parsed.map.has_value());
  CHECK(parsed.error.size() < 400);
}

TEST(Bmap, EveryFieldIsRequiredOnceAndItsNumbersAreDecimal) {
  constexpr std::string_view missing =
      "one of ImageSize, BlockSize, BlocksCount, MappedBlocksCount, BlockMap is missing";
  for (const char* line :
       {"    <ImageSize> 10000 </ImageSize>\n", "    <BlockSize> 4096 </BlockSize>\n",
        "    <BlocksCount> 3 </BlocksCount>\n",
        "    <MappedBlocksCount> 2 </MappedBlocksCount>\n"}) {
    check_refused(replaced(bmap_of({}), line, ""), {missing});
  }
  check_refused(replaced(bmap_of({}),
                         "    <BlockMap>\n        <Range> 0 </Range>\n        <Range> 2 </Range>\n "
                         "   </BlockMap>\n",
                         ""),
                {missing});
  for (const char* number :
       {"0x2710", "-1", "+10000", "1e4", "10000 bytes", "10 000", "", "18446744073709551616"}) {
    PlainBmap fields;
    fields.image_size = number;
    check_refused(bmap_of(fields), {"<ImageSize> '" + std::string(number) + "' is not a number"});
  }
  PlainBmap mapped;
  mapped.mapped_blocks = "two";
  check_refused(bmap_of(mapped), {"<MappedBlocksCount> 'two' is not a number"});
  check_refused(replaced(bmap_of({}), "    <BlockSize>",
                         "    <BlocksCount> 3 </BlocksCount>\n    <BlockSize>"),
                {"<BlocksCount> appears twice"});
}

TEST(Bmap, SecondChecksumTypesFileChecksumsAndBlockMapsAreRefused) {
  // bmaptool reads the first of each; a reader that took another would flash other blocks.
  check_refused(replaced(bmap_of({}), "</bmap>", "    <BlockMap>\n    </BlockMap>\n</bmap>"),
                {"<BlockMap> appears twice"});
  check_refused(
      replaced(bmaptool_bmap, "<ChecksumType> sha256 </ChecksumType>",
               "<ChecksumType> sha256 </ChecksumType><ChecksumType> sha1 </ChecksumType>"),
      {"<ChecksumType> appears twice"});
  check_refused(replaced(bmaptool_bmap, "    <BlockMap>",
                         "<BmapFileChecksum> " + std::string(sha256_hex_digits, '0') +
                             " </BmapFileChecksum>\n    <BlockMap>"),
                {"<BmapFileChecksum> appears twice"});
}

TEST(Bmap, SizesAreInsideTheLimitsAndAgree) {
  PlainBmap empty_image;
  empty_image.image_size = "0";
  check_refused(bmap_of(empty_image),
                {"ImageSize 0 is outside [1, " + std::to_string(max_image_bytes) + "]"});
  PlainBmap huge_image;
  huge_image.image_size = std::to_string(max_image_bytes + 1);
  check_refused(bmap_of(huge_image), {"ImageSize " + huge_image.image_size + " is outside"});
  for (const std::uint64_t size : {std::uint64_t{0}, std::uint64_t{256}, std::uint64_t{3000},
                                   std::uint64_t{4097}, 2 * max_block_size}) {
    PlainBmap fields;
    fields.block_size = std::to_string(size);
    check_refused(bmap_of(fields),
                  {"BlockSize " + fields.block_size + " is not a power of two in [512, 1048576]"});
  }
  // The limits themselves are block sizes.
  PlainBmap smallest;
  smallest.block_size = std::to_string(min_block_size);
  smallest.blocks_count = "20";  // 10000 bytes in blocks of 512
  UNSIGNED_LONGLONGS_EQUAL(min_block_size, parsed(bmap_of(smallest)).block_size);
  PlainBmap largest;
  largest.block_size = std::to_string(max_block_size);
  largest.blocks_count = "1";
  largest.ranges = {"0"};
  largest.mapped_blocks = "1";
  UNSIGNED_LONGLONGS_EQUAL(10000, parsed(bmap_of(largest)).mapped_bytes());
  for (const char* count : {"2", "4", "0"}) {
    PlainBmap fields;
    fields.blocks_count = count;
    fields.ranges = {"0"};
    fields.mapped_blocks = "1";
    check_refused(bmap_of(fields), {"BlocksCount " + std::string(count) +
                                    " does not fit ImageSize 10000 in blocks of 4096"});
  }
}

TEST(Bmap, OnlySha256ChecksumsAreRead) {
  check_refused(replaced(bmaptool_bmap, "<ChecksumType> sha256 <", "<ChecksumType> sha1 <"),
                {"checksum type 'sha1' is not supported", "sha256"});
  check_refused(replaced(bmaptool_bmap, "<ChecksumType> sha256 <", "<ChecksumType> md5 <"),
                {"checksum type 'md5'"});
  // Format 1.4: SHA-1 throughout, named by the element rather than a ChecksumType.
  std::string version_1_4 =
      replaced(bmap_of({}), "<bmap version=\"2.0\">", "<bmap version=\"1.4\">");
  version_1_4 = replaced(version_1_4, "    <BlockMap>",
                         "    <BmapFileSHA1> 0000000000000000000000000000000000000000 "
                         "</BmapFileSHA1>\n    <BlockMap>");
  check_refused(version_1_4, {"checksum type 'sha1' is not supported"});
}

TEST(Bmap, RangesAreBlockNumbersInOrderInsideTheImage) {
  check_refused(replaced(bmaptool_bmap, "> 16-18 <", "> 18-16 <"),
                {"<Range> 18-16: first block after last"});
  check_refused(replaced(bmaptool_bmap, "> 64 <", "> 64-65 <"),
                {"<Range> 64-65: beyond the image's 65 blocks"});
  check_refused(replaced(bmaptool_bmap, "> 64 <", "> 65 <"),
                {"<Range> 65: beyond the image's 65 blocks"});
  check_refused(replaced(bmaptool_bmap, "> 64 <", "> 18 <"),
                {"<Range> 18: overlaps or comes before the range before it"});
  check_refused(replaced(bmaptool_bmap, "> 64 <", "> 17-20 <"), {"<Range> 17-20: overlaps"});
  check_refused(replaced(bmaptool_bmap, "> 0 <", "> 16 <"), {"<Range> 16-18: overlaps"});
  PlainBmap unsorted;
  unsorted.ranges = {"2", "0"};
  check_refused(bmap_of(unsorted), {"<Range> 0: overlaps or comes before the range before it"});
  for (const char* range :
       {"16..18", "a", "", "1-2-3", "-1", "1-", "1 - 2", "0x1", "18446744073709551616"}) {
    PlainBmap fields;
    fields.ranges = {"0", range};
    check_refused(bmap_of(fields),
                  {"<Range> '" + std::string(range) + "' is not FIRST-LAST or a block number"});
  }
  check_refused(replaced(bmap_of({}), "<Range> 2 </Range>", "<Range/>"),
                {"<Range> '' is not FIRST-LAST"});
}

TEST(Bmap, RangeChecksumsAre64HexDigitsOnEveryRangeOrNone) {
  check_refused(replaced(bmaptool_bmap, "\"6896d9ea3f", "\"896d9ea3f"),
                {"<Range> 0: chksum is not 64 hex digits"});
  check_refused(replaced(bmaptool_bmap, "\"6896d9ea3f", "\"g896d9ea3f"),
                {"<Range> 0: chksum is not 64 hex digits"});
  check_refused(replaced(bmaptool_bmap, "\"6896d9ea3f", "\"66896d9ea3f"),
                {"<Range> 0: chksum is not 64 hex digits"});
  // Some ranges with a chksum, some without.
  check_refused(
      replaced(
          bmaptool_bmap,
          "<Range chksum=\"8b8bfd921af94e59fea99f1bc74d2fcda20c9a7f1a5fc73dc033dddcba04da98\">",
          "<Range>"),
      {"<Range> 16-18: chksum is not 64 hex digits"});
  check_refused(replaced(bmaptool_bmap_without_checksums(), "<Range> 64",
                         "<Range chksum=\"" + std::string(64, 'a') + "\"> 64"),
                {"<Range> 64: a chksum, but the first range has none"});
  // A chksum where the bmap has no ChecksumType at all.
  check_refused(
      replaced(bmap_of({}), "<Range> 0", "<Range chksum=\"" + std::string(64, 'a') + "\"> 0"),
      {"<Range> 0: a chksum without a ChecksumType"});
  // The file's own checksum, too.
  check_refused(replaced(bmaptool_bmap, "> ddb06f3ada1e", "> zdb06f3ada1e"),
                {"BmapFileChecksum is not 64 hex digits"});
  check_refused(replaced(bmaptool_bmap, "> ddb06f3ada1e", "> db06f3ada1e"),
                {"BmapFileChecksum is not 64 hex digits"});
}

TEST(Bmap, MappedBlocksCountIsTheSumOfTheRanges) {
  check_refused(replaced(bmaptool_bmap, "<MappedBlocksCount> 5 ", "<MappedBlocksCount> 6 "),
                {"MappedBlocksCount 6 but the ranges hold 5 blocks"});
  PlainBmap fewer;
  fewer.mapped_blocks = "1";
  check_refused(bmap_of(fewer), {"MappedBlocksCount 1 but the ranges hold 2 blocks"});
}

TEST(Bmap, AFileAboveTheLimitIsRefusedUnread) {
  std::string text = bmap_of({});
  text.resize(max_bmap_bytes, ' ');  // white space after </bmap>: still a bmap
  LONGS_EQUAL(2, parsed(text).ranges.size());
  text += ' ';
  check_refused(text, {"the file is " + std::to_string(max_bmap_bytes + 1) +
                       " bytes, more than the limit of " + std::to_string(max_bmap_bytes)});
}

TEST(Bmap, NothingNestsDeeperThanABmap) {
  check_refused(replaced(bmap_of({}), "<Range> 2 </Range>", "<Range> 2 <b/></Range>"),
                {"elements nested deeper than a bmap's"});
  check_refused(
      replaced(bmap_of({}), "<ImageSize> 10000 </ImageSize>", "<ImageSize><a><b/></a></ImageSize>"),
      {"elements nested deeper than a bmap's"});
  std::string deep;
  for (int level = 0; level < 100000; ++level) deep += "<bmap>";
  check_refused(deep, {"elements nested deeper than a bmap's (at byte 18)"});
}

TEST(Bmap, EntitiesDeclarationsAndMarkupInValuesAreRefused) {
  check_refused(replaced(bmap_of({}), "> 10000 <", "> &#49;0000 <"),
                {"an entity inside <ImageSize>"});
  check_refused(replaced(bmap_of({}), "> 4096 <", "> &size; <"), {"an entity inside <BlockSize>"});
  check_refused(replaced(bmaptool_bmap, "\"6896d9ea3f", "\"&#54;896d9ea3f"),
                {"markup inside an attribute value"});
  check_refused(replaced(bmap_of({}), "\"2.0\"", "\"2.<0\""), {"markup inside an attribute value"});
  check_refused(replaced(bmap_of({}), "<bmap version",
                         "<!DOCTYPE bmap [<!ENTITY size \"4096\">]>\n<bmap version"),
                {"an element without a name"});
  check_refused(replaced(bmap_of({}), "> 10000 <", "><![CDATA[10000]]><"),
                {"an element without a name"});
}

TEST_GROUP(SparseScan) {
  stacknode::test::TempDir directory;
};

namespace {

// A file of `size` bytes made with ftruncate, so all hole, until write_at() puts data in it.
class SparseFile {
 public:
  SparseFile(const std::filesystem::path& path, std::uint64_t size) {
    descriptor_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (descriptor_ < 0 || ::ftruncate(descriptor_, static_cast<off_t>(size)) != 0)
      FAIL("cannot make the file");
    struct stat status {};
    if (::fstat(descriptor_, &status) != 0 || status.st_blocks != 0) {
      FAIL(("the filesystem of " + path.parent_path().string() +
            " keeps no holes: set TMPDIR to a directory on ext4, xfs, btrfs or tmpfs")
               .c_str());
    }
  }
  ~SparseFile() {
    if (descriptor_ >= 0) ::close(descriptor_);
  }
  SparseFile(const SparseFile&) = delete;
  SparseFile& operator=(const SparseFile&) = delete;

  void write_at(std::uint64_t offset, std::uint64_t length) {
    const std::string bytes(length, 'x');
    if (::pwrite(descriptor_, bytes.data(), bytes.size(), static_cast<off_t>(offset)) !=
        static_cast<ssize_t>(length)) {
      FAIL("pwrite failed");
    }
  }
  int fd() const { return descriptor_; }

 private:
  int descriptor_ = -1;
};

BlockMap scanned(const SparseFile& file, std::uint64_t size,
                 std::source_location caller = std::source_location::current()) {
  std::string error;
  std::optional<BlockMap> map = map_of_sparse_file(file.fd(), size, error);
  if (!map) fail_at("refused: " + error, caller);
  const std::string broken = broken_invariant(*map);
  if (!broken.empty()) fail_at("invariant " + broken, caller);
  if (map->version != "sparse scan") fail_at("version \"" + map->version + "\"", caller);
  return std::move(*map);
}

constexpr std::uint64_t block = sparse_scan_block_size;

}  // namespace

TEST(SparseScan, FindsTheBlocksThatHoldData) {
  const std::uint64_t size = 40 * block + 100;  // the last block partial
  SparseFile file(directory.path() / "image", size);
  file.write_at(0, 1);               // one byte: block 0
  file.write_at(5 * block - 5, 10);  // across a block boundary: blocks 4 and 5
  file.write_at(10 * block, block);  // two writes side by side: one range 10-11
  file.write_at(11 * block, block);
  file.write_at(21 * block - 1, 1);    // the last byte of block 20
  file.write_at(40 * block + 50, 50);  // up to the end of the file
  const BlockMap map = scanned(file, size);
  UNSIGNED_LONGLONGS_EQUAL(size, map.image_size);
  UNSIGNED_LONGLONGS_EQUAL(block, map.block_size);
  UNSIGNED_LONGLONGS_EQUAL(41, map.blocks_count);
  LONGS_EQUAL(5, map.ranges.size());
  check_range(map.ranges[0], 0, 0);
  check_range(map.ranges[1], 4, 5);
  check_range(map.ranges[2], 10, 11);
  check_range(map.ranges[3], 20, 20);
  check_range(map.ranges[4], 40, 40);
  UNSIGNED_LONGLONGS_EQUAL(7, map.mapped_blocks);
  for (const BlockRange& range : map.ranges) CHECK_FALSE(range.sha256.has_value());
  UNSIGNED_LONGLONGS_EQUAL(100, map.length_of(map.ranges[4]));
  UNSIGNED_LONGLONGS_EQUAL(6 * block + 100, map.mapped_bytes());
}

TEST(SparseScan, AFileOfOnlyHolesHasNoRangesAndAFullOneHasOne) {
  SparseFile holes(directory.path() / "holes", 256 * block);
  const BlockMap empty = scanned(holes, 256 * block);
  UNSIGNED_LONGLONGS_EQUAL(256, empty.blocks_count);
  LONGS_EQUAL(0, empty.ranges.size());
  UNSIGNED_LONGLONGS_EQUAL(0, empty.mapped_blocks);
  UNSIGNED_LONGLONGS_EQUAL(0, empty.mapped_bytes());

  SparseFile full(directory.path() / "full", 3 * block + 1);
  full.write_at(0, 3 * block + 1);
  const BlockMap whole = scanned(full, 3 * block + 1);
  LONGS_EQUAL(1, whole.ranges.size());
  check_range(whole.ranges[0], 0, 3);
  UNSIGNED_LONGLONGS_EQUAL(3 * block + 1, whole.mapped_bytes());
}

TEST(SparseScan, DataPastTheGivenSizeIsNotMapped) {
  // The image grew after its size was taken: the map still covers only `size` bytes, whether the
  // data runs across the end or lies wholly beyond it.
  SparseFile across(directory.path() / "across", 30 * block);
  across.write_at(0, block);
  across.write_at(9 * block, 2 * block);  // blocks 9 and 10, across the end
  const BlockMap clipped = scanned(across, 10 * block);
  UNSIGNED_LONGLONGS_EQUAL(10, clipped.blocks_count);
  LONGS_EQUAL(2, clipped.ranges.size());
  check_range(clipped.ranges[0], 0, 0);
  check_range(clipped.ranges[1], 9, 9);
  UNSIGNED_LONGLONGS_EQUAL(2 * block, clipped.mapped_bytes());

  SparseFile beyond(directory.path() / "beyond", 30 * block);
  beyond.write_at(0, block);
  beyond.write_at(20 * block, block);  // after a hole that runs past the end
  const BlockMap map = scanned(beyond, 10 * block);
  LONGS_EQUAL(1, map.ranges.size());
  check_range(map.ranges[0], 0, 0);
  UNSIGNED_LONGLONGS_EQUAL(1, map.mapped_blocks);
  UNSIGNED_LONGLONGS_EQUAL(block, map.mapped_bytes());
}

TEST(SparseScan, RefusesAnEmptyImageAndADescriptorItCannotSeek) {
  SparseFile file(directory.path() / "image", block);
  std::string error;
  CHECK_FALSE(map_of_sparse_file(file.fd(), 0, error).has_value());
  STRCMP_CONTAINS("the image is 0 bytes, outside [1, ", error.c_str());
  error.clear();
  CHECK_FALSE(map_of_sparse_file(file.fd(), max_image_bytes + 1, error).has_value());
  STRCMP_CONTAINS("outside [1, ", error.c_str());
  error.clear();
  CHECK_FALSE(map_of_sparse_file(-1, block, error).has_value());
  STRCMP_CONTAINS("cannot look for data in the image: ", error.c_str());
}
