// model quantize against llama-quantize: every quantized golden file, remade here from the F32
// file of the same model with the golden file's general.file_type, has the same tensors in the
// same order, each of the same type and the same bytes.
#include "model/quantize.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "golden_required.h"
#include "model/gguf.h"
#include "model/golden_data.h"

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

}  // namespace
}  // namespace infergrid
