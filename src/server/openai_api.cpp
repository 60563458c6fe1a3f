#include "server/openai_api.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "grammar/json_schema.h"

namespace infergrid {

using json = nlohmann::json;

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::number_float:
      return "number";
    default:
      return "integer";
  }
}

ApiError wrong_type(const std::string& field, const char* expected, const json& got) {
  return api_error(400, fmt::format("'{}' must be {}, got {}", field, expected, type_name(got)),
                   field);
}

// Field readers: absent or null leaves `out` unchanged and returns no error.
std::optional<ApiError> read_number(const json& body, const std::string& field, double lo,
                                    double hi, float& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return wrong_type(field, "a number", *it);
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return api_error(400, fmt::format("'{}' must be between {} and {}, got {}", field, lo, hi, v),
                     field);
  }
  out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<ApiError> read_int(const json& body, const std::string& field, int64_t lo, int64_t hi,
                                 std::optional<int64_t>& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  // 5.0 is accepted as 5 (JSON has one number type); 5.5 is not.
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9e15) {
      return wrong_type(field, "an integer", *it);
    }
    out = static_cast<int64_t>(d);
  } else if (it->is_number_integer()) {
    out = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
              ? INT64_MAX
              : it->get<int64_t>();
  } else {
    return wrong_type(field, "an integer", *it);
  }
  if (*out < lo || *out > hi) {
    return api_error(
        400, fmt::format("'{}' must be between {} and {}, got {}", field, lo, hi, *out), field);
  }
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& body, const std::string& field, bool& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return wrong_type(field, "a boolean", *it);
  out = it->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> read_string(const json& body, const std::string& field, std::string& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return wrong_type(field, "a string", *it);
  out = it->get<std::string>();
  return std::nullopt;
}

#define IG_API_CHECK(expr)                    \
  do {                                        \
    if (auto error_ = (expr)) return *error_; \
  } while (0)

// `infergrid_prefill_handoff`: true (through the shared DRAM tier) or
// {"transfer_to": "HOST:PORT", "deadline_ms": N, "lease_ms": N} (streamed over TCP).
std::optional<ApiError> read_prefill_handoff(const json& body, ApiRequest& r) {
  static const std::string field = "infergrid_prefill_handoff";
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (it->is_boolean()) {
    r.prefill_handoff = it->get<bool>();
    return std::nullopt;
  }
  if (!it->is_object()) return wrong_type(field, "a boolean or an object", *it);
  for (const auto& [key, value] : it->items()) {
    if (key != "transfer_to" && key != "deadline_ms" && key != "lease_ms") {
      return api_error(400, fmt::format("unknown field '{}.{}'", field, key), field);
    }
  }
  KvTransferTarget t;
  std::string to;
  if (auto target = it->find("transfer_to"); target != it->end() && target->is_string()) {
    to = target->get<std::string>();
  }
  // HOST:PORT, or [V6]:PORT.
  const size_t colon = to.rfind(':');
  std::optional<int64_t> port;
  if (colon != std::string::npos && colon > 0 && colon + 1 < to.size() && colon + 6 >= to.size() &&
      to.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
    port = std::stoll(to.substr(colon + 1));
    t.host = to.substr(0, colon);
    if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']') {
      t.host = t.host.substr(1, t.host.size() - 2);
    }
  }
  if (!port || *port < 1 || *port > 65535 || t.host.empty() || t.host.size() > 253) {
    return api_error(400, fmt::format("'{}.transfer_to' must be HOST:PORT", field), field);
  }
  t.port = static_cast<int>(*port);
  std::optional<int64_t> deadline, lease;
  if (read_int(*it, "deadline_ms", 1, 3600000, deadline) ||
      read_int(*it, "lease_ms", 1, 3600000, lease)) {
    return api_error(400,
                     fmt::format("'{}.deadline_ms' and '.lease_ms' must be integers from 1 to "
                                 "3600000",
                                 field),
                     field);
  }
  if (deadline) t.deadline_ms = static_cast<int>(*deadline);
  if (lease) t.lease_ms = static_cast<int>(*lease);
  r.prefill_handoff = true;
  r.transfer = std::move(t);
  return std::nullopt;
}

