// Integer GEMM for Q4_0, Q5_0, Q8_0, IQ4_NL, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS weights on AVX-512
// VNNI, over the row-group layout of cpu_kernels.h (PackedLayout::kRowGroup16), and the plain-row
// dots and tiles of the AVX-512 table, which give the same bits. The K-quant layouts are described
// with their code.
//
// Q4_0 / Q8_0 packed group, per block b of 32 columns (Q4_0: 288 bytes, Q8_0: 544 bytes, the same
// as the 16 plain blocks they replace):
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

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/avx512_intrinsics.h"
#include "kernels/cpu_kernels.h"
#include "kernels/quant.h"

namespace infergrid {

namespace {

constexpr int64_t kRows = kPackedRowGroup;
constexpr size_t kScaleBytes = kRows * sizeof(uint16_t);

// Part `step` of `steps` of a prefetch of the `bytes` at p (all of it: steps = 1). The stream
// prefetcher alone keeps too few misses in flight for these loops, and a K-quant super-block is
// read out of order (its quants, scales and high bits are kilobytes apart), which it does not
// follow; the tiles request a block or super-block ahead, in slices spread over their work.
inline void prefetch_lines(const uint8_t* p, int step, int steps, size_t bytes) {
  const size_t lines = (bytes + 63) / 64;
  const size_t per_step = (lines + steps - 1) / steps;
  for (size_t l = step * per_step; l < std::min(lines, (step + 1) * per_step); ++l) {
    _mm_prefetch(reinterpret_cast<const char*>(p + 64 * l), _MM_HINT_T0);
  }
}

struct Q4_0Packing {
  static constexpr int kChunks = 4;
  static constexpr int32_t kOffset = 8;
  using Block = BlockQ4_0;
  static constexpr uint32_t kFlip = 0;
  static constexpr bool kLookup = false;
  static constexpr bool kHighBits = false;
};

struct Q8_0Packing {
  static constexpr int kChunks = 8;
  static constexpr int32_t kOffset = 128;
  using Block = BlockQ8_0;
  static constexpr uint32_t kFlip = 0x80808080;  // w + 128 for signed w, per byte
  static constexpr bool kLookup = false;
  static constexpr bool kHighBits = false;
};

// IQ4_NL: Q4_0's nibble packing; each nibble becomes its level + 128 by one vpshufb in the
// kernel (kIq4Unsigned), so the offset is 128.
struct IQ4_NLPacking {
  static constexpr int kChunks = 4;
  static constexpr int32_t kOffset = 128;
  using Block = BlockIQ4_NL;
  static constexpr uint32_t kFlip = 0;
  static constexpr bool kLookup = true;
  static constexpr bool kHighBits = false;
};

// Q5_0: Q4_0's nibble packing plus one 64-byte chunk of each row's qh word (row r at 4r);
// bit i of a row's word is the fifth bit of column i, spread to 0x10 bytes in the kernel. Codes
// 0..31 stand for q - 16, so the offset is 16.
struct Q5_0Packing {
  static constexpr int kChunks = 4;
  static constexpr int32_t kOffset = 16;
  using Block = BlockQ5_0;
  static constexpr uint32_t kFlip = 0;
  static constexpr bool kLookup = false;
  static constexpr bool kHighBits = true;
};

// kIq4nlValues + 128: the unsigned codes vpdpbusd takes.
alignas(16) constexpr uint8_t kIq4Unsigned[16] = {1,   24,  45,  63,  79,  93,  106, 118,
                                                  129, 141, 153, 166, 181, 197, 217, 241};

template <typename P>
constexpr size_t block_bytes() {
  return kScaleBytes + static_cast<size_t>(P::kChunks) * 64 + (P::kHighBits ? 64 : 0);
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
      if constexpr (P::kHighBits) {
        std::memcpy(out + kScaleBytes + 64 * P::kChunks + 4 * r, block.qh, 4);
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

// One block's integers into acc[c]. Q4_0 chunk j: low nibbles are columns 4j.., high nibbles
// 16 + 4j..; Q8_0 chunk j: columns 4j...
// Bits shift .. shift + 3 of each 32-bit lane of qh, as 0x10 in bytes 0..3 of the lane: the
// multiply moves bit k to bit 8k (no two terms meet, so nothing carries).
inline __m512i fifth_bits(__m512i qh, int shift) {
  const __m512i nibble = _mm512_and_si512(_mm512_srli_epi32(qh, shift), _mm512_set1_epi32(0xF));
  const __m512i spread = _mm512_and_si512(_mm512_mullo_epi32(nibble, _mm512_set1_epi32(0x00204081)),
                                          _mm512_set1_epi32(0x01010101));
  return _mm512_slli_epi32(spread, 4);
}

template <int C, bool kLookup = false, bool kHighBits = false>
inline void block_q4_0(const uint8_t* blk, const BlockQ8_0* const* x, int64_t b, __m512i* acc) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  [[maybe_unused]] const __m512i table =
      _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4Unsigned)));
  [[maybe_unused]] __m512i qh;
  if constexpr (kHighBits) qh = _mm512_loadu_si512(blk + kScaleBytes + 64 * 4);
  for (int j = 0; j < 4; ++j) {
    const __m512i raw = _mm512_loadu_si512(blk + kScaleBytes + 64 * j);
    __m512i lo = _mm512_and_si512(raw, low4);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
    if constexpr (kLookup) {
      lo = _mm512_shuffle_epi8(table, lo);
      hi = _mm512_shuffle_epi8(table, hi);
    }
    if constexpr (kHighBits) {
      lo = _mm512_or_si512(lo, fifth_bits(qh, 4 * j));
      hi = _mm512_or_si512(hi, fifth_bits(qh, 16 + 4 * j));
    }
    for (int c = 0; c < C; ++c) {
      acc[c] = _mm512_dpbusd_epi32(acc[c], lo, broadcast4(x[c][b].qs + 4 * j));
      acc[c] = _mm512_dpbusd_epi32(acc[c], hi, broadcast4(x[c][b].qs + 16 + 4 * j));
    }
  }
}

