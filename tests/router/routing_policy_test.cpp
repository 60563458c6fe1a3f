#include "router/routing_policy.h"

#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "router/kv_index.h"

namespace infergrid {
namespace {

std::vector<InstanceView> views(size_t n) {
  std::vector<InstanceView> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i].eligible = true;
    v[i].stable_hash = 1000 + i;
  }
  return v;
}

TEST(KvIndexTest, MatchesTheEngineRunThenTheTierRunPerInstance) {
  KvIndex index;
  const std::vector<uint64_t> keys = {11, 12, 13, 14, 15};
  for (uint64_t k : {11, 12}) index.stored(0, KvTierKind::kEngine, k);
  index.stored(0, KvTierKind::kDram, 13);
  index.stored(0, KvTierKind::kEngine, 15);  // after a gap: unusable
  for (uint64_t k : {11, 12, 13, 14}) index.stored(1, KvTierKind::kDisk, k);
  index.stored(2, KvTierKind::kEngine, 12);  // not the first block: no match
  std::vector<KvIndex::Match> m(3);
  index.match(keys, m);
  EXPECT_EQ(m[0].engine_blocks, 2);
  EXPECT_EQ(m[0].tier_blocks, 1);
  EXPECT_EQ(m[1].engine_blocks, 0);
  EXPECT_EQ(m[1].tier_blocks, 4);
  EXPECT_EQ(m[2].total(), 0);
  EXPECT_EQ(index.n_blocks(), 5u);
  EXPECT_EQ(index.n_entries(), 9u);

  index.removed(0, KvTierKind::kEngine, 12);
  index.match(keys, m);
  EXPECT_EQ(m[0].engine_blocks, 1);
  EXPECT_EQ(m[0].tier_blocks, 0);
  index.clear(1);
  index.match(keys, m);
  EXPECT_EQ(m[1].total(), 0);
  EXPECT_EQ(index.n_entries_of(1), 0u);
  EXPECT_EQ(index.n_entries(), 4u);  // 11, 13, 15 of instance 0 and 12 of instance 2
}

TEST(RoutingPolicyTest, CacheAwarePrefersTheInstanceWithThePrefixWithinTheLoadSlack) {
  KvIndex index;
  const std::vector<uint64_t> keys = {1, 2, 3, 4};
  for (uint64_t k : keys) index.stored(2, KvTierKind::kEngine, k);
  RoutingPolicy policy(PolicyOptions{});
  auto v = views(4);
  RouteRequest request{keys, 70, 16, ""};
  RouteDecision d = policy.choose(request, v, index);
  ASSERT_TRUE(d.instance);
  EXPECT_EQ(*d.instance, 2u);
  EXPECT_EQ(d.reason, "prefix_match");
  EXPECT_EQ(d.engine_blocks, 4);
  EXPECT_EQ(d.candidates.size(), 4u);

  // Far busier than the others (outside the slack): the prefix is not worth the queue.
  v[2].inflight = 10;
  d = policy.choose(request, v, index);
  ASSERT_TRUE(d.instance);
  EXPECT_NE(*d.instance, 2u);
  EXPECT_EQ(d.reason, "best_match_overloaded");

  // Ineligible and excluded instances are never chosen; none left: no instance.
  v = views(4);
  v[2].eligible = false;
  const std::vector<InstanceId> tried = {0, 1};
  d = policy.choose(request, v, index, tried);
  ASSERT_TRUE(d.instance);
  EXPECT_EQ(*d.instance, 3u);
  v[3].eligible = false;
  d = policy.choose(request, v, index, tried);
  EXPECT_FALSE(d.instance);
  EXPECT_EQ(d.reason, "no_eligible_instance");
}

TEST(RoutingPolicyTest, ABurstOfOnePrefixSpreadsOnceTheHolderIsOutsideTheSlack) {
  KvIndex index;
  const std::vector<uint64_t> keys = {1, 2, 3, 4};
  for (uint64_t k : keys) index.stored(0, KvTierKind::kEngine, k);
  RoutingPolicy policy(PolicyOptions{});
  auto v = views(4);
  std::map<InstanceId, int> sent;
  // The router's own count moves at each decision, before any report: what stops herding.
  for (int i = 0; i < 40; ++i) {
    RouteDecision d = policy.choose({keys, 64, 16, ""}, v, index);
    ASSERT_TRUE(d.instance);
    ++sent[*d.instance];
    v[*d.instance].inflight += 1;
  }
  EXPECT_EQ(sent.size(), 4u);
  int max_sent = 0;
  for (const auto& [id, n] : sent) max_sent = std::max(max_sent, n);
  EXPECT_LE(max_sent, 40 / 4 + 3);  // the holder gets at most its slack more than the mean
  EXPECT_GT(sent[0], sent[1]);      // and more than the others: the prefix is worth something
}

TEST(RoutingPolicyTest, RoundRobinCyclesLeastLoadFollowsLoadAndSessionsStick) {
  KvIndex index;
  auto v = views(3);
  RoutingPolicy rr(PolicyOptions{Policy::kRoundRobin});
  std::set<InstanceId> seen;
  for (int i = 0; i < 3; ++i) seen.insert(*rr.choose({}, v, index).instance);
  EXPECT_EQ(seen.size(), 3u);

  RoutingPolicy least(PolicyOptions{Policy::kLeastLoad});
  v[0].reported_load = 5;
  v[1].inflight = 2;
  EXPECT_EQ(*least.choose({}, v, index).instance, 2u);
  v[2].reported_load = 9;
  EXPECT_EQ(*least.choose({}, v, index).instance, 1u);

  RoutingPolicy session(PolicyOptions{Policy::kSession});
  v = views(5);
  std::map<std::string, InstanceId> home;
  std::set<InstanceId> used;
  for (int s = 0; s < 50; ++s) {
    const std::string name = "user" + std::to_string(s);
    home[name] = *session.choose({{}, 0, 16, name}, v, index).instance;
    used.insert(home[name]);
    EXPECT_EQ(*session.choose({{}, 0, 16, name}, v, index).instance, home[name]);
  }
  EXPECT_EQ(used.size(), 5u);
  // An instance leaving moves only its own sessions.
  v[1].eligible = false;
  for (const auto& [name, id] : home) {
    const InstanceId now = *session.choose({{}, 0, 16, name}, v, index).instance;
    if (id != 1) {
      EXPECT_EQ(now, id) << name;
    }
    EXPECT_NE(now, 1u);
  }
}

TEST(RoutingPolicyTest, PolicyNamesRoundTrip) {
  for (Policy p :
       {Policy::kRoundRobin, Policy::kLeastLoad, Policy::kSession, Policy::kCacheAware}) {
    EXPECT_EQ(policy_from_name(policy_name(p)), p);
  }
  EXPECT_FALSE(policy_from_name("random"));
}

}  // namespace
}  // namespace infergrid
