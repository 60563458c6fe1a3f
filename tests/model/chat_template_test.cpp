#include "model/chat_template.h"
#include "golden_required.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace infergrid
