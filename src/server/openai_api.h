// OpenAI API surface: request parsing and validation, response and stream-chunk formatting.
//
// Pure functions over JSON text, with no I/O, so they can be fuzzed and unit-tested. Parsing
// never throws to its caller: malformed JSON, wrong types and out-of-range values become an
// ApiError carrying the HTTP status and the OpenAI error object ({"error": {message, type,
// param, code}}). Unknown fields are ignored, as OpenAI and vLLM do; known fields must have the
// documented type.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/request.h"
#include "model/chat_template.h"
#include "server/tool_calls.h"

namespace infergrid {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
  std::string to_json() const;
};

ApiError api_error(int status, std::string message, std::string param = {}, std::string code = {});

enum class Endpoint { kCompletions, kChat };

// Where a prefill instance streams a handed-off prompt's KV blocks (kvstore/kv_transfer.h).
struct KvTransferTarget {
  std::string host;
  int port = 0;
  int deadline_ms = 60000;  // for the whole transfer, the prefill included
  int lease_ms = 30000;     // the receiver keeps blocks no request has loaded this long
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                          // as sent; empty when absent
  std::string prompt_text;                    // completions with a text prompt
  std::vector<int32_t> prompt_tokens;         // completions with a token-id prompt
  std::vector<ChatMessage> messages;          // chat
  std::optional<int> max_tokens;              // absent: endpoint default
  RequestOptions options;                     // sampling, stop, logprobs (priority: see below)
  std::optional<int> priority;                // as sent; the server decides whether to trust it
  std::optional<int> truncate_prompt_tokens;  // keep the last N prompt tokens; -1: fit context
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;  // chat: logprobs flag; completions: logprobs field present
  std::string user;
  // GBNF the output must follow, from response_format, llama-server's json_schema or grammar
  // (empty: unconstrained), and the field it came from, for errors.
  std::string grammar;
  std::string grammar_param;
  ToolSpec tools;  // chat: tools, tool_choice, parallel_tool_calls
  int n = 1;       // choices, each its own generation from the same prompt
  // The router's failover fields (router_server.h): report each chunk's token ids as
  // `infergrid_tokens`, and continue a run that already produced `resume_tokens`.
  bool report_tokens = false;
  std::vector<int32_t> resume_tokens;
  // Prefill/decode handoff (router_server.h): answer only once the prompt's blocks are in the
  // shared DRAM tier, where the decode instance will load them, or (with transfer) once they
  // were streamed to the decode instance's KV transfer port.
  bool prefill_handoff = false;
  std::optional<KvTransferTarget> transfer;
};

// The most choices one request may ask for.
inline constexpr int kMaxChoices = 16;

// Bounds on the shape of a request body, checked before its tree is built (the tree of a
// small-valued array costs about 16 bytes per value, many times the bytes it came from).
struct JsonLimits {
  size_t max_depth = 64;
  size_t max_values = size_t{1} << 18;  // a token-id prompt of 262k tokens still fits
};

// The member at `path` of a body, read again as ordered_json: JSON schemas and tools keep the
// key order the client wrote (nlohmann::json sorts keys), so generated objects list properties
// as the schema declares them. A missing member is a 400 naming `param`.
std::variant<nlohmann::ordered_json, ApiError> ordered_body_member(
    std::string_view raw_body, std::initializer_list<const char*> path, const std::string& param);

// Any JSON request body, checked against the limits before its tree is built. Never throws.
std::variant<nlohmann::json, ApiError> parse_json_body(std::string_view body,
                                                       const JsonLimits& limits = {});

// Parses a /v1/completions or /v1/chat/completions body. Never throws.
std::variant<ApiRequest, ApiError> parse_api_request(std::string_view body, Endpoint endpoint,
                                                     const JsonLimits& limits = {});

// The pieces of a finished (or in-progress) choice that responses are built from.
struct ChoiceLogprob {
  std::string token;  // the token's text (may be part of a UTF-8 character)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

struct ResponseMeta {
  std::string id;
  int64_t created = 0;
  std::string model;
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
};

std::string finish_reason_json(FinishReason reason);  // "stop", "length" (cancel -> "abort")

// One finished choice. `message`: a chat answer read for tool calls (content may be null).
struct ChoiceResult {
  std::string text;
  std::optional<std::vector<ChoiceLogprob>> logprobs;
  FinishReason reason = FinishReason::kStop;
  std::optional<AssistantMessage> message;
};

std::string completion_response(const ResponseMeta& meta, Endpoint endpoint,
                                const std::vector<ChoiceResult>& choices, const Usage& usage);
std::string completion_response(const ResponseMeta& meta, Endpoint endpoint,
                                const std::string& text, const std::vector<ChoiceLogprob>* logprobs,
                                FinishReason reason, const Usage& usage);
// One SSE data payload (without the "data: " framing) for choice `index`. For chat, first_chunk
// adds the role; tool_calls adds delta.tool_calls; reason_tool_calls reports a stop as
// "tool_calls".
std::string stream_chunk(const ResponseMeta& meta, Endpoint endpoint, const std::string& text,
                         const std::vector<ChoiceLogprob>* logprobs,
                         std::optional<FinishReason> reason, bool first_chunk, int index = 0,
                         const std::vector<ToolCallDelta>* tool_calls = nullptr,
                         bool reason_tool_calls = false);
std::string usage_chunk(const ResponseMeta& meta, Endpoint endpoint, const Usage& usage);

}  // namespace infergrid
