// Scheduler: continuous batching over a paged KV cache, one engine step at a time.
//
// A step (1) gives every running sequence that is decoding one token, preempting the
// lowest-priority, latest-arrived running sequence when blocks run out; (2) gives running
// sequences that are still prefilling, then waiting requests in priority-then-arrival order, a
// chunk of their prompt under the token budget (chunked prefill), reusing the longest cached
// prefix on admission; (3) hands that decision as a plain-data ScheduledBatch to the
// ModelRunner, which computes it and samples a token for each sequence whose tokens are all
// computed; (4) update() commits the new full blocks (to the prefix cache and, through the
// KvConnector, the tiers) and gives each sampled token to its request's OutputProcessor
// (text, stop conditions, events). With chunked prefill off, a step either prefills whole
// prompts (running streams wait) or decodes, as older servers do.
//
// Invariants: a sequence's blocks cover exactly the positions it may write this step; it never
// writes a block another sequence or the prefix tree holds (copy-on-write); a preempted
// sequence keeps its tokens and sampler state and recomputes its KV, so it continues exactly
// where it stopped; every block a sequence held returns to the manager when it finishes, is
// cancelled or is preempted. Not thread-safe: the Engine drives it from one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/block_manager.h"
#include "engine/kv_pool.h"
#include "engine/model_runner.h"
#include "engine/output_processor.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "kernels/backend.h"
#include "kvstore/disk_tier.h"
#include "kvstore/kv_codec.h"
#include "kvstore/kv_connector.h"
#include "kvstore/receive_tier.h"
#include "kvstore/shm_tier.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace infergrid {

struct SchedulerOptions {
  int block_size = 16;
  int n_blocks = 0;            // KV pool size in blocks (the Engine derives it from bytes)
  int max_batch_tokens = 256;  // tokens per forward pass (the step's budget); serve's default
  int max_running = 64;        // sequences decoding at once
  int max_context = 0;         // positions per sequence; 0 = the model's training context
  bool prefix_caching = true;
  bool chunked_prefill = true;
  // The element type of the KV pool (--kv-cache-type).
  KvType kv_type = kDefaultKvType;
  // The SSD tier below the prefix cache (needs prefix_caching): evicted blocks are written to
  // it in the background, and prefix matches continue into it. Null: no tier.
  std::shared_ptr<DiskTier> disk_tier;
  // The shared host-DRAM tier between engine memory and the disk: full blocks are written
  // through to it as they are computed (so other processes on the host can use them), and
  // blocks it pushes out move on to the disk tier.
  std::shared_ptr<ShmTier> dram_tier;
  // Blocks another instance computed and handed over (KV transfer, `serve --kv-transfer-port`):
  // prefix matches continue into it before the DRAM and SSD tiers; it is never written here.
  std::shared_ptr<KvReceiveTier> receive_tier;
  // Called (on a writer thread) after each block written through to the DRAM tier.
  std::function<void()> on_dram_write;
  // How blocks are stored in both tiers: kInt8 keeps 1.8-1.9x (f16 cache) or 3.6-3.9x (f32)
  // more blocks per byte at a small, measured accuracy cost (docs/BENCHMARKS.md). The tiers must be
  // opened with Scheduler::kv_layout_tag and tier_block_bytes for this codec and kv_type.
  KvCodec tier_codec = KvCodec::kNative;
  size_t disk_write_queue_bytes = size_t{256} << 20;  // per tier writer
  // How long one step waits, in all, for tier loads to finish before it computes; loads that
  // take longer go on in the background while the step computes the other sequences, and their
  // sequences join a later step. 0: every load runs in the background.
  int tier_load_wait_us = 2000;
  // Where the prefix cache records the blocks it gains and loses (GET /kv/events). Null: none.
  std::shared_ptr<KvEventLog> kv_events;
};

struct SchedulerCounters {
  uint64_t steps = 0;
  uint64_t prompt_tokens = 0;      // prompt tokens of admitted requests
  uint64_t prefix_hit_tokens = 0;  // of which served from the prefix cache
  uint64_t tier_hit_tokens = 0;    // of which loaded from a tier below engine memory
  uint64_t computed_tokens = 0;    // tokens run through the model (prefill + decode + recompute)
  uint64_t generated_tokens = 0;
  uint64_t preemptions = 0;
  uint64_t finished_requests = 0;
  uint64_t cancelled_requests = 0;
};

struct StepResult {
  int n_sequences = 0;  // sequences in the step's batch
  int n_tokens = 0;     // tokens computed
  int n_decodes = 0;    // of which single-token decodes
};

class Scheduler {
 public:
  Scheduler(const Model& model, const Tokenizer& tokenizer, Backend& backend,
            const SchedulerOptions& options);
  ~Scheduler();

