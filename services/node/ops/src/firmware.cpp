// A/B firmware slots (firmware.hpp): reading the state, the bundle (a tar of manifest.json and
// rootfs.squashfs, read here without extracting), writing and verifying a slot, and the grubenv
// updates of each transition.
#include "stacknode/node/firmware.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "stacknode/node/grub_env.hpp"
#include "stacknode/node/hex.hpp"

namespace stacknode::node {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t tar_block_bytes = 512;
constexpr std::size_t io_chunk_bytes = std::size_t{4} << 20;
constexpr std::size_t sha256_hex_digits = 64;

std::string errno_text() { return std::strerror(errno); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(context_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(context_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* bytes, std::size_t size) { EVP_DigestUpdate(context_, bytes, size); }
  std::string hex() {
    std::array<std::uint8_t, 32> digest{};
    unsigned int length = 0;
    EVP_DigestFinal_ex(context_, digest.data(), &length);
    return to_hex(digest);
  }

 private:
  EVP_MD_CTX* context_;
};

bool read_at(int fd, void* into, std::size_t size, std::uint64_t offset) {
  auto* bytes = static_cast<std::uint8_t*>(into);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t got = ::pread(fd, bytes + done, size - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    done += static_cast<std::size_t>(got);
  }
  return true;
}

// ---- grubenv --------------------------------------------------------------------------------

std::optional<GrubEnv> load_env(const FirmwareLayout& layout, std::string& error) {
  std::ifstream in(layout.grubenv, std::ios::binary);
  if (!in) {
    error = "cannot read " + layout.grubenv.string() + " (is the EFI system partition mounted at /boot/efi?)";
    return std::nullopt;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::optional<GrubEnv> env = GrubEnv::parse(bytes, error);
  if (!env) error = layout.grubenv.string() + ": " + error;
  return env;
}

// Written beside the old one, synced, renamed over it, and the directory synced: GRUB finds
// either the old block or the new one, never half of each.
bool store_env(const FirmwareLayout& layout, const GrubEnv& env, std::string& error) {
  const std::optional<std::string> bytes = env.render();
  if (!bytes) {
    error = "the slot state does not fit GRUB's 1024-byte environment block";
    return false;
  }
  const fs::path temporary = layout.grubenv.string() + ".new";
  {
    Fd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0 || ::write(fd.get(), bytes->data(), bytes->size()) != static_cast<ssize_t>(bytes->size()) ||
        ::fsync(fd.get()) != 0) {
      error = "cannot write " + temporary.string() + ": " + errno_text();
      return false;
    }
  }
  if (::rename(temporary.c_str(), layout.grubenv.c_str()) != 0) {
    error = "cannot replace " + layout.grubenv.string() + ": " + errno_text();
    return false;
  }
  // On FAT an fsync of the directory does not make the rename durable (the image tier's power
  // cut after mark-good found the old block back): the whole file system is synced.
  Fd directory(::open(layout.grubenv.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (directory.get() >= 0 && (::fsync(directory.get()) != 0 || ::syncfs(directory.get()) != 0)) {
    error = "cannot sync " + layout.grubenv.parent_path().string() + ": " + errno_text();
    return false;
  }
  return true;
}

char other(char slot) { return slot == 'b' ? 'a' : 'b'; }

std::string slot_key(char slot, std::string_view field) {
  return "slot_" + std::string(1, slot) + "_" + std::string(field);
}

// ---- The running firmware -------------------------------------------------------------------

std::string release_value(const FirmwareLayout& layout, std::string_view key) {
  std::ifstream in(layout.release);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(std::string(key) + "=")) return line.substr(key.size() + 1);
  }
  return {};
}

char booted_slot(const FirmwareLayout& layout) {
  std::ifstream in(layout.cmdline);
  std::string word;
  while (in >> word) {
    if (word == "stacknode.slot=a") return 'a';
    if (word == "stacknode.slot=b") return 'b';
  }
  return '?';
}

// ---- The bundle -----------------------------------------------------------------------------

struct TarEntry {
  std::uint64_t offset = 0;  // of the data in the file
  std::uint64_t size = 0;
};

std::optional<std::uint64_t> octal(const char* field, std::size_t width) {
  std::uint64_t value = 0;
  std::size_t index = 0;
  while (index < width && field[index] == ' ') ++index;
  bool digits = false;
  for (; index < width && field[index] >= '0' && field[index] <= '7'; ++index) {
    if (value >> 60) return std::nullopt;
    value = value * 8 + static_cast<std::uint64_t>(field[index] - '0');
    digits = true;
  }
  if (!digits || (index < width && field[index] != ' ' && field[index] != '\0')) return std::nullopt;
  return value;
}

// The bundle's manifest.json and rootfs.squashfs, found by walking the tar headers (checksums
// checked); anything else in it, or a missing part, is refused.
bool read_bundle_entries(int fd, std::uint64_t file_size, TarEntry& manifest, TarEntry& rootfs,
                         std::string& error) {
  bool have_manifest = false, have_rootfs = false;
  std::uint64_t position = 0;
  for (std::size_t entries = 0;; ++entries) {
    std::array<char, tar_block_bytes> header{};
    if (position + tar_block_bytes > file_size || !read_at(fd, header.data(), header.size(), position)) {
      error = "the bundle ends inside its tar headers (cut short?)";
      return false;
    }
    if (std::all_of(header.begin(), header.end(), [](char c) { return c == 0; })) break;  // the end
    if (entries == max_bundle_entries) {
      error = "the bundle holds more than " + std::to_string(max_bundle_entries) + " files";
      return false;
    }
    std::uint64_t sum = 0;
    for (std::size_t index = 0; index < header.size(); ++index) {
      sum += (index >= 148 && index < 156) ? ' ' : static_cast<unsigned char>(header[index]);
    }
    const std::optional<std::uint64_t> recorded = octal(header.data() + 148, 8);
    const std::optional<std::uint64_t> size = octal(header.data() + 124, 12);
    if (!recorded || *recorded != sum || !size || std::memcmp(header.data() + 257, "ustar", 5) != 0) {
      error = "the bundle is not a tar file stacknode wrote (a header's checksum or magic is wrong)";
      return false;
    }
    const std::string name(header.data(), strnlen(header.data(), 100));
    const char type = header[156];
    const std::uint64_t data = position + tar_block_bytes;
    if (*size > file_size || data + *size > file_size) {
      error = "the bundle is cut short inside " + name;
      return false;
    }
    if (type != '0' && type != '\0') {
      error = "the bundle holds " + name + ", which is not a plain file";
      return false;
    }
    if (name == "manifest.json" && !have_manifest) {
      manifest = {data, *size};
      have_manifest = true;
    } else if (name == "rootfs.squashfs" && !have_rootfs) {
      rootfs = {data, *size};
      have_rootfs = true;
    } else {
      error = "the bundle holds " + name + " (only one manifest.json and one rootfs.squashfs belong in it)";
      return false;
    }
    position = data + (*size + tar_block_bytes - 1) / tar_block_bytes * tar_block_bytes;
  }
  if (!have_manifest || !have_rootfs) {
    error = "the bundle lacks " + std::string(have_manifest ? "rootfs.squashfs" : "manifest.json");
    return false;
  }
  return true;
}

struct Manifest {
  std::string board, version, sha256;
  std::uint64_t bytes = 0;
};

std::optional<Manifest> parse_manifest(std::string_view text, std::string& error) {
  boost::system::error_code parse_error;
  const boost::json::value value = boost::json::parse(text, parse_error);
  const boost::json::object* object = value.if_object();
  const auto string_at = [&](const boost::json::object* in, std::string_view key) -> std::string {
    const boost::json::value* field = in == nullptr ? nullptr : in->if_contains(key);
    return field != nullptr && field->is_string() ? std::string(field->as_string()) : std::string();
  };
  if (parse_error || object == nullptr) {
    error = "the bundle's manifest.json is not a JSON object";
    return std::nullopt;
  }
  if (string_at(object, "format") != bundle_format) {
    error = "the bundle's format is '" + string_at(object, "format") + "', not " + std::string(bundle_format);
    return std::nullopt;
  }
  const boost::json::value* rootfs_value = object->if_contains("rootfs");
  const boost::json::object* rootfs = rootfs_value == nullptr ? nullptr : rootfs_value->if_object();
  const boost::json::value* bytes = rootfs == nullptr ? nullptr : rootfs->if_contains("bytes");
  Manifest manifest{string_at(object, "board"), string_at(object, "version"), string_at(rootfs, "sha256"), 0};
  if (bytes == nullptr || !bytes->is_int64() || bytes->as_int64() <= 0 || manifest.sha256.size() != sha256_hex_digits ||
      manifest.board.empty() || manifest.version.empty() || !GrubEnv::valid_value(manifest.version) ||
      manifest.version.size() > 64) {
    error = "the bundle's manifest lacks board, version (printable, at most 64), rootfs.bytes or rootfs.sha256";
    return std::nullopt;
  }
  manifest.bytes = static_cast<std::uint64_t>(bytes->as_int64());
  return manifest;
}

// SHA-256 of the first `bytes` of `fd` from `offset`, reading in chunks.
std::optional<std::string> hash_range(int fd, std::uint64_t offset, std::uint64_t bytes, std::vector<char>& buffer,
                                      const std::function<void(std::uint64_t)>& advanced = {}) {
  Sha256 digest;
  for (std::uint64_t done = 0; done < bytes;) {
    const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), bytes - done));
    if (!read_at(fd, buffer.data(), size, offset + done)) return std::nullopt;
    digest.update(buffer.data(), size);
    done += size;
    if (advanced) advanced(size);
  }
  return digest.hex();
}

}  // namespace

