// Capacity limits of the DRAM and disk tiers under a randomized workload, with DRAM spilling
// into the disk as the engine wires them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "kvstore/disk_tier.h"
#include "kvstore/shm_tier.h"

namespace infergrid {
namespace {

TEST(TierCapacity, RandomizedPutsAndGetsNeverExceedEitherTier) {
  constexpr int kTokens = 8;
  constexpr size_t kPayload = 2048;
  constexpr uint64_t kLayout = 0xCAFE;
  const std::string name = "cap" + std::to_string(::getpid());
  const auto dir = std::filesystem::temp_directory_path() / ("infergrid_cap_" + name);
  std::filesystem::remove_all(dir);
  ShmTier::unlink(name, kLayout);
  auto dram = ShmTier::open(name, 10 * (kPayload + kTokens * 4 + 100), kLayout, kTokens, kPayload);
  ASSERT_TRUE(dram.is_ok()) << dram.status().to_string();
  const uint64_t disk_capacity = 25 * (kPayload + kTokens * 4 + 56) + 100;
  DiskTier disk(dir, disk_capacity, kLayout, kTokens);
  ASSERT_TRUE(disk.open().is_ok());
  (*dram)->set_evict_hook(
      [&](uint64_t key, uint64_t parent, std::span<const int32_t> t, std::span<const uint8_t> p) {
        ASSERT_TRUE(disk.put(key, parent, t, p).is_ok());
      });
  auto tokens_of = [](uint64_t key) {
    std::vector<int32_t> t(kTokens);
    for (int i = 0; i < kTokens; ++i) t[i] = static_cast<int32_t>(key * 31 + i);
    return t;
  };
  auto payload_of = [](uint64_t key) {
    std::vector<uint8_t> p(kPayload);
    for (size_t i = 0; i < kPayload; ++i) p[i] = static_cast<uint8_t>(key + i);
    return p;
  };
  std::mt19937_64 rng(7);
  std::vector<uint8_t> out(kPayload);
  int hits = 0;
  for (int step = 0; step < 600; ++step) {
    const uint64_t key = 1 + rng() % 80;
    if (rng() % 2) {
      ASSERT_TRUE((*dram)->put(key, 0, tokens_of(key), payload_of(key)).is_ok());
    } else {
      // The engine looks in DRAM first, then on disk.
      auto d = (*dram)->get(key, tokens_of(key), out);
      ASSERT_TRUE(d.is_ok());
      bool hit = *d;
      if (!hit) {
        auto s = disk.get(key, tokens_of(key), out);
        ASSERT_TRUE(s.is_ok());
        hit = *s;
      }
      if (hit) {
        ++hits;
        ASSERT_EQ(out, payload_of(key)) << "key " << key;
      }
    }
    const TierStats d = (*dram)->stats(), s = disk.stats();
    ASSERT_LE(d.used_bytes, d.capacity_bytes);
    ASSERT_LE(d.blocks, 10u);
    ASSERT_LE(s.used_bytes, disk_capacity);
  }
  size_t on_disk = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) on_disk += entry.file_size();
  EXPECT_EQ(on_disk, disk.stats().used_bytes);
  EXPECT_LE(on_disk, disk_capacity);
  EXPECT_GT(hits, 50);
  EXPECT_GT(disk.stats().evicted, 0u);
  ShmTier::unlink(name, kLayout);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace infergrid
