// Static content: the content root opened per request, confined file opening beneath it,
// validators, ranges, precompressed variants and the streaming file body. See static_files.hpp
// for the rules.
#include "static_files.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/optional.hpp>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "semantics.hpp"
#include "served_by.hpp"

namespace stacknode::web {
namespace {

namespace bhttp = boost::beast::http;
namespace asio = boost::asio;

// Files up to this size are read into the response in one pread: one copy of a small file costs
// less than streaming machinery. 64 KiB covers typical HTML, CSS, JS and icons.
constexpr std::uint64_t small_file_bytes = 64 * 1024;
// Larger files stream through a buffer of this size per response.
constexpr std::size_t stream_chunk_bytes = 64 * 1024;

class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  ~FileDescriptor() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// A Beast body that sends `length` bytes of an open file from `offset`, a chunk at a time.
struct FileSliceBody {
  struct value_type {
    FileDescriptor file;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };

  static std::uint64_t size(const value_type& body) { return body.length; }

  class writer {
   public:
    using const_buffers_type = asio::const_buffer;

    template <bool is_request, class Fields>
    writer(const bhttp::header<is_request, Fields>&, const value_type& body) : body_(body) {}

    void init(boost::system::error_code& error) {
      error = {};
      position_ = body_.offset;
      remaining_ = body_.length;
      buffer_ = std::make_unique<char[]>(stream_chunk_bytes);
    }

    boost::optional<std::pair<const_buffers_type, bool>> get(boost::system::error_code& error) {
      error = {};
      if (remaining_ == 0) return boost::none;
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, stream_chunk_bytes));
      const ssize_t got = ::pread(body_.file.get(), buffer_.get(), want, static_cast<off_t>(position_));
      if (got <= 0) {
        // The file shrank or failed under us: end the response short rather than invent bytes.
        error = got == 0 ? make_error_code(boost::system::errc::io_error)
                         : boost::system::error_code(errno, boost::system::system_category());
        return boost::none;
      }
      position_ += static_cast<std::uint64_t>(got);
      remaining_ -= static_cast<std::uint64_t>(got);
      return std::make_pair(const_buffers_type(buffer_.get(), static_cast<std::size_t>(got)),
                            remaining_ > 0);
    }

   private:
    const value_type& body_;
    std::unique_ptr<char[]> buffer_;
    std::uint64_t position_ = 0;
    std::uint64_t remaining_ = 0;
  };
};

// Opens the content root as it is now, following a symlink (the swapped "current" link) to the
// directory it names. O_PATH: the descriptor only anchors openat2/fstatat, nothing is read
// through it, so it needs no read permission on the directory itself. -1 on failure.
int open_root(const std::filesystem::path& root) {
  return ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
}

// Opens `relative` (no leading '/') beneath `root_fd`; -1 with errno set on failure.
int open_beneath(int root_fd, const std::string& relative) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const long fd = ::syscall(SYS_openat2, root_fd, relative.c_str(), &how, sizeof how);
  return static_cast<int>(fd);
}

std::int64_t mtime_ns(const struct stat& info) {
  return static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
}

template <class Response>
Response& common_headers(Response& response) {
  response.set(bhttp::field::accept_ranges, "bytes");
  return response;
}

// Every response of StaticFiles::serve leaves through here, so each one names the node.
template <class Response>
http::Reply reply(Response&& response, std::string_view served_by) {
  set_served_by(response, served_by);
  return http::Reply(std::forward<Response>(response));
}

http::Reply plain(bhttp::status status, const http::Request& request, std::string body,
                  std::string_view served_by) {
  auto response = http::text_response(status, request.version(), std::move(body));
  if (request.method() == bhttp::verb::head) {
    bhttp::response<bhttp::empty_body> head{status, request.version()};
    head.base() = response.base();
    return reply(std::move(head), served_by);
  }
  return reply(std::move(response), served_by);
}