std::optional<ApiError> read_content(const json& message, size_t index, std::string& out) {
  const std::string field = fmt::format("messages[{}].content", index);
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) return std::nullopt;  // assistant tool-call turns
  if (it->is_string()) {
    out = it->get<std::string>();
    return std::nullopt;
  }
  if (!it->is_array()) return wrong_type(field, "a string or an array of content parts", *it);
  for (const json& part : *it) {
    if (!part.is_object()) return wrong_type(field + "[]", "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return api_error(400, fmt::format("'{}[].type' must be a string", field), field);
    }
    if (*type != "text") {
      return api_error(400,
                       fmt::format("content part type '{}' is not supported (only 'text')",
                                   type->get<std::string>()),
                       field);
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return api_error(400, fmt::format("'{}[].text' must be a string", field), field);
    }
    out += text->get<std::string>();
  }
  return std::nullopt;
}

// An assistant turn's tool_calls, a tool turn's tool_call_id and name.
std::optional<ApiError> read_tool_turn(const json& m, size_t index, ChatMessage& message) {
  auto content = m.find("content");
  message.content_null = content == m.end() || content->is_null();
  auto calls = m.find("tool_calls");
  if (calls != m.end() && !calls->is_null()) {
    const std::string field = fmt::format("messages[{}].tool_calls", index);
    if (message.role != "assistant") {
      return api_error(400, fmt::format("'{}' is only allowed on assistant messages", field),
                       "messages");
    }
    if (!calls->is_array()) return wrong_type(field, "an array", *calls);
    for (size_t k = 0; k < calls->size(); ++k) {
      const json& call = (*calls)[k];
      const std::string where = fmt::format("{}[{}]", field, k);
      auto function = call.is_object() ? call.find("function") : call.end();
      if (!call.is_object() || function == call.end() || !function->is_object()) {
        return api_error(400, fmt::format("'{}' must be an object with 'function'", where),
                         "messages");
      }
      ChatToolCall out;
      IG_API_CHECK(read_string(call, "id", out.id));
      IG_API_CHECK(read_string(*function, "name", out.name));
      IG_API_CHECK(read_string(*function, "arguments", out.arguments));
      if (out.name.empty()) {
        return api_error(400, fmt::format("'{}.function.name' must be a non-empty string", where),
                         "messages");
      }
      if (out.arguments.empty()) out.arguments = "{}";
      message.tool_calls.push_back(std::move(out));
    }
  }
  if (message.role == "tool") {
    IG_API_CHECK(read_string(m, "tool_call_id", message.tool_call_id));
    if (message.tool_call_id.empty()) {
      return api_error(
          400, fmt::format("'messages[{}].tool_call_id' is required on tool messages", index),
          "messages");
    }
  }
  IG_API_CHECK(read_string(m, "name", message.name));
  return std::nullopt;
}

// Fields clients send that this server does not implement yet: refused with a 400 naming
// them, never accepted and silently ignored (a client relying on a tool call or a JSON schema
// must learn it got none). Their default values, which ask for nothing, are accepted.
std::optional<ApiError> refuse_unimplemented(const json& body) {
  struct Field {
    const char* name;
    const char* what;
    bool (*is_default)(const json& value);
  };
  static const Field kFields[] = {
      {"functions", "the deprecated functions field is not implemented; send 'tools'",
       [](const json& v) { return v.is_array() && v.empty(); }},
      {"function_call", "the deprecated function_call field is not implemented; send 'tool_choice'",
       [](const json& v) { return v == "none"; }},
      {"echo", "echoing the prompt is not implemented", [](const json& v) { return v == false; }},
      {"best_of", "best_of is not implemented", [](const json& v) { return v == 1; }},
      {"suffix", "insertion after a suffix is not implemented",
       [](const json& v) { return v == ""; }},
  };
  for (const Field& f : kFields) {
    auto it = body.find(f.name);
    if (it == body.end() || it->is_null() || f.is_default(*it)) continue;
    return api_error(400,
                     fmt::format("'{}' is not supported by this server yet ({}); remove "
                                 "it from the request",
                                 f.name, f.what),
                     f.name, "unsupported_parameter");
  }
  return std::nullopt;
}

std::optional<ApiError> schema_grammar(std::string_view raw_body,
                                       std::initializer_list<const char*> path,
                                       const std::string& param, std::string& grammar) {
  auto schema = ordered_body_member(raw_body, path, param);
  if (auto* error = std::get_if<ApiError>(&schema)) return *error;
  auto gbnf = json_schema_to_gbnf(std::get<nlohmann::ordered_json>(schema));
  if (!gbnf.is_ok()) {
    return api_error(400,
                     fmt::format("'{}' cannot be enforced: {}", param, gbnf.status().message()),
                     param, "invalid_json_schema");
  }
  grammar = std::move(*gbnf);
  return std::nullopt;
}

