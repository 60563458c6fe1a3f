// A scripted HTTP server on a loopback port for client tests. Its replies are raw bytes written
// in pieces with optional pauses, so tests control exactly how a response is split on the wire,
// can leave a request unanswered, or close a keep-alive connection behind the client's back.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace infergrid::testing {

namespace asio = boost::asio;
namespace http = boost::beast::http;

struct FakeReply {
  std::vector<std::string> pieces;  // written one after another, each its own write
  std::chrono::milliseconds pause_between{0};
  bool close_after = false;  // close the connection once written (without saying so)
  bool never_reply = false;  // read the request and then stay silent
};

using FakeRequest = http::request<http::string_body>;

inline std::string http_head(int status, const std::string& content_type,
                             const std::string& extra = "") {
  return fmt::format("HTTP/1.1 {} X\r\nContent-Type: {}\r\n{}", status, content_type, extra);
}

// A complete response with a Content-Length body, as one piece.
inline std::string whole_response(int status, const std::string& content_type,
                                  const std::string& body) {
  return http_head(status, content_type, fmt::format("Content-Length: {}\r\n\r\n", body.size())) +
         body;
}

// The pieces of a chunked text/event-stream response: the head, one chunk per event, the end.
inline std::vector<std::string> sse_pieces(const std::vector<std::string>& event_data) {
  std::vector<std::string> pieces = {
      http_head(200, "text/event-stream", "Transfer-Encoding: chunked\r\n\r\n")};
  for (const std::string& data : event_data) {
    const std::string event = "data: " + data + "\n\n";
    pieces.push_back(fmt::format("{:x}\r\n{}\r\n", event.size(), event));
  }
  pieces.push_back("0\r\n\r\n");
  return pieces;
}

class FakeServer {
 public:
  using Handler = std::function<FakeReply(const FakeRequest&)>;

  explicit FakeServer(Handler handler)
      : handler_(std::move(handler)),
        acceptor_(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakeServer() {
    io_.stop();
    thread_.join();
  }

  int port() const { return acceptor_.local_endpoint().port(); }
  int connections() const { return connections_.load(); }

 private:
  asio::awaitable<void> accept_loop() {
    while (true) {
      boost::system::error_code ec;
      asio::ip::tcp::socket socket(io_);
      co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      ++connections_;
      // Without this, Nagle holds each small SSE chunk until the client's delayed ACK (up to
      // 40 ms) and event timings in tests say more about TCP than about the client.
      socket.set_option(asio::ip::tcp::no_delay(true), ec);
      asio::co_spawn(io_, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(asio::ip::tcp::socket socket) {
    boost::beast::flat_buffer buffer;
    boost::system::error_code ec;
    const auto token = [&ec] { return asio::redirect_error(asio::use_awaitable, ec); };
    while (true) {
      FakeRequest request;
      co_await http::async_read(socket, buffer, request, token());
      if (ec) co_return;
      const FakeReply reply = handler_(request);
      asio::steady_timer timer(io_);
      if (reply.never_reply) {
        timer.expires_after(std::chrono::hours(1));
        co_await timer.async_wait(token());
        co_return;
      }
      for (size_t i = 0; i < reply.pieces.size(); ++i) {
        if (i > 0 && reply.pause_between.count() > 0) {
          timer.expires_after(reply.pause_between);
          co_await timer.async_wait(token());
        }
        co_await asio::async_write(socket, asio::buffer(reply.pieces[i]), token());
        if (ec) co_return;
      }
      if (reply.close_after) co_return;
    }
  }

  Handler handler_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

}  // namespace infergrid::testing
