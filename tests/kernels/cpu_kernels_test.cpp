// Every entry of every SIMD kernel table against the scalar reference, over seeded random data
// and sizes chosen to hit each code path: one block, odd block counts (the 2-block unrolling),
// and float lengths that are not multiples of 8 or 16 (tails).
//
// Tolerances:
//  - quantizers: byte-exact.
//  - quantized dots on data whose every float step is exact (unit scales, small integers):
//    exactly equal, which proves the integer parts agree bit for bit.
//  - dots on realistic data: |simd - scalar| <= 2e-5 * sum_i |w_i x_i| (only summation order
//    differs; each float add contributes at most 2^-24 relative to that sum).
//  - elementwise ops: 1e-6 relative (axpy: FMA vs mul+add), 1e-5 for rms_norm, 2e-6 plus an
//    absolute 1e-30 for swiglu (vector exp is within ~2 ulp); scale is exact.
#include "kernels/cpu_kernels.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16.h"
#include "core/fp16_rows.h"
#include "kernel_test_util.h"
#include "kernels/cpu_backend.h"
#include "kernels/packed_weights.h"
#include "kernels/quant.h"

namespace infergrid {
namespace {

constexpr KvType kAllKvTypes[] = {KvType::kF32, KvType::kF16, KvType::kBF16};

// K or V rows as a cache of `type` holds them: the stored bytes, the f32 values they stand for
// (what a reference must compute with) and one pointer per row.
struct StoredKvRows {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  std::vector<const void*> rows;
};

StoredKvRows store_kv_rows(const std::vector<float>& x, int n_rows, int dim, KvType type) {
  StoredKvRows s;
  const size_t row_bytes = static_cast<size_t>(dim) * kv_type_bytes(type);
  s.bytes.resize(row_bytes * n_rows);
  s.values.resize(x.size());
  for (int j = 0; j < n_rows; ++j) {
    f32_to_kv_row(x.data() + j * dim, s.bytes.data() + j * row_bytes, type, dim);
    kv_to_f32_row(s.bytes.data() + j * row_bytes, type, s.values.data() + j * dim, dim);
    s.rows.push_back(s.bytes.data() + j * row_bytes);
  }
  return s;
}

constexpr double kDotRelTol = 2e-5;

const CpuKernels* table_named(const std::string& name) {
  if (name == "avx2") return avx2_kernels();
  if (name == "avx512") return avx512_kernels();
  return nullptr;
}

class SimdKernels : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    k_ = table_named(GetParam());
    if (k_ == nullptr) {
      GTEST_SKIP() << "CPU lacks the " << GetParam()
                   << " path (detected: " << cpu_features().describe()
                   << "); its kernels are compiled but not run";
    }
  }
  const CpuKernels& ref() const { return scalar_kernels(); }
  const CpuKernels* k_ = nullptr;
};

// Byte offsets of a block's fp16 scale fields (d, and the min scale where the type has one).
std::vector<size_t> half_scale_offsets(TensorType type) {
  switch (type) {
    case TensorType::kQ4_0:
    case TensorType::kQ8_0:
    case TensorType::kQ5_0:
    case TensorType::kIQ4_NL:
    case TensorType::kIQ4_XS:
      return {0};
    case TensorType::kQ4_1:
    case TensorType::kQ5_1:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
      return {0, 2};
    case TensorType::kQ6_K:
      return {offsetof(BlockQ6_K, d)};
    case TensorType::kQ3_K:
      return {offsetof(BlockQ3_K, d)};
    case TensorType::kQ2_K:
      return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    default:
      return {};
  }
}

// Sets every block's fp16 scales of a weight row to `value`.
void set_half_scales(TensorType type, std::vector<uint8_t>& w, float value) {
  const uint16_t h = fp32_to_fp16(value);
  const size_t bytes = tensor_type_traits(type)->block_bytes;
  for (size_t off = 0; off < w.size(); off += bytes) {
    for (size_t field : half_scale_offsets(type)) std::memcpy(w.data() + off + field, &h, 2);
  }
}

// A weight row of `type`: random bytes (every bit pattern of quants and sub-scales) with sane
// block scales, so the test covers encodings the quantizer might never produce.
std::vector<uint8_t> random_weights(TensorType type, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> w = test::random_bytes(tensor_row_bytes(type, n), rng);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  const size_t bytes = tensor_type_traits(type)->block_bytes;
  for (size_t off = 0; off < w.size(); off += bytes) {
    for (size_t field : half_scale_offsets(type)) {
      const uint16_t h = fp32_to_fp16(scale(rng));
      std::memcpy(w.data() + off + field, &h, 2);
    }
  }
  return w;
}

// Activations in the weight type's dot type, quantized by the scalar reference.
std::vector<uint8_t> activations(TensorType weight_type, const std::vector<float>& x) {
  const TensorType dot_type = tensor_type_traits(weight_type)->dot_type;
  std::vector<uint8_t> out(tensor_row_bytes(dot_type, static_cast<int64_t>(x.size())));
  quantize_row(dot_type, x.data(), out.data(), static_cast<int64_t>(x.size()));
  return out;
}

// sum |w_i x_i| from the dequantized rows, in double: the scale of a dot's rounding error.
double abs_dot(TensorType weight_type, const std::vector<uint8_t>& w, const std::vector<uint8_t>& x,
               int64_t n) {
  std::vector<float> wf(n), xf(n);
  dequantize_row(weight_type, w.data(), wf.data(), n);
  dequantize_row(tensor_type_traits(weight_type)->dot_type, x.data(), xf.data(), n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(wf[i]) * xf[i]);
  return s;
}

