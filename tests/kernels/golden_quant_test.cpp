// Bit-exactness against llama.cpp: the golden models in shared/golden/models were quantized by
// llama.cpp from the same weights as the f32 model. Re-quantizing the f32 tensors with our
// reference quantizers must reproduce llama.cpp's bytes exactly, which pins both the layouts
// and the quantization algorithms (incl. Q4_K/Q6_K's scale search).
//
// The GGUF parsing here is deliberately minimal (enough for these trusted files) so the kernel
// tests do not depend on the model layer.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "golden_required.h"
#include "kernels/quant.h"

namespace infergrid {
namespace {

struct Tensor {
  uint32_t type = 0;
  std::vector<int64_t> dims;
  const uint8_t* data = nullptr;
};

class MiniGguf {
 public:
  explicit MiniGguf(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), {});
    if (bytes_.size() < 24 || std::memcmp(bytes_.data(), "GGUF", 4) != 0) return;
    pos_ = 8;
    const uint64_t n_tensors = read<uint64_t>();
    const uint64_t n_kv = read<uint64_t>();
    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; ++i) {
      const std::string key = read_string();
      const uint32_t type = read<uint32_t>();
      if (key == "general.alignment") {
        alignment = read<uint32_t>();
      } else {
        skip_value(type);
      }
    }
    std::vector<std::pair<std::string, uint64_t>> offsets;
    for (uint64_t i = 0; i < n_tensors; ++i) {
      const std::string name = read_string();
      Tensor t;
      t.dims.resize(read<uint32_t>());
      for (int64_t& d : t.dims) d = static_cast<int64_t>(read<uint64_t>());
      t.type = read<uint32_t>();
      offsets.emplace_back(name, read<uint64_t>());
      tensors_[name] = t;
    }
    const size_t data_start = (pos_ + alignment - 1) / alignment * alignment;
    for (const auto& [name, offset] : offsets)
      tensors_[name].data = bytes_.data() + data_start + offset;
    ok_ = true;
  }

  bool ok() const { return ok_; }
  const std::map<std::string, Tensor>& tensors() const { return tensors_; }

 private:
  template <typename T>
  T read() {
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string read_string() {
    const uint64_t n = read<uint64_t>();
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  void skip_value(uint32_t type) {
    static const size_t kSizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
      read_string();
    } else if (type == 9) {
      const uint32_t elem = read<uint32_t>();
      const uint64_t n = read<uint64_t>();
      for (uint64_t i = 0; i < n; ++i) skip_value(elem);
    } else {
      pos_ += kSizes[type];
    }
  }

  std::vector<uint8_t> bytes_;
  size_t pos_ = 0;
  bool ok_ = false;
  std::map<std::string, Tensor> tensors_;
};

const std::filesystem::path kModels = std::filesystem::path(INFERGRID_SHARED_DIR) / "golden/models";

class GoldenQuant : public testing::TestWithParam<const char*> {};

TEST_P(GoldenQuant, RequantizingF32WeightsReproducesLlamaCppBytes) {
  const std::filesystem::path f32_path = kModels / "tiny-llama-f32.gguf";
  const std::filesystem::path q_path =
      kModels / (std::string("tiny-llama-") + GetParam() + ".gguf");
  if (!std::filesystem::exists(f32_path) || !std::filesystem::exists(q_path)) {
    IG_GOLDEN_MISSING("golden models not found under " << kModels);
  }
  const MiniGguf f32(f32_path);
  const MiniGguf quant(q_path);
  ASSERT_TRUE(f32.ok());
  ASSERT_TRUE(quant.ok());

  int checked = 0;
  std::set<std::string> types_checked;
  for (const auto& [name, qt] : quant.tensors()) {
    const auto type = static_cast<TensorType>(qt.type);
    if (type == TensorType::kF32 || !is_supported_tensor_type(qt.type)) continue;
    const auto it = f32.tensors().find(name);
    ASSERT_NE(it, f32.tensors().end()) << name;
    ASSERT_EQ(it->second.type, 0u) << name;
    const int64_t n_cols = qt.dims[0];
    int64_t n_rows = 1;
    for (size_t d = 1; d < qt.dims.size(); ++d) n_rows *= qt.dims[d];
    const size_t row_bytes = tensor_row_bytes(type, n_cols);
    std::vector<uint8_t> ours(row_bytes);
    std::vector<float> row(static_cast<size_t>(n_cols));
    int64_t mismatched_rows = 0;
    for (int64_t r = 0; r < n_rows; ++r) {
      std::memcpy(row.data(), it->second.data + r * n_cols * sizeof(float), n_cols * sizeof(float));
      quantize_row(type, row.data(), ours.data(), n_cols);
      if (std::memcmp(ours.data(), qt.data + r * row_bytes, row_bytes) != 0) ++mismatched_rows;
    }
    EXPECT_EQ(mismatched_rows, 0) << name << " (" << tensor_type_name(qt.type) << ") of " << n_rows
                                  << " rows";
    ++checked;
    types_checked.insert(tensor_type_name(qt.type));
  }
  EXPECT_GT(checked, 0);
  // The file's own type (its suffix without the _m mix marker) is among those compared.
  std::string own_type = GetParam();
  if (own_type.size() > 2 && own_type.ends_with("_m")) own_type.resize(own_type.size() - 2);
  EXPECT_TRUE(types_checked.count(own_type)) << "no " << own_type << " tensor compared";
  std::string list;
  for (const std::string& t : types_checked) list += " " + t;
  std::printf("[golden quant %s] %d tensors byte-exact, types:%s\n", GetParam(), checked,
              list.c_str());
  RecordProperty("tensors_checked", checked);
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenQuant,
                         testing::Values("q8_0", "q4_0", "q6_k", "q4_k_m", "f16", "q4_1", "q5_0",
                                         "q5_1", "q2_k", "q3_k_m", "q5_k_m", "iq4_nl", "iq4_xs"));

}  // namespace
}  // namespace infergrid
