// model quantize against llama-quantize: every quantized golden file, remade here from the F32
// file of the same model with the golden file's general.file_type, has the same tensors in the
// same order, each of the same type and the same bytes.
#include "model/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "golden_required.h"
#include "kernels/cpu_backend.h"
#include "model/gguf.h"
#include "model/golden_data.h"
#include "model/model.h"
#include "model/synth.h"

namespace infergrid {
namespace {

TEST(Quantize, RemakesEveryGoldenFileAsLlamaQuantizeDid) {
  if (golden_dir().empty()) IG_GOLDEN_MISSING("../shared/golden not present");
  const auto dir = std::filesystem::temp_directory_path() / "infergrid_quantize_test";
  std::filesystem::create_directories(dir);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(golden_dir() + "/models")) {
    const std::string name = entry.path().stem().string();
    const size_t cut = name.rfind('-');
    const std::string source = golden_model_path(name.substr(0, cut) + "-f32");
    const std::string suffix = name.substr(cut + 1);
    if (suffix == "f32" || source.empty() || !std::filesystem::exists(source)) continue;
    SCOPED_TRACE(name);
    auto golden = GgufFile::open(entry.path().string());
    ASSERT_TRUE(golden.is_ok()) << golden.status().to_string();
    auto file_type = (*golden)->get_int("general.file_type");
    ASSERT_TRUE(file_type.is_ok() && file_type->has_value());
    QuantizeOptions options;
    options.target = static_cast<LlamaFileType>(**file_type);
    options.n_threads = 2;
    const std::string out = (dir / (name + ".gguf")).string();
    auto summary = quantize_model(source, out, options);
    ASSERT_TRUE(summary.is_ok()) << summary.status().to_string();
    auto ours = GgufFile::open(out);
    ASSERT_TRUE(ours.is_ok()) << ours.status().to_string();
    ASSERT_EQ((*ours)->tensors().size(), (*golden)->tensors().size());
    for (size_t i = 0; i < (*golden)->tensors().size(); ++i) {
      const GgufTensorInfo& want = (*golden)->tensors()[i];
      const GgufTensorInfo& got = (*ours)->tensors()[i];
      ASSERT_EQ(got.name, want.name) << "tensor " << i;
      EXPECT_EQ(tensor_type_name(got.raw_type), tensor_type_name(want.raw_type)) << want.name;
      ASSERT_EQ(got.n_bytes, want.n_bytes) << want.name;
      EXPECT_EQ(std::memcmp(got.data, want.data, want.n_bytes), 0) << want.name;
    }
    EXPECT_EQ((*ours)->get_int("general.file_type")->value_or(-1), **file_type);
    ++files;
  }
  EXPECT_GE(files, 25);
  std::filesystem::remove_all(dir);
}

TEST(Quantize, NamesAndErrors) {
  EXPECT_EQ(*parse_quantize_target("q4_k_m"), LlamaFileType::kQ4_K_M);
  EXPECT_EQ(*parse_quantize_target("Q4_K"), LlamaFileType::kQ4_K_M);  // llama-quantize's alias
  EXPECT_EQ(*parse_quantize_target("IQ4_XS"), LlamaFileType::kIQ4_XS);
  auto unknown = parse_quantize_target("q9_9");
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("Q5_K_M"), std::string::npos);
  if (golden_dir().empty()) IG_GOLDEN_MISSING("../shared/golden not present");
  // A quantized input is refused unless asked for.
  const std::string out =
      (std::filesystem::temp_directory_path() / "infergrid_requantize.gguf").string();
  QuantizeOptions options;
  options.target = LlamaFileType::kQ4_0;
  auto refused = quantize_model(golden_model_path("tiny-llama-q8_0"), out, options);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("--allow-requantize"), std::string::npos);
  options.allow_requantize = true;
  EXPECT_TRUE(quantize_model(golden_model_path("tiny-llama-q8_0"), out, options).is_ok());
  std::filesystem::remove(out);
}

// Rows that are not a multiple of 256 (Qwen2.5-0.5B's n_embd is 896) get llama-quantize's
// fallbacks inside a Q4_K_M file (Q4_K -> Q5_0, Q6_K -> Q8_0), and the file loads and computes
// what the F32 file does, within the quantization's error.
TEST(Quantize, RowsOffTheSuperBlockFallBackAndStillCompute) {
  const auto dir = std::filesystem::temp_directory_path() / "infergrid_quantize_fallback";
  std::filesystem::create_directories(dir);
  SynthOptions o;
  o.arch = "qwen2";
  o.size = "1m";
  o.type = TensorType::kF32;
  o.n_embd = 384;  // 1.5 super-blocks per row
  o.n_head = 6;
  o.n_head_kv = 2;
  o.n_ff = 1024;
  const std::string f32 = (dir / "f32.gguf").string(), q = (dir / "q4_k_m.gguf").string();
  ASSERT_TRUE(synthesize_model(o, f32, 2).is_ok());
  QuantizeOptions options;
  options.target = LlamaFileType::kQ4_K_M;
  auto summary = quantize_model(f32, q, options);
  ASSERT_TRUE(summary.is_ok()) << summary.status().to_string();
  EXPECT_GT(summary->n_fallback, 0);
  EXPECT_GT(summary->tensors_by_type["q5_0"], 0);  // Q4_K rows of 384
  EXPECT_GT(summary->tensors_by_type["q8_0"], 0);  // Q6_K rows of 384 (output, some attn_v)
  EXPECT_GT(summary->tensors_by_type["q4_k"], 0);  // ffn_down's rows of 1024 fit
  auto reference = Model::load(f32);
  auto quantized = Model::load(q);
  ASSERT_TRUE(reference.is_ok() && quantized.is_ok()) << quantized.status().to_string();
  CpuBackend backend(2);
  const std::vector<int32_t> tokens = {1, 40, 41, 300, 7, 99, 12, 250};
  auto logits_of = [&](const Model& m) {
    KvCache cache(m.config(), 16, kDefaultKvType);
    ForwardScratch scratch(m.config(), 16);
    auto r = m.forward(backend, cache, scratch, tokens, 0, Model::Logits::kAll);
    EXPECT_TRUE(r.is_ok());
    return r.is_ok() ? std::vector<float>(r->begin(), r->end()) : std::vector<float>();
  };
  const std::vector<float> a = logits_of(**reference), b = logits_of(**quantized);
  ASSERT_EQ(a.size(), b.size());
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  EXPECT_GT(dot / std::sqrt(na * nb), 0.99);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace infergrid
