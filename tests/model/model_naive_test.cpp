// The production forward pass against the independent naive fp32 implementation on synthetic
// models of every supported architecture, and the invariance of its results to how the work
// is split (prompt chunking, batched vs one-token steps, thread count).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <algorithm>
#include <functional>
#include <set>
#include <tuple>
#include <utility>
#include "kernels/cpu_backend.h"
#include "model/model.h"
#include "model/naive_model.h"
#include "model/synth.h"

namespace infergrid {
namespace {

std::string synth_path(const std::string& arch, TensorType type, bool tied) {
  const auto dir = std::filesystem::temp_directory_path() / "infergrid_model_tests";
  std::filesystem::create_directories(dir);
  const std::string path =
      (dir / (arch + "-" + tensor_type_traits(type)->name + (tied ? "-tied" : "") + ".gguf"))
          .string();
  SynthOptions o;
  o.arch = arch;
  o.size = "1m";
  o.type = type;
  o.tied_output = tied;
  o.n_embd = 256;
  o.n_layer = 2;
  o.n_head = 8;
  o.n_head_kv = arch == "llama2" ? 8 : 2;
  o.n_ff = 512;
  o.n_vocab = 320;
  o.n_ctx = 256;
  auto summary = synthesize_model(o, path, 2);
  EXPECT_TRUE(summary.is_ok()) << summary.status().to_string();
  return path;
}

std::vector<int32_t> test_prompt(int n, int n_vocab) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < n; ++i) tokens.push_back(7 + (i * 37 + i * i) % (n_vocab - 7));
  return tokens;
}

// The naive model keeps K and V in f32: the production model is compared with it on an f32
// cache, exactly, and on the 16-bit caches within their rounding.
std::vector<int32_t> greedy_production(const Model& model, Backend& backend,
                                       const std::vector<int32_t>& prompt, int steps) {
  KvCache cache(model.config(), static_cast<int>(prompt.size()) + steps, KvType::kF32);
  ForwardScratch scratch(model.config(), 16);
  auto logits = model.forward(backend, cache, scratch, prompt, 0, Model::Logits::kLast);
  EXPECT_TRUE(logits.is_ok());
  std::vector<int32_t> out;
  for (int i = 0; i < steps; ++i) {
    int32_t token =
        static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
    out.push_back(token);
    logits = model.forward(backend, cache, scratch, std::span<const int32_t>(&token, 1),
                           static_cast<int>(prompt.size()) + i, Model::Logits::kLast);
    EXPECT_TRUE(logits.is_ok());
  }
  return out;
}

struct ArchCase {
  const char* arch;
  TensorType type;
  bool tied;
  double max_abs;  // bound on |ours - naive| over all logits
};

class ModelVsNaive : public ::testing::TestWithParam<ArchCase> {};

