// Routing decision time with many instances and a large index: what `infergrid route` spends
// per request before proxying (the KV index walk plus the policy's scoring).
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "router/kv_index.h"
#include "router/routing_policy.h"

namespace infergrid {
namespace {

struct Cluster {
  KvIndex index;
  std::vector<std::vector<uint64_t>> chains;  // each a prompt's block keys
  std::vector<InstanceView> views;
};

// `n_blocks` distinct keys in chains of 64 blocks, each chain held whole by 1-3 instances.
const Cluster& cluster(int n_instances, int n_blocks) {
  static std::map<std::pair<int, int>, std::unique_ptr<Cluster>> built;
  auto& slot = built[{n_instances, n_blocks}];
  if (slot) return *slot;
  slot = std::make_unique<Cluster>();
  std::mt19937_64 rng(7);
  const int chain_len = 64;
  for (int c = 0; c < n_blocks / chain_len; ++c) {
    std::vector<uint64_t> keys(chain_len);
    for (auto& k : keys) k = rng() | 1;
    const int copies = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < copies; ++i) {
      const auto instance = static_cast<InstanceId>(rng() % n_instances);
      for (uint64_t k : keys) slot->index.stored(instance, KvTierKind::kEngine, k);
    }
    slot->chains.push_back(std::move(keys));
  }
  slot->views.resize(n_instances);
  for (int i = 0; i < n_instances; ++i) {
    slot->views[i].eligible = true;
    slot->views[i].stable_hash = static_cast<uint64_t>(i) * 7919;
    slot->views[i].reported_load = static_cast<double>(rng() % 8);
  }
  return *slot;
}

void BM_CacheAwareDecision(benchmark::State& state) {
  const int n_instances = static_cast<int>(state.range(0));
  const int n_blocks = static_cast<int>(state.range(1));
  const Cluster& c = cluster(n_instances, n_blocks);
  RoutingPolicy policy(PolicyOptions{});
  std::mt19937_64 rng(11);
  std::vector<double> ns;
  std::vector<uint64_t> prompt;
  for (auto _ : state) {
    // A prompt sharing a random-length prefix of a stored chain, then new blocks.
    const auto& chain = c.chains[rng() % c.chains.size()];
    const size_t shared = rng() % chain.size();
    prompt.assign(chain.begin(), chain.begin() + static_cast<long>(shared));
    while (prompt.size() < chain.size()) prompt.push_back(rng() | 1);
    const auto start = std::chrono::steady_clock::now();
    RouteDecision d = policy.choose({prompt, 1024, 16, ""}, c.views, c.index);
    benchmark::DoNotOptimize(d);
    ns.push_back(
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ns.begin(), ns.end());
  if (!ns.empty()) {
    state.counters["p50_us"] = ns[ns.size() / 2] / 1000;
    state.counters["p99_us"] = ns[std::min(ns.size() - 1, ns.size() * 99 / 100)] / 1000;
  }
  state.counters["index_blocks"] = static_cast<double>(c.index.n_blocks());
}

BENCHMARK(BM_CacheAwareDecision)
    ->Args({4, 65536})
    ->Args({64, 1 << 20})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace infergrid

BENCHMARK_MAIN();