template <int C>
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
    // Every line of the block 8 ahead is requested, so more misses are in flight than the
    // stream prefetcher alone keeps: decode tiles are memory-bound, and a pass's first tile of
    // a batch streams its weights too (batch 16: 280 -> 473 GFLOP/s a thread).
    prefetch_lines(blk + 8 * block_bytes<P>(), 0, 1, block_bytes<P>());
    __m512i isum[C];
    for (int c = 0; c < C; ++c) isum[c] = _mm512_set1_epi32(-P::kOffset * sums[c][b]);
    if constexpr (P::kChunks == 4) {
      block_q4_0<C, P::kLookup, P::kHighBits>(blk, x, b, isum);
    } else {
      block_q8_0<C>(blk, x, b, isum);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    for (int c = 0; c < C; ++c) {
      const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(half(x[c][b].d)));
      acc[c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(isum[c]), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * y_stride, acc[c]);
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

float dot_iq4_nl(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockIQ4_NL*>(w);
  const auto* x = static_cast<const BlockQ8_0*>(x_in);
  const __m256i table =
      _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4Unsigned)));
  float acc = 0;
  for (int64_t b = 0; b < n / kQK4_NL; ++b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a[b].qs));
    const __m256i q = _mm256_shuffle_epi8(
        table,
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F)));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const int32_t isum = dot32_u8_s8(q, y) - 128 * block_sum(x[b]);
    acc = std::fma(half(a[b].d) * half(x[b].d), static_cast<float>(isum), acc);
  }
  return acc;
}

float dot_q5_0(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockQ5_0*>(w);
  const auto* x = static_cast<const BlockQ8_0*>(x_in);
  // Byte j takes qh byte j / 8 and keeps bit j % 8 as 0x10.
  const __m256i spread_index =
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  float acc = 0;
  for (int64_t b = 0; b < n / kQK5_0; ++b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a[b].qs));
    const __m256i low =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
    uint32_t bits;
    std::memcpy(&bits, a[b].qh, 4);
    const __m256i spread =
        _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), spread_index);
    const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                                          _mm256_set1_epi8(0x10));
    const __m256i q = _mm256_or_si256(low, high);
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const int32_t isum = dot32_u8_s8(q, y) - 16 * block_sum(x[b]);
    acc = std::fma(half(a[b].d) * half(x[b].d), static_cast<float>(isum), acc);
  }
  return acc;
}

void act_sums_q8_0(const void* x_in, int64_t n, int32_t* sums) {
  const auto* x = static_cast<const BlockQ8_0*>(x_in);
  for (int64_t b = 0; b < n / kQK8_0; ++b) sums[b] = block_sum(x[b]);
}

// ---- Q4_K ----
// Packed group, per super-block of 256 columns (2,368 bytes; the 16 plain blocks are 2,304):
//   [0, 32) d and [32, 64) dmin, fp16 per row;
//   [64, 192) the 8 sub-block scales, chunk j of 16 bytes = scale j of each row;
//   [192, 320) the mins in pairs, chunk i of 32 bytes = (min 2i, min 2i+1) of each row, so that
//     widening a chunk to 16 bits puts a row's pair in its 32-bit lane, ready for vpdpwssd
//     against a broadcast pair of activation sums;
//   [320, 2368) quants: 64-column group g (0..3), chunk j (0..7) of 64 bytes = bytes
//     32g + 4j .. 32g + 4j + 3 of each row's qs (low nibbles: sub-block 2g, high: 2g + 1).
// Per super-block, exactly: sumi = sum_j sc_j * (q . y over sub-block j),
// summ = sum_j m_j * (sum of y over sub-block j); then
//   acc = fma(d * d_x, float(sumi), acc); acc = fma(-(dmin * d_x), float(summ), acc).
constexpr size_t kQ4KScales = 64, kQ4KMins = 192, kQ4KQuants = 320;
constexpr size_t kQ4KSuperBytes = kQ4KQuants + 32 * 64;

// The part of a Q4_K or Q5_K group both share (everything but Q5_K's fifth bits), for row r.
template <typename Block>
void pack_k4_row(const Block& b, int64_t r, uint8_t* out) {
  std::memcpy(out + 2 * r, &b.d, 2);
  std::memcpy(out + 32 + 2 * r, &b.dmin, 2);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, b.scales, &sc, &m);
    out[kQ4KScales + 16 * j + r] = sc;
    out[kQ4KMins + 32 * (j / 2) + 2 * r + (j % 2)] = m;
  }
  for (int chunk = 0; chunk < 32; ++chunk) {
    std::memcpy(out + kQ4KQuants + 64 * chunk + 4 * r, b.qs + 4 * chunk, 4);
  }
}

void q4_K_pack_group(int64_t n, const uint8_t* rows, size_t row_bytes, uint8_t* out) {
  for (int64_t s = 0; s < n / kQK_K; ++s, out += kQ4KSuperBytes) {
    for (int64_t r = 0; r < kRows; ++r) {
      pack_k4_row(reinterpret_cast<const BlockQ4_K*>(rows + r * row_bytes)[s], r, out);
    }
  }
}

// ---- Q5_K ----
// Q4_K's group, then [2368, 2880) the fifth bits: chunk j (0..7) of 64 bytes = bytes 4j..4j+3
// of each row's qh. Column l of 64-group g adds 16 when bit 2g (low nibbles, sub-block 2g) or
// 2g + 1 (high nibbles) of qh[l] is set, so sub-block `sub` takes bit `sub` of the chunk that
// matches its quant chunk's columns. Per super-block the arithmetic is Q4_K's.
constexpr size_t kQ5KHigh = kQ4KSuperBytes;
constexpr size_t kQ5KSuperBytes = kQ5KHigh + 8 * 64;

void q5_K_pack_group(int64_t n, const uint8_t* rows, size_t row_bytes, uint8_t* out) {
  for (int64_t s = 0; s < n / kQK_K; ++s, out += kQ5KSuperBytes) {
    for (int64_t r = 0; r < kRows; ++r) {
      const BlockQ5_K& b = reinterpret_cast<const BlockQ5_K*>(rows + r * row_bytes)[s];
      pack_k4_row(b, r, out);
      for (int j = 0; j < 8; ++j) std::memcpy(out + kQ5KHigh + 64 * j + 4 * r, b.qh + 4 * j, 4);
    }
  }
}

// Per super-block, four 32-bit words: sub-block sums (2i, 2i+1) as a pair of int16 (each at
// most 32 * 127 in magnitude).
void q4_K_act_sums(const void* x_in, int64_t n, int32_t* sums) {
  const auto* x = static_cast<const BlockQ8_K*>(x_in);
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    for (int i = 0; i < 4; ++i) {
      const int16_t lo = static_cast<int16_t>(x[s].bsums[4 * i] + x[s].bsums[4 * i + 1]);
      const int16_t hi = static_cast<int16_t>(x[s].bsums[4 * i + 2] + x[s].bsums[4 * i + 3]);
      sums[4 * s + i] =
          static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(lo)) |
                               (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
    }
  }
}

