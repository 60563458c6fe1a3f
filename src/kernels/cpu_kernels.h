// The CPU kernel table: every compute primitive the model needs, with one implementation per
// instruction set (scalar reference, AVX2, AVX-512). Runtime dispatch happens once, in
// select_cpu_kernels(); callers hold a `const CpuKernels&` and never branch on CPU features.
//
// Contracts shared by all implementations:
//  - vec_dot(n, w, x): w is one row of n weights of the weight type, x is one row of n
//    activations already converted to that type's dot type (tensor_type.h). Returns the sum.
//  - Implementations agree with the scalar reference to float rounding; the integer parts
//    (quantized products) agree exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/kv_type.h"
#include "kernels/tensor_type.h"

namespace infergrid {

using VecDotFn = float (*)(int64_t n, const void* w, const void* x);
using QuantizeActFn = void (*)(const float* x, void* y, int64_t n);
// A tile of dot products: y[c * y_stride + r] = dot(n, w + r * w_row_bytes, x + c * x_row_bytes)
// for r < n_w, c < n_x. Each weight block is unpacked once and reused across the activation
// rows (prefill), and several rows are in flight at once (decode).
// Contract: every output is bit-identical to the same table's vec_dot for that weight type (the
// same float operations in the same order), so batched and one-token matmuls agree exactly.
using MatDotFn = void (*)(int64_t n, const void* w, size_t w_row_bytes, int64_t n_w, const void* x,
                          size_t x_row_bytes, int64_t n_x, float* y, int64_t y_stride);

inline constexpr int kMaxAttentionTileKeys = 64;

// See CpuKernels::attention_tile_*.
using AttentionTileFn = void (*)(const float* const* q_rows, const int* row_keys, int n_rows,
                                 const void* const* k_rows, const void* const* v_rows, int n_keys,
                                 int head_dim, float scale, float* acc, float* row_max,
                                 float* row_sum);

// Weights repacked once at load for a table's integer GEMM (ggml's "extra buffer" idea): rows
// in groups of kPackedRowGroup, and within a group, block by block, the group's 16 block scales
// then its quants interleaved four bytes per row, so one 512-bit load holds the same four
// columns of all 16 rows. A vpdpbusd against four broadcast activation bytes then leaves each
// row's partial sum in its own lane: no horizontal reduction, one exact integer per row and
// block, one float FMA per row and block.
// Contract: each output equals, bit for bit, the same table's vec_dot on the plain row (the
// same per-block integer and the same float operations in the same order), whatever the tile.
inline constexpr int64_t kPackedRowGroup = 16;

struct PackedKernel {
  PackedLayout layout = PackedLayout::kNone;
  // Bytes of one packed group of kPackedRowGroup rows of n columns.
  size_t (*group_bytes)(int64_t n) = nullptr;
  // Packs rows [0, kPackedRowGroup) of `rows` (plain layout, row_bytes apart) into `out`.
  void (*pack_group)(int64_t n, const uint8_t* rows, size_t row_bytes, uint8_t* out) = nullptr;
  // The integers the GEMM needs from each activation row (block sums of its quants):
  // sums_per_row(n) of them, written by act_sums from one row of the type's dot type.
  int64_t (*sums_per_row)(int64_t n) = nullptr;
  void (*act_sums)(const void* x, int64_t n, int32_t* sums) = nullptr;
  // y[c * y_stride + g * kPackedRowGroup + r] = dot(row r of group g, activation row c) for
  // g < n_groups, c < n_x; x_sums holds act_sums of each activation row, one after the other.
  void (*mat_dot)(int64_t n, const uint8_t* packed, int64_t n_groups, const uint8_t* x,
                  size_t x_row_bytes, const int32_t* x_sums, int64_t n_x, float* y,
                  int64_t y_stride) = nullptr;
};

struct CpuKernels {
  std::string name;  // "scalar", "avx2", "avx512"

  VecDotFn dot_f32 = nullptr;     // w f32, x f32
  VecDotFn dot_f16 = nullptr;     // w f16, x f32
  VecDotFn dot_bf16 = nullptr;    // w bf16, x f32
  VecDotFn dot_q4_0 = nullptr;    // w q4_0, x q8_0
  VecDotFn dot_q8_0 = nullptr;    // w q8_0, x q8_0
  VecDotFn dot_q4_K = nullptr;    // w q4_K, x q8_K
  VecDotFn dot_q6_K = nullptr;    // w q6_K, x q8_K
  VecDotFn dot_q4_1 = nullptr;    // w q4_1, x q8_0
  VecDotFn dot_q5_0 = nullptr;    // w q5_0, x q8_0
  VecDotFn dot_q5_1 = nullptr;    // w q5_1, x q8_0
  VecDotFn dot_iq4_nl = nullptr;  // w iq4_nl, x q8_0
  VecDotFn dot_q2_K = nullptr;    // w q2_K, x q8_K
  VecDotFn dot_q3_K = nullptr;    // w q3_K, x q8_K
  VecDotFn dot_q5_K = nullptr;    // w q5_K, x q8_K
  VecDotFn dot_iq4_xs = nullptr;  // w iq4_xs, x q8_K

