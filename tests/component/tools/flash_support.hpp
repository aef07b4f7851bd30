// Shared by the flash component tests: sparse test images with data at known places, their
// bmaps made by the real bmaptool (an independent implementation of the format), and running
// stacknode-flash.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CppUTest/TestHarness.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "process.hpp"

namespace stacknode::test::flash {

inline constexpr std::uint64_t mib = std::uint64_t{1} << 20;
inline constexpr std::uint64_t image_bytes = 64 * mib;

// Where the test image has data: a boot sector at 0, 3 MiB at 10 MiB, and a partial last block
// (the image size is not a multiple of 4 KiB on purpose: bmap's last range is then partial).
struct DataRun {
  std::uint64_t offset;
  std::uint64_t length;
};
inline const std::vector<DataRun> test_runs = {{0, 512}, {10 * mib, 3 * mib}, {image_bytes - 1000, 1000}};

inline void write_random(int fd, std::uint64_t offset, std::uint64_t length, std::mt19937_64& random) {
  std::vector<std::uint8_t> bytes(length);
  for (auto& byte : bytes) byte = static_cast<std::uint8_t>(random());
  CHECK_EQUAL(static_cast<ssize_t>(length), ::pwrite(fd, bytes.data(), length, static_cast<off_t>(offset)));
}

// A sparse image of `size` bytes with random data in `runs`.
inline void make_image(const std::filesystem::path& path, std::uint64_t size = image_bytes,
                       const std::vector<DataRun>& runs = test_runs, std::uint64_t seed = 1) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  CHECK_EQUAL(0, ::ftruncate(fd, static_cast<off_t>(size)));
  std::mt19937_64 random(seed);
  for (const DataRun& run : runs) write_random(fd, run.offset, run.length, random);
  ::close(fd);
}

inline void make_bmap(const std::filesystem::path& image, const std::filesystem::path& bmap) {
  const CommandResult made = run_command({"sh", "-c", "bmaptool create '" + image.string() + "' > '" + bmap.string() + "'"});
  CHECK_EQUAL_TEXT(0, made.status, made.output.c_str());
}

inline CommandResult run_flash(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), (binary_dir() / "stacknode-flash").string());
  return run_command(arguments);
}

// The first `bytes` of both are equal (a device may be larger than the image written to it).
inline bool same_content(const std::filesystem::path& left, const std::filesystem::path& right,
                         std::uint64_t bytes = image_bytes) {
  return run_command({"cmp", "-s", "-n", std::to_string(bytes), left.string(), right.string()}).status == 0;
}

}  // namespace stacknode::test::flash