// Q4_K, or with kFifthBit Q5_K (its group is kQ5KSuperBytes).
template <int C, bool kFifthBit = false>
inline void q4_K_group_tile(int64_t n_super, const uint8_t* group, const BlockQ8_K* const* x,
                            const int32_t* const* sums, float* y, int64_t y_stride) {
  constexpr size_t kSuperBytes = kFifthBit ? kQ5KSuperBytes : kQ4KSuperBytes;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  [[maybe_unused]] const __m512i one = _mm512_set1_epi8(1);
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t s = 0; s < n_super; ++s) {
    const uint8_t* blk = group + s * kSuperBytes;
    __m512i sumi[C];
    for (int c = 0; c < C; ++c) sumi[c] = _mm512_setzero_si512();
    // Sub-block by sub-block: 2g from the low nibbles of group g's chunks, 2g + 1 from the
    // high nibbles (the chunks are read twice, the second time from L1).
    for (int sub = 0; sub < 8; ++sub) {
      prefetch_lines(blk + 2 * kSuperBytes, sub, 8, kSuperBytes);
      const int g = sub / 2;
      __m512i part[C];
      for (int c = 0; c < C; ++c) part[c] = _mm512_setzero_si512();
      for (int j = 0; j < 8; ++j) {
        const __m512i raw = _mm512_loadu_si512(blk + kQ4KQuants + 64 * (8 * g + j));
        __m512i q = (sub & 1) ? _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4)
                              : _mm512_and_si512(raw, low4);
        if constexpr (kFifthBit) {
          // Bit `sub` of each qh byte to bit 4 (masked to one bit before the 16-bit shift, so
          // nothing crosses into the next byte).
          const __m512i high = _mm512_loadu_si512(blk + kQ5KHigh + 64 * j);
          q = _mm512_or_si512(
              q, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(high, sub), one), 4));
        }
        for (int c = 0; c < C; ++c) {
          part[c] = _mm512_dpbusd_epi32(part[c], q, broadcast4(x[c][s].qs + 32 * sub + 4 * j));
        }
      }
      const __m512i sc = _mm512_cvtepu8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ4KScales + 16 * sub)));
      for (int c = 0; c < C; ++c)
        sumi[c] = _mm512_add_epi32(sumi[c], _mm512_mullo_epi32(part[c], sc));
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    const __m512 dm =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 32)));
    __m512i mins[4];
    for (int i = 0; i < 4; ++i) {
      mins[i] = _mm512_cvtepu8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ4KMins + 32 * i)));
    }
    for (int c = 0; c < C; ++c) {
      __m512i summ = _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) {
        summ = _mm512_dpwssd_epi32(summ, mins[i], _mm512_set1_epi32(sums[c][4 * s + i]));
      }
      const __m512 dx = _mm512_set1_ps(x[c][s].d);
      acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(sumi[c]), acc[c]);
      acc[c] = _mm512_fnmadd_ps(_mm512_mul_ps(dm, dx), _mm512_cvtepi32_ps(summ), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

inline __m512i concat(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// ---- IQ4_XS ----
// Packed group, per super-block of 256 columns (2,336 bytes; the 16 plain blocks are 2,176):
//   [0, 32) d, fp16 per row;
//   [32, 160) the 8 sub-block scales ls - 32 (int8), chunk j of 16 bytes = scale j of each row;
//   [160, 288) the same scales in pairs, chunk i of 32 bytes = (scale 2i, scale 2i + 1) of each
//     row, for vpdpwssd against a broadcast pair of activation sums (as Q4_K's mins);
//   [288, 2336) quants: sub-block j, part p (0..3) is chunk 4j + p of 64 bytes = bytes
//     16j + 4p .. 16j + 4p + 3 of each row's qs (low nibbles: columns 4p.., high: 16 + 4p..).
// Codes become level + 128 (unsigned) by one vpshufb; per super-block, exactly:
//   sumi = sum_j s_j * ((level + 128) . y over sub-block j) - 128 * sum_j s_j * (sum of y over j);
//   acc = fma(d * d_x, float(sumi), acc).
constexpr size_t kIQ4XSScales = 32, kIQ4XSPairs = 160, kIQ4XSQuants = 288;
constexpr size_t kIQ4XSSuperBytes = kIQ4XSQuants + 32 * 64;

void iq4_xs_pack_group(int64_t n, const uint8_t* rows, size_t row_bytes, uint8_t* out) {
  for (int64_t s = 0; s < n / kQK_K; ++s, out += kIQ4XSSuperBytes) {
    for (int64_t r = 0; r < kRows; ++r) {
      const BlockIQ4_XS& b = reinterpret_cast<const BlockIQ4_XS*>(rows + r * row_bytes)[s];
      std::memcpy(out + 2 * r, &b.d, 2);
      for (int j = 0; j < 8; ++j) {
        const auto scale = static_cast<int8_t>(iq4_xs_scale(b, j) - 32);
        std::memcpy(out + kIQ4XSScales + 16 * j + r, &scale, 1);
        std::memcpy(out + kIQ4XSPairs + 32 * (j / 2) + 2 * r + (j % 2), &scale, 1);
      }
      for (int chunk = 0; chunk < 32; ++chunk) {
        std::memcpy(out + kIQ4XSQuants + 64 * chunk + 4 * r, b.qs + 4 * chunk, 4);
      }
    }
  }
}

template <int C>
inline void iq4_xs_group_tile(int64_t n_super, const uint8_t* group, const BlockQ8_K* const* x,
                              const int32_t* const* sums, float* y, int64_t y_stride) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i table =
      _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4Unsigned)));
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t s = 0; s < n_super; ++s) {
    const uint8_t* blk = group + s * kIQ4XSSuperBytes;
    __m512i sumi[C];
    for (int c = 0; c < C; ++c) sumi[c] = _mm512_setzero_si512();
    for (int sub = 0; sub < 8; ++sub) {
      prefetch_lines(blk + 2 * kIQ4XSSuperBytes, sub, 8, kIQ4XSSuperBytes);
      __m512i part[C];
      for (int c = 0; c < C; ++c) part[c] = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) {
        const __m512i raw = _mm512_loadu_si512(blk + kIQ4XSQuants + 64 * (4 * sub + p));
        const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(raw, low4));
        const __m512i hi =
            _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4));
        for (int c = 0; c < C; ++c) {
          part[c] = _mm512_dpbusd_epi32(part[c], lo, broadcast4(x[c][s].qs + 32 * sub + 4 * p));
          part[c] =
              _mm512_dpbusd_epi32(part[c], hi, broadcast4(x[c][s].qs + 32 * sub + 16 + 4 * p));
        }
      }
      const __m512i sc = _mm512_cvtepi8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kIQ4XSScales + 16 * sub)));
      for (int c = 0; c < C; ++c)
        sumi[c] = _mm512_add_epi32(sumi[c], _mm512_mullo_epi32(part[c], sc));
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    __m512i pairs[4];
    for (int i = 0; i < 4; ++i) {
      pairs[i] = _mm512_cvtepi8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kIQ4XSPairs + 32 * i)));
    }
    for (int c = 0; c < C; ++c) {
      __m512i corr = _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) {
        corr = _mm512_dpwssd_epi32(corr, pairs[i], _mm512_set1_epi32(sums[c][4 * s + i]));
      }
      const __m512i total = _mm512_sub_epi32(sumi[c], _mm512_slli_epi32(corr, 7));
      acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(x[c][s].d)),
                               _mm512_cvtepi32_ps(total), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

