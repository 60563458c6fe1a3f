#include "net/http_client.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <exception>
#include <map>
#include <optional>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace infergrid {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

bool valid_port(std::string_view port) {
  if (port.empty() || port.size() > 5) return false;
  if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  const int value = std::stoi(std::string(port));
  return value > 0 && value < 65536;
}

bool starts_with_ignoring_case(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// Errors after which a request sent on a reused keep-alive connection can be sent again: the
// server closed the idle socket before reading the request.
bool closed_by_peer(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

}  // namespace

Result<Url> Url::parse(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (starts_with_ignoring_case(s, "https://")) {
    return make_error(StatusCode::kUnsupported, "'{}': https is not supported; use http://", text);
  }
  if (starts_with_ignoring_case(s, "http://")) {
    s.remove_prefix(7);
  } else if (s.find("://") != std::string_view::npos) {
    return make_error(StatusCode::kInvalidArgument, "'{}': only http:// URLs are supported", text);
  }
  const size_t slash = s.find('/');
  std::string_view authority = s.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : s.substr(slash);
  Url url;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return make_error(StatusCode::kInvalidArgument, "'{}': unterminated '[' in host", text);
    }
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return make_error(StatusCode::kInvalidArgument, "'{}': bad text after ']'", text);
      }
      port = rest.substr(1);
    }
  } else {
    const size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (url.host.empty()) {
    return make_error(StatusCode::kInvalidArgument, "'{}': no host in URL", text);
  }
  if (!port.empty() || authority.back() == ':') {
    if (!valid_port(port)) {
      return make_error(StatusCode::kInvalidArgument, "'{}': bad port '{}'", text, port);
    }
    url.port = std::string(port);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.size() >= 3 && path.substr(path.size() - 3) == "/v1") path.remove_suffix(3);
  url.path_prefix = std::string(path);
  return url;
}

std::string Url::to_string() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}{}", ipv6 ? "[" : "", host, ipv6 ? "]" : "", port,
                     path_prefix);
}

void SseParser::feed(std::string_view bytes, std::vector<std::string>& events) {
  size_t i = 0;
  while (i < bytes.size() && !done_) {
    if (skip_next_lf_) {
      skip_next_lf_ = false;
      if (bytes[i] == '\n') {
        ++i;
        continue;
      }
    }
    const size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string_view::npos) {
      line_.append(bytes.substr(i));
      return;
    }
    line_.append(bytes.substr(i, end - i));
    skip_next_lf_ = bytes[end] == '\r';
    i = end + 1;
    end_line(events);
  }
}

void SseParser::end_line(std::vector<std::string>& events) {
  const std::string_view line = line_;
  if (line.empty()) {
    if (has_data_) {
      if (data_ == "[DONE]") {
        done_ = true;
      } else {
        events.push_back(std::move(data_));
      }
    }
    data_.clear();
    has_data_ = false;
  } else if (line.front() != ':') {
    const size_t colon = line.find(':');
    const std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (field == "data") {
      if (has_data_) data_ += '\n';
      data_.append(value);
      has_data_ = true;
    }
  }
  line_.clear();
}

struct HttpClient::Connection {
  explicit Connection(asio::io_context& io) : stream(io) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;  // bytes read past one response would belong to the next
};

struct HttpClient::Pool {
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle;  // by "host:port"
  std::map<std::string, tcp::resolver::results_type> resolved;           // by "host:port"
};

HttpClient::HttpClient(HttpClientOptions options)
    : options_(options),
      pool_(std::make_unique<Pool>()),
      work_(asio::make_work_guard(io_)),
      thread_([this] {
        // A handler that throws must not take the process down; requests catch their own
        // errors, so this only guards against bugs.
        while (true) {
          try {
            io_.run();
            return;
          } catch (const std::exception& e) {
            spdlog::error("http client: {}", e.what());
          }
        }
      }) {}

HttpClient::~HttpClient() {
  work_.reset();
  io_.stop();
  thread_.join();
}

asio::awaitable<Result<HttpResponse>> HttpClient::fetch(HttpRequest request,
                                                        EventHandler on_event) {
  const Clock::time_point deadline = Clock::now() + request.timeout;
  bool retryable = false;
  Result<HttpResponse> result = co_await fetch_once(request, on_event, deadline, true, retryable);
  if (!result.is_ok() && retryable) {
    result = co_await fetch_once(request, on_event, deadline, false, retryable);
  }
  co_return result;
}

