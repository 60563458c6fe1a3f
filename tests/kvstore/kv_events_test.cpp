#include "kvstore/kv_events.h"

#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

namespace infergrid {
namespace {

using Held = std::set<std::pair<int, uint64_t>>;

void apply_events(Held& held, const std::vector<KvEvent>& events) {
  for (const KvEvent& e : events) {
    if (e.stored) {
      held.insert({static_cast<int>(e.tier), e.key});
    } else {
      held.erase({static_cast<int>(e.tier), e.key});
    }
  }
}

Held from_snapshot(const KvEventLog::Snapshot& snap) {
  Held held;
  for (const auto& [tier, key] : snap.blocks) held.insert({static_cast<int>(tier), key});
  return held;
}

TEST(KvEventLogTest, NumbersEventsWithoutGapsAndSkipsNoOps) {
  KvEventLog log;
  log.stored(KvTierKind::kEngine, 7);
  log.stored(KvTierKind::kEngine, 7);  // held already: no event
  log.removed(KvTierKind::kDram, 7);   // not held in that tier: no event
  log.stored(KvTierKind::kDram, 7);
  log.removed(KvTierKind::kEngine, 7);
  std::vector<KvEvent> events;
  ASSERT_TRUE(log.read_since(0, 100, events));
  ASSERT_EQ(events.size(), 3u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq, i + 1);
  EXPECT_TRUE(events[0].stored);
  EXPECT_EQ(events[1].tier, KvTierKind::kDram);
  EXPECT_FALSE(events[2].stored);
  EXPECT_EQ(log.last_seq(), 3u);
  EXPECT_EQ(from_snapshot(log.snapshot()), (Held{{static_cast<int>(KvTierKind::kDram), 7}}));
  EXPECT_NE(log.epoch(), 0u);
}

TEST(KvEventLogTest, AReaderTooFarBehindMustSnapshotAndSnapshotPlusEventsIsTheState) {
  KvEventLog log(64);
  std::mt19937_64 rng(3);
  Held truth;
  Held reader;
  uint64_t reader_seq = 0;
  for (int step = 0; step < 2000; ++step) {
    const auto tier = static_cast<KvTierKind>(rng() % kKvTierKinds);
    const uint64_t key = rng() % 50 + 1;
    if (rng() % 2) {
      log.stored(tier, key);
      truth.insert({static_cast<int>(tier), key});
    } else {
      log.removed(tier, key);
      truth.erase({static_cast<int>(tier), key});
    }
    if (rng() % 7 == 0 || step == 1999) {  // the reader wakes now and then, sometimes late
      std::vector<KvEvent> events;
      if (log.read_since(reader_seq, 16, events)) {
        apply_events(reader, events);
        if (!events.empty()) reader_seq = events.back().seq;
        while (true) {  // drain in pieces of 16
          events.clear();
          ASSERT_TRUE(log.read_since(reader_seq, 16, events));
          if (events.empty()) break;
          apply_events(reader, events);
          reader_seq = events.back().seq;
        }
      } else {
        EXPECT_GT(log.last_seq() - reader_seq, 64u);
        const KvEventLog::Snapshot snap = log.snapshot();
        reader = from_snapshot(snap);
        reader_seq = snap.seq;
      }
      ASSERT_EQ(reader, truth) << "step " << step;
    }
  }
}

TEST(KvEventLogTest, TierNamesRoundTrip) {
  for (int t = 0; t < kKvTierKinds; ++t) {
    const auto tier = static_cast<KvTierKind>(t);
    EXPECT_EQ(kv_tier_from_name(kv_tier_name(tier)), tier);
  }
  EXPECT_FALSE(kv_tier_from_name("gpu"));
}

}  // namespace
}  // namespace infergrid
