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

// The element of largest magnitude (the first of equals) and that magnitude: the signed
// extreme ggml's symmetric quantizers scale against, so its side uses the full range.
struct SignedExtreme {
  float value = 0;
  float magnitude = 0;
};

SignedExtreme signed_extreme(const float* x, int64_t n) {
  SignedExtreme e;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > e.magnitude) {
      e.magnitude = std::fabs(x[i]);
      e.value = x[i];
    }
  }
  return e;
}

// Fits x[i] ~= scale * L[i] - the_min with L in [0, nmax], minimising the weighted squared
// (or, with use_abs_error, absolute) error over a small grid of candidate scales (ggml's
// make_qkx2_quants).
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                    float* the_min, uint8_t* l_aux, float rmin, float rdelta, int nstep,
                    bool use_abs_error = false) {
  auto error_of = [use_abs_error](float diff) {
    return use_abs_error ? std::fabs(diff) : diff * diff;
  };
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
    best_error += weights[i] * error_of(scale * L[i] + min - x[i]);
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
    for (int i = 0; i < n; ++i)
      error += weights[i] * error_of(this_scale * l_aux[i] + this_min - x[i]);
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
  const auto [max, amax] = signed_extreme(x, n);
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

// Q4_K/Q5_K: eight sub-block scales and mins as six-bit multiples of d and dmin, the largest
// at 63.
void pack_k_scales(const float* scales, const float* mins, float max_scale, float max_min,
                   uint8_t* packed, uint16_t* d, uint16_t* dmin) {
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  std::memset(packed, 0, kKScaleBytes);
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls =
        std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    // Inverse of get_scale_min_k4: sub-blocks 4..7 keep their low 4 bits in bytes 8..11 and
    // their top 2 bits in the spare high bits of bytes 0..7.
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  *d = fp32_to_fp16(max_scale / 63.0f);
  *dmin = fp32_to_fp16(max_min / 63.0f);
}

// Q4_K/Q5_K's levels for one 256-element block: per 32-element sub-block a fit of scale and
// min (weights: the sub-block's rms plus |x|), the scales stored as six-bit multiples of d and
// dmin, then every level requantized against the stored scales (not the fitted floats), in
// [0, nmax].
void fit_k_levels(const float* x, int nmax, float rmin, int nstep, uint8_t* L, uint8_t* packed,
                  uint16_t* d_out, uint16_t* dmin_out) {
  constexpr int kSub = 32;
  constexpr int kNumSub = kQK_K / kSub;
  uint8_t l_aux[kSub];
  float weights[kSub];
  float mins[kNumSub];
  float scales[kNumSub];
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
        fit_scale_min(kSub, nmax, xs, weights, L + kSub * j, &mins[j], l_aux, rmin, 0.1f, nstep);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  pack_k_scales(scales, mins, max_scale, max_min, packed, d_out, dmin_out);
  for (int j = 0; j < kNumSub; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, packed, &sc, &m);
    const float d = fp16_to_fp32(*d_out) * sc;
    if (!d) continue;
    const float dm = fp16_to_fp32(*dmin_out) * m;
    for (int l = 0; l < kSub; ++l) {
      L[kSub * j + l] =
          static_cast<uint8_t>(std::clamp(nearest_int((x[kSub * j + l] + dm) / d), 0, nmax));
    }
  }
}

