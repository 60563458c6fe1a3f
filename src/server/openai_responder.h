// OpenAiResponder: the engine events of one request's generations (its n choices) turned into
// the OpenAI response its client receives, apart from the HTTP transport. Streaming: an SSE
// chunk for each event that brings text, tool-call deltas or log-probabilities (and always a
// first one per choice, which carries the role), each choice's final chunk with its finish
// reason, and once every choice has ended the usage chunk when asked, and [DONE]. Not
// streaming: everything gathered until the last choice ends, then one completion body, or the
// error an end stands for (an engine failure is a 500, a shutdown's cancel a 503).
//
// With tools, each choice's text goes through a ToolCallStream, so calls arrive as
// delta.tool_calls / message.tool_calls and only the rest as content. Usage counts the prompt
// once, the completions of all choices, and as cached the prompt tokens the first of them to
// run found cached (the others reuse its blocks, and would otherwise count them again).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "model/tokenizer.h"
#include "server/openai_api.h"
#include "server/tool_calls.h"

namespace infergrid {

class OpenAiResponder {
 public:
  OpenAiResponder(const Tokenizer& tokenizer, Endpoint endpoint, ResponseMeta meta, bool stream,
                  bool include_usage, bool logprobs, int n = 1,
                  std::optional<ToolCallFormat> tool_format = std::nullopt);

  struct Output {
    std::vector<std::string> sse;  // whole SSE events ("data: ...\n\n") to send, in order
    bool finished = false;         // the last choice ended with this event
    // Not streaming, finished: the body of the 200, or the error to answer instead.
    std::string body;
    std::optional<ApiError> error;
    const char* retry_after = nullptr;  // with error, when the client may retry
  };
  // An event of choice `choice` (0 .. n-1).
  Output on_event(int choice, const RequestEvent& event);
  Output on_event(const RequestEvent& event) { return on_event(0, event); }
  bool stream() const { return stream_; }
  // For the router's failover (router_server.h), streaming only. report: the first chunk a
  // choice sends for an event carries, as "infergrid_tokens", the ids of the tokens it produced
  // since its last chunk, so the router knows which tokens the text it forwarded stands for.
  // replayed: the events of the first n tokens replay a resumed run (GenerationRequest::
  // resume_tokens) whose chunks the client already has; they are not sent again.
  void set_failover(bool report, int replayed) {
    report_tokens_ = report;
    replay_left_ = replayed;
  }
  int n() const { return static_cast<int>(choices_.size()); }

 private:
  struct Choice {
    bool first_chunk = true;
    bool finished = false;
    std::string text;                     // not streaming: all of it so far
    std::vector<ChoiceLogprob> logprobs;  // likewise
    std::optional<ToolCallStream> tools;
    FinishReason reason = FinishReason::kNone;
    Status error;
    int completion_tokens = 0;
    int cached_tokens = 0;
    std::vector<int32_t> unreported;  // report_tokens_: produced since the last chunk
  };
  std::string chunk(int index, Choice& c, const std::string& text,
                    const std::vector<ChoiceLogprob>* logprobs, std::optional<FinishReason> reason,
                    const std::vector<ToolCallDelta>* calls);
  void finish_response(Output& out);

  const Tokenizer& tokenizer_;
  Endpoint endpoint_;
  ResponseMeta meta_;
  bool stream_;
  bool include_usage_;
  bool logprobs_;
  std::optional<ToolCallFormat> tool_format_;
  std::vector<Choice> choices_;
  int n_finished_ = 0;
  int prompt_tokens_ = 0;
  bool report_tokens_ = false;
  int replay_left_ = 0;
};

}  // namespace infergrid
