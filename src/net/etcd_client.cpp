#include "net/etcd_client.h"

#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <nlohmann/json.hpp>

namespace infergrid {

namespace asio = boost::asio;
namespace base64 = boost::beast::detail::base64;
using json = nlohmann::json;

std::string base64_encode(std::string_view bytes) {
  std::string out(base64::encoded_size(bytes.size()), '\0');
  out.resize(base64::encode(out.data(), bytes.data(), bytes.size()));
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  std::string out(base64::decoded_size(text.size()), '\0');
  const auto [written, read] = base64::decode(out.data(), text.data(), text.size());
  size_t unpadded = text.size();  // decoding stops at the '=' padding
  while (unpadded > 0 && text[unpadded - 1] == '=') --unpadded;
  if (read < unpadded) {
    return make_error(StatusCode::kCorrupt, "etcd: a value is not base64");
  }
  out.resize(written);
  return out;
}

namespace {

// etcd's JSON gateway writes int64 as strings.
int64_t int64_field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) return 0;
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  return it->is_number_integer() ? it->get<int64_t>() : 0;
}

// The smallest key greater than every key with this prefix (etcd's range_end for a prefix).
std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(prefix.back() + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // every key
}

template <typename T>
T run_sync(HttpClient& http, asio::awaitable<T> op) {
  std::optional<T> out;  // Result has no default state for use_future to hold
  asio::co_spawn(
      http.context(), [&]() -> asio::awaitable<void> { out.emplace(co_await std::move(op)); },
      asio::use_future)
      .get();
  return std::move(*out);
}

}  // namespace

asio::awaitable<Result<std::string>> EtcdClient::call(std::string path, std::string body) {
  HttpRequest request;
  request.method = "POST";
  request.host = endpoint_.host;
  request.port = endpoint_.port;
  request.target = endpoint_.target("/v3/" + path);
  request.body = std::move(body);
  request.timeout = std::chrono::seconds(5);
  Result<HttpResponse> response = co_await http_.fetch(std::move(request));
  if (!response.is_ok()) co_return response.status().with_context("etcd");
  if (response->status != 200) {
    co_return make_error(StatusCode::kUnavailable, "etcd {} {}: HTTP {}: {}", endpoint_.to_string(),
                         path, response->status, response->body.substr(0, 200));
  }
  co_return std::move(response->body);
}

asio::awaitable<Result<int64_t>> EtcdClient::grant_lease(int ttl_seconds) {
  const std::string body = json{{"TTL", ttl_seconds}}.dump();
  Result<std::string> answer = co_await call("lease/grant", body);
  if (!answer.is_ok()) co_return answer.status();
  const json j = json::parse(*answer, nullptr, false);
  const int64_t id = j.is_object() ? int64_field(j, "ID") : 0;
  if (id == 0)
    co_return make_error(StatusCode::kUnavailable, "etcd: no lease granted: {}", *answer);
  co_return id;
}

asio::awaitable<Status> EtcdClient::keep_alive(int64_t lease) {
  const std::string body = json{{"ID", std::to_string(lease)}}.dump();
  Result<std::string> answer = co_await call("lease/keepalive", body);
  if (!answer.is_ok()) co_return answer.status();
  // A stream of results; the first is ours. An expired lease answers without a TTL.
  const json j = json::parse(answer->substr(0, answer->find('\n')), nullptr, false);
  const json result = j.is_object() && j.contains("result") ? j["result"] : json::object();
  if (!result.is_object() || int64_field(result, "TTL") <= 0) {
    co_return make_error(StatusCode::kNotFound, "etcd: lease {:x} has expired", lease);
  }
  co_return Status::ok();
}

asio::awaitable<Status> EtcdClient::revoke(int64_t lease) {
  const std::string body = json{{"ID", std::to_string(lease)}}.dump();
  Result<std::string> answer = co_await call("lease/revoke", body);
  co_return answer.is_ok() ? Status::ok() : answer.status();
}

asio::awaitable<Status> EtcdClient::put(std::string key, std::string value, int64_t lease) {
  json body = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease != 0) body["lease"] = std::to_string(lease);
  const std::string text = body.dump();
  Result<std::string> answer = co_await call("kv/put", text);
  co_return answer.is_ok() ? Status::ok() : answer.status();
}

asio::awaitable<Result<std::vector<EtcdKeyValue>>> EtcdClient::range_prefix(std::string prefix) {
  const std::string body =
      json{{"key", base64_encode(prefix)}, {"range_end", base64_encode(prefix_end(prefix))}}.dump();
  Result<std::string> answer = co_await call("kv/range", body);
  if (!answer.is_ok()) co_return answer.status();
  const json j = json::parse(*answer, nullptr, false);
  if (!j.is_object()) co_return make_error(StatusCode::kCorrupt, "etcd: range answer is not JSON");
  std::vector<EtcdKeyValue> out;
  if (auto kvs = j.find("kvs"); kvs != j.end() && kvs->is_array()) {
    for (const json& kv : *kvs) {
      if (!kv.is_object() || !kv.contains("key") || !kv["key"].is_string()) continue;
      auto key = base64_decode(kv["key"].get<std::string>());
      auto value = base64_decode(kv.value("value", ""));
      if (!key.is_ok() || !value.is_ok()) continue;
      out.push_back({std::move(*key), std::move(*value), int64_field(kv, "lease")});
    }
  }
  co_return out;
}

Result<int64_t> EtcdClient::grant_lease_sync(int ttl) {
  return run_sync(http_, grant_lease(ttl));
}
Status EtcdClient::keep_alive_sync(int64_t lease) {
  return run_sync(http_, keep_alive(lease));
}
Status EtcdClient::revoke_sync(int64_t lease) {
  return run_sync(http_, revoke(lease));
}
Status EtcdClient::put_sync(std::string key, std::string value, int64_t lease) {
  return run_sync(http_, put(std::move(key), std::move(value), lease));
}
Result<std::vector<EtcdKeyValue>> EtcdClient::range_prefix_sync(std::string prefix) {
  return run_sync(http_, range_prefix(std::move(prefix)));
}

}  // namespace infergrid
