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

Status ModelRunner::add_request(uint64_t request_id, const SamplingParams& sampling,
                                std::shared_ptr<const CompiledGrammar> grammar,
                                std::string grammar_trigger, std::span<const int32_t> resumed) {
  RequestState state{Sampler(model_.config().n_vocab, sampling), std::nullopt, {}, {}, {}, true};
  if (grammar) {
    state.trigger = std::move(grammar_trigger);
    state.grammar_active = state.trigger.empty();
    const size_t model_words = (static_cast<size_t>(model_.config().n_vocab) + 63) / 64;
    state.mask.assign(std::max(model_words, grammar->vocabulary().mask_words()), 0);
    state.matcher.emplace(std::move(grammar));
  }
  state.sampler.advance(static_cast<int>(resumed.size()));
  for (int32_t token : resumed) IG_RETURN_IF_ERROR(observe(state, token));
  [[maybe_unused]] const bool added = requests_.try_emplace(request_id, std::move(state)).second;
  assert(added && "a request id is added twice");
  return Status::ok();
}

void ModelRunner::remove_request(uint64_t request_id) {
  requests_.erase(request_id);
}

Status ModelRunner::observe(RequestState& state, int32_t token) {
  if (!state.matcher) return Status::ok();
  GrammarMatcher& matcher = *state.matcher;
  if (state.grammar_active) return matcher.accept_token(token);
  const TokenVocabulary& vocab = matcher.compiled().vocabulary();
  if (token < 0 || token >= vocab.n_vocab()) return Status::ok();
  state.tail += vocab.piece(token);
  const size_t at = state.tail.find(state.trigger);
  if (at == std::string::npos) {
    const size_t keep = state.trigger.size() - 1;
    if (state.tail.size() > keep) state.tail.erase(0, state.tail.size() - keep);
    return Status::ok();
  }
  // From the trigger on, the text is the grammar's. When what this token brought past the
  // trigger cannot begin a sentence of it, the rest stays free, as with no grammar at all
  // (what vLLM does for `auto`): a malformed call is read as content, never an error.
  state.grammar_active = true;
  const std::string from_trigger = state.tail.substr(at);
  state.tail.clear();
  if (!matcher.accept_bytes(from_trigger).is_ok()) state.matcher.reset();
  return Status::ok();
}

Status ModelRunner::sample(RequestState& state, const ScheduledSequence& s,
                           std::span<const float> logits, GeneratedToken& out) {
  if (!state.matcher || !state.grammar_active) {
    out.token = state.sampler.sample(logits, s.penalty_history);
    return observe(state, out.token);
  }
  GrammarMatcher& matcher = *state.matcher;
  // The mask covers the model's rows; a tokenizer may have fewer tokens than the embedding table
  // (validated: never more), and the rows past it stay zero.
  const size_t grammar_words = matcher.compiled().vocabulary().mask_words();
  IG_RETURN_IF_ERROR(matcher.fill_mask(std::span<uint64_t>(state.mask).first(grammar_words)));
  bool any = false;
  for (uint64_t word : state.mask) any = any || word != 0;
  if (!any) {
    return Status(StatusCode::kInvalidArgument,
                  "the grammar cannot continue: no token of this model's vocabulary spells what "
                  "it requires next");
  }
  out.token = state.sampler.sample(logits, s.penalty_history, state.mask);
  return observe(state, out.token);
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
      auto state = requests_.find(s.request_id);
      if (state == requests_.end()) {
        return make_error(StatusCode::kInternal, "no sampler for request {}", s.request_id);
      }
      SampledToken sampled;
      sampled.request_id = s.request_id;
      sampled.error = sample(state->second, s, row_logits, sampled.token);
      if (sampled.error.is_ok() && s.logprobs >= 0) {
        compute_logprobs(row_logits, sampled.token.token, s.logprobs, sampled.token);
      }
      out.sampled.push_back(std::move(sampled));
    }
  }
  return Status::ok();
}

}  // namespace infergrid
