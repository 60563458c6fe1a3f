// Generator: single-sequence text generation (prefill the prompt, then decode token by token)
// over a Model, a Tokenizer and a Backend. This is the simple path that batched, cached and
// preempted serving must reproduce token for token.
//
// Invariant: the KV cache and scratch are allocated in the constructor; the token loop does
// not allocate for the model (streamed text goes through the tokenizer's StreamingDecoder).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/sampler.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace infergrid {

struct GenerateOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  bool stop_at_eog = true;  // stop at end-of-generation tokens (EOS, <|eot_id|>, ...)
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // time of the generated tokens after the first
  std::string finish_reason;  // "stop" (end-of-generation token) or "length"
};

class Generator {
 public:
  // max_context: positions the KV cache holds; max_batch_tokens: prompt tokens per forward.
  Generator(const Model& model, const Tokenizer& tokenizer, Backend& backend, int max_context,
            int max_batch_tokens = 256, KvType kv_type = kDefaultKvType);

  // Called with each generated token id; return false to stop.
  using TokenCallback = std::function<bool(int32_t token)>;
  Result<GenerateStats> generate_tokens(std::span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const TokenCallback& on_token);

  // Called with complete UTF-8 text as it becomes available; return false to stop.
  using TextCallback = std::function<bool(std::string_view text)>;
  Result<GenerateStats> generate(std::string_view prompt, const GenerateOptions& options,
                                 const TextCallback& on_text);

  int max_context() const { return cache_.max_positions(); }

 private:
  const Model& model_;
  const Tokenizer& tokenizer_;
  Backend& backend_;
  KvCache cache_;
  ForwardScratch scratch_;
  std::vector<int32_t> history_;
};

}  // namespace infergrid