std::optional<FirmwareStatus> read_firmware_status(const FirmwareLayout& layout, std::string& error) {
  const std::optional<GrubEnv> env = load_env(layout, error);
  if (!env) return std::nullopt;
  FirmwareStatus status;
  status.booted = booted_slot(layout);
  status.active = env->get_or("active_slot", "a") == "b" ? 'b' : 'a';
  const std::string trial = env->get_or("trial_slot", "");
  status.trial = trial == "a" || trial == "b" ? trial[0] : 0;
  status.trial_left = env->get_or("trial_left", "0") == "1";
  status.rolled_back = env->get_or("rolled_back", "0") == "1";
  status.board = release_value(layout, "BOARD");
  status.running_version = release_value(layout, "VERSION");
  for (const char slot : {'a', 'b'}) {
    SlotInfo& info = slot == 'a' ? status.a : status.b;
    info.version = env->get_or(slot_key(slot, "version"), "");
    info.sha256 = env->get_or(slot_key(slot, "sha256"), "");
    const std::string bytes = env->get_or(slot_key(slot, "bytes"), "0");
    info.bytes = std::strtoull(bytes.c_str(), nullptr, 10);
  }
  return status;
}

std::optional<UpdateOutcome> apply_firmware_update(const FirmwareLayout& layout, const fs::path& bundle,
                                                   std::string& error,
                                                   const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  std::optional<FirmwareStatus> status = read_firmware_status(layout, error);
  if (!status) return std::nullopt;
  if (status->trial != 0) {
    error = "a trial boot of slot " + std::string(1, status->trial) +
            " is pending: reboot into it (or roll back) before another update";
    return std::nullopt;
  }
  if (status->booted != status->active) {
    error = std::string("this boot runs slot ") + status->booted + ", not the active slot " + status->active +
            ": writing the other slot would overwrite the only good one";
    return std::nullopt;
  }
  const char target = other(status->active);

  Fd input(::open(bundle.c_str(), O_RDONLY | O_CLOEXEC));
  if (input.get() < 0) {
    error = "cannot open the bundle " + bundle.string() + ": " + errno_text();
    return std::nullopt;
  }
  const off_t file_size = ::lseek(input.get(), 0, SEEK_END);
  TarEntry manifest_entry, rootfs_entry;
  if (file_size < 0 || !read_bundle_entries(input.get(), static_cast<std::uint64_t>(file_size), manifest_entry,
                                            rootfs_entry, error)) {
    if (error.empty()) error = "cannot read the bundle: " + errno_text();
    return std::nullopt;
  }
  if (manifest_entry.size > max_manifest_bytes) {
    error = "the bundle's manifest is " + std::to_string(manifest_entry.size) + " bytes, more than " +
            std::to_string(max_manifest_bytes);
    return std::nullopt;
  }
  std::string manifest_text(manifest_entry.size, '\0');
  if (!read_at(input.get(), manifest_text.data(), manifest_text.size(), manifest_entry.offset)) {
    error = "cannot read the bundle's manifest";
    return std::nullopt;
  }
  const std::optional<Manifest> manifest = parse_manifest(manifest_text, error);
  if (!manifest) return std::nullopt;
  if (!status->board.empty() && manifest->board != status->board) {
    error = "the bundle is for board " + manifest->board + "; this box is " + status->board;
    return std::nullopt;
  }
  if (manifest->bytes != rootfs_entry.size) {
    error = "the manifest says the root file system is " + std::to_string(manifest->bytes) + " bytes; the bundle holds " +
            std::to_string(rootfs_entry.size);
    return std::nullopt;
  }

  // The bundle is checked whole before the slot is touched: a corrupt bundle changes nothing.
  std::vector<char> buffer(io_chunk_bytes);
  const std::uint64_t total = 3 * rootfs_entry.size;  // checked, written, read back
  std::uint64_t done = 0;
  const auto advanced = [&](std::uint64_t bytes) {
    done += bytes;
    if (progress) progress(done, total);
  };
  const std::optional<std::string> bundle_sha256 =
      hash_range(input.get(), rootfs_entry.offset, rootfs_entry.size, buffer, advanced);
  if (!bundle_sha256) {
    error = "cannot read the bundle's root file system";
    return std::nullopt;
  }
  if (*bundle_sha256 != manifest->sha256) {
    error = "the bundle's root file system does not match its SHA-256 (corrupt or altered): nothing was written";
    return std::nullopt;
  }

  const fs::path& slot_path = layout.slot_path(target);
  Fd slot(::open(slot_path.c_str(), O_RDWR | O_CLOEXEC));
  if (slot.get() < 0) {
    error = "cannot open slot " + std::string(1, target) + " (" + slot_path.string() + "): " + errno_text();
    return std::nullopt;
  }
  const off_t slot_size = ::lseek(slot.get(), 0, SEEK_END);
  if (slot_size < 0 || static_cast<std::uint64_t>(slot_size) < rootfs_entry.size) {
    error = "slot " + std::string(1, target) + " holds " + std::to_string(slot_size) + " bytes, less than the " +
            std::to_string(rootfs_entry.size) + " of the bundle's root file system";
    return std::nullopt;
  }
  // From here slot `target` is being changed: mark it unusable first, so that a power cut mid-way
  // leaves no record claiming a version it does not hold.
  std::optional<GrubEnv> env = load_env(layout, error);
  if (!env) return std::nullopt;
  env->set(slot_key(target, "version"), "");
  env->set(slot_key(target, "bytes"), "0");
  env->set(slot_key(target, "sha256"), "");
  if (!store_env(layout, *env, error)) return std::nullopt;

  for (std::uint64_t written = 0; written < rootfs_entry.size;) {
    const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), rootfs_entry.size - written));
    if (!read_at(input.get(), buffer.data(), size, rootfs_entry.offset + written)) {
      error = "cannot read the bundle while writing slot " + std::string(1, target);
      return std::nullopt;
    }
    for (std::size_t put = 0; put < size;) {
      const ssize_t count = ::pwrite(slot.get(), buffer.data() + put, size - put, static_cast<off_t>(written + put));
      if (count < 0 && errno == EINTR) continue;
      if (count <= 0) {
        error = "writing slot " + std::string(1, target) + ": " + errno_text();
        return std::nullopt;
      }
      put += static_cast<std::size_t>(count);
    }
    written += size;
    advanced(size);
  }
  if (::fdatasync(slot.get()) != 0) {
    error = "syncing slot " + std::string(1, target) + ": " + errno_text();
    return std::nullopt;
  }
  ::ioctl(slot.get(), BLKFLSBUF, 0);                        // a device's buffer cache (not a file's)
  ::posix_fadvise(slot.get(), 0, 0, POSIX_FADV_DONTNEED);  // so the read-back comes from the medium
  const std::optional<std::string> written_sha256 = hash_range(slot.get(), 0, rootfs_entry.size, buffer, advanced);
  if (!written_sha256 || *written_sha256 != manifest->sha256) {
    error = "slot " + std::string(1, target) + " read back differs from the bundle: the disk is failing; the slot is "
            "left marked empty";
    return std::nullopt;
  }

  env = load_env(layout, error);
  if (!env) return std::nullopt;
  env->set(slot_key(target, "version"), manifest->version);
  env->set(slot_key(target, "bytes"), std::to_string(rootfs_entry.size));
  env->set(slot_key(target, "sha256"), manifest->sha256);
  env->set("trial_slot", std::string(1, target));
  env->set("trial_left", "1");
  env->set("rolled_back", "0");
  if (!store_env(layout, *env, error)) return std::nullopt;
  return UpdateOutcome{target, manifest->version, rootfs_entry.size, manifest->sha256};
}

