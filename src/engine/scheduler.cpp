#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <spdlog/spdlog.h>

#include "engine/generator.h"

namespace infergrid {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "";
}

struct Scheduler::Sequence {
  Sequence(uint64_t id_in, uint64_t arrival_in, GenerationRequest request, RequestCallback cb,
           const Tokenizer& tokenizer, int max_context)
      : id(id_in),
        arrival(arrival_in),
        options(std::move(request.options)),
        callback(std::move(cb)),
        tokens(std::move(request.prompt)),
        n_prompt(static_cast<int>(tokens.size())),
        output(tokenizer, options, max_context) {}

  uint64_t id;
  uint64_t arrival;
  RequestOptions options;
  RequestCallback callback;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int n_prompt;
  OutputProcessor output;  // after options, which it reads

  bool running = false;
  bool finished = false;
  bool scheduled = false;       // in the current step's batch
  int n_computed = 0;           // leading tokens whose K/V are in blocks
  std::vector<int32_t> blocks;  // block table
  int n_committed = 0;          // leading full blocks registered with the prefix cache
  uint64_t last_key = kRootBlockKey;
  int cached_tokens = -1;       // prefix-cache hit at first admission; -1 until admitted
  int tier_hit_blocks = 0;      // blocks loaded from a tier for the coming admission
  bool commit_stopped = false;  // a block could not join the tree; later ones stay private
  bool tiers_probed = false;    // the tiers were searched since the last preemption
  std::shared_ptr<TierLoader::Job> load;  // a tier load for this waiting sequence
  std::vector<int32_t> load_blocks;       // the load's destination blocks, owned by this sequence
  int preemptions = 0;

  bool final_sent = false;
  RequestEvent event;  // what the current step has to report

  int n_generated() const { return static_cast<int>(tokens.size()) - n_prompt; }
  bool decoding() const { return n_computed == static_cast<int>(tokens.size()) - 1; }
};

Scheduler::Scheduler(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                     const SchedulerOptions& options)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      max_context_(options.max_context > 0 ? options.max_context
                                           : std::max(1, model.config().n_ctx_train)),
      runner_(model, backend,
              {options.block_size, options.n_blocks, options.kv_type, options.max_batch_tokens,
               options.max_running}),
      pool_(runner_.pool()),
      blocks_(options.n_blocks, options.block_size, model.fingerprint(), options.prefix_caching) {
  if (options_.prefix_caching &&
      (options_.dram_tier || options_.disk_tier || options_.receive_tier)) {
    KvConnectorOptions c;
    if (options_.receive_tier) {
      c.tiers.push_back({options_.receive_tier, false, false, /*load_only=*/true});
    }
    if (options_.dram_tier) c.tiers.push_back({options_.dram_tier, /*write_through=*/true, false});
    if (options_.disk_tier) c.tiers.push_back({options_.disk_tier, false, /*persistent=*/true});
    c.model_fingerprint = model.fingerprint();
    c.block_size = options.block_size;
    c.write_queue_bytes = options.disk_write_queue_bytes;
    c.on_write_through = options.on_dram_write;
    connector_ = std::make_unique<KvConnector>(
        std::move(c),
        tier_block_codec(model.config(), options.block_size, options.kv_type, options.tier_codec));
    blocks_.set_evict_hook(
        [this](int32_t block, uint64_t key, uint64_t parent_key, std::span<const int32_t> tokens) {
          on_block_evicted(block, key, parent_key, tokens);
        });
  }
  if (options_.kv_events) {
    blocks_.set_event_log(options_.kv_events.get());
    // The SSD tier is this instance's own: its blocks (those found on disk at a restart
    // included) are announced as the disk tier's. The DRAM segment is shared by every process
    // of the host, which evicts each other's blocks unseen, so it announces nothing.
    if (options_.disk_tier && connector_) {
      options_.disk_tier->set_event_observer([log = options_.kv_events](bool stored, uint64_t key) {
        if (stored) {
          log->stored(KvTierKind::kDisk, key);
        } else {
          log->removed(KvTierKind::kDisk, key);
        }
      });
    }
  }
  work_.reserve(static_cast<size_t>(options.max_running) + 16);
  batch_.sequences.reserve(work_.capacity());
}

Scheduler::~Scheduler() {
  connector_.reset();  // its loads may still be writing into the pool
  if (options_.disk_tier) options_.disk_tier->set_event_observer(nullptr);
}

