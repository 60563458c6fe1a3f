#include "kvstore/disk_tier.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <thread>

namespace infergrid {
namespace {

constexpr int kTokens = 4;
constexpr uint64_t kLayout = 0xABCD;

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("infergrid_disk_tier_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::vector<uint8_t> payload(uint8_t seed, size_t n = 1000) {
    std::vector<uint8_t> p(n);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(seed * 31 + i * 7);
    return p;
  }
  static std::vector<int32_t> tokens(int32_t first) {
    std::vector<int32_t> t(kTokens);
    std::iota(t.begin(), t.end(), first);
    return t;
  }
  std::filesystem::path dir_;
};

TEST_F(DiskTierTest, RoundTripsAndSurvivesRestart) {
  {
    DiskTier tier(dir_, 1 << 20, kLayout, kTokens);
    ASSERT_TRUE(tier.open().is_ok());
    ASSERT_TRUE(tier.put(1, 0, tokens(10), payload(1)).is_ok());
    ASSERT_TRUE(tier.put(2, 1, tokens(20), payload(2)).is_ok());
    std::vector<uint8_t> out(1000);
    ASSERT_TRUE(*tier.get(1, tokens(10), out));
    EXPECT_EQ(out, payload(1));
    EXPECT_FALSE(*tier.get(3, tokens(10), out));
    EXPECT_FALSE(*tier.get(2, tokens(99), out));  // same key, other tokens: not this block
  }
  DiskTier reopened(dir_, 1 << 20, kLayout, kTokens);
  ASSERT_TRUE(reopened.open().is_ok());
  EXPECT_EQ(reopened.stats().blocks, 2u);
  std::vector<uint8_t> out(1000);
  ASSERT_TRUE(*reopened.get(2, tokens(20), out));
  EXPECT_EQ(out, payload(2));
  // Another layout (model / block size) sees nothing and clears the stale files.
  DiskTier other(dir_, 1 << 20, kLayout + 1, kTokens);
  ASSERT_TRUE(other.open().is_ok());
  EXPECT_EQ(other.stats().blocks, 0u);
  EXPECT_EQ(other.stats().dropped_corrupt, 0u);
}

TEST_F(DiskTierTest, CorruptBlocksAreDroppedAndCountedNeverReturned) {
  DiskTier tier(dir_, 1 << 20, kLayout, kTokens);
  ASSERT_TRUE(tier.open().is_ok());
  for (uint64_t key = 1; key <= 20; ++key) {
    ASSERT_TRUE(
        tier.put(key, 0, tokens(static_cast<int32_t>(key)), payload(static_cast<uint8_t>(key)))
            .is_ok());
  }
  // Flip one byte at a different place in each file (header, tokens, payload).
  int flipped = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    const auto size = std::filesystem::file_size(entry.path());
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    const std::streamoff at = static_cast<std::streamoff>((flipped * 97 + 13) % size);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(at);
    f.write(&c, 1);
    ++flipped;
  }
  ASSERT_EQ(flipped, 20);
  std::vector<uint8_t> out(1000);
  int served = 0;
  for (uint64_t key = 1; key <= 20; ++key) {
    auto got = tier.get(key, tokens(static_cast<int32_t>(key)), out);
    ASSERT_TRUE(got.is_ok());
    if (*got) ++served;
  }
  EXPECT_EQ(served, 0);
  EXPECT_EQ(tier.stats().dropped_corrupt, 20u);
  EXPECT_EQ(tier.stats().blocks, 0u);
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
}

TEST_F(DiskTierTest, InterruptedWritesAndDamagedHeadersAreCleanedOnOpen) {
  std::filesystem::create_directories(dir_);
  {
    std::ofstream tmp(dir_ / "0000000000000001.123.456.tmp");
    tmp << "half a block";
    std::ofstream bad(dir_ / "0000000000000002.kvb");
    bad << "not a block at all";
  }
  DiskTier tier(dir_, 1 << 20, kLayout, kTokens);
  ASSERT_TRUE(tier.open().is_ok());
  EXPECT_EQ(tier.stats().blocks, 0u);
  EXPECT_EQ(tier.stats().dropped_corrupt, 1u);
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
}