// ---- Q3_K ----
// Packed group, per super-block of 256 columns (1,824 bytes; the 16 plain blocks are 1,760):
//   [0, 32) d, fp16 per row;
//   [32, 288) the 16 sub-block scales minus 32 (int8), chunk j of 16 bytes = scale j of each row;
//   [288, 1312) qs: chunk 8h + p of 64 bytes = bytes 32h + 4p .. + 3 of each row's qs;
//   [1312, 1824) hmask: chunk p of 64 bytes = bytes 4p .. 4p + 3 of each row's hmask.
// Element 128h + 32k + 4p + i (i < 4) is bits 2k..2k+1 of byte i of qs chunk 8h + p, plus 4
// times bit 4h + k of byte i of hmask chunk p: a code q3 in 0..7 standing for q3 - 4. Sub-block
// j = 8h + 2k + p / 4 of 16 columns. Per super-block, exactly:
//   sumi = sum_j s_j * (q3 . y - 4 * sum y, over sub-block j); acc = fma(d * d_x, float(sumi),
//   acc).
// Each sub-block's integer starts at -4 * (its activation sum), so the offset costs nothing.
constexpr size_t kQ3KScales = 32, kQ3KLow = 288, kQ3KHigh = kQ3KLow + 16 * 64;
constexpr size_t kQ3KSuperBytes = kQ3KHigh + 8 * 64;

