// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; reached only through
// detail::fill_avx2_kernels after the dispatcher checked the CPU).
//
// Quantized dots follow llama.cpp's scheme: maddubs (u8 x s8 -> pairs of i16) then madd
// (i16 -> i32), exact integer sums per block, one float FMA per block with the block's scale.
// maddubs saturates at i16, so every use below keeps |pair sum| < 2^15: weights are at most
// 63 (q6_K) or 15 (q4), or |128| (q8_0) against activations in [-127, 127], which the q8
// quantizers guarantee.
//
// Quantizers produce exactly the reference bytes (same float operations, same rounding rule).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "core/fp16.h"
#include "kernels/cpu_kernels.h"
#include "kernels/quant.h"

namespace infergrid {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

inline float half(uint16_t h) {
  return _cvtsh_ss(h);
}

inline __m256 abs_ps(__m256 v) {
  return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline __m256 load_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// Float dot with a widening load for w; four accumulators hide the FMA latency.
template <typename WordW, typename LoadW, typename ToF32>
inline float dot_float(int64_t n, const WordW* w, const float* x, LoadW load_w, ToF32 to_f32) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(load_w(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(load_w(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load_w(w + i + 16), _mm256_loadu_ps(x + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load_w(w + i + 24), _mm256_loadu_ps(x + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load_w(w + i), _mm256_loadu_ps(x + i), acc0);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; ++i) sum += to_f32(w[i]) * x[i];
  return sum;
}

float dot_f32(int64_t n, const void* w, const void* x) {
  return dot_float(
      n, static_cast<const float*>(w), static_cast<const float*>(x),
      [](const float* p) { return _mm256_loadu_ps(p); }, [](float v) { return v; });
}

float dot_f16(int64_t n, const void* w, const void* x) {
  return dot_float(
      n, static_cast<const uint16_t*>(w), static_cast<const float*>(x),
      [](const uint16_t* p) { return load_f16(p); }, [](uint16_t h) { return fp16_to_fp32(h); });
}

float dot_bf16(int64_t n, const void* w, const void* x) {
  return dot_float(
      n, static_cast<const uint16_t*>(w), static_cast<const float*>(x),
      [](const uint16_t* p) { return load_bf16(p); }, [](uint16_t h) { return bf16_to_fp32(h); });
}

// Sum of each 4 products of unsigned bytes u with signed bytes s, as 8 floats.
inline __m256i madd_u8_s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Q4_0 and Q8_0 dots are tiles of R weight rows x C activation rows (vec_dot is the 1x1 tile).
// Each output has its own accumulator and sees the same operations in the same order whatever
// the tile shape, which is what makes every tile bit-identical to vec_dot. Per block the
// weight unpacking is shared across C activations and the activation work across R rows; the
// R*C accumulators are independent FMA chains, so a 4x1 decode tile is not bound by FMA latency.
struct Q4_0Dot {
  using WeightBlock = BlockQ4_0;
  static constexpr bool kHasMin = false;
  struct Weights {
    __m256i q;  // codes 0..15 as bytes, in element order
  };
  struct Acts {
    __m256i y;
    __m256i y8;  // 8 . y in pairs: the code offset, subtracted once per (row, activation)
  };
  static Weights load_w(const BlockQ4_0& a) {
    // Both halves hold the 16 packed bytes; the high half is shifted so it yields the high
    // nibbles (elements 16..31).
    const __m256i raw =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.qs)));
    return {_mm256_and_si256(_mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 0, 4, 4)),
                             _mm256_set1_epi8(0x0F))};
  }
  static Acts load_x(const BlockQ8_0& b) {
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
    return {y, _mm256_maddubs_epi16(_mm256_set1_epi8(8), y)};
  }
  // (q - 8) . y = q . y - 8 . y, with both maddubs unsigned x signed.
  static __m256i dot(const Weights& w, const Acts& x) {
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(w.q, x.y), x.y8),
                             _mm256_set1_epi16(1));
  }
};

struct Q8_0Dot {
  using WeightBlock = BlockQ8_0;
  static constexpr bool kHasMin = false;
  struct Weights {
    __m256i q;
    __m256i abs_q;
  };
  struct Acts {
    __m256i y;
  };
  static Weights load_w(const BlockQ8_0& a) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs));
    return {q, _mm256_sign_epi8(q, q)};
  }
  static Acts load_x(const BlockQ8_0& b) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs))};
  }
  // Move w's sign onto y so maddubs sees |w| (unsigned; -128 reads as 128, still right) times
  // a signed value; y is never -128, so negating it cannot overflow.
  static __m256i dot(const Weights& w, const Acts& x) {
    return madd_u8_s8(w.abs_q, _mm256_sign_epi8(x.y, w.q));
  }
};

// The 32 low nibbles of a Q4_0-style block in element order (j low, j + 16 high).
inline __m256i unpack_nibbles_32(const uint8_t* qs) {
  const __m256i raw =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(raw, _mm256_setr_epi64x(0, 0, 4, 4)),
                          _mm256_set1_epi8(0x0F));
}