const TensorType kQuantTypes[] = {TensorType::kQ4_0, TensorType::kQ8_0, TensorType::kQ4_1,
                                  TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kIQ4_NL,
                                  TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K,
                                  TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_XS};
const TensorType kFloatTypes[] = {TensorType::kF32, TensorType::kF16, TensorType::kBF16};

std::vector<int64_t> block_counts() {
  return {1, 2, 3, 5, 7, 8, 9, 16, 17, 33};
}

TEST_P(SimdKernels, QuantizedDotsMatchReference) {
  std::mt19937 rng(test::kSeed);
  for (TensorType type : kQuantTypes) {
    const int64_t block = tensor_type_traits(type)->block_elems;
    for (int64_t blocks : block_counts()) {
      const int64_t n = blocks * block;
      const std::vector<uint8_t> w = random_weights(type, n, rng);
      const std::vector<uint8_t> x = activations(type, test::random_floats(n, rng));
      const float want = ref().dot_for(type)(n, w.data(), x.data());
      const float got = k_->dot_for(type)(n, w.data(), x.data());
      EXPECT_TRUE(test::close(got, want, abs_dot(type, w, x, n), kDotRelTol))
          << tensor_type_traits(type)->name << " n=" << n << " got " << got << " want " << want;
    }
  }
}

// Unit block scales and small values keep every partial sum an exactly representable integer,
// so any difference would be an integer-arithmetic bug, not rounding.
TEST_P(SimdKernels, QuantizedDotsAreIntegerExact) {
  std::mt19937 rng(test::kSeed + 1);
  std::uniform_int_distribution<int> small(-9, 9);
  const uint16_t one = fp32_to_fp16(1.0f);
  for (TensorType type : kQuantTypes) {
    const int64_t n = 16 * tensor_type_traits(type)->block_elems;
    std::vector<uint8_t> w = random_weights(type, n, rng);
    std::vector<uint8_t> x(tensor_row_bytes(tensor_type_traits(type)->dot_type, n));
    set_half_scales(type, w, 1.0f);
    if (tensor_type_traits(type)->dot_type == TensorType::kQ8_0) {
      auto* xb = reinterpret_cast<BlockQ8_0*>(x.data());
      for (int64_t b = 0; b < n / kQK8_0; ++b) {
        xb[b].d = one;
        for (int8_t& v : xb[b].qs) v = static_cast<int8_t>(small(rng));
      }
    } else {
      auto* xb = reinterpret_cast<BlockQ8_K*>(x.data());
      for (int64_t b = 0; b < n / kQK_K; ++b) {
        xb[b].d = 1.0f;
        for (int8_t& v : xb[b].qs) v = static_cast<int8_t>(small(rng));
        for (int j = 0; j < 16; ++j) {
          int sum = 0;
          for (int l = 0; l < 16; ++l) sum += xb[b].qs[16 * j + l];
          xb[b].bsums[j] = static_cast<int16_t>(sum);
        }
      }
    }
    const float want = ref().dot_for(type)(n, w.data(), x.data());
    const float got = k_->dot_for(type)(n, w.data(), x.data());
    EXPECT_EQ(got, want) << tensor_type_traits(type)->name;
    EXPECT_EQ(want, std::round(want)) << "test data should give an integer";
  }
}

// Largest-magnitude codes everywhere: would expose any i16 saturation in maddubs chains.
TEST_P(SimdKernels, QuantizedDotsDoNotSaturate) {
  for (TensorType type : kQuantTypes) {
    const int64_t n = 4 * tensor_type_traits(type)->block_elems;
    for (int sign : {1, -1}) {
      std::vector<float> xf(n, 127.0f * sign);
      for (int64_t i = 0; i < n; i += 3) xf[i] = -xf[i];
      const std::vector<uint8_t> x = activations(type, xf);
      std::vector<uint8_t> w(tensor_row_bytes(type, n), 0xFF);  // all-ones codes and scales
      if (type == TensorType::kQ8_0) {
        for (size_t off = 2; off < w.size(); off += sizeof(BlockQ8_0)) {
          std::memset(w.data() + off, 0x80, kQK8_0);  // -128, the one asymmetric code
        }
      }
      set_half_scales(type, w, 0.01f);
      const size_t bytes = tensor_type_traits(type)->block_bytes;
      for (size_t off = 0; off < w.size(); off += bytes) {
        if (type == TensorType::kQ6_K) {
          std::memset(w.data() + off + offsetof(BlockQ6_K, scales), 0x80, 16);  // scale -128
        }
        if (type == TensorType::kQ3_K) {
          // Codes -4 (high bits clear) at scale -32 (stored 0): Q3_K's largest products.
          std::memset(w.data() + off + offsetof(BlockQ3_K, hmask), 0, kQK_K / 8);
          std::memset(w.data() + off + offsetof(BlockQ3_K, scales), 0, kKScaleBytes);
        }
        if (type == TensorType::kIQ4_XS) {
          // Level -127 (code 0) at scale -32 (stored 0).
          std::memset(w.data() + off + offsetof(BlockIQ4_XS, scales_h), 0, 6);
          std::memset(w.data() + off + offsetof(BlockIQ4_XS, qs), 0, kQK_K / 2);
        }
        if (type == TensorType::kIQ4_NL) std::memset(w.data() + off + 2, 0, kQK4_NL / 2);
      }
      const float want = ref().dot_for(type)(n, w.data(), x.data());
      const float got = k_->dot_for(type)(n, w.data(), x.data());
      EXPECT_TRUE(test::close(got, want, abs_dot(type, w, x, n), kDotRelTol))
          << tensor_type_traits(type)->name << " sign " << sign << " got " << got << " want "
          << want;
    }
  }
}

