#include "engine/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace infergrid {
namespace {

constexpr int kBlock = 4;
constexpr uint64_t kFingerprint = 0x1234;

std::vector<int32_t> seq_tokens(int n, int32_t first = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Allocates blocks for `tokens` and commits every full block, as a sequence would; returns the
// block table (still referenced).
std::vector<int32_t> fill(BlockManager& m, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> table;
  uint64_t key = kRootBlockKey;
  for (size_t i = 0; i * kBlock < tokens.size(); ++i) {
    auto b = m.allocate();
    EXPECT_TRUE(b.has_value());
    table.push_back(*b);
    if ((i + 1) * kBlock <= tokens.size()) {
      const auto committed = m.commit(key, std::span(tokens).subspan(i * kBlock, kBlock), *b);
      key = committed.key;
      table.back() = committed.block;
    }
  }
  return table;
}

void release(BlockManager& m, const std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) m.unref(*it);
}

TEST(BlockKey, DependsOnParentTokensAndModel) {
  const auto t = seq_tokens(kBlock);
  const uint64_t a = block_key(kRootBlockKey, t, kFingerprint);
  EXPECT_EQ(a, block_key(kRootBlockKey, t, kFingerprint));
  EXPECT_NE(a, block_key(a, t, kFingerprint));
  EXPECT_NE(a, block_key(kRootBlockKey, t, kFingerprint + 1));
  EXPECT_NE(a, block_key(kRootBlockKey, seq_tokens(kBlock, 1), kFingerprint));
}

TEST(BlockManager, AllocateRefUnrefReturnEveryBlock) {
  BlockManager m(3, kBlock, kFingerprint, true);
  auto a = m.allocate(), b = m.allocate(), c = m.allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_FALSE(m.allocate().has_value());
  EXPECT_EQ(m.n_in_use(), 3);
  m.ref(*a);
  EXPECT_TRUE(m.is_shared(*a));
  EXPECT_FALSE(m.is_shared(*b));
  m.unref(*a);
  EXPECT_FALSE(m.is_shared(*a));
  m.unref(*a);
  m.unref(*b);
  m.unref(*c);
  EXPECT_EQ(m.n_free(), 3);
  EXPECT_EQ(m.n_in_use(), 0);
}

TEST(PrefixTree, MatchesLongestFullBlockPrefixAndStopsAtDivergence) {
  BlockManager m(16, kBlock, kFingerprint, true);
  const auto tokens = seq_tokens(14);  // 3 full blocks + 2 tokens
  const auto table = fill(m, tokens);
  EXPECT_EQ(m.n_cached(), 3);

  auto full = m.match(tokens, 100);
  ASSERT_EQ(full.blocks.size(), 3u);
  EXPECT_EQ(full.blocks, std::vector<int32_t>(table.begin(), table.begin() + 3));
  EXPECT_EQ(m.refcount(table[0]), 2);
  release(m, full.blocks);

  // Diverges inside the second block: only the first matches.
  auto diverging = tokens;
  diverging[6] = 999;
  auto partial = m.match(diverging, 100);
  EXPECT_EQ(partial.blocks.size(), 1u);
  release(m, partial.blocks);

  // A prompt shorter than one block, and a max_blocks cap.
  EXPECT_TRUE(m.match(seq_tokens(3), 100).blocks.empty());
  auto capped = m.match(tokens, 2);
  EXPECT_EQ(capped.blocks.size(), 2u);
  release(m, capped.blocks);

  // Same tokens after a different first block do not match (keys chain the parent).
  auto shifted = seq_tokens(14, 1);
  EXPECT_TRUE(m.match(shifted, 100).blocks.empty());
  release(m, table);
  EXPECT_EQ(m.n_in_use(), 0);
  EXPECT_EQ(m.n_available(), 16);
}

TEST(PrefixTree, DifferentModelOrDisabledCacheNeverMatches) {
  BlockManager m(8, kBlock, kFingerprint, true);
  const auto tokens = seq_tokens(8);
  release(m, fill(m, tokens));
  BlockManager other(8, kBlock, kFingerprint + 1, true);
  release(other, fill(other, seq_tokens(4, 100)));
  EXPECT_TRUE(other.match(tokens, 10).blocks.empty());
  BlockManager off(8, kBlock, kFingerprint, false);
  release(off, fill(off, tokens));
  EXPECT_EQ(off.n_cached(), 0);
  EXPECT_TRUE(off.match(tokens, 10).blocks.empty());
  EXPECT_EQ(off.n_free(), 8);
}

TEST(PrefixTree, EvictsLeastRecentlyReleasedLeavesFirst) {
  BlockManager m(6, kBlock, kFingerprint, true);
  const auto a = seq_tokens(8, 0);    // chain a0 -> a1
  const auto b = seq_tokens(8, 100);  // chain b0 -> b1
  const auto ta = fill(m, a);
  const auto tb = fill(m, b);
  release(m, ta);  // a released first: least recently used
  release(m, tb);
  EXPECT_EQ(m.n_free(), 2);
  EXPECT_EQ(m.n_available(), 6);
  // Two free blocks go first, then the leaf a1, then a0 (a leaf once a1 is gone), then b.
  std::vector<int32_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(*m.allocate());
  EXPECT_EQ(got[2], ta[1]);
  EXPECT_EQ(got[3], ta[0]);
  EXPECT_EQ(m.n_evicted(), 2u);
  EXPECT_TRUE(m.match(a, 10).blocks.empty());
  auto still = m.match(b, 10);
  EXPECT_EQ(still.blocks.size(), 2u);
  release(m, still.blocks);
  // A referenced chain is never evicted.
  auto held = m.match(b, 10);
  EXPECT_FALSE(m.allocate().has_value());
  release(m, held.blocks);
  release(m, got);
}

TEST(PrefixTree, MatchRefreshesRecencyAndParentsOutliveChildren) {
  BlockManager m(4, kBlock, kFingerprint, true);
  const auto a = seq_tokens(4, 0);
  const auto b = seq_tokens(4, 50);
  const auto ta = fill(m, a);
  const auto tb = fill(m, b);
  release(m, ta);
  release(m, tb);
  // Touch a again: b is now the least recently released.
  auto touched = m.match(a, 10);
  release(m, touched.blocks);
  std::vector<int32_t> got;
  for (int i = 0; i < 3; ++i) got.push_back(*m.allocate());  // 2 free + 1 eviction
  EXPECT_EQ(got[2], tb[0]);
  auto again = m.match(a, 10);
  EXPECT_EQ(again.blocks.size(), 1u);
  release(m, again.blocks);
  release(m, got);
}

TEST(PrefixTree, DuplicateCommitSharesTheFirstBlockAndFreesTheCopy) {
  BlockManager m(4, kBlock, kFingerprint, true);
  const auto t = seq_tokens(4);
  const auto first = fill(m, t);
  const auto second = fill(m, t);  // computed concurrently by another sequence
  EXPECT_EQ(m.n_cached(), 1);
  EXPECT_EQ(second[0], first[0]);  // the duplicate's holder now shares the cached block
  EXPECT_EQ(m.refcount(first[0]), 2);
  EXPECT_EQ(m.n_free(), 3);  // the duplicate went back to the free list
  release(m, second);
  auto match = m.match(t, 10);
  ASSERT_EQ(match.blocks.size(), 1u);
  EXPECT_EQ(match.blocks[0], first[0]);
  release(m, match.blocks);
  release(m, first);
  m.evict_all_cached();
  EXPECT_EQ(m.n_free(), 4);
  EXPECT_EQ(m.n_cached(), 0);
}

}  // namespace
}  // namespace infergrid
