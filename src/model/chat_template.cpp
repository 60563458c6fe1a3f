#include "model/chat_template.h"

#include <algorithm>

#include <fmt/format.h>

#include "model/jinja.h"
#include "model/tool_call_markers.h"

namespace infergrid {

namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

struct NamedFormat {
  const char* name;
  ChatFormat format;
};
constexpr NamedFormat kFormats[] = {
    {"chatml", ChatFormat::kChatMl},
    {"llama3", ChatFormat::kLlama3},
    {"llama2", ChatFormat::kLlama2},
    {"mistral", ChatFormat::kMistral},
    {"phi3", ChatFormat::kPhi3},
    {"gemma", ChatFormat::kGemma},
    {"deepseek-r1", ChatFormat::kDeepSeekR1},
};

// The call convention a template's source teaches its model.
ToolCallFormat detect_tool_format(std::string_view src) {
  if (contains(src, kMistralCallsOpen)) return ToolCallFormat::kMistral;
  if (contains(src, kHermesCallOpen)) return ToolCallFormat::kHermes;
  if (contains(src, kLlamaPythonTag) ||
      (contains(src, "<|start_header_id|>") && contains(src, "\"parameters\""))) {
    return ToolCallFormat::kLlama3Json;
  }
  return ToolCallFormat::kHermes;
}

// Arguments as templates expect them: the object itself (they apply tojson), or the text when
// it is not JSON.
nlohmann::ordered_json arguments_value(const std::string& arguments) {
  auto parsed = nlohmann::ordered_json::parse(arguments, nullptr, false);
  if (parsed.is_discarded()) return arguments;
  return parsed;
}

std::string hermes_call(const ChatToolCall& call) {
  nlohmann::ordered_json args = arguments_value(call.arguments);
  return fmt::format("<tool_call>\n{{\"name\": {}, \"arguments\": {}}}\n</tool_call>",
                     nlohmann::ordered_json(call.name).dump(), args.dump());
}

// For templates that know nothing of tools: the signatures and the Hermes convention in the
// system turn, calls and results as text (what llama.cpp does for such templates).
std::vector<ChatMessage> with_tools_as_text(const std::vector<ChatMessage>& messages,
                                            const nlohmann::ordered_json* tools) {
  std::vector<ChatMessage> out;
  out.reserve(messages.size() + 1);
  if (tools && tools->is_array() && !tools->empty()) {
    std::string text =
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou "
        "are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    for (const auto& tool : *tools) text += "\n" + tool.dump();
    text +=
        "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>";
    if (!messages.empty() && messages.front().role == "system") {
      ChatMessage system = messages.front();
      system.content = system.content.empty() ? text : system.content + "\n\n" + text;
      out.push_back(std::move(system));
    } else {
      out.push_back({"system", text});
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0 && !out.empty() && messages[0].role == "system") continue;
    ChatMessage m = messages[i];
    if (m.role == "tool") {
      m.role = "user";
      m.content = "<tool_response>\n" + m.content + "\n</tool_response>";
    }
    for (const ChatToolCall& call : m.tool_calls) {
      if (!m.content.empty()) m.content += '\n';
      m.content += hermes_call(call);
    }
    m.tool_calls.clear();
    m.content_null = false;
    out.push_back(std::move(m));
  }
  return out;
}

nlohmann::ordered_json message_json(const ChatMessage& m) {
  nlohmann::ordered_json out = {{"role", m.role}};
  out["content"] =
      m.content_null ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(m.content);
  // Templates test `'tool_calls' in message`: the key is there only when there are calls.
  if (!m.tool_calls.empty()) {
    nlohmann::ordered_json calls = nlohmann::ordered_json::array();
    for (const ChatToolCall& call : m.tool_calls) {
      calls.push_back(
          {{"id", call.id},
           {"type", "function"},
           {"function", {{"name", call.name}, {"arguments", arguments_value(call.arguments)}}}});
    }
    out["tool_calls"] = std::move(calls);
  }
  if (!m.tool_call_id.empty()) out["tool_call_id"] = m.tool_call_id;
  if (!m.name.empty()) out["name"] = m.name;
  return out;
}

}  // namespace