uint64_t Scheduler::kv_layout_tag(const Model& model, int block_size, KvType kv_type,
                                  KvCodec codec) {
  const ModelConfig& c = model.config();
  return infergrid::kv_layout_tag(
      {model.fingerprint(), block_size, c.n_layer, c.kv_dim(), c.head_dim, kv_type, codec});
}

KvBlockCodec Scheduler::tier_block_codec(const ModelConfig& config, int block_size, KvType kv_type,
                                         KvCodec codec) {
  // One scale per head of one token's K or V in one layer.
  return KvBlockCodec(codec, kv_type, KvPool::block_elements(config, block_size),
                      static_cast<size_t>(config.head_dim));
}

void Scheduler::flush_tiers() {
  if (connector_) connector_->flush();
}

void Scheduler::persist_cached() {
  if (!connector_) return;
  connector_->flush();
  persisting_ = true;
  blocks_.evict_all_cached();
  persisting_ = false;
  connector_->flush();
}

void Scheduler::on_block_evicted(int32_t block, uint64_t key, uint64_t parent_key,
                                 std::span<const int32_t> tokens) {
  // At shutdown straight to the persistent tier (the DRAM tier does not survive a reboot).
  if (persisting_ && connector_->persist(key, parent_key, tokens, pool_.block(block))) return;
  connector_->save_evicted(key, parent_key, tokens, pool_.block(block));
}

Status Scheduler::validate(const GenerationRequest& request) const {
  const auto& prompt = request.prompt;
  const auto& o = request.options;
  if (prompt.empty()) return Status(StatusCode::kInvalidArgument, "the prompt is empty");
  for (int32_t id : prompt) {
    if (id < 0 || id >= model_.config().n_vocab) {
      return make_error(StatusCode::kInvalidArgument,
                        "prompt token id {} is outside the vocabulary [0, {})", id,
                        model_.config().n_vocab);
    }
  }
  for (int32_t id : request.resume_tokens) {
    if (id < 0 || id >= model_.config().n_vocab) {
      return make_error(StatusCode::kInvalidArgument,
                        "resumed token id {} is outside the vocabulary [0, {})", id,
                        model_.config().n_vocab);
    }
  }
  if (!request.resume_tokens.empty() &&
      (static_cast<int64_t>(request.resume_tokens.size()) >= o.max_tokens ||
       static_cast<int64_t>(prompt.size() + request.resume_tokens.size()) >= max_context_)) {
    return make_error(StatusCode::kInvalidArgument,
                      "{} resumed tokens leave nothing to generate (max_tokens {}, context {})",
                      request.resume_tokens.size(), o.max_tokens, max_context_);
  }
  if (static_cast<int64_t>(prompt.size()) >= max_context_) {
    return make_error(StatusCode::kOutOfRange,
                      "the prompt has {} tokens; this model's context holds {} (prompt plus at "
                      "least one generated token)",
                      prompt.size(), max_context_);
  }
  const int64_t blocks_needed =
      (static_cast<int64_t>(prompt.size() + request.resume_tokens.size()) + 1 +
       options_.block_size - 1) /
      options_.block_size;
  if (blocks_needed > options_.n_blocks) {
    return make_error(StatusCode::kOutOfRange,
                      "the prompt has {} tokens; the KV cache holds {} tokens in all (raise "
                      "--kv-cache-bytes)",
                      prompt.size(), static_cast<int64_t>(options_.n_blocks) * options_.block_size);
  }
  if (o.max_tokens < 1) {
    return make_error(StatusCode::kInvalidArgument, "max_tokens must be at least 1, got {}",
                      o.max_tokens);
  }
  if (o.logprobs > 20) {
    return make_error(StatusCode::kInvalidArgument, "top logprobs must be at most 20, got {}",
                      o.logprobs);
  }
  for (const std::string& s : o.stop) {
    if (s.empty()) return Status(StatusCode::kInvalidArgument, "stop strings must not be empty");
  }
  if (o.grammar) {
    if (o.grammar->vocabulary().n_vocab() > model_.config().n_vocab) {
      return make_error(StatusCode::kInvalidArgument,
                        "the grammar is bound to a vocabulary of {} tokens; this model has {}",
                        o.grammar->vocabulary().n_vocab(), model_.config().n_vocab);
    }
    if (o.ignore_eos) {
      // The grammar ends the text with an end-of-generation token; ignoring it would leave
      // the grammar nothing to allow.
      return Status(StatusCode::kInvalidArgument,
                    "ignore_eos cannot be combined with a grammar or response_format");
    }
  }
  if (!o.grammar_trigger.empty() && (!o.grammar || o.grammar_trigger.size() > 256)) {
    return Status(StatusCode::kInvalidArgument,
                  "a grammar trigger needs a grammar and at most 256 bytes");
  }
  for (const auto& [id, bias] : o.sampling.logit_bias) {
    if (id < 0 || id >= model_.config().n_vocab) {
      return make_error(StatusCode::kInvalidArgument,
                        "logit_bias token id {} is outside the vocabulary [0, {})", id,
                        model_.config().n_vocab);
    }
  }
  return Status::ok();
}

