#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace infergrid {
namespace {

TEST(ThreadPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int64_t task, int thread) {
        EXPECT_GE(thread, 0);
        EXPECT_LT(thread, threads);
        hits[static_cast<size_t>(task)].fetch_add(1);
      });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, ManyShortLoopsInARow) {
  // The token loop issues hundreds of tiny parallel loops; none may be lost or overlap.
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int round = 0; round < 5000; ++round) {
    pool.parallel_for(3, [&](int64_t task, int) { total.fetch_add(task + 1); });
  }
  EXPECT_EQ(total.load(), 5000 * 6);
}

// A task waits (up to 10 s, once) until the other thread has taken one too, so the check does
// not depend on how the machine schedules the worker: with two threads, both take part.
TEST(ThreadPool, UsesSeveralThreadsForLongTasks) {
  ThreadPool pool(2);
  std::atomic<int> threads_seen{0};
  std::atomic<bool> gave_up{false};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  pool.parallel_for(64, [&](int64_t, int thread) {
    threads_seen.fetch_or(1 << thread);
    while (threads_seen.load() != 3 && !gave_up.load()) {
      if (std::chrono::steady_clock::now() >= deadline) gave_up = true;
      std::this_thread::yield();
    }
  });
  EXPECT_EQ(threads_seen.load(), 3);
}

}  // namespace
}  // namespace infergrid