// noipa: GCC 12.2 at -O3 drops the call to this function from plain_mat_dot<Q3_KKind>
// entirely (the on-the-fly packed group stayed all zero; the -fno-ipa-* switches tried one at a
// time do not stop it, keeping it out of interprocedural analysis does). The tile tests
// (MatDotTilesMatchVecDotExactly) catch it if it ever comes back.
__attribute__((noipa)) void q3_K_pack_group(int64_t n, const uint8_t* rows, size_t row_bytes,
                                            uint8_t* out) {
  for (int64_t s = 0; s < n / kQK_K; ++s, out += kQ3KSuperBytes) {
    for (int64_t r = 0; r < kRows; ++r) {
      const BlockQ3_K& b = reinterpret_cast<const BlockQ3_K*>(rows + r * row_bytes)[s];
      std::memcpy(out + 2 * r, &b.d, 2);
      for (int j = 0; j < 16; ++j) {
        const int low = j < 8 ? b.scales[j] & 0xF : b.scales[j - 8] >> 4;
        const int scale = (low | (((b.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
        out[kQ3KScales + 16 * j + r] = static_cast<uint8_t>(static_cast<int8_t>(scale));
      }
      for (int c = 0; c < 16; ++c) std::memcpy(out + kQ3KLow + 64 * c + 4 * r, b.qs + 4 * c, 4);
      for (int c = 0; c < 8; ++c) std::memcpy(out + kQ3KHigh + 64 * c + 4 * r, b.hmask + 4 * c, 4);
    }
  }
}

// Per super-block, the 16 sub-block sums of 16 activations.
void bsums16_act_sums(const void* x_in, int64_t n, int32_t* sums) {
  const auto* x = static_cast<const BlockQ8_K*>(x_in);
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    for (int j = 0; j < 16; ++j) sums[16 * s + j] = x[s].bsums[j];
  }
}

template <int C>
inline void q3_K_group_tile(int64_t n_super, const uint8_t* group, const BlockQ8_K* const* x,
                            const int32_t* const* sums, float* y, int64_t y_stride) {
  const __m512i three = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t s = 0; s < n_super; ++s) {
    const uint8_t* blk = group + s * kQ3KSuperBytes;
    __m512i sumi[C];
    for (int c = 0; c < C; ++c) sumi[c] = _mm512_setzero_si512();
      // Unrolled so that every shift count and offset below is a constant.
#pragma GCC unroll 16
    for (int sub = 0; sub < 16; ++sub) {  // half h, quarter k, which 16 of the 32
      prefetch_lines(blk + 2 * kQ3KSuperBytes, sub, 16, kQ3KSuperBytes);
      const int h = sub / 8, k = (sub / 2) % 4, p0 = 4 * (sub % 2);
      __m512i part[C];
      for (int c = 0; c < C; ++c) part[c] = _mm512_set1_epi32(-4 * sums[c][16 * s + sub]);
      for (int p = p0; p < p0 + 4; ++p) {
        const __m512i low = _mm512_and_si512(
            _mm512_srli_epi16(_mm512_loadu_si512(blk + kQ3KLow + 64 * (8 * h + p)), 2 * k), three);
        const __m512i high = _mm512_and_si512(
            _mm512_srli_epi16(_mm512_loadu_si512(blk + kQ3KHigh + 64 * p), 4 * h + k), one);
        const __m512i q = _mm512_or_si512(low, _mm512_slli_epi16(high, 2));
        for (int c = 0; c < C; ++c) {
          part[c] =
              _mm512_dpbusd_epi32(part[c], q, broadcast4(x[c][s].qs + 128 * h + 32 * k + 4 * p));
        }
      }
      const __m512i sc = _mm512_cvtepi8_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kQ3KScales + 16 * sub)));
      for (int c = 0; c < C; ++c)
        sumi[c] = _mm512_add_epi32(sumi[c], _mm512_mullo_epi32(part[c], sc));
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    for (int c = 0; c < C; ++c) {
      acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(x[c][s].d)),
                               _mm512_cvtepi32_ps(sumi[c]), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

// ---- Q6_K ----
// Packed group, per super-block of 256 columns (3,360 bytes, as the 16 plain blocks):
//   [0, 32) d, fp16 per row;
//   [32, 288) the 16 int8 sub-block scales in pairs: chunk i of 32 bytes = (scale 2i, scale
//     2i + 1) of each row, which widen to a 16-bit pair per 32-bit lane (vpdpwssd with the
//     activations' paired sums) or to one int32 per lane (shifts);
//   [288, 2336) ql, 32 chunks of 64 bytes (chunk c = bytes 4c..4c+3 of each row's ql);
//   [2336, 3360) qh, 16 chunks of 64 bytes likewise.
// Element 128h + 32k + o (half h, quarter k, o < 32) takes its low 4 bits from ql chunk
// 16h + 8(k % 2) + o / 4 (low nibble for k < 2, high for k >= 2) and its top 2 bits from qh
// chunk 8h + o / 4, bits 2k..2k+1; q is that 6-bit code minus 32. Per super-block, exactly:
//   sumi = sum_k sc_k * (code . y over sub-block k) - 32 * sum_k sc_k * (sum of y over k);
//   acc = fma(d * d_x, float(sumi), acc).
constexpr size_t kQ6KScales = 32, kQ6KLow = 288, kQ6KHigh = kQ6KLow + 32 * 64;
constexpr size_t kQ6KSuperBytes = kQ6KHigh + 16 * 64;

void q6_K_pack_group(int64_t n, const uint8_t* rows, size_t row_bytes, uint8_t* out) {
  for (int64_t s = 0; s < n / kQK_K; ++s, out += kQ6KSuperBytes) {
    for (int64_t r = 0; r < kRows; ++r) {
      const BlockQ6_K& b = reinterpret_cast<const BlockQ6_K*>(rows + r * row_bytes)[s];
      std::memcpy(out + 2 * r, &b.d, 2);
      for (int i = 0; i < 8; ++i) {
        std::memcpy(out + kQ6KScales + 32 * i + 2 * r, b.scales + 2 * i, 2);
      }
      for (int c = 0; c < 32; ++c) std::memcpy(out + kQ6KLow + 64 * c + 4 * r, b.ql + 4 * c, 4);
      for (int c = 0; c < 16; ++c) std::memcpy(out + kQ6KHigh + 64 * c + 4 * r, b.qh + 4 * c, 4);
    }
  }
}

// Per super-block, eight 32-bit words: sums of 16 (2i, 2i + 1) as a pair of int16.
void q6_K_act_sums(const void* x_in, int64_t n, int32_t* sums) {
  const auto* x = static_cast<const BlockQ8_K*>(x_in);
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    for (int i = 0; i < 8; ++i) {
      sums[8 * s + i] = static_cast<int32_t>(
          static_cast<uint32_t>(static_cast<uint16_t>(x[s].bsums[2 * i])) |
          (static_cast<uint32_t>(static_cast<uint16_t>(x[s].bsums[2 * i + 1])) << 16));
    }
  }
}

template <int C>
inline void q6_K_group_tile(int64_t n_super, const uint8_t* group, const BlockQ8_K* const* x,
                            const int32_t* const* sums, float* y, int64_t y_stride) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t s = 0; s < n_super; ++s) {
    const uint8_t* blk = group + s * kQ6KSuperBytes;
    __m512i sumi[C];
    for (int c = 0; c < C; ++c) sumi[c] = _mm512_setzero_si512();
      // Unrolled so that every shift count and offset below is a constant.
#pragma GCC unroll 16
    for (int sub = 0; sub < 16; ++sub) {  // sub-blocks of 16: half h, quarter k, part of 2
      prefetch_lines(blk + 4 * kQ6KSuperBytes, sub, 16, kQ6KSuperBytes);
      const int h = sub / 8, k = (sub / 2) % 4, o0 = 16 * (sub % 2);
      __m512i part[C];
      for (int c = 0; c < C; ++c) part[c] = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        const int o = o0 + 4 * j;
        const __m512i ql = _mm512_loadu_si512(blk + kQ6KLow + 64 * (16 * h + 8 * (k % 2) + o / 4));
        const __m512i qh = _mm512_loadu_si512(blk + kQ6KHigh + 64 * (8 * h + o / 4));
        // Bits 2k, 2k+1 of qh moved to bits 4, 5 (16-bit shifts: what crosses a byte boundary
        // is masked off), then one bit-select takes bits 0..3 from the nibble source.
        const __m512i lo_source = k < 2 ? ql : _mm512_srli_epi16(ql, 4);
        const __m512i top_source = k == 0   ? _mm512_slli_epi16(qh, 4)
                                   : k == 1 ? _mm512_slli_epi16(qh, 2)
                                   : k == 2 ? qh
                                            : _mm512_srli_epi16(qh, 2);
        const __m512i top = _mm512_and_si512(top_source, bits45);
        // 0xE4: low4 ? lo_source : top, per bit.
        const __m512i q = _mm512_ternarylogic_epi32(lo_source, top, low4, 0xE4);
        for (int c = 0; c < C; ++c) {
          part[c] = _mm512_dpbusd_epi32(part[c], q, broadcast4(x[c][s].qs + 128 * h + 32 * k + o));
        }
      }
      // Scale `sub` of each row, sign-extended from its byte of the pair.
      const __m512i pair = _mm512_cvtepi8_epi16(load256(blk + kQ6KScales + 32 * (sub / 2)));
      const __m512i sc = sub % 2 == 0 ? _mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16)
                                      : _mm512_srai_epi32(pair, 16);
      for (int c = 0; c < C; ++c)
        sumi[c] = _mm512_add_epi32(sumi[c], _mm512_mullo_epi32(part[c], sc));
    }
    const __m512 dw = _mm512_cvtph_ps(load256(blk));
    for (int c = 0; c < C; ++c) {
      __m512i corr = _mm512_setzero_si512();
      for (int i = 0; i < 8; ++i) {
        corr = _mm512_dpwssd_epi32(corr, _mm512_cvtepi8_epi16(load256(blk + kQ6KScales + 32 * i)),
                                   _mm512_set1_epi32(sums[c][8 * s + i]));
      }
      const __m512i total = _mm512_sub_epi32(sumi[c], _mm512_slli_epi32(corr, 5));
      acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(x[c][s].d)),
                               _mm512_cvtepi32_ps(total), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