// Symmetric 3-bit fit for Q3_K: L in [-nmax, nmax - 1] (returned offset by nmax), weights x^2,
// then up to five passes of moving single levels while that raises the fit's
// (sum w x l)^2 / sum w l^2 (ggml's make_q3_quants with do_rmse).
float fit_q3_levels(int n, int nmax, const float* x, int8_t* L) {
  const auto [max, amax] = signed_extreme(x, n);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  const float iscale = -nmax / max;
  float sum_lx = 0;
  float sum_l2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sum_lx += w * x[i] * l;
    sum_l2 += w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sum_lx - w * x[i] * L[i];
      if (slx <= 0) continue;
      float sl2 = sum_l2 - w * L[i] * L[i];
      const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (new_l == L[i]) continue;
      slx += w * x[i] * new_l;
      sl2 += w * new_l * new_l;
      if (sl2 > 0 && slx * slx * sum_l2 > sum_lx * sum_lx * sl2) {
        L[i] = static_cast<int8_t>(new_l);
        sum_lx = slx;
        sum_l2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return sum_lx / sum_l2;
}

// Index of the IQ4 level nearest to x (ties to the lower one), by bisection of the sorted table.
int nearest_iq4_level(float x) {
  const int8_t* v = kIq4nlValues;
  if (x <= v[0]) return 0;
  if (x >= v[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < v[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}

// The best scale for one 32-element IQ4 group: x ~= d * kIq4nlValues[L], weights x^2, trying
// 15 reciprocal scales around max / -127 (llama-quantize's iq4 search, ntry = 7). 0 for an
// all-zero group (L untouched).
float fit_iq4_group(const float* x, uint8_t* L) {
  constexpr int kTries = 7;
  const auto [max, amax] = signed_extreme(x, 32);
  if (amax < kGroupMaxEps) return 0.0f;
  float d = -max / kIq4nlValues[0];
  float id = 1 / d;
  float sum_qx = 0, sum_q2 = 0;
  for (int j = 0; j < 32; ++j) {
    const int l = nearest_iq4_level(id * x[j]);
    L[j] = static_cast<uint8_t>(l);
    const float q = kIq4nlValues[l];
    const float w = x[j] * x[j];
    sum_qx += w * q * x[j];
    sum_q2 += w * q * q;
  }
  d = sum_qx / sum_q2;
  float best = d * sum_qx;
  for (int t = -kTries; t <= kTries; ++t) {
    id = (t + kIq4nlValues[0]) / max;
    sum_qx = sum_q2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float q = kIq4nlValues[nearest_iq4_level(id * x[j])];
      const float w = x[j] * x[j];
      sum_qx += w * q * x[j];
      sum_q2 += w * q * q;
    }
    if (sum_q2 > 0 && sum_qx * sum_qx > best * sum_q2) {
      d = sum_qx / sum_q2;
      best = d * sum_qx;
    }
  }
  return d;
}

// Packs 32 levels (0..15) as Q4_0 does: element j low nibble, j + 16 high nibble.
void pack_nibbles_32(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

// Min/max fit for the 32-element types with an offset (Q4_1, Q5_1): levels
// (x - min) / d + 0.5, truncated, over 2^bits levels.
void fit_min_max_32(const float* x, int bits, float* d_out, float* min_out, uint8_t* L) {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const int top = (1 << bits) - 1;
  const float d = (max - min) / top;
  const float id = d ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) {
    // ggml truncates through int8_t (Q4_1) or uint8_t (Q5_1); both equal this for the
    // non-negative, at most top + 0.5 values that occur.
    L[j] = static_cast<uint8_t>(std::min(top, static_cast<int>((x[j] - min) * id + 0.5f)));
  }
  *d_out = d;
  *min_out = min;
}

// Q5's fifth bits: bit j of the word is bit 4 of level j.
void pack_q5_bits(const uint8_t* L, uint8_t* qh, uint8_t* qs) {
  uint32_t high = 0;
  for (int j = 0; j < 32; ++j) high |= static_cast<uint32_t>((L[j] >> 4) & 1) << j;
  std::memcpy(qh, &high, 4);
  for (int j = 0; j < 16; ++j)
    qs[j] = static_cast<uint8_t>((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
}

// Q2_K/Q3_K's 2-bit packing: byte l of quarter group h holds elements 128 h + 32 k + l.
void pack_2bit_256(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t* e = L + 128 * h + l;
      qs[32 * h + l] = static_cast<uint8_t>(e[0] | (e[32] << 2) | (e[64] << 4) | (e[96] << 6));
    }
  }
}

}  // namespace

// Q3_K's twelve scale bytes to sixteen six-bit scales (0..63, stored value + 32).
void unpack_q3_K_scales(const uint8_t* packed, uint8_t out[16]) {
  for (int j = 0; j < 16; ++j) {
    const uint8_t low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    out[j] = static_cast<uint8_t>(low | (((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4));
  }
}

void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n) {
  assert(n % kQK4_1 == 0);
  uint8_t L[32];
  for (int64_t b = 0; b < n / kQK4_1; ++b, x += kQK4_1) {
    float d, min;
    fit_min_max_32(x, 4, &d, &min, L);
    y[b].d = fp32_to_fp16(d);
    y[b].m = fp32_to_fp16(min);
    pack_nibbles_32(L, y[b].qs);
  }
}

void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n) {
  assert(n % kQK5_0 == 0);
  uint8_t L[32];
  for (int64_t b = 0; b < n / kQK5_0; ++b, x += kQK5_0) {
    const float max = signed_extreme(x, 32).value;
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < 32; ++j) {
      L[j] = static_cast<uint8_t>(
          std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f))));
    }
    pack_q5_bits(L, y[b].qh, y[b].qs);
  }
}