TEST_P(SimdKernels, FloatDotsMatchReference) {
  std::mt19937 rng(test::kSeed + 2);
  for (TensorType type : kFloatTypes) {
    for (int64_t n : {1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 1000, 4097}) {
      const std::vector<float> wf = test::random_floats(n, rng);
      std::vector<uint8_t> w(tensor_row_bytes(type, n));
      quantize_row(type, wf.data(), w.data(), n);
      const std::vector<float> x = test::random_floats(n, rng);
      const float want = ref().dot_for(type)(n, w.data(), x.data());
      const float got = k_->dot_for(type)(n, w.data(), x.data());
      std::vector<float> wd(n);
      dequantize_row(type, w.data(), wd.data(), n);
      double scale = 0;
      for (int64_t i = 0; i < n; ++i) scale += std::fabs(static_cast<double>(wd[i]) * x[i]);
      EXPECT_TRUE(test::close(got, want, scale, kDotRelTol))
          << tensor_type_traits(type)->name << " n=" << n << " got " << got << " want " << want;
    }
  }
}

TEST_P(SimdKernels, ActivationQuantizersAreByteExact) {
  std::mt19937 rng(test::kSeed + 3);
  for (TensorType dot_type : {TensorType::kQ8_0, TensorType::kQ8_K}) {
    const int64_t block = tensor_type_traits(dot_type)->block_elems;
    for (int64_t blocks : block_counts()) {
      const int64_t n = blocks * block;
      std::vector<float> x = test::random_floats(n, rng, blocks % 2 ? 1.0f : 1e-3f);
      // Exact ties for the rounding rules and repeated extremes of both signs.
      x[0] = 0.0f;
      if (n > 40) {
        x[3] = -x[7];
        x[9] = 63.5f * (x[7] != 0.0f ? std::fabs(x[7]) / 127.0f : 1.0f);
      }
      if (blocks == 3) std::fill(x.begin(), x.begin() + block, 0.0f);  // an all-zero block
      std::vector<uint8_t> want(tensor_row_bytes(dot_type, n)), got(want.size(), 0xAB);
      ref().quantize_for(dot_type)(x.data(), want.data(), n);
      k_->quantize_for(dot_type)(x.data(), got.data(), n);
      EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size()), 0)
          << tensor_type_traits(dot_type)->name << " n=" << n;
    }
  }
}

// Every element exactly half-way between two levels, to pin Q8_0's round-half-away rule.
TEST_P(SimdKernels, Q8_0QuantizerRoundsTiesLikeReference) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = (i % 2 ? -1.0f : 1.0f) * (0.5f + static_cast<float>(i % 32));
  x[31] = 127.0f;  // amax = 127 makes d = 1, so x * id is the tie itself
  x[63] = -127.0f;
  std::vector<BlockQ8_0> want(2), got(2);
  ref().quantize_q8_0(x.data(), want.data(), 64);
  k_->quantize_q8_0(x.data(), got.data(), 64);
  EXPECT_EQ(std::memcmp(want.data(), got.data(), sizeof(BlockQ8_0) * 2), 0);
  EXPECT_EQ(want[0].qs[0], 1);   // 0.5 -> 1 (away from zero)
  EXPECT_EQ(want[0].qs[1], -2);  // -1.5 -> -2
}

class FloatOps : public SimdKernels {};

const int64_t kFloatLengths[] = {1, 7, 31, 33, 1000, 4097};
constexpr int kGuard = 16;  // sentinel floats after each output, which must stay untouched
constexpr float kSentinel = -12345.0f;

void expect_guard_intact(const std::vector<float>& y, int64_t n) {
  for (int i = 0; i < kGuard; ++i) ASSERT_EQ(y[n + i], kSentinel) << "wrote past n=" << n;
}

TEST_P(FloatOps, DotF32F32) {
  std::mt19937 rng(test::kSeed + 4);
  for (int64_t n : kFloatLengths) {
    const std::vector<float> a = test::random_floats(n, rng), b = test::random_floats(n, rng);
    double scale = 0;
    for (int64_t i = 0; i < n; ++i) scale += std::fabs(static_cast<double>(a[i]) * b[i]);
    EXPECT_TRUE(test::close(k_->dot_f32_f32(a.data(), b.data(), n),
                            ref().dot_f32_f32(a.data(), b.data(), n), scale, kDotRelTol))
        << n;
  }
}

TEST_P(FloatOps, AxpyAndScale) {
  std::mt19937 rng(test::kSeed + 5);
  for (int64_t n : kFloatLengths) {
    const std::vector<float> x = test::random_floats(n, rng);
    std::vector<float> y0 = test::random_floats(n, rng);
    y0.resize(n + kGuard, kSentinel);
    std::vector<float> want = y0, got = y0;
    ref().axpy(0.37f, x.data(), want.data(), n);
    k_->axpy(0.37f, x.data(), got.data(), n);
    expect_guard_intact(got, n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(test::close(got[i], want[i], std::fabs(y0[i]) + std::fabs(0.37f * x[i]), 1e-6))
          << "axpy n=" << n << " i=" << i;
    }
    want = y0;
    got = y0;
    ref().scale(-1.7f, want.data(), n);
    k_->scale(-1.7f, got.data(), n);
    expect_guard_intact(got, n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], want[i]) << "scale n=" << n << " i=" << i;
  }
}