const char* tool_call_format_name(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kHermes:
      return "hermes";
    case ToolCallFormat::kLlama3Json:
      return "llama3-json";
    case ToolCallFormat::kMistral:
      return "mistral";
  }
  return "hermes";
}

Result<ChatTemplate> ChatTemplate::detect(std::string_view src) {
  if (src.empty() || contains(src, "<|im_start|>")) return ChatTemplate(ChatFormat::kChatMl);
  if (contains(src, "<|start_header_id|>") && contains(src, "<|eot_id|>")) {
    return ChatTemplate(ChatFormat::kLlama3);
  }
  if (contains(src, "<｜User｜>") && contains(src, "<｜Assistant｜>")) {
    return ChatTemplate(ChatFormat::kDeepSeekR1);
  }
  if (contains(src, "<start_of_turn>")) return ChatTemplate(ChatFormat::kGemma);
  if (contains(src, "<|user|>") && contains(src, "<|end|>")) return ChatTemplate(ChatFormat::kPhi3);
  if (contains(src, "[INST]")) {
    // Llama 2 wraps the system prompt in <<SYS>>; Mistral's templates put it in the last user
    // turn and write "[INST]" without inner spaces.
    if (contains(src, "<<SYS>>")) return ChatTemplate(ChatFormat::kLlama2);
    return ChatTemplate(ChatFormat::kMistral);
  }
  std::string head(src.substr(0, 80));
  std::replace(head.begin(), head.end(), '\n', ' ');
  return make_error(StatusCode::kUnsupported,
                    "the model's chat template is not one infergrid can render (supported: "
                    "ChatML, Llama 3, Llama 2, Mistral, Phi-3, Gemma, DeepSeek-R1); it begins "
                    "'{}...'. Use /v1/completions with a formatted prompt instead",
                    head);
}

Result<ChatTemplate> ChatTemplate::from_jinja(std::string_view jinja_source,
                                              std::string eos_token) {
  IG_ASSIGN_OR_RETURN(auto parsed, JinjaTemplate::parse(jinja_source));
  ChatTemplate t(ChatFormat::kChatMl);
  t.jinja_ = std::make_shared<const JinjaTemplate>(std::move(parsed));
  t.eos_token_ = std::move(eos_token);
  t.renders_tools_ = contains(jinja_source, "tools");
  if (t.renders_tools_) t.tool_format_ = detect_tool_format(jinja_source);
  return t;
}

Result<ChatTemplate> ChatTemplate::from_gguf(const GgufFile& file, std::string eos_token,
                                             std::string* fallback_reason) {
  IG_ASSIGN_OR_RETURN(auto source, file.get_string("tokenizer.chat_template"));
  if (!source || source->empty()) return detect({});
  auto jinja = from_jinja(*source, std::move(eos_token));
  if (jinja.is_ok()) return jinja;
  if (fallback_reason) {
    *fallback_reason =
        fmt::format("{}; using the built-in formatter its markers name", jinja.status().message());
  }
  return detect(*source);
}

Result<ChatTemplate> ChatTemplate::from_name(std::string_view name) {
  for (const auto& f : kFormats) {
    if (name == f.name) return ChatTemplate(f.format);
  }
  return make_error(StatusCode::kInvalidArgument,
                    "unknown chat template '{}' (chatml, llama3, llama2, mistral, phi3, gemma, "
                    "deepseek-r1)",
                    name);
}

std::string ChatTemplate::name() const {
  if (jinja_) return "jinja";
  for (const auto& f : kFormats) {
    if (f.format == format_) return f.name;
  }
  return "unknown";
}

