// RoutingPolicy: which instance serves a request, from the prompt's block keys, the KV index
// and each instance's load. Pure decision logic: the proxy (`infergrid route`) and the
// simulator (`infergrid route simulate`) call the same code.
//
// Load of an instance = max(what it reports, what this router has sent it and not yet seen
// finish): the router's own count moves the moment it decides, so a burst spreads instead of
// herding onto the instance whose report is stale, and traffic from other clients still shows.
// cache_aware: among instances whose load is within the slack of the least loaded, the one
// with the lowest expected cost = prompt tokens it must compute (blocks in its DRAM or SSD tier
// count tier_load_cost of a computed one) + prefill work queued there + decode_cost_per_request
// per request it is running; ties go to the lesser load, then round-robin. Invariant: a
// decision never picks an ineligible instance, and returns none only when none is eligible.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "router/kv_index.h"

namespace infergrid {

enum class Policy { kRoundRobin, kLeastLoad, kSession, kCacheAware };

std::string_view policy_name(Policy policy);
std::optional<Policy> policy_from_name(std::string_view name);

struct PolicyOptions {
  Policy policy = Policy::kCacheAware;
  // An instance is within the slack when its load <= min load + max(abs, rel x min load).
  double load_slack_abs = 16;
  double load_slack_rel = 1.0;
  // A block loaded from DRAM/SSD costs this fraction of computing it.
  double dram_load_cost = 0.1;
  double disk_load_cost = 0.3;
  // What one running request costs a new one, in prompt tokens (it shares every step).
  double decode_cost_per_request = 16;
};

// One instance as a decision sees it.
struct InstanceView {
  bool eligible = false;
  uint64_t stable_hash = 0;          // of its address: session affinity survives list changes
  double reported_load = 0;          // running + waiting, from its last report
  double inflight = 0;               // requests this router sent and has not seen finish
  double queued_prefill_tokens = 0;  // uncached prompt tokens of those not yet started
  bool tier_is_disk = false;         // its tier blocks are on SSD (else DRAM)
  double load() const { return std::max(reported_load, inflight); }
};

struct RouteRequest {
  std::span<const uint64_t> block_keys;  // the prompt's full blocks, in order
  int prompt_tokens = 0;
  int block_size = 16;
  std::string_view session;  // `user` or x-session-id; "" when none
};

struct CandidateScore {
  InstanceId instance = 0;
  int engine_blocks = 0;
  int tier_blocks = 0;
  double load = 0;
  double cost = 0;  // cache_aware's expected cost (0 for other policies)
  bool within_slack = true;
};

struct RouteDecision {
  std::optional<InstanceId> instance;
  std::string reason;  // e.g. "prefix_match", "least_cost", "round_robin", "session"
  std::vector<CandidateScore> candidates;  // every eligible instance
  int engine_blocks = 0;                   // the chosen instance's match
  int tier_blocks = 0;
};

class RoutingPolicy {
 public:
  explicit RoutingPolicy(PolicyOptions options) : options_(options) {}
  const PolicyOptions& options() const { return options_; }

  // instances[i] is instance i of the index; `excluded` instances (tried already) are skipped.
  RouteDecision choose(const RouteRequest& request, std::span<const InstanceView> instances,
                       const KvIndex& index, std::span<const InstanceId> excluded = {});

 private:
  PolicyOptions options_;
  uint64_t round_robin_ = 0;
  std::vector<KvIndex::Match> matches_;  // scratch, one per instance
};

}  // namespace infergrid