// Q5's fifth bits as 0x10 in byte j where bit j of the 32-bit word qh is set.
inline __m256i q5_high_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  // Byte j takes qh byte j / 8, then keeps bit j % 8.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                          _mm256_set1_epi8(0x10));
}

// Activations for the kinds whose codes are unsigned with an offset: y and offset . y in pairs.
template <int kOffset>
struct OffsetActs {
  __m256i y;
  __m256i y_offset;
  static OffsetActs load(const BlockQ8_0& b) {
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
    return {y, _mm256_maddubs_epi16(_mm256_set1_epi8(kOffset), y)};
  }
};

struct PlainActs {
  __m256i y;
  static PlainActs load(const BlockQ8_0& b) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs))};
  }
};

// Q4_1 and Q5_1: w = d q + m, so a block's dot is d dx (q . y) + m dx (sum y); the second term's
// sum is taken per lane (see dot_tile).
struct Q4_1Dot {
  using WeightBlock = BlockQ4_1;
  static constexpr bool kHasMin = true;
  struct Weights {
    __m256i q;
  };
  using Acts = PlainActs;
  static Weights load_w(const BlockQ4_1& a) { return {unpack_nibbles_32(a.qs)}; }
  static Acts load_x(const BlockQ8_0& b) { return Acts::load(b); }
  static __m256i dot(const Weights& w, const Acts& x) { return madd_u8_s8(w.q, x.y); }
};

struct Q5_1Dot {
  using WeightBlock = BlockQ5_1;
  static constexpr bool kHasMin = true;
  struct Weights {
    __m256i q;
  };
  using Acts = PlainActs;
  static Weights load_w(const BlockQ5_1& a) {
    return {_mm256_or_si256(unpack_nibbles_32(a.qs), q5_high_bits(a.qh))};
  }
  static Acts load_x(const BlockQ8_0& b) { return Acts::load(b); }
  static __m256i dot(const Weights& w, const Acts& x) { return madd_u8_s8(w.q, x.y); }
};

// (q - 16) . y = q . y - 16 . y; pairs stay within 2 * (31 + 16) * 127 < 2^15.
struct Q5_0Dot {
  using WeightBlock = BlockQ5_0;
  static constexpr bool kHasMin = false;
  struct Weights {
    __m256i q;
  };
  using Acts = OffsetActs<16>;
  static Weights load_w(const BlockQ5_0& a) {
    return {_mm256_or_si256(unpack_nibbles_32(a.qs), q5_high_bits(a.qh))};
  }
  static Acts load_x(const BlockQ8_0& b) { return Acts::load(b); }
  static __m256i dot(const Weights& w, const Acts& x) {
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(w.q, x.y), x.y_offset),
                             _mm256_set1_epi16(1));
  }
};