// response_format (OpenAI), json_schema and grammar (llama-server): at most one of them.
std::optional<ApiError> parse_output_constraint(const json& body, std::string_view raw_body,
                                                ApiRequest& r) {
  auto set_source = [&](const char* param) -> std::optional<ApiError> {
    if (!r.grammar_param.empty()) {
      return api_error(400,
                       fmt::format("'{}' and '{}' both constrain the output; send only one",
                                   r.grammar_param, param),
                       param);
    }
    r.grammar_param = param;
    return std::nullopt;
  };
  auto format = body.find("response_format");
  if (format != body.end() && !format->is_null()) {
    if (!format->is_object()) return wrong_type("response_format", "an object", *format);
    auto type = format->find("type");
    if (type == format->end() || !type->is_string()) {
      return api_error(400, "'response_format.type' must be a string", "response_format");
    }
    const std::string kind = type->get<std::string>();
    if (kind == "json_object") {
      IG_API_CHECK(set_source("response_format"));
      r.grammar = json_object_gbnf();
    } else if (kind == "json_schema") {
      auto spec = format->find("json_schema");
      if (spec == format->end() || !spec->is_object()) {
        return api_error(400,
                         "'response_format.json_schema' must be an object with 'name' and "
                         "'schema'",
                         "response_format");
      }
      auto name = spec->find("name");
      if (name != spec->end() && !name->is_string()) {
        return wrong_type("response_format.json_schema.name", "a string", *name);
      }
      auto strict = spec->find("strict");
      if (strict != spec->end() && !strict->is_null() && !strict->is_boolean()) {
        return wrong_type("response_format.json_schema.strict", "a boolean", *strict);
      }
      IG_API_CHECK(set_source("response_format"));
      auto schema = spec->find("schema");
      if (schema == spec->end() || schema->is_null()) {
        r.grammar = json_object_gbnf();  // OpenAI: without a schema, any JSON object
      } else if (!schema->is_object() && !schema->is_boolean()) {
        return wrong_type("response_format.json_schema.schema", "an object", *schema);
      } else {
        IG_API_CHECK(schema_grammar(raw_body, {"response_format", "json_schema", "schema"},
                                    "response_format", r.grammar));
      }
    } else if (kind != "text") {
      return api_error(400,
                       fmt::format("'response_format.type' '{}' is not one of 'text', "
                                   "'json_object', 'json_schema'",
                                   kind.substr(0, 40)),
                       "response_format");
    }
  }
  auto schema = body.find("json_schema");
  if (schema != body.end() && !schema->is_null()) {
    if (!schema->is_object() && !schema->is_boolean()) {
      return wrong_type("json_schema", "an object", *schema);
    }
    IG_API_CHECK(set_source("json_schema"));
    IG_API_CHECK(schema_grammar(raw_body, {"json_schema"}, "json_schema", r.grammar));
  }
  auto grammar = body.find("grammar");
  if (grammar != body.end() && !grammar->is_null()) {
    if (!grammar->is_string()) return wrong_type("grammar", "a string (GBNF)", *grammar);
    if (!grammar->get_ref<const std::string&>().empty()) {
      IG_API_CHECK(set_source("grammar"));
      r.grammar = grammar->get<std::string>();
    }
  }
  return std::nullopt;
}

// OpenAI's {"token id": bias} with biases from -100 to 100.
std::optional<ApiError> parse_logit_bias(const json& body, SamplingParams& s) {
  auto bias = body.find("logit_bias");
  if (bias == body.end() || bias->is_null()) return std::nullopt;
  if (!bias->is_object()) return wrong_type("logit_bias", "an object of token id to bias", *bias);
  if (bias->size() > 1024)
    return api_error(400, "'logit_bias' has more than 1024 entries", "logit_bias");
  for (const auto& [key, value] : bias->items()) {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || id < 0 || id > INT32_MAX) {
      return api_error(400,
                       fmt::format("'logit_bias' key '{}' is not a token id", key.substr(0, 40)),
                       "logit_bias");
    }
    if (!value.is_number() || value.get<double>() < -100.0 || value.get<double>() > 100.0) {
      return api_error(400,
                       fmt::format("'logit_bias[\"{}\"]' must be a number from -100 to 100", key),
                       "logit_bias");
    }
    s.logit_bias.emplace_back(static_cast<int32_t>(id), value.get<float>());
  }
  return std::nullopt;
}