// The plain-row Q6_K dot, with the packed kernel's arithmetic (an exact integer per
// super-block, then one fma).
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
  float acc = 0;
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
    acc = std::fma(half(a[i].d) * b[i].d, static_cast<float>(_mm512_reduce_add_epi32(sumi)), acc);
  }
  return acc;
}

// ---- The shared driver ----
// Each kind names its activation block and, per unit (a block or a super-block), its columns,
// packed bytes (for a group of 16 rows) and activation sums, and its tile: one row group
// against C activation rows.
template <typename P>  // Q4_0Packing or Q8_0Packing
struct BlockKind {
  using Act = BlockQ8_0;
  static constexpr int64_t kCols = kQK8_0, kSums = 1;
  static constexpr size_t kBytes = block_bytes<P>();
  template <int C>
  static void tile(int64_t units, const uint8_t* g, const Act* const* x, const int32_t* const* s,
                   float* y, int64_t y_stride) {
    group_tile<P, C>(units, g, x, s, y, y_stride);
  }
};
using Q4_0Kind = BlockKind<Q4_0Packing>;
using Q8_0Kind = BlockKind<Q8_0Packing>;
using IQ4_NLKind = BlockKind<IQ4_NLPacking>;
using Q5_0Kind = BlockKind<Q5_0Packing>;

struct Q4_KKind {
  using Act = BlockQ8_K;
  static constexpr int64_t kCols = kQK_K, kSums = 4;
  static constexpr size_t kBytes = kQ4KSuperBytes;
  template <int C>
  static void tile(int64_t units, const uint8_t* g, const Act* const* x, const int32_t* const* s,
                   float* y, int64_t y_stride) {
    q4_K_group_tile<C>(units, g, x, s, y, y_stride);
  }
};

struct Q5_KKind {
  using Act = BlockQ8_K;
  static constexpr int64_t kCols = kQK_K, kSums = 4;
  static constexpr size_t kBytes = kQ5KSuperBytes;
  template <int C>
  static void tile(int64_t units, const uint8_t* g, const Act* const* x, const int32_t* const* s,
                   float* y, int64_t y_stride) {
    q4_K_group_tile<C, true>(units, g, x, s, y, y_stride);
  }
};

struct IQ4_XSKind {
  using Act = BlockQ8_K;
  static constexpr int64_t kCols = kQK_K, kSums = 4;
  static constexpr size_t kBytes = kIQ4XSSuperBytes;
  template <int C>
  static void tile(int64_t units, const uint8_t* g, const Act* const* x, const int32_t* const* s,
                   float* y, int64_t y_stride) {
    iq4_xs_group_tile<C>(units, g, x, s, y, y_stride);
  }
};

struct Q3_KKind {
  using Act = BlockQ8_K;
  static constexpr int64_t kCols = kQK_K, kSums = 16;
  static constexpr size_t kBytes = kQ3KSuperBytes;
  template <int C>
  static void tile(int64_t units, const uint8_t* g, const Act* const* x, const int32_t* const* s,
                   float* y, int64_t y_stride) {
    q3_K_group_tile<C>(units, g, x, s, y, y_stride);
  }
};

struct Q6_KKind {
  using Act = BlockQ8_K;
  static constexpr int64_t kCols = kQK_K, kSums = 8;
  static constexpr size_t kBytes = kQ6KSuperBytes;
  template <int C>
  static void tile(int64_t units, const uint8_t* g, const Act* const* x, const int32_t* const* s,
                   float* y, int64_t y_stride) {
    q6_K_group_tile<C>(units, g, x, s, y, y_stride);
  }
};

template <typename K>
size_t group_bytes(int64_t n) {
  return static_cast<size_t>(n / K::kCols) * K::kBytes;
}

template <typename K>
int64_t sums_per_row(int64_t n) {
  return n / K::kCols * K::kSums;
}

template <typename K, int C>
inline void groups_tile(int64_t units, const uint8_t* packed, int64_t n_groups, const uint8_t* x,
                        size_t x_row_bytes, const int32_t* x_sums, float* y, int64_t y_stride) {
  const typename K::Act* xs[C];
  const int32_t* sums[C];
  for (int c = 0; c < C; ++c) {
    xs[c] = reinterpret_cast<const typename K::Act*>(x + c * x_row_bytes);
    sums[c] = x_sums + c * units * K::kSums;
  }
  for (int64_t g = 0; g < n_groups; ++g) {
    K::template tile<C>(units, packed + g * units * K::kBytes, xs, sums, y + g * kRows, y_stride);
  }
}

