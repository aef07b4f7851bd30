// Content bundles: the byte form's encoder and its bounds-checked parser, the path rules, and the
// two ends that touch the disk (a directory read into a bundle, a bundle written into a new
// directory). The byte form, the rules and the limits are at the top of content_bundle.hpp.
//
// Invariants the parser keeps (the fuzz target fuzz_content_bundle checks them):
//  1. No length is used before it is checked against the bytes left, and nothing is allocated
//     before that check (take_* below read only what is there; the file list is sized for no
//     more files than the bytes left could hold).
//  2. On refusal `bundle` is empty and the message is one line naming the first fault.
//  3. On acceptance encode_bundle(bundle) gives back exactly the input: one spelling per set of
//     files (strictly increasing paths, modes 0/1 only, nothing after the check).
#include "stacknode/node/content_bundle.hpp"
#include "stacknode/node/hex.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <stdexcept>
#include <system_error>
#include <unordered_set>
#include <utility>

namespace stacknode::node {
namespace {

// Field widths of the byte form.
constexpr std::size_t file_count_bytes = 4;
constexpr std::size_t path_length_bytes = 2;
constexpr std::size_t mode_bytes = 1;
constexpr std::size_t size_bytes = 8;
// The smallest a file's record can be: a one-byte path and no data. The file list is allocated
// for no more files than the bytes left could hold at this size.
constexpr std::size_t min_file_record_bytes = path_length_bytes + 1 + mode_bytes + size_bytes;
constexpr std::uint8_t mode_plain = 0;
constexpr std::uint8_t mode_executable = 1;
// What a bundle costs before and after its files.
constexpr std::uint64_t bundle_frame_bytes =
    bundle_magic.size() + file_count_bytes + bundle_check_bytes;
// Bundle paths in messages are cut to this many bytes, so that a message stays a readable line;
// paths on disk (the directory and the file in it) are shown up to PATH_MAX.
constexpr std::size_t max_quoted_path_bytes = 128;
constexpr std::size_t max_quoted_disk_path_bytes = PATH_MAX;
// The modes the byte form's two modes stand for on disk, and that of every directory.
constexpr mode_t plain_file_mode = 0644;
constexpr mode_t executable_file_mode = 0755;
constexpr mode_t directory_mode = 0755;
// One read() of a file being put into a bundle asks for at most this much.
constexpr std::size_t read_chunk_bytes = 1 << 16;

static_assert(max_bundle_path_bytes <= 0xffff, "a path length must fit its u16 field");
static_assert(bundle_check_bytes == 32, "the check is a SHA-256 digest");

using Bytes = std::vector<std::uint8_t>;
using Digest = std::array<std::uint8_t, bundle_check_bytes>;

// Thrown only when OpenSSL cannot compute a digest at all (no memory for its context): a broken
// process, not a bad bundle, so it is not dressed up as a refusal.
Digest sha256(std::span<const std::uint8_t> bytes) {
  Digest digest{};
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    throw std::runtime_error("bundle: OpenSSL could not compute SHA-256");
  }
  return digest;
}

// `path` in double quotes, safe to print on one line: quotes, backslashes, control characters and
// non-ASCII bytes as escapes, and cut after max_quoted_path_bytes.
std::string quote_path(std::string_view path, std::size_t limit = max_quoted_path_bytes) {
  constexpr std::string_view hex_digits = "0123456789abcdef";
  std::string text = "\"";
  const std::size_t shown = std::min(path.size(), limit);
  for (std::size_t index = 0; index < shown; ++index) {
    const auto byte = static_cast<unsigned char>(path[index]);
    if (byte == '"' || byte == '\\') {
      text += '\\';
      text += static_cast<char>(byte);
    } else if (byte < 0x20 || byte >= 0x7f) {
      text += "\\x";
      text += hex_digits[byte >> 4];
      text += hex_digits[byte & 0xf];
    } else {
      text += static_cast<char>(byte);
    }
  }
  text += '"';
  if (shown < path.size()) text += "...";
  return text;
}

// A path on disk, quoted like a bundle path but shown whole.
std::string quote_disk_path(const std::filesystem::path& path) {
  return quote_path(path.string(), max_quoted_disk_path_bytes);
}

std::string errno_text(int error) {
  return std::generic_category().message(error);
}

// Bytes one file takes in the byte form.
std::uint64_t file_record_bytes(std::size_t path_bytes, std::uint64_t data_bytes) {
  return path_length_bytes + std::uint64_t{path_bytes} + mode_bytes + size_bytes + data_bytes;
}

// The directory part of `path` ("a/b" for "a/b/c"; empty for "c").
std::string_view parent_of(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

// The first directory of `path` (each of "a", "a/b" for "a/b/c") that is itself in `files`,
// or empty when there is none. Paths are valid here, so no directory prefix is empty.
std::string_view directory_that_is_a_file(std::string_view path,
                                          const std::unordered_set<std::string_view>& files) {
  for (std::size_t slash = path.find('/'); slash != std::string_view::npos;
       slash = path.find('/', slash + 1)) {
    const std::string_view directory = path.substr(0, slash);
    if (files.contains(directory)) return directory;
  }
  return {};
}

void put_big_endian(Bytes& out, std::uint64_t value, std::size_t width) {
  for (std::size_t index = width; index-- > 0;)
    out.push_back(static_cast<std::uint8_t>(value >> (8 * index)));
}

// Reads the byte form front to back; every take_* checks the bytes left first and reports
// false (taking nothing) when they are too few.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}

  std::size_t left() const { return bytes_.size() - at_; }
  std::size_t position() const { return at_; }

  bool take_integer(std::size_t width, std::uint64_t& value) {
    if (left() < width) return false;
    value = 0;
    for (std::size_t index = 0; index < width; ++index) value = (value << 8) | bytes_[at_ + index];
    at_ += width;
    return true;
  }

  bool take_bytes(std::size_t count, std::span<const std::uint8_t>& taken) {
    if (left() < count) return false;
    taken = bytes_.subspan(at_, count);
    at_ += count;
    return true;
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t at_ = 0;
};

std::string_view as_text(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A file descriptor closed when it goes out of scope.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// ---- reading a directory -------------------------------------------------------------------

// Walks a directory tree through file descriptors (openat, O_NOFOLLOW at every step), so that
// nothing outside the tree is read even if the tree changes while it is being read.
class DirectoryReader {
 public:
  explicit DirectoryReader(const std::filesystem::path& root) : root_(root) {}

  // Reads the tree into files_; the empty string or the reason for refusing.
  std::string read() {
    UniqueFd root_fd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_fd.valid()) {
      return "bundle: cannot open the directory " + quote_disk_path(root_) + ": " +
             errno_text(errno);
    }
    return read_directory(std::move(root_fd), "");
  }

  std::vector<BundleFile>& files() { return files_; }

 private:
  std::string where(const std::string& relative) const { return quote_disk_path(root_ / relative); }

  std::string read_directory(UniqueFd directory_fd, const std::string& relative_directory) {
    const int listing_fd = ::dup(directory_fd.get());
    if (listing_fd < 0)
      return "bundle: cannot list " + where(relative_directory) + ": " + errno_text(errno);
    DIR* listing = ::fdopendir(listing_fd);
    if (listing == nullptr) {
      const int error = errno;
      ::close(listing_fd);
      return "bundle: cannot list " + where(relative_directory) + ": " + errno_text(error);
    }
    // Names first, then the work: no DIR stream stays open across the recursion below.
    std::vector<std::string> names;
    std::string fault;
    for (;;) {
      errno = 0;
      const dirent* entry = ::readdir(listing);
      if (entry == nullptr) {
        if (errno != 0)
          fault = "bundle: cannot list " + where(relative_directory) + ": " + errno_text(errno);
        break;
      }
      const std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    ::closedir(listing);
    if (!fault.empty()) return fault;
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const std::string relative =
          relative_directory.empty() ? name : relative_directory + "/" + name;
      fault = read_entry(directory_fd.get(), name, relative);
      if (!fault.empty()) return fault;
    }
    return {};
  }

  std::string read_entry(int directory_fd, const std::string& name, const std::string& relative) {
    struct stat status {};
    if (::fstatat(directory_fd, name.c_str(), &status, AT_SYMLINK_NOFOLLOW) != 0) {
      return "bundle: cannot inspect " + where(relative) + ": " + errno_text(errno);
    }
    if (S_ISLNK(status.st_mode))
      return "bundle: " + where(relative) +
             " is a symbolic link (a bundle holds regular files only)";
    if (S_ISFIFO(status.st_mode))
      return "bundle: " + where(relative) + " is a FIFO (a bundle holds regular files only)";
    if (S_ISSOCK(status.st_mode))
      return "bundle: " + where(relative) + " is a socket (a bundle holds regular files only)";
    if (S_ISCHR(status.st_mode) || S_ISBLK(status.st_mode)) {
      return "bundle: " + where(relative) + " is a device (a bundle holds regular files only)";
    }
    if (!S_ISDIR(status.st_mode) && !S_ISREG(status.st_mode)) {
      return "bundle: " + where(relative) + " is not a regular file or directory";
    }
    // A directory's path obeys the rules too; this also bounds how deep the walk goes.
    if (const std::string reason = check_bundle_path(relative); !reason.empty()) {
      return "bundle: " + where(relative) + ": " + reason;
    }
    const bool directory = S_ISDIR(status.st_mode);
    const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (directory ? O_DIRECTORY : O_NONBLOCK);
    UniqueFd fd(::openat(directory_fd, name.c_str(), flags));
    if (!fd.valid()) return "bundle: cannot open " + where(relative) + ": " + errno_text(errno);
    struct stat opened {};
    if (::fstat(fd.get(), &opened) != 0)
      return "bundle: cannot inspect " + where(relative) + ": " + errno_text(errno);
    if (opened.st_ino != status.st_ino || opened.st_dev != status.st_dev ||
        (opened.st_mode & S_IFMT) != (status.st_mode & S_IFMT)) {
      return "bundle: " + where(relative) + " changed while it was being read";
    }
    if (directory) return read_directory(std::move(fd), relative);
    return read_file(fd.get(), relative, (opened.st_mode & S_IXUSR) != 0);
  }

  std::string read_file(int fd, const std::string& relative, bool executable) {
    if (files_.size() == max_bundle_files) {
      return "bundle: " + where(relative) + ": more than the " + std::to_string(max_bundle_files) +
             " files a bundle may hold";
    }
    // The file may hold at most what the byte budget leaves after its own record's header.
    const std::uint64_t header = file_record_bytes(relative.size(), 0);
    if (encoded_bytes_ + header > max_bundle_bytes) return over_budget(relative);
    const std::uint64_t data_budget = max_bundle_bytes - encoded_bytes_ - header;
    BundleFile file;
    file.path = relative;
    file.executable = executable;
    std::array<char, read_chunk_bytes> chunk{};
    for (;;) {
      const ssize_t got = ::read(fd, chunk.data(), chunk.size());
      if (got < 0) {
        if (errno == EINTR) continue;
        return "bundle: cannot read " + where(relative) + ": " + errno_text(errno);
      }
      if (got == 0) break;
      if (file.data.size() + static_cast<std::size_t>(got) > data_budget)
        return over_budget(relative);
      file.data.append(chunk.data(), static_cast<std::size_t>(got));
    }
    encoded_bytes_ += header + file.data.size();
    files_.push_back(std::move(file));
    return {};
  }

  std::string over_budget(const std::string& relative) const {
    return "bundle: " + where(relative) + ": the files come to more than the " +
           std::to_string(max_bundle_bytes) + " bytes a bundle may hold";
  }

  std::filesystem::path root_;
  std::vector<BundleFile> files_;
  std::uint64_t encoded_bytes_ = bundle_frame_bytes;  // the byte form's size so far
};

// ---- writing a directory -------------------------------------------------------------------

std::string fsync_fault(int fd, const std::filesystem::path& path) {
  if (::fsync(fd) != 0)
    return "bundle: cannot fsync " + quote_disk_path(path) + ": " + errno_text(errno);
  return {};
}

// Sets the modification time of what `fd` is open on (nothing when `mtime_seconds` is empty); run
// before its fsync, so that the time is as durable as the contents.
std::string mtime_fault(int fd, std::optional<std::int64_t> mtime_seconds, const std::filesystem::path& path) {
  if (!mtime_seconds) return {};
  const timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(*mtime_seconds), 0}};
  if (::futimens(fd, times) != 0)
    return "bundle: cannot set the time of " + quote_disk_path(path) + ": " + errno_text(errno);
  return {};
}