std::string query_of(std::string_view target) {
  const auto question = target.find('?');
  return question == std::string_view::npos ? std::string() : std::string(target.substr(question));
}

}  // namespace

StaticFiles::StaticFiles(const std::filesystem::path& root, std::vector<std::string> index_files,
                         std::string served_by, bool must_exist)
    : root_(root), index_files_(std::move(index_files)), served_by_(std::move(served_by)) {
  // Only a check: a content directory set in node.cfg and missing at start-up is a configuration
  // mistake worth refusing; serve() opens the root again for every request.
  const FileDescriptor check(open_root(root_));
  if (!check && must_exist) {
    throw std::runtime_error("content directory " + root.string() + ": " + std::strerror(errno));
  }
}

http::Reply StaticFiles::serve(const http::Request& request, const std::string& path) const {
  const bool head = request.method() == bhttp::verb::head;
  if (request.method() != bhttp::verb::get && !head) {
    auto refusal = http::text_response(bhttp::status::method_not_allowed, request.version(),
                                       "method not allowed for static content\n");
    refusal.set(bhttp::field::allow, "GET, HEAD");
    return reply(std::move(refusal), served_by_);
  }

  // This request's root: every open and stat below is relative to it, so the whole answer comes
  // from one version of the content even if the root symlink is swapped meanwhile.
  const FileDescriptor root(open_root(root_));
  if (!root) {
    // Removed, or a dangling symlink mid-rollout: nothing to serve, and nothing to log per
    // request (the access log has the status).
    return plain(bhttp::status::service_unavailable, request, "content unavailable\n", served_by_);
  }

  std::string relative = path.size() > 1 ? path.substr(1) : std::string(".");
  FileDescriptor file(open_beneath(root.get(), relative));
  if (!file) {
    if (errno == EACCES || errno == EPERM) {
      return plain(bhttp::status::forbidden, request, "forbidden\n", served_by_);
    }
    // ENOENT, ENOTDIR, and EXDEV/ELOOP for a path or symlink leaving the root: all just "not
    // found", so that the answer tells nothing about what lies outside.
    return plain(bhttp::status::not_found, request, "not found\n", served_by_);
  }
  struct stat info {};
  if (::fstat(file.get(), &info) != 0) {
    return plain(bhttp::status::not_found, request, "not found\n", served_by_);
  }

  std::string served_path = path;  // the file whose type decides Content-Type
  if (S_ISDIR(info.st_mode)) {
    if (path.back() != '/') {
      auto redirect = http::text_response(bhttp::status::moved_permanently, request.version(),
                                          "moved to " + path + "/\n");
      redirect.set(bhttp::field::location, path + "/" + query_of(request.target()));
      return reply(std::move(redirect), served_by_);
    }
    bool found = false;
    for (const auto& index : index_files_) {
      const std::string candidate = relative == "." ? index : relative + "/" + index;
      FileDescriptor index_file(open_beneath(root.get(), candidate));
      struct stat index_info {};
      if (index_file && ::fstat(index_file.get(), &index_info) == 0 && S_ISREG(index_info.st_mode)) {
        file = std::move(index_file);
        info = index_info;
        relative = candidate;
        served_path = path + index;
        found = true;
        break;
      }
    }
    if (!found) return plain(bhttp::status::not_found, request, "not found\n", served_by_);
  }
  if (!S_ISREG(info.st_mode)) return plain(bhttp::status::not_found, request, "not found\n", served_by_);

  // A precompressed sibling "<file>.gz" is served to clients that accept gzip.
  const std::string gzip_relative = relative + ".gz";
  struct stat gzip_info {};
  const bool has_gzip = ::fstatat(root.get(), gzip_relative.c_str(), &gzip_info, 0) == 0 &&
                        S_ISREG(gzip_info.st_mode);
  bool gzip = false;
  if (has_gzip && accepts_gzip(request[bhttp::field::accept_encoding])) {
    FileDescriptor gzip_file(open_beneath(root.get(), gzip_relative));
    struct stat opened {};
    if (gzip_file && ::fstat(gzip_file.get(), &opened) == 0 && S_ISREG(opened.st_mode)) {
      file = std::move(gzip_file);
      info = opened;
      gzip = true;
    }
  }

  const std::uint64_t size = static_cast<std::uint64_t>(info.st_size);
  const std::string etag = make_etag(size, mtime_ns(info), gzip);
  const std::time_t last_modified = info.st_mtim.tv_sec;
  const std::string last_modified_text = format_http_date(last_modified);

  auto set_validators = [&](auto& response) {
    response.set(bhttp::field::etag, etag);
    response.set(bhttp::field::last_modified, last_modified_text);
    if (has_gzip) response.set(bhttp::field::vary, "Accept-Encoding");
  };

  const ConditionalHeaders conditions{request[bhttp::field::if_match],
                                      request[bhttp::field::if_none_match],
                                      request[bhttp::field::if_modified_since],
                                      request[bhttp::field::if_unmodified_since]};
  switch (evaluate_preconditions(conditions, etag, last_modified, true)) {
    case Precondition::not_modified: {
      bhttp::response<bhttp::empty_body> response{bhttp::status::not_modified, request.version()};
      set_validators(response);
      return reply(std::move(response), served_by_);
    }
    case Precondition::failed:
      return plain(bhttp::status::precondition_failed, request, "precondition failed\n", served_by_);
    case Precondition::proceed:
      break;
  }

  ByteRange range{0, size};
  bhttp::status status = bhttp::status::ok;
  const auto range_header = request[bhttp::field::range];
  if (!range_header.empty() && if_range_allows(request[bhttp::field::if_range], etag, last_modified)) {
    const RangeResult parsed = parse_range(range_header, size);
    if (parsed.outcome == RangeOutcome::unsatisfiable) {
      auto response = http::text_response(bhttp::status::range_not_satisfiable, request.version(),
                                          "range not satisfiable\n");
      response.set(bhttp::field::content_range, unsatisfied_content_range(size));
      set_validators(response);
      return reply(std::move(response), served_by_);
    }
    if (parsed.outcome == RangeOutcome::partial) {
      range = parsed.range;
      status = bhttp::status::partial_content;
    }
  }

  auto finish = [&](auto& response) {
    common_headers(response);
    set_validators(response);
    response.set(bhttp::field::content_type, mime_type_for(served_path));
    if (gzip) response.set(bhttp::field::content_encoding, "gzip");
    if (status == bhttp::status::partial_content) {
      response.set(bhttp::field::content_range, content_range(range, size));
    }
  };

  if (head) {
    bhttp::response<bhttp::empty_body> response{status, request.version()};
    finish(response);
    response.content_length(range.length);
    return reply(std::move(response), served_by_);
  }
  if (range.length <= small_file_bytes) {
    bhttp::response<bhttp::string_body> response{status, request.version()};
    finish(response);
    std::string& body = response.body();
    body.resize(static_cast<std::size_t>(range.length));
    std::size_t done = 0;
    while (done < body.size()) {
      const ssize_t got = ::pread(file.get(), body.data() + done, body.size() - done,
                                  static_cast<off_t>(range.first + done));
      if (got <= 0) break;
      done += static_cast<std::size_t>(got);
    }
    if (done != body.size()) {
      // The file changed size between fstat and read: answer with what the file is now.
      return plain(bhttp::status::service_unavailable, request, "file changed while reading\n", served_by_);
    }
    response.content_length(range.length);
    return reply(std::move(response), served_by_);
  }
  bhttp::response<FileSliceBody> response{status, request.version()};
  finish(response);
  response.body().file = std::move(file);
  response.body().offset = range.first;
  response.body().length = range.length;
  response.content_length(range.length);
  return reply(std::move(response), served_by_);
}

}  // namespace stacknode::web
