// Integer GEMM for Q4_0 and Q8_0 weights on AVX-512 VNNI, over the row-group layout of
// cpu_kernels.h (PackedLayout::kRowGroup16), and the plain-row dots that give the same bits.
//
// Packed group, per block b of 32 columns (Q4_0: 288 bytes, Q8_0: 544 bytes, the same as the
// 16 plain blocks they replace):
//   16 x fp16 row scales, then chunks of 64 bytes: chunk j holds bytes 4j..4j+3 of each row's
//   quants (row r at 4r). Q4_0 keeps its nibble packing (low nibbles: columns 4j..4j+3, high
//   nibbles: 16+4j..16+4j+3), so 4 chunks; Q8_0 stores w + 128 as an unsigned byte, 8 chunks.
// vpdpbusd multiplies unsigned weight bytes by four signed activation bytes broadcast to every
// lane, so lane r accumulates row r; the code offsets (8 for Q4_0, 128 for Q8_0) come out as
// offset * (sum of the block's activations), which starts the accumulator instead of being
// subtracted at the end. Products are at most 4 * 255 * 127 per vpdpbusd, far from overflow.
//
// Per output (row, activation), the arithmetic is fixed: for each block in order,
//   acc = fma(d_w * d_x, float(exact block integer), acc), from acc = 0,
// which the plain-row dots below reproduce exactly, so a matrix gives the same bits packed or
// plain, in a tile of any shape, batched or alone.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cmath>
#include <cstring>

#include "kernels/cpu_kernels.h"
#include "kernels/quant.h"

namespace infergrid {

namespace {

constexpr int64_t kRows = kPackedRowGroup;
constexpr size_t kScaleBytes = kRows * sizeof(uint16_t);

struct Q4_0Packing {
  static constexpr int kChunks = 4;
  static constexpr int32_t kOffset = 8;
  using Block = BlockQ4_0;
  static constexpr uint32_t kFlip = 0;
};

struct Q8_0Packing {
  static constexpr int kChunks = 8;
  static constexpr int32_t kOffset = 128;
  using Block = BlockQ8_0;
  static constexpr uint32_t kFlip = 0x80808080;  // w + 128 for signed w, per byte
};

template <typename P>
constexpr size_t block_bytes() {
  return kScaleBytes + static_cast<size_t>(P::kChunks) * 64;
}

template <typename P>
size_t group_bytes(int64_t n) {
  return static_cast<size_t>(n / kQK8_0) * block_bytes<P>();
}

template <typename P>
void pack_group(int64_t n, const uint8_t* rows, size_t row_bytes, uint8_t* out) {
  const int64_t nb = n / kQK8_0;
  for (int64_t b = 0; b < nb; ++b, out += block_bytes<P>()) {
    for (int64_t r = 0; r < kRows; ++r) {
      const auto& block = reinterpret_cast<const typename P::Block*>(rows + r * row_bytes)[b];
      std::memcpy(out + 2 * r, &block.d, 2);
      for (int j = 0; j < P::kChunks; ++j) {
        uint32_t four;
        std::memcpy(&four, reinterpret_cast<const uint8_t*>(block.qs) + 4 * j, 4);
        four ^= P::kFlip;
        std::memcpy(out + kScaleBytes + 64 * j + 4 * r, &four, 4);
      }
    }
  }
}

inline float half(uint16_t h) {
  return _cvtsh_ss(h);
}

inline __m512i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Activation column byte offset of chunk j's four values: Q4_0 low nibbles cover columns
// 4j.., high nibbles 16 + 4j..; Q8_0 chunk j covers 4j...
template <typename P, int C>
inline void block_q4_0(const uint8_t* blk, const BlockQ8_0* const* x, int64_t b, __m512i* acc) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int j = 0; j < 4; ++j) {
    const __m512i raw = _mm512_loadu_si512(blk + kScaleBytes + 64 * j);
    const __m512i lo = _mm512_and_si512(raw, low4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
    for (int c = 0; c < C; ++c) {
      acc[c] = _mm512_dpbusd_epi32(acc[c], lo, broadcast4(x[c][b].qs + 4 * j));
      acc[c] = _mm512_dpbusd_epi32(acc[c], hi, broadcast4(x[c][b].qs + 16 + 4 * j));
    }
  }
}

template <typename P, int C>
inline void block_q8_0(const uint8_t* blk, const BlockQ8_0* const* x, int64_t b, __m512i* acc) {
  for (int j = 0; j < 8; ++j) {
    const __m512i w = _mm512_loadu_si512(blk + kScaleBytes + 64 * j);
    for (int c = 0; c < C; ++c)
      acc[c] = _mm512_dpbusd_epi32(acc[c], w, broadcast4(x[c][b].qs + 4 * j));
  }
}

// One group of 16 rows against C activation rows.
template <typename P, int C>
inline void group_tile(int64_t nb, const uint8_t* group, const BlockQ8_0* const* x,
                       const int32_t* const* sums, float* y, int64_t y_stride) {
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * block_bytes<P>();
    // The next block of this group: the stream is sequential, but a prefetch a block ahead
    // keeps the loads of the scales and first chunk from waiting on the prefetcher.
    _mm_prefetch(reinterpret_cast<const char*>(blk + 4 * block_bytes<P>()), _MM_HINT_T0);
    __m512i isum[C];
    for (int c = 0; c < C; ++c) isum[c] = _mm512_set1_epi32(-P::kOffset * sums[c][b]);
    if constexpr (P::kChunks == 4) {
      block_q4_0<P, C>(blk, x, b, isum);
    } else {
      block_q8_0<P, C>(blk, x, b, isum);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    for (int c = 0; c < C; ++c) {
      const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(half(x[c][b].d)));
      acc[c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(isum[c]), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

template <typename P, int C>
inline void groups_tile(int64_t nb, const uint8_t* packed, int64_t n_groups, const uint8_t* x,
                        size_t x_row_bytes, const int32_t* x_sums, float* y, int64_t y_stride) {
  const BlockQ8_0* xs[C];
  const int32_t* sums[C];
  for (int c = 0; c < C; ++c) {
    xs[c] = reinterpret_cast<const BlockQ8_0*>(x + c * x_row_bytes);
    sums[c] = x_sums + c * nb;
  }
  for (int64_t g = 0; g < n_groups; ++g) {
    group_tile<P, C>(nb, packed + g * nb * block_bytes<P>(), xs, sums, y + g * kRows, y_stride);
  }
}

// Activations in tiles of 8 (16 float and up to 8 integer accumulators stay in registers), the
// remainder in one smaller tile. Within a tile, groups are walked in order so a tile's weights
// stream once per 8 activation rows.
template <typename P>
void mat_dot_packed(int64_t n, const uint8_t* packed, int64_t n_groups, const uint8_t* x,
                    size_t x_row_bytes, const int32_t* x_sums, int64_t n_x, float* y,
                    int64_t y_stride) {
  const int64_t nb = n / kQK8_0;
  int64_t c = 0;
  for (; c + 8 <= n_x; c += 8) {
    groups_tile<P, 8>(nb, packed, n_groups, x + c * x_row_bytes, x_row_bytes, x_sums + c * nb,
                      y + c * y_stride, y_stride);
  }
  const uint8_t* xc = x + c * x_row_bytes;
  const int32_t* sc = x_sums + c * nb;
  float* yc = y + c * y_stride;
  switch (n_x - c) {
#define IG_TILE(k)                                                              \
  case k:                                                                       \
    groups_tile<P, k>(nb, packed, n_groups, xc, x_row_bytes, sc, yc, y_stride); \
    break;
    IG_TILE(1)
    IG_TILE(2)
    IG_TILE(3)
    IG_TILE(4)
    IG_TILE(5)
    IG_TILE(6)
    IG_TILE(7)
#undef IG_TILE
    default:
      break;
  }
}

// Exact integer sum of 32 products of unsigned u with signed s.
inline int32_t dot32_u8_s8(__m256i u, __m256i s) {
  const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
  __m128i q = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
  q = _mm_add_epi32(q, _mm_unpackhi_epi64(q, q));
  q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 1));
  return _mm_cvtsi128_si32(q);
}

inline int32_t block_sum(const BlockQ8_0& x) {
  return dot32_u8_s8(_mm256_set1_epi8(1),
                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs)));
}

