// general.file_type: llama.cpp's LLAMA_FTYPE values, which name a file's quantization as a
// whole (its main weight type, or a mix such as Q4_K_M). Readers such as llama.cpp print it as
// the file's type, so writers must store the value for what they wrote, not a tensor type id.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "kernels/tensor_type.h"

namespace infergrid {

enum class LlamaFileType : uint32_t {
  kAllF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 7,
  kQ5_0 = 8,
  kQ5_1 = 9,
  kQ2_K = 10,
  kQ3_K_S = 11,
  kQ3_K_M = 12,
  kQ3_K_L = 13,
  kQ4_K_S = 14,
  kQ4_K_M = 15,
  kQ5_K_S = 16,
  kQ5_K_M = 17,
  kQ6_K = 18,
  kIQ4_NL = 25,
  kIQ4_XS = 30,
  kBF16 = 32,
};

// The file type of a file whose weights are all `type` (K-quants map to their _S mix where
// llama.cpp has no plain one: Q3_K -> Q3_K_S, Q4_K -> Q4_K_S, Q5_K -> Q5_K_S). nullopt for Q8_K.
std::optional<LlamaFileType> file_type_of(TensorType type);
// "Q4_K_M" and so on, as llama.cpp prints them; nullptr for values it does not name here.
const char* file_type_name(LlamaFileType type);

}  // namespace infergrid
