// Raw TCP for component tests: send exact bytes (malformed requests, slow clients) and read what
// the server answers, without any HTTP library smoothing things over.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace stacknode::test {

class RawConnection {
 public:
  RawConnection(std::string_view host, std::uint16_t port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool send(std::string_view bytes);  // false if the peer is gone
  // Reads until the peer closes or `timeout` passes; returns what arrived.
  std::string read_until_close(std::chrono::milliseconds timeout);
  // Reads until `marker` has arrived (or close/timeout); returns everything read.
  std::string read_until(std::string_view marker, std::chrono::milliseconds timeout);
  // True if the peer closed (read returned 0 or reset) within `timeout`.
  bool closed_within(std::chrono::milliseconds timeout);
  bool connected() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  std::string pending_;
};

// Status code of the first response in `raw` ("HTTP/1.1 404 ..." gives 404), 0 if none.
int status_of(std::string_view raw);

}  // namespace stacknode::test