inline __m256i iq4_table() {
  return _mm256_broadcastsi128_si256(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
}

// Levels looked up by vpshufb; signed x signed through the sign trick (|level| <= 127).
struct IQ4_NLDot {
  using WeightBlock = BlockIQ4_NL;
  static constexpr bool kHasMin = false;
  struct Weights {
    __m256i v;
    __m256i abs_v;
  };
  using Acts = PlainActs;
  static Weights load_w(const BlockIQ4_NL& a) {
    const __m256i v = _mm256_shuffle_epi8(iq4_table(), unpack_nibbles_32(a.qs));
    return {v, _mm256_sign_epi8(v, v)};
  }
  static Acts load_x(const BlockQ8_0& b) { return Acts::load(b); }
  static __m256i dot(const Weights& w, const Acts& x) {
    return madd_u8_s8(w.abs_v, _mm256_sign_epi8(x.y, w.v));
  }
};

template <typename Kind, int R, int C>
inline void dot_tile(int64_t nb, const uint8_t* w, size_t w_row_bytes, const uint8_t* x,
                     size_t x_row_bytes, float* y, int64_t y_stride) {
  using WeightBlock = typename Kind::WeightBlock;
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    typename Kind::Weights wq[R];
    __m256 wd[R];
    [[maybe_unused]] __m256 wm[R];
    for (int r = 0; r < R; ++r) {
      const WeightBlock& a = reinterpret_cast<const WeightBlock*>(w + r * w_row_bytes)[i];
      // Rows are short (about 1-2 KiB), too short for the hardware prefetcher to train on R
      // interleaved streams; fetching the next tile's rows keeps the loads hitting.
      _mm_prefetch(reinterpret_cast<const char*>(&a) + R * w_row_bytes, _MM_HINT_T0);
      wq[r] = Kind::load_w(a);
      wd[r] = _mm256_set1_ps(half(a.d));
      if constexpr (Kind::kHasMin) wm[r] = _mm256_set1_ps(half(a.m));
    }
    for (int c = 0; c < C; ++c) {
      const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(x + c * x_row_bytes)[i];
      const typename Kind::Acts xq = Kind::load_x(b);
      const __m256 xd = _mm256_set1_ps(half(b.d));
      [[maybe_unused]] __m256 y_sums;
      if constexpr (Kind::kHasMin) {
        y_sums = _mm256_cvtepi32_ps(madd_u8_s8(_mm256_set1_epi8(1), xq.y));
      }
      for (int r = 0; r < R; ++r) {
        acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(wd[r], xd),
                                    _mm256_cvtepi32_ps(Kind::dot(wq[r], xq)), acc[r][c]);
        if constexpr (Kind::kHasMin) {
          acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(wm[r], xd), y_sums, acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) y[c * y_stride + r] = hsum(acc[r][c]);
}

// All activation rows against R weight rows: tiles of C = 4, then the remainder.
template <typename Kind, int R>
inline void dot_rows(int64_t nb, const uint8_t* w, size_t w_row_bytes, const uint8_t* x,
                     size_t x_row_bytes, int64_t n_x, float* y, int64_t y_stride) {
  int64_t c = 0;
  for (; c + 4 <= n_x; c += 4) {
    dot_tile<Kind, R, 4>(nb, w, w_row_bytes, x + c * x_row_bytes, x_row_bytes, y + c * y_stride,
                         y_stride);
  }
  const uint8_t* xc = x + c * x_row_bytes;
  float* yc = y + c * y_stride;
  switch (n_x - c) {
    case 3:
      dot_tile<Kind, R, 3>(nb, w, w_row_bytes, xc, x_row_bytes, yc, y_stride);
      break;
    case 2:
      dot_tile<Kind, R, 2>(nb, w, w_row_bytes, xc, x_row_bytes, yc, y_stride);
      break;
    case 1:
      dot_tile<Kind, R, 1>(nb, w, w_row_bytes, xc, x_row_bytes, yc, y_stride);
      break;
    default:
      break;
  }
}

template <typename Kind>
void mat_dot(int64_t n, const void* w_in, size_t w_row_bytes, int64_t n_w, const void* x_in,
             size_t x_row_bytes, int64_t n_x, float* y, int64_t y_stride) {
  const auto* w = static_cast<const uint8_t*>(w_in);
  const auto* x = static_cast<const uint8_t*>(x_in);
  const int64_t nb = n / kQK8_0;
  int64_t r = 0;
  if (n_x == 1) {
    // Decode: four rows in flight hide the FMA latency and share each activation block.
    for (; r + 4 <= n_w; r += 4) {
      dot_tile<Kind, 4, 1>(nb, w + r * w_row_bytes, w_row_bytes, x, x_row_bytes, y + r, y_stride);
    }
  } else {
    for (; r + 2 <= n_w; r += 2) {
      dot_rows<Kind, 2>(nb, w + r * w_row_bytes, w_row_bytes, x, x_row_bytes, n_x, y + r, y_stride);
    }
  }
  for (; r < n_w; ++r) {
    dot_rows<Kind, 1>(nb, w + r * w_row_bytes, w_row_bytes, x, x_row_bytes, n_x, y + r, y_stride);
  }
}

template <typename Kind>
float vec_dot(int64_t n, const void* w, const void* x) {
  // The 1x1 tile; its row stride only steers the prefetch, towards the row that follows in
  // memory (the next one a matrix-vector loop reads).
  const int64_t nb = n / kQK8_0;
  float y = 0;
  dot_tile<Kind, 1, 1>(nb, static_cast<const uint8_t*>(w),
                       static_cast<size_t>(nb) * sizeof(typename Kind::WeightBlock),
                       static_cast<const uint8_t*>(x), 0, &y, 0);
  return y;
}

// Unpacks Q4_K's 12 scale bytes into 8 scales then 8 mins, one byte each (the same mapping as
// get_scale_min_k4, done four bytes at a time).
inline void unpack_q4_K_scales(const uint8_t* packed, uint32_t out[4]) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t raw[3];
  std::memcpy(raw, packed, sizeof raw);
  out[0] = raw[0] & kLow6;                                            // scales 0..3
  out[1] = (raw[2] & kLow4) | (((raw[0] >> 6) & kLow2) << 4);         // scales 4..7
  out[2] = raw[1] & kLow6;                                            // mins 0..3
  out[3] = ((raw[2] >> 4) & kLow4) | (((raw[1] >> 6) & kLow2) << 4);  // mins 4..7
}

// Byte pattern that broadcasts 16-bit lane k of a 128-bit vector to all 16 lanes of a 256-bit
// vector (via vpshufb on the vector duplicated into both halves).
inline __m256i broadcast_i16_pattern(int k) {
  return _mm256_set1_epi16(static_cast<int16_t>((2 * k) | ((2 * k + 1) << 8)));
}

// Q4_K, and with kFifthBit Q5_K: the same layout plus a fifth bit per element from qh (bit 2g
// for the low sub-block of 64-group g, 2g + 1 for the high one); codes <= 31, so pairs stay
// below 2 * 31 * 127.
template <typename Block, bool kFifthBit>
float dot_k4(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const Block*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i pick[8] = {broadcast_i16_pattern(0), broadcast_i16_pattern(1),
                           broadcast_i16_pattern(2), broadcast_i16_pattern(3),
                           broadcast_i16_pattern(4), broadcast_i16_pattern(5),
                           broadcast_i16_pattern(6), broadcast_i16_pattern(7)};
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_m = _mm_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    uint32_t unpacked[4];
    unpack_q4_K_scales(a[i].scales, unpacked);
    const __m128i sc_m = _mm_loadu_si128(reinterpret_cast<const __m128i*>(unpacked));

    // Min term: sum_j m[j] * (sum of sub-block j's activations), from the Q8_K bsums.
    const __m128i mins = _mm_cvtepu8_epi16(_mm_srli_si128(sc_m, 8));
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].bsums));
    const __m128i sub_sums =
        _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
    const __m128i prod_m = _mm_madd_epi16(mins, sub_sums);
    acc_m = _mm_fmadd_ps(_mm_set1_ps(b[i].d * half(a[i].dmin)), _mm_cvtepi32_ps(prod_m), acc_m);

    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc_m));
    const uint8_t* q4 = a[i].qs;
    [[maybe_unused]] __m256i high;
    if constexpr (kFifthBit) high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qh));
    const int8_t* q8 = b[i].qs;
    __m256i sumi = _mm256_setzero_si256();
    for (int g = 0; g < kQK_K / 64; ++g) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q4 + 32 * g));
      __m256i lo = _mm256_and_si256(bits, m4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      if constexpr (kFifthBit) {
        // Masking each byte to one bit before the 16-bit shift keeps bits inside their byte.
        const __m256i one = _mm256_set1_epi8(1);
        lo = _mm256_or_si256(
            lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 2 * g), one), 4));
        hi = _mm256_or_si256(
            hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 2 * g + 1), one), 4));
      }
      const __m256i y_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * g));
      const __m256i y_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * g + 32));
      const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y_lo),
                                             _mm256_shuffle_epi8(scales, pick[2 * g]));
      const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y_hi),
                                             _mm256_shuffle_epi8(scales, pick[2 * g + 1]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * half(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
  acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
  return hsum(acc) - _mm_cvtss_f32(acc_m);
}

float dot_q6_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ6_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i m2 = _mm256_set1_epi8(3);
  // shuffle_k selects scale bytes 2k (x8) and 2k+1 (x8): the two 16-element sub-blocks a
  // 32-element group spans.
  const __m128i shuffle[4] = {_mm_set_epi8(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                              _mm_set_epi8(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
                              _mm_set_epi8(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4),
                              _mm_set_epi8(7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6)};
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m128i scales8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a[i].scales));
    // q - 32 is applied afterwards: sum_k sc[k] * 32 * bsum[k], subtracted from the total.
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].bsums));
    __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(scales8), bsums), 5);
    sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);

    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = a[i].ql + 64 * h;
      const int8_t* q8 = b[i].qs + 128 * h;
      const __m256i bits0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i bits1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i bits_h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qh + 32 * h));
      // Quarter k of this half: low 4 bits from ql (k even: low nibbles, k odd: ql + 32;
      // k >= 2: high nibbles), high 2 bits from qh bits 2k..2k+1.
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(bits0, m4),
                          _mm256_slli_epi16(_mm256_and_si256(bits_h, m2), 4)),
          _mm256_or_si256(_mm256_and_si256(bits1, m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bits_h, 2), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits0, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bits_h, 4), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bits_h, 6), m2), 4)),
      };
      const __m128i half_scales = h == 0 ? scales8 : _mm_srli_si128(scales8, 8);
      for (int k = 0; k < 4; ++k) {
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 32 * k));
        const __m128i sc_bytes = _mm_shuffle_epi8(half_scales, shuffle[k]);
        const __m256i p =
            _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], y), _mm256_cvtepi8_epi16(sc_bytes));
        sumi = _mm256_add_epi32(sumi, p);
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * half(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

// vpshufb patterns that put byte 2k of a vector in bytes 0..7 and byte 2k + 1 in bytes 8..15:
// the scales of the two 16-element sub-blocks a 32-element group spans.
inline __m128i pair_pattern(int k) {
  const char lo = static_cast<char>(2 * k), hi = static_cast<char>(2 * k + 1);
  return _mm_set_epi8(hi, hi, hi, hi, hi, hi, hi, hi, lo, lo, lo, lo, lo, lo, lo, lo);
}

// Q2_K and Q3_K share the 2-bit layout: a 32-byte load of qs[32 h ..] shifted by 2k holds
// elements 128 h + 32 k .. + 31 in order, sub-blocks 8h + 2k and 8h + 2k + 1.
float dot_q2_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ2_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  const __m256i m2 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  __m256 acc_m = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a[i].scales));
    const __m128i scales = _mm_and_si128(packed, m4);
    const __m128i mins = _mm_and_si128(_mm_srli_epi16(packed, 4), m4);
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].bsums));
    acc_m = _mm256_fmadd_ps(
        _mm256_set1_ps(b[i].d * half(a[i].dmin)),
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_cvtepu8_epi16(mins), bsums)), acc_m);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs + 32 * h));
      const __m128i half_scales = h == 0 ? scales : _mm_srli_si128(scales, 8);
      for (int k = 0; k < 4; ++k) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m2);
        const __m256i y =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 128 * h + 32 * k));
        const __m256i sc = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(half_scales, pair_pattern(k)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), sc));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * half(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc) - hsum(acc_m);
}

