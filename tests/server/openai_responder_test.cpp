// OpenAiResponder without any transport: the SSE events of a streamed generation in order (a
// first chunk even without text, deltas, the final chunk with the finish reason, usage when
// asked, [DONE]), the one body of a whole response, and the errors an engine failure and a
// shutdown stand for.
#include "server/openai_responder.h"

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "golden_required.h"
#include "golden_vocab.h"

namespace infergrid {
namespace {

using nlohmann::json;

class OpenAiResponderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokenizer_ = test::open_golden_vocab("llama-spm");
    if (!tokenizer_) {
      IG_GOLDEN_MISSING("the llama-spm vocabulary is not at "
                        << test::golden_vocab_path("llama-spm"));
    }
  }
  static RequestEvent event(const std::string& text, int completion_tokens) {
    RequestEvent e;
    e.text = text;
    e.prompt_tokens = 5;
    e.completion_tokens = completion_tokens;
    if (!text.empty()) e.tokens.push_back({3 + 'x', -0.5f, {}});
    return e;
  }
  static json data_of(const std::string& sse) {
    EXPECT_TRUE(sse.starts_with("data: ") && sse.ends_with("\n\n")) << sse;
    return json::parse(sse.substr(6, sse.size() - 8));
  }
  ResponseMeta meta() const { return {"chatcmpl-1", 1700000000, "tiny"}; }
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(OpenAiResponderTest, StreamsChunksThenTheFinishUsageAndDone) {
  OpenAiResponder r(*tokenizer_, Endpoint::kChat, meta(), /*stream=*/true,
                    /*include_usage=*/true, /*logprobs=*/true);
  auto first = r.on_event(event("", 0));  // nothing generated yet: the role still goes out
  ASSERT_EQ(first.sse.size(), 1u);
  EXPECT_EQ(data_of(first.sse[0])["choices"][0]["delta"]["role"], "assistant");
  auto text = r.on_event(event("Hi", 1));
  ASSERT_EQ(text.sse.size(), 1u);
  const json chunk = data_of(text.sse[0]);
  EXPECT_EQ(chunk["choices"][0]["delta"]["content"], "Hi");
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["content"][0]["token"], "x");
  EXPECT_FALSE(text.finished);
  EXPECT_TRUE(r.on_event(event("", 1)).sse.empty());  // nothing new: nothing sent

  RequestEvent last = event("", 2);
  last.finished = true;
  last.finish_reason = FinishReason::kLength;
  auto end = r.on_event(last);
  EXPECT_TRUE(end.finished);
  ASSERT_EQ(end.sse.size(), 3u);
  EXPECT_EQ(data_of(end.sse[0])["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(data_of(end.sse[1])["usage"]["completion_tokens"], 2);
  EXPECT_EQ(end.sse[2], "data: [DONE]\n\n");
  EXPECT_FALSE(end.error);
}

// The router's failover: chunks carry the ids of the tokens behind them (those whose text was
// held back included, on the next chunk), and a resumed run's replayed events send nothing.
TEST_F(OpenAiResponderTest, FailoverReportsTokenIdsAndSendsNothingForReplayedTokens) {
  OpenAiResponder original(*tokenizer_, Endpoint::kCompletions, meta(), true, false, false);
  original.set_failover(/*report=*/true, /*replayed=*/0);
  RequestEvent held = event("", 1);
  held.tokens.push_back({41, 0, {}});  // a token whose text is held back: no chunk of its own
  auto first = original.on_event(held);
  ASSERT_EQ(first.sse.size(), 1u);  // the first chunk goes out anyway, with its token
  EXPECT_EQ(data_of(first.sse[0])["infergrid_tokens"], json::array({41}));
  RequestEvent quiet = event("", 2);
  quiet.tokens.push_back({42, 0, {}});
  EXPECT_TRUE(original.on_event(quiet).sse.empty());
  auto next = original.on_event(event("ab", 3));
  ASSERT_EQ(next.sse.size(), 1u);
  EXPECT_EQ(data_of(next.sse[0])["infergrid_tokens"], json::array({42, 3 + 'x'}));
  EXPECT_EQ(data_of(next.sse[0])["choices"][0]["text"], "ab");

  OpenAiResponder resumed(*tokenizer_, Endpoint::kCompletions, meta(), true, false, false);
  resumed.set_failover(true, /*replayed=*/2);
  EXPECT_TRUE(resumed.on_event(event("a", 1)).sse.empty());
  EXPECT_TRUE(resumed.on_event(event("b", 2)).sse.empty());
  auto live = resumed.on_event(event("c", 3));
  ASSERT_EQ(live.sse.size(), 1u);
  const json chunk = data_of(live.sse[0]);
  EXPECT_EQ(chunk["choices"][0]["text"], "c");
  EXPECT_EQ(chunk["infergrid_tokens"], json::array({3 + 'x'}));  // only the new token

  // Without the report asked for, chunks are plain OpenAI.
  OpenAiResponder plain(*tokenizer_, Endpoint::kCompletions, meta(), true, false, false);
  EXPECT_FALSE(data_of(plain.on_event(event("a", 1)).sse[0]).contains("infergrid_tokens"));
}

TEST_F(OpenAiResponderTest, WholeResponseGathersTextAndEndsInABodyOrAnError) {
  OpenAiResponder r(*tokenizer_, Endpoint::kCompletions, meta(), false, false, false);
  EXPECT_TRUE(r.on_event(event("Once ", 1)).sse.empty());
  RequestEvent last = event("upon", 2);
  last.finished = true;
  last.finish_reason = FinishReason::kStop;
  auto end = r.on_event(last);
  ASSERT_TRUE(end.finished);
  ASSERT_FALSE(end.error);
  const json body = json::parse(end.body);
  EXPECT_EQ(body["choices"][0]["text"], "Once upon");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["prompt_tokens"], 5);

  for (const auto& [reason, status] :
       {std::pair{FinishReason::kError, 500}, std::pair{FinishReason::kCancelled, 503}}) {
    OpenAiResponder failing(*tokenizer_, Endpoint::kCompletions, meta(), false, false, false);
    RequestEvent e = event("", 0);
    e.finished = true;
    e.finish_reason = reason;
    e.error = Status(StatusCode::kInternal, "boom");
    auto out = failing.on_event(e);
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->http_status, status);
    EXPECT_EQ(out.retry_after != nullptr, reason == FinishReason::kCancelled);
  }
}

}  // namespace
}  // namespace infergrid
