// RegistryWatch: `route --etcd URL` follows the instance registry (server/instance_registration.h)
// by reading the prefix every poll interval: a new record adds its address to the InstanceSet,
// a record gone (deregistered, or its lease expired) removes it. Polling rather than a watch
// stream: it needs no resume logic across etcd restarts, and a registry of thousands of
// instances is one small read. Addresses given with --instance are pinned: it never removes
// them.
// Runs on the HttpClient's I/O thread, like the InstanceSet it edits.
#pragma once

#include <chrono>
#include <set>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "net/etcd_client.h"
#include "router/instance_set.h"

namespace infergrid {

struct RegistryWatchOptions {
  std::string prefix = "/infergrid/instances/";
  std::chrono::milliseconds poll_interval{500};
};

class RegistryWatch {
 public:
  RegistryWatch(HttpClient& http, Url etcd, InstanceSet& instances, RegistryWatchOptions options)
      : http_(http), etcd_(http, std::move(etcd)), instances_(instances), options_(options) {}

  // Until stop() (called on the I/O thread).
  boost::asio::awaitable<void> run();
  void stop() { stopped_ = true; }
  size_t registered() const { return registered_.size(); }

 private:
  HttpClient& http_;
  EtcdClient etcd_;
  InstanceSet& instances_;
  RegistryWatchOptions options_;
  std::set<std::string> registered_;  // addresses that came from etcd
  bool stopped_ = false;
  bool warned_ = false;
};

}  // namespace infergrid
