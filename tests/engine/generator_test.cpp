#include "engine/generator.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "kernels/cpu_backend.h"
#include "model/synth.h"
#include "model/unicode_util.h"

namespace infergrid {
namespace {

TEST(Utf8, CompletePrefixHoldsBackSplitCharacters) {
  EXPECT_EQ(utf8_complete_prefix_length("abc"), 3u);
  EXPECT_EQ(utf8_complete_prefix_length(""), 0u);
  EXPECT_EQ(utf8_complete_prefix_length("a\xE2\x82\xAC"), 4u);
  EXPECT_EQ(utf8_complete_prefix_length("a\xE2\x82"), 1u);
  EXPECT_EQ(utf8_complete_prefix_length("a\xE2"), 1u);
  const std::string emoji = "\xF0\x9F\x98\x80";  // 4 bytes
  EXPECT_EQ(utf8_complete_prefix_length(std::string_view(emoji).substr(0, 3)), 0u);
  EXPECT_EQ(utf8_complete_prefix_length(emoji), 4u);
  EXPECT_EQ(utf8_complete_prefix_length("\xFF"),
            1u);  // invalid bytes are passed on, not held forever
}

class GeneratorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto dir = std::filesystem::temp_directory_path() / "infergrid_generator_test";
    std::filesystem::create_directories(dir);
    path_ = (dir / "model.gguf").string();
    SynthOptions o;
    o.size = "1m";
    o.type = TensorType::kQ8_0;
    ASSERT_TRUE(synthesize_model(o, path_, 2).is_ok());
  }
  void SetUp() override {
    auto model = Model::load(path_);
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto tokenizer = Tokenizer::from_gguf(model_->gguf());
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_ = std::move(tokenizer).value();
  }
  static std::string path_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};
std::string GeneratorTest::path_;

TEST_F(GeneratorTest, StreamsTextThatMatchesTheDecodedTokens) {
  CpuBackend backend(2);
  Generator generator(*model_, *tokenizer_, backend, 256, 32);
  GenerateOptions options;
  options.max_tokens = 40;
  options.sampling = SamplingParams::greedy();
  options.stop_at_eog = false;
  std::vector<int32_t> tokens;
  auto by_token = generator.generate_tokens(tokenizer_->encode("Hello world", true, false), options,
                                            [&](int32_t t) {
                                              tokens.push_back(t);
                                              return true;
                                            });
  ASSERT_TRUE(by_token.is_ok());
  EXPECT_EQ(by_token->generated_tokens, 40);
  EXPECT_EQ(by_token->finish_reason, "length");
  std::string streamed;
  auto by_text = generator.generate("Hello world", options, [&](std::string_view text) {
    streamed += text;
    return true;
  });
  ASSERT_TRUE(by_text.is_ok());
  EXPECT_EQ(streamed, tokenizer_->decode(tokens));
  EXPECT_FALSE(streamed.empty());
}

TEST_F(GeneratorTest, SameSeedSameTextAndCallbackCanStop) {
  CpuBackend backend(2);
  Generator generator(*model_, *tokenizer_, backend, 256, 32);
  GenerateOptions options;
  options.max_tokens = 24;
  options.sampling.seed = 99;
  options.sampling.temperature = 1.0f;
  auto run = [&] {
    std::string text;
    EXPECT_TRUE(generator
                    .generate("Once", options,
                              [&](std::string_view t) {
                                text += t;
                                return true;
                              })
                    .is_ok());
    return text;
  };
  EXPECT_EQ(run(), run());
  int calls = 0;
  auto stopped = generator.generate_tokens(tokenizer_->encode("Once", true, false), options,
                                           [&](int32_t) { return ++calls < 5; });
  ASSERT_TRUE(stopped.is_ok());
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(stopped->finish_reason, "stop");
}

TEST_F(GeneratorTest, PromptLongerThanContextIsAClearError) {
  CpuBackend backend(1);
  Generator generator(*model_, *tokenizer_, backend, 16, 8);
  std::vector<int32_t> prompt(20, 300);
  auto result = generator.generate_tokens(prompt, GenerateOptions{}, [](int32_t) { return true; });
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(result.status().message().find("20 tokens"), std::string::npos);
}

}  // namespace
}  // namespace infergrid
