#include "server/openai_responder.h"

#include <algorithm>
#include <utility>

namespace infergrid {

namespace {

std::string sse(const std::string& payload) {
  return "data: " + payload + "\n\n";
}

}  // namespace

OpenAiResponder::OpenAiResponder(const Tokenizer& tokenizer, Endpoint endpoint, ResponseMeta meta,
                                 bool stream, bool include_usage, bool logprobs, int n,
                                 std::optional<ToolCallFormat> tool_format)
    : tokenizer_(tokenizer),
      endpoint_(endpoint),
      meta_(std::move(meta)),
      stream_(stream),
      include_usage_(include_usage),
      logprobs_(logprobs),
      tool_format_(endpoint == Endpoint::kChat ? tool_format : std::nullopt),
      choices_(static_cast<size_t>(std::max(1, n))) {
  if (tool_format_ && stream_) {
    for (Choice& c : choices_) c.tools.emplace(*tool_format_);
  }
}

std::string OpenAiResponder::chunk(int index, Choice& c, const std::string& text,
                                   const std::vector<ChoiceLogprob>* logprobs,
                                   std::optional<FinishReason> reason,
                                   const std::vector<ToolCallDelta>* calls) {
  const bool reason_tool_calls = c.tools && c.tools->n_calls() > 0;
  std::string payload = stream_chunk(meta_, endpoint_, text, logprobs, reason, c.first_chunk, index,
                                     calls, reason_tool_calls);
  c.first_chunk = false;
  if (report_tokens_ && !c.unreported.empty()) {
    // Spliced in before the object's closing brace rather than rebuilding the chunk's tree.
    payload.pop_back();
    payload += ",\"infergrid_tokens\":[";
    for (size_t i = 0; i < c.unreported.size(); ++i) {
      if (i > 0) payload += ',';
      payload += std::to_string(c.unreported[i]);
    }
    payload += "]}";
    c.unreported.clear();
  }
  return sse(payload);
}

OpenAiResponder::Output OpenAiResponder::on_event(int index, const RequestEvent& e) {
  Output out;
  if (index < 0 || index >= n() || choices_[static_cast<size_t>(index)].finished) return out;
  Choice& c = choices_[static_cast<size_t>(index)];
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
  // A replayed event that ends the request is sent: the client cannot have its end already.
  const bool replayed = replay_left_ > 0 && !e.finished;
  replay_left_ = std::max(0, replay_left_ - static_cast<int>(e.tokens.size()));
  if (report_tokens_) {
    for (const auto& t : e.tokens) c.unreported.push_back(t.token);
  }
  prompt_tokens_ = e.prompt_tokens;
  c.completion_tokens = e.completion_tokens;
  c.cached_tokens = e.cached_tokens;
  if (stream_) {
    AssistantDelta delta;
    if (c.tools) {
      delta = c.tools->push(e.text);
    } else {
      delta.content = e.text;
    }
    if (!delta.empty() || !logprobs.empty() || c.first_chunk) {
      out.sse.push_back(chunk(index, c, delta.content, logprobs_ ? &logprobs : nullptr,
                              std::nullopt, &delta.calls));
    }
  } else {
    c.text += e.text;
    for (auto& lp : logprobs) c.logprobs.push_back(std::move(lp));
  }
  if (replayed) {
    out.sse.clear();
    c.unreported.clear();  // the router knows them: it sent them
  }
  if (!e.finished) return out;

  c.finished = true;
  c.reason = e.finish_reason;
  c.error = e.error;
  ++n_finished_;
  if (stream_) {
    if (c.tools) {
      AssistantDelta rest = c.tools->finish();
      if (!rest.empty()) {
        out.sse.push_back(chunk(index, c, rest.content, nullptr, std::nullopt, &rest.calls));
      }
    }
    out.sse.push_back(chunk(index, c, "", nullptr, e.finish_reason, nullptr));
  }
  if (n_finished_ == n()) finish_response(out);
  return out;
}

void OpenAiResponder::finish_response(Output& out) {
  out.finished = true;
  Usage usage;
  usage.prompt_tokens = prompt_tokens_;
  usage.cached_tokens = choices_.front().cached_tokens;
  for (const Choice& c : choices_) {
    usage.completion_tokens += c.completion_tokens;
    usage.cached_tokens = std::min(usage.cached_tokens, c.cached_tokens);
  }
  if (stream_) {
    if (include_usage_) out.sse.push_back(sse(usage_chunk(meta_, endpoint_, usage)));
    out.sse.push_back("data: [DONE]\n\n");
    return;
  }
  for (const Choice& c : choices_) {
    if (c.reason == FinishReason::kError) {
      out.error = api_error(500, "generation failed: " + c.error.to_string());
      return;
    }
  }
  for (const Choice& c : choices_) {
    if (c.reason == FinishReason::kCancelled) {
      out.error = api_error(503, "the server is shutting down");
      out.retry_after = "5";
      return;
    }
  }
  std::vector<ChoiceResult> results;
  results.reserve(choices_.size());
  for (Choice& c : choices_) {
    ChoiceResult r;
    if (logprobs_) r.logprobs = std::move(c.logprobs);
    r.reason = c.reason;
    if (tool_format_) r.message = parse_assistant_output(c.text, *tool_format_);
    r.text = std::move(c.text);
    results.push_back(std::move(r));
  }
  out.body = completion_response(meta_, endpoint_, results, usage);
}

}  // namespace infergrid
