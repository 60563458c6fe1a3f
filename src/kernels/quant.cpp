// Reference quantizers and dequantizers, bit-compatible with ggml's formats and reference
// algorithms (quantize_row_*_ref in ggml-quants.c): a model written here quantizes to the same
// bytes llama.cpp would produce from the same floats, and real GGUF tensors decode exactly.
//
// Invariants: every function walks whole blocks (n is a multiple of the block size); rounding
// helpers reproduce ggml's exactly (roundf for Q8_0, round-half-even nearest_int elsewhere),
// because a different tie rule changes stored bytes.
#include "kernels/quant.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "core/fp16.h"

namespace infergrid {

namespace {

// Groups whose largest magnitude is below this are treated as all zero (ggml's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, for |x| < 2^22 (ggml's nearest_int): adding 1.5 * 2^23 puts
// the integer part in the low mantissa bits.
inline int nearest_int(float x) {
  assert(std::fabs(x) <= 4194303.0f);
  const float shifted = x + 12582912.0f;
  return static_cast<int>(fp32_to_bits(shifted) & 0x007fffffu) - 0x00400000;
}

// Fits x[i] ~= scale * L[i] - the_min with L in [0, nmax], minimising the weighted squared
// error over a small grid of candidate scales (ggml's make_qkx2_quants with use_mad = false).
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                    float* the_min, uint8_t* l_aux, float rmin, float rdelta, int nstep) {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;  // the offset only ever shifts up, so positive groups start at 0
  if (max == min) {
    std::fill(L, L + n, 0);
    *the_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
    L[i] = static_cast<uint8_t>(l);
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * diff * diff;
  }
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      l_aux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    // Weighted least squares for (scale, min) given these levels.
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * l_aux[i] + this_min - x[i];
      error += weights[i] * diff * diff;
    }
    if (error < best_error) {
      std::copy(l_aux, l_aux + n, L);
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  *the_min = -min;
  return scale;
}

// Symmetric fit x[i] ~= scale * (L[i] - nmax), L in [0, 2 nmax - 1], weights x^2, searching
// scales around nmax / max (ggml's make_qx_quants with rmse_type = 1, no importance weights).
float fit_symmetric_scale(int n, int nmax, const float* x, int8_t* L) {
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  auto level = [nmax](float v) { return std::clamp(nearest_int(v), -nmax, nmax - 1); };
  float iscale = -nmax / max;
  float sum_lx = 0;
  float sum_l2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = level(iscale * x[i]);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sum_lx += w * x[i] * l;
    sum_l2 += w * l * l;
  }
  float scale = sum_l2 ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    iscale = -(nmax + 0.1f * step) / max;
    sum_lx = sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = level(iscale * x[i]);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * l;
      sum_l2 += w * l * l;
    }
    if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + level(iscale * x[i]));
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}

}  // namespace

