// Test helpers: a raw TCP client on loopback, for what curl will not send (malformed HTTP,
// half-closes, clients that stop reading, fire-and-forget requests).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <utility>

namespace infergrid::testing {

class RawConnection {
 public:
  // `receive_buffer_bytes` > 0 shrinks SO_RCVBUF before connecting (a slow reader).
  explicit RawConnection(int port, int receive_buffer_bytes = 0) {
    // CLOEXEC: curl children of the test must not keep a copy open past close().
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer_bytes > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof(int));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() { close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  RawConnection(RawConnection&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), connected_(other.connected_) {}

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  bool send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads until `needle` has arrived, the peer closes, or the timeout passes.
  std::string read_until(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (received_.find(needle) == std::string::npos) {
      if (!read_some(deadline)) break;
    }
    return received_;
  }
  // Reads until the peer closes (true) or the timeout passes (false).
  bool read_to_close(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const int r = read_once(deadline);
      if (r == 0) return true;
      if (r < 0) return false;
    }
  }
  const std::string& received() const { return received_; }
  // The status code of the first non-1xx response received so far, or 0.
  int final_status() const {
    size_t at = 0;
    while ((at = received_.find("HTTP/1.", at)) != std::string::npos) {
      const int status = std::atoi(received_.c_str() + at + 9);
      if (status >= 200) return status;
      at += 9;
    }
    return 0;
  }

 private:
  bool read_some(std::chrono::steady_clock::time_point deadline) { return read_once(deadline) > 0; }
  // 1: bytes arrived; 0: the peer closed (or reset); -1: timeout.
  int read_once(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return -1;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return -1;
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return 0;
    received_.append(buf, static_cast<size_t>(n));
    return 1;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

// A POST of a JSON body as one HTTP/1.1 request.
inline std::string http_post(const std::string& path, const std::string& body,
                             const std::string& extra_headers = "",
                             const std::string& version = "HTTP/1.1") {
  return "POST " + path + " " + version + "\r\nHost: 127.0.0.1\r\nContent-Type: " +
         "application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         extra_headers + "\r\n" + body;
}

}  // namespace infergrid::testing
