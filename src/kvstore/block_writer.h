// AsyncBlockWriter: moves KV blocks into a slower tier (the shared DRAM pool or the SSD) on a
// background thread, so the engine's step loop never waits for that tier. enqueue() copies the
// block (the engine reuses its memory at once) into a bounded queue; when the queue is full the
// block is dropped and counted rather than stalling the engine (it is then simply recomputed if
// needed again).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include <functional>
#include <string>

#include "core/status.h"

namespace infergrid {

class AsyncBlockWriter {
 public:
  // engine_block: the payload is an engine block the sink still has to encode in its tier's
  // format (done on the writer thread, so the step loop never pays for it); false: it already
  // is in that format (moved down from another tier of the same layout).
  using Sink =
      std::function<Status(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
                           std::span<const uint8_t> payload, bool engine_block)>;
  // tier_name is for log messages.
  AsyncBlockWriter(std::string tier_name, Sink sink, size_t max_pending_bytes);
  ~AsyncBlockWriter();  // writes what is queued, then stops
  AsyncBlockWriter(const AsyncBlockWriter&) = delete;
  AsyncBlockWriter& operator=(const AsyncBlockWriter&) = delete;

  // False when the queue is full (the block is dropped).
  bool enqueue(uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens,
               std::span<const uint8_t> payload, bool engine_block);
  // Waits until every queued block is written (tests, shutdown).
  void flush();
  uint64_t dropped() const { return dropped_; }
  uint64_t failed() const { return failed_; }

 private:
  struct Item {
    uint64_t key;
    uint64_t parent_key;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> payload;
    bool engine_block;
  };
  void run();

  std::string tier_name_;
  Sink sink_;
  const size_t max_pending_bytes_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<Item> queue_;
  size_t pending_bytes_ = 0;
  bool writing_ = false;
  bool stop_ = false;
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> failed_{0};
  std::thread thread_;
};

}  // namespace infergrid
