#include "engine/engine.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/logging.h"

namespace infergrid {

namespace {

size_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream fields(line.substr(13));
      size_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return size_t{4} << 30;
}

}  // namespace

size_t default_kv_cache_bytes(const ModelConfig& config, int block_size, int max_context,
                              KvType kv_type) {
  const size_t block = KvPool::block_bytes(config, block_size, kv_type);
  const size_t one_context = (static_cast<size_t>(max_context) + block_size) / block_size * block;
  size_t bytes = std::min(available_memory_bytes() / 10 * 4, size_t{8} << 30);
  return std::max(bytes, one_context);
}

Result<std::unique_ptr<Engine>> Engine::create(const Model& model, const Tokenizer& tokenizer,
                                               Backend& backend, EngineOptions options) {
  SchedulerOptions& s = options.scheduler;
  if (s.block_size < 1 || s.block_size > 1024) {
    return make_error(StatusCode::kInvalidArgument, "block size {} is outside [1, 1024]",
                      s.block_size);
  }
  if (s.max_batch_tokens < 1 || s.max_running < 1) {
    return Status(StatusCode::kInvalidArgument,
                  "--max-batch-tokens and --max-running must be at least 1");
  }
  if (s.max_context <= 0) s.max_context = std::max(1, model.config().n_ctx_train);
  if (s.n_blocks <= 0) {
    const size_t bytes =
        options.kv_cache_bytes > 0
            ? options.kv_cache_bytes
            : default_kv_cache_bytes(model.config(), s.block_size, s.max_context, s.kv_type);
    s.n_blocks = static_cast<int>(std::min<size_t>(
        bytes / KvPool::block_bytes(model.config(), s.block_size, s.kv_type), 1 << 30));
  }
  // One request can never hold more positions than the pool has: say so rather than accept a
  // context that ends in a cut-off.
  s.max_context = static_cast<int>(
      std::min<int64_t>(s.max_context, static_cast<int64_t>(s.n_blocks) * s.block_size));
  if (s.n_blocks < 2) {
    return make_error(StatusCode::kInvalidArgument,
                      "the KV cache holds {} blocks of {} bytes; it needs at least 2", s.n_blocks,
                      KvPool::block_bytes(model.config(), s.block_size, s.kv_type));
  }
  // A tier opened for another layout would refuse every block (and log each refusal).
  const uint64_t tier_layout =
      Scheduler::kv_layout_tag(model, s.block_size, s.kv_type, s.tier_codec);
  if (s.dram_tier &&
      (s.dram_tier->layout_tag() != tier_layout ||
       s.dram_tier->payload_bytes() !=
           Scheduler::tier_block_bytes(model.config(), s.block_size, s.kv_type, s.tier_codec))) {
    return make_error(StatusCode::kInvalidArgument,
                      "the DRAM tier {} was opened for another model, block size, KV cache type "
                      "or tier codec (this engine: block size {}, KV {}, codec {})",
                      s.dram_tier->segment_name(), s.block_size, kv_type_name(s.kv_type),
                      kv_codec_name(s.tier_codec));
  }
  if (s.disk_tier && s.disk_tier->layout_tag() != tier_layout) {
    return make_error(StatusCode::kInvalidArgument,
                      "the disk tier was opened for another model, block size, KV cache type or "
                      "tier codec (this engine: block size {}, KV {}, codec {})",
                      s.block_size, kv_type_name(s.kv_type), kv_codec_name(s.tier_codec));
  }
  return std::unique_ptr<Engine>(new Engine(model, tokenizer, backend, options));
}

Engine::Engine(const Model& model, const Tokenizer& tokenizer, Backend& backend,
               const EngineOptions& options)
    : model_(model),
      tokenizer_(tokenizer),
      scheduler_options_(options.scheduler),
      max_queued_(options.max_queued),
      max_running_(options.scheduler.max_running),
      max_context_(options.scheduler.max_context),
      scheduler_(std::make_unique<Scheduler>(model, tokenizer, backend, options.scheduler)) {
  publish_stats();
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  shutdown();
}

Result<uint64_t> Engine::submit(GenerationRequest request, RequestCallback callback) {
  IG_RETURN_IF_ERROR(scheduler_->validate(request));
  std::lock_guard lock(mutex_);
  if (!accepting_) return Status(StatusCode::kUnavailable, "the engine is shutting down");
  // Only what is beyond the free running slots truly waits: the rest is admitted at the next
  // step. Counting the inbox as waiting refused bursts on an idle server.
  const int free_slots = std::max(0, max_running_ - running_snapshot_);
  const int would_wait = static_cast<int>(inbox_.size()) + waiting_snapshot_ - free_slots;
  if (would_wait >= max_queued_) {
    return make_error(StatusCode::kResourceExhausted,
                      "{} requests are already waiting (the queue limit is {}); retry later",
                      std::max(0, would_wait), max_queued_);
  }
  const uint64_t id = next_id_++;
  inbox_.push_back({id, std::move(request), std::move(callback)});
  wake_.notify_one();
  return id;
}

void Engine::cancel(uint64_t id) {
  std::lock_guard lock(mutex_);
  cancels_.push_back(id);
  wake_.notify_one();
}

