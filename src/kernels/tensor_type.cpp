#include "kernels/tensor_type.h"

#include <string>

namespace infergrid {

std::optional<TensorTypeTraits> tensor_type_traits(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return TensorTypeTraits{"f32", 1, 4, TensorType::kF32};
    case TensorType::kF16:
      return TensorTypeTraits{"f16", 1, 2, TensorType::kF32};
    case TensorType::kBF16:
      return TensorTypeTraits{"bf16", 1, 2, TensorType::kF32};
    case TensorType::kQ4_0:
      return TensorTypeTraits{"q4_0", kQK4_0, sizeof(BlockQ4_0), TensorType::kQ8_0};
    case TensorType::kQ4_1:
      return TensorTypeTraits{"q4_1", kQK4_1, sizeof(BlockQ4_1), TensorType::kQ8_0};
    case TensorType::kQ5_0:
      return TensorTypeTraits{"q5_0", kQK5_0, sizeof(BlockQ5_0), TensorType::kQ8_0};
    case TensorType::kQ5_1:
      return TensorTypeTraits{"q5_1", kQK5_1, sizeof(BlockQ5_1), TensorType::kQ8_0};
    case TensorType::kQ8_0:
      return TensorTypeTraits{"q8_0", kQK8_0, sizeof(BlockQ8_0), TensorType::kQ8_0};
    case TensorType::kIQ4_NL:
      return TensorTypeTraits{"iq4_nl", kQK4_NL, sizeof(BlockIQ4_NL), TensorType::kQ8_0};
    case TensorType::kQ2_K:
      return TensorTypeTraits{"q2_k", kQK_K, sizeof(BlockQ2_K), TensorType::kQ8_K};
    case TensorType::kQ3_K:
      return TensorTypeTraits{"q3_k", kQK_K, sizeof(BlockQ3_K), TensorType::kQ8_K};
    case TensorType::kQ5_K:
      return TensorTypeTraits{"q5_k", kQK_K, sizeof(BlockQ5_K), TensorType::kQ8_K};
    case TensorType::kIQ4_XS:
      return TensorTypeTraits{"iq4_xs", kQK_K, sizeof(BlockIQ4_XS), TensorType::kQ8_K};
    case TensorType::kQ4_K:
      return TensorTypeTraits{"q4_k", kQK_K, sizeof(BlockQ4_K), TensorType::kQ8_K};
    case TensorType::kQ6_K:
      return TensorTypeTraits{"q6_k", kQK_K, sizeof(BlockQ6_K), TensorType::kQ8_K};
    case TensorType::kQ8_K:
      return TensorTypeTraits{"q8_k", kQK_K, sizeof(BlockQ8_K), TensorType::kQ8_K};
  }
  return std::nullopt;
}

bool is_supported_tensor_type(uint32_t raw_type) {
  return tensor_type_traits(static_cast<TensorType>(raw_type)).has_value();
}

std::string tensor_type_name(uint32_t raw_type) {
  if (auto traits = tensor_type_traits(static_cast<TensorType>(raw_type))) return traits->name;
  // ggml ids we recognise but do not implement, so errors name them.
  static const char* const kKnown[] = {
      "f32",     "f16",    "q4_0",    "q4_1",  "q4_2",   "q4_3",  "q5_0",  "q5_1",
      "q8_0",    "q8_1",   "q2_k",    "q3_k",  "q4_k",   "q5_k",  "q6_k",  "q8_k",
      "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs",
      "i8",      "i16",    "i32",     "i64",   "f64",    "iq1_m", "bf16"};
  if (raw_type < sizeof(kKnown) / sizeof(kKnown[0])) return kKnown[raw_type];
  return "type " + std::to_string(raw_type);
}

std::optional<TensorType> tensor_type_from_name(std::string_view name) {
  for (TensorType t : kWeightTensorTypes) {
    if (name == tensor_type_traits(t)->name) return t;
  }
  return std::nullopt;
}

std::string supported_weight_type_names() {
  std::string names;
  for (TensorType t : kWeightTensorTypes) {
    names += (names.empty() ? "" : ", ") + std::string(tensor_type_traits(t)->name);
  }
  return names;
}

size_t tensor_row_bytes(TensorType type, int64_t n) {
  const auto traits = tensor_type_traits(type);
  return static_cast<size_t>(n / traits->block_elems) * traits->block_bytes;
}

}  // namespace infergrid
