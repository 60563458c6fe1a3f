#include "kvstore/shm_tier.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <list>
#include <map>
#include <numeric>
#include <random>
#include <thread>

namespace infergrid {
namespace {

constexpr int kTokens = 4;
constexpr size_t kPayload = 512;
constexpr uint64_t kLayout = 0x5EED;

class ShmTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = "test" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    ShmTier::unlink(name_, kLayout);
  }
  void TearDown() override { ShmTier::unlink(name_, kLayout); }
  std::unique_ptr<ShmTier> open(size_t slots) {
    auto t = ShmTier::open(name_, ShmTier::bytes_for_slots(slots, kTokens, kPayload), kLayout,
                           kTokens, kPayload);
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return t.is_ok() ? std::move(t).value() : nullptr;
  }
  static std::vector<uint8_t> payload(uint8_t seed) {
    std::vector<uint8_t> p(kPayload);
    for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(seed + i * 3);
    return p;
  }
  static std::vector<int32_t> tokens(int32_t first) {
    std::vector<int32_t> t(kTokens);
    std::iota(t.begin(), t.end(), first);
    return t;
  }
  std::string name_;
};

TEST_F(ShmTierTest, RoundTripAndLeastRecentlyUsedEvictionMovesBlocksDown) {
  auto tier = open(2);
  ASSERT_TRUE(tier);
  ASSERT_EQ(tier->n_slots(), 2u);
  std::vector<uint64_t> moved_down;
  tier->set_evict_hook(
      [&](uint64_t key, uint64_t, std::span<const int32_t> t, std::span<const uint8_t> p) {
        moved_down.push_back(key);
        EXPECT_EQ(std::vector<int32_t>(t.begin(), t.end()), tokens(static_cast<int32_t>(key)));
        EXPECT_EQ(std::vector<uint8_t>(p.begin(), p.end()), payload(static_cast<uint8_t>(key)));
      });
  ASSERT_TRUE(tier->put(1, 0, tokens(1), payload(1)).is_ok());
  ASSERT_TRUE(tier->put(2, 1, tokens(2), payload(2)).is_ok());
  std::vector<uint8_t> out(kPayload);
  ASSERT_TRUE(*tier->get(1, tokens(1), out));  // 2 is now the least recently used
  EXPECT_EQ(out, payload(1));
  ASSERT_TRUE(tier->put(3, 2, tokens(3), payload(3)).is_ok());
  EXPECT_EQ(moved_down, std::vector<uint64_t>{2});
  EXPECT_FALSE(tier->contains(2));
  EXPECT_TRUE(tier->contains(1) && tier->contains(3));
  EXPECT_FALSE(*tier->get(3, tokens(9), out));  // other tokens under the key: not this block
  const TierStats s = tier->stats();
  EXPECT_EQ(s.blocks, 2u);
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_LE(s.used_bytes, s.capacity_bytes);
}

TEST_F(ShmTierTest, CorruptSlotsAreDroppedAndCounted) {
  auto tier = open(4);
  ASSERT_TRUE(tier);
  for (uint64_t k = 1; k <= 4; ++k) {
    ASSERT_TRUE(
        tier->put(k, 0, tokens(static_cast<int32_t>(k)), payload(static_cast<uint8_t>(k))).is_ok());
  }
  for (uint32_t slot = 0; slot < 4; ++slot)
    tier->slot_bytes_for_testing(slot)[slot * 100 + 7] ^= 0x40;
  std::vector<uint8_t> out(kPayload);
  for (uint64_t k = 1; k <= 4; ++k) {
    EXPECT_FALSE(*tier->get(k, tokens(static_cast<int32_t>(k)), out)) << k;
  }
  EXPECT_EQ(tier->stats().dropped_corrupt, 4u);
  EXPECT_EQ(tier->stats().blocks, 0u);
}