// Activations in tiles of 8 (up to 8 float and 16 integer accumulators stay in registers), the
// remainder in one smaller tile; within a tile, the groups in order.
template <typename K>
void mat_dot_pass(int64_t n, const uint8_t* packed, int64_t n_groups, const uint8_t* x,
                  size_t x_row_bytes, const int32_t* x_sums, int64_t n_x, float* y,
                  int64_t y_stride) {
  const int64_t units = n / K::kCols, per_row = units * K::kSums;
  int64_t c = 0;
  for (; c + 8 <= n_x; c += 8) {
    groups_tile<K, 8>(units, packed, n_groups, x + c * x_row_bytes, x_row_bytes,
                      x_sums + c * per_row, y + c * y_stride, y_stride);
  }
  const uint8_t* xc = x + c * x_row_bytes;
  const int32_t* sc = x_sums + c * per_row;
  float* yc = y + c * y_stride;
  switch (n_x - c) {
#define IG_TILE(k)                                                                 \
  case k:                                                                          \
    groups_tile<K, k>(units, packed, n_groups, xc, x_row_bytes, sc, yc, y_stride); \
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

// Weights in passes that fit in L2 (each pass's groups against every activation tile), so a
// long run of groups is read from memory once, not once per tile of 8 activation rows. The
// passes only regroup work: every output sees the same operations.
template <typename Pass>
inline void in_l2_passes(size_t group_bytes, const uint8_t* packed, int64_t n_groups, float* y,
                         Pass pass) {
  const int64_t per_pass =
      std::max<int64_t>(1, static_cast<int64_t>((size_t{256} << 10) / group_bytes));
  for (int64_t g0 = 0; g0 < n_groups; g0 += per_pass) {
    pass(packed + static_cast<size_t>(g0) * group_bytes, std::min(per_pass, n_groups - g0),
         y + g0 * kRows);
  }
}

template <typename K>
void packed_mat_dot(int64_t n, const uint8_t* packed, int64_t n_groups, const uint8_t* x,
                    size_t x_row_bytes, const int32_t* x_sums, int64_t n_x, float* y,
                    int64_t y_stride) {
  in_l2_passes(group_bytes<K>(n), packed, n_groups, y,
               [&](const uint8_t* p, int64_t groups, float* yp) {
                 mat_dot_pass<K>(n, p, groups, x, x_row_bytes, x_sums, n_x, yp, y_stride);
               });
}

// The plain-row Q4_K dot with the packed kernel's arithmetic.
float dot_q4_K(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockQ4_K*>(w);
  const auto* x = static_cast<const BlockQ8_K*>(x_in);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  float acc = 0;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) get_scale_min_k4(j, a[s].scales, &sc[j], &m[j]);
    int32_t sumi = 0, summ = 0;
    for (int g = 0; g < 4; ++g) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[s].qs + 32 * g));
      const __m256i lo = _mm256_and_si256(bits, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4);
      const auto* y = reinterpret_cast<const __m256i*>(x[s].qs + 64 * g);
      sumi += sc[2 * g] * dot32_u8_s8(lo, _mm256_loadu_si256(y));
      sumi += sc[2 * g + 1] * dot32_u8_s8(hi, _mm256_loadu_si256(y + 1));
    }
    for (int j = 0; j < 8; ++j) summ += m[j] * (x[s].bsums[2 * j] + x[s].bsums[2 * j + 1]);
    acc = std::fma(half(a[s].d) * x[s].d, static_cast<float>(sumi), acc);
    acc = std::fma(-(half(a[s].dmin) * x[s].d), static_cast<float>(summ), acc);
  }
  return acc;
}

// Exact integer sum of 16 products of unsigned u with signed s.
inline int32_t dot16_u8_s8(__m128i u, __m128i s) {
  __m128i q = _mm_dpbusd_epi32(_mm_setzero_si128(), u, s);
  q = _mm_add_epi32(q, _mm_unpackhi_epi64(q, q));
  q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 1));
  return _mm_cvtsi128_si32(q);
}

// The plain-row Q3_K dot with the packed kernel's arithmetic.
float dot_q3_K(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockQ3_K*>(w);
  const auto* x = static_cast<const BlockQ8_K*>(x_in);
  const __m128i three = _mm_set1_epi8(3), one = _mm_set1_epi8(1);
  float acc = 0;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    uint8_t scales[16];
    unpack_q3_K_scales(a[s].scales, scales);
    int32_t sumi = 0;
    for (int sub = 0; sub < 16; ++sub) {
      const int h = sub / 8, k = (sub / 2) % 4, l0 = 16 * (sub % 2);
      const __m128i low = _mm_and_si128(
          _mm_srli_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a[s].qs + 32 * h + l0)),
                         2 * k),
          three);
      const __m128i high = _mm_and_si128(
          _mm_srli_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a[s].hmask + l0)),
                         4 * h + k),
          one);
      const __m128i q = _mm_or_si128(low, _mm_slli_epi16(high, 2));
      const __m128i y =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[s].qs + 128 * h + 32 * k + l0));
      sumi += (scales[sub] - 32) * (dot16_u8_s8(q, y) - 4 * x[s].bsums[sub]);
    }
    acc = std::fma(half(a[s].d) * x[s].d, static_cast<float>(sumi), acc);
  }
  return acc;
}

// The plain-row IQ4_XS dot with the packed kernel's arithmetic.
float dot_iq4_xs(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockIQ4_XS*>(w);
  const auto* x = static_cast<const BlockQ8_K*>(x_in);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i table =
      _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4Unsigned)));
  float acc = 0;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    int32_t sumi = 0;
    for (int j = 0; j < 8; ++j) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a[s].qs + 16 * j));
      const __m256i nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
      const __m256i codes = _mm256_shuffle_epi8(table, nibbles);
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[s].qs + 32 * j));
      const int32_t y_sum = x[s].bsums[2 * j] + x[s].bsums[2 * j + 1];
      sumi += (iq4_xs_scale(a[s], j) - 32) * (dot32_u8_s8(codes, y) - 128 * y_sum);
    }
    acc = std::fma(half(a[s].d) * x[s].d, static_cast<float>(sumi), acc);
  }
  return acc;
}

// The plain-row Q5_K dot with the packed kernel's arithmetic (Q4_K's, on 5-bit codes).
float dot_q5_K(int64_t n, const void* w, const void* x_in) {
  const auto* a = static_cast<const BlockQ5_K*>(w);
  const auto* x = static_cast<const BlockQ8_K*>(x_in);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i one = _mm256_set1_epi8(1);
  float acc = 0;
  for (int64_t s = 0; s < n / kQK_K; ++s) {
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) get_scale_min_k4(j, a[s].scales, &sc[j], &m[j]);
    const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[s].qh));
    int32_t sumi = 0, summ = 0;
    for (int g = 0; g < 4; ++g) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[s].qs + 32 * g));
      const __m256i lo = _mm256_or_si256(
          _mm256_and_si256(bits, low4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 2 * g), one), 4));
      const __m256i hi = _mm256_or_si256(
          _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 2 * g + 1), one), 4));
      const auto* y = reinterpret_cast<const __m256i*>(x[s].qs + 64 * g);
      sumi += sc[2 * g] * dot32_u8_s8(lo, _mm256_loadu_si256(y));
      sumi += sc[2 * g + 1] * dot32_u8_s8(hi, _mm256_loadu_si256(y + 1));
    }
    for (int j = 0; j < 8; ++j) summ += m[j] * (x[s].bsums[2 * j] + x[s].bsums[2 * j + 1]);
    acc = std::fma(half(a[s].d) * x[s].d, static_cast<float>(sumi), acc);
    acc = std::fma(-(half(a[s].dmin) * x[s].d), static_cast<float>(summ), acc);
  }
  return acc;
}

// Plain rows through the packed kernels: for 4 activation rows or more, each full group of 16
// rows is packed into a per-thread buffer and run as one packed group, so a matrix that was not
// repacked at load still gets the GEMM (and exactly its results); rows past the last full group
// take the plain dot, which has the same arithmetic. The buffers grow once per thread, then are
// reused.
template <typename K, void (*Pack)(int64_t, const uint8_t*, size_t, uint8_t*),
          void (*ActSums)(const void*, int64_t, int32_t*),
          float (*Dot)(int64_t, const void*, const void*)>
