// A Jinja interpreter for chat templates: the subset that real templates (Hugging Face's
// `chat_template`, GGUF's `tokenizer.chat_template`) use, with the semantics of Jinja2 as
// transformers' apply_chat_template configures it (trim_blocks, lstrip_blocks, loop controls,
// a tojson that keeps key order and non-ASCII text, raise_exception, strftime_now).
//
// Supported: {{ }}, {% if/elif/else %}, {% for %} (unpacking, `if` filter, else, loop.*,
// break/continue), {% set %} (names, namespace attributes, tuples, blocks), {% macro %} with
// defaults, {% generation %} (rendered through), comments, whitespace control (- and +);
// expressions with Python's operators, literals, slicing, attribute and item access, calls,
// the filters and tests templates call (list in jinja.cpp), string/dict methods.
//
// Invariants: parsing never reads past the source; rendering is bounded (loop iterations,
// macro recursion, output size) so a hostile template cannot hang or exhaust the server; every
// failure is a kInvalidArgument Status naming the template line, except raise_exception, whose
// message is the template's own, verbatim (Gemma's "System role not supported").
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace infergrid {

struct JinjaNode;

struct JinjaOptions {
  // strftime_now(format) renders this time (seconds since the epoch, UTC); empty = the clock.
  std::function<int64_t()> now;
};

class JinjaTemplate {
 public:
  static Result<JinjaTemplate> parse(std::string_view source);

  // `context` is an object of variables (messages, tools, add_generation_prompt, bos_token,
  // ...); ordered_json so dictionaries keep their keys' order, as Python's do.
  Result<std::string> render(const nlohmann::ordered_json& context,
                             const JinjaOptions& options = {}) const;

 private:
  std::shared_ptr<const JinjaNode> root_;
};

}  // namespace infergrid