void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n) {
  assert(n % kQK4_0 == 0);
  for (int64_t b = 0; b < n / kQK4_0; ++b, x += kQK4_0) {
    // The signed extreme maps to -8 so the full range [-8, 7] is used on its side.
    float amax = 0, max = 0;
    for (int j = 0; j < kQK4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      // ggml truncates (x + 8.5) through int8_t: round half up, then clamp the top.
      const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int hi =
          std::min(15, static_cast<int>(static_cast<int8_t>(x[j + kQK4_0 / 2] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  assert(n % kQK8_0 == 0);
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    float amax = 0;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n) {
  assert(n % kQK_K == 0);
  constexpr int kSub = 32;
  constexpr int kNumSub = kQK_K / kSub;
  uint8_t L[kQK_K];
  uint8_t l_aux[kSub];
  float weights[kSub];
  float mins[kNumSub];
  float scales[kNumSub];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ4_K& out = y[b];
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kNumSub; ++j) {
      const float* xs = x + kSub * j;
      float sum_x2 = 0;
      for (int l = 0; l < kSub; ++l) sum_x2 += xs[l] * xs[l];
      // Weight errors by magnitude, with the group's rms as a floor so small values count.
      const float av_x = std::sqrt(sum_x2 / kSub);
      for (int l = 0; l < kSub; ++l) weights[l] = av_x + std::fabs(xs[l]);
      scales[j] =
          fit_scale_min(kSub, 15, xs, weights, L + kSub * j, &mins[j], l_aux, -1.0f, 0.1f, 20);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    std::memset(out.scales, 0, sizeof out.scales);
    for (int j = 0; j < kNumSub; ++j) {
      const uint8_t ls =
          std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
      const uint8_t lm =
          std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
      // Inverse of get_scale_min_k4: sub-blocks 4..7 keep their low 4 bits in bytes 8..11 and
      // their top 2 bits in the spare high bits of bytes 0..7.
      if (j < 4) {
        out.scales[j] = ls;
        out.scales[j + 4] = lm;
      } else {
        out.scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        out.scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        out.scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
      }
    }
    out.d = fp32_to_fp16(max_scale / 63.0f);
    out.dmin = fp32_to_fp16(max_min / 63.0f);
    // Requantize against the scales actually stored (6-bit, fp16), not the fitted floats.
    for (int j = 0; j < kNumSub; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, out.scales, &sc, &m);
      const float d = fp16_to_fp32(out.d) * sc;
      if (!d) continue;
      const float dm = fp16_to_fp32(out.dmin) * m;
      for (int l = 0; l < kSub; ++l) {
        L[kSub * j + l] =
            static_cast<uint8_t>(std::clamp(nearest_int((x[kSub * j + l] + dm) / d), 0, 15));
      }
    }
    for (int g = 0; g < kQK_K / 64; ++g) {
      for (int l = 0; l < 32; ++l) {
        out.qs[32 * g + l] = static_cast<uint8_t>(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
      }
    }
  }
}

void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n) {
  assert(n % kQK_K == 0);
  constexpr int kSub = 16;
  constexpr int kNumSub = kQK_K / kSub;
  int8_t L[kQK_K];
  float scales[kNumSub];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ6_K& out = y[b];
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int j = 0; j < kNumSub; ++j) {
      scales[j] = fit_symmetric_scale(kSub, 32, x + kSub * j, L + kSub * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&out, 0, sizeof out);
      continue;
    }
    // Signed: the largest-magnitude scale maps to -128 so int8 scales use their full range.
    const float iscale = -128.0f / max_scale;
    out.d = fp32_to_fp16(1 / iscale);
    for (int j = 0; j < kNumSub; ++j) {
      out.scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    }
    for (int j = 0; j < kNumSub; ++j) {
      const float d = fp16_to_fp32(out.d) * out.scales[j];
      if (!d) continue;
      for (int l = 0; l < kSub; ++l) {
        L[kSub * j + l] =
            static_cast<int8_t>(std::clamp(nearest_int(x[kSub * j + l] / d), -32, 31) + 32);
      }
    }
    for (int h = 0; h < 2; ++h) {  // two halves of 128: ql 64 bytes, qh 32 bytes each
      uint8_t* ql = out.ql + 64 * h;
      uint8_t* qh = out.qh + 32 * h;
      const int8_t* lh = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((lh[l] & 0xF) | ((lh[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((lh[l + 32] & 0xF) | ((lh[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((lh[l] >> 4) | ((lh[l + 32] >> 4) << 2) |
                                     ((lh[l + 64] >> 4) << 4) | ((lh[l + 96] >> 4) << 6));
      }
    }
  }
}

void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n) {
  assert(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ8_K& out = y[b];
    float max = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (!amax) {
      std::memset(&out, 0, sizeof out);
      continue;
    }
    // -127 (not -128) keeps every product symmetric, which the SIMD dot products rely on.
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
      out.qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += out.qs[16 * j + l];
      out.bsums[j] = static_cast<int16_t>(sum);
    }
    out.d = 1 / iscale;
  }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
  assert(n % kQK4_0 == 0);
  for (int64_t b = 0; b < n / kQK4_0; ++b, y += kQK4_0) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[j] = ((x[b].qs[j] & 0xF) - 8) * d;
      y[j + kQK4_0 / 2] = ((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) {
  assert(n % kQK8_0 == 0);
  for (int64_t b = 0; b < n / kQK8_0; ++b, y += kQK8_0) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = x[b].qs[j] * d;
  }
}

void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t n) {
  assert(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    const float dmin = fp16_to_fp32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    for (int g = 0; g < kQK_K / 64; ++g, q += 32) {
      uint8_t sc, m;
      get_scale_min_k4(2 * g, x[b].scales, &sc, &m);
      const float d_lo = d * sc, m_lo = dmin * m;
      get_scale_min_k4(2 * g + 1, x[b].scales, &sc, &m);
      const float d_hi = d * sc, m_hi = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d_lo * (q[l] & 0xF) - m_lo;
      for (int l = 0; l < 32; ++l) *y++ = d_hi * (q[l] >> 4) - m_hi;
    }
  }
}

void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t n) {
  assert(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (int h = 0; h < 2; ++h, y += 128) {
      const uint8_t* ql = x[b].ql + 64 * h;
      const uint8_t* qh = x[b].qh + 32 * h;
      const int8_t* sc = x[b].scales + 8 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t n) {
  assert(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    for (int j = 0; j < kQK_K; ++j) y[j] = x[b].d * x[b].qs[j];
  }
}

void quantize_row(TensorType type, const float* x, void* y, int64_t n) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16: {
      auto* out = static_cast<uint16_t*>(y);
      for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(x[i]);
      return;
    }
    case TensorType::kBF16: {
      auto* out = static_cast<uint16_t*>(y);
      for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(x[i]);
      return;
    }
    case TensorType::kQ4_0:
      quantize_row_q4_0_ref(x, static_cast<BlockQ4_0*>(y), n);
      return;
    case TensorType::kQ8_0:
      quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), n);
      return;
    case TensorType::kQ4_K:
      quantize_row_q4_K_ref(x, static_cast<BlockQ4_K*>(y), n);
      return;
    case TensorType::kQ6_K:
      quantize_row_q6_K_ref(x, static_cast<BlockQ6_K*>(y), n);
      return;
    case TensorType::kQ8_K:
      quantize_row_q8_K_ref(x, static_cast<BlockQ8_K*>(y), n);
      return;
  }
  assert(false && "quantize_row: unsupported tensor type");
}

void dequantize_row(TensorType type, const void* x, float* y, int64_t n) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16: {
      const auto* in = static_cast<const uint16_t*>(x);
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(in[i]);
      return;
    }
    case TensorType::kBF16: {
      const auto* in = static_cast<const uint16_t*>(x);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(in[i]);
      return;
    }
    case TensorType::kQ4_0:
      dequantize_row_q4_0(static_cast<const BlockQ4_0*>(x), y, n);
      return;
    case TensorType::kQ8_0:
      dequantize_row_q8_0(static_cast<const BlockQ8_0*>(x), y, n);
      return;
    case TensorType::kQ4_K:
      dequantize_row_q4_K(static_cast<const BlockQ4_K*>(x), y, n);
      return;
    case TensorType::kQ6_K:
      dequantize_row_q6_K(static_cast<const BlockQ6_K*>(x), y, n);
      return;
    case TensorType::kQ8_K:
      dequantize_row_q8_K(static_cast<const BlockQ8_K*>(x), y, n);
      return;
  }
  assert(false && "dequantize_row: unsupported tensor type");
}

}  // namespace infergrid
