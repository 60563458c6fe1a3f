// AccessControl: who may call the server and from where, decided per request from its headers.
//
// Pure functions over header values, so they can be unit-tested without a socket:
// - API keys (`--api-key`, `--api-key-file`): a Bearer token compared in constant time against
//   every configured key (no early exit, so timing says nothing about which key or how much of
//   it matched); each key carries the priority class its requests are scheduled with.
// - CORS (`--cors-origin`): no origin is allowed unless configured; "*" allows any.
// - Host allow-list (`--allowed-host`): against DNS rebinding, a request whose Host header (port
//   stripped) is not listed is refused. Empty list: any host.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infergrid {

struct ApiKey {
  std::string key;
  int priority = 0;  // scheduling class of the requests made with this key
};

struct AccessOptions {
  std::vector<ApiKey> api_keys;         // empty: no authentication
  bool protect_health_metrics = false;  // also require a key on /health and /metrics
  std::vector<std::string> cors_origins;
  std::vector<std::string> allowed_hosts;
};

// Equal without an early exit on the first differing byte.
bool constant_time_equal(std::string_view a, std::string_view b);

// Lines of "KEY" or "KEY PRIORITY"; '#' starts a comment. Errors name the line.
Result<std::vector<ApiKey>> read_api_key_file(const std::string& path);

class AccessControl {
 public:
  explicit AccessControl(AccessOptions options) : options_(std::move(options)) {}

  bool auth_enabled() const { return !options_.api_keys.empty(); }
  // Whether a request to `path` must carry a key.
  bool requires_key(std::string_view path) const;
  // The key matching an `Authorization: Bearer KEY` header value, or nullopt.
  std::optional<ApiKey> authenticate(std::string_view authorization) const;
  // Whether an `Origin` value may read responses; the value to echo in
  // Access-Control-Allow-Origin when it may.
  std::optional<std::string> cors_allow(std::string_view origin) const;
  bool cors_enabled() const { return !options_.cors_origins.empty(); }
  bool host_allowed(std::string_view host_header) const;

 private:
  AccessOptions options_;
};

}  // namespace infergrid
