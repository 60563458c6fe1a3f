// The serving scheduler must give every sequence exactly the tokens the simple single-sequence
// Generator gives, however it is batched, chunked, cached or preempted.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <unistd.h>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "engine/engine.h"
#include "engine/generator.h"
#include "golden_required.h"
#include "kernels/cpu_backend.h"
#include "model/synth.h"

namespace infergrid {
namespace {

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("infergrid_scheduler_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    path_ = (dir / "model.gguf").string();
    SynthOptions o;
    o.size = "1m";
    o.type = TensorType::kQ8_0;
    ASSERT_TRUE(synthesize_model(o, path_, 2).is_ok());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(std::filesystem::path(path_).parent_path());
  }
  void SetUp() override {
    auto model = Model::load(path_);
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto tokenizer = Tokenizer::from_gguf(model_->gguf());
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_ = std::move(tokenizer).value();
  }

  std::vector<int32_t> prompt(int n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (auto& t : p) t = static_cast<int32_t>(rng() % model_->config().n_vocab);
    return p;
  }

  // The simple path: one sequence, contiguous cache, token by token.
  std::vector<int32_t> reference(const std::vector<int32_t>& p, int max_tokens,
                                 const SamplingParams& sampling = SamplingParams::greedy(),
                                 KvType kv_type = kDefaultKvType) {
    CpuBackend backend(1);
    Generator generator(*model_, *tokenizer_, backend, 1024, 64, kv_type);
    GenerateOptions o;
    o.max_tokens = max_tokens;
    o.sampling = sampling;
    o.stop_at_eog = false;
    std::vector<int32_t> out;
    auto r = generator.generate_tokens(p, o, [&](int32_t t) {
      out.push_back(t);
      return true;
    });
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return out;
  }

  static GenerationRequest request(std::vector<int32_t> p, int max_tokens, int priority = 0) {
    GenerationRequest r;
    r.prompt = std::move(p);
    r.options.max_tokens = max_tokens;
    r.options.sampling = SamplingParams::greedy();
    r.options.ignore_eos = true;
    r.options.priority = priority;
    return r;
  }

  struct Outcome {
    std::vector<int32_t> tokens;
    std::vector<GeneratedToken> generated;  // with the log-probabilities, when asked
    std::string text;
    FinishReason reason = FinishReason::kNone;
    int events_after_final = 0;
    RequestEvent last;
  };

  // A callback that records request id's events into out[id].
  static RequestCallback record(std::map<uint64_t, Outcome>& out, uint64_t id) {
    return [&out, id](const RequestEvent& e) {
      Outcome& o = out[id];
      if (o.reason != FinishReason::kNone) ++o.events_after_final;
      for (const auto& t : e.tokens) o.tokens.push_back(t.token);
      o.generated.insert(o.generated.end(), e.tokens.begin(), e.tokens.end());
      o.text += e.text;
      if (e.finished) o.reason = e.finish_reason;
      o.last = e;
    };
  }

  // Sets the byte bytes_from_end before the end of every file in dir to value (damaging the
  // payloads of a disk tier's blocks).
  static void overwrite_byte_in_every_file(const std::filesystem::path& dir, int bytes_from_end,
                                           char value) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(entry.path()) -
                                          static_cast<uintmax_t>(bytes_from_end)));
      f.put(value);
    }
  }

  // A DRAM tier segment of this model's layout, created afresh (a leftover one is removed).
  std::shared_ptr<ShmTier> fresh_dram_tier(const std::string& name, uint64_t capacity_bytes) {
    const uint64_t tag = Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative);
    ShmTier::unlink(name, tag);
    auto tier = ShmTier::open(name, capacity_bytes, tag, 16,
                              KvPool::block_bytes(model_->config(), 16, kDefaultKvType));
    EXPECT_TRUE(tier.is_ok()) << tier.status().to_string();
    return tier.is_ok() ? std::shared_ptr<ShmTier>(std::move(tier).value()) : nullptr;
  }

  // Adds requests and steps the scheduler until all are done.
  std::map<uint64_t, Outcome> run_all(Scheduler& s, std::vector<GenerationRequest> requests,
                                      int max_steps = 100000) {
    std::map<uint64_t, Outcome> out;
    uint64_t id = 1;
    for (auto& r : requests) {
      const uint64_t this_id = id++;
      Status st = s.add(this_id, std::move(r), record(out, this_id));
      EXPECT_TRUE(st.is_ok()) << st.to_string();
    }
    for (int i = 0; i < max_steps && s.has_work(); ++i) {
      auto r = s.step();
      EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    }
    EXPECT_FALSE(s.has_work());
    return out;
  }

  // Random arrivals, shared prefixes and cancellations on a pool small enough to preempt.
  void stress(const SchedulerOptions& o);

  SchedulerOptions options(int n_blocks = 256, int max_batch_tokens = 64) const {
    SchedulerOptions o;
    o.block_size = 16;
    o.n_blocks = n_blocks;
    o.max_batch_tokens = max_batch_tokens;
    o.max_running = 16;
    o.max_context = 1024;
    return o;
  }

  static void expect_pool_empty(const Scheduler& s) {
    EXPECT_EQ(s.blocks().n_in_use(), 0);
    EXPECT_EQ(s.blocks().n_available(), s.blocks().n_blocks());
  }

  static std::string path_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};
std::string SchedulerTest::path_;

// The mixture-of-experts and new-architecture golden models through the scheduler: batched,
// chunked, prefix-cached and preempted runs give the simple path's greedy tokens (expert
// routing is per token, and each token's expert sum is taken in expert order).
class GoldenArchSchedulerTest : public SchedulerTest {
 protected:
  // Hide the base suite's synthetic model (and its cleanup, which must not touch ../shared).
  static void SetUpTestSuite() {}
  static void TearDownTestSuite() {}
  void SetUp() override {}
  void load(const std::string& name) {
    const std::filesystem::path path =
        std::filesystem::path(INFERGRID_SHARED_DIR) / "golden/models" / (name + ".gguf");
    if (!std::filesystem::exists(path)) IG_GOLDEN_MISSING("golden model not found: " << path);
    auto model = Model::load(path.string());
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    model_ = std::move(model).value();
    auto tokenizer = Tokenizer::from_gguf(model_->gguf());
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_ = std::move(tokenizer).value();
  }
};

