#include "router/registry_watch.h"

#include <spdlog/spdlog.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

namespace infergrid {

namespace asio = boost::asio;

boost::asio::awaitable<void> RegistryWatch::run() {
  asio::steady_timer timer(http_.context());
  while (!stopped_) {
    Result<std::vector<EtcdKeyValue>> records = co_await etcd_.range_prefix(options_.prefix);
    if (stopped_) break;
    if (!records.is_ok()) {
      // Keep routing to what we know: an etcd outage must not empty the cluster.
      if (!warned_) spdlog::warn("route: registry: {}", records.status().message());
      warned_ = true;
    } else {
      warned_ = false;
      std::set<std::string> now;
      for (const EtcdKeyValue& kv : *records) {
        const nlohmann::json record = nlohmann::json::parse(kv.value, nullptr, false);
        std::string address = record.is_object() ? record.value("address", "") : "";
        if (address.empty()) address = kv.key.substr(options_.prefix.size());
        auto url = Url::parse(address);
        if (!url.is_ok()) continue;
        now.insert(url->to_string());
      }
      for (const std::string& address : now) {
        if (registered_.count(address)) continue;
        if (instances_.add(address).is_ok()) {
          spdlog::info("route: registry: {} joined", address);
        }
      }
      for (const std::string& address : registered_) {
        if (now.count(address)) continue;
        spdlog::info("route: registry: {} left", address);
        instances_.remove(address);
      }
      registered_ = std::move(now);
    }
    timer.expires_after(options_.poll_interval);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace infergrid
