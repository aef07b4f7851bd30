// stacknode-flash (run as tools/flash): writes a firmware disk image onto a block device or into a
// file, only the blocks that hold data (from the image's .bmap, else from its holes), checks each
// range against its SHA-256 as it goes, syncs, and reads every range back from the target to
// verify it. Refuses, unless --force, a device that is mounted, used as swap, held by another
// device (LVM, RAID, dm-crypt) or a partition, and a file that already has data.
//
// Order of work, each step's failure named in one line (exit 2: refused before anything was
// written; exit 1: failed while writing or verifying):
//  1. parse the command line; open the image; read and check the bmap (or scan the holes);
//  2. check the target (kind, size, in use) and open it;
//  3. write each range, hashing what is read from the image (a range that does not match the
//     bmap stops the run: the image is corrupt);
//  4. fdatasync the target; drop its cached pages (read back with O_DIRECT from a device);
//  5. read back each range and compare its SHA-256 with what was written.
#include <fcntl.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bmap.hpp"
#include "stacknode/node/hex.hpp"

namespace stacknode::flash {
namespace {

constexpr int exit_failed = 1;
constexpr int exit_refused = 2;
// Bytes per read and write: large enough that the syscalls cost nothing beside the device, small
// enough to keep memory flat. A multiple of every block size a bmap may use (O_DIRECT needs it).
constexpr std::size_t io_chunk_bytes = std::size_t{4} << 20;
constexpr std::size_t direct_io_alignment = 4096;
static_assert(io_chunk_bytes % max_block_size == 0 && io_chunk_bytes % direct_io_alignment == 0);
constexpr int progress_percent_step = 10;  // a line per step when stderr is not a terminal
constexpr auto progress_tty_interval = std::chrono::milliseconds(200);

struct Refused {
  std::string message;
};
struct Failed {
  std::string message;
};

std::string errno_text() { return std::strerror(errno); }

struct Options {
  std::string image;
  std::string target;
  std::string bmap;  // empty: IMAGE.bmap or the image without its extension + .bmap, if present
  bool no_bmap = false;
  bool force = false;
};

void usage(std::FILE* to) {
  std::fputs(
      "usage: tools/flash [--bmap FILE | --no-bmap] [--force] IMAGE DEVICE|FILE\n"
      "  Writes IMAGE's data blocks to DEVICE (or FILE), verifying each range's SHA-256 while\n"
      "  writing and reading everything back afterwards.\n"
      "  --bmap FILE  the block map (default: IMAGE.bmap, or IMAGE's name with .bmap for its extension)\n"
      "  --no-bmap    ignore any bmap: find the data from IMAGE's holes (nothing to check it against)\n"
      "  --force      write to a device in use (mounted, swap, held) or a partition, or over a file\n"
      "               that has data\n",
      to);
}

Options parse_options(int argc, char** argv) {
  Options options;
  std::vector<std::string> positional;
  for (int index = 1; index < argc; ++index) {
    const std::string argument = argv[index];
    if (argument == "--help" || argument == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (argument == "--force") {
      options.force = true;
    } else if (argument == "--no-bmap") {
      options.no_bmap = true;
    } else if (argument == "--bmap") {
      if (++index == argc) throw Refused{"--bmap needs a file"};
      options.bmap = argv[index];
    } else if (argument.starts_with("-")) {
      throw Refused{"unknown option " + argument + " (see --help)"};
    } else {
      positional.push_back(argument);
    }
  }
  if (positional.size() != 2) throw Refused{"expected IMAGE and DEVICE (see --help)"};
  if (options.no_bmap && !options.bmap.empty()) throw Refused{"--bmap and --no-bmap contradict each other"};
  options.image = positional[0];
  options.target = positional[1];
  return options;
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::optional<std::string> read_small_file(const std::filesystem::path& path, std::size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string content;
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    content.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (content.size() > limit) break;  // parse_bmap names the limit
  }
  return content;
}

// The bmap to use: the one named, else one beside the image by bmaptool's two conventions.
std::optional<std::filesystem::path> find_bmap(const Options& options) {
  if (options.no_bmap) return std::nullopt;
  if (!options.bmap.empty()) return std::filesystem::path(options.bmap);
  const std::filesystem::path image(options.image);
  std::filesystem::path candidates[] = {std::filesystem::path(options.image + ".bmap"),
                                        std::filesystem::path(image).replace_extension(".bmap")};
  for (const auto& candidate : candidates) {
    if (candidate != image && std::filesystem::is_regular_file(candidate)) return candidate;
  }
  return std::nullopt;
}

// ---- Is the device in use? ----------------------------------------------------------------------

std::string device_number(dev_t device) {
  return std::to_string(major(device)) + ":" + std::to_string(minor(device));
}

// The device and its partitions (from sysfs), as "major:minor".
std::set<std::string> device_and_partitions(dev_t device) {
  std::set<std::string> numbers{device_number(device)};
  std::error_code error;
  const std::filesystem::path node =
      std::filesystem::canonical("/sys/dev/block/" + device_number(device), error);
  if (error) return numbers;
  for (const auto& entry : std::filesystem::directory_iterator(node, error)) {
    if (!std::filesystem::exists(entry.path() / "partition")) continue;
    std::ifstream dev(entry.path() / "dev");
    std::string number;
    if (dev >> number) numbers.insert(number);
  }
  return numbers;
}

// Why the block device is in use, or an empty string.
std::string device_in_use(dev_t device) {
  const std::set<std::string> numbers = device_and_partitions(device);
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream fields(line);
    std::string mount_id, parent_id, number, root, mount_point;
    if (!(fields >> mount_id >> parent_id >> number >> root >> mount_point)) continue;
    if (numbers.count(number)) return "device " + number + " is mounted on " + mount_point;
  }
  std::ifstream swaps("/proc/swaps");
  std::getline(swaps, line);  // the header
  while (std::getline(swaps, line)) {
    const std::string path = line.substr(0, line.find_first_of(" \t"));
    struct stat status {};
    if (::stat(path.c_str(), &status) == 0 && S_ISBLK(status.st_mode) && numbers.count(device_number(status.st_rdev))) {
      return path + " is in use as swap";
    }
  }
  for (const std::string& number : numbers) {
    std::error_code error;
    const std::filesystem::path holders = "/sys/dev/block/" + number + "/holders";
    for (const auto& holder : std::filesystem::directory_iterator(holders, error)) {
      return "device " + number + " is held by " + holder.path().filename().string() +
             " (LVM, RAID or dm-crypt)";
    }
  }
  return {};
}

bool is_partition(dev_t device) {
  return std::filesystem::exists("/sys/dev/block/" + device_number(device) + "/partition");
}

// ---- Writing and verifying ---------------------------------------------------------------------

class Sha256Stream {
 public:
  Sha256Stream() : context_(EVP_MD_CTX_new()) {
    if (context_ == nullptr || EVP_DigestInit_ex(context_, EVP_sha256(), nullptr) != 1) {
      throw Failed{"SHA-256 is not available (OpenSSL)"};
    }
  }
  ~Sha256Stream() { EVP_MD_CTX_free(context_); }
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void update(const std::uint8_t* bytes, std::size_t size) { EVP_DigestUpdate(context_, bytes, size); }
  Sha256 finish() {
    Sha256 digest{};
    unsigned int length = 0;
    EVP_DigestFinal_ex(context_, digest.data(), &length);
    return digest;
  }

