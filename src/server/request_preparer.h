// RequestPreparer: turns an OpenAI request body into an engine request: validation, the chat
// template, tokenization and the context limits. It runs on the server's worker threads, never
// on an HTTP I/O thread, so one costly body cannot stall other connections.
//
// Invariants: cheap limits are checked before costly work (a text that cannot fit the context
// whatever it tokenizes to is refused before it is tokenized: no token is longer than the
// longest vocabulary entry); a prompt plus the asked-for max_tokens beyond the context is a 400
// naming both (as vLLM does), unless the client asked for truncation; the request's priority
// comes from the caller's API key unless the server trusts the body's field. Never throws.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <memory>
#include <optional>

#include "engine/request.h"
#include "grammar/grammar_cache.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "server/openai_api.h"

namespace infergrid {

struct PreparedRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  GenerationRequest request;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  int n = 1;                     // choices: n generations of request, seeds from choice_seed
  bool report_tokens = false;    // chunks carry their token ids (for the router's failover)
  bool prefill_handoff = false;  // answer once the prompt's KV is in the shared DRAM tier
  std::optional<KvTransferTarget> transfer;  // or once it is streamed there
  // Set when the answer is read for tool calls, in this format.
  std::optional<ToolCallFormat> tool_format;
};

// The seed of choice `index` of a request seeded `seed`: the seed itself for the first, so n = 1
// is unchanged, and well-mixed distinct streams for the others.
uint64_t choice_seed(uint64_t seed, int index);

struct PreparerOptions {
  std::vector<std::string> model_names;  // any is accepted; the first is reported
  int max_context = 0;                   // positions one request can really get
  bool trust_request_priority = false;   // honour the body's `priority` field
  JsonLimits json;
};

class RequestPreparer {
 public:
  RequestPreparer(const Tokenizer& tokenizer, ChatTemplate chat_template, PreparerOptions options);

  // `caller_priority`: the class of the API key the request came with (0 without keys).
  std::variant<PreparedRequest, ApiError> prepare(std::string_view body, Endpoint endpoint,
                                                  int caller_priority) const;
  // The same for a body already parsed (the server parses it once to find its model).
  std::variant<PreparedRequest, ApiError> prepare(ApiRequest& api, int caller_priority) const;
  const PreparerOptions& options() const { return options_; }

 private:
  std::variant<PreparedRequest, ApiError> prepare_parsed(ApiRequest& api,
                                                         int caller_priority) const;
  // Tokens whose last `keep` are those of the whole text, from only as much of its end as
  // they can span (truncate_prompt_tokens must not make a huge text cost its full length).
  std::vector<int32_t> encode_tail(std::string_view text, int keep) const;

  const Tokenizer& tokenizer_;
  ChatTemplate chat_template_;
  PreparerOptions options_;
  size_t max_token_bytes_ = 1;  // the most text bytes one token can stand for
  std::shared_ptr<GrammarCache> grammars_;
};

}  // namespace infergrid
