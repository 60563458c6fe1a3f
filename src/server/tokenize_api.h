// POST /tokenize and /detokenize, as llama-server names them: a model's tokenizer over HTTP,
// for clients that count or build prompts themselves. Bodies: /tokenize {"content": string,
// "add_special": bool (false), "with_pieces": bool (false), "model": name (the first)}
// -> {"tokens": [id...]} or, with pieces, [{"id", "piece"}] (a piece that is not valid UTF-8 is
// given as its bytes); /detokenize {"tokens": [id...], "model"} -> {"content": string}.
// Special tokens in the content are parsed, as in llama-server. POST /apply-template
// {"messages": [...], "tools": [...], "model"} -> {"prompt": the text the chat template renders,
// the assistant's turn opened}, which /v1/chat/completions would tokenize. Never throws.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "server/openai_api.h"
#include "server/server_context.h"

namespace infergrid {

// The JSON response body, or the error to answer.
std::variant<std::string, ApiError> tokenize_body(const ServerContext& server,
                                                  std::string_view body);
std::variant<std::string, ApiError> detokenize_body(const ServerContext& server,
                                                    std::string_view body);
std::variant<std::string, ApiError> apply_template_body(const ServerContext& server,
                                                        std::string_view body);

}  // namespace infergrid
