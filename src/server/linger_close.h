// Lingering close: after the last response on a connection, read and discard what the client
// still sends for a while before closing, because closing a socket with unread bytes resets the
// connection, and the reset can destroy the response before the client has read it. Shared by
// every connection kind of the server (sessions, rejected connections).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>

#include <boost/beast/core/tcp_stream.hpp>

namespace infergrid {

// After the last response on a connection: how long and how much we read and discard before
// closing (closing with unread bytes resets the connection, and the reset can destroy the
// response before the client has read it).
inline constexpr auto kLingerTime = std::chrono::seconds(2);
inline constexpr size_t kLingerBytes = size_t{1} << 20;

namespace linger_detail {

// Reads and discards what the client still sends, then closes (see kLingerTime).
template <class Owner>
void drain_and_close(std::shared_ptr<Owner> owner, boost::beast::tcp_stream& stream,
                     std::shared_ptr<std::array<char, 4096>> scratch, size_t drained) {
  stream.async_read_some(boost::asio::buffer(*scratch),
                         [owner, &stream, scratch, drained](boost::beast::error_code ec, size_t n) {
                           if (ec || drained + n > kLingerBytes) {
                             boost::beast::error_code ignored;
                             stream.socket().close(ignored);
                             return;
                           }
                           drain_and_close(owner, stream, scratch, drained + n);
                         });
}

}  // namespace linger_detail

template <class Owner>
void linger_close(std::shared_ptr<Owner> owner, boost::beast::tcp_stream& stream) {
  boost::beast::error_code ignored;
  stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ignored);
  stream.expires_after(kLingerTime);
  linger_detail::drain_and_close(std::move(owner), stream,
                                 std::make_shared<std::array<char, 4096>>(), 0);
}

}  // namespace infergrid