TEST_F(GoldenArchSchedulerTest, BatchedCachedAndPreemptedMatchTheSimplePath) {
  for (const char* name : {"tiny-moe-llama-q4_k_m", "tiny-qwen2moe-q8_0", "tiny-qwen3moe-f32",
                           "tiny-qwen3-q4_k_m", "tiny-phi3-q8_0"}) {
    SCOPED_TRACE(name);
    load(name);
    if (HasFatalFailure() || IsSkipped()) return;
    CpuBackend backend(2);
    const auto system = prompt(32, 11);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 5; ++i) {
      auto p = i % 2 ? system : prompt(5 + 9 * i, 40 + i);
      for (int j = 0; j <= i; ++j) p.push_back(300 + 7 * i + j);
      prompts.push_back(p);
      requests.push_back(request(p, 16));
    }
    std::vector<std::vector<int32_t>> want;
    for (const auto& p : prompts) want.push_back(reference(p, 16));
    // Chunked over many steps with shared prefixes, then a pool small enough to preempt.
    for (const auto& [n_blocks, budget] : {std::pair{256, 13}, std::pair{7, 64}}) {
      Scheduler s(*model_, *tokenizer_, backend, options(n_blocks, budget));
      auto out = run_all(s, requests);
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(out[i + 1].tokens, want[i]) << "request " << i << " blocks " << n_blocks;
      }
      if (n_blocks == 7) {
        EXPECT_GT(s.counters().preemptions, 0u);
      } else {
        EXPECT_GT(s.counters().prefix_hit_tokens, 0u);
      }
      expect_pool_empty(s);
    }
  }
}

TEST_F(SchedulerTest, AloneMatchesTheSimplePath) {
  CpuBackend backend(2);
  for (int len : {1, 5, 16, 17, 40}) {
    const auto p = prompt(len, len);
    Scheduler s(*model_, *tokenizer_, backend, options());
    auto out = run_all(s, {request(p, 24)});
    EXPECT_EQ(out[1].tokens, reference(p, 24)) << "prompt length " << len;
    EXPECT_EQ(out[1].reason, FinishReason::kLength);
    EXPECT_EQ(out[1].last.completion_tokens, 24);
    EXPECT_EQ(out[1].events_after_final, 0);
    expect_pool_empty(s);
  }
}

// For every KV cache type: the pool and the simple path's contiguous cache round the same
// values the same way.
TEST_F(SchedulerTest, BatchedAndChunkedMatchTheSimplePath) {
  CpuBackend backend(2);
  const std::vector<int> lengths = {3, 70, 16, 33, 1, 120, 9, 48};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < lengths.size(); ++i) {
    prompts.push_back(prompt(lengths[i], 100 + i));
    requests.push_back(request(prompts.back(), 20 + static_cast<int>(i)));
  }
  for (const KvType kv_type : {KvType::kF16, KvType::kBF16, KvType::kF32}) {
    std::vector<std::vector<int32_t>> want;
    for (size_t i = 0; i < prompts.size(); ++i) {
      want.push_back(
          reference(prompts[i], 20 + static_cast<int>(i), SamplingParams::greedy(), kv_type));
    }
    for (int budget : {8, 37, 512}) {  // small budgets chunk the prompts across many steps
      auto o = options(256, budget);
      o.kv_type = kv_type;
      Scheduler s(*model_, *tokenizer_, backend, o);
      auto out = run_all(s, requests);
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(out[i + 1].tokens, want[i])
            << "request " << i << " budget " << budget << " kv " << kv_type_name(kv_type);
      }
      expect_pool_empty(s);
    }
  }
}

TEST_F(SchedulerTest, WithoutChunkedPrefillOutputIsTheSame) {
  CpuBackend backend(2);
  auto o = options(256, 32);
  o.chunked_prefill = false;
  Scheduler s(*model_, *tokenizer_, backend, o);
  const auto a = prompt(100, 1), b = prompt(7, 2);
  auto out = run_all(s, {request(a, 12), request(b, 30)});
  EXPECT_EQ(out[1].tokens, reference(a, 12));
  EXPECT_EQ(out[2].tokens, reference(b, 30));
  expect_pool_empty(s);
}

TEST_F(SchedulerTest, PrefixCacheServesSharedPrefixesWithTheSameOutput) {
  CpuBackend backend(2);
  Scheduler s(*model_, *tokenizer_, backend, options());
  const auto system = prompt(48, 7);  // three full blocks
  auto first = system;
  first.push_back(5);
  auto out1 = run_all(s, {request(first, 10)});
  EXPECT_EQ(out1[1].last.cached_tokens, 0);
  EXPECT_EQ(out1[1].tokens, reference(first, 10));

  auto second = system;
  for (int32_t t : {9, 10, 11}) second.push_back(t);
  auto out2 = run_all(s, {request(second, 10)});
  EXPECT_EQ(out2[1].last.cached_tokens, 48);
  EXPECT_EQ(out2[1].tokens, reference(second, 10));

  // The exact cached prompt, a multiple of the block size: its last token is recomputed in a
  // copy of the shared last block (copy-on-write).
  auto out3 = run_all(s, {request(system, 10)});
  EXPECT_EQ(out3[1].last.cached_tokens, 47);
  EXPECT_EQ(out3[1].tokens, reference(system, 10));

  // A multi-turn follow-up: prompt + generated answer + new turn hits beyond the prompt.
  auto turn2 = first;
  turn2.insert(turn2.end(), out1[1].tokens.begin(), out1[1].tokens.end());
  for (int32_t t : {20, 21, 22, 23, 24, 25, 26, 27}) turn2.push_back(t);
  auto out4 = run_all(s, {request(turn2, 8)});
  EXPECT_GE(out4[1].last.cached_tokens, 48);
  EXPECT_EQ(out4[1].tokens, reference(turn2, 8));
  expect_pool_empty(s);
  EXPECT_GT(s.counters().prefix_hit_tokens, 0u);
}

