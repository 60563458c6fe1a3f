// Small helpers of the HTTP front end: header-value checks and a rate limit for log lines
// that a flood could otherwise repeat millions of times.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace infergrid {

std::string_view trim_ascii(std::string_view s);
bool iequals_ascii(std::string_view a, std::string_view b);
// The path of a request target, without its query.
std::string path_of(std::string_view target);
// The value of `name` in a request target's query (`?a=1&b=2`), percent-decoding left to the
// caller's syntax (our parameters are numbers and names); nullopt when absent.
std::optional<std::string> query_param(std::string_view target, std::string_view name);
// A Transfer-Encoding value that is exactly "chunked" (the only coding we decode).
bool is_plain_chunked(std::string_view transfer_encoding);
// A comma-separated list of header names (safe to echo in Access-Control-Allow-Headers).
bool is_header_list(std::string_view value);

// Open connections the fd limit leaves room for: the soft RLIMIT_NOFILE less 128 (models,
// tiers, logs), at least 16.
int default_max_connections();
// True once the peer has reset the connection (TCP state CLOSE, or an error pending): the
// only sign that a client which closed its sending side is gone rather than waiting.
bool peer_has_reset(int fd);

// Lets one log line through per interval and counts the rest.
class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::steady_clock::duration interval) : interval_(interval) {}
  // The number of lines suppressed since the last one allowed, or nullopt: stay quiet.
  std::optional<uint64_t> allow();

 private:
  std::mutex mutex_;
  std::chrono::steady_clock::duration interval_;
  std::optional<std::chrono::steady_clock::time_point> last_;
  uint64_t suppressed_ = 0;
};

}  // namespace infergrid
