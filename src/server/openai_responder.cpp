#include "server/openai_responder.h"

#include <utility>

namespace infergrid {

namespace {

std::string sse(const std::string& payload) {
  return "data: " + payload + "\n\n";
}

}  // namespace

OpenAiResponder::OpenAiResponder(const Tokenizer& tokenizer, Endpoint endpoint, ResponseMeta meta,
                                 bool stream, bool include_usage, bool logprobs)
    : tokenizer_(tokenizer),
      endpoint_(endpoint),
      meta_(std::move(meta)),
      stream_(stream),
      include_usage_(include_usage),
      logprobs_(logprobs) {}

OpenAiResponder::Output OpenAiResponder::on_event(const RequestEvent& e) {
  Output out;
  std::vector<ChoiceLogprob> logprobs;
  if (logprobs_) {
    for (const auto& t : e.tokens) {
      ChoiceLogprob lp{tokenizer_.token_to_piece(t.token), t.logprob, {}};
      for (const auto& alt : t.top) {
        lp.top.emplace_back(tokenizer_.token_to_piece(alt.token), alt.logprob);
      }
      logprobs.push_back(std::move(lp));
    }
  }
  usage_ = {e.prompt_tokens, e.completion_tokens, e.cached_tokens};
  if (stream_) {
    if (!e.text.empty() || !logprobs.empty() || first_chunk_) {
      out.sse.push_back(sse(stream_chunk(meta_, endpoint_, e.text, logprobs_ ? &logprobs : nullptr,
                                         std::nullopt, first_chunk_)));
      first_chunk_ = false;
    }
  } else {
    text_ += e.text;
    for (auto& lp : logprobs) all_logprobs_.push_back(std::move(lp));
  }
  if (!e.finished) return out;

  out.finished = true;
  if (stream_) {
    out.sse.push_back(sse(stream_chunk(meta_, endpoint_, "", nullptr, e.finish_reason, false)));
    if (include_usage_) out.sse.push_back(sse(usage_chunk(meta_, endpoint_, usage_)));
    out.sse.push_back("data: [DONE]\n\n");
  } else if (e.finish_reason == FinishReason::kError) {
    out.error = api_error(500, "generation failed: " + e.error.to_string());
  } else if (e.finish_reason == FinishReason::kCancelled) {
    out.error = api_error(503, "the server is shutting down");
    out.retry_after = "5";
  } else {
    out.body = completion_response(meta_, endpoint_, text_, logprobs_ ? &all_logprobs_ : nullptr,
                                   e.finish_reason, usage_);
  }
  return out;
}

}  // namespace infergrid