TEST_F(SchedulerTest, ConcurrentSharedPrefixRequestsMatch) {
  CpuBackend backend(2);
  Scheduler s(*model_, *tokenizer_, backend, options(256, 40));
  const auto system = prompt(64, 3);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 6; ++i) {
    auto p = system;
    for (int j = 0; j <= i; ++j) p.push_back(100 + i * 10 + j);
    prompts.push_back(p);
    requests.push_back(request(p, 12));
  }
  auto out = run_all(s, requests);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(out[i + 1].tokens, reference(prompts[i], 12)) << "request " << i;
  }
  // Arriving together, the later requests wait for the first to compute the shared prefix,
  // so it is computed once.
  EXPECT_EQ(s.counters().prefix_hit_tokens, 5u * 64u);
  expect_pool_empty(s);
}

TEST_F(SchedulerTest, PreemptedSequencesResumeWithIdenticalOutput) {
  CpuBackend backend(2);
  // 12 blocks of 16 tokens for 6 sequences that each grow to ~60 tokens: preemption is certain.
  auto o = options(12, 64);
  o.prefix_caching = false;
  for (bool caching : {false, true}) {
    o.prefix_caching = caching;
    Scheduler s(*model_, *tokenizer_, backend, o);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 6; ++i) {
      prompts.push_back(prompt(10 + 3 * i, 500 + i));
      requests.push_back(request(prompts.back(), 40));
    }
    auto out = run_all(s, requests);
    EXPECT_GT(s.counters().preemptions, 0u);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(out[i + 1].tokens, reference(prompts[i], 40)) << "request " << i;
      EXPECT_EQ(out[i + 1].reason, FinishReason::kLength);
    }
    expect_pool_empty(s);
  }
}

// Failover: a request resumed elsewhere with the tokens an earlier run produced continues that
// run token for token (greedy and seeded, penalties over the generated tokens included); the
// resumed tokens come back first, one event each and before anything is computed, with the
// text, stop-string handling and totals of the uninterrupted run.
TEST_F(SchedulerTest, ResumedRequestsContinueTheUninterruptedRun) {
  CpuBackend backend(2);
  SamplingParams seeded;
  seeded.temperature = 1.0f;
  seeded.top_k = 50;
  seeded.seed = 99;
  seeded.frequency_penalty = 0.5f;
  seeded.penalize_prompt = false;
  const auto p = prompt(23, 4242);
  for (const SamplingParams& sampling : {SamplingParams::greedy(), seeded}) {
    Scheduler s(*model_, *tokenizer_, backend, options());
    GenerationRequest original = request(p, 30);
    original.options.sampling = sampling;
    const Outcome full = run_all(s, {original})[1];
    ASSERT_EQ(full.tokens.size(), 30u);
    for (size_t cut : {1, 7, 16, 29}) {
      GenerationRequest resumed = original;
      resumed.resume_tokens.assign(full.tokens.begin(), full.tokens.begin() + cut);
      std::map<uint64_t, Outcome> out;
      int events_before_compute = 0;
      ASSERT_TRUE(s.add(7, std::move(resumed), [&](const RequestEvent& e) {
                     ++events_before_compute;
                     EXPECT_EQ(e.tokens.size(), 1u);
                     record(out, 7)(e);
                   }).is_ok());
      EXPECT_EQ(events_before_compute, static_cast<int>(cut));
      while (s.has_work()) ASSERT_TRUE(s.step().is_ok());
      EXPECT_EQ(out[7].tokens, full.tokens) << "cut " << cut;
      EXPECT_EQ(out[7].text, full.text) << "cut " << cut;
      EXPECT_EQ(out[7].reason, FinishReason::kLength);
      EXPECT_EQ(out[7].last.completion_tokens, 30);
      EXPECT_EQ(out[7].last.prompt_tokens, 23);
    }
    expect_pool_empty(s);
  }

  // A stop string the uninterrupted run ends at, resumed just before it and inside its
  // held-back prefix: the same text, the same stop.
  Scheduler s(*model_, *tokenizer_, backend, options());
  const Outcome free_run = run_all(s, {request(p, 40)})[1];
  const std::string stop = free_run.text.substr(free_run.text.size() / 2, 3);
  GenerationRequest stopping = request(p, 40);
  stopping.options.stop = {stop};
  const Outcome stopped = run_all(s, {stopping})[1];
  ASSERT_EQ(stopped.reason, FinishReason::kStop);
  for (size_t cut = 1; cut < stopped.tokens.size() + 1 && cut < free_run.tokens.size(); ++cut) {
    GenerationRequest resumed = stopping;
    resumed.resume_tokens.assign(free_run.tokens.begin(), free_run.tokens.begin() + cut);
    const Outcome again = run_all(s, {resumed})[1];
    EXPECT_EQ(again.text, stopped.text) << "cut " << cut;
    EXPECT_EQ(again.reason, FinishReason::kStop) << "cut " << cut;
  }

  // Resumed tokens that leave nothing to generate, or are not tokens, are refused.
  GenerationRequest too_many = request(p, 5);
  too_many.resume_tokens.assign(5, 1);
  EXPECT_FALSE(s.add(20, too_many, nullptr).is_ok());
  GenerationRequest not_tokens = request(p, 5);
  not_tokens.resume_tokens = {model_->config().n_vocab};
  EXPECT_FALSE(s.add(21, not_tokens, nullptr).is_ok());
  expect_pool_empty(s);
}