Status Scheduler::add(uint64_t id, GenerationRequest request, RequestCallback callback) {
  IG_RETURN_IF_ERROR(validate(request));
  if (sequences_.count(id)) {
    return make_error(StatusCode::kInvalidArgument, "request id {} is already in use", id);
  }
  std::vector<int32_t> resumed = std::move(request.resume_tokens);
  auto seq = std::make_unique<Sequence>(id, next_arrival_++, std::move(request),
                                        std::move(callback), tokenizer_, max_context_);
  IG_RETURN_IF_ERROR(runner_.add_request(id, seq->options.sampling, seq->options.grammar,
                                         seq->options.grammar_trigger, resumed));
  Sequence* raw = seq.get();
  sequences_.emplace(id, std::move(seq));
  // The resumed tokens go through the output exactly as generated ones did, one event each, so
  // the text, held-back stop-string prefixes and the caller's view of them are as they were.
  for (int32_t token : resumed) {
    raw->tokens.push_back(token);
    GeneratedToken generated;
    generated.token = token;
    const FinishReason reason = raw->output.on_token(
        generated, raw->n_generated(), static_cast<int>(raw->tokens.size()), raw->event);
    if (reason != FinishReason::kNone) finish(*raw, reason);
    send(*raw);
    if (raw->finished) break;
  }
  if (raw->finished) {
    remove_finished();
    return Status::ok();
  }
  enqueue_waiting(raw);
  return Status::ok();
}

void Scheduler::enqueue_waiting(Sequence* seq) {
  seq->running = false;
  auto pos = std::find_if(waiting_.begin(), waiting_.end(), [&](const Sequence* other) {
    return other->options.priority < seq->options.priority ||
           (other->options.priority == seq->options.priority && other->arrival > seq->arrival);
  });
  waiting_.insert(pos, seq);
}

void Scheduler::cancel(uint64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end() || it->second->finished) return;
  finish(*it->second, FinishReason::kCancelled);
  send(*it->second);
  remove_finished();
}

void Scheduler::abort_all(FinishReason reason, const Status& error) {
  for (auto& [id, seq] : sequences_) {
    if (seq->finished) continue;
    finish(*seq, reason, error);
    send(*seq);
  }
  remove_finished();
}

bool Scheduler::reserve(Sequence& seq, int n_new_tokens) {
  const int bs = options_.block_size;
  const int first = seq.n_computed;
  const int end = first + n_new_tokens;
  // Copy-on-write: the first block written may be shared (a cached prefix block re-entered to
  // recompute its last token); later ones are always fresh.
  const size_t first_block = static_cast<size_t>(first / bs);
  if (first_block < seq.blocks.size() && blocks_.is_shared(seq.blocks[first_block])) {
    auto copy = blocks_.allocate();
    if (!copy) return false;
    pool_.copy_block(seq.blocks[first_block], *copy);
    blocks_.unref(seq.blocks[first_block]);
    seq.blocks[first_block] = *copy;
  }
  while (static_cast<int>(seq.blocks.size()) * bs < end) {
    auto block = blocks_.allocate();
    if (!block) return false;
    seq.blocks.push_back(*block);
  }
  return true;
}

void Scheduler::release_blocks(Sequence& seq) {
  // Deepest first, so a chain's leaves become least recently used before their parents.
  for (auto it = seq.blocks.rbegin(); it != seq.blocks.rend(); ++it) blocks_.unref(*it);
  seq.blocks.clear();
  seq.n_computed = 0;
  seq.n_committed = 0;
  seq.last_key = kRootBlockKey;
}

