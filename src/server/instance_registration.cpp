#include "server/instance_registration.h"

#include <spdlog/spdlog.h>

namespace infergrid {

Result<std::unique_ptr<InstanceRegistration>> InstanceRegistration::start(
    RegistrationOptions options) {
  if (options.ttl_seconds < 2) {
    return make_error(StatusCode::kInvalidArgument, "--etcd-ttl must be at least 2 seconds");
  }
  auto url = Url::parse(options.etcd_url);
  if (!url.is_ok()) return url.status().with_context("--etcd");
  std::unique_ptr<InstanceRegistration> r(new InstanceRegistration(std::move(options), *url));
  IG_RETURN_IF_ERROR(r->register_now());
  r->thread_ = std::thread([raw = r.get()] { raw->keep_alive_loop(); });
  return r;
}

InstanceRegistration::InstanceRegistration(RegistrationOptions options, Url url)
    : options_(std::move(options)), etcd_(http_, std::move(url)) {}

InstanceRegistration::~InstanceRegistration() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (lease_ != 0) {
    if (Status st = etcd_.revoke_sync(lease_); !st.is_ok()) {
      spdlog::warn("etcd: could not deregister (the lease expires by itself): {}", st.message());
    }
  }
}

Status InstanceRegistration::register_now() {
  auto lease = etcd_.grant_lease_sync(options_.ttl_seconds);
  if (!lease.is_ok()) return lease.status();
  IG_RETURN_IF_ERROR(etcd_.put_sync(options_.prefix + options_.key, options_.value, *lease));
  lease_ = *lease;
  spdlog::info("etcd: registered {} (lease {:x}, TTL {} s)", options_.prefix + options_.key, lease_,
               options_.ttl_seconds);
  return Status::ok();
}

void InstanceRegistration::update(std::string value) {
  {
    std::lock_guard lock(mutex_);
    pending_value_ = std::move(value);
  }
  stop_cv_.notify_all();
}

void InstanceRegistration::keep_alive_loop() {
  const auto period = std::chrono::milliseconds(options_.ttl_seconds * 1000 / 3);
  std::unique_lock lock(mutex_);
  while (true) {
    stop_cv_.wait_for(lock, period, [&] { return stop_ || pending_value_; });
    if (stop_) break;
    if (pending_value_) {
      options_.value = std::move(*pending_value_);
      pending_value_.reset();
      lock.unlock();
      const Status written = etcd_.put_sync(options_.prefix + options_.key, options_.value, lease_);
      if (!written.is_ok())
        spdlog::warn("etcd: the new record was not written: {}", written.message());
      lock.lock();
      continue;
    }
    lock.unlock();
    Status st = etcd_.keep_alive_sync(lease_);
    if (st.code() == StatusCode::kNotFound) {
      spdlog::warn("etcd: {}; registering again", st.message());
      st = register_now();
    }
    if (!st.is_ok()) spdlog::warn("etcd: {} (retrying)", st.message());
    lock.lock();
  }
}

}  // namespace infergrid
