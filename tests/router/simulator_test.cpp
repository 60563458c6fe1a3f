#include "router/simulator.h"

#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "bench/trace_gen.h"

namespace infergrid {
namespace {

std::vector<TraceEntry> trace_of(TraceKind kind, int requests, double rate, uint64_t seed = 1) {
  TraceGenOptions o;
  o.kind = kind;
  o.requests = requests;
  o.rate_per_s = rate;
  o.seed = seed;
  auto trace = generate_trace(o);
  EXPECT_TRUE(trace.is_ok());
  return *trace;
}

TEST(TraceGenTest, MultiTenantSharesZipfPopularPrefixesAndReparsesFromItsJsonl) {
  const auto trace = trace_of(TraceKind::kMultiTenant, 2000, 10);
  ASSERT_EQ(trace.size(), 2000u);
  std::map<uint64_t, int> by_first_block;
  for (size_t i = 0; i < trace.size(); ++i) {
    const TraceEntry& e = trace[i];
    EXPECT_EQ(e.input_length, static_cast<int>(e.hash_ids.size()) * kTraceBlockTokens);
    ASSERT_GE(e.hash_ids.size(), 9u);  // 8 prefix blocks and at least one of its own
    ++by_first_block[e.hash_ids[0]];
    if (i > 0) {
      EXPECT_GE(e.timestamp_ms, trace[i - 1].timestamp_ms);
    }
  }
  EXPECT_LE(by_first_block.size(), 32u);
  int hottest = 0;
  for (const auto& [block, n] : by_first_block) hottest = std::max(hottest, n);
  EXPECT_GT(hottest, 2000 / 32 * 4);  // Zipf: the top tenant is far above the mean
  // The file bench serve and route simulate read: the same entries back, and the same seed
  // gives the same trace.
  auto back = parse_trace(trace_to_jsonl(trace), "generated");
  ASSERT_TRUE(back.is_ok());
  ASSERT_EQ(back->size(), trace.size());
  EXPECT_EQ((*back)[7].hash_ids, trace[7].hash_ids);
  EXPECT_EQ(trace_to_jsonl(trace_of(TraceKind::kMultiTenant, 2000, 10)), trace_to_jsonl(trace));
}

TEST(TraceGenTest, MultiTurnResendsTheWholeHistoryAndBurstsQuintupleTheRate) {
  const auto trace = trace_of(TraceKind::kMultiTurn, 3000, 20);
  // Every request with more than one turn extends an earlier request of its conversation.
  std::map<std::vector<uint64_t>, int> seen;
  int continued = 0;
  for (const TraceEntry& e : trace) {
    for (size_t cut = e.hash_ids.size() - 1; cut > 0; --cut) {
      if (seen.count({e.hash_ids.begin(), e.hash_ids.begin() + static_cast<long>(cut)})) {
        ++continued;
        break;
      }
    }
    seen[e.hash_ids] = 1;
  }
  EXPECT_GT(continued, 3000 * 2 / 3);  // six turns: five of six continue
  // Bursts: the last 10 s of each minute run at 5x.
  const auto flat = trace_of(TraceKind::kMultiTenant, 20000, 20);
  int in_burst = 0;
  for (const TraceEntry& e : flat) in_burst += std::fmod(e.timestamp_ms / 1000, 60) >= 50;
  // 10 s of 60 at 5x: 50 / (50 + 50) of the requests.
  EXPECT_NEAR(static_cast<double>(in_burst) / flat.size(), 0.5, 0.05);
}

// The oracle is a pooled LRU, a reference rather than a bound: partitioned caches can keep a
// tenant's prompt that one pooled LRU lets other tenants' blocks push out.
TEST(SimulatorTest, OneInstanceIsThePooledOracleAndTheOracleIsTheSameForEveryPolicy) {
  const auto trace = trace_of(TraceKind::kMultiTenant, 3000, 2);
  SimOptions o;
  o.instances = 1;
  o.capacity_blocks = 150;
  auto one = simulate(trace, o);
  ASSERT_TRUE(one.is_ok());
  EXPECT_DOUBLE_EQ(one->hit_ratio, one->oracle_hit_ratio);
  EXPECT_DOUBLE_EQ(one->load_max_over_mean, 1.0);
  o.instances = 4;
  const double one_pooled_of_four = simulate(trace, o)->oracle_hit_ratio;
  for (Policy p :
       {Policy::kRoundRobin, Policy::kLeastLoad, Policy::kSession, Policy::kCacheAware}) {
    o.policy.policy = p;
    auto r = simulate(trace, o);
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r->oracle_hit_ratio, one_pooled_of_four) << policy_name(p);
    EXPECT_GT(r->hit_ratio, 0.3) << policy_name(p);
    uint64_t sum = 0;
    for (uint64_t n : r->requests_per_instance) sum += n;
    EXPECT_EQ(sum, trace.size());
    EXPECT_GT(r->ttft_p99_ms, 0);
  }
}

TEST(SimulatorTest, CacheAwareKeepsNearlyTheOraclesHitsWithEvenLoadWherePureAffinityHerds) {
  TraceGenOptions g;
  g.requests = 12000;
  g.rate_per_s = 8;
  g.tenants = 128;
  g.seed = 3;
  auto trace = generate_trace(g);
  ASSERT_TRUE(trace.is_ok());
  SimOptions o;
  o.instances = 16;
  o.capacity_blocks = 200;
  o.policy.policy = Policy::kCacheAware;
  auto aware = simulate(*trace, o);
  o.policy.policy = Policy::kRoundRobin;
  auto rr = simulate(*trace, o);
  o.policy.policy = Policy::kSession;
  auto affinity = simulate(*trace, o);
  ASSERT_TRUE(aware.is_ok() && rr.is_ok() && affinity.is_ok());
  EXPECT_GE(aware->hit_ratio, 0.9 * aware->oracle_hit_ratio);
  EXPECT_LE(aware->load_max_over_mean, 1.1);
  EXPECT_GT(aware->hit_ratio, rr->hit_ratio + 0.1);
  EXPECT_LT(aware->ttft_p90_ms, rr->ttft_p90_ms);
  EXPECT_GT(affinity->load_max_over_mean, 2.0);  // hot tenants pile onto their instance
}

TEST(SimulatorTest, BadOptionsAreErrors) {
  const auto trace = trace_of(TraceKind::kMultiTenant, 10, 1);
  SimOptions o;
  o.instances = 0;
  EXPECT_FALSE(simulate(trace, o).is_ok());
  o.instances = 2;
  o.prefill_tokens_per_s = 0;
  EXPECT_FALSE(simulate(trace, o).is_ok());
  TraceGenOptions g;
  g.requests = 0;
  EXPECT_FALSE(generate_trace(g).is_ok());
}

}  // namespace
}  // namespace infergrid