bool mark_firmware_good(const FirmwareLayout& layout, std::string& error, bool& changed) {
  changed = false;
  std::optional<FirmwareStatus> status = read_firmware_status(layout, error);
  if (!status) return false;
  if (status->trial != 0 && status->booted == status->trial) {
    std::optional<GrubEnv> env = load_env(layout, error);
    if (!env) return false;
    env->set("active_slot", std::string(1, status->trial));
    env->set("trial_slot", "");
    env->set("trial_left", "0");
    env->set("rolled_back", "0");
    if (!store_env(layout, *env, error)) return false;
    changed = true;
    return true;
  }
  if (status->booted == status->active) return true;  // nothing to do: the good slot runs
  error = std::string("this boot runs slot ") + status->booted + ", which is neither the active slot (" +
          status->active + ") nor a pending trial";
  return false;
}

std::optional<char> roll_back_firmware(const FirmwareLayout& layout, std::string& error) {
  std::optional<FirmwareStatus> status = read_firmware_status(layout, error);
  if (!status) return std::nullopt;
  if (status->trial != 0) {  // an update not booted yet: cancelling it is the rollback
    std::optional<GrubEnv> env = load_env(layout, error);
    if (!env) return std::nullopt;
    env->set("trial_slot", "");
    env->set("trial_left", "0");
    if (!store_env(layout, *env, error)) return std::nullopt;
    return status->active;
  }
  const char target = other(status->active);
  const SlotInfo& info = status->slot(target);
  if (info.version.empty() || info.bytes == 0 || info.sha256.size() != sha256_hex_digits) {
    error = "slot " + std::string(1, target) + " holds no firmware that was recorded: nothing to roll back to";
    return std::nullopt;
  }
  Fd slot(::open(layout.slot_path(target).c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<char> buffer(io_chunk_bytes);
  const std::optional<std::string> actual =
      slot.get() < 0 ? std::nullopt : hash_range(slot.get(), 0, info.bytes, buffer);
  if (!actual || *actual != info.sha256) {
    error = "slot " + std::string(1, target) + " does not match its recorded SHA-256 (version " + info.version +
            "): refusing to make it active";
    return std::nullopt;
  }
  std::optional<GrubEnv> env = load_env(layout, error);
  if (!env) return std::nullopt;
  env->set("active_slot", std::string(1, target));
  env->set("trial_slot", "");
  env->set("trial_left", "0");
  // A rollback GRUB made is superseded by this choice: its notice ("GRUB went back to slot
  // <active>", in status and at boot) would now name the wrong slot.
  env->set("rolled_back", "0");
  if (!store_env(layout, *env, error)) return std::nullopt;
  return target;
}

}  // namespace stacknode::node