void Engine::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mutex_);
    accepting_ = false;
    if (!drain_deadline_) drain_deadline_ = std::chrono::steady_clock::now() + grace;
    stop_ = true;
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  EngineStats stats;
  {
    std::lock_guard lock(mutex_);
    stats = stats_;
  }
  // The tiers are written in the background, after the step that published the rest: read
  // them now (thread-safe, outside the lock), so an idle engine's gauges are not stale.
  if (stats.has_dram_tier) stats.dram = scheduler_options_.dram_tier->stats();
  if (stats.has_disk_tier) stats.disk = scheduler_options_.disk_tier->stats();
  if (model_.config().is_moe()) {
    stats.experts.push_back({model_.config().model_name, model_.config().n_layer,
                             model_.config().n_expert, model_.expert_activation_counts()});
  }
  return stats;
}

void Engine::publish_stats() {
  // Gathered before taking the lock: tier stats may wait on another process's lock, and
  // submit() must never wait behind that.
  const BlockManager& b = scheduler_->blocks();
  EngineStats fresh;
  fresh.running = scheduler_->n_running();
  fresh.waiting = scheduler_->n_waiting();
  fresh.blocks_total = b.n_blocks();
  fresh.blocks_in_use = b.n_in_use();
  fresh.blocks_cached = b.n_cached();
  fresh.blocks_free = b.n_free();
  fresh.block_bytes =
      KvPool::block_bytes(model_.config(), b.block_size(), scheduler_options_.kv_type);
  fresh.counters = scheduler_->counters();
  if (const auto& tier = scheduler_->options().disk_tier) {
    fresh.has_disk_tier = true;
    fresh.disk = tier->stats();
  }
  if (const auto& tier = scheduler_->options().dram_tier) {
    fresh.has_dram_tier = true;
    fresh.dram = tier->stats();
  }
  std::lock_guard lock(mutex_);
  stats_ = fresh;
  waiting_snapshot_ = stats_.waiting;
  running_snapshot_ = stats_.running;
}

void Engine::loop() {
  std::deque<Pending> adds;
  std::vector<uint64_t> cancels;
  while (true) {
    bool stopping = false;
    bool past_deadline = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] {
        return stop_ || !inbox_.empty() || !cancels_.empty() || scheduler_->has_work();
      });
      adds.swap(inbox_);
      cancels.swap(cancels_);
      stopping = stop_;
      past_deadline = stop_ && std::chrono::steady_clock::now() >= *drain_deadline_;
    }
    for (Pending& p : adds) {
      const uint64_t id = p.id;
      RequestCallback callback = p.callback;
      Status added = scheduler_->add(id, std::move(p.request), std::move(p.callback));
      if (!added.is_ok() && callback) {
        RequestEvent e;
        e.request_id = id;
        e.finished = true;
        e.finish_reason = FinishReason::kError;
        e.error = added;
        callback(e);
      }
    }
    adds.clear();
    for (uint64_t id : cancels) scheduler_->cancel(id);
    cancels.clear();
    {
      // submit() sees the new arrivals as waiting (not as an empty inbox) while this step runs.
      const int waiting = scheduler_->n_waiting(), running = scheduler_->n_running();
      std::lock_guard lock(mutex_);
      waiting_snapshot_ = waiting;
      running_snapshot_ = running;
    }
    if (past_deadline) {
      scheduler_->abort_all(FinishReason::kCancelled);
      scheduler_->persist_cached();
      publish_stats();
      return;
    }
    if (scheduler_->has_work()) {
      auto step = scheduler_->step();
      if (!step.is_ok()) {
        spdlog::error("engine step failed: {}", step.status().to_string());
        scheduler_->abort_all(FinishReason::kError, step.status());
      }
    } else if (stopping) {
      scheduler_->persist_cached();
      publish_stats();
      return;
    }
    publish_stats();
  }
}

Result<std::shared_ptr<RequestStream>> RequestStream::submit(Engine& engine,
                                                             GenerationRequest request) {
  auto stream = std::make_shared<RequestStream>();
  IG_ASSIGN_OR_RETURN(stream->id_,
                      engine.submit(std::move(request), [stream](const RequestEvent& e) {
                        std::lock_guard lock(stream->mutex_);
                        stream->events_.push_back(e);
                        stream->ready_.notify_all();
                      }));
  return stream;
}

std::optional<RequestEvent> RequestStream::next() {
  std::unique_lock lock(mutex_);
  if (done_) return std::nullopt;
  ready_.wait(lock, [&] { return !events_.empty(); });
  RequestEvent e = std::move(events_.front());
  events_.pop_front();
  if (e.finished) done_ = true;
  return e;
}

RequestEvent RequestStream::collect() {
  RequestEvent all;
  while (auto e = next()) {
    for (auto& t : e->tokens) all.tokens.push_back(std::move(t));
    all.text += e->text;
    all.request_id = e->request_id;
    all.finished = e->finished;
    all.finish_reason = e->finish_reason;
    all.stop_matched = e->stop_matched;
    all.error = e->error;
    all.prompt_tokens = e->prompt_tokens;
    all.cached_tokens = e->cached_tokens;
    all.completion_tokens = e->completion_tokens;
    all.preemptions = e->preemptions;
  }
  return all;
}

}  // namespace infergrid
