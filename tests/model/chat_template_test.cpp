#include "model/chat_template.h"
#include "golden_required.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace infergrid {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};

TEST(ChatTemplate, RendersChatMlLlama3AndLlama2) {
  auto chatml = ChatTemplate::from_name("chatml");
  ASSERT_TRUE(chatml.is_ok());
  EXPECT_EQ(*chatml->render(kConversation),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
            "<|im_start|>assistant\n");
  auto llama3 = ChatTemplate::from_name("llama3");
  EXPECT_EQ(*llama3->render({{"user", "Hi"}}),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  auto llama2 = ChatTemplate::from_name("llama2");
  EXPECT_EQ(*llama2->render(kConversation),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]");
  EXPECT_FALSE(ChatTemplate::from_name("jinja").is_ok());
  EXPECT_FALSE(chatml->render({}).is_ok());
}

TEST(ChatTemplate, DetectsTheFamilyOfRealTemplates) {
  const auto dir = std::filesystem::path(INFERGRID_SHARED_DIR) / "golden" / "chat-templates";
  if (!std::filesystem::exists(dir)) IG_GOLDEN_MISSING("no golden chat templates in " << dir);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"Qwen-Qwen2.5-7B-Instruct.jinja", "chatml"},
      {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseek-r1"},
      {"google-gemma-2-2b-it.jinja", "gemma"},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3"},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3"},
      {"microsoft-Phi-3.5-mini-instruct.jinja", "phi3"},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral"},
  };
  for (const auto& [file, name] : expected) {
    std::ifstream in(dir / file);
    ASSERT_TRUE(in) << file;
    std::stringstream source;
    source << in.rdbuf();
    auto t = ChatTemplate::detect(source.str());
    ASSERT_TRUE(t.is_ok()) << file << ": " << t.status().to_string();
    EXPECT_EQ(t->name(), name) << file;
  }
  auto unknown = ChatTemplate::detect("{% for m in messages %}{{ m.content }}{% endfor %}");
  EXPECT_EQ(unknown.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(unknown.status().message().find("not one infergrid can render"), std::string::npos);
  EXPECT_EQ(ChatTemplate::detect("")->name(), "chatml");
}

TEST(ChatTemplate, ExecutesTemplatesAsJinja) {
  const auto dir = std::filesystem::path(INFERGRID_SHARED_DIR) / "golden" / "chat-templates";
  if (!std::filesystem::exists(dir)) IG_GOLDEN_MISSING("no golden chat templates in " << dir);
  const auto read = [&](const char* file) {
    std::ifstream in(dir / file);
    std::stringstream source;
    source << in.rdbuf();
    return source.str();
  };
  auto qwen = ChatTemplate::from_jinja(read("Qwen-Qwen2.5-7B-Instruct.jinja"), "<|im_end|>");
  ASSERT_TRUE(qwen.is_ok()) << qwen.status().to_string();
  EXPECT_TRUE(qwen->is_jinja());
  EXPECT_EQ(qwen->name(), "jinja");
  // The template's own default system prompt, which no marker-based formatter knows.
  EXPECT_EQ(*qwen->render({{"user", "Hi"}}),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  auto gemma = ChatTemplate::from_jinja(read("google-gemma-2-2b-it.jinja"), "<eos>");
  ASSERT_TRUE(gemma.is_ok());
  auto refused = gemma->render({{"system", "Be brief."}, {"user", "Hi"}});
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), "System role not supported");
  EXPECT_EQ(*gemma->render({{"user", "Hi"}}, false), "<start_of_turn>user\nHi<end_of_turn>\n");
  EXPECT_EQ(ChatTemplate::from_jinja("{% if %}", "").status().code(), StatusCode::kInvalidArgument);
}