void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n) {
  assert(n % kQK5_1 == 0);
  uint8_t L[32];
  for (int64_t b = 0; b < n / kQK5_1; ++b, x += kQK5_1) {
    float d, min;
    fit_min_max_32(x, 5, &d, &min, L);
    y[b].d = fp32_to_fp16(d);
    y[b].m = fp32_to_fp16(min);
    pack_q5_bits(L, y[b].qh, y[b].qs);
  }
}

void quantize_row_iq4_nl_ref(const float* x, BlockIQ4_NL* y, int64_t n) {
  assert(n % kQK4_NL == 0);
  uint8_t L[32];
  for (int64_t b = 0; b < n / kQK4_NL; ++b, x += kQK4_NL) {
    const float d = fit_iq4_group(x, L);
    y[b].d = fp32_to_fp16(d);
    // Levels against the unrounded scale; an all-zero group gets the level nearest 0 (as
    // llama-quantize writes it), not level 0.
    const float id = d ? 1 / d : 0.0f;
    for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(nearest_iq4_level(id * x[j]));
    pack_nibbles_32(L, y[b].qs);
  }
}

void quantize_row_iq4_xs_ref(const float* x, BlockIQ4_XS* y, int64_t n) {
  assert(n % kQK_K == 0);
  uint8_t L[kQK_K];
  float scales[kQK_K / 32];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockIQ4_XS& out = y[b];
    std::memset(L, 0, sizeof L);
    float max_scale = 0, amax_scale = 0;
    for (int j = 0; j < kQK_K / 32; ++j) {
      scales[j] = fit_iq4_group(x + 32 * j, L + 32 * j);
      if (std::fabs(scales[j]) > amax_scale) {
        amax_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    // Sub-block scales as six-bit multiples of d, the extreme one at -32.
    const float d = -max_scale / 32;
    out.d = fp32_to_fp16(d);
    out.scales_h = 0;
    const float id = d ? 1 / d : 0.0f;
    for (int j = 0; j < kQK_K / 32; ++j) {
      const int l = std::clamp(nearest_int(id * scales[j]), -32, 31);
      const float dl = d * l;
      const float idl = dl ? 1 / dl : 0.0f;
      for (int e = 0; e < 32; ++e) {
        L[32 * j + e] = static_cast<uint8_t>(nearest_iq4_level(idl * x[32 * j + e]));
      }
      const int stored = l + 32;
      if (j % 2 == 0) {
        out.scales_l[j / 2] = static_cast<uint8_t>(stored & 0xF);
      } else {
        out.scales_l[j / 2] |= static_cast<uint8_t>((stored & 0xF) << 4);
      }
      out.scales_h |= static_cast<uint16_t>((stored >> 4) << (2 * j));
    }
    for (int j = 0; j < kQK_K / 32; ++j) pack_nibbles_32(L + 32 * j, out.qs + 16 * j);
  }
}

void quantize_row_q2_K_ref(const float* x, BlockQ2_K* y, int64_t n) {
  assert(n % kQK_K == 0);
  constexpr float kScaleLevels = 15.0f;
  uint8_t L[kQK_K];
  uint8_t l_aux[16];
  float weights[16];
  float mins[16];
  float scales[16];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ2_K& out = y[b];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = fit_scale_min(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], l_aux, -0.5f,
                                0.1f, 15, /*use_abs_error=*/true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    if (max_scale > 0) {
      const float iscale = kScaleLevels / max_scale;
      for (int j = 0; j < 16; ++j)
        out.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      out.d = fp32_to_fp16(max_scale / kScaleLevels);
    } else {
      std::memset(out.scales, 0, sizeof out.scales);
      out.d = fp32_to_fp16(0.0f);
    }
    if (max_min > 0) {
      const float iscale = kScaleLevels / max_min;
      for (int j = 0; j < 16; ++j) {
        out.scales[j] = static_cast<uint8_t>(out.scales[j] | (nearest_int(iscale * mins[j]) << 4));
      }
      out.dmin = fp32_to_fp16(max_min / kScaleLevels);
    } else {
      out.dmin = fp32_to_fp16(0.0f);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(out.d) * (out.scales[j] & 0xF);
      if (!d) continue;
      const float dm = fp16_to_fp32(out.dmin) * (out.scales[j] >> 4);
      for (int l = 0; l < 16; ++l) {
        L[16 * j + l] =
            static_cast<uint8_t>(std::clamp(nearest_int((x[16 * j + l] + dm) / d), 0, 3));
      }
    }
    pack_2bit_256(L, out.qs);
  }
}

