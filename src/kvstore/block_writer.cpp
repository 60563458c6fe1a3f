#include "kvstore/block_writer.h"

#include <spdlog/spdlog.h>

namespace infergrid {

AsyncBlockWriter::AsyncBlockWriter(std::string tier_name, Sink sink, size_t max_pending_bytes)
    : tier_name_(std::move(tier_name)),
      sink_(std::move(sink)),
      max_pending_bytes_(max_pending_bytes),
      thread_([this] { run(); }) {}

AsyncBlockWriter::~AsyncBlockWriter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool AsyncBlockWriter::enqueue(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                               std::span<const uint8_t> payload, bool engine_block) {
  std::unique_lock lock(mutex_);
  if (pending_bytes_ + payload.size() > max_pending_bytes_ || stop_) {
    ++dropped_;
    return false;
  }
  lock.unlock();
  // Copy outside the lock: the writer thread is never blocked behind a large memcpy.
  Item item{key,
            parent_key,
            {tokens.begin(), tokens.end()},
            {payload.begin(), payload.end()},
            engine_block};
  lock.lock();
  pending_bytes_ += item.payload.size();
  queue_.push_back(std::move(item));
  wake_.notify_one();
  return true;
}

void AsyncBlockWriter::flush() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return queue_.empty() && !writing_; });
}

void AsyncBlockWriter::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) {
      if (stop_) return;
      continue;
    }
    Item item = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    Status written = sink_(item.key, item.parent_key, item.tokens, item.payload, item.engine_block);
    if (!written.is_ok()) {
      ++failed_;
      spdlog::warn("KV {} tier: {}", tier_name_, written.to_string());
    }
    lock.lock();
    writing_ = false;
    pending_bytes_ -= item.payload.size();
    if (queue_.empty()) idle_.notify_all();
  }
}

}  // namespace infergrid
