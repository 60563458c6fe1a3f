// Scalar reference for every CpuKernels entry: plain loops that define the correct result. The
// SIMD tables are tested against these, so they favour clarity over speed.
//
// Quantized dot products accumulate each block's (or sub-block's) integer sum exactly in int32
// and only then scale it, which is the split the SIMD versions must reproduce.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/cpu_kernels.h"
#include "kernels/quant.h"

namespace infergrid {

namespace {

float dot_f32(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const float*>(w);
  const auto* b = static_cast<const float*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

float dot_f16(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const uint16_t*>(w);
  const auto* b = static_cast<const float*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += fp16_to_fp32(a[i]) * b[i];
  return sum;
}

float dot_bf16(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const uint16_t*>(w);
  const auto* b = static_cast<const float*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += bf16_to_fp32(a[i]) * b[i];
  return sum;
}

float dot_q4_0(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ4_0*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      sumi += ((a[i].qs[j] & 0xF) - 8) * b[i].qs[j];
      sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + kQK4_0 / 2];
    }
    sum += sumi * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  return sum;
}

float dot_q8_0(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ8_0*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += a[i].qs[j] * b[i].qs[j];
    sum += sumi * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  return sum;
}

// The reference tile: one vec_dot per output, which is the contract by construction.
template <VecDotFn Dot>
void mat_dot(int64_t n, const void* w, size_t w_row_bytes, int64_t n_w, const void* x,
             size_t x_row_bytes, int64_t n_x, float* y, int64_t y_stride) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  for (int64_t c = 0; c < n_x; ++c) {
    for (int64_t r = 0; r < n_w; ++r) {
      y[c * y_stride + r] = Dot(n, wb + r * w_row_bytes, xb + c * x_row_bytes);
    }
  }
}

float dot_q4_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ4_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int sumi = 0;  // sum over sub-blocks of scale * sum(q * y)
    int summ = 0;  // sum over sub-blocks of min * sum(y), from the precomputed bsums
    for (int j = 0; j < kQK_K / 32; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, a[i].scales, &sc, &m);
      const uint8_t* q = a[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      const int8_t* y = b[i].qs + 32 * j;
      int s = 0;
      for (int l = 0; l < 32; ++l) s += ((q[l] >> shift) & 0xF) * y[l];
      sumi += sc * s;
      summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * sumi - b[i].d * fp16_to_fp32(a[i].dmin) * summ;
  }
  return sum;
}

float dot_q6_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ6_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int sumi = 0;
    for (int e = 0; e < kQK_K; ++e) {
      // Element e of the block: half h, quarter q of the half, position l in the quarter.
      const int h = e / 128, quarter = (e % 128) / 32, l = e % 32;
      const uint8_t ql = a[i].ql[64 * h + l + 32 * (quarter % 2)];
      const uint8_t qh = a[i].qh[32 * h + l];
      const int lo = quarter < 2 ? (ql & 0xF) : (ql >> 4);
      const int q = (lo | (((qh >> (2 * quarter)) & 3) << 4)) - 32;
      sumi += a[i].scales[e / 16] * q * b[i].qs[e];
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * sumi;
  }
  return sum;
}

// Sum of a Q8_0 block's codes: the offset terms of Q4_1/Q5_1 (min * sum of activations).
int q8_0_code_sum(const BlockQ8_0& b) {
  int s = 0;
  for (int8_t v : b.qs) s += v;
  return s;
}

float dot_q4_1(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ4_1*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += (a[i].qs[j] & 0xF) * b[i].qs[j] + (a[i].qs[j] >> 4) * b[i].qs[j + 16];
    }
    const float dx = fp16_to_fp32(b[i].d);
    sum += sumi * (fp16_to_fp32(a[i].d) * dx) + fp16_to_fp32(a[i].m) * dx * q8_0_code_sum(b[i]);
  }
  return sum;
}

int q5_level_of(const uint8_t* qh, const uint8_t* qs, int j) {
  uint32_t high;
  std::memcpy(&high, qh, 4);
  return (j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4) | static_cast<int>(((high >> j) & 1) << 4);
}

float dot_q5_0(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ5_0*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += (q5_level_of(a[i].qh, a[i].qs, j) - 16) * b[i].qs[j];
    sum += sumi * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  return sum;
}

float dot_q5_1(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ5_1*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += q5_level_of(a[i].qh, a[i].qs, j) * b[i].qs[j];
    const float dx = fp16_to_fp32(b[i].d);
    sum += sumi * (fp16_to_fp32(a[i].d) * dx) + fp16_to_fp32(a[i].m) * dx * q8_0_code_sum(b[i]);
  }
  return sum;
}

float dot_iq4_nl(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockIQ4_NL*>(w);
  const auto* b = static_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_NL; ++i) {
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += kIq4nlValues[a[i].qs[j] & 0xF] * b[i].qs[j] +
              kIq4nlValues[a[i].qs[j] >> 4] * b[i].qs[j + 16];
    }
    sum += sumi * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  return sum;
}

float dot_q2_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ2_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q2_K_level(a[i].qs, 16 * j + l) * b[i].qs[16 * j + l];
      sumi += (a[i].scales[j] & 0xF) * s;
      summ += (a[i].scales[j] >> 4) * b[i].bsums[j];
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * sumi - b[i].d * fp16_to_fp32(a[i].dmin) * summ;
  }
  return sum;
}

float dot_q3_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ3_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    uint8_t sc[16];
    unpack_q3_K_scales(a[i].scales, sc);
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * j + l;
        const int high = (a[i].hmask[e % 32] >> (e / 32)) & 1;
        s += (q2_K_level(a[i].qs, e) - (high ? 0 : 4)) * b[i].qs[e];
      }
      sumi += (sc[j] - 32) * s;
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * sumi;
  }
  return sum;
}