std::variant<ApiRequest, ApiError> parse_object(const json& body, Endpoint endpoint,
                                                std::string_view raw_body) {
  ApiRequest r;
  r.endpoint = endpoint;
  if (!body.is_object()) {
    return api_error(
        400, fmt::format("the request body must be a JSON object, got {}", type_name(body)));
  }
  IG_API_CHECK(read_string(body, "model", r.model));
  IG_API_CHECK(read_string(body, "user", r.user));

  if (endpoint == Endpoint::kCompletions) {
    auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) return api_error(400, "'prompt' is required", "prompt");
    const json* prompt = &*it;
    // [[1, 2, 3]]: OpenAI's batch form with one prompt of token ids.
    if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_array()) {
      prompt = &(*prompt)[0];
    }
    if (prompt->is_string()) {
      r.prompt_text = prompt->get<std::string>();
    } else if (prompt->is_array() && !prompt->empty() && !(*prompt)[0].is_string()) {
      for (size_t i = 0; i < prompt->size(); ++i) {
        const json& t = (*prompt)[i];
        if (!t.is_number_integer()) {
          return api_error(400,
                           fmt::format("'prompt[{}]' must be an integer token id, got {} {}", i,
                                       type_name(t), t.dump().substr(0, 40)),
                           "prompt");
        }
        if ((t.is_number_unsigned() && t.get<uint64_t>() > INT32_MAX) || t.get<int64_t>() < 0) {
          return api_error(400,
                           fmt::format("'prompt[{}]' is {}: token ids are integers from 0 to the "
                                       "vocabulary size",
                                       i, t.dump()),
                           "prompt");
        }
        r.prompt_tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
      }
    } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
      r.prompt_text = (*prompt)[0].get<std::string>();
    } else if (prompt->is_array() && prompt->size() > 1) {
      return api_error(400, "only one prompt per request is supported (send several requests)",
                       "prompt");
    } else {
      return wrong_type("prompt", "a string, an array of one string or an array of token ids",
                        *prompt);
    }
    if (r.prompt_text.empty() && r.prompt_tokens.empty()) {
      return api_error(400, "'prompt' must not be empty", "prompt");
    }
  } else {
    auto it = body.find("messages");
    if (it == body.end() || it->is_null()) {
      return api_error(400, "'messages' is required", "messages");
    }
    if (!it->is_array()) return wrong_type("messages", "an array", *it);
    if (it->empty()) return api_error(400, "'messages' must not be empty", "messages");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& m = (*it)[i];
      if (!m.is_object()) return wrong_type(fmt::format("messages[{}]", i), "an object", m);
      ChatMessage message;
      auto role = m.find("role");
      if (role == m.end() || !role->is_string()) {
        return api_error(400, fmt::format("'messages[{}].role' must be a string", i), "messages");
      }
      message.role = role->get<std::string>();
      if (message.role != "system" && message.role != "user" && message.role != "assistant" &&
          message.role != "tool" && message.role != "developer") {
        return api_error(
            400, fmt::format("'messages[{}].role' '{}' is not a known role", i, message.role),
            "messages");
      }
      if (message.role == "developer") message.role = "system";
      IG_API_CHECK(read_content(m, i, message.content));
      IG_API_CHECK(read_tool_turn(m, i, message));
      r.messages.push_back(std::move(message));
    }
  }

  std::optional<int64_t> value;
  IG_API_CHECK(read_int(body, "max_tokens", 1, INT32_MAX, value));
  if (endpoint == Endpoint::kChat) {
    std::optional<int64_t> newer;  // the newer name wins
    IG_API_CHECK(read_int(body, "max_completion_tokens", 1, INT32_MAX, newer));
    if (newer) value = newer;
  }
  if (value) r.max_tokens = static_cast<int>(*value);

  value.reset();
  IG_API_CHECK(read_int(body, "n", 1, kMaxChoices, value));
  if (value) r.n = static_cast<int>(*value);
  IG_API_CHECK(refuse_unimplemented(body));
  if (endpoint == Endpoint::kChat) {
    IG_API_CHECK(parse_tools(body, raw_body, r.tools));
  } else {
    for (const char* field : {"tools", "tool_choice", "parallel_tool_calls"}) {
      auto it = body.find(field);
      if (it != body.end() && !it->is_null()) {
        return api_error(
            400, fmt::format("'{}' is for /v1/chat/completions, not /v1/completions", field), field,
            "unsupported_parameter");
      }
    }
  }

  SamplingParams& s = r.options.sampling;
  // OpenAI's defaults: temperature 1, top_p 1, no top-k or min-p.
  s = SamplingParams();
  s.temperature = 1.0f;
  s.top_k = 0;
  s.top_p = 1.0f;
  s.min_p = 0.0f;
  // As OpenAI defines them, the penalties count every generated token and none of the prompt.
  s.penalty_last_n = -1;
  s.penalize_prompt = false;
  IG_API_CHECK(read_number(body, "temperature", 0.0, 2.0, s.temperature));
  IG_API_CHECK(read_number(body, "top_p", 0.0, 1.0, s.top_p));
  if (s.top_p <= 0.0f) return api_error(400, "'top_p' must be greater than 0", "top_p");
  IG_API_CHECK(read_number(body, "min_p", 0.0, 1.0, s.min_p));
  IG_API_CHECK(read_number(body, "presence_penalty", -2.0, 2.0, s.presence_penalty));
  IG_API_CHECK(read_number(body, "frequency_penalty", -2.0, 2.0, s.frequency_penalty));
  IG_API_CHECK(read_number(body, "repetition_penalty", 0.01, 10.0, s.repetition_penalty));
  value.reset();
  IG_API_CHECK(read_int(body, "top_k", -1, INT32_MAX, value));
  if (value) s.top_k = static_cast<int>(*value);
  value.reset();
  IG_API_CHECK(read_int(body, "seed", INT64_MIN, INT64_MAX, value));
  if (value) {
    s.seed = static_cast<uint64_t>(*value);
  } else {
    s.seed = std::random_device{}();
  }
  IG_API_CHECK(parse_logit_bias(body, s));
  IG_API_CHECK(parse_output_constraint(body, raw_body, r));

  auto stop = body.find("stop");
  if (stop != body.end() && !stop->is_null()) {
    if (stop->is_string()) {
      r.options.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > 16) return api_error(400, "'stop' has more than 16 strings", "stop");
      for (const json& s_item : *stop) {
        if (!s_item.is_string())
          return wrong_type("stop", "a string or an array of strings", *stop);
        r.options.stop.push_back(s_item.get<std::string>());
      }
    } else {
      return wrong_type("stop", "a string or an array of strings", *stop);
    }
    for (const auto& s_item : r.options.stop) {
      if (s_item.empty()) return api_error(400, "'stop' strings must not be empty", "stop");
    }
  }

  IG_API_CHECK(read_bool(body, "ignore_eos", r.options.ignore_eos));
  IG_API_CHECK(read_bool(body, "infergrid_report_tokens", r.report_tokens));
  IG_API_CHECK(read_prefill_handoff(body, r));
  if (auto resume = body.find("infergrid_resume"); resume != body.end() && !resume->is_null()) {
    if (!resume->is_array())
      return wrong_type("infergrid_resume", "an array of token ids", *resume);
    r.resume_tokens.reserve(resume->size());
    for (const json& t : *resume) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX) {
        return wrong_type("infergrid_resume", "an array of token ids", t);
      }
      r.resume_tokens.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
  }
  value.reset();
  IG_API_CHECK(read_int(body, "priority", -1000000, 1000000, value));
  if (value) r.priority = static_cast<int>(*value);
  value.reset();
  // vLLM's field: keep only the last N prompt tokens (-1: as many as the context allows).
  IG_API_CHECK(read_int(body, "truncate_prompt_tokens", -1, INT32_MAX, value));
  if (value) {
    if (*value == 0) {
      return api_error(400, "'truncate_prompt_tokens' must be -1 or at least 1",
                       "truncate_prompt_tokens");
    }
    r.truncate_prompt_tokens = static_cast<int>(*value);
  }

  if (endpoint == Endpoint::kChat) {
    IG_API_CHECK(read_bool(body, "logprobs", r.logprobs));
    value.reset();
    IG_API_CHECK(read_int(body, "top_logprobs", 0, 20, value));
    if (value && !r.logprobs) {
      return api_error(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
    }
    if (r.logprobs) r.options.logprobs = value ? static_cast<int>(*value) : 0;
  } else {
    value.reset();
    IG_API_CHECK(read_int(body, "logprobs", 0, 20, value));
    if (value) {
      r.logprobs = true;
      r.options.logprobs = static_cast<int>(*value);
    }
  }

  IG_API_CHECK(read_bool(body, "stream", r.stream));
  auto stream_options = body.find("stream_options");
  if (stream_options != body.end() && !stream_options->is_null()) {
    if (!stream_options->is_object()) {
      return wrong_type("stream_options", "an object", *stream_options);
    }
    IG_API_CHECK(read_bool(*stream_options, "include_usage", r.include_usage));
    if (!r.stream) {
      return api_error(400, "'stream_options' is only allowed when 'stream' is true",
                       "stream_options");
    }
  }
  return r;
}