std::string write_all(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    const ssize_t wrote = ::write(fd, data.data(), data.size());
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return "bundle: cannot write " + quote_disk_path(path) + ": " + errno_text(errno);
    }
    data.remove_prefix(static_cast<std::size_t>(wrote));
  }
  return {};
}

// Creates directory `name` in `parent_fd` with directory_mode whatever the umask, and opens it.
std::string make_directory(int parent_fd, const std::string& name,
                           const std::filesystem::path& full_path, UniqueFd& opened) {
  if (::mkdirat(parent_fd, name.c_str(), directory_mode) != 0) {
    return "bundle: cannot create the directory " + quote_disk_path(full_path) + ": " +
           errno_text(errno);
  }
  opened =
      UniqueFd(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!opened.valid())
    return "bundle: cannot open " + quote_disk_path(full_path) + ": " + errno_text(errno);
  if (::fchmod(opened.get(), directory_mode) != 0) {
    return "bundle: cannot set the mode of " + quote_disk_path(full_path) + ": " +
           errno_text(errno);
  }
  return {};
}

std::string write_file(int directory_fd, const std::string& name, const BundleFile& file,
                       const std::filesystem::path& full_path, std::optional<std::int64_t> mtime_seconds) {
  const mode_t mode = file.executable ? executable_file_mode : plain_file_mode;
  UniqueFd fd(::openat(directory_fd, name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid())
    return "bundle: cannot create " + quote_disk_path(full_path) + ": " + errno_text(errno);
  if (::fchmod(fd.get(), mode) != 0) {
    return "bundle: cannot set the mode of " + quote_disk_path(full_path) + ": " +
           errno_text(errno);
  }
  if (std::string fault = write_all(fd.get(), file.data, full_path); !fault.empty()) return fault;
  if (std::string fault = mtime_fault(fd.get(), mtime_seconds, full_path); !fault.empty()) return fault;
  if (std::string fault = fsync_fault(fd.get(), full_path); !fault.empty()) return fault;
  if (::close(fd.release()) != 0)
    return "bundle: cannot close " + quote_disk_path(full_path) + ": " + errno_text(errno);
  return {};
}

// Every directory from the target down to the one the current file goes in, open. Files arrive
// in path order, so all of a directory's files are consecutive: once a file lies outside it, the
// directory is complete, and is fsynced and closed (deepest first, the target last).
class DirectoryStack {
 public:
  // "site/" names the directory "site" (its trailing separator leaves an empty file name).
  DirectoryStack(const std::filesystem::path& target, std::optional<std::int64_t> mtime_seconds)
      : target_(!target.has_filename() && target.has_parent_path() ? target.parent_path()
                                                                   : target),
        mtime_seconds_(mtime_seconds) {}

  std::string open_target() {
    // The parent is opened first, so "the parent does not exist" is told apart from other faults.
    const std::filesystem::path parent = target_.has_parent_path() ? target_.parent_path() : ".";
    UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!parent_fd.valid()) {
      return "bundle: cannot open the parent directory " + quote_disk_path(parent) + ": " +
             errno_text(errno);
    }
    const std::string name = target_.filename().string();
    if (name.empty() || name == "." || name == "..") {
      return "bundle: " + quote_disk_path(target_) + " does not name a new directory";
    }
    if (::mkdirat(parent_fd.get(), name.c_str(), directory_mode) != 0) {
      if (errno == EEXIST) {
        return "bundle: " + quote_disk_path(target_) +
               " already exists (a bundle is written into a new directory)";
      }
      return "bundle: cannot create the directory " + quote_disk_path(target_) + ": " +
             errno_text(errno);
    }
    UniqueFd fd(
        ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid())
      return "bundle: cannot open " + quote_disk_path(target_) + ": " + errno_text(errno);
    if (::fchmod(fd.get(), directory_mode) != 0) {
      return "bundle: cannot set the mode of " + quote_disk_path(target_) + ": " +
             errno_text(errno);
    }
    open_.push_back({"", std::move(fd)});
    return {};
  }

  // Makes the directory `relative_directory` ("" for the target) the innermost open one,
  // finishing those the path leaves and creating those it enters.
  std::string enter(std::string_view relative_directory) {
    while (open_.size() > 1 && !inside(relative_directory, open_.back().relative)) {
      if (std::string fault = finish_innermost(); !fault.empty()) return fault;
    }
    while (open_.back().relative != relative_directory) {
      const std::string& current = open_.back().relative;
      const std::size_t start = current.empty() ? 0 : current.size() + 1;
      const std::size_t end =
          std::min(relative_directory.find('/', start), relative_directory.size());
      const std::string name(relative_directory.substr(start, end - start));
      std::string relative(relative_directory.substr(0, end));
      UniqueFd fd;
      if (std::string fault = make_directory(open_.back().fd.get(), name, target_ / relative, fd);
          !fault.empty()) {
        return fault;
      }
      open_.push_back({std::move(relative), std::move(fd)});
    }
    return {};
  }

  int innermost_fd() const { return open_.back().fd.get(); }

  // fsyncs and closes every directory still open, the target last.
  std::string finish_all() {
    while (!open_.empty()) {
      if (std::string fault = finish_innermost(); !fault.empty()) return fault;
    }
    return {};
  }

 private:
  struct OpenDirectory {
    std::string relative;
    UniqueFd fd;
  };

  // Whether `path` is `directory` or lies under it.
  static bool inside(std::string_view path, std::string_view directory) {
    if (directory.empty()) return true;
    return path == directory || (path.starts_with(directory) && path.size() > directory.size() &&
                                 path[directory.size()] == '/');
  }

  std::string finish_innermost() {
    OpenDirectory directory = std::move(open_.back());
    open_.pop_back();
    const std::filesystem::path full_path =
        directory.relative.empty() ? target_ : target_ / directory.relative;
    // Complete: no entry will change its time after this.
    if (std::string fault = mtime_fault(directory.fd.get(), mtime_seconds_, full_path); !fault.empty())
      return fault;
    if (std::string fault = fsync_fault(directory.fd.get(), full_path); !fault.empty())
      return fault;
    if (::close(directory.fd.release()) != 0) {
      return "bundle: cannot close " + quote_disk_path(full_path) + ": " + errno_text(errno);
    }
    return {};
  }

  std::filesystem::path target_;
  std::optional<std::int64_t> mtime_seconds_;
  std::vector<OpenDirectory> open_;
};