 private:
  EVP_MD_CTX* context_;
};

struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t size)
      : bytes(static_cast<std::uint8_t*>(std::aligned_alloc(direct_io_alignment, size))) {
    if (bytes == nullptr) throw Failed{"out of memory for the I/O buffer"};
  }
  ~AlignedBuffer() { std::free(bytes); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::uint8_t* bytes;
};

// Reads `size` bytes at `offset`, asking for `request` (>= size: a whole aligned block for O_DIRECT,
// which a device that ends inside that block may cut short).
void read_fully(int fd, std::uint8_t* into, std::size_t size, std::uint64_t offset, const char* what,
                std::size_t request = 0) {
  request = std::max(request, size);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t got = ::pread(fd, into + done, request - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw Failed{std::string("reading ") + what + " at byte " + std::to_string(offset + done) + ": " + errno_text()};
    }
    if (got == 0) throw Failed{std::string(what) + " ends at byte " + std::to_string(offset + done) + ", before its size"};
    done += static_cast<std::size_t>(got);
  }
}

void write_fully(int fd, const std::uint8_t* from, std::size_t size, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t put = ::pwrite(fd, from + done, size - done, static_cast<off_t>(offset + done));
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) throw Failed{"writing the target at byte " + std::to_string(offset + done) + ": " + errno_text()};
    done += static_cast<std::size_t>(put);
  }
}

