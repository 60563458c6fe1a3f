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
