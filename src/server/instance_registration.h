// InstanceRegistration: `serve --etcd URL` keeps this instance's record in etcd under a lease
// (address, models, fingerprint, role, block size, KV capacity), so routers watching the prefix
// find it, and lose it when the process dies (the lease expires after its TTL).
// A background thread renews the lease every TTL/3; when etcd answers that the lease is gone
// (etcd restarted, or we were partitioned past the TTL) it grants a new one and writes the
// record again. Destruction revokes the lease: a drained instance leaves at once.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/status.h"
#include "net/etcd_client.h"
#include "net/http_client.h"

namespace infergrid {

struct RegistrationOptions {
  std::string etcd_url;
  std::string prefix = "/infergrid/instances/";
  int ttl_seconds = 5;
  std::string key;    // under prefix: the instance's address
  std::string value;  // the record (JSON)
};

class InstanceRegistration {
 public:
  // Registers once before returning (an unreachable etcd is an error at startup), then keeps
  // the record alive in the background.
  static Result<std::unique_ptr<InstanceRegistration>> start(RegistrationOptions options);
  ~InstanceRegistration();
  // Writes a new record (a role switch) under the same lease, on the background thread.
  void update(std::string value);

 private:
  explicit InstanceRegistration(RegistrationOptions options, Url url);
  Status register_now();
  void keep_alive_loop();

  RegistrationOptions options_;
  HttpClient http_;
  EtcdClient etcd_;
  int64_t lease_ = 0;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::optional<std::string> pending_value_;
  std::thread thread_;
};

}  // namespace infergrid
