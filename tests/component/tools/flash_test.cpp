// Component test of stacknode-flash (tools/flash) into files: the real binary, images with holes,
// bmaps made by Debian's bmaptool. Checks that the written file equals the image and keeps its
// holes, that a corrupt image or a tampered bmap is caught with its message and exit status, and
// that what must be refused is refused with nothing changed. Block devices: flash_device_test.cpp.
#include <sys/stat.h>

#include <CppUTest/TestHarness.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "flash_support.hpp"
#include "process.hpp"

using namespace stacknode::test;
using namespace stacknode::test::flash;

namespace {

constexpr int exit_failed = 1;   // stacknode-flash: failed while writing or verifying
constexpr int exit_refused = 2;  // refused before writing anything

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::uint64_t allocated_bytes(const std::filesystem::path& path) {
  struct stat status {};
  CHECK_EQUAL(0, ::stat(path.c_str(), &status));
  return static_cast<std::uint64_t>(status.st_blocks) * 512;
}

// Flips one byte of the file at `offset`.
void flip_byte(const std::filesystem::path& path, std::uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(offset));
  const char byte = static_cast<char>(file.get() ^ 0x5a);
  file.seekp(static_cast<std::streamoff>(offset));
  file.put(byte);
}

}  // namespace

TEST_GROUP(Flash) {
  TempDir dir;
  std::filesystem::path image, bmap, target;
  void setup() override {
    require_program("bmaptool", "bmap-tools");
    image = dir.path() / "stacknode.img";
    bmap = dir.path() / "stacknode.img.bmap";
    target = dir.path() / "disk.img";
    make_image(image);
    make_bmap(image, bmap);
  }
};

TEST(Flash, WritesTheImageByItsBmapKeepsItsHolesAndVerifies) {
  const CommandResult result = run_flash({image.string(), target.string()});
  CHECK_EQUAL_TEXT(0, result.status, result.output.c_str());
  CHECK(contains(result.output, "map: " + bmap.string()));
  CHECK(contains(result.output, "read back identical"));
  CHECK(same_content(image, target));
  CHECK_EQUAL(image_bytes, std::filesystem::file_size(target));
  // Only the data was written: the target is as sparse as the image (3 MiB of data, blocks of 4 KiB).
  CHECK(allocated_bytes(target) < 4 * mib);
}

TEST(Flash, FindsTheBmapUnderTheImagesNameWithoutItsExtension) {
  std::filesystem::rename(bmap, dir.path() / "stacknode.bmap");
  const CommandResult result = run_flash({image.string(), target.string()});
  CHECK_EQUAL_TEXT(0, result.status, result.output.c_str());
  CHECK(contains(result.output, "stacknode.bmap"));
  CHECK(same_content(image, target));
}

TEST(Flash, WithoutABmapWritesTheDataFoundBetweenTheHoles) {
  std::filesystem::remove(bmap);
  const CommandResult result = run_flash({image.string(), target.string()});
  CHECK_EQUAL_TEXT(0, result.status, result.output.c_str());
  CHECK(contains(result.output, "map: the image's holes"));
  CHECK(same_content(image, target));
  CHECK(allocated_bytes(target) < 4 * mib);
}

TEST(Flash, ACorruptImageIsCaughtByTheBmapsChecksums) {
  flip_byte(image, 11 * mib + 7);  // inside the data at 10 MiB, after the bmap was made
  const CommandResult result = run_flash({image.string(), target.string()});
  CHECK_EQUAL_TEXT(exit_failed, result.status, result.output.c_str());
  CHECK(contains(result.output, "do not match their SHA-256 in the bmap"));
  CHECK(!contains(result.output, "read back identical"));
}

TEST(Flash, ATamperedBmapIsRefusedAndNothingIsWritten) {
  std::string text = read_file(bmap);
  const std::size_t range = text.find("<Range chksum=\"");
  CHECK(range != std::string::npos);
  const std::size_t digit = range + 15;
  text[digit] = text[digit] == '0' ? '1' : '0';
  write_file(bmap, text);
  const CommandResult result = run_flash({image.string(), target.string()});
  CHECK_EQUAL_TEXT(exit_refused, result.status, result.output.c_str());
  CHECK(contains(result.output, "does not match its own BmapFileChecksum"));
  CHECK(!std::filesystem::exists(target));
}

TEST(Flash, ABmapOfAnotherImageIsRefused) {
  const std::filesystem::path other = dir.path() / "other.img";
  make_image(other, image_bytes / 2, {{0, 4096}});
  const CommandResult result = run_flash({"--bmap", bmap.string(), other.string(), target.string()});
  CHECK_EQUAL_TEXT(exit_refused, result.status, result.output.c_str());
  CHECK(contains(result.output, "describes an image of"));
  CHECK(!std::filesystem::exists(target));
}

TEST(Flash, AFileWithDataIsReplacedOnlyWithForceAndOldDataDoesNotSurviveInHoles) {
  const std::filesystem::path old_image = dir.path() / "old.img";
  make_image(old_image, image_bytes, {{20 * mib, mib}}, 99);  // data where the new image has a hole
  CHECK_EQUAL(0, run_flash({"--no-bmap", old_image.string(), target.string()}).status);

  const CommandResult refused = run_flash({image.string(), target.string()});
  CHECK_EQUAL_TEXT(exit_refused, refused.status, refused.output.c_str());
  CHECK(contains(refused.output, "--force to replace it"));
  CHECK(same_content(old_image, target));  // unchanged

  const CommandResult forced = run_flash({"--force", image.string(), target.string()});
  CHECK_EQUAL_TEXT(0, forced.status, forced.output.c_str());
  CHECK(same_content(image, target));
}

TEST(Flash, BadCommandLinesAndTargetsAreRefused) {
  CHECK_EQUAL(exit_refused, run_flash({image.string()}).status);
  CHECK_EQUAL(exit_refused, run_flash({"--bogus", image.string(), target.string()}).status);
  CHECK_EQUAL(exit_refused, run_flash({"--no-bmap", "--bmap", bmap.string(), image.string(), target.string()}).status);
  const CommandResult missing = run_flash({(dir.path() / "nope.img").string(), target.string()});
  CHECK_EQUAL(exit_refused, missing.status);
  CHECK(contains(missing.output, "cannot open the image"));
  const CommandResult itself = run_flash({"--force", image.string(), image.string()});
  CHECK_EQUAL(exit_refused, itself.status);
  CHECK(contains(itself.output, "is the image itself"));
  const CommandResult directory = run_flash({image.string(), dir.path().string()});
  CHECK_EQUAL(exit_refused, directory.status);
  CHECK(contains(directory.output, "neither a block device nor a regular file"));
  CHECK(!std::filesystem::exists(target));
}

TEST(Flash, BmaptoolReadsBackWhatFlashWrote) {
  // The independent tool agrees: bmaptool copy of the same image into another file gives the same
  // bytes as ours.
  CHECK_EQUAL(0, run_flash({image.string(), target.string()}).status);
  const std::filesystem::path theirs = dir.path() / "theirs.img";
  const CommandResult copied =
      run_command({"bmaptool", "copy", "--bmap", bmap.string(), image.string(), theirs.string()});
  CHECK_EQUAL_TEXT(0, copied.status, copied.output.c_str());
  CHECK(same_content(theirs, target));
}
