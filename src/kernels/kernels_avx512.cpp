// AVX-512 kernels (compiled with AVX-512 F/BW/VL/DQ/VNNI/BF16 flags). Two groups, each enabled
// separately by the dispatcher:
//  - float entries (fill_avx512_float_kernels): only F/BW/VL instructions; tails use masked
//    loads and stores, so there are no scalar remainder loops to get wrong.
//  - the quantized dots live with their packed GEMM in packed_gemm_avx512.cpp (VNNI).
// The quantizers and anything not listed stay AVX2. Integer sums are exact and follow the same
// per-block split as the scalar reference; see kernels_avx2.cpp for the saturation argument,
// which carries over unchanged (same maddubs operand ranges).
//
// bf16 weights are widened to f32 and FMA'd rather than fed to vdpbf16ps: that instruction
// needs both operands in bf16, and rounding the f32 activations to bf16 would lose ~3 decimal
// digits for no speed gain on a memory-bound loop.

#include <cmath>

#include "kernels/avx512_intrinsics.h"
#include "kernels/cpu_kernels.h"
#include "kernels/quant.h"

namespace infergrid {

namespace {

inline __mmask16 tail_mask(int64_t remaining) {
  return static_cast<__mmask16>((1u << remaining) - 1u);
}

inline __m512 load_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load_f16(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load_bf16(const uint16_t* p) {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline __m512 load_f32(const float* p) {
  return _mm512_loadu_ps(p);
}
inline __m512 load_f32(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}

template <typename WordW, typename LoadW, typename LoadWMasked>
inline float dot_float(int64_t n, const WordW* w, const float* x, LoadW load_w,
                       LoadWMasked load_w_masked) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(load_w(w + i), _mm512_loadu_ps(x + i), acc0);
    acc1 = _mm512_fmadd_ps(load_w(w + i + 16), _mm512_loadu_ps(x + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(load_w(w + i + 32), _mm512_loadu_ps(x + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(load_w(w + i + 48), _mm512_loadu_ps(x + i + 48), acc3);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load_w(w + i), _mm512_loadu_ps(x + i), acc0);
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    acc1 = _mm512_fmadd_ps(load_w_masked(w + i, m), _mm512_maskz_loadu_ps(m, x + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

float dot_f32(int64_t n, const void* w, const void* x) {
  return dot_float(
      n, static_cast<const float*>(w), static_cast<const float*>(x),
      [](const float* p) { return load_f32(p); },
      [](const float* p, __mmask16 m) { return load_f32(p, m); });
}

float dot_f16(int64_t n, const void* w, const void* x) {
  return dot_float(
      n, static_cast<const uint16_t*>(w), static_cast<const float*>(x),
      [](const uint16_t* p) { return load_f16(p); },
      [](const uint16_t* p, __mmask16 m) { return load_f16(p, m); });
}

float dot_bf16(int64_t n, const void* w, const void* x) {
  return dot_float(
      n, static_cast<const uint16_t*>(w), static_cast<const float*>(x),
      [](const uint16_t* p) { return load_bf16(p); },
      [](const uint16_t* p, __mmask16 m) { return load_bf16(p, m); });
}

float dot_f32_f32(const float* a, const float* b, int64_t n) {
  return dot_f32(n, a, b);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(
        y + i, m,
        _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

void scale(float a, float* y, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(av, _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(av, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
  const float sum_sq = dot_f32(n, x, x);
  const __m512 iv = _mm512_set1_ps(1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps));
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), iv),
                                          _mm512_loadu_ps(weight + i)));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m,
                          _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), iv),
                                        _mm512_maskz_loadu_ps(m, weight + i)));
  }
}

// Same Cephes expf as the AVX2 file, 16 lanes.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3365447504019f)),
                    _mm512_set1_ps(88.3762626647949f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i pow2 =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(pow2));
}

inline __m512 silu_times(__m512 g, __m512 u) {
  const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, silu_times(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(
        y + i, m, silu_times(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace

namespace detail {

void fill_avx512_float_kernels(CpuKernels& k) {
  k.dot_f32 = dot_f32;
  k.dot_f16 = dot_f16;
  k.dot_bf16 = dot_bf16;
  k.dot_f32_f32 = dot_f32_f32;
  k.axpy = axpy;
  k.scale = scale;
  k.rms_norm = rms_norm;
  k.swiglu = swiglu;
}

}  // namespace detail

}  // namespace infergrid