void Scheduler::preempt(Sequence& seq) {
  release_blocks(seq);
  seq.tiers_probed = false;  // its blocks may have moved down a tier by the time it resumes
  ++seq.preemptions;
  ++counters_.preemptions;
  running_.erase(std::find(running_.begin(), running_.end(), &seq));
  enqueue_waiting(&seq);
}

Scheduler::Sequence* Scheduler::lowest_priority_running() {
  Sequence* victim = nullptr;
  for (Sequence* s : running_) {
    if (victim == nullptr || s->options.priority < victim->options.priority ||
        (s->options.priority == victim->options.priority && s->arrival > victim->arrival)) {
      victim = s;
    }
  }
  return victim;
}

void Scheduler::match_prefix(Sequence& seq) {
  // Reuse the longest cached prefix; at least the last token is always computed, for logits.
  const int bs = options_.block_size;
  const int n_tokens = static_cast<int>(seq.tokens.size());
  BlockManager::Match match = blocks_.match(seq.tokens, n_tokens / bs);
  seq.blocks = std::move(match.blocks);
  seq.commit_stopped = false;
  seq.n_committed = static_cast<int>(seq.blocks.size());
  seq.last_key = match.keys.empty() ? kRootBlockKey : match.keys.back();
  seq.n_computed = std::min(seq.n_committed * bs, n_tokens - 1);
}

bool Scheduler::start_tier_load(Sequence& seq) {
  seq.tiers_probed = true;
  const int bs = options_.block_size;
  const int n_full = static_cast<int>(seq.tokens.size()) / bs;
  if (seq.n_committed >= n_full) return false;
  // Which of the following blocks some tier holds: a cheap probe first, so a prompt no tier
  // knows costs neither blocks (allocating may evict cached ones) nor a trip to the loader.
  std::vector<uint64_t> keys;
  uint64_t parent = seq.last_key;
  for (int b = seq.n_committed; b < n_full; ++b) {
    parent = block_key(parent,
                       std::span<const int32_t>(seq.tokens)
                           .subspan(static_cast<size_t>(b) * bs, static_cast<size_t>(bs)),
                       model_.fingerprint());
    keys.push_back(parent);
  }
  const size_t n_present = connector_->present_prefix(keys);
  if (n_present == 0) return false;

  auto job = std::make_shared<TierLoader::Job>();
  job->parent_key = seq.last_key;
  for (size_t i = 0; i < n_present; ++i) {
    auto block = blocks_.allocate();
    if (!block) break;
    seq.load_blocks.push_back(*block);
    job->dest.push_back(pool_.block(*block));
  }
  if (seq.load_blocks.empty()) return false;
  const auto first = seq.tokens.begin() + static_cast<ptrdiff_t>(seq.n_committed) * bs;
  job->tokens.assign(first, first + static_cast<ptrdiff_t>(job->dest.size()) * bs);
  seq.load = job;
  connector_->loader().submit(std::move(job));
  return true;
}

void Scheduler::finish_tier_load(Sequence& seq) {
  const int bs = options_.block_size;
  const int n_loaded = seq.load->n_loaded;
  for (int i = 0; i < static_cast<int>(seq.load_blocks.size()); ++i) {
    const int32_t block = seq.load_blocks[static_cast<size_t>(i)];
    if (i >= n_loaded || seq.commit_stopped) {
      blocks_.unref(block);
      continue;
    }
    const auto block_tokens =
        std::span<const int32_t>(seq.tokens)
            .subspan(static_cast<size_t>(seq.n_committed) * bs, static_cast<size_t>(bs));
    const auto committed = blocks_.commit(seq.last_key, block_tokens, block);
    seq.blocks.push_back(committed.block);
    seq.last_key = committed.key;
    ++seq.n_committed;
    if (committed.block == block) ++seq.tier_hit_blocks;  // else engine memory had it already
    // Nothing may hang under a block that did not join the tree (see after_compute).
    if (!committed.in_tree) seq.commit_stopped = true;
  }
  seq.load_blocks.clear();
  seq.load.reset();
  seq.n_computed = std::min(seq.n_committed * bs, static_cast<int>(seq.tokens.size()) - 1);
}

