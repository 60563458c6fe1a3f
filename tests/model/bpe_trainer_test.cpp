// The BPE trainer: deterministic output, documented tie-breaking, vocabularies that compress
// the text they were trained on and round-trip everything else, and fast enough to run inside
// the model synthesizer.
#include "model/bpe_trainer.h"

#include <gtest/gtest.h>

#include <chrono>

#include "model/tokenizer.h"

namespace infergrid {
namespace {

TEST(BpeTrainer, LearnsMostFrequentPairsWithLexicographicTies) {
  // One word "abcd": every pair occurs once, so ties decide: (a,b) < (b,c) < (c,d); then
  // ("ab","c") < ("c","d"); then ("abc","d").
  auto result = train_byte_level_bpe("abcd", 10, PreTokenizerType::kGpt2);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  EXPECT_EQ(result->merges, (std::vector<std::string>{"a b", "ab c", "abc d"}));
  ASSERT_EQ(result->tokens.size(), 259u);
  EXPECT_EQ(result->tokens[0], "!");  // GPT-2 byte order
  EXPECT_EQ(result->tokens[256], "ab");
  EXPECT_EQ(result->tokens[258], "abcd");

  // Frequency beats lexicographic order: "xy" occurs three times, "ab" once.
  auto frequent = train_byte_level_bpe("ab xy xy xy", 1, PreTokenizerType::kGpt2);
  ASSERT_TRUE(frequent.is_ok());
  ASSERT_EQ(frequent->merges.size(), 1u);
  // Pieces are "ab", " xy", " xy", " xy": (" ", "x") and ("x", "y") both occur 3 times, and
  // the raw bytes " " < "x" break the tie.
  EXPECT_EQ(frequent->merges[0], "Ġ x");
}

TEST(BpeTrainer, MergesNeverCrossPreTokenizerPieces) {
  auto result = train_byte_level_bpe("a b a b a b", 20, PreTokenizerType::kGpt2);
  ASSERT_TRUE(result.is_ok());
  // Pieces are "a", " b", " a", " b", ...: "a Ġ" would cross a boundary and must not appear.
  for (const std::string& merge : result->merges) EXPECT_NE(merge, "a Ġ");
  EXPECT_EQ(result->merges.size(), 2u);  // "Ġ a" and "Ġ b", nothing else
}

TEST(BpeTrainer, IsDeterministic) {
  const std::string_view corpus = default_bpe_training_corpus();
  auto first = train_byte_level_bpe(corpus, 300);
  auto second = train_byte_level_bpe(corpus, 300);
  ASSERT_TRUE(first.is_ok() && second.is_ok());
  EXPECT_EQ(first->merges, second->merges);
  EXPECT_EQ(first->tokens, second->tokens);
  EXPECT_EQ(first->merges.size(), 300u);
}

TEST(BpeTrainer, RejectsNegativeMergeCount) {
  EXPECT_EQ(train_byte_level_bpe("abc", -1).status().code(), StatusCode::kInvalidArgument);
}

TEST(BpeTrainer, DefaultCorpusIsSubstantial) {
  const std::string_view corpus = default_bpe_training_corpus();
  EXPECT_GE(corpus.size(), 30000u);
  EXPECT_NE(corpus.find("def "), std::string_view::npos);  // has code as well as prose
}

// Its time is printed, not asserted: a wall-clock bound fails on a loaded machine, not on a slow
// trainer.
TEST(BpeTrainer, ThousandMergesTrain) {
  const auto start = std::chrono::steady_clock::now();
  auto result = train_byte_level_bpe(default_bpe_training_corpus(), 1000);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(result.is_ok());
  EXPECT_EQ(result->merges.size(), 1000u);
  std::printf("[ timing   ] 1000 merges on %zu bytes: %.1f ms\n",
              default_bpe_training_corpus().size(), seconds * 1e3);
}

TEST(BpeTrainer, DefaultVocabHasExactSizeAndSpecials) {
  for (int size : {263, 512, 1000, 4096, 20000}) {
    Result<TokenizerVocab> vocab = make_default_bpe_vocab(size);
    ASSERT_TRUE(vocab.is_ok()) << vocab.status().to_string();
    EXPECT_EQ(static_cast<int>(vocab->tokens.size()), size);
    EXPECT_EQ(vocab->types.size(), vocab->tokens.size());
    EXPECT_EQ(vocab->model, "gpt2");
    EXPECT_EQ(vocab->pre, "llama3");
    EXPECT_EQ(vocab->tokens[static_cast<size_t>(vocab->bos_id)], "<|begin_of_text|>");
    EXPECT_EQ(vocab->tokens[static_cast<size_t>(vocab->eos_id)], "<|end_of_text|>");
    EXPECT_EQ(vocab->tokens[static_cast<size_t>(vocab->eot_id)], "<|eot_id|>");
    auto tok = Tokenizer::create(*vocab);
    ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
    for (const std::string& special : default_bpe_special_tokens()) {
      const std::optional<int32_t> id = (*tok)->find_token(special);
      ASSERT_TRUE(id.has_value()) << special;
      EXPECT_EQ((*tok)->token_type(*id), TokenType::kControl);
    }
  }
  EXPECT_EQ(make_default_bpe_vocab(262).status().code(), StatusCode::kInvalidArgument);
  Result<TokenizerVocab> qwen = make_default_bpe_vocab(512, PreTokenizerType::kQwen2);
  ASSERT_TRUE(qwen.is_ok());
  EXPECT_EQ(qwen->pre, "qwen2");
  EXPECT_FALSE(qwen->add_bos.value_or(true));
}

TEST(BpeTrainer, TrainedVocabCompressesEnglish) {
  auto vocab = make_default_bpe_vocab(2048);
  ASSERT_TRUE(vocab.is_ok());
  auto tok = Tokenizer::create(std::move(vocab).value());
  ASSERT_TRUE(tok.is_ok());
  const std::string text =
      "The processor fetches an instruction from memory, decodes it, and executes it. "
      "Scientists measure the temperature of the ocean over many years.";
  const std::vector<int32_t> ids = (*tok)->encode(text, false, false);
  EXPECT_EQ((*tok)->decode(ids), text);
  // Byte-level without merges would need one token per byte.
  EXPECT_LT(ids.size() * 3, text.size()) << ids.size() << " tokens for " << text.size() << " bytes";
}

}  // namespace
}  // namespace infergrid
