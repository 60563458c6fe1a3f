#include "router/simulator.h"

#include <algorithm>
#include <chrono>
#include <list>
#include <numeric>
#include <queue>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvstore/block_key.h"

namespace infergrid {

namespace {

// LRU over block keys where a prompt's blocks are touched last-first, so each block is newer
// than every block after it: the oldest is always a chain end (the engine's leaf rule).
class BlockCache {
 public:
  explicit BlockCache(size_t capacity) : capacity_(capacity) {}

  size_t leading_hits(const std::vector<uint64_t>& keys) const {
    size_t n = 0;
    while (n < keys.size() && where_.count(keys[n])) ++n;
    return n;
  }

  // Inserts or refreshes every key; `evicted` gets what had to go.
  void touch(const std::vector<uint64_t>& keys, std::vector<uint64_t>& evicted) {
    for (size_t j = keys.size(); j-- > 0;) {
      auto it = where_.find(keys[j]);
      if (it != where_.end()) {
        order_.splice(order_.begin(), order_, it->second);
      } else {
        order_.push_front(keys[j]);
        where_.emplace(keys[j], order_.begin());
      }
    }
    while (where_.size() > capacity_) {
      evicted.push_back(order_.back());
      where_.erase(order_.back());
      order_.pop_back();
    }
  }

 private:
  size_t capacity_;
  std::list<uint64_t> order_;  // most recent first
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> where_;
};

struct SimRequest {
  double arrival_s = 0;
  std::vector<uint64_t> keys;
  int input_tokens = 0;
  int output_tokens = 0;
  InstanceId instance = 0;
  double predicted_uncached = 0;
};

struct SimInstance {
  explicit SimInstance(size_t capacity) : cache(capacity) {}
  BlockCache cache;
  std::deque<size_t> prefill_queue;
  bool prefilling = false;
  int running = 0;
};

enum class EventKind { kArrival, kPrefillDone, kFinish };
struct Event {
  double at_s;
  uint64_t order;  // ties: first scheduled first (deterministic)
  EventKind kind;
  size_t request;
  bool operator>(const Event& o) const { return at_s != o.at_s ? at_s > o.at_s : order > o.order; }
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

}  // namespace

Result<SimResult> simulate(const std::vector<TraceEntry>& trace, const SimOptions& o) {
  if (o.instances <= 0 || o.capacity_blocks <= 0) {
    return make_error(StatusCode::kInvalidArgument,
                      "--instances and --capacity-blocks must be positive");
  }
  if (o.prefill_tokens_per_s <= 0 || o.decode_ms_per_token < 0 || o.time_scale <= 0) {
    return make_error(StatusCode::kInvalidArgument, "the cost model's figures must be positive");
  }
  const auto wall_start = std::chrono::steady_clock::now();
  std::vector<SimRequest> requests(trace.size());
  for (size_t i = 0; i < trace.size(); ++i) {
    SimRequest& r = requests[i];
    r.arrival_s = trace[i].timestamp_ms / 1000.0 / o.time_scale;
    r.input_tokens = std::max(trace[i].input_length,
                              static_cast<int>(trace[i].hash_ids.size()) * kTraceBlockTokens);
    r.output_tokens = std::max(1, trace[i].output_length);
    // Chained like block_key: a block id means the same KV only after the same ids before it.
    uint64_t parent = kRootBlockKey;
    for (uint64_t id : trace[i].hash_ids) {
      const int32_t words[2] = {static_cast<int32_t>(id), static_cast<int32_t>(id >> 32)};
      parent = block_key(parent, words, 0x51u);
      r.keys.push_back(parent);
    }
  }

  KvIndex index;
  RoutingPolicy policy(o.policy);
  std::vector<SimInstance> instances;
  instances.reserve(static_cast<size_t>(o.instances));
  for (int i = 0; i < o.instances; ++i)
    instances.emplace_back(static_cast<size_t>(o.capacity_blocks));
  std::vector<InstanceView> views(static_cast<size_t>(o.instances));
  for (int i = 0; i < o.instances; ++i) {
    views[i].eligible = true;
    views[i].stable_hash = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1);
  }

  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  uint64_t order = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    events.push({requests[i].arrival_s, order++, EventKind::kArrival, i});
  }
  SimResult result;
  result.requests = requests.size();
  result.requests_per_instance.assign(static_cast<size_t>(o.instances), 0);
  uint64_t hit_blocks = 0;
  uint64_t total_blocks = 0;
  std::vector<double> ttft_ms;
  ttft_ms.reserve(requests.size());
  std::vector<uint64_t> evicted;

  const auto start_prefill = [&](SimInstance& inst, InstanceId id, double now) {
    if (inst.prefilling || inst.prefill_queue.empty()) return;
    const size_t ri = inst.prefill_queue.front();
    inst.prefill_queue.pop_front();
    SimRequest& r = requests[ri];
    const size_t hits = inst.cache.leading_hits(r.keys);
    hit_blocks += hits;
    total_blocks += r.keys.size();
    const double uncached =
        std::max(0, r.input_tokens - static_cast<int>(hits) * kTraceBlockTokens);
    inst.prefilling = true;
    events.push({now + uncached / o.prefill_tokens_per_s, order++, EventKind::kPrefillDone, ri});
    (void)id;
  };

