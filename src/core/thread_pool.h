// ThreadPool: a fixed set of workers for data-parallel loops in the token loop.
//
// The calling thread takes part in every parallel_for, so a pool of N threads has N-1 workers.
// Dispatch is lock-free (a generation counter and an atomic work index); workers spin briefly
// before sleeping on std::atomic::wait, because a forward pass issues hundreds of short loops
// per token and a condition-variable wake-up per loop would dominate small models.
// Invariant: only one parallel_for runs at a time (calls are not reentrant).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace infergrid {

class ThreadPool {
 public:
  // n_threads <= 0 picks the machine's hardware concurrency.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(task, thread) for task in [0, n_tasks). Tasks are handed out dynamically; `thread`
  // is in [0, size()) and is stable for the duration of one task (use it to pick scratch space).
  // The callable is borrowed, not copied (no std::function), so a call never allocates.
  template <typename Fn>
  void parallel_for(int64_t n_tasks, const Fn& fn) {
    run(n_tasks, TaskRef{&fn, [](const void* f, int64_t task, int thread) {
                           (*static_cast<const Fn*>(f))(task, thread);
                         }});
  }

  static int default_thread_count();

 private:
  struct TaskRef {
    const void* fn;
    void (*call)(const void* fn, int64_t task, int thread);
  };
  void run(int64_t n_tasks, TaskRef task);
  void worker_loop(int thread);
  void run_tasks(int thread);

  int n_threads_;
  std::vector<std::thread> workers_;
  TaskRef current_{nullptr, nullptr};
  int64_t current_n_tasks_ = 0;
  alignas(64) std::atomic<int64_t> next_task_{0};
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> active_workers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace infergrid