bool Scheduler::prefix_in_flight(const Sequence& seq) const {
  if (!options_.prefix_caching) return false;
  const int bs = options_.block_size;
  const auto shares_more = [&](const Sequence* other) {
    const size_t limit = std::min(seq.tokens.size(), static_cast<size_t>(other->n_prompt));
    const auto [mine, theirs] =
        std::mismatch(seq.tokens.begin(), seq.tokens.begin() + static_cast<ptrdiff_t>(limit),
                      other->tokens.begin());
    return static_cast<int>(mine - seq.tokens.begin()) / bs > seq.n_committed;
  };
  for (const Sequence* other : running_) {
    if (other->n_computed >= other->n_prompt) continue;  // its prompt is already cached
    if (shares_more(other)) return true;
  }
  // A prefix being loaded from the tiers is in flight too: load it once, not twice.
  return std::any_of(waiting_.begin(), waiting_.end(), [&](const Sequence* other) {
    return other != &seq && other->load && shares_more(other);
  });
}

void Scheduler::admit_waiting(int& budget, bool whole_prompts) {
  admission_ran_ = true;
  // Short tier loads (a few DRAM blocks) are waited for here; see tier_load_wait_us.
  auto inline_wait = std::chrono::microseconds(options_.tier_load_wait_us);
  // A request whose prefix another sequence is computing right now waits one step or more, so
  // the shared part is computed once and then served from the cache.
  for (auto it = waiting_.begin(); it != waiting_.end() &&
                                   static_cast<int>(running_.size()) < options_.max_running &&
                                   (budget > 0 || whole_prompts);) {
    Sequence* seq = *it;
    if (seq->load) {
      // Its tier load (started in an earlier step) holds blocks; it is admitted as soon as the
      // load is done, and later requests go ahead of it meanwhile.
      if (!seq->load->done()) {
        ++it;
        continue;
      }
      finish_tier_load(*seq);
    } else {
      match_prefix(*seq);
      if (prefix_in_flight(*seq)) {
        release_blocks(*seq);
        ++it;
        continue;
      }
      if (connector_ && !seq->tiers_probed && start_tier_load(*seq)) {
        const auto started = std::chrono::steady_clock::now();
        const bool done =
            inline_wait.count() > 0 && connector_->loader().wait(*seq->load, inline_wait);
        inline_wait -= std::min(inline_wait, std::chrono::duration_cast<std::chrono::microseconds>(
                                                 std::chrono::steady_clock::now() - started));
        if (!done) {
          ++it;  // the load goes on while this step computes
          continue;
        }
        finish_tier_load(*seq);
      }
    }
    const int remaining = static_cast<int>(seq->tokens.size()) - seq->n_computed;
    const int n = whole_prompts ? remaining : std::min(remaining, budget);
    if (!reserve(*seq, n)) {
      // Its loaded blocks stay cached, and in the DRAM tier: the next attempt finds them in
      // one or the other.
      release_blocks(*seq);
      seq->tiers_probed = false;
      break;  // first come, first served: later requests do not jump ahead for blocks
    }
    if (seq->cached_tokens < 0) {
      seq->cached_tokens = std::min(seq->n_computed, seq->n_prompt);
      counters_.prompt_tokens += static_cast<uint64_t>(seq->n_prompt);
      counters_.prefix_hit_tokens += static_cast<uint64_t>(seq->cached_tokens);
      counters_.tier_hit_tokens += static_cast<uint64_t>(
          std::min(seq->tier_hit_blocks * options_.block_size, seq->cached_tokens));
    }
    seq->tier_hit_blocks = 0;
    it = waiting_.erase(it);
    seq->running = true;
    running_.push_back(seq);
    work_.push_back({seq, n});
    seq->scheduled = true;
    budget -= std::min(budget, n);
    if (whole_prompts && budget == 0) break;
  }
  reclaim_tier_loads(/*wait=*/false);
}

bool Scheduler::reclaim_tier_loads(bool wait) {
  // A done load whose sequence was not admitted gives its blocks back to the cache (where
  // admission finds them again), so no waiting sequence holds blocks while others need them.
  bool reclaimed = false;
  for (Sequence* seq : waiting_) {
    if (!seq->load) continue;
    if (!seq->load->done()) {
      if (!wait) continue;
      connector_->loader().wait(*seq->load);
    }
    finish_tier_load(*seq);
    release_blocks(*seq);
    seq->tiers_probed = false;  // what is evicted before its turn comes is loaded again
    reclaimed = true;
  }
  return reclaimed;
}

bool Scheduler::reserve_preempting(Sequence& seq, int n_new_tokens) {
  while (!reserve(seq, n_new_tokens)) {
    // Blocks held by tier loads come back before any running sequence is preempted or cut
    // short: a load is worth less than a running stream.
    if (reclaim_tier_loads(/*wait=*/true)) continue;
    Sequence* victim = lowest_priority_running();
    // A sequence already in this step's batch keeps its blocks.
    if (victim == &seq || victim->scheduled) return false;
    preempt(*victim);
  }
  return true;
}

