// Static content for stacknode-web: maps a normalised request path to a file under the content
// directory and builds the response (MIME type, ETag/Last-Modified and 304/412, Range with
// 206/416 and If-Range, precompressed .gz variants, index files, directory redirects).
//
// Confinement: files are opened with openat2(RESOLVE_BENEATH) relative to the content
// directory's descriptor, so no path, ".." or symlink can reach outside it, atomically (no check
// then open race). Symlinks that stay inside the content directory are followed.
// Transmission: files up to small_file_bytes are read into the response in one pread; larger
// ones stream through a fixed buffer (FileSliceBody), never copied whole into memory.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "stacknode/common/http_server.hpp"

namespace stacknode::web {

class StaticFiles {
 public:
  // Throws std::runtime_error if `root` cannot be opened as a directory.
  StaticFiles(const std::filesystem::path& root, std::vector<std::string> index_files);
  ~StaticFiles();
  StaticFiles(const StaticFiles&) = delete;
  StaticFiles& operator=(const StaticFiles&) = delete;

  // `path` is the request's normalised path (semantics.hpp normalize_request_path).
  http::Reply serve(const http::Request& request, const std::string& path) const;

  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
  std::vector<std::string> index_files_;
  int root_fd_ = -1;
};

}  // namespace stacknode::web