// The files of `bundle` in path order after checking what the byte form requires of them (valid
// distinct paths, no file that is another's directory, the limits); the empty string or the
// reason (without a prefix).
std::string sorted_valid_files(const Bundle& bundle, std::vector<const BundleFile*>& sorted) {
  sorted.clear();
  if (bundle.files.size() > max_bundle_files) {
    return std::to_string(bundle.files.size()) + " files, more than the " +
           std::to_string(max_bundle_files) + " allowed";
  }
  std::uint64_t total = bundle_frame_bytes;
  for (const BundleFile& file : bundle.files) {
    if (std::string reason = check_bundle_path(file.path); !reason.empty()) return reason;
    total += file_record_bytes(file.path.size(), file.data.size());
    if (total > max_bundle_bytes) {
      return "the files come to more than the " + std::to_string(max_bundle_bytes) +
             " bytes a bundle may hold (at " + quote_path(file.path) + ")";
    }
    sorted.push_back(&file);
  }
  std::sort(sorted.begin(), sorted.end(), [](const BundleFile* left, const BundleFile* right) {
    return std::string_view(left->path) < std::string_view(right->path);
  });
  std::unordered_set<std::string_view> seen;
  seen.reserve(sorted.size());
  for (const BundleFile* file : sorted) {
    if (!seen.insert(file->path).second) return "path " + quote_path(file->path) + " appears twice";
    if (const std::string_view directory = directory_that_is_a_file(file->path, seen);
        !directory.empty()) {
      return "path " + quote_path(file->path) + ": " + quote_path(directory) +
             " is a file, so it cannot be a directory";
    }
  }
  return {};
}

}  // namespace