Result<StepResult> Scheduler::step() {
  StepResult result;
  work_.clear();
  int budget = options_.max_batch_tokens;
  ++counters_.steps;

  admission_ran_ = false;
  for (Sequence* seq : running_) seq->scheduled = false;
  // Running sequences in priority order; victims come from the end of this order.
  std::vector<Sequence*> order(running_.begin(), running_.end());
  std::stable_sort(order.begin(), order.end(), [](const Sequence* a, const Sequence* b) {
    return a->options.priority > b->options.priority ||
           (a->options.priority == b->options.priority && a->arrival < b->arrival);
  });

  // Without chunked prefill, a step that can admit prompts runs them whole and alone (running
  // streams wait); when none can be admitted it is an ordinary decode step.
  bool whole_prompt_step = false;
  if (!options_.chunked_prefill && !waiting_.empty() &&
      static_cast<int>(running_.size()) < options_.max_running) {
    admit_waiting(budget, /*whole_prompts=*/true);
    whole_prompt_step = !work_.empty();
  }

  if (!whole_prompt_step) {
    // 1. One token for every decoding sequence, preempting from the end of the order when
    //    blocks run out.
    for (Sequence* seq : order) {
      if (!seq->running || !seq->decoding()) continue;
      if (budget == 0) break;
      if (!reserve_preempting(*seq, 1)) {
        if (running_.size() == 1) {
          // Alone and still out of blocks: the pool cannot hold this sequence any longer.
          finish(*seq, FinishReason::kLength);
        } else {
          preempt(*seq);
        }
        continue;
      }
      work_.push_back({seq, 1});
      seq->scheduled = true;
      --budget;
    }
    // 2. Prefill chunks of running sequences that are still prefilling. They may preempt
    //    lower-priority sequences too, or two half-prefilled prompts could wait for each
    //    other's blocks forever.
    for (Sequence* seq : order) {
      if (!seq->running || seq->decoding() || budget == 0) continue;
      const int remaining = static_cast<int>(seq->tokens.size()) - seq->n_computed;
      const int n = std::min(remaining, budget);
      if (!reserve_preempting(*seq, n)) continue;  // it is the lowest: it waits
      work_.push_back({seq, n});
      seq->scheduled = true;
      budget -= n;
    }
    // 3. New requests.
    if (options_.chunked_prefill) admit_waiting(budget, /*whole_prompts=*/false);
  }
  // Without an admission pass (running slots full, or a no-chunking decode step), done loads
  // still give their blocks back.
  if (connector_ && !admission_ran_) reclaim_tier_loads(/*wait=*/false);

  for (const Work& w : work_) {
    ++result.n_sequences;
    result.n_tokens += w.n_tokens;
    if (w.seq->decoding() && w.n_tokens == 1) ++result.n_decodes;
  }
  if (!work_.empty()) {
    to_batch(work_, batch_);
    IG_RETURN_IF_ERROR(runner_.execute(batch_, output_));
    update(batch_, output_);
  } else if (connector_) {
    // Nothing to compute but loads in flight: wait for one rather than spin (briefly, since
    // new requests are not taken in meanwhile).
    std::vector<const TierLoader::Job*> jobs;
    for (const Sequence* seq : waiting_) {
      if (seq->load) jobs.push_back(seq->load.get());
    }
    if (!jobs.empty()) connector_->loader().wait_any(jobs, std::chrono::milliseconds(5));
  }
  counters_.computed_tokens += static_cast<uint64_t>(result.n_tokens);

  for (const Work& w : work_) {
    if (!w.seq->event.tokens.empty() || w.seq->event.finished || !w.seq->event.text.empty()) {
      send(*w.seq);
    }
  }
  for (Sequence* seq : running_) {  // finished outside the work list (out of blocks)
    if (seq->finished) send(*seq);
  }
  remove_finished();
  return result;
}

