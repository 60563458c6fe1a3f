// HTTP/1.1 client for the load generator, on Boost.Beast/Asio: one I/O thread drives every
// request, so thousands of streams can be in flight without a thread each, and arrival times are
// stamped where the bytes land rather than after queueing behind other work.
//
// Invariants:
//  - every request ends in exactly one Result; connection errors, timeouts and malformed
//    responses are Status values, never exceptions or aborts;
//  - an idle connection is reused for the next request to the same host:port (keep-alive), and a
//    request that fails on a reused connection before any response byte arrived is retried once on
//    a fresh connection (the server may have closed the idle socket; nothing was processed);
//  - the connection pool and all I/O are touched only from the client's I/O thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "core/clock.h"
#include "core/status.h"

namespace infergrid {

// A server base URL: `http://host:port[/prefix]`. Only plain HTTP; the scheme may be omitted.
struct Url {
  std::string host;
  std::string port = "80";
  std::string path_prefix;  // "" or "/prefix" (no trailing '/')

  // A trailing "/v1" is dropped: OpenAI clients are often configured with it, but the API paths
  // we send carry their own "/v1" and /metrics lives at the root.
  static Result<Url> parse(std::string_view text);
  std::string target(std::string_view api_path) const {
    return path_prefix + std::string(api_path);
  }
  std::string to_string() const;
};

// Incremental parser for `text/event-stream` bodies (the WHATWG EventSource format): accepts the
// body in chunks split anywhere, including inside a line or between the CR and LF of a line end.
// An event's data is its `data:` lines joined by '\n'; comments (":...") and other fields are
// ignored; an event with no data line is not dispatched. `data: [DONE]` (the OpenAI end marker)
// sets done() and everything after it is ignored.
class SseParser {
 public:
  // Appends the data of every event that `bytes` completes to `events`.
  void feed(std::string_view bytes, std::vector<std::string>& events);
  bool done() const { return done_; }

 private:
  void end_line(std::vector<std::string>& events);

  std::string line_;           // current line, not yet terminated
  std::string data_;           // data of the event being built
  bool has_data_ = false;      // data_ holds at least one (possibly empty) data line
  bool skip_next_lf_ = false;  // the last line ended in CR: a following LF belongs to it
  bool done_ = false;
};

struct HttpRequest {
  std::string method = "GET";  // "GET" or "POST"
  std::string host;
  std::string port = "80";
  std::string target = "/";
  std::string body;  // sent as application/json when non-empty
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};  // whole request, connect included
  // When set, the request also fails when no response byte arrives for this long (a hung
  // peer; a stream that sends heartbeats stays open as long as they come).
  std::chrono::milliseconds idle_timeout{0};
  std::vector<std::pair<std::string, std::string>> headers;  // extra request headers
  // Asked after each piece of the body is handled; false drops the connection and ends the
  // request with kCancelled (a proxy whose client left, a follower told to stop).
  std::function<bool()> should_continue;
};

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string retry_after;  // the Retry-After header, when the server sent one
  // The whole body, except for a text/event-stream read with an event handler (then empty).
  std::string body;
  bool event_stream = false;     // the body went to the event handler
  bool saw_done = false;         // the stream carried `data: [DONE]`
  Clock::time_point end_time{};  // when [DONE] or the last body byte arrived
};

// Called on the I/O thread for each event, with the time the bytes carrying it were read.
using EventHandler = std::function<void(std::string_view data, Clock::time_point arrived)>;

struct HttpClientOptions {
  size_t max_body_bytes = 64u << 20;  // a larger non-streamed body is an error
  // After [DONE] the rest of the response (normally just the last chunk marker) must arrive
  // within this; otherwise the connection is dropped but the request still counts as complete.
  std::chrono::milliseconds after_done_grace{500};
};

class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // The context of the I/O thread; coroutines that call fetch() must run on it.
  boost::asio::io_context& context() { return io_; }

  // Sends one request. When on_event is set and the response is a 200 text/event-stream, the
  // body is parsed as SSE and each event is passed to on_event as it arrives. Only a transport
  // failure is an error: an HTTP error status is returned as a response.
  boost::asio::awaitable<Result<HttpResponse>> fetch(HttpRequest request,
                                                     EventHandler on_event = {});

  // Blocking form for callers on other threads.
  Result<HttpResponse> fetch_sync(HttpRequest request, EventHandler on_event = {});

 private:
  struct Connection;
  struct Pool;

  boost::asio::awaitable<Result<HttpResponse>> fetch_once(const HttpRequest& request,
                                                          const EventHandler& on_event,
                                                          Clock::time_point deadline,
                                                          bool allow_reuse, bool& retryable);

  HttpClientOptions options_;
  boost::asio::io_context io_;
  std::unique_ptr<Pool> pool_;  // declared after io_ so its sockets close before the context goes
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace infergrid
