// The tier codecs against their contract: native is exact; int8 decodes every value to within
// half a step of its group's scale (then the engine type's rounding), groups are independent,
// and re-encoding a decoded block changes nothing (so a block moving between tiers does not lose
// more each time), from f32 and from 16-bit engine blocks.
#include "kvstore/kv_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16_rows.h"

namespace infergrid {
namespace {

std::span<const uint8_t> bytes_of(const std::vector<float>& x) {
  return {reinterpret_cast<const uint8_t*>(x.data()), x.size() * sizeof(float)};
}
std::span<uint8_t> bytes_of(std::vector<float>& x) {
  return {reinterpret_cast<uint8_t*>(x.data()), x.size() * sizeof(float)};
}

std::vector<float> random_block(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  return x;
}

TEST(KvCodecTest, NativeIsExactForEveryEngineType) {
  for (const KvType type : {KvType::kF32, KvType::kF16, KvType::kBF16}) {
    const KvBlockCodec codec(KvCodec::kNative, type, 96, 32);
    EXPECT_EQ(codec.encoded_bytes(), 96 * kv_type_bytes(type));
    std::vector<uint8_t> block(codec.engine_bytes());
    std::mt19937 rng(1);
    for (auto& b : block) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> bytes(codec.encoded_bytes()), back(block.size());
    codec.encode(block, bytes);
    codec.decode(bytes, back);
    EXPECT_EQ(block, back) << kv_type_name(type);
  }
}

// From a 16-bit engine block: each group's values are the widened engine values; decoding
// rounds value * scale to the engine type, so the error bound gains that type's half-ulp.
TEST(KvCodecTest, Int8FromSixteenBitEngineBlocks) {
  for (const KvType type : {KvType::kF16, KvType::kBF16}) {
    const size_t group = 64, n = group * 12;
    const KvBlockCodec codec(KvCodec::kInt8, type, n, group);
    EXPECT_EQ(codec.encoded_bytes(), n + n / group * sizeof(float));
    EXPECT_EQ(codec.engine_bytes(), n * 2);
    auto x = random_block(n, 11);
    x[5] = 40.0f;  // an outlier in the first group
    std::vector<uint8_t> block(codec.engine_bytes());
    f32_to_kv_row(x.data(), block.data(), type, n);
    std::vector<float> stored(n);
    kv_to_f32_row(block.data(), type, stored.data(), n);
    std::vector<uint8_t> bytes(codec.encoded_bytes()), reference(codec.encoded_bytes());
    codec.encode(block, bytes);
    codec.encode_scalar_for_testing(block, reference);
    EXPECT_EQ(bytes, reference) << kv_type_name(type);
    std::vector<uint8_t> decoded_block(codec.engine_bytes());
    codec.decode(bytes, decoded_block);
    std::vector<float> y(n);
    kv_to_f32_row(decoded_block.data(), type, y.data(), n);
    const float type_eps = type == KvType::kF16 ? 0x1p-11f : 0x1p-8f;
    for (size_t g = 0; g < n / group; ++g) {
      float max_abs = 0;
      for (size_t i = 0; i < group; ++i) {
        max_abs = std::max(max_abs, std::fabs(stored[g * group + i]));
      }
      const float step = max_abs / 127.0f;
      for (size_t i = 0; i < group; ++i) {
        const size_t k = g * group + i;
        ASSERT_LE(std::fabs(stored[k] - y[k]),
                  step * 0.5f + type_eps * (std::fabs(stored[k]) + step) + 1e-6f * max_abs)
            << kv_type_name(type) << " element " << k;
      }
    }
    // Through a tier and back again: the second encoding is the first.
    std::vector<uint8_t> again(codec.encoded_bytes());
    codec.encode(decoded_block, again);
    std::vector<uint8_t> twice_decoded(codec.engine_bytes());
    codec.decode(again, twice_decoded);
    EXPECT_EQ(twice_decoded, decoded_block) << kv_type_name(type);
  }
}

TEST(KvCodecTest, Int8ErrorIsAtMostHalfAStepOfEachGroupsScale) {
  for (const size_t group : {1u, 7u, 64u, 128u}) {
    const size_t n = group * 24;
    const KvBlockCodec codec(KvCodec::kInt8, KvType::kF32, n, group);
    EXPECT_EQ(codec.encoded_bytes(), n + n / group * sizeof(float));
    auto x = random_block(n, static_cast<uint32_t>(group));
    // An outlier in one group must not cost the others their precision.
    x[group / 2] = 300.0f;
    std::vector<uint8_t> bytes(codec.encoded_bytes());
    codec.encode(bytes_of(x), bytes);
    std::vector<float> y(n);
    codec.decode(bytes, bytes_of(y));
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
  const KvBlockCodec codec(KvCodec::kInt8, KvType::kF32, 64 * 10, 64);
  const auto x = random_block(640, 7);
  std::vector<uint8_t> first(codec.encoded_bytes()), second(codec.encoded_bytes());
  codec.encode(bytes_of(x), first);
  std::vector<float> y(640);
  codec.decode(first, bytes_of(y));
  codec.encode(bytes_of(y), second);
  EXPECT_EQ(first, second);
}

TEST(KvCodecTest, Int8ZeroTinyAndNonFiniteGroupsDecodeToZeros) {
  const KvBlockCodec codec(KvCodec::kInt8, KvType::kF32, 16, 4);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const float tiny = 1e-38f;  // 127 / tiny overflows
  std::vector<float> x = {0,    0,    0,    0,    1.0f, nan,  3.0f,  -2.0f,
                          -inf, 1.0f, 2.0f, 3.0f, tiny, 0.0f, -tiny, tiny / 4};
  for (const bool scalar : {false, true}) {
    std::vector<uint8_t> bytes(codec.encoded_bytes());
    if (scalar) {
      codec.encode_scalar_for_testing(bytes_of(x), bytes);
    } else {
      codec.encode(bytes_of(x), bytes);
    }
    std::vector<float> y(16, 5.0f);
    codec.decode(bytes, bytes_of(y));
    for (int i = 0; i < 16; ++i) EXPECT_EQ(y[i], 0.0f) << i << (scalar ? " scalar" : "");
  }
}

// The vector encoder gives the scalar reference's bytes: odd group sizes (vector body plus
// scalar tail), ties that round half to even, outliers, non-finite groups.
TEST(KvCodecTest, Int8EncoderMatchesScalarReferenceByteForByte) {
  if (!cpu_features().has_avx2_path()) GTEST_SKIP() << "no AVX2: encode() is the scalar reference";
  for (const size_t group : {3u, 8u, 13u, 32u, 64u, 100u, 128u}) {
    const size_t n = group * 20;
    const KvBlockCodec codec(KvCodec::kInt8, KvType::kF32, n, group);
    auto x = random_block(n, static_cast<uint32_t>(group) + 100);
    for (size_t i = 0; i < group; ++i) x[i] = static_cast<float>(i % 7) - 3.5f;  // ties
    x[0] = 127.0f;            // scale 1: x / scale is exact
    x[group + 1] = -1000.0f;  // outlier
    x[2 * group + 2] = std::numeric_limits<float>::quiet_NaN();
    x[3 * group] = -std::numeric_limits<float>::infinity();
    for (size_t i = 0; i < group; ++i) x[4 * group + i] = 0.0f;
    for (size_t i = 0; i < group; ++i) x[5 * group + i] = (i % 2 ? 1e-38f : 0.0f);  // tiny
    std::vector<uint8_t> fast(codec.encoded_bytes()), reference(codec.encoded_bytes());
    codec.encode(bytes_of(x), fast);
    codec.encode_scalar_for_testing(bytes_of(x), reference);
    ASSERT_EQ(fast, reference) << "group size " << group;
    // Ties went to even: 2.5 -> 2, -3.5 -> -4 (scale 1 in the first group).
    const auto* q = reinterpret_cast<const int8_t*>(reference.data() + n / group * sizeof(float));
    for (size_t i = 1; i < std::min<size_t>(group, 7); ++i) {
      const float v = static_cast<float>(i % 7) - 3.5f;
      EXPECT_EQ(q[i], static_cast<int8_t>(std::nearbyint(v))) << i;
    }
  }
}

TEST(KvCodecTest, NamesParse) {
  EXPECT_EQ(parse_kv_codec("int8"), KvCodec::kInt8);
  EXPECT_EQ(parse_kv_codec("native"), KvCodec::kNative);
  EXPECT_EQ(parse_kv_codec("f32"), std::nullopt);  // the engine's type decides what native is
  EXPECT_EQ(parse_kv_codec("fp8"), std::nullopt);
  EXPECT_EQ(kv_codec_name(KvCodec::kInt8), "int8");
}

}  // namespace
}  // namespace infergrid