// The plain-row dots with the packed kernels' arithmetic (see the top of the file).
float dot_q4_0(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockQ4_0*>(w);
  const auto* x = static_cast<const BlockQ8_0*>(x_in);
  float acc = 0;
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a[b].qs));
    const __m256i q =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const int32_t isum = dot32_u8_s8(q, y) - 8 * block_sum(x[b]);
    acc = std::fma(half(a[b].d) * half(x[b].d), static_cast<float>(isum), acc);
  }
  return acc;
}

float dot_q8_0(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockQ8_0*>(w);
  const auto* x = static_cast<const BlockQ8_0*>(x_in);
  float acc = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const __m256i q = _mm256_xor_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs)), _mm256_set1_epi8(-128));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const int32_t isum = dot32_u8_s8(q, y) - 128 * block_sum(x[b]);
    acc = std::fma(half(a[b].d) * half(x[b].d), static_cast<float>(isum), acc);
  }
  return acc;
}

void act_block_sums_q8_0(const void* x_in, int64_t n, int32_t* sums) {
  const auto* x = static_cast<const BlockQ8_0*>(x_in);
  for (int64_t b = 0; b < n / kQK8_0; ++b) sums[b] = block_sum(x[b]);
}

}  // namespace

namespace detail {

void fill_avx512_packed_kernels(CpuKernels& k) {
  k.dot_q4_0 = dot_q4_0;
  k.dot_q8_0 = dot_q8_0;
  // The plain tiles inherited from the AVX2 table follow a different float order; plain rows
  // here go through the dots above, packed rows through the GEMM.
  k.mat_dot_q4_0 = nullptr;
  k.mat_dot_q8_0 = nullptr;
  k.packed_q4_0 = {PackedLayout::kRowGroup16, group_bytes<Q4_0Packing>, pack_group<Q4_0Packing>,
                   mat_dot_packed<Q4_0Packing>};
  k.packed_q8_0 = {PackedLayout::kRowGroup16, group_bytes<Q8_0Packing>, pack_group<Q8_0Packing>,
                   mat_dot_packed<Q8_0Packing>};
  k.act_block_sums_q8_0 = act_block_sums_q8_0;
}

}  // namespace detail

}  // namespace infergrid