float dot_q5_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ5_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, a[i].scales, &sc, &m);
      const uint8_t* q = a[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      const int8_t* y = b[i].qs + 32 * j;
      int s = 0;
      for (int l = 0; l < 32; ++l) {
        s += (((q[l] >> shift) & 0xF) + ((a[i].qh[l] >> j) & 1) * 16) * y[l];
      }
      sumi += sc * s;
      summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * sumi - b[i].d * fp16_to_fp32(a[i].dmin) * summ;
  }
  return sum;
}

float dot_iq4_xs(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockIQ4_XS*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      const uint8_t* qs = a[i].qs + 16 * j;
      const int8_t* y = b[i].qs + 32 * j;
      int s = 0;
      for (int l = 0; l < 16; ++l) {
        s += kIq4nlValues[qs[l] & 0xF] * y[l] + kIq4nlValues[qs[l] >> 4] * y[l + 16];
      }
      sumi += (iq4_xs_scale(a[i], j) - 32) * s;
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * sumi;
  }
  return sum;
}

void quantize_q8_0(const float* x, void* y, int64_t n) {
  quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), n);
}

void quantize_q8_K(const float* x, void* y, int64_t n) {
  quantize_row_q8_K_ref(x, static_cast<BlockQ8_K*>(y), n);
}

float dot_f32_f32(const float* a, const float* b, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void scale(float a, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
  // Accumulate in double: this is the reference the float SIMD sums are judged against.
  double sum_sq = 0;
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const float inv_rms = 1.0f / std::sqrt(static_cast<float>(sum_sq / n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv_rms * weight[i];
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// What a K or V element of each cache type is as a float (exact for every type).
struct F32Element {
  using Stored = float;
  static float value(float x) { return x; }
};
struct F16Element {
  using Stored = uint16_t;
  static float value(uint16_t x) { return fp16_to_fp32(x); }
};
struct BF16Element {
  using Stored = uint16_t;
  static float value(uint16_t x) { return bf16_to_fp32(x); }
};

template <typename E>
void attention_row(const float* q, const void* const* k_rows, const void* const* v_rows, int n_keys,
                   int head_dim, float scale, float* acc, float* row_max, float* row_sum) {
  using Stored = typename E::Stored;
  float scores[kMaxAttentionTileKeys];
  float tile_max = -INFINITY;
  for (int j = 0; j < n_keys; ++j) {
    const auto* k = static_cast<const Stored*>(k_rows[j]);
    float dot = 0;
    for (int i = 0; i < head_dim; ++i) dot += q[i] * E::value(k[i]);
    scores[j] = dot * scale;
    tile_max = std::max(tile_max, scores[j]);
  }
  const float new_max = std::max(*row_max, tile_max);
  if (new_max > *row_max && *row_sum > 0.0f) {
    const float correction = std::exp(*row_max - new_max);
    for (int i = 0; i < head_dim; ++i) acc[i] *= correction;
    *row_sum *= correction;
  }
  *row_max = new_max;
  for (int j = 0; j < n_keys; ++j) {
    const float d = scores[j] - new_max;
    if (d < -64.0f) continue;
    const float e = std::exp(d);
    *row_sum += e;
    const auto* v = static_cast<const Stored*>(v_rows[j]);
    for (int i = 0; i < head_dim; ++i) acc[i] += e * E::value(v[i]);
  }
}

template <typename E>
void attention_tile(const float* const* q_rows, const int* row_keys, int n_rows,
                    const void* const* k_rows, const void* const* v_rows, int /*n_keys*/,
                    int head_dim, float scale, float* acc, float* row_max, float* row_sum) {
  for (int r = 0; r < n_rows; ++r) {
    if (row_keys[r] == 0) continue;
    attention_row<E>(q_rows[r], k_rows, v_rows, row_keys[r], head_dim, scale,
                     acc + static_cast<int64_t>(r) * head_dim, &row_max[r], &row_sum[r]);
  }
}

}  // namespace

namespace detail {

void fill_scalar_kernels(CpuKernels& k) {
  k.name = "scalar";
  k.dot_f32 = dot_f32;
  k.dot_f16 = dot_f16;
  k.dot_bf16 = dot_bf16;
  k.dot_q4_0 = dot_q4_0;
  k.dot_q8_0 = dot_q8_0;
  k.dot_q4_K = dot_q4_K;
  k.dot_q6_K = dot_q6_K;
  k.dot_q4_1 = dot_q4_1;
  k.dot_q5_0 = dot_q5_0;
  k.dot_q5_1 = dot_q5_1;
  k.dot_iq4_nl = dot_iq4_nl;
  k.dot_q2_K = dot_q2_K;
  k.dot_q3_K = dot_q3_K;
  k.dot_q5_K = dot_q5_K;
  k.dot_iq4_xs = dot_iq4_xs;
  k.mat_dot_q4_0 = mat_dot<dot_q4_0>;
  k.mat_dot_q8_0 = mat_dot<dot_q8_0>;
  k.quantize_q8_0 = quantize_q8_0;
  k.quantize_q8_K = quantize_q8_K;
  k.dot_f32_f32 = dot_f32_f32;
  k.axpy = axpy;
  k.scale = scale;
  k.rms_norm = rms_norm;
  k.swiglu = swiglu;
  k.attention_tile_f32 = attention_tile<F32Element>;
  k.attention_tile_f16 = attention_tile<F16Element>;
  k.attention_tile_bf16 = attention_tile<BF16Element>;
}

}  // namespace detail

}  // namespace infergrid