void quantize_row_q3_K_ref(const float* x, BlockQ3_K* y, int64_t n) {
  assert(n % kQK_K == 0);
  int8_t L[kQK_K];
  float scales[16];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ3_K& out = y[b];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_q3_levels(16, 4, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(out.scales, 0, sizeof out.scales);
    if (max_scale != 0) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int l =
            std::clamp(static_cast<int>(static_cast<int8_t>(nearest_int(iscale * scales[j]))), -32,
                       31) +
            32;
        if (j < 8) {
          out.scales[j] = static_cast<uint8_t>(l & 0xF);
        } else {
          out.scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
        }
        out.scales[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      out.d = fp32_to_fp16(1 / iscale);
    } else {
      out.d = fp32_to_fp16(0.0f);
    }
    uint8_t sc[16];
    unpack_q3_K_scales(out.scales, sc);
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(out.d) * (sc[j] - 32);
      if (!d) continue;
      for (int l = 0; l < 16; ++l) {
        L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / d), -4, 3) + 4);
      }
    }
    std::memset(out.hmask, 0, sizeof out.hmask);
    uint8_t levels[kQK_K];
    for (int e = 0; e < kQK_K; ++e) {
      int l = L[e];
      if (l > 3) {
        out.hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
        l -= 4;
      }
      levels[e] = static_cast<uint8_t>(l);
    }
    pack_2bit_256(levels, out.qs);
  }
}

void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t n) {
  assert(n % kQK_K == 0);
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ5_K& out = y[b];
    fit_k_levels(x, 31, -0.5f, 15, L, out.scales, &out.d, &out.dmin);
    std::memset(out.qh, 0, sizeof out.qh);
    for (int g = 0; g < kQK_K / 64; ++g) {
      for (int l = 0; l < 32; ++l) {
        uint8_t lo = L[64 * g + l], hi = L[64 * g + 32 + l];
        if (lo > 15) {
          lo -= 16;
          out.qh[l] |= static_cast<uint8_t>(1 << (2 * g));
        }
        if (hi > 15) {
          hi -= 16;
          out.qh[l] |= static_cast<uint8_t>(2 << (2 * g));
        }
        out.qs[32 * g + l] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
}

void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n) {
  assert(n % kQK4_0 == 0);
  for (int64_t b = 0; b < n / kQK4_0; ++b, x += kQK4_0) {
    // The signed extreme maps to -8 so the full range [-8, 7] is used on its side.
    const float max = signed_extreme(x, kQK4_0).value;
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
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ4_K& out = y[b];
    fit_k_levels(x, 15, -1.0f, 20, L, out.scales, &out.d, &out.dmin);
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
    const auto [max, amax] = signed_extreme(x, kQK_K);
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

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n) {
  assert(n % kQK4_1 == 0);
  for (int64_t b = 0; b < n / kQK4_1; ++b, y += kQK4_1) {
    const float d = fp16_to_fp32(x[b].d), m = fp16_to_fp32(x[b].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = (x[b].qs[j] & 0xF) * d + m;
      y[j + 16] = (x[b].qs[j] >> 4) * d + m;
    }
  }
}

// Level j (0..31) of a Q5 block.
inline int q5_level(const uint8_t* qh, const uint8_t* qs, int j) {
  uint32_t high;
  std::memcpy(&high, qh, 4);
  const int low = j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
  return low | static_cast<int>(((high >> j) & 1) << 4);
}

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n) {
  assert(n % kQK5_0 == 0);
  for (int64_t b = 0; b < n / kQK5_0; ++b, y += kQK5_0) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < 32; ++j) y[j] = (q5_level(x[b].qh, x[b].qs, j) - 16) * d;
  }
}

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n) {
  assert(n % kQK5_1 == 0);
  for (int64_t b = 0; b < n / kQK5_1; ++b, y += kQK5_1) {
    const float d = fp16_to_fp32(x[b].d), m = fp16_to_fp32(x[b].m);
    for (int j = 0; j < 32; ++j) y[j] = q5_level(x[b].qh, x[b].qs, j) * d + m;
  }
}