TEST_F(SchedulerTest, LowestPriorityLatestIsPreemptedAndHighPriorityAdmittedFirst) {
  CpuBackend backend(2);
  auto o = options(8, 64);
  o.prefix_caching = false;
  Scheduler s(*model_, *tokenizer_, backend, o);
  std::vector<uint64_t> finish_order;
  std::map<uint64_t, int> preemptions;
  auto track = [&](uint64_t id) {
    return [&, id](const RequestEvent& e) {
      if (e.finished) {
        finish_order.push_back(id);
        preemptions[id] = e.preemptions;
      }
    };
  };
  ASSERT_TRUE(s.add(1, request(prompt(20, 1), 60, 0), track(1)).is_ok());
  ASSERT_TRUE(s.add(2, request(prompt(20, 2), 60, 5), track(2)).is_ok());
  ASSERT_TRUE(s.add(3, request(prompt(20, 3), 60, 0), track(3)).is_ok());
  while (s.has_work()) ASSERT_TRUE(s.step().is_ok());
  ASSERT_EQ(finish_order.size(), 3u);
  EXPECT_EQ(finish_order.front(), 2u);  // the high-priority request never waits
  EXPECT_EQ(preemptions[2], 0);
  EXPECT_GE(preemptions[3], preemptions[1]);  // the later of equal priority goes first
  expect_pool_empty(s);
}

TEST_F(SchedulerTest, SeededSamplingIsTheSameWhateverIsBatched) {
  CpuBackend backend(2);
  SamplingParams sampling;
  sampling.temperature = 1.0f;
  sampling.top_k = 50;
  sampling.top_p = 0.9f;
  sampling.seed = 1234;
  sampling.frequency_penalty = 0.5f;
  const auto p = prompt(30, 77);
  const auto expected = reference(p, 30, sampling);
  Scheduler s(*model_, *tokenizer_, backend, options(256, 16));
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) {
    auto r = request(i == 2 ? p : prompt(20 + i, 900 + i), 30);
    if (i == 2) r.options.sampling = sampling;
    requests.push_back(std::move(r));
  }
  auto out = run_all(s, requests);
  EXPECT_EQ(out[3].tokens, expected);
}

TEST_F(SchedulerTest, StopStringsTokensAndLogprobs) {
  CpuBackend backend(2);
  const auto p = prompt(12, 42);
  const auto ref = reference(p, 40);
  const std::string full_text = tokenizer_->decode(ref);
  ASSERT_GT(full_text.size(), 20u);

  // A stop string taken from the middle of the reference text.
  const std::string stop = full_text.substr(10, 4);
  Scheduler s(*model_, *tokenizer_, backend, options());
  auto with_stop = request(p, 40);
  with_stop.options.stop = {"\x01never", stop};
  auto out = run_all(s, {with_stop});
  EXPECT_EQ(out[1].reason, FinishReason::kStop);
  EXPECT_EQ(out[1].text, full_text.substr(0, full_text.find(stop)));
  EXPECT_EQ(out[1].last.stop_matched, stop);

  // A stop token ends generation without being emitted.
  auto with_token = request(p, 40);
  with_token.options.stop_token_ids = {ref[5]};
  out = run_all(s, {with_token});
  const size_t first = std::find(ref.begin(), ref.end(), ref[5]) - ref.begin();
  EXPECT_EQ(out[1].tokens, std::vector<int32_t>(ref.begin(), ref.begin() + first));
  EXPECT_EQ(out[1].reason, FinishReason::kStop);

  // Logprobs: greedy picks the top candidate; probabilities are sorted and normalised.
  auto with_logprobs = request(p, 5);
  with_logprobs.options.logprobs = 3;
  std::vector<GeneratedToken> tokens;
  ASSERT_TRUE(s.add(9, std::move(with_logprobs), [&](const RequestEvent& e) {
                 tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
               }).is_ok());
  while (s.has_work()) ASSERT_TRUE(s.step().is_ok());
  ASSERT_EQ(tokens.size(), 5u);
  for (const auto& t : tokens) {
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].token, t.token);
    EXPECT_FLOAT_EQ(t.top[0].logprob, t.logprob);
    EXPECT_LE(t.logprob, 0.0f);
    EXPECT_GE(t.top[0].logprob, t.top[1].logprob);
    EXPECT_GE(t.top[1].logprob, t.top[2].logprob);
  }
  expect_pool_empty(s);
}