std::string check_bundle_path(std::string_view path) {
  if (path.empty()) return "path is empty";
  if (path.size() > max_bundle_path_bytes) {
    return "path " + quote_path(path) + " is " + std::to_string(path.size()) +
           " bytes, more than " + std::to_string(max_bundle_path_bytes);
  }
  for (std::size_t index = 0; index < path.size(); ++index) {
    const auto byte = static_cast<unsigned char>(path[index]);
    const char* what = byte == 0                       ? "a NUL byte"
                       : byte == '\\'                  ? "a backslash"
                       : (byte < 0x20 || byte == 0x7f) ? "a control character"
                                                       : nullptr;
    if (what != nullptr)
      return "path " + quote_path(path) + ": " + what + " at byte " + std::to_string(index + 1);
  }
  if (path.front() == '/')
    return "path " + quote_path(path) + ": starts with '/' (paths are relative)";
  if (path.back() == '/') return "path " + quote_path(path) + ": ends with '/'";
  std::size_t components = 0;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = path.find('/', start);
    const std::string_view component =
        path.substr(start, slash == std::string_view::npos ? path.npos : slash - start);
    if (component.empty()) return "path " + quote_path(path) + ": an empty component (\"//\")";
    if (component == ".") return "path " + quote_path(path) + ": a \".\" component";
    if (component == "..") return "path " + quote_path(path) + ": a \"..\" component";
    ++components;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (components > max_bundle_path_depth) {
    return "path " + quote_path(path) + ": " + std::to_string(components) +
           " components, more than " + std::to_string(max_bundle_path_depth);
  }
  return {};
}