// Q3_K: codes q + 4 high (0..7) against y, then 4 . y subtracted per sub-block from the bsums:
// sum_j s_j sum (q3 - 4) y = sum_j s_j sum q3 y - 4 sum_j s_j bsum_j (the same integer).
float dot_q3_K(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockQ3_K*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  const __m256i m2 = _mm256_set1_epi8(3);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    // The sixteen six-bit scales, four bytes at a time (unpack_q3_K_scales), minus 32.
    constexpr uint32_t kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
    uint32_t raw[3], unpacked[4];
    std::memcpy(raw, a[i].scales, sizeof raw);
    unpacked[0] = (raw[0] & kLow4) | ((raw[2] & kLow2) << 4);
    unpacked[1] = (raw[1] & kLow4) | (((raw[2] >> 2) & kLow2) << 4);
    unpacked[2] = ((raw[0] >> 4) & kLow4) | (((raw[2] >> 4) & kLow2) << 4);
    unpacked[3] = ((raw[1] >> 4) & kLow4) | (((raw[2] >> 6) & kLow2) << 4);
    const __m128i scales = _mm_sub_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(unpacked)),
                                        _mm_set1_epi8(32));
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].bsums));
    __m256i sumi = _mm256_sub_epi32(
        _mm256_setzero_si256(),
        _mm256_slli_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), bsums), 2));
    const __m256i hmask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].hmask));
    for (int h = 0; h < 2; ++h) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i].qs + 32 * h));
      const __m128i half_scales = h == 0 ? scales : _mm_srli_si128(scales, 8);
      for (int k = 0; k < 4; ++k) {
        const __m256i high =
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hmask, 4 * h + k), one), 2);
        const __m256i q =
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m2), high);
        const __m256i y =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 128 * h + 32 * k));
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(half_scales, pair_pattern(k)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), sc));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * half(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

// IQ4_XS: per 32-element sub-block, looked-up levels (sign trick) times y, scaled by ls - 32 in
// the madd; pairs stay within 2 * 127 * 127 < 2^15.
float dot_iq4_xs(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const BlockIQ4_XS*>(w);
  const auto* b = static_cast<const BlockQ8_K*>(x);
  const __m256i table = iq4_table();
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < kQK_K / 32; ++j) {
      const __m256i v = _mm256_shuffle_epi8(table, unpack_nibbles_32(a[i].qs + 16 * j));
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * j));
      const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(y, v));
      const __m256i sc = _mm256_set1_epi16(static_cast<int16_t>(iq4_xs_scale(a[i], j) - 32));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pairs, sc));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * half(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

// 32 int32 values (four vectors in element order) -> 32 int8, saturating.
inline __m256i pack_i32_to_i8(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
  // The packs work per 128-bit lane; this restores element order.
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// roundf: half away from zero (the reference's rule for Q8_0), exact for every float.
inline __m256i round_half_away(__m256 v) {
  const __m256 sign = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN)));
  const __m256 mag = abs_ps(v);
  const __m256 whole = _mm256_round_ps(mag, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 up =
      _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(mag, whole), _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                    _mm256_set1_ps(1.0f));
  return _mm256_cvtps_epi32(_mm256_or_ps(_mm256_add_ps(whole, up), sign));
}

