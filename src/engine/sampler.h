// Sampler: turns one row of logits into the next token, per request settings.
//
// Order of operations (as llama.cpp's default chain): repetition / presence / frequency
// penalties over the recent tokens -> logit bias -> the grammar's mask -> top-k -> temperature ->
// softmax -> top-p -> min-p -> draw. temperature <= 0 means greedy (argmax after penalties). The
// random stream is owned by the sampler and seeded per request, so a seed reproduces the same text
// whatever else runs. Invariant: candidate storage is sized once (n_vocab) and reused; sampling
// never allocates.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace infergrid {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;                   // <= 0: disabled
  float top_p = 0.95f;              // >= 1: disabled
  float min_p = 0.05f;              // <= 0: disabled
  float repetition_penalty = 1.0f;  // 1: disabled (llama.cpp's repeat_penalty)
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;  // how many recent tokens the penalties look at (< 0: all)
  // Whether the prompt counts for the penalties (llama.cpp: yes; OpenAI's presence and
  // frequency penalties: only generated tokens). Applied by the serving scheduler.
  bool penalize_prompt = true;
  uint64_t seed = 0xC0FFEE;
  // Added to a token's logit after the penalties (OpenAI's logit_bias; -inf bans the token).
  std::vector<std::pair<int32_t, float>> logit_bias;

  static SamplingParams greedy() {
    SamplingParams p;
    p.temperature = 0.0f;
    return p;
  }
};

class Sampler {
 public:
  Sampler(int n_vocab, const SamplingParams& params);

  // history: tokens so far (prompt + generated), for the penalties. logits is not modified.
  // allowed (empty: every token): bit `id` set for each token that may be drawn; at least one
  // must be set, and no other token is ever returned.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history,
                 std::span<const uint64_t> allowed = {});
  const SamplingParams& params() const { return params_; }
  // The random stream as it would be after n_samples calls of sample(): a request resumed
  // elsewhere with its tokens so far draws what the uninterrupted one would have drawn next.
  void advance(int n_samples);

  static int32_t argmax(std::span<const float> logits);

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  void apply_penalties(std::span<const int32_t> history);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
  std::vector<int32_t> penalty_counts_;  // per token id, reset after each use
};

}  // namespace infergrid