class Progress {
 public:
  Progress(std::uint64_t total, const char* verb) : total_(total), verb_(verb), tty_(isatty(STDERR_FILENO) == 1) {}
  void advance(std::uint64_t bytes) {
    done_ += bytes;
    const int percent = total_ == 0 ? 100 : static_cast<int>(done_ * 100 / total_);
    const auto now = std::chrono::steady_clock::now();
    if (tty_) {
      if (now - last_ < progress_tty_interval && done_ != total_) return;
      last_ = now;
      std::fprintf(stderr, "\rflash: %s %3d%% (%llu of %llu MiB)", verb_, percent,
                   static_cast<unsigned long long>(done_ >> 20), static_cast<unsigned long long>(total_ >> 20));
      if (done_ == total_) std::fputc('\n', stderr);
    } else {
      while (next_percent_ <= percent) {
        std::fprintf(stderr, "flash: %s %d%%\n", verb_, next_percent_);
        next_percent_ += progress_percent_step;
      }
    }
  }

 private:
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  const char* verb_;
  bool tty_;
  int next_percent_ = progress_percent_step;
  std::chrono::steady_clock::time_point last_{};
};

std::string range_label(const BlockRange& range) {
  return "blocks " + std::to_string(range.first) + "-" + std::to_string(range.last);
}

