// The one place that looks at CPU features to pick kernels. Each table is built once, on first
// use, from the scalar table upwards, so an entry without a faster version keeps the best one
// below it; a table is only built (and so its ISA's code only reached) when the CPU has that ISA.
#include "kernels/cpu_kernels.h"

#include "core/cpu_features.h"

namespace infergrid {

const CpuKernels& scalar_kernels() {
  static const CpuKernels table = [] {
    CpuKernels k;
    detail::fill_scalar_kernels(k);
    return k;
  }();
  return table;
}

const CpuKernels* avx2_kernels() {
  if (!cpu_features().has_avx2_path()) return nullptr;
  static const CpuKernels table = [] {
    CpuKernels k = scalar_kernels();
    detail::fill_avx2_kernels(k);
    return k;
  }();
  return &table;
}

const CpuKernels* avx512_kernels() {
  const CpuFeatures& features = cpu_features();
  if (!features.has_avx512_path()) return nullptr;
  static const CpuKernels table = [&features] {
    CpuKernels k = *avx2_kernels();
    detail::fill_avx512_float_kernels(k);
    // Without VNNI the AVX2 integer dot products are as fast as 512-bit maddubs chains would be
    // on the memory-bound decode path, so they stay.
    if (features.avx512vnni) {
      detail::fill_avx512_packed_kernels(k);
    }
    k.name = "avx512";
    return k;
  }();
  return &table;
}

const CpuKernels& select_cpu_kernels() {
  if (const CpuKernels* k = avx512_kernels()) return *k;
  if (const CpuKernels* k = avx2_kernels()) return *k;
  return scalar_kernels();
}

std::vector<const CpuKernels*> available_cpu_kernels() {
  std::vector<const CpuKernels*> tables{&scalar_kernels()};
  if (const CpuKernels* k = avx2_kernels()) tables.push_back(k);
  if (const CpuKernels* k = avx512_kernels()) tables.push_back(k);
  return tables;
}

VecDotFn CpuKernels::dot_for(TensorType weight_type) const {
  switch (weight_type) {
    case TensorType::kF32:
      return dot_f32;
    case TensorType::kF16:
      return dot_f16;
    case TensorType::kBF16:
      return dot_bf16;
    case TensorType::kQ4_0:
      return dot_q4_0;
    case TensorType::kQ8_0:
      return dot_q8_0;
    case TensorType::kQ4_K:
      return dot_q4_K;
    case TensorType::kQ6_K:
      return dot_q6_K;
    case TensorType::kQ4_1:
      return dot_q4_1;
    case TensorType::kQ5_0:
      return dot_q5_0;
    case TensorType::kQ5_1:
      return dot_q5_1;
    case TensorType::kIQ4_NL:
      return dot_iq4_nl;
    case TensorType::kQ2_K:
      return dot_q2_K;
    case TensorType::kQ3_K:
      return dot_q3_K;
    case TensorType::kQ5_K:
      return dot_q5_K;
    case TensorType::kIQ4_XS:
      return dot_iq4_xs;
    case TensorType::kQ8_K:
      return nullptr;  // activation-only format, never a weight
  }
  return nullptr;
}

MatDotFn CpuKernels::mat_dot_for(TensorType weight_type) const {
  switch (weight_type) {
    case TensorType::kQ4_0:
      return mat_dot_q4_0;
    case TensorType::kQ8_0:
      return mat_dot_q8_0;
    case TensorType::kQ4_K:
      return mat_dot_q4_K;
    case TensorType::kQ6_K:
      return mat_dot_q6_K;
    case TensorType::kQ5_K:
      return mat_dot_q5_K;
    case TensorType::kIQ4_XS:
      return mat_dot_iq4_xs;
    case TensorType::kQ3_K:
      return mat_dot_q3_K;
    case TensorType::kQ4_1:
      return mat_dot_q4_1;
    case TensorType::kQ5_0:
      return mat_dot_q5_0;
    case TensorType::kQ5_1:
      return mat_dot_q5_1;
    case TensorType::kIQ4_NL:
      return mat_dot_iq4_nl;
    default:
      return nullptr;
  }
}

const PackedKernel* CpuKernels::packed_for(TensorType weight_type) const {
  const PackedKernel* k = nullptr;
  if (weight_type == TensorType::kQ4_0) k = &packed_q4_0;
  if (weight_type == TensorType::kQ8_0) k = &packed_q8_0;
  if (weight_type == TensorType::kQ4_K) k = &packed_q4_K;
  if (weight_type == TensorType::kQ6_K) k = &packed_q6_K;
  if (weight_type == TensorType::kQ5_K) k = &packed_q5_K;
  if (weight_type == TensorType::kIQ4_XS) k = &packed_iq4_xs;
  if (weight_type == TensorType::kQ3_K) k = &packed_q3_K;
  if (weight_type == TensorType::kIQ4_NL) k = &packed_iq4_nl;
  if (weight_type == TensorType::kQ5_0) k = &packed_q5_0;
  return k != nullptr && k->layout != PackedLayout::kNone ? k : nullptr;
}

AttentionTileFn CpuKernels::attention_tile_for(KvType type) const {
  switch (type) {
    case KvType::kF32:
      return attention_tile_f32;
    case KvType::kF16:
      return attention_tile_f16;
    case KvType::kBF16:
      return attention_tile_bf16;
  }
  return nullptr;
}

QuantizeActFn CpuKernels::quantize_for(TensorType dot_type) const {
  switch (dot_type) {
    case TensorType::kQ8_0:
      return quantize_q8_0;
    case TensorType::kQ8_K:
      return quantize_q8_K;
    default:
      return nullptr;
  }
}

}  // namespace infergrid
