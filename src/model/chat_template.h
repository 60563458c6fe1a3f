// ChatTemplate: turns a list of chat messages into the prompt text a model was trained on.
//
// GGUF files carry their template as Jinja source (`tokenizer.chat_template`), and that source
// is what renders the prompt, through model/jinja.h, exactly as transformers' apply_chat_template
// would (a template's own raise_exception, such as Gemma's refusal of a system turn, is an
// invalid-argument error: a 400 to clients). Built-in formatters for the common families
// (ChatML, Llama 3, Llama 2, Mistral v3+/Nemo, Phi-3, Gemma, DeepSeek-R1), chosen by name or
// recognised by the template's markers as llama.cpp does, are the fallback for files without a
// template (ChatML, the common default of llama.cpp and vLLM) or with one that does not parse.
//
// Tools: a template that renders `tools` itself (Qwen 2.5, Llama 3.1, Mistral Nemo, ...) gets
// them, and the messages' tool calls and results, as transformers passes them; for one that
// does not (a plain ChatML template, the built-in formatters), the tool signatures and the
// Hermes call convention are written into the system turn, assistant calls as <tool_call>
// blocks and results as <tool_response> user turns, as llama.cpp does for such templates.
// tool_call_format() is the convention the model is expected to answer in.
//
// BOS is never part of the rendered text (bos_token renders as ""): the tokenizer adds it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "model/gguf.h"

namespace infergrid {

struct ChatToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text, as OpenAI sends it
};

struct ChatMessage {
  std::string role;  // system, user, assistant, tool
  std::string content;
  bool content_null = false;  // an assistant turn with only tool calls sent content: null
  std::vector<ChatToolCall> tool_calls = {};  // assistant turns
  std::string tool_call_id = {};              // tool turns: the call this result answers
  std::string name = {};                      // tool turns: the function's name, when sent
};

// How a model writes tool calls (and so how its output is parsed and constrained).
enum class ToolCallFormat {
  kHermes,      // <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call> (Qwen, Hermes)
  kLlama3Json,  // {"name": ..., "parameters": {...}} as the whole answer (Llama 3.1+)
  kMistral,     // [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (Mistral, Nemo)
};
const char* tool_call_format_name(ToolCallFormat format);

enum class ChatFormat { kChatMl, kLlama3, kLlama2, kMistral, kPhi3, kGemma, kDeepSeekR1 };

class JinjaTemplate;

class ChatTemplate {
 public:
  // The built-in formatter that the template text's markers name (empty = none given: ChatML).
  static Result<ChatTemplate> detect(std::string_view jinja_source);
  // The template itself, executed as Jinja; eos_token is what `{{ eos_token }}` renders.
  static Result<ChatTemplate> from_jinja(std::string_view jinja_source, std::string eos_token);
  // The file's template as Jinja (eos_token as in from_jinja: the tokenizer's EOS text); if it
  // has none or it does not parse, the built-in formatter detect() finds (the warning, if any,
  // in *fallback_reason).
  static Result<ChatTemplate> from_gguf(const GgufFile& file, std::string eos_token,
                                        std::string* fallback_reason);
  static Result<ChatTemplate> from_gguf(const GgufFile& file);
  static Result<ChatTemplate> from_name(std::string_view name);  // "chatml", "llama3", ...

  ChatFormat format() const { return format_; }
  // The built-in family ("chatml", ...), or "jinja" for an executed template.
  std::string name() const;
  bool is_jinja() const { return jinja_ != nullptr; }
  // The prompt text, ending with the assistant's turn header when add_generation_prompt.
  // BOS is not included: the tokenizer adds it. `tools`: OpenAI's tools array, as sent (null or
  // empty: none).
  Result<std::string> render(const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt = true,
                             const nlohmann::ordered_json* tools = nullptr) const;
  ToolCallFormat tool_call_format() const { return tool_format_; }
  // Whether the template itself renders tool signatures, calls and results.
  bool renders_tools() const { return renders_tools_; }

 private:
  explicit ChatTemplate(ChatFormat format) : format_(format) {}
  ChatFormat format_;
  std::shared_ptr<const JinjaTemplate> jinja_;
  std::string eos_token_;
  ToolCallFormat tool_format_ = ToolCallFormat::kHermes;
  bool renders_tools_ = false;
};

}  // namespace infergrid
