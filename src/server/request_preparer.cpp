#include "server/request_preparer.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

namespace infergrid {

RequestPreparer::RequestPreparer(const Tokenizer& tokenizer, ChatTemplate chat_template,
                                 PreparerOptions options)
    : tokenizer_(tokenizer),
      chat_template_(chat_template),
      options_(std::move(options)),
      grammars_(std::make_shared<GrammarCache>(tokenizer)) {
  if (options_.model_names.empty()) options_.model_names.push_back("default");
  // A vocabulary entry is stored at least as long as the text it matches (SentencePiece's
  // U+2581 and byte-level BPE's byte mapping only lengthen it; byte-fallback tokens are
  // "<0xAB>"), so its longest entry bounds the text bytes per token.
  for (const std::string& token : tokenizer_.vocab().tokens) {
    max_token_bytes_ = std::max(max_token_bytes_, token.size());
  }
}

std::variant<PreparedRequest, ApiError> RequestPreparer::prepare(std::string_view body,
                                                                 Endpoint endpoint,
                                                                 int caller_priority) const {
  auto parsed = parse_api_request(body, endpoint, options_.json);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  return prepare(std::get<ApiRequest>(parsed), caller_priority);
}

std::variant<PreparedRequest, ApiError> RequestPreparer::prepare(ApiRequest& api,
                                                                 int caller_priority) const {
  try {
    return prepare_parsed(api, caller_priority);
  } catch (const std::bad_alloc&) {
    return api_error(503, "the server is out of memory for this request; retry later");
  } catch (const std::exception& e) {
    return api_error(500, fmt::format("internal error preparing the request: {}", e.what()));
  }
}

std::variant<PreparedRequest, ApiError> RequestPreparer::prepare_parsed(ApiRequest& api,
                                                                        int caller_priority) const {
  const auto& names = options_.model_names;
  if (!api.model.empty() && std::find(names.begin(), names.end(), api.model) == names.end()) {
    return api_error(404,
                     fmt::format("the model '{}' does not exist; this server serves '{}'",
                                 api.model, names.front()),
                     "model", "model_not_found");
  }
  const bool chat = api.endpoint == Endpoint::kChat;
  const char* prompt_param = chat ? "messages" : "prompt";
  const int context = options_.max_context;

  PreparedRequest out;
  out.endpoint = api.endpoint;
  out.stream = api.stream;
  out.include_usage = api.include_usage;
  out.logprobs = api.logprobs;
  GenerationRequest& request = out.request;
  request.options = std::move(api.options);

  if (api.priority && *api.priority != 0 && !options_.trust_request_priority) {
    return api_error(400,
                     "'priority' is set by the server's configuration (the priority of your API "
                     "key), not by requests; start the server with --trust-request-priority to "
                     "accept it",
                     "priority");
  }
  request.options.priority =
      options_.trust_request_priority && api.priority ? *api.priority : caller_priority;

  out.n = api.n;
  out.report_tokens = api.report_tokens;
  out.prefill_handoff = api.prefill_handoff;
  out.transfer = api.transfer;
  if (out.prefill_handoff && (api.stream || api.n != 1)) {
    return api_error(400, "'infergrid_prefill_handoff' needs stream false and n = 1",
                     "infergrid_prefill_handoff");
  }
  if (!api.resume_tokens.empty()) {
    if (api.n != 1) {
      return api_error(400, "'infergrid_resume' continues one choice; it needs n = 1",
                       "infergrid_resume");
    }
    request.resume_tokens = std::move(api.resume_tokens);
  }
  if (api.tools.active() && chat) {
    out.tool_format = chat_template_.tool_call_format();
    auto tool_grammar = tool_call_grammar(api.tools, *out.tool_format);
    if (!tool_grammar.is_ok()) {
      return api_error(400, tool_grammar.status().message(), "tools", "invalid_json_schema");
    }
    if (!tool_grammar->gbnf.empty()) {
      if (!api.grammar.empty()) {
        return api_error(400,
                         fmt::format("'{}' and 'tool_choice' both constrain the output; send "
                                     "only one, or tool_choice \"none\"",
                                     api.grammar_param),
                         api.grammar_param);
      }
      api.grammar = std::move(tool_grammar->gbnf);
      api.grammar_param = "tools";
      request.options.grammar_trigger = std::move(tool_grammar->trigger);
    }
  }
  if (!api.grammar.empty()) {
    if (request.options.ignore_eos) {
      return api_error(400,
                       fmt::format("'ignore_eos' cannot be combined with '{}': the constrained "
                                   "output ends with an end-of-generation token",
                                   api.grammar_param),
                       "ignore_eos");
    }
    auto grammar = grammars_->get(api.grammar);
    if (!grammar.is_ok()) {
      return api_error(400,
                       fmt::format("'{}' is not a grammar this server can enforce: {}",
                                   api.grammar_param, grammar.status().message()),
                       api.grammar_param, "invalid_grammar");
    }
    request.options.grammar = std::move(*grammar);
  }

  // -1: as many as leave room for max_tokens (or one token when it is not given).
  const std::optional<int> keep =
      api.truncate_prompt_tokens
          ? std::optional<int>(*api.truncate_prompt_tokens > 0
                                   ? *api.truncate_prompt_tokens
                                   : std::max(1, context - api.max_tokens.value_or(1)))
          : std::nullopt;
  if (api.prompt_tokens.empty()) {
    size_t text_bytes = api.prompt_text.size();
    for (const ChatMessage& m : api.messages) text_bytes += m.content.size();
    const size_t at_least_tokens = text_bytes / max_token_bytes_;
    if (!api.truncate_prompt_tokens && at_least_tokens >= static_cast<size_t>(context)) {
      return api_error(400,
                       fmt::format("this model's maximum context length is {} tokens; the "
                                   "prompt has at least {} tokens ({} bytes)",
                                   context, at_least_tokens, text_bytes),
                       prompt_param, "context_length_exceeded");
    }
    std::string rendered;
    if (chat) {
      auto text = chat_template_.render(api.messages, true,
                                        api.tools.names.empty() ? nullptr : &api.tools.tools);
      if (!text.is_ok()) return api_error(400, text.status().message(), "messages");
      rendered = std::move(*text);
    }
    const std::string_view text = chat ? std::string_view(rendered) : api.prompt_text;
    request.prompt = keep ? encode_tail(text, *keep) : tokenizer_.encode(text, true, true);
  } else {
    request.prompt = std::move(api.prompt_tokens);
  }
  if (keep && static_cast<int>(request.prompt.size()) > *keep) {
    request.prompt.erase(request.prompt.begin(), request.prompt.end() - *keep);
  }

  const int prompt_len = static_cast<int>(request.prompt.size());
  if (prompt_len >= context) {
    return api_error(400,
                     fmt::format("this model's maximum context length is {} tokens; the prompt "
                                 "has {} tokens",
                                 context, prompt_len),
                     prompt_param, "context_length_exceeded");
  }
  const int room = context - prompt_len;
  if (api.max_tokens && *api.max_tokens > room) {
    return api_error(400,
                     fmt::format("this model's maximum context length is {} tokens; you asked "
                                 "for {} tokens ({} in the {}, {} in the completion); reduce "
                                 "the {} or max_tokens",
                                 context, static_cast<int64_t>(prompt_len) + *api.max_tokens,
                                 prompt_len, prompt_param, *api.max_tokens, prompt_param),
                     "max_tokens", "context_length_exceeded");
  }
  // Without max_tokens: chat runs to the end of the context, completions stop at the engine's
  // default (16, OpenAI's), either one clamped to what is left.
  request.options.max_tokens =
      api.max_tokens.value_or(chat ? room : std::min(RequestOptions{}.max_tokens, room));
  return out;
}

uint64_t choice_seed(uint64_t seed, int index) {
  if (index == 0) return seed;
  // splitmix64 of (seed, index): neighbouring seeds do not share choices.
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<int32_t> RequestPreparer::encode_tail(std::string_view text, int keep) const {
  // The last `keep` tokens lie within the last (keep + slack) * max_token_bytes_ bytes, which
  // hold at least keep + slack tokens; tokenizing only those bounds the cost by what is kept,
  // and the slack tokens absorb what the cut changes (the word it splits). The result is
  // exact unless one word spans the cut and more than the slack.
  constexpr size_t kSlackTokens = 64;
  const size_t window = (static_cast<size_t>(keep) + kSlackTokens) * max_token_bytes_;
  if (text.size() <= window) return tokenizer_.encode(text, true, true);
  size_t cut = text.size() - window;
  while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
  const size_t space = text.find_first_of(" \n", cut);
  if (space != std::string_view::npos && space - cut < kSlackTokens * max_token_bytes_ / 2) {
    cut = space + 1;
  }
  return tokenizer_.encode(text.substr(cut), false, true);
}

}  // namespace infergrid
