// Static content for stacknode-web: maps a normalised request path to a file under the content
// directory and builds the response (MIME type, ETag/Last-Modified and 304/412, Range with
// 206/416 and If-Range, precompressed .gz variants, index files, directory redirects).
//
// The content root is resolved once per request, not once at start-up: each serve() opens the
// configured path (following symlinks: it may be a symlink such as
// `<state>/content/default/current -> versions/7` that stacknoded swaps with rename(2)) and uses
// that one descriptor for every open and stat of the request (the file, index files, the .gz
// sibling). So a request never mixes two versions of a site, and the first request that starts
// after a swap sees the new version, without a reload. A root that cannot be opened at request
// time (removed, dangling symlink) is answered 503 "content unavailable"; at start-up (the
// constructor) it is an error.
// Confinement: files are opened with openat2(RESOLVE_BENEATH) relative to that request's root
// descriptor, so no path, ".." or symlink can reach outside the directory the root resolved to,
// atomically (no check then open race). Symlinks that stay inside it are followed.
// Transmission: files up to small_file_bytes are read into the response in one pread; larger
// ones stream through a fixed buffer (FileSliceBody), never copied whole into memory.
// Every response carries X-Served-By when configured (served_by.hpp).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "stacknode/common/http_server.hpp"

namespace stacknode::web {

class StaticFiles {
 public:
  // With `must_exist`, throws std::runtime_error if `root` cannot be opened as a directory now;
  // without, a missing root is answered 503 until it appears. Holds no descriptor of it: serve()
  // opens it afresh. `served_by` is X-Served-By ("" for none).
  StaticFiles(const std::filesystem::path& root, std::vector<std::string> index_files,
              std::string served_by, bool must_exist = true);

  // `path` is the request's normalised path (semantics.hpp normalize_request_path). Thread-safe.
  http::Reply serve(const http::Request& request, const std::string& path) const;

  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
  std::vector<std::string> index_files_;
  std::string served_by_;
};

}  // namespace stacknode::web