void Scheduler::to_batch(const std::vector<Work>& work, ScheduledBatch& batch) const {
  batch.sequences.clear();
  for (const Work& w : work) {
    const Sequence& seq = *w.seq;
    ScheduledSequence s;
    s.request_id = seq.id;
    s.start_position = seq.n_computed;
    s.tokens = std::span<const int32_t>(seq.tokens)
                   .subspan(static_cast<size_t>(seq.n_computed), static_cast<size_t>(w.n_tokens));
    s.block_table = seq.blocks.data();
    s.sample = seq.n_computed + w.n_tokens == static_cast<int>(seq.tokens.size());
    s.penalty_history = std::span<const int32_t>(seq.tokens);
    if (!seq.options.sampling.penalize_prompt) {
      s.penalty_history = s.penalty_history.subspan(static_cast<size_t>(seq.n_prompt));
    }
    s.logprobs = seq.options.logprobs;
    batch.sequences.push_back(s);
  }
}

void Scheduler::update(const ScheduledBatch& batch, const StepOutput& output) {
  size_t next_sampled = 0;
  for (const ScheduledSequence& s : batch.sequences) {
    Sequence& seq = *sequences_.at(s.request_id);
    commit_computed(seq, static_cast<int>(s.tokens.size()));
    if (!s.sample) continue;
    const SampledToken& sampled = output.sampled[next_sampled++];
    if (!sampled.error.is_ok()) {
      finish(seq, FinishReason::kError, sampled.error);
      continue;
    }
    emit_token(seq, sampled.token);
  }
}

void Scheduler::commit_computed(Sequence& seq, int n_tokens) {
  const int bs = options_.block_size;
  seq.n_computed += n_tokens;
  // Full blocks become shareable: register them with the prefix cache.
  while ((seq.n_committed + 1) * bs <= seq.n_computed) {
    const auto block_tokens =
        std::span<const int32_t>(seq.tokens)
            .subspan(static_cast<size_t>(seq.n_committed) * bs, static_cast<size_t>(bs));
    int32_t& block = seq.blocks[static_cast<size_t>(seq.n_committed)];
    if (seq.commit_stopped) break;
    const auto committed = blocks_.commit(seq.last_key, block_tokens, block);
    if (!committed.in_tree) {
      // A key collision (or a parent no longer cached): this sequence's later blocks must not
      // hang under a node that is not theirs, so they stay private.
      seq.commit_stopped = options_.prefix_caching;
    }
    // Write-through, so other processes can serve this prefix.
    if (connector_ && committed.in_tree && committed.block == block) {
      connector_->save_computed(committed.key, seq.last_key, block_tokens, pool_.block(block));
    }
    seq.last_key = committed.key;
    block = committed.block;
    ++seq.n_committed;
  }
}

void Scheduler::emit_token(Sequence& seq, const GeneratedToken& token) {
  seq.tokens.push_back(token.token);
  ++counters_.generated_tokens;
  const FinishReason reason =
      seq.output.on_token(token, seq.n_generated(), static_cast<int>(seq.tokens.size()), seq.event);
  if (reason != FinishReason::kNone) finish(seq, reason);
}

void Scheduler::finish(Sequence& seq, FinishReason reason, const Status& error) {
  if (seq.finished) return;
  seq.finished = true;
  seq.running = false;  // out of this step's remaining phases too
  seq.event.finished = true;
  seq.event.finish_reason = reason;
  seq.event.error = error;
  if (seq.load) {
    connector_->loader().wait(*seq.load);  // the loader may still be writing into its blocks
    for (int32_t block : seq.load_blocks) blocks_.unref(block);
    seq.load_blocks.clear();
    seq.load.reset();
  }
  release_blocks(seq);
  if (reason == FinishReason::kCancelled) {
    ++counters_.cancelled_requests;
  } else {
    ++counters_.finished_requests;
  }
}

void Scheduler::send(Sequence& seq) {
  if (seq.final_sent) return;
  seq.final_sent = seq.finished;
  RequestEvent& e = seq.event;
  e.request_id = seq.id;
  e.prompt_tokens = seq.n_prompt;
  e.cached_tokens = std::max(0, seq.cached_tokens);
  e.completion_tokens = seq.n_generated();
  e.preemptions = seq.preemptions;
  if (seq.callback) seq.callback(e);
  e.tokens.clear();
  e.text.clear();
}

void Scheduler::remove_finished() {
  std::erase_if(running_, [](const Sequence* s) { return s->finished; });
  std::erase_if(waiting_, [](const Sequence* s) { return s->finished; });
  std::erase_if(sequences_, [this](const auto& entry) {
    if (entry.second->finished) runner_.remove_request(entry.first);
    return entry.second->finished;
  });
}

}  // namespace infergrid
