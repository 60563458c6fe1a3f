#include "core/fp16_rows.h"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/cpu_features.h"
#include "core/fp16.h"

namespace infergrid {
namespace {

void f32_to_f16_scalar(const float* x, uint16_t* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}
void f16_to_f32_scalar(const uint16_t* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}
void f32_to_bf16_scalar(const float* x, uint16_t* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
}
void bf16_to_f32_scalar(const uint16_t* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) void f32_to_f16_f16c(const float* x, uint16_t* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  f32_to_f16_scalar(x + i, y + i, n - i);
}

__attribute__((target("avx2,f16c"))) void f16_to_f32_f16c(const uint16_t* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  }
  f16_to_f32_scalar(x + i, y + i, n - i);
}

// Round to nearest even by integer arithmetic, as fp32_to_bf16 does; NaNs are quieted.
__attribute__((target("avx2"))) void f32_to_bf16_avx2(const float* x, uint16_t* y, size_t n) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(64 << 16);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i rounded = _mm256_add_epi32(
        bits, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(bits, 16), one)));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, abs_mask), inf);
    const __m256i out =
        _mm256_srli_epi32(_mm256_blendv_epi8(rounded, _mm256_or_si256(bits, quiet), nan), 16);
    // 8 x u32 (each < 65536) -> 8 x u16: the unsigned pack is exact.
    const __m128i packed =
        _mm_packus_epi32(_mm256_castsi256_si128(out), _mm256_extracti128_si256(out, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), packed);
  }
  f32_to_bf16_scalar(x + i, y + i, n - i);
}

__attribute__((target("avx2"))) void bf16_to_f32_avx2(const uint16_t* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i wide =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  bf16_to_f32_scalar(x + i, y + i, n - i);
}
#endif

struct RowConversions {
  void (*to_f16)(const float*, uint16_t*, size_t) = f32_to_f16_scalar;
  void (*from_f16)(const uint16_t*, float*, size_t) = f16_to_f32_scalar;
  void (*to_bf16)(const float*, uint16_t*, size_t) = f32_to_bf16_scalar;
  void (*from_bf16)(const uint16_t*, float*, size_t) = bf16_to_f32_scalar;
};

const RowConversions& conversions() {
  static const RowConversions table = [] {
    RowConversions t;
#if defined(__x86_64__)
    if (cpu_features().has_avx2_path()) {
      t = {f32_to_f16_f16c, f16_to_f32_f16c, f32_to_bf16_avx2, bf16_to_f32_avx2};
    }
#endif
    return t;
  }();
  return table;
}

}  // namespace

void f32_to_f16_row(const float* x, uint16_t* y, size_t n) {
  conversions().to_f16(x, y, n);
}
void f16_to_f32_row(const uint16_t* x, float* y, size_t n) {
  conversions().from_f16(x, y, n);
}
void f32_to_bf16_row(const float* x, uint16_t* y, size_t n) {
  conversions().to_bf16(x, y, n);
}
void bf16_to_f32_row(const uint16_t* x, float* y, size_t n) {
  conversions().from_bf16(x, y, n);
}

void f32_to_kv_row(const float* x, void* y, KvType type, size_t n) {
  switch (type) {
    case KvType::kF32:
      std::memcpy(y, x, n * sizeof(float));
      return;
    case KvType::kF16:
      f32_to_f16_row(x, static_cast<uint16_t*>(y), n);
      return;
    case KvType::kBF16:
      f32_to_bf16_row(x, static_cast<uint16_t*>(y), n);
      return;
  }
}

void kv_to_f32_row(const void* x, KvType type, float* y, size_t n) {
  switch (type) {
    case KvType::kF32:
      std::memcpy(y, x, n * sizeof(float));
      return;
    case KvType::kF16:
      f16_to_f32_row(static_cast<const uint16_t*>(x), y, n);
      return;
    case KvType::kBF16:
      bf16_to_f32_row(static_cast<const uint16_t*>(x), y, n);
      return;
  }
}

}  // namespace infergrid
