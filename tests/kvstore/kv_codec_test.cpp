// The int8 tier codec against its contract: every value decodes to within half a step of its
// group's scale, groups are independent, and re-encoding a decoded block changes nothing (so a
// block moving between tiers does not lose more each time).
#include "kvstore/kv_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace infergrid {
namespace {

std::vector<float> random_block(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  return x;
}

TEST(KvCodecTest, F32IsExact) {
  const KvBlockCodec codec(KvCodec::kF32, 96, 32);
  EXPECT_EQ(codec.encoded_bytes(), 96 * sizeof(float));
  const auto x = random_block(96, 1);
  std::vector<uint8_t> bytes(codec.encoded_bytes());
  codec.encode(x, bytes);
  std::vector<float> y(96);
  codec.decode(bytes, y);
  EXPECT_EQ(x, y);
}

TEST(KvCodecTest, Int8ErrorIsAtMostHalfAStepOfEachGroupsScale) {
  for (const size_t group : {1u, 7u, 64u, 128u}) {
    const size_t n = group * 24;
    const KvBlockCodec codec(KvCodec::kInt8, n, group);
    EXPECT_EQ(codec.encoded_bytes(), n + n / group * sizeof(float));
    auto x = random_block(n, static_cast<uint32_t>(group));
    // An outlier in one group must not cost the others their precision.
    x[group / 2] = 300.0f;
    std::vector<uint8_t> bytes(codec.encoded_bytes());
    codec.encode(x, bytes);
    std::vector<float> y(n);
    codec.decode(bytes, y);
    for (size_t g = 0; g < n / group; ++g) {
      float max_abs = 0;
      for (size_t i = 0; i < group; ++i) max_abs = std::max(max_abs, std::fabs(x[g * group + i]));
      const float step = max_abs / 127.0f;
      for (size_t i = 0; i < group; ++i) {
        const size_t k = g * group + i;
        ASSERT_LE(std::fabs(x[k] - y[k]), step * 0.5f + 1e-6f * max_abs)
            << "group size " << group << " element " << k;
      }
    }
    if (group > 1) {
      // The second group is unaffected by the first one's outlier.
      EXPECT_NEAR(y[group + 1], x[group + 1], 0.1f);
    }
  }
}

TEST(KvCodecTest, Int8ReencodingADecodedBlockGivesTheSameBytes) {
  const KvBlockCodec codec(KvCodec::kInt8, 64 * 10, 64);
  const auto x = random_block(640, 7);
  std::vector<uint8_t> first(codec.encoded_bytes()), second(codec.encoded_bytes());
  codec.encode(x, first);
  std::vector<float> y(640);
  codec.decode(first, y);
  codec.encode(y, second);
  EXPECT_EQ(first, second);
}

TEST(KvCodecTest, Int8ZeroAndNonFiniteGroupsDecodeToFiniteValues) {
  const KvBlockCodec codec(KvCodec::kInt8, 8, 4);
  std::vector<float> x = {0,
                          0,
                          0,
                          0,
                          1.0f,
                          std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -2.0f};
  std::vector<uint8_t> bytes(codec.encoded_bytes());
  codec.encode(x, bytes);
  std::vector<float> y(8);
  codec.decode(bytes, y);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y[i], 0.0f);
  for (int i = 4; i < 8; ++i) EXPECT_TRUE(std::isfinite(y[i])) << i;
}

TEST(KvCodecTest, NamesParse) {
  EXPECT_EQ(parse_kv_codec("int8"), KvCodec::kInt8);
  EXPECT_EQ(parse_kv_codec("f32"), KvCodec::kF32);
  EXPECT_EQ(parse_kv_codec("fp8"), std::nullopt);
  EXPECT_EQ(kv_codec_name(KvCodec::kInt8), "int8");
}

}  // namespace
}  // namespace infergrid
