#include "kvstore/tier_loader.h"

#include <algorithm>

#include "kvstore/block_key.h"

namespace infergrid {

TierLoader::TierLoader(LoadFn load, uint64_t fingerprint, int block_size)
    : load_(std::move(load)),
      fingerprint_(fingerprint),
      block_size_(block_size),
      thread_([this] { run(); }) {}

TierLoader::~TierLoader() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void TierLoader::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
}

bool TierLoader::wait(const Job& job, std::chrono::microseconds timeout) {
  std::unique_lock lock(mutex_);
  return finished_.wait_for(lock, timeout, [&] { return job.done(); });
}

void TierLoader::wait(const Job& job) {
  std::unique_lock lock(mutex_);
  finished_.wait(lock, [&] { return job.done(); });
}

void TierLoader::wait_any(std::span<const Job* const> jobs, std::chrono::microseconds timeout) {
  std::unique_lock lock(mutex_);
  finished_.wait_for(lock, timeout, [&] {
    return std::any_of(jobs.begin(), jobs.end(), [](const Job* j) { return j->done(); });
  });
}

void TierLoader::run() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    uint64_t parent = job->parent_key;
    int n = 0;
    for (; n < static_cast<int>(job->dest.size()); ++n) {
      const auto tokens =
          std::span<const int32_t>(job->tokens)
              .subspan(static_cast<size_t>(n) * block_size_, static_cast<size_t>(block_size_));
      const uint64_t key = block_key(parent, tokens, fingerprint_);
      if (!load_(key, tokens, job->dest[static_cast<size_t>(n)])) break;
      parent = key;
    }
    job->n_loaded = n;
    {
      // Under the lock, so a waiter cannot check done() and then miss the notification.
      std::lock_guard lock(mutex_);
      job->done_.store(true, std::memory_order_release);
    }
    finished_.notify_all();
  }
}

}  // namespace infergrid
