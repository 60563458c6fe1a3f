// OpenAiResponder: one generation's engine events turned into the OpenAI response its client
// receives, apart from the HTTP transport. Streaming: an SSE chunk for each event that brings
// text or log-probabilities (and always a first one, which carries the role), then the final
// chunk with the finish reason, the usage chunk when asked, and [DONE]. Not streaming: text and
// log-probabilities gathered until the end, then one completion body, or the error the end
// stands for (an engine failure is a 500, a shutdown's cancel a 503).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "model/tokenizer.h"
#include "server/openai_api.h"

namespace infergrid {

class OpenAiResponder {
 public:
  OpenAiResponder(const Tokenizer& tokenizer, Endpoint endpoint, ResponseMeta meta, bool stream,
                  bool include_usage, bool logprobs);

  struct Output {
    std::vector<std::string> sse;  // whole SSE events ("data: ...\n\n") to send, in order
    bool finished = false;         // the generation ended with this event
    // Not streaming, finished: the body of the 200, or the error to answer instead.
    std::string body;
    std::optional<ApiError> error;
    const char* retry_after = nullptr;  // with error, when the client may retry
  };
  Output on_event(const RequestEvent& event);
  bool stream() const { return stream_; }

 private:
  const Tokenizer& tokenizer_;
  Endpoint endpoint_;
  ResponseMeta meta_;
  bool stream_;
  bool include_usage_;
  bool logprobs_;
  bool first_chunk_ = true;
  std::string text_;                         // not streaming: all of it so far
  std::vector<ChoiceLogprob> all_logprobs_;  // likewise
  Usage usage_;
};

}  // namespace infergrid
