// Reference (scalar) conversions between float and every tensor type. These define the
// arithmetic; SIMD kernels are tested against them. Quantizers are used to write models
// (model synth / quantize) and to convert activations before dot products.
#pragma once

#include <cstdint>

#include "kernels/tensor_type.h"

namespace infergrid {

// n must be a multiple of the type's block size.
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n);

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t n);
void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t n);

// Any supported type, row of n elements.
void quantize_row(TensorType type, const float* x, void* y, int64_t n);
void dequantize_row(TensorType type, const void* x, float* y, int64_t n);

// Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

}  // namespace infergrid
