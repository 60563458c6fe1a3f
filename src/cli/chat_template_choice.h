// The chat template a model is served with, chosen by the one rule `serve` and `route` share:
// --chat-template-file (Jinja), else --chat-template (a built-in name), else the template in
// the GGUF, else ChatML with a warning. The router prepares requests with the instances'
// template, so the two must never choose differently for the same file and flags.
#pragma once

#include <string>

#include "core/status.h"
#include "model/chat_template.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace infergrid {

// label: the model's name in warnings. A template the user names that cannot be read or
// parsed is an error (the server must not start with another).
Result<ChatTemplate> choose_chat_template(const Model& model, const Tokenizer& tokenizer,
                                          const std::string& template_file,
                                          const std::string& template_name,
                                          const std::string& label);

}  // namespace infergrid
