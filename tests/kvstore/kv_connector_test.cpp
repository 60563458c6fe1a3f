// KvConnector over a real shared-memory DRAM tier and a real SSD directory: computed blocks are
// written through to DRAM only, what DRAM evicts moves down to the disk, persisted blocks go
// straight to the disk, loads find blocks in either tier and stop at the first missing one, and
// the int8 codec's blocks come back decoded.
#include "kvstore/kv_connector.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kvstore/block_key.h"
#include "kvstore/disk_tier.h"
#include "kvstore/shm_tier.h"

namespace infergrid {
namespace {

constexpr int kBlockTokens = 4;
constexpr size_t kBlockElements = 256;  // f32 engine blocks of 1 KiB
constexpr size_t kGroup = 32;
constexpr uint64_t kFingerprint = 0xF1F2;

class KvConnectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "conntest" + std::to_string(::getpid());
    dir_ = std::filesystem::temp_directory_path() / ("infergrid_connector_" + name_);
    std::filesystem::remove_all(dir_);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    // A chain of six blocks: their tokens, keys and engine bytes.
    uint64_t parent = kRootBlockKey;
    for (int b = 0; b < 6; ++b) {
      std::vector<int32_t> t;
      for (int i = 0; i < kBlockTokens; ++i) t.push_back(100 * b + i);
      tokens_.insert(tokens_.end(), t.begin(), t.end());
      parents_.push_back(parent);
      parent = block_key(parent, t, kFingerprint);
      keys_.push_back(parent);
      std::vector<float> values(kBlockElements);
      for (float& v : values) v = dist(rng);
      blocks_.emplace_back(reinterpret_cast<const uint8_t*>(values.data()),
                           reinterpret_cast<const uint8_t*>(values.data() + values.size()));
    }
  }
  void TearDown() override {
    for (uint64_t tag : tags_) ShmTier::unlink(name_, tag);
    std::filesystem::remove_all(dir_);
  }

  std::span<const int32_t> block_tokens(int b) const {
    return std::span<const int32_t>(tokens_).subspan(static_cast<size_t>(b) * kBlockTokens,
                                                     kBlockTokens);
  }

  // A connector over a DRAM tier of dram_slots blocks and a disk tier, for `codec`.
  std::unique_ptr<KvConnector> connect(KvCodec codec, uint32_t dram_slots) {
    const KvBlockCodec block_codec(codec, KvType::kF32, kBlockElements, kGroup);
    const uint64_t tag = 0xAB00 + static_cast<uint64_t>(codec);
    tags_.push_back(tag);
    ShmTier::unlink(name_, tag);
    auto dram = ShmTier::open(
        name_, ShmTier::bytes_for_slots(dram_slots, kBlockTokens, block_codec.encoded_bytes()), tag,
        kBlockTokens, block_codec.encoded_bytes());
    EXPECT_TRUE(dram.is_ok()) << dram.status().to_string();
    if (!dram.is_ok()) return nullptr;
    dram_ = std::shared_ptr<ShmTier>(std::move(dram).value());
    disk_ = std::make_shared<DiskTier>(dir_ / kv_codec_name(codec), 1 << 20, tag, kBlockTokens);
    EXPECT_TRUE(disk_->open().is_ok());
    KvConnectorOptions o;
    o.tiers = {{dram_, /*write_through=*/true, false}, {disk_, false, /*persistent=*/true}};
    o.model_fingerprint = kFingerprint;
    o.block_size = kBlockTokens;
    return std::make_unique<KvConnector>(std::move(o), block_codec);
  }

  // Loads blocks first..first+n-1 of the chain; returns how many loaded, into `out`.
  int load(KvConnector& c, int first, int n, std::vector<std::vector<uint8_t>>& out) {
    auto job = std::make_shared<TierLoader::Job>();
    job->parent_key = parents_[static_cast<size_t>(first)];
    out.assign(static_cast<size_t>(n), std::vector<uint8_t>(blocks_[0].size(), 0));
    for (int b = 0; b < n; ++b) {
      const auto t = block_tokens(first + b);
      job->tokens.insert(job->tokens.end(), t.begin(), t.end());
      job->dest.push_back(out[static_cast<size_t>(b)]);
    }
    c.loader().submit(job);
    c.loader().wait(*job);
    return job->n_loaded;
  }

