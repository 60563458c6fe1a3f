// EtcdClient: the few etcd v3 calls the instance registry needs (lease grant / keep-alive /
// revoke, put under a lease, prefix range), over etcd's JSON gateway (`/v3/...`) with our
// HttpClient, so no gRPC stack is needed. Keys and values are base64 on the wire (etcd's JSON
// mapping of bytes); here they are plain strings.
// Invariants: every call ends in a Result (transport errors, HTTP errors and an expired lease
// are Status values); calls are coroutines on the HttpClient's I/O thread, and the _sync forms
// block another thread on them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "core/status.h"
#include "net/http_client.h"

namespace infergrid {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t lease = 0;
};

class EtcdClient {
 public:
  EtcdClient(HttpClient& http, Url endpoint) : http_(http), endpoint_(std::move(endpoint)) {}

  boost::asio::awaitable<Result<int64_t>> grant_lease(int ttl_seconds);
  // kNotFound when the lease has expired (the caller grants a new one and puts again).
  boost::asio::awaitable<Status> keep_alive(int64_t lease);
  boost::asio::awaitable<Status> revoke(int64_t lease);
  boost::asio::awaitable<Status> put(std::string key, std::string value, int64_t lease);
  // Every key that starts with `prefix`.
  boost::asio::awaitable<Result<std::vector<EtcdKeyValue>>> range_prefix(std::string prefix);

  Result<int64_t> grant_lease_sync(int ttl_seconds);
  Status keep_alive_sync(int64_t lease);
  Status revoke_sync(int64_t lease);
  Status put_sync(std::string key, std::string value, int64_t lease);
  Result<std::vector<EtcdKeyValue>> range_prefix_sync(std::string prefix);

 private:
  // POSTs `body` to /v3/<path>; the parsed JSON object of a 200, else an error.
  boost::asio::awaitable<Result<std::string>> call(std::string path, std::string body);

  HttpClient& http_;
  Url endpoint_;
};

std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

}  // namespace infergrid
