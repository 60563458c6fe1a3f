#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
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

TEST(ThreadPool, UsesSeveralThreadsForLongTasks) {
  ThreadPool pool(2);
  std::mutex mutex;
  std::set<int> seen;
  pool.parallel_for(64, [&](int64_t, int thread) {
    volatile double x = 0;
    for (int i = 0; i < 200000; ++i) x = x + i;
    std::lock_guard<std::mutex> lock(mutex);
    seen.insert(thread);
  });
  EXPECT_EQ(seen.size(), 2u);
}

}  // namespace
}  // namespace infergrid