  std::string name_;
  std::filesystem::path dir_;
  std::vector<uint64_t> tags_;
  std::vector<int32_t> tokens_;
  std::vector<uint64_t> keys_, parents_;
  std::vector<std::vector<uint8_t>> blocks_;
  std::shared_ptr<ShmTier> dram_;
  std::shared_ptr<DiskTier> disk_;
};

TEST_F(KvConnectorTest, WritesThroughToDramCascadesToDiskAndLoadsFromEither) {
  auto c = connect(KvCodec::kNative, /*dram_slots=*/2);
  ASSERT_NE(c, nullptr);
  for (int b = 0; b < 4; ++b) {
    c->save_computed(keys_[b], parents_[b], block_tokens(b), blocks_[b]);
    c->flush();  // one at a time, so DRAM evicts in a known order
  }
  // DRAM holds the last two; the two it pushed out went down to the disk, not lost.
  EXPECT_TRUE(dram_->contains(keys_[2]) && dram_->contains(keys_[3]));
  EXPECT_FALSE(dram_->contains(keys_[0]));
  EXPECT_TRUE(disk_->contains(keys_[0]) && disk_->contains(keys_[1]));
  EXPECT_FALSE(disk_->contains(keys_[3]));  // written through to DRAM only
  EXPECT_EQ(c->present_prefix(keys_), 4u);  // blocks 4 and 5 were never saved
  std::vector<std::vector<uint8_t>> loaded;
  ASSERT_EQ(load(*c, 0, 6, loaded), 4);  // stops at the first block no tier holds
  for (int b = 0; b < 4; ++b) EXPECT_EQ(loaded[b], blocks_[b]) << "block " << b;

  // An evicted engine block goes to DRAM (here: pushing block 2 down), a persisted one
  // straight to the disk.
  c->save_evicted(keys_[4], parents_[4], block_tokens(4), blocks_[4]);
  EXPECT_TRUE(c->persist(keys_[5], parents_[5], block_tokens(5), blocks_[5]));
  c->flush();
  EXPECT_TRUE(dram_->contains(keys_[4]));
  EXPECT_TRUE(disk_->contains(keys_[5]));
  EXPECT_FALSE(dram_->contains(keys_[5]));
  ASSERT_EQ(load(*c, 0, 6, loaded), 6);
  for (int b = 0; b < 6; ++b) EXPECT_EQ(loaded[b], blocks_[b]) << "block " << b;
}

TEST_F(KvConnectorTest, Int8BlocksComeBackDecodedWithinTheirScale) {
  auto c = connect(KvCodec::kInt8, /*dram_slots=*/8);
  ASSERT_NE(c, nullptr);
  c->save_computed(keys_[0], parents_[0], block_tokens(0), blocks_[0]);
  c->flush();
  std::vector<std::vector<uint8_t>> loaded;
  ASSERT_EQ(load(*c, 0, 1, loaded), 1);
  const auto* want = reinterpret_cast<const float*>(blocks_[0].data());
  const auto* got = reinterpret_cast<const float*>(loaded[0].data());
  int differ = 0;
  for (size_t i = 0; i < kBlockElements; ++i) {
    EXPECT_NEAR(got[i], want[i], 2.0f / 127.0f * 0.5f + 1e-6f) << i;  // |x| <= 2 per group
    differ += got[i] != want[i];
  }
  EXPECT_GT(differ, 0) << "the int8 codec stored the block exactly: was it encoded at all?";
}

TEST_F(KvConnectorTest, WithoutAPersistentTierPersistSaysSo) {
  const KvBlockCodec codec(KvCodec::kNative, KvType::kF32, kBlockElements, kGroup);
  const uint64_t tag = 0xAC00;
  tags_.push_back(tag);
  ShmTier::unlink(name_, tag);
  auto dram = ShmTier::open(name_, ShmTier::bytes_for_slots(4, kBlockTokens, codec.encoded_bytes()),
                            tag, kBlockTokens, codec.encoded_bytes());
  ASSERT_TRUE(dram.is_ok());
  KvConnectorOptions o;
  o.tiers = {{std::shared_ptr<ShmTier>(std::move(dram).value()), true, false}};
  o.model_fingerprint = kFingerprint;
  o.block_size = kBlockTokens;
  KvConnector c(std::move(o), codec);
  EXPECT_FALSE(c.has_persistent_tier());
  EXPECT_FALSE(c.persist(keys_[0], parents_[0], block_tokens(0), blocks_[0]));
}

}  // namespace
}  // namespace infergrid