TEST_F(ShmTierTest, AnotherProcessReadsWhatOneWroteAndLayoutsDoNotMix) {
  auto tier = open(8);
  ASSERT_TRUE(tier);
  const pid_t child = fork();
  if (child == 0) {
    auto other = ShmTier::open(name_, 1, kLayout, kTokens, kPayload);  // opens the existing one
    const bool ok = other.is_ok() && (*other)->put(42, 0, tokens(42), payload(42)).is_ok();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::vector<uint8_t> out(kPayload);
  ASSERT_TRUE(*tier->get(42, tokens(42), out));
  EXPECT_EQ(out, payload(42));
  // Same name, other payload size: refused rather than misread.
  EXPECT_EQ(ShmTier::open(name_, 1 << 20, kLayout, kTokens, kPayload * 2).status().code(),
            StatusCode::kCorrupt);
  // Another layout tag is another segment: it sees nothing.
  auto other_model = ShmTier::open(name_, 1 << 20, kLayout + 1, kTokens, kPayload);
  ASSERT_TRUE(other_model.is_ok());
  EXPECT_FALSE((*other_model)->contains(42));
  ShmTier::unlink(name_, kLayout + 1);
}

// A writer is killed until one kill lands inside a slot write (the slot is left marked as
// being written, which the next locker's recovery counts as dropped), so the test knows it met
// a half-written block; then nothing deadlocks and every block still served is intact. Blocks
// of 1 MiB, so copying one is most of what the writer does and a kill soon lands inside it.
TEST_F(ShmTierTest, AWriterKilledMidWayNeverDeadlocksOrServesHalfWrittenBlocks) {
  constexpr size_t kBig = size_t{1} << 20;
  constexpr uint64_t kBigLayout = kLayout + 7;
  const auto big = [](uint64_t key) {
    return std::vector<uint8_t>(kBig, static_cast<uint8_t>(key * 31));
  };
  ShmTier::unlink(name_, kBigLayout);
  auto opened =
      ShmTier::open(name_, ShmTier::bytes_for_slots(4, kTokens, kBig), kBigLayout, kTokens, kBig);
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  auto& tier = *opened;
  std::vector<uint8_t> out(kBig);
  uint64_t cut_writes = 0;
  int attempts = 0;
  uint64_t next_key = 100;
  for (; attempts < 100 && cut_writes == 0; ++attempts) {
    const uint64_t first = next_key;
    next_key += 1000000;
    const pid_t child = fork();
    if (child == 0) {
      auto writer = ShmTier::open(name_, 1, kBigLayout, kTokens, kBig);
      if (!writer.is_ok()) _exit(1);
      for (uint64_t k = first;; ++k) {
        (void)(*writer)->put(k, 0, tokens(static_cast<int32_t>(k)), big(k));
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(3000 + 997 * (attempts % 13)));
    ::kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    // The lock may have died with the child: the next user recovers it.
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(tier->put(7, 0, tokens(7), big(7)).is_ok());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    ASSERT_TRUE(*tier->get(7, tokens(7), out));
    // Every block still there is intact.
    for (uint64_t k = first; k < first + 100000; ++k) {
      if (!tier->contains(k)) continue;
      auto got = tier->get(k, tokens(static_cast<int32_t>(k)), out);
      ASSERT_TRUE(got.is_ok());
      if (*got) {
        EXPECT_EQ(out, big(k));
      }
    }
    cut_writes = tier->stats().dropped_corrupt;
  }
  ShmTier::unlink(name_, kBigLayout);
  std::printf("[ kill     ] %d kills until one cut a slot write\n", attempts);
  EXPECT_GT(cut_writes, 0u) << "no kill landed inside a slot write";
}

// Capacity is a byte budget for slots and their index, the power-of-two index rounding
// included: the slot count is the most that fits.
TEST_F(ShmTierTest, SlotCountIsTheMostThatFitsTheCapacity) {
  for (const uint64_t n : {1u, 2u, 3u, 100u, 300u, 1000u}) {
    for (const uint64_t capacity : {ShmTier::bytes_for_slots(n, kTokens, kPayload),
                                    ShmTier::bytes_for_slots(n, kTokens, kPayload) - 1}) {
      ShmTier::unlink(name_, kLayout);
      auto tier = ShmTier::open(name_, capacity, kLayout, kTokens, kPayload);
      const uint64_t expected =
          capacity == ShmTier::bytes_for_slots(n, kTokens, kPayload) ? n : n - 1;
      if (expected == 0) {
        EXPECT_FALSE(tier.is_ok());
        continue;
      }
      ASSERT_TRUE(tier.is_ok()) << tier.status().to_string();
      EXPECT_EQ((*tier)->n_slots(), expected) << "capacity " << capacity;
    }
  }
}

// Many slots, random puts and gets: the tier holds exactly what a plain LRU of the same
// capacity holds, block for block (the hash index's probe runs and deletions included).
TEST_F(ShmTierTest, BehavesAsAnExactLeastRecentlyUsedCacheAtScale) {
  constexpr size_t kSlots = 300;
  auto tier = open(kSlots);
  ASSERT_TRUE(tier);
  ASSERT_EQ(tier->n_slots(), kSlots);
  std::list<uint64_t> lru;  // most recent first
  std::map<uint64_t, std::list<uint64_t>::iterator> where;
  std::vector<uint64_t> moved_down;
  tier->set_evict_hook([&](uint64_t key, uint64_t, std::span<const int32_t>,
                           std::span<const uint8_t>) { moved_down.push_back(key); });
  std::mt19937_64 rng(99);
  std::vector<uint8_t> out(kPayload);
  for (int op = 0; op < 20000; ++op) {
    const uint64_t key = 1 + rng() % 700;
    const auto k32 = static_cast<int32_t>(key);
    const auto k8 = static_cast<uint8_t>(key);
    if (rng() % 2 == 0) {
      moved_down.clear();
      ASSERT_TRUE(tier->put(key, 0, tokens(k32), payload(k8)).is_ok());
      if (!where.count(key)) {  // a put of a held block changes nothing
        if (lru.size() == kSlots) {
          ASSERT_EQ(moved_down, std::vector<uint64_t>{lru.back()}) << "op " << op;
          where.erase(lru.back());
          lru.pop_back();
        }
        lru.push_front(key);
        where[key] = lru.begin();
      }
    } else {
      auto got = tier->get(key, tokens(k32), out);
      ASSERT_TRUE(got.is_ok());
      ASSERT_EQ(*got, where.count(key) == 1) << "op " << op << " key " << key;
      if (*got) {
        ASSERT_EQ(out, payload(k8));
        lru.erase(where[key]);
        lru.push_front(key);
        where[key] = lru.begin();
      }
    }
  }
  EXPECT_EQ(tier->stats().blocks, lru.size());
  std::vector<uint64_t> keys;
  for (uint64_t k = 1; k <= 700; ++k) keys.push_back(k);
  std::vector<uint8_t> present(keys.size());
  tier->contains_each(keys, present);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(present[i] == 1, where.count(keys[i]) == 1);
}

// Leaf-first LRU, checked at scale against a plain model of the policy: blocks arrive in
// chains (conversations that continue, restart, and share ancestors), and every eviction must
// pick the model's victim: the least recently used block nothing resident continues, never the
// new block's own parent, with a parent left childless becoming the next candidate.
TEST_F(ShmTierTest, EvictsLeastRecentlyUsedLeavesAtScale) {
  constexpr size_t kSlots = 200;
  auto tier = open(kSlots);
  ASSERT_TRUE(tier);
  struct Block {
    uint64_t parent;
    uint32_t children = 0;
    std::list<uint64_t>::iterator leaf;  // valid while children == 0
  };
  std::map<uint64_t, Block> blocks;
  std::list<uint64_t> leaves;  // most recent first
  // The resident parent of a block (a block is never its own parent).
  const auto parent_of = [&](uint64_t key, uint64_t parent) {
    return parent == key ? blocks.end() : blocks.find(parent);
  };
  std::vector<uint64_t> moved_down;
  tier->set_evict_hook([&](uint64_t key, uint64_t, std::span<const int32_t>,
                           std::span<const uint8_t>) { moved_down.push_back(key); });
  std::mt19937_64 rng(7);
  std::vector<uint64_t> stream_tip(12, 0);  // each stream's last block: the next one's parent
  std::vector<uint8_t> out(kPayload);
  for (int op = 0; op < 20000; ++op) {
    const uint64_t key = 1 + rng() % 900;
    const auto k32 = static_cast<int32_t>(key);
    const auto k8 = static_cast<uint8_t>(key);
    if (rng() % 3 != 0) {
      uint64_t& tip = stream_tip[rng() % stream_tip.size()];
      if (rng() % 8 == 0) tip = 0;  // a new conversation
      const uint64_t parent = tip;
      moved_down.clear();
      ASSERT_TRUE(tier->put(key, parent, tokens(k32), payload(k8)).is_ok());
      tip = key;
      if (blocks.count(key)) continue;  // a put of a held block changes nothing
      if (blocks.size() == kSlots) {
        auto victim = std::prev(leaves.end());
        if (*victim == parent && victim != leaves.begin()) --victim;
        ASSERT_EQ(moved_down, std::vector<uint64_t>{*victim}) << "op " << op;
        const uint64_t gone = *victim;
        const uint64_t gone_parent = blocks.at(gone).parent;
        leaves.erase(victim);
        blocks.erase(gone);
        auto p = parent_of(gone, gone_parent);
        if (p != blocks.end() && p->second.children > 0 && --p->second.children == 0) {
          p->second.leaf = leaves.insert(leaves.end(), gone_parent);
        }
      } else {
        ASSERT_TRUE(moved_down.empty());
      }
      leaves.push_front(key);
      blocks[key] = {parent, 0, leaves.begin()};
      auto p = parent_of(key, parent);
      if (p != blocks.end() && p->second.children++ == 0) leaves.erase(p->second.leaf);
    } else {
      auto got = tier->get(key, tokens(k32), out);
      ASSERT_TRUE(got.is_ok());
      ASSERT_EQ(*got, blocks.count(key) == 1) << "op " << op << " key " << key;
      if (*got) {
        ASSERT_EQ(out, payload(k8));
        Block& b = blocks[key];
        if (b.children == 0) leaves.splice(leaves.begin(), leaves, b.leaf);
      }
    }
  }
  EXPECT_EQ(tier->stats().blocks, blocks.size());
}

// Two processes putting and reading at once, one of them killed at a random moment: the index
// stays consistent with the slots (every block it finds is intact, and it finds as many as the
// tier says it holds).
TEST_F(ShmTierTest, ProcessesSharingTheIndexKeepItConsistent) {
  auto tier = open(64);
  ASSERT_TRUE(tier);
  auto worker = [&](uint64_t seed) {
    auto mine = ShmTier::open(name_, 1, kLayout, kTokens, kPayload);
    if (!mine.is_ok()) _exit(1);
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> out(kPayload);
    for (int op = 0;; ++op) {
      const uint64_t key = 1 + rng() % 200;
      const auto k32 = static_cast<int32_t>(key);
      if (rng() % 2 == 0) {
        (void)(*mine)->put(key, 0, tokens(k32), payload(static_cast<uint8_t>(key)));
      } else {
        auto got = (*mine)->get(key, tokens(k32), out);
        if (got.is_ok() && *got && out != payload(static_cast<uint8_t>(key))) _exit(2);
      }
      if (op > 20000 && seed == 2) _exit(0);
    }
  };
  const pid_t killed = fork();
  if (killed == 0) worker(1);
  const pid_t finishing = fork();
  if (finishing == 0) worker(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50 + ::getpid() % 50));
  ::kill(killed, SIGKILL);
  int status = 0;
  waitpid(killed, &status, 0);
  ASSERT_EQ(waitpid(finishing, &status, 0), finishing);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a reader saw a wrong block";
  std::vector<uint8_t> out(kPayload);
  uint64_t found = 0;
  for (uint64_t key = 1; key <= 200; ++key) {
    auto got = tier->get(key, tokens(static_cast<int32_t>(key)), out);
    ASSERT_TRUE(got.is_ok());
    if (!*got) continue;
    EXPECT_EQ(out, payload(static_cast<uint8_t>(key))) << key;
    ++found;
  }
  EXPECT_EQ(found, tier->stats().blocks);
  EXPECT_GT(found, 0u);
}

// Scribbled-over index: lookups may miss, but never return another block or hang, and the tier
// recovers (a full index is rebuilt from the slot headers).
TEST_F(ShmTierTest, ADamagedIndexCostsMissesNeverWrongBlocks) {
  auto tier = open(64);
  ASSERT_TRUE(tier);
  for (uint64_t k = 1; k <= 64; ++k) {
    ASSERT_TRUE(
        tier->put(k, 0, tokens(static_cast<int32_t>(k)), payload(static_cast<uint8_t>(k))).is_ok());
  }
  std::mt19937 rng(3);
  for (auto& byte : tier->index_bytes_for_testing()) byte = static_cast<uint8_t>(rng());
  std::vector<uint8_t> out(kPayload);
  for (uint64_t k = 1; k <= 64; ++k) {
    auto got = tier->get(k, tokens(static_cast<int32_t>(k)), out);
    ASSERT_TRUE(got.is_ok());
    if (*got) {
      EXPECT_EQ(out, payload(static_cast<uint8_t>(k)));
    }
  }
  // Every bucket taken (none reads as empty): the next put rebuilds the index, and every block
  // is found again.
  for (auto& byte : tier->index_bytes_for_testing()) byte = 0;
  ASSERT_TRUE(tier->put(1000, 0, tokens(1000), payload(7)).is_ok());
  ASSERT_TRUE(*tier->get(1000, tokens(1000), out));
  EXPECT_EQ(out, payload(7));
  int found = 0;
  for (uint64_t k = 1; k <= 64; ++k) {
    if (!*tier->get(k, tokens(static_cast<int32_t>(k)), out)) continue;
    EXPECT_EQ(out, payload(static_cast<uint8_t>(k)));
    ++found;
  }
  EXPECT_EQ(found, 63);  // one was evicted for block 1000
  EXPECT_EQ(tier->stats().blocks, 64u);
}

}  // namespace
}  // namespace infergrid
