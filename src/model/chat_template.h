// ChatTemplate: turns a list of chat messages into the prompt text a model was trained on.
//
// GGUF files carry their template as Jinja source (`tokenizer.chat_template`). Rather than run
// Jinja, the template is recognised by its distinctive markers (as llama.cpp does) and rendered
// by a fixed formatter for that family: ChatML (Qwen, many fine-tunes), Llama 3, Llama 2,
// Mistral (v3+/Nemo), Phi-3, Gemma and DeepSeek-R1. A template matching none of them is
// reported as unsupported by name rather than rendered wrongly. Files without a template get
// ChatML, the common default of llama.cpp and vLLM.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/gguf.h"

namespace infergrid {

struct ChatMessage {
  std::string role;  // system, user, assistant (tool and others are rendered as user turns)
  std::string content;
};

enum class ChatFormat { kChatMl, kLlama3, kLlama2, kMistral, kPhi3, kGemma, kDeepSeekR1 };

class ChatTemplate {
 public:
  // From the template text (empty = none given: ChatML).
  static Result<ChatTemplate> detect(std::string_view jinja_source);
  static Result<ChatTemplate> from_gguf(const GgufFile& file);
  static Result<ChatTemplate> from_name(std::string_view name);  // "chatml", "llama3", ...

  ChatFormat format() const { return format_; }
  std::string name() const;
  // The prompt text, ending with the assistant's turn header when add_generation_prompt.
  // BOS is not included: the tokenizer adds it.
  Result<std::string> render(const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt = true) const;

 private:
  explicit ChatTemplate(ChatFormat format) : format_(format) {}
  ChatFormat format_;
};

}  // namespace infergrid