// Validates syntax and bounds the shape of a body without building it (see parse_api_request).
class BodyScanner final : public json::json_sax_t {
 public:
  explicit BodyScanner(const JsonLimits& limits) : limits_(limits) {}
  const ApiError& error() const { return error_; }

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool key(string_t&) override { return true; }
  bool start_object(std::size_t) override { return open(); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) override {
    const std::string token =
        last_token.size() > 40 ? last_token.substr(0, 40) + "..." : last_token;
    if (ex.id == 406) {  // out_of_range: a number beyond what a double holds
      error_ = api_error(400, fmt::format("the request body has a number out of range ('{}' at "
                                          "byte {}): numbers must fit a double",
                                          token, position));
    } else {
      error_ =
          api_error(400, fmt::format("the request body is not valid JSON (at byte {})", position));
    }
    return false;
  }

 private:
  bool value() {
    if (++values_ <= limits_.max_values) return true;
    error_ = api_error(
        413, fmt::format("the request body has more than {} JSON values", limits_.max_values));
    return false;
  }
  bool open() {
    if (++depth_ > limits_.max_depth) {
      error_ = api_error(
          400, fmt::format("the request body nests JSON deeper than {} levels", limits_.max_depth));
      return false;
    }
    return value();
  }
  bool close() {
    --depth_;
    return true;
  }

