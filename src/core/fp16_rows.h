// Bulk conversions between f32 and the 16-bit float formats (IEEE fp16, bfloat16), for KV
// cache stores and the tier codecs. Each gives exactly the bits of the scalar conversions in
// core/fp16.h for every finite value and infinity (round to nearest even, fp16 subnormals
// kept); a NaN stays a NaN. The F16C/AVX2 paths are chosen once, from cpu_features().
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/kv_type.h"

namespace infergrid {

void f32_to_f16_row(const float* x, uint16_t* y, size_t n);
void f16_to_f32_row(const uint16_t* x, float* y, size_t n);
void f32_to_bf16_row(const float* x, uint16_t* y, size_t n);
void bf16_to_f32_row(const uint16_t* x, float* y, size_t n);

// n elements between f32 and a KvType (a plain copy for kF32).
void f32_to_kv_row(const float* x, void* y, KvType type, size_t n);
void kv_to_f32_row(const void* x, KvType type, float* y, size_t n);

}  // namespace infergrid
