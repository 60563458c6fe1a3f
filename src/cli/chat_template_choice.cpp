#include "cli/chat_template_choice.h"

#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

namespace infergrid {

Result<ChatTemplate> choose_chat_template(const Model& model, const Tokenizer& tokenizer,
                                          const std::string& template_file,
                                          const std::string& template_name,
                                          const std::string& label) {
  Result<ChatTemplate> chat = Status(StatusCode::kInternal, "no chat template");
  // What a template's {{ eos_token }} renders: the text of the model's EOS token.
  const std::string eos_token(tokenizer.token_text(tokenizer.eos_id()));
  if (!template_file.empty()) {
    std::ifstream file(template_file, std::ios::binary);
    if (!file) {
      return make_error(StatusCode::kNotFound, "--chat-template-file {}: cannot read it",
                        template_file);
    }
    std::stringstream source;
    source << file.rdbuf();
    chat = ChatTemplate::from_jinja(source.str(), eos_token);
    if (!chat.is_ok()) {
      return make_error(StatusCode::kInvalidArgument, "--chat-template-file {}: {}", template_file,
                        chat.status().message());
    }
    return chat;
  }
  if (!template_name.empty()) {
    chat = ChatTemplate::from_name(template_name);
  } else {
    std::string fallback_reason;
    chat = ChatTemplate::from_gguf(model.gguf(), eos_token, &fallback_reason);
    if (!fallback_reason.empty()) spdlog::warn("{}: {}", label, fallback_reason);
  }
  if (!chat.is_ok()) {
    // Completions still work; chat requests get a clear error from the template.
    spdlog::warn(
        "{}: {}; /v1/chat/completions falls back to ChatML (override with "
        "--chat-template)",
        label, chat.status().message());
    chat = ChatTemplate::from_name("chatml");
  }
  return chat;
}

}  // namespace infergrid