void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t n) {
  assert(n % kQK4_NL == 0);
  for (int64_t b = 0; b < n / kQK4_NL; ++b, y += kQK4_NL) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * kIq4nlValues[x[b].qs[j] & 0xF];
      y[j + 16] = d * kIq4nlValues[x[b].qs[j] >> 4];
    }
  }
}

void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t n) {
  assert(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < kQK_K / 32; ++j, y += 32) {
      const float dl = d * (iq4_xs_scale(x[b], j) - 32);
      const uint8_t* qs = x[b].qs + 16 * j;
      for (int l = 0; l < 16; ++l) {
        y[l] = dl * kIq4nlValues[qs[l] & 0xF];
        y[l + 16] = dl * kIq4nlValues[qs[l] >> 4];
      }
    }
  }
}

void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t n) {
  assert(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
    for (int e = 0; e < kQK_K; ++e) {
      const uint8_t sc = x[b].scales[e / 16];
      y[e] = d * (sc & 0xF) * q2_K_level(x[b].qs, e) - dmin * (sc >> 4);
    }
  }
}

void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t n) {
  assert(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b, y += kQK_K) {
    const float d = fp16_to_fp32(x[b].d);
    uint8_t sc[16];
    unpack_q3_K_scales(x[b].scales, sc);
    for (int e = 0; e < kQK_K; ++e) {
      const int high = (x[b].hmask[e % 32] >> (e / 32)) & 1;
      y[e] = d * (sc[e / 16] - 32) * (q2_K_level(x[b].qs, e) - (high ? 0 : 4));
    }
  }
}

void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t n) {
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
      for (int l = 0; l < 32; ++l) {
        *y++ = d_lo * ((q[l] & 0xF) + ((x[b].qh[l] >> (2 * g)) & 1) * 16) - m_lo;
      }
      for (int l = 0; l < 32; ++l) {
        *y++ = d_hi * ((q[l] >> 4) + ((x[b].qh[l] >> (2 * g + 1)) & 1) * 16) - m_hi;
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
    case TensorType::kQ4_1:
      quantize_row_q4_1_ref(x, static_cast<BlockQ4_1*>(y), n);
      return;
    case TensorType::kQ5_0:
      quantize_row_q5_0_ref(x, static_cast<BlockQ5_0*>(y), n);
      return;
    case TensorType::kQ5_1:
      quantize_row_q5_1_ref(x, static_cast<BlockQ5_1*>(y), n);
      return;
    case TensorType::kIQ4_NL:
      quantize_row_iq4_nl_ref(x, static_cast<BlockIQ4_NL*>(y), n);
      return;
    case TensorType::kQ2_K:
      quantize_row_q2_K_ref(x, static_cast<BlockQ2_K*>(y), n);
      return;
    case TensorType::kQ3_K:
      quantize_row_q3_K_ref(x, static_cast<BlockQ3_K*>(y), n);
      return;
    case TensorType::kQ5_K:
      quantize_row_q5_K_ref(x, static_cast<BlockQ5_K*>(y), n);
      return;
    case TensorType::kIQ4_XS:
      quantize_row_iq4_xs_ref(x, static_cast<BlockIQ4_XS*>(y), n);
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
    case TensorType::kQ4_1:
      dequantize_row_q4_1(static_cast<const BlockQ4_1*>(x), y, n);
      return;
    case TensorType::kQ5_0:
      dequantize_row_q5_0(static_cast<const BlockQ5_0*>(x), y, n);
      return;
    case TensorType::kQ5_1:
      dequantize_row_q5_1(static_cast<const BlockQ5_1*>(x), y, n);
      return;
    case TensorType::kIQ4_NL:
      dequantize_row_iq4_nl(static_cast<const BlockIQ4_NL*>(x), y, n);
      return;
    case TensorType::kQ2_K:
      dequantize_row_q2_K(static_cast<const BlockQ2_K*>(x), y, n);
      return;
    case TensorType::kQ3_K:
      dequantize_row_q3_K(static_cast<const BlockQ3_K*>(x), y, n);
      return;
    case TensorType::kQ5_K:
      dequantize_row_q5_K(static_cast<const BlockQ5_K*>(x), y, n);
      return;
    case TensorType::kIQ4_XS:
      dequantize_row_iq4_xs(static_cast<const BlockIQ4_XS*>(x), y, n);
      return;
  }
  assert(false && "dequantize_row: unsupported tensor type");
}

}  // namespace infergrid