  while (!events.empty()) {
    const Event e = events.top();
    events.pop();
    SimRequest& r = requests[e.request];
    switch (e.kind) {
      case EventKind::kArrival: {
        // The session of pure affinity: the first block (a tenant's prompt, a conversation).
        const std::string session = r.keys.empty() ? std::string() : std::to_string(r.keys[0]);
        const RouteRequest rr{r.keys, r.input_tokens, kTraceBlockTokens, session};
        RouteDecision d = policy.choose(rr, views, index);
        const InstanceId id = *d.instance;  // every simulated instance is eligible
        r.instance = id;
        r.predicted_uncached = std::max(
            0.0, static_cast<double>(r.input_tokens) -
                     static_cast<double>((d.engine_blocks + d.tier_blocks) * kTraceBlockTokens));
        views[id].inflight += 1;
        views[id].queued_prefill_tokens += r.predicted_uncached;
        ++result.requests_per_instance[id];
        instances[id].prefill_queue.push_back(e.request);
        start_prefill(instances[id], id, e.at_s);
        break;
      }
      case EventKind::kPrefillDone: {
        SimInstance& inst = instances[r.instance];
        inst.prefilling = false;
        ttft_ms.push_back((e.at_s - r.arrival_s) * 1000);
        views[r.instance].queued_prefill_tokens =
            std::max(0.0, views[r.instance].queued_prefill_tokens - r.predicted_uncached);
        evicted.clear();
        inst.cache.touch(r.keys, evicted);
        for (uint64_t k : r.keys) index.stored(r.instance, KvTierKind::kEngine, k);
        for (uint64_t k : evicted) index.removed(r.instance, KvTierKind::kEngine, k);
        const double tpot_ms = o.decode_ms_per_token + o.decode_ms_per_running * inst.running;
        ++inst.running;
        events.push(
            {e.at_s + r.output_tokens * tpot_ms / 1000, order++, EventKind::kFinish, e.request});
        start_prefill(inst, r.instance, e.at_s);
        break;
      }
      case EventKind::kFinish:
        --instances[r.instance].running;
        views[r.instance].inflight -= 1;
        break;
    }
  }

  // The pooled oracle: one cache of all the capacity, requests in arrival order.
  BlockCache pooled(static_cast<size_t>(o.capacity_blocks) * static_cast<size_t>(o.instances));
  uint64_t oracle_hits = 0;
  std::vector<size_t> by_arrival(requests.size());
  std::iota(by_arrival.begin(), by_arrival.end(), 0);
  std::stable_sort(by_arrival.begin(), by_arrival.end(), [&](size_t a, size_t b) {
    return requests[a].arrival_s < requests[b].arrival_s;
  });
  for (size_t i : by_arrival) {
    oracle_hits += pooled.leading_hits(requests[i].keys);
    evicted.clear();
    pooled.touch(requests[i].keys, evicted);
  }

  result.hit_ratio = total_blocks ? static_cast<double>(hit_blocks) / total_blocks : 0;
  result.oracle_hit_ratio = total_blocks ? static_cast<double>(oracle_hits) / total_blocks : 0;
  const double mean = static_cast<double>(requests.size()) / o.instances;
  const uint64_t max_load =
      *std::max_element(result.requests_per_instance.begin(), result.requests_per_instance.end());
  result.load_max_over_mean = mean > 0 ? static_cast<double>(max_load) / mean : 0;
  result.ttft_p50_ms = percentile(ttft_ms, 0.5);
  result.ttft_p90_ms = percentile(ttft_ms, 0.9);
  result.ttft_p99_ms = percentile(ttft_ms, 0.99);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  result.replay_requests_per_s = wall > 0 ? static_cast<double>(requests.size()) / wall : 0;
  return result;
}

std::string sim_result_json(const SimResult& r, const SimOptions& o) {
  nlohmann::json j = {
      {"policy", policy_name(o.policy.policy)},
      {"instances", o.instances},
      {"capacity_blocks", o.capacity_blocks},
      {"requests", r.requests},
      {"hit_ratio", r.hit_ratio},
      {"oracle_hit_ratio", r.oracle_hit_ratio},
      {"hit_ratio_vs_oracle", r.oracle_hit_ratio > 0 ? r.hit_ratio / r.oracle_hit_ratio : 0},
      {"load_max_over_mean", r.load_max_over_mean},
      {"ttft_ms", {{"p50", r.ttft_p50_ms}, {"p90", r.ttft_p90_ms}, {"p99", r.ttft_p99_ms}}},
      {"replay_requests_per_s", r.replay_requests_per_s}};
  return j.dump();
}

std::string sim_result_text(const SimResult& r, const SimOptions& o) {
  return fmt::format(
      "policy {} on {} instances x {} blocks, {} requests\n"
      "  block hit ratio   {:.3f}  (pooled-cache oracle {:.3f}: {:.2f}x of it)\n"
      "  load max/mean     {:.3f}  (requests per instance)\n"
      "  TTFT ms           p50 {:.1f}  p90 {:.1f}  p99 {:.1f}\n"
      "  replayed at       {:.0f} requests/s\n",
      policy_name(o.policy.policy), o.instances, o.capacity_blocks, r.requests, r.hit_ratio,
      r.oracle_hit_ratio, r.oracle_hit_ratio > 0 ? r.hit_ratio / r.oracle_hit_ratio : 0,
      r.load_max_over_mean, r.ttft_p50_ms, r.ttft_p90_ms, r.ttft_p99_ms, r.replay_requests_per_s);
}

}  // namespace infergrid
