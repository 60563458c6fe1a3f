// Request and output types of the serving engine: what a caller submits, and the events it
// receives back as the request runs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/sampler.h"

namespace infergrid {

class CompiledGrammar;

struct RequestOptions {
  int max_tokens = 16;  // OpenAI's completions default
  SamplingParams sampling;
  std::vector<std::string> stop;        // stop strings: generation ends before the first one
  std::vector<int32_t> stop_token_ids;  // extra tokens that end generation (not emitted)
  bool ignore_eos = false;              // keep going through end-of-generation tokens
  int logprobs = -1;                    // < 0: none; 0: the chosen token's; N: and the top N
  int priority = 0;                     // higher is served first, preempted last
  // Constrained decoding: every sampled token keeps the text a prefix of a sentence of this
  // grammar, and the request ends (with an end-of-generation token) only where one is complete.
  // Bound to the model's vocabulary; null: unconstrained.
  std::shared_ptr<const CompiledGrammar> grammar;
  // Non-empty: the grammar is lazy. Tokens are free until the output contains this text (the
  // start of a tool call, say), and from there on the grammar constrains the rest, the trigger
  // included, as llama.cpp's lazy grammars do for `tool_choice: auto`; if the token that
  // completes the trigger brings text the grammar refuses, the rest of the output is free.
  std::string grammar_trigger;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // token ids (the caller tokenizes, chat templates included)
  RequestOptions options;
  // Tokens an earlier run of this request already generated (on an instance that failed): they
  // are taken as its first outputs, so the request continues where that run stood. Each is
  // reported in an event of its own, as when it was generated, before anything is computed; they
  // count toward max_tokens and completion_tokens, and the sampler and grammar are advanced past
  // them, so greedy and seeded output is the uninterrupted run's.
  std::vector<int32_t> resume_tokens;
};

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* finish_reason_name(FinishReason reason);

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0;
};

struct GeneratedToken {
  int32_t token = -1;
  float logprob = 0;              // valid when logprobs >= 0 was asked
  std::vector<TokenLogprob> top;  // the top N alternatives, most likely first
};

// One callback per engine step in which something happened to the request. Text arrives as
// complete UTF-8, with any possible start of a stop string held back until it is decided.
struct RequestEvent {
  uint64_t request_id = 0;
  std::vector<GeneratedToken> tokens;  // tokens produced this step (stop tokens excluded)
  std::string text;                    // new text
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  std::string stop_matched;  // the stop string or token text that ended it, if any
  Status error;              // set when finish_reason == kError
  // Totals, valid in every event.
  int prompt_tokens = 0;
  int cached_tokens = 0;  // prompt tokens served from the prefix cache at admission
  int completion_tokens = 0;
  int preemptions = 0;
};

// Runs on the engine's step thread: it must be quick and must not call back into the engine
// except submit/cancel (which only queue work).
using RequestCallback = std::function<void(const RequestEvent& event)>;

}  // namespace infergrid
