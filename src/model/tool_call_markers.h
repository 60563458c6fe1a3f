// The texts that open and close tool calls in the formats infergrid reads (Hermes/Qwen,
// Mistral, Llama 3.1), shared by the tokenizer (which renders these control tokens as text),
// the chat template (which detects the format from them) and the server's call parser.
#pragma once

#include <string_view>

namespace infergrid {

inline constexpr std::string_view kHermesCallOpen = "<tool_call>";
inline constexpr std::string_view kHermesCallClose = "</tool_call>";
inline constexpr std::string_view kMistralCallsOpen = "[TOOL_CALLS]";
inline constexpr std::string_view kLlamaPythonTag = "<|python_tag|>";

}  // namespace infergrid