// A real kill in the middle of a write: a child process stores 1 MiB blocks in a loop and is
// killed until a kill leaves a block's temporary file behind (the write was cut between create
// and rename). The reopened tier removes it and serves every block it keeps intact.
TEST_F(DiskTierTest, AWriterKilledMidWriteLeavesNoBlockThatPassesWrong) {
  constexpr size_t kBig = size_t{1} << 20;
  const auto partial_files = [&] {
    int n = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      n += entry.path().extension() == ".tmp";
    }
    return n;
  };
  int cut = 0, attempts = 0;
  uint64_t first = 1;
  for (; attempts < 40 && cut == 0; ++attempts, first += 100000) {
    const pid_t child = fork();
    if (child == 0) {
      DiskTier writer(dir_, uint64_t{64} << 20, kLayout, kTokens);
      if (!writer.open().is_ok()) _exit(1);
      for (uint64_t k = first;; ++k) {
        (void)writer.put(k, 0, tokens(static_cast<int32_t>(k)),
                         payload(static_cast<uint8_t>(k), kBig));
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20000 + 1999 * (attempts % 11)));
    ::kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    cut = partial_files();
  }
  std::printf("[ kill     ] %d kills until one cut a block write\n", attempts);
  ASSERT_GT(cut, 0) << "no kill landed inside a block write";
  DiskTier tier(dir_, uint64_t{64} << 20, kLayout, kTokens);
  ASSERT_TRUE(tier.open().is_ok());
  EXPECT_EQ(partial_files(), 0);
  EXPECT_GT(tier.stats().blocks, 0u);
  std::vector<uint8_t> out(kBig);
  uint64_t served = 0;
  for (uint64_t k = 1; k < first; ++k) {
    if (!tier.contains(k)) continue;
    auto got = tier.get(k, tokens(static_cast<int32_t>(k)), out);
    ASSERT_TRUE(got.is_ok());
    if (!*got) continue;
    ASSERT_EQ(out, payload(static_cast<uint8_t>(k), kBig)) << "block " << k;
    ++served;
  }
  EXPECT_EQ(served, tier.stats().blocks);
}

TEST_F(DiskTierTest, CapacityEvictsLeastRecentlyUsed) {
  const size_t file = 56 + kTokens * 4 + 1000;
  DiskTier tier(dir_, 3 * file, kLayout, kTokens);
  ASSERT_TRUE(tier.open().is_ok());
  std::vector<uint8_t> out(1000);
  ASSERT_TRUE(tier.put(1, 0, tokens(1), payload(1)).is_ok());
  ASSERT_TRUE(tier.put(2, 0, tokens(2), payload(2)).is_ok());
  ASSERT_TRUE(tier.put(3, 0, tokens(3), payload(3)).is_ok());
  ASSERT_TRUE(*tier.get(1, tokens(1), out));  // 1 is now the most recent; 2 the oldest
  ASSERT_TRUE(tier.put(4, 0, tokens(4), payload(4)).is_ok());
  EXPECT_FALSE(tier.contains(2));
  EXPECT_TRUE(tier.contains(1));
  EXPECT_TRUE(tier.contains(3));
  EXPECT_TRUE(tier.contains(4));
  EXPECT_LE(tier.stats().used_bytes, 3 * file);
  EXPECT_EQ(tier.stats().evicted, 1u);
  size_t on_disk = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) on_disk += entry.file_size();
  EXPECT_EQ(on_disk, tier.stats().used_bytes);
}

// Blocks 1 -> 2 -> 3 form a chain (a conversation), 4 stands alone. Reading the chain's root
// makes it recent, but it still has a child: the victims are the least recently used leaves,
// so the chain goes from its end (3, then 2) and its root, which every descendant needs, stays.
TEST_F(DiskTierTest, ChainsAreEvictedFromTheirEnd) {
  const size_t file = 56 + kTokens * 4 + 1000;
  DiskTier tier(dir_, 4 * file, kLayout, kTokens);
  ASSERT_TRUE(tier.open().is_ok());
  std::vector<uint8_t> out(1000);
  ASSERT_TRUE(tier.put(1, 0, tokens(1), payload(1)).is_ok());
  ASSERT_TRUE(tier.put(2, 1, tokens(2), payload(2)).is_ok());
  ASSERT_TRUE(tier.put(3, 2, tokens(3), payload(3)).is_ok());
  ASSERT_TRUE(tier.put(4, 0, tokens(4), payload(4)).is_ok());
  ASSERT_TRUE(*tier.get(1, tokens(1), out));
  ASSERT_TRUE(tier.put(5, 0, tokens(5), payload(5)).is_ok());
  EXPECT_FALSE(tier.contains(3));
  ASSERT_TRUE(tier.put(6, 0, tokens(6), payload(6)).is_ok());
  EXPECT_FALSE(tier.contains(2));  // childless now, so the next candidate
  for (uint64_t key : {1, 4, 5, 6}) EXPECT_TRUE(tier.contains(key)) << key;
  // A new block's parent is kept even when it is the least recently used leaf.
  ASSERT_TRUE(*tier.get(1, tokens(1), out));  // leaves, most recent first: 1 6 5 4
  ASSERT_TRUE(tier.put(7, 4, tokens(7), payload(7)).is_ok());
  EXPECT_TRUE(tier.contains(4));
  EXPECT_FALSE(tier.contains(5));
  // After a restart the children are counted again from the files: 4 (7's parent) outlives
  // the more recently written 6.
  DiskTier reopened(dir_, 4 * file, kLayout, kTokens);
  ASSERT_TRUE(reopened.open().is_ok());
  ASSERT_TRUE(reopened.put(8, 0, tokens(8), payload(8)).is_ok());
  ASSERT_TRUE(reopened.put(9, 0, tokens(9), payload(9)).is_ok());
  for (uint64_t key : {4, 7, 8, 9}) EXPECT_TRUE(reopened.contains(key)) << key;
  EXPECT_EQ(reopened.stats().blocks, 4u);
}

}  // namespace
}  // namespace infergrid
