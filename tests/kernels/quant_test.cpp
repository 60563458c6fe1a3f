// Reference quantizers and dequantizers (kernels/quant.h): hand-built blocks pin each byte
// layout to known floats, round trips stay within each format's error bound, and Q8_K carries
// ggml's scale convention and consistent bsums.
#include "kernels/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernel_test_util.h"

namespace infergrid {
namespace {

TEST(Dequantize, Q4_0Layout) {
  BlockQ4_0 block;
  block.d = fp32_to_fp16(2.0f);
  for (int j = 0; j < 16; ++j) block.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float y[32];
  dequantize_row_q4_0(&block, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 2.0f) << j;            // low nibble: element j
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 2.0f) << j;  // high nibble: element j + 16
  }
}

TEST(Dequantize, Q8_0Layout) {
  BlockQ8_0 block;
  block.d = fp32_to_fp16(0.5f);
  for (int j = 0; j < 32; ++j) block.qs[j] = static_cast<int8_t>(j * 8 - 128);
  float y[32];
  dequantize_row_q8_0(&block, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j * 8 - 128) * 0.5f) << j;
}

TEST(Dequantize, Q4_KLayout) {
  const int sc[8] = {1, 2, 3, 4, 17, 33, 49, 63};
  const int m[8] = {0, 5, 10, 15, 20, 40, 50, 63};
  BlockQ4_K block;
  block.d = fp32_to_fp16(1.0f);
  block.dmin = fp32_to_fp16(0.5f);
  // 12 scale bytes written out from the format description, independently of the quantizer:
  // bytes 0..3 and 4..7 hold the low 6 bits of scales/mins 0..3 and, in bits 6..7, the top
  // bits of scales/mins 4..7; bytes 8..11 hold the low nibbles of scale (low) and min (high).
  for (int j = 0; j < 4; ++j) {
    block.scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    block.scales[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    block.scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) {
      block.qs[32 * g + l] = static_cast<uint8_t>((l % 16) | (((l + g) % 16) << 4));
    }
  }
  float y[256];
  dequantize_row_q4_K(&block, y, 256);
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(y[64 * g + l], 1.0f * sc[2 * g] * (l % 16) - 0.5f * m[2 * g]) << g << " " << l;
      EXPECT_EQ(y[64 * g + 32 + l], 1.0f * sc[2 * g + 1] * ((l + g) % 16) - 0.5f * m[2 * g + 1])
          << g << " " << l;
    }
  }
}

TEST(Dequantize, Q6_KLayout) {
  BlockQ6_K block;
  std::memset(&block, 0, sizeof block);
  block.d = fp32_to_fp16(0.25f);
  for (int k = 0; k < 16; ++k) block.scales[k] = static_cast<int8_t>(k * 9 - 70);
  // Element e = 128 h + 32 quarter + l: low 4 bits in ql[64 h + l + 32 (quarter & 1)] (low
  // nibble for quarters 0-1, high for 2-3), top 2 bits in qh[32 h + l] bits 2 quarter.
  auto q_of = [](int e) { return (e * 7 + 3) % 64; };
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, quarter = (e % 128) / 32, l = e % 32;
    const int q = q_of(e);
    uint8_t& ql = block.ql[64 * h + l + 32 * (quarter & 1)];
    ql |= static_cast<uint8_t>((q & 0xF) << (quarter >= 2 ? 4 : 0));
    block.qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * quarter));
  }
  float y[256];
  dequantize_row_q6_K(&block, y, 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y[e], 0.25f * block.scales[e / 16] * (q_of(e) - 32)) << e;
  }
}

TEST(Dequantize, Q8_KLayout) {
  BlockQ8_K block;
  block.d = 0.125f;
  for (int j = 0; j < 256; ++j) block.qs[j] = static_cast<int8_t>(j - 128);
  float y[256];
  dequantize_row_q8_K(&block, y, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], (j - 128) * 0.125f) << j;
}

TEST(Dequantize, FloatTypesThroughDispatch) {
  const float x[4] = {1.0f, -2.5f, 65504.0f, 1e-3f};
  std::vector<uint16_t> h(4);
  float y[4];
  quantize_row(TensorType::kF16, x, h.data(), 4);
  dequantize_row(TensorType::kF16, h.data(), y, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y[i], fp16_to_fp32(fp32_to_fp16(x[i])));
  quantize_row(TensorType::kBF16, x, h.data(), 4);
  dequantize_row(TensorType::kBF16, h.data(), y, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y[i], bf16_to_fp32(fp32_to_bf16(x[i])));
  quantize_row(TensorType::kF32, x, y, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y[i], x[i]);
}

struct RoundTripCase {
  TensorType type;
  double max_rel_rmse;  // rms(error) / rms(x) over the row
};

class RoundTrip : public testing::TestWithParam<RoundTripCase> {};