TEST_F(SchedulerTest, RejectsBadRequests) {
  CpuBackend backend(1);
  Scheduler s(*model_, *tokenizer_, backend, options(8, 64));
  EXPECT_EQ(s.validate(request({}, 4)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.validate(request({-1}, 4)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.validate(request({model_->config().n_vocab}, 4)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(s.validate(request(prompt(1024, 1), 4)).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.validate(request(prompt(200, 1), 4)).code(), StatusCode::kOutOfRange);  // > pool
  EXPECT_EQ(s.validate(request(prompt(4, 1), 0)).code(), StatusCode::kInvalidArgument);
  auto bad_stop = request(prompt(4, 1), 4);
  bad_stop.options.stop = {""};
  EXPECT_EQ(s.validate(bad_stop).code(), StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, CancelFreesBlocksAtOnce) {
  CpuBackend backend(2);
  Scheduler s(*model_, *tokenizer_, backend, options());
  FinishReason reason = FinishReason::kNone;
  ASSERT_TRUE(s.add(1, request(prompt(50, 1), 100), [&](const RequestEvent& e) {
                 if (e.finished) reason = e.finish_reason;
               }).is_ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(s.step().is_ok());
  EXPECT_GT(s.blocks().n_in_use(), 0);
  s.cancel(1);
  EXPECT_EQ(reason, FinishReason::kCancelled);
  EXPECT_EQ(s.blocks().n_in_use(), 0);
  EXPECT_FALSE(s.has_work());
}

// Random arrivals, shared prefixes, cancellations and a pool small enough to preempt: every
// uncancelled greedy output matches the simple path, and the pool ends where it began.
void SchedulerTest::stress(const SchedulerOptions& o) {
  CpuBackend backend(2);
  std::mt19937_64 rng(20261123);
  Scheduler s(*model_, *tokenizer_, backend, o);
  const auto shared = prompt(32, 99);
  std::map<uint64_t, Outcome> out;
  std::map<uint64_t, std::pair<std::vector<int32_t>, int>> submitted;
  std::set<uint64_t> cancelled;
  uint64_t next_id = 1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int step = 0; step < 400 && std::chrono::steady_clock::now() < deadline; ++step) {
    if (rng() % 3 == 0 && submitted.size() < 40) {
      std::vector<int32_t> p;
      if (rng() % 4 == 0 && !submitted.empty()) {
        // A returning conversation: an earlier prompt again, by now often evicted.
        p = std::next(submitted.begin(), static_cast<long>(rng() % submitted.size()))->second.first;
      } else if (rng() % 2) {
        p = shared;
      }
      const auto tail = prompt(1 + static_cast<int>(rng() % 40), rng());
      p.insert(p.end(), tail.begin(), tail.end());
      const int max_tokens = 1 + static_cast<int>(rng() % 30);
      auto r = request(p, max_tokens, static_cast<int>(rng() % 3));
      const uint64_t id = next_id++;
      submitted[id] = {p, max_tokens};
      ASSERT_TRUE(s.add(id, std::move(r), record(out, id)).is_ok());
    }
    if (rng() % 10 == 0 && next_id > 1) {
      const uint64_t victim = 1 + rng() % (next_id - 1);
      if (out[victim].reason == FinishReason::kNone) cancelled.insert(victim);
      s.cancel(victim);
    }
    if (s.has_work()) {
      ASSERT_TRUE(s.step().is_ok());
    }
  }
  while (s.has_work()) ASSERT_TRUE(s.step().is_ok());
  expect_pool_empty(s);
  EXPECT_GT(s.counters().prefix_hit_tokens, 0u);
  int checked = 0;
  for (const auto& [id, req] : submitted) {
    ASSERT_NE(out[id].reason, FinishReason::kNone) << "request " << id << " never finished";
    if (cancelled.count(id)) continue;
    EXPECT_EQ(out[id].tokens, reference(req.first, req.second)) << "request " << id;
    ++checked;
  }
  EXPECT_GT(checked, 5);
}

TEST_F(SchedulerTest, RandomizedStressLeavesNoBlocksBehind) {
  stress(options(24, 48));
}

// The same with a small shared DRAM tier and every tier load in the background: loads, their
// cancellation and preemption around them leave the pool whole and the outputs unchanged.
TEST_F(SchedulerTest, RandomizedStressWithBackgroundTierLoads) {
  const std::string name = "schedstress" + std::to_string(::getpid());
  const uint64_t tag = Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative);
  auto o = options(24, 48);
  o.tier_load_wait_us = 0;
  o.dram_tier = fresh_dram_tier(name, 4 << 20);
  ASSERT_NE(o.dram_tier, nullptr);
  stress(o);
  const TierStats st = o.dram_tier->stats();
  EXPECT_GT(st.hits, 0u) << "stored " << st.stored << " blocks " << st.blocks << " misses "
                         << st.misses;
  ShmTier::unlink(name, tag);
}

TEST_F(SchedulerTest, DiskTierServesEvictedPrefixesAfterRestartAndSurvivesCorruption) {
  CpuBackend backend(2);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_scheduler_disk_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const uint64_t tag = Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative);
  auto open_tier = [&] {
    auto tier = std::make_shared<DiskTier>(dir, 64 << 20, tag, 16);
    EXPECT_TRUE(tier->open().is_ok());
    return tier;
  };
  auto o = options(12, 64);                // room for about two conversations at once
  const auto history = prompt(64, 31337);  // a long conversation so far
  auto with_turn = [&](std::vector<int32_t> turn) {
    auto p = history;
    p.insert(p.end(), turn.begin(), turn.end());
    return p;
  };
  {
    o.disk_tier = open_tier();
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto first = run_all(s, {request(with_turn({1, 2, 3}), 8)});
    EXPECT_EQ(first[1].tokens, reference(with_turn({1, 2, 3}), 8));
    // Other conversations push the history out of engine memory, down to the disk tier.
    for (int i = 0; i < 4; ++i) run_all(s, {request(prompt(100, 900 + i), 4)});
    s.flush_tiers();
    EXPECT_GE(o.disk_tier->stats().stored, 4u);
    auto again = run_all(s, {request(with_turn({4, 5}), 8)});
    EXPECT_EQ(again[1].tokens, reference(with_turn({4, 5}), 8));
    EXPECT_GE(again[1].last.cached_tokens, 64);
    EXPECT_GE(s.counters().tier_hit_tokens, 48u);
    expect_pool_empty(s);
  }
  {
    // A restarted engine finds the blocks on disk.
    o.disk_tier = open_tier();
    EXPECT_GT(o.disk_tier->stats().blocks, 0u);
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto after_restart = run_all(s, {request(with_turn({6}), 8)});
    EXPECT_EQ(after_restart[1].tokens, reference(with_turn({6}), 8));
    EXPECT_GE(s.counters().tier_hit_tokens, 48u);
  }
  {
    // Every stored block damaged: nothing bad is served, the output is still right.
    overwrite_byte_in_every_file(dir, 5, '\x7f');
    o.disk_tier = open_tier();
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto corrupted = run_all(s, {request(with_turn({7}), 8)});
    EXPECT_EQ(corrupted[1].tokens, reference(with_turn({7}), 8));
    EXPECT_EQ(s.counters().tier_hit_tokens, 0u);
    EXPECT_GE(o.disk_tier->stats().dropped_corrupt, 1u);
    expect_pool_empty(s);
  }
  std::filesystem::remove_all(dir);
}

TEST_F(SchedulerTest, SharedDramTierServesAnotherEnginesPrefixAndSpillsToDisk) {
  CpuBackend backend(2);
  const std::string name = "sched" + std::to_string(::getpid());
  const uint64_t tag = Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative);
  const size_t block_bytes = KvPool::block_bytes(model_->config(), 16, kDefaultKvType);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_scheduler_dram_disk_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ShmTier::unlink(name, tag);
  const auto system = prompt(80, 4242);  // five full blocks
  auto with_question = [&](std::vector<int32_t> q) {
    auto p = system;
    p.insert(p.end(), q.begin(), q.end());
    return p;
  };
  auto o = options(64, 64);
  {
    // Engine 1 computes the prefix; full blocks are written through to DRAM.
    auto tier = ShmTier::open(name, 64 << 20, tag, 16, block_bytes);
    ASSERT_TRUE(tier.is_ok()) << tier.status().to_string();
    o.dram_tier = std::shared_ptr<ShmTier>(std::move(tier).value());
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto out = run_all(s, {request(with_question({1}), 6)});
    EXPECT_EQ(out[1].tokens, reference(with_question({1}), 6));
    s.flush_tiers();
    EXPECT_GE(o.dram_tier->stats().blocks, 5u);
  }
  {
    // Engine 2 (its own mapping of the segment, as another process has) starts cold and is
    // served the prefix from DRAM.
    auto tier = ShmTier::open(name, 64 << 20, tag, 16, block_bytes);
    ASSERT_TRUE(tier.is_ok());
    o.dram_tier = std::shared_ptr<ShmTier>(std::move(tier).value());
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto out = run_all(s, {request(with_question({2, 3}), 6)});
    EXPECT_EQ(out[1].tokens, reference(with_question({2, 3}), 6));
    EXPECT_EQ(out[1].last.cached_tokens, 80);
    EXPECT_EQ(s.counters().tier_hit_tokens, 80u);
    expect_pool_empty(s);
  }
  ShmTier::unlink(name, tag);
  {
    // A DRAM tier of two blocks in front of a disk tier: what DRAM pushes out lands on disk,
    // and a cold engine still gets the whole prefix from the two tiers together.
    auto tier = ShmTier::open(name, 2 * (block_bytes + 16 * 4 + 200), tag, 16, block_bytes);
    ASSERT_TRUE(tier.is_ok());
    ASSERT_EQ((*tier)->n_slots(), 2u);
    o.dram_tier = std::shared_ptr<ShmTier>(std::move(tier).value());
    o.disk_tier = std::make_shared<DiskTier>(dir, 64 << 20, tag, 16);
    ASSERT_TRUE(o.disk_tier->open().is_ok());
    {
      Scheduler s(*model_, *tokenizer_, backend, o);
      run_all(s, {request(with_question({1}), 6)});
      s.flush_tiers();
    }
    EXPECT_EQ(o.dram_tier->stats().blocks, 2u);
    EXPECT_GE(o.disk_tier->stats().blocks, 3u);
    Scheduler cold(*model_, *tokenizer_, backend, o);
    auto out = run_all(cold, {request(with_question({5}), 6)});
    EXPECT_EQ(out[1].tokens, reference(with_question({5}), 6));
    EXPECT_EQ(out[1].last.cached_tokens, 80);
  }
  ShmTier::unlink(name, tag);
  std::filesystem::remove_all(dir);
}

// With int8 tiers a prefix comes back from DRAM, and from the disk after a restart, close to
// but not equal to the computed one: the first token's log-probabilities move by a small,
// bounded amount. int8 and native blocks never meet, and damaged int8 blocks are dropped.
TEST_F(SchedulerTest, Int8TiersServePrefixesCloseToComputedAndNeverMixWithNative) {
  CpuBackend backend(2);
  const std::string name = "schedint8" + std::to_string(::getpid());
  const uint64_t native_tag =
      Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative);
  const uint64_t int8_tag = Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kInt8);
  ASSERT_NE(native_tag, int8_tag);
  const size_t int8_bytes =
      Scheduler::tier_block_bytes(model_->config(), 16, kDefaultKvType, KvCodec::kInt8);
  // One byte per element plus a scale per head, against two bytes per f16 element.
  const size_t elements = KvPool::block_elements(model_->config(), 16);
  EXPECT_EQ(int8_bytes, elements + elements / model_->config().head_dim * sizeof(float));
  EXPECT_LT(int8_bytes, KvPool::block_bytes(model_->config(), 16, kDefaultKvType));
  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_scheduler_int8_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ShmTier::unlink(name, int8_tag);
  auto question = prompt(80, 5151);  // five full blocks
  question.push_back(9);
  auto asking_logprobs = [&] {
    auto r = request(question, 4);
    r.options.logprobs = 5;
    return r;
  };
  auto open_int8_dram = [&] {
    auto tier = ShmTier::open(name, 64 << 20, int8_tag, 16, int8_bytes);
    EXPECT_TRUE(tier.is_ok()) << tier.status().to_string();
    return tier.is_ok() ? std::shared_ptr<ShmTier>(std::move(tier).value()) : nullptr;
  };
  auto open_int8_disk = [&] {
    auto tier = std::make_shared<DiskTier>(dir, 64 << 20, int8_tag, 16);
    EXPECT_TRUE(tier->open().is_ok());
    return tier;
  };
  auto o = options(64, 64);
  o.tier_codec = KvCodec::kInt8;

  {
    // Native blocks of the same prefix, in a DRAM tier of the same name.
    auto native_options = options(64, 64);
    native_options.dram_tier = fresh_dram_tier(name, 64 << 20);
    Scheduler s(*model_, *tokenizer_, backend, native_options);
    run_all(s, {request(question, 2)});
    s.flush_tiers();
    EXPECT_GE(native_options.dram_tier->stats().blocks, 5u);
  }
  Outcome computed;
  {
    o.dram_tier = open_int8_dram();
    ASSERT_NE(o.dram_tier, nullptr);
    EXPECT_EQ(o.dram_tier->stats().blocks, 0u);  // the native blocks are not seen
    Scheduler s(*model_, *tokenizer_, backend, o);
    computed = run_all(s, {asking_logprobs()})[1];
    EXPECT_EQ(computed.tokens, reference(question, 4));
    EXPECT_EQ(s.counters().tier_hit_tokens, 0u);
    s.flush_tiers();
    EXPECT_GE(o.dram_tier->stats().blocks, 5u);
  }
  ASSERT_FALSE(computed.generated.empty());
  // Largest change of a top-5 log-probability of the first token (computed from the prompt's
  // last position over the loaded prefix).
  auto logprob_change = [&](const Outcome& loaded) {
    EXPECT_FALSE(loaded.generated.empty());
    if (loaded.generated.empty()) return 1e9f;
    const auto& want = computed.generated[0].top;
    const auto& got = loaded.generated[0].top;
    float change = 0;
    for (const auto& w : want) {
      auto it = std::find_if(got.begin(), got.end(),
                             [&](const TokenLogprob& g) { return g.token == w.token; });
      if (it == got.end()) return 1e9f;
      change = std::max(change, std::fabs(it->logprob - w.logprob));
    }
    return change;
  };
  {
    // A cold engine is served the prefix from the int8 DRAM tier, and at shutdown persists
    // its cache to an int8 disk tier.
    o.dram_tier = open_int8_dram();
    o.disk_tier = open_int8_disk();
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto loaded = run_all(s, {asking_logprobs()})[1];
    EXPECT_EQ(s.counters().tier_hit_tokens, 80u);
    EXPECT_EQ(loaded.tokens[0], computed.tokens[0]);
    const float change = logprob_change(loaded);
    EXPECT_GT(change, 0.0f) << "the loaded KV was not quantized";
    EXPECT_LT(change, 0.2f);
    s.persist_cached();
    EXPECT_GE(o.disk_tier->stats().blocks, 5u);
  }
  ShmTier::unlink(name, int8_tag);
  {
    // After a restart (the DRAM tier is gone too), the prefix comes from the disk.
    o.dram_tier = nullptr;
    o.disk_tier = open_int8_disk();
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto loaded = run_all(s, {asking_logprobs()})[1];
    EXPECT_EQ(s.counters().tier_hit_tokens, 80u);
    const float change = logprob_change(loaded);
    EXPECT_GT(change, 0.0f);
    EXPECT_LT(change, 0.2f);
  }
  {
    // Every stored block damaged in its int8 values: dropped, and the prefix recomputed.
    overwrite_byte_in_every_file(dir, 3, '\x55');
    o.disk_tier = open_int8_disk();
    Scheduler s(*model_, *tokenizer_, backend, o);
    auto recomputed = run_all(s, {asking_logprobs()})[1];
    EXPECT_EQ(s.counters().tier_hit_tokens, 0u);
    EXPECT_GE(o.disk_tier->stats().dropped_corrupt, 1u);
    EXPECT_EQ(recomputed.tokens, computed.tokens);
    expect_pool_empty(s);
  }
  ShmTier::unlink(name, native_tag);
  std::filesystem::remove_all(dir);
}

