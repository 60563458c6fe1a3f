#include "router/routing_policy.h"

#include <algorithm>
#include <limits>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace infergrid {

std::string_view policy_name(Policy policy) {
  switch (policy) {
    case Policy::kRoundRobin:
      return "round_robin";
    case Policy::kLeastLoad:
      return "least_load";
    case Policy::kSession:
      return "session";
    case Policy::kCacheAware:
      return "cache_aware";
  }
  return "cache_aware";
}

std::optional<Policy> policy_from_name(std::string_view name) {
  for (Policy p :
       {Policy::kRoundRobin, Policy::kLeastLoad, Policy::kSession, Policy::kCacheAware}) {
    if (name == policy_name(p)) return p;
  }
  return std::nullopt;
}

RouteDecision RoutingPolicy::choose(const RouteRequest& request,
                                    std::span<const InstanceView> instances, const KvIndex& index,
                                    std::span<const InstanceId> excluded) {
  RouteDecision decision;
  matches_.resize(instances.size());
  if (options_.policy == Policy::kCacheAware || options_.policy == Policy::kSession) {
    index.match(request.block_keys, matches_);
  } else {
    std::fill(matches_.begin(), matches_.end(), KvIndex::Match{});
  }
  double min_load = std::numeric_limits<double>::infinity();
  for (InstanceId i = 0; i < instances.size(); ++i) {
    if (!instances[i].eligible ||
        std::find(excluded.begin(), excluded.end(), i) != excluded.end()) {
      continue;
    }
    CandidateScore c;
    c.instance = i;
    c.engine_blocks = matches_[i].engine_blocks;
    c.tier_blocks = matches_[i].tier_blocks;
    c.load = instances[i].load();
    min_load = std::min(min_load, c.load);
    decision.candidates.push_back(c);
  }
  if (decision.candidates.empty()) {
    decision.reason = "no_eligible_instance";
    return decision;
  }
  const size_t n = decision.candidates.size();
  const uint64_t turn = round_robin_++;
  // The candidate at position (turn + k) % n for the smallest k among the best: ties rotate.
  const auto pick_best = [&](auto better) {
    size_t best = turn % n;
    for (size_t k = 1; k < n; ++k) {
      const size_t i = (turn + k) % n;
      if (better(decision.candidates[i], decision.candidates[best])) best = i;
    }
    return best;
  };
  size_t chosen = 0;
  switch (options_.policy) {
    case Policy::kRoundRobin:
      chosen = turn % n;
      decision.reason = "round_robin";
      break;
    case Policy::kLeastLoad:
      chosen = pick_best(
          [](const CandidateScore& a, const CandidateScore& b) { return a.load < b.load; });
      decision.reason = "least_load";
      break;
    case Policy::kSession: {
      if (request.session.empty()) {
        chosen = pick_best(
            [](const CandidateScore& a, const CandidateScore& b) { return a.load < b.load; });
        decision.reason = "no_session_least_load";
        break;
      }
      // Rendezvous hashing: a session keeps its instance while that instance is eligible, and
      // only the sessions of an instance that leaves move.
      const uint64_t h = XXH3_64bits(request.session.data(), request.session.size());
      uint64_t best_score = 0;
      for (size_t i = 0; i < n; ++i) {
        const uint64_t score = XXH3_64bits_withSeed(
            &h, sizeof(h), instances[decision.candidates[i].instance].stable_hash);
        if (i == 0 || score > best_score) {
          best_score = score;
          chosen = i;
        }
      }
      decision.reason = "session";
      break;
    }
    case Policy::kCacheAware: {
      const double slack = std::max(options_.load_slack_abs, options_.load_slack_rel * min_load);
      int best_match_anywhere = 0;
      for (CandidateScore& c : decision.candidates) {
        const InstanceView& view = instances[c.instance];
        const double bs = request.block_size;
        const double uncached =
            std::max(0.0, request.prompt_tokens - bs * (c.engine_blocks + c.tier_blocks));
        const double tier_cost =
            view.tier_is_disk ? options_.disk_load_cost : options_.dram_load_cost;
        c.cost = uncached + tier_cost * bs * c.tier_blocks + view.queued_prefill_tokens +
                 options_.decode_cost_per_request * c.load;
        c.within_slack = c.load <= min_load + slack;
        best_match_anywhere = std::max(best_match_anywhere, c.engine_blocks + c.tier_blocks);
      }
      chosen = pick_best([](const CandidateScore& a, const CandidateScore& b) {
        if (a.within_slack != b.within_slack) return a.within_slack;
        if (a.cost != b.cost) return a.cost < b.cost;
        return a.load < b.load;
      });
      const CandidateScore& c = decision.candidates[chosen];
      const int matched = c.engine_blocks + c.tier_blocks;
      decision.reason = matched == 0 && best_match_anywhere == 0 ? "no_match_least_cost"
                        : matched < best_match_anywhere          ? "best_match_overloaded"
                                                                 : "prefix_match";
      break;
    }
  }
  const CandidateScore& c = decision.candidates[chosen];
  decision.instance = c.instance;
  decision.engine_blocks = c.engine_blocks;
  decision.tier_blocks = c.tier_blocks;
  return decision;
}

}  // namespace infergrid
