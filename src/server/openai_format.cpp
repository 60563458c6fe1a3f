// Response bodies and stream chunks of the OpenAI API (declared in openai_api.h).
#include <nlohmann/json.hpp>

#include "server/openai_api.h"

namespace infergrid {

using json = nlohmann::json;

namespace {

json logprobs_json(Endpoint endpoint, const std::vector<ChoiceLogprob>& logprobs,
                   size_t text_offset_start) {
  auto bytes_of = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  if (endpoint == Endpoint::kChat) {
    json content = json::array();
    for (const auto& lp : logprobs) {
      json top = json::array();
      for (const auto& [token, value] : lp.top) {
        top.push_back({{"token", token}, {"logprob", value}, {"bytes", bytes_of(token)}});
      }
      content.push_back({{"token", lp.token},
                         {"logprob", lp.logprob},
                         {"bytes", bytes_of(lp.token)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = text_offset_start;
  for (const auto& lp : logprobs) {
    tokens.push_back(lp.token);
    token_logprobs.push_back(lp.logprob);
    json alternatives = json::object();
    for (const auto& [token, value] : lp.top) alternatives[token] = value;
    top.push_back(alternatives);
    offsets.push_back(offset);
    offset += lp.token.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json reason_json(std::optional<FinishReason> reason) {
  if (!reason) return nullptr;
  return finish_reason_json(*reason);
}

}  // namespace

namespace {

json tool_call_json(const AssistantMessage::Call& call) {
  return {{"id", call.id},
          {"type", "function"},
          {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
}

}  // namespace

std::string completion_response(const ResponseMeta& meta, Endpoint endpoint,
                                const std::vector<ChoiceResult>& choices, const Usage& usage) {
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    const bool calls = c.message && !c.message->calls.empty();
    json choice = {
        {"index", i},
        {"finish_reason",
         calls && c.reason == FinishReason::kStop ? "tool_calls" : finish_reason_json(c.reason)},
        {"logprobs", c.logprobs ? logprobs_json(endpoint, *c.logprobs, 0) : json(nullptr)}};
    if (endpoint == Endpoint::kChat) {
      json message = {{"role", "assistant"}, {"content", c.text}};
      if (c.message) {
        message["content"] = c.message->content ? json(*c.message->content) : json(nullptr);
        if (calls) {
          json tool_calls = json::array();
          for (const auto& call : c.message->calls) tool_calls.push_back(tool_call_json(call));
          message["tool_calls"] = std::move(tool_calls);
        }
      }
      choice["message"] = std::move(message);
    } else {
      choice["text"] = c.text;
    }
    list.push_back(std::move(choice));
  }
  json r = {{"id", meta.id},
            {"object", endpoint == Endpoint::kChat ? "chat.completion" : "text_completion"},
            {"created", meta.created},
            {"model", meta.model},
            {"choices", std::move(list)},
            {"usage", usage_json(usage)}};
  return r.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string completion_response(const ResponseMeta& meta, Endpoint endpoint,
                                const std::string& text, const std::vector<ChoiceLogprob>* logprobs,
                                FinishReason reason, const Usage& usage) {
  ChoiceResult choice;
  choice.text = text;
  if (logprobs) choice.logprobs = *logprobs;
  choice.reason = reason;
  return completion_response(meta, endpoint, std::vector<ChoiceResult>{std::move(choice)}, usage);
}

std::string stream_chunk(const ResponseMeta& meta, Endpoint endpoint, const std::string& text,
                         const std::vector<ChoiceLogprob>* logprobs,
                         std::optional<FinishReason> reason, bool first_chunk, int index,
                         const std::vector<ToolCallDelta>* tool_calls, bool reason_tool_calls) {
  json reason_value = reason_json(reason);
  if (reason_tool_calls && reason == FinishReason::kStop) reason_value = "tool_calls";
  json choice = {{"index", index},
                 {"finish_reason", reason_value},
                 {"logprobs", logprobs && !logprobs->empty() ? logprobs_json(endpoint, *logprobs, 0)
                                                             : json(nullptr)}};
  if (endpoint == Endpoint::kChat) {
    json delta = json::object();
    if (first_chunk) delta["role"] = "assistant";
    const bool has_calls = tool_calls && !tool_calls->empty();
    if (!text.empty() || (first_chunk && !reason && !has_calls)) delta["content"] = text;
    if (has_calls) {
      json calls = json::array();
      for (const ToolCallDelta& d : *tool_calls) {
        json call = {{"index", d.index}};
        if (d.header) {
          call["id"] = d.id;
          call["type"] = "function";
          call["function"] = {{"name", d.name}, {"arguments", d.arguments}};
        } else {
          call["function"] = {{"arguments", d.arguments}};
        }
        calls.push_back(std::move(call));
      }
      delta["tool_calls"] = std::move(calls);
    }
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  json r = {{"id", meta.id},
            {"object", endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
            {"created", meta.created},
            {"model", meta.model},
            {"choices", json::array({choice})}};
  return r.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string usage_chunk(const ResponseMeta& meta, Endpoint endpoint, const Usage& usage) {
  json r = {{"id", meta.id},
            {"object", endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
            {"created", meta.created},
            {"model", meta.model},
            {"choices", json::array()},
            {"usage", usage_json(usage)}};
  return r.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace infergrid