// An engine refuses tiers opened for another layout (native tiers for an int8 engine, f16 ones
// for a bf16 engine) instead of failing every block it would write.
TEST_F(SchedulerTest, EngineRefusesTiersOfAnotherLayout) {
  CpuBackend backend(1);
  const std::string name = "schedlayout" + std::to_string(::getpid());
  EngineOptions e;
  e.scheduler = options(16, 64);
  e.scheduler.tier_codec = KvCodec::kInt8;
  e.scheduler.dram_tier = fresh_dram_tier(name, 4 << 20);  // native f16 layout
  ASSERT_NE(e.scheduler.dram_tier, nullptr);
  auto engine = Engine::create(*model_, *tokenizer_, backend, e);
  ASSERT_FALSE(engine.is_ok());
  EXPECT_NE(engine.status().message().find("DRAM tier"), std::string::npos)
      << engine.status().to_string();
  ShmTier::unlink(name, Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative));

  const auto dir = std::filesystem::temp_directory_path() /
                   ("infergrid_scheduler_layout_" + std::to_string(::getpid()));
  e.scheduler.dram_tier = nullptr;
  e.scheduler.disk_tier = std::make_shared<DiskTier>(
      dir, 1 << 20, Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative), 16);
  ASSERT_TRUE(e.scheduler.disk_tier->open().is_ok());
  EXPECT_FALSE(Engine::create(*model_, *tokenizer_, backend, e).is_ok());
  e.scheduler.tier_codec = KvCodec::kNative;
  EXPECT_TRUE(Engine::create(*model_, *tokenizer_, backend, e).is_ok());
  // The same tier for an engine whose KV cache holds another element type.
  e.scheduler.kv_type = KvType::kBF16;
  auto other_type = Engine::create(*model_, *tokenizer_, backend, e);
  ASSERT_FALSE(other_type.is_ok());
  EXPECT_NE(other_type.status().message().find("KV cache type"), std::string::npos)
      << other_type.status().to_string();
  std::filesystem::remove_all(dir);
}