void quantize_q8_0(const float* x, void* y_out, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(y_out);
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + 8 * k);
    const __m256 amax_v = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
                                        _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
    const float d = hmax(amax_v) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    const __m256 idv = _mm256_set1_ps(id);
    const __m256i q = pack_i32_to_i8(
        round_half_away(_mm256_mul_ps(v[0], idv)), round_half_away(_mm256_mul_ps(v[1], idv)),
        round_half_away(_mm256_mul_ps(v[2], idv)), round_half_away(_mm256_mul_ps(v[3], idv)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), q);
  }
}

void quantize_q8_K(const float* x, void* y_out, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(y_out);
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ8_K& out = y[b];
    __m256 amax_v = _mm256_setzero_ps();
    for (int j = 0; j < kQK_K; j += 8)
      amax_v = _mm256_max_ps(amax_v, abs_ps(_mm256_loadu_ps(x + j)));
    const float amax = hmax(amax_v);
    if (!amax) {
      std::memset(&out, 0, sizeof out);
      continue;
    }
    // The reference takes the sign of the first element reaching amax.
    float max = 0;
    const __m256 amax_b = _mm256_set1_ps(amax);
    for (int j = 0; j < kQK_K; j += 8) {
      const int mask =
          _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), amax_b, _CMP_EQ_OQ));
      if (mask) {
        max = x[j + __builtin_ctz(static_cast<unsigned>(mask))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 is = _mm256_set1_ps(iscale);
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    for (int j = 0; j < kQK_K; j += 32) {
      __m256i v[4];
      for (int k = 0; k < 4; ++k) {
        v[k] = _mm256_cvtps_epi32(
            _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), is), kRound));
      }
      out.bsums[j / 16] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(v[0], v[1])));
      out.bsums[j / 16 + 1] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(v[2], v[3])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.qs + j),
                          pack_i32_to_i8(v[0], v[1], v[2], v[3]));
    }
    out.d = 1 / iscale;
  }
}