  JsonLimits limits_;
  size_t values_ = 0;
  size_t depth_ = 0;
  ApiError error_ = api_error(400, "the request body is not valid JSON");
};

}  // namespace

ApiError api_error(int status, std::string message, std::string param, std::string code) {
  ApiError e;
  e.http_status = status;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  if (status == 404) e.type = "not_found_error";
  if (status == 429) e.type = "rate_limit_error";
  if (status >= 500) e.type = status == 503 ? "service_unavailable_error" : "server_error";
  return e;
}

std::variant<nlohmann::ordered_json, ApiError> ordered_body_member(
    std::string_view raw_body, std::initializer_list<const char*> path, const std::string& param) {
  nlohmann::ordered_json node = nlohmann::ordered_json::parse(raw_body, nullptr, false);
  for (const char* key : path) {
    if (!node.is_object() || !node.contains(key)) {
      return api_error(400, fmt::format("'{}' is missing", param), param);
    }
    nlohmann::ordered_json next = std::move(node[key]);
    node = std::move(next);
  }
  return node;
}

std::string ApiError::to_json() const {
  json e = {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::variant<json, ApiError> parse_json_body(std::string_view body, const JsonLimits& limits) {
  // One pass over the bytes before any tree is built: syntax errors (a number that overflows a
  // double among them) become a 400 with their position, and nesting and value counts are
  // bounded so a hostile body cannot make the tree cost many times its size.
  BodyScanner scanner(limits);
  bool scanned = false;
  try {
    scanned = json::sax_parse(body.begin(), body.end(), &scanner);
  } catch (const std::exception& e) {  // the scanner never throws; this is defence in depth
    return api_error(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!scanned) return scanner.error();
  try {
    json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) return api_error(400, "the request body is not valid JSON");
    return parsed;
  } catch (const std::bad_alloc&) {
    return api_error(413, "the request body is too large to parse");
  }
}

std::variant<ApiRequest, ApiError> parse_api_request(std::string_view body, Endpoint endpoint,
                                                     const JsonLimits& limits) {
  auto parsed = parse_json_body(body, limits);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  try {
    return parse_object(std::get<json>(parsed), endpoint, body);
  } catch (const std::bad_alloc&) {
    return api_error(413, "the request body is too large to parse");
  } catch (const std::exception& e) {
    // Every access above is type-checked; this is a last line of defence for the server.
    return api_error(400, fmt::format("invalid request: {}", e.what()));
  }
}

std::string finish_reason_json(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "abort";
    case FinishReason::kError:
      return "error";
    case FinishReason::kNone:
      return "";
  }
  return "";
}

}  // namespace infergrid