  // Checks a request against the model and the pool without queueing it (thread-safe).
  Status validate(const GenerationRequest& request) const;
  // Queues a validated request; its events go to `callback`.
  Status add(uint64_t id, GenerationRequest request, RequestCallback callback);
  // Ends a request now, frees its blocks and sends a final kCancelled event. Unknown ids
  // (already finished) are ignored.
  void cancel(uint64_t id);
  // Ends every request with `reason` (kCancelled or kError with `error`).
  void abort_all(FinishReason reason, const Status& error = Status::ok());

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  Result<StepResult> step();

  int n_running() const { return static_cast<int>(running_.size()); }
  int n_waiting() const { return static_cast<int>(waiting_.size()); }
  const SchedulerCounters& counters() const { return counters_; }
  const BlockManager& blocks() const { return blocks_; }
  const SchedulerOptions& options() const { return options_; }
  // What a stored block's bytes mean: tiers only match blocks with the same tag.
  static uint64_t kv_layout_tag(const Model& model, int block_size, KvType kv_type, KvCodec codec);
  // The codec of one block in the tiers, and the bytes it stores per block.
  static KvBlockCodec tier_block_codec(const ModelConfig& config, int block_size, KvType kv_type,
                                       KvCodec codec);
  static size_t tier_block_bytes(const ModelConfig& config, int block_size, KvType kv_type,
                                 KvCodec codec) {
    return tier_block_codec(config, block_size, kv_type, codec).encoded_bytes();
  }
  // Waits until every block queued for a tier (written through or evicted) is written.
  void flush_tiers();
  // Writes every cached, unreferenced block down to the disk tier (at shutdown, so a restart
  // finds them) and frees it from engine memory.
  void persist_cached();
  int max_context() const { return max_context_; }

 private:
  struct Sequence;
  struct Work {
    Sequence* seq;
    int n_tokens;
  };

  bool reserve(Sequence& seq, int n_new_tokens);
  // reserve(), preempting lower-priority running sequences; false if seq is itself the lowest.
  bool reserve_preempting(Sequence& seq, int n_new_tokens);
  // Admits waiting requests in priority order while budget, blocks and running slots allow;
  // whole_prompts: each admitted prompt runs to its end this step (chunked prefill off).
  void admit_waiting(int& budget, bool whole_prompts);
  void release_blocks(Sequence& seq);
  void preempt(Sequence& seq);
  void match_prefix(Sequence& seq);
  void on_block_evicted(int32_t block, uint64_t key, uint64_t parent_key,
                        std::span<const int32_t> tokens);
  // Starts loading the blocks after seq's engine-memory match from the tiers; false when there
  // is nothing to try (no candidate block, or no free block to load into).
  bool start_tier_load(Sequence& seq);
  // Registers a done load's blocks in the prefix tree and frees the ones it did not fill.
  void finish_tier_load(Sequence& seq);
  // Returns the blocks of waiting sequences' done loads (wait: of every load, waiting for those
  // in flight) to the cache; true if any were.
  bool reclaim_tier_loads(bool wait);
  bool prefix_in_flight(const Sequence& seq) const;
  void enqueue_waiting(Sequence* seq);
  Sequence* lowest_priority_running();
  // The step's work as the runner's plain-data batch.
  void to_batch(const std::vector<Work>& work, ScheduledBatch& batch) const;
  // Applies a computed batch: commits the new full blocks and hands out the sampled tokens.
  void update(const ScheduledBatch& batch, const StepOutput& output);
  void commit_computed(Sequence& seq, int n_tokens);
  void emit_token(Sequence& seq, const GeneratedToken& token);
  void finish(Sequence& seq, FinishReason reason, const Status& error = Status::ok());
  void send(Sequence& seq);
  void remove_finished();

  const Model& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  int max_context_;
  ModelRunner runner_;  // owns the pool, the forward pass and the samplers
  KvPool& pool_;
  BlockManager blocks_;
  // The tiers below engine memory (null without tiers); declared after the pool, so its loads
  // are joined before the pool is freed.
  std::unique_ptr<KvConnector> connector_;
  bool persisting_ = false;  // evictions write synchronously (shutdown)
  std::vector<Work> work_;   // what this step computes
  ScheduledBatch batch_;     // work_ for the runner
  StepOutput output_;
  bool admission_ran_ = false;  // admit_waiting ran in the current step

  uint64_t next_arrival_ = 0;
  std::map<uint64_t, std::unique_ptr<Sequence>> sequences_;  // by request id
  std::vector<Sequence*> running_;                           // admission order
  // Priority desc, then arrival asc. Waiting sequences hold no blocks, except one whose tier
  // load is in flight (its matched prefix and the load's destinations).
  std::deque<Sequence*> waiting_;
  SchedulerCounters counters_;
};

}  // namespace infergrid
