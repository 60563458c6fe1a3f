// OutputProcessor: one request's generated tokens turned into what its caller receives — token
// events with log-probabilities, text, and the reason it finished (end-of-generation or stop
// token, stop string, max_tokens, context full).
//
// Text is built on the one StreamingDecoder (never half a UTF-8 character) and searched for the
// request's stop strings; the end of the text that could still begin a stop string is held back
// until it is decided, and the text before a matched stop string is the last sent. Invariant:
// what is sent, followed by what is held, is exactly the decoded text so far (up to a stop).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "engine/request.h"
#include "model/tokenizer.h"

namespace infergrid {

class OutputProcessor {
 public:
  // max_context: positions a sequence may hold (prompt + generated).
  OutputProcessor(const Tokenizer& tokenizer, const RequestOptions& options, int max_context);

  // Appends `token` (with its log-probabilities, when asked), the n_generated-th generated
  // token of a sequence of n_total tokens, to `event`; returns kStop or kLength when it ends
  // the request, else kNone. A stop token is not added to the event's tokens; its text goes to
  // event.stop_matched.
  FinishReason on_token(GeneratedToken token, int n_generated, int n_total, RequestEvent& event);

 private:
  // Appends everything held back to event.text.
  void flush(RequestEvent& event);

  const Tokenizer& tokenizer_;
  const RequestOptions& options_;
  int max_context_;
  size_t max_stop_bytes_ = 0;
  StreamingDecoder decoder_;
  std::string held_;  // decoded text not yet sent: it may begin a stop string
};

// Log-probabilities of one logits row: the chosen token's, and the top_n most likely.
void compute_logprobs(std::span<const float> logits, int32_t chosen, int top_n,
                      GeneratedToken& out);

}  // namespace infergrid
