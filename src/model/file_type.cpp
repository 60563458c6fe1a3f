#include "model/file_type.h"

namespace infergrid {

std::optional<LlamaFileType> file_type_of(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return LlamaFileType::kAllF32;
    case TensorType::kF16:
      return LlamaFileType::kF16;
    case TensorType::kBF16:
      return LlamaFileType::kBF16;
    case TensorType::kQ4_0:
      return LlamaFileType::kQ4_0;
    case TensorType::kQ4_1:
      return LlamaFileType::kQ4_1;
    case TensorType::kQ5_0:
      return LlamaFileType::kQ5_0;
    case TensorType::kQ5_1:
      return LlamaFileType::kQ5_1;
    case TensorType::kQ8_0:
      return LlamaFileType::kQ8_0;
    case TensorType::kQ2_K:
      return LlamaFileType::kQ2_K;
    case TensorType::kQ3_K:
      return LlamaFileType::kQ3_K_S;
    case TensorType::kQ4_K:
      return LlamaFileType::kQ4_K_S;
    case TensorType::kQ5_K:
      return LlamaFileType::kQ5_K_S;
    case TensorType::kQ6_K:
      return LlamaFileType::kQ6_K;
    case TensorType::kIQ4_NL:
      return LlamaFileType::kIQ4_NL;
    case TensorType::kIQ4_XS:
      return LlamaFileType::kIQ4_XS;
    case TensorType::kQ8_K:
      break;
  }
  return std::nullopt;
}

const char* file_type_name(LlamaFileType type) {
  switch (type) {
    case LlamaFileType::kAllF32:
      return "all F32";
    case LlamaFileType::kF16:
      return "F16";
    case LlamaFileType::kQ4_0:
      return "Q4_0";
    case LlamaFileType::kQ4_1:
      return "Q4_1";
    case LlamaFileType::kQ8_0:
      return "Q8_0";
    case LlamaFileType::kQ5_0:
      return "Q5_0";
    case LlamaFileType::kQ5_1:
      return "Q5_1";
    case LlamaFileType::kQ2_K:
      return "Q2_K - Medium";
    case LlamaFileType::kQ3_K_S:
      return "Q3_K - Small";
    case LlamaFileType::kQ3_K_M:
      return "Q3_K - Medium";
    case LlamaFileType::kQ3_K_L:
      return "Q3_K - Large";
    case LlamaFileType::kQ4_K_S:
      return "Q4_K - Small";
    case LlamaFileType::kQ4_K_M:
      return "Q4_K - Medium";
    case LlamaFileType::kQ5_K_S:
      return "Q5_K - Small";
    case LlamaFileType::kQ5_K_M:
      return "Q5_K - Medium";
    case LlamaFileType::kQ6_K:
      return "Q6_K";
    case LlamaFileType::kIQ4_NL:
      return "IQ4_NL - 4.5 bpw";
    case LlamaFileType::kIQ4_XS:
      return "IQ4_XS - 4.25 bpw";
    case LlamaFileType::kBF16:
      return "BF16";
  }
  return nullptr;
}

}  // namespace infergrid
