#include "server/access_control.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>

#include "server/http_util.h"

namespace infergrid {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Every byte of `b` (the secret) is visited whatever `a` holds; a length difference is
  // folded into the result rather than returned early.
  unsigned diff = static_cast<unsigned>(a.size() ^ b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= x ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

Result<std::vector<ApiKey>> read_api_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(StatusCode::kNotFound, "cannot read the API key file {}", path);
  std::vector<ApiKey> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string_view rest = line;
    if (auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
    rest = trim(rest);
    if (rest.empty()) continue;
    ApiKey key;
    const size_t space = rest.find_first_of(" \t");
    key.key = std::string(rest.substr(0, space));
    if (space != std::string_view::npos) {
      const std::string_view priority = trim(rest.substr(space));
      const auto [end, ec] =
          std::from_chars(priority.data(), priority.data() + priority.size(), key.priority);
      if (ec != std::errc() || end != priority.data() + priority.size()) {
        return make_error(StatusCode::kInvalidArgument,
                          "{}:{}: expected 'KEY' or 'KEY PRIORITY' (an integer), got '{}'", path,
                          number, std::string(priority));
      }
    }
    keys.push_back(std::move(key));
  }
  if (keys.empty()) return make_error(StatusCode::kInvalidArgument, "{} holds no API key", path);
  return keys;
}

bool AccessControl::requires_key(std::string_view path) const {
  if (!auth_enabled()) return false;
  const bool ops = path == "/health" || path == "/v1/health" || path == "/metrics";
  return !ops || options_.protect_health_metrics;
}

std::optional<ApiKey> AccessControl::authenticate(std::string_view authorization) const {
  authorization = trim(authorization);
  if (authorization.size() < 7 || !iequals_ascii(authorization.substr(0, 7), "Bearer ")) {
    return std::nullopt;
  }
  const std::string_view token = trim(authorization.substr(7));
  std::optional<ApiKey> match;
  for (const ApiKey& key : options_.api_keys) {  // all keys, no early exit
    if (constant_time_equal(token, key.key) && !match) match = key;
  }
  return match;
}

std::optional<std::string> AccessControl::cors_allow(std::string_view origin) const {
  if (origin.empty()) return std::nullopt;
  for (const std::string& allowed : options_.cors_origins) {
    if (allowed == "*") return std::string("*");
    if (iequals_ascii(allowed, origin)) return std::string(origin);
  }
  return std::nullopt;
}

bool AccessControl::host_allowed(std::string_view host_header) const {
  if (options_.allowed_hosts.empty()) return true;
  std::string_view host = trim(host_header);
  if (!host.empty() && host.front() == '[') {  // [::1]:8080
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    host = host.substr(0, close + 1);
  } else if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  return std::any_of(options_.allowed_hosts.begin(), options_.allowed_hosts.end(),
                     [&](const std::string& allowed) { return iequals_ascii(allowed, host); });
}

}  // namespace infergrid
