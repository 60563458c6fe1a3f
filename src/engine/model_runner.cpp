#include "engine/model_runner.h"

#include <algorithm>
#include <cassert>

#include "engine/output_processor.h"

namespace infergrid {

ModelRunner::ModelRunner(const Model& model, Backend& backend, const ModelRunnerOptions& options)
    : model_(model),
      backend_(backend),
      options_(options),
      pool_(model.config(), options.block_size, options.n_blocks, options.kv_type),
      scratch_(model.config(), options.max_batch_tokens,
               std::min(options.max_batch_tokens, options.max_logit_rows)) {
  pass_.reserve(static_cast<size_t>(options.max_batch_tokens));
  pass_sequence_.reserve(static_cast<size_t>(options.max_batch_tokens));
}

void ModelRunner::add_request(uint64_t request_id, const SamplingParams& sampling) {
  [[maybe_unused]] const bool added =
      samplers_.try_emplace(request_id, model_.config().n_vocab, sampling).second;
  assert(added && "a request id is added twice");
}

void ModelRunner::remove_request(uint64_t request_id) {
  samplers_.erase(request_id);
}

Status ModelRunner::execute(const ScheduledBatch& batch, StepOutput& out) {
  out.sampled.clear();
  const KvStorage storage = pool_.storage();
  const auto n_vocab = static_cast<size_t>(model_.config().n_vocab);
  size_t next = 0;
  size_t offset_in_next = 0;
  while (next < batch.sequences.size()) {
    pass_.clear();
    pass_sequence_.clear();
    int tokens = 0;
    int logit_rows = 0;
    while (next < batch.sequences.size() && tokens < options_.max_batch_tokens &&
           logit_rows < scratch_.max_logit_rows) {
      const ScheduledSequence& s = batch.sequences[next];
      const size_t n = std::min(s.tokens.size() - offset_in_next,
                                static_cast<size_t>(options_.max_batch_tokens - tokens));
      const bool last_piece = offset_in_next + n == s.tokens.size();
      BatchSequence b;
      b.tokens = s.tokens.subspan(offset_in_next, n);
      b.start_pos = s.start_position + static_cast<int>(offset_in_next);
      b.block_table = s.block_table;
      b.logits =
          last_piece && s.sample ? BatchSequence::Logits::kLast : BatchSequence::Logits::kNone;
      pass_.push_back(b);
      pass_sequence_.push_back(next);
      tokens += static_cast<int>(n);
      logit_rows += b.logits == BatchSequence::Logits::kLast ? 1 : 0;
      if (last_piece) {
        ++next;
        offset_in_next = 0;
      } else {
        offset_in_next += n;
      }
    }
    IG_ASSIGN_OR_RETURN(std::span<const float> logits,
                        model_.forward_batch(backend_, storage, scratch_, pass_));
    const float* row = logits.data();
    for (size_t i = 0; i < pass_.size(); ++i) {
      if (pass_[i].logits != BatchSequence::Logits::kLast) continue;
      const ScheduledSequence& s = batch.sequences[pass_sequence_[i]];
      const std::span<const float> row_logits(row, n_vocab);
      row += n_vocab;
      auto sampler = samplers_.find(s.request_id);
      if (sampler == samplers_.end()) {
        return make_error(StatusCode::kInternal, "no sampler for request {}", s.request_id);
      }
      SampledToken sampled;
      sampled.request_id = s.request_id;
      sampled.token.token = sampler->second.sample(row_logits, s.penalty_history);
      if (s.logprobs >= 0) {
        compute_logprobs(row_logits, sampled.token.token, s.logprobs, sampled.token);
      }
      out.sampled.push_back(std::move(sampled));
    }
  }
  return Status::ok();
}

}  // namespace infergrid