std::vector<std::uint8_t> encode_bundle(const Bundle& bundle) {
  std::vector<const BundleFile*> sorted;
  if (const std::string reason = sorted_valid_files(bundle, sorted); !reason.empty()) {
    throw std::invalid_argument("encode_bundle: " + reason);
  }
  std::uint64_t total = bundle_frame_bytes;
  for (const BundleFile* file : sorted)
    total += file_record_bytes(file->path.size(), file->data.size());
  Bytes out(bundle_magic.begin(), bundle_magic.end());
  out.reserve(static_cast<std::size_t>(total));
  put_big_endian(out, sorted.size(), file_count_bytes);
  for (const BundleFile* file : sorted) {
    put_big_endian(out, file->path.size(), path_length_bytes);
    out.insert(out.end(), file->path.begin(), file->path.end());
    out.push_back(file->executable ? mode_executable : mode_plain);
    put_big_endian(out, file->data.size(), size_bytes);
    out.insert(out.end(), file->data.begin(), file->data.end());
  }
  const Digest check = sha256(out);
  out.insert(out.end(), check.begin(), check.end());
  return out;
}

BundleError parse_bundle(std::span<const std::uint8_t> bytes, Bundle& bundle) {
  bundle.files.clear();
  const auto refuse = [&bundle](std::string message) {
    bundle.files.clear();
    return BundleError{std::move(message)};
  };
  if (bytes.size() < bundle_magic.size() ||
      as_text(bytes.first(bundle_magic.size())) != bundle_magic) {
    return refuse("bundle: does not start with \"SNB1\" (not a content bundle, or cut short)");
  }
  if (bytes.size() > max_bundle_bytes) {
    return refuse("bundle: " + std::to_string(bytes.size()) + " bytes, more than the " +
                  std::to_string(max_bundle_bytes) + " allowed");
  }
  Reader reader(bytes.subspan(bundle_magic.size()));
  std::uint64_t count = 0;
  if (!reader.take_integer(file_count_bytes, count))
    return refuse("bundle: cut short in the file count");
  if (count > max_bundle_files) {
    return refuse("bundle: " + std::to_string(count) + " files, more than the " +
                  std::to_string(max_bundle_files) + " allowed");
  }
  // Room for as many files as the bytes left could hold, never more: a count that claims more is
  // found out file by file below, with a message saying where the bytes ran out.
  const std::size_t room =
      std::min(static_cast<std::size_t>(count), reader.left() / min_file_record_bytes);
  bundle.files.reserve(room);
  // Views into `bytes`, which outlive this call, of the paths read so far.
  std::unordered_set<std::string_view> paths;
  paths.reserve(room);
  std::string_view previous;
  for (std::uint64_t index = 0; index < count; ++index) {
    const std::string file = "bundle: file " + std::to_string(index + 1);
    std::uint64_t path_length = 0;
    if (!reader.take_integer(path_length_bytes, path_length))
      return refuse(file + ": cut short in the path length");
    if (path_length == 0) return refuse(file + ": path length 0 (a path is at least 1 byte)");
    if (path_length > max_bundle_path_bytes) {
      return refuse(file + ": path length " + std::to_string(path_length) + " is more than " +
                    std::to_string(max_bundle_path_bytes));
    }
    std::span<const std::uint8_t> path_bytes;
    if (!reader.take_bytes(static_cast<std::size_t>(path_length), path_bytes)) {
      return refuse(file + ": path length " + std::to_string(path_length) + " is more than the " +
                    std::to_string(reader.left()) + " bytes left");
    }
    const std::string_view path = as_text(path_bytes);
    const std::string named = file + " (" + quote_path(path) + ")";
    if (const std::string reason = check_bundle_path(path); !reason.empty())
      return refuse("bundle: " + reason);
    if (index > 0 && path == previous) return refuse(named + ": appears twice");
    if (index > 0 && path < previous) {
      return refuse(named + ": comes after " + quote_path(previous) +
                    " (paths must be in increasing byte order)");
    }
    if (const std::string_view directory = directory_that_is_a_file(path, paths);
        !directory.empty()) {
      return refuse(named + ": " + quote_path(directory) +
                    " is a file, so it cannot be a directory");
    }
    paths.insert(path);
    previous = path;
    std::uint64_t mode = 0;
    if (!reader.take_integer(mode_bytes, mode)) return refuse(named + ": cut short in the mode");
    if (mode != mode_plain && mode != mode_executable) {
      return refuse(named + ": mode " + std::to_string(mode) +
                    " (only 0, plain, and 1, executable)");
    }
    std::uint64_t size = 0;
    if (!reader.take_integer(size_bytes, size)) return refuse(named + ": cut short in the size");
    std::span<const std::uint8_t> data;
    if (size > reader.left() || !reader.take_bytes(static_cast<std::size_t>(size), data)) {
      return refuse(named + ": size " + std::to_string(size) + " is more than the " +
                    std::to_string(reader.left()) + " bytes left");
    }
    bundle.files.push_back(
        BundleFile{std::string(path), mode == mode_executable, std::string(as_text(data))});
  }
  const std::size_t checked_bytes = bundle_magic.size() + reader.position();
  std::span<const std::uint8_t> check;
  if (!reader.take_bytes(bundle_check_bytes, check)) {
    return refuse("bundle: cut short: " + std::to_string(reader.left()) + " of the " +
                  std::to_string(bundle_check_bytes) + " check bytes");
  }
  const Digest expected = sha256(bytes.first(checked_bytes));
  if (!std::equal(expected.begin(), expected.end(), check.begin()))
    return refuse("bundle: check does not match (damaged)");
  if (reader.left() != 0)
    return refuse("bundle: " + std::to_string(reader.left()) + " bytes after the check");
  return {};
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) { return to_hex(sha256(bytes)); }

