// general.file_type as llama.cpp writes it: the golden files (written by llama-quantize) carry
// the value file_type_of gives for their type, and model synth writes that value.
#include "model/file_type.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "golden_required.h"
#include "model/gguf.h"
#include "model/golden_data.h"
#include "model/synth.h"

namespace infergrid {
namespace {

uint32_t stored_file_type(const std::string& path) {
  auto file = GgufFile::open(path);
  EXPECT_TRUE(file.is_ok()) << file.status().to_string();
  if (!file.is_ok()) return ~0u;
  auto value = (*file)->get_int("general.file_type");
  EXPECT_TRUE(value.is_ok() && value->has_value()) << path;
  return value.is_ok() && value->has_value() ? static_cast<uint32_t>(**value) : ~0u;
}

TEST(FileType, MatchesWhatLlamaQuantizeWrites) {
  if (golden_dir().empty()) IG_GOLDEN_MISSING("../shared/golden not present");
  int checked = 0;
  for (TensorType type : kWeightTensorTypes) {
    const std::string path =
        golden_model_path(std::string("tiny-llama-") + tensor_type_traits(type)->name);
    if (path.empty() || !std::filesystem::exists(path)) continue;  // K mixes are named _m
    EXPECT_EQ(stored_file_type(path), static_cast<uint32_t>(*file_type_of(type)))
        << tensor_type_traits(type)->name;
    ++checked;
  }
  EXPECT_GE(checked, 10);
  EXPECT_EQ(stored_file_type(golden_model_path("tiny-llama-q4_k_m")),
            static_cast<uint32_t>(LlamaFileType::kQ4_K_M));
  EXPECT_STREQ(file_type_name(LlamaFileType::kQ4_K_M), "Q4_K - Medium");
}

TEST(FileType, SynthWritesTheRequestedType) {
  const auto dir = std::filesystem::temp_directory_path() / "infergrid_file_type_test";
  std::filesystem::create_directories(dir);
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_K, TensorType::kQ5_0,
                          TensorType::kIQ4_XS, TensorType::kF16}) {
    SynthOptions o;
    o.size = "1m";
    o.type = type;
    const std::string path =
        (dir / (std::string(tensor_type_traits(type)->name) + ".gguf")).string();
    auto summary = synthesize_model(o, path, 2);
    ASSERT_TRUE(summary.is_ok()) << summary.status().to_string();
    EXPECT_EQ(stored_file_type(path), static_cast<uint32_t>(*file_type_of(type)))
        << tensor_type_traits(type)->name;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace infergrid