float dot_f32_f32(const float* a, const float* b, int64_t n) {
  return dot_f32(n, a, b);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

void scale_f32(float a, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(av, _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] *= a;
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
  const float sum_sq = dot_f32(n, x, x);
  const float inv_rms = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
  const __m256 iv = _mm256_set1_ps(inv_rms);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), iv),
                                          _mm256_loadu_ps(weight + i)));
  }
  for (; i < n; ++i) y[i] = x[i] * inv_rms * weight[i];
}

// exp(x) to about 2 ulp (Cephes expf: range reduction by ln2 in two parts, degree-5
// polynomial). Inputs are clamped so 2^k stays a normal float.
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3365447504019f)),
                    _mm256_set1_ps(88.3762626647949f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i pow2 =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(pow2));
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// K/V elements of each cache type, widened to f32 (exactly) eight or one at a time.
struct F32Elements {
  using Stored = float;
  static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static float at(const float* p, int i) { return p[i]; }
};
struct F16Elements {
  using Stored = uint16_t;
  static __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float at(const uint16_t* p, int i) { return _cvtsh_ss(p[i]); }
};
struct BF16Elements {
  using Stored = uint16_t;
  static __m256 load8(const uint16_t* p) {
    const __m256i wide =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float at(const uint16_t* p, int i) { return bf16_to_fp32(p[i]); }
};

// Scores of query rows qa and qb against four keys: sa[t] = dot(qa, k[t]), sb[t] = dot(qb, k[t]).
// Each score is the same sum whether its row is computed here or in scores_1x4: the FMA chain
// over the dims and the reduction tree (pairs, then pairs of pairs, then the two 128-bit halves)
// are lane-for-lane the same, and the tails are explicit FMAs (left to the compiler, a * b + c
// may be contracted in one function and not the other).
template <typename E>
inline void scores_2x4(const float* qa, const float* qb, const typename E::Stored* const* k,
                       int head_dim, float* sa, float* sb) {
  const int n8 = head_dim & ~7;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (int i = 0; i < n8; i += 8) {
    const __m256 qav = _mm256_loadu_ps(qa + i), qbv = _mm256_loadu_ps(qb + i);
    const __m256 k0 = E::load8(k[0] + i), k1 = E::load8(k[1] + i), k2 = E::load8(k[2] + i),
                 k3 = E::load8(k[3] + i);
    a0 = _mm256_fmadd_ps(qav, k0, a0);
    a1 = _mm256_fmadd_ps(qav, k1, a1);
    a2 = _mm256_fmadd_ps(qav, k2, a2);
    a3 = _mm256_fmadd_ps(qav, k3, a3);
    b0 = _mm256_fmadd_ps(qbv, k0, b0);
    b1 = _mm256_fmadd_ps(qbv, k1, b1);
    b2 = _mm256_fmadd_ps(qbv, k2, b2);
    b3 = _mm256_fmadd_ps(qbv, k3, b3);
  }
  const __m256 ha = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  const __m256 hb = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
  const __m256 sum =
      _mm256_add_ps(_mm256_permute2f128_ps(ha, hb, 0x20), _mm256_permute2f128_ps(ha, hb, 0x31));
  _mm_storeu_ps(sa, _mm256_castps256_ps128(sum));
  _mm_storeu_ps(sb, _mm256_extractf128_ps(sum, 1));
  for (int i = n8; i < head_dim; ++i) {
    for (int t = 0; t < 4; ++t) {
      const float kv = E::at(k[t], i);
      sa[t] = std::fma(qa[i], kv, sa[t]);
      sb[t] = std::fma(qb[i], kv, sb[t]);
    }
  }
}

template <typename E>
inline void scores_1x4(const float* q, const typename E::Stored* const* k, int head_dim, float* s) {
  const int n8 = head_dim & ~7;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int i = 0; i < n8; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
    a0 = _mm256_fmadd_ps(qv, E::load8(k[0] + i), a0);
    a1 = _mm256_fmadd_ps(qv, E::load8(k[1] + i), a1);
    a2 = _mm256_fmadd_ps(qv, E::load8(k[2] + i), a2);
    a3 = _mm256_fmadd_ps(qv, E::load8(k[3] + i), a3);
  }
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  for (int i = n8; i < head_dim; ++i) {
    for (int t = 0; t < 4; ++t) s[t] = std::fma(q[i], E::at(k[t], i), s[t]);
  }
}

