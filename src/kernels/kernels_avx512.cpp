// AVX-512 kernels (compiled with AVX-512 F/BW/VL/DQ/VNNI/BF16 flags). Two groups, each enabled
// separately by the dispatcher:
//  - float entries (fill_avx512_float_kernels): only F/BW/VL instructions; tails use masked
//    loads and stores, so there are no scalar remainder loops to get wrong.
//  - the Q6_K dot (fill_avx512_vnni_kernels): adds VNNI (vpdpwssd) on top. Q4_0, Q8_0 and
//    Q4_K have their VNNI dots and packed GEMM in packed_gemm_avx512.cpp.
// The quantizers and anything not listed stay AVX2. Integer sums are exact and follow the same
// per-block split as the scalar reference; see kernels_avx2.cpp for the saturation argument,
// which carries over unchanged (same maddubs operand ranges).
//
// bf16 weights are widened to f32 and FMA'd rather than fed to vdpbf16ps: that instruction
// needs both operands in bf16, and rounding the f32 activations to bf16 would lose ~3 decimal
// digits for no speed gain on a memory-bound loop.
// GCC 12's AVX-512 headers self-initialise their "undefined" vectors and then warn about it
// from inside the header (GCC bug 105593, fixed in 13); the pragma covers only the header lines.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cmath>

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

// ---- VNNI quantized dots ----

inline float half(uint16_t h) {
  return _cvtsh_ss(h);
}

inline __m512i concat(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Lane i of row r selects scale 4r + i / 8: the sub-block of 16 that 16-bit lane i of a
// maddubs result over 64 elements covers, for the r-th 64-element group of a Q6_K block.
alignas(64) constexpr int16_t kQ6ScaleIndex[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5,
     6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8,  8,  8,  8,  8,  8,  8,  8,  9,  9,  9,  9,  9,  9,  9,  9,
     10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13,
     14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

float dot_q6_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ6_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m256i m2 = _mm256_set1_epi8(3);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m128i scales8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a[i].scales));
    const __m256i scales16 = _mm256_cvtepi8_epi16(scales8);
    // q - 32 folded out: subtract 32 * sum_k sc[k] * bsum[k] once per block.
    const __m256i correction =
        _mm256_slli_epi32(_mm256_madd_epi16(scales16, load256(b[i].bsums)), 5);
    __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), correction));
    const __m512i scales512 = _mm512_castsi256_si512(scales16);

    for (int h = 0; h < 2; ++h) {
      // 64 ql bytes: low nibbles are elements 0..63 of this half, high nibbles 64..127; qh bit
      // pairs 0..3 supply the top 2 bits of quarters 0..3.
      const __m512i ql = _mm512_loadu_si512(a[i].ql + 64 * h);
      const __m256i qh = load256(a[i].qh + 32 * h);
      const __m512i top_lo =
          concat(_mm256_and_si256(qh, m2), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
      const __m512i top_hi = concat(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2),
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 6), m2));
      const __m512i q_lo = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(top_lo, 4));
      const __m512i q_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                           _mm512_slli_epi16(top_hi, 4));
      const __m512i y_lo = _mm512_loadu_si512(b[i].qs + 128 * h);
      const __m512i y_hi = _mm512_loadu_si512(b[i].qs + 128 * h + 64);
      const __m512i sc_lo =
          _mm512_permutexvar_epi16(_mm512_load_si512(kQ6ScaleIndex[2 * h]), scales512);
      const __m512i sc_hi =
          _mm512_permutexvar_epi16(_mm512_load_si512(kQ6ScaleIndex[2 * h + 1]), scales512);
      sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q_lo, y_lo), sc_lo);
      sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q_hi, y_hi), sc_hi);
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(b[i].d * half(a[i].d)), _mm512_cvtepi32_ps(sumi), acc);
  }
  return _mm512_reduce_add_ps(acc);
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

void fill_avx512_vnni_kernels(CpuKernels& k) {
  k.dot_q6_K = dot_q6_K;
}

}  // namespace detail

}  // namespace infergrid