// Loads from the tiers run in the background: a running stream keeps decoding in the step that
// admits a returning conversation, which joins a later step and still gives the simple path's
// tokens; a request cancelled while its load is in flight gives every block back.
TEST_F(SchedulerTest, TierLoadsRunBesideRunningDecodes) {
  CpuBackend backend(2);
  const std::string name = "schedload" + std::to_string(::getpid());
  const uint64_t tag = Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative);
  const auto history = prompt(96, 777);  // six full blocks
  auto with_turn = [&](std::vector<int32_t> turn) {
    auto p = history;
    p.insert(p.end(), turn.begin(), turn.end());
    return p;
  };
  auto o = options(64, 64);
  o.tier_load_wait_us = 0;
  o.dram_tier = fresh_dram_tier(name, 64 << 20);
  ASSERT_NE(o.dram_tier, nullptr);
  {
    Scheduler first(*model_, *tokenizer_, backend, o);
    run_all(first, {request(with_turn({1}), 4), request(prompt(64, 778), 4)});
    first.flush_tiers();
  }
  Scheduler s(*model_, *tokenizer_, backend, o);
  std::map<uint64_t, Outcome> out;
  auto add = [&](uint64_t id, std::vector<int32_t> p, int max_tokens) {
    ASSERT_TRUE(s.add(id, request(p, max_tokens), record(out, id)).is_ok());
  };
  const auto other = prompt(20, 5);
  add(1, other, 12);
  while (out[1].tokens.size() < 2) ASSERT_TRUE(s.step().is_ok());
  add(2, with_turn({2, 3}), 6);
  auto step = s.step();
  ASSERT_TRUE(step.is_ok());
  EXPECT_EQ(step->n_decodes, 1);    // the stream went on
  EXPECT_EQ(step->n_sequences, 1);  // the returning turn is loading, not computing
  EXPECT_EQ(s.n_waiting(), 1);
  add(3, prompt(64, 778), 6);  // another conversation the tier holds
  ASSERT_TRUE(s.step().is_ok());
  EXPECT_GE(s.n_waiting(), 1);  // 3 is loading now
  s.cancel(3);                  // its load may still be writing: waited for, blocks given back
  while (s.has_work()) ASSERT_TRUE(s.step().is_ok());
  EXPECT_EQ(out[1].tokens, reference(other, 12));
  EXPECT_EQ(out[2].tokens, reference(with_turn({2, 3}), 6));
  EXPECT_EQ(out[2].last.cached_tokens, 96);
  EXPECT_EQ(out[3].reason, FinishReason::kCancelled);
  EXPECT_EQ(s.counters().tier_hit_tokens, 96u);
  expect_pool_empty(s);
  ShmTier::unlink(name, tag);
}