TEST_P(FloatOps, RmsNorm) {
  std::mt19937 rng(test::kSeed + 6);
  for (int64_t n : kFloatLengths) {
    const std::vector<float> x = test::random_floats(n, rng), w = test::random_floats(n, rng);
    std::vector<float> want(n + kGuard, kSentinel), got(n + kGuard, kSentinel);
    ref().rms_norm(x.data(), w.data(), want.data(), n, 1e-6f);
    k_->rms_norm(x.data(), w.data(), got.data(), n, 1e-6f);
    expect_guard_intact(got, n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(test::close(got[i], want[i], std::fabs(want[i]), 1e-5)) << n << " " << i;
    }
  }
}

TEST_P(FloatOps, Swiglu) {
  std::mt19937 rng(test::kSeed + 7);
  for (int64_t n : kFloatLengths) {
    std::vector<float> g = test::random_floats(n, rng, 4.0f);
    const std::vector<float> u = test::random_floats(n, rng);
    // Saturation regions of the sigmoid and the exp clamp.
    const float specials[] = {0.0f, -0.0f, 1e-20f, -30.0f, 30.0f, -87.5f, 88.0f, -100.0f, 100.0f};
    for (size_t i = 0; i < std::size(specials) && static_cast<int64_t>(i) < n; ++i) {
      g[static_cast<size_t>(n) - 1 - i] = specials[i];
    }
    std::vector<float> want(n + kGuard, kSentinel), got(n + kGuard, kSentinel);
    ref().swiglu(g.data(), u.data(), want.data(), n);
    k_->swiglu(g.data(), u.data(), got.data(), n);
    expect_guard_intact(got, n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(test::close(got[i], want[i], std::fabs(want[i]), 2e-6, 1e-30))
          << "n=" << n << " g=" << g[i] << " got " << got[i] << " want " << want[i];
    }
  }
}