BundleError read_bundle_directory(const std::filesystem::path& directory, Bundle& bundle) {
  bundle.files.clear();
  DirectoryReader reader(directory);
  if (std::string fault = reader.read(); !fault.empty()) return {std::move(fault)};
  std::vector<BundleFile>& files = reader.files();
  std::sort(files.begin(), files.end(),
            [](const BundleFile& left, const BundleFile& right) { return left.path < right.path; });
  bundle.files = std::move(files);
  return {};
}

BundleError write_bundle_directory(const Bundle& bundle, const std::filesystem::path& directory,
                                   std::optional<std::int64_t> mtime_seconds) {
  std::vector<const BundleFile*> sorted;
  if (const std::string reason = sorted_valid_files(bundle, sorted); !reason.empty())
    return {"bundle: " + reason};
  DirectoryStack directories(directory, mtime_seconds);
  if (std::string fault = directories.open_target(); !fault.empty()) return {std::move(fault)};
  for (const BundleFile* file : sorted) {
    const std::string_view parent = parent_of(file->path);
    if (std::string fault = directories.enter(parent); !fault.empty()) return {std::move(fault)};
    const std::string name = file->path.substr(parent.empty() ? 0 : parent.size() + 1);
    if (std::string fault =
            write_file(directories.innermost_fd(), name, *file, directory / file->path, mtime_seconds);
        !fault.empty()) {
      return {std::move(fault)};
    }
  }
  if (std::string fault = directories.finish_all(); !fault.empty()) return {std::move(fault)};
  return {};
}

BundleError sync_directory(const std::filesystem::path& directory) {
  UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return {"cannot open " + quote_disk_path(directory) + ": " + errno_text(errno)};
  return {fsync_fault(fd.get(), directory)};
}

}  // namespace stacknode::node