// Bounds measured on Gaussian data with 1% 8-sigma outliers (which set Q8_K's one scale per
// 256), with margin; they would be several times
// larger if a layout or scale were off.
TEST_P(RoundTrip, ErrorWithinFormatBound) {
  const RoundTripCase c = GetParam();
  constexpr int64_t kN = 8192;
  std::mt19937 rng(test::kSeed);
  const std::vector<float> x = test::random_floats(kN, rng);
  std::vector<uint8_t> q(tensor_row_bytes(c.type, kN));
  std::vector<float> y(kN);
  quantize_row(c.type, x.data(), q.data(), kN);
  dequantize_row(c.type, q.data(), y.data(), kN);
  double err2 = 0, x2 = 0;
  for (int64_t i = 0; i < kN; ++i) {
    err2 += (y[i] - x[i]) * static_cast<double>(y[i] - x[i]);
    x2 += static_cast<double>(x[i]) * x[i];
  }
  const double rel_rmse = std::sqrt(err2 / x2);
  EXPECT_LT(rel_rmse, c.max_rel_rmse) << tensor_type_traits(c.type)->name;
  RecordProperty("rel_rmse", std::to_string(rel_rmse));
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, RoundTrip,
    testing::Values(RoundTripCase{TensorType::kQ4_0, 0.15}, RoundTripCase{TensorType::kQ8_0, 0.01},
                    RoundTripCase{TensorType::kQ4_K, 0.10}, RoundTripCase{TensorType::kQ6_K, 0.025},
                    RoundTripCase{TensorType::kQ8_K, 0.03}, RoundTripCase{TensorType::kF16, 1e-3},
                    RoundTripCase{TensorType::kBF16, 5e-3}, RoundTripCase{TensorType::kQ4_1, 0.11},
                    RoundTripCase{TensorType::kQ5_0, 0.08}, RoundTripCase{TensorType::kQ5_1, 0.055},
                    RoundTripCase{TensorType::kIQ4_NL, 0.12},
                    RoundTripCase{TensorType::kQ2_K, 0.38}, RoundTripCase{TensorType::kQ3_K, 0.22},
                    RoundTripCase{TensorType::kQ5_K, 0.055},
                    RoundTripCase{TensorType::kIQ4_XS, 0.12}),
    [](const testing::TestParamInfo<RoundTripCase>& info) {
      return std::string(tensor_type_traits(info.param.type)->name);
    });

TEST(Quantize, Q8_0PerElementBound) {
  std::mt19937 rng(test::kSeed + 1);
  const std::vector<float> x = test::random_floats(32 * 64, rng);
  std::vector<BlockQ8_0> q(64);
  std::vector<float> y(x.size());
  quantize_row_q8_0_ref(x.data(), q.data(), 32 * 64);
  dequantize_row_q8_0(q.data(), y.data(), 32 * 64);
  for (int b = 0; b < 64; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    // Half a step, plus the fp16 rounding of the scale times the largest level.
    const float bound = amax / 127 * (0.5f + 127.0f / 2048.0f) * 1.0001f;
    for (int j = 0; j < 32; ++j) ASSERT_LE(std::fabs(y[32 * b + j] - x[32 * b + j]), bound);
  }
}

TEST(Quantize, Q4_0MapsSignedExtremeToMinus8) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = 0.1f * (j - 16);
  x[5] = -4.0f;  // extreme is negative: d = -4 / -8 = 0.5, x[5] -> level 0 (value -8 d)
  BlockQ4_0 q;
  quantize_row_q4_0_ref(x, &q, 32);
  EXPECT_EQ(fp16_to_fp32(q.d), 0.5f);
  EXPECT_EQ(q.qs[5] & 0xF, 0);
  float y[32];
  dequantize_row_q4_0(&q, y, 32);
  EXPECT_EQ(y[5], -4.0f);
}

TEST(Quantize, Q8_KFollowsGgmlConvention) {
  std::mt19937 rng(test::kSeed + 2);
  std::vector<float> x = test::random_floats(256 * 4, rng, 1.0f);
  x[100] = -50.0f;  // block 0's extreme is negative
  x[256 + 7] = 40.0f;
  x[256 + 9] = -40.0f;  // block 1: a tie in magnitude; the first one sets the sign
  std::fill(x.begin() + 512, x.begin() + 768, 0.0f);  // block 2: all zero
  std::vector<BlockQ8_K> q(4);
  quantize_row_q8_K_ref(x.data(), q.data(), 256 * 4);

  EXPECT_EQ(q[0].qs[100], -127);
  EXPECT_EQ(q[0].d, 1 / (-127.0f / -50.0f));
  EXPECT_EQ(q[1].qs[7], -127);
  EXPECT_EQ(q[1].qs[9], 127);
  EXPECT_EQ(q[1].d, 1 / (-127.0f / 40.0f));
  EXPECT_EQ(q[2].d, 0.0f);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(q[2].qs[j], 0);
  for (const BlockQ8_K& block : q) {
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += block.qs[16 * j + l];
      EXPECT_EQ(block.bsums[j], sum) << j;
    }
    for (int j = 0; j < 256; ++j) EXPECT_GE(block.qs[j], -127);
  }
}

TEST(Quantize, QuantizedTypesHandleConstantAndZeroBlocks) {
  std::vector<float> x(512, 0.0f);
  std::fill(x.begin() + 256, x.end(), 0.75f);
  std::vector<float> y(512);
  for (TensorType type : kWeightTensorTypes) {
    if (tensor_type_traits(type)->block_elems == 1) continue;
    std::vector<uint8_t> q(tensor_row_bytes(type, 512));
    quantize_row(type, x.data(), q.data(), 512);
    dequantize_row(type, q.data(), y.data(), 512);
    for (int i = 0; i < 256; ++i) ASSERT_EQ(y[i], 0.0f) << tensor_type_traits(type)->name;
    for (int i = 256; i < 512; ++i) {
      ASSERT_NEAR(y[i], 0.75f, 0.01f) << tensor_type_traits(type)->name << " " << i;
    }
  }
}

}  // namespace
}  // namespace infergrid