// Turns one row's raw scores (n_keys8, a multiple of 8, of them; the row sees the first
// n_visible) into softmax weights in place, updating its running max and sum and rescaling its
// accumulator. Hidden keys become -inf before the max and exact zeros after, so n_keys8 (which
// depends on the tile, not on the row) changes no bit of the row's results: the extra lanes only
// add +0 to the sum.
inline void online_softmax_row(float* scores, int n_visible, int n_keys8, float scale, float* acc,
                               int head_dim, float* row_max, float* row_sum) {
  for (int j = n_visible; j < n_keys8; ++j) scores[j] = -INFINITY;
  const __m256 scale_v = _mm256_set1_ps(scale);
  __m256 max8 = _mm256_set1_ps(-INFINITY);
  for (int j = 0; j < n_keys8; j += 8) {
    const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(scores + j), scale_v);
    _mm256_storeu_ps(scores + j, s);
    max8 = _mm256_max_ps(max8, s);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, max8);
  float tile_max = -INFINITY;
  for (float lane : lanes) tile_max = std::max(tile_max, lane);
  const float new_max = std::max(*row_max, tile_max);
  if (new_max > *row_max && *row_sum > 0.0f) {
    const float correction = std::exp(*row_max - new_max);
    scale_f32(correction, acc, head_dim);
    *row_sum *= correction;
  }
  *row_max = new_max;
  // The sum is kept in eight lanes: a scalar running sum is one long chain of dependent adds.
  const __m256 max_v = _mm256_set1_ps(new_max);
  const __m256 floor_v = _mm256_set1_ps(-64.0f);
  __m256 sum8 = _mm256_setzero_ps();
  for (int j = 0; j < n_keys8; j += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(scores + j), max_v);
    const __m256 keep = _mm256_cmp_ps(d, floor_v, _CMP_GE_OQ);
    const __m256 w = _mm256_and_ps(exp_ps(d), keep);
    _mm256_storeu_ps(scores + j, w);
    sum8 = _mm256_add_ps(sum8, w);
  }
  *row_sum += hsum(sum8);
}

// acc_a += sum_{j < keys_a} wa[j] v_j and acc_b likewise. Both rows share each V load while
// both need it; every accumulator lane sees its own keys in ascending order in one FMA chain,
// so pairing rows (or not, acc_b == nullptr) changes none of their bits.
template <typename E>
inline void weighted_values_2(const float* wa, int keys_a, float* acc_a, const float* wb,
                              int keys_b, float* acc_b, const typename E::Stored* const* v_rows,
                              int head_dim) {
  const int shared = acc_b ? std::min(keys_a, keys_b) : 0;
  int i = 0;
  for (; i + 32 <= head_dim; i += 32) {
    __m256 a0 = _mm256_loadu_ps(acc_a + i), a1 = _mm256_loadu_ps(acc_a + i + 8),
           a2 = _mm256_loadu_ps(acc_a + i + 16), a3 = _mm256_loadu_ps(acc_a + i + 24);
    int j = 0;
    if (acc_b) {
      __m256 b0 = _mm256_loadu_ps(acc_b + i), b1 = _mm256_loadu_ps(acc_b + i + 8),
             b2 = _mm256_loadu_ps(acc_b + i + 16), b3 = _mm256_loadu_ps(acc_b + i + 24);
      for (; j < shared; ++j) {
        const auto* v = v_rows[j] + i;
        const __m256 v0 = E::load8(v), v1 = E::load8(v + 8), v2 = E::load8(v + 16),
                     v3 = E::load8(v + 24);
        const __m256 xa = _mm256_set1_ps(wa[j]), xb = _mm256_set1_ps(wb[j]);
        a0 = _mm256_fmadd_ps(xa, v0, a0);
        a1 = _mm256_fmadd_ps(xa, v1, a1);
        a2 = _mm256_fmadd_ps(xa, v2, a2);
        a3 = _mm256_fmadd_ps(xa, v3, a3);
        b0 = _mm256_fmadd_ps(xb, v0, b0);
        b1 = _mm256_fmadd_ps(xb, v1, b1);
        b2 = _mm256_fmadd_ps(xb, v2, b2);
        b3 = _mm256_fmadd_ps(xb, v3, b3);
      }
      for (int jb = j; jb < keys_b; ++jb) {
        const auto* v = v_rows[jb] + i;
        const __m256 xb = _mm256_set1_ps(wb[jb]);
        b0 = _mm256_fmadd_ps(xb, E::load8(v), b0);
        b1 = _mm256_fmadd_ps(xb, E::load8(v + 8), b1);
        b2 = _mm256_fmadd_ps(xb, E::load8(v + 16), b2);
        b3 = _mm256_fmadd_ps(xb, E::load8(v + 24), b3);
      }
      _mm256_storeu_ps(acc_b + i, b0);
      _mm256_storeu_ps(acc_b + i + 8, b1);
      _mm256_storeu_ps(acc_b + i + 16, b2);
      _mm256_storeu_ps(acc_b + i + 24, b3);
    }
    for (; j < keys_a; ++j) {
      const auto* v = v_rows[j] + i;
      const __m256 xa = _mm256_set1_ps(wa[j]);
      a0 = _mm256_fmadd_ps(xa, E::load8(v), a0);
      a1 = _mm256_fmadd_ps(xa, E::load8(v + 8), a1);
      a2 = _mm256_fmadd_ps(xa, E::load8(v + 16), a2);
      a3 = _mm256_fmadd_ps(xa, E::load8(v + 24), a3);
    }
    _mm256_storeu_ps(acc_a + i, a0);
    _mm256_storeu_ps(acc_a + i + 8, a1);
    _mm256_storeu_ps(acc_a + i + 16, a2);
    _mm256_storeu_ps(acc_a + i + 24, a3);
  }
  // Columns past the last multiple of 32: one row at a time, eight columns, then one.
  for (const auto& [w, keys, acc] :
       {std::tuple{wa, keys_a, acc_a}, std::tuple{wb, keys_b, acc_b}}) {
    if (!acc) continue;
    int c = i;
    for (; c + 8 <= head_dim; c += 8) {
      __m256 a = _mm256_loadu_ps(acc + c);
      for (int j = 0; j < keys; ++j) {
        a = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), E::load8(v_rows[j] + c), a);
      }
      _mm256_storeu_ps(acc + c, a);
    }
    for (; c < head_dim; ++c) {
      for (int j = 0; j < keys; ++j) acc[c] = std::fma(w[j], E::at(v_rows[j], c), acc[c]);
    }
  }
}