Result<std::string> ChatTemplate::render(const std::vector<ChatMessage>& given,
                                         bool add_generation_prompt,
                                         const nlohmann::ordered_json* tools) const {
  if (given.empty()) return Status(StatusCode::kInvalidArgument, "messages must not be empty");
  const bool has_tools = tools && tools->is_array() && !tools->empty();
  const bool tool_turns = std::any_of(given.begin(), given.end(), [](const ChatMessage& m) {
    return m.role == "tool" || !m.tool_calls.empty();
  });
  std::vector<ChatMessage> rewritten;
  if (!renders_tools_ && (has_tools || tool_turns)) rewritten = with_tools_as_text(given, tools);
  const std::vector<ChatMessage>& messages = rewritten.empty() ? given : rewritten;
  if (jinja_) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& m : messages) list.push_back(message_json(m));
    nlohmann::ordered_json context = {{"messages", std::move(list)},
                                      {"add_generation_prompt", add_generation_prompt},
                                      {"bos_token", ""},
                                      {"eos_token", eos_token_}};
    if (has_tools && renders_tools_) context["tools"] = *tools;
    return jinja_->render(context);
  }
  std::string out;
  switch (format_) {
    case ChatFormat::kChatMl:
      for (const auto& m : messages)
        out += fmt::format("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatFormat::kLlama3:
      for (const auto& m : messages) {
        out += fmt::format("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>", m.role,
                           trim(m.content));
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFormat::kLlama2: {
      // <s> is the tokenizer's BOS for the first turn; later turns carry their own.
      std::string system;
      bool first_user = true;
      for (const auto& m : messages) {
        if (m.role == "system") {
          system = trim(m.content);
        } else if (m.role == "assistant") {
          out += fmt::format(" {} </s>", trim(m.content));
        } else {
          out += first_user ? "[INST] " : "<s>[INST] ";
          if (!system.empty()) {
            out += fmt::format("<<SYS>>\n{}\n<</SYS>>\n\n", system);
            system.clear();
          }
          out += fmt::format("{} [/INST]", trim(m.content));
          first_user = false;
        }
      }
      break;
    }
    case ChatFormat::kMistral: {
      std::string system;
      size_t last_user = 0;
      for (size_t i = 0; i < messages.size(); ++i) {
        if (messages[i].role != "system" && messages[i].role != "assistant") last_user = i;
      }
      for (size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        if (m.role == "system") {
          system = m.content;
        } else if (m.role == "assistant") {
          out += fmt::format("{}</s>", m.content);
        } else {
          out += "[INST]";
          if (i == last_user && !system.empty()) out += fmt::format("{}\n\n", system);
          out += fmt::format("{}[/INST]", m.content);
        }
      }
      break;
    }
    case ChatFormat::kPhi3:
      for (const auto& m : messages) {
        if (m.role == "system" && m.content.empty()) continue;
        out += fmt::format("<|{}|>\n{}<|end|>\n", m.role, m.content);
      }
      if (add_generation_prompt) out += "<|assistant|>\n";
      break;
    case ChatFormat::kGemma: {
      // Gemma has no system role: the system prompt is prepended to the first user turn.
      std::string system;
      for (const auto& m : messages) {
        if (m.role == "system") {
          system = fmt::format("{}\n\n", m.content);
          continue;
        }
        const std::string role = m.role == "assistant" ? "model" : "user";
        out += fmt::format("<start_of_turn>{}\n{}{}<end_of_turn>\n", role, system, trim(m.content));
        system.clear();
      }
      if (add_generation_prompt) out += "<start_of_turn>model\n";
      break;
    }
    case ChatFormat::kDeepSeekR1:
      for (const auto& m : messages) {
        if (m.role == "system") out += m.content;
      }
      for (const auto& m : messages) {
        if (m.role == "system") continue;
        if (m.role == "assistant") {
          out += fmt::format("<｜Assistant｜>{}<｜end▁of▁sentence｜>", m.content);
        } else {
          out += fmt::format("<｜User｜>{}", m.content);
        }
      }
      if (add_generation_prompt) out += "<｜Assistant｜><think>\n";
      break;
  }
  return out;
}

}  // namespace infergrid
