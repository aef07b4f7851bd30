// Content bundles: a site's static files as one byte string, the unit `stackctl content push`
// uploads, the control database stores once, and every node unpacks into a version directory
// that stacknode-web then serves (issue 6, "Content").
//
// Byte form ("SNB1"; all integers big-endian):
//   magic        4 bytes   "SNB1"
//   file count   u32       0..max_bundle_files
//   per file, in strictly increasing byte order of path (so a set of files has one spelling):
//     path length  u16     1..max_bundle_path_bytes
//     path         bytes   relative, '/'-separated (rules below)
//     mode         u8      0 = plain file (0644), 1 = executable (0755); nothing else
//     size         u64     bytes of data that follow
//     data         bytes
//   check        32 bytes  SHA-256 of everything before it
// The whole bundle is at most max_bundle_bytes. A path is refused when it is empty, starts or
// ends with '/', has an empty, "." or ".." component, holds a NUL, a backslash or a control
// character, or is a directory of another file in the bundle ("a" and "a/b"). The check is an
// integrity check against damage in transit and storage, not a signature: who may push is the
// API's business.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace stacknode::node {

inline constexpr std::string_view bundle_magic = "SNB1";
inline constexpr std::size_t bundle_check_bytes = 32;  // SHA-256
// Bundles live in the control database, which dqlite keeps in memory on every node: a cap that
// keeps a site well within that, and well under the wire protocol's 256 MiB message limit.
inline constexpr std::uint64_t max_bundle_bytes = 64ull << 20;
inline constexpr std::uint32_t max_bundle_files = 20000;
inline constexpr std::size_t max_bundle_path_bytes = 1024;
inline constexpr std::size_t max_bundle_path_depth = 32;  // components of one path

struct BundleFile {
  std::string path;  // relative, '/'-separated, valid by the rules above
  bool executable = false;
  std::string data;  // the file's bytes
};

struct Bundle {
  std::vector<BundleFile> files;  // sorted by path (byte order), no duplicates
};

// Why a bundle, a path or a directory was refused; empty message means accepted.
struct BundleError {
  std::string message;  // one line naming what is wrong (and the path, where there is one)
  bool ok() const { return message.empty(); }
};

// The empty string when `path` is acceptable as a bundle path (rules above), else the reason.
std::string check_bundle_path(std::string_view path);

// The byte form of `bundle`. Sorts the files by path; the files must have valid, distinct paths
// and fit the limits (a caller's bug otherwise: std::invalid_argument naming the path).
std::vector<std::uint8_t> encode_bundle(const Bundle& bundle);

// Parses and checks a whole bundle: magic, every length against the bytes left and the limits,
// every path, the order, the modes, the check, nothing after the check. On refusal `bundle` is
// left empty and the error names the first fault (and the file's path when it has been read).
BundleError parse_bundle(std::span<const std::uint8_t> bytes, Bundle& bundle);

// SHA-256 of `bytes` as 64 lowercase hex digits (a bundle's identity in the API and the store).
std::string sha256_hex(std::span<const std::uint8_t> bytes);

// Reads the regular files under `directory` (recursively) into `bundle`, with paths relative to
// it and the owner-execute bit as `executable`. Refuses, naming the path: symlinks, devices,
// sockets and FIFOs; paths the rules refuse; more than the limits (files, bytes); an unreadable
// file. Empty directories are not kept (a bundle holds files).
BundleError read_bundle_directory(const std::filesystem::path& directory, Bundle& bundle);

// Writes `bundle` into `directory`, which must not exist yet (its parent must): creates it with
// mode 0755, every file with O_EXCL and O_NOFOLLOW (0644 or 0755) and the directories between,
// gives every file and directory the modification time `mtime_seconds` (Unix seconds; nullopt:
// the time of writing), and fsyncs every file and directory before it returns, so that after a
// crash the directory is either complete or is found incomplete by the caller (who writes into a
// temporary name and renames). On failure what was written is left for the caller to remove.
BundleError write_bundle_directory(const Bundle& bundle, const std::filesystem::path& directory,
                                   std::optional<std::int64_t> mtime_seconds = std::nullopt);

// fsyncs `directory`, so that a rename or a new entry in it is durable; the error names it.
BundleError sync_directory(const std::filesystem::path& directory);

}  // namespace stacknode::node