template <typename E>
void attention_tile(const float* const* q_rows, const int* row_keys, int n_rows,
                    const void* const* k_rows, const void* const* v_rows, int n_keys, int head_dim,
                    float scale, float* acc, float* row_max, float* row_sum) {
  using Stored = typename E::Stored;
  // Keys are scored four at a time; the last group is padded with the first key (its scores
  // are hidden like any key past a row's end).
  const int n_keys4 = (n_keys + 3) & ~3;
  const int n_keys8 = (n_keys + 7) & ~7;
  const Stored* keys[kMaxAttentionTileKeys];
  const Stored* values[kMaxAttentionTileKeys];
  for (int j = 0; j < n_keys4; ++j)
    keys[j] = static_cast<const Stored*>(k_rows[j < n_keys ? j : 0]);
  for (int j = 0; j < n_keys; ++j) values[j] = static_cast<const Stored*>(v_rows[j]);
  alignas(32) float wa[kMaxAttentionTileKeys], wb[kMaxAttentionTileKeys];
  int r = 0;
  // Rows two at a time (each K and V row loaded once for both); rows that see no key skipped.
  while (r < n_rows) {
    const int a = r++;
    if (row_keys[a] == 0) continue;
    while (r < n_rows && row_keys[r] == 0) ++r;
    const int b = r < n_rows ? r++ : -1;
    const int keys_a = row_keys[a], keys_b = b >= 0 ? row_keys[b] : 0;
    float* acc_a = acc + static_cast<int64_t>(a) * head_dim;
    float* acc_b = b >= 0 ? acc + static_cast<int64_t>(b) * head_dim : nullptr;
    const int scored = (std::max(keys_a, keys_b) + 3) & ~3;
    for (int j = 0; j < scored; j += 4) {
      if (b >= 0) {
        scores_2x4<E>(q_rows[a], q_rows[b], keys + j, head_dim, wa + j, wb + j);
      } else {
        scores_1x4<E>(q_rows[a], keys + j, head_dim, wa + j);
      }
    }
    online_softmax_row(wa, keys_a, n_keys8, scale, acc_a, head_dim, &row_max[a], &row_sum[a]);
    if (b >= 0) {
      online_softmax_row(wb, keys_b, n_keys8, scale, acc_b, head_dim, &row_max[b], &row_sum[b]);
    }
    weighted_values_2<E>(wa, keys_a, acc_a, wb, keys_b, acc_b, values, head_dim);
  }
}

}  // namespace

namespace detail {

void fill_avx2_kernels(CpuKernels& k) {
  k.name = "avx2";
  k.dot_f32 = dot_f32;
  k.dot_f16 = dot_f16;
  k.dot_bf16 = dot_bf16;
  k.dot_q4_0 = vec_dot<Q4_0Dot>;
  k.dot_q8_0 = vec_dot<Q8_0Dot>;
  k.mat_dot_q4_0 = mat_dot<Q4_0Dot>;
  k.mat_dot_q8_0 = mat_dot<Q8_0Dot>;
  k.dot_q4_K = dot_k4<BlockQ4_K, false>;
  k.dot_q6_K = dot_q6_K;
  k.dot_q4_1 = vec_dot<Q4_1Dot>;
  k.dot_q5_0 = vec_dot<Q5_0Dot>;
  k.dot_q5_1 = vec_dot<Q5_1Dot>;
  k.dot_iq4_nl = vec_dot<IQ4_NLDot>;
  k.mat_dot_q4_1 = mat_dot<Q4_1Dot>;
  k.mat_dot_q5_0 = mat_dot<Q5_0Dot>;
  k.mat_dot_q5_1 = mat_dot<Q5_1Dot>;
  k.mat_dot_iq4_nl = mat_dot<IQ4_NLDot>;
  k.dot_q5_K = dot_k4<BlockQ5_K, true>;
  k.dot_q2_K = dot_q2_K;
  k.dot_q3_K = dot_q3_K;
  k.dot_iq4_xs = dot_iq4_xs;
  k.quantize_q8_0 = quantize_q8_0;
  k.quantize_q8_K = quantize_q8_K;
  k.dot_f32_f32 = dot_f32_f32;
  k.axpy = axpy;
  k.scale = scale_f32;
  k.rms_norm = rms_norm;
  k.swiglu = swiglu;
  k.attention_tile_f32 = attention_tile<F32Elements>;
  k.attention_tile_f16 = attention_tile<F16Elements>;
  k.attention_tile_bf16 = attention_tile<BF16Elements>;
}

}  // namespace detail

}  // namespace infergrid