// Three successive tiles through the online-softmax state, for five query rows that see
// different numbers of the tile's keys (all, none, one, a few, all but one), at head sizes with
// and without a tail of 8 and at 1..64 keys; a large scale pushes some weights under the e^-64
// cut.
// Tolerance, relative to the row's weight sum: 1e-5 (exps differ by ~2 ulp) plus the rounding of
// the scores, which lands in the exponent: 2^-21 * scale * sum_i |q_i k_i| (dots differ only in
// summation order); that rounding is also the absolute tolerance of the running max.
// Every cache type: K and V are rounded to it first, and the tolerance is taken on the values
// stored.
TEST_P(FloatOps, AttentionTile) {
  std::mt19937 rng(test::kSeed + 8);
  constexpr int kRows = 5;
  for (const KvType type : kAllKvTypes) {
    for (int head_dim : {8, 20, 32, 64, 67, 128}) {
      for (int n_keys : {1, 3, 4, 7, 8, 13, 16, 33, kMaxAttentionTileKeys}) {
        for (float scale : {0.17f, 12.0f}) {
          const int row_keys[kRows] = {n_keys, 0, 1, std::min(n_keys, 5), std::max(n_keys - 1, 0)};
          const std::vector<float> q = test::random_floats(kRows * head_dim, rng);
          std::vector<const float*> q_rows;
          for (int r = 0; r < kRows; ++r) q_rows.push_back(q.data() + r * head_dim);
          std::vector<float> acc_want(kRows * head_dim, 0.0f), acc_got(acc_want);
          std::vector<float> max_want(kRows, -INFINITY), max_got(max_want);
          std::vector<float> sum_want(kRows, 0.0f), sum_got(sum_want);
          std::vector<double> rel(kRows, 0.0), score_error(kRows, 0.0);
          for (int tile = 0; tile < 3; ++tile) {
            const StoredKvRows k_stored = store_kv_rows(
                                   test::random_floats(int64_t{n_keys} * head_dim, rng), n_keys,
                                   head_dim, type),
                               v_stored = store_kv_rows(
                                   test::random_floats(int64_t{n_keys} * head_dim, rng), n_keys,
                                   head_dim, type);
            const std::vector<float>& k = k_stored.values;
            for (int j = 0; j < n_keys; ++j) {
              for (int r = 0; r < kRows; ++r) {
                if (j >= row_keys[r]) continue;
                double terms = 0;
                for (int i = 0; i < head_dim; ++i) {
                  terms += std::fabs(q[r * head_dim + i] * k[j * head_dim + i]);
                }
                score_error[r] = std::max(score_error[r], std::ldexp(scale * terms, -21));
                rel[r] = std::max(rel[r], 1e-5 + score_error[r]);
              }
            }
            ref().attention_tile_for(type)(q_rows.data(), row_keys, kRows, k_stored.rows.data(),
                                           v_stored.rows.data(), n_keys, head_dim, scale,
                                           acc_want.data(), max_want.data(), sum_want.data());
            k_->attention_tile_for(type)(q_rows.data(), row_keys, kRows, k_stored.rows.data(),
                                         v_stored.rows.data(), n_keys, head_dim, scale,
                                         acc_got.data(), max_got.data(), sum_got.data());
            for (int r = 0; r < kRows; ++r) {
              const std::string where =
                  std::string(kv_type_name(type)) + " head_dim " + std::to_string(head_dim) +
                  " keys " + std::to_string(n_keys) + " scale " + std::to_string(scale) + " tile " +
                  std::to_string(tile) + " row " + std::to_string(r);
              if (row_keys[r] == 0) {
                ASSERT_EQ(max_got[r], -INFINITY) << where;
                ASSERT_EQ(sum_got[r], 0.0f) << where;
                for (int i = 0; i < head_dim; ++i) ASSERT_EQ(acc_got[r * head_dim + i], 0.0f);
                continue;
              }
              ASSERT_TRUE(test::close(max_got[r], max_want[r], std::fabs(max_want[r]), 1e-5,
                                      score_error[r]))
                  << where;
              ASSERT_TRUE(test::close(sum_got[r], sum_want[r], sum_want[r], rel[r])) << where;
              for (int i = 0; i < head_dim; ++i) {
                ASSERT_TRUE(test::close(acc_got[r * head_dim + i], acc_want[r * head_dim + i],
                                        sum_want[r], rel[r]))
                    << where << " i " << i << ": " << acc_got[r * head_dim + i] << " vs "
                    << acc_want[r * head_dim + i] << " sum " << sum_want[r];
              }
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tables, SimdKernels, testing::Values("avx2", "avx512"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Tables, FloatOps, testing::Values("avx2", "avx512"),
                         [](const auto& info) { return info.param; });

// y (n_x rows of y_stride) holds, at (c, r) for r < n_w, exactly dot(row r of w, row c of x),
// and kSentinel past n_w (nothing written outside the tile).
testing::AssertionResult tile_matches_vec_dot(const std::vector<float>& y, int64_t y_stride,
                                              int64_t n_w, int64_t n_x, VecDotFn dot, int64_t n,
                                              const uint8_t* w, size_t w_row, const uint8_t* x,
                                              size_t x_row) {
  for (int64_t c = 0; c < n_x; ++c) {
    for (int64_t r = 0; r < y_stride; ++r) {
      const float got = y[c * y_stride + r];
      if (r >= n_w) {
        if (got != kSentinel) {
          return testing::AssertionFailure()
                 << "wrote outside the tile at (" << r << "," << c << ")";
        }
        continue;
      }
      const float want = dot(n, w + r * w_row, x + c * x_row);
      if (got != want) {
        return testing::AssertionFailure()
               << "at (" << r << "," << c << "): " << got << " != vec_dot " << want;
      }
    }
  }
  return testing::AssertionSuccess();
}

// Every tile shape (decode 4x1 tiles, prefill 2xC tiles, and every remainder) must give each
// output bit for bit as the same table's vec_dot does: the model's batched and one-token paths
// rely on it. The vec_dot itself is checked against the scalar reference above.
TEST(CpuKernels, MatDotTilesMatchVecDotExactly) {
  std::mt19937 rng(test::kSeed + 8);
  for (const CpuKernels* k : available_cpu_kernels()) {
    for (TensorType type : kQuantTypes) {
      const MatDotFn mat_dot = k->mat_dot_for(type);
      if (mat_dot == nullptr) continue;
      const VecDotFn dot = k->dot_for(type);
      const TensorType dot_type = tensor_type_traits(type)->dot_type;
      for (int64_t blocks : {1, 2, 3, 17}) {
        const int64_t n = blocks * tensor_type_traits(type)->block_elems;
        const size_t w_row = tensor_row_bytes(type, n), x_row = tensor_row_bytes(dot_type, n);
        for (int64_t n_w : {1, 2, 3, 4, 5, 7, 9, 16, 33}) {
          for (int64_t n_x : {1, 2, 3, 4, 5, 6, 9}) {
            const std::vector<uint8_t> w = random_weights(type, n * n_w, rng);
            const std::vector<uint8_t> x = activations(type, test::random_floats(n * n_x, rng));
            const int64_t y_stride = n_w + 3;
            std::vector<float> y(static_cast<size_t>(y_stride * n_x), kSentinel);
            mat_dot(n, w.data(), w_row, n_w, x.data(), x_row, n_x, y.data(), y_stride);
            ASSERT_TRUE(tile_matches_vec_dot(y, y_stride, n_w, n_x, dot, n, w.data(), w_row,
                                             x.data(), x_row))
                << k->name << " " << tensor_type_traits(type)->name << " n=" << n << " tile " << n_w
                << "x" << n_x;
          }
        }
      }
    }
  }
}

// The packed integer GEMM against the same table's plain-row dot, bit for bit, for every tile
// shape (1..9 and 17 activation rows: the 8-row tiles and every remainder) and group count;
// then whole matrices through CpuBackend::matmul, packed and plain, with a row count that
// leaves a partial group (read plain), one token and many.
TEST(CpuKernels, PackedGemmMatchesPlainDotExactly) {
  std::mt19937 rng(test::kSeed + 10);
  int tables_with_packing = 0;
  for (const CpuKernels* k : available_cpu_kernels()) {
    for (TensorType type : {TensorType::kQ4_0, TensorType::kQ8_0, TensorType::kQ4_K,
                            TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_XS,
                            TensorType::kQ3_K, TensorType::kIQ4_NL, TensorType::kQ5_0}) {
      const PackedKernel* packed = k->packed_for(type);
      if (packed == nullptr) continue;
      ++tables_with_packing;
      const VecDotFn dot = k->dot_for(type);
      const TensorType dot_type = tensor_type_traits(type)->dot_type;
      const int64_t block_elems = tensor_type_traits(type)->block_elems;
      for (int64_t blocks : {1, 2, 3, 17}) {
        const int64_t n = blocks * block_elems;
        const size_t w_row = tensor_row_bytes(type, n), x_row = tensor_row_bytes(dot_type, n);
        for (int64_t n_groups : {1, 3}) {
          const int64_t n_w = n_groups * kPackedRowGroup;
          const std::vector<uint8_t> w = random_weights(type, n * n_w, rng);
          MatrixView view{type, w.data(), n, n_w, w_row};
          const AlignedBuffer<uint8_t> storage = pack_weights_for(*k, view);
          ASSERT_EQ(view.packed_rows, n_w);
          ASSERT_EQ(storage.size(), packed->group_bytes(n) * n_groups);
          for (int64_t n_x : {1, 2, 3, 4, 5, 7, 8, 9, 17}) {
            const std::vector<uint8_t> x = activations(type, test::random_floats(n * n_x, rng));
            const int64_t per_row = packed->sums_per_row(n);
            std::vector<int32_t> sums(static_cast<size_t>(n_x * per_row));
            for (int64_t c = 0; c < n_x; ++c) {
              packed->act_sums(x.data() + c * x_row, n, sums.data() + c * per_row);
            }
            const int64_t y_stride = n_w + 5;
            std::vector<float> y(static_cast<size_t>(y_stride * n_x), kSentinel);
            packed->mat_dot(n, view.packed, n_groups, x.data(), x_row, sums.data(), n_x, y.data(),
                            y_stride);
            ASSERT_TRUE(tile_matches_vec_dot(y, y_stride, n_w, n_x, dot, n, w.data(), w_row,
                                             x.data(), x_row))
                << k->name << " " << tensor_type_traits(type)->name << " n=" << n << " groups "
                << n_groups << " x " << n_x;
          }
        }
      }
      // Whole matrices: 16 * 3 + 5 rows, packed against plain, and against the scalar table.
      const int64_t n = 9 * block_elems, n_rows = 3 * kPackedRowGroup + 5;
      const std::vector<uint8_t> w = random_weights(type, n * n_rows, rng);
      const MatrixView plain{type, w.data(), n, n_rows, tensor_row_bytes(type, n)};
      MatrixView packed_view = plain;
      const AlignedBuffer<uint8_t> storage = pack_weights_for(*k, packed_view);
      ASSERT_EQ(packed_view.packed_rows, 3 * kPackedRowGroup);
      CpuBackend backend(2, k), reference(1, &scalar_kernels());
      for (int64_t n_tokens : {1, 3, 20}) {
        const std::vector<float> x = test::random_floats(n * n_tokens, rng);
        std::vector<float> y_packed(n_rows * n_tokens), y_plain(n_rows * n_tokens),
            y_ref(n_rows * n_tokens);
        backend.matmul(packed_view, x.data(), n_tokens, y_packed.data());
        backend.matmul(plain, x.data(), n_tokens, y_plain.data());
        reference.matmul(plain, x.data(), n_tokens, y_ref.data());
        for (size_t i = 0; i < y_plain.size(); ++i) {
          ASSERT_EQ(y_packed[i], y_plain[i]) << k->name << " tokens " << n_tokens << " i " << i;
          ASSERT_NEAR(y_packed[i], y_ref[i], 1e-3 * (1 + std::fabs(y_ref[i]))) << k->name;
        }
        // One token alone gives the same bits as that token within the batch.
        std::vector<float> y_one(n_rows);
        backend.matmul(packed_view, x.data() + (n_tokens - 1) * n, 1, y_one.data());
        for (int64_t r = 0; r < n_rows; ++r) {
          ASSERT_EQ(y_one[r], y_packed[(n_tokens - 1) * n_rows + r]) << k->name << " row " << r;
        }
      }
    }
  }
  if (cpu_features().avx512vnni && cpu_features().has_avx512_path()) {
    EXPECT_EQ(tables_with_packing, 9) << "the AVX-512 VNNI table packs Q4_0, Q5_0, Q8_0, IQ4_NL, "
                                         "Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS";
  }
}

// A table whose packed layout differs from a view's (here: any table without packing, given a
// view packed by one that has it) must read the plain rows.
TEST(CpuKernels, BackendIgnoresAPackedLayoutItCannotRead) {
  const CpuKernels* packing = nullptr;
  for (const CpuKernels* k : available_cpu_kernels()) {
    if (k->packed_for(TensorType::kQ4_0) != nullptr) packing = k;
  }
  if (packing == nullptr) GTEST_SKIP() << "no table on this CPU packs weights";
  std::mt19937 rng(test::kSeed + 11);
  const int64_t n = 4 * kQK8_0, n_rows = 2 * kPackedRowGroup;
  const std::vector<uint8_t> w = random_weights(TensorType::kQ4_0, n * n_rows, rng);
  const MatrixView plain{TensorType::kQ4_0, w.data(), n, n_rows,
                         tensor_row_bytes(TensorType::kQ4_0, n)};
  MatrixView packed_view = plain;
  const AlignedBuffer<uint8_t> storage = pack_weights_for(*packing, packed_view);
  const std::vector<float> x = test::random_floats(n * 2, rng);
  CpuBackend scalar(1, &scalar_kernels());
  std::vector<float> a(n_rows * 2), b(n_rows * 2);
  scalar.matmul(plain, x.data(), 2, a.data());
  scalar.matmul(packed_view, x.data(), 2, b.data());
  EXPECT_EQ(a, b);
}

// Kernel selection probes the CPU and runs instructions the probe allowed; a wrong probe (an
// instruction set the CPU or OS does not really enable, as AMX is in some VMs) kills the
// process with SIGILL or SIGSEGV. The selection and one call of every entry of every table run
// in a fresh child process (the parent's tables are already built), so such a probe fails this
// test instead of a server.
TEST(CpuKernelsChild, DISABLED_SelectAndRunEveryEntry) {
  const CpuKernels& selected = select_cpu_kernels();
  std::mt19937 rng(test::kSeed + 12);
  for (const CpuKernels* k : available_cpu_kernels()) {
    for (TensorType type : kWeightTensorTypes) {
      const int64_t n = 256, n_rows = kPackedRowGroup + 1;
      std::vector<uint8_t> w = random_weights(type, n * n_rows, rng);
      if (tensor_type_traits(type)->block_elems == 1) {  // float types: random bytes hold NaNs
        quantize_row(type, test::random_floats(n * n_rows, rng).data(), w.data(), n * n_rows);
      }
      MatrixView view{type, w.data(), n, n_rows, tensor_row_bytes(type, n)};
      const AlignedBuffer<uint8_t> storage = pack_weights_for(*k, view);
      CpuBackend backend(2, k);
      const std::vector<float> x = test::random_floats(n * 3, rng);
      std::vector<float> y(n_rows * 3);
      backend.matmul(view, x.data(), 3, y.data());
      backend.matmul(view, x.data(), 1, y.data());
      for (float v : y) ASSERT_TRUE(std::isfinite(v)) << k->name;
    }
    std::vector<float> a = test::random_floats(100, rng), b = test::random_floats(100, rng);
    k->rms_norm(a.data(), b.data(), a.data(), 100, 1e-5f);
    k->swiglu(a.data(), b.data(), a.data(), 100);
    k->axpy(0.5f, b.data(), a.data(), 100);
    k->scale(0.5f, a.data(), 100);
    ASSERT_TRUE(std::isfinite(k->dot_f32_f32(a.data(), b.data(), 100)));
  }
  std::printf("selected %s\n", selected.name.c_str());
}

TEST(CpuKernels, SelectionAndEveryEntryRunCleanlyInAFreshProcess) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execl("/proc/self/exe", "/proc/self/exe", "--gtest_also_run_disabled_tests",
          "--gtest_filter=CpuKernelsChild.DISABLED_SelectAndRunEveryEntry", nullptr);
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status))
      << "kernel selection killed the process with signal " << WTERMSIG(status) << " ("
      << strsignal(WTERMSIG(status)) << ") on a CPU with: " << cpu_features().describe();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's kernel run failed (127: exec failed)";
}

TEST(CpuKernels, DispatchPicksTheBestAvailableTable) {
  const std::vector<const CpuKernels*> tables = available_cpu_kernels();
  ASSERT_FALSE(tables.empty());
  EXPECT_EQ(tables.front(), &scalar_kernels());
  EXPECT_EQ(&select_cpu_kernels(), tables.back());
  const CpuFeatures& f = cpu_features();
  EXPECT_EQ(avx2_kernels() != nullptr, f.has_avx2_path());
  EXPECT_EQ(avx512_kernels() != nullptr, f.has_avx512_path());
  for (const CpuKernels* k : tables) {
    for (TensorType t : kWeightTensorTypes) {
      EXPECT_NE(k->dot_for(t), nullptr) << k->name << " " << tensor_type_traits(t)->name;
    }
    EXPECT_NE(k->quantize_for(TensorType::kQ8_0), nullptr);
    EXPECT_NE(k->quantize_for(TensorType::kQ8_K), nullptr);
    EXPECT_EQ(k->quantize_for(TensorType::kF32), nullptr);
    EXPECT_TRUE(k->dot_f32_f32 && k->axpy && k->scale && k->rms_norm && k->swiglu) << k->name;
    for (const KvType type : kAllKvTypes) {
      EXPECT_NE(k->attention_tile_for(type), nullptr) << k->name << " " << kv_type_name(type);
    }
  }
}

// A token attended alone (decode) and the same token among other rows of a larger tile
// (prefill, batched decode) must get the same bits from every table: the model's batched and
// one-token paths rely on it. Each row is run alone, over exactly its visible keys, and then
// with the other rows in one call over the whole tile, in both orders.
TEST(CpuKernels, AttentionTileRowsMatchAloneExactly) {
  std::mt19937 rng(test::kSeed + 9);
  for (const CpuKernels* k : available_cpu_kernels()) {
    for (const KvType type : kAllKvTypes) {
      for (int head_dim : {8, 32, 40, 64, 67, 128}) {
        constexpr int kRows = 7;
        constexpr int kKeys = 29;
        const int row_keys[kRows] = {kKeys, 3, 0, 17, kKeys, 1, 16};
        const std::vector<float> q = test::random_floats(kRows * head_dim, rng);
        const StoredKvRows keys =
            store_kv_rows(test::random_floats(kKeys * head_dim, rng), kKeys, head_dim, type);
        const StoredKvRows values =
            store_kv_rows(test::random_floats(kKeys * head_dim, rng), kKeys, head_dim, type);
        // Two tiles, so the running state (max, sum, rescaled accumulator) is carried too.
        const auto run = [&](const std::vector<int>& rows, std::vector<float>& acc,
                             std::vector<float>& row_max, std::vector<float>& row_sum, bool alone) {
          std::vector<const float*> q_rows;
          std::vector<int> visible;
          for (int r : rows) {
            q_rows.push_back(q.data() + r * head_dim);
            visible.push_back(row_keys[r]);
          }
          const int n = static_cast<int>(rows.size());
          const int n_keys = alone ? std::max(visible[0], 1) : kKeys;
          for (float scale : {0.2f, 3.0f}) {
            k->attention_tile_for(type)(q_rows.data(), visible.data(), n, keys.rows.data(),
                                        values.rows.data(), n_keys, head_dim, scale, acc.data(),
                                        row_max.data(), row_sum.data());
          }
        };
        std::vector<float> acc_alone(kRows * head_dim, 0.0f), max_alone(kRows, -INFINITY),
            sum_alone(kRows, 0.0f);
        for (int r = 0; r < kRows; ++r) {
          std::vector<float> acc(head_dim, 0.0f), row_max(1, -INFINITY), row_sum(1, 0.0f);
          run({r}, acc, row_max, row_sum, true);
          std::copy(acc.begin(), acc.end(), acc_alone.begin() + r * head_dim);
          max_alone[r] = row_max[0];
          sum_alone[r] = row_sum[0];
        }
        for (bool reversed : {false, true}) {
          std::vector<int> rows(kRows);
          for (int r = 0; r < kRows; ++r) rows[r] = reversed ? kRows - 1 - r : r;
          std::vector<float> acc(kRows * head_dim, 0.0f), row_max(kRows, -INFINITY),
              row_sum(kRows, 0.0f);
          run(rows, acc, row_max, row_sum, false);
          for (int i = 0; i < kRows; ++i) {
            const int r = rows[i];
            ASSERT_EQ(std::memcmp(&row_max[i], &max_alone[r], sizeof(float)), 0) << k->name;
            ASSERT_EQ(std::memcmp(&row_sum[i], &sum_alone[r], sizeof(float)), 0) << k->name;
            ASSERT_EQ(std::memcmp(acc.data() + i * head_dim, acc_alone.data() + r * head_dim,
                                  sizeof(float) * head_dim),
                      0)
                << k->name << " " << kv_type_name(type) << " head_dim " << head_dim << " row " << r;
          }
        }
      }
    }
  }
}

// A cache type changes what was stored, never how it is attended: every table's f16 and bf16
// tiles give, bit for bit, its f32 tile over the same values widened to f32.
TEST(CpuKernels, AttentionTileOfEachCacheTypeEqualsF32OnTheStoredValues) {
  std::mt19937 rng(test::kSeed + 10);
  for (const CpuKernels* k : available_cpu_kernels()) {
    for (const KvType type : {KvType::kF16, KvType::kBF16}) {
      for (int head_dim : {8, 20, 64, 67, 128}) {
        constexpr int kRows = 4, kKeys = 37;
        const int row_keys[kRows] = {kKeys, 1, 0, 20};
        const std::vector<float> q = test::random_floats(kRows * head_dim, rng);
        std::vector<const float*> q_rows;
        for (int r = 0; r < kRows; ++r) q_rows.push_back(q.data() + r * head_dim);
        const StoredKvRows keys =
            store_kv_rows(test::random_floats(kKeys * head_dim, rng), kKeys, head_dim, type);
        const StoredKvRows values =
            store_kv_rows(test::random_floats(kKeys * head_dim, rng), kKeys, head_dim, type);
        const StoredKvRows keys_f32 = store_kv_rows(keys.values, kKeys, head_dim, KvType::kF32);
        const StoredKvRows values_f32 = store_kv_rows(values.values, kKeys, head_dim, KvType::kF32);
        std::vector<float> acc(kRows * head_dim, 0.0f), row_max(kRows, -INFINITY),
            row_sum(kRows, 0.0f);
        std::vector<float> acc_f32(acc), max_f32(row_max), sum_f32(row_sum);
        k->attention_tile_for(type)(q_rows.data(), row_keys, kRows, keys.rows.data(),
                                    values.rows.data(), kKeys, head_dim, 0.3f, acc.data(),
                                    row_max.data(), row_sum.data());
        k->attention_tile_f32(q_rows.data(), row_keys, kRows, keys_f32.rows.data(),
                              values_f32.rows.data(), kKeys, head_dim, 0.3f, acc_f32.data(),
                              max_f32.data(), sum_f32.data());
        const std::string where = k->name + " " + std::string(kv_type_name(type)) + " head_dim " +
                                  std::to_string(head_dim);
        ASSERT_EQ(std::memcmp(acc.data(), acc_f32.data(), acc.size() * sizeof(float)), 0) << where;
        ASSERT_EQ(std::memcmp(row_max.data(), max_f32.data(), kRows * sizeof(float)), 0) << where;
        ASSERT_EQ(std::memcmp(row_sum.data(), sum_f32.data(), kRows * sizeof(float)), 0) << where;
        EXPECT_GT(row_sum[0], 0.0f) << where;
      }
    }
  }
}

}  // namespace
}  // namespace infergrid