asio::awaitable<Result<HttpResponse>> HttpClient::fetch_once(const HttpRequest& request,
                                                             const EventHandler& on_event,
                                                             Clock::time_point deadline,
                                                             bool allow_reuse, bool& retryable) {
  retryable = false;
  const std::string key = request.host + ":" + request.port;
  beast::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  const auto fail = [&](std::string_view step) -> Status {
    const std::string where = fmt::format("{} http://{}{}", request.method, key, request.target);
    if (ec == beast::error::timeout) {
      if (request.idle_timeout.count() > 0 && Clock::now() < deadline) {
        return make_error(StatusCode::kIoError, "{}: nothing received for {:.1f} s ({})", where,
                          request.idle_timeout.count() / 1000.0, step);
      }
      return make_error(StatusCode::kIoError, "{}: timed out after {:.1f} s ({})", where,
                        request.timeout.count() / 1000.0, step);
    }
    return make_error(StatusCode::kIoError, "{}: {}: {}", where, step, ec.message());
  };

  try {
    std::unique_ptr<Connection> conn;
    bool reused = false;
    if (auto& idle = pool_->idle[key]; allow_reuse && !idle.empty()) {
      conn = std::move(idle.back());
      idle.pop_back();
      reused = true;
    }
    if (!conn) {
      auto found = pool_->resolved.find(key);
      if (found == pool_->resolved.end()) {
        tcp::resolver resolver(io_);
        auto endpoints = co_await resolver.async_resolve(request.host, request.port, token);
        if (ec) co_return fail("resolve");
        found = pool_->resolved.emplace(key, std::move(endpoints)).first;
      }
      conn = std::make_unique<Connection>(io_);
      conn->stream.expires_at(deadline);
      co_await conn->stream.async_connect(found->second, token);
      if (ec) co_return fail("connect");
      // Requests and their bodies go out in separate writes; Nagle plus delayed ACKs would
      // hold the second one back for tens of milliseconds and pollute every TTFT.
      conn->stream.socket().set_option(tcp::no_delay(true), ec);
    }
    conn->stream.expires_at(deadline);

    http::request<http::string_body> req{
        request.method == "POST" ? http::verb::post : http::verb::get, request.target, 11};
    req.set(http::field::host, key);
    req.set(http::field::user_agent, "infergrid");
    for (const auto& [name, value] : request.headers) req.set(name, value);
    if (!request.body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = request.body;
    }
    req.keep_alive(true);
    req.prepare_payload();
    co_await http::async_write(conn->stream, req, token);
    if (ec) {
      retryable = reused && ec != beast::error::timeout;
      co_return fail("send");
    }

    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);  // streams are long; max_body_bytes guards whole bodies
    const auto read_deadline = [&] {
      return request.idle_timeout.count() > 0
                 ? std::min(deadline, Clock::now() + request.idle_timeout)
                 : deadline;
    };
    conn->stream.expires_at(read_deadline());
    co_await http::async_read_header(conn->stream, conn->buffer, parser, token);
    if (ec) {
      retryable = reused && closed_by_peer(ec);
      co_return fail("read response header");
    }

    HttpResponse response;
    response.status = static_cast<int>(parser.get().result_int());
    response.content_type = std::string(parser.get()[http::field::content_type]);
    response.retry_after = std::string(parser.get()[http::field::retry_after]);
    response.event_stream = on_event && response.status == 200 &&
                            starts_with_ignoring_case(response.content_type, "text/event-stream");
    SseParser sse;
    std::vector<std::string> events;
    std::array<char, 16384> chunk;
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      if (!response.saw_done) conn->stream.expires_at(read_deadline());
      co_await http::async_read_some(conn->stream, conn->buffer, parser, token);
      const Clock::time_point arrived = Clock::now();
      if (ec == http::error::need_buffer) ec = {};
      if (ec) break;
      const size_t n = chunk.size() - parser.get().body().size;
      if (n == 0 || response.saw_done) continue;
      response.end_time = arrived;
      if (response.event_stream) {
        events.clear();
        sse.feed(std::string_view(chunk.data(), n), events);
        for (const std::string& data : events) on_event(data, arrived);
        if (sse.done()) {
          response.saw_done = true;
          conn->stream.expires_at(std::min(deadline, arrived + options_.after_done_grace));
        }
        if (!response.saw_done && request.should_continue && !request.should_continue()) {
          co_return make_error(StatusCode::kCancelled, "{} http://{}{}: cancelled", request.method,
                               key, request.target);
        }
      } else {
        if (response.body.size() + n > options_.max_body_bytes) {
          co_return make_error(StatusCode::kResourceExhausted,
                               "{} http://{}{}: response body over {} bytes", request.method, key,
                               request.target, options_.max_body_bytes);
        }
        response.body.append(chunk.data(), n);
      }
    }
    if (ec) {
      // After [DONE] the answer is complete; only the connection is lost.
      if (response.saw_done) co_return response;
      co_return fail("read response body");
    }
    if (response.end_time == Clock::time_point{}) response.end_time = Clock::now();
    if (parser.keep_alive()) {
      conn->stream.expires_never();
      pool_->idle[key].push_back(std::move(conn));
    }
    co_return response;
  } catch (const std::exception& e) {
    co_return make_error(StatusCode::kInternal, "{} http://{}{}: {}", request.method, key,
                         request.target, e.what());
  }
}

Result<HttpResponse> HttpClient::fetch_sync(HttpRequest request, EventHandler on_event) {
  std::optional<Result<HttpResponse>> out;
  auto done = asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        out.emplace(co_await fetch(std::move(request), std::move(on_event)));
      },
      asio::use_future);
  done.get();
  return std::move(*out);
}

}  // namespace infergrid
