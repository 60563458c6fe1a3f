// Engine: the in-process serving API. Callers on any thread submit requests and cancel them;
// one step thread owns the Scheduler and runs engine steps while there is work, delivering
// each request's events to its callback.
//
// Invariants: the Scheduler is touched only by the step thread; submit() never blocks on a
// step (it queues under a short lock) and rejects with kResourceExhausted once max_queued
// requests would wait beyond the free running slots (a slot counts as free even when KV
// blocks, not slots, hold admission back, so the queue can exceed max_queued by up to
// max_running); max_context() is what one request can
// really get (the configured context, bounded by the KV pool); after shutdown() returns, no
// callback runs again and every request has received a final event.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/status.h"
#include "engine/request.h"
#include "engine/scheduler.h"

namespace infergrid {

struct EngineOptions {
  SchedulerOptions scheduler;  // n_blocks is derived from kv_cache_bytes when 0
  size_t kv_cache_bytes = 0;   // 0: default_kv_cache_bytes()
  int max_queued = 1024;       // waiting requests before submit() rejects
};

struct EngineStats {
  int running = 0;
  int waiting = 0;
  int blocks_total = 0;
  int blocks_in_use = 0;
  int blocks_cached = 0;  // in the prefix tree (in use or reusable)
  int blocks_free = 0;    // neither in use nor cached
  size_t block_bytes = 0;
  SchedulerCounters counters;
  bool has_disk_tier = false;
  TierStats disk;
  bool has_dram_tier = false;
  TierStats dram;
  // Mixture-of-experts models: tokens routed to each expert since load, per model.
  struct ExpertActivations {
    std::string model;  // filled in by whoever knows the model's served name
    int n_layer = 0;
    int n_expert = 0;
    std::vector<uint64_t> counts;  // [layer * n_expert + expert]
  };
  std::vector<ExpertActivations> experts;
};

// 40% of available memory, at most 8 GiB, at least one full context.
size_t default_kv_cache_bytes(const ModelConfig& config, int block_size, int max_context,
                              KvType kv_type);

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> create(const Model& model, const Tokenizer& tokenizer,
                                                Backend& backend, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Returns the request id. Errors: invalid request (kInvalidArgument / kOutOfRange), queue
  // full (kResourceExhausted), shutting down (kUnavailable).
  Result<uint64_t> submit(GenerationRequest request, RequestCallback callback);
  // Cancels a request: its blocks are freed at the next step boundary and its callback gets a
  // final kCancelled event. Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // Stops accepting requests, lets running ones finish for up to `grace`, then cancels the
  // rest and joins the step thread.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

  // Published after every step; the tiers' figures are read at the call (their writes run in
  // the background, between steps).
  EngineStats stats() const;
  const Model& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  int max_context() const { return max_context_; }
  const SchedulerOptions& scheduler_options() const { return scheduler_options_; }
  // Waits until every block computed so far is in the tiers it is written through to (the
  // shared DRAM tier): a prefill instance answers a handoff only once its decode instance can
  // load the prompt. Any thread (the writers are thread-safe).
  void flush_tier_writes() { scheduler_->flush_tiers(); }

 private:
  Engine(const Model& model, const Tokenizer& tokenizer, Backend& backend,
         const EngineOptions& options);
  void loop();
  void publish_stats();

  struct Pending {
    uint64_t id;
    GenerationRequest request;
    RequestCallback callback;
  };

  const Model& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions scheduler_options_;
  int max_queued_;
  int max_running_;
  int max_context_;
  std::unique_ptr<Scheduler> scheduler_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> inbox_;
  std::vector<uint64_t> cancels_;
  bool accepting_ = true;
  bool stop_ = false;
  std::optional<std::chrono::steady_clock::time_point> drain_deadline_;
  uint64_t next_id_ = 1;
  int waiting_snapshot_ = 0;  // the scheduler's counts, for admission in submit()
  int running_snapshot_ = 0;
  EngineStats stats_;
  std::thread thread_;
};

// A blocking view of one request's events, for callers without an event loop (CLI, tests).
class RequestStream {
 public:
  static Result<std::shared_ptr<RequestStream>> submit(Engine& engine, GenerationRequest request);
  uint64_t id() const { return id_; }
  // The next event; nullopt once the final event has been returned.
  std::optional<RequestEvent> next();
  // Waits for the end and merges every event: all tokens, all text, the final totals.
  RequestEvent collect();

 private:
  uint64_t id_ = 0;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<RequestEvent> events_;
  bool done_ = false;
};

}  // namespace infergrid