int run(const Options& options) {
  // 1. The image and its map.
  FileDescriptor image(::open(options.image.c_str(), O_RDONLY | O_CLOEXEC));
  if (image.get() < 0) throw Refused{"cannot open the image " + options.image + ": " + errno_text()};
  struct stat image_status {};
  if (::fstat(image.get(), &image_status) != 0 || !S_ISREG(image_status.st_mode)) {
    throw Refused{options.image + " is not a regular file"};
  }
  const auto image_size = static_cast<std::uint64_t>(image_status.st_size);
  BlockMap map;
  const std::optional<std::filesystem::path> bmap_path = find_bmap(options);
  if (bmap_path) {
    const std::optional<std::string> text = read_small_file(*bmap_path, max_bmap_bytes);
    if (!text) throw Refused{"cannot read the bmap " + bmap_path->string()};
    BmapParseResult parsed = parse_bmap(*text);
    if (!parsed.map) throw Refused{bmap_path->string() + ": " + parsed.error};
    map = std::move(*parsed.map);
    if (map.image_size != image_size) {
      throw Refused{bmap_path->string() + " describes an image of " + std::to_string(map.image_size) +
                    " bytes; " + options.image + " has " + std::to_string(image_size) + " (not its bmap?)"};
    }
  } else {
    std::string error;
    std::optional<BlockMap> scanned = map_of_sparse_file(image.get(), image_size, error);
    if (!scanned) throw Refused{options.image + ": " + error};
    map = std::move(*scanned);
  }

  // 2. The target.
  struct stat target_status {};
  const bool target_exists = ::stat(options.target.c_str(), &target_status) == 0;
  if (!target_exists && errno != ENOENT) throw Refused{"cannot look at " + options.target + ": " + errno_text()};
  const bool is_device = target_exists && S_ISBLK(target_status.st_mode);
  if (target_exists && !is_device && !S_ISREG(target_status.st_mode)) {
    throw Refused{options.target + " is neither a block device nor a regular file"};
  }
  if (target_exists && target_status.st_dev == image_status.st_dev && target_status.st_ino == image_status.st_ino) {
    throw Refused{options.target + " is the image itself"};
  }
  if (is_device && !options.force) {
    const std::string in_use = device_in_use(target_status.st_rdev);
    if (!in_use.empty()) throw Refused{options.target + " is in use: " + in_use + " (--force to write anyway)"};
    if (is_partition(target_status.st_rdev)) {
      throw Refused{options.target + " is a partition, and the image is a whole disk (--force to write anyway)"};
    }
  }
  if (target_exists && !is_device && target_status.st_size > 0 && !options.force) {
    throw Refused{options.target + " already holds " + std::to_string(target_status.st_size) +
                  " bytes (--force to replace it)"};
  }
  FileDescriptor target(::open(options.target.c_str(), O_WRONLY | O_CLOEXEC | (is_device ? (options.force ? 0 : O_EXCL) : O_CREAT), 0644));
  if (target.get() < 0) throw Refused{"cannot open " + options.target + " for writing: " + errno_text()};
  if (is_device) {
    std::uint64_t device_bytes = 0;
    if (::ioctl(target.get(), BLKGETSIZE64, &device_bytes) != 0) {
      throw Refused{"cannot read the size of " + options.target + ": " + errno_text()};
    }
    if (device_bytes < image_size) {
      throw Refused{options.target + " holds " + std::to_string(device_bytes) + " bytes, less than the image's " +
                    std::to_string(image_size)};
    }
  } else if (::ftruncate(target.get(), 0) != 0 || ::ftruncate(target.get(), static_cast<off_t>(image_size)) != 0) {
    // Cut to nothing first so that old data does not survive in what are holes of the image.
    throw Failed{"cannot size " + options.target + ": " + errno_text()};
  }

  // 3. Write, checking the image against the map as it is read.
  std::fprintf(stderr, "flash: %s -> %s: %llu MiB of data in %zu ranges of a %llu MiB image (map: %s)\n",
               options.image.c_str(), options.target.c_str(), static_cast<unsigned long long>(map.mapped_bytes() >> 20),
               map.ranges.size(), static_cast<unsigned long long>(image_size >> 20),
               bmap_path ? bmap_path->c_str() : "the image's holes");
  AlignedBuffer buffer(io_chunk_bytes);
  std::vector<Sha256> written;
  written.reserve(map.ranges.size());
  Progress writing(map.mapped_bytes(), "written");
  for (const BlockRange& range : map.ranges) {
    Sha256Stream digest;
    const std::uint64_t offset = map.offset_of(range);
    const std::uint64_t length = map.length_of(range);
    for (std::uint64_t done = 0; done < length;) {
      const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(io_chunk_bytes, length - done));
      read_fully(image.get(), buffer.bytes, size, offset + done, "the image");
      digest.update(buffer.bytes, size);
      write_fully(target.get(), buffer.bytes, size, offset + done);
      done += size;
      writing.advance(size);
    }
    written.push_back(digest.finish());
    if (range.sha256 && *range.sha256 != written.back()) {
      throw Failed{"the image's " + range_label(range) + " do not match their SHA-256 in the bmap: the image is "
                   "corrupt or not the one the bmap was made for; the target is incomplete"};
    }
  }

  // 4. Make it durable, and make sure the read-back comes from the medium, not from the cache.
  if (::fdatasync(target.get()) != 0) throw Failed{"syncing " + options.target + ": " + errno_text()};
  FileDescriptor reader;
  const bool direct = is_device && map.block_size % direct_io_alignment == 0;
  if (direct) {
    reader = FileDescriptor(::open(options.target.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
  }
  if (reader.get() < 0) {
    if (is_device) ::ioctl(target.get(), BLKFLSBUF, 0);         // the device's buffer cache
    ::posix_fadvise(target.get(), 0, 0, POSIX_FADV_DONTNEED);  // clean pages: dropped
    reader = FileDescriptor(::open(options.target.c_str(), O_RDONLY | O_CLOEXEC));
  }
  if (reader.get() < 0) throw Failed{"cannot open " + options.target + " to read it back: " + errno_text()};

  // 5. Read back every range. With O_DIRECT, reads are whole aligned blocks: a partial last block
  // of the image is read whole and only its image bytes hashed. (O_EXCL on the device above also
  // makes the kernel refuse it while it is mounted.)
  Progress verifying(map.mapped_bytes(), "verified");
  for (std::size_t index = 0; index < map.ranges.size(); ++index) {
    const BlockRange& range = map.ranges[index];
    Sha256Stream digest;
    const std::uint64_t offset = map.offset_of(range);
    const std::uint64_t length = map.length_of(range);
    for (std::uint64_t done = 0; done < length;) {
      const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(io_chunk_bytes, length - done));
      const std::size_t request =
          direct ? (size + direct_io_alignment - 1) / direct_io_alignment * direct_io_alignment : size;
      read_fully(reader.get(), buffer.bytes, size, offset + done, "the target", request);
      digest.update(buffer.bytes, size);
      done += size;
      verifying.advance(size);
    }
    if (digest.finish() != written[index]) {
      throw Failed{"read back from " + options.target + ", " + range_label(range) +
                   " differ from what was written: the medium is failing or something else writes to it"};
    }
  }
  std::fprintf(stderr, "flash: done: %llu MiB written to %s and read back identical\n",
               static_cast<unsigned long long>(map.mapped_bytes() >> 20), options.target.c_str());
  return 0;
}

}  // namespace
}  // namespace stacknode::flash

int main(int argc, char** argv) {
  using namespace stacknode::flash;
  try {
    return run(parse_options(argc, argv));
  } catch (const Refused& refused) {
    std::fprintf(stderr, "flash: refused: %s\n", refused.message.c_str());
    return exit_refused;
  } catch (const Failed& failed) {
    std::fprintf(stderr, "\nflash: FAILED: %s\n", failed.message.c_str());
    return exit_failed;
  }
}
