// Half-precision conversions (core/fp16.h): exact values at the edges of each range, and fp16
// rounding checked against the compiler's own _Float16 conversion as an independent reference.
// The bulk row conversions (core/fp16_rows.h, vector paths) give the scalar conversions' bits.
#include "core/fp16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/fp16_rows.h"
#include "kernel_test_util.h"

namespace infergrid {
namespace {

uint16_t compiler_fp16(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, sizeof bits);
  return bits;
}

TEST(Fp16, DecodesSpecialValues) {
  EXPECT_EQ(fp16_to_fp32(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(fp16_to_fp32(0x8000)));
  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);               // largest finite
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16_to_fp32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7e00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7c01)));
}

TEST(Fp16, EncodesWithRoundToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.2f, -11)), 0x3c01);      // above tie
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // tie rounds up to the next (infinite) value
  EXPECT_EQ(fp32_to_fp16(1e9f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-1e9f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  const uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
  // Subnormals and underflow.
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie -> even (zero)
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.01f, -25)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);  // tie between 1 and 2 -> 2
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1023.0f, -24)), 0x03ff);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);  // rounds up into the normals
  EXPECT_EQ(fp32_to_fp16(1e-10f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-1e-10f), 0x8000);
}

TEST(Fp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << h;
    ASSERT_EQ(compiler_fp16(f), h) << std::hex << h;
  }
}

TEST(Fp16, MatchesCompilerConversionOnRandomFloats) {
  std::mt19937 rng(test::kSeed);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns, with the exponent biased toward fp16's range (incl. subnormals).
    uint32_t x = bits(rng);
    if (i % 2) x = (x & 0x807fffffu) | ((100u + x % 50u) << 23);
    const float f = fp32_from_bits(x);
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), compiler_fp16(f)) << std::hex << x;
  }
}

TEST(Bf16, ConvertsWithRoundToNearestEven) {
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xc040), -3.0f);
  EXPECT_EQ(bf16_to_fp32(0x0001), fp32_from_bits(0x00010000u));  // subnormal kept
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(fp32_from_bits(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(fp32_to_bf16(fp32_from_bits(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(fp32_to_bf16(fp32_from_bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(fp32_to_bf16(fp32_from_bits(0x00018000u)), 0x0002);        // subnormal tie -> even
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(fp32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  const uint16_t nan = fp32_to_bf16(fp32_from_bits(0x7f800001u));  // low-bit NaN stays NaN
  EXPECT_TRUE(std::isnan(bf16_to_fp32(nan)));
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_bf16(f), h) << std::hex << h;
  }
}

// Floats that reach every rounding case of both formats: random bit patterns, patterns with the
// exponent in fp16's range (subnormals included), exact ties, overflow, infinities, NaN.
std::vector<float> rounding_cases(size_t n) {
  std::mt19937 rng(test::kSeed + 1);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t b = bits(rng);
    if (i % 3 == 1) b = (b & 0x807fffffu) | ((100u + b % 50u) << 23);
    if (i % 7 == 2) b = (b & 0xffffe000u) | 0x1000u;   // an fp16 tie
    if (i % 11 == 3) b = (b & 0xffff0000u) | 0x8000u;  // a bf16 tie
    x[i] = fp32_from_bits(b);
  }
  x[0] = 65520.0f;  // rounds to fp16 infinity
  x[1] = std::numeric_limits<float>::infinity();
  x[2] = -std::numeric_limits<float>::quiet_NaN();
  x[3] = std::numeric_limits<float>::max();
  return x;
}

TEST(Fp16Rows, MatchScalarConversionsBitForBit) {
  // An odd length runs the vector body and the scalar tail.
  const std::vector<float> x = rounding_cases(100003);
  const size_t n = x.size();
  std::vector<uint16_t> h(n), b(n);
  f32_to_f16_row(x.data(), h.data(), n);
  f32_to_bf16_row(x.data(), b.data(), n);
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(h[i])) && std::isnan(bf16_to_fp32(b[i]))) << i;
      continue;
    }
    ASSERT_EQ(h[i], fp32_to_fp16(x[i])) << std::hex << fp32_to_bits(x[i]);
    ASSERT_EQ(b[i], fp32_to_bf16(x[i])) << std::hex << fp32_to_bits(x[i]);
  }
  std::vector<uint16_t> every(0x10000 + 5);
  for (size_t i = 0; i < every.size(); ++i) every[i] = static_cast<uint16_t>(i);
  std::vector<float> from_h(every.size()), from_b(every.size());
  f16_to_f32_row(every.data(), from_h.data(), every.size());
  bf16_to_f32_row(every.data(), from_b.data(), every.size());
  for (size_t i = 0; i < every.size(); ++i) {
    const float want_h = fp16_to_fp32(every[i]), want_b = bf16_to_fp32(every[i]);
    if (std::isnan(want_h)) {
      EXPECT_TRUE(std::isnan(from_h[i])) << i;
    } else {
      ASSERT_EQ(fp32_to_bits(from_h[i]), fp32_to_bits(want_h)) << std::hex << every[i];
    }
    if (std::isnan(want_b)) {
      EXPECT_TRUE(std::isnan(from_b[i])) << i;
    } else {
      ASSERT_EQ(fp32_to_bits(from_b[i]), fp32_to_bits(want_b)) << std::hex << every[i];
    }
  }
}

TEST(Fp16Rows, KvRowsRoundTripThroughEachType) {
  const std::vector<float> x = {1.0f, -2.5f, 3.14159265f, 1e-6f, 70000.0f, 0.0f, -0.0f};
  for (const KvType type : {KvType::kF32, KvType::kF16, KvType::kBF16}) {
    std::vector<uint8_t> stored(x.size() * kv_type_bytes(type));
    std::vector<float> back(x.size());
    f32_to_kv_row(x.data(), stored.data(), type, x.size());
    kv_to_f32_row(stored.data(), type, back.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      float want = x[i];
      if (type == KvType::kF16) want = fp16_to_fp32(fp32_to_fp16(x[i]));
      if (type == KvType::kBF16) want = bf16_to_fp32(fp32_to_bf16(x[i]));
      EXPECT_EQ(fp32_to_bits(back[i]), fp32_to_bits(want)) << kv_type_name(type) << " " << i;
    }
  }
  EXPECT_EQ(parse_kv_type("bf16"), KvType::kBF16);
  EXPECT_EQ(parse_kv_type("q8_0"), std::nullopt);
}

}  // namespace
}  // namespace infergrid
