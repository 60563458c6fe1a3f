// TierLoader: reads the KV blocks of a prefix match that engine memory no longer holds out of
// the tiers below it (shared DRAM, then SSD) on a background thread, so the step loop goes on
// computing the other sequences while a returning conversation's history is loaded.
//
// Invariants: a job's destination blocks belong to one waiting sequence, and nothing reads or
// writes them until the job is done(); a job loads a prefix of its candidate blocks (it stops
// at the first block no tier has, since a prefix match cannot skip one); jobs run in order of
// submission.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

namespace infergrid {

class TierLoader {
 public:
  // Fills dest with the block stored under key (checked against tokens); false on a miss.
  using LoadFn =
      std::function<bool(uint64_t key, std::span<const int32_t> tokens, std::span<uint8_t> dest)>;

  struct Job {
    uint64_t parent_key = 0;               // key of the block before the first candidate
    std::vector<int32_t> tokens;           // block_size tokens per candidate block
    std::vector<std::span<uint8_t>> dest;  // one destination per candidate block
    int n_loaded = 0;                      // written by the loader; read once done()

    bool done() const { return done_.load(std::memory_order_acquire); }

   private:
    friend class TierLoader;
    std::atomic<bool> done_{false};
  };

  TierLoader(LoadFn load, uint64_t fingerprint, int block_size);
  ~TierLoader();  // finishes the queued jobs, then stops
  TierLoader(const TierLoader&) = delete;
  TierLoader& operator=(const TierLoader&) = delete;

  void submit(std::shared_ptr<Job> job);
  // Waits until job is done, or the timeout passes; returns job.done().
  bool wait(const Job& job, std::chrono::microseconds timeout);
  void wait(const Job& job);
  // Waits until any of jobs is done, or the timeout passes.
  void wait_any(std::span<const Job* const> jobs, std::chrono::microseconds timeout);

 private:
  void run();

  LoadFn load_;
  const uint64_t fingerprint_;
  const int block_size_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace infergrid