  // Tiled versions of the dots above; nullptr where a table has none (callers then loop over
  // the vec_dot, which gives the same results).
  MatDotFn mat_dot_q4_0 = nullptr;
  MatDotFn mat_dot_q8_0 = nullptr;
  MatDotFn mat_dot_q4_K = nullptr;
  MatDotFn mat_dot_q6_K = nullptr;
  MatDotFn mat_dot_q5_K = nullptr;
  MatDotFn mat_dot_iq4_xs = nullptr;
  MatDotFn mat_dot_q3_K = nullptr;
  MatDotFn mat_dot_q4_1 = nullptr;
  MatDotFn mat_dot_q5_0 = nullptr;
  MatDotFn mat_dot_q5_1 = nullptr;
  MatDotFn mat_dot_iq4_nl = nullptr;

  // Integer GEMM on repacked weights (layout kNone: the table has none for that type).
  PackedKernel packed_q4_0;
  PackedKernel packed_q8_0;
  PackedKernel packed_q4_K;
  PackedKernel packed_q6_K;
  PackedKernel packed_q5_K;
  PackedKernel packed_iq4_xs;
  PackedKernel packed_q3_K;
  PackedKernel packed_iq4_nl;
  PackedKernel packed_q5_0;

  QuantizeActFn quantize_q8_0 = nullptr;
  QuantizeActFn quantize_q8_K = nullptr;

  // Elementwise and reduction ops on float vectors.
  float (*dot_f32_f32)(const float* a, const float* b, int64_t n) = nullptr;
  void (*axpy)(float a, const float* x, float* y, int64_t n) = nullptr;  // y += a * x
  void (*scale)(float a, float* y, int64_t n) = nullptr;                 // y *= a
  void (*rms_norm)(const float* x, const float* weight, float* y, int64_t n, float eps) = nullptr;
  void (*swiglu)(const float* gate, const float* up, float* y, int64_t n) = nullptr;  // silu(g)*u
  // Query rows against one tile of keys, with the online softmax per row (FlashAttention's
  // update). Row r (query q_rows[r], state acc + r * head_dim, row_max[r], row_sum[r]; start:
  // 0, -inf, 0) sees keys j < row_keys[r]:
  //   s_j = scale * dot(q, k_j), m' = max(m, s_j...), acc = acc * e^(m - m') + sum_j e^(s_j - m')
  //   v_j, sum = sum * e^(m - m') + sum_j e^(s_j - m'); m = m'.
  // Rows with row_keys[r] == 0 are left as they are. 0 <= row_keys[r] <= n_keys <=
  // kMaxAttentionTileKeys. A row's arithmetic depends only on its own query, the keys it sees
  // and its state: never on the other rows passed with it or on n_keys, so a token attended in a
  // batch and alone gets the same bits.
  // Weights below e^-64 are dropped: they cannot move a sum that holds e^0 = 1, and skipping
  // them keeps denormal products (which stall x86 FPUs) out of the loop.
  // K and V rows hold head_dim elements of the cache's KvType: one entry per type, the same
  // arithmetic on the rows' values widened to f32 (exact), so a cache type changes only what
  // was stored, never how it is attended.
  AttentionTileFn attention_tile_f32 = nullptr;
  AttentionTileFn attention_tile_f16 = nullptr;
  AttentionTileFn attention_tile_bf16 = nullptr;

  AttentionTileFn attention_tile_for(KvType type) const;
  VecDotFn dot_for(TensorType weight_type) const;
  MatDotFn mat_dot_for(TensorType weight_type) const;  // nullptr when the type has none
  // nullptr when the table has no packed kernel for the type.
  const PackedKernel* packed_for(TensorType weight_type) const;
  QuantizeActFn quantize_for(TensorType dot_type) const;  // nullptr for F32 (no conversion)
};

// Best kernels for this CPU.
const CpuKernels& select_cpu_kernels();
// Every implementation this CPU can run, scalar first (for tests and benchmarks).
std::vector<const CpuKernels*> available_cpu_kernels();

const CpuKernels& scalar_kernels();
// nullptr when the CPU (or the build) lacks the instruction set.
const CpuKernels* avx2_kernels();
const CpuKernels* avx512_kernels();

// Per-ISA table builders, defined in kernels_<isa>.cpp. Only select/available_cpu_kernels may
// call them, and only after cpu_features() confirms the instruction set: the AVX files are
// compiled for their ISA and may execute its instructions anywhere inside.
namespace detail {
void fill_scalar_kernels(CpuKernels& k);
// Overwrites every entry (requires the AVX2 path: AVX2 + FMA + F16C).
void fill_avx2_kernels(CpuKernels& k);
// Overwrites the float entries with AVX-512 F/BW/VL versions; the rest stay as they are.
void fill_avx512_float_kernels(CpuKernels& k);
// Sets the quantized dots and their packed GEMM (requires avx512vnni).
void fill_avx512_packed_kernels(CpuKernels& k);
}  // namespace detail

}  // namespace infergrid
