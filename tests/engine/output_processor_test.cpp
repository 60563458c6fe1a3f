// OutputProcessor on a real vocabulary (Llama 2's SentencePiece file from ../shared/golden,
// whose byte tokens <0x00>..<0xFF> are ids 3..258, so any byte sequence can be generated):
// stop strings across tokens, text held back while a stop string may still be forming, UTF-8
// never split, stop tokens, max_tokens and the context limit.
#include "engine/output_processor.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "golden_required.h"
#include "golden_vocab.h"

namespace infergrid {
namespace {

class OutputProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_ = test::open_golden_vocab("llama-spm");
    if (!tokenizer_) {
      IG_GOLDEN_MISSING("the llama-spm vocabulary is not at "
                        << test::golden_vocab_path("llama-spm"));
    }
    ASSERT_EQ(tokenizer_->token_to_piece(byte_token('a')), "a");
  }
  static int32_t byte_token(unsigned char byte) { return 3 + byte; }

  // Feeds `bytes` one byte token each; returns the text of every event and the finish reason.
  struct Run {
    std::vector<std::string> texts;
    std::string all;
    FinishReason reason = FinishReason::kNone;
    std::string stop_matched;
    size_t tokens = 0;
  };
  Run run(const RequestOptions& options, const std::string& bytes, int max_context = 1000) {
    OutputProcessor out(*tokenizer_, options, max_context);
    Run r;
    int n = 0;
    for (unsigned char b : bytes) {
      RequestEvent event;
      ++n;
      GeneratedToken t;
      t.token = byte_token(b);
      r.reason = out.on_token(t, n, 10 + n, event);
      r.texts.push_back(event.text);
      r.all += event.text;
      r.tokens += event.tokens.size();
      if (r.reason != FinishReason::kNone) {
        r.stop_matched = event.stop_matched;
        break;
      }
    }
    return r;
  }

  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(OutputProcessorTest, StopStringAcrossTokensEndsBeforeItAndHoldsItsStartBack) {
  RequestOptions o;
  o.max_tokens = 100;
  o.stop = {"END"};
  const Run r = run(o, "abcENxEND tail");
  EXPECT_EQ(r.reason, FinishReason::kStop);
  EXPECT_EQ(r.stop_matched, "END");
  EXPECT_EQ(r.all, "abcENx");  // "EN" was held, then sent once "x" showed it was not "END"
  // "c" could begin nothing, but two bytes are always held (a 3-byte stop string).
  EXPECT_EQ(r.texts[2], "a");
  EXPECT_EQ(r.texts[3], "b");
}

TEST_F(OutputProcessorTest, NeverSplitsACharacterAndFlushesAtTheLengthLimit) {
  RequestOptions o;
  o.max_tokens = 6;
  const std::string euro = "\xE2\x82\xAC";
  // The last character is cut off by max_tokens.
  const Run r = run(o, "a" + euro + "b\xC3" + "\xA9");
  EXPECT_EQ(r.reason, FinishReason::kLength);
  EXPECT_EQ(r.texts[1], "");  // the euro sign's first two bytes wait for the third
  EXPECT_EQ(r.texts[2], "");
  EXPECT_EQ(r.texts[3], euro);
  EXPECT_EQ(r.all, "a" + euro + "b\xC3");  // at the end whatever is held is sent as it is
  EXPECT_EQ(r.tokens, 6u);
}

TEST_F(OutputProcessorTest, StopTokensAndTheContextLimitEndTheRequest) {
  RequestOptions o;
  o.max_tokens = 100;
  o.stop_token_ids = {byte_token('!')};
  const Run stopped = run(o, "hi!more");
  EXPECT_EQ(stopped.reason, FinishReason::kStop);
  EXPECT_EQ(stopped.all, "hi");
  EXPECT_EQ(stopped.tokens, 2u);  // the stop token is not emitted
  EXPECT_EQ(stopped.stop_matched, "!");

  RequestOptions plain;
  plain.max_tokens = 100;
  const Run full = run(plain, "abcdef", /*max_context=*/13);  // the 3rd token makes 13
  EXPECT_EQ(full.reason, FinishReason::kLength);
  EXPECT_EQ(full.all, "abc");
}

TEST(ComputeLogprobs, ChosenTokenAndTopAlternatives) {
  std::vector<float> logits(1000, 0.0f);
  logits[7] = 20.0f;
  logits[3] = 1.0f;
  GeneratedToken t;
  compute_logprobs(logits, 7, 2, t);
  EXPECT_NEAR(t.logprob, 0.0f, 1e-3f);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].token, 7);
  EXPECT_EQ(t.top[1].token, 3);
  EXPECT_LT(t.top[1].logprob, -18.0f);
}

}  // namespace
}  // namespace infergrid