// Conversations with tools, tool calls and tool results, which the golden renders do not cover,
// rendered by our interpreter and by the real Jinja2 (python3-jinja2, tools/render_template)
// from the same context: byte for byte equal, and the call format detected from each template.
TEST(ChatTemplate, ToolConversationsRenderAsJinja2RendersThem) {
  const auto dir = std::filesystem::path(INFERGRID_SHARED_DIR) / "golden" / "chat-templates";
  if (!std::filesystem::exists(dir)) IG_GOLDEN_MISSING("no golden chat templates in " << dir);
  using ojson = nlohmann::ordered_json;
  const ojson tools = ojson::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"},
     "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time now",
     "parameters": {"type": "object", "properties": {}}}}])");
  ChatMessage call{"assistant", ""};
  call.content_null = true;
  call.tool_calls = {{"abcDEF123", "get_weather", R"({"city": "Oslo", "unit": "c"})"}};
  ChatMessage result{"tool", R"({"temperature": 4})"};
  result.tool_call_id = "abcDEF123";
  const std::vector<std::vector<ChatMessage>> conversations = {
      {{"user", "Weather in Oslo?"}},
      {{"system", "Be brief."}, {"user", "Weather in Oslo?"}, call, result},
      {{"user", "Weather in Oslo?"},
       call,
       result,
       {"assistant", "It is 4 degrees."},
       {"user", "And the time?"}},
  };
  struct Family {
    const char* file;
    const char* eos;
    ToolCallFormat format;
  };
  const Family families[] = {
      {"Qwen-Qwen2.5-7B-Instruct.jinja", "<|im_end|>", ToolCallFormat::kHermes},
      {"meta-llama-Llama-3.1-8B-Instruct.jinja", "<|eot_id|>", ToolCallFormat::kLlama3Json},
      {"meta-llama-Llama-3.2-3B-Instruct.jinja", "<|eot_id|>", ToolCallFormat::kLlama3Json},
      {"mistralai-Mistral-Nemo-Instruct-2407.jinja", "</s>", ToolCallFormat::kMistral},
  };
  const auto cases_path = std::filesystem::temp_directory_path() /
                          ("ig_tool_templates_" + std::to_string(::getpid()) + ".jsonl");
  std::vector<std::string> ours;
  {
    std::ofstream cases(cases_path);
    for (const Family& family : families) {
      std::ifstream in(dir / family.file);
      std::stringstream source;
      source << in.rdbuf();
      auto t = ChatTemplate::from_jinja(source.str(), family.eos);
      ASSERT_TRUE(t.is_ok()) << family.file;
      EXPECT_TRUE(t->renders_tools()) << family.file;
      EXPECT_EQ(t->tool_call_format(), family.format) << family.file;
      for (const auto& conversation : conversations) {
        auto rendered = t->render(conversation, true, &tools);
        ours.push_back(rendered.is_ok() ? "R" + *rendered : "E" + rendered.status().message());
        // The context transformers (and vLLM) give the template: arguments as objects.
        ojson messages = ojson::array();
        for (const ChatMessage& m : conversation) {
          ojson j = {{"role", m.role}};
          j["content"] = m.content_null ? ojson(nullptr) : ojson(m.content);
          if (!m.tool_calls.empty()) {
            j["tool_calls"] = ojson::array();
            for (const auto& c : m.tool_calls) {
              j["tool_calls"].push_back(
                  {{"id", c.id},
                   {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", ojson::parse(c.arguments)}}}});
            }
          }
          if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
          messages.push_back(std::move(j));
        }
        const ojson context = {{"messages", messages},
                               {"tools", tools},
                               {"add_generation_prompt", true},
                               {"bos_token", ""},
                               {"eos_token", family.eos}};
        cases << ojson{{"template", (dir / family.file).string()}, {"context", context}}.dump()
              << "\n";
      }
    }
  }
  const std::string command = "/usr/bin/python3 " INFERGRID_SOURCE_DIR "/tools/render_template " +
                              cases_path.string() + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = ::pclose(pipe);
  std::filesystem::remove(cases_path);
  ASSERT_EQ(status, 0) << output;
  std::istringstream lines(output);
  std::string line;
  size_t i = 0;
  for (; std::getline(lines, line); ++i) {
    ASSERT_LT(i, ours.size()) << output;
    const auto reference = nlohmann::json::parse(line);
    const std::string expected = reference.contains("rendered")
                                     ? "R" + reference["rendered"].get<std::string>()
                                     : "E" + reference["error"].get<std::string>();
    EXPECT_EQ(ours[i], expected) << "case " << i;
  }
  EXPECT_EQ(i, ours.size());
}

// A template that knows nothing of tools still gets them: the signatures and the Hermes
// convention in the system turn, calls and results as text.
TEST(ChatTemplate, TemplatesWithoutToolsGetThemAsText) {
  auto chatml = ChatTemplate::from_jinja(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
      "<|im_end|>");
  ASSERT_TRUE(chatml.is_ok());
  EXPECT_FALSE(chatml->renders_tools());
  EXPECT_EQ(chatml->tool_call_format(), ToolCallFormat::kHermes);
  const auto tools = nlohmann::ordered_json::parse(
      R"([{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}])");
  ChatMessage call{"assistant", ""};
  call.tool_calls = {{"call_1", "f", R"({"a":1})"}};
  ChatMessage result{"tool", "done"};
  result.tool_call_id = "call_1";
  auto text = chatml->render({{"user", "go"}, call, result}, true, &tools);
  ASSERT_TRUE(text.is_ok()) << text.status().to_string();
  EXPECT_EQ(text->rfind("<|im_start|>system\n# Tools\n", 0), 0u) << *text;
  EXPECT_NE(
      text->find(R"({"type":"function","function":{"name":"f","parameters":{"type":"object"}}})"),
      std::string::npos);
  EXPECT_NE(text->find("<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": "
                       "{\"a\":1}}\n</tool_call><|im_end|>"),
            std::string::npos)
      << *text;
  EXPECT_NE(text->find("<|im_start|>user\n<tool_response>\ndone\n</tool_response><|im_end|>"),
            std::string::npos);
  // The built-in formatters do the same.
  auto llama3 = ChatTemplate::from_name("llama3");
  auto built_in = llama3->render({{"user", "go"}}, true, &tools);
  ASSERT_TRUE(built_in.is_ok());
  EXPECT_NE(built_in->find("<tools>"), std::string::npos);
}

}  // namespace
}  // namespace infergrid