TEST_P(ModelVsNaive, LogitsCloseAndSameGreedyTokensFor64Steps) {
  const ArchCase& c = GetParam();
  const std::string path = synth_path(c.arch, c.type, c.tied);
  auto model = Model::load(path);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  auto naive = NaiveModel::load(path);
  const int n_vocab = (*model)->config().n_vocab;
  const std::vector<int32_t> prompt = test_prompt(24, n_vocab);

  CpuBackend backend(2);
  KvCache cache((*model)->config(), 128, KvType::kF32);
  ForwardScratch scratch((*model)->config(), 32);
  auto ours = (*model)->forward(backend, cache, scratch, prompt, 0, Model::Logits::kAll);
  ASSERT_TRUE(ours.is_ok()) << ours.status().to_string();
  const auto reference = naive->logits_all(prompt);
  double max_abs = 0, max_logit = 0;
  for (size_t t = 0; t < prompt.size(); ++t) {
    for (int v = 0; v < n_vocab; ++v) {
      max_abs = std::max(
          max_abs, std::fabs(static_cast<double>((*ours)[t * n_vocab + v]) - reference[t][v]));
      max_logit = std::max(max_logit, std::fabs(static_cast<double>(reference[t][v])));
    }
  }
  std::printf("[%s %s%s] max |ours - naive| = %.2e (logits up to %.2f)\n", c.arch,
              tensor_type_traits(c.type)->name, c.tied ? " tied" : "", max_abs, max_logit);
  EXPECT_LE(max_abs, c.max_abs);
  EXPECT_GT(max_logit, 0.5);  // the model is not degenerate

  const auto ours_greedy = greedy_production(**model, backend, prompt, 64);
  const auto naive_greedy = naive->greedy(prompt, 64);
  EXPECT_EQ(ours_greedy, naive_greedy);
  // The sequence is not a single repeated token (which would make the check weak).
  EXPECT_GT(std::set<int32_t>(ours_greedy.begin(), ours_greedy.end()).size(), 3u);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ModelVsNaive,
                         ::testing::Values(ArchCase{"llama", TensorType::kF32, false, 1e-4},
                                           ArchCase{"llama", TensorType::kF16, false, 1e-4},
                                           ArchCase{"llama", TensorType::kF32, true, 1e-4},
                                           ArchCase{"llama2", TensorType::kF32, false, 1e-4},
                                           ArchCase{"mistral", TensorType::kF32, false, 1e-4},
                                           ArchCase{"mistral", TensorType::kBF16, false, 1e-4},
                                           ArchCase{"qwen2", TensorType::kF32, false, 1e-4},
                                           ArchCase{"qwen2", TensorType::kF16, false, 1e-4},
                                           ArchCase{"qwen3", TensorType::kF32, false, 1e-4},
                                           ArchCase{"qwen3", TensorType::kF16, true, 1e-4},
                                           ArchCase{"mixtral", TensorType::kF32, false, 1e-4},

                                           ArchCase{"qwen3moe", TensorType::kF32, false, 1e-4},
                                           ArchCase{"qwen3moe", TensorType::kBF16, true, 1e-4}),
                         [](const ::testing::TestParamInfo<ArchCase>& info) {
                           return std::string(info.param.arch) + "_" +
                                  tensor_type_traits(info.param.type)->name +
                                  (info.param.tied ? "_tied" : "");
                         });

class SplitInvariance : public ::testing::TestWithParam<std::tuple<TensorType, KvType>> {};