// A tier load holds blocks only until a running stream needs them: here the load takes the
// pool's last free blocks while the only running stream still has to grow, and the stream must
// still run to max_tokens with the simple path's tokens (not be cut short), after which the
// returning turn is served.
TEST_F(SchedulerTest, RunningStreamGetsBlocksBackFromTierLoads) {
  CpuBackend backend(2);
  const std::string name = "schedgrow" + std::to_string(::getpid());
  const uint64_t tag = Scheduler::kv_layout_tag(*model_, 16, kDefaultKvType, KvCodec::kNative);
  auto returning = prompt(96, 777);
  returning.push_back(2);
  returning.push_back(3);
  auto o = options(64, 64);
  o.tier_load_wait_us = 0;
  o.dram_tier = fresh_dram_tier(name, 64 << 20);
  ASSERT_NE(o.dram_tier, nullptr);
  {
    Scheduler first(*model_, *tokenizer_, backend, o);
    run_all(first, {request(returning, 2)});
    first.flush_tiers();
  }
  o.n_blocks = 10;
  Scheduler s(*model_, *tokenizer_, backend, o);
  std::map<uint64_t, Outcome> out;
  auto add = [&](uint64_t id, std::vector<int32_t> p, int max_tokens) {
    ASSERT_TRUE(s.add(id, request(p, max_tokens), record(out, id)).is_ok());
  };
  const auto stream = prompt(20, 5);
  add(1, stream, 100);
  while (out[1].tokens.size() < 44) ASSERT_TRUE(s.step().is_ok());
  add(2, returning, 4);
  for (int i = 0; i < 1000 && s.has_work(); ++i) ASSERT_TRUE(s.step().is_ok());
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(out[1].reason, FinishReason::kLength);
  EXPECT_EQ(out[1].tokens, reference(stream, 100));
  EXPECT_EQ(out[2].tokens, reference(returning, 4));
  expect_pool_empty(s);
  ShmTier::unlink(name, tag);
}

// A sequence that outgrows the whole pool ends with kLength, and its blocks all come back (it
// must not be picked up again as a prefill in the same step).
TEST_F(SchedulerTest, SequenceOutgrowingThePoolEndsAndFreesItsBlocks) {
  CpuBackend backend(2);
  Scheduler s(*model_, *tokenizer_, backend, options(4, 64));
  auto out = run_all(s, {request(prompt(20, 6), 100)});
  EXPECT_EQ(out[1].reason, FinishReason::kLength);
  EXPECT_EQ(out[1].tokens.size(), 45u);  // 4 blocks of 16 hold 64 positions: 20 + 44 + 1
  expect_pool_empty(s);
}

TEST_F(SchedulerTest, EngineServesConcurrentCallersAndRejectsWhenFull) {
  CpuBackend backend(2);
  EngineOptions o;
  o.scheduler = options(128, 64);
  o.max_queued = 4;
  auto engine = Engine::create(*model_, *tokenizer_, backend, o);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  std::vector<std::thread> callers;
  std::vector<RequestEvent> results(3);
  std::vector<std::vector<int32_t>> prompts = {prompt(10, 1), prompt(30, 2), prompt(5, 3)};
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([&, i] {
      auto stream = RequestStream::submit(**engine, request(prompts[i], 15));
      ASSERT_TRUE(stream.is_ok()) << stream.status().to_string();
      results[i] = (*stream)->collect();
    });
  }
  for (auto& t : callers) t.join();
  for (int i = 0; i < 3; ++i) {
    std::vector<int32_t> tokens;
    for (const auto& t : results[i].tokens) tokens.push_back(t.token);
    EXPECT_EQ(tokens, reference(prompts[i], 15));
    EXPECT_EQ(results[i].finish_reason, FinishReason::kLength);
  }
  EXPECT_EQ((*engine)->submit(request({}, 4), nullptr).status().code(),
            StatusCode::kInvalidArgument);

  // Fill the queue faster than the engine drains it: later submissions are rejected.
  int rejected = 0;
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 50; ++i) {
    auto stream = RequestStream::submit(**engine, request(prompt(60, i), 50));
    if (stream.is_ok()) {
      streams.push_back(*stream);
    } else {
      EXPECT_EQ(stream.status().code(), StatusCode::kResourceExhausted);
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  for (auto& st : streams) (*engine)->cancel(st->id());
  for (auto& st : streams) EXPECT_TRUE(st->collect().finished);
  (*engine)->shutdown();
  EXPECT_EQ((*engine)->stats().blocks_in_use, 0);
  EXPECT_EQ((*engine)->submit(request(prompt(4, 1), 4), nullptr).status().code(),
            StatusCode::kUnavailable);
}

}  // namespace
}  // namespace infergrid