void plain_mat_dot(int64_t n, const void* w_in, size_t w_row_bytes, int64_t n_w, const void* x_in,
                   size_t x_row_bytes, int64_t n_x, float* y, int64_t y_stride) {
  thread_local std::vector<uint8_t> group;
  thread_local std::vector<int32_t> sums;
  const auto* w = static_cast<const uint8_t*>(w_in);
  const auto* x = static_cast<const uint8_t*>(x_in);
  int64_t r = 0;
  // Packing costs about what one activation row's pass does: with fewer than 4 rows (decode)
  // it does not pay, and the plain dots run instead.
  if (n_w >= kRows && n_x >= 4) {
    const int64_t per_row = sums_per_row<K>(n);
    if (sums.size() < static_cast<size_t>(n_x * per_row)) sums.resize(n_x * per_row);
    for (int64_t c = 0; c < n_x; ++c) ActSums(x + c * x_row_bytes, n, sums.data() + c * per_row);
    if (group.size() < group_bytes<K>(n)) group.resize(group_bytes<K>(n));
    for (; r + kRows <= n_w; r += kRows) {
      Pack(n, w + r * w_row_bytes, w_row_bytes, group.data());
      packed_mat_dot<K>(n, group.data(), 1, x, x_row_bytes, sums.data(), n_x, y + r, y_stride);
    }
  }
  for (; r < n_w; ++r) {
    for (int64_t c = 0; c < n_x; ++c) {
      y[c * y_stride + r] = Dot(n, w + r * w_row_bytes, x + c * x_row_bytes);
    }
  }
}

}  // namespace

namespace detail {

void fill_avx512_packed_kernels(CpuKernels& k) {
  k.dot_q4_0 = dot_q4_0;
  k.dot_q8_0 = dot_q8_0;
  k.dot_q4_K = dot_q4_K;
  k.dot_q6_K = dot_q6_K;
  k.dot_q5_K = dot_q5_K;
  k.dot_iq4_xs = dot_iq4_xs;
  k.dot_q3_K = dot_q3_K;
  k.dot_iq4_nl = dot_iq4_nl;
  k.dot_q5_0 = dot_q5_0;
  // Replaces the AVX2 tiles inherited from below, whose float order differs from these dots.
  k.mat_dot_q4_0 = plain_mat_dot<Q4_0Kind, pack_group<Q4_0Packing>, act_sums_q8_0, dot_q4_0>;
  k.mat_dot_q8_0 = plain_mat_dot<Q8_0Kind, pack_group<Q8_0Packing>, act_sums_q8_0, dot_q8_0>;
  k.mat_dot_q4_K = plain_mat_dot<Q4_KKind, q4_K_pack_group, q4_K_act_sums, dot_q4_K>;
  k.mat_dot_q6_K = plain_mat_dot<Q6_KKind, q6_K_pack_group, q6_K_act_sums, dot_q6_K>;
  k.mat_dot_q5_K = plain_mat_dot<Q5_KKind, q5_K_pack_group, q4_K_act_sums, dot_q5_K>;
  k.mat_dot_iq4_xs = plain_mat_dot<IQ4_XSKind, iq4_xs_pack_group, q4_K_act_sums, dot_iq4_xs>;
  k.mat_dot_q3_K = plain_mat_dot<Q3_KKind, q3_K_pack_group, bsums16_act_sums, dot_q3_K>;
  k.mat_dot_iq4_nl =
      plain_mat_dot<IQ4_NLKind, pack_group<IQ4_NLPacking>, act_sums_q8_0, dot_iq4_nl>;
  k.mat_dot_q5_0 = plain_mat_dot<Q5_0Kind, pack_group<Q5_0Packing>, act_sums_q8_0, dot_q5_0>;
  k.packed_q4_0 = {PackedLayout::kRowGroup16, group_bytes<Q4_0Kind>, pack_group<Q4_0Packing>,
                   sums_per_row<Q4_0Kind>,    act_sums_q8_0,         packed_mat_dot<Q4_0Kind>};
  k.packed_q8_0 = {PackedLayout::kRowGroup16, group_bytes<Q8_0Kind>, pack_group<Q8_0Packing>,
                   sums_per_row<Q8_0Kind>,    act_sums_q8_0,         packed_mat_dot<Q8_0Kind>};
  k.packed_q4_K = {PackedLayout::kRowGroup16, group_bytes<Q4_KKind>, q4_K_pack_group,
                   sums_per_row<Q4_KKind>,    q4_K_act_sums,         packed_mat_dot<Q4_KKind>};
  k.packed_q6_K = {PackedLayout::kRowGroup16, group_bytes<Q6_KKind>, q6_K_pack_group,
                   sums_per_row<Q6_KKind>,    q6_K_act_sums,         packed_mat_dot<Q6_KKind>};
  k.packed_q5_K = {PackedLayout::kRowGroup16, group_bytes<Q5_KKind>, q5_K_pack_group,
                   sums_per_row<Q5_KKind>,    q4_K_act_sums,         packed_mat_dot<Q5_KKind>};
  k.packed_iq4_xs = {
      PackedLayout::kRowGroup16, group_bytes<IQ4_XSKind>, iq4_xs_pack_group,
      sums_per_row<IQ4_XSKind>,  q4_K_act_sums,           packed_mat_dot<IQ4_XSKind>};
  k.packed_q3_K = {PackedLayout::kRowGroup16, group_bytes<Q3_KKind>, q3_K_pack_group,
                   sums_per_row<Q3_KKind>,    bsums16_act_sums,      packed_mat_dot<Q3_KKind>};
  k.packed_iq4_nl = {
      PackedLayout::kRowGroup16, group_bytes<IQ4_NLKind>, pack_group<IQ4_NLPacking>,
      sums_per_row<IQ4_NLKind>,  act_sums_q8_0,           packed_mat_dot<IQ4_NLKind>};
  k.packed_q5_0 = {PackedLayout::kRowGroup16, group_bytes<Q5_0Kind>, pack_group<Q5_0Packing>,
                   sums_per_row<Q5_0Kind>,    act_sums_q8_0,         packed_mat_dot<Q5_0Kind>};
}

}  // namespace detail

}  // namespace infergrid
