// A TCP proxy for tests of damaged streams: it accepts one connection on listen_fd, connects
// to 127.0.0.1:back_port and relays both ways, flipping one bit of the byte at offset flip_at
// of what the accepted side sends. Returns when either side closes or is silent for 30 s.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace infergrid::testing {

inline void byte_flipping_proxy(int listen_fd, int back_port, size_t flip_at) {
  pollfd l{listen_fd, POLLIN, 0};
  if (::poll(&l, 1, 30000) != 1) return;
  const int in = ::accept(listen_fd, nullptr, nullptr);
  const int out = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(back_port));
  const auto forward = [](int fd, const uint8_t* data, size_t n) {
    for (size_t at = 0; at < n;) {
      const ssize_t w = ::send(fd, data + at, n - at, MSG_NOSIGNAL);
      if (w <= 0) return;
      at += static_cast<size_t>(w);
    }
  };
  if (in >= 0 && ::connect(out, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    size_t offset = 0;
    std::vector<uint8_t> buf(65536);
    for (;;) {
      pollfd p[2] = {{in, POLLIN, 0}, {out, POLLIN, 0}};
      if (::poll(p, 2, 30000) <= 0) break;
      if (p[0].revents) {
        const ssize_t n = ::recv(in, buf.data(), buf.size(), 0);
        if (n <= 0) break;
        if (flip_at >= offset && flip_at < offset + static_cast<size_t>(n)) {
          buf[flip_at - offset] ^= 0x01;
        }
        offset += static_cast<size_t>(n);
        forward(out, buf.data(), static_cast<size_t>(n));
      }
      if (p[1].revents) {
        const ssize_t n = ::recv(out, buf.data(), buf.size(), 0);
        if (n <= 0) break;
        forward(in, buf.data(), static_cast<size_t>(n));
      }
    }
  }
  if (in >= 0) ::close(in);
  ::close(out);
}

}  // namespace infergrid::testing