// Every dot product is computed the same way whatever the batch shape, so chunked prefill,
// one-token steps and any thread count give bit-identical logits.
TEST_P(SplitInvariance, ChunkingBatchingAndThreadsGiveIdenticalLogits) {
  const auto [weight_type, kv_type] = GetParam();
  const std::string path = synth_path("qwen2", weight_type, false);
  auto model = Model::load(path);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  const ModelConfig& config = (*model)->config();
  const std::vector<int32_t> prompt = test_prompt(40, config.n_vocab);
  const size_t n_vocab = static_cast<size_t>(config.n_vocab);

  CpuBackend two_threads(2);
  KvCache full_cache(config, 64, kv_type);
  ForwardScratch full_scratch(config, 64);
  auto full =
      (*model)->forward(two_threads, full_cache, full_scratch, prompt, 0, Model::Logits::kAll);
  ASSERT_TRUE(full.is_ok());
  const std::vector<float> reference(full->begin(), full->end());

  // Chunks of 7 tokens (the scratch holds 7), then the last row compared.
  CpuBackend one_thread(1);
  KvCache chunk_cache(config, 64, kv_type);
  ForwardScratch chunk_scratch(config, 7);
  auto chunked =
      (*model)->forward(one_thread, chunk_cache, chunk_scratch, prompt, 0, Model::Logits::kLast);
  ASSERT_TRUE(chunked.is_ok());
  for (size_t v = 0; v < n_vocab; ++v) {
    ASSERT_EQ((*chunked)[v], reference[(prompt.size() - 1) * n_vocab + v]) << "vocab " << v;
  }

  // One token at a time.
  KvCache step_cache(config, 64, kv_type);
  ForwardScratch step_scratch(config, 1);
  for (size_t t = 0; t < prompt.size(); ++t) {
    auto step = (*model)->forward(two_threads, step_cache, step_scratch,
                                  std::span<const int32_t>(&prompt[t], 1), static_cast<int>(t),
                                  Model::Logits::kLast);
    ASSERT_TRUE(step.is_ok());
    for (size_t v = 0; v < n_vocab; ++v) {
      ASSERT_EQ((*step)[v], reference[t * n_vocab + v]) << "position " << t << " vocab " << v;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, SplitInvariance,
    ::testing::Combine(::testing::Values(TensorType::kF32, TensorType::kQ8_0, TensorType::kQ4_0,
                                         TensorType::kQ4_K, TensorType::kQ6_K),
                       ::testing::Values(KvType::kF32, KvType::kF16, KvType::kBF16)),
    [](const ::testing::TestParamInfo<std::tuple<TensorType, KvType>>& info) {
      return std::string(tensor_type_traits(std::get<0>(info.param))->name) + "_kv_" +
             std::string(kv_type_name(std::get<1>(info.param)));
    });

// The 16-bit caches against the naive f32 model: each logit moves by the rounding of K and V
// (f16: 11 significant bits, bf16: 8), and the teacher-forced greedy choice stays the naive
// one wherever the naive top two are apart by more than that.
TEST(ModelKvCacheType, SixteenBitCachesStayCloseToTheNaiveModel) {
  const std::string path = synth_path("llama", TensorType::kF32, false);
  auto model = Model::load(path);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  auto naive = NaiveModel::load(path);
  const int n_vocab = (*model)->config().n_vocab;
  const std::vector<int32_t> prompt = test_prompt(48, n_vocab);
  const auto reference = naive->logits_all(prompt);
  for (const auto& [type, bound] :
       {std::pair{KvType::kF16, 5e-3}, std::pair{KvType::kBF16, 4e-2}}) {
    CpuBackend backend(2);
    KvCache cache((*model)->config(), 64, type);
    EXPECT_EQ(cache.bytes(), KvCache((*model)->config(), 64, KvType::kF32).bytes() / 2);
    ForwardScratch scratch((*model)->config(), 64);
    auto ours = (*model)->forward(backend, cache, scratch, prompt, 0, Model::Logits::kAll);
    ASSERT_TRUE(ours.is_ok()) << ours.status().to_string();
    double max_abs = 0;
    int checked = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
      const float* row = ours->data() + t * n_vocab;
      std::vector<float> sorted = reference[t];
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
      for (int v = 0; v < n_vocab; ++v) {
        max_abs = std::max(max_abs, std::fabs(static_cast<double>(row[v]) - reference[t][v]));
      }
      if (sorted[0] - sorted[1] > 4 * bound) {
        ++checked;
        const auto best = std::max_element(row, row + n_vocab) - row;
        EXPECT_EQ(reference[t][best], sorted[0]) << kv_type_name(type) << " position " << t;
      }
    }
    std::printf("[kv %s] max |ours - naive f32| = %.2e, argmax checked at %d/%zu positions\n",
                kv_type_name(type).data(), max_abs, checked, prompt.size());
    EXPECT_LE(max_abs, bound) << kv_type_name(type);
    EXPECT_GT(max_abs, 0.0) << "the cache did not round: is it really " << kv_type_name(type);
    EXPECT_GT(checked, 24);
  }
}

TEST(ModelLoad, RejectsBadFilesWithClearErrors) {
  auto missing = Model::load("/nonexistent.gguf");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("/nonexistent.gguf"), std::string::npos);
  // A valid GGUF that is only a vocabulary is not a model: the error names the missing part.
  const std::string path = synth_path("llama", TensorType::kF32, false);
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file.is_ok());
  std::vector<uint8_t> bytes(std::filesystem::file_size(path));
  FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
  // Truncating the file to half its size cuts tensor data: the reader says which tensor.
  auto truncated =
      GgufFile::parse(std::span<const uint8_t>(bytes.data(), bytes.size() / 2), "half");
  ASSERT_FALSE(truncated.is_ok());
  EXPECT_NE(truncated.status().message().find("extends past the end"), std::string::npos);
}

TEST(ModelForward, RejectsOutOfRangeTokensAndPositions) {
  auto model = Model::load(synth_path("llama", TensorType::kF32, false));
  ASSERT_TRUE(model.is_ok());
  CpuBackend backend(1);
  KvCache cache((*model)->config(), 8, kDefaultKvType);
  ForwardScratch scratch((*model)->config(), 8);
  const std::vector<int32_t> bad_token = {1, 99999};
  EXPECT_EQ((*model)
                ->forward(backend, cache, scratch, bad_token, 0, Model::Logits::kLast)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  const std::vector<int32_t> too_long(9, 5);
  EXPECT_EQ(
      (*model)->forward(backend, cache, scratch, too_long, 0, Model::Logits::kLast).status().code(),
      StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace infergrid
