#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace infergrid {
namespace {

TEST(Sampler, GreedyPicksTheArgmaxAndBreaksTiesByLowestId) {
  Sampler sampler(5, SamplingParams::greedy());
  const std::vector<float> logits = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f};
  EXPECT_EQ(sampler.sample(logits, {}), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = static_cast<float>(i % 10) * 0.3f;
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 0;
  params.top_p = 1.0f;
  params.min_p = 0.0f;
  auto draw = [&](uint64_t seed) {
    params.seed = seed;
    Sampler sampler(100, params);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) out.push_back(sampler.sample(logits, {}));
    return out;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  std::vector<float> logits = {5.0f, 4.0f, 3.0f, 2.0f, 1.0f, 0.0f};
  SamplingParams params;
  params.temperature = 100.0f;  // nearly uniform over what survives
  params.top_k = 2;
  params.top_p = 1.0f;
  params.min_p = 0.0f;
  Sampler sampler(6, params);
  std::map<int32_t, int> counts;
  for (int i = 0; i < 2000; ++i) ++counts[sampler.sample(logits, {})];
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[0], 800);
  EXPECT_GT(counts[1], 800);
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  // Probabilities at temperature 1: ~0.665, 0.245, 0.09 (after dropping a -inf-like tail).
  std::vector<float> logits = {2.0f, 1.0f, 0.0f, -20.0f};
  SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 0;
  params.top_p = 0.8f;  // keeps the first two (0.665 < 0.8 <= 0.91)
  params.min_p = 0.0f;
  Sampler top_p(4, params);
  for (int i = 0; i < 500; ++i) EXPECT_LT(top_p.sample(logits, {}), 2);
  params.top_p = 1.0f;
  params.min_p = 0.3f;  // keeps p >= 0.3 * 0.665 = 0.2: the first two
  Sampler min_p(4, params);
  for (int i = 0; i < 500; ++i) EXPECT_LT(min_p.sample(logits, {}), 2);
}

TEST(Sampler, RepetitionPenaltyDemotesRecentTokens) {
  std::vector<float> logits = {2.0f, 1.9f, -1.0f};
  SamplingParams params = SamplingParams::greedy();
  params.repetition_penalty = 1.5f;  // 2.0 / 1.5 = 1.33 < 1.9
  Sampler sampler(3, params);
  const std::vector<int32_t> history = {0};
  EXPECT_EQ(sampler.sample(logits, history), 1);
  // Logits outside the recent window are untouched.
  params.penalty_last_n = 1;
  Sampler windowed(3, params);
  const std::vector<int32_t> old_history = {0, 2};
  EXPECT_EQ(windowed.sample(logits, old_history), 0);
}

TEST(Sampler, FrequencyAndPresencePenaltiesScaleWithCounts) {
  std::vector<float> logits = {3.0f, 2.5f, 0.0f};
  SamplingParams params = SamplingParams::greedy();
  params.frequency_penalty = 0.3f;  // token 0 seen twice: 3.0 - 0.6 = 2.4 < 2.5
  Sampler sampler(3, params);
  const std::vector<int32_t> history = {0, 0};
  EXPECT_EQ(sampler.sample(logits, history), 1);
  params.frequency_penalty = 0.0f;
  params.presence_penalty = 0.4f;  // once, whatever the count: 2.6 > 2.5
  Sampler presence(3, params);
  EXPECT_EQ(presence.sample(logits, history), 0);
}

}  // namespace
}  // namespace infergrid
