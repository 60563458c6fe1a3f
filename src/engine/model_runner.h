// ModelRunner: executes what the scheduler decided. It owns the KV pool, the forward pass's
// scratch and every request's sampler and grammar matcher; execute() runs a ScheduledBatch through
// the model in passes of at most max_batch_tokens and samples one token for each sequence that
// asks.
//
// The batch is plain data (request ids, token spans, positions, block tables), so the runner
// never sees the scheduler's state, and a runner on another device or process could take the
// same batch. Invariants: a sequence's tokens may span several passes, and only its final
// piece produces logits; a request's sampler lives from add_request() to remove_request(), so a
// preempted request continues its random stream, and its grammar, where it stopped. A sampled
// token has already advanced its request's grammar; a request whose grammar cannot go on gets
// an error instead of a token.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "engine/kv_pool.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "grammar/grammar_matcher.h"
#include "kernels/backend.h"
#include "model/model.h"

namespace infergrid {

struct ScheduledSequence {
  uint64_t request_id = 0;
  std::span<const int32_t> tokens;  // to compute, at positions start_position onwards
  int start_position = 0;
  const int32_t* block_table = nullptr;      // covers positions up to the last of `tokens`
  bool sample = false;                       // tokens end the sequence: sample the next token
  std::span<const int32_t> penalty_history;  // what the sampler's penalties look at
  int logprobs = -1;                         // as RequestOptions::logprobs
};

struct ScheduledBatch {
  std::vector<ScheduledSequence> sequences;
  int n_tokens() const {
    int n = 0;
    for (const auto& s : sequences) n += static_cast<int>(s.tokens.size());
    return n;
  }
};

struct SampledToken {
  uint64_t request_id = 0;
  GeneratedToken token;  // with log-probabilities when the sequence asked for them
  Status error;          // not ok: no token (the request's grammar could not go on)
};

struct StepOutput {
  std::vector<SampledToken> sampled;  // in batch order
};

struct ModelRunnerOptions {
  int block_size = 16;
  int n_blocks = 0;
  KvType kv_type = kDefaultKvType;
  int max_batch_tokens = 256;  // tokens per forward pass
  int max_logit_rows = 64;     // sampled sequences per forward pass
};

class ModelRunner {
 public:
  ModelRunner(const Model& model, Backend& backend, const ModelRunnerOptions& options);

  // grammar: null, or bound to a vocabulary of the model's size.
  // grammar_trigger: see RequestOptions (empty: the grammar applies from the first token).
  // resumed: tokens the request already produced elsewhere (GenerationRequest::resume_tokens);
  // the sampler's stream and the grammar are brought to where they stood after them. An error
  // (a resumed token the grammar refuses) leaves no request added.
  Status add_request(uint64_t request_id, const SamplingParams& sampling,
                     std::shared_ptr<const CompiledGrammar> grammar = nullptr,
                     std::string grammar_trigger = {}, std::span<const int32_t> resumed = {});
  void remove_request(uint64_t request_id);

  // Computes every sequence's tokens into its blocks and fills `out` with the sampled tokens.
  Status execute(const ScheduledBatch& batch, StepOutput& out);

  KvPool& pool() { return pool_; }

 private:
  const Model& model_;
  Backend& backend_;
  ModelRunnerOptions options_;
  KvPool pool_;
  ForwardScratch scratch_;
  struct RequestState {
    Sampler sampler;
    std::optional<GrammarMatcher> matcher;
    std::vector<uint64_t> mask;  // the matcher's, reused step after step
    // A lazy grammar: inactive until `trigger` shows in the output; `tail` keeps the last
    // bytes of the output, enough to find a trigger split across tokens.
    std::string trigger;
    std::string tail;
    bool grammar_active = true;
  };
  // The grammar's (and the lazy trigger's) view of one token the request produced.
  static Status observe(RequestState& state, int32_t token);
  // The next token of one request from its logits row.
  Status sample(RequestState& state, const ScheduledSequence& s, std::span<const float> logits,
                GeneratedToken& out);

  std::unordered_map<uint64_t, RequestState> requests_;
  std::vector<BatchSequence> pass_;    // one forward pass
  std::vector<size_t> pass_sequence_;  // its pieces' indices in the batch
};

}  // namespace infergrid
